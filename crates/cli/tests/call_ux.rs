//! What a person sees around a call, with the real binaries: a device that cannot take a call
//! (no sound card, relay-only without a relay) says so at once on both sides; `online --json`
//! keeps stdout JSON and reports declines; the words on the terminal are sentences, not protocol
//! names, without ALSA or str0m noise; a recording is a readable WAV even after `kill -9`, and a
//! call that never connected leaves none. This machine has no sound card, as CI machines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use peerline_media::audio::read_wav;
use peerline_media::tone::{ToneCriteria, analyze_tone};
use peerline_media::{SAMPLE_RATE, write_tone_wav};
use peerline_testkit::{Supernode, User};
use serde_json::Value;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn event<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["event"] == name)
        .unwrap_or_else(|| panic!("no {name:?} line in {lines:#?}"))
}

/// A human-mode process whose stdout lines are read as they come.
struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, rx, seen: Vec::new() }
    }

    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    let stderr = self.stop();
                    panic!("no {what}; saw {:#?}\nstderr: {stderr}", self.seen);
                }
            }
        }
    }

    /// Kills the process (SIGKILL); returns its stderr.
    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let _ = self.child.wait();
        stderr
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tones(dir: &Path) {
    write_tone_wav(dir.join("440.wav"), 440.0, 2.0).unwrap();
    write_tone_wav(dir.join("660.wav"), 660.0, 2.0).unwrap();
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A synchronisation point after a call: alice's message reaches bob's `online`, so whatever the
/// call made the supernode push to bob before it has arrived too.
fn message_reaches(alice: &User, bob: &mut peerline_testkit::Online, text: &str) {
    alice.ok(&["send", "bob", text]);
    bob.expect(|v| v.to_string().contains(text), "alice's message");
}

fn two_friends(node: &Supernode) -> (User, User) {
    let (alice, bob) = (User::new("alice", node), User::new("bob", node));
    alice.register();
    bob.register();
    alice.befriend(&bob);
    (alice, bob)
}

#[test]
fn a_callee_without_a_sound_card_says_so_and_the_caller_hears_why() {
    assert!(
        !peerline_media::devices_available(),
        "this test needs a machine without a sound card (as CI machines)"
    );
    let node = Supernode::start().unwrap();
    let (alice, bob) = two_friends(&node);
    let dir = tempfile::tempdir().unwrap();
    tones(dir.path());

    // bob goes online with neither a sound card nor --play/--record.
    let mut online = Lines::start(bob.human_command(&["online", "--auto-answer"]));
    online.expect("the connected line", |l| l.contains("bob"));

    // alice's call ends at once, with bob's reason, as JSON and as a sentence.
    let heard = dir.path().join("alice_heard.wav");
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        s(&dir.path().join("440.wav")),
        "--record",
        s(&dir.path().join("a.wav")),
    ]);
    let (code, stderr) = call.wait(CALL_TIMEOUT);
    assert_ne!(code, Some(0), "{:#?}", call.seen);
    let ended = event(&call.seen, "ended");
    assert_eq!(ended["reason"], "no_audio_device", "{ended:#}\n{stderr}");
    let out = alice
        .human_command(&["call", "bob", "--play", s(&dir.path().join("440.wav"))])
        .args(["--record", s(&heard)])
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success());
    let text = format!("{stdout}{stderr}");
    assert!(
        text.contains("bob cannot take calls on this device: no audio device"),
        "alice is told why:\n{text}"
    );
    assert!(!heard.exists(), "a call that never connected leaves no recording");

    // bob was warned at start, and told about each call and why it was declined.
    online.expect("the decline", |l| l.contains("Declined the call from alice"));
    let stderr = online.stop();
    assert!(
        stderr.contains(
            "No microphone or speaker found: calls cannot be answered here (use --play/--record \
             to use WAV files)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("ALSA lib"), "alsa-lib noise:\n{stderr}");

    // In JSON: a declined line with the reason, and no missed call (bob saw it come in).
    let mut online = bob.online();
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        s(&dir.path().join("440.wav")),
        "--record",
        s(&dir.path().join("a.wav")),
    ]);
    call.wait(CALL_TIMEOUT);
    let declined = online.expect(|v| v["event"] == "declined", "the declined line");
    assert_eq!(
        (&declined["from"], &declined["reason"]),
        (&"alice".into(), &"no_audio_device".into())
    );
    message_reaches(&alice, &mut online, "after the declined call");
    let missed: Vec<&Value> =
        online.seen.iter().filter(|v| v.to_string().contains("missed")).collect();
    assert!(missed.is_empty(), "no missed call for a call bob saw and could not take: {missed:#?}");
}

