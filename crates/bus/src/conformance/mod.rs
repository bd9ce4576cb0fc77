//! The shared conformance suite: the contract of [`Bus`], as test functions every implementation
//! runs against itself.
//!
//! Each `pub async fn` here takes a [`TestBus`] — one fresh bus that nodes can join — and panics
//! with a message naming the broken promise. An implementation runs them all either with
//! [`bus_conformance_tests!`] (one `#[tokio::test]` per function, so failures are reported one
//! by one) or with [`run_all`] (every function in turn, each on a fresh bus from a factory; for
//! an implementation that needs one costly server per test binary):
//!
//! ```ignore
//! struct Fresh(LocalNetwork);
//! #[async_trait]
//! impl TestBus for Fresh { /* network(), connect() */ }
//! async fn fresh() -> Fresh { Fresh(LocalNetwork::new()) }
//! peerline_bus::bus_conformance_tests!(fresh);
//! ```
//!
//! Timers: nodes get a 200 ms heartbeat and a 1.5 s `down_after` ([`config`]); the tests wait for
//! events with timeouts, never assert how fast they came, and sleep only where the contract is
//! about time (no second `NodeDown`, a call's time to live).
//!
//! [`bus_conformance_tests!`]: crate::bus_conformance_tests
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod calls;
mod messages;
mod nodes;

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
pub use calls::*;
pub use messages::*;
pub use nodes::*;
use tokio::sync::mpsc;

use crate::{Address, Bus, BusConfig, BusError, BusEvent, BusResult, Bytes};

/// One fresh bus for one conformance test: a network name nobody else uses, and a way to join
/// nodes to it.
#[async_trait]
pub trait TestBus: Send + Sync {
    /// The network name of this test (`[a-z0-9-]`, at most 28 characters, so that a suffix
    /// such as `-2` names another network).
    fn network(&self) -> String;

    /// Joins a node with exactly this config (the suite sets the network itself, sometimes to a
    /// bad or another name on purpose). Returns once the node can receive messages sent to it.
    async fn connect(&self, config: BusConfig) -> BusResult<Box<dyn Bus>>;
}

/// Calls `$callback!` (a macro of this crate) with `$args` followed by `;` and the name of every
/// test function in the suite: the one list of tests, so the macro and [`run_all`] cannot differ.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_bus_conformance_tests {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! { $($args)* ;
            user_message_reaches_only_other_watchers,
            node_message_reaches_only_that_node,
            order_per_sender_and_address_over_a_burst,
            watches_are_counted,
            message_to_unwatched_user_is_dropped_silently,
            payloads_up_to_64_kib_arrive_intact,
            networks_do_not_hear_each_other,
            node_up_for_every_other_node,
            node_down_once_after_close_or_drop,
            node_up_with_new_incarnation_after_restart,
            closed_bus_refuses_calls,
            health_counts_watches_and_nodes,
            call_registry_shared_by_all_nodes,
            call_registry_ttl_expires_and_rewrite_restarts_it,
            bad_ids_refused,
            events_only_once,
        }
    };
}

/// Defines one `#[tokio::test]` per conformance test function, each on a fresh bus.
///
/// `$make` names an `async fn() -> T` where `T: TestBus` is a fresh bus (it is also the guard
/// that keeps whatever the bus needs alive until the test ends). The calling crate needs
/// `tokio` (with the `macros` and `rt` features) as a dev-dependency.
#[macro_export]
macro_rules! bus_conformance_tests {
    ($make:path) => {
        $crate::__with_bus_conformance_tests!(__bus_conformance_test_fns!($make));
    };
}

/// Expands to the `#[tokio::test]` functions of [`bus_conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __bus_conformance_test_fns {
    ($make:path ; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test]
            async fn $name() {
                let bus = $make().await;
                $crate::conformance::$name(&bus).await;
            }
        )*
    };
}

/// Expands to the body of [`run_all`].
#[doc(hidden)]
#[macro_export]
macro_rules! __bus_conformance_run_all {
    ($make:ident ; $($name:ident),* $(,)?) => {
        $(
            {
                eprintln!("bus conformance: {}", stringify!($name));
                let bus = $make().await;
                $crate::conformance::$name(&bus).await;
            }
        )*
    };
}

/// Runs every test of the suite in turn, each on a fresh bus from `make`, printing each test's
/// name to stderr as it starts. Panics at the first broken contract.
pub async fn run_all<F, Fut, T>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
    T: TestBus,
{
    __with_bus_conformance_tests!(__bus_conformance_run_all!(make));
}

// ---- helpers ----

/// How long an event that must come may take (generous: machines under load are slow).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much later than `down_after` a `NodeDown` may come.
pub const DOWN_SLACK: Duration = Duration::from_secs(2);

/// The config the suite gives a node of `bus`: short timers, so that liveness tests are quick.
pub fn config(bus: &dyn TestBus, node_id: &str) -> BusConfig {
    BusConfig {
        heartbeat: Duration::from_millis(200),
        down_after: Duration::from_millis(1500),
        call_ttl: Duration::from_secs(60),
        ..BusConfig::new(node_id, bus.network())
    }
}

/// A joined node and its events, with the events a test skipped kept for later.
struct Node {
    id: String,
    bus: Box<dyn Bus>,
    events: mpsc::Receiver<BusEvent>,
    backlog: VecDeque<BusEvent>,
}

