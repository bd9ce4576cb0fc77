//! The supernode's STUN responder under attack, in the NAT lab (`crates/testkit/src/netlab.rs`),
//! against the real binaries (issue 5):
//!
//! - a flood of garbage, truncated, malformed and oversize STUN-looking datagrams from an attacker
//!   host neither crashes the supernode nor keeps its users from registering, logging in,
//!   messaging, learning their public address and calling each other directly, and every kind is
//!   counted in /metrics;
//! - Binding requests whose IPv4 source is forged to be a victim's address (raw socket,
//!   hand-built headers) are answered to the victim, which proves the forgery reaches the
//!   responder, but a sustained forged flood only gets the victim the rate-limited trickle of
//!   `crates/stun/src/rate_limit.rs` (burst 40, then 20 a second) and never more bytes than the
//!   attacker sent.
//!
//! The packets are made and counted by a small Python program (`TOOL`, run with `python3 -c`
//! inside a lab host through `ip netns exec`). Needs root, iproute2, iptables and python3; fails
//! (never skips) without them. Runs in the `netlab` nextest group, one test at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use peerline_media::write_tone_wav;
use peerline_testkit::netlab::{Host, Lab, NatKind};
use peerline_testkit::{Supernode, User};
use serde_json::Value;

/// The supernode's STUN port in the lab (`Supernode::start_in`).
const STUN_PORT: &str = "3478";

/// Answers the responder gives one source back to back, then per second
/// (`RateLimitConfig::default()` in `crates/stun/src/rate_limit.rs`).
const SOURCE_BURST: f64 = 40.0;
const SOURCE_PER_SECOND: f64 = 20.0;

/// Bytes XOR-MAPPED-ADDRESS adds to an answer to an IPv4 source: the most by which an answer
/// may exceed its request (`peerline_stun::xor_mapped_address_len`).
const XOR_MAPPED_ADDRESS_V4: u64 = 12;

/// The attacker's, victim's and client's side: `python3 -c TOOL MODE ARGS...`.
///
/// - `flood IP PORT MIN MAX_SECS`: garbage until stdin closes (and at least MIN sent); prints
///   `{"flooding":true}` once under way, then a summary of what it sent.
/// - `binding IP PORT SECS`: a Binding request with FINGERPRINT, retransmitted every 250 ms;
///   prints the answer's XOR-MAPPED-ADDRESS, or exits 1.
/// - `listen PORT PORTS MAX_SECS`: listens on PORTS ports from PORT on; prints `{"ready":true}`,
///   a line per datagram, and after stdin closes and 200 ms of silence a summary.
/// - `spoof SRC_IP SRC_PORT PORTS DST_IP DST_PORT COUNT RATE`: Binding requests from a forged
///   source, its port taking PORTS values in turn.
/// - `metrics URL`: prints the body (the admin listener is on the lab host's loopback).
const TOOL: &str = r##"import json, random, select, socket, struct, sys, threading, time, urllib.request, zlib

MAGIC = 0x2112A442


def out(value):
    print(json.dumps(value), flush=True)


def header(mtype, length, tid):
    return struct.pack("!HHI", mtype, length, MAGIC) + tid


def binding(tid, fingerprint=False):
    msg = header(0x0001, 8 if fingerprint else 0, tid)
    if fingerprint:
        crc = (zlib.crc32(msg) ^ 0x5354554E) & 0xFFFFFFFF
        msg += struct.pack("!HHI", 0x8028, 4, crc)
    return msg


def parse_response(data):
    """(message type, transaction id, 'ip:port' of XOR-MAPPED-ADDRESS or None)."""
    if len(data) < 20:
        return None, None, None
    mtype, length, cookie = struct.unpack("!HHI", data[:8])
    tid, at, mapped = data[8:20], 20, None
    while at + 4 <= len(data):
        kind, alen = struct.unpack("!HH", data[at:at + 4])
        value = data[at + 4:at + 4 + alen]
        if kind == 0x0020 and len(value) == 8 and value[1] == 1:
            port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC >> 16)
            ip = struct.unpack("!I", value[4:8])[0] ^ MAGIC
            mapped = "%s:%d" % (socket.inet_ntoa(struct.pack("!I", ip)), port)
        at += 4 + (alen + 3) // 4 * 4
    return mtype, tid, mapped


