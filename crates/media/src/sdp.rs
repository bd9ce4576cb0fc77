//! The little SDP reading the media plane does itself (str0m parses the rest): the DTLS
//! fingerprint an SDP commits to, and the mid of its audio m-section.

use str0m::media::Mid;

/// The DTLS fingerprint an SDP commits to (its `a=fingerprint:` lines, RFC 8122 §5), normalized
/// like [`CallMedia::local_dtls_fingerprint`]: `sha-256 AB:CD:…`.
///
/// Signaling compares it with the fingerprint the sender signed before accepting the SDP.
/// `None` when the SDP has no fingerprint or several different ones: DTLS would accept a
/// certificate matching any of them, so only a single fingerprint can be vouched for.
pub fn sdp_dtls_fingerprint(sdp: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for value in sdp.lines().filter_map(|line| line.trim().strip_prefix("a=fingerprint:")) {
        let mut parts = value.split_whitespace();
        let (Some(hash), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        let normalized = format!("{} {}", hash.to_ascii_lowercase(), digest.to_ascii_uppercase());
        match &found {
            Some(previous) if *previous != normalized => return None,
            _ => found = Some(normalized),
        }
    }
    found
}

/// The mid of the first audio m-section of an SDP (RFC 8843 §7.1 `a=mid:`).
pub(crate) fn audio_mid(sdp: &str) -> Option<Mid> {
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(media) = line.strip_prefix("m=") {
            in_audio = media.starts_with("audio ");
        } else if let Some(mid) = line.strip_prefix("a=mid:")
            && in_audio
            && !mid.is_empty()
        {
            return Some(Mid::from(mid));
        }
    }
    None
}
