//! End to end: the real `peerline-loadgen` binary against a real supernode on loopback, asserting
//! what a user of the tool checks (users registered, tokens work, connections held). Counts only:
//! benchmarks are never timed tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

use peerline_testkit::Supernode;
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