def stdin_closed():
    """An event set when the test closes our standard input."""
    event = threading.Event()

    def wait():
        sys.stdin.buffer.read()
        event.set()

    threading.Thread(target=wait, daemon=True).start()
    return event


def garbage():
    """Datagrams the responder must drop, by the outcome each should be counted as."""
    rnd = random.Random(7)

    def tid():
        return rnd.randbytes(12)

    kinds = {"not_stun": [], "malformed": [], "oversize": [], "not_request": [], "not_binding": []}
    for _ in range(64):
        kinds["not_stun"].append(bytes([0x80 | rnd.getrandbits(6)]) + rnd.randbytes(rnd.randrange(0, 300)))
    kinds["not_stun"].append(b"\x16\xfe\xfd" + rnd.randbytes(80))
    kinds["not_stun"].append(struct.pack("!HHI", 1, 0, 0x01020304) + tid())
    for n in range(1, 20):
        kinds["malformed"].append(header(0x0001, 0, tid())[:n])
    t = tid()
    fp = binding(t, True)
    after_fp = bytearray(fp + struct.pack("!HH", 0x8022, 4) + b"abcd")
    after_fp[2:4] = struct.pack("!H", len(after_fp) - 20)
    kinds["malformed"] += [
        header(0x0001, 8, tid()),
        header(0x0001, 4, tid()) + bytes(8),
        header(0x0001, 2, tid()) + b"ab",
        header(0x0001, 8, tid()) + struct.pack("!HH", 0x8022, 200) + b"abcd",
        header(0x0001, 8, tid()) + struct.pack("!HHI", 0x8028, 4, 0xDEADBEEF),
        header(0x0001, 12, tid()) + struct.pack("!HH", 0x8028, 8) + bytes(8),
        bytes(after_fp),
        header(0x0001, 0xFFFC, tid()) + bytes(40),
    ]
    for size in (549, 1000, 1472, 3000, 9000):
        kinds["oversize"].append(header(0x0001, size - 20, tid()) + rnd.randbytes(size - 20))
    for mtype in (0x0011, 0x0101, 0x0111, 0x0016):
        kinds["not_request"].append(header(mtype, 0, tid()))
    for mtype in (0x0003, 0x0004, 0x0008, 0x0009, 0x000A):
        kinds["not_binding"].append(header(mtype, 0, tid()))
    return kinds


