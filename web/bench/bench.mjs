// Benchmarks of the web client for docs/performance.md (issue 14), never timed tests: the app's
// compressed size, the time from opening the page to a usable contact list, and the set-up time
// of browser → CLI and CLI → browser calls (dial → connected), each over several runs (p50/p95). Debian's
// Chromium (playwright-core, executablePath) against the real supernode and CLI binaries, on
// loopback, inside a network namespace of its own like the browser tests:
//
//   unshare -n -- sh -c 'ip link set lo up && exec node web/bench/bench.mjs'
//
//   PEERLINE_SUPERNODE, PEERLINE_CLI  the binaries (default: target/release/…; build them with
//                                     `cargo build --release -p peerline-supernode -p peerline-cli --bins`
//                                     after `npm run build` in web/, so the app is inside)
//   CHROMIUM                          the browser (default: /usr/bin/chromium)
//   PEERLINE_BENCH_RUNS               runs per figure (default: 20)
//
// Prints one JSON line per figure (the machine, the load average before and after included),
// then a summary.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpus, tmpdir } from "node:os";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, "target");
const SUPERNODE = process.env.PEERLINE_SUPERNODE ?? join(target, "release", "peerline-supernode");
const CLI = process.env.PEERLINE_CLI ?? join(target, "release", "peerline");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const RUNS = Number(process.env.PEERLINE_BENCH_RUNS ?? 20);
const WAIT = 30_000;
// ../shared/BROWSER.md's settings, as in web/tests/browser.mjs.
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
];

const loadavg = () => readFileSync("/proc/loadavg", "utf8").trim();
const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const summary = (xs) => ({
  runs: xs.length,
  p50_ms: Math.round(percentile(xs, 50)),
  p95_ms: Math.round(percentile(xs, 95)),
  min_ms: Math.round(Math.min(...xs)),
  max_ms: Math.round(Math.max(...xs)),
});
const report = (figure, values) => console.log(JSON.stringify({ figure, ...values }));

async function stop(child) {
  if (child.exitCode === null && child.signalCode === null) {
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await gone;
  }
}

/** The supernode on 127.0.0.1 (port 0), its app URL once it serves. Its limit of calls placed
 * per user and minute (10 by default) is raised: the bench places 20 in a row. */
