//! The driver: a UDP socket around a [`Responder`], with `metrics` counters and shutdown.
//!
//! The socket is served by a thread of its own, in batches: one `recvmmsg` takes up to 64
//! datagrams, the responder answers each into a reused buffer, one `sendmmsg` sends the answers
//! (see `batch.rs`). A dedicated thread rather than a tokio task because a busy responder never
//! waits: it would hold a runtime worker anyway, and the kernel's message headers that make
//! batching cheap are not `Send`. [`StunServer::run`] stays an async function that ends when the
//! thread has stopped, so a supernode runs it like any other task.
//!
//! Socket errors never end the loop: on Linux an ICMP "port unreachable" for a response we sent
//! comes back as `ECONNREFUSED` from a later receive, and an attacker who forges sources can
//! cause as many of those as they like.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::Counter;
use tokio::net::UdpSocket;
use tracing::{debug, error, info, warn};

use crate::batch::{Batch, SLOT_LEN};
use crate::{Outcome, Responder, ResponderConfig, Stats};

/// Counter, label `result` (see [`Outcome::label`]): datagrams received on the STUN port, by
/// what became of them.
pub const REQUESTS_TOTAL: &str = "peerline_stun_requests_total";
/// Counter, label `op` (`recv` or `send`): socket errors on the STUN port (mostly ICMP errors
/// for earlier responses); none of them stops the responder.
pub const SOCKET_ERRORS_TOTAL: &str = "peerline_stun_socket_errors_total";

/// After this many socket errors in a row, each further one waits [`ERROR_BACKOFF`] so that a
/// socket stuck in an error state cannot spin a core.
const ERROR_STREAK_BEFORE_BACKOFF: u32 = 100;
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// How long the serving thread blocks waiting for a datagram before it looks at the stop flag:
/// the most a shutdown waits for an idle responder.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Receive buffer asked of the kernel (capped by `net.core.rmem_max`): a burst of small
/// datagrams is held while the thread answers the previous batch, instead of being dropped at
/// the default of about 200 KiB (a few hundred datagrams).
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// A STUN responder bound to a UDP socket.
#[derive(Debug)]
pub struct StunServer {
    socket: StdUdpSocket,
    responder: Responder,
}

impl StunServer {
    /// Binds `addr` (for example `0.0.0.0:3478`, or `[::]:3478` for IPv6 and, on a dual-stack
    /// host, IPv4 too) and builds the responder.
    pub async fn bind(addr: SocketAddr, config: &ResponderConfig) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        Self::from_socket(socket, config)
    }

    /// Wraps a socket that is already bound (it leaves the tokio reactor: a thread serves it).
    pub fn from_socket(socket: UdpSocket, config: &ResponderConfig) -> io::Result<Self> {
        let socket = socket.into_std()?;
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(STOP_CHECK_INTERVAL))?;
        // Best effort: the kernel caps it at net.core.rmem_max, and a smaller buffer only
        // means more drops under a flood.
        let _ = nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::RcvBuf,
            &RECEIVE_BUFFER_BYTES,
        );
        Ok(Self { socket, responder: Responder::new(config) })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Answers Binding requests until `shutdown` resolves, then returns the counters.
    ///
    /// Install the `metrics` recorder before calling this: the counters are registered once, at
    /// the start, so that the per-batch cost is a few atomic adds. Dropping the future stops the
    /// serving thread too.
    ///
    /// # Panics
    /// If the serving thread cannot be started or panics: the responder is gone, and a caller
    /// that treats the end of this future as a failure (as the supernode does) learns it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stats {
        let Self { socket, responder } = self;
        let counters = Counters::register();
        match socket.local_addr() {
            Ok(addr) => info!(%addr, "STUN responder listening"),
            Err(error) => info!(%error, "STUN responder listening (address unknown)"),
        }
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let (done, stopped) = tokio::sync::oneshot::channel();
        let flag = stop.0.clone();
        let spawned = std::thread::Builder::new().name("stun".to_owned()).spawn(move || {
            let stats = serve_blocking(&socket, responder, &counters, &flag);
            let _ = done.send(stats);
        });
        if let Err(error) = spawned {
            error!(%error, "cannot start the STUN responder thread");
            panic!("cannot start the STUN responder thread: {error}");
        }
        tokio::pin!(stopped);
        let stats = tokio::select! {
            biased;
            result = &mut stopped => result,
            () = shutdown => {
                stop.0.store(true, Ordering::Relaxed);
                stopped.await
            }
        };
        match stats {
            Ok(stats) => {
                info!(
                    answered = stats.answered,
                    dropped = stats.dropped(),
                    "STUN responder stopped"
                );
                stats
            }
            Err(_) => panic!("the STUN responder thread panicked"),
        }
    }
}

