//! The shared bus conformance suite against a real nats-server (JetStream on), and what only
//! NATS has: a server restart under a live bus.
//!
//! cargo-nextest runs every test in its own process, so each test here starts one server and
//! runs all it needs on it; the suite gives every conformance function a fresh network name.
//! nats-server comes from `scripts/setup` (see `peerline_testkit::nats`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::OnServer;
use peerline_bus::{Address, Bus, BusConfig, BusError, BusEvent, Bytes};
use peerline_bus_nats::NatsBus;
use peerline_testkit::nats::TestNats;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_nats() {
    conformance_with_shards(None).await;
}

/// The same suite with every user in one shard: each node then hears every user message of
/// the network on one subscription, and only its own filtering keeps the suite's promises (a
/// node watching user 2 never gets user 1's messages, counted watches, unwatching).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_nats_with_one_user_shard() {
    conformance_with_shards(Some(1)).await;
}

async fn conformance_with_shards(user_shards: Option<u32>) {
    let nats = TestNats::start().expect("starting nats-server");
    let url = nats.url();
    let mut tests = 0;
    peerline_bus::conformance::run_all(|| {
        tests += 1;
        let network = format!("conformance-{tests}");
        let bus = OnServer { url: url.clone(), network, user_shards };
        async move { bus }
    })
    .await;
    eprintln!("{tests} conformance tests passed on nats-server at {url} ({user_shards:?} shards)");
}

/// Users of one shard on different nodes: each node gets its own users' messages only, a
/// watch held by many users keeps one subscription, and the subscription goes with the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_carries_many_users_and_each_node_gets_its_own() {
    let nats = TestNats::start().expect("starting nats-server");
    let two_shards = |id: &str| BusConfig { user_shards: 2, ..config(id) };
    let a = NatsBus::connect(&nats.url(), two_shards("a")).await.expect("a connects");
    let b = NatsBus::connect(&nats.url(), two_shards("b")).await.expect("b connects");
    let c = NatsBus::connect(&nats.url(), two_shards("c")).await.expect("c connects");
    let (mut b_events, mut c_events) = (b.events().unwrap(), c.events().unwrap());
    // Users 2, 4 and 6 share shard 0.
    for user in [2, 4] {
        b.watch(user).await.unwrap();
    }
    c.watch(6).await.unwrap();
    assert_eq!(b.health().watched_users, 2);
    for (user, text) in [(2, "to 2"), (4, "to 4"), (6, "to 6"), (8, "to 8")] {
        a.publish(&Address::User(user), Bytes::from(text)).await.unwrap();
    }
    let wait = Duration::from_secs(5);
    assert_eq!(message_within(&mut b_events, wait).await.as_deref(), Some(&b"to 2"[..]));
    assert_eq!(message_within(&mut b_events, wait).await.as_deref(), Some(&b"to 4"[..]));
    assert_eq!(message_within(&mut c_events, wait).await.as_deref(), Some(&b"to 6"[..]));
    let quiet = Duration::from_millis(300);
    assert_eq!(message_within(&mut b_events, quiet).await, None, "b watches neither 6 nor 8");
    assert_eq!(message_within(&mut c_events, quiet).await, None, "c watches only 6");

    b.unwatch(2).await.unwrap();
    a.publish(&Address::User(2), Bytes::from_static(b"2 again")).await.unwrap();
    a.publish(&Address::User(4), Bytes::from_static(b"4 again")).await.unwrap();
    assert_eq!(message_within(&mut b_events, wait).await.as_deref(), Some(&b"4 again"[..]));
    b.unwatch(4).await.unwrap();
    assert_eq!(b.health().watched_users, 0);
    a.publish(&Address::User(4), Bytes::from_static(b"nobody")).await.unwrap();
    assert_eq!(message_within(&mut b_events, quiet).await, None, "b watches nobody now");
    assert_eq!(b.health().dropped_events, 0, "other users' messages are not drops");
    for bus in [a, b, c] {
        bus.close().await;
    }
}

fn config(id: &str) -> BusConfig {
    BusConfig {
        heartbeat: Duration::from_millis(200),
        down_after: Duration::from_millis(1500),
        ..BusConfig::new(id, "restart")
    }
}

/// Waits (20 s at most) until `check` holds, polling every 50 ms.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next message in `events` (node events skipped), within `timeout`.
async fn message_within(events: &mut mpsc::Receiver<BusEvent>, timeout: Duration) -> Option<Bytes> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(BusEvent::Message { payload, .. })) => return Some(payload),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Kill -9 the server under two live nodes: publishing and the registry fail at once with
/// `Unavailable` and health says disconnected; after a restart on the same port, watched users
/// (watched before the crash, and during it) receive again and the registry still has the call
/// (JetStream keeps it in the store dir).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_nats_restart() {
    let mut nats = TestNats::start().expect("starting nats-server");
    let a = NatsBus::connect(&nats.url(), config("a")).await.expect("a connects");
    let b = NatsBus::connect(&nats.url(), config("b")).await.expect("b connects");
    let mut b_events = b.events().unwrap();
    b.watch(1).await.unwrap();
    let call = "00112233445566778899aabbccddeeff";
    a.put_call(call, Bytes::from_static(b"the call")).await.unwrap();
    a.publish(&Address::User(1), Bytes::from_static(b"before")).await.unwrap();
    let before = message_within(&mut b_events, Duration::from_secs(10)).await;
    assert_eq!(before.as_deref(), Some(&b"before"[..]), "delivery before the crash");

    nats.kill9();
    eventually("a sees the connection down", || !a.health().connected).await;
    eventually("b sees the connection down", || !b.health().connected).await;
    let health = a.health();
    assert!(health.error.is_some(), "health says why it is down: {health:?}");
    // "At once": well before the registry's own 5 s request timeout could answer instead.
    let fail_fast = Duration::from_secs(3);
    let publish = a.publish(&Address::User(1), Bytes::from_static(b"lost"));
    match tokio::time::timeout(fail_fast, publish).await {
        Ok(Err(BusError::Unavailable(_))) => {}
        other => panic!("publish while NATS is down must fail at once, Unavailable; got {other:?}"),
    }
    match tokio::time::timeout(fail_fast, a.get_call(call)).await {
        Ok(Err(BusError::Unavailable(_))) => {}
        other => {
            panic!("get_call while NATS is down must fail at once, Unavailable; got {other:?}")
        }
    }
    // Watched while down: recorded now, in place after the reconnect.
    b.watch(2).await.expect("watch while disconnected is recorded");

    tokio::task::block_in_place(|| nats.restart()).expect("restarting nats-server");
    eventually("a reconnects", || a.health().connected).await;
    eventually("b reconnects", || b.health().connected).await;

    // async-nats re-subscribes as it reconnects; publish until the first message gets through
    // rather than guessing how long that takes.
    for (user, what) in [(1, "a user watched before the crash"), (2, "a user watched during it")] {
        let mut delivered = None;
        for _ in 0..50 {
            a.publish(&Address::User(user), Bytes::from_static(b"after")).await.unwrap();
            delivered = message_within(&mut b_events, Duration::from_millis(200)).await;
            if delivered.is_some() {
                break;
            }
        }
        assert_eq!(delivered.as_deref(), Some(&b"after"[..]), "{what} receives after restart");
    }
    let record = b.get_call(call).await.expect("the registry answers after the restart");
    assert_eq!(record.as_deref(), Some(&b"the call"[..]), "the call survived the restart");
    a.close().await;
    b.close().await;
}
