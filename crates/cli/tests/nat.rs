//! Calls across real Linux NATs (network namespaces, `crates/testkit/src/netlab.rs`): the
//! supernode on a public address, clients behind home routers or on public addresses. The call
//! must connect directly (hole punching through server-reflexive candidates from the supernode's
//! STUN responder) and carry tones both ways.
//!
//! Needs root, iproute2 and iptables; fails (never skips) without them. Runs in the `netlab`
//! nextest group, one test at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use peerline_media::audio::read_wav;
use peerline_media::tone::{ToneCriteria, analyze_tone};
use peerline_media::{AudioSink, AudioSource, SAMPLE_RATE, ToneSource, WavSink};
use peerline_testkit::netlab::{Host, Lab, NatKind};
use peerline_testkit::{Supernode, User};
use serde_json::Value;

fn tone_wav(path: &Path, freq: f64) {
    let mut source = ToneSource::new(freq);
    let mut sink = WavSink::create(path).unwrap();
    for _ in 0..100 {
        sink.write_frame(&source.next_frame().unwrap()).unwrap();
    }
    sink.finish().unwrap();
}

fn lab() -> Lab {
    Lab::new().unwrap_or_else(|e| panic!("cannot build the NAT lab: {e:#}"))
}

/// `caller` (in `a`) calls `callee` (in `b`); returns the caller's `ended` line after checking
/// that both heard the other's tone.
fn call_between(node: &Supernode, a: &Host, b: &Host, secs: u32) -> Value {
    let (alice, bob) = (User::new_in("alice", node, a), User::new_in("bob", node, b));
    alice.register();
    bob.register();
    alice.ok(&["contacts", "add", "bob"]);
    bob.ok(&["contacts", "accept", "alice"]);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    tone_wav(Path::new(&p("440.wav")), 440.0);
    tone_wav(Path::new(&p("660.wav")), 660.0);
    let mut answering = bob.online_with(&[
        "--auto-answer",
        "--play",
        &p("660.wav"),
        "--record",
        &p("bob_heard.wav"),
    ]);
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        &p("440.wav"),
        "--record",
        &p("alice_heard.wav"),
        "--duration",
        &secs.to_string(),
    ]);
    let (code, stderr) = call.wait(Duration::from_secs(u64::from(secs) + 40));
    assert_eq!(code, Some(0), "the call failed: {stderr}\n{:#?}", call.seen);
    answering.expect(|v| v["event"] == "ended", "bob's end of the call");
    for (file, freq) in [("alice_heard.wav", 660.0), ("bob_heard.wav", 440.0)] {
        let r =
            analyze_tone(&read_wav(p(file)).unwrap(), SAMPLE_RATE, freq, &ToneCriteria::default());
        assert!(r.tone_windows >= 20, "{file}: the tone in only {} windows", r.tone_windows);
        assert!(r.longest_gap <= Duration::from_millis(300), "{file}: gap {:?}", r.longest_gap);
        assert!(r.tone_fraction() >= 0.95, "{file}: {:.3}", r.tone_fraction());
        let last = r.last_tone.unwrap_or_default();
        assert!(
            last + Duration::from_secs(2) >= Duration::from_secs(u64::from(secs)),
            "{file}: the tone stopped at {last:?} of a {secs} s call"
        );
    }
    call.seen.iter().find(|v| v["event"] == "ended").cloned().unwrap()
}

#[test]
fn two_home_routers_connect_directly_by_hole_punching() {
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let a = lab.natted_host("a", NatKind::HomeRouter).unwrap();
    let b = lab.natted_host("b", NatKind::HomeRouter).unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let ended = call_between(&node, &a, &b, 3);
    let path = &ended["path"];
    assert_eq!(path["kind"], "direct", "{ended:#}");
    // The peer is reached at its router's public address: a server-reflexive (or, learned
    // from its checks, peer-reflexive) candidate, never the private 10.x address.
    assert!(
        path["remote"].as_str().unwrap().starts_with("203.0.113."),
        "the path must go through the peer's public mapping: {ended:#}"
    );
    assert!(matches!(path["remote_type"].as_str(), Some("srflx" | "prflx")), "{ended:#}");
}

#[test]
fn a_public_host_and_a_home_router_connect_directly() {
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let a = lab.public_host("a").unwrap();
    let b = lab.natted_host("b", NatKind::HomeRouter).unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let ended = call_between(&node, &a, &b, 3);
    assert_eq!(ended["path"]["kind"], "direct", "{ended:#}");
    assert_eq!(ended["path"]["local_type"], "host", "{ended:#}");
}

/// The routers forget idle UDP mappings after 20 s; ICE consent checks (RFC 7675) and the audio
/// itself must keep them open for a 3-minute call.
#[test]
fn a_long_call_keeps_its_nat_mappings_open() {
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let (a, router_a) = lab.natted_host_with_router("a", NatKind::HomeRouter).unwrap();
    let (b, router_b) = lab.natted_host_with_router("b", NatKind::HomeRouter).unwrap();
    router_a.set_udp_timeout(20).unwrap();
    router_b.set_udp_timeout(20).unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let ended = call_between(&node, &a, &b, 180);
    assert_eq!(ended["path"]["kind"], "direct", "{ended:#}");
    assert_eq!(ended["reason"], "hung_up_here", "{ended:#}");
}
