// Unit tests of the web client's pure functions, run by node (scripts/test-web) on the
// TypeScript compiled to web/.check/unit: the safety number against the vector that
// crates/supernode/tests/web.rs checks against the CLI's own function, and the signed payloads.
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(web, ".check", "unit");
execFileSync(
  join(web, "node_modules", ".bin", "tsc"),
  ["--ignoreConfig", "--outDir", out, "--module", "esnext", "--target", "es2022", "--moduleResolution", "bundler", "--strict",
   "--skipLibCheck", "--lib", "es2022,dom", "--types", "", join(web, "src", "safety.ts"), join(web, "src", "protocol.ts")],
  { stdio: "inherit" },
);
const { safetyNumber } = await import(pathToFileURL(join(out, "safety.js")).href);
const { loginChallenge, callSignaturePayload } = await import(pathToFileURL(join(out, "protocol.js")).href);

/** The CLI's safety number of alice with key [1; 32] and bob with key [2; 32]. */
const SAFETY_VECTOR = "44362 76420 49311 05085 38328 30201 58569 86618 32557 93956 67720 80510";

let failed = 0;
function check(name, ok, detail = "") {
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${ok ? "" : `: ${detail}`}`);
  failed += ok ? 0 : 1;
}

const a = new Uint8Array(32).fill(1);
const b = new Uint8Array(32).fill(2);
const n = await safetyNumber("alice", a, "bob", b);
check("safety number: the CLI's vector", n === SAFETY_VECTOR, `got ${n}`);
check("safety number: the same from both sides", n === (await safetyNumber("bob", b, "alice", a)));
check("safety number: another key, another number", n !== (await safetyNumber("alice", a, "bob", new Uint8Array(32).fill(3))));
check(
  "login challenge bytes",
  new TextDecoder().decode(loginChallenge("ff8a")) === "peerline-login-v1:ff8a",
);
check(
  "call signature payload bytes",
  new TextDecoder().decode(callSignaturePayload("c1", "offer", "alice", "bob", " sha-256 AB:CD ")) ===
    "peerline-call-v1\nc1\noffer\nalice\nbob\nsha-256 AB:CD",
);
// The login proof the web client signs (WebCrypto Ed25519) is the document's test vector
// (docs/protocol.md, "Login and the device key").
const seed = "2583908e98b61627f0e5d1a18549b49169ea94fd40af6ffff635472c42f96fdd";
const pkcs8 = Buffer.from("302e020100300506032b657004220420" + seed, "hex");
const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
const sig = Buffer.from(
  await crypto.subtle.sign({ name: "Ed25519" }, key, loginChallenge("ff8ad9db74dda7ef1d7661a009cba0d1c995a7724122f3b1c1bb6609ba7b6d95")),
).toString("hex");
check(
  "login signature: the document's vector",
  sig === "467d766793e9096918328adb6b4d5de818d6f4870cd0c26a430ac78b3b96fe4dca09b3c63c995e471f59b6988e85b285c8998de81b3bbfa1811718b4d41d0a00",
  sig,
);
console.log(`${6 - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
