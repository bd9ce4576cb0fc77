//! Fuzz harness: arbitrary bytes as the answer to a client's Binding request
//! (`peerline_stun::client::mapped_address`, which candidate gathering uses to learn the
//! server-reflexive address).
//!
//! The first 12 bytes are the transaction id the client sent; the rest is the datagram. So that
//! the fuzzer reaches the attribute walk, the datagram's own transaction id (bytes 8..20) is
//! taken as the client's when the input's first bit says so.
//!
//! Beyond "no panic", it checks the reader's contract: an address is only ever read from a
//! Binding success response with the magic cookie and the client's transaction id, whose
//! XOR-MAPPED-ADDRESS lies inside the datagram; and the responder's answer to the client's own
//! request reads back as the address it came from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use peerline_stun::client::{binding_request, mapped_address};
use peerline_stun::{MAGIC_COOKIE, Responder, ResponderConfig};

fn check_header(packet: &[u8], tid: &[u8; 12]) {
    assert!(packet.len() >= 20 + 8, "an address needs a header and an attribute");
    assert_eq!(packet.get(..2), Some(&[0x01, 0x01][..]), "not a Binding success response");
    assert_eq!(packet.get(4..8), Some(&MAGIC_COOKIE.to_be_bytes()[..]));
    assert_eq!(packet.get(8..20), Some(&tid[..]), "another transaction");
}

/// The source address the responder is asked about, made from input bytes so that every
/// family, port and address is tried.
fn source_from(seed: &[u8]) -> SocketAddr {
    let byte = |i: usize| seed.get(i).copied().unwrap_or(0);
    let port = u16::from_be_bytes([byte(0), byte(1)]);
    if byte(2) % 2 == 0 {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(byte(3), byte(4), byte(5), byte(6))), port)
    } else {
        let mut octets = [0u8; 16];
        for (i, o) in octets.iter_mut().enumerate() {
            *o = byte(3 + i);
        }
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port)
    }
}

/// Reads one input (transaction id, then the datagram) as the answer to a Binding request, and
/// round-trips a request through the responder; panics when a check fails.
pub fn stun_client(data: &[u8]) {
    let Some((head, packet)) = data.split_first_chunk::<12>() else { return };
    let mut tid = *head;
    if head[0] & 1 == 1
        && let Some(own) = packet.get(8..20).and_then(|t| <[u8; 12]>::try_from(t).ok())
    {
        tid = own;
    }
    if mapped_address(packet, &tid).is_some() {
        check_header(packet, &tid);
    }

    // Round trip through the real responder: whatever source it answers, the client reads back
    // exactly (an IPv4-mapped IPv6 source as the IPv4 address it is).
    let source = source_from(packet);
    let mut responder = Responder::new(&ResponderConfig::default());
    let mut response = Vec::new();
    let outcome = responder.handle(&binding_request(&tid), source, Instant::now(), &mut response);
    let shown = SocketAddr::new(source.ip().to_canonical(), source.port());
    if outcome.has_response() {
        assert_eq!(mapped_address(&response, &tid), Some(shown));
    } else {
        // Only a source no answer could reach (a forged one) goes unanswered.
        let ip = shown.ip();
        let v4_broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        assert!(shown.port() == 0 || ip.is_unspecified() || ip.is_multicast() || v4_broadcast);
    }
}
