//! End-to-end: the real `peerline-supernode` binary and the real `peerline` CLI, over TLS on
//! loopback, each user with their own home directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use peerline_testkit::{Supernode, User};
use serde_json::Value;

fn contact<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["username"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list:#}"))
}

/// alice and bob register and become contacts.
fn befriend(alice: &User, bob: &User) {
    alice.ok(&["contacts", "add", &bob.name, "--message", "hi, it's alice"]);
    bob.ok(&["contacts", "accept", &alice.name]);
}

#[test]
fn two_users_become_contacts_see_presence_and_exchange_messages() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    let reg = alice.register();
    assert_eq!(reg["username"], "alice");
    bob.ok(&["register", "bob", "--display-name", "Bob Builder"]);

    // The request shows up on both sides with the right state and greeting.
    alice.ok(&["contacts", "add", "bob", "--message", "hi, it's alice"]);
    let a = alice.ok(&["contacts"]);
    assert_eq!(contact(&a, "bob")["state"], "outgoing");
    let b = bob.ok(&["contacts"]);
    assert_eq!(contact(&b, "alice")["state"], "incoming");
    assert_eq!(contact(&b, "alice")["message"], "hi, it's alice");
    assert_eq!(contact(&b, "alice")["presence"], "offline");

    // bob is online and sees alice's acceptance, presence and message as they happen.
    let mut bob_online = bob.online();
    bob_online
        .expect(|v| v["event"] == "contact_request" && v["username"] == "alice", "pending request");
    bob.ok(&["contacts", "accept", "alice"]);
    let a = alice.ok(&["contacts"]);
    assert_eq!(contact(&a, "bob")["state"], "accepted");
    assert_eq!(contact(&a, "bob")["presence"], "online", "bob is online via `online`");
    assert_eq!(contact(&a, "bob")["display_name"], "Bob Builder");

    let mut alice_online = alice.online();
    bob_online.expect(
        |v| v["event"] == "presence" && v["username"] == "alice" && v["presence"] == "online",
        "alice online",
    );
    alice.ok(&["status", "away"]);
    bob_online.expect(
        |v| v["event"] == "presence" && v["username"] == "alice" && v["presence"] == "away",
        "alice away",
    );
    alice.ok(&["status", "invisible"]);
    bob_online.expect(
        |v| v["event"] == "presence" && v["username"] == "alice" && v["presence"] == "offline",
        "invisible looks offline",
    );
    assert_eq!(contact(&bob.ok(&["contacts"]), "alice")["presence"], "offline");
    alice.ok(&["status", "online"]);

    let sent = alice.ok(&["send", "bob", "hello", "bob"]);
    assert_eq!(sent["text"], "hello bob");
    let got = bob_online.expect(|v| v["event"] == "message", "the message");
    assert_eq!(got["message"]["from"], "alice");
    assert_eq!(got["message"]["text"], "hello bob");
    // bob's `online` acknowledged it: alice gets a delivery receipt.
    alice_online
        .expect(|v| v["event"] == "receipt" && v["kind"] == "delivered", "delivery receipt");
    bob.ok(&["send", "alice", "hi alice"]);
    alice_online
        .expect(|v| v["event"] == "message" && v["message"]["text"] == "hi alice", "bob's reply");

    let history = alice.ok(&["history", "bob"]);
    let texts: Vec<&str> =
        history.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["hello bob", "hi alice"]);

    // alice goes offline: bob sees it.
    alice_online.stop();
    bob_online.expect(
        |v| {
            v["event"] == "presence"
                && v["username"] == "alice"
                && v["presence"] == "offline"
                && v != &Value::Null
        },
        "alice offline",
    );
}

#[test]
fn a_message_to_an_offline_user_survives_kill_9_and_arrives_exactly_once() {
    let mut node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    befriend(&alice, &bob);

    let sent = alice.ok(&["send", "bob", "are you there?"]);
    let id = sent["id"].as_i64().unwrap();
    // Acknowledged means durable: kill -9 right after the acknowledgement.
    node.kill9();
    node.restart().unwrap();

    let mut bob_online = bob.online();
    let got = bob_online.expect(|v| v["event"] == "message", "the queued message");
    assert_eq!(got["message"]["id"], id);
    assert_eq!(got["message"]["text"], "are you there?");
    let seen = bob_online.drain_for(Duration::from_millis(500));
    assert_eq!(seen.iter().filter(|v| v["event"] == "message").count(), 1, "{seen:#?}");
    bob_online.stop();

    // Delivered (acknowledged by bob's device): not pushed again at the next login.
    let mut again = bob.online();
    let seen = again.drain_for(Duration::from_millis(700));
    assert_eq!(seen.iter().filter(|v| v["event"] == "message").count(), 0, "{seen:#?}");
    again.stop();

    // Shown by `online` is read: not in the inbox (the unread ones); history keeps it with
    // both receipts.
    assert_eq!(bob.ok(&["inbox"]).as_array().unwrap().len(), 0);
    let history = alice.ok(&["history", "bob"]);
    assert!(history[0]["delivered_at"].is_i64() && history[0]["read_at"].is_i64(), "{history:#}");
}

