// Browser tests of the web client (issue 14): Debian's Chromium driven by playwright-core
// (executablePath, never a browser download) against the real peerline-supernode binary, which
// serves the app and the WebSocket endpoint on one TLS address. scripts/test-web runs this file
// inside a fresh network namespace with only loopback (`unshare -n`), as ../shared/BROWSER.md
// describes.
//
// Each test starts its own supernode (own temp dir, port 0) and its own browser contexts, and
// waits for what a user would see, with a deadline, never for "a while".
//
// usage: node web/tests/browser.mjs [NAME_FILTER]
//   PEERLINE_SUPERNODE  the binary (default: target/debug/peerline-supernode)
//   CHROMIUM            the browser (default: /usr/bin/chromium)
//   PEERLINE_SCREENSHOTS  where screenshots go (default: target/web-screenshots)
//   PEERLINE_CLI        the peerline CLI (default: target/debug/peerline)
//   PEERLINE_WEB_TEST_VERBOSE=1  print each test's steps
//   PEERLINE_WEB_TEST_CLI_LOG=FILE  append the CLI's stderr (PEERLINE_LOG=info for more) to FILE
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, "target");
const BINARY = process.env.PEERLINE_SUPERNODE ?? join(targetDir, "debug", "peerline-supernode");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const CLI = process.env.PEERLINE_CLI ?? join(targetDir, "debug", "peerline");
const SHOTS = process.env.PEERLINE_SCREENSHOTS ?? join(targetDir, "web-screenshots");
/** The longest one expected thing may take (a debug supernode, Argon2 hashes, two busy cores). */
const WAIT = 20_000;
/** The longest a whole test may take: a test that hangs fails instead. */
const TEST_TIMEOUT = 180_000;
const VERBOSE = process.env.PEERLINE_WEB_TEST_VERBOSE === "1";
/** Says what the test does next, with PEERLINE_WEB_TEST_VERBOSE=1. */
function step(what) {
  if (VERBOSE) console.log(`  [${new Date().toISOString().slice(11, 23)}] ${what}`);
}

// The settings ../shared/BROWSER.md found to make Chromium (and later its WebRTC) reliable here.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  "--allow-loopback-in-peer-connection",
  "--autoplay-policy=no-user-gesture-required",
];

function fail(message) {
  throw new Error(message);
}

// ---- the supernode ----

