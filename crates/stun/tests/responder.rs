//! Tests of the sans-IO responder through its public API, with a fake clock. Responses are decoded
//! with `stun-types`, an independent STUN implementation, so a bug shared by our encoder and our
//! parser cannot hide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerline_stun::{
    DropReason, Outcome, RateLimitConfig, Responder, ResponderConfig, xor_mapped_address_len,
};
use stun_types::attribute::{
    AttributeStaticType, AttributeType, ErrorCode, Fingerprint, Software, UnknownAttributes,
    Username, XorMappedAddress,
};
use stun_types::message::{
    BINDING, IntegrityAlgorithm, Message, MessageClass, MessageType, MessageWrite, MessageWriteExt,
    MessageWriteVec, Method, ShortTermCredentials, TransactionId,
};

const TID: [u8; 12] = [0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn unlimited() -> Responder {
    Responder::new(&ResponderConfig { rate_limit: None, ..ResponderConfig::default() })
}

/// Feeds one packet; returns the outcome and the response bytes, and checks the size bound.
fn exchange(r: &mut Responder, packet: &[u8], source: SocketAddr) -> (Outcome, Vec<u8>) {
    exchange_at(r, packet, source, Instant::now())
}

fn exchange_at(
    r: &mut Responder,
    packet: &[u8],
    source: SocketAddr,
    now: Instant,
) -> (Outcome, Vec<u8>) {
    let mut out = vec![0xAA; 7]; // stale bytes must not leak into a response
    let outcome = r.handle(packet, source, now, &mut out);
    if outcome.has_response() {
        assert!(out.len() <= packet.len() + xor_mapped_address_len(source), "{outcome:?}");
    } else {
        assert!(out.is_empty());
    }
    (outcome, out)
}

/// A Binding request built by stun-types.
fn binding_request() -> Vec<u8> {
    Message::builder_request(BINDING, MessageWriteVec::new()).finish()
}

/// A STUN message built by hand with the fixed transaction id.
fn raw_message(message_type: u16, attributes: &[(u16, &[u8])]) -> Vec<u8> {
    common::raw_stun(message_type, TID, attributes)
}

/// Decodes a success response with stun-types and returns the reported address.
fn mapped_address(response: &[u8], request: &[u8]) -> SocketAddr {
    let msg = Message::from_bytes(response).expect("stun-types parses the response");
    assert!(msg.has_class(MessageClass::Success));
    assert!(msg.has_method(BINDING));
    let request = Message::from_bytes(request).unwrap();
    assert_eq!(msg.transaction_id(), request.transaction_id());
    msg.attribute::<XorMappedAddress>().unwrap().addr(msg.transaction_id())
}

#[test]
fn answers_ipv4_binding_request_with_the_source_address() {
    let mut r = unlimited();
    let request = binding_request();
    let source = addr("203.0.113.5:40000");
    let (outcome, response) = exchange(&mut r, &request, source);
    assert_eq!(outcome, Outcome::Answered);
    assert_eq!(mapped_address(&response, &request), source);
    assert_eq!(response.len(), request.len() + 12);
    assert_eq!(r.stats().answered, 1);
}

#[test]
fn answers_ipv6_binding_request_with_the_source_address() {
    let mut r = unlimited();
    let request = binding_request();
    let source = addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
    let (outcome, response) = exchange(&mut r, &request, source);
    assert_eq!(outcome, Outcome::Answered);
    assert_eq!(mapped_address(&response, &request), source);
    assert_eq!(response.len(), request.len() + 24);
}

#[test]
fn reports_an_ipv4_mapped_ipv6_source_as_ipv4() {
    let mut r = unlimited();
    let request = binding_request();
    let (_, response) = exchange(&mut r, &request, addr("[::ffff:192.0.2.1]:32853"));
    assert_eq!(mapped_address(&response, &request), addr("192.0.2.1:32853"));
    assert_eq!(response.len(), 32);
}

#[test]
fn xor_mapped_address_bytes_match_rfc_5769_test_vectors() {
    // RFC 5769 §2.2 and §2.3 use this transaction id and these addresses.
    let mut r = unlimited();
    let request = raw_message(0x0001, &[]);
    let (_, v4) = exchange(&mut r, &request, addr("192.0.2.1:32853"));
    assert_eq!(&v4[..4], &[0x01, 0x01, 0x00, 0x0c]);
    assert_eq!(&v4[8..20], &TID);
    assert_eq!(
        &v4[20..],
        &[0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]
    );
    let (_, v6) = exchange(&mut r, &request, addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853"));
    assert_eq!(
        &v6[20..],
        &[
            0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3,
            0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9
        ]
    );
}

#[test]
fn echoes_the_transaction_id() {
    let mut r = unlimited();
    for id in [0u128, 1, u128::MAX >> 32, 0x0123_4567_89ab_cdef_0011_2233] {
        let request = Message::builder(
            MessageType::from_class_method(MessageClass::Request, BINDING),
            TransactionId::from(id),
            MessageWriteVec::new(),
        )
        .finish();
        let (_, response) = exchange(&mut r, &request, addr("198.51.100.1:1"));
        let msg = Message::from_bytes(&response).unwrap();
        assert_eq!(u128::from(msg.transaction_id()), id);
    }
}

#[test]
fn fingerprint_is_sent_only_when_the_request_had_one() {
    let mut r = unlimited();
    let mut with = Message::builder_request(BINDING, MessageWriteVec::new());
    with.add_fingerprint().unwrap();
    let with = with.finish();
    let source = addr("198.51.100.1:5000");
    let (outcome, response) = exchange(&mut r, &with, source);
    assert_eq!(outcome, Outcome::Answered);
    // stun-types checks the FINGERPRINT value while parsing.
    let msg = Message::from_bytes(&response).unwrap();
    assert!(msg.raw_attribute(Fingerprint::TYPE).is_some());
    assert_eq!(mapped_address(&response, &with), source);
    assert_eq!(response.len(), with.len() + 12);

    let (_, response) = exchange(&mut r, &binding_request(), source);
    let msg = Message::from_bytes(&response).unwrap();
    assert!(msg.raw_attribute(Fingerprint::TYPE).is_none());
}

#[test]
fn requests_with_credentials_and_software_are_answered() {
    // An ICE-style request: USERNAME, SOFTWARE, MESSAGE-INTEGRITY, FINGERPRINT. This server does
    // no authentication and ignores them.
    let mut r = unlimited();
    let mut request = Message::builder_request(BINDING, MessageWriteVec::new());
    request.add_attribute(&Username::new("alice:bob").unwrap()).unwrap();
    request.add_attribute(&Software::new("test client").unwrap()).unwrap();
    let credentials = ShortTermCredentials::new("secret".into()).into();
    request.add_message_integrity(&credentials, IntegrityAlgorithm::Sha1).unwrap();
    request.add_fingerprint().unwrap();
    let request = request.finish();
    let source = addr("198.51.100.1:5000");
    let (outcome, response) = exchange(&mut r, &request, source);
    assert_eq!(outcome, Outcome::Answered);
    assert_eq!(mapped_address(&response, &request), source);
}

#[test]
fn rfc_5769_sample_request_fingerprint_is_accepted_and_priority_gets_420() {
    // RFC 5769 §2.1: an ICE connectivity check. Its PRIORITY (0x0024) is comprehension-required
    // and not something a STUN server implements.
    let mut request = vec![
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10,
    ];
    request.extend_from_slice(b"STUN test client");
    request.extend_from_slice(&[
        0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9,
        0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    ]);
    request.extend_from_slice(b"evtj:h6vY   ");
    request.extend_from_slice(&[
        0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2,
        0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a,
        0x3b, 0xcf,
    ]);
    assert_eq!(request.len(), 108);
    let mut r = unlimited();
    let (outcome, response) = exchange(&mut r, &request, addr("192.0.2.1:32853"));
    assert_eq!(outcome, Outcome::UnknownAttribute);
    let msg = Message::from_bytes(&response).unwrap();
    assert!(msg.raw_attribute(Fingerprint::TYPE).is_some());
    let unknown = msg.attribute::<UnknownAttributes>().unwrap();
    assert!(unknown.has_attribute(AttributeType::new(0x0024)));

    // The same request with one bit of the FINGERPRINT flipped is dropped.
    let last = request.len() - 1;
    request[last] ^= 1;
    let (outcome, _) = exchange(&mut r, &request, addr("192.0.2.1:32853"));
    assert_eq!(outcome, Outcome::Dropped(DropReason::Malformed));
}

#[test]
fn unknown_comprehension_required_attribute_gets_420_within_the_bound() {
    let mut r = unlimited();
    // CHANGE-REQUEST (RFC 5780), the smallest request that can carry it.
    let request = raw_message(0x0001, &[(0x0003, &[])]);
    assert_eq!(request.len(), 24);
    for source in [addr("192.0.2.1:1000"), addr("[2001:db8::1]:1000")] {
        let (outcome, response) = exchange(&mut r, &request, source);
        assert_eq!(outcome, Outcome::UnknownAttribute);
        let msg = Message::from_bytes(&response).unwrap();
        assert!(msg.has_class(MessageClass::Error));
        assert!(msg.has_method(BINDING));
        assert_eq!(msg.attribute::<ErrorCode>().unwrap().code(), 420);
        let unknown = msg.attribute::<UnknownAttributes>().unwrap();
        assert!(unknown.has_attribute(AttributeType::new(0x0003)));
        assert_eq!(&response[8..20], &TID);
    }
    // PADDING and RESPONSE-PORT, which could enlarge or redirect the answer, are refused too.
    let request = raw_message(0x0001, &[(0x0026, &[0; 400]), (0x0027, &[0x12, 0x34, 0, 0])]);
    let (outcome, response) = exchange(&mut r, &request, addr("192.0.2.1:1000"));
    assert_eq!(outcome, Outcome::UnknownAttribute);
    assert!(response.len() < 64);
    assert_eq!(r.stats().unknown_attribute, 3);
}

#[test]
fn unknown_comprehension_optional_attributes_are_ignored() {
    let mut r = unlimited();
    let request = raw_message(0x0001, &[(0x8022, b"x"), (0xC001, &[1, 2, 3, 4, 5])]);
    let (outcome, _) = exchange(&mut r, &request, addr("192.0.2.1:1000"));
    assert_eq!(outcome, Outcome::Answered);
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    let mut r = unlimited();
    let request = raw_message(0x0001, &[(0x0008, &[0; 20]), (0x0003, &[0, 0, 0, 4])]);
    let (outcome, _) = exchange(&mut r, &request, addr("192.0.2.1:1000"));
    assert_eq!(outcome, Outcome::Answered);
}

#[test]
fn each_kind_of_malformed_input_is_dropped_and_counted() {
    let mut r = unlimited();
    let source = addr("192.0.2.1:1000");
    let valid = raw_message(0x0001, &[(0x8022, b"abcd")]);
    let mut cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("empty", vec![], DropReason::Malformed),
        ("truncated header", valid[..19].to_vec(), DropReason::Malformed),
        ("top bits set", vec![0x80; 40], DropReason::NotStun),
        ("zeros", vec![0; 20], DropReason::NotStun),
        ("rtp-like", vec![0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0], DropReason::NotStun),
        ("classic rfc 3489 request", [&[0, 1, 0, 0][..], &[7; 16]].concat(), DropReason::NotStun),
    ];
    let mut length_too_long = valid.clone();
    length_too_long[3] += 4;
    cases.push(("length longer than datagram", length_too_long, DropReason::Malformed));
    let mut trailing = valid.clone();
    trailing.extend_from_slice(&[0; 4]);
    cases.push(("bytes after the message", trailing, DropReason::Malformed));
    let mut unaligned = valid.clone();
    unaligned.push(0);
    unaligned[3] += 1;
    cases.push(("length not a multiple of 4", unaligned, DropReason::Malformed));
    let mut overrun = valid.clone();
    overrun[23] = 5; // attribute claims 5 bytes (8 padded), only 4 there
    cases.push(("attribute overruns the message", overrun, DropReason::Malformed));
    let mut huge_attr = valid.clone();
    huge_attr[22..24].copy_from_slice(&[0xFF, 0xFF]);
    cases.push(("attribute length 65535", huge_attr, DropReason::Malformed));
    let mut with_fp = Message::builder_request(BINDING, MessageWriteVec::new());
    with_fp.add_fingerprint().unwrap();
    let mut bad_fp = with_fp.finish();
    let last = bad_fp.len() - 1;
    bad_fp[last] ^= 0x40;
    cases.push(("wrong fingerprint", bad_fp, DropReason::Malformed));
    let mut fp_then_more = Message::builder_request(BINDING, MessageWriteVec::new());
    fp_then_more.add_fingerprint().unwrap();
    let mut fp_then_more = fp_then_more.finish();
    fp_then_more.extend_from_slice(&[0x80, 0x22, 0, 0]);
    let len = (fp_then_more.len() - 20) as u16;
    fp_then_more[2..4].copy_from_slice(&len.to_be_bytes());
    cases.push(("attribute after fingerprint", fp_then_more, DropReason::Malformed));
    let fp_wrong_len = raw_message(0x0001, &[(0x8028, &[0; 8])]);
    cases.push(("fingerprint of the wrong length", fp_wrong_len, DropReason::Malformed));
    cases.push(("oversize", raw_message(0x0001, &[(0x8022, &[0; 600])]), DropReason::Oversize));
    cases.push(("jumbo garbage", vec![0xFF; 9000], DropReason::Oversize));

    for (name, packet, reason) in &cases {
        let (outcome, _) = exchange(&mut r, packet, source);
        assert_eq!(outcome, Outcome::Dropped(*reason), "{name}");
    }
    let stats = *r.stats();
    assert_eq!(stats.answered, 0);
    assert_eq!(stats.not_stun, 4);
    assert_eq!(stats.oversize, 2);
    assert_eq!(stats.malformed, cases.len() as u64 - 6);
    assert_eq!(stats.total(), cases.len() as u64);
    assert_eq!(stats.dropped(), cases.len() as u64);
}

#[test]
fn largest_accepted_request_is_548_bytes() {
    let mut r = unlimited();
    let at_limit = raw_message(0x0001, &[(0x8022, &[b'a'; 524])]);
    assert_eq!(at_limit.len(), 548);
    assert_eq!(exchange(&mut r, &at_limit, addr("192.0.2.1:9")).0, Outcome::Answered);
    let over = raw_message(0x0001, &[(0x8022, &[b'a'; 528])]);
    assert_eq!(
        exchange(&mut r, &over, addr("192.0.2.1:9")).0,
        Outcome::Dropped(DropReason::Oversize)
    );
}

#[test]
fn indications_responses_and_other_methods_are_ignored() {
    let mut r = unlimited();
    let source = addr("192.0.2.1:1000");
    let binding_indication = Message::builder_indication(BINDING, MessageWriteVec::new()).finish();
    let success = raw_message(0x0101, &[]);
    let error = raw_message(0x0111, &[]);
    let allocate = Message::builder_request(Method::new(0x003), MessageWriteVec::new()).finish();
    let method_fff = raw_message(0x3EEF, &[]);
    let allocate_indication = raw_message(0x0013, &[]);
    let expectations = [
        (binding_indication, DropReason::NotRequest),
        (success, DropReason::NotRequest),
        (error, DropReason::NotRequest),
        (allocate_indication, DropReason::NotRequest),
        (allocate, DropReason::NotBinding),
        (method_fff, DropReason::NotBinding),
    ];
    for (packet, reason) in &expectations {
        assert_eq!(exchange(&mut r, packet, source).0, Outcome::Dropped(*reason));
    }
    assert_eq!(r.stats().not_request, 4);
    assert_eq!(r.stats().not_binding, 2);
}

#[test]
fn sources_that_cannot_be_answered_are_dropped() {
    let mut r = unlimited();
    let request = binding_request();
    for source in [
        "192.0.2.1:0",
        "0.0.0.0:3478",
        "224.0.0.1:3478",
        "255.255.255.255:3478",
        "[::]:3478",
        "[ff02::1]:3478",
        "[::ffff:0.0.0.0]:3478",
    ] {
        assert_eq!(
            exchange(&mut r, &request, addr(source)).0,
            Outcome::Dropped(DropReason::BadSource),
            "{source}"
        );
    }
}

#[test]
fn spoofed_flood_toward_one_victim_is_capped_per_source() {
    let mut r = Responder::new(&ResponderConfig::default());
    let victim = addr("198.51.100.77:3478");
    let request = binding_request();
    let start = Instant::now();
    let mut bytes_to_victim = 0;
    let mut answered = 0;
    // 100,000 forged requests over 10 simulated seconds.
    for i in 0..100_000u64 {
        let now = start + Duration::from_micros(i * 100);
        let (outcome, response) = exchange_at(&mut r, &request, victim, now);
        if outcome.has_response() {
            answered += 1;
            bytes_to_victim += response.len();
        }
    }
    // Burst of 40, then 20 per second.
    assert!((239..=241).contains(&answered), "{answered}");
    assert!(bytes_to_victim <= answered * (request.len() + 12));
    assert_eq!(r.stats().source_rate_limited, 100_000 - answered as u64);
    // Someone else is still answered during the flood.
    let now = start + Duration::from_secs(10);
    assert_eq!(exchange_at(&mut r, &request, addr("203.0.113.1:1"), now).0, Outcome::Answered);
}

#[test]
fn source_table_stays_bounded_under_many_forged_sources() {
    let mut r = Responder::new(&ResponderConfig {
        rate_limit: Some(RateLimitConfig { max_sources: 1_000, ..RateLimitConfig::default() }),
        ..ResponderConfig::default()
    });
    let request = binding_request();
    let now = Instant::now();
    for i in 0..5_000u32 {
        let source = SocketAddr::new(std::net::Ipv4Addr::from(0x0A00_0000 + i).into(), 9);
        exchange_at(&mut r, &request, source, now);
    }
    assert_eq!(r.tracked_sources(), 1_000);
    assert_eq!(r.stats().answered, 1_000);
    assert_eq!(r.stats().global_rate_limited, 4_000);
    // Garbage never takes a table slot.
    let mut r = Responder::new(&ResponderConfig::default());
    for i in 0..5_000u32 {
        let source = SocketAddr::new(std::net::Ipv4Addr::from(0x0A00_0000 + i).into(), 9);
        exchange_at(&mut r, &[0u8; 20], source, now);
    }
    assert_eq!(r.tracked_sources(), 0);
}

#[test]
fn outcome_labels_and_indices_are_consistent() {
    for (i, outcome) in Outcome::ALL.iter().enumerate() {
        assert_eq!(outcome.index(), i);
    }
    let labels: std::collections::HashSet<_> = Outcome::ALL.iter().map(|o| o.label()).collect();
    assert_eq!(labels.len(), Outcome::ALL.len());
    assert_eq!(Outcome::Answered.label(), "answered");
    assert_eq!(Outcome::Dropped(DropReason::Malformed).label(), "malformed");
    assert_eq!(DropReason::NotBinding.to_string(), "STUN request is not a Binding request");
}