def flood(ip, port, minimum, max_secs):
    """Sends garbage (and a few valid requests) until stdin closes and `minimum` went out."""
    kinds = garbage()
    rnd = random.Random(11)
    mix = []
    for kind, packets in kinds.items():
        for p in packets:
            mix += [(kind, p)] * (1 if kind == "oversize" else 2)
    mix += [("valid", binding(rnd.randbytes(12)))] * (len(mix) // 50 + 1)
    rnd.shuffle(mix)
    socks = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        socks.append(s)
    closed = stdin_closed()
    sent = {kind: 0 for kind in list(kinds) + ["valid"]}
    sent_bytes, errors, i, start = 0, 0, 0, time.monotonic()
    announced = False
    while True:
        for _ in range(500):
            kind, packet = mix[i % len(mix)]
            try:
                socks[i % len(socks)].sendto(packet, (ip, port))
                sent[kind] += 1
                sent_bytes += len(packet)
            except (BlockingIOError, OSError):
                errors += 1
                time.sleep(0.0005)
            i += 1
        total = sum(sent.values())
        if not announced and total >= 1000:
            out({"flooding": True})
            announced = True
        elapsed = time.monotonic() - start
        if (closed.is_set() and total >= minimum) or elapsed > max_secs:
            break
        # Drain the answers to the valid requests so that nothing piles up.
        for s in socks:
            try:
                while s.recv(2048):
                    pass
            except OSError:
                pass
    out({"sent": sent, "total": sum(sent.values()), "bytes": sent_bytes, "send_errors": errors,
         "secs": round(time.monotonic() - start, 3)})


def ask_binding(ip, port, deadline_secs):
    """A STUN client: Binding with FINGERPRINT, retransmitted every 250 ms until answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    tid = random.randbytes(12)
    request = binding(tid, True)
    deadline, attempts = time.monotonic() + deadline_secs, 0
    while time.monotonic() < deadline:
        s.sendto(request, (ip, port))
        attempts += 1
        resend = time.monotonic() + 0.25
        while True:
            left = min(resend, deadline) - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            data, source = s.recvfrom(4096)
            mtype, rtid, mapped = parse_response(data)
            if rtid == tid and source == (ip, port):
                out({"type": mtype, "mapped": mapped, "attempts": attempts, "len": len(data),
                     "request_len": len(request), "local_port": s.getsockname()[1]})
                return
    out({"error": "no answer", "attempts": attempts})
    sys.exit(1)


def listen(port, ports, max_secs):
    """The victim: reports every datagram on `ports` ports from `port` on until stdin closes, then
    what is still queued."""
    socks = []
    for p in range(port, port + ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", p))
        socks.append(s)
    closed = stdin_closed()
    out({"ready": True})
    packets, total, start, quiet_since = 0, 0, time.monotonic(), None
    while time.monotonic() - start < max_secs:
        readable = select.select(socks, [], [], 0.05)[0]
        if not readable:
            # After the test closes stdin, stop once nothing came for 200 ms.
            if closed.is_set():
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 0.2:
                    break
            continue
        quiet_since = None
        for s in readable:
            data, source = s.recvfrom(65535)
            packets += 1
            total += len(data)
            mtype, tid, mapped = parse_response(data)
            out({"len": len(data), "from": "%s:%d" % source, "type": mtype, "mapped": mapped,
                 "tid": tid.hex() if tid else None})
    out({"done": True, "packets": packets, "bytes": total})


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def spoof(src_ip, src_port, ports, dst_ip, dst_port, count, rate):
    """Sends `count` Binding requests whose IPv4 source is forged to be src_ip, port src_port and
    the next `ports` - 1 in turn, `rate` a second (0: as fast as it can), from a raw socket with
    hand-built IPv4 and UDP headers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    payload_bytes, wire_bytes, tids, start = 0, 0, [], time.monotonic()
    for n in range(count):
        if rate > 0:
            ahead = start + n / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        tid = struct.pack("!4sQ", b"spof", n)
        payload = binding(tid)
        udp_len = 8 + len(payload)
        pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
        udp = struct.pack("!HHHH", src_port + n % ports, dst_port, udp_len, 0) + payload
        udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, n & 0xFFFF, 0, 64, 17, 0, src, dst)
        while True:
            try:
                s.sendto(ip + udp, (dst_ip, 0))
                break
            except OSError:
                time.sleep(0.001)
        payload_bytes += len(payload)
        wire_bytes += 20 + udp_len
        if n < 3:
            tids.append(tid.hex())
    out({"sent": count, "payload_bytes": payload_bytes, "wire_bytes": wire_bytes, "first_tids": tids,
         "secs": round(time.monotonic() - start, 3)})


