//! Contacts' device keys, pinned on first use, and safety numbers.
//!
//! A call's DTLS fingerprint is signed with the sender's device key, and the supernode tells us
//! that key. A supernode that wanted to sit in the media path would have to swap the key too, so
//! the first key seen for each (contact, device) is pinned in `peer_keys.json`; a different key
//! for the same device later is refused as "identity changed". A call pins a key only once the
//! key's signature over the call verified ([`Home::pin_signed_peer_key`]), never for a key the
//! supernode merely names (such as its `device_keys` list).
//!
//! A key the supernode invents (a new "device" of the contact) cannot be refused, since people do
//! get new phones; it is reported as [`KeyCheck::NewDevice`] when the contact has other pinned
//! devices, for the client to announce loudly, and caught by comparing safety numbers out of
//! band (`peerline verify USER`).

use std::collections::BTreeMap;

use sha2::{Digest, Sha512};

use crate::home::{Home, HomeError, read_optional, write_atomic};
use peerline_call_core::verify::VerifiedClaim;

const PEER_KEYS_FILE: &str = "peer_keys.json";

/// username → device id (as a string, for JSON) → Ed25519 public key, hex.
type Pins = BTreeMap<String, BTreeMap<String, String>>;

/// What [`Home::check_peer_key`] found (the call core's vocabulary, which reports it).
pub use peerline_call_core::KeyCheck;

/// A contact's device presented a key other than the pinned one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "IDENTITY CHANGED: {username}'s device {device_id} now presents key {presented}, but {pinned} \
     was pinned. The supernode (or someone in its place) may be trying to intercept the call. \
     Compare safety numbers with {username} over another channel (`peerline verify {username}`); \
     if they reinstalled Peerline, run `peerline verify {username} --forget` and call again."
)]
pub struct IdentityChanged {
    /// The contact.
    pub username: String,
    /// The device.
    pub device_id: i64,
    /// The pinned key, hex.
    pub pinned: String,
    /// The key presented now, hex.
    pub presented: String,
}

