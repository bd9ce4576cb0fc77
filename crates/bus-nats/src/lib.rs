//! Peerline's cluster bus on NATS: [`NatsBus`] implements [`peerline_bus::Bus`] with core NATS
//! subjects for messages and heartbeats, and a JetStream key-value bucket for the call registry.
//!
//! # Subjects
//!
//! Every subject of a network starts with `peerline.<network>.`; `<network>` and node ids are
//! `[a-z0-9-]`, 1 to 32 characters ([`BusConfig::validate`]), so each is one subject token.
//!
//! | subject | who subscribes | payload |
//! | --- | --- | --- |
//! | `peerline.<network>.u.<shard>` | every supernode that watches a user of the shard (one subscription per shard, taken at the first `watch` of one of its users, dropped at the last `unwatch`); `<shard>` is the user's decimal account id modulo [`BusConfig::user_shards`] (Euclidean remainder, 0 to `user_shards - 1`) | the published bytes, unchanged |
//! | `peerline.<network>.n.<node id>` | that supernode, from connect to close | the published bytes, unchanged |
//! | `peerline.<network>.hb` | every supernode | a heartbeat or goodbye, below |
//! | `peerline.<network>.sync` | nobody | empty; a request that the server answers "no responders" (see *Watches*) |
//!
//! **Sender.** Every message on `u.` and `n.` subjects carries the header
//! `Peerline-From: <node id>` (NATS headers need nats-server 2.2 or newer). A message without a
//! valid one is dropped and counted in [`BusHealth::dropped_events`].
//!
//! **User.** Every message on a `u.` subject carries the header `Peerline-User: <user id>`, the
//! decimal account id it is addressed to. A receiver hands on only the messages of users it
//! watches and drops the others of the shard silently (they are for other supernodes); a
//! message without a valid `Peerline-User`, or whose user is not of the subject's shard, is
//! dropped and counted. Sharding keeps a supernode's subscriptions to at most `user_shards`
//! (a NATS subscription costs about 5.6 KB in the client; one per watched user was the largest
//! per-user cost of a clustered supernode): a watched user costs a counter in a hash map.
//! Every supernode of a network must use the same `user_shards`. `Peerline-Sent: <unix
//! microseconds>` gives the receiver the publishing time, for its delivery latency. Each supernode connects
//! with `no_echo`, so the server never hands it its own messages, and drops any message that
//! claims its own id (an earlier incarnation of it, not yet gone).
//!
//! **Heartbeats.** On `peerline.<network>.hb`, ASCII text: `up <node id> <incarnation>` every
//! [`BusConfig::heartbeat`], and `down <node id> <incarnation>` once at [`Bus::close`].
//! `<incarnation>` is 16 lowercase hex digits, a random `u64` drawn at every connect. For
//! example `up sn-1 9f3c0a51d2e47b68`. A node is [`BusEvent::NodeUp`] when first heard or heard
//! with another incarnation (it restarted), and [`BusEvent::NodeDown`] once after its goodbye or
//! after [`BusConfig::down_after`] without a heartbeat (checked four times per `down_after`). A
//! supernode also sends a heartbeat at once whenever it hears a node come up, so that a
//! newcomer learns of everyone within a round trip instead of a heartbeat period.
//!
//! # Call registry
//!
//! JetStream key-value bucket `peerline_<network>_calls` (stream `KV_peerline_<network>_calls`),
//! created by the first supernode that finds it missing: file storage, history 1, `max_age` =
//! [`BusConfig::call_ttl`] (a bucket that exists is used as it is). Key: the call id, exactly
//! 32 lowercase hex characters (anything else is refused before it reaches NATS). Value: the
//! record bytes, unchanged. A write is a new revision, so it restarts the time to live; a delete
//! leaves a delete marker that expires with the same `max_age`.
//!
//! # Watches
//!
//! `watch` returns once the server has the subscription: after subscribing it sends a request
//! to `peerline.<network>.sync`, and the server's "no responders" answer comes after it has
//! processed everything this connection sent before. Watches are counted locally per user; the
//! NATS subscription of a shard exists while one of its users is watched.
//!
//! # Disconnects
//!
//! async-nats reconnects by itself (backoff of 100 ms per attempt up to 2 s, plus jitter) and
//! re-subscribes every subscription, watched users included. While disconnected,
//! [`Bus::publish`] and the registry fail at once with [`BusError::Unavailable`] (nothing is
//! queued), `health().connected` is false, no heartbeats are sent (after `down_after` the
//! others report this node down, and it reports them down; both come back up when heard again),
//! and `watch`/`unwatch` are recorded and take effect at the reconnect.
//!
//! # Backpressure
//!
//! Every subscription buffers at most [`BusConfig::event_queue`] messages in async-nats, and
//! every message is moved at once into the node's event queue of the same size. When the node
//! reads too slowly, messages are dropped (not buffered) and counted in
//! [`BusHealth::dropped_events`], as are messages async-nats drops for a slow subscription.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod liveness;
mod registry;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{ConnectOptions, HeaderMap};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use peerline_bus::{
    Address, Bus, BusConfig, BusError, BusEvent, BusHealth, BusResult, UserId, valid_node_id,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::liveness::LivenessTask;
use crate::registry::Registry;
use crate::wire::{
    Beat, FROM_HEADER, SENT_HEADER, Subjects, USER_HEADER, decode_sent, decode_user, encode_sent,
};

/// How long `watch` and `close` wait for the server to confirm what they sent.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// A supernode's connection to the cluster bus on a NATS server (or cluster).
///
/// Closing it ([`Bus::close`]) says goodbye, so the others see it down at once; dropping it
/// stops its tasks and connection without a goodbye (the others notice after `down_after`).
pub struct NatsBus {
    me: NodeIdentity,
    subjects: Subjects,
    client: async_nats::Client,
    registry: Registry,
    events: Mutex<Option<mpsc::Receiver<BusEvent>>>,
    /// Where watch forwarders put messages; taken at close, so that the event queue ends once
    /// the tasks holding the other copies are gone.
    sink: Mutex<Option<EventSink>>,
    dropped: Arc<AtomicU64>,
    /// The subscribed shards; also serializes `watch`, `unwatch` and `close`.
    shards: tokio::sync::Mutex<HashMap<u32, ShardWatch>>,
    /// How often each user is watched: what the shard forwarders let through.
    watched: Arc<Mutex<HashMap<UserId, u32>>>,
    watched_users: AtomicUsize,
    live_nodes: Arc<AtomicUsize>,
    /// The liveness task and the node subject's forwarder.
    tasks: Vec<AbortHandle>,
    closed: AtomicBool,
    /// The last connection problem async-nats reported, for `health()`.
    last_error: Arc<Mutex<Option<String>>>,
}

/// Who this supernode is on the bus.
#[derive(Debug, Clone)]
pub(crate) struct NodeIdentity {
    pub node_id: String,
    pub incarnation: u64,
}

/// One subscribed shard: how many of its users are watched, and the task that forwards its
/// subscription's messages.
struct ShardWatch {
    users: usize,
    task: AbortHandle,
}

/// The sending side of a node's event queue: never waits, drops and counts when full.
#[derive(Clone)]
pub(crate) struct EventSink {
    events: mpsc::Sender<BusEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    pub(crate) fn send(&self, event: BusEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            self.count_drop("the event queue is full");
        }
    }

