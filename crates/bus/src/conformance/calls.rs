//! The contract of the call registry: shared by every node, forgotten on delete or after its
//! time to live.

use super::*;

const CALL: &str = "0123456789abcdef0123456789abcdef";

async fn get(node: &Node, call_id: &str) -> Option<Bytes> {
    let result = node.bus.get_call(call_id).await;
    result.unwrap_or_else(|e| panic!("{}: get_call({call_id}): {e}", node.id))
}

async fn put(node: &Node, call_id: &str, record: &[u8]) {
    let result = node.bus.put_call(call_id, Bytes::copy_from_slice(record)).await;
    result.unwrap_or_else(|e| panic!("{}: put_call({call_id}): {e}", node.id));
}

/// A call registered on one node is visible from every node; a rewrite from another node
/// replaces it; a delete from any node removes it; unknown calls are `None`, deleting them is
/// no error; records up to 64 KiB round-trip.
pub async fn call_registry_shared_by_all_nodes(bus: &dyn TestBus) {
    let n = settled(bus, &["a", "b", "c"]).await;
    let other = "fedcba9876543210fedcba9876543210";
    assert_eq!(get(&n[0], CALL).await, None, "nothing registered yet");

    put(&n[0], CALL, b"answered on a").await;
    for node in &n {
        assert_eq!(
            get(node, CALL).await.as_deref(),
            Some(&b"answered on a"[..]),
            "from {}",
            node.id
        );
    }
    assert_eq!(get(&n[1], other).await, None, "another call id is unknown");

    put(&n[1], CALL, b"taken over by b").await;
    assert_eq!(get(&n[2], CALL).await.as_deref(), Some(&b"taken over by b"[..]), "rewritten");

    put(&n[2], other, b"second call").await;
    n[2].bus.delete_call(CALL).await.unwrap();
    for node in &n {
        assert_eq!(get(node, CALL).await, None, "deleted, as seen from {}", node.id);
    }
    assert_eq!(get(&n[0], other).await.as_deref(), Some(&b"second call"[..]), "other call kept");
    n[0].bus.delete_call(CALL).await.expect("deleting a deleted call is not an error");
    n[0].bus.delete_call("ffffffffffffffffffffffffffffffff").await.expect("deleting unknown");

    let big: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    put(&n[0], CALL, &big).await;
    assert!(get(&n[1], CALL).await.is_some_and(|r| r[..] == big[..]), "64 KiB record intact");

    for bad in [
        "",
        "0123",
        "0123456789ABCDEF0123456789ABCDEF",
        "0123456789abcdef0123456789abcdeg",
        "0123456789abcdef0123456789abcdef0",
        "0123456789abcdef.123456789abcdef",
        "*",
        ">",
    ] {
        assert_refused(n[0].bus.put_call(bad, Bytes::new()).await, &format!("put_call({bad:?})"));
        assert_refused(n[0].bus.get_call(bad).await, &format!("get_call({bad:?})"));
        assert_refused(n[0].bus.delete_call(bad).await, &format!("delete_call({bad:?})"));
    }
}

/// A call not written again for `call_ttl` is forgotten; writing it again restarts its time to
/// live.
pub async fn call_registry_ttl_expires_and_rewrite_restarts_it(bus: &dyn TestBus) {
    let ttl = Duration::from_secs(3);
    let a = join_with(bus, BusConfig { call_ttl: ttl, ..config(bus, "a") }).await;
    let b = join_with(bus, BusConfig { call_ttl: ttl, ..config(bus, "b") }).await;
    let start = tokio::time::Instant::now();
    put(&a, CALL, b"first").await;
    tokio::time::sleep_until(start + Duration::from_secs(2)).await;
    put(&b, CALL, b"rewritten").await;
    // One second past the first write's expiry, one second before the rewrite's.
    tokio::time::sleep_until(start + Duration::from_secs(4)).await;
    assert_eq!(
        get(&a, CALL).await.as_deref(),
        Some(&b"rewritten"[..]),
        "a rewrite restarts the time to live"
    );
    // Due at 5 s; 1.5 s of slack for a busy machine.
    eventually(
        Duration::from_millis(2500),
        "the call expires after its time to live",
        async || get(&a, CALL).await.is_none(),
    )
    .await;
    assert!(start.elapsed() >= Duration::from_secs(5) - Duration::from_millis(100), "not early");
}
