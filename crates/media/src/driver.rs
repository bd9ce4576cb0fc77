//! The thin tokio driver around [`CallMedia`]: it moves datagrams between UDP sockets and the
//! core, fires its timers, and every 20 ms moves one frame from the [`AudioSource`] into the call
//! and one frame from the call into the [`AudioSink`].
//!
//! All protocol logic stays in the core, and every policy decision (when to give up on a call
//! that does not connect, on a lost path, when to restart ICE) is the call core's
//! (`peerline-call-core`); this file only waits and reports. Sockets are abstracted by
//! [`PacketSocket`] so tests can put a [`LossySocket`](crate::lossy::LossySocket) in between, and
//! a TURN allocation is one more implementation (in the client crate).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::FRAME_DURATION;
use crate::audio::{AudioSink, AudioSource, SILENT_FRAME};
use crate::call::CallMedia;
use crate::candidate::{LocalCandidate, SelectedPath};
use crate::error::MediaError;
use crate::interface::{Input, MediaEvent, MediaStats, Output};

/// Largest datagram read from a socket. WebRTC keeps packets under about 1200 bytes.
const MAX_DATAGRAM: usize = 2048;

/// Datagrams queued from the sockets to the core before the readers wait.
const RECEIVE_QUEUE: usize = 256;

/// The longest the driver sleeps without looking at the core, even if it asks for longer.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// A datagram socket the driver can use: a UDP socket, or a wrapper around one.
pub trait PacketSocket: Send + Sync + 'static {
    /// The address the socket is bound to. It must be the address announced in the call's
    /// candidates (bind to one interface, not `0.0.0.0`).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Sends one datagram.
    fn send_to(
        &self,
        buf: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Receives one datagram.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr)>> + Send;
}

impl PacketSocket for UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, target).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf).await
    }
}

/// [`MediaEvent::Received`] is reported at most this often.
const RECEIVED_EVERY: Duration = Duration::from_millis(250);

/// Commands from signaling to a running call's media (ICE restart, fresh candidates). Each
/// carries where to send its result.
#[derive(Debug)]
pub enum Control<S> {
    /// Start an ICE restart ([`CallMedia::restart_ice`], offerer); replies with the offer.
    RestartIce(oneshot::Sender<Result<String, MediaError>>),
    /// The peer's restart offer ([`CallMedia::accept_restart_offer`]); replies with the answer.
    AcceptRestartOffer(String, oneshot::Sender<Result<String, MediaError>>),
    /// The answer to our restart offer ([`CallMedia::accept_restart_answer`]).
    AcceptRestartAnswer(String, oneshot::Sender<Result<(), MediaError>>),
    /// Freshly gathered sockets and their candidates; replies with the `candidate:` lines to
    /// trickle to the peer.
    AddSockets(Vec<S>, Vec<LocalCandidate>, oneshot::Sender<Result<Vec<String>, MediaError>>),
}

/// Options of [`run_media`].
#[derive(Debug)]
pub struct RunOptions<S = UdpSocket> {
    /// Candidates the peer trickles after the media started (`candidate:…` lines from
    /// signaling); closing the channel is fine.
    pub remote_candidates: Option<mpsc::Receiver<String>>,
    /// Where to send the call's events as they happen (for progress output). Events are dropped
    /// if the channel is full.
    pub events: Option<mpsc::Sender<MediaEvent>>,
    /// Keep running after the peer closed the media session (default: return).
    pub keep_running_after_close: bool,
    /// Commands from signaling (ICE restart); closing the channel is fine.
    pub control: Option<mpsc::Receiver<Control<S>>>,
}

impl<S> Default for RunOptions<S> {
    fn default() -> Self {
        RunOptions {
            remote_candidates: None,
            events: None,
            keep_running_after_close: false,
            control: None,
        }
    }
}

/// Why [`run_media`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The `stop` future completed (hang-up, duration reached, Ctrl-C).
    Stopped,
    /// The peer closed the media session, or it failed.
    PeerClosed,
    /// No path to the peer was found in time (decided by the call's policy, which stops the
    /// media; [`run_media`] itself never returns it).
    ConnectTimeout,
    /// The path stayed lost too long (decided by the call's policy, like `ConnectTimeout`).
    PathLost,
}

/// What a call's media did, from [`run_media`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallStats {
    /// Counters of the core.
    pub media: MediaStats,
    /// From the start of `run_media` to ICE and DTLS being up.
    pub time_to_connected: Option<Duration>,
    /// From the start of `run_media` to the first audio packet from the peer.
    pub time_to_first_audio: Option<Duration>,
    /// The candidate pair that carried the call (the last one, if ICE switched).
    pub selected_path: Option<SelectedPath>,
    /// How long `run_media` ran.
    pub duration: Duration,
    /// Why it returned.
    pub end: EndReason,
}

