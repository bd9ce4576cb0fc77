//! The contract of messages and missed calls.

use super::*;

// ---- messages ----

/// Stored messages carry both parties' ids and names, the store time and no receipts; ids grow
/// in storage order.
pub async fn store_message_ids_increase(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let first = send(store, alice, bob, "hello bob", T0 + 1).await;
    let expected = StoredMessage {
        id: first.id,
        from_id: alice,
        from: "alice".into(),
        to_id: bob,
        to: "bob".into(),
        text: "hello bob".into(),
        sent_at: T0 + 1,
        delivered_at: None,
        read_at: None,
    };
    assert_eq!(first, expected, "stored message");
    let mut last = first.id;
    for (i, (from, to)) in [(bob, alice), (alice, bob), (alice, alice)].into_iter().enumerate() {
        let text = format!("message {i} ✓ ünïcödé");
        let m = send(store, from, to, &text, T0 + 2).await;
        assert!(m.id > last, "message ids increase in storage order ({} after {last})", m.id);
        assert_eq!(m.text, text, "text round-trips");
        last = m.id;
    }
}

/// Purging the newest messages does not let their ids be handed out again.
pub async fn message_ids_not_reused_after_purge(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    send(store, alice, bob, "one", T0).await;
    let newest = send(store, alice, bob, "two", T0).await;
    assert_eq!(ok("purge", store.purge_messages_before(T0 + 1, 10).await), 2, "both purged");
    let next = send(store, alice, bob, "three", T0 + 2).await;
    assert!(
        next.id > newest.id,
        "a message stored after a purge gets a new, larger id ({} after {})",
        next.id,
        newest.id
    );
}

/// `undelivered` returns the user's undelivered messages, oldest first, at most `limit`.
pub async fn undelivered_oldest_first_with_limit(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let m1 = send(store, alice, bob, "1", T0).await;
    send(store, alice, carol, "to carol", T0).await;
    let m2 = send(store, carol, bob, "2", T0 + 1).await;
    send(store, bob, alice, "from bob", T0 + 1).await;
    let m3 = send(store, alice, bob, "3", T0 + 2).await;

    let all = ok("undelivered", store.undelivered(bob, None, 10).await);
    assert_eq!(all, [m1.clone(), m2.clone(), m3.clone()], "bob's messages only, oldest first");
    assert_eq!(undelivered_ids(store, bob, 2).await, [m1.id, m2.id], "limit keeps the oldest");
    delivered(store, bob, &[m1.id], T0 + 5).await;
    assert_eq!(undelivered_ids(store, bob, 10).await, [m2.id, m3.id], "delivered ones drop out");
    read(store, bob, &[m3.id], T0 + 6).await;
    assert_eq!(undelivered_ids(store, bob, 10).await, [m2.id], "read implies delivered");
    assert_eq!(undelivered_ids(store, carol + 1000, 10).await, NO_IDS, "unknown user");
}

/// `mark_delivered` stamps the recipient's messages once and returns only those it changed;
/// other users' messages are ignored.
pub async fn mark_delivered_returns_only_newly_delivered(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let m1 = send(store, alice, bob, "1", T0).await.id;
    let m2 = send(store, alice, bob, "2", T0).await.id;
    let m3 = send(store, alice, bob, "3", T0).await.id;
    let to_alice = send(store, bob, alice, "to alice", T0).await.id;

    assert_eq!(delivered(store, bob, &[], T0 + 1).await, [], "no ids, nothing marked");
    let first = delivered(store, bob, &[m2, m1], T0 + 10).await;
    assert_eq!(ids(&first), [m1, m2], "both newly delivered");
    for m in &first {
        assert_eq!(m.delivered_at, Some(T0 + 10), "delivered_at is the `now` passed in");
        assert_eq!(m.read_at, None, "delivery does not mark read");
        assert_eq!((m.from.as_str(), m.to.as_str()), ("alice", "bob"), "names joined in");
    }

    let unknown = to_alice + 1000;
    let second = delivered(store, bob, &[m1, m3, to_alice, unknown, m3], T0 + 20).await;
    assert_eq!(ids(&second), [m3], "only the newly delivered one, once; others' ids ignored");
    assert_eq!(second.first().and_then(|m| m.delivered_at), Some(T0 + 20));

    let now = history(store, alice, bob, 10, None).await;
    assert_eq!(find(&now, m1).delivered_at, Some(T0 + 10), "a second mark keeps the first time");
    assert_eq!(find(&now, to_alice).delivered_at, None, "bob cannot mark alice's message");
    assert_eq!(undelivered_ids(store, alice, 10).await, [to_alice], "alice's queue untouched");
}

