//! `peerline-loadgen run` end to end: a few hundred seeded users whose contacts follow the
//! roster ring (written straight into the cluster's PostgreSQL, as `provision` would), logged
//! in from two worker processes over two clustered supernodes, held a few seconds with every
//! kind of background activity. Counts only, never timings: every login succeeded, every
//! message sent was delivered exactly once, every call exchange completed on both ends, and
//! nothing failed.
//!
//! Needs PostgreSQL and nats-server (`scripts/setup`) and the binaries (`cargo build --bins`);
//! fails, never skips, without them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;

use peerline_loadgen::roster;
use peerline_store::{ContactState, Store};
use peerline_store_postgres::PostgresStore;
use peerline_testkit::cluster::TestCluster;
use serde_json::Value;

const USERS: usize = 300;

/// Makes every roster pair of the first `users` users of `prefix` accepted contacts.
async fn befriend_roster(database_url: &str, prefix: &str, users: usize) {
    let store = PostgresStore::connect(database_url).await.unwrap();
    let mut ids = Vec::with_capacity(users);
    for i in 0..users {
        let account = store.account_by_username(&format!("{prefix}{i}")).await.unwrap().unwrap();
        ids.push(account.id);
    }
    let accepted = || Some((ContactState::Accepted, None));
    for (a, b) in roster::pairs(users) {
        store.write_contact_pair(ids[a], ids[b], accepted(), accepted(), 1).await.unwrap();
    }
    store.close().await;
}

fn loadgen(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_peerline-loadgen"))
        .arg("--json")
        .args(args)
        .output()
        .expect("running peerline-loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "peerline-loadgen {args:?} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\nstderr:\n{stderr}", String::from_utf8_lossy(&out.stdout))
    })
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_logs_everyone_in_and_delivers_every_message_and_call() {
    let cluster = TestCluster::start(2)
        .unwrap_or_else(|e| panic!("the test cluster must start (run scripts/setup): {e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("users.json");
    let state = state.to_str().unwrap();
    let db = cluster.database_url();
    let users = USERS.to_string();
    let seeded = loadgen(&[
        "seed",
        "--database-url",
        &db,
        "--users",
        &users,
        "--prefix",
        "run",
        "--state",
        state,
    ]);
    assert_eq!(seeded["created"], USERS, "{seeded}");
    befriend_roster(&db, "run", USERS).await;

    let pids = format!("{},{}", cluster.pid(0), cluster.pid(1));
    // Per user these rates stay well under the supernodes' default limits (a message every
    // 10 s, a search a minute, an invite per caller every 30 s).
    let report = loadgen(&[
        "run",
        "--supernode",
        cluster.url(0),
        "--supernode",
        cluster.url(1),
        "--state",
        state,
        "--users",
        &users,
        "--workers",
        "2",
        "--source-ips",
        "127.0.9.1-127.0.9.8",
        "--login-rate",
        "300",
        "--hold",
        "5",
        "--heartbeat",
        "2",
        "--message-rate",
        "30",
        "--presence-rate",
        "10",
        "--search-rate",
        "5",
        "--call-rate",
        "5",
        "--call-secs",
        "0.5",
        "--supernode-pid",
        &pids,
    ]);
    let r = &report;
    assert_eq!(r["command"], "run");
    assert_eq!(r["workers"], 2, "{r}");
    assert_eq!((count(&r["login"]["ok"]), count(&r["login"]["failed"])), (USERS as u64, 0), "{r}");
    assert_eq!(count(&r["hold"]["online_at_end"]), USERS as u64, "{r}");
    assert_eq!(r["hold"]["disconnects"]["counts"], serde_json::json!({}), "{r}");
    assert_eq!(r["errors"]["counts"], serde_json::json!({}), "no request failed: {r}");

    let t = &r["totals"];
    let sent = count(&t["messages_sent"]);
    assert!(sent > 0, "{r}");
    assert_eq!(count(&t["messages_delivered"]), sent, "every message delivered: {r}");
    assert_eq!(count(&t["messages_duplicated"]), 0, "and only once: {r}");
    let calls = count(&t["calls_started"]);
    assert!(calls > 0, "{r}");
    assert_eq!(count(&t["calls_completed"]), calls, "every call completed for its caller: {r}");
    assert_eq!(count(&t["calls_answered"]), calls, "and for its callee: {r}");
    assert!(count(&t["presence_changes"]) > 0 && count(&t["presence_events"]) > 0, "{r}");
    assert!(count(&t["searches"]) > 0 && count(&t["pings"]) > 0, "{r}");

    for kind in [
        "login",
        "ping",
        "send_message",
        "message_delivery",
        "ack_delivered",
        "set_status",
        "search",
        "call_invite",
        "call_invite_to_ringing",
        "call_invite_to_answer",
        "call_ringing",
        "call_accept",
        "call_candidate",
        "call_hangup",
    ] {
        assert!(count(&r["latency"][kind]["count"]) > 0, "{kind} measured: {r}");
    }
    let first_try = count(&r["latency"]["login"]["count"]);
    let retried = r["latency"]["login_after_retries"]["count"].as_u64().unwrap_or(0);
    assert_eq!(first_try + retried, USERS as u64, "{r}");
    assert_eq!(count(&r["latency"]["send_message"]["count"]), sent, "{r}");
    let supernode = &r["supernode"];
    assert_eq!(supernode["processes"].as_array().unwrap().len(), 2, "{r}");
    assert!(count(&supernode["rss_logged_in_bytes"]) > 0, "{r}");
}