/** Starts the supernode binary on loopback (TLS, self-signed); resolves with its app URL. */
async function startSupernode() {
  if (!existsSync(BINARY)) {
    fail(`no supernode binary at ${BINARY}: run \`cargo build -p peerline-supernode --bins\` (scripts/test-web does)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "peerline-web-"));
  const args = ["--data-dir", join(dir, "data"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0"];
  const child = spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`the supernode did not start within ${WAIT} ms: ${stderr}`)), WAIT);
    lines.on("line", (line) => {
      const m = /^web client on (https:\/\/\S+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`the supernode exited (${code}) before serving: ${stderr}`)));
  });
  return {
    url,
    wss: url.replace(/^https:/, "wss:").replace(/\/$/, ""),
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- a user in their own browser context ----

class User {
  constructor(page, name, url) {
    this.page = page;
    this.name = name;
    this.url = url;
    this.dialogs = [];
    this.errors = [];
    page.on("dialog", (d) => {
      this.dialogs.push(d.message());
      void d.dismiss();
    });
    page.on("pageerror", (e) => this.errors.push(String(e)));
  }

  static async open(browser, url, name, viewport = { width: 1100, height: 750 }) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    const user = new User(page, name, url);
    user.response = await page.goto(url);
    return user;
  }

  async register(displayName = "") {
    const p = this.page;
    await p.getByLabel("Username").fill(this.name);
    await p.getByLabel("Password").fill(`pw-${this.name}-long enough`);
    if (displayName) await p.getByLabel("Display name").fill(displayName);
    await p.getByRole("button", { name: "Register", exact: true }).click();
    await p.getByRole("heading", { name: "Contacts" }).waitFor();
  }

  async logIn(password = `pw-${this.name}-long enough`) {
    const p = this.page;
    await p.getByLabel("Username").fill(this.name);
    await p.getByLabel("Password").fill(password);
    await p.getByRole("button", { name: "Log in", exact: true }).click();
    await p.getByRole("heading", { name: "Contacts" }).waitFor();
  }

  async logOut() {
    await this.page.getByRole("button", { name: "Log out", exact: true }).click();
    await this.page.getByRole("button", { name: "Log in", exact: true }).waitFor();
  }

  /** Finds `other` in the directory and asks them to be a contact, with `greeting`. */
  async ask(other, greeting) {
    const p = this.page;
    await p.getByLabel("Search users").fill(other);
    await p.getByRole("button", { name: "Search", exact: true }).click();
    await p.getByLabel("Greeting").fill(greeting);
    await p.locator(`nav li[data-username="${other}"]`).getByRole("button", { name: "Add contact" }).click();
    await p.locator(`.request[data-username="${other}"]`).getByText("Waiting for an answer").waitFor();
  }

  /** The incoming request from `other`, once shown. */
  async request(other) {
    const item = this.page.locator(`.request[data-username="${other}"]`);
    await item.waitFor();
    return item;
  }

  contact(other) {
    return this.page.locator(`nav li.entry[data-username="${other}"]`);
  }

  async waitPresence(other, presence, timeout = WAIT) {
    await this.page.locator(`nav li.entry[data-username="${other}"][data-presence="${presence}"]`).waitFor({ timeout });
  }

  async openChat(other) {
    await this.contact(other).getByRole("button").click();
    await this.page.getByRole("textbox", { name: "Message", exact: true }).waitFor();
  }

  async send(text) {
    const box = this.page.getByRole("textbox", { name: "Message", exact: true });
    await box.fill(text);
    await this.page.getByRole("button", { name: "Send", exact: true }).click();
    await this.message(text).waitFor();
  }

  /** The message bubble(s) whose text is exactly `text`. */
  message(text) {
    return this.page.locator("li.msg").filter({ has: this.page.locator(".text", { hasText: text }) });
  }
}

/** Runs `script(arg)` in `user`'s page with a second WebSocket of theirs, logged in with their
 * own device key and token from IndexedDB, as `window.__raw`: for what no button does (a
 * supernode that misbehaves, a call placed by hand). `__raw.ask(request)` resolves with the
 * answer frame; `__raw.me` has the username, the key and the connection's events. (Playwright
 * passes `script` to the page without eval, which the app's CSP forbids.) */
async function rawSession(user, script, arg) {
  await user.page.evaluate(
    async () => {
      const get = (k) =>
        new Promise((resolve, reject) => {
          const req = indexedDB.open("peerline");
          req.onerror = () => reject(req.error);
          req.onsuccess = () => {
            const r = req.result.transaction("device").objectStore("device").get(k);
            r.onsuccess = () => resolve(r.result);
          };
        });
      const [key, session] = [await get("key"), await get("session")];
      const ws = new WebSocket(`wss://${location.host}/v1/ws`);
      const answers = new Map();
      const events = [];
      window.__raw = { ws, events };
      let next = 1;
      ws.onmessage = (m) => {
        const f = JSON.parse(m.data);
        if (f.type === "event") events.push(f.event);
        else if (f.id && answers.has(f.id)) answers.get(f.id)(f);
      };
      await new Promise((r) => (ws.onopen = r));
      const ask = (req) => new Promise((r) => { const id = next++; answers.set(id, r); ws.send(JSON.stringify({ id, ...req })); });
      const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
      const hello = await ask({ type: "hello", version: 1 });
      const challenge = new TextEncoder().encode("peerline-login-v1:" + hello.result.nonce);
      const sig = await crypto.subtle.sign({ name: "Ed25519" }, key.keys.privateKey, challenge);
      const login = await ask({ type: "login", username: session.username, token: session.token, device: { public_key: key.publicKey, signature: hex(sig) } });
      if (login.type !== "ok") throw new Error(JSON.stringify(login));
      window.__raw.ask = ask;
      window.__raw.me = { username: session.username, key, hex, events };
    },
  );
  return user.page.evaluate(script, arg);
}

/** An offer as a caller would send it: no addresses, the fingerprint of the protocol's example. */
const OFFER_SDP =
  "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=fingerprint:sha-256 D0:50:65:79:BB:A8:9C:3B:BC:33:FF:E0:FB:14:91:D1:3E:56:88:F6:04:F7:7A:EF:EB:10:F3:64:A8:1B:64:65\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:Xq3v\r\na=ice-pwd:k9Zt2mR8wLp4Yc7nHs1fQd6B\r\na=setup:actpass\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

/** A 48 kHz mono 16-bit WAV of a sine at `hz`, `seconds` long, for a fake microphone. */
function toneWav(path, hz, seconds = 5) {
  const rate = 48000;
  const n = rate * seconds;
  const buf = Buffer.alloc(44 + 2 * n);
  buf.write("RIFF", 0);
  buf.writeUInt32LE(36 + 2 * n, 4);
  buf.write("WAVEfmt ", 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36);
  buf.writeUInt32LE(2 * n, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * 0.5 * 32767), 44 + 2 * i);
  writeFileSync(path, buf);
  return path;
}

/** The loudest frequency of what the other side of the call sends, measured with WebAudio on
 * the call's <audio> stream: the median over 10 looks, 200 ms apart. */
async function heardFrequency(user) {
  return user.page.evaluate(async () => {
    const stream = document.querySelector("section.call audio").srcObject;
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const data = new Float32Array(analyser.frequencyBinCount);
    const peaks = [];
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 200));
      analyser.getFloatFrequencyData(data);
      let best = 1;
      for (let k = 2; k < data.length; k++) if (data[k] > data[best]) best = k;
      peaks.push((best * ctx.sampleRate) / analyser.fftSize);
    }
    await ctx.close();
    peaks.sort((a, b) => a - b);
    return peaks[5];
  });
}

/** A user of the `peerline` CLI with its own home: `run(args, until)` runs `peerline --json
 * ARGS` and resolves with the child when its stdout shows `until`, a string or a RegExp (or, without `until`, when it
 * exited 0); `lines` are the JSON lines of every run. */
