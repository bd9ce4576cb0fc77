//! The contract of messages: who receives what, in which order, and what is dropped.

use super::*;

/// A message to a user reaches every *other* node that watches the user, and only those: never
/// the sender (even when it watches the user too), never a node watching someone else.
pub async fn user_message_reaches_only_other_watchers(bus: &dyn TestBus) {
    let mut n = settled(bus, &["a", "b", "c", "d"]).await;
    let alice = Address::User(1);
    for watcher in [0, 1, 2] {
        n[watcher].watch(1).await;
    }
    n[3].watch(2).await;

    n[0].publish(&alice, b"hello alice").await;
    n[1].expect_message("a", &alice, b"hello alice", "a watcher gets a user message").await;
    n[2].expect_message("a", &alice, b"hello alice", "every watcher gets it").await;

    n[1].publish(&alice, b"from b").await;
    n[0].expect_message("b", &alice, b"from b", "the first sender, a watcher, gets b's").await;
    n[2].expect_message("b", &alice, b"from b", "c gets b's message").await;

    // Markers on the same path as the messages that must not arrive: once they are in, a
    // wrongly delivered message would most likely be in too.
    n[3].publish(&Address::Node("a".into()), b"marker").await;
    n[3].publish(&Address::Node("b".into()), b"marker").await;
    n[0].expect_message("d", &Address::Node("a".into()), b"marker", "marker to a").await;
    n[1].expect_message("d", &Address::Node("b".into()), b"marker", "marker to b").await;
    n[0].expect_no_message("a must not get its own message to a user it watches");
    n[1].expect_no_message("b must not get its own message to a user it watches");
    n[2].publish(&Address::User(2), b"to user 2").await;
    n[3].expect_message("c", &Address::User(2), b"to user 2", "d gets user 2's message").await;
    n[3].expect_no_message("d watches only user 2, not user 1");
    n[2].expect_no_message("c sent nothing it should get back");
}

/// A message to a node reaches that node only; one to itself or to an unknown node is dropped
/// without error.
pub async fn node_message_reaches_only_that_node(bus: &dyn TestBus) {
    let mut n = settled(bus, &["a", "b", "c"]).await;
    let to_b = Address::Node("b".into());
    n[0].publish(&to_b, b"for b").await;
    n[1].expect_message("a", &to_b, b"for b", "the addressed node gets it").await;

    n[0].publish(&Address::Node("a".into()), b"to myself").await;
    n[0].publish(&Address::Node("nobody".into()), b"to nobody").await;
    let to_a = Address::Node("a".into());
    let to_c = Address::Node("c".into());
    n[1].publish(&to_a, b"marker").await;
    n[1].publish(&to_c, b"marker").await;
    n[0].expect_message("b", &to_a, b"marker", "marker to a").await;
    n[2].expect_message("b", &to_c, b"marker", "marker to c").await;
    n[0].expect_no_message("a message to oneself is never delivered back");
    n[2].expect_no_message("c gets only messages addressed to c");
    n[1].expect_no_message("b got one message");
}

/// Messages from one sender to one address arrive in the order they were published, none lost,
/// over a burst of 1,000, while other senders and addresses interleave.
pub async fn order_per_sender_and_address_over_a_burst(bus: &dyn TestBus) {
    const BURST: u32 = 1000;
    let mut n = settled(bus, &["a", "b", "c"]).await;
    n[1].watch(1).await;
    let user = Address::User(1);
    let node_b = Address::Node("b".into());
    let (a, c) = (&n[0], &n[2]);
    let from_a = async {
        for i in 0..BURST {
            a.publish(&user, &i.to_be_bytes()).await;
            a.publish(&node_b, &i.to_be_bytes()).await;
        }
    };
    let from_c = async {
        for i in 0..BURST {
            c.publish(&user, &i.to_be_bytes()).await;
        }
    };
    tokio::join!(from_a, from_c);

    let mut next = std::collections::HashMap::new();
    for _ in 0..3 * BURST {
        let (from, to, payload) = n[1].message("the burst's messages").await;
        let got = u32::from_be_bytes(payload[..].try_into().expect("a 4-byte counter"));
        let expected = next.entry((from.clone(), to.clone())).or_insert(0u32);
        assert_eq!(got, *expected, "message {got} from {from} to {to:?} out of order");
        *expected += 1;
    }
    assert_eq!(next.len(), 3, "three (sender, address) streams: {next:?}");
    n[1].expect_no_message("every message exactly once");
}

