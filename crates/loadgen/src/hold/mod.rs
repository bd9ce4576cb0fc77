//! `hold`: logs N saved users in by token at a fixed rate and keeps every connection open and
//! alive (a `ping` every third of the supernode's heartbeat timeout, WebSocket pings answered) for
//! a fixed time; measures the supernode's resident memory before and after, per connected user.
//!
//! Each connection is one small task that owns its WebSocket and does nothing but ping and read,
//! so the load generator's own memory stays small and out of the way.
//!
//! `hold-nats` runs the same ramp, hold and measurements against a nats-server's TLS WebSocket
//! port ([`nats`]), so that both servers are measured by one piece of code.

pub mod nats;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use peerline_wire::{Event, Request, ServerFrame, decode_server_frame};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::dial::{Dialer, Failure, LoginSecret, Session, Tally};
use crate::latency::{Latencies, Summary};
use crate::procfs::{cpu_seconds, rss_bytes};
use crate::state_file::SavedUser;

/// Time to let the supernode settle after the last login before its memory is read.
const SETTLE: Duration = Duration::from_secs(3);
/// How often progress is printed while holding.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How long closing all connections may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

/// Who connects: Peerline users, or anonymous clients of a nats-server for the comparison.
#[derive(Debug, Clone)]
pub enum Who {
    /// Users to log in by token, from the state file.
    Peerline(Vec<(String, SavedUser)>),
    /// `count` NATS clients, each sending `token` in its `CONNECT` when given.
    Nats {
        /// How many connections.
        count: usize,
        /// The server's `authorization { token }`, if it has one.
        token: Option<String>,
    },
}

impl Who {
    fn count(&self) -> usize {
        match self {
            Self::Peerline(users) => users.len(),
            Self::Nats { count, .. } => *count,
        }
    }
}

/// What `hold` was asked to do.
#[derive(Debug, Clone)]
pub struct HoldPlan {
    /// Who connects.
    pub who: Who,
    /// New connections per second.
    pub ramp_per_second: f64,
    /// How long to keep them open after the last one logged in.
    pub hold: Duration,
    /// The server's process id, to read its memory.
    pub supernode_pid: Option<u32>,
    /// Time between two heartbeats of one connection. `None`: a third of the supernode's
    /// heartbeat timeout from its `hello` (NATS clients then ping every 20 s, a third of the
    /// supernode's default 60 s).
    pub heartbeat: Option<Duration>,
}

/// NATS clients' heartbeat when none is given: what a Peerline client does with the default
/// 60 s heartbeat timeout.
const DEFAULT_NATS_HEARTBEAT: Duration = Duration::from_secs(20);

/// The supernode's resident memory at the moments that matter.
#[derive(Debug, Serialize)]
pub struct Memory {
    /// Before the first connection.
    pub rss_before_bytes: u64,
    /// After every connection logged in (or failed), plus a short settling time.
    pub rss_connected_bytes: u64,
    /// At the end of the hold (every connection has pinged at least twice by then if the hold is
    /// longer than two thirds of the heartbeat timeout).
    pub rss_end_bytes: u64,
    /// `(connected - before) / connected users`.
    pub bytes_per_user_connected: Option<f64>,
    /// `(end - before) / users still connected at the end`.
    pub bytes_per_user_end: Option<f64>,
    /// CPU seconds the supernode used during the hold (idle connections pinging).
    pub cpu_seconds_during_hold: f64,
}

/// The result of `hold`.
#[derive(Debug, Serialize)]
pub struct HoldReport {
    /// `hold`, or `hold-nats` against a nats-server.
    pub command: &'static str,
    /// Connections asked for.
    pub users: usize,
    /// Logged in.
    pub connected: usize,
    /// Could not connect or log in, by kind.
    pub failures: Tally,
    /// Seconds from the first connection attempt until every attempt had finished.
    pub ramp_seconds: f64,
    /// Connect + TLS + upgrade + hello + token login, per connection.
    pub login_latency: Option<Summary>,
    /// Seconds the connections were held.
    pub hold_seconds: f64,
    /// Still open at the end of the hold.
    pub alive_at_end: usize,
    /// Closed during the hold, by why.
    pub dropped: Tally,
    /// `ping` requests sent during the whole run.
    pub pings_sent: u64,
    /// The supernode's memory, when `--supernode-pid` was given.
    pub memory: Option<Memory>,
}

