//! STUN message layout (RFC 8489 §5, §14): the hand-written check that a datagram is a
//! well-formed Binding request, and the writers for the two responses this server sends.
//!
//! Nothing here allocates except the caller's response buffer, and nothing indexes: every read is
//! a checked split, so no input can make it panic.

use std::net::{IpAddr, SocketAddr};

use crate::fingerprint::stun_fingerprint;

/// The fixed value in bytes 4..8 of every RFC 5389/8489 STUN message (RFC 8489 §5). Classic
/// RFC 3489 requests lack it and are not answered.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Size of the STUN header: type, length, magic cookie, 96-bit transaction id.
pub(crate) const HEADER_LEN: usize = 20;

/// Message type of a Binding success response.
const BINDING_SUCCESS: u16 = 0x0101;
/// Message type of a Binding error response.
const BINDING_ERROR: u16 = 0x0111;
/// The Binding method (RFC 8489 §18.2).
const METHOD_BINDING: u16 = 0x001;

const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
const ATTR_PASSWORD_ALGORITHM: u16 = 0x001D;
const ATTR_USERHASH: u16 = 0x001E;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const ATTR_FINGERPRINT: u16 = 0x8028;

/// Comprehension-required attributes (type < 0x8000) that RFC 8489 defines. This server uses no
/// authentication, so it has nothing to do with the credential attributes and may ignore them
/// (RFC 8489 §9: the usage decides whether authentication is required; for a plain
/// server-reflexive-address service it is not). Any other comprehension-required attribute gets a
/// 420 (RFC 8489 §6.3.1): that is how an RFC 5780 client learns that CHANGE-REQUEST,
/// RESPONSE-PORT or PADDING (which could enlarge or redirect the answer) are not supported.
const UNDERSTOOD: [u16; 11] = [
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_PASSWORD_ALGORITHM,
    ATTR_USERHASH,
    ATTR_XOR_MAPPED_ADDRESS,
];

/// Most distinct unknown attribute types listed in a 420's UNKNOWN-ATTRIBUTES; a client sends
/// a handful at most, and a short list keeps the error response small.
pub(crate) const MAX_UNKNOWN_LISTED: usize = 8;

/// Size of the XOR-MAPPED-ADDRESS attribute (4-byte attribute header included) that a response
/// to `source` carries: 12 bytes for IPv4 (and IPv4-mapped IPv6) sources, 24 for IPv6. A
/// response is never larger than its request plus this many bytes.
pub fn xor_mapped_address_len(source: SocketAddr) -> usize {
    match unmap(source).ip() {
        IpAddr::V4(_) => 12,
        IpAddr::V6(_) => 24,
    }
}

/// The address to report: an IPv4-mapped IPv6 source (`::ffff:a.b.c.d`, seen on a dual-stack
/// socket) is the IPv4 client `a.b.c.d`, and is reported as such.
pub(crate) fn unmap(source: SocketAddr) -> SocketAddr {
    match source {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => source,
        },
        SocketAddr::V4(_) => source,
    }
}

/// Why a datagram is not a Binding request this server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not STUN at all: first two bits set, or no magic cookie (RFC 3489, RTP, DTLS, noise).
    NotStun,
    /// STUN-shaped but broken: short header, length field wrong, attributes overrun, bad
    /// FINGERPRINT, or an attribute after FINGERPRINT.
    Malformed,
    /// An indication, success or error response.
    NotRequest,
    /// A request for a method other than Binding.
    NotBinding,
}

/// A valid Binding request: what the response needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindingRequest {
    /// The 96-bit transaction id, echoed in the response.
    pub transaction_id: [u8; 12],
    /// The request carried a correct FINGERPRINT, so the response carries one too.
    pub fingerprint: bool,
    /// Distinct comprehension-required attribute types we do not implement (first few).
    pub unknown: UnknownAttributes,
}

/// A short, duplicate-free list of attribute types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnknownAttributes {
    types: [u16; MAX_UNKNOWN_LISTED],
    len: usize,
}

impl UnknownAttributes {
    fn insert(&mut self, attr_type: u16) {
        if self.as_slice().contains(&attr_type) {
            return;
        }
        if let Some(slot) = self.types.get_mut(self.len) {
            *slot = attr_type;
            self.len += 1;
        }
    }

    /// The listed types, in the order first seen.
    pub(crate) fn as_slice(&self) -> &[u16] {
        self.types.get(..self.len).unwrap_or(&[])
    }

