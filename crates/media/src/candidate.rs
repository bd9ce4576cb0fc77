//! ICE candidates as the rest of Peerline sees them: what a client gathers ([`LocalCandidate`])
//! and which path a call ended up on ([`SelectedPath`]).

use std::fmt;
use std::net::SocketAddr;

use str0m::{Candidate, CandidateKind};

use crate::error::MediaError;

/// A local ICE candidate gathered by the caller (RFC 8445 §5.1.1).
///
/// Every variant names the address of the socket that sends and receives for it, so the driver
/// knows where to route [`Output::Transmit`](crate::Output::Transmit) packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalCandidate {
    /// A UDP socket bound to one interface address (never `0.0.0.0`).
    Host(SocketAddr),
    /// The public address a STUN server saw for the socket bound at `base`.
    ///
    /// Per RFC 8445 §6.1.2.4 the agent sends from `base`; this candidate only tells the peer
    /// where to send.
    ServerReflexive {
        /// The mapped address from the STUN Binding response (XOR-MAPPED-ADDRESS).
        addr: SocketAddr,
        /// The local socket the Binding request was sent from.
        base: SocketAddr,
    },
    /// An address allocated on a TURN server (RFC 8656).
    ///
    /// Packets [`CallMedia`](crate::CallMedia) emits with `source == addr` must be sent through
    /// the TURN allocation, and packets that arrive through it must be handed in with
    /// `destination == addr`.
    Relay {
        /// The relayed transport address allocated by the TURN server.
        addr: SocketAddr,
        /// The TURN server the allocation is on (str0m's "local" address of a relayed
        /// candidate; never announced: the candidate's related address is a placeholder).
        local: SocketAddr,
    },
}

impl LocalCandidate {
    pub(crate) fn to_str0m(self) -> Result<Candidate, MediaError> {
        let made = match self {
            LocalCandidate::Host(addr) => {
                if addr.ip().is_unspecified() {
                    return Err(MediaError::BadCandidate(format!(
                        "host candidate {addr} is a wildcard address: bind each socket to one \
                         interface address"
                    )));
                }
                Candidate::host(addr, "udp")
            }
            LocalCandidate::ServerReflexive { addr, base } => {
                Candidate::server_reflexive(addr, base, "udp")
            }
            LocalCandidate::Relay { addr, local } => Candidate::relayed(addr, local, "udp"),
        };
        made.map_err(|e| MediaError::BadCandidate(e.to_string()))
    }
}

/// The type of an ICE candidate (RFC 8445 §5.1.1), as shown to users and in JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// An address of a local interface.
    Host,
    /// A public address learned from a STUN server.
    ServerReflexive,
    /// An address learned from the peer's connectivity checks.
    PeerReflexive,
    /// An address on a TURN relay.
    Relay,
}

impl CandidateType {
    /// The short name used in SDP and by browsers: `host`, `srflx`, `prflx`, `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::ServerReflexive => "srflx",
            CandidateType::PeerReflexive => "prflx",
            CandidateType::Relay => "relay",
        }
    }

    pub(crate) fn from_kind(kind: CandidateKind) -> Self {
        match kind {
            CandidateKind::Host => CandidateType::Host,
            CandidateKind::ServerReflexive => CandidateType::ServerReflexive,
            CandidateKind::PeerReflexive => CandidateType::PeerReflexive,
            CandidateKind::Relayed => CandidateType::Relay,
        }
    }
}

impl fmt::Display for CandidateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport protocol of a candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP, the only transport Peerline gathers today.
    Udp,
    /// TCP (RFC 6544), reserved for TURN over TCP.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// The candidate pair that carries the call's DTLS and media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectedPath {
    /// Type of the local candidate. A server-reflexive local candidate shows as `host`, because
    /// ICE sends from its base (RFC 8445 §6.1.2.4); the peer sees it as `srflx` or `prflx`.
    pub local_type: CandidateType,
    /// Type of the remote candidate; `prflx` when the peer was learned from its checks.
    pub remote_type: CandidateType,
    /// The transport protocol.
    pub transport: Transport,
    /// The local address packets are sent from.
    pub local_addr: SocketAddr,
    /// The remote address packets are sent to.
    pub remote_addr: SocketAddr,
}

impl SelectedPath {
    /// Whether the call goes directly between the peers (no TURN relay on either side).
    pub fn is_direct(&self) -> bool {
        self.local_type != CandidateType::Relay && self.remote_type != CandidateType::Relay
    }
}

impl fmt::Display for SelectedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} over {}", self.local_type, self.remote_type, self.transport)
    }
}

/// Strips an optional `a=` prefix and trailing line ending from a trickled candidate line.
pub(crate) fn normalize_candidate_line(line: &str) -> &str {
    let line = line.trim();
    line.strip_prefix("a=").unwrap_or(line)
}
