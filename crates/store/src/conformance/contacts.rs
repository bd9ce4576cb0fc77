//! The contract of contact lists: pairs written together, in order, and never from a stale read.

use super::*;
use crate::{ContactLink, ContactStates, ContactVersion};

/// Both rows of a pair are written, read and deleted together, each write with a new version.
pub async fn contact_pair_write_read_delete(store: &dyn Store) {
    use ContactState::*;
    let (a, b) = (account(store, "alice", "A").await.id, account(store, "bob", "B").await.id);
    let carol = account(store, "carol", "C").await.id;
    let pair = |x, y| async move { ok("contact_pair", store.contact_pair(x, y).await) };
    let row = |owner, peer, state, message: Option<&str>, updated_at, version| ContactRow {
        owner,
        peer,
        state,
        message: message.map(str::to_owned),
        updated_at,
        version,
    };
    assert_eq!(pair(a, b).await, (None, None), "no rows yet");

    let hi = Some("hi, it's alice");
    let written = store.write_contact_pair(a, b, side(Outgoing, hi), side(Incoming, hi), T0 + 1);
    let v1 = ok("write_contact_pair", written.await);
    let a_row = row(a, b, Outgoing, hi, T0 + 1, v1);
    let b_row = row(b, a, Incoming, hi, T0 + 1, v1);
    assert_eq!(
        pair(a, b).await,
        (Some(a_row.clone()), Some(b_row.clone())),
        "contact_pair(a, b) is (a's row about b, b's row about a), updated_at = now"
    );
    assert_eq!(pair(b, a).await, (Some(b_row), Some(a_row)), "contact_pair(b, a) swaps them");
    assert_eq!(pair(a, carol).await, (None, None), "another pair is empty");

    let written =
        store.write_contact_pair(b, a, side(Accepted, None), side(Accepted, None), T0 + 2);
    let v2 = ok("write_contact_pair", written.await);
    assert!(v2 > v1, "each change of a pair has a larger version: {v1} then {v2}");
    assert_eq!(
        pair(a, b).await,
        (Some(row(a, b, Accepted, None, T0 + 2, v2)), Some(row(b, a, Accepted, None, T0 + 2, v2))),
        "rewriting a pair replaces state, greeting, updated_at and version"
    );

    let v3 = ok(
        "write_contact_pair",
        store.write_contact_pair(a, b, None, side(Blocked, None), T0 + 3).await,
    );
    assert_eq!(
        pair(a, b).await,
        (None, Some(row(b, a, Blocked, None, T0 + 3, v3))),
        "None deletes that side only"
    );

    ok("write_contact_pair", store.write_contact_pair(a, b, None, None, T0 + 4).await);
    assert_eq!(pair(a, b).await, (None, None), "both sides deleted");
    let again = store.write_contact_pair(a, b, None, None, T0 + 5).await;
    ok("deleting rows that do not exist", again);
}

/// `contacts` lists the owner's rows only, joined with the peers' names, ordered by username.
pub async fn contacts_ordered_by_username_with_names(store: &dyn Store) {
    use ContactState::*;
    let owner = account(store, "owner", "The Owner").await;
    let zed = account(store, "zed", "Zed Zebra").await;
    let amy = account(store, "amy", "Amy Ant").await;
    let mike = account(store, "mike", "Mike Moose").await;
    let other = account(store, "other", "Someone Else").await;
    let contacts = |owner| async move { ok("contacts", store.contacts(owner, None, 100).await) };
    assert_eq!(contacts(owner.id).await, [], "empty list");

    link(store, owner.id, zed.id, side(Accepted, None), side(Accepted, None)).await;
    link(store, owner.id, amy.id, side(Incoming, Some("hello")), side(Outgoing, Some("hello")))
        .await;
    link(store, owner.id, mike.id, side(Blocked, None), None).await;
    link(store, other.id, zed.id, side(Accepted, None), side(Accepted, None)).await;

    let entry = |who: &Account, state, message: Option<&str>| ContactEntry {
        peer: who.id,
        username: who.username.clone(),
        display_name: who.display_name.clone(),
        state,
        message: message.map(str::to_owned),
    };
    assert_eq!(
        contacts(owner.id).await,
        [
            entry(&amy, Incoming, Some("hello")),
            entry(&mike, Blocked, None),
            entry(&zed, Accepted, None)
        ],
        "contacts ordered by username, with names, state and greeting; no other owner's rows"
    );
    assert_eq!(contacts(mike.id).await, [], "the owner's row about mike is not mike's row");

    ok("set_profile", store.set_profile(zed.id, Some("Zed Renamed"), None).await);
    let list = contacts(owner.id).await;
    assert_eq!(
        list.last().map(|e| e.display_name.as_str()),
        Some("Zed Renamed"),
        "contacts joins the peer's current display name"
    );
}

