//! Cluster mode end to end: three real `peerline-supernode` processes sharing one PostgreSQL and
//! one nats-server on loopback (each test starts its own), users on different supernodes using
//! the real `peerline` CLI.
//!
//! These tests need PostgreSQL and nats-server: `scripts/setup` installs both. They fail, never
//! skip, when either cannot start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use peerline_testkit::User;
use peerline_testkit::cluster::TestCluster;
use serde_json::Value;

/// One network of three supernodes (sharing one certificate, each listing the others).
fn cluster() -> TestCluster {
    TestCluster::start(3).unwrap_or_else(|e| panic!("the test cluster must start: {e:#}"))
}

fn presence(v: &Value, user: &str, presence: &str) -> bool {
    v["event"] == "presence" && v["username"] == user && v["presence"] == presence
}

fn contact<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["username"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list:#}"))
}

#[test]
fn users_on_different_supernodes_are_contacts_see_presence_and_exchange_messages() {
    let cluster = cluster();
    let [a, b, c] = [cluster.node(0), cluster.node(1), cluster.node(2)];
    let alice = User::new("alice", a);
    let mut bob = User::new("bob", b);
    alice.register();
    bob.register();

    // A request made on one supernode reaches a user online on another.
    let mut bob_online = bob.online();
    alice.ok(&["contacts", "add", "bob", "--message", "hi from sn1"]);
    bob_online.expect(
        |v| {
            v["event"] == "contact_request"
                && v["username"] == "alice"
                && v["message"] == "hi from sn1"
        },
        "alice's request, across supernodes",
    );
    bob.ok(&["contacts", "accept", "alice"]);

    // Presence both ways: alice comes online on sn1 while bob is on sn2.
    let mut alice_online = alice.online();
    alice_online.expect(|v| presence(v, "bob", "online"), "bob online, seen from sn1");
    bob_online.expect(|v| presence(v, "alice", "online"), "alice online, seen from sn2");
    assert_eq!(contact(&alice.ok(&["contacts"]), "bob")["presence"], "online");

    bob.ok(&["status", "away"]);
    alice_online.expect(|v| presence(v, "bob", "away"), "bob away");
    bob.ok(&["status", "invisible"]);
    alice_online.expect(|v| presence(v, "bob", "offline"), "invisible stays invisible");
    assert_eq!(contact(&alice.ok(&["contacts"]), "bob")["presence"], "offline");
    bob.ok(&["status", "online"]);
    alice_online.expect(|v| presence(v, "bob", "online"), "bob visible again");

    // Messages and receipts across supernodes.
    alice.ok(&["send", "bob", "hello across the cluster"]);
    let got = bob_online.expect(|v| v["event"] == "message", "the message on sn2");
    assert_eq!(got["message"]["from"], "alice");
    assert_eq!(got["message"]["text"], "hello across the cluster");
    alice_online
        .expect(|v| v["event"] == "receipt" && v["kind"] == "delivered", "the receipt on sn1");
    // sn2 measured how long the push took to come over the bus.
    let delivered = cluster.metric(1, "peerline_bus_deliver_seconds_count").unwrap();
    assert!(delivered >= 1.0, "sn2 has no bus delivery latency samples");

    // bob goes offline; a message waits in PostgreSQL; bob comes back on the third supernode.
    bob_online.stop();
    alice_online.expect(|v| presence(v, "bob", "offline"), "bob offline");
    alice.ok(&["send", "bob", "while you were away"]);
    bob.set_url(&c.url);
    bob.ok(&["login", "bob"]);
    let mut bob_online = bob.online();
    let got = bob_online.expect(|v| v["event"] == "message", "the offline message on sn3");
    assert_eq!(got["message"]["text"], "while you were away");
    alice_online.expect(|v| presence(v, "bob", "online"), "bob online again, on sn3");
    let seen = bob_online.drain_for(Duration::from_millis(500));
    let messages = seen.iter().filter(|v| v["event"] == "message").count();
    assert_eq!(messages, 1, "the message arrives exactly once: {seen:#?}");
}