async function startSupernode(dir) {
  const config = join(dir, "supernode.toml");
  writeFileSync(config, "[calls]\ninvites_per_minute = 1000.0\n");
  const args = ["--config", config, "--data-dir", join(dir, "data"), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--stun-listen", "127.0.0.1:0"];
  const child = spawn(SUPERNODE, args, { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr.on("data", (d) => (err = (err + d).slice(-2000)));
  const url = await new Promise((ok, no) => {
    const timer = setTimeout(() => no(new Error(`the supernode did not start: ${err}`)), WAIT);
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = /^web client on (https:\/\/\S+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.on("exit", (code) => no(new Error(`the supernode exited (${code}): ${err}`)));
  });
  return { url, wss: url.replace(/^https:/, "wss:").replace(/\/$/, ""), child };
}

/** `peerline --json ARGS` as `name`; resolves with the child once stdout matches `until`
 * (or, without it, once it exited 0). */
function cli(node, home, name, args, until, lines = []) {
  const env = { ...process.env, PEERLINE_HOME: home, PEERLINE_SUPERNODE: node.wss, PEERLINE_PASSWORD: `${name}-secret-pw` };
  return new Promise((ok, no) => {
    const child = spawn(CLI, ["--json", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stderr.on("data", (d) => (err = (err + d).slice(-2000)));
    child.stdout.on("data", (d) => {
      out += d;
      lines.push(...String(d).split("\n").filter(Boolean));
      if (until && until.test(out)) ok(child);
    });
    child.on("exit", (code) => (!until && code === 0 ? ok(child) : no(new Error(`peerline ${args.join(" ")} exited ${code}: ${out} ${err}`))));
  });
}

/** A 48 kHz mono 16-bit WAV of a 660 Hz sine, for the CLI to play (the namespace has no sound
 * card, and a CLI without audio declines calls). */
function toneWav(path, seconds = 5) {
  const n = 48000 * seconds;
  const buf = Buffer.alloc(44 + 2 * n);
  buf.write("RIFF", 0);
  buf.writeUInt32LE(36 + 2 * n, 4);
  buf.write("WAVEfmt ", 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(48000, 24);
  buf.writeUInt32LE(96000, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36);
  buf.writeUInt32LE(2 * n, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 660 * i) / 48000) * 16000), 44 + 2 * i);
  writeFileSync(path, buf);
  return path;
}

/** In the page, before the app: the moment (performance.now(), ms since navigation start) the
 * contact list first shows an accepted contact's button, the moment of each click on "Call",
 * and the moment each call screen turns "connected"; and, once `window.__autoAccept` is set,
 * a click on "Accept" as soon as a call rings. */
function instrument() {
  window.__marks = { contacts: undefined, dial: [], connected: [] };
  new MutationObserver(() => {
    const m = window.__marks;
    if (m.contacts === undefined && document.querySelector("nav li.entry[data-username] button")) m.contacts = performance.now();
    // With __autoAccept, an incoming call is accepted as soon as it shows (no human delay).
    const accept = window.__autoAccept && document.querySelector('section.call[data-phase="incoming"] button');
    if (accept && accept.textContent.trim() === "Accept" && !accept.__clicked) {
      accept.__clicked = true;
      accept.click();
    }
    const call = document.querySelector('section.call[data-phase="connected"]');
    if (call && !call.__counted) {
      call.__counted = true;
      m.connected.push(performance.now());
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-phase"] });
  document.addEventListener(
    "click",
    (e) => {
      const b = e.target instanceof Element && e.target.closest("button");
      if (b && b.textContent.trim() === "Call") window.__marks.dial.push(performance.now());
    },
    true,
  );
}

async function main() {
  for (const [what, path] of [["supernode", SUPERNODE], ["CLI", CLI], ["Chromium", CHROMIUM]]) {
    if (!existsSync(path)) throw new Error(`no ${what} at ${path} (see the usage at the top of web/bench/bench.mjs)`);
  }
  const machine = {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    chromium: execFileSync(CHROMIUM, ["--version"], { encoding: "utf8" }).trim().split("\n").pop(),
    node: process.version,
    supernode: SUPERNODE,
    cli: CLI,
  };
  report("machine", { ...machine, loadavg_before: loadavg() });

  // 1. The app's compressed size (web/scripts/bundle-size.mjs over web/dist).
  const size = spawnSync(process.execPath, [join(root, "web", "scripts", "bundle-size.mjs")], { encoding: "utf8" });
  const line = size.stdout.split("\n").find((l) => l.startsWith("web client:")) ?? size.stderr;
  report("bundle_gzip", { line });

  const dir = mkdtempSync(join(tmpdir(), "peerline-bench-"));
  const node = await startSupernode(dir);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const children = [];
  try {
    const carlHome = join(dir, "carl");
    const carlLines = [];
    await cli(node, carlHome, "carl", ["register", "carl"]);
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    await context.addInitScript(instrument);
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    await page.goto(node.url);
    const me = `bench${Math.random().toString(36).slice(2, 8)}`;
    await page.getByLabel("Username").fill(me);
    await page.getByLabel("Password").fill(`pw-${me}-long enough`);
    await page.getByRole("button", { name: "Register", exact: true }).click();
    await page.getByLabel("Search users").fill("carl");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.locator('nav li[data-username="carl"]').getByRole("button", { name: "Add contact" }).click();
    await cli(node, carlHome, "carl", ["contacts", "accept", me]);
    await page.locator('nav li.entry[data-username="carl"]').waitFor();

    // 2. Opening the page to a usable contact list (a returning user: login with the saved
    // token, then the list), with the assets in the HTTP cache and with an empty cache.
    const cdp = await context.newCDPSession(page);
    for (const [figure, cold] of [["page_to_contacts_warm_cache", false], ["page_to_contacts_cold_cache", true]]) {
      const times = [];
      for (let i = 0; i < RUNS; i++) {
        if (cold) await cdp.send("Network.clearBrowserCache");
        await page.goto(node.url);
        await page.locator('nav li.entry[data-username="carl"] button').waitFor();
        times.push(await page.evaluate(() => window.__marks.contacts));
      }
      report(figure, { ...summary(times), what: "navigation start → first accepted contact's button in the DOM (token login, 1 contact)" });
    }

    // 3. Browser → CLI calls: click "Call" → the call screen says connected (DTLS up), with
    // `peerline online --auto-answer` answering at once.
    const online = await cli(node, carlHome, "carl", ["online", "--auto-answer", "--play", toneWav(join(dir, "660.wav")), "--record", join(dir, "carl.wav")], /"event":\s*"(online|connected)"/, carlLines);
    children.push(online);
    await page.goto(node.url);
    await page.locator('nav li.entry[data-username="carl"][data-presence="online"] button').click();
    const setups = [];
    for (let i = 0; i < RUNS; i++) {
      const endedBefore = carlLines.filter((l) => l.includes('"ended"')).length;
      await page.getByRole("button", { name: "Call", exact: true }).click();
      await page.locator('section.call[data-phase="connected"]').waitFor().catch(async (e) => {
        const shown = await page.locator("section.call").innerText().catch(() => "no call screen");
        throw new Error(`call ${i + 1} did not connect (${shown.replace(/\s+/g, " ")}): ${e.message.split("\n")[0]}; CLI: ${carlLines.slice(-5).join(" ")}`);
      });
      setups.push(await page.evaluate(() => window.__marks.connected.at(-1) - window.__marks.dial.at(-1)));
      await page.getByRole("button", { name: "Hang up", exact: true }).click();
      await page.getByRole("button", { name: "Close", exact: true }).click();
      const deadline = Date.now() + WAIT;
      while (carlLines.filter((l) => l.includes('"ended"')).length <= endedBefore) {
        if (Date.now() > deadline) throw new Error("the CLI did not see the call end");
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    report("browser_to_cli_call_setup", { ...summary(setups), what: "click on Call → RTCPeerConnection connected (browser side), CLI auto-answers" });
    await stop(online);
    children.length = 0;

    // 4. CLI → browser calls: `peerline call` dials, the browser accepts as soon as it rings;
    // the CLI's own dial → connected (its `connected` event).
    await page.evaluate(() => (window.__autoAccept = true));
    const cliSetups = [];
    for (let i = 0; i < RUNS; i++) {
      const lines = [];
      await cli(node, carlHome, "carl", ["call", me, "--play", join(dir, "660.wav"), "--record", join(dir, "carl.wav"), "--duration", "1"], undefined, lines);
      const connected = lines.map((l) => JSON.parse(l)).find((e) => e.event === "connected");
      if (!connected) throw new Error(`peerline call printed no connected event: ${lines.join(" ")}`);
      cliSetups.push(connected.dial_to_connected_ms);
    }
    report("cli_to_browser_call_setup", { ...summary(cliSetups), what: "peerline call: dial → connected (CLI side), the browser accepts as soon as it rings" });
  } finally {
    for (const c of children) await stop(c);
    await browser.close();
    await stop(node.child);
    rmSync(dir, { recursive: true, force: true });
  }
  report("done", { loadavg_after: loadavg() });
}

main().catch((e) => {
  console.error(`error: ${e?.stack ?? e}`);
  process.exit(1);
});
