//! `peerline echo-service` runs as its own account, never as the person whose home it was
//! started from: run from alice's home (as the README's walk-through does), it must not accept
//! contact requests to alice nor answer her calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use peerline_testkit::{Supernode, User};
use serde_json::Value;

fn state_of(list: &Value, name: &str) -> String {
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["username"] == name)
        .map(|c| c["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Waits (10 s at most) until `who`'s contact `name` is in `state`.
fn wait_for_state(who: &User, name: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = who.ok(&["contacts"]);
        if state_of(&list, name) == state {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never became {state}: {list:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_echo_service_started_from_alices_home_runs_as_echo_not_as_alice() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let bob = User::new("bob", &node);
    alice.register();
    bob.register();

    let mut service = alice.start(&["echo-service", "--username", "echo"]);
    let started =
        service.expect(|v| v.to_string().contains("Echo service running"), "the service to start");
    assert!(started.to_string().contains("running as echo"), "{started}");

    // bob asks alice: the bot must leave the request for alice to decide.
    bob.ok(&["contacts", "add", "alice"]);
    // and asks the bot, which accepts: so by then it has seen (and skipped) alice's request.
    bob.ok(&["contacts", "add", "echo"]);
    wait_for_state(&bob, "echo", "accepted");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state_of(&bob.ok(&["contacts"]), "alice"), "outgoing", "alice did not accept");
    assert_eq!(alice.ok(&["whoami"])["username"], "alice", "alice's session is alice's still");
    service.stop();

    // A second run finds the bot's own session again (no new registration, same account).
    let mut again = alice.start(&["echo-service", "--username", "echo"]);
    let started = again.expect(|v| v.to_string().contains("Echo service running"), "restart");
    assert!(started.to_string().contains("running as echo"), "{started}");
    again.stop();
}