struct Datagram {
    source: SocketAddr,
    destination: SocketAddr,
    bytes: Vec<u8>,
}

/// Runs the media of a call until `stop` completes or the peer closes it.
///
/// `sockets` are the local sockets named by the call's local candidates. Every 20 ms one frame
/// from `source` is sent (silence once it has ended) and the next received frame, if playout has
/// started, goes to `sink`. On return the call's media is closed (DTLS close_notify sent) and the
/// sink finished.
pub async fn run_media<S, Src, Snk, Stop>(
    sockets: Vec<S>,
    mut media: CallMedia,
    mut source: Src,
    mut sink: Snk,
    stop: Stop,
    options: RunOptions<S>,
) -> Result<CallStats, MediaError>
where
    S: PacketSocket,
    Src: AudioSource,
    Snk: AudioSink,
    Stop: Future<Output = ()>,
{
    let span = info_span!("media", role = ?media.role());
    let started = now();
    let mut readers = JoinSet::new();
    let (to_core, mut from_sockets) = mpsc::channel::<Datagram>(RECEIVE_QUEUE);
    let mut routes: Vec<(SocketAddr, Arc<S>)> = Vec::with_capacity(sockets.len());
    for socket in sockets {
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        routes.push((local, socket.clone()));
        readers.spawn(read_socket(socket, local, to_core.clone()).instrument(span.clone()));
    }
    // Kept for sockets added by a later `Control::AddSockets`.
    let to_core_for_new = to_core;

    let mut progress = Progress {
        stats: CallStats {
            media: MediaStats::default(),
            time_to_connected: None,
            time_to_first_audio: None,
            selected_path: None,
            duration: Duration::ZERO,
            end: EndReason::Stopped,
        },
        started,
        events: options.events.clone(),
    };
    // When `MediaEvent::Received` was last reported.
    let mut reported_received: Option<Instant> = None;
    let mut control = options.control;
    let mut ticker = tokio::time::interval(FRAME_DURATION);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    tokio::pin!(stop);

    let mut remote_candidates = options.remote_candidates;
    let result: Result<(), MediaError> = async {
        loop {
            let wake_at = flush(&mut media, &routes, &mut progress).await;
            if !media.is_alive() && !options.keep_running_after_close {
                progress.stats.end = EndReason::PeerClosed;
                return Ok(());
            }
            let sleep_until = wake_at.min(now() + MAX_SLEEP);
            tokio::select! {
                biased;
                () = &mut stop => {
                    media.close();
                    flush(&mut media, &routes, &mut progress).await;
                    return Ok(());
                }
                Some(line) = next_candidate(&mut remote_candidates) => {
                    if let Err(e) = media.add_remote_candidate(&line) {
                        warn!(error = %e, "ignoring a bad remote candidate");
                    }
                }
                Some(command) = next_control(&mut control) => {
                    match command {
                        Control::RestartIce(reply) => {
                            let _ = reply.send(media.restart_ice());
                        }
                        Control::AcceptRestartOffer(sdp, reply) => {
                            let _ = reply.send(media.accept_restart_offer(&sdp));
                        }
                        Control::AcceptRestartAnswer(sdp, reply) => {
                            let _ = reply.send(media.accept_restart_answer(&sdp));
                        }
                        Control::AddSockets(sockets, candidates, reply) => {
                            for socket in sockets {
                                let Ok(local) = socket.local_addr() else {
                                    warn!("skipping a new socket without a local address");
                                    continue;
                                };
                                let socket = Arc::new(socket);
                                routes.push((local, socket.clone()));
                                let reader = read_socket(socket, local, to_core_for_new.clone());
                                readers.spawn(reader.instrument(span.clone()));
                            }
                            let mut lines = Vec::new();
                            let mut failed = None;
                            for candidate in candidates {
                                match media.add_local_candidate(candidate) {
                                    Ok(Some(line)) => lines.push(line),
                                    Ok(None) => {}
                                    Err(e) => failed = Some(e),
                                }
                            }
                            let _ = reply.send(match failed {
                                Some(e) if lines.is_empty() => Err(e),
                                _ => Ok(lines),
                            });
                        }
                    }
                }
                Some(d) = from_sockets.recv() => {
                    let at = now();
                    if media.is_connected()
                        && reported_received.is_none_or(|t| at.saturating_duration_since(t) >= RECEIVED_EVERY)
                    {
                        reported_received = Some(at);
                        emit(&progress.events, MediaEvent::Received);
                    }
                    let input = Input::Receive {
                        source: d.source,
                        destination: d.destination,
                        bytes: &d.bytes,
                    };
                    if let Err(e) = media.handle_input(now(), input) {
                        debug!(error = %e, "packet refused");
                    }
                }
                _ = ticker.tick() => {
                    let at = now();
                    let frame = source.next_frame().unwrap_or(SILENT_FRAME);
                    if let Err(e) = media.push_pcm(at, &frame) {
                        warn!(error = %e, "could not send audio");
                    }
                    if let Some(frame) = media.pull_pcm(at) {
                        sink.write_frame(&frame)?;
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(sleep_until)) => {
                    if let Err(e) = media.handle_input(now(), Input::Timeout) {
                        debug!(error = %e, "timeout handling failed");
                    }
                }
            }
        }
    }
    .instrument(span.clone())
    .await;

    readers.abort_all();
    let finished = sink.finish();
    result?;
    finished?;
    let mut stats = progress.stats;
    stats.media = media.stats();
    stats.duration = now().saturating_duration_since(started);
    span.in_scope(|| info!(stats = ?stats, "media ended"));
    Ok(stats)
}

/// What the driver learned from the core's events so far.
struct Progress {
    stats: CallStats,
    started: Instant,
    events: Option<mpsc::Sender<MediaEvent>>,
}

/// Sends what the core has queued, records its events, and returns when it next wants a
/// timeout.
async fn flush<S: PacketSocket>(
    media: &mut CallMedia,
    routes: &[(SocketAddr, Arc<S>)],
    progress: &mut Progress,
) -> Instant {
    loop {
        match media.poll_output() {
            Output::Timeout(at) => return at,
            Output::Transmit { source, destination, bytes } => {
                match routes.iter().find(|(local, _)| *local == source) {
                    Some((_, socket)) => {
                        if let Err(e) = socket.send_to(&bytes, destination).await {
                            debug!(error = %e, "send failed");
                        }
                    }
                    // A candidate whose socket was never handed over (or was dropped).
                    None => debug!(%source, "no socket for this source address"),
                }
            }
            Output::Event(event) => {
                let elapsed = now().saturating_duration_since(progress.started);
                let stats = &mut progress.stats;
                match &event {
                    MediaEvent::Connected => {
                        stats.time_to_connected.get_or_insert(elapsed);
                        info!(?elapsed, "media connected");
                    }
                    MediaEvent::FirstAudio => {
                        stats.time_to_first_audio.get_or_insert(elapsed);
                    }
                    MediaEvent::SelectedPath(path) => {
                        stats.selected_path = Some(*path);
                        info!(%path, "selected path");
                    }
                    MediaEvent::Disconnected => warn!("media path lost"),
                    MediaEvent::Reconnected => info!("media path back"),
                    _ => debug!(?event, "media event"),
                }
                if let Some(events) = &progress.events {
                    let _ = events.try_send(event);
                }
            }
        }
    }
}

async fn read_socket<S: PacketSocket>(
    socket: Arc<S>,
    local: SocketAddr,
    to_core: mpsc::Sender<Datagram>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, source)) => {
                let bytes = buf.get(..n).unwrap_or_default().to_vec();
                if to_core.send(Datagram { source, destination: local, bytes }).await.is_err() {
                    return;
                }
            }
            // Linux reports ICMP port-unreachable for an earlier send as an error here; the
            // socket is still fine.
            Err(e) => {
                debug!(error = %e, "receive failed");
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The next command from signaling; never resolves without a channel or once it closed.
async fn next_control<S>(channel: &mut Option<mpsc::Receiver<Control<S>>>) -> Option<Control<S>> {
    match channel {
        Some(rx) => match rx.recv().await {
            Some(command) => Some(command),
            None => {
                *channel = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

fn emit(events: &Option<mpsc::Sender<MediaEvent>>, event: MediaEvent) {
    if let Some(events) = events {
        let _ = events.try_send(event);
    }
}

/// The next trickled candidate; never resolves without a channel, `None` once it closed.
async fn next_candidate(channel: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match channel {
        Some(rx) => {
            let line = rx.recv().await;
            if line.is_none() {
                *channel = None;
            }
            line
        }
        None => std::future::pending().await,
    }
}

/// The current time, on tokio's clock (so `tokio::time::pause` works in tests).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
