//! The cluster bus: how a supernode reaches the devices of a user that are connected to other
//! supernodes, and learns which supernodes are alive.
//!
//! Many supernodes form one network by sharing two existing engines: PostgreSQL holds what must
//! last (accounts, contacts, messages), and a bus — NATS in `peerline-bus-nats` — carries what
//! happens now between supernodes. There is no consensus, gossip or leader election of our own:
//!
//! - **Interest is the directory.** A supernode [`Bus::watch`]es each user with a device
//!   connected to it, and [`Bus::publish`] to [`Address::User`] reaches exactly the supernodes
//!   watching that user. When a supernode dies its watches die with its bus connection, so the
//!   directory heals by itself.
//! - **Liveness by heartbeat.** Every supernode announces itself on the bus; a supernode that
//!   falls silent for [`BusConfig::down_after`] is reported [`BusEvent::NodeDown`], so the others
//!   drop what they learned from it (the presence of its users).
//! - **Answered calls are registered** ([`Bus::put_call`]) so that a call survives the supernode
//!   that carried its signaling: the device takes the call over on another supernode.
//!
//! Payloads are opaque bytes here; the supernode defines what they mean. Delivery is at most
//! once: a message published while a watcher's connection is down is lost, and whatever must
//! not be lost is in the database first (a message is stored before it is pushed; a device that
//! missed a push reads it at its next login).
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod local;

use std::time::Duration;

use async_trait::async_trait;
pub use bytes::Bytes;
use tokio::sync::mpsc;

/// An account id, as in storage.
pub type UserId = i64;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// Every other supernode holding a device of this user.
    User(UserId),
    /// One supernode, by its id.
    Node(String),
}

/// What the bus brings to a supernode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A message from another supernode.
    Message {
        /// The sending supernode's id.
        from: String,
        /// What it was addressed to (a user this supernode watches, or this supernode).
        to: Address,
        /// The payload as published.
        payload: Bytes,
        /// The sender's wall clock when it published, if the message said (for the delivery
        /// latency metric; between machines it includes their clock difference).
        sent: Option<std::time::SystemTime>,
    },
    /// A supernode was heard of for the first time, or came back with a new incarnation (it
    /// restarted: whatever was learned from its previous life is stale).
    NodeUp {
        /// Its id.
        node: String,
        /// Random per start of that supernode.
        incarnation: u64,
    },
    /// A supernode fell silent for [`BusConfig::down_after`] (it died, or lost the bus).
    NodeDown {
        /// Its id.
        node: String,
    },
}

/// Why a bus call failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached now (connection lost, server restarting). Nothing was sent;
    /// the same call may succeed later.
    #[error("cluster bus unavailable: {0}")]
    Unavailable(String),
    /// A payload or key the bus cannot carry (too large, bad characters).
    #[error("cluster bus refused: {0}")]
    Refused(String),
}

/// Result alias for bus calls.
pub type BusResult<T> = Result<T, BusError>;

/// Settings every bus implementation takes.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// This supernode's id: unique in the network, `[a-z0-9-]`, 1 to 32 characters.
    pub node_id: String,
    /// The network's name: supernodes of different networks on one bus never hear each other.
    /// `[a-z0-9-]`, 1 to 32 characters (it is part of bus subjects and bucket names).
    pub network: String,
    /// How often this supernode announces itself.
    pub heartbeat: Duration,
    /// Silence after which another supernode is reported down.
    pub down_after: Duration,
    /// How long a registered call is kept without being written again.
    pub call_ttl: Duration,
    /// How many events may wait for this supernode to read them. When the queue is full, newer
    /// events are dropped and counted in [`BusHealth::dropped_events`]: a supernode that stops
    /// reading must not make the bus (or its own memory) grow without bound.
    pub event_queue: usize,
    /// How many groups ("shards") the users of the network are split into on a bus that
    /// subscribes per group rather than per user (NATS: a supernode holds one subscription per
    /// shard it has watched users in, and drops the messages of the shard's other users). More
    /// shards send fewer messages to supernodes that do not want them; fewer shards cost less
    /// memory per supernode (a NATS subscription is about 5.6 KB). Every supernode of a network
    /// must use the same value: a message goes to its user's shard as the sender counts it.
    /// 1 to 65,536; the default is [`DEFAULT_USER_SHARDS`].
    pub user_shards: u32,
}

/// The default [`BusConfig::user_shards`]: at most about 1.5 MB of subscriptions per supernode,
/// and a network of a few supernodes with a few hundred users each still sends a user's
/// messages to the supernodes that hold the user's shard only.
pub const DEFAULT_USER_SHARDS: u32 = 256;

impl BusConfig {
    /// Settings with the default timers for a node id and network.
    pub fn new(node_id: impl Into<String>, network: impl Into<String>) -> Self {
        BusConfig {
            node_id: node_id.into(),
            network: network.into(),
            heartbeat: Duration::from_secs(1),
            down_after: Duration::from_secs(3),
            call_ttl: Duration::from_secs(24 * 3600),
            event_queue: 8192,
            user_shards: DEFAULT_USER_SHARDS,
        }
    }

