//! An invisible user cannot be told apart from an offline one: not by the presence events a
//! contact gets when the link between them is broken and made again, and not by receipts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{TestNode, User, befriend};
use peerline_wire::{Event, Presence, Reply, Request, Status};

/// alice blocks bob, lifts the block and adds him again (he still lists her, so they are
/// mutual at once); returns every presence event about bob that alice got meanwhile.
async fn block_then_re_add(alice: &mut User) -> Vec<Presence> {
    alice.drain_events().await;
    for request in [
        Request::ContactBlock { username: "bob".into() },
        Request::ContactRemove { username: "bob".into() },
        Request::ContactAdd { username: "bob".into(), message: None },
    ] {
        assert_eq!(alice.ok(request).await, Reply::Done);
    }
    alice
        .drain_events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::Presence { username, presence } if username == "bob" => Some(presence),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_linking_an_invisible_contact_says_what_re_linking_an_offline_one_says() {
    let node = TestNode::start(&["alice", "bob"]).await;
    let mut alice = User::login(&node, "alice").await;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;

    // bob online but invisible.
    assert_eq!(bob.ok(Request::SetStatus { status: Status::Invisible }).await, Reply::Done);
    alice.expect_presence("bob", Presence::Offline).await;
    let while_invisible = block_then_re_add(&mut alice).await;

    // bob really offline.
    drop(bob);
    let while_offline = block_then_re_add(&mut alice).await;

    assert_eq!(while_invisible, while_offline, "alice can tell invisible from offline");
    assert!(while_invisible.is_empty(), "{while_invisible:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invisible_recipient_sends_no_delivered_receipt_and_history_shows_none() {
    let node = TestNode::start(&["alice", "bob"]).await;
    let mut alice = User::login(&node, "alice").await;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;
    assert_eq!(bob.ok(Request::SetStatus { status: Status::Invisible }).await, Reply::Done);
    alice.expect_presence("bob", Presence::Offline).await;

    let send = Request::SendMessage { to: "bob".into(), text: "are you there?".into() };
    assert!(matches!(alice.ok(send).await, Reply::MessageSent { .. }));
    let pushed = bob.expect("the message", |e| matches!(e, Event::Message { .. })).await;
    let Event::Message { message } = pushed else { unreachable!() };
    assert_eq!(bob.ok(Request::AckDelivered { ids: vec![message.id] }).await, Reply::Done);

    let seen = alice.drain_events().await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Receipt { .. })),
        "a receipt gave the invisible bob away: {seen:?}"
    );
    let history = Request::History { with: "bob".into(), limit: None, before: None };
    let Reply::Messages { messages, .. } = alice.ok(history).await else { panic!() };
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].delivered_at, None, "history gave the invisible bob away");

    // Reading is bob's own act: alice learns of it.
    assert_eq!(bob.ok(Request::MarkRead { ids: vec![message.id] }).await, Reply::Done);
    alice.expect("the read receipt", |e| matches!(e, Event::Receipt { .. })).await;
    node.stop().await;
}
