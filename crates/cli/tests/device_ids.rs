//! Device ids with the real binaries (issue 13, defect 3): a removed device's id is never given to
//! a later device. Before the fix the next login took the removed device's id, and a contact who
//! had pinned the removed device's key saw the new device as "IDENTITY CHANGED" (verify said
//! `key_changed`, and calls answered by it were refused).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use peerline_media::write_tone_wav;
use peerline_testkit::{Online, Supernode, User};
use serde_json::Value;

/// Ids fit in a JavaScript `Number`.
const DEVICE_ID_END: i64 = 1 << 53;

/// `user` answers calls automatically with a tone.
fn answering(user: &User, dir: &Path, name: &str) -> Online {
    let tone = dir.join("660.wav");
    let heard = dir.join(format!("heard-{name}.wav"));
    user.online_with(&[
        "--auto-answer",
        "--play",
        tone.to_str().unwrap(),
        "--record",
        heard.to_str().unwrap(),
    ])
}

/// alice calls bob with `--json` for a second; returns the lines.
fn call_bob(alice: &User, dir: &Path, name: &str) -> Vec<Value> {
    let tone = dir.join("440.wav");
    let heard = dir.join(format!("alice-heard-{name}.wav"));
    let mut call = alice.start(&[
        "call",
        "bob",
        "--play",
        tone.to_str().unwrap(),
        "--record",
        heard.to_str().unwrap(),
        "--duration",
        "1",
    ]);
    let (code, stderr) = call.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "the call failed: {stderr}\n{:#?}", call.seen);
    call.seen.clone()
}

/// The id of the device `user` runs on.
fn device_id(user: &User) -> i64 {
    let devices = user.ok(&["devices"]);
    let this = devices.as_array().unwrap().iter().find(|d| d["current"] == true).unwrap();
    this["id"].as_i64().unwrap()
}

/// `verify bob` as alice: (device id, state) of each of bob's devices, by id.
fn verify_bob(alice: &User) -> Vec<(i64, String)> {
    let v = alice.ok(&["verify", "bob"]);
    let mut states: Vec<(i64, String)> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["device_id"].as_i64().unwrap(), d["state"].as_str().unwrap().to_owned()))
        .collect();
    states.sort();
    states
}

/// `states` sorted by id, as [`verify_bob`] returns them.
fn by_id(mut states: Vec<(i64, &str)>) -> Vec<(i64, String)> {
    states.sort();
    states.into_iter().map(|(id, state)| (id, state.to_owned())).collect()
}

#[test]
fn a_removed_device_id_is_not_reused_and_a_pinned_contact_sees_a_new_device() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = (User::new("alice", &node), User::new("bob", &node));
    alice.register();
    bob.register();
    alice.befriend(&bob);
    let dir = tempfile::tempdir().unwrap();
    write_tone_wav(dir.path().join("440.wav"), 440.0, 2.0).unwrap();
    write_tone_wav(dir.path().join("660.wav"), 660.0, 2.0).unwrap();

    // bob on two devices: a laptop (the first home) and a phone (a second home).
    let laptop = device_id(&bob);
    let phone_user = bob.another_device();
    let phone = device_id(&phone_user);
    assert_ne!(laptop, phone);
    for id in [laptop, phone] {
        assert!((1..DEVICE_ID_END).contains(&id), "device id {id} outside [1, 2^53)");
    }
    assert_ne!(phone.abs_diff(laptop), 1, "device ids are not a counter: {laptop}, {phone}");

    // alice calls bob and the phone answers: alice pins bob's phone key.
    let mut phone_online = answering(&phone_user, dir.path(), "phone");
    let lines = call_bob(&alice, dir.path(), "first");
    let answered = lines.iter().find(|l| l["event"] == "answered").unwrap();
    assert_eq!(
        (answered["device_id"].as_i64(), &answered["device_key"]),
        (Some(phone), &"pinned_now".into()),
        "{lines:#?}"
    );
    assert_eq!(verify_bob(&alice), by_id(vec![(laptop, "new_device"), (phone, "pinned")]));

    // bob removes the phone from the laptop; it is logged out.
    bob.ok(&["devices", "remove", &phone.to_string()]);
    phone_online
        .expect(|v| v["event"] == "session_ended" && v["reason"] == "device_removed", "logout");
    phone_online.stop();

    // bob logs in on a new device (a fresh home): it must not get the removed phone's id.
    let tablet_user = bob.another_device();
    let tablet = device_id(&tablet_user);
    assert_ne!(tablet, phone, "the new device got the removed device's id");
    assert_ne!(tablet, laptop);
    assert!((1..DEVICE_ID_END).contains(&tablet), "device id {tablet} outside [1, 2^53)");
    let listed: Vec<i64> = bob
        .ok(&["devices"])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [laptop, tablet], "bob's devices after the removal and the new login");

    // For alice the tablet is a new device of bob's, not a changed identity of the phone.
    // The phone stays pinned (and unlisted): nothing else can ever present a key for its id.
    assert_eq!(
        verify_bob(&alice),
        by_id(vec![(laptop, "new_device"), (phone, "not_listed"), (tablet, "new_device")])
    );
    let mut tablet_online = answering(&tablet_user, dir.path(), "tablet");
    let lines = call_bob(&alice, dir.path(), "second");
    let text = format!("{lines:#?}");
    assert!(!text.contains("IDENTITY CHANGED") && !text.contains("identity_changed"), "{text}");
    let announced = lines.iter().find(|l| l["event"] == "new_device").unwrap_or_else(|| {
        panic!("a new device of a pinned contact is announced: {lines:#?}");
    });
    assert_eq!(announced["device_id"], tablet);
    let answered = lines.iter().find(|l| l["event"] == "answered").unwrap();
    assert_eq!(
        (answered["device_id"].as_i64(), &answered["device_key"]),
        (Some(tablet), &"pinned_now".into()),
        "{lines:#?}"
    );
    tablet_online.stop();
    assert_eq!(
        verify_bob(&alice),
        by_id(vec![(laptop, "new_device"), (phone, "not_listed"), (tablet, "pinned")])
    );
}