/// Failure of a pin check.
#[derive(Debug, thiserror::Error)]
pub enum PeerKeyError {
    /// The key is not the pinned one.
    #[error(transparent)]
    Changed(#[from] IdentityChanged),
    /// The pins file could not be read or written.
    #[error(transparent)]
    Home(#[from] HomeError),
}

impl Home {
    fn peer_keys_path(&self) -> std::path::PathBuf {
        self.dir().join(PEER_KEYS_FILE)
    }

    fn read_peer_keys(&self) -> Result<Pins, HomeError> {
        let path = self.peer_keys_path();
        match read_optional(&path)? {
            None => Ok(Pins::new()),
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| HomeError::CorruptPeerKeys { path, reason: e.to_string() }),
        }
    }

    fn write_peer_keys(&self, pins: &Pins) -> Result<(), HomeError> {
        let path = self.peer_keys_path();
        let text = serde_json::to_string_pretty(pins).map_err(|e| HomeError::CorruptPeerKeys {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, text.as_bytes()).map_err(|source| HomeError::Write { path, source })
    }

    /// Checks the device key of a call's peer against the pin, pinning it if the device is new.
    /// It takes a [`VerifiedClaim`], so a key is pinned only for a signature it made.
    pub fn pin_signed_peer_key(&self, claim: &VerifiedClaim) -> Result<KeyCheck, PeerKeyError> {
        let claim = claim.claim();
        self.check_peer_key(&claim.peer, claim.device_id, &claim.device_key)
    }

    /// Checks a contact's device key against the pin, pinning it if the device is new: a new
    /// device of a contact with other pinned devices is [`KeyCheck::NewDevice`].
    ///
    /// The caller vouches for the key: calls go through [`Home::pin_signed_peer_key`]; this is
    /// for a key checked some other way (a test that takes it from the device itself). To look
    /// at the pins without changing them, use [`Home::pinned_peer_keys`].
    pub fn check_peer_key(
        &self,
        username: &str,
        device_id: i64,
        key_hex: &str,
    ) -> Result<KeyCheck, PeerKeyError> {
        let key = key_hex.to_ascii_lowercase();
        let _lock = self.lock()?;
        let mut pins = self.read_peer_keys()?;
        let devices = pins.entry(username.to_owned()).or_default();
        match devices.get(&device_id.to_string()) {
            Some(pinned) if *pinned == key => Ok(KeyCheck::Known),
            Some(pinned) => Err(IdentityChanged {
                username: username.to_owned(),
                device_id,
                pinned: pinned.clone(),
                presented: key,
            }
            .into()),
            None => {
                let check =
                    if devices.is_empty() { KeyCheck::NewlyPinned } else { KeyCheck::NewDevice };
                devices.insert(device_id.to_string(), key);
                self.write_peer_keys(&pins)?;
                Ok(check)
            }
        }
    }

    /// The pinned keys of a contact's devices: `(device id, key hex)`, by device id.
    pub fn pinned_peer_keys(&self, username: &str) -> Result<Vec<(i64, String)>, HomeError> {
        let pins = self.read_peer_keys()?;
        let mut keys: Vec<(i64, String)> = pins
            .get(username)
            .into_iter()
            .flatten()
            .filter_map(|(id, key)| Some((id.parse().ok()?, key.clone())))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Forgets a contact's pinned keys (after they really changed devices). Returns whether
    /// there were any.
    pub fn forget_peer_keys(&self, username: &str) -> Result<bool, HomeError> {
        let _lock = self.lock()?;
        let mut pins = self.read_peer_keys()?;
        let removed = pins.remove(username).is_some();
        if removed {
            self.write_peer_keys(&pins)?;
        }
        Ok(removed)
    }
}

/// The safety number of two devices: 60 digits in 12 groups of 5, the same on both sides
/// (the two identities are sorted before hashing). Each identity is its username and device key,
/// so the number changes if either key does. SHA-512 is iterated to make searching for a
/// colliding key expensive.
pub fn safety_number(a_user: &str, a_key: &[u8], b_user: &str, b_key: &[u8]) -> String {
    let mut ids = [(a_user.as_bytes(), a_key), (b_user.as_bytes(), b_key)];
    ids.sort();
    let mut digest = Vec::new();
    for (user, key) in ids {
        let mut hash = Sha512::new();
        hash.update(b"peerline-safety-number-v1");
        hash.update(user);
        hash.update([0]);
        hash.update(key);
        let mut out = hash.finalize();
        for _ in 0..5200 {
            let mut h = Sha512::new();
            h.update(out);
            h.update(key);
            out = h.finalize();
        }
        digest.extend_from_slice(&out[..30]);
    }
    // 5 bytes → 5 decimal digits (mod 100000), 12 groups from 60 bytes.
    digest
        .chunks(5)
        .map(|c| {
            let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};
    use peerline_call_core::PeerClaim;
    use peerline_wire::{SdpRole, call_signature_payload};

    use super::*;

    #[test]
    fn keys_are_pinned_on_first_use_and_a_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        assert_eq!(home.check_peer_key("bob", 7, "aa").unwrap(), KeyCheck::NewlyPinned);
        assert_eq!(home.check_peer_key("bob", 7, "AA").unwrap(), KeyCheck::Known);
        assert_eq!(home.check_peer_key("bob", 8, "bb").unwrap(), KeyCheck::NewDevice);
        let err = home.check_peer_key("bob", 7, "cc").unwrap_err();
        assert!(err.to_string().contains("IDENTITY CHANGED"), "{err}");
        assert_eq!(home.pinned_peer_keys("bob").unwrap(), vec![(7, "aa".into()), (8, "bb".into())]);
        assert!(home.forget_peer_keys("bob").unwrap());
        assert_eq!(home.check_peer_key("bob", 7, "cc").unwrap(), KeyCheck::NewlyPinned);
    }

    /// bob's device `device_id` signs its answer to alice; `tamper` changes the claim after.
    fn answer_claim(
        key: &SigningKey,
        device_id: i64,
        tamper: impl Fn(&mut PeerClaim),
    ) -> PeerClaim {
        let fingerprint = "sha-256 AA:BB:CC";
        let payload = call_signature_payload(CALL, SdpRole::Answer, "bob", "alice", fingerprint);
        let mut claim = PeerClaim {
            peer: "bob".into(),
            device_id,
            device_key: hex::encode(key.verifying_key().to_bytes()),
            sdp: format!("v=0\r\na=fingerprint:{fingerprint}\r\n"),
            signature: hex::encode(key.sign(&payload).to_bytes()),
        };
        tamper(&mut claim);
        claim
    }

    const CALL: &str = "0123456789abcdef0123456789abcdef";

    /// What a call does with a claim: verify, then pin ([`crate`]'s callers cannot pin an
    /// unverified claim, since [`Home::pin_signed_peer_key`] takes only a [`VerifiedClaim`]).
    fn pin_if_signed(home: &Home, claim: &PeerClaim) -> Option<KeyCheck> {
        let verified = claim.verified(CALL, SdpRole::Answer, "alice")?;
        Some(home.pin_signed_peer_key(&verified).unwrap())
    }

    #[test]
    fn a_bad_signature_pins_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        let bob = SigningKey::from_bytes(&[2; 32]);
        let mallory = SigningKey::from_bytes(&[6; 32]);
        // The supernode names its own key for bob's device, but the answer is bob's signature.
        let swapped = answer_claim(&bob, 7, |c| {
            c.device_key = hex::encode(mallory.verifying_key().to_bytes());
        });
        let forged_fingerprint = answer_claim(&bob, 7, |c| {
            c.sdp = "v=0\r\na=fingerprint:sha-256 DD:EE:FF\r\n".into();
        });
        for claim in [swapped, forged_fingerprint] {
            assert_eq!(pin_if_signed(&home, &claim), None);
        }
        assert!(home.pinned_peer_keys("bob").unwrap().is_empty());
        let good = answer_claim(&bob, 7, |_| {});
        assert_eq!(pin_if_signed(&home, &good), Some(KeyCheck::NewlyPinned));
        assert_eq!(pin_if_signed(&home, &good), Some(KeyCheck::Known));
        assert_eq!(
            home.pinned_peer_keys("bob").unwrap(),
            vec![(7, hex::encode(bob.verifying_key().to_bytes()))]
        );
    }

    #[test]
    fn a_device_not_seen_before_of_a_known_contact_is_a_new_device() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::open(dir.path()).unwrap();
        let (phone, laptop) = (SigningKey::from_bytes(&[2; 32]), SigningKey::from_bytes(&[3; 32]));
        // First contact: trust on first use, nothing to compare with.
        assert_eq!(
            pin_if_signed(&home, &answer_claim(&phone, 1, |_| {})),
            Some(KeyCheck::NewlyPinned)
        );
        // bob (or the supernode, in bob's name) shows up with another device.
        let second = answer_claim(&laptop, 2, |_| {});
        assert_eq!(pin_if_signed(&home, &second), Some(KeyCheck::NewDevice));
        assert_eq!(pin_if_signed(&home, &second), Some(KeyCheck::Known), "announced once");
        // Other contacts are counted on their own.
        assert_eq!(home.check_peer_key("carol", 2, "cc").unwrap(), KeyCheck::NewlyPinned);
        assert_eq!(home.pinned_peer_keys("bob").unwrap().len(), 2);
        // After `verify --forget`, the next device is a first contact again.
        home.forget_peer_keys("bob").unwrap();
        assert_eq!(pin_if_signed(&home, &second), Some(KeyCheck::NewlyPinned));
    }

    #[test]
    fn safety_numbers_are_symmetric_and_key_dependent() {
        let n = safety_number("alice", &[1; 32], "bob", &[2; 32]);
        assert_eq!(n, safety_number("bob", &[2; 32], "alice", &[1; 32]));
        assert_ne!(n, safety_number("alice", &[1; 32], "bob", &[3; 32]));
        assert_eq!(n.split(' ').count(), 12);
        assert!(n.split(' ').all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
    }
}
