//! Peerline's STUN responder: tells a client the address and port its packets come from (its
//! server-reflexive address), so that ICE can offer it as a candidate. The supernode runs it on
//! UDP port 3478; calls themselves never pass through it.
//!
//! The crate is split like the rest of Peerline:
//! - [`Responder`] is the sans-IO core. [`Responder::handle`] takes one datagram, its source
//!   address and the current time, and says whether to answer; it never touches a socket or a
//!   clock.
//! - [`StunServer`] (module `server`) is the thin driver around it: a thread that receives
//!   datagrams in batches (`recvmmsg`), answers each with [`Responder::handle`] into a reused
//!   buffer and sends the answers in one `sendmmsg`, with `metrics` counters and graceful
//!   shutdown from async code.
//!
//! # What it answers
//! Only RFC 8489 Binding requests: class request, method Binding, the magic cookie, a 20-byte
//! header whose length field matches the datagram, and well-formed attributes (TLV). The answer is
//! a Binding success response carrying XOR-MAPPED-ADDRESS (RFC 8489 §14.2) and the request's
//! transaction id, plus FINGERPRINT when the request had one. A request with a comprehension-
//! required attribute this server does not implement (RFC 5780's CHANGE-REQUEST, RESPONSE-PORT,
//! PADDING, ICE's PRIORITY...) gets a 420 (Unknown Attribute) error response, as RFC 8489 §6.3.1
//! requires. Everything else is dropped without a word and counted in [`Stats`]; nothing is logged
//! per packet.
//!
//! # Amplification and spoofed sources
//! UDP source addresses can be forged, so every answer may land on a victim. Two rules bound that:
//! - **Never larger than the request plus XOR-MAPPED-ADDRESS** (12 bytes for IPv4, 24 for IPv6):
//!   each response is built so this holds, and [`Responder::handle`] checks it again before
//!   answering. No SOFTWARE attribute is sent (it would break the bound for the smallest requests
//!   and tells attackers the version), and FINGERPRINT only when the request paid for it.
//! - **At most one answer per request, rate-limited per source**: a token bucket per source
//!   address (IPv4 address or IPv6 /64) and one for the whole responder; see [`RateLimitConfig`].
//!
//! # Why the parsing is by hand
//! `stun-types` 2 and `stun-codec` both parse STUN well, but a responder facing the internet needs
//! very little of them (the header, one walk over the attributes, one CRC) and must be cheap and
//! quiet under a flood: `stun-types` logs a `warn!` for each malformed message it rejects, which
//! is exactly the per-packet logging an attacker could use to fill the disk, and it accepts
//! datagrams longer than the message. The validation here is one short function (header checks and
//! one walk over the attributes) that allocates nothing and indexes nothing; the tests build
//! requests and decode every response with `stun-types` as an independent implementation, and
//! check interop with coturn's `turnutils_stunclient` and with aioice.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![forbid(unsafe_code)]

mod batch;
pub mod client;
mod fingerprint;
mod message;
mod rate_limit;
mod responder;
pub mod server;

pub use message::{MAGIC_COOKIE, xor_mapped_address_len};
pub use rate_limit::RateLimitConfig;
pub use responder::{DropReason, Outcome, Responder, ResponderConfig, Stats};
pub use server::{StunServer, serve};

/// The port STUN servers listen on by default (RFC 8489 §18.1).
pub const DEFAULT_PORT: u16 = 3478;

/// The default for the supernode's `stun_listen`: every IPv4 interface, port 3478.
pub const DEFAULT_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 3478));
