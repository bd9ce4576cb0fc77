//! Client failover end to end: real supernodes (a cluster sharing one PostgreSQL, one
//! nats-server and one certificate, from `peerline_testkit::cluster`) and the real `peerline`
//! CLI. A user who knows one supernode learns the network's others at login; when hers dies
//! (`kill -9`), `peerline online` goes on with another one on the saved session token, without
//! a password; an old home keeps its session and pin; a supernode of the network presenting
//! another certificate is refused.
//!
//! These tests need PostgreSQL and nats-server: `scripts/setup` installs both. They fail, never
//! skip, when either cannot start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use peerline_testkit::cluster::{TestCluster, metric};
use peerline_testkit::{Run, Supernode, User};
use serde_json::{Value, json};

/// Password logins a supernode served (each one an Argon2 hash).
const PASSWORD_LOGINS: &str = "peerline_logins_total{method=\"password\"";
/// Successful token logins a supernode served.
const TOKEN_LOGINS_OK: &str = "peerline_logins_total{method=\"token\",result=\"ok\"}";

fn cluster(n: usize) -> TestCluster {
    TestCluster::start(n).unwrap_or_else(|e| panic!("the test cluster must start: {e:#}"))
}

fn presence(v: &Value, user: &str, presence: &str) -> bool {
    v["event"] == "presence" && v["username"] == user && v["presence"] == presence
}

fn networks_file(user: &User) -> Value {
    let text = std::fs::read_to_string(user.home().join("networks.json")).expect("networks.json");
    serde_json::from_str(&text).expect("networks.json is JSON")
}

#[test]
fn online_survives_the_death_of_its_supernode_without_the_password() {
    let mut cluster = cluster(3);
    // alice only ever names sn1; bob is on sn3.
    let alice = User::new("alice", cluster.node(0));
    let bob = User::new("bob", cluster.node(2));
    alice.register();
    bob.register();
    alice.befriend(&bob);

    // The login taught alice's home the whole network, under one pin and one session.
    let networks = networks_file(&alice);
    let network = &networks["networks"][0];
    assert_eq!(network["given"], json!([cluster.url(0)]), "{networks:#}");
    // The supernodes list the network in a random order at each login, to spread failovers.
    let mut learned: Vec<&str> =
        network["learned"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    learned.sort_unstable();
    let mut others = vec![cluster.url(1), cluster.url(2)];
    others.sort_unstable();
    assert_eq!(learned, others, "{networks:#}");
    assert_eq!(network["pin"], cluster.fingerprint(), "{networks:#}");
    // Logged in through sn1 is logged in on sn2: the same session, no password asked.
    let via_sn2 = run_at(&alice, cluster.url(1), &["whoami"]);
    assert_eq!(via_sn2.json()["username"], "alice", "{via_sn2:?}");

    let mut bob_online = bob.online();
    let mut alice_online = alice.online();
    bob_online.expect(|v| presence(v, "alice", "online"), "alice online, seen on sn3");
    let password_logins: Vec<f64> =
        (1..3).map(|i| cluster.metric(i, PASSWORD_LOGINS).unwrap()).collect();

    cluster.kill9(0);
    let killed = Instant::now();
    alice_online.expect(|v| v["event"] == "connection_lost", "alice's client noticing the loss");
    let back = alice_online.expect_within(
        Duration::from_secs(10),
        |v| v["event"] == "reconnected",
        "alice back online on another supernode within 10 s",
    );
    let took = killed.elapsed();
    let url = back["supernode"].as_str().unwrap();
    let i = (1..3).find(|i| cluster.url(*i) == url).unwrap_or_else(|| panic!("{back}"));
    eprintln!(
        "failover: back on sn{} {} ms after the loss ({} attempt(s)), {took:?} after kill -9",
        i + 1,
        back["after_ms"],
        back["attempts"]
    );
    // With the token, never the password: no Argon2 on the supernode she came back to.
    assert_eq!(cluster.metric(i, PASSWORD_LOGINS).unwrap(), password_logins[i - 1]);
    assert!(cluster.metric(i, TOKEN_LOGINS_OK).unwrap() >= 1.0);
    alice_online.expect(|v| presence(v, "bob", "online"), "bob's presence again, after the login");

    // bob on sn3 sees her online once sn3 has noticed that sn1 died.
    cluster.wait_live_nodes(2, 1, Duration::from_secs(10)).unwrap();
    let seen = bob_online.drain_for(Duration::from_millis(1000));
    let last = seen.iter().rev().find(|v| v["event"] == "presence" && v["username"] == "alice");
    assert_eq!(last.map(|v| v["presence"].clone()), Some(json!("online")), "{seen:#?}");
    let contacts = bob.ok(&["contacts"]);
    assert_eq!(contacts[0]["presence"], "online", "{contacts:#}");

    // She goes on as usual: a message reaches bob, and a one-shot command that names the dead
    // sn1 goes to another supernode of the network.
    alice.ok(&["send", "bob", "still here"]);
    bob_online.expect(|v| v["event"] == "message", "alice's message after the failover");
    assert_eq!(alice.ok(&["whoami"])["username"], "alice");
}

#[test]
fn a_home_from_before_networks_keeps_its_session_and_pin() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    alice.register();
    let saved = networks_file(&alice)["networks"][0].clone();
    let fingerprint = node.fingerprint.clone().unwrap();
    assert_eq!(saved["pin"], fingerprint);

    // Make the home what a client from before networks left: a session per URL, a pin per
    // host:port.
    let old_home = |pin: &str| {
        let _ = std::fs::remove_file(alice.home().join("networks.json"));
        let sessions = json!({ node.url.clone(): saved["session"].clone() });
        std::fs::write(alice.home().join("sessions.json"), sessions.to_string()).unwrap();
        std::fs::write(
            alice.home().join("known_supernodes"),
            format!("# Peerline known supernodes\n{} {pin}\n", node.addr),
        )
        .unwrap();
    };

    // The old pin is still enforced: a wrong one refuses the supernode.
    let wrong = ["00"; 32].join(":");
    old_home(&wrong);
    assert_eq!(alice.run(&["whoami"]).error_code(), "certificate_changed");
    assert!(!alice.home().join("networks.json").exists(), "nothing written on a refusal");

    // The right one, and the old session logs in without the password.
    old_home(&fingerprint);
    let password_logins = metric(&node, PASSWORD_LOGINS).unwrap();
    assert_eq!(alice.ok(&["whoami"])["username"], "alice");
    assert_eq!(metric(&node, PASSWORD_LOGINS).unwrap(), password_logins, "no password login");
    let mut online = alice.online();
    online.stop();

    // Migrated: one network with the old URL, pin and session.
    let networks = networks_file(&alice);
    let network = &networks["networks"][0];
    assert_eq!(network["given"], json!([node.url]), "{networks:#}");
    assert_eq!(network["pin"], fingerprint, "{networks:#}");
    assert_eq!(network["session"], saved["session"], "{networks:#}");
}

