//! The light protocol client: one user staying online the way the real client does, cheaply
//! enough that one process runs thousands of them (a reconnect storm in a test, or from the
//! load generator).
//!
//! Every decision is the real client's, taken from `peerline-client-core`: the connection opens
//! with the sans-IO [`LoginHandshake`] (`hello`, then a token `login` signed by the device key),
//! requests, answers and heartbeats go through [`ClientSession`], and after a loss the next host
//! and the wait before it come from [`Failover`] over a [`HostCache`] (full-jitter exponential
//! backoff, `retry_after_secs` obeyed), exactly as `peerline_client::Client::reconnect` drives
//! them. This module is only the driver: it dials (from a chosen source address, through
//! [`Dialer`]), sleeps, and says what happened in [`Report`]s.
//!
//! Unlike the client library it never sends a password and keeps no home directory: a rejected
//! token ends the user ([`Change::GaveUp`]), as `reconnect` returns `NotLoggedIn`.

mod driver;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use peerline_client_core::{FailoverConfig, SessionConfig};
use peerline_wire::{ErrorBody, ErrorCode, Event, Reply, Request};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::dial::Dialer;
use crate::source_addrs::SourceAddrs;
use crate::state_file::SavedUser;
use driver::{Command, Driver};

/// Pushed events kept for a caller that asked for them and reads slowly; later ones are dropped.
const EVENT_QUEUE: usize = 1024;

/// One account the light client logs in as: a token from an earlier password login and the
/// device key it is bound to.
#[derive(Clone)]
pub struct Account {
    /// The username.
    pub username: String,
    /// The device's Ed25519 key.
    pub key: SigningKey,
    /// The session token.
    pub token: String,
}

impl Account {
    /// The account of a user saved in a state file.
    pub fn from_saved(username: &str, saved: &SavedUser) -> anyhow::Result<Self> {
        Ok(Self {
            username: username.to_owned(),
            key: saved.signing_key()?,
            token: saved.token.clone(),
        })
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token or the key.
        f.debug_struct("Account").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Tuning of a light client. The defaults are the client library's.
#[derive(Debug, Clone)]
pub struct LightConfig {
    /// The failover policy (0.5 s base, 30 s cap).
    pub failover: FailoverConfig,
    /// Requests in flight, request timeout, heartbeat interval.
    pub session: SessionConfig,
    /// Time for TCP, TLS and the WebSocket upgrade (the client library's 10 s).
    pub connect_timeout: Duration,
    /// The device name sent at login.
    pub device_name: String,
}

impl Default for LightConfig {
    fn default() -> Self {
        Self {
            failover: FailoverConfig::default(),
            session: SessionConfig::default(),
            connect_timeout: Duration::from_secs(10),
            device_name: "peerline-loadgen".to_owned(),
        }
    }
}

/// What happened to a light client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Logged in on `host`, at attempt `attempt` of the outage (1: the first try worked).
    Online {
        /// The supernode URL.
        host: String,
        /// Which attempt of the outage this was.
        attempt: u32,
    },
    /// The logged-in connection to `host` is gone.
    Offline {
        /// The supernode URL.
        host: String,
        /// Why (closed, a WebSocket error, the session ended).
        why: String,
    },
    /// `host` refused the login for now (`rate_limited`, full, ...) and said when to come back.
    Refused {
        /// The supernode URL.
        host: String,
        /// The error code.
        code: ErrorCode,
        /// Its `retry_after_secs`.
        retry_after: Duration,
    },
    /// An attempt on `host` failed otherwise (unreachable, TLS, closed, timed out).
    Failed {
        /// The supernode URL.
        host: String,
        /// What went wrong.
        why: String,
    },
    /// No supernode will take this user any more (its token was refused): stopped.
    GaveUp {
        /// Why.
        why: String,
    },
}

/// A change of user number `user`, at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The user's number in its crowd.
    pub user: usize,
    /// When it happened.
    pub at: Instant,
    /// What happened.
    pub change: Change,
}

/// Why a request got no answer from the supernode.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestFailure {
    /// The client is not connected right now (it is reconnecting, or stopped).
    Offline,
    /// The connection dropped before the answer came.
    Lost,
    /// No answer within the session's request timeout.
    TimedOut,
    /// Too many requests in flight.
    Busy,
    /// The supernode answered with an error.
    Server(ErrorBody),
}

