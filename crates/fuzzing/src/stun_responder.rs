//! Fuzz harness: arbitrary bytes as a UDP datagram to the STUN responder, from a source address
//! taken from the input's first byte.
//!
//! Beyond "no panic", it checks the responder's security promise: an answer is never larger than
//! the request plus XOR-MAPPED-ADDRESS, nothing is ever dropped as `would_amplify`, and a dropped
//! datagram leaves the response buffer empty.
//!
//! Run under libFuzzer: `scripts/fuzz 60 stun_responder`.

use std::net::SocketAddr;
use std::time::Instant;

use peerline_stun::{Responder, ResponderConfig, xor_mapped_address_len};

const SOURCES: [&str; 4] =
    ["192.0.2.1:3478", "[2001:db8::1]:40000", "[::ffff:198.51.100.9]:5", "0.0.0.0:0"];

/// Sends one input (selector byte, then the datagram) to a fresh STUN responder; panics when a
/// check fails.
pub fn stun_responder(data: &[u8]) {
    let Some((&selector, packet)) = data.split_first() else { return };
    let source: SocketAddr =
        SOURCES[usize::from(selector) % SOURCES.len()].parse().unwrap_or_else(|e| panic!("{e}"));
    let mut responder = Responder::new(&ResponderConfig::default());
    let mut response = Vec::new();
    let outcome = responder.handle(packet, source, Instant::now(), &mut response);
    if outcome.has_response() {
        assert!(response.len() <= packet.len() + xor_mapped_address_len(source));
    } else {
        assert!(response.is_empty());
    }
    assert_eq!(responder.stats().would_amplify, 0);
}