/// Counters every connection task shares.
#[derive(Default)]
struct Shared {
    finished: AtomicUsize,
    connected: AtomicUsize,
    alive: AtomicUsize,
    pings: AtomicU64,
    failures: Mutex<Tally>,
    dropped: Mutex<Tally>,
    latency: Mutex<Latencies>,
}

fn add(tally: &Mutex<Tally>, failure: &Failure) {
    tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner).add(failure);
}

/// Pings and reads until told to stop or the connection ends. `phase` in `[0, 1)` spreads the
/// first ping so that thousands of connections do not ping in the same instant.
async fn idle(
    mut session: Session,
    mut stop: watch::Receiver<bool>,
    phase: f64,
    heartbeat: Option<Duration>,
    pings: &AtomicU64,
) -> Result<(), Failure> {
    let every = heartbeat.unwrap_or(Duration::from_secs(session.heartbeat_timeout_secs.max(3)) / 3);
    let mut next_ping = Instant::now() + every.mul_f64(phase);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                session.close().await;
                return Ok(());
            }
            read = tokio::time::timeout_at(next_ping, session.ws.next()) => match read {
                Err(_elapsed) => {
                    let id = session.next_id();
                    session.send(id, Request::Ping).await?;
                    pings.fetch_add(1, Ordering::Relaxed);
                    next_ping += every;
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    if let Ok(ServerFrame::Event { event: Event::SessionEnded { reason } }) =
                        decode_server_frame(text.as_bytes())
                    {
                        return Err(Failure {
                            kind: "session_ended".into(),
                            detail: format!("{reason:?}"),
                        });
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(Failure {
                        kind: "closed".into(),
                        detail: format!("closed by supernode: {frame:?}"),
                    });
                }
                Ok(None) => {
                    return Err(Failure { kind: "closed".into(), detail: "connection closed".into() });
                }
                Ok(Some(Err(e))) => {
                    return Err(Failure { kind: "websocket".into(), detail: e.to_string() });
                }
                // Pings are answered inside tungstenite; nothing else arrives.
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// Pings (`PING`) and answers the server's pings until told to stop or the connection ends.
async fn idle_nats(
    mut conn: nats::NatsConnection,
    mut stop: watch::Receiver<bool>,
    phase: f64,
    heartbeat: Option<Duration>,
    pings: &AtomicU64,
) -> Result<(), Failure> {
    let every = heartbeat.unwrap_or(DEFAULT_NATS_HEARTBEAT);
    let mut next_ping = Instant::now() + every.mul_f64(phase);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                conn.close().await;
                return Ok(());
            }
            read = conn.idle_until(next_ping) => {
                read?;
                conn.ping().await?;
                pings.fetch_add(1, Ordering::Relaxed);
                next_ping += every;
            }
        }
    }
}

/// One connection's credentials.
enum Credentials {
    Peerline(String, SavedUser),
    Nats(Option<Arc<str>>),
}

/// A logged-in connection of either kind.
enum Held {
    Peerline(Session),
    Nats(nats::NatsConnection),
}

async fn log_in(dialer: &Dialer, n: usize, credentials: Credentials) -> Result<Held, Failure> {
    match credentials {
        Credentials::Peerline(username, user) => {
            let key = user
                .signing_key()
                .map_err(|e| Failure { kind: "state".into(), detail: e.to_string() })?;
            let mut session = dialer.connect(n).await?;
            session.login(&username, &key, LoginSecret::Token(&user.token)).await?;
            Ok(Held::Peerline(session))
        }
        Credentials::Nats(token) => {
            let (ws, _) = dialer.open(n, NATS_LOGIN_TIMEOUT).await?;
            let conn =
                nats::NatsConnection::handshake(ws, token.as_deref(), NATS_LOGIN_TIMEOUT).await?;
            Ok(Held::Nats(conn))
        }
    }
}

