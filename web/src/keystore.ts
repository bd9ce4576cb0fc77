// What the browser keeps between visits, in IndexedDB: this device's Ed25519 key (a WebCrypto
// key created non-extractable, so no script can read the private half, not even ours) and the
// session token of the account last logged in. The password is never stored.
import { loginChallenge, type DeviceProof } from "./protocol";

const DB = "peerline";
const STORE = "device";

/** The device key pair and its public half as hex (what the supernode knows it by). */
export interface DeviceKey {
  keys: CryptoKeyPair;
  publicKey: string;
}

/** The session kept for the next visit. */
export interface SavedSession {
  username: string;
  token: string;
}

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore<T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const req = f(db.transaction(STORE, mode).objectStore(STORE));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  } finally {
    db.close();
  }
}

export const hex = (bytes: ArrayBuffer | Uint8Array): string =>
  Array.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), (b) =>
    b.toString(16).padStart(2, "0"),
  ).join("");

/** This browser's device key, created on first use. */
export async function deviceKey(): Promise<DeviceKey> {
  const saved = await withStore<DeviceKey | undefined>("readonly", (s) => s.get("key"));
  if (saved) return saved;
  if (!crypto?.subtle) throw new Error("this browser has no WebCrypto here (the page must be served over https)");
  let keys: CryptoKeyPair;
  try {
    keys = (await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])) as CryptoKeyPair;
  } catch {
    throw new Error("this browser cannot make Ed25519 keys (WebCrypto); use a current Chromium, Firefox or Safari");
  }
  const publicKey = hex(await crypto.subtle.exportKey("raw", keys.publicKey));
  const key = { keys, publicKey };
  await withStore("readwrite", (s) => s.put(key, "key"));
  return key;
}

/** The proof of the device key for a connection whose hello carried `nonce` (unbound: a
 * browser cannot read its TLS exporter, docs/protocol.md "Login and the device key"). */
export async function deviceProof(key: DeviceKey, nonce: string): Promise<DeviceProof> {
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, key.keys.privateKey, loginChallenge(nonce) as BufferSource);
  return { public_key: key.publicKey, signature: hex(signature), name: deviceName() };
}

function deviceName(): string {
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrom(e|ium)\//.test(ua) ? "Chromium" : /Safari\//.test(ua) ? "Safari" : "browser";
  return `web (${browser})`;
}

export const loadSession = (): Promise<SavedSession | undefined> =>
  withStore<SavedSession | undefined>("readonly", (s) => s.get("session"));

export const saveSession = (session: SavedSession): Promise<IDBValidKey> =>
  withStore("readwrite", (s) => s.put(session, "session"));

export const forgetSession = (): Promise<undefined> => withStore("readwrite", (s) => s.delete("session"));

/** What a verified device key means against the pins (trust on first use, per user and device). */
export type PinCheck = "known" | "first" | "new_device" | "changed";

/** Checks `publicKey` of `username`'s device `deviceId` against the pins, and pins it when it is
 * new. Call it only after the key's signature verified (docs/protocol.md, "Security"). */
export async function checkPin(username: string, deviceId: number, publicKey: string): Promise<PinCheck> {
  const pins = ((await withStore<Record<string, string> | undefined>("readonly", (s) => s.get(`pins:${username}`))) ?? {});
  const pinned = pins[String(deviceId)];
  if (pinned !== undefined) return pinned === publicKey.toLowerCase() ? "known" : "changed";
  const first = Object.keys(pins).length === 0;
  pins[String(deviceId)] = publicKey.toLowerCase();
  await withStore("readwrite", (s) => s.put(pins, `pins:${username}`));
  return first ? "first" : "new_device";
}