    pub(crate) fn count_drop(&self, why: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(why, "bus event dropped");
    }
}

impl NatsBus {
    /// Connects to the NATS server(s) at `url` (e.g. `nats://10.0.0.5:4222`, or several
    /// separated by commas), opens the call registry, subscribes this node's subjects and
    /// starts its heartbeats. Fails with [`BusError::Refused`] for a bad config and
    /// [`BusError::Unavailable`] when the server cannot be reached or has no JetStream.
    pub async fn connect(url: &str, config: BusConfig) -> Result<NatsBus, BusError> {
        config.validate()?;
        let dropped = Arc::new(AtomicU64::new(0));
        let last_error = Arc::new(Mutex::new(None));
        let client = options(&config, Arc::clone(&dropped), Arc::clone(&last_error))
            .connect(url)
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot connect to NATS at {url}: {e}")))?;
        let registry = Registry::open(client.clone(), &config.network, config.call_ttl).await?;
        let subjects = Subjects::new(&config.network, config.user_shards);
        let subscribe = async |subject: String| {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| BusError::Unavailable(format!("cannot subscribe to {subject}: {e}")))
        };
        let to_me = subscribe(subjects.node(&config.node_id)).await?;
        let beats = subscribe(subjects.heartbeat()).await?;

        let me = NodeIdentity { node_id: config.node_id.clone(), incarnation: rand::random() };
        let (events_tx, events_rx) = mpsc::channel(config.event_queue);
        let sink = EventSink { events: events_tx, dropped: Arc::clone(&dropped) };
        let live_nodes = Arc::new(AtomicUsize::new(0));
        let to = Address::Node(me.node_id.clone());
        let forwarder = tokio::spawn(forward(to_me, to, me.node_id.clone(), sink.clone()));
        let liveness = tokio::spawn(
            LivenessTask {
                client: client.clone(),
                subjects: subjects.clone(),
                me: me.clone(),
                heartbeat: config.heartbeat,
                down_after: config.down_after,
                beats,
                sink: sink.clone(),
                live_nodes: Arc::clone(&live_nodes),
            }
            .run(),
        );
        let bus = NatsBus {
            me,
            subjects,
            client,
            registry,
            events: Mutex::new(Some(events_rx)),
            sink: Mutex::new(Some(sink)),
            dropped,
            shards: tokio::sync::Mutex::new(HashMap::new()),
            watched: Arc::new(Mutex::new(HashMap::new())),
            watched_users: AtomicUsize::new(0),
            live_nodes,
            tasks: vec![forwarder.abort_handle(), liveness.abort_handle()],
            closed: AtomicBool::new(false),
            last_error,
        };
        // Messages to this node reach it from the moment `connect` returns.
        bus.confirm_subscriptions().await;
        Ok(bus)
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Fails unless this bus is open and connected now (so that nothing queues up while the
    /// connection is down).
    fn check_usable(&self) -> BusResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        if !self.connected() {
            let why = lock(&self.last_error).clone().unwrap_or_else(|| "not connected".into());
            return Err(BusError::Unavailable(format!("NATS connection is down: {why}")));
        }
        Ok(())
    }

