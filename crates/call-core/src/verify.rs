//! The peer's proof of identity in a call: its device key, as the supernode names it, and that
//! key's signature over the DTLS fingerprint of its SDP ([`call_signature_payload`]).
//!
//! The signature is checked here, before the key is pinned: a key is only ever pinned for a
//! signature it made, which [`VerifiedClaim`] (the only thing the pins accept from a call)
//! makes a matter of types. DTLS then completes only with a certificate matching the signed
//! fingerprint, so a supernode cannot put itself in the media path of a known device without the
//! call failing with "identity changed". What it can still do is present a device of its own
//! as a new device of the contact; that is why a new device is [`KeyCheck::NewDevice`], which
//! clients announce loudly, rather than a quiet first use.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use peerline_media::sdp_dtls_fingerprint;
use peerline_wire::{SdpRole, call_signature_payload};

/// What the peer's device claims: its key and its signature over its SDP's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerClaim {
    /// The peer's username.
    pub peer: String,
    /// Its device.
    pub device_id: i64,
    /// Its Ed25519 public key, hex, as the supernode forwarded it.
    pub device_key: String,
    /// The peer's SDP (offer or answer).
    pub sdp: String,
    /// Hex signature over [`call_signature_payload`].
    pub signature: String,
}

impl PeerClaim {
    /// The claim as a [`VerifiedClaim`] if it is signed by its key for this call, this role and
    /// these two users (the peer sent it to `me`); `None` otherwise.
    pub fn verified(&self, call_id: &str, role: SdpRole, me: &str) -> Option<VerifiedClaim> {
        signature_ok(self, call_id, role, me).then(|| VerifiedClaim(self.clone()))
    }
}

/// A [`PeerClaim`] whose signature verified ([`PeerClaim::verified`] is the only way to make
/// one): what a call may pin a device key for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaim(PeerClaim);

impl VerifiedClaim {
    /// The claim.
    pub fn claim(&self) -> &PeerClaim {
        &self.0
    }
}

/// What the pinned-key check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The key was pinned before and matches.
    Known,
    /// First device of this contact ever seen (trust on first use): now pinned.
    NewlyPinned,
    /// A device not seen before, of a contact whose other devices are pinned: now pinned. It may
    /// be the contact's new phone, or a supernode presenting a key of its own as one, so clients
    /// announce it loudly and point to the safety numbers.
    NewDevice,
}

impl KeyCheck {
    /// Whether the key was pinned by this check (a new contact or a new device).
    pub fn pinned_now(self) -> bool {
        matches!(self, KeyCheck::NewlyPinned | KeyCheck::NewDevice)
    }
}

/// Whether `claim` is signed by its key for this call, this role and these two users (the peer
/// sent it to `me`).
pub fn signature_ok(claim: &PeerClaim, call_id: &str, role: SdpRole, me: &str) -> bool {
    let Some(key) = hex::decode(&claim.device_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
    else {
        return false;
    };
    let Some(signature) =
        hex::decode(&claim.signature).ok().and_then(|b| <[u8; 64]>::try_from(b).ok())
    else {
        return false;
    };
    let Some(fingerprint) = sdp_dtls_fingerprint(&claim.sdp) else { return false };
    let payload = call_signature_payload(call_id, role, &claim.peer, me, &fingerprint);
    key.verify(&payload, &Signature::from_bytes(&signature)).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    const CALL: &str = "0123456789abcdef0123456789abcdef";

    fn sdp(fingerprint: &str) -> String {
        format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 {fingerprint}\r\n")
    }

    /// bob's device 3 signs an answer carrying `signed_fp`, and `sent_fp` is what arrives.
    fn claim(key: &SigningKey, signed_fp: &str, sent_fp: &str) -> PeerClaim {
        let fingerprint = format!("sha-256 {signed_fp}");
        let payload = call_signature_payload(CALL, SdpRole::Answer, "bob", "alice", &fingerprint);
        PeerClaim {
            peer: "bob".into(),
            device_id: 3,
            device_key: hex::encode(key.verifying_key().to_bytes()),
            sdp: sdp(sent_fp),
            signature: hex::encode(key.sign(&payload).to_bytes()),
        }
    }

    #[test]
    fn only_a_claim_signed_for_this_call_role_and_pair_verifies() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let good = claim(&key, "AA:BB", "AA:BB");
        let verified = good.verified(CALL, SdpRole::Answer, "alice").unwrap();
        assert_eq!(verified.claim(), &good);
        // A swapped fingerprint, another call, role or recipient, another device's key.
        assert!(claim(&key, "AA:BB", "CC:DD").verified(CALL, SdpRole::Answer, "alice").is_none());
        assert!(good.verified(&"f".repeat(32), SdpRole::Answer, "alice").is_none());
        assert!(good.verified(CALL, SdpRole::Offer, "alice").is_none());
        assert!(good.verified(CALL, SdpRole::Answer, "carol").is_none());
        let other = SigningKey::from_bytes(&[8; 32]);
        let swapped_key =
            PeerClaim { device_key: hex::encode(other.verifying_key().to_bytes()), ..good.clone() };
        assert!(swapped_key.verified(CALL, SdpRole::Answer, "alice").is_none());
        for junk in ["", "zz", &"ab".repeat(31)] {
            let bad = PeerClaim { device_key: junk.to_owned(), ..good.clone() };
            assert!(bad.verified(CALL, SdpRole::Answer, "alice").is_none(), "{junk:?}");
            let bad = PeerClaim { signature: junk.to_owned(), ..good.clone() };
            assert!(bad.verified(CALL, SdpRole::Answer, "alice").is_none(), "{junk:?}");
        }
    }

    #[test]
    fn new_contacts_and_new_devices_are_pinned_now() {
        assert!(!KeyCheck::Known.pinned_now());
        assert!(KeyCheck::NewlyPinned.pinned_now());
        assert!(KeyCheck::NewDevice.pinned_now());
    }
}