/// `mark_read` stamps read (and delivered, where missing) once and returns only the messages
/// newly read; other users' messages are ignored.
pub async fn mark_read_returns_only_newly_read(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let early = send(store, alice, bob, "delivered earlier", T0).await.id;
    let fresh = send(store, alice, bob, "never delivered", T0).await.id;
    let later = send(store, alice, bob, "later", T0).await.id;
    let to_alice = send(store, bob, alice, "to alice", T0).await.id;
    delivered(store, bob, &[early], T0 + 5).await;

    assert_eq!(read(store, bob, &[], T0 + 1).await, [], "no ids, nothing marked");
    let first = read(store, bob, &[fresh, early], T0 + 10).await;
    assert_eq!(ids(&first), sorted(vec![early, fresh]), "both newly read");
    assert_eq!(find(&first, fresh).read_at, Some(T0 + 10), "read_at is the `now` passed in");
    assert_eq!(find(&first, fresh).delivered_at, Some(T0 + 10), "read sets a missing delivery");
    assert_eq!(find(&first, early).delivered_at, Some(T0 + 5), "an earlier delivery is kept");
    assert_eq!(find(&first, early).read_at, Some(T0 + 10));

    let second = read(store, bob, &[fresh, later, to_alice, later], T0 + 20).await;
    assert_eq!(ids(&second), [later], "only the newly read one, once; others' ids ignored");
    assert_eq!(unread_ids(store, alice, 10).await, [to_alice], "alice's message untouched");
    assert_eq!(unread_ids(store, bob, 10).await, NO_IDS, "all of bob's read");
    let now = history(store, alice, bob, 10, None).await;
    assert_eq!(find(&now, fresh).read_at, Some(T0 + 10), "a second mark keeps the first time");
    assert_eq!(delivered(store, bob, &[fresh], T0 + 30).await, [], "read is already delivered");
}

/// `unread` returns the user's unread messages, oldest first, at most `limit`, delivered or not.
pub async fn unread_oldest_first_with_limit(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let m1 = send(store, alice, bob, "1", T0).await.id;
    let m2 = send(store, alice, bob, "2", T0 + 1).await.id;
    send(store, bob, alice, "from bob", T0 + 1).await;
    let m3 = send(store, alice, bob, "3", T0 + 2).await.id;
    delivered(store, bob, &[m1, m2], T0 + 3).await;

    let unread = ok("unread", store.unread(bob, None, 10).await);
    assert_eq!(ids(&unread), [m1, m2, m3], "delivered-but-unread messages are unread");
    assert_eq!(find(&unread, m1).delivered_at, Some(T0 + 3), "with their receipts");
    assert_eq!(unread_ids(store, bob, 2).await, [m1, m2], "limit keeps the oldest");
    read(store, bob, &[m2], T0 + 4).await;
    assert_eq!(unread_ids(store, bob, 10).await, [m1, m3], "read ones drop out");
}

/// `undelivered` and `unread` with `after` return the next page: only ids above it, oldest first.
pub async fn undelivered_and_unread_page_after_an_id(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send(store, alice, bob, &format!("{i}"), T0 + i).await.id);
    }
    let undelivered = |after, limit| async move {
        ids(&ok("undelivered", store.undelivered(bob, after, limit).await))
    };
    let unread =
        |after, limit| async move { ids(&ok("unread", store.unread(bob, after, limit).await)) };
    assert_eq!(undelivered(Some(sent[1]), 2).await, sent[2..4], "the page after an id");
    assert_eq!(undelivered(Some(sent[3]), 10).await, sent[4..], "the last page");
    assert_eq!(undelivered(Some(sent[4]), 10).await, NO_IDS, "nothing after the newest");
    assert_eq!(unread(Some(sent[0]), 3).await, sent[1..4], "unread pages the same way");
    delivered(store, bob, &[sent[2]], T0 + 10).await;
    read(store, bob, &[sent[3]], T0 + 11).await;
    assert_eq!(undelivered(Some(sent[1]), 10).await, [sent[4]], "delivered ones drop out");
    assert_eq!(unread(Some(sent[1]), 10).await, [sent[2], sent[4]], "read ones drop out");
}