    /// Checks what every implementation relies on: a valid node id and network name, timers
    /// that are not zero, a heartbeat shorter than `down_after` (else live nodes would be
    /// reported down between two heartbeats), and room for at least one event.
    pub fn validate(&self) -> BusResult<()> {
        if !valid_node_id(&self.node_id) {
            return Err(BusError::Refused(format!(
                "node id {:?} must be 1 to 32 characters of [a-z0-9-]",
                self.node_id
            )));
        }
        if !valid_node_id(&self.network) {
            return Err(BusError::Refused(format!(
                "network name {:?} must be 1 to 32 characters of [a-z0-9-]",
                self.network
            )));
        }
        if self.heartbeat.is_zero() || self.down_after <= self.heartbeat {
            return Err(BusError::Refused(format!(
                "heartbeat ({:?}) must be more than zero and less than down_after ({:?})",
                self.heartbeat, self.down_after
            )));
        }
        if self.call_ttl.is_zero() || self.event_queue == 0 {
            return Err(BusError::Refused(
                "call_ttl and event_queue must be more than zero".into(),
            ));
        }
        if !(1..=65_536).contains(&self.user_shards) {
            return Err(BusError::Refused(format!(
                "user_shards ({}) must be 1 to 65536",
                self.user_shards
            )));
        }
        Ok(())
    }

    /// The shard of `user` (0 to `user_shards - 1`): the same for every supernode of a network.
    pub fn user_shard(&self, user: UserId) -> u32 {
        // Account ids are given out in sequence, so the remainder spreads them evenly.
        let shard = user.rem_euclid(i64::from(self.user_shards.max(1)));
        u32::try_from(shard).unwrap_or(0)
    }
}

/// Whether a node id is acceptable: `[a-z0-9-]`, 1 to 32 characters (it is part of bus
/// subjects and metric labels).
pub fn valid_node_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether a call id is acceptable to the call registry: 32 lowercase hex characters, as the
/// supernode makes them (it is a key in the registry, which restricts its characters).
pub fn valid_call_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How a bus is doing, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusHealth {
    /// Connected to the bus now.
    pub connected: bool,
    /// Other supernodes heard from and not down.
    pub live_nodes: usize,
    /// Users watched by this supernode.
    pub watched_users: usize,
    /// Why it is not connected, if it is not.
    pub error: Option<String>,
    /// Events dropped since the start because this supernode's event queue was full
    /// ([`BusConfig::event_queue`]), or because a message could not be read.
    pub dropped_events: u64,
}

/// The bus as one supernode sees it. Every method may be called concurrently.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// This supernode's id.
    fn node_id(&self) -> &str;

    /// Sends `payload` to every *other* supernode that watches `to` (for a user) or is `to` (for
    /// a node); never back to this one. Messages from one supernode to one address arrive in the
    /// order they were published. Returns once the bus took the message, not once it arrived.
    async fn publish(&self, to: &Address, payload: Bytes) -> BusResult<()>;

    /// From now on, messages to this user reach this supernode. Watches are counted: a user
    /// watched twice stays watched until unwatched twice.
    async fn watch(&self, user: UserId) -> BusResult<()>;

    /// Undoes one [`Bus::watch`].
    async fn unwatch(&self, user: UserId) -> BusResult<()>;

    /// The events for this supernode, in arrival order. Only the first call returns them; later
    /// calls return `None`. The queue holds [`BusConfig::event_queue`] events (more are dropped
    /// and counted); it ends once the bus is closed.
    fn events(&self) -> Option<mpsc::Receiver<BusEvent>>;

    /// Registers an answered call (or writes it again, which restarts its time to live). A call
    /// id that is not [`valid_call_id`] is [`BusError::Refused`], here and in `get_call` and
    /// `delete_call`.
    async fn put_call(&self, call_id: &str, record: Bytes) -> BusResult<()>;

    /// A registered call, from any supernode.
    async fn get_call(&self, call_id: &str) -> BusResult<Option<Bytes>>;

    /// Forgets a registered call (it ended). Forgetting an unknown call is not an error.
    async fn delete_call(&self, call_id: &str) -> BusResult<()>;

    /// How the bus is doing.
    fn health(&self) -> BusHealth;

    /// Leaves the bus: other supernodes see this one go down at once or after
    /// [`BusConfig::down_after`]. Later calls fail with [`BusError::Unavailable`]. Dropping a bus
    /// leaves it too, without waiting.
    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_shards_spread_ids_and_take_negative_ones() {
        let config = BusConfig { user_shards: 4, ..BusConfig::new("a", "net") };
        let shards: Vec<u32> = (0..8).map(|u| config.user_shard(u)).collect();
        assert_eq!(shards, [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(config.user_shard(-1), 3);
        assert_eq!(config.user_shard(i64::MIN), 0);
        let one = BusConfig { user_shards: 1, ..config.clone() };
        assert_eq!(one.user_shard(12345), 0);
        assert!(config.validate().is_ok());
        for bad in [0, 65_537] {
            let c = BusConfig { user_shards: bad, ..config.clone() };
            assert!(c.validate().is_err(), "{bad}");
        }
    }
}