/// `contacts` pages: the first `limit` entries whose username sorts after `after`, so that
/// walking pages from the last username of each yields the whole list once.
pub async fn contacts_page_after_a_username(store: &dyn Store) {
    use ContactState::*;
    let owner = account(store, "owner", "The Owner").await;
    let mut names = Vec::new();
    for i in 0..7 {
        let peer = account(store, &format!("peer{i}"), &format!("Peer {i}")).await;
        link(store, owner.id, peer.id, side(Accepted, None), side(Accepted, None)).await;
        names.push(peer.username);
    }
    // Rows of another owner, sorting after every contact of this one, are never listed.
    let other = account(store, "zz-other", "Not a contact").await;
    let first = ok("account_by_username", store.account_by_username("peer0").await);
    let first = first.expect("peer0 exists").id;
    link(store, other.id, first, side(Accepted, None), side(Accepted, None)).await;
    let page = |after: Option<String>, limit| async move {
        let entries = ok("contacts", store.contacts(owner.id, after.as_deref(), limit).await);
        entries.into_iter().map(|e| e.username).collect::<Vec<_>>()
    };

    assert_eq!(page(None, 3).await, names[..3], "the first page");
    assert_eq!(page(Some("peer2".into()), 3).await, names[3..6], "after excludes itself");
    assert_eq!(page(Some("peer5".into()), 3).await, names[6..], "the last page is short");
    assert_eq!(page(Some("peer6".into()), 3).await, Vec::<String>::new(), "nothing after");
    assert_eq!(page(Some("a".into()), 100).await, names, "after a name that is no contact");
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let got = page(after.clone(), 2).await;
        if got.is_empty() {
            break;
        }
        after = got.last().cloned();
        walked.extend(got);
    }
    assert_eq!(walked, names, "walking pages of 2 lists every contact once, in order");
}

/// `incoming_requests` counts the owner's pending incoming requests only, up to `limit`.
pub async fn incoming_requests_counted_up_to_the_limit(store: &dyn Store) {
    use ContactState::*;
    let owner = account(store, "owner", "The Owner").await;
    let count = |limit| async move {
        ok("incoming_requests", store.incoming_requests(owner.id, limit).await)
    };
    assert_eq!(count(10).await, 0, "no requests yet");
    for i in 0..4 {
        let asker = account(store, &format!("asker{i}"), "Asker").await;
        link(store, owner.id, asker.id, side(Incoming, Some("hi")), side(Outgoing, Some("hi")))
            .await;
    }
    let friend = account(store, "friend", "Friend").await;
    link(store, owner.id, friend.id, side(Accepted, None), side(Accepted, None)).await;
    let asked = account(store, "asked", "Asked").await;
    link(store, owner.id, asked.id, side(Outgoing, None), side(Incoming, None)).await;
    let blocked = account(store, "blocked", "Blocked").await;
    link(store, owner.id, blocked.id, side(Blocked, None), None).await;

    assert_eq!(count(10).await, 4, "incoming rows only");
    assert_eq!(count(3).await, 3, "counted up to the limit");
    assert_eq!(
        ok("incoming_requests", store.incoming_requests(asked.id, 10).await),
        1,
        "the owner's own request is pending with the other user"
    );
}

