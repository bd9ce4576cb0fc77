//! Calls with the real binaries: `peerline call` against `peerline online --auto-answer`, and
//! against `peerline echo-service`. Tones go in as WAV files and the recordings must carry the
//! other side's tone; the JSON lines must report the setup timings and a direct path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use peerline_media::audio::read_wav;
use peerline_media::tone::{ToneCriteria, ToneReport, analyze_tone};
use peerline_media::{SAMPLE_RATE, write_tone_wav};
use peerline_testkit::{Supernode, User};
use serde_json::Value;

fn report(path: &Path, freq: f64) -> ToneReport {
    let samples = read_wav(path).unwrap();
    analyze_tone(&samples, SAMPLE_RATE, freq, &ToneCriteria::default())
}

fn event<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["event"] == name)
        .unwrap_or_else(|| panic!("no {name:?} line in {lines:#?}"))
}

#[test]
fn a_cli_call_carries_tones_both_ways_and_reports_its_setup() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = (User::new("alice", &node), User::new("bob", &node));
    alice.register();
    bob.register();
    alice.befriend(&bob);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write_tone_wav(p("440.wav"), 440.0, 2.0).unwrap();
    write_tone_wav(p("660.wav"), 660.0, 2.0).unwrap();

    let mut answering = bob.online_with(&[
        "--auto-answer",
        "--play",
        p("660.wav").to_str().unwrap(),
        "--record",
        p("bob_heard.wav").to_str().unwrap(),
    ]);
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        p("440.wav").to_str().unwrap(),
        "--record",
        p("alice_heard.wav").to_str().unwrap(),
        "--duration",
        "3",
    ]);
    let (code, stderr) = call.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "peerline call failed: {stderr}\n{:#?}", call.seen);
    let lines = &call.seen;
    for name in ["dialing", "ringing", "answered", "connected", "first_audio"] {
        event(lines, name);
    }
    let ended = event(lines, "ended");
    assert_eq!(ended["reason"], "hung_up_here");
    for timing in ["dial_to_ringing_ms", "dial_to_connected_ms", "dial_to_first_audio_ms"] {
        assert!(ended[timing].as_u64().is_some(), "{timing} missing: {ended:#}");
    }
    assert!(
        ended["dial_to_ringing_ms"].as_u64() <= ended["dial_to_connected_ms"].as_u64(),
        "{ended:#}"
    );
    let path = &ended["path"];
    assert_eq!(path["kind"], "direct", "{ended:#}");
    assert_eq!(
        (path["local_type"].as_str(), path["transport"].as_str()),
        (Some("host"), Some("udp"))
    );
    assert!(ended["media"]["packets_received"].as_u64().unwrap() > 100, "{ended:#}");

    // bob's side hangs up when alice does, and says so.
    answering.expect(|v| v["event"] == "ended" && v["reason"] == "hung_up", "bob's call end");
    let (alice_heard, bob_heard) =
        (report(&p("alice_heard.wav"), 660.0), report(&p("bob_heard.wav"), 440.0));
    for (who, r) in [("alice", &alice_heard), ("bob", &bob_heard)] {
        assert!(r.tone_windows >= 20, "{who} heard the tone in only {} windows", r.tone_windows);
        assert!(r.tone_fraction() >= 0.95, "{who}: {:.3}", r.tone_fraction());
        assert!(r.longest_gap <= Duration::from_millis(300), "{who}: gap {:?}", r.longest_gap);
    }
}

#[test]
fn the_echo_service_plays_the_callers_tone_back_and_reports_the_call() {
    let node = Supernode::start().unwrap();
    let echo = User::new("echo", &node);
    let alice = User::new("alice", &node);
    alice.register();
    let mut service = echo.start(&["echo-service"]);
    service.expect(|v| v.to_string().contains("Echo service running"), "the service to start");
    // The service accepts contact requests from anyone.
    alice.ok(&["contacts", "add", "echo"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let contacts = alice.ok(&["contacts"]);
        if contacts[0]["state"] == "accepted" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "echo never accepted: {contacts:#}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let dir = tempfile::tempdir().unwrap();
    let (tone, heard) = (dir.path().join("440.wav"), dir.path().join("heard.wav"));
    write_tone_wav(&tone, 440.0, 2.0).unwrap();
    let mut call = alice.start(&[
        "call",
        "echo",
        "--play",
        tone.to_str().unwrap(),
        "--record",
        heard.to_str().unwrap(),
        "--duration",
        "5",
    ]);
    let (code, stderr) = call.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "peerline call echo failed: {stderr}\n{:#?}", call.seen);

    // The tone comes back about two seconds after the call connected, and stays.
    let r = report(&heard, 440.0);
    let first = r.first_tone.expect("the echo of the tone");
    assert!(first >= Duration::from_millis(1800), "echoed too early: {first:?}");
    assert!(r.tone_windows >= 20, "echo heard in only {} windows", r.tone_windows);
    assert!(r.longest_gap <= Duration::from_millis(300), "gap {:?}", r.longest_gap);

    // Then the service reports the setup time and the path in a message.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let report = loop {
        let inbox = alice.ok(&["inbox", "--peek"]);
        if let Some(m) = inbox.as_array().and_then(|a| a.iter().find(|m| m["from"] == "echo")) {
            break m["text"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no report from the echo service");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(report.contains("set up in") && report.contains("direct"), "{report}");
}
