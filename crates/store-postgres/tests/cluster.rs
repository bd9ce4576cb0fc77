//! What a cluster needs of the PostgreSQL store beyond the conformance suite: several supernodes
//! (here: several stores, each with its own pool) changing one contact pair at once, and a
//! database server that stops, crashes and comes back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use peerline_store::{ContactState, ContactStates, NewAccount, Store, StoreError, StoreResult};
use peerline_store_postgres::{PostgresOptions, PostgresStore};
use peerline_testkit::postgres::TestPostgres;

fn new_account(username: &str) -> NewAccount {
    NewAccount {
        username: username.to_owned(),
        display_name: format!("{username} display"),
        password_hash: "$argon2id$test".to_owned(),
    }
}

/// The states a pair cycles through, one step per successful change.
const CYCLE: [ContactStates; 3] = [
    (None, None),
    (Some(ContactState::Outgoing), Some(ContactState::Incoming)),
    (Some(ContactState::Accepted), Some(ContactState::Accepted)),
];

/// The step after `states` in [`CYCLE`].
fn next(states: ContactStates) -> ContactStates {
    let at = CYCLE.iter().position(|s| *s == states).expect("a state of the cycle");
    CYCLE[(at + 1) % CYCLE.len()]
}

/// Advances the pair one step by read, decide, compare-and-set, again on conflict; returns the
/// change's version.
async fn step(store: &PostgresStore, a: i64, b: i64) -> i64 {
    loop {
        let (x, y) = store.contact_pair(a, b).await.unwrap();
        let read = (x.map(|r| r.state), y.map(|r| r.state));
        let (a_state, b_state) = next(read);
        let side = |state: Option<ContactState>| state.map(|s| (s, None));
        match store.update_contact_pair(a, b, read, side(a_state), side(b_state), 1).await {
            Ok(Some(version)) => return version,
            Ok(None) => tokio::task::yield_now().await,
            Err(e) if e.is_retryable() => tokio::task::yield_now().await,
            Err(e) => panic!("update_contact_pair failed: {e}"),
        }
    }
}

/// Four supernodes (stores with pools of their own) each advance one pair 25 times, all at once:
/// every change lands exactly once (no lost update: the pair ends where 100 steps lead), every
/// change has its own version, and the rows carry the largest, so the last change to commit has
/// the largest version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_of_a_pair_from_several_stores_serialize() {
    let server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
    let url = server.create_database("cluster").unwrap();
    let first = PostgresStore::connect(&url).await.unwrap();
    let alice = first.create_account(new_account("alice"), 1).await.unwrap().id;
    let bob = first.create_account(new_account("bob"), 1).await.unwrap().id;

    let mut tasks = tokio::task::JoinSet::new();
    for node in 0..4 {
        let url = url.clone();
        tasks.spawn(async move {
            let store = PostgresStore::connect(&url).await.unwrap();
            let mut versions = Vec::new();
            for _ in 0..25 {
                // Half the nodes name the pair the other way round: one lock for both.
                let version = if node % 2 == 0 {
                    step(&store, alice, bob).await
                } else {
                    step_ba(&store, alice, bob).await
                };
                versions.push(version);
            }
            store.close().await;
            versions
        });
    }
    let mut versions = Vec::new();
    while let Some(done) = tasks.join_next().await {
        versions.extend(done.unwrap());
    }
    assert_eq!(versions.len(), 100);
    let mut distinct = versions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 100, "every change has its own version");

    let (a_row, b_row) = first.contact_pair(alice, bob).await.unwrap();
    let states = (a_row.as_ref().map(|r| r.state), b_row.as_ref().map(|r| r.state));
    assert_eq!(states, CYCLE[100 % CYCLE.len()], "100 steps from the empty pair, none lost");
    let newest = *distinct.last().unwrap();
    for row in [a_row, b_row].into_iter().flatten() {
        assert_eq!(row.version, newest, "the rows carry the version of the last change");
    }
    first.close().await;
}