/// `undelivered_counts` counts messages no device acknowledged: from one sender, and from
/// anyone, each up to `limit`.
pub async fn undelivered_counts_per_sender_and_in_total(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let counts = |from, to, limit| async move {
        ok("undelivered_counts", store.undelivered_counts(from, to, limit).await)
    };
    let pair = |from_sender, total| UndeliveredCounts { from_sender, total };
    assert_eq!(counts(alice, bob, 10).await, pair(0, 0), "nothing waiting");

    let mut from_alice = Vec::new();
    for i in 0..4 {
        from_alice.push(send(store, alice, bob, &format!("a{i}"), T0 + i).await.id);
    }
    let from_carol = send(store, carol, bob, "c", T0 + 5).await.id;
    send(store, bob, alice, "the other way", T0 + 6).await;
    assert_eq!(counts(alice, bob, 10).await, pair(4, 5), "alice's four, five in all");
    assert_eq!(counts(carol, bob, 10).await, pair(1, 5), "carol's one");
    assert_eq!(counts(alice, bob, 3).await, pair(3, 3), "each count stops at the limit");
    assert_eq!(counts(bob, alice, 10).await, pair(1, 1), "the other direction");

    delivered(store, bob, &from_alice[..2], T0 + 10).await;
    read(store, bob, &[from_carol], T0 + 11).await;
    assert_eq!(counts(alice, bob, 10).await, pair(2, 2), "acknowledged ones no longer count");
}

/// `recent_sends` counts the newest messages a sender stored at or after `since` (to anyone),
/// at most `limit`, and says when the oldest of those was stored.
pub async fn recent_sends_count_a_senders_window(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let recent = |since, limit| async move {
        ok("recent_sends", store.recent_sends(alice, since, limit).await)
    };
    assert_eq!(recent(T0, 10).await, RecentSends { count: 0, oldest: None }, "nothing sent");

    send(store, alice, bob, "old", T0).await;
    send(store, alice, bob, "1", T0 + 10).await;
    send(store, alice, carol, "2", T0 + 20).await;
    send(store, alice, bob, "3", T0 + 30).await;
    send(store, bob, alice, "not alice's", T0 + 40).await;
    assert_eq!(
        recent(T0 + 10, 10).await,
        RecentSends { count: 3, oldest: Some(T0 + 10) },
        "every recipient, from `since` on, `since` included"
    );
    assert_eq!(
        recent(T0 + 10, 2).await,
        RecentSends { count: 2, oldest: Some(T0 + 20) },
        "the newest `limit`: the window has room again once T0 + 20 leaves it"
    );
    assert_eq!(recent(T0 + 31, 10).await, RecentSends { count: 0, oldest: None });
    assert_eq!(recent(0, 100).await.count, 4, "all of alice's, none of bob's");
}

/// `history` returns both directions of one conversation: the newest `limit` below `before`,
/// oldest first.
pub async fn history_both_directions_with_paging(store: &dyn Store) {
    let a = account(store, "alice", "Alice").await.id;
    let b = account(store, "bob", "Bob").await.id;
    let c = account(store, "carol", "Carol").await.id;
    let m1 = send(store, a, b, "1", T0).await;
    let m2 = send(store, b, a, "2", T0 + 1).await;
    let m3 = send(store, a, c, "other conversation", T0 + 2).await;
    let m4 = send(store, a, b, "4", T0 + 3).await;
    let m5 = send(store, b, a, "5", T0 + 4).await;
    send(store, c, b, "other conversation", T0 + 5).await;
    let page = |x, y, limit, before| async move { ids(&history(store, x, y, limit, before).await) };
    let (m1, m2, m3, m4, m5) = (m1.id, m2.id, m3.id, m4.id, m5.id);

    assert_eq!(page(a, b, 10, None).await, [m1, m2, m4, m5], "both directions, oldest first");
    assert_eq!(page(b, a, 10, None).await, [m1, m2, m4, m5], "the same from b's side");
    assert_eq!(page(a, b, 2, None).await, [m4, m5], "the newest `limit`, oldest first");
    assert_eq!(page(a, b, 2, Some(m4)).await, [m1, m2], "`before` pages back");
    assert_eq!(page(a, b, 10, Some(m5)).await, [m1, m2, m4], "`before` itself is excluded");
    assert_eq!(page(a, b, 1, Some(m2)).await, [m1], "the last page");
    assert_eq!(page(a, b, 10, Some(m1)).await, NO_IDS, "nothing before the first");
    assert_eq!(page(c, a, 10, None).await, [m3], "another conversation");
    let full = history(store, a, b, 1, None).await;
    assert_eq!(full.first().map(|m| (m.from.as_str(), m.to.as_str())), Some(("bob", "alice")));
}

