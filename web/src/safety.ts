// Safety numbers: the same 60 digits as `peerline verify` (crates/client/src/peer_keys.rs,
// `safety_number`), so two people can compare what their browser and their CLI show. Each
// identity is a username and a device key; the two are sorted, so both sides get the same
// number; SHA-512 is iterated 5200 times to make searching for a colliding key expensive.
// tests/unit.mjs and crates/supernode/tests/web.rs pin the same test vector.

const LABEL = new TextEncoder().encode("peerline-safety-number-v1");

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Byte-wise order, a shorter prefix first (Rust's order of byte slices). */
function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return (a[i] ?? 0) - (b[i] ?? 0);
  return a.length - b.length;
}

async function sha512(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-512", bytes as BufferSource));
}

export function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** The safety number of two devices: 12 groups of 5 digits, separated by spaces. */
export async function safetyNumber(aUser: string, aKey: Uint8Array, bUser: string, bKey: Uint8Array): Promise<string> {
  const enc = new TextEncoder();
  const ids: [Uint8Array, Uint8Array][] = [
    [enc.encode(aUser), aKey],
    [enc.encode(bUser), bKey],
  ];
  ids.sort(([u1, k1], [u2, k2]) => compare(u1, u2) || compare(k1, k2));
  const digest: number[] = [];
  for (const [user, key] of ids) {
    let out = await sha512(concat(LABEL, user, new Uint8Array([0]), key));
    for (let i = 0; i < 5200; i++) out = await sha512(concat(out, key));
    digest.push(...out.slice(0, 30));
  }
  const groups: string[] = [];
  for (let i = 0; i < 60; i += 5) {
    // 5 bytes big-endian: at most 2^40, exact in a JS number.
    const n = digest.slice(i, i + 5).reduce((acc, b) => acc * 256 + b, 0);
    groups.push(String(n % 100000).padStart(5, "0"));
  }
  return groups.join(" ");
}
