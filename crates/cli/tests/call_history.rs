//! `peerline calls`: the call history from the supernode, the same on every device of the
//! account — a call both sides report after it ended, and a call nobody answered, which the
//! supernode records by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use peerline_media::write_tone_wav;
use peerline_testkit::{Supernode, User};
use serde_json::Value;

fn calls(user: &User, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["calls"];
    args.extend_from_slice(extra);
    user.ok(&args)["calls"].as_array().unwrap().clone()
}

/// Waits (10 s at most) until `user`'s call log has `n` calls: the callee's report comes after
/// its side of the call ended, a moment after the caller's.
fn wait_for_calls(user: &User, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = calls(user, &[]);
        if list.len() >= n {
            return list;
        }
        assert!(Instant::now() < deadline, "{} has {list:#?}", user.name);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_device_lists_the_answered_and_the_missed_calls() {
    let node = Supernode::start().unwrap();
    let (alice, bob, carol) =
        (User::new("alice", &node), User::new("bob", &node), User::new("carol", &node));
    for u in [&alice, &bob, &carol] {
        u.register();
    }
    alice.befriend(&bob);
    carol.befriend(&bob);
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("440.wav");
    write_tone_wav(&tone, 440.0, 2.0).unwrap();
    let tone = tone.to_str().unwrap();
    let heard = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    // carol calls bob while he is offline: missed, recorded by the supernode.
    let missed = carol.run(&["call", "bob", "--play", tone, "--record", &heard("c.wav")]);
    assert_ne!(missed.code, Some(0), "nobody could answer: {missed:?}");

    // alice calls bob, who answers; 2 s of call.
    let (bh, ah) = (heard("b.wav"), heard("a.wav"));
    let mut answering = bob.online_with(&["--auto-answer", "--play", tone, "--record", &bh]);
    let call = alice.run(&["call", "bob", "--play", tone, "--record", &ah, "--duration", "2"]);
    assert_eq!(call.code, Some(0), "{call:?}");

    let mine = wait_for_calls(&alice, 1);
    assert_eq!(mine.len(), 1, "{mine:#?}");
    let c = &mine[0];
    assert_eq!((c["peer"].as_str(), c["outgoing"].as_bool()), (Some("bob"), Some(true)));
    assert_eq!(c["path"], "direct", "{c}");
    let talked = c["ended_at"].as_i64().unwrap() - c["answered_at"].as_i64().unwrap();
    assert!((1_000..10_000).contains(&talked), "about 2 s of call: {c}");

    let bobs = wait_for_calls(&bob, 2);
    answering.stop();
    assert_eq!(bobs[0]["peer"], "alice", "newest first: {bobs:#?}");
    assert_eq!(bobs[0]["outgoing"], false);
    assert_eq!(bobs[0]["call_id"], c["call_id"], "one call, two sides");
    assert!(bobs[0]["answered_at"].is_i64());
    assert_eq!(
        (bobs[1]["peer"].as_str(), bobs[1]["reason"].as_str()),
        (Some("carol"), Some("missed"))
    );
    assert!(bobs[1].get("answered_at").is_none());

    // Any device of bob's sees the same; --missed keeps the unanswered one.
    let phone = bob.another_device();
    assert_eq!(calls(&phone, &[]), bobs);
    let only_missed = calls(&phone, &["--missed"]);
    assert_eq!(only_missed.len(), 1);
    assert_eq!(only_missed[0]["peer"], "carol");
    // Paging: the page before the newest holds the older one.
    let newest_id = bobs[0]["id"].as_i64().unwrap().to_string();
    let older = calls(&phone, &["--before", &newest_id]);
    assert_eq!(older, bobs[1..].to_vec());

    // The text form says it in words.
    let text = phone.run_text(&["calls"]);
    assert!(text.contains("from alice") && text.contains("direct"), "{text}");
    assert!(text.contains("missed, from carol — not answered"), "{text}");
}
