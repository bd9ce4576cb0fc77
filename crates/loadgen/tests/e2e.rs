//! End to end: the real `peerline-loadgen` binary against real supernodes on loopback, asserting
//! what a user of the tool checks (users registered, tokens work, connections held, a storm
//! measured after a supernode is killed). Counts only: benchmarks are never timed tests.
//!
//! The storm test needs PostgreSQL and nats-server (`scripts/setup`); it fails without them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use peerline_testkit::Supernode;
use peerline_testkit::cluster::TestCluster;
use serde_json::Value;

/// Runs the load generator with `--json`; returns its JSON report, or its stderr on failure.
fn loadgen(args: &[&str]) -> Result<Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_peerline-loadgen"))
        .arg("--json")
        .args(args)
        .output()
        .expect("running peerline-loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(stderr);
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}; stderr:\n{stderr}"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn registers_logs_in_and_holds_against_a_real_supernode() {
    let node = Supernode::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("users.json");
    let url = node.url.as_str();

    let register = [
        "register",
        "--supernode",
        url,
        "--state",
        path(&state),
        "--users",
        "3",
        "--prefix",
        "e2e",
    ];
    let r = loadgen(&register).unwrap();
    assert_eq!(r["register"]["ok"], 3, "{r}");
    assert_eq!(r["password_login"]["ok"], 3, "{r}");
    assert_eq!(r["users_in_state"], 3, "{r}");

    // Running it again registers nobody and keeps the saved tokens.
    let again = loadgen(&register).unwrap();
    assert_eq!(
        (again["already_registered"].clone(), again["password_login"]["ok"].clone()),
        (3.into(), 0.into()),
        "{again}"
    );

    let token =
        loadgen(&["login", "--supernode", url, "--state", path(&state), "--users", "3"]).unwrap();
    assert_eq!(
        (token["method"].as_str(), token["ok"].as_u64()),
        (Some("token"), Some(3)),
        "{token}"
    );

    let password = loadgen(&[
        "login",
        "--supernode",
        url,
        "--state",
        path(&state),
        "--users",
        "2",
        "--password",
    ])
    .unwrap();
    assert_eq!(password["ok"], 2, "{password}");

    // Memory is read from any process; the test's own stands in for the supernode's.
    let pid = std::process::id().to_string();
    let hold = loadgen(&[
        "hold",
        "--supernode",
        url,
        "--state",
        path(&state),
        "--users",
        "3",
        "--ramp",
        "100",
        "--hold",
        "1",
        "--source-ips",
        "127.0.0.2-127.0.0.3",
        "--supernode-pid",
        &pid,
    ])
    .unwrap();
    assert_eq!(
        (hold["connected"].as_u64(), hold["alive_at_end"].as_u64()),
        (Some(3), Some(3)),
        "{hold}"
    );
    assert!(hold["memory"]["rss_before_bytes"].as_u64().unwrap() > 0, "{hold}");

    let too_many = loadgen(&["login", "--supernode", url, "--state", path(&state), "--users", "4"])
        .unwrap_err();
    assert!(too_many.contains("holds 3 users"), "{too_many}");
}

#[test]
fn seeds_users_and_measures_a_storm_when_a_supernode_is_killed() {
    let mut cluster = TestCluster::start(2)
        .unwrap_or_else(|e| panic!("the test cluster must start (run scripts/setup): {e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("users.json");
    let (csv, png) = (dir.path().join("curve.csv"), dir.path().join("curve.png"));
    let db = cluster.database_url();
    let seeded = loadgen(&[
        "seed",
        "--database-url",
        &db,
        "--users",
        "20",
        "--prefix",
        "e2estorm",
        "--state",
        path(&state),
    ])
    .unwrap();
    assert_eq!(seeded["created"], 20, "{seeded}");

    let mut storm = Command::new(env!("CARGO_BIN_EXE_peerline-loadgen"))
        .args(["--json", "storm", "--supernode", cluster.url(0), "--supernode", cluster.url(1)])
        .args(["--state", path(&state), "--users", "20", "--source-ips", "127.0.0.2-127.0.0.5"])
        .args(["--kill-wait-secs", "60", "--recover-secs", "60"])
        .args(["--csv", path(&csv), "--png", path(&png)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running peerline-loadgen storm");
    // It says when to kill; the test does.
    let mut stderr = BufReader::new(storm.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    for line in stderr.by_ref() {
        let line = line.unwrap();
        let ready = line.contains("kill one supernode now");
        said.push(line);
        if ready {
            break;
        }
    }
    assert!(said.iter().any(|l| l.contains("all 20 online")), "{said:#?}");
    cluster.kill9(0);
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let out = storm.wait_with_output().unwrap();
    assert!(out.status.success(), "{said:#?}\n{rest:#?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recovery = &report["recovery"];
    assert_eq!(
        (recovery["dropped"].as_u64(), recovery["back"].as_u64()),
        (Some(10), Some(10)),
        "{report}"
    );
    assert_eq!(recovery["lost_hosts"][0], cluster.url(0), "{report}");
    assert_eq!(recovery["back_on"][cluster.url(1)], 10, "{report}");
    assert!(recovery["seconds_to"]["p100"].as_f64().is_some(), "{report}");
    assert_eq!(report["after"][cluster.url(1)], 20, "{report}");
    let curve = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(curve.lines().count(), 12, "a header, the start and one row per return:\n{curve}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"), "a PNG plot");
}

/// `hold-nats`, the comparison's other side, holds every connection of a real nats-server's TLS
/// WebSocket port, and a wrong token is refused with the server's error, not counted as held.
#[test]
fn holds_tls_websocket_clients_of_a_real_nats_server() {
    let nats = peerline_testkit::nats_websocket::NatsWebSocket::start().unwrap();
    let pid = nats.pid().to_string();
    let report = loadgen(&[
        "hold-nats",
        "--server",
        &nats.url,
        "--connections",
        "300",
        "--ramp",
        "1000",
        "--hold",
        "2",
        "--heartbeat",
        "1",
        "--token",
        &nats.token,
        "--server-pid",
        &pid,
    ])
    .unwrap();
    assert_eq!(report["command"], "hold-nats");
    assert_eq!(report["connected"], 300, "{report}");
    assert_eq!(report["alive_at_end"], 300, "{report}");
    assert!(report["pings_sent"].as_u64().unwrap() >= 300, "{report}");
    assert!(report["memory"]["rss_connected_bytes"].as_u64().unwrap() > 0, "{report}");

    let refused = loadgen(&[
        "hold-nats",
        "--server",
        &nats.url,
        "--connections",
        "3",
        "--hold",
        "0",
        "--token",
        "wrong",
    ])
    .unwrap();
    assert_eq!(refused["connected"], 0, "{refused}");
    let failures = refused["failures"].to_string();
    assert!(failures.contains("nats:err") && failures.contains("Authorization"), "{refused}");
}
