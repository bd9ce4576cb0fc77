//! Certificate fingerprints: the SHA-256 of a certificate, which is a supernode's identity in pin
//! mode, and its text form (`AB:01:…`) in `known_supernodes` and in messages to the user.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Formats a certificate fingerprint as uppercase hex byte pairs joined by `:`
/// (`"AB:01:…"`, 95 characters), the form stored in `known_supernodes` and shown to users.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    let mut out = String::with_capacity(95);
    for (i, byte) in fp.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Parses a fingerprint written by [`format_fingerprint`], also in lowercase, or as 64 hex digits
/// without colons. Surrounding whitespace is ignored. Returns `None` for anything else.
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    let digits: String = if s.contains(':') {
        let pairs: Vec<&str> = s.split(':').collect();
        if pairs.len() != 32 || pairs.iter().any(|p| p.len() != 2) {
            return None;
        }
        pairs.concat()
    } else {
        s.to_owned()
    };
    let mut fp = [0u8; 32];
    hex::decode_to_slice(digits, &mut fp).ok()?;
    Some(fp)
}

/// The fingerprint of a certificate: SHA-256 of its DER encoding (the same value as
/// `openssl x509 -noout -fingerprint -sha256`).
pub fn fingerprint_of(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::tls::test_server::cert;

    #[test]
    fn fingerprint_format_and_parse_round_trip() {
        let fp: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(0xA0));
        let text = format_fingerprint(&fp);
        assert_eq!(text.len(), 95);
        assert!(text.starts_with("A0:C5:EA:"), "{text}");
        assert_eq!(text, text.to_uppercase());
        assert_eq!(parse_fingerprint(&text), Some(fp));
        assert_eq!(parse_fingerprint(&text.to_lowercase()), Some(fp));
        assert_eq!(parse_fingerprint(&hex::encode(fp)), Some(fp));
        assert_eq!(parse_fingerprint(&format!("  {}\n", hex::encode_upper(fp))), Some(fp));
        assert_eq!(format_fingerprint(&[0; 32]), ["00"; 32].join(":"));
    }

    #[test]
    fn parse_fingerprint_rejects_malformed() {
        let good = format_fingerprint(&[0xAB; 32]);
        for bad in [
            String::new(),
            good[..good.len() - 3].to_owned(),       // 31 bytes
            format!("{good}:AB"),                    // 33 bytes
            good.replacen("AB", "GG", 1),            // not hex
            good.replacen("AB:AB", "ABA:B", 1),      // misplaced colon
            format!("{}:", &good[..good.len() - 3]), // empty last pair
            "ab".repeat(31),                         // too short without colons
            "ab".repeat(33),                         // too long without colons
            good.replace(':', "-"),                  // wrong separator
            format!("SHA256:{}", hex::encode([0xAB; 32])), // a label is not part of it
        ] {
            assert_eq!(parse_fingerprint(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fingerprint_matches_openssl() {
        // `openssl x509 -in cert.pem -noout -fingerprint -sha256`
        let openssl = "26:60:26:76:23:65:47:A5:CA:80:48:68:A2:2D:78:AE:\
                       52:C6:74:0D:D5:67:BB:66:03:BF:D9:81:F0:DC:C9:C6";
        assert_eq!(format_fingerprint(&fingerprint_of(&cert())), openssl);
    }
}