#[test]
fn a_relay_only_callee_on_a_network_without_a_relay_refuses_at_once() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = two_friends(&node);
    let dir = tempfile::tempdir().unwrap();
    tones(dir.path());
    let bob_heard = dir.path().join("bob_heard.wav");
    let mut online = bob.online_with(&[
        "--auto-answer",
        "--relay-only",
        "--play",
        s(&dir.path().join("660.wav")),
        "--record",
        s(&bob_heard),
    ]);
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        s(&dir.path().join("440.wav")),
        "--record",
        s(&dir.path().join("a.wav")),
    ]);
    let (code, stderr) = call.wait(CALL_TIMEOUT);
    assert_ne!(code, Some(0));
    let ended = event(&call.seen, "ended");
    assert_eq!(ended["reason"], "no_relay", "not 30 s of silence and no_media_path: {ended:#}");
    assert!(ended["dial_to_connected_ms"].is_null(), "{ended:#}\n{stderr}");
    let declined = online.expect(|v| v["event"] == "declined", "bob's declined line");
    assert_eq!(declined["reason"], "no_relay");
    assert!(!bob_heard.exists(), "bob never answered, so no recording");

    let out = alice
        .human_command(&[
            "call",
            "bob",
            "--play",
            s(&dir.path().join("440.wav")),
            "--record",
            s(&dir.path().join("a.wav")),
        ])
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains(
            "bob accepts calls only through a relay, and this network has none configured"
        ),
        "{text}"
    );
}

#[test]
fn a_relay_only_caller_on_a_network_without_a_relay_fails_before_anything_rings() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = two_friends(&node);
    let dir = tempfile::tempdir().unwrap();
    tones(dir.path());
    let mut online = bob.online_with(&[
        "--auto-answer",
        "--play",
        s(&dir.path().join("660.wav")),
        "--record",
        s(&dir.path().join("bob_heard.wav")),
    ]);
    let run = alice.run(&[
        "call",
        "bob",
        "--relay-only",
        "--play",
        s(&dir.path().join("440.wav")),
        "--record",
        s(&dir.path().join("a.wav")),
    ]);
    assert_ne!(run.code, Some(0));
    assert!(!run.stdout.contains("dialing"), "{}", run.stdout);
    assert!(
        run.stdout.contains("this network has no TURN relay configured"),
        "the error says why: {}\n{}",
        run.stdout,
        run.stderr
    );
    message_reaches(&alice, &mut online, "after the relay-only call");
    assert!(
        !online.seen.iter().any(|v| v["event"] == "incoming_call"),
        "bob's phone never rang: {:#?}",
        online.seen
    );
}

#[test]
fn online_json_keeps_stdout_json_and_reports_a_declined_call() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = two_friends(&node);
    let dir = tempfile::tempdir().unwrap();
    tones(dir.path());
    // Not --auto-answer: the question must not reach stdout; stdin is empty, so it declines.
    // `expect` fails on any line of stdout that is not JSON.
    let mut online = bob.online_with(&[
        "--play",
        s(&dir.path().join("660.wav")),
        "--record",
        s(&dir.path().join("bob_heard.wav")),
    ]);
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        s(&dir.path().join("440.wav")),
        "--record",
        s(&dir.path().join("a.wav")),
    ]);
    call.wait(CALL_TIMEOUT);
    assert_eq!(event(&call.seen, "ended")["reason"], "declined");
    online.expect(|v| v["event"] == "incoming_call", "the incoming_call line");
    let declined = online.expect(|v| v["event"] == "declined", "the declined line");
    assert_eq!((&declined["from"], &declined["reason"]), (&"alice".into(), &"declined".into()));
    message_reaches(&alice, &mut online, "after the declined call");
    let stderr = online.stop();
    assert!(stderr.contains("Answer the call from alice? [y/N]"), "asked on stderr: {stderr}");
}

