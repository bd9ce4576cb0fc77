//! The in-process bus: one [`LocalNetwork`] stands for the bus server, and each
//! [`LocalNetwork::node`] is a supernode connected to it. A single supernode runs on it by
//! default (it then only ever talks to itself, which the bus never delivers); tests run several
//! supernodes in one process on one network.
//!
//! It behaves like a real bus, minus the network:
//! - **No heartbeats.** A node is [`BusEvent::NodeUp`] for the others as soon as it joins, and
//!   [`BusEvent::NodeDown`] as soon as its [`LocalBus`] is closed or dropped (once). A node that
//!   joins with the id of a node still present replaces it: the others see `NodeUp` with the new
//!   incarnation, and the replaced [`LocalBus`] is left as if closed.
//! - **Bounded queues.** Every node's event queue holds [`BusConfig::event_queue`] events.
//!   Delivery never waits for a slow node: when its queue is full the event is dropped and
//!   counted in its [`BusHealth::dropped_events`], as a NATS server drops messages for a slow
//!   consumer. Memory stays bounded by the queue sizes however slowly a node reads.
//! - **Call registry with a time to live** on tokio's clock (so `tokio::time::pause()` can
//!   fast-forward it). Expired calls are swept on every registry call, so calls that are never
//!   read again do not pile up.
//! - Payloads larger than [`MAX_PAYLOAD`] are refused, as NATS refuses what exceeds its default
//!   `max_payload`.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{
    Address, Bus, BusConfig, BusError, BusEvent, BusHealth, BusResult, UserId, valid_call_id,
    valid_node_id,
};

/// The largest payload the in-process bus carries (NATS' default `max_payload`).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// An in-process bus that any number of [`LocalBus`] nodes join. Cheap to clone: clones share
/// the same bus.
#[derive(Clone, Default)]
pub struct LocalNetwork {
    shared: Arc<Mutex<Shared>>,
}

/// Everything on the bus, behind one lock: delivering under the lock is what keeps the order of
/// messages from one sender to one address.
#[derive(Default)]
struct Shared {
    /// Joined nodes by (network, node id).
    nodes: HashMap<(String, String), Member>,
    /// Registered calls by (network, call id).
    calls: HashMap<(String, String), Registered>,
    /// Registered calls by expiry time, to sweep expired ones without scanning them all.
    expiries: BTreeSet<(Instant, String, String)>,
    /// Tells [`LocalBus`]es apart, so that a replaced or closed one cannot act for its
    /// successor with the same node id.
    next_key: u64,
    /// Starting point of incarnations, random per [`LocalNetwork`].
    incarnation_base: u64,
}

/// One joined node as the bus sees it.
struct Member {
    key: u64,
    incarnation: u64,
    events: mpsc::Sender<BusEvent>,
    /// Watch counts by user (only counts above zero are kept).
    watches: HashMap<UserId, usize>,
    dropped: Arc<AtomicU64>,
}

struct Registered {
    record: Bytes,
    expires: Instant,
}

impl Member {
    /// Queues an event without waiting: a full queue drops it and counts the drop.
    fn deliver(&self, event: BusEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // A closed queue means the node no longer reads events at all: nothing to count.
    }
}

impl LocalNetwork {
    /// A new, empty bus.
    pub fn new() -> LocalNetwork {
        let shared =
            Shared { incarnation_base: RandomState::new().hash_one(0u8), ..Shared::default() };
        LocalNetwork { shared: Arc::new(Mutex::new(shared)) }
    }