#[test]
fn offline_messages_arrive_in_order() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    befriend(&alice, &bob);
    for i in 0..5 {
        alice.ok(&["send", "bob", &format!("message {i}")]);
    }
    let mut bob_online = bob.online();
    bob_online
        .expect(|v| v["event"] == "message" && v["message"]["text"] == "message 4", "last message");
    let texts: Vec<String> = bob_online
        .seen
        .iter()
        .filter(|v| v["event"] == "message")
        .map(|v| v["message"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, (0..5).map(|i| format!("message {i}")).collect::<Vec<_>>());
}

#[test]
fn a_non_contact_cannot_message_or_see_presence() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let mallory = User::new("mallory", &node);
    alice.register();
    mallory.register();
    let _alice_online = alice.online();
    assert_eq!(mallory.run(&["send", "alice", "buy my stuff"]).error_code(), "not_contact");
    assert_eq!(mallory.run(&["send", "nobody-here", "hello"]).error_code(), "not_contact");
    // A pending request is not enough either.
    mallory.ok(&["contacts", "add", "alice"]);
    assert_eq!(mallory.run(&["send", "alice", "now?"]).error_code(), "not_contact");
    let list = mallory.ok(&["contacts"]);
    assert_eq!(contact(&list, "alice")["presence"], "offline", "alice is online but not visible");
    // Search finds alice but never says whether she is online.
    let hits = mallory.ok(&["search", "ali"]);
    assert_eq!(hits[0]["username"], "alice");
    assert!(hits[0].get("presence").is_none(), "{hits:#}");
    assert!(alice.ok(&["inbox"]).as_array().unwrap().is_empty());
}

#[test]
fn a_blocked_user_gets_nothing() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    befriend(&alice, &bob);
    let mut bob_online = bob.online();
    let mut alice_online = alice.online();
    bob_online.expect(
        |v| v["event"] == "presence" && v["username"] == "alice" && v["presence"] == "online",
        "alice online",
    );

    alice.ok(&["contacts", "block", "bob"]);
    // bob now sees alice offline, though she is online.
    bob_online.expect(
        |v| v["event"] == "presence" && v["username"] == "alice" && v["presence"] == "offline",
        "alice hidden",
    );
    assert_eq!(contact(&bob.ok(&["contacts"]), "alice")["presence"], "offline");
    // bob's messages are refused and nothing reaches alice.
    assert_eq!(bob.run(&["send", "alice", "please"]).error_code(), "not_contact");
    // A new request from bob looks sent to him but never reaches alice.
    bob.ok(&["contacts", "remove", "alice"]);
    bob.ok(&["contacts", "add", "alice", "--message", "let me back"]);
    alice.ok(&["status", "busy"]);
    let seen = alice_online.drain_for(Duration::from_millis(700));
    assert!(
        !seen.iter().any(|v| v["event"] == "contact_request" || v["event"] == "message"),
        "alice got something from bob: {seen:#?}"
    );
    let list = alice.ok(&["contacts"]);
    assert_eq!(contact(&list, "bob")["state"], "blocked");
    let seen = bob_online.drain_for(Duration::from_millis(300));
    assert!(
        !seen.iter().any(|v| v["presence"] == "busy"),
        "bob must not see alice's status: {seen:#?}"
    );
}

#[test]
fn a_changed_certificate_is_refused_until_re_trusted() {
    let mut first = Supernode::start().unwrap();
    let alice = User::new("alice", &first);
    alice.register();
    let addr = first.addr.clone();
    first.kill9();
    // Another supernode (another certificate) on the same address.
    let second = Supernode::start_at(&addr, &[]).unwrap();
    assert_ne!(first.fingerprint, second.fingerprint);
    let run = alice.run(&["whoami"]);
    assert_eq!(run.error_code(), "certificate_changed", "{run:?}");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("trust --forget"), "says how to re-trust: {message}");
    // Nothing was sent to the impostor: alice's account does not exist there, and after
    // re-trusting she must register again (no password went to the wrong server before).
    alice.ok(&["trust", "--forget"]);
    assert_eq!(alice.run(&["login", "alice"]).error_code(), "invalid_credentials");
}

#[test]
fn a_ca_file_replaces_pinning() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let cert = node.data_dir.join("tls/cert.pem");
    let run = alice.run(&["--ca", cert.to_str().unwrap(), "register", "alice"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        !alice.home().join("known_supernodes").exists() || {
            let pins = std::fs::read_to_string(alice.home().join("known_supernodes")).unwrap();
            !pins.contains(&node.addr)
        }
    );
}