    /// Waits until the server has processed every subscription sent so far: a request to the
    /// sync subject, which nobody answers, comes back "no responders" only after that. Skipped
    /// while disconnected (async-nats re-sends subscriptions at the reconnect).
    async fn confirm_subscriptions(&self) {
        if !self.connected() {
            return;
        }
        let request = self.client.request(self.subjects.sync(), Bytes::new());
        match tokio::time::timeout(CONFIRM_TIMEOUT, request).await {
            Err(_) => tracing::warn!("NATS did not confirm a subscription in {CONFIRM_TIMEOUT:?}"),
            Ok(Err(e)) if e.kind() != async_nats::RequestErrorKind::NoResponders => {
                tracing::debug!(error = %e, "subscription confirmation failed");
            }
            Ok(_) => {}
        }
    }

    /// Subscribes to a shard's subject, with a forwarder for its watched users; the caller
    /// holds the shard table and has counted the first watched user.
    async fn subscribe_shard(
        &self,
        shards: &mut HashMap<u32, ShardWatch>,
        shard: u32,
    ) -> BusResult<()> {
        let sink = lock(&self.sink).clone().ok_or_else(closed)?;
        let subject = self.subjects.shard(shard);
        let subscription = self.client.subscribe(subject).await.map_err(|e| {
            BusError::Unavailable(format!("cannot subscribe to user shard {shard}: {e}"))
        })?;
        let forwarder = forward_shard(
            subscription,
            shard,
            self.subjects.clone(),
            self.me.node_id.clone(),
            sink,
            Arc::clone(&self.watched),
        );
        let task = tokio::spawn(forwarder).abort_handle();
        shards.insert(shard, ShardWatch { users: 1, task });
        Ok(())
    }

    /// Undoes one watch of `user` in the count; `true` if that was the last one.
    fn forget(&self, user: UserId) -> bool {
        let mut watched = lock(&self.watched);
        let Some(count) = watched.get_mut(&user) else { return false };
        *count = count.saturating_sub(1);
        let last = *count == 0;
        if last {
            watched.remove(&user);
            self.watched_users.store(watched.len(), Ordering::Relaxed);
        }
        last
    }

