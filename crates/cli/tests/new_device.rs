//! A contact's new device with the real binaries: `peerline verify` pins nothing (the
//! supernode's list of keys is not signed by the devices), the first call pins the contact's
//! device quietly, and a call answered by a device not seen before is announced loudly — a
//! "NEW DEVICE" line, or a `new_device` JSON line — with the safety number that `verify` shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use peerline_media::write_tone_wav;
use peerline_testkit::{Online, Supernode, User, bin};
use serde_json::Value;

/// `user` answers calls automatically with a tone.
fn answering(user: &User, dir: &Path) -> Online {
    let tone = dir.join("660.wav");
    let heard = dir.join(format!("heard-{}.wav", rand_suffix()));
    user.online_with(&[
        "--auto-answer",
        "--play",
        tone.to_str().unwrap(),
        "--record",
        heard.to_str().unwrap(),
    ])
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn call_args(dir: &Path) -> Vec<String> {
    let tone = dir.join("440.wav");
    let heard = dir.join(format!("alice-heard-{}.wav", rand_suffix()));
    ["call", "bob", "--play", tone.to_str().unwrap(), "--record", heard.to_str().unwrap()]
        .into_iter()
        .map(str::to_owned)
        .chain(["--duration".into(), "1".into()])
        .collect()
}

/// alice calls bob with `--json`; returns the lines.
fn json_call(alice: &User, dir: &Path) -> Vec<Value> {
    let args = call_args(dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut call = alice.start(&args);
    let (code, stderr) = call.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "the call failed: {stderr}\n{:#?}", call.seen);
    call.seen.clone()
}

/// alice calls bob in human mode; returns standard output.
fn human_call(alice: &User, url: &str, dir: &Path) -> String {
    let out = Command::new(bin("peerline"))
        .env("PEERLINE_HOME", alice.home())
        .env("PEERLINE_SUPERNODE", url)
        .env("PEERLINE_PASSWORD", &alice.password)
        .env_remove("PEERLINE_CA")
        .args(call_args(dir))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// `verify bob --json`: device id → its entry.
fn verify(alice: &User) -> Vec<Value> {
    let v = alice.ok(&["verify", "bob"]);
    assert_eq!(v["username"], "bob");
    v["devices"].as_array().unwrap().clone()
}

fn states(devices: &[Value]) -> Vec<(i64, String)> {
    devices
        .iter()
        .map(|d| (d["device_id"].as_i64().unwrap(), d["state"].as_str().unwrap().to_owned()))
        .collect()
}

fn pinned_file(alice: &User) -> String {
    std::fs::read_to_string(alice.home().join("peer_keys.json")).unwrap_or_default()
}

/// bob's device: its id and key.
fn device(bob: &User) -> (i64, String) {
    let devices = bob.ok(&["devices"]);
    let this = devices.as_array().unwrap().iter().find(|d| d["current"] == true).unwrap();
    (this["id"].as_i64().unwrap(), this["public_key"].as_str().unwrap().to_owned())
}

#[test]
fn a_contacts_new_device_is_announced_and_listed_by_verify() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = (User::new("alice", &node), User::new("bob", &node));
    alice.register();
    bob.register();
    alice.befriend(&bob);
    let dir = tempfile::tempdir().unwrap();
    write_tone_wav(dir.path().join("440.wav"), 440.0, 2.0).unwrap();
    write_tone_wav(dir.path().join("660.wav"), 660.0, 2.0).unwrap();
    let (phone, phone_key) = device(&bob);

    // verify shows bob's device, and pins nothing: the supernode's list is not signed.
    for _ in 0..2 {
        let devices = verify(&alice);
        assert_eq!(states(&devices), [(phone, "not_pinned".to_owned())]);
        assert_eq!(devices[0]["public_key"], phone_key);
        assert_eq!(devices[0]["pinned"], false);
    }
    assert!(!pinned_file(&alice).contains("bob"), "verify pinned a key: {}", pinned_file(&alice));

    // The first call pins bob's device as the first contact, without a new-device line.
    let mut bob_phone = answering(&bob, dir.path());
    let lines = json_call(&alice, dir.path());
    assert!(lines.iter().all(|l| l["event"] != "new_device"), "{lines:#?}");
    let answered = lines.iter().find(|l| l["event"] == "answered").unwrap();
    assert_eq!(
        (answered["device_id"].as_i64(), &answered["device_key"]),
        (Some(phone), &"pinned_now".into())
    );
    assert!(pinned_file(&alice).contains(&phone_key));
    bob_phone.stop();

    // bob logs in on a laptop; verify lists it as new before any call, and still pins nothing.
    let laptop_user = bob.another_device();
    let (laptop, laptop_key) = device(&laptop_user);
    let devices = verify(&alice);
    assert_eq!(states(&devices), [(phone, "pinned".to_owned()), (laptop, "new_device".to_owned())]);
    let laptop_number = devices[1]["safety_number"].as_str().unwrap().to_owned();
    assert!(!pinned_file(&alice).contains(&laptop_key));

    // The laptop answers: a loud line, with the key and the safety number verify shows.
    let mut bob_laptop = answering(&laptop_user, dir.path());
    let out = human_call(&alice, &node.url, dir.path());
    let expected = format!(
        "NEW DEVICE: bob has a new device {laptop} (key {}…, safety number {laptop_number}). If \
         bob did not add a device, someone may be listening in: compare safety numbers with \
         `peerline verify bob`.",
        &laptop_key[..16]
    );
    let lines: Vec<&str> = out.lines().collect();
    let at = lines.iter().position(|l| *l == expected).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(lines[at + 1], format!("Answered by bob's device {laptop}"), "{out}");
    bob_laptop.stop();
    let devices = verify(&alice);
    assert_eq!(states(&devices), [(phone, "pinned".to_owned()), (laptop, "pinned".to_owned())]);
    assert_eq!(devices[1]["safety_number"], laptop_number.as_str());

    // A third device, in JSON: a new_device line before the answered line.
    let tablet_user = bob.another_device();
    let (tablet, tablet_key) = device(&tablet_user);
    let mut bob_tablet = answering(&tablet_user, dir.path());
    let lines = json_call(&alice, dir.path());
    let at = lines
        .iter()
        .position(|l| l["event"] == "new_device")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let announced = &lines[at];
    assert_eq!(announced["peer"], "bob");
    assert_eq!(announced["device_id"], tablet);
    assert_eq!(announced["public_key"], tablet_key.as_str());
    assert_eq!(lines[at + 1]["event"], "answered");
    assert_eq!(lines[at + 1]["device_key"], "pinned_now");
    bob_tablet.stop();

    // verify lists every pinned device with its safety number, in human form too.
    let devices = verify(&alice);
    assert_eq!(
        states(&devices),
        [(phone, "pinned".into()), (laptop, "pinned".into()), (tablet, "pinned".into())]
    );
    assert_eq!(devices[2]["safety_number"], announced["safety_number"]);
    let out = Command::new(bin("peerline"))
        .env("PEERLINE_HOME", alice.home())
        .env("PEERLINE_SUPERNODE", &node.url)
        .args(["verify", "bob"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for (id, d) in [phone, laptop, tablet].iter().zip(&devices) {
        let number = d["safety_number"].as_str().unwrap();
        assert!(text.contains(&format!("  device {id} (")), "{text}");
        assert!(text.contains(&format!("): {number} — pinned")), "{text}");
    }
}