/// `contact_links` names every peer with a row on either side: mutual only when both rows are
/// accepted, with the version of the pair's newest change.
pub async fn contact_links_say_who_is_mutual_as_of_which_change(store: &dyn Store) {
    use ContactState::*;
    let me = account(store, "me", "Me").await.id;
    let both = account(store, "both", "Both").await.id;
    let both2 = account(store, "both2", "Both Two").await.id;
    let mine_only = account(store, "mineonly", "Mine Only").await.id;
    let theirs_only = account(store, "theirsonly", "Theirs Only").await.id;
    let pending = account(store, "pending", "Pending").await.id;
    let blocked = account(store, "blocked", "Blocked").await.id;
    let _no_rows = account(store, "norows", "No Rows").await.id;
    let accepted = || side(Accepted, None);
    let write = |a, b, a_side, b_side| async move {
        ok("write_contact_pair", store.write_contact_pair(a, b, a_side, b_side, T0).await)
    };

    let v_both = write(me, both, accepted(), accepted()).await;
    let v_both2 = write(both2, me, accepted(), accepted()).await;
    let v_mine = write(me, mine_only, accepted(), None).await;
    let v_theirs = write(me, theirs_only, None, accepted()).await;
    let v_pending = write(me, pending, side(Outgoing, None), side(Incoming, None)).await;
    let v_blocked = write(me, blocked, accepted(), side(Blocked, None)).await;
    let v_others = write(both, both2, accepted(), accepted()).await; // not involving `me`

    let link = |peer, mutual, version| ContactLink { peer, mutual, version };
    let mut expected = vec![
        link(both, true, v_both),
        link(both2, true, v_both2),
        link(mine_only, false, v_mine),
        link(theirs_only, false, v_theirs),
        link(pending, false, v_pending),
        link(blocked, false, v_blocked),
    ];
    expected.sort_by_key(|l| l.peer);
    assert_eq!(
        ok("contact_links", store.contact_links(me).await),
        expected,
        "every peer with a row on either side, ordered by peer; mutual only if both accepted"
    );
    let mut seen_by_both = vec![link(me, true, v_both), link(both2, true, v_others)];
    seen_by_both.sort_by_key(|l| l.peer);
    assert_eq!(ok("contact_links", store.contact_links(both).await), seen_by_both);
}

/// `update_contact_pair` writes only while both rows are in the states the caller read, and
/// never writes from a stale read.
pub async fn update_contact_pair_is_a_compare_and_set(store: &dyn Store) {
    use ContactState::*;
    let (a, b) = (account(store, "alice", "A").await.id, account(store, "bob", "B").await.id);
    let update = |expected: ContactStates, a_side, b_side| async move {
        ok(
            "update_contact_pair",
            store.update_contact_pair(a, b, expected, a_side, b_side, T0).await,
        )
    };
    let states = || async {
        let (x, y) = ok("contact_pair", store.contact_pair(a, b).await);
        (x.map(|r| r.state), y.map(|r| r.state))
    };

    let v1 = update((None, None), side(Outgoing, Some("hi")), side(Incoming, Some("hi"))).await;
    let v1 = v1.expect("both rows missing as expected: written");
    assert_eq!(states().await, (Some(Outgoing), Some(Incoming)));

    // A decision made from the empty pair is stale now.
    let stale = update((None, None), side(Blocked, None), None).await;
    assert_eq!(stale, None, "expected both rows missing, they exist: nothing written");
    let stale = update((Some(Outgoing), None), None, None).await;
    assert_eq!(stale, None, "one row differs: nothing written");
    assert_eq!(states().await, (Some(Outgoing), Some(Incoming)), "the pair is untouched");

    let v2 = update((Some(Outgoing), Some(Incoming)), side(Accepted, None), side(Accepted, None))
        .await
        .expect("fresh expectation: written");
    assert!(v2 > v1, "a later change has a larger version");
    let v3 =
        update((Some(Accepted), Some(Accepted)), None, side(Blocked, None)).await.expect("written");
    assert!(v3 > v2);
    assert_eq!(states().await, (None, Some(Blocked)), "a side can be deleted by a CAS");
    let (_, row) = ok("contact_pair", store.contact_pair(a, b).await);
    assert_eq!(row.map(|r| r.version), Some(v3), "rows carry the version of their change");
}

