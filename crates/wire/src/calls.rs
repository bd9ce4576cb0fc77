//! Call signaling types that several messages share, the bytes a device signs to vouch for its
//! DTLS fingerprint, and the limits on call fields.
//!
//! The supernode carries offers, answers and candidates but must not be able to put itself in the
//! media path. Each side signs the DTLS fingerprint of its SDP with its device key
//! ([`call_signature_payload`]); the other side checks the signature against that device's key,
//! which it pins on first use. A supernode that swaps the fingerprint breaks the signature; one
//! that swaps the key too is caught by the pin (or by comparing safety numbers).

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::messages::{DeviceId, TimestampMs};

/// A call id: 32 lowercase hex characters (128 random bits) chosen by the caller.
pub type CallId = String;

/// Longest SDP offer or answer, in bytes.
pub const MAX_SDP_BYTES: usize = 8 * 1024;

/// Longest trickled candidate, in bytes.
pub const MAX_CANDIDATE_BYTES: usize = 512;

/// Which half of the offer/answer exchange a signature vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpRole {
    /// The caller's offer.
    Offer,
    /// The callee's answer.
    Answer,
}

impl SdpRole {
    fn as_str(self) -> &'static str {
        match self {
            SdpRole::Offer => "offer",
            SdpRole::Answer => "answer",
        }
    }
}

/// The bytes a device signs (Ed25519) to vouch for the DTLS fingerprint of its offer or answer.
///
/// The call id, the role and both usernames are bound in, so a signature cannot be replayed
/// into another call, turned from an offer into an answer, or moved to another pair of users.
/// `fingerprint` is the `a=fingerprint:` value as it appears in the SDP (`sha-256 AB:CD:…`).
pub fn call_signature_payload(
    call_id: &str,
    role: SdpRole,
    from: &str,
    to: &str,
    fingerprint: &str,
) -> Vec<u8> {
    format!("peerline-call-v1\n{call_id}\n{}\n{from}\n{to}\n{}", role.as_str(), fingerprint.trim())
        .into_bytes()
}

/// Why a call ended, as told to each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEndReason {
    /// The callee declined.
    Declined,
    /// The callee is in another call, or every device said busy.
    Busy,
    /// The caller gave up before an answer.
    Cancelled,
    /// Nobody answered within 45 seconds.
    NoAnswer,
    /// Another device of the callee answered (sent to the devices that rang).
    AnsweredElsewhere,
    /// The other side hung up.
    HungUp,
    /// The other side's connection to the supernode dropped.
    PeerGone,
    /// The callee has no device online.
    Unavailable,
    /// The callee's device that rang has no microphone or speaker, so it could not take the
    /// call (a device's refusal: see [`CallEndReason::is_device_refusal`]).
    NoAudioDevice,
    /// A party accepts calls only through a TURN relay and the network has none configured, so
    /// the call could not carry media (a device's refusal, or the caller's own check).
    NoRelay,
    /// A reason this build does not know (from a newer supernode).
    #[serde(other)]
    Unknown,
}

impl CallEndReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Declined => "declined",
            Self::Busy => "busy",
            Self::Cancelled => "cancelled",
            Self::NoAnswer => "no_answer",
            Self::AnsweredElsewhere => "answered_elsewhere",
            Self::HungUp => "hung_up",
            Self::PeerGone => "peer_gone",
            Self::Unavailable => "unavailable",
            Self::NoAudioDevice => "no_audio_device",
            Self::NoRelay => "no_relay",
            Self::Unknown => "unknown",
        }
    }

    /// Whether a callee device may give this reason in `call_decline`: it says why that device
    /// cannot take the call, and the supernode passes it on to the caller.
    pub fn is_device_refusal(self) -> bool {
        matches!(self, Self::NoAudioDevice | Self::NoRelay)
    }
}

/// A call nobody answered, kept until a device of the callee acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissedCall {
    /// Server-assigned id, for `ack_missed_calls`.
    pub id: i64,
    /// The call.
    pub call_id: CallId,
    /// The caller.
    pub from: String,
    /// When the call ended unanswered (when the supernode recorded it).
    pub at: TimestampMs,
}