#[test]
fn a_block_wins_over_a_concurrent_re_add_from_another_supernode() {
    let cluster = cluster();
    let [a, b] = [cluster.node(0), cluster.node(1)];
    let alice = User::new("alice", a);
    let bob = User::new("bob", b);
    alice.register();
    bob.register();
    alice.ok(&["contacts", "add", "bob"]);
    bob.ok(&["contacts", "accept", "alice"]);
    let mut alice_online = alice.online();

    for round in 0..8 {
        // alice removes bob and adds him again on sn1 while bob blocks her on sn2.
        alice.ok(&["contacts", "remove", "bob"]);
        let re_add = {
            let alice = &alice;
            std::thread::scope(|s| {
                let add = s.spawn(move || alice.run(&["contacts", "add", "bob"]));
                let block = bob.run(&["contacts", "block", "alice"]);
                assert_eq!(block.code, Some(0), "block failed: {}", block.stdout);
                add.join().unwrap()
            })
        };
        assert_eq!(re_add.code, Some(0), "round {round}: re-add failed: {}", re_add.stdout);
        let list = bob.ok(&["contacts"]);
        assert_eq!(contact(&list, "alice")["state"], "blocked", "round {round}: the block won");
        // Undo for the next round: bob unblocks by removing, alice and bob become contacts
        // (alice's row may be gone already, depending on which change came second).
        bob.ok(&["contacts", "remove", "alice"]);
        let _ = alice.run(&["contacts", "remove", "bob"]);
        alice.ok(&["contacts", "add", "bob"]);
        bob.ok(&["contacts", "accept", "alice"]);
    }
    // Presence never flows across a block: bob blocks, then comes online.
    bob.ok(&["contacts", "block", "alice"]);
    let before = alice_online.drain_for(Duration::from_millis(500)).len();
    let _bob_online = bob.online();
    let seen = alice_online.drain_for(Duration::from_millis(1500));
    let after_block = &seen[before..];
    assert!(
        !after_block.iter().any(|v| presence(v, "bob", "online")),
        "alice saw bob online across a block: {after_block:#?}"
    );
    assert_eq!(contact(&alice.ok(&["contacts"]), "bob")["presence"], "offline");
}

/// The tone heard in a recording.
fn heard(path: &std::path::Path, freq: f64) -> peerline_media::tone::ToneReport {
    let samples = peerline_media::audio::read_wav(path).unwrap();
    peerline_media::tone::analyze_tone(
        &samples,
        peerline_media::SAMPLE_RATE,
        freq,
        &peerline_media::tone::ToneCriteria::default(),
    )
}

#[test]
fn users_on_different_supernodes_call_each_other_and_hear_both_tones() {
    let cluster = cluster();
    let [a, b] = [cluster.node(0), cluster.node(1)];
    let alice = User::new("alice", a);
    let bob = User::new("bob", b);
    alice.register();
    bob.register();
    alice.ok(&["contacts", "add", "bob"]);
    bob.ok(&["contacts", "accept", "alice"]);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    peerline_media::write_tone_wav(p("440.wav"), 440.0, 2.0).unwrap();
    peerline_media::write_tone_wav(p("660.wav"), 660.0, 2.0).unwrap();

    let mut answering = bob.online_with(&[
        "--auto-answer",
        "--play",
        p("660.wav").to_str().unwrap(),
        "--record",
        p("bob_heard.wav").to_str().unwrap(),
    ]);
    // alice's supernode learns that bob's device is on another one before she dials.
    let mut alice_online = alice.online();
    alice_online.expect(|v| presence(v, "bob", "online"), "bob online, seen from sn1");
    alice_online.stop();
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
    let (code, stderr) = call.wait(Duration::from_secs(40));
    assert_eq!(code, Some(0), "peerline call failed: {stderr}\n{:#?}", call.seen);
    let ended = call.seen.iter().find(|v| v["event"] == "ended").expect("an ended line");
    assert_eq!(ended["reason"], "hung_up_here", "{ended:#}");
    assert_eq!(ended["path"]["kind"], "direct", "the media went peer to peer: {ended:#}");
    answering
        .expect(|v| v["event"] == "ended" && v["reason"] == "hung_up", "bob hears the hang-up");
    for (who, r) in
        [("alice", heard(&p("alice_heard.wav"), 660.0)), ("bob", heard(&p("bob_heard.wav"), 440.0))]
    {
        assert!(r.tone_windows >= 20, "{who} heard the tone in only {} windows", r.tone_windows);
        assert!(r.tone_fraction() >= 0.95, "{who}: {:.3}", r.tone_fraction());
    }
}

