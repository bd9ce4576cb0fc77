//! An answered call: timers, the lost supernode and its resume window, the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use peerline_call_core::{Action, CallConfig, CallEnd, OpResult, Step};
use peerline_media::{EndReason as MediaEnd, MediaEvent};
use peerline_wire::{CallEndReason, ErrorCode, Event, Request};

fn stop_requested(w: &World) -> bool {
    w.log.iter().any(|a| matches!(a, Action::StopMedia))
}

#[test]
fn hanging_up_tells_the_supernode_stops_the_media_and_ends_once_it_stopped() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    w.call.hang_up(w.now);
    w.collect();
    assert_eq!(w.requests(|r| matches!(r, Request::CallHangup { .. })), 1);
    assert!(stop_requested(&w));
    assert_eq!(w.outcome(), None, "ends only once the media stopped");
    w.media_ended(MediaEnd::Stopped);
    assert_eq!(w.outcome(), Some(Ok(CallEnd::HungUpHere)));
}

#[test]
fn the_peer_hanging_up_ends_with_the_supernodes_reason() {
    let mut w = World::callee(config());
    w.accepted();
    w.connect();
    w.event(Event::CallEnded { call_id: CALL_ID.into(), reason: CallEndReason::HungUp });
    assert!(stop_requested(&w));
    w.media_ended(MediaEnd::Stopped);
    assert_eq!(w.outcome(), Some(Ok(CallEnd::Remote(CallEndReason::HungUp))));
    assert_eq!(w.requests(|r| matches!(r, Request::CallHangup { .. })), 0);
}

#[test]
fn peer_closed_media_waits_for_call_ended_then_ends_as_hung_up() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    // DTLS close_notify overtakes the hang-up through the supernode.
    w.media_ended(MediaEnd::PeerClosed);
    assert_eq!(w.outcome(), None);
    w.advance(Duration::from_millis(400));
    w.event(Event::CallEnded { call_id: CALL_ID.into(), reason: CallEndReason::HungUp });
    assert_eq!(w.outcome(), Some(Ok(CallEnd::Remote(CallEndReason::HungUp))));
    assert_eq!(w.requests(|r| matches!(r, Request::CallHangup { .. })), 0);
}

#[test]
fn peer_closed_media_without_a_word_ends_after_the_wait_and_hangs_up() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    w.media_ended(MediaEnd::PeerClosed);
    w.advance(Duration::from_millis(999));
    assert_eq!(w.outcome(), None);
    w.advance(Duration::from_millis(1));
    assert_eq!(w.outcome(), Some(Ok(CallEnd::Media(MediaEnd::PeerClosed))));
    assert_eq!(w.requests(|r| matches!(r, Request::CallHangup { .. })), 1);
}

#[test]
fn no_path_within_the_connect_timeout_ends_as_no_media_path() {
    let mut w = World::callee(config());
    w.accepted();
    w.advance(Duration::from_secs(29));
    assert!(!stop_requested(&w));
    w.advance(Duration::from_secs(1));
    assert!(stop_requested(&w));
    w.media_ended(MediaEnd::Stopped);
    assert_eq!(w.outcome(), Some(Ok(CallEnd::Media(MediaEnd::ConnectTimeout))));
    assert_eq!(w.outcome().and_then(|o| o.ok()).map(|e| e.as_str()), Some("no_media_path"));
    assert_eq!(w.requests(|r| matches!(r, Request::CallHangup { .. })), 1);
}

#[test]
fn a_path_lost_for_fifteen_seconds_ends_the_call_but_one_that_comes_back_does_not() {
    let mut w = World::caller(CallConfig { stall_after: None, ..config() });
    w.answered();
    w.connect();
    w.media(MediaEvent::Disconnected);
    w.advance(Duration::from_secs(14));
    w.media(MediaEvent::Reconnected);
    w.advance(Duration::from_secs(60));
    assert!(!stop_requested(&w));
    w.media(MediaEvent::Disconnected);
    w.advance(Duration::from_secs(15));
    assert!(stop_requested(&w));
    w.media_ended(MediaEnd::Stopped);
    assert_eq!(w.outcome(), Some(Ok(CallEnd::Media(MediaEnd::PathLost))));
}

