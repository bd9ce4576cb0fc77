//! The contract of call history: one record per (owner, call), newest first page by page, the
//! media path reported afterwards, and retention.

use super::*;
use crate::{CallRecord, NewCallRecord};

/// A call `owner` had with `peer`, started at `at`, answered a second later when `answered`,
/// ended ten seconds after it started.
fn call(
    owner: UserId,
    peer: UserId,
    call_id: &str,
    outgoing: bool,
    answered: bool,
    at: TimestampMs,
) -> NewCallRecord {
    NewCallRecord {
        call_id: call_id.to_owned(),
        owner,
        peer,
        outgoing,
        started_at: at,
        answered_at: answered.then_some(at + 1_000),
        ended_at: at + 10_000,
        end_reason: if answered { "hangup" } else { "no_answer" }.to_owned(),
        path: None,
    }
}

/// `record_call`.
async fn record(store: &dyn Store, record: NewCallRecord) -> i64 {
    ok("record_call", store.record_call(record).await)
}

/// `call_log(owner, missed_only, before, limit)`.
async fn log(
    store: &dyn Store,
    owner: UserId,
    missed_only: bool,
    before: Option<i64>,
    limit: u32,
) -> Vec<CallRecord> {
    ok("call_log", store.call_log(owner, missed_only, before, limit).await)
}

/// Ids of `call_log(owner, missed_only, before, limit)`.
async fn log_ids(
    store: &dyn Store,
    owner: UserId,
    missed_only: bool,
    before: Option<i64>,
    limit: u32,
) -> Vec<i64> {
    log(store, owner, missed_only, before, limit).await.iter().map(|c| c.id).collect()
}

/// A record reads back with every field and the peer's username; both parties of one call get
/// their own record; recording a call again, even with other values, changes nothing and
/// returns the first record's id.
pub async fn record_call_is_idempotent(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let mut hers = call(alice, bob, "call-1", true, true, T0);
    hers.path = Some("direct".to_owned());
    let his = call(bob, alice, "call-1", false, true, T0);
    let her_id = record(store, hers.clone()).await;
    let his_id = record(store, his.clone()).await;
    assert_ne!(her_id, his_id, "caller and callee each get their own record of one call");

    let expected = CallRecord {
        id: her_id,
        call_id: "call-1".to_owned(),
        peer: "bob".to_owned(),
        peer_id: bob,
        outgoing: true,
        started_at: T0,
        answered_at: Some(T0 + 1_000),
        ended_at: T0 + 10_000,
        end_reason: "hangup".to_owned(),
        path: Some("direct".to_owned()),
    };
    assert_eq!(
        log(store, alice, false, None, 10).await,
        std::slice::from_ref(&expected),
        "alice's record"
    );
    let his_record = log(store, bob, false, None, 10).await;
    assert_eq!(his_record.len(), 1, "bob's log has his record only: {his_record:?}");
    assert_eq!((his_record[0].id, his_record[0].peer.as_str()), (his_id, "alice"));
    assert!(!his_record[0].outgoing, "bob received the call");
    assert_eq!(his_record[0].path, None, "no path reported yet");

    let mut changed = call(alice, bob, "call-1", false, false, T0 + 500);
    changed.end_reason = "failed".to_owned();
    changed.path = Some("relay".to_owned());
    assert_eq!(record(store, changed).await, her_id, "recording again returns the same id");
    assert_eq!(record(store, hers).await, her_id, "and again");
    assert_eq!(log(store, alice, false, None, 10).await, [expected], "the record is unchanged");
    assert_eq!(log_ids(store, bob, false, None, 10).await, [his_id], "bob's record is unchanged");
}

/// `call_log` lists the owner's records only, newest first (by id), at most `limit`, and
/// `before` pages through older ones without gaps or repeats.
pub async fn call_log_newest_first_with_paging(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    assert!(log(store, alice, false, None, 10).await.is_empty(), "an empty log");
    let mut ids = Vec::new();
    for i in 0..7 {
        let peer = if i % 2 == 0 { bob } else { carol };
        ids.push(
            record(store, call(alice, peer, &format!("c{i}"), i % 3 == 0, i % 2 == 0, T0 + i))
                .await,
        );
        // Other owners' records interleave.
        record(store, call(bob, carol, &format!("b{i}"), true, true, T0 + i)).await;
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase in storage order: {ids:?}");
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    assert_eq!(log_ids(store, alice, false, None, 100).await, newest_first, "newest first");
    assert_eq!(log_ids(store, alice, false, None, 3).await, newest_first[..3], "at most limit");

    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = log_ids(store, alice, false, before, 3).await;
        assert!(page.len() <= 3, "a page holds at most `limit`: {page:?}");
        let Some(&last) = page.last() else { break };
        paged.extend(page);
        before = Some(last);
    }
    assert_eq!(paged, newest_first, "paging with `before` visits every record once, in order");
    assert_eq!(
        log_ids(store, alice, false, Some(ids[3]), 10).await,
        [ids[2], ids[1], ids[0]],
        "`before` excludes its own id"
    );
    let peers: Vec<String> =
        log(store, alice, false, None, 2).await.into_iter().map(|c| c.peer).collect();
    assert_eq!(peers, ["bob", "carol"], "the peer's username is joined in");
    let unknown = unknown_user(&[]) + alice.max(bob).max(carol);
    assert!(log(store, unknown, false, None, 10).await.is_empty(), "an unknown owner has none");
}