/// A user watched twice stays watched until unwatched twice; a watched user gets one copy of a
/// message however many times it is watched; unwatching too often is harmless.
pub async fn watches_are_counted(bus: &dyn TestBus) {
    let mut n = settled(bus, &["a", "b"]).await;
    let user = Address::User(5);
    let to_b = Address::Node("b".into());
    n[1].watch(5).await;
    n[1].watch(5).await;
    n[0].publish(&user, b"one").await;
    n[1].expect_message("a", &user, b"one", "watched twice").await;
    n[0].publish(&to_b, b"marker").await;
    n[1].expect_message("a", &to_b, b"marker", "marker").await;
    n[1].expect_no_message("a user watched twice gets one copy");

    n[1].unwatch(5).await;
    n[0].publish(&user, b"two").await;
    n[1].expect_message("a", &user, b"two", "watched twice, unwatched once: still watched").await;

    n[1].unwatch(5).await;
    n[0].publish(&user, b"three").await;
    n[0].publish(&to_b, b"marker").await;
    n[1].expect_message("a", &to_b, b"marker", "marker").await;
    n[1].expect_no_message("unwatched as often as watched: no longer watched");

    n[1].unwatch(5).await;
    n[1].watch(5).await;
    n[0].publish(&user, b"four").await;
    n[1].expect_message("a", &user, b"four", "an extra unwatch does not go below zero").await;
}

/// A message to a user nobody watches is accepted and goes nowhere.
pub async fn message_to_unwatched_user_is_dropped_silently(bus: &dyn TestBus) {
    let mut n = settled(bus, &["a", "b"]).await;
    n[1].watch(1).await;
    n[0].publish(&Address::User(99), b"nobody watches 99").await;
    n[0].publish(&Address::User(1), b"marker").await;
    n[1].expect_message("a", &Address::User(1), b"marker", "marker").await;
    n[1].expect_no_message("b does not watch user 99");
}

/// Payloads of any size up to 64 KiB, any bytes, arrive exactly as published.
pub async fn payloads_up_to_64_kib_arrive_intact(bus: &dyn TestBus) {
    let mut n = settled(bus, &["a", "b"]).await;
    n[1].watch(1).await;
    for size in [0, 1, 1000, 4096, 65_535, 65_536] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        n[0].publish(&Address::User(1), &payload).await;
        n[0].publish(&Address::Node("b".into()), &payload).await;
        let (_, _, got) = n[1].message("a large message to a user").await;
        assert!(got[..] == payload[..], "{size}-byte payload to a user changed on the way");
        let (_, _, got) = n[1].message("a large message to a node").await;
        assert!(got[..] == payload[..], "{size}-byte payload to a node changed on the way");
    }
}

/// Nodes of different networks on one bus never hear each other: no messages, no node events,
/// no shared calls.
pub async fn networks_do_not_hear_each_other(bus: &dyn TestBus) {
    let mut a = join(bus, "a").await;
    let other = BusConfig { network: format!("{}-2", bus.network()), ..config(bus, "b") };
    let mut b = join_with(bus, other.clone()).await;
    let c = join_with(bus, BusConfig { node_id: "c".into(), ..other }).await;
    b.wait_up(&["c"]).await;
    b.watch(1).await;
    a.watch(1).await;
    a.publish(&Address::User(1), b"net 1").await;
    a.publish(&Address::Node("b".into()), b"net 1").await;
    c.publish(&Address::User(1), b"marker").await;
    c.publish(&Address::Node("b".into()), b"marker").await;
    // Order across addresses is not promised: take both markers, then check.
    let mut markers = vec![b.message("a marker").await, b.message("a marker").await];
    markers.sort_by_key(|(_, to, _)| matches!(to, Address::Node(_)));
    let marker = |to| ("c".to_owned(), to, Bytes::from_static(b"marker"));
    assert_eq!(markers, [marker(Address::User(1)), marker(Address::Node("b".into()))], "markers");
    b.expect_no_message("another network's messages never arrive");
    a.expect_no_message("another network's messages never arrive");
    let call = "00000000000000000000000000000001";
    a.bus.put_call(call, Bytes::from_static(b"net 1")).await.unwrap();
    assert_eq!(b.bus.get_call(call).await.unwrap(), None, "calls are per network");
    let up = a.events.try_recv();
    assert!(up.is_err() && a.backlog.is_empty(), "a heard of another network's node: {up:?}");
}
