//! Sessions as a user meets them, with the real binaries: one-shot commands (`send`, `contacts`,
//! `status`, `inbox`, `whoami`…) log in quietly, so that only a device that stays connected
//! (`online`, `call`, the echo service) appears online and contacts do not see "alice is online"
//! then "offline" each time alice runs a command; a declined request is reported to the
//! requester; a message reaches every online device; `online` outlives a supernode restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use peerline_testkit::{Supernode, User};
use serde_json::Value;

/// Whether a JSON line of `online` is of this kind.
fn is(v: &Value, kind: &str) -> bool {
    v["event"] == kind || v["type"] == kind
}

fn presence_of_alice(seen: &[Value]) -> Vec<String> {
    seen.iter()
        .filter(|v| is(v, "presence") && v["username"] == "alice")
        .map(|v| v["presence"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn one_shot_commands_do_not_flap_presence_and_online_does_show_it() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    alice.ok(&["contacts", "add", "bob"]);
    bob.ok(&["contacts", "accept", "alice"]);

    let mut bob_online = bob.online();
    bob_online.expect(|v| is(v, "online"), "bob online");
    alice.ok(&["whoami"]);
    alice.ok(&["contacts"]);
    alice.ok(&["status", "online"]);
    alice.ok(&["inbox"]);
    alice.ok(&["send", "bob", "quietly"]);
    let got = bob_online.expect(|v| is(v, "message"), "alice's message");
    assert_eq!(got["message"]["text"], "quietly");
    let seen = bob_online.drain_for(Duration::from_millis(800));
    assert_eq!(presence_of_alice(&seen), Vec::<String>::new(), "no flap: {seen:#?}");
    let listed = bob.ok(&["contacts"]);
    let alice_row = listed.as_array().unwrap().iter().find(|c| c["username"] == "alice").unwrap();
    assert_eq!(alice_row["presence"], "offline", "alice has no device that stays online");

    // A device that stays connected does show: bob sees alice come and go.
    let mut alice_online = alice.online();
    alice_online.expect(|v| is(v, "online"), "alice online");
    bob_online.expect(
        |v| is(v, "presence") && v["username"] == "alice" && v["presence"] == "online",
        "alice's `online` is seen",
    );
    alice_online.stop();
    bob_online.expect(
        |v| is(v, "presence") && v["username"] == "alice" && v["presence"] == "offline",
        "and its end",
    );
    bob_online.stop();
}

#[test]
fn a_message_read_by_a_one_shot_command_is_still_pushed_to_online_devices() {
    // A quiet connection takes no pushed events, so messages wait for a device that shows them
    // instead of being handed to `peerline contacts` and lost from view.
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    alice.ok(&["contacts", "add", "bob"]);
    bob.ok(&["contacts", "accept", "alice"]);
    alice.ok(&["send", "bob", "while you were away"]);
    bob.ok(&["contacts"]);
    bob.ok(&["whoami"]);
    let mut bob_online = bob.online();
    let got = bob_online.expect(|v| is(v, "message"), "the queued message");
    assert_eq!(got["message"]["text"], "while you were away");
    bob_online.stop();
}

#[test]
fn a_declined_request_is_reported_to_the_requester_once() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    let mut alice_online = alice.online();
    alice.ok(&["contacts", "add", "bob", "--message", "hi"]);
    bob.ok(&["contacts", "decline", "alice"]);
    let told = alice_online.expect(|v| is(v, "contact_declined"), "the decline");
    assert_eq!(told["username"], "bob");
    let seen = alice_online.drain_for(Duration::from_millis(500));
    let told = seen.iter().filter(|v| is(v, "contact_declined")).count();
    assert_eq!(told, 1, "told once: {seen:#?}");
    assert_eq!(alice.ok(&["contacts"]), serde_json::json!([]), "the request is gone");
    alice_online.stop();
}

#[test]
fn a_message_reaches_every_online_device_of_both_users() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    alice.befriend(&bob);
    let alice_phone = alice.another_device();
    let bob_phone = bob.another_device();
    let mut watchers = [bob.online(), bob_phone.online(), alice_phone.online()];
    alice.ok(&["send", "bob", "to all of you"]);
    for (i, w) in watchers.iter_mut().enumerate() {
        let got = w.expect(|v| is(v, "message"), "the message on every device");
        assert_eq!(got["message"]["text"], "to all of you", "device {i}");
        w.stop();
    }
}

#[test]
fn online_comes_back_by_itself_after_its_only_supernode_restarts() {
    let mut node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();
    alice.befriend(&bob);
    let mut bob_online = bob.online();
    // A graceful stop, then a crash: both times `online` says so and comes back on its own.
    node.terminate().unwrap();
    node.restart().unwrap();
    bob_online.expect_within(
        Duration::from_secs(30),
        |v| is(v, "reconnected"),
        "back after a stop",
    );
    node.kill9();
    node.restart().unwrap();
    let lost = bob_online.expect(|v| is(v, "connection_lost"), "the loss is reported");
    assert!(lost["supernode"].as_str().unwrap_or_default().starts_with("wss://"), "{lost}");
    bob_online.expect_within(
        Duration::from_secs(30),
        |v| is(v, "reconnected"),
        "back after a crash",
    );
    alice.ok(&["send", "bob", "still there?"]);
    let got = bob_online.expect(|v| is(v, "message"), "a message after the restarts");
    assert_eq!(got["message"]["text"], "still there?");
    bob_online.stop();
}
