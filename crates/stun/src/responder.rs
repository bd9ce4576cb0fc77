//! The sans-IO STUN responder: one datagram in, at most one response out, every outcome counted.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::message::{
    Invalid, parse_binding_request, unmap, write_success, write_unknown_attributes,
    xor_mapped_address_len,
};
use crate::rate_limit::{Admission, RateLimitConfig, RateLimiter};

/// How the responder behaves. The defaults are safe on the internet.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponderConfig {
    /// Longest datagram considered, in bytes; longer ones are dropped as [`DropReason::Oversize`]
    /// without being parsed. Default 548: the most a STUN message over UDP should be when the
    /// path MTU is unknown (RFC 8489 §6.1: 576-byte IPv4 datagrams less IP and UDP headers).
    /// Binding requests from ICE agents and STUN clients are 20 to about 100 bytes, so nothing
    /// real is lost, and a flood of large datagrams is refused before the attribute walk.
    pub max_request_len: usize,
    /// Per-source and global caps on answers; `None` answers every valid request (for tests and
    /// for a responder that is not reachable from the internet).
    pub rate_limit: Option<RateLimitConfig>,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        Self { max_request_len: 548, rate_limit: Some(RateLimitConfig::default()) }
    }
}

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DropReason {
    /// Longer than [`ResponderConfig::max_request_len`].
    #[error("datagram longer than the largest request accepted")]
    Oversize,
    /// Not STUN: the first two bits are set or the magic cookie is missing (classic RFC 3489
    /// requests, RTP, DTLS, noise).
    #[error("not a STUN message")]
    NotStun,
    /// STUN-shaped but broken: shorter than the header, a length field that does not match the
    /// datagram, attributes that overrun the message, a wrong FINGERPRINT, or anything after it.
    #[error("malformed STUN message")]
    Malformed,
    /// A STUN indication, success or error response; only requests are answered.
    #[error("STUN message is not a request")]
    NotRequest,
    /// A request for a method other than Binding.
    #[error("STUN request is not a Binding request")]
    NotBinding,
    /// From an address no answer can go to: port 0, unspecified, multicast or broadcast.
    #[error("source address cannot be answered")]
    BadSource,
    /// This source (IPv4 address or IPv6 /64) has had its share of answers for now.
    #[error("source rate limit reached")]
    SourceRateLimited,
    /// The responder as a whole is at its rate cap, or tracks as many sources as it may.
    #[error("global rate limit reached")]
    GlobalRateLimited,
    /// The response would have been larger than the request plus XOR-MAPPED-ADDRESS. Cannot happen
    /// with this code; checked anyway because the bound is the responder's security promise.
    #[error("response would be larger than the request allows")]
    WouldAmplify,
}

/// What [`Responder::handle`] decided about one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A Binding success response is in the buffer: send it to the source.
    Answered,
    /// A 420 (Unknown Attribute) error response is in the buffer: send it to the source.
    UnknownAttribute,
    /// Nothing to send; the buffer is empty.
    Dropped(DropReason),
}

impl Outcome {
    /// Every outcome, in the order of [`Outcome::index`].
    pub const ALL: [Outcome; 11] = [
        Outcome::Answered,
        Outcome::UnknownAttribute,
        Outcome::Dropped(DropReason::Oversize),
        Outcome::Dropped(DropReason::NotStun),
        Outcome::Dropped(DropReason::Malformed),
        Outcome::Dropped(DropReason::NotRequest),
        Outcome::Dropped(DropReason::NotBinding),
        Outcome::Dropped(DropReason::BadSource),
        Outcome::Dropped(DropReason::SourceRateLimited),
        Outcome::Dropped(DropReason::GlobalRateLimited),
        Outcome::Dropped(DropReason::WouldAmplify),
    ];

    /// Whether the response buffer holds a message to send back to the source.
    pub fn has_response(self) -> bool {
        !matches!(self, Outcome::Dropped(_))
    }