#[test]
fn a_message_acknowledged_just_before_kill_9_is_delivered_exactly_once() {
    let mut cluster = cluster();
    let alice = User::new("alice", cluster.node(0));
    let mut bob = User::new("bob", cluster.node(1));
    alice.register();
    bob.register();
    alice.ok(&["contacts", "add", "bob"]);
    bob.ok(&["contacts", "accept", "alice"]);
    let sent = alice.ok(&["send", "bob", "acknowledged, then the supernode died"]);
    assert!(sent["id"].as_i64().is_some(), "acknowledged with an id: {sent}");
    cluster.kill9(0);
    bob.set_url(cluster.url(2));
    bob.ok(&["login", "bob"]);
    let mut bob_online = bob.online();
    let got = bob_online.expect(|v| v["event"] == "message", "the message, from PostgreSQL");
    assert_eq!(got["message"]["text"], "acknowledged, then the supernode died");
    let seen = bob_online.drain_for(Duration::from_millis(700));
    let messages = seen.iter().filter(|v| v["event"] == "message").count();
    assert_eq!(messages, 1, "exactly once: {seen:#?}");
}

#[test]
fn database_and_bus_outages_give_clear_errors_and_heal_by_themselves() {
    let mut cluster = cluster();
    let alice = User::new("alice", cluster.node(0));
    let bob = User::new("bob", cluster.node(1));
    alice.register();
    bob.register();
    alice.ok(&["contacts", "add", "bob"]);
    bob.ok(&["contacts", "accept", "alice"]);
    let mut bob_online = bob.online();

    // PostgreSQL stops for ten seconds: requests that need it say `unavailable`; the supernode
    // says it is degraded; nothing crashes.
    cluster.postgres_mut().stop().unwrap();
    let refused = alice.run(&["send", "bob", "while the database is down"]);
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    let code = refused.json()["error"]["code"].as_str().unwrap_or_default().to_owned();
    assert_eq!(code, "unavailable", "a clear error, not a hang: {}", refused.stdout);
    assert!(refused.json()["error"]["retry_after_secs"].as_u64().is_some(), "{}", refused.stdout);
    let health = cluster.node(1).admin_get("/healthz").unwrap();
    assert!(health.contains("\"degraded\""), "{health}");
    std::thread::sleep(Duration::from_secs(10));
    cluster.postgres_mut().restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sent = alice.run(&["send", "bob", "after the database came back"]);
        if sent.code == Some(0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no recovery: {}", sent.stdout);
        std::thread::sleep(Duration::from_millis(500));
    }
    bob_online.expect(
        |v| v["event"] == "message" && v["message"]["text"] == "after the database came back",
        "the message once the database is back",
    );

    // nats-server is killed and restarted: a message acknowledged meanwhile is not lost (it is
    // in PostgreSQL; bob reads it), and pushes between supernodes work again afterwards.
    cluster.nats_mut().kill9();
    // Until the supernodes noticed the loss, their health still says joined.
    cluster.wait_bus_connected_all(false).unwrap();
    alice.ok(&["send", "bob", "while the bus is down"]);
    cluster.nats_mut().restart().unwrap();
    cluster.wait_until_joined().unwrap();
    let inbox = bob.ok(&["inbox"]);
    assert!(
        inbox.to_string().contains("while the bus is down"),
        "acknowledged during the bus outage, then read: {inbox}"
    );
    alice.ok(&["send", "bob", "after the bus came back"]);
    bob_online.expect(
        |v| v["event"] == "message" && v["message"]["text"] == "after the bus came back",
        "pushes across supernodes work again",
    );
    for node in cluster.nodes() {
        let health = node.admin_get("/healthz").unwrap();
        assert!(health.contains("\"ok\""), "healed: {health}");
    }
}