    /// No unknown comprehension-required attribute was seen.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Checks that `packet` is exactly one well-formed STUN Binding request (RFC 8489 §6.3).
pub(crate) fn parse_binding_request(packet: &[u8]) -> Result<BindingRequest, Invalid> {
    let Some((header, body)) = packet.split_first_chunk::<HEADER_LEN>() else {
        return Err(if looks_like_stun(packet) { Invalid::Malformed } else { Invalid::NotStun });
    };
    let [t0, t1, l0, l1, c0, c1, c2, c3, transaction_id @ ..] = *header;
    let message_type = u16::from_be_bytes([t0, t1]);
    if message_type & 0xC000 != 0 || u32::from_be_bytes([c0, c1, c2, c3]) != MAGIC_COOKIE {
        return Err(Invalid::NotStun);
    }
    // Over UDP one datagram holds exactly one message, padded to 4 bytes (RFC 8489 §5, §6.3).
    let length = usize::from(u16::from_be_bytes([l0, l1]));
    if length % 4 != 0 || length != body.len() {
        return Err(Invalid::Malformed);
    }
    if message_type & 0x0110 != 0 {
        return Err(Invalid::NotRequest);
    }
    if method(message_type) != METHOD_BINDING {
        return Err(Invalid::NotBinding);
    }

    let mut request = BindingRequest {
        transaction_id,
        fingerprint: false,
        unknown: UnknownAttributes::default(),
    };
    let mut after_integrity = false;
    let mut rest = body;
    let mut offset = HEADER_LEN;
    while !rest.is_empty() {
        if request.fingerprint {
            // FINGERPRINT is always the last attribute (RFC 8489 §14.7).
            return Err(Invalid::Malformed);
        }
        let Some((&[a0, a1, b0, b1], after)) = rest.split_first_chunk::<4>() else {
            return Err(Invalid::Malformed);
        };
        let attr_type = u16::from_be_bytes([a0, a1]);
        let value_len = usize::from(u16::from_be_bytes([b0, b1]));
        let padded_len = value_len.next_multiple_of(4);
        let Some((padded_value, next)) = after.split_at_checked(padded_len) else {
            return Err(Invalid::Malformed);
        };
        match attr_type {
            ATTR_FINGERPRINT => {
                let Some(&[f0, f1, f2, f3]) = padded_value.first_chunk::<4>() else {
                    return Err(Invalid::Malformed);
                };
                let covered = packet.get(..offset).ok_or(Invalid::Malformed)?;
                if value_len != 4
                    || u32::from_be_bytes([f0, f1, f2, f3]) != stun_fingerprint(covered)
                {
                    return Err(Invalid::Malformed);
                }
                request.fingerprint = true;
            }
            ATTR_MESSAGE_INTEGRITY | ATTR_MESSAGE_INTEGRITY_SHA256 => after_integrity = true,
            // Attributes after MESSAGE-INTEGRITY are ignored (RFC 8489 §14.5), so they cannot
            // make the request unknown.
            t if t < 0x8000 && !after_integrity && !UNDERSTOOD.contains(&t) => {
                request.unknown.insert(t);
            }
            _ => {}
        }
        offset += 4 + padded_len;
        rest = next;
    }
    Ok(request)
}

/// A datagram too short for a header "looks like" STUN when what there is of it is consistent
/// with one (first two bits zero and, as far as it goes, the magic cookie): that is a truncated
/// STUN message, counted as malformed rather than as foreign traffic.
fn looks_like_stun(packet: &[u8]) -> bool {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let first_ok = packet.first().is_none_or(|b| b & 0xC0 == 0);
    let cookie_ok = packet.iter().skip(4).zip(cookie.iter()).all(|(a, b)| a == b);
    first_ok && cookie_ok
}

/// The 12-bit method of a message type (RFC 8489 §5, figure 3: the class bits C1 and C0 sit at
/// bits 8 and 4 and are squeezed out).
fn method(message_type: u16) -> u16 {
    (message_type & 0x000F) | ((message_type >> 1) & 0x0070) | ((message_type >> 2) & 0x0F80)
}

/// Writes a Binding success response to `out` (cleared first): XOR-MAPPED-ADDRESS of `source`
/// (RFC 8489 §14.2), then FINGERPRINT if `fingerprint`.
pub(crate) fn write_success(
    out: &mut Vec<u8>,
    request: &BindingRequest,
    source: SocketAddr,
    fingerprint: bool,
) {
    write_header(out, BINDING_SUCCESS, &request.transaction_id);
    let source = unmap(source);
    let x_port = source.port() ^ ((MAGIC_COOKIE >> 16) as u16);
    match source.ip() {
        IpAddr::V4(ip) => {
            push_attribute_header(out, ATTR_XOR_MAPPED_ADDRESS, 8);
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&x_port.to_be_bytes());
            out.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            push_attribute_header(out, ATTR_XOR_MAPPED_ADDRESS, 20);
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&x_port.to_be_bytes());
            let mut key = [0u8; 16];
            let (cookie, tid) = key.split_at_mut(4);
            cookie.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            tid.copy_from_slice(&request.transaction_id);
            out.extend_from_slice(&(u128::from(ip) ^ u128::from_be_bytes(key)).to_be_bytes());
        }
    }
    finish(out, fingerprint);
}