/// Joins a node with the suite's config.
async fn join(bus: &dyn TestBus, id: &str) -> Node {
    join_with(bus, config(bus, id)).await
}

/// Joins a node with a given config.
async fn join_with(bus: &dyn TestBus, config: BusConfig) -> Node {
    let id = config.node_id.clone();
    let node = bus.connect(config).await.unwrap_or_else(|e| panic!("joining node {id:?}: {e}"));
    assert_eq!(node.node_id(), id, "node_id() is the configured id");
    let events = node.events().unwrap_or_else(|| panic!("the first events() of {id:?} is None"));
    Node { id, bus: node, events, backlog: VecDeque::new() }
}

impl Node {
    /// The first event (skipped ones first) that `pred` accepts, within `timeout`; events it
    /// rejects are kept for later calls.
    async fn next_within(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&BusEvent) -> bool,
    ) -> BusEvent {
        if let Some(at) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(at).unwrap();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if pred(&event) => return event,
                Ok(Some(event)) => self.backlog.push_back(event),
                Ok(None) => panic!("{}: events ended while waiting for {what}", self.id),
                Err(_) => panic!(
                    "{}: no {what} within {timeout:?}; other events: {:?}",
                    self.id, self.backlog
                ),
            }
        }
    }

    /// The next message (node events are kept for later), within [`EVENT_TIMEOUT`].
    async fn message(&mut self, what: &str) -> (String, Address, Bytes) {
        match self.next_within(EVENT_TIMEOUT, what, is_message).await {
            BusEvent::Message { from, to, payload, sent } => {
                // Every message says when it was published (the delivery latency metric), and
                // on one machine that was a moment ago.
                let age = sent.map(|s| s.elapsed());
                assert!(
                    matches!(age, Some(Ok(a)) if a < EVENT_TIMEOUT),
                    "{what}: the message's publishing time is missing or wrong: {sent:?}"
                );
                (from, to, payload)
            }
            _ => unreachable!(),
        }
    }

    /// Waits for the next message and checks that it is `payload` from `from` to `to`.
    async fn expect_message(&mut self, from: &str, to: &Address, payload: &[u8], what: &str) {
        let got = self.message(what).await;
        assert_eq!(
            (got.0.as_str(), &got.1, &got.2[..]),
            (from, to, payload),
            "{}: {what}: (from, to, payload)",
            self.id
        );
    }

    /// Asserts that no message is waiting (queued or skipped before).
    fn expect_no_message(&mut self, what: &str) {
        while let Ok(event) = self.events.try_recv() {
            self.backlog.push_back(event);
        }
        let stray: Vec<_> = self.backlog.iter().filter(|e| is_message(e)).collect();
        assert!(stray.is_empty(), "{}: {what}, yet it received {stray:?}", self.id);
    }

    async fn publish(&self, to: &Address, payload: &[u8]) {
        let result = self.bus.publish(to, Bytes::copy_from_slice(payload)).await;
        result.unwrap_or_else(|e| panic!("{}: publish to {to:?}: {e}", self.id));
    }

    async fn watch(&self, user: i64) {
        self.bus.watch(user).await.unwrap_or_else(|e| panic!("{}: watch({user}): {e}", self.id));
    }

    async fn unwatch(&self, user: i64) {
        let result = self.bus.unwatch(user).await;
        result.unwrap_or_else(|e| panic!("{}: unwatch({user}): {e}", self.id));
    }

    /// Waits until this node has seen `NodeUp` for each of `others`; returns their incarnations.
    async fn wait_up(&mut self, others: &[&str]) -> Vec<u64> {
        let mut incarnations = Vec::new();
        for other in others {
            let what = format!("NodeUp for {other:?}");
            match self.next_within(EVENT_TIMEOUT, &what, |e| is_up(e, other)).await {
                BusEvent::NodeUp { incarnation, .. } => incarnations.push(incarnation),
                _ => unreachable!(),
            }
        }
        incarnations
    }
}

/// Joins nodes with these ids and waits until each has seen every other one up, so that tests
/// start from a settled network.
async fn settled(bus: &dyn TestBus, ids: &[&str]) -> Vec<Node> {
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(join(bus, id).await);
    }
    for node in &mut nodes {
        let others: Vec<&str> = ids.iter().copied().filter(|id| *id != node.id).collect();
        node.wait_up(&others).await;
    }
    nodes
}

fn is_message(event: &BusEvent) -> bool {
    matches!(event, BusEvent::Message { .. })
}

fn is_up(event: &BusEvent, id: &str) -> bool {
    matches!(event, BusEvent::NodeUp { node, .. } if node == id)
}

fn is_down(event: &BusEvent, id: &str) -> bool {
    matches!(event, BusEvent::NodeDown { node } if node == id)
}

/// Asserts that a result is [`BusError::Refused`].
fn assert_refused<T: std::fmt::Debug>(result: BusResult<T>, what: &str) {
    match result {
        Err(BusError::Refused(_)) => {}
        other => panic!("{what} must be refused (BusError::Refused), got {other:?}"),
    }
}

/// Asserts that a result is [`BusError::Unavailable`].
fn assert_unavailable<T: std::fmt::Debug>(result: BusResult<T>, what: &str) {
    match result {
        Err(BusError::Unavailable(_)) => {}
        other => panic!("{what} must fail with BusError::Unavailable, got {other:?}"),
    }
}

/// Polls `check` every 50 ms until it is true, for at most `timeout`.
async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