/// The whole NATS handshake gets what a Peerline login gets (connect, TLS, upgrade, `hello`
/// within 10 s, then the login request).
const NATS_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

async fn connection(
    dialer: Arc<Dialer>,
    n: usize,
    credentials: Credentials,
    heartbeat: Option<Duration>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let session = log_in(&dialer, n, credentials).await;
    // Free what only the login needed before idling for minutes.
    drop(dialer);
    let session = match session {
        Ok(session) => {
            shared
                .latency
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .record(started.elapsed());
            shared.connected.fetch_add(1, Ordering::Relaxed);
            shared.alive.fetch_add(1, Ordering::Relaxed);
            shared.finished.fetch_add(1, Ordering::Relaxed);
            session
        }
        Err(failure) => {
            add(&shared.failures, &failure);
            shared.finished.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let phase = (n % 1000) as f64 / 1000.0;
    let result = match session {
        Held::Peerline(session) => idle(session, stop, phase, heartbeat, &shared.pings).await,
        Held::Nats(conn) => idle_nats(conn, stop, phase, heartbeat, &shared.pings).await,
    };
    shared.alive.fetch_sub(1, Ordering::Relaxed);
    if let Err(failure) = result {
        add(&shared.dropped, &failure);
    }
}

fn read_rss(pid: Option<u32>) -> anyhow::Result<Option<u64>> {
    pid.map(rss_bytes).transpose()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `hold`.
pub async fn run(dialer: Arc<Dialer>, plan: HoldPlan) -> anyhow::Result<HoldReport> {
    let count = plan.who.count();
    let command = match plan.who {
        Who::Peerline(_) => "hold",
        Who::Nats { .. } => "hold-nats",
    };
    let credentials: Box<dyn Iterator<Item = Credentials> + Send> = match plan.who {
        Who::Peerline(users) => {
            Box::new(users.into_iter().map(|(name, user)| Credentials::Peerline(name, user)))
        }
        Who::Nats { count, token } => {
            let token: Option<Arc<str>> = token.map(Into::into);
            Box::new((0..count).map(move |_| Credentials::Nats(token.clone())))
        }
    };
    let rss_before = read_rss(plan.supernode_pid)?;
    if let Some(b) = rss_before {
        eprintln!("server RSS before: {:.1} MiB", mib(b));
    }
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    // Ramp: connection n starts at n / rate seconds.
    eprintln!("connecting {count} users at {} per second…", plan.ramp_per_second);
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / plan.ramp_per_second);
    let mut last_report = Instant::now();
    for (n, credentials) in credentials.enumerate() {
        tokio::time::sleep_until(started + interval.mul_f64(n as f64)).await;
        tasks.spawn(connection(
            dialer.clone(),
            n,
            credentials,
            plan.heartbeat,
            shared.clone(),
            stop_rx.clone(),
        ));
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            eprintln!(
                "  {:.0} s: started {}, logged in {}, failed {}",
                started.elapsed().as_secs_f64(),
                n + 1,
                shared.connected.load(Ordering::Relaxed),
                shared.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).total()
            );
        }
    }
    drop(dialer);
    // Every attempt ends within its connect and request timeouts.
    let last_attempt = Instant::now() + Duration::from_secs(60);
    while shared.finished.load(Ordering::Relaxed) < count && Instant::now() < last_attempt {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_seconds = started.elapsed().as_secs_f64();
    let connected = shared.connected.load(Ordering::Relaxed);
    let failures =
        shared.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    eprintln!("logged in {connected} of {count} in {ramp_seconds:.1} s; failed: {}", failures);

    tokio::time::sleep(SETTLE).await;
    let rss_connected = read_rss(plan.supernode_pid)?;
    if let Some(b) = rss_connected {
        eprintln!("server RSS with {connected} connected: {:.1} MiB", mib(b));
    }

    // Hold.
    let cpu_at_hold_start = plan.supernode_pid.map(cpu_seconds).transpose()?;
    let hold_started = Instant::now();
    let hold_end = hold_started + plan.hold;
    while Instant::now() < hold_end {
        tokio::time::sleep_until(hold_end.min(Instant::now() + PROGRESS_EVERY)).await;
        let rss = read_rss(plan.supernode_pid)
            .ok()
            .flatten()
            .map(|b| format!(", server RSS {:.1} MiB", mib(b)))
            .unwrap_or_default();
        eprintln!(
            "  holding {:.0}/{:.0} s: {} open, {} pings sent{rss}",
            hold_started.elapsed().as_secs_f64(),
            plan.hold.as_secs_f64(),
            shared.alive.load(Ordering::Relaxed),
            shared.pings.load(Ordering::Relaxed),
        );
    }
    let hold_seconds = hold_started.elapsed().as_secs_f64();
    let alive_at_end = shared.alive.load(Ordering::Relaxed);
    let rss_end = read_rss(plan.supernode_pid)?;
    let cpu_during_hold = match (plan.supernode_pid, cpu_at_hold_start) {
        (Some(pid), Some(start)) => cpu_seconds(pid)? - start,
        _ => 0.0,
    };

    // Close everything, politely and within bounds.
    eprintln!("closing {alive_at_end} connections…");
    let _ = stop_tx.send(true);
    let closing = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
        tasks.abort_all();
    }

    let memory = match (rss_before, rss_connected, rss_end) {
        (Some(before), Some(connected_rss), Some(end)) => Some(Memory {
            rss_before_bytes: before,
            rss_connected_bytes: connected_rss,
            rss_end_bytes: end,
            bytes_per_user_connected: (connected > 0)
                .then(|| (connected_rss as f64 - before as f64) / connected as f64),
            bytes_per_user_end: (alive_at_end > 0)
                .then(|| (end as f64 - before as f64) / alive_at_end as f64),
            cpu_seconds_during_hold: cpu_during_hold,
        }),
        _ => None,
    };
    let dropped = shared.dropped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let login_latency =
        shared.latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner).summary();
    Ok(HoldReport {
        command,
        users: count,
        connected,
        failures,
        ramp_seconds,
        login_latency,
        hold_seconds,
        alive_at_end,
        dropped,
        pings_sent: shared.pings.load(Ordering::Relaxed),
        memory,
    })
}

