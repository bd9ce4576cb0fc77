//! The contract of device ids: random in `[1, 2^53)`, never issued twice (not even after the
//! device is removed), and telling nothing about other accounts' devices.

use std::collections::HashSet;

use super::*;
use crate::{DEVICE_ID_END, Device, DeviceId};

/// A 32-byte key made from a number, distinct for distinct `n`.
fn key(n: u32) -> [u8; 32] {
    let mut key = [0xd0; 32];
    key[..4].copy_from_slice(&n.to_be_bytes());
    key
}

/// `upsert_device` of a new key.
async fn register(store: &dyn Store, user: UserId, n: u32) -> Device {
    ok("upsert_device", store.upsert_device(user, &key(n), &format!("device {n}"), T0).await)
}

/// Asserts `id` is a valid device id.
fn assert_in_range(id: DeviceId) {
    assert!(
        (1..DEVICE_ID_END).contains(&id),
        "device id {id} must be in [1, 2^53) so that a JavaScript client holds it exactly"
    );
}

/// An id once issued is never issued again, even after its device is removed: not to the next
/// device (the one a counter or `max(id) + 1` would have given it to), not to many more, not to
/// the same key logging in again, and not to another account.
pub async fn removed_device_ids_are_never_issued_again(store: &dyn Store) {
    let bob = account(store, "bob", "Bob").await.id;
    let carol = account(store, "carol", "Carol").await.id;
    let first = register(store, bob, 1).await;
    let second = register(store, bob, 2).await;
    // Removing the newest device is what let sequential allocation hand its id out again.
    assert!(ok("remove_device", store.remove_device(bob, second.id).await), "removed");
    let next = register(store, bob, 3).await;
    assert_ne!(next.id, second.id, "the next device must not get the removed device's id");
    assert_ne!(next.id, first.id, "nor a live device's id");

    // The same key logging in again after removal is a new device, with a new id.
    let again = register(store, bob, 2).await;
    assert_ne!(again.id, second.id, "a removed key registering again gets a new id");

    let mut removed = vec![second.id];
    for device in [first, next, again] {
        assert!(ok("remove_device", store.remove_device(bob, device.id).await), "removed");
        removed.push(device.id);
    }
    assert!(ok("devices", store.devices(bob).await).is_empty(), "bob has no devices left");

    let mut seen: HashSet<DeviceId> = removed.iter().copied().collect();
    for n in 10..210 {
        let owner = if n % 2 == 0 { bob } else { carol };
        let device = register(store, owner, n).await;
        assert_in_range(device.id);
        assert!(
            !removed.contains(&device.id),
            "device {n} got id {}, which a removed device had",
            device.id
        );
        assert!(seen.insert(device.id), "device id {} issued twice", device.id);
    }
}

/// Every device id, of a first device and of later ones, is in `[1, 2^53)`, and refreshing a
/// device keeps its id.
pub async fn device_ids_are_within_53_bits(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    for n in 0..50 {
        let device = register(store, alice, n).await;
        assert_in_range(device.id);
        let refreshed = register(store, alice, n).await;
        assert_eq!(refreshed.id, device.id, "a known key keeps its id");
    }
}

/// Ids are not a counter: two accounts' devices registered one after the other do not get
/// consecutive ids, and the ids are not all small numbers (which would tell how many devices
/// exist).
pub async fn device_ids_say_nothing_about_other_accounts(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await.id;
    let bob = account(store, "bob", "Bob").await.id;
    let mut ids = Vec::new();
    for n in 0..10 {
        let hers = register(store, alice, 2 * n).await;
        let his = register(store, bob, 2 * n + 1).await;
        assert_ne!(
            his.id.abs_diff(hers.id),
            1,
            "bob's device registered right after alice's got a consecutive id ({} then {})",
            hers.id,
            his.id
        );
        ids.extend([hers.id, his.id]);
    }
    for pair in ids.windows(2) {
        assert_ne!(pair[1].abs_diff(pair[0]), 1, "consecutive device ids: {ids:?}");
    }
    // Uniform over 2^53 values, 20 ids all below 2^32 happen with a probability of 2^-420.
    assert!(
        ids.iter().any(|&id| id >= 1 << 32),
        "device ids look like a counter of devices: {ids:?}"
    );
}
