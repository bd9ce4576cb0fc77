//! Property tests: whatever arrives, the responder does not panic and never answers with more than
//! the request plus XOR-MAPPED-ADDRESS; well-formed requests are always answered correctly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use peerline_stun::{Outcome, Responder, ResponderConfig, Stats, xor_mapped_address_len};
use proptest::prelude::*;
use stun_types::attribute::XorMappedAddress;
use stun_types::message::{BINDING, Message, MessageClass};

fn any_source() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<u32>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<u128>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        (any::<u32>(), 1..=u16::MAX).prop_map(|(ip, port)| SocketAddr::new(
            IpAddr::V6(Ipv4Addr::from(ip).to_ipv6_mapped()),
            port
        )),
    ]
}

/// A Binding request with arbitrary attributes (any type, any value up to 64 bytes), built
/// with correct lengths and padding.
fn any_request() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 12]>(),
        prop::collection::vec((any::<u16>(), prop::collection::vec(any::<u8>(), 0..64)), 0..8),
    )
        .prop_map(|(tid, attributes)| build(0x0001, tid, &attributes))
}

fn build(message_type: u16, tid: [u8; 12], attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let attributes: Vec<(u16, &[u8])> =
        attributes.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    common::raw_stun(message_type, tid, &attributes)
}

#[derive(Debug, Clone)]
enum Mutation {
    SetByte(usize, u8),
    FlipBit(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
}

fn any_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<usize>(), 0..8u8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Mutation::Append),
    ]
}

fn mutate(packet: &mut Vec<u8>, mutation: &Mutation) {
    let len = packet.len().max(1);
    match mutation {
        Mutation::SetByte(i, b) => {
            if let Some(x) = packet.get_mut(i % len) {
                *x = *b;
            }
        }
        Mutation::FlipBit(i, bit) => {
            if let Some(x) = packet.get_mut(i % len) {
                *x ^= 1 << bit;
            }
        }
        Mutation::Truncate(n) => packet.truncate(n % len),
        Mutation::Append(bytes) => packet.extend_from_slice(bytes),
    }
}

/// Feeds `packet` to fresh responders (with and without rate limiting) and checks the bound.
fn check_bound(packet: &[u8], source: SocketAddr) -> Result<Outcome, TestCaseError> {
    let mut outcome = None;
    for config in
        [ResponderConfig::default(), ResponderConfig { rate_limit: None, ..Default::default() }]
    {
        let mut responder = Responder::new(&config);
        let mut response = Vec::new();
        let o = responder.handle(packet, source, Instant::now(), &mut response);
        if o.has_response() {
            prop_assert!(response.len() <= packet.len() + xor_mapped_address_len(source));
            // Whatever we send is a STUN message another implementation accepts.
            prop_assert!(Message::from_bytes(&response).is_ok());
        } else {
            prop_assert!(response.is_empty());
        }
        let stats: &Stats = responder.stats();
        prop_assert_eq!(stats.would_amplify, 0);
        prop_assert_eq!(stats.total(), 1);
        outcome = Some(o);
    }
    Ok(outcome.unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_or_amplify(
        packet in prop::collection::vec(any::<u8>(), 0..700),
        source in any_source(),
    ) {
        check_bound(&packet, source)?;
    }

    #[test]
    fn stun_shaped_random_bytes_never_panic_or_amplify(
        body in prop::collection::vec(any::<u8>(), 0..128),
        tid in any::<[u8; 12]>(),
        message_type in 0u16..0x4000,
        source in any_source(),
    ) {
        // A correct header over a random body: exercises the attribute walk.
        let mut packet = build(message_type, tid, &[]);
        packet.extend_from_slice(&body);
        let len = body.len() as u16;
        packet[2..4].copy_from_slice(&len.to_be_bytes());
        check_bound(&packet, source)?;
    }

    #[test]
    fn the_client_reads_any_answer_without_panicking(
        body in prop::collection::vec(any::<u8>(), 0..128),
        tid in any::<[u8; 12]>(),
        source in any_source(),
    ) {
        // Garbage, and well-formed success responses with a random attribute walk behind them.
        let _ = peerline_stun::client::mapped_address(&body, &tid);
        let mut packet = build(0x0101, tid, &[]);
        packet.extend_from_slice(&body);
        let len = body.len() as u16;
        packet[2..4].copy_from_slice(&len.to_be_bytes());
        let _ = peerline_stun::client::mapped_address(&packet, &tid);
        // And the real answer to our request always gives back the source address.
        let mut responder = Responder::new(&ResponderConfig { rate_limit: None, ..Default::default() });
        let mut response = Vec::new();
        let request = peerline_stun::client::binding_request(&tid);
        if responder.handle(&request, source, Instant::now(), &mut response) == Outcome::Answered {
            let mapped = peerline_stun::client::mapped_address(&response, &tid).unwrap();
            prop_assert_eq!(mapped.port(), source.port());
        }
    }

    #[test]
    fn mutated_valid_requests_never_panic_or_amplify(
        request in any_request(),
        mutations in prop::collection::vec(any_mutation(), 1..4),
        source in any_source(),
    ) {
        let mut packet = request;
        for m in &mutations {
            mutate(&mut packet, m);
        }
        check_bound(&packet, source)?;
    }

    #[test]
    fn well_formed_requests_are_answered_with_the_source_address(
        request in any_request(),
        source in any_source(),
    ) {
        match check_bound(&request, source)? {
            Outcome::Answered | Outcome::UnknownAttribute => {}
            Outcome::Dropped(reason) => {
                // Only a random FINGERPRINT (wrong value or followed by more), an oversize
                // message or an unanswerable source may be dropped.
                let has_fingerprint = request.windows(2).any(|w| w == [0x80, 0x28]);
                let unspecified = source.ip().is_unspecified()
                    || source.ip().to_canonical().is_unspecified()
                    || source.ip().is_multicast()
                    || source.ip() == IpAddr::V4(Ipv4Addr::BROADCAST)
                    || source.ip().to_canonical() == IpAddr::V4(Ipv4Addr::BROADCAST)
                    || source.ip().to_canonical().is_multicast();
                prop_assert!(has_fingerprint || request.len() > 548 || unspecified, "{reason:?}");
            }
        }
        let mut responder = Responder::new(&ResponderConfig { rate_limit: None, ..Default::default() });
        let mut response = Vec::new();
        if responder.handle(&request, source, Instant::now(), &mut response) == Outcome::Answered {
            let msg = Message::from_bytes(&response).unwrap();
            prop_assert!(msg.has_class(MessageClass::Success));
            prop_assert!(msg.has_method(BINDING));
            prop_assert_eq!(&response[8..20], &request[8..20]);
            let mapped = msg.attribute::<XorMappedAddress>().unwrap().addr(msg.transaction_id());
            prop_assert_eq!(mapped, SocketAddr::new(source.ip().to_canonical(), source.port()));
        }
    }
}
