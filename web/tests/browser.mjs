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
import { createServer, connect } from "node:net";
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

/** Starts the supernode binary on loopback (TLS, self-signed), with `extraArgs` (a `--config`);
 * resolves with its app URL. */
async function startSupernode(extraArgs = []) {
  if (!existsSync(BINARY)) {
    fail(`no supernode binary at ${BINARY}: run \`cargo build -p peerline-supernode --bins\` (scripts/test-web does)`);
  }
  const dir = mkdtempSync(join(tmpdir(), "peerline-web-"));
  const args = ["--data-dir", join(dir, "data"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0", ...extraArgs];
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

  /** Opens the app in a new browser context; `init` runs in every page of it before the app
   * (a Playwright init script, which the app's CSP does not apply to). */
  static async open(browser, url, name, viewport = { width: 1100, height: 750 }, init = undefined) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
    if (init) await context.addInitScript(init);
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    const user = new User(page, name, url);
    user.response = await page.goto(url);
    return user;
  }

  /** Waits for the sign-in form; a timeout says what the page showed instead. */
  async signInForm() {
    const p = this.page;
    await p.getByLabel("Username").waitFor().catch(async (e) => {
      const shown = await p.locator("body").innerText().catch(() => "(no body)");
      fail(`${this.name}: no sign-in form (${e.message.split("\n")[0]}); the page shows: ${shown.replace(/\s+/g, " ").slice(0, 300)}; page errors: ${this.errors.join("; ")}`);
    });
  }

  async register(displayName = "") {
    const p = this.page;
    await this.signInForm();
    await p.getByLabel("Username").fill(this.name);
    await p.getByLabel("Password").fill(`pw-${this.name}-long enough`);
    if (displayName) await p.getByLabel("Display name").fill(displayName);
    await p.getByRole("button", { name: "Register", exact: true }).click();
    await p.getByRole("heading", { name: "Contacts" }).waitFor();
  }

  async logIn(password = `pw-${this.name}-long enough`) {
    const p = this.page;
    await this.signInForm();
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

// ---- coturn, call statistics, the call history ----

/** coturn with the shipped configuration (deploy/coturn/turnserver.conf, logging to a file
 * instead of syslog) on 127.0.0.1, as the
 * test's TURN relay: the REST-API `secret` it shares with the supernode, plain UDP and TCP on
 * `port` (no TLS), and, unlike on the internet, loopback peers allowed (the test's network
 * namespace has nothing else). Resolves once it listens; `log()` is what it logged; `crash()`
 * kills it at once (SIGKILL), as a relay that dies. */
async function startCoturn(secret, port = undefined) {
  const dir = mkdtempSync(join(tmpdir(), "peerline-coturn-"));
  port ??= await freePort();
  const logFile = join(dir, "turn.log");
  // The shipped file, but logging to our file rather than to syslog.
  const shipped = readFileSync(join(root, "deploy", "coturn", "turnserver.conf"), "utf8");
  writeFileSync(join(dir, "turnserver.conf"), shipped.replace(/^syslog\s*$/m, ""));
  const child = spawn(
    "turnserver",
    [
      "-c", join(dir, "turnserver.conf"),
      `--static-auth-secret=${secret}`,
      "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", `--listening-port=${port}`,
      // The shipped config refuses 127.0.0.0/8 as a peer: here it is the only network there is.
      "--allowed-peer-ip=127.0.0.1", "--allow-loopback-peers",
      "--no-tls", "--no-dtls",
      // Sessions and their usage (packets and bytes relayed) are logged only when verbose.
      "--verbose", `--userdb=${join(dir, "turndb")}`,
      "--log-file", logFile, "--pidfile", join(dir, "turn.pid"), "--no-stdout-log", "--simple-log",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  child.on("error", (e) => (stderr += `\n${e.message} (install coturn: apt-get install coturn; scripts/setup-web does)`));
  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const deadline = Date.now() + WAIT;
  for (;;) {
    if (child.exitCode !== null || stderr.includes("install coturn")) fail(`turnserver exited (${child.exitCode}): ${stderr}\n${log()}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) fail(`turnserver did not listen on 127.0.0.1:${port} within ${WAIT} ms: ${stderr}\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    log,
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
    async crash() {
      const gone = new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once("exit", r)));
      child.kill("SIGKILL");
      await gone;
    },
  };
}

/** What coturn's log says the allocations of `username` (its REST name, `EXPIRY:username`)
 * exchanged with their peers: the sums of the packets and bytes received from and sent to the
 * peer (`peer usage` lines, logged when an allocation closes), or undefined before any. */
function peerUsage(log, username) {
  const who = new RegExp(`peer usage: realm=<[^>]*>, username=<\\d+:${username}>`);
  const lines = log.split("\n").filter((l) => who.test(l));
  if (!lines.length) return undefined;
  const sum = { rp: 0, rb: 0, sp: 0, sb: 0 };
  for (const l of lines) for (const k of Object.keys(sum)) sum[k] += Number(new RegExp(`\\b${k}=(\\d+)`).exec(l)?.[1] ?? 0);
  return sum;
}

/** A TCP port nobody listens on at 127.0.0.1 right now (the namespace is the test's own). */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolveConnect) => {
    const socket = connect(port, "127.0.0.1");
    socket.on("connect", () => {
      socket.destroy();
      resolveConnect(true);
    });
    socket.on("error", () => resolveConnect(false));
  });
}

/** An init script that keeps every RTCPeerConnection the page makes in `window.__pcs`, so the
 * test can ask the browser itself (getStats) which path a call took. */
function recordPeerConnections() {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
}

/** What the browser's own statistics say of the last call's media path: the ICE transport
 * policy, the selected pair's local and remote candidate types, the relay protocol, the bytes
 * sent and received on that pair, and the types of every local candidate gathered. */
async function callPath(user) {
  return user.page.evaluate(async () => {
    const pc = window.__pcs[window.__pcs.length - 1];
    const stats = await pc.getStats();
    let pair;
    const localTypes = new Set();
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      if (s.type === "local-candidate") localTypes.add(s.candidateType);
    });
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    return {
      policy: pc.getConfiguration().iceTransportPolicy,
      local: local?.candidateType,
      remote: remote?.candidateType,
      relayProtocol: local?.relayProtocol,
      localAddress: local && `${local.address}:${local.port}`,
      bytesSent: pair?.bytesSent ?? 0,
      bytesReceived: pair?.bytesReceived ?? 0,
      localTypes: [...localTypes].sort(),
    };
  });
}