impl std::fmt::Display for HoldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = if self.command == "hold" { "supernode" } else { "nats-server" };
        writeln!(
            f,
            "connected {} of {} users in {:.1} s; failed: {}",
            self.connected, self.users, self.ramp_seconds, self.failures
        )?;
        if let Some(l) = &self.login_latency {
            writeln!(f, "  connect+login latency: {l}")?;
        }
        writeln!(
            f,
            "held {:.0} s: {} still open at the end, {} pings sent; dropped: {}",
            self.hold_seconds, self.alive_at_end, self.pings_sent, self.dropped
        )?;
        match &self.memory {
            Some(m) => {
                let per =
                    |b: Option<f64>| b.map_or("-".to_owned(), |b| format!("{:.1} KiB", b / 1024.0));
                write!(
                    f,
                    "{server} RSS: {:.1} MiB before, {:.1} MiB connected, {:.1} MiB at the end \
                     → {} per connected user ({} at the end)\n\
                     {server} CPU during the hold: {:.1} s in {:.0} s ({:.1} % of one core)",
                    mib(m.rss_before_bytes),
                    mib(m.rss_connected_bytes),
                    mib(m.rss_end_bytes),
                    per(m.bytes_per_user_connected),
                    per(m.bytes_per_user_end),
                    m.cpu_seconds_during_hold,
                    self.hold_seconds,
                    100.0 * m.cpu_seconds_during_hold / self.hold_seconds.max(1e-9)
                )
            }
            None => {
                let flag = if self.command == "hold" { "--supernode-pid" } else { "--server-pid" };
                write!(f, "{server} memory not measured (give {flag})")
            }
        }
    }
}
