//! The peer's proof of identity in a call: its device key, as the supernode names it, and that
//! key's signature over the DTLS fingerprint of its SDP ([`call_signature_payload`]).
//!
//! The signature is checked here, before the key is pinned: a key is only ever pinned for a
//! signature it made. DTLS then completes only with a certificate matching the signed
//! fingerprint, so a supernode cannot put itself in the media path without the call failing
//! with "identity changed".

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

/// What the pinned-key check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// The key was pinned before and matches.
    Known,
    /// First time this device is seen: now pinned.
    NewlyPinned,
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