/// Sets the stop flag when the future of [`StunServer::run`] ends or is dropped, so that the
/// serving thread never outlives it.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The serving loop: receive a batch, answer it, send the answers, until `stop` is set.
fn serve_blocking(
    socket: &StdUdpSocket,
    mut responder: Responder,
    counters: &Counters,
    stop: &AtomicBool,
) -> Stats {
    let fd = socket.as_raw_fd();
    let mut batch = Batch::new(SLOT_LEN);
    let mut errors = ErrorStreak::default();
    let mut outcomes = [0u64; Outcome::ALL.len()];
    while !stop.load(Ordering::Relaxed) {
        let received = match batch.receive(fd) {
            Ok(received) => {
                errors.reset();
                received
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue; // the read timeout: look at the stop flag
            }
            Err(error) => {
                counters.recv_errors.increment(1);
                errors.record("recv", &error);
                continue;
            }
        };
        // One clock reading per batch: the datagrams of a batch arrived within microseconds.
        let now = Instant::now();
        if received > 0 {
            batch.answer_each(|datagram, source, response| {
                let outcome = responder.handle(datagram, source, now, response);
                if let Some(count) = outcomes.get_mut(outcome.index()) {
                    *count += 1;
                }
                outcome.has_response()
            });
        }
        batch.send(fd, |error| {
            counters.send_errors.increment(1);
            errors.record("send", &error);
        });
        counters.record(&mut outcomes);
    }
    *responder.stats()
}

/// Serves STUN Binding requests on `socket` with the default [`ResponderConfig`] until `shutdown`
/// resolves; returns the counters. Same as [`StunServer::from_socket`] then [`StunServer::run`].
pub async fn serve(socket: UdpSocket, shutdown: impl Future<Output = ()>) -> io::Result<Stats> {
    Ok(StunServer::from_socket(socket, &ResponderConfig::default())?.run(shutdown).await)
}

/// The metric handles, registered once.
struct Counters {
    by_outcome: Vec<Counter>,
    recv_errors: Counter,
    send_errors: Counter,
}

impl Counters {
    fn register() -> Self {
        metrics::describe_counter!(
            REQUESTS_TOTAL,
            "Datagrams received on the STUN port, by what became of them"
        );
        metrics::describe_counter!(SOCKET_ERRORS_TOTAL, "Socket errors on the STUN port");
        Self {
            by_outcome: Outcome::ALL
                .iter()
                .map(|outcome| metrics::counter!(REQUESTS_TOTAL, "result" => outcome.label()))
                .collect(),
            recv_errors: metrics::counter!(SOCKET_ERRORS_TOTAL, "op" => "recv"),
            send_errors: metrics::counter!(SOCKET_ERRORS_TOTAL, "op" => "send"),
        }
    }

    /// Adds a batch's `counts` (indexed like [`Outcome::ALL`]) and zeroes them.
    fn record(&self, counts: &mut [u64; Outcome::ALL.len()]) {
        for (counter, count) in self.by_outcome.iter().zip(counts.iter_mut()) {
            if *count > 0 {
                counter.increment(*count);
                *count = 0;
            }
        }
    }
}

/// Socket errors: logged at debug level for the 1st, 2nd, 4th, 8th... only (never once per
/// packet, whatever an attacker does), and slowed down when they come without a break.
#[derive(Default)]
struct ErrorStreak {
    /// Errors in a row, since the last successful receive.
    count: u32,
    /// Errors since start.
    total: u64,
}

impl ErrorStreak {
    fn reset(&mut self) {
        self.count = 0;
    }

    fn record(&mut self, op: &'static str, error: &io::Error) {
        self.count = self.count.saturating_add(1);
        self.total = self.total.saturating_add(1);
        if self.total.is_power_of_two() {
            debug!(op, %error, total = self.total, "STUN socket error (ignored)");
        }
        if self.count == ERROR_STREAK_BEFORE_BACKOFF {
            warn!(op, %error, "STUN socket keeps failing; slowing down");
        }
        if self.count >= ERROR_STREAK_BEFORE_BACKOFF {
            std::thread::sleep(ERROR_BACKOFF);
        }
    }
}