def metrics(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        sys.stdout.write(response.read().decode())


mode, args = sys.argv[1], sys.argv[2:]
if mode == "flood":
    flood(args[0], int(args[1]), int(args[2]), float(args[3]))
elif mode == "binding":
    ask_binding(args[0], int(args[1]), float(args[2]))
elif mode == "listen":
    listen(int(args[0]), int(args[1]), float(args[2]))
elif mode == "spoof":
    spoof(args[0], int(args[1]), int(args[2]), args[3], int(args[4]), int(args[5]), float(args[6]))
elif mode == "metrics":
    metrics(args[0])
else:
    sys.exit("unknown mode " + mode)
"##;

fn lab() -> Lab {
    Lab::new().unwrap_or_else(|e| panic!("cannot build the NAT lab: {e:#}"))
}

fn require_python() {
    let ok = Command::new("python3")
        .args(["-c", "import json, select, socket, struct, urllib.request, zlib"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "python3 is missing: install it (run scripts/setup, or apt-get install python3)");
}

/// A `TOOL` process in a lab host, read line by line; killed when dropped.
struct Tool {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: tempfile::NamedTempFile,
    what: String,
    /// Every JSON line printed so far.
    seen: Vec<Value>,
}

impl Tool {
    fn start(host: &Host, args: &[&str]) -> Self {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = host
            .command("python3")
            .arg("-c")
            .arg(TOOL)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting python3 in {}: {e}", host.netns));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines, stderr, what: format!("{args:?}"), seen: Vec::new() }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    fn next_line(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{} printed {line:?}: {e}", self.what));
        self.seen.push(value.clone());
        Some(value)
    }

    /// Waits (10 s at most) for a line matching `pred`.
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.next_line(deadline) {
                Some(v) if pred(&v) => return v,
                Some(_) => {}
                None => panic!(
                    "no {what} within 10 s from {}; saw {:?}\nstderr: {}",
                    self.what,
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Closes its stdin, waits (30 s at most) for it to exit successfully and returns its last
    /// line (the summary).
    fn finish(mut self) -> (Value, Vec<Value>) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.next_line(deadline).is_some() {}
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not finish within 30 s; stderr: {}",
                self.what,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{} failed ({status}):\n{}", self.what, self.stderr());
        let last =
            self.seen.last().cloned().unwrap_or_else(|| {
                panic!("{} printed nothing; stderr: {}", self.what, self.stderr())
            });
        (last, std::mem::take(&mut self.seen))
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a `TOOL` mode that ends by itself; returns its last line.
fn run_tool(host: &Host, args: &[&str]) -> Value {
    Tool::start(host, args).finish().0
}

/// A STUN Binding from `host` to the supernode, answered within 5 s (retransmitted every 250 ms,
/// as a real client would under loss); returns the reported address.
fn public_address(host: &Host, srv: &Host) -> String {
    let mut tool = Tool::start(host, &["binding", &srv.ip, STUN_PORT, "5"]);
    let answer = tool.expect("STUN answer", |_| true);
    let mapped = answer["mapped"].as_str().unwrap_or_else(|| {
        panic!("no STUN answer from the supernode within 5 s for {}: {answer}", host.netns)
    });
    assert_eq!(answer["type"], 0x0101, "a Binding success response: {answer}");
    mapped.to_owned()
}

/// `peerline_stun_requests_total` by `result`, read from /metrics inside the supernode's host.
fn stun_counters(node: &Supernode, srv: &Host) -> BTreeMap<String, u64> {
    let url = format!("{}/metrics", node.admin_url);
    let out = srv.command("python3").args(["-c", TOOL, "metrics", &url]).output().unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "GET {url} failed: {}\nsupernode log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    let counters: BTreeMap<String, u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("peerline_stun_requests_total{result=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(result, n)| (result.to_owned(), n.trim().parse().unwrap()))
        .collect();
    assert!(counters.contains_key("malformed"), "no STUN counters in /metrics:\n{body}");
    counters
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, result: &str) -> u64 {
    after.get(result).copied().unwrap_or(0) - before.get(result).copied().unwrap_or(0)
}

/// Whether the `peerline-supernode` process is still running in the lab host.
fn supernode_running(srv: &Host) -> bool {
    let out = Command::new("ip").args(["netns", "pids", &srv.netns]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().any(|pid| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "peerline-supernode"))
    })
}

#[test]
fn a_flood_of_malformed_stun_neither_crashes_the_supernode_nor_stops_its_users() {
    require_python();
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let attacker = lab.public_host("x").unwrap();
    let a = lab.natted_host("a", NatKind::HomeRouter).unwrap();
    let b = lab.public_host("b").unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let (alice, bob) = (User::new_in("alice", &node, &a), User::new_in("bob", &node, &b));
    alice.register();
    bob.register();
    alice.befriend(&bob);
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let tone = file("440.wav");
    write_tone_wav(&tone, 440.0, 1.0).unwrap();
    let before = stun_counters(&node, &srv);

    // Garbage from eight source ports, as fast as the attacker can, until the users are done
    // (and at least 50,000 datagrams went out).
    let mut flood = Tool::start(&attacker, &["flood", &srv.ip, STUN_PORT, "50000", "50"]);
    flood.expect("sign that the flood is under way", |v| v["flooding"] == true);

    // Meanwhile everything a user does works: registering, logging in, going online,
    // messages, presence, address discovery and a call.
    let carol = User::new_in("carol", &node, &a);
    assert_eq!(carol.register()["username"], "carol");
    assert_eq!(alice.ok(&["login", "alice"])["username"], "alice");
    let mut bob_online =
        bob.online_with(&["--auto-answer", "--play", &tone, "--record", &file("bob.wav")]);
    for i in 0..5 {
        let text = format!("sent during the flood, {i}");
        assert_eq!(alice.ok(&["send", "bob", &text])["text"], text.as_str());
        bob_online.expect(
            |v| v["event"] == "message" && v["message"]["text"] == text.as_str(),
            "bob's copy of a message sent during the flood",
        );
    }
    let contacts = alice.ok(&["contacts"]);
    let bob_entry = contacts.as_array().unwrap().iter().find(|c| c["username"] == "bob");
    assert_eq!(bob_entry.unwrap()["presence"], "online", "{contacts:#}");
    // Address discovery: alice behind her router learns the router's public address, bob his own.
    let alice_public = public_address(&a, &srv);
    assert!(
        alice_public.starts_with("203.0.113.")
            && !alice_public.starts_with(&format!("{}:", srv.ip)),
        "alice must learn her router's public address, not {alice_public}"
    );
    let bob_public = public_address(&b, &srv);
    assert!(bob_public.starts_with(&format!("{}:", b.ip)), "bob is not behind a NAT: {bob_public}");
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        &tone,
        "--record",
        &file("alice.wav"),
        "--duration",
        "2",
    ]);
    let (code, stderr) = call.wait(Duration::from_secs(40));
    assert_eq!(code, Some(0), "the call failed during the flood: {stderr}\n{:#?}", call.seen);
    let ended = call.seen.iter().find(|v| v["event"] == "ended").cloned().unwrap();
    assert_eq!(ended["path"]["kind"], "direct", "{ended:#}");
    assert!(ended["media"]["packets_received"].as_u64().unwrap() > 0, "{ended:#}");
    bob_online.expect(|v| v["event"] == "ended", "bob's end of the call");
    assert!(flood.running(), "the flood ended before the users were done:\n{}", flood.stderr());
    let (sent, _) = flood.finish();
    drop(bob_online);

    assert!(
        supernode_running(&srv),
        "the supernode died under the flood ({sent})\nlog:\n{}",
        node.log()
    );
    assert!(!node.log().contains("panicked"), "the supernode panicked:\n{}", node.log());
    // It still answers, on both ports.
    public_address(&b, &srv);
    assert_eq!(alice.ok(&["send", "bob", "after the flood"])["text"], "after the flood");

    // Every kind of garbage reached the responder and was counted as what it is; the attacker's
    // few valid requests hit its per-source limit; nothing was answered beyond the bound.
    let after = stun_counters(&node, &srv);
    let report = format!("sent {sent}\nbefore {before:?}\nafter {after:?}");
    eprintln!("{report}");
    for result in
        ["not_stun", "malformed", "oversize", "not_request", "not_binding", "source_rate_limited"]
    {
        assert!(delta(&before, &after, result) > 0, "no {result} datagram counted\n{report}");
    }
    assert!(delta(&before, &after, "answered") >= 3, "the users' requests were answered\n{report}");
    assert_eq!(delta(&before, &after, "would_amplify"), 0, "{report}");
    let dropped: u64 = ["not_stun", "malformed", "oversize", "not_request", "not_binding"]
        .iter()
        .map(|r| delta(&before, &after, r))
        .sum();
    assert!(sent["total"].as_u64().unwrap() >= 50_000, "{report}");
    assert!(dropped >= 10_000, "the responder saw only {dropped} garbage datagrams\n{report}");
}

