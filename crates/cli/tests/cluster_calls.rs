//! Calls that outlive the supernode carrying their signaling: a cluster of three real
//! supernodes (one PostgreSQL, one nats-server, one shared certificate, from
//! `peerline_testkit::cluster`), two real `peerline` clients calling each other with tones from
//! WAV files, and a `kill -9` of the supernode in the middle of the call. The voice goes peer to
//! peer and must not stop; the clients take the call over on the other supernodes, and the
//! hang-up still reaches the other side.
//!
//! These tests need PostgreSQL and nats-server: `scripts/setup` installs both. They fail, never
//! skip, when either cannot start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::{Duration, Instant};

use peerline_media::audio::read_wav;
use peerline_media::tone::{ToneCriteria, ToneReport, analyze_tone};
use peerline_media::{SAMPLE_RATE, write_tone_wav};
use peerline_testkit::User;
use peerline_testkit::cluster::TestCluster;

fn heard(path: &Path, freq: f64) -> ToneReport {
    analyze_tone(&read_wav(path).unwrap(), SAMPLE_RATE, freq, &ToneCriteria::default())
}

/// alice (on supernode `alice_on`) calls bob (on `bob_on`) for 14 s; 4 s into the call the
/// supernode that carries alice's signaling is killed.
fn a_call_survives_kill_9(alice_on: usize, bob_on: usize) {
    let mut cluster = TestCluster::start(3).expect("the test cluster must start");
    let alice = User::new("alice", cluster.node(alice_on));
    let bob = User::new("bob", cluster.node(bob_on));
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
    // alice's supernode learns where bob is before she dials.
    let mut alice_online = alice.online();
    alice_online.expect(
        |v| v["event"] == "presence" && v["username"] == "bob" && v["presence"] == "online",
        "bob online",
    );
    alice_online.stop();
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        p("440.wav").to_str().unwrap(),
        "--record",
        p("alice_heard.wav").to_str().unwrap(),
        "--duration",
        "14",
    ]);
    call.expect_within(Duration::from_secs(20), |v| v["event"] == "first_audio", "audio flows");
    std::thread::sleep(Duration::from_secs(3));
    let killed = Instant::now();
    cluster.kill9(alice_on);

    // Both clients are logged in again on the surviving supernodes within 10 s.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != alice_on).collect();
    loop {
        let online: u64 = survivors
            .iter()
            .map(|i| {
                let health = cluster.node(*i).admin_get("/healthz").unwrap_or_default();
                let health: serde_json::Value = serde_json::from_str(&health).unwrap_or_default();
                health["online_users"].as_u64().unwrap_or(0)
            })
            .sum();
        if online >= 2 {
            break;
        }
        assert!(
            killed.elapsed() <= Duration::from_secs(10),
            "only {online} of the two users were back online 10 s after the kill"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, stderr) = call.wait(Duration::from_secs(40));
    assert_eq!(code, Some(0), "peerline call failed: {stderr}\n{:#?}", call.seen);
    let ended = call.seen.iter().find(|v| v["event"] == "ended").expect("an ended line");
    assert_eq!(ended["reason"], "hung_up_here", "alice hung up at the end: {ended:#}");
    // The hang-up went through the surviving supernodes to bob.
    answering.expect_within(
        Duration::from_secs(15),
        |v| v["event"] == "ended" && v["reason"] == "hung_up",
        "bob hears the hang-up after the failover",
    );
    for (who, r) in
        [("alice", heard(&p("alice_heard.wav"), 660.0)), ("bob", heard(&p("bob_heard.wav"), 440.0))]
    {
        assert!(r.tone_windows >= 60, "{who} heard the tone in only {} windows", r.tone_windows);
        assert!(
            r.longest_gap <= Duration::from_secs(1),
            "{who}: the voice stopped for {:?} when the supernode died",
            r.longest_gap
        );
    }
}

#[test]
fn a_call_survives_the_death_of_the_supernode_both_parties_were_on() {
    a_call_survives_kill_9(0, 0);
}

#[test]
fn a_call_survives_the_death_of_the_callers_supernode() {
    a_call_survives_kill_9(0, 1);
}