#[test]
fn supernode_lost_mid_call_resumes_within_the_window_and_the_call_goes_on() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    w.call.signaling_lost(w.now);
    let (op, _) = w.step(|s| *s == Step::Resume).expect("reconnects at once");
    assert!(!w.call.signaling_up());
    // The first attempt fails (the network is still moving); another follows a second later.
    w.result(op, OpResult::Broken);
    w.flowing(Duration::from_millis(999));
    assert!(w.step(|s| *s == Step::Resume).is_none(), "retries are spaced");
    w.flowing(Duration::from_millis(1));
    let (op, _) = w.step(|s| *s == Step::Resume).expect("tries again");
    w.result(op, OpResult::Done);
    assert!(w.call.signaling_up());
    // Back on the supernode: what this side wanted to say while away is said now.
    assert!(w.step(|s| matches!(s, Step::Probe { .. })).is_some(), "restarts after resuming");
    w.flowing(Duration::from_secs(60));
    assert_eq!(w.outcome(), None);
}

#[test]
fn resume_window_expired_ends_the_call_as_supernode_lost() {
    let mut w = World::callee(config());
    w.accepted();
    w.connect();
    w.call.signaling_lost(w.now);
    let mut attempts = 0;
    for _ in 0..100 {
        if let Some((op, _)) = w.step(|s| *s == Step::Resume) {
            attempts += 1;
            w.advance(Duration::from_secs(3)); // each attempt takes its full time
            w.result(op, OpResult::Broken);
        }
        w.flowing(Duration::from_millis(500));
        if stop_requested(&w) {
            break;
        }
    }
    assert!(stop_requested(&w), "{:?}", w.log);
    assert!((5..=10).contains(&attempts), "{attempts} attempts in 30 s");
    assert!(w.now - w.t0 <= Duration::from_secs(35));
    w.media_ended(MediaEnd::Stopped);
    assert_eq!(w.outcome(), Some(Ok(CallEnd::SupernodeLost)));
    assert_eq!(w.outcome().and_then(|o| o.ok()).map(|e| e.as_str()), Some("supernode_lost"));
}

#[test]
fn a_call_that_ended_while_away_ends_as_peer_gone_on_resume() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    w.call.signaling_lost(w.now);
    let (op, _) = w.step(|s| *s == Step::Resume).unwrap();
    w.result(op, OpResult::Refused(ErrorCode::NoSuchCall));
    w.media_ended(MediaEnd::Stopped);
    assert_eq!(w.outcome(), Some(Ok(CallEnd::Remote(CallEndReason::PeerGone))));
}

#[test]
fn hanging_up_while_away_does_not_talk_to_a_dead_connection() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    w.call.signaling_lost(w.now);
    let _ = w.step(|s| *s == Step::Resume).unwrap();
    w.call.hang_up(w.now);
    w.collect();
    assert_eq!(w.requests(|r| matches!(r, Request::CallHangup { .. })), 0);
    w.media_ended(MediaEnd::Stopped);
    assert_eq!(w.outcome(), Some(Ok(CallEnd::HungUpHere)));
}

#[test]
fn a_lost_connection_during_setup_fails_the_call() {
    let mut w = World::caller(config());
    w.placed();
    w.call.signaling_lost(w.now);
    w.collect();
    assert!(matches!(w.outcome(), Some(Err(_))));
    assert_eq!(w.ends(), 1);
}

#[test]
fn nothing_happens_after_the_end() {
    let mut w = World::caller(config());
    w.answered();
    w.call.hang_up(w.now);
    w.media_ended(MediaEnd::Stopped);
    let before = w.log.len();
    w.event(Event::CallEnded { call_id: CALL_ID.into(), reason: CallEndReason::HungUp });
    w.media(MediaEvent::Disconnected);
    w.call.signaling_lost(w.now);
    w.call.hang_up(w.now);
    w.advance(Duration::from_secs(3600));
    assert_eq!(w.log.len(), before, "{:?}", &w.log[before..]);
    assert_eq!(w.call.poll_timeout(), None);
}