    /// The position of this outcome in [`Outcome::ALL`], for arrays of counters.
    pub fn index(self) -> usize {
        match self {
            Outcome::Answered => 0,
            Outcome::UnknownAttribute => 1,
            Outcome::Dropped(DropReason::Oversize) => 2,
            Outcome::Dropped(DropReason::NotStun) => 3,
            Outcome::Dropped(DropReason::Malformed) => 4,
            Outcome::Dropped(DropReason::NotRequest) => 5,
            Outcome::Dropped(DropReason::NotBinding) => 6,
            Outcome::Dropped(DropReason::BadSource) => 7,
            Outcome::Dropped(DropReason::SourceRateLimited) => 8,
            Outcome::Dropped(DropReason::GlobalRateLimited) => 9,
            Outcome::Dropped(DropReason::WouldAmplify) => 10,
        }
    }

    /// The `result` label of `peerline_stun_requests_total` for this outcome.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::UnknownAttribute => "unknown_attribute",
            Outcome::Dropped(DropReason::Oversize) => "oversize",
            Outcome::Dropped(DropReason::NotStun) => "not_stun",
            Outcome::Dropped(DropReason::Malformed) => "malformed",
            Outcome::Dropped(DropReason::NotRequest) => "not_request",
            Outcome::Dropped(DropReason::NotBinding) => "not_binding",
            Outcome::Dropped(DropReason::BadSource) => "bad_source",
            Outcome::Dropped(DropReason::SourceRateLimited) => "source_rate_limited",
            Outcome::Dropped(DropReason::GlobalRateLimited) => "global_rate_limited",
            Outcome::Dropped(DropReason::WouldAmplify) => "would_amplify",
        }
    }
}

/// Datagrams seen, by outcome. Counters only grow (they wrap after 2^64, never in practice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Binding success responses sent.
    pub answered: u64,
    /// 420 (Unknown Attribute) error responses sent.
    pub unknown_attribute: u64,
    /// Dropped: longer than the largest request accepted.
    pub oversize: u64,
    /// Dropped: not STUN.
    pub not_stun: u64,
    /// Dropped: malformed STUN.
    pub malformed: u64,
    /// Dropped: indications and responses.
    pub not_request: u64,
    /// Dropped: requests for other methods.
    pub not_binding: u64,
    /// Dropped: source address cannot be answered.
    pub bad_source: u64,
    /// Dropped: per-source rate limit.
    pub source_rate_limited: u64,
    /// Dropped: global rate limit or source table full.
    pub global_rate_limited: u64,
    /// Dropped: response would have exceeded the size bound (always 0).
    pub would_amplify: u64,
}

impl Stats {
    /// The counter for `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Answered => self.answered,
            Outcome::UnknownAttribute => self.unknown_attribute,
            Outcome::Dropped(DropReason::Oversize) => self.oversize,
            Outcome::Dropped(DropReason::NotStun) => self.not_stun,
            Outcome::Dropped(DropReason::Malformed) => self.malformed,
            Outcome::Dropped(DropReason::NotRequest) => self.not_request,
            Outcome::Dropped(DropReason::NotBinding) => self.not_binding,
            Outcome::Dropped(DropReason::BadSource) => self.bad_source,
            Outcome::Dropped(DropReason::SourceRateLimited) => self.source_rate_limited,
            Outcome::Dropped(DropReason::GlobalRateLimited) => self.global_rate_limited,
            Outcome::Dropped(DropReason::WouldAmplify) => self.would_amplify,
        }
    }

    /// Datagrams seen in total.
    pub fn total(&self) -> u64 {
        Outcome::ALL.iter().map(|&o| self.count(o)).fold(0, u64::wrapping_add)
    }

    /// Datagrams that got no answer.
    pub fn dropped(&self) -> u64 {
        self.total().wrapping_sub(self.answered).wrapping_sub(self.unknown_attribute)
    }

    fn record(&mut self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Answered => &mut self.answered,
            Outcome::UnknownAttribute => &mut self.unknown_attribute,
            Outcome::Dropped(DropReason::Oversize) => &mut self.oversize,
            Outcome::Dropped(DropReason::NotStun) => &mut self.not_stun,
            Outcome::Dropped(DropReason::Malformed) => &mut self.malformed,
            Outcome::Dropped(DropReason::NotRequest) => &mut self.not_request,
            Outcome::Dropped(DropReason::NotBinding) => &mut self.not_binding,
            Outcome::Dropped(DropReason::BadSource) => &mut self.bad_source,
            Outcome::Dropped(DropReason::SourceRateLimited) => &mut self.source_rate_limited,
            Outcome::Dropped(DropReason::GlobalRateLimited) => &mut self.global_rate_limited,
            Outcome::Dropped(DropReason::WouldAmplify) => &mut self.would_amplify,
        };
        *counter = counter.wrapping_add(1);
    }
}

