//! What every connection task shares: the store, the hub (behind one lock together with the
//! senders of every connection, so events leave in the order the hub produced them), the password
//! hasher and the configuration.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use peerline_bus::Bus;
use peerline_store::{Store, StoredMissedCall, UserId};
use peerline_supernode_core::{
    BusMessage, CallRecord, ConnId, Hub, OnlineLogin, Output, Route, TokenBucket,
};
use peerline_wire::{EndReason, Event, MissedCall, ServerFrame, encode};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::warn;

use crate::config::Config;
use crate::metrics as m;
use crate::passwords::Passwords;

/// What a connection's writer task is asked to send.
#[derive(Debug)]
pub enum Outbound {
    /// A frame, already encoded.
    Frame(Utf8Bytes),
    /// Send `session_ended` with this reason, then close.
    End(EndReason),
    /// Close with WebSocket code 1009 (a frame was too large).
    CloseTooBig,
}

/// How the hub reaches one connection.
pub struct ConnHandle {
    /// The connection's bounded send queue; full means slow reader.
    pub outbox: Arc<Outbox>,
    /// Events held back from a connection that just logged in, until its `logged_in` reply is
    /// queued: the snapshot and whatever changed after it then follow the reply in order.
    pub held: Option<VecDeque<Utf8Bytes>>,
}

/// Most events held back for a connection between its login and the reply: a snapshot of many
/// contacts fits; past that the client is not reading.
const MAX_HELD: usize = 4096;

impl ConnHandle {
    /// A handle for a new connection.
    pub fn new(outbox: Arc<Outbox>) -> Self {
        ConnHandle { outbox, held: None }
    }

    /// Queues a frame, or holds it back; `false` if the queue is full (a slow reader).
    fn push(&mut self, frame: Utf8Bytes) -> bool {
        match &mut self.held {
            Some(held) if held.len() < MAX_HELD => {
                held.push_back(frame);
                true
            }
            Some(_) => false,
            None => self.outbox.try_push(Outbound::Frame(frame)),
        }
    }
}

/// One connection's bounded send queue, filled by the hub (events, under its lock) and by the
/// connection's own session (answers), drained by the connection's task.
///
/// An idle connection's queue is empty and then holds no allocation: a channel would keep a
/// block of slots per connection (about 1.8 KB each, measured), which at 100,000 idle users is
/// most of a supernode's memory for nothing.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the connection's task: something was queued, or the connection must end now.
    wake: Notify,
    /// Wakes the one waiting for room in the queue (the session, in the same task).
    room: Notify,
}

/// What [`Outbox::offer`] did.
#[derive(Debug)]
pub enum Offer {
    /// Queued.
    Queued,
    /// The queue is full: here is the frame back.
    Full(Outbound),
    /// The connection ended.
    Gone,
}

#[derive(Debug)]
struct OutboxState {
    queue: VecDeque<Outbound>,
    limit: usize,
    /// The connection ends now: nothing more is queued or written.
    killed: bool,
}