#[test]
fn forged_binding_requests_get_the_victim_a_trickle_never_an_amplified_flood() {
    require_python();
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let attacker = lab.public_host("x").unwrap();
    let victim = lab.public_host("v").unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let victim_port = "40000";
    let victim_addr = format!("{}:{victim_port}", victim.ip);
    let server_addr = format!("{}:{STUN_PORT}", srv.ip);
    let before = stun_counters(&node, &srv);

    // One forged request is answered, to the forged source: the forgery gets through the lab
    // (no reverse-path filter on the bridge or in the supernode's host drops it), so the limits
    // below are what protect the victim. The answer is no larger than promised.
    let mut listener = Tool::start(&victim, &["listen", victim_port, "1", "30"]);
    listener.expect("the victim's listener", |v| v["ready"] == true);
    let one =
        run_tool(&attacker, &["spoof", &victim.ip, victim_port, "1", &srv.ip, STUN_PORT, "1", "0"]);
    let answer = listener
        .expect("the answer to the forged request at the victim", |v| v.get("len").is_some());
    assert_eq!(answer["from"], server_addr.as_str(), "{answer}");
    assert_eq!(answer["type"], 0x0101, "a Binding success response: {answer}");
    assert_eq!(answer["tid"], one["first_tids"][0], "{answer}");
    assert_eq!(answer["mapped"], victim_addr.as_str(), "the forged source is reported: {answer}");
    let request_len = one["payload_bytes"].as_u64().unwrap();
    assert!(
        answer["len"].as_u64().unwrap() <= request_len + XOR_MAPPED_ADDRESS_V4,
        "an answer may exceed its {request_len}-byte request by XOR-MAPPED-ADDRESS only: {answer}"
    );
    let (summary, _) = listener.finish();
    assert_eq!(summary["packets"], 1, "one request, one answer: {summary}");

    // A sustained forged flood: 6,000 requests over 3 s "from" the victim, spread over eight of
    // its ports (the limit is per address: rotating ports must not multiply it).
    let mut listener = Tool::start(&victim, &["listen", victim_port, "8", "30"]);
    listener.expect("the victim's listener", |v| v["ready"] == true);
    let started = Instant::now();
    let flood = run_tool(
        &attacker,
        &["spoof", &victim.ip, victim_port, "8", &srv.ip, STUN_PORT, "6000", "2000"],
    );
    // The responder works through its queue in order: once the attacker's own request (another
    // source, so not limited) is answered, every forged one before it has been dealt with.
    public_address(&attacker, &srv);
    let window = started.elapsed().as_secs_f64();
    let (summary, lines) = listener.finish();

    let received = summary["packets"].as_u64().unwrap();
    let received_bytes = summary["bytes"].as_u64().unwrap();
    let sent = flood["sent"].as_u64().unwrap();
    let sent_bytes = flood["payload_bytes"].as_u64().unwrap();
    let after = stun_counters(&node, &srv);
    let report = format!(
        "attacker {flood}\nvictim {summary}\nwindow {window:.1} s\nbefore {before:?}\nafter {after:?}"
    );
    eprintln!("{report}");
    assert!(received >= 1, "the responder answered none of the forged flood\n{report}");
    for line in lines.iter().filter(|v| v.get("len").is_some()) {
        assert_eq!(line["from"], server_addr.as_str(), "{line}");
        let mapped = line["mapped"].as_str().unwrap_or_default();
        let forged = (40000..40008).map(|port| format!("{}:{port}", victim.ip));
        assert!(forged.into_iter().any(|a| a == mapped), "sent to a forged source only: {line}");
    }
    assert!(
        received_bytes <= sent_bytes,
        "amplification: the victim got {received_bytes} bytes for the attacker's {sent_bytes}\n{report}"
    );
    // At most the burst plus the sustained rate over the whole window (which, measured from
    // before the attacker started until after the responder was done, only errs generously).
    let allowed = SOURCE_BURST + SOURCE_PER_SECOND * window + 2.0;
    assert!(
        received as f64 <= allowed,
        "{received} answers reached the victim; the per-source limit allows {allowed:.0}\n{report}"
    );
    assert!(received * 10 <= sent, "not a trickle: {received} of {sent}\n{report}");
    assert!(
        delta(&before, &after, "source_rate_limited") >= sent / 2,
        "the forged requests should be refused by the per-source limit\n{report}"
    );
    assert!(supernode_running(&srv), "the supernode died\n{}", node.log());
}