/// `purge_messages_before` deletes messages stored strictly before the cutoff and counts them.
pub async fn purge_messages_before_cutoff(store: &dyn Store) {
    let a = account(store, "alice", "Alice").await.id;
    let b = account(store, "bob", "Bob").await.id;
    send(store, a, b, "old", T0).await;
    let m2 = send(store, b, a, "at cutoff", T0 + 10).await.id;
    let m3 = send(store, a, b, "new", T0 + 20).await.id;
    let purge = |cutoff| async move { ok("purge", store.purge_messages_before(cutoff, 100).await) };

    assert_eq!(purge(T0).await, 0, "nothing stored before T0");
    assert_eq!(purge(T0 + 10).await, 1, "one message stored strictly before the cutoff");
    let left = ids(&history(store, a, b, 10, None).await);
    assert_eq!(left, [m2, m3], "a message stored at the cutoff is kept");
    assert_eq!(undelivered_ids(store, b, 10).await, [m3], "purged from the offline queue too");
    assert_eq!(purge(T0 + 10).await, 0, "purging again finds nothing");
    assert_eq!(purge(T0 + 1000).await, 2, "the rest");
    assert_eq!(history(store, a, b, 10, None).await, [], "all gone");
}

/// `purge_messages_before` deletes at most `limit` per call, the oldest first, so a large purge
/// is many short statements.
pub async fn purge_messages_in_batches(store: &dyn Store) {
    let a = account(store, "alice", "Alice").await.id;
    let b = account(store, "bob", "Bob").await.id;
    let mut sent = Vec::new();
    for i in 0..7 {
        sent.push(send(store, a, b, &format!("{i}"), T0 + i).await.id);
    }
    let purge = |cutoff, limit| async move {
        ok("purge", store.purge_messages_before(cutoff, limit).await)
    };
    assert_eq!(purge(T0 + 5, 2).await, 2, "at most `limit`");
    assert_eq!(ids(&history(store, a, b, 10, None).await), sent[2..], "the oldest went first");
    assert_eq!(purge(T0 + 5, 2).await, 2);
    assert_eq!(purge(T0 + 5, 2).await, 1, "the last one before the cutoff");
    assert_eq!(purge(T0 + 5, 2).await, 0, "then nothing");
    assert_eq!(ids(&history(store, a, b, 10, None).await), sent[5..], "newer ones are kept");
}

// ---- missed calls ----

/// A recorded missed call carries the call id, both parties' ids, the caller's username and the
/// time passed in; recording the same call for the same callee again returns that row unchanged.
pub async fn record_missed_call_is_idempotent(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let first = miss(store, bob, alice, "call-7f3a", T0 + 1).await;
    let expected = StoredMissedCall {
        id: first.id,
        call_id: "call-7f3a".into(),
        caller_id: alice,
        caller: "alice".into(),
        callee_id: bob,
        at: T0 + 1,
    };
    assert_eq!(first, expected, "stored missed call, with the caller's username");

    let again = miss(store, bob, alice, "call-7f3a", T0 + 1).await;
    assert_eq!(again, first, "recording the same call again returns the same row");
    let other_args = miss(store, bob, carol, "call-7f3a", T0 + 50).await;
    assert_eq!(other_args, first, "a repeat keeps the first row's caller and time");
    assert_eq!(missed_ids(store, bob, 10).await, [first.id], "recorded once");

    assert_eq!(ack(store, bob, &[first.id]).await, 1);
    let after_ack = miss(store, bob, alice, "call-7f3a", T0 + 60).await;
    assert_eq!(after_ack, first, "a repeat after acknowledgement returns the row unchanged");
    assert_eq!(missed_ids(store, bob, 10).await, NO_IDS, "and does not queue it again");

    // The same call id is another row for another callee (a call that rang several users).
    let for_carol = miss(store, carol, alice, "call-7f3a", T0 + 1).await;
    assert_ne!(for_carol.id, first.id, "one row per (callee, call id)");
    assert_eq!((for_carol.callee_id, for_carol.caller.as_str()), (carol, "alice"));
    let next = miss(store, bob, carol, "call-8b21", T0 + 2).await;
    assert!(next.id > for_carol.id, "ids increase in storage order");
    assert_eq!(next.caller, "carol", "caller username joined in");
}