#[test]
fn search_respects_opt_out_and_limits() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    alice.ok(&["register", "alice", "--display-name", "Alice Liddell"]);
    let carol = User::new("carol", &node);
    carol.ok(&["register", "carol", "--display-name", "Carol Wonder"]);
    let dave = User::new("dave", &node);
    dave.ok(&["register", "dave", "--display-name", "Dave in Wonderland"]);
    let hits = alice.ok(&["search", "wonder"]);
    let names: Vec<&str> =
        hits.as_array().unwrap().iter().map(|h| h["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["carol", "dave"]);
    dave.ok(&["profile", "--discoverable", "false"]);
    let hits = alice.ok(&["search", "wonder"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(alice.run(&["search", "x"]).error_code(), "invalid_query");
}

#[test]
fn devices_are_listed_and_a_removed_device_is_logged_out() {
    let node = Supernode::start().unwrap();
    let laptop = User::new("alice", &node);
    laptop.register();
    // A second install (another home, another device key) of the same account.
    let phone = laptop.another_device();
    let devices = laptop.ok(&["devices"]);
    let devices = devices.as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let phone_id = devices.iter().find(|d| d["current"] == false).unwrap()["id"].as_i64().unwrap();
    let mut phone_online = phone.online();
    laptop.ok(&["devices", "remove", &phone_id.to_string()]);
    phone_online.expect(
        |v| v["event"] == "session_ended" && v["reason"] == "device_removed",
        "session end",
    );
    assert_eq!(phone.run(&["whoami"]).error_code(), "not_logged_in");
    assert_eq!(laptop.ok(&["devices"]).as_array().unwrap().len(), 1);
}

#[test]
fn messages_reach_every_device_of_both_users() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    befriend(&alice, &bob);
    let bob2 = bob.another_device();
    let alice2 = alice.another_device();
    let mut on = [bob.online(), bob2.online(), alice2.online()];
    alice.ok(&["send", "bob", "to all your devices"]);
    for o in &mut on {
        o.expect(
            |v| v["event"] == "message" && v["message"]["text"] == "to all your devices",
            "fan-out",
        );
    }
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    alice.register();
    let mut wrong = User::new("alice", &node);
    wrong.password = "not-the-password".into();
    let a = wrong.run(&["login", "alice"]);
    let b = wrong.run(&["login", "nosuchuser"]);
    assert_eq!(a.error_code(), "invalid_credentials");
    assert_eq!(b.error_code(), "invalid_credentials");
    assert_eq!(a.json()["error"]["message"], b.json()["error"]["message"]);
    assert_eq!(User::new("x", &node).run(&["register", "alice"]).error_code(), "username_taken");
    assert_eq!(User::new("x", &node).run(&["register", "ALICE"]).error_code(), "username_taken");
}

#[test]
fn password_change_revokes_other_devices() {
    let node = Supernode::start().unwrap();
    let laptop = User::new("alice", &node);
    laptop.register();
    let phone = laptop.another_device();
    let mut run_env = std::process::Command::new(peerline_testkit::bin("peerline"));
    let out = run_env
        .env("PEERLINE_HOME", laptop.home())
        .env("PEERLINE_SUPERNODE", &node.url)
        .env("PEERLINE_PASSWORD", &laptop.password)
        .env("PEERLINE_NEW_PASSWORD", "a-brand-new-password")
        .args(["--json", "passwd"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(phone.run(&["whoami"]).error_code(), "not_logged_in");
    assert_eq!(laptop.ok(&["whoami"])["username"], "alice");
    assert_eq!(phone.run(&["login", "alice"]).error_code(), "invalid_credentials");
}

#[test]
fn sigterm_shuts_down_gracefully_and_tells_clients() {
    let mut node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    alice.register();
    let mut online = alice.online();
    assert_eq!(node.terminate().unwrap(), Some(0), "exit code 0; log:\n{}", node.log());
    online
        .expect(|v| v["event"] == "session_ended" && v["reason"] == "shutdown", "shutdown notice");
}

#[test]
fn metrics_and_health_are_served_on_the_admin_address() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    alice.register();
    let _online = alice.online();
    let health: Value = serde_json::from_str(&node.admin_get("/healthz").unwrap()).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["online_users"], 1);
    let metrics = node.admin_get("/metrics").unwrap();
    assert!(metrics.contains("peerline_logins_total"), "{metrics}");
    assert!(metrics.contains("peerline_online_users 1"), "{metrics}");
}

#[test]
fn logins_past_the_admission_rate_are_refused_with_a_time_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supernode.toml");
    std::fs::write(&config, "[limits]\nlogins_per_second = 0.05\nlogin_burst = 3.0\n").unwrap();
    let node = Supernode::start_with(&["--config", config.to_str().unwrap()]).unwrap();
    let alice = User::new("alice", &node);
    alice.register(); // one login
    alice.ok(&["whoami"]); // two
    alice.ok(&["whoami"]); // three: the burst is spent
    let refused = alice.run(&["whoami"]);
    assert_eq!(refused.error_code(), "rate_limited", "{}", refused.stdout);
    let retry = refused.json()["error"]["retry_after_secs"].as_u64().unwrap_or(0);
    // One login per 20 s: come back after 20 to 40 s (spread at random).
    assert!((20..=41).contains(&retry), "retry_after_secs {retry}: {}", refused.stdout);
    let metrics = node.admin_get("/metrics").unwrap();
    assert!(metrics.contains("peerline_logins_refused_total 1"), "{metrics}");
}
