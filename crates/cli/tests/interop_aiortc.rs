//! Interop: Peerline calls with aiortc, a WebRTC implementation not written here. The real
//! `peerline-supernode` and `peerline` binaries on loopback; the other user is
//! `tests/interop/aiortc_peer.py`, which speaks the supernode protocol itself and runs its media
//! on aiortc. Each side plays a tone (Peerline 440 Hz, aiortc 660 Hz), records what it hears,
//! and the recordings must hold the other side's tone with no long gaps.
//!
//! scripts/setup puts aiortc and websockets into target/interop-venv; `PEERLINE_INTEROP_PYTHON`
//! may name another Python that has them. A missing Python fails the test, saying so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use peerline_media::audio::read_wav;
use peerline_media::tone::{ToneCriteria, ToneReport, analyze_tone};
use peerline_media::{SAMPLE_RATE, write_tone_wav};
use peerline_testkit::{Supernode, User, bin};
use serde_json::Value;

/// The tone Peerline plays.
const PEERLINE_TONE: f64 = 440.0;
/// The tone aiortc plays.
const AIORTC_TONE: f64 = 660.0;
/// Talk time of each call.
const TALK_SECS: &str = "6";
const AIORTC_PASSWORD: &str = "aio-secret-pw";

/// The venv's Python, checked to have aiortc; panics with what to run when it does not.
fn python() -> PathBuf {
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/interop-venv/bin/python");
    let python = PathBuf::from(std::env::var("PEERLINE_INTEROP_PYTHON").unwrap_or(default.into()));
    let check = Command::new(&python).args(["-c", "import aiortc, websockets"]).output();
    match check {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} lacks aiortc or websockets ({}). Run scripts/setup: it installs them into \
             target/interop-venv",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "cannot start {}: {e}. Run scripts/setup: it creates target/interop-venv with aiortc \
             (or set PEERLINE_INTEROP_PYTHON to a Python that has aiortc and websockets)",
            python.display()
        ),
    }
}

/// A running aiortc_peer.py and the JSON lines it printed.
struct AiortcPeer {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    stderr: mpsc::Receiver<String>,
}

impl AiortcPeer {
    fn start(node: &Supernode, username: &str, args: &[&str]) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiortc_peer.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--url", &node.url, "--username", username, "--password", AIORTC_PASSWORD])
            .args(["--timeout", "40"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting aiortc_peer.py: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (tx, stderr) = mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = tx.send(text);
        });
        AiortcPeer { child, lines, seen: Vec::new(), stderr }
    }

    /// Waits for a line with `"event": event`; panics with everything seen otherwise.
    fn expect(&mut self, event: &str, timeout: Duration) -> Value {
        if let Some(v) = self.seen.iter().find(|v| v["event"] == event) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        while let Ok(line) =
            self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("aiortc_peer.py printed non-JSON {line:?}: {e}"));
            self.seen.push(value.clone());
            if value["event"] == event {
                return value;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "aiortc peer: no {event:?} line; saw {:#?}\nstderr: {}",
            self.seen,
            self.stderr_text()
        );
    }

    /// Waits for the script to exit; returns its status, lines and stderr.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<Value>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("aiortc peer still running after {timeout:?}; saw {:#?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            if let Ok(v) = serde_json::from_str(&line) {
                self.seen.push(v);
            }
        }
        let stderr = self.stderr_text();
        (status, std::mem::take(&mut self.seen), stderr)
    }

    fn stderr_text(&self) -> String {
        self.stderr.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
    }
}

impl Drop for AiortcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn analyze(path: &Path, freq: f64) -> ToneReport {
    let samples = read_wav(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    analyze_tone(&samples, SAMPLE_RATE, freq, &ToneCriteria::default())
}

/// The recording holds the other side's tone for most of the call, without long gaps, and not
/// its own side's tone (criteria as in crates/media/tests/udp_call.rs, for a 6 s call).
fn assert_heard(who: &str, recording: &Path, heard: f64, own: f64) {
    let report = analyze(recording, heard);
    println!(
        "{who}: {} windows, {} with {heard} Hz, fraction {:.3}, longest gap {:?}, silent {:?}",
        report.windows.len(),
        report.tone_windows,
        report.tone_fraction(),
        report.longest_gap,
        report.silent_time_during_tone()
    );
    assert!(
        report.tone_windows >= 40,
        "{who} heard {heard} Hz in only {} windows",
        report.tone_windows
    );
    assert!(report.tone_fraction() >= 0.95, "{who}: tone fraction {:.3}", report.tone_fraction());
    assert!(
        report.longest_gap <= Duration::from_millis(200),
        "{who}: gap {:?}",
        report.longest_gap
    );
    assert!(report.silent_time_during_tone() <= Duration::from_millis(200), "{who}: silence");
    assert_eq!(analyze(recording, own).tone_windows, 0, "{who} recorded its own tone");
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("non-JSON line {l:?}: {e}")))
        .collect()
}

fn line<'a>(lines: &'a [Value], event: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["event"] == event)
        .unwrap_or_else(|| panic!("no {event:?} line in {lines:#?}"))
}

/// The aiortc side connected, heard packets and ended the way it should.
fn assert_aiortc_side(status: ExitStatus, lines: &[Value], stderr: &str, reason: &str) {
    assert!(status.success(), "aiortc peer failed ({status}); saw {lines:#?}\nstderr: {stderr}");
    line(lines, "connected");
    line(lines, "first_audio");
    assert_eq!(line(lines, "ended")["reason"], reason, "{lines:#?}");
    assert!(line(lines, "stats")["packets_received"].as_u64().unwrap() >= 200, "{lines:#?}");
}

