//! What goes into and comes out of [`CallMedia`](crate::CallMedia): datagrams and timeouts in
//! ([`Input`]), datagrams, timeouts and events out ([`Output`], [`MediaEvent`]), and its counters
//! ([`MediaStats`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::candidate::SelectedPath;

/// Input to [`CallMedia::handle_input`].
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A datagram arrived on a local socket.
    Receive {
        /// Who sent it.
        source: SocketAddr,
        /// The local address it arrived at: the socket's address (or a relayed address).
        destination: SocketAddr,
        /// The datagram.
        bytes: &'a [u8],
    },
    /// The time of the last [`Output::Timeout`] has come.
    Timeout,
}

/// Output of [`CallMedia::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this datagram from the socket at `source` to `destination`.
    Transmit {
        /// The local address to send from (see [`LocalCandidate::Relay`] for relayed ones).
        source: SocketAddr,
        /// Where to send it.
        destination: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Nothing more to do now: call [`CallMedia::handle_input`] with [`Input::Timeout`] at this
    /// time, or earlier when a packet arrives.
    Timeout(Instant),
    /// Something happened to the call.
    Event(MediaEvent),
}

/// Something that happened to the media of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// ICE found a path and DTLS-SRTP is established: audio can flow.
    Connected,
    /// The candidate pair that carries the call; repeated if ICE switches pairs.
    SelectedPath(SelectedPath),
    /// ICE lost the path (consent checks failed, RFC 7675). It may come back.
    Disconnected,
    /// ICE found a path again after [`MediaEvent::Disconnected`].
    Reconnected,
    /// The first audio packet from the peer arrived.
    FirstAudio,
    /// Packets arrive from the peer on a connected call. Reported by the driver
    /// ([`run_media`](crate::run_media)), at most every 250 ms, so that the call's policy can
    /// tell a stalled path (nothing arrives) without hearing of every packet.
    Received,
    /// The peer closed the DTLS session, or the session failed: the call's media is over.
    Closed,
}

/// Counters of a call's media, from [`CallMedia::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// RTP audio packets sent.
    pub packets_sent: u64,
    /// Frames not sent because DTX found them silent.
    pub frames_dtx: u64,
    /// RTP audio packets received.
    pub packets_received: u64,
    /// RTP audio packets that never arrived (from gaps in sequence numbers).
    pub packets_lost: u64,
    /// Packets that arrived after their playout time and were discarded.
    pub packets_late: u64,
    /// Packets discarded to keep the delay bounded (backlog or full buffer).
    pub packets_discarded: u64,
    /// Packets that were not valid Opus.
    pub packets_malformed: u64,
    /// 20 ms frames returned by [`CallMedia::pull_pcm`].
    pub frames_played: u64,
    /// Pieces of audio (at most 20 ms each) synthesized by packet-loss concealment or FEC
    /// because no packet was there to play: lost, late, or not sent while the peer's DTX
    /// skipped silence. `packets_lost` tells real loss apart.
    pub frames_concealed: u64,
    /// Of `frames_concealed`, those decoded from the next packet's in-band FEC data (libopus
    /// falls back to concealment when that packet carries none).
    pub frames_fec: u64,
    /// The jitter buffer's current playout delay: the configured one, plus what late packets
    /// added (up to 200 ms).
    pub jitter_delay: Duration,
}
