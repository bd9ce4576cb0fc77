//! Shared by the STUN test binaries: STUN messages built byte by byte, so tests can make the
//! malformed ones no library would write.
#![allow(dead_code, clippy::indexing_slicing)]

use peerline_stun::MAGIC_COOKIE;

/// A STUN message: type, the magic cookie, `tid`, and raw attributes (each padded to 4 bytes),
/// with the header's length field set to match.
pub fn raw_stun(message_type: u16, tid: [u8; 12], attributes: &[(u16, &[u8])]) -> Vec<u8> {
    let mut p = message_type.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    p.extend_from_slice(&tid);
    for (t, value) in attributes {
        p.extend_from_slice(&t.to_be_bytes());
        p.extend_from_slice(&(value.len() as u16).to_be_bytes());
        p.extend_from_slice(value);
        p.resize(p.len().next_multiple_of(4), 0);
    }
    let len = (p.len() - 20) as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p
}
