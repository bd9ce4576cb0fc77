//! What every connection task shares: the store, the hub (behind one lock together with the
//! senders of every connection, so events leave in the order the hub produced them), the password
//! hasher and the configuration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use peerline_store::Store;
use peerline_supernode_core::{ConnId, Hub, Output};
use peerline_wire::{EndReason, ServerFrame, encode};
use tokio::sync::{Notify, mpsc};

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
    /// The bounded send queue; full means slow reader.
    pub tx: mpsc::Sender<Outbound>,
    /// Wakes the connection's reader to tear it down at once.
    pub kill: Arc<Notify>,
}

/// The hub and the connection registry, under one lock.
pub struct Core {
    /// Live state.
    pub hub: Hub,
    /// Senders by connection.
    pub conns: HashMap<ConnId, ConnHandle>,
}

impl Core {
    /// Delivers everything the hub has queued.
    fn flush(&mut self) {
        for output in self.hub.drain_outputs() {
            match output {
                Output::Send { conns, event } => {
                    let frame = Utf8Bytes::from(encode(&ServerFrame::Event { event }));
                    for conn in conns {
                        let full = self.conns.get(&conn).is_some_and(|h| {
                            h.tx.try_send(Outbound::Frame(frame.clone())).is_err()
                        });
                        if full {
                            // A full queue means the client does not read: drop it rather than
                            // buffer without bound.
                            self.drop_slow_reader(conn);
                        }
                    }
                }
                Output::Close { conn, reason } => {
                    if let Some(h) = self.conns.get(&conn)
                        && h.tx.try_send(Outbound::End(reason)).is_err()
                    {
                        h.kill.notify_one();
                    }
                }
            }
        }
    }

    /// Drops a connection whose send queue is full, counting it once.
    fn drop_slow_reader(&mut self, conn: ConnId) {
        if self.hub.mark_closing(conn) {
            metrics::counter!(m::SLOW_READER_DISCONNECTS).increment(1);
            if let Some(h) = self.conns.get(&conn) {
                h.kill.notify_one();
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
    core: Mutex<Core>,
    next_conn: AtomicU64,
}

impl Shared {
    /// Builds the shared state.
    pub fn new(config: Config, store: Arc<dyn Store>, hub: Hub, passwords: Passwords) -> Self {
        Self {
            config,
            store,
            passwords,
            core: Mutex::new(Core { hub, conns: HashMap::new() }),
            next_conn: AtomicU64::new(1),
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
    pub fn register(&self, handle: ConnHandle, now: Instant) -> Option<ConnId> {
        let mut core = self.lock();
        if core.conns.len() >= self.config.limits.max_connections {
            return None;
        }
        let id = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        core.conns.insert(id, handle);
        core.hub.connect(id, now);
        Some(id)
    }

    /// Forgets a connection and tells the hub (presence may change).
    pub fn unregister(&self, conn: ConnId) {
        let mut core = self.lock();
        core.conns.remove(&conn);
        core.hub.disconnect(conn);
        core.flush();
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