/** Opens `user`'s call history until an entry matching `selector` (inside the list) shows: a
 * report may reach the supernode just after the history was loaded. Returns the entry. */
async function historyEntry(user, selector) {
  const p = user.page;
  const entry = p.locator(`.history li.logged${selector}`);
  const deadline = Date.now() + WAIT;
  for (;;) {
    if ((await p.locator(".history").count()) === 0) await p.getByRole("button", { name: "Call history", exact: true }).click();
    await p.getByRole("heading", { name: "Call history" }).waitFor();
    try {
      await entry.first().waitFor({ timeout: 1000 });
      return entry;
    } catch {
      if (Date.now() > deadline) {
        const shown = await p.locator(".history").innerText();
        fail(`${user.name}: no call history entry ${selector}; the history shows: ${shown.replace(/\s+/g, " ")}`);
      }
      await p.getByRole("button", { name: "Call history", exact: true }).click(); // closes it
    }
  }
}

/** `a` asks `b` to be a contact and `b` accepts; resolves when `a` sees `b` online. */
async function befriend(a, b) {
  await a.ask(b.name, "hello");
  await (await b.request(a.name)).getByRole("button", { name: "Accept", exact: true }).click();
  await a.waitPresence(b.name, "online");
}

/** Chromium without a granted microphone (`--use-fake-ui-for-media-stream` auto-grants it):
 * `getUserMedia` is refused, as when a user says no. */
