//! The contract of liveness: who is up, who went down, and who came back as someone new.

use super::*;

/// Every node hears `NodeUp` for every other node (never for itself), and all of them see the
/// same incarnation of a node.
pub async fn node_up_for_every_other_node(bus: &dyn TestBus) {
    let mut n = vec![join(bus, "a").await, join(bus, "b").await, join(bus, "c").await];
    let seen_by_a = n[0].wait_up(&["b", "c"]).await;
    let seen_by_b = n[1].wait_up(&["a", "c"]).await;
    let seen_by_c = n[2].wait_up(&["a", "b"]).await;
    assert_eq!(seen_by_a[0], seen_by_c[1], "a and c see the same incarnation of b");
    assert_eq!(seen_by_a[1], seen_by_b[1], "a and b see the same incarnation of c");
    assert_eq!(seen_by_b[0], seen_by_c[0], "b and c see the same incarnation of a");
    for node in &mut n {
        node.expect_no_message("nobody sent anything");
        let id = node.id.clone();
        assert!(
            !node.backlog.iter().any(|e| is_up(e, &id)),
            "{id} was told that it is up itself: {:?}",
            node.backlog
        );
    }
}

/// A node that closes, or is dropped without closing, is reported `NodeDown` to every other
/// node within `down_after` (plus slack), and only once.
pub async fn node_down_once_after_close_or_drop(bus: &dyn TestBus) {
    let mut n = settled(bus, &["a", "b", "c"]).await;
    let down_after = config(bus, "a").down_after;
    let c = n.pop().unwrap();
    c.bus.close().await;
    for node in &mut n {
        node.next_within(down_after + DOWN_SLACK, "NodeDown for c after it closed", |e| {
            is_down(e, "c")
        })
        .await;
    }
    drop(c);

    let b = n.pop().unwrap();
    drop(b);
    let a = &mut n[0];
    a.next_within(down_after + DOWN_SLACK, "NodeDown for b after it was dropped", |e| {
        is_down(e, "b")
    })
    .await;

    // Long enough for a second report of either, if there were one.
    tokio::time::sleep(down_after + Duration::from_millis(500)).await;
    while let Ok(event) = a.events.try_recv() {
        a.backlog.push_back(event);
    }
    let again: Vec<_> = a.backlog.iter().filter(|e| is_down(e, "b") || is_down(e, "c")).collect();
    assert!(again.is_empty(), "NodeDown reported more than once: {again:?}");
    let a = &n[0];
    eventually(EVENT_TIMEOUT, "live_nodes drops to 0", async || a.bus.health().live_nodes == 0)
        .await;
}

/// A node that comes back with the same id is `NodeUp` again with a new incarnation, after a
/// clean close and after a restart too quick for anyone to notice it was gone; it receives
/// messages again.
pub async fn node_up_with_new_incarnation_after_restart(bus: &dyn TestBus) {
    let mut a = join(bus, "a").await;
    let b = join(bus, "b").await;
    let first = a.wait_up(&["b"]).await[0];
    let down_after = config(bus, "a").down_after;

    b.bus.close().await;
    drop(b);
    a.next_within(down_after + DOWN_SLACK, "NodeDown for b", |e| is_down(e, "b")).await;
    let mut b = join(bus, "b").await;
    let second = a.wait_up(&["b"]).await[0];
    assert_ne!(first, second, "b came back: NodeUp must carry a new incarnation");
    b.wait_up(&["a"]).await;
    let to_b = Address::Node("b".into());
    a.publish(&to_b, b"welcome back").await;
    b.expect_message("a", &to_b, b"welcome back", "the new b receives").await;

    // Dropped and back at once: possibly a NodeDown, then NodeUp with a third incarnation.
    drop(b);
    let b = join(bus, "b").await;
    let third =
        match a.next_within(EVENT_TIMEOUT, "NodeUp for the third b", |e| is_up(e, "b")).await {
            BusEvent::NodeUp { incarnation, .. } => incarnation,
            _ => unreachable!(),
        };
    assert!(third != first && third != second, "the third start has its own incarnation");
    // Whatever was said about earlier lives, the live b must not be reported down.
    a.backlog.retain(|e| !is_down(e, "b"));
    tokio::time::sleep(down_after + Duration::from_millis(500)).await;
    while let Ok(event) = a.events.try_recv() {
        assert!(!is_down(&event, "b"), "b is alive (new incarnation) yet reported down");
    }
    drop(b);
}