    /// Stops every task and forwarder; the event queue ends once they are gone.
    fn stop_tasks(&self, shards: &mut HashMap<u32, ShardWatch>) {
        for task in &self.tasks {
            task.abort();
        }
        for (_, shard) in shards.drain() {
            shard.task.abort();
        }
        lock(&self.watched).clear();
        self.watched_users.store(0, Ordering::Relaxed);
        lock(&self.sink).take();
    }
}

/// How the client connects: no echo, bounded buffers, quick reconnects, connection problems
/// recorded for `health()`.
fn options(
    config: &BusConfig,
    dropped: Arc<AtomicU64>,
    last_error: Arc<Mutex<Option<String>>>,
) -> ConnectOptions {
    ConnectOptions::new()
        .name(format!("peerline {} {}", config.network, config.node_id))
        .no_echo()
        .subscription_capacity(config.event_queue)
        // A server that died without closing the socket is noticed after two missed pings.
        .ping_interval(config.down_after)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            let backoff = 100 * u64::try_from(attempts).unwrap_or(u64::MAX);
            Duration::from_millis(backoff.min(2000) + rand::random::<u64>() % 100)
        })
        .event_callback(move |event| {
            let (dropped, last_error) = (Arc::clone(&dropped), Arc::clone(&last_error));
            async move {
                use async_nats::Event;
                match event {
                    Event::Connected => {
                        tracing::info!("connected to NATS");
                        lock(&last_error).take();
                    }
                    Event::SlowConsumer(_) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Disconnected => {
                        tracing::warn!("lost the NATS connection; reconnecting");
                        *lock(&last_error) = Some("disconnected; reconnecting".into());
                    }
                    other => {
                        tracing::warn!(event = %other, "NATS connection event");
                        *lock(&last_error) = Some(other.to_string());
                    }
                }
            }
        })
}

/// Moves a node subscription's messages into the event queue until aborted or unsubscribed.
async fn forward(
    mut subscription: async_nats::Subscriber,
    to: Address,
    own_id: String,
    sink: EventSink,
) {
    while let Some(message) = subscription.next().await {
        deliver(message, to.clone(), &own_id, &sink);
    }
}

/// Moves the messages of one user shard's subscription into the event queue, those of watched
/// users only, until aborted or unsubscribed.
async fn forward_shard(
    mut subscription: async_nats::Subscriber,
    shard: u32,
    subjects: Subjects,
    own_id: String,
    sink: EventSink,
    watched: Arc<Mutex<HashMap<UserId, u32>>>,
) {
    while let Some(message) = subscription.next().await {
        let user = message.headers.as_ref().and_then(|h| h.get(USER_HEADER));
        let Some(user) = user.and_then(|v| decode_user(v.as_str())) else {
            sink.count_drop("a user message without a valid Peerline-User header");
            continue;
        };
        if subjects.shard_of(user) != shard {
            sink.count_drop("a user message on another user's shard");
            continue;
        }
        // Another user of the shard, watched by other supernodes (or one unwatched since).
        if lock(&watched).contains_key(&user) {
            deliver(message, Address::User(user), &own_id, &sink);
        }
    }
}

/// Hands one message on as an event, if its sender header is valid and not this node's own.
fn deliver(message: async_nats::Message, to: Address, own_id: &str, sink: &EventSink) {
    let from = message.headers.as_ref().and_then(|h| h.get(FROM_HEADER));
    let sent = message.headers.as_ref().and_then(|h| h.get(SENT_HEADER));
    let sent = sent.and_then(|v| decode_sent(v.as_str()));
    match from.map(|v| v.as_str()) {
        Some(from) if from == own_id => {}
        Some(from) if valid_node_id(from) => sink.send(BusEvent::Message {
            from: from.to_owned(),
            to,
            payload: message.payload,
            sent,
        }),
        _ => sink.count_drop("a message without a valid Peerline-From header"),
    }
}