function launchWithoutMicPermission() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS.filter((a) => a !== "--use-fake-ui-for-media-stream") });
}

/** Chromium with no microphone at all: no fake capture device, and the test's machine has no
 * sound card in its namespace, so `getUserMedia` finds no device. */
function launchWithoutMicrophone() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS.filter((a) => a !== "--use-fake-device-for-media-stream") });
}

/** An init script that stands in for the desktop: `Notification` records what the app shows
 * in `window.__notifications` (permission granted), and `window.__setHidden(true)` makes the
 * tab hidden (document.visibilityState, a visibilitychange event), as when the user is in
 * another tab. */
function fakeDesktop() {
  window.__notifications = [];
  let hidden = false;
  class RecordingNotification {
    static permission = "granted";
    static requestPermission() {
      return Promise.resolve("granted");
    }
    constructor(title, options = {}) {
      window.__notifications.push({ title, body: options.body, tag: options.tag, hidden });
    }
    close() {}
  }
  window.Notification = RecordingNotification;
  Object.defineProperty(Document.prototype, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => hidden });
  window.__setHidden = (h) => {
    hidden = h;
    document.dispatchEvent(new Event("visibilitychange"));
  };
}

/** A TCP proxy in front of the supernode's client port (TLS passes through untouched): a page
 * opened at `url` talks to the supernode through it. `cut()` abandons every connection as a
 * phone that changed networks does: the browser's side is reset at once, the supernode's side
 * is left open and silent (so the supernode has not noticed yet). `accepted` counts the
 * connections made through it. */