/// After `close`, a node's calls fail with `Unavailable`, its health says it is not connected,
/// and its events end.
pub async fn closed_bus_refuses_calls(bus: &dyn TestBus) {
    let mut a = join(bus, "a").await;
    a.bus.close().await;
    let call = "0123456789abcdef0123456789abcdef";
    assert_unavailable(a.bus.publish(&Address::User(1), Bytes::new()).await, "publish after close");
    assert_unavailable(a.bus.watch(1).await, "watch after close");
    assert_unavailable(a.bus.put_call(call, Bytes::new()).await, "put_call after close");
    assert_unavailable(a.bus.get_call(call).await, "get_call after close");
    assert!(!a.bus.health().connected, "health().connected after close");
    let end =
        tokio::time::timeout(EVENT_TIMEOUT, async { while a.events.recv().await.is_some() {} });
    end.await.expect("the events of a closed bus end");
    a.bus.close().await; // closing twice is harmless
}

/// `health()` says the node is connected, how many users it watches and how many other nodes
/// are live.
pub async fn health_counts_watches_and_nodes(bus: &dyn TestBus) {
    let n = settled(bus, &["a", "b", "c"]).await;
    let a = &n[0].bus;
    let health = a.health();
    assert!(health.connected && health.error.is_none(), "a live node is healthy: {health:?}");
    assert_eq!(health.live_nodes, 2, "two other nodes are live");
    assert_eq!(health.watched_users, 0, "nothing watched yet");
    a.watch(1).await.unwrap();
    a.watch(1).await.unwrap();
    a.watch(2).await.unwrap();
    assert_eq!(a.health().watched_users, 2, "users are counted once however often watched");
    a.unwatch(1).await.unwrap();
    assert_eq!(a.health().watched_users, 2, "user 1 is still watched once");
    a.unwatch(1).await.unwrap();
    a.unwatch(2).await.unwrap();
    assert_eq!(a.health().watched_users, 0, "all unwatched");
    assert_eq!(a.health().dropped_events, 0, "nothing dropped");
}

/// Bad node ids and network names are refused at join, bad node addresses at publish.
pub async fn bad_ids_refused(bus: &dyn TestBus) {
    let long = "a".repeat(33);
    for id in ["", "Upper", "a.b", "a b", "a_b", "*", ">", "a\u{e9}", long.as_str()] {
        let result = bus.connect(config(bus, id)).await.map(|_| ());
        assert_refused(result, &format!("joining with node id {id:?}"));
    }
    for network in ["", "Net", "a.b", "a*", ">", long.as_str()] {
        let result = bus.connect(BusConfig { network: network.into(), ..config(bus, "a") }).await;
        assert_refused(result.map(|_| ()), &format!("joining network {network:?}"));
    }
    let a = join(bus, "a").await;
    for id in ["", "B", "b.c", "b*", ">", long.as_str()] {
        let result = a.bus.publish(&Address::Node(id.into()), Bytes::new()).await;
        assert_refused(result, &format!("publishing to node {id:?}"));
    }
    assert!(a.bus.health().connected, "refusals leave the node connected");
}

/// `events()` hands out the queue once; later calls get `None`.
pub async fn events_only_once(bus: &dyn TestBus) {
    let node = bus.connect(config(bus, "a")).await.unwrap();
    assert!(node.events().is_some(), "the first events() returns the queue");
    assert!(node.events().is_none(), "the second events() returns None");
    assert!(node.events().is_none(), "and so does the third");
}