impl Outbox {
    /// An empty queue of at most `limit` frames (at least one).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Outbox {
            state: Mutex::new(OutboxState {
                queue: VecDeque::new(),
                limit: limit.max(1),
                killed: false,
            }),
            wake: Notify::new(),
            room: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, OutboxState> {
        // Plain data: whole even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `out` unless the queue is full or the connection ended; `false` then.
    pub fn try_push(&self, out: Outbound) -> bool {
        matches!(self.offer(out), Offer::Queued)
    }

    /// Queues `out` if there is room, or says why not (giving it back when the queue is full).
    pub fn offer(&self, out: Outbound) -> Offer {
        let mut state = self.state();
        if state.killed {
            return Offer::Gone;
        }
        if state.queue.len() >= state.limit {
            return Offer::Full(out);
        }
        state.queue.push_back(out);
        drop(state);
        self.wake.notify_one();
        Offer::Queued
    }

    /// Queues `out`, waiting for room; `false` if the connection ended first.
    pub async fn push(&self, out: Outbound) -> bool {
        if !self.wait_for_room().await {
            return false;
        }
        self.try_push(out)
    }

    /// Waits until the queue has room; `false` if the connection ended first. Only the
    /// connection's own task waits here (one waiter at a time).
    pub async fn wait_for_room(&self) -> bool {
        loop {
            {
                let state = self.state();
                if state.killed {
                    return false;
                }
                if state.queue.len() < state.limit {
                    return true;
                }
            }
            // A pop between the check and here left a permit: no wake-up is lost.
            self.room.notified().await;
        }
    }

    /// Ends the connection now: its task stops writing and closes it; what is queued is dropped.
    pub fn kill(&self) {
        let mut state = self.state();
        state.killed = true;
        state.queue = VecDeque::new();
        drop(state);
        self.wake.notify_one();
        self.room.notify_one();
    }

    /// Whether the connection was told to end.
    pub fn is_killed(&self) -> bool {
        self.state().killed
    }

    /// The next frame to write, waiting for one; `None` once the connection must end. Only the
    /// connection's task calls this.
    pub async fn next(&self) -> Option<Outbound> {
        loop {
            {
                let mut state = self.state();
                if state.killed {
                    return None;
                }
                if let Some(out) = state.queue.pop_front() {
                    if state.queue.is_empty() {
                        // Give back what a burst grew, so that a quiet connection holds nothing.
                        state.queue = VecDeque::new();
                    }
                    drop(state);
                    self.room.notify_one();
                    return Some(out);
                }
            }
            self.wake.notified().await;
        }
    }
}

/// A missed call the hub reported, waiting to be stored.
#[derive(Debug)]
pub struct MissedCallJob {
    callee: UserId,
    caller: UserId,
    call_id: String,
    at: i64,
}

/// The hub and the connection registry, under one lock.
pub struct Core {
    /// Live state.
    pub hub: Hub,
    /// Senders by connection.
    pub conns: HashMap<ConnId, ConnHandle>,
    /// Missed calls to store (the writer task drains it; bounded by the hub's call limits).
    missed: mpsc::UnboundedSender<MissedCallJob>,
    /// Work for the bus publisher task.
    bus_out: Option<mpsc::Sender<BusJob>>,
}

impl Core {
    /// Delivers everything the hub has queued.
    fn flush(&mut self) {
        for output in self.hub.drain_outputs() {
            match output {
                Output::Send { conns, event } => {
                    let frame = Utf8Bytes::from(encode(&ServerFrame::Event { event }));
                    for conn in conns {
                        let full =
                            self.conns.get_mut(&conn).is_some_and(|h| !h.push(frame.clone()));
                        if full {
                            // A full queue means the client does not read: drop it rather than
                            // buffer without bound.
                            self.drop_slow_reader(conn);
                        }
                    }
                }
                Output::Close { conn, reason } => {
                    if let Some(h) = self.conns.get_mut(&conn) {
                        // What was held back goes first: the goodbye comes last.
                        let held = h.held.take().unwrap_or_default();
                        let sent =
                            held.into_iter().all(|frame| h.outbox.try_push(Outbound::Frame(frame)));
                        if !sent || !h.outbox.try_push(Outbound::End(reason)) {
                            h.outbox.kill();
                        }
                    }
                }
                Output::Bus { to, msg } => self.to_bus(BusJob::Publish(to, msg)),
                Output::RegisterCall { call_id, record } => {
                    self.to_bus(BusJob::Register(call_id, record));
                }
                Output::UnregisterCall { call_id } => self.to_bus(BusJob::Unregister(call_id)),
                Output::MissedCall { callee, caller, call_id } => {
                    metrics::counter!(m::MISSED_CALLS).increment(1);
                    let job = MissedCallJob { callee, caller, call_id, at: now_ms() };
                    if self.missed.send(job).is_err() {
                        warn!("missed call dropped: the writer has stopped");
                    }
                }
            }
        }
    }

    /// Queues work for the bus, at most once like the bus itself: a full queue means the bus is
    /// down or far behind, and what must not be lost is in the database already.
    fn to_bus(&self, job: BusJob) {
        if let Some(bus) = &self.bus_out
            && bus.try_send(job).is_err()
        {
            metrics::counter!(m::BUS_DROPPED).increment(1);
        }
    }