/// The decision of a handler, from the states it read: `a` blocks `b` (whose accepted row or
/// own block stays).
fn block((_, theirs): ContactStates) -> (ContactSide, ContactSide) {
    use ContactState::*;
    let theirs = match theirs {
        Some(state @ (Accepted | Blocked)) => Some((state, None)),
        _ => None,
    };
    (Some((Blocked, None)), theirs)
}

/// `a` adds `b` again: a request, or nothing visible if `b` blocked `a`.
fn add((_, theirs): ContactStates) -> (ContactSide, ContactSide) {
    use ContactState::*;
    match theirs {
        Some(Blocked) => (Some((Outgoing, None)), Some((Blocked, None))),
        Some(Outgoing | Accepted) => (Some((Accepted, None)), Some((Accepted, None))),
        _ => (Some((Outgoing, None)), Some((Incoming, None))),
    }
}

/// Read, decide, compare-and-set, again on conflict: how handlers apply a contact change.
async fn apply(
    store: &dyn Store,
    a: UserId,
    b: UserId,
    decide: fn(ContactStates) -> (ContactSide, ContactSide),
) -> ContactVersion {
    for _ in 0..1000 {
        let (x, y) = ok("contact_pair", store.contact_pair(a, b).await);
        let read = (x.map(|r| r.state), y.map(|r| r.state));
        let (a_side, b_side) = decide(read);
        let written = store.update_contact_pair(a, b, read, a_side, b_side, T0).await;
        match written {
            Ok(Some(version)) => return version,
            Ok(None) => tokio::task::yield_now().await,
            Err(e) if e.is_retryable() => tokio::task::yield_now().await,
            Err(e) => panic!("update_contact_pair failed: {e}"),
        }
    }
    panic!("a contact change lost 1000 compare-and-sets in a row")
}

/// Bob blocks alice while alice adds bob again, many rounds, concurrently: whichever commits
/// first, the block is there at the end. A handler that wrote from a stale read would put
/// alice's request over bob's block.
pub async fn concurrent_block_and_re_add_the_block_always_wins(store: &dyn Store) {
    use ContactState::*;
    let (alice, bob) = (account(store, "alice", "A").await.id, account(store, "bob", "B").await.id);
    for round in 0..40 {
        ok("write_contact_pair", store.write_contact_pair(alice, bob, None, None, T0).await);
        // Deterministic first: both read the empty pair, then the block commits first.
        let (x, y) = ok("contact_pair", store.contact_pair(alice, bob).await);
        let read = (x.map(|r| r.state), y.map(|r| r.state));
        let (bob_side, alice_side) = block((None, None));
        let blocked = store.update_contact_pair(bob, alice, (None, None), bob_side, alice_side, T0);
        assert!(ok("update_contact_pair", blocked.await).is_some());
        let (a_side, b_side) = add(read);
        let stale = store.update_contact_pair(alice, bob, read, a_side, b_side, T0).await;
        assert_eq!(ok("update_contact_pair", stale), None, "round {round}: stale add refused");

        // Then truly concurrent, in either order.
        ok("write_contact_pair", store.write_contact_pair(alice, bob, None, None, T0).await);
        let (v_block, v_add) = if round % 2 == 0 {
            tokio::join!(apply(store, bob, alice, block), apply(store, alice, bob, add))
        } else {
            let (v_add, v_block) =
                tokio::join!(apply(store, alice, bob, add), apply(store, bob, alice, block));
            (v_block, v_add)
        };
        assert_ne!(v_block, v_add, "two changes, two versions");
        let (bob_row, alice_row) = ok("contact_pair", store.contact_pair(bob, alice).await);
        assert_eq!(
            bob_row.map(|r| r.state),
            Some(Blocked),
            "round {round}: bob's block survives alice's re-add (alice's row: {alice_row:?})"
        );
        let links = ok("contact_links", store.contact_links(alice).await);
        assert!(links.iter().all(|l| !l.mutual), "round {round}: never mutual across a block");
    }
}