/// Four supernodes register devices at once: the same new key logging in on all four at the same
/// moment makes one device (every call returns it), and distinct keys get distinct ids, none of
/// a device removed meanwhile. The same call recorded by all four makes one record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_device_logins_and_call_records_from_several_stores() {
    let server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
    let url = server.create_database("devices").unwrap();
    let first = PostgresStore::connect(&url).await.unwrap();
    let alice = first.create_account(new_account("alice"), 1).await.unwrap().id;
    let bob = first.create_account(new_account("bob"), 1).await.unwrap().id;
    let removed = first.upsert_device(bob, &[0xee; 32], "old", 1).await.unwrap().id;
    assert!(first.remove_device(bob, removed).await.unwrap());

    let mut tasks = tokio::task::JoinSet::new();
    for node in 0..4_u8 {
        let url = url.clone();
        tasks.spawn(async move {
            let store = PostgresStore::connect(&url).await.unwrap();
            let shared = store.upsert_device(bob, &[0x5a; 32], "shared", 2).await.unwrap().id;
            let mut own = Vec::new();
            for i in 0..10_u8 {
                let mut key = [node; 32];
                key[1] = i;
                own.push(store.upsert_device(bob, &key, "own", 2).await.unwrap().id);
            }
            let record = peerline_store::NewCallRecord {
                call_id: "call-1".to_owned(),
                owner: alice,
                peer: bob,
                outgoing: true,
                started_at: 1,
                answered_at: None,
                ended_at: 2,
                end_reason: "no_answer".to_owned(),
                path: None,
            };
            let call = store.record_call(record).await.unwrap();
            store.close().await;
            (shared, own, call)
        });
    }
    let mut shared = Vec::new();
    let mut own = Vec::new();
    let mut calls = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (s, o, c) = done.unwrap();
        shared.push(s);
        own.extend(o);
        calls.push(c);
    }
    shared.dedup();
    assert_eq!(shared.len(), 1, "one device for the key that logged in on four nodes at once");
    calls.dedup();
    assert_eq!(calls.len(), 1, "one record of the call recorded on four nodes at once");
    assert_eq!(first.call_log(alice, false, None, 10).await.unwrap().len(), 1);

    let mut all = own.clone();
    all.push(shared[0]);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 41, "distinct keys, distinct ids");
    assert!(!all.contains(&removed), "the removed device's id was issued again");
    let listed: Vec<i64> = first.devices(bob).await.unwrap().iter().map(|d| d.id).collect();
    assert_eq!(listed.len(), 41, "bob has the 41 devices: {listed:?}");
    first.close().await;
}

/// [`step`] with the pair named `(b, a)`.
async fn step_ba(store: &PostgresStore, a: i64, b: i64) -> i64 {
    loop {
        let (y, x) = store.contact_pair(b, a).await.unwrap();
        let read = (x.map(|r| r.state), y.map(|r| r.state));
        let (a_state, b_state) = next(read);
        let side = |state: Option<ContactState>| state.map(|s| (s, None));
        let expected = (read.1, read.0);
        match store.update_contact_pair(b, a, expected, side(b_state), side(a_state), 1).await {
            Ok(Some(version)) => return version,
            Ok(None) => tokio::task::yield_now().await,
            Err(e) if e.is_retryable() => tokio::task::yield_now().await,
            Err(e) => panic!("update_contact_pair failed: {e}"),
        }
    }
}

/// Calls `f` until it succeeds (at most 30 s); every failure before must be retryable.
async fn until_ok<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Ok(value) => return value,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// While the server is stopped or crashed, calls fail as retryable (within the connect
/// timeout); once it is back, the same store works again without reconnecting, and everything
/// acknowledged before the crash is there.
#[tokio::test]
async fn store_rides_out_a_stopped_and_a_crashed_server() {
    let mut server = TestPostgres::start().expect("starting a throwaway PostgreSQL");
    let url = server.create_database("restart").unwrap();
    let options = PostgresOptions { connect_timeout: Duration::from_secs(1), ..Default::default() };
    let store = PostgresStore::connect_with(&url, &options).await.unwrap();
    let alice = store.create_account(new_account("alice"), 1).await.unwrap();
    let bob = store.create_account(new_account("bob"), 1).await.unwrap();

    store.ping().await.expect("the server answers");
    server.stop().unwrap();
    assert!(store.ping().await.unwrap_err().is_retryable(), "ping while stopped");
    let started = Instant::now();
    match store.account_by_id(alice.id).await {
        Err(StoreError::Retryable(msg)) => println!("while stopped: {msg}"),
        other => panic!("a call while the server is stopped must be Retryable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "fails within the connect timeout");
    server.restart().unwrap();
    let again = until_ok("account_by_id after restart", || store.account_by_id(alice.id)).await;
    assert_eq!(again, Some(alice.clone()));

    let message = store.store_message(alice.id, bob.id, "acknowledged", 2).await.unwrap();
    server.kill9().unwrap();
    match store.undelivered(bob.id, None, 10).await {
        Err(e) if e.is_retryable() => println!("while crashed: {e}"),
        other => panic!("a call while the server is down must be Retryable, got {other:?}"),
    }
    server.restart().unwrap();
    let queued =
        until_ok("undelivered after the crash", || store.undelivered(bob.id, None, 10)).await;
    assert_eq!(queued, [message], "an acknowledged message survives a crash of the server");
    store.close().await;
    server.stop().unwrap();
}