#[test]
fn a_supernode_of_the_network_with_another_certificate_is_refused() {
    let mut cluster = cluster(2);
    let alice = User::new("alice", cluster.node(0));
    alice.register();
    let mut alice_online = alice.online();

    // sn2's address now answers with another certificate (a self-signed one of its own).
    let sn2_addr = cluster.node(1).addr.clone();
    cluster.kill9(1);
    let impostor = Supernode::start_at(&sn2_addr, &[]).unwrap();
    assert_ne!(impostor.fingerprint.as_deref(), Some(cluster.fingerprint()));

    // Named directly: refused with the certificate-changed error, as a single supernode is.
    let run = run_at(&alice, cluster.url(1), &["whoami"]);
    assert_eq!(run.error_code(), "certificate_changed", "{run:?}");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("trust --forget"), "{message}");

    // Failing over, the impostor is skipped (with a warning) and never logged in to; alice
    // comes back on sn1 once it is back.
    cluster.kill9(0);
    alice_online.expect(|v| v["event"] == "connection_lost", "the loss of sn1");
    cluster.restart(0).unwrap();
    let back = alice_online.expect_within(
        Duration::from_secs(45),
        |v| v["event"] == "reconnected",
        "alice back on sn1",
    );
    assert_eq!(back["supernode"], cluster.url(0));
    let stderr = alice_online.stop();
    assert!(stderr.contains("CHANGED"), "the skipped impostor is reported: {stderr}");
    assert_eq!(metric(&impostor, "peerline_logins_total").unwrap(), 0.0);
}

/// Runs `peerline --json ARGS` on `user`'s home (same device, same networks) with
/// `--supernode url`, and without a password in reach.
fn run_at(user: &User, url: &str, args: &[&str]) -> Run {
    let output = std::process::Command::new(peerline_testkit::bin("peerline"))
        .env("PEERLINE_HOME", user.home())
        .env("PEERLINE_SUPERNODE", url)
        .env_remove("PEERLINE_CA")
        .env_remove("PEERLINE_PASSWORD")
        .arg("--json")
        .args(args)
        .output()
        .expect("running peerline");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