/// `missed_only` lists incoming calls that were never answered: not outgoing ones (answered or
/// not), not answered incoming ones; with paging too.
pub async fn call_log_missed_only(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let missed1 = record(store, call(alice, bob, "in-missed-1", false, false, T0)).await;
    record(store, call(alice, bob, "in-answered", false, true, T0 + 1)).await;
    record(store, call(alice, bob, "out-unanswered", true, false, T0 + 2)).await;
    record(store, call(alice, bob, "out-answered", true, true, T0 + 3)).await;
    let missed2 = record(store, call(alice, bob, "in-missed-2", false, false, T0 + 4)).await;
    // Bob's side of a call alice missed is his outgoing, unanswered call: not missed for him.
    record(store, call(bob, alice, "in-missed-2", true, false, T0 + 4)).await;

    assert_eq!(
        log_ids(store, alice, true, None, 10).await,
        [missed2, missed1],
        "missed, newest first"
    );
    assert_eq!(log_ids(store, alice, true, None, 1).await, [missed2], "at most limit");
    assert_eq!(log_ids(store, alice, true, Some(missed2), 10).await, [missed1], "next page");
    assert_eq!(log(store, alice, false, None, 10).await.len(), 5, "all of alice's calls");
    assert!(log(store, bob, true, None, 10).await.is_empty(), "bob missed nothing");
    let missed = log(store, alice, true, None, 10).await;
    assert!(
        missed.iter().all(|c| !c.outgoing && c.answered_at.is_none()),
        "only incoming, never answered: {missed:?}"
    );
}

/// `set_call_path` sets (and replaces) the path of the owner's record of the call only; `false`
/// for a call the owner has no record of.
pub async fn set_call_path_only_own_record(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    record(store, call(alice, bob, "call-1", true, true, T0)).await;
    record(store, call(bob, alice, "call-1", false, true, T0)).await;
    record(store, call(alice, bob, "call-2", true, true, T0 + 1)).await;
    let path = |owner, call_id: &'static str| async move {
        let log = log(store, owner, false, None, 10).await;
        log.into_iter().find(|c| c.call_id == call_id).expect("the record").path
    };

    assert!(ok("set_call_path", store.set_call_path(alice, "call-1", "direct").await), "set");
    assert_eq!(path(alice, "call-1").await.as_deref(), Some("direct"), "alice's path");
    assert_eq!(path(bob, "call-1").await, None, "bob's record of the call is untouched");
    assert_eq!(path(alice, "call-2").await, None, "another call is untouched");

    assert!(ok("set_call_path", store.set_call_path(alice, "call-1", "relay").await), "again");
    assert_eq!(path(alice, "call-1").await.as_deref(), Some("relay"), "a later report replaces");

    assert!(
        !ok("set_call_path", store.set_call_path(alice, "no-such-call", "direct").await),
        "no record of that call"
    );
    let carol = account(store, "carol", "Carol").await.id;
    assert!(
        !ok("set_call_path", store.set_call_path(carol, "call-1", "direct").await),
        "carol has no record of alice and bob's call"
    );
    assert_eq!(path(bob, "call-1").await, None, "still untouched");
}

/// A record stored after the newest ones were purged gets a new, larger id: ids are never
/// reused, so a page boundary a client remembers stays valid.
pub async fn call_log_ids_not_reused_after_purge(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    record(store, call(alice, bob, "c1", true, true, T0)).await;
    let newest = record(store, call(alice, bob, "c2", true, true, T0)).await;
    let purged = ok("purge_call_log_before", store.purge_call_log_before(T0 + 10_001, 10).await);
    assert_eq!(purged, 2, "both purged");
    assert!(log(store, alice, false, None, 10).await.is_empty(), "the log is empty");
    let next = record(store, call(alice, bob, "c3", true, true, T0 + 20_000)).await;
    assert!(next > newest, "a record after a purge gets a new, larger id ({next} after {newest})");
}

/// `purge_call_log_before` deletes records that ended strictly before the cutoff, oldest first,
/// at most `limit` per call, of every owner.
pub async fn purge_call_log_in_batches(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let mut ids = Vec::new();
    for i in 0..5 {
        // Recorded newest-ending first, so that id order is not the purge order.
        let started = T0 + 4 - i;
        let owner = if i % 2 == 0 { alice } else { bob };
        let peer = if owner == alice { bob } else { alice };
        ids.push((
            started + 10_000,
            record(store, call(owner, peer, &format!("c{i}"), true, true, started)).await,
        ));
    }
    let purge = |cutoff, limit| async move {
        ok("purge_call_log_before", store.purge_call_log_before(cutoff, limit).await)
    };
    let remaining = || async move {
        let mut all: Vec<i64> = log_ids(store, alice, false, None, 100).await;
        all.extend(log_ids(store, bob, false, None, 100).await);
        all.sort_unstable();
        all
    };
    let cutoff = T0 + 10_000 + 4; // the record that ended at the cutoff is kept
    assert_eq!(purge(T0 + 10_000, 10).await, 0, "nothing ended before the first end");
    assert_eq!(purge(cutoff, 3).await, 3, "at most `limit`");
    let mut oldest_ending_kept: Vec<i64> =
        ids.iter().filter(|(end, _)| *end >= T0 + 10_003).map(|&(_, id)| id).collect();
    oldest_ending_kept.sort_unstable();
    assert_eq!(remaining().await, oldest_ending_kept, "the records that ended first went first");
    assert_eq!(purge(cutoff, 3).await, 1, "the last one before the cutoff");
    assert_eq!(purge(cutoff, 3).await, 0, "then nothing");
    let kept: Vec<i64> = ids.iter().filter(|(end, _)| *end >= cutoff).map(|&(_, id)| id).collect();
    assert_eq!(remaining().await, kept, "a record that ended at the cutoff is kept");
}
