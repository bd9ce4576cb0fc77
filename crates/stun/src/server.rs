//! The tokio driver: a UDP socket around a [`Responder`], with `metrics` counters and shutdown.
//!
//! The loop is `recv_from` → [`Responder::handle`] → `send_to`, one datagram at a time, with one
//! reused buffer each way. Socket errors never end it: on Linux an ICMP "port unreachable" for a
//! response we sent comes back as `ECONNREFUSED` from a later `recv_from`, and an attacker who
//! forges sources can cause as many of those as they like.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metrics::Counter;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::{Outcome, Responder, ResponderConfig, Stats};

/// Counter, label `result` (see [`Outcome::label`]): datagrams received on the STUN port, by
/// what became of them.
pub const REQUESTS_TOTAL: &str = "peerline_stun_requests_total";
/// Counter, label `op` (`recv` or `send`): socket errors on the STUN port (mostly ICMP errors
/// for earlier responses); none of them stops the responder.
pub const SOCKET_ERRORS_TOTAL: &str = "peerline_stun_socket_errors_total";

/// Receive buffer size: larger than any accepted request, so that a longer datagram is seen as
/// oversize instead of being silently cut to an acceptable length.
const RECV_BUFFER_LEN: usize = 2048;

/// After this many socket errors in a row, each further one waits [`ERROR_BACKOFF`] so that a
/// socket stuck in an error state cannot spin a core.
const ERROR_STREAK_BEFORE_BACKOFF: u32 = 100;
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// A STUN responder bound to a UDP socket.
#[derive(Debug)]
pub struct StunServer {
    socket: UdpSocket,
    responder: Responder,
}

impl StunServer {
    /// Binds `addr` (for example `0.0.0.0:3478`, or `[::]:3478` for IPv6 and, on a dual-stack
    /// host, IPv4 too) and builds the responder.
    pub async fn bind(addr: SocketAddr, config: &ResponderConfig) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(Self::from_socket(socket, config))
    }

    /// Wraps a socket that is already bound.
    pub fn from_socket(socket: UdpSocket, config: &ResponderConfig) -> Self {
        Self { socket, responder: Responder::new(config) }
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Answers Binding requests until `shutdown` resolves, then returns the counters.
    ///
    /// Install the `metrics` recorder before calling this: the counters are registered once, at
    /// the start, so that the per-packet cost is one atomic add.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stats {
        let Self { socket, mut responder } = self;
        let counters = Counters::register();
        let local = socket.local_addr().ok();
        info!(addr = ?local, "STUN responder listening");
        tokio::pin!(shutdown);
        let mut packet = vec![0u8; RECV_BUFFER_LEN];
        let mut response = Vec::with_capacity(RECV_BUFFER_LEN);
        let mut errors = ErrorStreak::default();
        loop {
            let received = tokio::select! {
                biased;
                () = &mut shutdown => break,
                received = socket.recv_from(&mut packet) => received,
            };
            let (len, source) = match received {
                Ok(ok) => {
                    errors.reset();
                    ok
                }
                Err(error) => {
                    counters.recv_errors.increment(1);
                    errors.record("recv", &error).await;
                    continue;
                }
            };
            let datagram = packet.get(..len).unwrap_or(&[]);
            let outcome = responder.handle(datagram, source, Instant::now(), &mut response);
            counters.record(outcome);
            if outcome.has_response()
                && let Err(error) = socket.send_to(&response, source).await
            {
                counters.send_errors.increment(1);
                errors.record("send", &error).await;
            }
        }
        let stats = *responder.stats();
        info!(answered = stats.answered, dropped = stats.dropped(), "STUN responder stopped");
        stats
    }
}

/// Serves STUN Binding requests on `socket` with the default [`ResponderConfig`] until `shutdown`
/// resolves; returns the counters. Same as [`StunServer::from_socket`] then [`StunServer::run`].
pub async fn serve(socket: UdpSocket, shutdown: impl Future<Output = ()>) -> Stats {
    StunServer::from_socket(socket, &ResponderConfig::default()).run(shutdown).await
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

    fn record(&self, outcome: Outcome) {
        if let Some(counter) = self.by_outcome.get(outcome.index()) {
            counter.increment(1);
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

    async fn record(&mut self, op: &'static str, error: &io::Error) {
        self.count = self.count.saturating_add(1);
        self.total = self.total.saturating_add(1);
        if self.total.is_power_of_two() {
            debug!(op, %error, total = self.total, "STUN socket error (ignored)");
        }
        if self.count == ERROR_STREAK_BEFORE_BACKOFF {
            warn!(op, %error, "STUN socket keeps failing; slowing down");
        }
        if self.count >= ERROR_STREAK_BEFORE_BACKOFF {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}