/// The Peerline side's call went direct over loopback host candidates.
fn assert_direct(lines: &[Value]) {
    let path = &line(lines, "path")["path"];
    assert_eq!(path["kind"], "direct", "{path}");
    assert_eq!((&path["local_type"], &path["remote_type"]), (&"host".into(), &"host".into()));
    assert_eq!(path["transport"], "udp");
}

fn plaintext_supernode() -> Supernode {
    // Plain ws:// on loopback: the script needs no copy of the generated certificate.
    Supernode::start_with(&["--insecure-plaintext"]).unwrap()
}

#[test]
fn peerline_calls_aiortc_and_both_hear_each_other() {
    let node = plaintext_supernode();
    let alice = User::new("alice", &node);
    alice.register();
    let dir = alice.home();
    let (play, aio_play) = (dir.join("a440.wav"), dir.join("b660.wav"));
    let (heard, aio_heard) = (dir.join("alice_heard.wav"), dir.join("aio_heard.wav"));
    write_tone_wav(&play, PEERLINE_TONE, 2.0).unwrap();
    write_tone_wav(&aio_play, AIORTC_TONE, 2.0).unwrap();

    let mut aio = AiortcPeer::start(
        &node,
        "aio",
        &[
            "--register",
            "--accept-contact",
            "alice",
            "--answer",
            "--play",
            aio_play.to_str().unwrap(),
            "--record",
            aio_heard.to_str().unwrap(),
        ],
    );
    aio.expect("logged_in", Duration::from_secs(15));
    alice.ok(&["contacts", "add", "aio"]);
    aio.expect("waiting_for_call", Duration::from_secs(10));

    let call = alice.run(&[
        "call",
        "aio",
        "--play",
        play.to_str().unwrap(),
        "--record",
        heard.to_str().unwrap(),
        "--duration",
        TALK_SECS,
    ]);
    assert_eq!(call.code, Some(0), "peerline call failed:\n{}\n{}", call.stdout, call.stderr);
    let lines = json_lines(&call.stdout);
    line(&lines, "connected");
    assert_direct(&lines);
    let end = line(&lines, "ended");
    assert_eq!(end["reason"], "hung_up_here", "{end}");
    assert!(end["media"]["packets_received"].as_u64().unwrap() >= 200, "{end}");

    let (status, aio_lines, stderr) = aio.finish(Duration::from_secs(15));
    assert_aiortc_side(status, &aio_lines, &stderr, "hung_up");
    assert_heard("peerline (caller)", &heard, AIORTC_TONE, PEERLINE_TONE);
    assert_heard("aiortc (callee)", &aio_heard, PEERLINE_TONE, AIORTC_TONE);
}

#[test]
fn aiortc_calls_peerline_and_both_hear_each_other() {
    let node = plaintext_supernode();
    let bob = User::new("bob", &node);
    bob.register();
    let dir = bob.home();
    let (play, aio_play) = (dir.join("b440.wav"), dir.join("a660.wav"));
    let (heard, aio_heard) = (dir.join("bob_heard.wav"), dir.join("aio_heard.wav"));
    write_tone_wav(&play, PEERLINE_TONE, 2.0).unwrap();
    write_tone_wav(&aio_play, AIORTC_TONE, 2.0).unwrap();

    // The account and the contact first, in a run of its own: a call placed while bob's only
    // connection is a short-lived `contacts accept` would ring nobody.
    let setup = AiortcPeer::start(&node, "aio", &["--register", "--add-contact", "bob"]);
    let (status, lines, stderr) = setup.finish(Duration::from_secs(20));
    assert!(status.success(), "aiortc setup failed; saw {lines:#?}\nstderr: {stderr}");
    bob.ok(&["contacts", "accept", "aio"]);

    let mut online = Command::new(bin("peerline"))
        .env("PEERLINE_HOME", bob.home())
        .env("PEERLINE_SUPERNODE", &node.url)
        .env("PEERLINE_PASSWORD", &bob.password)
        .env_remove("PEERLINE_CA")
        .args(["--json", "online", "--auto-answer", "--exit-after", "30"])
        .arg("--play")
        .arg(&play)
        .arg("--record")
        .arg(&heard)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, bob_lines) = mpsc::channel::<String>();
    let stdout = online.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |pred: &dyn Fn(&Value) -> bool, what: &str, online: &mut Child| -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(line) =
            bob_lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("online printed non-JSON {line:?}: {e}"));
            seen.push(value.clone());
            if pred(&value) {
                return value;
            }
        }
        let _ = online.kill();
        let mut stderr = String::new();
        let _ = online.stderr.take().unwrap().read_to_string(&mut stderr);
        panic!("peerline online: no {what}; saw {seen:#?}\nstderr: {stderr}");
    };
    wait_for(&|v| v["event"] == "online", "the first line (online)", &mut online);

    let aio = AiortcPeer::start(
        &node,
        "aio",
        &[
            "--call",
            "bob",
            "--play",
            aio_play.to_str().unwrap(),
            "--record",
            aio_heard.to_str().unwrap(),
            "--duration",
            TALK_SECS,
        ],
    );
    wait_for(&|v| v["event"] == "connected", "connected event", &mut online);
    let end = wait_for(&|v| v["event"] == "ended", "ended event", &mut online);
    let (status, aio_lines, stderr) = aio.finish(Duration::from_secs(15));
    let _ = online.kill();
    let _ = online.wait();

    assert_aiortc_side(status, &aio_lines, &stderr, "hung_up_here");
    assert_eq!(end["reason"], "hung_up", "{end}");
    assert!(end["media"]["packets_received"].as_u64().unwrap() >= 200, "{end}");
    assert_direct(&seen);
    assert_heard("peerline (callee)", &heard, AIORTC_TONE, PEERLINE_TONE);
    assert_heard("aiortc (caller)", &aio_heard, PEERLINE_TONE, AIORTC_TONE);
}