    /// Drops a connection whose send queue is full, counting it once.
    fn drop_slow_reader(&mut self, conn: ConnId) {
        if self.hub.mark_closing(conn) {
            metrics::counter!(m::SLOW_READER_DISCONNECTS).increment(1);
            if let Some(h) = self.conns.get(&conn) {
                h.outbox.kill();
            }
        }
    }
}

/// Shared by all tasks of one supernode.
pub struct Shared {
    /// Configuration in force.
    pub config: Config,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Argon2id.
    pub passwords: Passwords,
    /// The UDP port of the STUN responder, told to clients in `hello`.
    pub stun_port: Option<u16>,
    /// The bus to the other supernodes (in-process when alone).
    pub bus: Arc<dyn Bus>,
    /// Per-user state of `turn_credentials` (cmd/turn.rs).
    pub turn_grants: Mutex<TurnGrants>,
    core: Mutex<Core>,
    next_conn: AtomicU64,
    missed_rx: Mutex<Option<mpsc::UnboundedReceiver<MissedCallJob>>>,
    bus_rx: Mutex<Option<mpsc::Receiver<BusJob>>>,
}

/// What `turn_credentials` remembers per user: its rate limit and the expiry (Unix seconds) of
/// the credentials handed out last, reused while enough of their life is left. The logic is in
/// cmd/turn.rs.
#[derive(Debug, Default)]
pub struct TurnGrants {
    pub(crate) users: HashMap<UserId, (TokenBucket, i64)>,
    pub(crate) prune_at: usize,
}

/// What the bus publisher task does for the hub, in order.
#[derive(Debug)]
pub enum BusJob {
    /// Publish a message.
    Publish(Route, BusMessage),
    /// Register an answered call.
    Register(String, CallRecord),
    /// Forget a call.
    Unregister(String),
}

/// Messages waiting for the bus publisher: a burst of presence after mass reconnects fits, a
/// bus that is down for long does not make memory grow.
const BUS_QUEUE: usize = 65_536;

impl Shared {
    /// Builds the shared state.
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        hub: Hub,
        passwords: Passwords,
        stun_port: Option<u16>,
        bus: Arc<dyn Bus>,
    ) -> Self {
        let (missed, missed_rx) = mpsc::unbounded_channel();
        let (bus_out, bus_rx) = mpsc::channel(BUS_QUEUE);
        Self {
            config,
            store,
            passwords,
            stun_port,
            bus,
            turn_grants: Mutex::default(),
            core: Mutex::new(Core { hub, conns: HashMap::new(), missed, bus_out: Some(bus_out) }),
            next_conn: AtomicU64::new(1),
            missed_rx: Mutex::new(Some(missed_rx)),
            bus_rx: Mutex::new(Some(bus_rx)),
        }
    }