/// Answers STUN Binding requests (RFC 8489) without doing any I/O: feed it datagrams with
/// [`Responder::handle`], send what it writes.
#[derive(Debug)]
pub struct Responder {
    max_request_len: usize,
    limiter: Option<RateLimiter>,
    stats: Stats,
}

impl Responder {
    /// A responder with `config`.
    pub fn new(config: &ResponderConfig) -> Self {
        Self {
            max_request_len: config.max_request_len,
            limiter: config.rate_limit.as_ref().map(RateLimiter::new),
            stats: Stats::default(),
        }
    }

    /// Handles one datagram `packet` that arrived from `source` at `now`.
    ///
    /// `response` is cleared; when the outcome [has a response](Outcome::has_response) it holds
    /// the message to send to `source`, and that message is never longer than
    /// `packet.len() + xor_mapped_address_len(source)`. Reuse one buffer for every call: the
    /// responder then allocates nothing per packet.
    pub fn handle(
        &mut self,
        packet: &[u8],
        source: SocketAddr,
        now: Instant,
        response: &mut Vec<u8>,
    ) -> Outcome {
        response.clear();
        let outcome = self.decide(packet, source, now, response);
        if !outcome.has_response() {
            response.clear();
        }
        self.stats.record(outcome);
        outcome
    }

    /// Counters of every outcome so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Sources the rate limiter tracks now (0 without rate limiting); never more than
    /// [`RateLimitConfig::max_sources`].
    pub fn tracked_sources(&self) -> usize {
        self.limiter.as_ref().map_or(0, RateLimiter::tracked_sources)
    }

    fn decide(
        &mut self,
        packet: &[u8],
        source: SocketAddr,
        now: Instant,
        response: &mut Vec<u8>,
    ) -> Outcome {
        if packet.len() > self.max_request_len {
            return Outcome::Dropped(DropReason::Oversize);
        }
        let request = match parse_binding_request(packet) {
            Ok(request) => request,
            Err(Invalid::NotStun) => return Outcome::Dropped(DropReason::NotStun),
            Err(Invalid::Malformed) => return Outcome::Dropped(DropReason::Malformed),
            Err(Invalid::NotRequest) => return Outcome::Dropped(DropReason::NotRequest),
            Err(Invalid::NotBinding) => return Outcome::Dropped(DropReason::NotBinding),
        };
        let source = unmap(source);
        if !answerable(source) {
            return Outcome::Dropped(DropReason::BadSource);
        }
        if let Some(limiter) = &mut self.limiter {
            match limiter.admit(source.ip(), now) {
                Admission::Allowed => {}
                Admission::SourceLimited => {
                    return Outcome::Dropped(DropReason::SourceRateLimited);
                }
                Admission::GlobalLimited => {
                    return Outcome::Dropped(DropReason::GlobalRateLimited);
                }
            }
        }
        let outcome = if request.unknown.is_empty() {
            write_success(response, &request, source, request.fingerprint);
            Outcome::Answered
        } else {
            write_unknown_attributes(response, &request);
            Outcome::UnknownAttribute
        };
        // The promise of issue 4: never answer with more than the request plus
        // XOR-MAPPED-ADDRESS, so a forged source gains an attacker (almost) nothing.
        if response.len() > packet.len() + xor_mapped_address_len(source) {
            return Outcome::Dropped(DropReason::WouldAmplify);
        }
        outcome
    }
}

/// Whether a response to `source` could reach a single host. Forged sources like these are
/// usually dropped by the kernel already; checking is cheap.
fn answerable(source: SocketAddr) -> bool {
    if source.port() == 0 {
        return false;
    }
    match source.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}