/// Writes a Binding error response 420 (Unknown Attribute) listing the request's unknown
/// comprehension-required attributes (RFC 8489 §6.3.1, §14.8, §14.9). The reason phrase is
/// empty: it is optional text, and an empty one keeps the response within the size bound.
pub(crate) fn write_unknown_attributes(out: &mut Vec<u8>, request: &BindingRequest) {
    write_header(out, BINDING_ERROR, &request.transaction_id);
    push_attribute_header(out, ATTR_ERROR_CODE, 4);
    out.extend_from_slice(&[0, 0, 4, 20]);
    let listed = request.unknown.as_slice();
    let value_len = listed.len() * 2;
    push_attribute_header(out, ATTR_UNKNOWN_ATTRIBUTES, value_len as u16);
    for attr_type in listed {
        out.extend_from_slice(&attr_type.to_be_bytes());
    }
    out.resize(out.len() + (value_len.next_multiple_of(4) - value_len), 0);
    finish(out, request.fingerprint);
}

fn write_header(out: &mut Vec<u8>, message_type: u16, transaction_id: &[u8; 12]) {
    out.clear();
    out.extend_from_slice(&message_type.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(transaction_id);
}

fn push_attribute_header(out: &mut Vec<u8>, attr_type: u16, value_len: u16) {
    out.extend_from_slice(&attr_type.to_be_bytes());
    out.extend_from_slice(&value_len.to_be_bytes());
}

/// Sets the header's length field and appends FINGERPRINT when asked.
fn finish(out: &mut Vec<u8>, fingerprint: bool) {
    if fingerprint {
        let length = out.len() + 8 - HEADER_LEN;
        set_length(out, length);
        let value = stun_fingerprint(out);
        push_attribute_header(out, ATTR_FINGERPRINT, 4);
        out.extend_from_slice(&value.to_be_bytes());
    } else {
        let length = out.len() - HEADER_LEN;
        set_length(out, length);
    }
}

fn set_length(out: &mut [u8], length: usize) {
    if let Some(field) = out.get_mut(2..4) {
        // Responses are at most a few hundred bytes, far below u16::MAX.
        field.copy_from_slice(&(length as u16).to_be_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const TID: [u8; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    fn header(message_type: u16, length: u16) -> Vec<u8> {
        let mut p = message_type.to_be_bytes().to_vec();
        p.extend_from_slice(&length.to_be_bytes());
        p.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        p.extend_from_slice(&TID);
        p
    }

    #[test]
    fn method_and_class_bits_decode_as_in_rfc_8489_figure_3() {
        assert_eq!(method(0x0001), 1);
        assert_eq!(method(0x0101), 1);
        assert_eq!(method(0x0111), 1);
        assert_eq!(method(0x0003), 3); // TURN Allocate
        assert_eq!(method(0x3EEF), 0xFFF);
    }

    #[test]
    fn empty_binding_request_parses() {
        let request = parse_binding_request(&header(0x0001, 0)).unwrap();
        assert_eq!(request.transaction_id, TID);
        assert!(!request.fingerprint);
        assert!(request.unknown.is_empty());
    }

    #[test]
    fn short_packets_are_malformed_when_stun_shaped_and_not_stun_otherwise() {
        let full = header(0x0001, 0);
        assert_eq!(parse_binding_request(&full[..19]), Err(Invalid::Malformed));
        assert_eq!(parse_binding_request(&full[..3]), Err(Invalid::Malformed));
        assert_eq!(parse_binding_request(&[]), Err(Invalid::Malformed));
        assert_eq!(parse_binding_request(&[0x80, 0, 0]), Err(Invalid::NotStun));
        assert_eq!(parse_binding_request(&[0, 1, 0, 0, 0x99]), Err(Invalid::NotStun));
    }

    #[test]
    fn unknown_attributes_are_deduplicated_and_capped() {
        let mut p = header(0x0001, 0);
        for t in
            [0x0003u16, 0x0003, 0x0027].into_iter().chain(0x0040..0x0050).chain([0x8022, 0x0006])
        {
            p.extend_from_slice(&t.to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        }
        let len = (p.len() - HEADER_LEN) as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        let request = parse_binding_request(&p).unwrap();
        assert_eq!(request.unknown.as_slice().len(), MAX_UNKNOWN_LISTED);
        assert_eq!(&request.unknown.as_slice()[..3], &[0x0003, 0x0027, 0x0040]);
    }
}