impl std::fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Offline => f.write_str("not connected (reconnecting or stopped)"),
            Self::Lost => f.write_str("the connection dropped before the answer"),
            Self::TimedOut => f.write_str("no answer in time"),
            Self::Busy => f.write_str("too many requests in flight"),
            Self::Server(body) => write!(f, "the supernode refused: {body}"),
        }
    }
}

impl std::error::Error for RequestFailure {}

/// Where light clients say what happened to them (called from their tasks; keep it quick).
pub type Reporter = Arc<dyn Fn(Report) + Send + Sync>;

/// Dialers by supernode URL, made on first use and shared by every light client of a process
/// (a host learned at login gets one too).
pub struct Dialers {
    sources: Option<SourceAddrs>,
    by_url: Mutex<HashMap<String, Arc<Dialer>>>,
}

impl Dialers {
    /// Dialers that bind connection `n` to the `n`th address of `sources`, when given.
    pub fn new(sources: Option<SourceAddrs>) -> Self {
        Self { sources, by_url: Mutex::new(HashMap::new()) }
    }

    /// The dialer of `url`; an error says why there cannot be one (not loopback, bad URL).
    pub async fn get(&self, url: &str) -> Result<Arc<Dialer>, String> {
        let mut by_url = self.by_url.lock().await;
        if let Some(dialer) = by_url.get(url) {
            return Ok(dialer.clone());
        }
        let dialer = Arc::new(Dialer::new(url, self.sources).await.map_err(|e| format!("{e:#}"))?);
        by_url.insert(url.to_owned(), dialer.clone());
        Ok(dialer)
    }
}

/// What the light clients of one process share: how to dial, how to behave, where to report.
#[derive(Clone)]
pub struct Network {
    /// Dialers by URL.
    pub dialers: Arc<Dialers>,
    /// Tuning.
    pub config: LightConfig,
    /// Where changes go.
    pub report: Reporter,
}

/// A running light client; dropping it (or [`LightClient::stop`]) ends it.
pub struct LightClient {
    commands: mpsc::Sender<Command>,
    events: Option<mpsc::Receiver<Event>>,
    task: tokio::task::JoinHandle<()>,
}

impl LightClient {
    /// Starts user number `user` (which also picks its source address) on `network`, given the
    /// supernode URLs `hosts` (in the order to try them; the supernodes' list learned at login
    /// follows them, as in the client library's host cache). With `keep_events`, pushed events
    /// are kept for [`LightClient::next_event`].
    pub fn spawn(
        user: usize,
        account: Account,
        hosts: Vec<String>,
        network: &Network,
        keep_events: bool,
    ) -> Self {
        let (commands, commands_rx) = mpsc::channel(32);
        let (events_tx, events) = if keep_events {
            let (tx, rx) = mpsc::channel(EVENT_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let driver = Driver::new(user, account, network.clone(), commands_rx, events_tx);
        let task = tokio::spawn(driver.run(hosts));
        Self { commands, events, task }
    }

    /// Sends `request` on the current connection and waits for the answer. Fails at once with
    /// [`RequestFailure::Offline`] while the client is reconnecting.
    pub async fn request(&self, request: Request) -> Result<Reply, RequestFailure> {
        let (answer, rx) = oneshot::channel();
        self.commands
            .send(Command { request, answer })
            .await
            .map_err(|_| RequestFailure::Offline)?;
        rx.await.unwrap_or(Err(RequestFailure::Lost))
    }

    /// The next pushed event (when spawned with `keep_events`); `None` once stopped, or never
    /// for a client that keeps none.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.as_mut()?.recv().await
    }

    /// Takes the receiver of pushed events (of a client spawned with `keep_events`), so that
    /// one task reads the events while others send requests through a shared reference; after
    /// it, [`LightClient::next_event`] returns `None`.
    pub fn take_events(&mut self) -> Option<mpsc::Receiver<Event>> {
        self.events.take()
    }

    /// Closes the connection politely and ends the client (5 s at most).
    pub async fn stop(self) {
        let Self { commands, task, .. } = self;
        drop(commands);
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
            abort.abort();
        }
    }
}
