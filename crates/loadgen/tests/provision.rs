//! `peerline-loadgen provision`, end to end: the real binary writes an import file, runs the real
//! `peerline-supernode import` into a running supernode's SQLite data dir, and the provisioned
//! users then log in by token through the real protocol, each with the contacts the roster gives
//! it. Counts only, never timings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

use peerline_loadgen::dial::{Dialer, LoginSecret};
use peerline_loadgen::roster;
use peerline_loadgen::state_file::StateFile;
use peerline_testkit::Supernode;
use peerline_wire::{ContactState, Reply, Request};
use serde_json::Value;

/// Runs the load generator with `--json`; returns its JSON report, or its stderr on failure.
fn loadgen(args: &[&str]) -> Result<Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_peerline-loadgen"))
        .arg("--json")
        .args(args)
        .env("RUST_BACKTRACE", "0")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_users_log_in_by_token_with_their_roster_contacts() {
    let node = Supernode::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("users.json");
    let data_dir = node.data_dir.to_str().unwrap();

    // Into the running supernode's database (SQLite takes the import's writes next to its own);
    // the supernode binary is found next to the load generator's.
    let provisioned = loadgen(&[
        "provision",
        "60",
        "--prefix",
        "prov",
        "--data-dir",
        data_dir,
        "--state",
        path(&state),
    ])
    .unwrap();
    assert_eq!(
        (&provisioned["users"], &provisioned["contact_pairs"], &provisioned["imported"]),
        (&Value::from(60), &Value::from(60 * roster::HALF), &Value::from(true)),
        "{provisioned}"
    );
    assert_eq!(StateFile::load(&state).unwrap().len(), 60, "every user saved");

    let url = node.url.as_str();
    let login =
        loadgen(&["login", "--supernode", url, "--state", path(&state), "--users", "60"]).unwrap();
    assert_eq!(
        (login["method"].as_str(), login["ok"].as_u64()),
        (Some("token"), Some(60)),
        "{login}"
    );

    // User 0's contacts (the ring wraps: 1..=10 and 50..=59) through the protocol, accepted.
    let (name, saved) = StateFile::load(&state).unwrap().take(0, 1).unwrap().remove(0);
    assert_eq!(name, "prov0");
    let dialer = Dialer::new(url, None).await.unwrap();
    let mut session = dialer.connect(0).await.unwrap();
    let key = saved.signing_key().unwrap();
    session.login(&name, &key, LoginSecret::Token(&saved.token)).await.unwrap();
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        match session.call(Request::Contacts { after: after.clone() }).await.unwrap() {
            Reply::Contacts { contacts, more } => {
                for c in &contacts {
                    assert_eq!(c.state, ContactState::Accepted, "{} is accepted", c.username);
                }
                after = contacts.last().map(|c| c.username.clone());
                listed.extend(contacts.into_iter().map(|c| c.username));
                if !more {
                    break;
                }
            }
            other => panic!("contacts answered {other:?}"),
        }
    }
    listed.sort();
    let mut expected: Vec<String> =
        roster::contacts_of(0, 60).into_iter().map(|i| format!("prov{i}")).collect();
    expected.sort();
    assert_eq!(expected.len(), 20);
    assert_eq!(listed, expected, "exactly the roster's contacts");
    session.close().await;

    // A second provision of the same users is refused (their names are taken), and says so.
    let again = loadgen(&[
        "provision",
        "60",
        "--prefix",
        "prov",
        "--data-dir",
        data_dir,
        "--state",
        path(&dir.path().join("again.json")),
    ])
    .unwrap_err();
    assert!(again.contains("is an existing account"), "{again}");
    assert!(!dir.path().join("again.json").exists(), "no state saved for a refused provision");
}

#[test]
fn import_file_only_writes_the_file_for_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let (state, file) = (dir.path().join("users.json"), dir.path().join("import.jsonl"));
    let report =
        loadgen(&["provision", "30", "--import-file", path(&file), "--state", path(&state)])
            .unwrap();
    assert_eq!(report["imported"], false, "{report}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 30 + 30 * roster::HALF, "accounts and pairs");
    assert_eq!(StateFile::load(&state).unwrap().len(), 30);
}