async function startProxy(targetUrl) {
  const target = Number(new URL(targetUrl).port);
  const live = new Set();
  const abandoned = [];
  const proxy = { accepted: 0 };
  const server = createServer((client) => {
    proxy.accepted++;
    const upstream = connect(target, "127.0.0.1");
    const pair = { client, upstream };
    live.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const close = () => {
      if (!live.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", close);
      s.on("close", close);
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  proxy.url = `https://127.0.0.1:${server.address().port}/`;
  proxy.cut = () => {
    for (const pair of [...live]) {
      live.delete(pair);
      pair.client.unpipe(pair.upstream);
      pair.upstream.unpipe(pair.client);
      pair.upstream.pause();
      abandoned.push(pair.upstream);
      pair.client.resetAndDestroy();
    }
  };
  proxy.stop = async () => {
    for (const pair of live) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    for (const s of abandoned) s.destroy();
    await new Promise((r) => server.close(r));
  };
  return proxy;
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
  async "Always relay calls: the call goes through coturn (getStats says relay) and each side hears the other's tone"(_browser, _node) {
    const dir = mkdtempSync(join(tmpdir(), "peerline-relay-"));
    const secret = "web-test-turn-secret-0123456789abcdef";
    const turn = await startCoturn(secret);
    const config = join(dir, "supernode.toml");
    writeFileSync(config, `[turn]\nstatic_auth_secret = "${secret}"\nurls = ["turn:127.0.0.1:${turn.port}?transport=udp", "turn:127.0.0.1:${turn.port}?transport=tcp"]\n`);
    const node = await startSupernode(["--config", config]);
    const launch = (wav) =>
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${wav}`] });
    const [ba, bb] = await Promise.all([launch(toneWav(join(dir, "a.wav"), 440)), launch(toneWav(join(dir, "b.wav"), 1000))]);
    try {
      const alice = await User.open(ba, node.url, unique("alice"), undefined, recordPeerConnections);
      const bob = await User.open(bb, node.url, unique("bob"), undefined, recordPeerConnections);
      for (const u of [alice, bob]) await u.page.evaluate(() => localStorage.setItem("peerline.audio_processing", "0"));
      await alice.register();
      await bob.register();
      await befriend(alice, bob);
      step("alice turns on Always relay calls");
      await alice.page.getByRole("button", { name: "Settings", exact: true }).click();
      await alice.page.getByRole("checkbox", { name: "Always relay calls", exact: false }).check();
      await alice.page.getByRole("button", { name: "Settings", exact: true }).click();
      await alice.openChat(bob.name);
      await alice.page.getByRole("button", { name: "Call", exact: true }).click();
      await bob.page.getByRole("region", { name: "Call" }).getByRole("button", { name: "Accept", exact: true }).click();
      step("waiting for the relayed call");
      for (const u of [alice, bob]) {
        await waitCall(u, 'section.call[data-phase="connected"][data-path="relay"]');
        await waitCall(u, 'section.call[data-phase="connected"] meter[data-level="sound"]');
      }
      await alice.page.getByRole("region", { name: "Call" }).getByText("· relay", { exact: false }).waitFor();
      const [aliceHears, bobHears] = await Promise.all([heardFrequency(alice), heardFrequency(bob)]);
      if (Math.abs(aliceHears - 1000) > 15) fail(`alice should hear bob's 1000 Hz tone through the relay, heard ${aliceHears} Hz`);
      if (Math.abs(bobHears - 440) > 15) fail(`bob should hear alice's 440 Hz tone through the relay, heard ${bobHears} Hz`);
      // The browser's own statistics: alice gathered relay candidates only (no address of hers
      // was offered) and the selected pair goes through coturn's UDP relay port.
      const a = await callPath(alice);
      const b = await callPath(bob);
      step(`alice: ${JSON.stringify(a)}; bob: ${JSON.stringify(b)}`);
      if (a.policy !== "relay") fail(`alice's peer connection has iceTransportPolicy ${a.policy}, not relay`);
      if (a.localTypes.join() !== "relay") fail(`alice gathered ${a.localTypes.join(", ")} candidates; with Always relay calls only relay ones`);
      if (a.local !== "relay" || a.relayProtocol !== "udp") fail(`alice's selected pair is not through the relay: ${JSON.stringify(a)}`);
      if (b.remote !== "relay") fail(`bob's selected pair does not lead to alice's relay address: ${JSON.stringify(b)}`);
      if (a.bytesReceived < 10_000 || a.bytesSent < 10_000) fail(`little media on alice's relayed pair: ${JSON.stringify(a)}`);
      // coturn itself saw alice's allocation, with her short-lived REST username.
      await screenshot(alice, "in-call-relay");
      await alice.page.getByRole("button", { name: "Hang up", exact: true }).click();
      await bob.page.getByRole("region", { name: "Call" }).getByText("Call ended: hung up").waitFor();
      // coturn itself relayed the media of alice's allocation (her short-lived REST username)
      // to and from bob, both ways: it logs that when the allocation closes, at the hang-up.
      const relayed = () => peerUsage(turn.log(), alice.name);
      await waitFor(() => relayed()?.rb >= 10_000 && relayed()?.sb >= 10_000, `coturn to relay the call both ways`).catch((e) => {
        const lines = turn.log().split("\n").filter((l) => l.includes("usage") || l.includes("closed"));
        fail(`${e.message} (${JSON.stringify(relayed())}); coturn's log:\n${lines.slice(-20).join("\n")}`);
      });
      step(`coturn relayed ${JSON.stringify(relayed())}`);
      // The call history says the call went through a relay.
      const entry = await historyEntry(alice, '[data-direction="outgoing"][data-path="relay"]');
      await entry.getByText("through a relay", { exact: false }).waitFor();
      for (const u of [alice, bob]) if (u.errors.length) fail(`${u.name}: page errors: ${u.errors.join("; ")}`);
    } finally {
      await Promise.all([ba.close(), bb.close()]);
      await node.stop();
      await turn.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },

  async "a relayed call survives its relay dying: the caller restarts ICE on a new relay, the tones come back"(_browser, _node) {
    const dir = mkdtempSync(join(tmpdir(), "peerline-restart-"));
    const secret = "web-test-turn-secret-0123456789abcdef";
    let turn = await startCoturn(secret);
    const config = join(dir, "supernode.toml");
    writeFileSync(config, `[turn]\nstatic_auth_secret = "${secret}"\nurls = ["turn:127.0.0.1:${turn.port}?transport=udp"]\n`);
    const node = await startSupernode(["--config", config]);
    const launch = (wav) =>
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${wav}`] });
    const [ba, bb] = await Promise.all([launch(toneWav(join(dir, "a.wav"), 440)), launch(toneWav(join(dir, "b.wav"), 1000))]);
    try {
      const alice = await User.open(ba, node.url, unique("alice"), undefined, recordPeerConnections);
      const bob = await User.open(bb, node.url, unique("bob"), undefined, recordPeerConnections);
      for (const u of [alice, bob]) await u.page.evaluate(() => localStorage.setItem("peerline.audio_processing", "0"));
      // Alice's calls go through the relay only (what "Always relay calls" stores).
      await alice.page.evaluate(() => localStorage.setItem("peerline.relay_only", "1"));
      await alice.register();
      await bob.register();
      await befriend(alice, bob);
      await alice.openChat(bob.name);
      await alice.page.getByRole("button", { name: "Call", exact: true }).click();
      await bob.page.getByRole("region", { name: "Call" }).getByRole("button", { name: "Accept", exact: true }).click();
      for (const u of [alice, bob]) await waitCall(u, 'section.call[data-phase="connected"][data-path="relay"] meter[data-level="sound"]');
      const before = await callPath(alice);
      if (before.local !== "relay") fail(`alice's call is not relayed: ${JSON.stringify(before)}`);

      step(`the relay dies (alice's relay address was ${before.localAddress}); a new one starts on the same port`);
      await turn.crash();
      await turn.stop();
      turn = await startCoturn(secret, turn.port);
      // Alice (the caller) restarts ICE; bob answers the restart; the call goes on, relayed.
      const back = (u) => u.page.locator('section.call[data-phase="connected"][data-path="relay"]:not([data-reconnecting]):not([data-restarts="0"])');
      for (const u of [alice, bob]) await back(u).waitFor({ timeout: 60_000 });
      const after = await callPath(alice);
      step(`restarted ${await back(alice).getAttribute("data-restarts")} time(s): alice now on ${after.localAddress}`);
      if (after.local !== "relay" || after.localAddress === before.localAddress) fail(`alice's media did not move to a new relay allocation: ${JSON.stringify(after)}`);
      const [aliceHears, bobHears] = await Promise.all([heardFrequency(alice), heardFrequency(bob)]);
      if (Math.abs(aliceHears - 1000) > 15) fail(`after the restart alice should hear bob's 1000 Hz, heard ${aliceHears} Hz`);
      if (Math.abs(bobHears - 440) > 15) fail(`after the restart bob should hear alice's 440 Hz, heard ${bobHears} Hz`);
      await alice.page.getByRole("button", { name: "Hang up", exact: true }).click();
      await bob.page.getByRole("region", { name: "Call" }).getByText("Call ended: hung up").waitFor();
      // The new relay carried the call after the restart.
      const relayed = () => peerUsage(turn.log(), alice.name);
      await waitFor(() => relayed()?.rb >= 5_000 && relayed()?.sb >= 5_000, "the new relay to carry the call both ways");
      step(`the new relay carried ${JSON.stringify(relayed())}`);
      for (const u of [alice, bob]) if (u.errors.length) fail(`${u.name}: page errors: ${u.errors.join("; ")}`);
    } finally {
      await Promise.all([ba.close(), bb.close()]);
      await node.stop();
      await turn.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  },

  async "an answered call outlives a lost supernode connection: the browser reconnects and takes it over (call_resume)"(browser, node) {
    const proxy = await startProxy(node.url);
    try {
      const alice = await User.open(browser, proxy.url, unique("alice"));
      const bob = await User.open(browser, node.url, unique("bob"));
      await alice.register();
      await bob.register();
      await befriend(alice, bob);
      await alice.openChat(bob.name);
      await alice.page.getByRole("button", { name: "Call", exact: true }).click();
      await bob.page.getByRole("region", { name: "Call" }).getByRole("button", { name: "Accept", exact: true }).click();
      for (const u of [alice, bob]) await waitCall(u, 'section.call[data-phase="connected"][data-path="direct"] meter[data-level="sound"]');

      step("alice's connection to the supernode is cut (the supernode does not notice)");
      const before = proxy.accepted;
      await proxy.cut();
      // Alice logs in again through a new connection and takes the call over; the media went on
      // peer to peer meanwhile.
      await waitFor(() => proxy.accepted > before, "alice to reconnect");
      await alice.page.locator('nav li.entry[data-presence="online"]').first().waitFor();
      const resumed = 'section.call[data-phase="connected"]:not([data-resuming])';
      await waitCall(alice, resumed);
      await waitCall(alice, `${resumed} meter[data-level="sound"]`);
      await waitCount(alice.page.getByRole("alert").getByText("Connection lost", { exact: false }), 0, "the connection-lost banner after the reconnect");
      // Bob's call never ended; alice's hang-up reaches him through her new connection.
      await waitCall(bob, 'section.call[data-phase="connected"] meter[data-level="sound"]');
      await alice.page.getByRole("button", { name: "Hang up", exact: true }).click();
      await bob.page.getByRole("region", { name: "Call" }).getByText("Call ended: hung up").waitFor();
      for (const u of [alice, bob]) if (u.errors.length) fail(`${u.name}: page errors: ${u.errors.join("; ")}`);
    } finally {
      await proxy.stop();
    }
  },

  async "the call history lists outgoing, incoming, missed and declined calls with their duration, on each side"(browser, node) {
    const alice = await User.open(browser, node.url, unique("alice"));
    const bob = await User.open(browser, node.url, unique("bob"));
    await alice.register("Alice");
    await bob.register("Bob");
    await befriend(alice, bob);
    await alice.openChat(bob.name);
    const aliceCall = alice.page.getByRole("region", { name: "Call" });
    const bobCall = bob.page.getByRole("region", { name: "Call" });

    step("an answered call of at least 2 s, which bob hangs up");
    await alice.page.getByRole("button", { name: "Call", exact: true }).click();
    await bobCall.getByRole("button", { name: "Accept", exact: true }).click();
    await aliceCall.getByText(/Connected 0:0[2-9]/).waitFor();
    await bob.page.getByRole("button", { name: "Hang up", exact: true }).click();
    await aliceCall.getByText("Call ended: hung up").waitFor();
    await aliceCall.getByRole("button", { name: "Close", exact: true }).click();
    await bobCall.getByRole("button", { name: "Close", exact: true }).click();

    step("a call alice gives up while it rings: missed for bob");
    await alice.openChat(bob.name);
    await alice.page.getByRole("button", { name: "Call", exact: true }).click();
    await bobCall.getByText("Incoming call").waitFor();
    await aliceCall.getByText("Ringing…").waitFor();
    await alice.page.getByRole("button", { name: "Hang up", exact: true }).click();
    await bobCall.getByText("Call ended: cancelled").waitFor();
    await aliceCall.getByRole("button", { name: "Close", exact: true }).click();
    await bobCall.getByRole("button", { name: "Close", exact: true }).click();

    step("a call bob declines");
    await alice.openChat(bob.name);
    await alice.page.getByRole("button", { name: "Call", exact: true }).click();
    await bobCall.getByRole("button", { name: "Decline", exact: true }).click();
    await aliceCall.getByText("Call ended: declined").waitFor();

    step("alice's history");
    const answered = await historyEntry(alice, '[data-direction="outgoing"][data-reason="hung_up"][data-path="direct"]');
    const seconds = Number(await answered.getAttribute("data-seconds"));
    if (!(seconds >= 2 && seconds < 60)) fail(`alice's answered call lasted ${seconds} s in the history`);
    await answered.getByText(`0:0${seconds}`, { exact: false }).waitFor();
    await answered.getByText("Outgoing").waitFor();
    await answered.getByText("they hung up", { exact: false }).waitFor();
    const cancelled = await historyEntry(alice, '[data-direction="outgoing"][data-reason="cancelled_here"]');
    if ((await cancelled.getAttribute("data-seconds")) !== null) fail("a cancelled call has a duration in the history");
    await historyEntry(alice, '[data-direction="outgoing"][data-reason="declined"]');
    await waitCount(alice.page.locator(".history li.logged"), 3, "alice's calls in her history");
    await screenshot(alice, "call-history");

    step("bob's history");
    const incoming = await historyEntry(bob, '[data-direction="incoming"][data-reason="hung_up_here"][data-path="direct"]');
    const bobSeconds = Number(await incoming.getAttribute("data-seconds"));
    if (Math.abs(bobSeconds - seconds) > 1) fail(`the same call lasted ${seconds} s for alice and ${bobSeconds} s for bob`);
    await incoming.getByText("Incoming").waitFor();
    const missed = await historyEntry(bob, '[data-direction="missed"]');
    await missed.getByText("Missed").waitFor();
    await missed.getByText("Alice", { exact: true }).waitFor();
    await historyEntry(bob, '[data-direction="incoming"][data-reason="declined_here"]');
    await waitCount(bob.page.locator(".history li.logged"), 3, "bob's calls in his history");
    // Newest first: the declined call, then the missed one, then the answered one.
    const order = await bob.page.locator(".history li.logged").evaluateAll((els) => els.map((e) => e.dataset.reason));
    if (order.join() !== "declined_here,missed,hung_up_here") fail(`bob's history is not newest first: ${order.join(", ")}`);
    for (const u of [alice, bob]) if (u.errors.length) fail(`${u.name}: page errors: ${u.errors.join("; ")}`);
  },

  async "a refused microphone or no microphone is said in words, on either side of a call"(browser, node) {
    const [denied, none] = await Promise.all([launchWithoutMicPermission(), launchWithoutMicrophone()]);
    try {
      const alice = await User.open(browser, node.url, unique("alice"));
      const dora = await User.open(denied, node.url, unique("dora"));
      const nico = await User.open(none, node.url, unique("nico"));
      for (const u of [alice, dora, nico]) await u.register();
      await befriend(dora, alice);
      await befriend(nico, alice);

      step("dora, who refused the microphone, calls");
      await dora.openChat(alice.name);
      await dora.page.getByRole("button", { name: "Call", exact: true }).click();
      await dora.page.getByRole("region", { name: "Call" }).getByText("Call ended: Microphone permission denied: allow the microphone for this site to call.").waitFor();
      // Nothing rang: the call stopped before the invite.
      await waitCount(alice.page.getByRole("region", { name: "Call" }), 0, "a call screen at alice for dora's call without a microphone");
      await screenshot(dora, "microphone-denied");

      step("nico, who has no microphone, calls");
      await nico.openChat(alice.name);
      await nico.page.getByRole("button", { name: "Call", exact: true }).click();
      await nico.page.getByRole("region", { name: "Call" }).getByText("Call ended: No microphone found: connect one to call.").waitFor();
      await waitCount(alice.page.getByRole("region", { name: "Call" }), 0, "a call screen at alice for nico's call without a microphone");

      step("alice calls dora, who accepts without a microphone");
      await alice.openChat(dora.name);
      await alice.page.getByRole("button", { name: "Call", exact: true }).click();
      await dora.page.getByRole("region", { name: "Call" }).getByRole("button", { name: "Accept", exact: true }).click();
      await dora.page.getByRole("region", { name: "Call" }).getByText("Microphone permission denied", { exact: false }).waitFor();
      // The caller hears why: dora's device cannot take calls (call_decline, no_audio_device).
      await alice.page.getByRole("region", { name: "Call" }).getByText("Call ended: the other device has no microphone or speaker").waitFor();
      await alice.page.getByRole("button", { name: "Close", exact: true }).click();

      step("alice calls nico, who accepts without a microphone");
      await alice.openChat(nico.name);
      await alice.page.getByRole("button", { name: "Call", exact: true }).click();
      await nico.page.getByRole("region", { name: "Call" }).getByRole("button", { name: "Accept", exact: true }).click();
      await nico.page.getByRole("region", { name: "Call" }).getByText("No microphone found", { exact: false }).waitFor();
      await alice.page.getByRole("region", { name: "Call" }).getByText("Call ended: the other device has no microphone or speaker").waitFor();
      for (const u of [alice, dora, nico]) if (u.errors.length) fail(`${u.name}: page errors: ${u.errors.join("; ")}`);
    } finally {
      await Promise.all([denied.close(), none.close()]);
    }
  },

  async "desktop notifications for messages and calls while the tab is hidden, none while it is seen"(browser, node) {
    const alice = await User.open(browser, node.url, unique("alice"), undefined, fakeDesktop);
    const bob = await User.open(browser, node.url, unique("bob"));
    await alice.register("Alice");
    await bob.register("Bob <b>Builder</b>");
    await befriend(bob, alice);
    await alice.page.getByRole("button", { name: "Settings", exact: true }).click();
    await alice.page.getByRole("button", { name: "Enable notifications", exact: true }).click();
    await alice.page.getByText("Notifications are on.").waitFor();
    await alice.page.getByRole("button", { name: "Settings", exact: true }).click();
    const notes = () => alice.page.evaluate(() => window.__notifications);

    step("a message while alice looks at the tab: no notification");
    await bob.openChat(alice.name);
    await bob.send("seen in the tab");
    await alice.contact(bob.name).locator('[data-unread="1"]').waitFor();
    if ((await notes()).length) fail(`a notification while the tab was visible: ${JSON.stringify(await notes())}`);

    step("alice switches to another tab; a message, then a call");
    await alice.page.evaluate(() => window.__setHidden(true));
    await bob.send("while you were elsewhere <script>alert(1)</script>");
    let got = [];
    const deadline = Date.now() + WAIT;
    while (Date.now() < deadline && (got = await notes()).length < 1) await new Promise((r) => setTimeout(r, 50));
    const message = got[0];
    if (!message || message.title !== "Bob <b>Builder</b>" || message.body !== "while you were elsewhere <script>alert(1)</script>" || !message.hidden) {
      fail(`the message notification: ${JSON.stringify(got)}`);
    }
    await bob.page.getByRole("button", { name: "Call", exact: true }).click();
    const ring = alice.page.getByRole("region", { name: "Call" });
    await ring.getByText("Incoming call").waitFor();
    while (Date.now() < deadline + WAIT && (got = await notes()).length < 2) await new Promise((r) => setTimeout(r, 50));
    if (got.length !== 2 || got[1].title !== "Bob <b>Builder</b>" || got[1].body !== "Incoming call") fail(`the call notification: ${JSON.stringify(got)}`);
    await ring.getByRole("button", { name: "Decline", exact: true }).click();
    await bob.page.getByRole("region", { name: "Call" }).getByText("Call ended: declined").waitFor();
    if (alice.dialogs.length || bob.dialogs.length) fail(`dialogs opened: ${[...alice.dialogs, ...bob.dialogs].join(", ")}`);
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