/// One device's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKey {
    /// Device id.
    pub device_id: DeviceId,
    /// Ed25519 public key, 32 bytes, lowercase hex.
    pub public_key: String,
    /// The name the device gave.
    #[serde(default)]
    pub name: String,
}

/// Checks a call id: exactly 32 lowercase hex characters.
pub fn validate_call_id(id: &str) -> Result<(), ErrorCode> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(ErrorCode::InvalidArgument)
    }
}

/// Checks an SDP offer or answer: non-empty, at most [`MAX_SDP_BYTES`], starts with `v=0`.
pub fn validate_sdp(sdp: &str) -> Result<(), ErrorCode> {
    if sdp.len() > MAX_SDP_BYTES || !sdp.starts_with("v=0") {
        Err(ErrorCode::InvalidArgument)
    } else {
        Ok(())
    }
}

/// Whether an SDP carries network addresses of its sender: candidate lines, or a connection
/// address other than the `0.0.0.0`/`::` placeholder. An invite must not (the callee's side is
/// protected by sending its candidates only after it accepts; the caller's by the supernode
/// holding them until then).
pub fn sdp_has_addresses(sdp: &str) -> bool {
    sdp.lines().map(str::trim).any(|line| {
        line.starts_with("a=candidate:")
            || line.strip_prefix("c=IN IP4 ").is_some_and(|a| a.trim() != "0.0.0.0")
            || line.strip_prefix("c=IN IP6 ").is_some_and(|a| a.trim() != "::")
    })
}

/// Checks a trickled candidate: at most [`MAX_CANDIDATE_BYTES`], a `candidate:` attribute
/// (with or without `a=`), printable ASCII only.
pub fn validate_candidate(candidate: &str) -> Result<(), ErrorCode> {
    let body = candidate.strip_prefix("a=").unwrap_or(candidate);
    if candidate.len() > MAX_CANDIDATE_BYTES
        || !body.starts_with("candidate:")
        || !candidate.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        Err(ErrorCode::InvalidArgument)
    } else {
        Ok(())
    }
}

/// Checks a hex-encoded Ed25519 signature: 64 bytes as 128 lowercase hex characters.
pub fn validate_signature(sig: &str) -> Result<(), ErrorCode> {
    if sig.len() == 128 && sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(ErrorCode::InvalidArgument)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn call_ids() {
        assert!(validate_call_id(&"a1".repeat(16)).is_ok());
        for bad in ["", "A1".repeat(16).as_str(), &"a".repeat(31), &"g".repeat(32)] {
            assert!(validate_call_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offers_with_addresses_are_recognized() {
        let clean = "v=0\r\nc=IN IP4 0.0.0.0\r\na=fingerprint:sha-256 AA\r\n";
        assert!(!sdp_has_addresses(clean));
        assert!(sdp_has_addresses("v=0\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n"));
        assert!(sdp_has_addresses("v=0\r\nc=IN IP4 192.0.2.1\r\n"));
        assert!(sdp_has_addresses("v=0\r\nc=IN IP6 2001:db8::1\r\n"));
    }

    #[test]
    fn candidates_and_sdp_are_bounded() {
        assert!(validate_candidate("candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host").is_ok());
        assert!(validate_candidate("a=candidate:1 1 udp 1 ::1 5 typ host").is_ok());
        assert!(validate_candidate("candidate:\n1").is_err());
        assert!(validate_candidate(&format!("candidate:{}", "x".repeat(600))).is_err());
        assert!(validate_candidate("typ host").is_err());
        assert!(validate_sdp("v=0\r\n").is_ok());
        assert!(validate_sdp("hello").is_err());
        assert!(validate_sdp(&format!("v=0{}", "x".repeat(MAX_SDP_BYTES))).is_err());
    }

    #[test]
    fn the_payload_binds_call_role_and_users() {
        let a = call_signature_payload("c", SdpRole::Offer, "alice", "bob", "sha-256 AA");
        let b = call_signature_payload("c", SdpRole::Answer, "alice", "bob", "sha-256 AA");
        let c = call_signature_payload("c", SdpRole::Offer, "bob", "alice", "sha-256 AA");
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