    /// The queue of messages for other supernodes; only the first call gets it.
    pub fn take_bus_queue(&self) -> Option<mpsc::Receiver<BusJob>> {
        self.bus_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Stores the missed calls the hub reports and tells the callee's online devices, until
    /// `stop` fires; then writes what is still queued and returns.
    pub async fn record_missed_calls(self: Arc<Self>, mut stop: oneshot::Receiver<()>) {
        let taken = self.missed_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut jobs) = taken else { return };
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => self.record_missed_call(job).await,
                    None => return,
                },
                _ = &mut stop => {
                    while let Ok(job) = jobs.try_recv() {
                        self.record_missed_call(job).await;
                    }
                    return;
                }
            }
        }
    }

    async fn record_missed_call(&self, job: MissedCallJob) {
        match self.store.record_missed_call(job.callee, job.caller, &job.call_id, job.at).await {
            Ok(stored) => {
                let event = Event::MissedCall { missed: missed_call_to_wire(stored) };
                self.with_hub(|h| h.send_to_user(job.callee, event, None));
            }
            Err(err) => warn!(error = %err, "storing a missed call failed"),
        }
        // And in the callee's call log, where every device finds it (`peerline calls
        // --missed`): no device of the callee may have seen the call to report it.
        let record = peerline_store::NewCallRecord {
            call_id: job.call_id,
            owner: job.callee,
            peer: job.caller,
            outgoing: false,
            started_at: job.at,
            answered_at: None,
            ended_at: job.at,
            end_reason: "missed".into(),
            path: None,
        };
        if let Err(err) = self.store.record_call(record).await {
            warn!(error = %err, "adding a missed call to the call log failed");
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the hub, then delivers whatever it queued, all under the lock.
    pub fn with_hub<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> R {
        let mut core = self.lock();
        let result = f(&mut core.hub);
        core.flush();
        result
    }

    /// Registers a new connection; `None` if the connection limit is reached.
    pub fn register(
        &self,
        handle: ConnHandle,
        peer: std::net::IpAddr,
        now: Instant,
    ) -> Result<ConnId, &'static str> {
        let mut core = self.lock();
        if core.conns.len() >= self.config.limits.max_connections {
            return Err("supernode is full, try later");
        }
        let id = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        if !core.hub.connect_from(id, peer, now) {
            return Err("too many connections from your address that have not logged in");
        }
        core.conns.insert(id, handle);
        Ok(id)
    }

    /// Logs a connection in: it goes live in the hub, with its presence snapshot, and events to
    /// it are held back until [`Shared::release`]. `false` if the connection is gone.
    pub fn login(&self, conn: ConnId, login: OnlineLogin, now: Instant) -> bool {
        let mut core = self.lock();
        let Some(handle) = core.conns.get_mut(&conn) else { return false };
        handle.held = Some(VecDeque::new());
        let live = core.hub.login(conn, login, now);
        core.flush();
        live
    }

    /// Lets the events held back since login go, after the login reply, waiting for room in
    /// the connection's queue as a reply does. Events that come meanwhile stay behind them.
    /// `false` if the connection is gone.
    pub async fn release(&self, conn: ConnId, outbox: &Outbox) -> bool {
        loop {
            if !outbox.wait_for_room().await {
                return false;
            }
            let mut core = self.lock();
            let Some(handle) = core.conns.get_mut(&conn) else { return false };
            let Some(held) = handle.held.as_mut() else { return true };
            while let Some(frame) = held.pop_front() {
                if !outbox.try_push(Outbound::Frame(frame.clone())) {
                    held.push_front(frame);
                    break;
                }
            }
            if held.is_empty() {
                handle.held = None;
                return true;
            }
            if outbox.is_killed() {
                return false;
            }
        }
    }

    /// Binds a connection to a user without making it online (a quiet login: no presence, no
    /// events, no watch on the bus). `false` if the connection is gone.
    pub fn login_quiet(
        &self,
        conn: ConnId,
        user: UserId,
        device: peerline_wire::DeviceId,
        now: Instant,
    ) -> bool {
        let mut core = self.lock();
        let live = core.hub.login_quiet(conn, user, device, now);
        core.flush();
        live
    }

    /// Forgets a connection and tells the hub (presence may change). Returns the user it was
    /// logged in as, whose watch on the bus it held (none for a quiet login).
    pub fn unregister(&self, conn: ConnId) -> Option<UserId> {
        let mut core = self.lock();
        core.conns.remove(&conn);
        let quiet = core.hub.is_quiet(conn);
        let user = core.hub.login_of(conn).map(|(user, _)| user).filter(|_| !quiet);
        core.hub.disconnect(conn);
        core.flush();
        user
    }

    /// Drops a connection that does not read what it is sent.
    pub fn drop_slow_reader(&self, conn: ConnId) {
        self.lock().drop_slow_reader(conn);
    }

    /// Live connection count.
    pub fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// `(connections, online users)`.
    pub fn counts(&self) -> (usize, usize) {
        let core = self.lock();
        (core.hub.connection_count(), core.hub.online_user_count())
    }
}

/// Wall-clock milliseconds since the Unix epoch (for stored timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A stored missed call as the wire shows it.
pub fn missed_call_to_wire(m: StoredMissedCall) -> MissedCall {
    MissedCall { id: m.id, call_id: m.call_id, from: m.caller, at: m.at }
}
