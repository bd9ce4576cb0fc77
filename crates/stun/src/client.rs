//! The client half: a Binding request and the reading of its answer, so a Peerline client can
//! learn its server-reflexive address (RFC 8489 §7, §14.2) from the supernode's responder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::message::{HEADER_LEN, MAGIC_COOKIE};

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// A Binding request with no attributes and the given transaction id.
pub fn binding_request(transaction_id: &[u8; 12]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    let (head, tid) = out.split_at_mut(8);
    head.copy_from_slice(&[
        (BINDING_REQUEST >> 8) as u8,
        BINDING_REQUEST as u8,
        0,
        0,
        (MAGIC_COOKIE >> 24) as u8,
        (MAGIC_COOKIE >> 16) as u8,
        (MAGIC_COOKIE >> 8) as u8,
        MAGIC_COOKIE as u8,
    ]);
    tid.copy_from_slice(transaction_id);
    out
}

/// The XOR-MAPPED-ADDRESS of a Binding success response to the request with
/// `transaction_id`; `None` for anything else (another transaction, an error, garbage).
pub fn mapped_address(packet: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let header = packet.get(..HEADER_LEN)?;
    let u16_at = |b: &[u8], i: usize| Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    if u16_at(header, 0)? != BINDING_SUCCESS
        || header.get(4..8)? != MAGIC_COOKIE.to_be_bytes()
        || header.get(8..20)? != transaction_id
    {
        return None;
    }
    let len = usize::from(u16_at(header, 2)?);
    let mut attrs = packet.get(HEADER_LEN..HEADER_LEN + len)?;
    while attrs.len() >= 4 {
        let kind = u16_at(attrs, 0)?;
        let alen = usize::from(u16_at(attrs, 2)?);
        let value = attrs.get(4..4 + alen)?;
        if kind == ATTR_XOR_MAPPED_ADDRESS {
            return decode_xor_address(value, transaction_id);
        }
        attrs = attrs.get((4 + alen).next_multiple_of(4).min(attrs.len())..)?;
    }
    None
}

fn decode_xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match value.get(1)? {
        0x01 => {
            let raw: [u8; 4] = value.get(4..8)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(u32::from_be_bytes(raw) ^ MAGIC_COOKIE))
        }
        0x02 => {
            let raw: [u8; 16] = value.get(4..20)?.try_into().ok()?;
            let mut key = [0u8; 16];
            let (cookie, tid) = key.split_at_mut(4);
            cookie.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            tid.copy_from_slice(transaction_id);
            IpAddr::V6(Ipv6Addr::from(u128::from_be_bytes(raw) ^ u128::from_be_bytes(key)))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::{Responder, ResponderConfig};

    #[test]
    fn the_responder_answers_our_request_with_the_source_address() {
        let mut responder = Responder::new(&ResponderConfig::default());
        let tid = [7u8; 12];
        let mut response = Vec::new();
        for source in ["192.0.2.7:4000", "[2001:db8::9]:5000"] {
            let source: SocketAddr = source.parse().unwrap();
            let outcome =
                responder.handle(&binding_request(&tid), source, Instant::now(), &mut response);
            assert!(outcome.has_response());
            assert_eq!(mapped_address(&response, &tid), Some(source));
            assert_eq!(mapped_address(&response, &[8u8; 12]), None, "another transaction");
        }
        assert_eq!(mapped_address(b"garbage", &tid), None);
        assert_eq!(mapped_address(&[], &tid), None);
    }
}