fn closed() -> BusError {
    BusError::Unavailable("this bus was closed".into())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain data, whole even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl Bus for NatsBus {
    fn node_id(&self) -> &str {
        &self.me.node_id
    }

    async fn publish(&self, to: &Address, payload: Bytes) -> BusResult<()> {
        if let Address::Node(node) = to {
            if !valid_node_id(node) {
                return Err(BusError::Refused(format!("no node can have the id {node:?}")));
            }
            if *node == self.me.node_id {
                // Never delivered back to the sender (no_echo would drop it anyway).
                return self.check_usable();
            }
        }
        self.check_usable()?;
        let mut headers = HeaderMap::new();
        headers.insert(FROM_HEADER, self.me.node_id.as_str());
        headers.insert(SENT_HEADER, encode_sent(std::time::SystemTime::now()).as_str());
        if let Address::User(user) = to {
            headers.insert(USER_HEADER, user.to_string().as_str());
        }
        let subject = self.subjects.address(to);
        self.client.publish_with_headers(subject, headers, payload).await.map_err(|e| {
            use async_nats::client::PublishErrorKind;
            match e.kind() {
                PublishErrorKind::MaxPayloadExceeded | PublishErrorKind::InvalidSubject => {
                    BusError::Refused(e.to_string())
                }
                PublishErrorKind::Send => BusError::Unavailable(e.to_string()),
            }
        })
    }

    async fn watch(&self, user: UserId) -> BusResult<()> {
        let mut shards = self.shards.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        // Counted before subscribing, so that the forwarder lets the user's messages through
        // from the subscription's first message on.
        let first = {
            let mut watched = lock(&self.watched);
            let count = watched.entry(user).or_insert(0);
            *count += 1;
            let first = *count == 1;
            self.watched_users.store(watched.len(), Ordering::Relaxed);
            first
        };
        let shard = self.subjects.shard_of(user);
        if first {
            if let Some(watch) = shards.get_mut(&shard) {
                watch.users += 1;
            } else if let Err(e) = self.subscribe_shard(&mut shards, shard).await {
                self.forget(user);
                return Err(e);
            }
        }
        drop(shards);
        // Every watch waits, not only the first of a shard: a watch must not return before the
        // subscription another watch just took is in place.
        self.confirm_subscriptions().await;
        Ok(())
    }

    async fn unwatch(&self, user: UserId) -> BusResult<()> {
        let mut shards = self.shards.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        if self.forget(user) {
            let shard = self.subjects.shard_of(user);
            if let Some(watch) = shards.get_mut(&shard) {
                watch.users = watch.users.saturating_sub(1);
                if watch.users == 0 {
                    // Dropping the subscription (with the task) unsubscribes it.
                    watch.task.abort();
                    shards.remove(&shard);
                }
            }
        }
        Ok(())
    }

    fn events(&self) -> Option<mpsc::Receiver<BusEvent>> {
        lock(&self.events).take()
    }

    async fn put_call(&self, call_id: &str, record: Bytes) -> BusResult<()> {
        self.check_usable()?;
        self.registry.put(call_id, record).await
    }

    async fn get_call(&self, call_id: &str) -> BusResult<Option<Bytes>> {
        self.check_usable()?;
        self.registry.get(call_id).await
    }

    async fn delete_call(&self, call_id: &str) -> BusResult<()> {
        self.check_usable()?;
        self.registry.delete(call_id).await
    }

    fn health(&self) -> BusHealth {
        let closed = self.closed.load(Ordering::Acquire);
        let connected = !closed && self.connected();
        let error = if closed {
            Some("closed".into())
        } else if connected {
            None
        } else {
            Some(lock(&self.last_error).clone().unwrap_or_else(|| "not connected to NATS".into()))
        };
        BusHealth {
            connected,
            live_nodes: if closed { 0 } else { self.live_nodes.load(Ordering::Relaxed) },
            watched_users: self.watched_users.load(Ordering::Relaxed),
            error,
            dropped_events: self.dropped.load(Ordering::Relaxed),
        }
    }

    async fn close(&self) {
        let mut shards = self.shards.lock().await;
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.stop_tasks(&mut shards);
        drop(shards);
        if self.connected() {
            let bye =
                Beat::Down { node: self.me.node_id.clone(), incarnation: self.me.incarnation };
            let sent = self.client.publish(self.subjects.heartbeat(), bye.encode().into()).await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "goodbye not sent");
            }
        }
        // Drain flushes the goodbye and closes the connection, which ends every subscription
        // on the server at once.
        if let Err(e) = self.client.drain().await {
            tracing::debug!(error = %e, "NATS drain at close failed");
        }
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let mut shards = std::mem::take(self.shards.get_mut());
            self.stop_tasks(&mut shards);
        }
    }
}