function cliUser(node, name) {
  if (!existsSync(CLI)) fail(`no peerline CLI at ${CLI}: run \`cargo build -p peerline-cli --bins\` (scripts/test-web does)`);
  const home = mkdtempSync(join(tmpdir(), `peerline-${name}-`));
  const env = { ...process.env, PEERLINE_HOME: home, PEERLINE_SUPERNODE: node.wss, PEERLINE_PASSWORD: `${name}-secret-pw` };
  const lines = [];
  const run = (args, until) =>
    new Promise((resolveRun, reject) => {
      const child = spawn(CLI, ["--json", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      const timer = setTimeout(() => reject(new Error(`peerline ${args.join(" ")}: nothing within ${WAIT} ms: ${out} ${err}`)), WAIT);
      child.stderr.on("data", (d) => {
        err = (err + d).slice(-4000);
        if (process.env.PEERLINE_WEB_TEST_CLI_LOG) writeFileSync(process.env.PEERLINE_WEB_TEST_CLI_LOG, d, { flag: "a" });
      });
      child.stdout.on("data", (d) => {
        out += d;
        lines.push(...String(d).split("\n").filter(Boolean));
        if (until && (typeof until === "string" ? out.includes(until) : until.test(out))) {
          clearTimeout(timer);
          resolveRun(child);
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        if (!until && code === 0) resolveRun(child);
        else reject(new Error(`peerline ${args.join(" ")} exited ${code}: ${out} ${err}`));
      });
    });
  return { name, home, run, lines, dispose: () => rmSync(home, { recursive: true, force: true }) };
}

/** Stops a CLI child and waits for it. */
async function stopChild(child) {
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  if (!exited()) {
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await gone;
  }
}

/** `peerline echo-service` (the CLI) as user `echo` of `node`, running until `stop()`. */
async function startEchoService(node) {
  const echo = cliUser(node, "echo");
  await echo.run(["register", "echo"]);
  const service = await echo.run(["echo-service"], "Echo service running");
  return {
    async stop() {
      await stopChild(service);
      echo.dispose();
    },
  };
}

/** How many 100 ms windows of a 16-bit PCM WAV hold a tone at `hz` (Goertzel: the tone's power
 * is most of the window's, and the window is not silent). */
function toneWindows(path, hz) {
  const wav = readFileSync(path);
  let at = 12;
  let rate = 48000;
  let channels = 1;
  let data;
  while (at + 8 <= wav.length) {
    const id = wav.toString("ascii", at, at + 4);
    const size = wav.readUInt32LE(at + 4);
    if (id === "fmt ") {
      channels = wav.readUInt16LE(at + 10);
      rate = wav.readUInt32LE(at + 12);
    } else if (id === "data") {
      data = wav.subarray(at + 8, Math.min(wav.length, at + 8 + size));
    }
    at += 8 + size + (size % 2);
  }
  if (!data) fail(`${path}: no data chunk`);
  const samples = [];
  for (let i = 0; i + 2 * channels <= data.length; i += 2 * channels) samples.push(data.readInt16LE(i) / 32768);
  const n = Math.floor(rate / 10);
  const coeff = 2 * Math.cos((2 * Math.PI * hz) / rate);
  let count = 0;
  for (let start = 0; start + n <= samples.length; start += n) {
    let [s1, s2, energy] = [0, 0, 0];
    for (let i = start; i < start + n; i++) {
      const s0 = samples[i] + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
      energy += samples[i] * samples[i];
    }
    const power = (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n / 2);
    if (energy / n > 1e-5 && power / energy > 0.5) count++;
  }
  return count;
}

/** Waits for `selector` inside the call screen; a timeout says what the screen showed. */
async function waitCall(user, selector) {
  try {
    await user.page.locator(selector).waitFor();
  } catch (e) {
    const panel = user.page.locator("section.call");
    const shown = (await panel.count()) ? `${await panel.getAttribute("data-phase")}: ${(await panel.innerText()).replace(/\s+/g, " ")}` : "no call screen";
    fail(`${user.name}: no ${selector} (${shown})`);
  }
}

async function waitFor(predicate, what) {
  const deadline = Date.now() + WAIT;
  while (!predicate()) {
    if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitCount(locator, n, what) {
  const deadline = Date.now() + WAIT;
  let count = -1;
  while (Date.now() < deadline) {
    count = await locator.count();
    if (count === n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`${what}: expected ${n}, found ${count}`);
}

function unique(prefix) {
  return `${prefix}${Math.random().toString(36).slice(2, 8)}`;
}

async function screenshot(user, name) {
  mkdirSync(SHOTS, { recursive: true });
  await user.page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

// ---- the tests ----

const tests = {
  async "two users register, befriend, see presence and chat both ways with receipts"(browser, node) {
    const alice = await User.open(browser, node.url, unique("alice"));
    const bob = await User.open(browser, node.url, unique("bob"));
    await alice.register("Alice Liddell");
    await bob.register("Bob Builder");

    await alice.ask(bob.name, "Hi Bob, it's Alice from the climbing club.");
    const request = await bob.request(alice.name);
    await request.getByText("Hi Bob, it's Alice from the climbing club.").waitFor();
    await request.getByText("Alice Liddell").waitFor();
    await screenshot(bob, "request");
    await request.getByRole("button", { name: "Accept", exact: true }).click();

    // Both see each other online; a status change shows within a second.
    await bob.waitPresence(alice.name, "online");
    await alice.waitPresence(bob.name, "online");
    await alice.page.getByLabel("Status").selectOption("away");
    await bob.waitPresence(alice.name, "away", 1000);
    await alice.page.getByLabel("Status").selectOption("online");
    await bob.waitPresence(alice.name, "online", 1000);

    // Alice writes; Bob sees one unread message, opens the chat; Alice sees it read.
    await alice.openChat(bob.name);
    await alice.send("Lunch at noon?");
    await bob.contact(alice.name).locator('[data-unread="1"]').waitFor();
    await alice.message("Lunch at noon?").locator('[data-receipt="delivered"]').waitFor();
    await bob.openChat(alice.name);
    await bob.message("Lunch at noon?").waitFor();
    await alice.message("Lunch at noon?").locator('[data-receipt="read"]').waitFor();
    await waitCount(bob.contact(alice.name).locator(".badge"), 0, "unread badge after reading");

    // Bob answers while both have the chat open: delivered and read at once.
    await bob.send("Sure, see you there. 🧗");
    await alice.message("Sure, see you there. 🧗").waitFor();
    await bob.message("Sure, see you there. 🧗").locator('[data-receipt="read"]').waitFor();
    await screenshot(alice, "chat");

    // A message sent while Bob is logged out arrives at his next login, exactly once.
    await bob.logOut();
    await alice.waitPresence(bob.name, "offline", 1000);
    await alice.send("Sent while you were away");
    await alice.message("Sent while you were away").locator('[data-receipt="sent"]').waitFor();
    await bob.logIn();
    await alice.waitPresence(bob.name, "online");
    await bob.contact(alice.name).locator('[data-unread="1"]').waitFor();
    await alice.message("Sent while you were away").locator('[data-receipt="delivered"]').waitFor();
    await bob.openChat(alice.name);
    await waitCount(bob.message("Sent while you were away"), 1, "the offline message, shown once");
    await waitCount(bob.message("Lunch at noon?"), 1, "history, each message once");
    await alice.message("Sent while you were away").locator('[data-receipt="read"]').waitFor();
    for (const u of [alice, bob]) if (u.errors.length) fail(`${u.name}: page errors: ${u.errors.join("; ")}`);
  },

  async "a reload logs in again with the saved token; the password is not kept and the key cannot be read"(browser, node) {
    const alice = await User.open(browser, node.url, unique("alice"));
    await alice.register();
    await alice.page.reload();
    await alice.page.getByRole("heading", { name: "Contacts" }).waitFor();
    const kept = await alice.page.evaluate(
      () =>
        new Promise((resolve, reject) => {
          const req = indexedDB.open("peerline");
          req.onerror = () => reject(req.error);
          req.onsuccess = () => {
            const store = req.result.transaction("device").objectStore("device");
            const all = store.getAll();
            const key = store.get("key");
            all.onsuccess = () =>
              key.onsuccess = () =>
                resolve({
                  text: JSON.stringify(all.result),
                  extractable: key.result.keys.privateKey.extractable,
                  algorithm: key.result.keys.privateKey.algorithm.name,
                  hasToken: all.result.some((v) => typeof v.token === "string" && v.token.length > 0),
                });
          };
        }),
    );
    if (kept.text.includes(`pw-${alice.name}`)) fail("the password is stored in IndexedDB");
    if (kept.extractable !== false || kept.algorithm !== "Ed25519") fail(`device key: ${JSON.stringify(kept)}`);
    if (!kept.hasToken) fail("no session token kept");
    await alice.logOut();
    await alice.page.reload();
    await alice.page.getByRole("button", { name: "Log in", exact: true }).waitFor();
  },

  async "requests can be declined and contacts removed, blocked and unblocked"(browser, node) {
    const carol = await User.open(browser, node.url, unique("carol"));
    const dave = await User.open(browser, node.url, unique("dave"));
    await carol.register();
    await dave.register();
    await carol.ask(dave.name, "first try");
    await (await dave.request(carol.name)).getByRole("button", { name: "Decline", exact: true }).click();
    await waitCount(carol.page.locator(`.request[data-username="${carol.name}"], .request[data-username="${dave.name}"]`), 0, "carol's request after the decline");
    await waitCount(dave.page.locator(`.request[data-username="${carol.name}"]`), 0, "dave's request after the decline");

    await carol.ask(dave.name, "second try");
    await (await dave.request(carol.name)).getByRole("button", { name: "Accept", exact: true }).click();
    await carol.waitPresence(dave.name, "online");
    await dave.openChat(carol.name);
    await dave.page.getByRole("button", { name: "Remove", exact: true }).click();
    await waitCount(carol.contact(dave.name), 0, "dave in carol's list after dave removed her");
    await waitCount(dave.contact(carol.name), 0, "carol in dave's list after he removed her");

    await carol.ask(dave.name, "third try");
    await (await dave.request(carol.name)).getByRole("button", { name: "Accept", exact: true }).click();
    await carol.waitPresence(dave.name, "online");
    await dave.openChat(carol.name);
    await dave.page.getByRole("button", { name: "Block", exact: true }).click();
    await dave.page.getByText("Blocked (1)").click();
    await carol.waitPresence(dave.name, "offline");
    await dave.contact(carol.name).getByRole("button", { name: "Unblock", exact: true }).click();
    await waitCount(dave.contact(carol.name), 0, "carol in dave's list after the unblock");
  },

  async "devices, password change, safety numbers and missed calls"(browser, node) {
    const alice = await User.open(browser, node.url, unique("alice"));
    const bob = await User.open(browser, node.url, unique("bob"));
    await alice.register();
    await bob.register();
    await alice.ask(bob.name, "hi");
    await (await bob.request(alice.name)).getByRole("button", { name: "Accept", exact: true }).click();
    await alice.waitPresence(bob.name, "online");

    // Both sides see the same safety number (the CLI's digits: tests/unit.mjs).
    const digits = async (u, other) => {
      await u.openChat(other);
      await u.page.getByRole("button", { name: "Safety number", exact: true }).click();
      return (await u.page.locator(".safety .digits").first().textContent()).trim();
    };
    const a = await digits(alice, bob.name);
    const b = await digits(bob, alice.name);
    if (!/^\d{5}( \d{5}){11}$/.test(a) || a !== b) fail(`safety numbers: ${a} / ${b}`);

    // A second browser of alice's; the first lists both devices and removes the second.
    const second = await User.open(browser, node.url, alice.name);
    await second.logIn(`pw-${alice.name}-long enough`);
    await alice.page.getByRole("button", { name: "Settings", exact: true }).click();
    await waitCount(alice.page.locator(".settings li[data-device]"), 2, "alice's devices");
    await screenshot(alice, "settings");
    await alice.page.getByRole("button", { name: "Remove device", exact: true }).click();
    await second.page.getByText("This device was removed from your account.").waitFor();
    await waitCount(alice.page.locator(".settings li[data-device]"), 1, "alice's devices after removing one");

    // A new password works at the next login; the old one no longer does.
    await alice.page.getByLabel("Current password").fill(`pw-${alice.name}-long enough`);
    await alice.page.getByLabel("New password").fill("a brand new password");
    await alice.page.getByRole("button", { name: "Change password", exact: true }).click();
    await alice.page.getByText("Password changed.", { exact: false }).waitFor();
    await alice.logOut();
    await alice.page.getByLabel("Username").fill(alice.name);
    await alice.page.getByLabel("Password").fill(`pw-${alice.name}-long enough`);
    await alice.page.getByRole("button", { name: "Log in", exact: true }).click();
    await alice.page.getByRole("status").getByText("Wrong username or password.").waitFor();
    // While alice has no device online, bob calls her: the supernode records a missed call,
    // which her browser shows at her next login (with the new password), until dismissed.
    const callId = await rawSession(
      bob,
      async ([to, sdp]) => {
        const { ask, me } = window.__raw;
        const call_id = me.hex(crypto.getRandomValues(new Uint8Array(16)));
        const placed = await ask({ type: "call_invite", call_id, to, sdp, fingerprint_signature: "00".repeat(64) });
        if (placed.error?.code !== "callee_unavailable") throw new Error(JSON.stringify(placed));
        return call_id;
      },
      [alice.name, OFFER_SDP],
    );
    await alice.logIn("a brand new password");
    await alice.page.locator(`li[data-call="${callId}"]`).waitFor();
    await alice.page.getByRole("button", { name: "Dismiss missed calls", exact: true }).click();
    await waitCount(alice.page.locator(`li[data-call="${callId}"]`), 0, "the missed call after dismissing it");
  },

  async "a browser calls a browser: signed fingerprints, direct path, audio both ways, hang up"(browser, node) {
    const alice = await User.open(browser, node.url, unique("alice"));
    const bob = await User.open(browser, node.url, unique("bob"));
    await alice.register();
    await bob.register();
    await alice.ask(bob.name, "call me");
    await (await bob.request(alice.name)).getByRole("button", { name: "Accept", exact: true }).click();
    await alice.waitPresence(bob.name, "online");
    await alice.openChat(bob.name);
    await alice.page.getByRole("button", { name: "Call", exact: true }).click();
    const ring = bob.page.getByRole("region", { name: "Call" });
    await ring.getByText("Incoming call").waitFor();
    await alice.page.getByRole("region", { name: "Call" }).getByText("Ringing…").waitFor();
    await screenshot(bob, "incoming-call");
    await ring.getByRole("button", { name: "Accept", exact: true }).click();
    for (const u of [alice, bob]) {
      const panel = u.page.locator('section.call[data-phase="connected"][data-path="direct"]');
      await panel.waitFor();
      // The fake microphone beeps: each side hears the other (received level above 0).
      await panel.locator('meter[data-level="sound"]').waitFor();
    }
    await screenshot(alice, "in-call");
    await alice.page.getByRole("button", { name: "Hang up", exact: true }).click();
    await bob.page.getByRole("region", { name: "Call" }).getByText("Call ended: hung up").waitFor();
    await alice.page.getByRole("region", { name: "Call" }).getByText("Call ended").waitFor();
    for (const u of [alice, bob]) if (u.errors.length) fail(`${u.name}: page errors: ${u.errors.join("; ")}`);
  },

  async "browser to browser: each side hears the other's tone (checked by frequency)"(_browser, node) {
    const dir = mkdtempSync(join(tmpdir(), "peerline-tones-"));
    const launch = (wav) =>
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${wav}`] });
    const [ba, bb] = await Promise.all([launch(toneWav(join(dir, "a.wav"), 440)), launch(toneWav(join(dir, "b.wav"), 1000))]);
    try {
      const alice = await User.open(ba, node.url, unique("alice"));
      const bob = await User.open(bb, node.url, unique("bob"));
      // The test hears the raw tones: no echo cancellation, noise suppression or gain control.
      for (const u of [alice, bob]) await u.page.evaluate(() => localStorage.setItem("peerline.audio_processing", "0"));
      await alice.register();
      await bob.register();
      await alice.ask(bob.name, "tones");
      await (await bob.request(alice.name)).getByRole("button", { name: "Accept", exact: true }).click();
      await alice.waitPresence(bob.name, "online");
      await alice.openChat(bob.name);
      await alice.page.getByRole("button", { name: "Call", exact: true }).click();
      await bob.page.getByRole("region", { name: "Call" }).getByRole("button", { name: "Accept", exact: true }).click();
      for (const u of [alice, bob]) await u.page.locator('section.call[data-phase="connected"] meter[data-level="sound"]').waitFor();
      const [aliceHears, bobHears] = await Promise.all([heardFrequency(alice), heardFrequency(bob)]);
      if (Math.abs(aliceHears - 1000) > 15) fail(`alice should hear bob's 1000 Hz tone, heard ${aliceHears} Hz`);
      if (Math.abs(bobHears - 440) > 15) fail(`bob should hear alice's 440 Hz tone, heard ${bobHears} Hz`);
      await bob.page.getByRole("button", { name: "Hang up", exact: true }).click();
      await alice.page.getByRole("region", { name: "Call" }).getByText("Call ended: hung up").waitFor();
    } finally {
      await Promise.all([ba.close(), bb.close()]);
      rmSync(dir, { recursive: true, force: true });
    }
  },

  async "Test call: the echo service (the CLI) plays the browser's own tone back"(_browser, node) {
    const dir = mkdtempSync(join(tmpdir(), "peerline-tones-"));
    const echo = await startEchoService(node);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${toneWav(join(dir, "a.wav"), 440)}`],
    });
    try {
      const alice = await User.open(browser, node.url, unique("alice"));
      await alice.page.evaluate(() => localStorage.setItem("peerline.audio_processing", "0"));
      await alice.register();
      await alice.page.getByRole("button", { name: "Test call", exact: true }).click();
      await waitCall(alice, 'section.call[data-phase="connected"][data-path="direct"]');
      await waitCall(alice, 'section.call[data-phase="connected"] meter[data-level="sound"]');
      // The echo comes about two seconds after the call connected.
      const deadline = Date.now() + WAIT;
      let heard = 0;
      while (Date.now() < deadline && Math.abs((heard = await heardFrequency(alice)) - 440) > 15);
      if (Math.abs(heard - 440) > 15) fail(`alice should hear her own 440 Hz tone back, heard ${heard} Hz`);
      await alice.page.getByRole("button", { name: "Hang up", exact: true }).click();
      await alice.page.getByRole("region", { name: "Call" }).getByText("Call ended").waitFor();
      // The service then reports the call in a message.
      await alice.message("").first().waitFor();
    } finally {
      await browser.close();
      await echo.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },

  async "browser and CLI call each other both ways; each hears the other's tone"(_browser, node) {
    const dir = mkdtempSync(join(tmpdir(), "peerline-tones-"));
    const carl = cliUser(node, "carl");
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${toneWav(join(dir, "440.wav"), 440)}`],
    });
    const children = [];
    try {
      toneWav(join(dir, "660.wav"), 660);
      step("carl registers");
      await carl.run(["register", "carl"]);
      const alice = await User.open(browser, node.url, unique("alice"));
      await alice.page.evaluate(() => localStorage.setItem("peerline.audio_processing", "0"));
      await alice.register();
      step("alice asks carl");
      await alice.ask("carl", "from the browser");
      await carl.run(["contacts", "accept", alice.name]);
      step("carl accepted");
      await alice.waitPresence("carl", "offline");

      // The browser calls the CLI, which answers by itself, plays 660 Hz and records.
      const online = await carl.run(["online", "--auto-answer", "--play", join(dir, "660.wav"), "--record", join(dir, "carl1.wav")], /"event":\s*"(online|connected)"/);
      children.push(online);
      step("carl online");
      await alice.waitPresence("carl", "online");
      await alice.openChat("carl");
      await alice.page.getByRole("button", { name: "Call", exact: true }).click();
      await alice.page.locator('section.call[data-phase="connected"] meter[data-level="sound"]').waitFor();
      step("browser → CLI connected");
      const heard1 = await heardFrequency(alice);
      if (Math.abs(heard1 - 660) > 15) fail(`browser → CLI: alice should hear carl's 660 Hz, heard ${heard1} Hz`);
      await alice.page.getByRole("button", { name: "Hang up", exact: true }).click();
      await alice.page.getByRole("region", { name: "Call" }).getByText("Call ended").waitFor();
      await waitFor(() => carl.lines.some((l) => l.includes('"ended"')), "carl's call to end");
      step("carl's call ended");
      await stopChild(online);
      const carlHeard1 = toneWindows(join(dir, "carl1.wav"), 440);
      if (carlHeard1 < 10) fail(`browser → CLI: carl heard alice's 440 Hz in only ${carlHeard1} windows of 100 ms`);
      await alice.page.getByRole("button", { name: "Close", exact: true }).click();

      // The CLI calls the browser; alice accepts.
      const calling = carl.run(["call", alice.name, "--play", join(dir, "660.wav"), "--record", join(dir, "carl2.wav"), "--duration", "4"]);
      step("carl calls alice");
      const ring = alice.page.getByRole("region", { name: "Call" });
      await ring.getByText("Incoming call").waitFor();
      await ring.getByRole("button", { name: "Accept", exact: true }).click();
      await alice.page.locator('section.call[data-phase="connected"] meter[data-level="sound"]').waitFor();
      step("CLI → browser connected");
      const heard2 = await heardFrequency(alice);
      if (Math.abs(heard2 - 660) > 15) fail(`CLI → browser: alice should hear carl's 660 Hz, heard ${heard2} Hz`);
      step(`alice heard ${heard2} Hz`);
      await calling;
      step("carl's call exited");
      await ring.getByText("Call ended: hung up").waitFor();
      step("alice saw the end");
      const carlHeard2 = toneWindows(join(dir, "carl2.wav"), 440);
      if (carlHeard2 < 10) fail(`CLI → browser: carl heard alice's 440 Hz in only ${carlHeard2} windows of 100 ms`);
    } catch (e) {
      step(`failed: ${e}`);
      throw e;
    } finally {
      step("cleaning up");
      for (const c of children) await stopChild(c);
      step("closing the browser");
      await browser.close();
      step("closed");
      carl.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  },

  async "a call whose fingerprint signature does not verify is refused as IDENTITY CHANGED"(browser, node) {
    const alice = await User.open(browser, node.url, unique("alice"));
    const bob = await User.open(browser, node.url, unique("bob"));
    await alice.register();
    await bob.register();
    await alice.ask(bob.name, "hi");
    await (await bob.request(alice.name)).getByRole("button", { name: "Accept", exact: true }).click();
    await alice.waitPresence(bob.name, "online");
    // Bob's device key signs the offer, but the fingerprint in the SDP is not the one signed
    // (what a supernode that swapped it would deliver).
    const ended = await rawSession(
      bob,
      async ([to, sdp]) => {
        const { ask, me } = window.__raw;
        const call_id = me.hex(crypto.getRandomValues(new Uint8Array(16)));
        const signed = `peerline-call-v1\n${call_id}\noffer\n${me.username}\n${to}\nsha-256 ${"AA:".repeat(31)}AA`;
        const sig = await crypto.subtle.sign({ name: "Ed25519" }, me.key.keys.privateKey, new TextEncoder().encode(signed));
        const placed = await ask({ type: "call_invite", call_id, to, sdp, fingerprint_signature: me.hex(sig) });
        if (placed.type !== "ok") throw new Error(JSON.stringify(placed));
        for (let i = 0; i < 200; i++) {
          const end = me.events.find((e) => e.type === "call_ended" && e.call_id === call_id);
          if (end) return end.reason;
          await new Promise((r) => setTimeout(r, 50));
        }
        return "still ringing";
      },
      [alice.name, OFFER_SDP],
    );
    if (ended !== "declined") fail(`the tampered call was not refused: ${ended}`);
    await alice.page.getByRole("alert").getByText("IDENTITY CHANGED", { exact: false }).waitFor();
    await waitCount(alice.page.getByRole("button", { name: "Accept", exact: true }), 0, "an Accept button for the tampered call");
  },

  async "on a 360-pixel phone, by keyboard only: sign in, find the contact, chat, come back"(browser, node) {
    const phone = { width: 360, height: 740 };
    const bob = await User.open(browser, node.url, unique("bob"));
    await bob.register("Bob");
    const alice = await User.open(browser, node.url, unique("alice"), phone);
    const p = alice.page;
    const noSideways = async (where) => {
      const [scroll, width] = await p.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      if (scroll > width) fail(`${where}: the page is ${scroll} px wide on a ${width} px screen`);
    };
    // Register with the keyboard alone: the form's fields in order, then the Register button.
    await p.getByLabel("Username").focus();
    await p.keyboard.type(alice.name);
    await p.keyboard.press("Tab");
    await p.keyboard.type(`pw-${alice.name}-long enough`);
    await p.keyboard.press("Tab");
    await p.keyboard.type("Alice");
    await p.keyboard.press("Tab");
    await p.keyboard.press("Tab");
    const focused = await p.evaluate(() => document.activeElement?.textContent);
    if (focused !== "Register") fail(`Tab order: expected the Register button, focus is on ${JSON.stringify(focused)}`);
    await p.keyboard.press("Enter");
    await p.getByRole("heading", { name: "Contacts" }).waitFor();
    await noSideways("the contact list");
    await p.getByLabel("Search users").focus();
    await p.keyboard.type(bob.name);
    await p.keyboard.press("Enter");
    await p.locator(`nav li[data-username="${bob.name}"]`).getByRole("button", { name: "Add contact" }).focus();
    await p.keyboard.press("Enter");
    await (await bob.request(alice.name)).getByRole("button", { name: "Accept", exact: true }).click();
    await alice.waitPresence(bob.name, "online");
    await alice.contact(bob.name).getByRole("button").focus();
    await p.keyboard.press("Enter");
    const box = p.getByRole("textbox", { name: "Message", exact: true });
    await box.waitFor();
    await noSideways("the chat");
    if (await p.getByRole("heading", { name: "Contacts" }).isVisible()) fail("on a phone the chat should replace the list");
    await box.focus();
    await p.keyboard.type("typed on a phone");
    await p.keyboard.press("Enter");
    await bob.openChat(alice.name);
    await bob.message("typed on a phone").waitFor();
    await screenshot(alice, "phone-chat");
    await p.getByRole("button", { name: "Back", exact: true }).focus();
    await p.keyboard.press("Enter");
    await p.getByRole("heading", { name: "Contacts" }).waitFor();
  },

  async "HTML and script from other users show as text and run nothing; the CSP header is there"(browser, node) {
    const name = '<img src=x onerror="window.__pwned=1;alert(1)">';
    const greeting = '</script><script>window.__pwned=2;alert(2)</script>';
    const text = '<img src=x onerror=window.__pwned=3;alert(3)> <b>bold</b> </script><script>alert(4)</script>';
    const mallory = await User.open(browser, node.url, unique("mallory"));
    const alice = await User.open(browser, node.url, unique("alice"));

    const csp = alice.response.headers()["content-security-policy"] ?? "";
    if (!csp.includes("script-src 'self'") || !csp.includes("frame-ancestors 'none'") || csp.includes("unsafe")) {
      fail(`Content-Security-Policy missing or weak: ${JSON.stringify(csp)}`);
    }
    if (alice.response.headers()["referrer-policy"] !== "no-referrer") fail("Referrer-Policy: no-referrer missing");

    await mallory.register(name);
    await alice.register("Alice");
    await mallory.ask(alice.name, greeting);
    const request = await alice.request(mallory.name);
    await request.getByText(greeting, { exact: true }).waitFor();
    await request.getByText(name, { exact: true }).waitFor();
    await request.getByRole("button", { name: "Accept", exact: true }).click();
    await mallory.waitPresence(alice.name, "online");
    await mallory.openChat(alice.name);
    await mallory.send(text);
    await alice.openChat(mallory.name);
    await alice.message(text).waitFor();
    await alice.page.locator(".chat-head").getByText(name, { exact: true }).waitFor();
    await screenshot(alice, "hostile-text");

    for (const u of [alice, mallory]) {
      const pwned = await u.page.evaluate(() => window.__pwned);
      if (pwned !== undefined) fail(`${u.name}: a payload ran (window.__pwned = ${pwned})`);
      if (u.dialogs.length) fail(`${u.name}: a payload opened dialogs: ${u.dialogs.join(", ")}`);
      const injected = await u.page.locator("#app img, #app b, #app script").count();
      if (injected) fail(`${u.name}: ${injected} elements made from other users' text`);
    }
  },
};

// ---- the runner ----

async function main() {
  if (!existsSync(CHROMIUM)) {
    fail(`no Chromium at ${CHROMIUM}: install Debian's chromium (scripts/setup-web does: apt-get install chromium)`);
  }
  const filter = process.argv[2] ?? "";
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  let failed = 0;
  let ran = 0;
  try {
    for (const [name, test] of Object.entries(tests)) {
      if (!name.includes(filter)) continue;
      ran++;
      const started = Date.now();
      const node = await startSupernode();
      try {
        let timer;
        const timeout = new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the test did not finish within ${TEST_TIMEOUT / 1000} s`)), TEST_TIMEOUT);
        });
        try {
          await Promise.race([test(browser, node), timeout]);
        } finally {
          clearTimeout(timer);
        }
        console.log(`PASS [${((Date.now() - started) / 1000).toFixed(1)} s] ${name}`);
      } catch (e) {
        failed++;
        console.log(`FAIL [${((Date.now() - started) / 1000).toFixed(1)} s] ${name}\n  ${e?.stack ?? e}`);
      } finally {
        await node.stop();
      }
    }
  } finally {
    await browser.close();
  }
  console.log(`${ran - failed} passed, ${failed} failed`);
  if (ran === 0) fail(`no test matches ${JSON.stringify(filter)}`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(`error: ${e?.message ?? e}`);
  process.exit(1);
});
