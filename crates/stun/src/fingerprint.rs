//! The FINGERPRINT attribute's checksum (RFC 8489 §14.7): CRC-32 as in ISO/IEC 13239 (the one
//! zlib and Ethernet use), XORed with 0x5354554e ("STUN").

/// What the CRC is XORed with, so that a STUN fingerprint differs from a plain CRC-32 of the same
/// bytes (RFC 8489 §14.7).
const STUN_XOR: u32 = 0x5354_554e;

/// Lookup table for the reflected polynomial 0xEDB88320, built at compile time.
const TABLE: [u32; 256] = build_table();

// Runs only at compile time (for `TABLE`): an out-of-bounds index would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

/// CRC-32 (ISO/IEC 13239) of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        // The index is a u8, so it is always inside the 256-entry table.
        let entry = TABLE.get(usize::from((crc as u8) ^ byte)).copied().unwrap_or(0);
        crc = entry ^ (crc >> 8);
    }
    !crc
}

/// The FINGERPRINT value for a message whose bytes before the attribute are `data` (with the
/// header's length field already counting the FINGERPRINT attribute).
pub(crate) fn stun_fingerprint(data: &[u8]) -> u32 {
    crc32(data) ^ STUN_XOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