#[test]
fn a_call_reads_as_sentences_on_the_terminal() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = two_friends(&node);
    let dir = tempfile::tempdir().unwrap();
    tones(dir.path());
    let p = |name: &str| dir.path().join(name);
    let mut online = Lines::start(bob.human_command(&[
        "online",
        "--auto-answer",
        "--play",
        s(&p("660.wav")),
        "--record",
        s(&p("b.wav")),
    ]));
    online.expect("the connected line", |l| l.contains("bob"));
    let out = alice
        .human_command(&["call", "bob", "--play", s(&p("440.wav"))])
        .args(["--record", s(&p("a.wav")), "--duration", "2"])
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Calling bob (1 device ringing)…"), "{stdout}");
    assert!(stdout.contains("Call with bob ended: you hung up after"), "{stdout}");

    let ended = online.expect("bob's end of the call", |l| l.starts_with("Call with alice ended"));
    assert!(ended.starts_with("Call with alice ended: alice hung up"), "{ended}");
    let answered = online.expect("bob's answer line", |l| l.contains("answered"));
    assert!(!answered.contains("Answered by alice"), "bob answered, not alice: {answered}");
    let bob_stderr = online.stop();
    for (who, text) in [("alice", format!("{stdout}{stderr}")), ("bob", bob_stderr)] {
        for word in ["hung_up_here", "hung_up", "peer_closed_media", "device(s)", " WARN "] {
            assert!(!text.contains(word), "{who} sees {word:?}:\n{text}");
        }
    }
    for line in &online.seen {
        assert!(!line.contains("hung_up") && !line.contains("peer_closed_media"), "{line}");
    }
}

#[test]
fn a_call_without_a_sound_card_fails_with_one_clear_error() {
    assert!(!peerline_media::devices_available(), "needs a machine without a sound card");
    let node = Supernode::start().unwrap();
    let (alice, _bob) = two_friends(&node);
    let out = alice.human_command(&["call", "bob"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--play") && stderr.contains("--record"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line, no ALSA or log noise:\n{stderr}");
}

#[test]
fn a_recording_killed_mid_call_is_a_readable_wav_of_what_was_heard() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = two_friends(&node);
    let dir = tempfile::tempdir().unwrap();
    tones(dir.path());
    let heard = dir.path().join("alice_heard.wav");
    let _online = bob.online_with(&[
        "--auto-answer",
        "--play",
        s(&dir.path().join("660.wav")),
        "--record",
        s(&dir.path().join("bob_heard.wav")),
    ]);
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        s(&dir.path().join("440.wav")),
        "--record",
        s(&heard),
    ]);
    call.expect(|v| v["event"] == "first_audio", "bob's audio");
    // Wait (bounded) until the file's header says three seconds were recorded, then kill -9.
    let deadline = Instant::now() + CALL_TIMEOUT;
    let recorded =
        |path: &Path| read_wav(path).map(|s| s.len() / SAMPLE_RATE as usize).unwrap_or(0);
    while recorded(&heard) < 3 {
        assert!(Instant::now() < deadline, "the recording never reached 3 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    call.stop();

    let samples = read_wav(&heard).expect("a WAV file that opens after kill -9");
    assert!(samples.len() >= 3 * SAMPLE_RATE as usize, "{} samples", samples.len());
    let report = analyze_tone(&samples, SAMPLE_RATE, 660.0, &ToneCriteria::default());
    assert!(report.tone_windows >= 20, "bob's tone in only {} windows", report.tone_windows);
}

#[test]
fn a_call_that_never_connects_leaves_no_recording() {
    let node = Supernode::start().unwrap();
    let (alice, _bob) = two_friends(&node);
    let dir = tempfile::tempdir().unwrap();
    tones(dir.path());
    let heard = dir.path().join("heard.wav");
    // bob is not online: the call ends `unavailable` at once.
    let run = alice.run(&[
        "call",
        "bob",
        "--play",
        s(&dir.path().join("440.wav")),
        "--record",
        s(&heard),
    ]);
    assert_ne!(run.code, Some(0));
    assert!(run.stdout.contains("unavailable"), "{}", run.stdout);
    assert!(
        !heard.exists(),
        "a {} byte recording was left",
        std::fs::metadata(&heard).unwrap().len()
    );
}