/// `undelivered_missed_calls` returns the callee's unacknowledged calls, oldest first, at most
/// `limit`.
pub async fn undelivered_missed_calls_oldest_first_with_limit(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let c2 = miss(store, bob, alice, "c2", T0 + 2).await;
    miss(store, carol, alice, "to carol", T0).await;
    let c1 = miss(store, bob, carol, "c1", T0 + 1).await;
    miss(store, alice, bob, "to alice", T0).await;
    let c3 = miss(store, bob, alice, "c3", T0 + 3).await;

    let all = ok("undelivered_missed_calls", store.undelivered_missed_calls(bob, 10).await);
    assert_eq!(all, [c1.clone(), c2.clone(), c3.clone()], "bob's calls only, oldest first");
    assert_eq!(missed_ids(store, bob, 2).await, [c1.id, c2.id], "limit keeps the oldest");
    assert_eq!(missed_ids(store, bob, 0).await, NO_IDS, "limit 0");
    assert_eq!(missed_ids(store, carol + 1000, 10).await, NO_IDS, "unknown user");
}

/// `ack_missed_calls` acknowledges only the callee's own calls, each once, and counts only those
/// newly acknowledged; acknowledged calls are no longer listed.
pub async fn ack_missed_calls_only_own_newly_acked(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let c1 = miss(store, bob, alice, "c1", T0).await.id;
    let c2 = miss(store, bob, alice, "c2", T0 + 1).await.id;
    let c3 = miss(store, bob, alice, "c3", T0 + 2).await.id;
    let to_alice = miss(store, alice, bob, "to alice", T0).await.id;

    assert_eq!(ack(store, bob, &[]).await, 0, "no ids, nothing acknowledged");
    assert_eq!(ack(store, bob, &[c2, c1, c2]).await, 2, "both newly acknowledged, each once");
    assert_eq!(missed_ids(store, bob, 10).await, [c3], "acknowledged calls drop out");
    let unknown = to_alice.max(c3) + 1000;
    assert_eq!(
        ack(store, bob, &[c1, c3, to_alice, unknown]).await,
        1,
        "only the one newly acknowledged; others' and unknown ids ignored"
    );
    assert_eq!(missed_ids(store, bob, 10).await, NO_IDS, "all of bob's acknowledged");
    assert_eq!(missed_ids(store, alice, 10).await, [to_alice], "bob cannot ack alice's call");
    assert_eq!(ack(store, alice, &[c1, to_alice]).await, 1, "alice acks her own only");
    assert_eq!(missed_ids(store, alice, 10).await, NO_IDS);
}

/// `purge_missed_calls_before` deletes calls that rang strictly before the cutoff, acknowledged
/// or not, and counts them; ids are not handed out again.
pub async fn purge_missed_calls_before_cutoff(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let old_acked = miss(store, bob, alice, "old acked", T0).await.id;
    miss(store, bob, alice, "old", T0 + 1).await;
    let at_cutoff = miss(store, bob, alice, "at cutoff", T0 + 10).await.id;
    let newest = miss(store, alice, bob, "new", T0 + 20).await.id;
    ack(store, bob, &[old_acked]).await;
    let purge =
        |cutoff| async move { ok("purge", store.purge_missed_calls_before(cutoff, 100).await) };

    assert_eq!(purge(T0).await, 0, "nothing rang before T0");
    assert_eq!(purge(T0 + 10).await, 2, "both calls before the cutoff, acknowledged or not");
    assert_eq!(missed_ids(store, bob, 10).await, [at_cutoff], "a call at the cutoff is kept");
    assert_eq!(ack(store, bob, &[old_acked]).await, 0, "a purged call cannot be acknowledged");
    assert_eq!(purge(T0 + 10).await, 0, "purging again finds nothing");
    assert_eq!(purge(T0 + 1000).await, 2, "the rest");
    assert_eq!(missed_ids(store, alice, 10).await, NO_IDS, "all gone");
    let next = miss(store, bob, alice, "after purge", T0 + 30).await;
    assert!(next.id > newest, "ids are not reused after a purge ({} after {newest})", next.id);
}

/// `purge_missed_calls_before` deletes at most `limit` per call, the oldest first.
pub async fn purge_missed_calls_in_batches(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let mut calls = Vec::new();
    for i in 0..5 {
        calls.push(miss(store, bob, alice, &format!("call-{i}"), T0 + i).await.id);
    }
    let purge = |cutoff, limit| async move {
        ok("purge", store.purge_missed_calls_before(cutoff, limit).await)
    };
    assert_eq!(purge(T0 + 4, 3).await, 3, "at most `limit`");
    assert_eq!(missed_ids(store, bob, 10).await, calls[3..], "the oldest went first");
    assert_eq!(purge(T0 + 4, 3).await, 1, "the last one before the cutoff");
    assert_eq!(purge(T0 + 4, 3).await, 0, "then nothing");
    assert_eq!(missed_ids(store, bob, 10).await, calls[4..], "a call at the cutoff is kept");
}