    /// Joins a supernode to the bus. Every other node of `config.network` learns that it is up,
    /// and it learns of every one of them (in its [`Bus::events`]). Fails with
    /// [`BusError::Refused`] if the config is not valid ([`BusConfig::validate`]).
    pub fn node(&self, config: BusConfig) -> BusResult<LocalBus> {
        config.validate()?;
        let (events_tx, events_rx) = mpsc::channel(config.event_queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut shared = self.lock();
        let key = shared.next_key;
        shared.next_key += 1;
        let incarnation = shared.incarnation_base.wrapping_add(key);
        let member = Member {
            key,
            incarnation,
            events: events_tx,
            watches: HashMap::new(),
            dropped: Arc::clone(&dropped),
        };
        for ((network, id), other) in &shared.nodes {
            if *network == config.network && *id != config.node_id {
                other.deliver(BusEvent::NodeUp { node: config.node_id.clone(), incarnation });
                member
                    .deliver(BusEvent::NodeUp { node: id.clone(), incarnation: other.incarnation });
            }
        }
        // The node this one replaces (same id) loses its slot: its queue ends, its calls fail.
        shared.nodes.insert((config.network.clone(), config.node_id.clone()), member);
        drop(shared);
        Ok(LocalBus {
            network: self.clone(),
            slot: (config.network.clone(), config.node_id.clone()),
            config,
            key,
            events: Mutex::new(Some(events_rx)),
            dropped,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Nothing panics while holding the lock; if something did, the maps are still whole.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shared {
    /// This bus's own member entry, if it still holds its slot.
    fn member_mut(&mut self, bus: &LocalBus) -> BusResult<&mut Member> {
        match self.nodes.get_mut(&bus.slot) {
            Some(member) if member.key == bus.key => Ok(member),
            _ => Err(closed()),
        }
    }

    /// Forgets calls whose time to live is over.
    fn sweep_calls(&mut self, now: Instant) {
        while let Some(first) = self.expiries.first() {
            if first.0 > now {
                break;
            }
            if let Some((_, network, call_id)) = self.expiries.pop_first() {
                self.calls.remove(&(network, call_id));
            }
        }
    }

    fn remove_call(&mut self, key: &(String, String)) {
        if let Some(old) = self.calls.remove(key) {
            self.expiries.remove(&(old.expires, key.0.clone(), key.1.clone()));
        }
    }
}

/// A supernode on a [`LocalNetwork`]. Leaves the bus when closed or dropped.
pub struct LocalBus {
    network: LocalNetwork,
    config: BusConfig,
    /// (network, node id): its key in [`Shared::nodes`].
    slot: (String, String),
    key: u64,
    events: Mutex<Option<mpsc::Receiver<BusEvent>>>,
    dropped: Arc<AtomicU64>,
}

impl LocalBus {
    /// Takes this node off the bus and tells the others, unless it already left or was replaced.
    fn leave(&self) {
        let mut shared = self.network.lock();
        if shared.member_mut(self).is_err() {
            return;
        }
        shared.nodes.remove(&self.slot);
        for ((network, _), other) in &shared.nodes {
            if *network == self.config.network {
                other.deliver(BusEvent::NodeDown { node: self.config.node_id.clone() });
            }
        }
    }

    fn call_key(&self, call_id: &str) -> BusResult<(String, String)> {
        if !valid_call_id(call_id) {
            return Err(BusError::Refused(format!(
                "call id {call_id:?} must be 32 lowercase hex characters"
            )));
        }
        Ok((self.config.network.clone(), call_id.to_owned()))
    }
}

fn closed() -> BusError {
    BusError::Unavailable("this node left the in-process bus (closed, or replaced)".into())
}

#[async_trait]
impl Bus for LocalBus {
    fn node_id(&self) -> &str {
        &self.config.node_id
    }

    async fn publish(&self, to: &Address, payload: Bytes) -> BusResult<()> {
        if payload.len() > MAX_PAYLOAD {
            return Err(BusError::Refused(format!(
                "payload of {} bytes is over the {MAX_PAYLOAD}-byte limit",
                payload.len()
            )));
        }
        if let Address::Node(node) = to
            && !valid_node_id(node)
        {
            return Err(BusError::Refused(format!("no node can have the id {node:?}")));
        }
        let mut shared = self.network.lock();
        shared.member_mut(self)?;
        let sent = std::time::SystemTime::now();
        let message = || BusEvent::Message {
            from: self.config.node_id.clone(),
            to: to.clone(),
            payload: payload.clone(),
            sent: Some(sent),
        };
        match to {
            Address::User(user) => {
                for ((network, id), member) in &shared.nodes {
                    if *network == self.config.network
                        && *id != self.config.node_id
                        && member.watches.contains_key(user)
                    {
                        member.deliver(message());
                    }
                }
            }
            Address::Node(node) if *node != self.config.node_id => {
                if let Some(member) = shared.nodes.get(&(self.config.network.clone(), node.clone()))
                {
                    member.deliver(message());
                }
            }
            // Never back to the sender, even when addressed to it.
            Address::Node(_) => {}
        }
        Ok(())
    }

    async fn watch(&self, user: UserId) -> BusResult<()> {
        let mut shared = self.network.lock();
        *shared.member_mut(self)?.watches.entry(user).or_insert(0) += 1;
        Ok(())
    }

    async fn unwatch(&self, user: UserId) -> BusResult<()> {
        let mut shared = self.network.lock();
        let watches = &mut shared.member_mut(self)?.watches;
        if let Some(count) = watches.get_mut(&user) {
            *count -= 1;
            if *count == 0 {
                watches.remove(&user);
            }
        }
        Ok(())
    }

    fn events(&self) -> Option<mpsc::Receiver<BusEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    async fn put_call(&self, call_id: &str, record: Bytes) -> BusResult<()> {
        let key = self.call_key(call_id)?;
        let now = Instant::now();
        let mut shared = self.network.lock();
        shared.member_mut(self)?;
        shared.sweep_calls(now);
        shared.remove_call(&key);
        let expires = now + self.config.call_ttl;
        shared.expiries.insert((expires, key.0.clone(), key.1.clone()));
        shared.calls.insert(key, Registered { record, expires });
        Ok(())
    }

    async fn get_call(&self, call_id: &str) -> BusResult<Option<Bytes>> {
        let key = self.call_key(call_id)?;
        let mut shared = self.network.lock();
        shared.member_mut(self)?;
        shared.sweep_calls(Instant::now());
        Ok(shared.calls.get(&key).map(|call| call.record.clone()))
    }

    async fn delete_call(&self, call_id: &str) -> BusResult<()> {
        let key = self.call_key(call_id)?;
        let mut shared = self.network.lock();
        shared.member_mut(self)?;
        shared.sweep_calls(Instant::now());
        shared.remove_call(&key);
        Ok(())
    }

    fn health(&self) -> BusHealth {
        let mut shared = self.network.lock();
        let watched_users = match shared.member_mut(self) {
            Ok(member) => member.watches.len(),
            Err(_) => {
                return BusHealth {
                    error: Some("left the in-process bus".into()),
                    dropped_events: self.dropped.load(Ordering::Relaxed),
                    ..BusHealth::default()
                };
            }
        };
        let live_nodes = shared
            .nodes
            .keys()
            .filter(|(network, id)| *network == self.config.network && *id != self.config.node_id)
            .count();
        BusHealth {
            connected: true,
            live_nodes,
            watched_users,
            error: None,
            dropped_events: self.dropped.load(Ordering::Relaxed),
        }
    }

    async fn close(&self) {
        self.leave();
    }
}

impl Drop for LocalBus {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    fn config(id: &str) -> BusConfig {
        BusConfig { call_ttl: Duration::from_secs(3600), ..BusConfig::new(id, "test") }
    }

    /// A call expires after its time to live on tokio's clock, and a rewrite restarts it.
    #[tokio::test(start_paused = true)]
    async fn call_ttl_follows_the_tokio_clock() {
        let net = LocalNetwork::new();
        let a = net.node(config("a")).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        a.put_call(id, Bytes::from_static(b"r")).await.unwrap();
        tokio::time::advance(Duration::from_secs(3000)).await;
        a.put_call(id, Bytes::from_static(b"r2")).await.unwrap();
        tokio::time::advance(Duration::from_secs(3000)).await;
        assert_eq!(a.get_call(id).await.unwrap().as_deref(), Some(&b"r2"[..]), "rewritten");
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(a.get_call(id).await.unwrap(), None, "expired an hour after the rewrite");
    }

    /// Calls nobody reads again are swept by later registry calls: the maps stay small.
    #[tokio::test(start_paused = true)]
    async fn expired_calls_do_not_pile_up() {
        let net = LocalNetwork::new();
        let a = net.node(config("a")).unwrap();
        for i in 0..1000u32 {
            a.put_call(&format!("{i:032x}"), Bytes::new()).await.unwrap();
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        let shared = net.lock();
        assert!(shared.calls.len() <= 61, "{} calls kept", shared.calls.len());
        assert_eq!(shared.calls.len(), shared.expiries.len());
    }

    /// A slow node's full queue drops and counts; the publisher is never held up.
    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let net = LocalNetwork::new();
        let a = net.node(config("a")).unwrap();
        let b = net.node(BusConfig { event_queue: 10, ..config("b") }).unwrap();
        b.watch(7).await.unwrap();
        for _ in 0..25 {
            a.publish(&Address::User(7), Bytes::from_static(b"x")).await.unwrap();
        }
        // b's queue held NodeUp(a) and 9 messages.
        assert_eq!(b.health().dropped_events, 16);
        let mut events = b.events().unwrap();
        let mut n = 0;
        while events.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 10);
    }

    /// A node that joins with a present node's id replaces it; the replaced one is left closed.
    #[tokio::test]
    async fn same_id_replaces() {
        let net = LocalNetwork::new();
        let a = net.node(config("a")).unwrap();
        let b1 = net.node(config("b")).unwrap();
        let b2 = net.node(config("b")).unwrap();
        assert!(matches!(b1.watch(1).await, Err(BusError::Unavailable(_))));
        drop(b1);
        let mut events = a.events().unwrap();
        let ups: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
        assert!(matches!(ups.as_slice(), [BusEvent::NodeUp { .. }, BusEvent::NodeUp { .. }]));
        assert_eq!(a.health().live_nodes, 1);
        drop(b2);
        assert!(matches!(events.try_recv(), Ok(BusEvent::NodeDown { .. })));
    }
}
