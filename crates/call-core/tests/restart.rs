//! ICE restarts: who offers, how often, what is sent again, when this side gathers anew.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use peerline_call_core::{Action, CallConfig, OpResult, Progress, Step};
use peerline_wire::{Event, Request};

fn restart_event(sdp: Option<&str>) -> Event {
    Event::CallRestart { call_id: CALL_ID.into(), sdp: sdp.map(str::to_owned) }
}

fn offers(w: &World) -> Vec<String> {
    w.log
        .iter()
        .filter_map(|a| match a {
            Action::Send { request: Request::CallRestart { sdp: Some(sdp), .. }, .. } => {
                Some(sdp.clone())
            }
            _ => None,
        })
        .collect()
}

/// A caller whose call connected and then went silent for `stall_after`.
fn stalled_caller() -> World {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    w.flowing(Duration::from_secs(5));
    w.take();
    w.advance(Duration::from_secs(2));
    w
}

#[test]
fn a_stall_makes_the_caller_offer_a_restart() {
    let mut w = stalled_caller();
    assert!(w.log.iter().any(|a| matches!(a, Action::Progress(Progress::Restarting))));
    assert!(caller_restart_offer(&mut w, "offer-1"));
    assert_eq!(offers(&w), ["offer-1"]);
    assert!(w.call.restart_offer_outstanding());
    w.event(restart_event(Some("answer-1")));
    let (_, step) = w.step(|s| matches!(s, Step::AcceptRestartAnswer(_))).unwrap();
    assert_eq!(step, Step::AcceptRestartAnswer("answer-1".into()));
    assert!(!w.call.restart_offer_outstanding());
}

#[test]
fn the_callee_never_offers_it_asks_and_answers() {
    let mut w = World::callee(config());
    w.accepted();
    w.connect();
    w.flowing(Duration::from_secs(3));
    w.take();
    w.advance(Duration::from_secs(2));
    let (_, ask) = w.sent(|r| matches!(r, Request::CallRestart { .. })).expect("asks");
    assert_eq!(ask, Request::CallRestart { call_id: CALL_ID.into(), sdp: None });
    assert!(w.step(|s| *s == Step::RestartIce).is_none(), "only the caller offers");
    let (op, _) = w.step(|s| matches!(s, Step::Probe { public_address: true })).unwrap();
    w.result(op, OpResult::Probed { public_ip: ip("198.51.100.2"), relay_died: false });
    // The caller's offer arrives: the callee answers it.
    w.event(restart_event(Some("offer-9")));
    let (op, _) = w.step(|s| matches!(s, Step::Probe { .. })).unwrap();
    w.result(op, OpResult::Probed { public_ip: ip("198.51.100.2"), relay_died: false });
    let (op, step) = w.step(|s| matches!(s, Step::AcceptRestartOffer(_))).unwrap();
    assert_eq!(step, Step::AcceptRestartOffer("offer-9".into()));
    w.result(op, OpResult::Sdp("answer-9".into()));
    assert_eq!(offers(&w), ["answer-9"]);
    // A request without SDP from the caller means nothing to a callee.
    w.take();
    w.event(restart_event(None));
    assert!(w.take().iter().all(|a| !matches!(a, Action::Run { .. } | Action::Send { .. })));
}

#[test]
fn offers_never_cross_an_unanswered_offer_is_sent_again_unchanged() {
    let mut w = stalled_caller();
    assert!(caller_restart_offer(&mut w, "offer-1"));
    // No answer: the next stall (two stall periods later) restarts again; the media hands back
    // the same offer, and no second restart runs while one is in progress.
    w.advance(Duration::from_secs(4));
    assert!(w.call.restarting());
    let (op, _) = w.step(|s| matches!(s, Step::Probe { .. })).unwrap();
    w.advance(Duration::from_secs(4));
    assert!(w.step(|s| matches!(s, Step::Probe { .. })).is_none(), "two restarts at once");
    w.result(op, OpResult::Probed { public_ip: ip("203.0.113.1"), relay_died: false });
    let (op, _) = w.step(|s| *s == Step::RestartIce).unwrap();
    w.result(op, OpResult::Sdp("offer-1".into()));
    let sent = offers(&w);
    assert_eq!(sent, ["offer-1", "offer-1"]);
}

#[test]
fn restarts_are_spaced() {
    let mut w = stalled_caller();
    assert!(caller_restart_offer(&mut w, "offer-1"));
    w.event(restart_event(Some("answer-1")));
    // Audio comes back, stalls again a moment later: not before the spacing is over.
    w.media(peerline_media::MediaEvent::Received);
    w.take();
    let c = CallConfig { restart_spacing: Duration::from_secs(10), ..config() };
    let mut w2 = World::caller(c);
    w2.answered();
    w2.connect();
    w2.advance(Duration::from_secs(2));
    assert!(caller_restart_offer(&mut w2, "o1"));
    w2.event(restart_event(Some("a1")));
    w2.media(peerline_media::MediaEvent::Received);
    w2.advance(Duration::from_secs(2)); // stalls again 4 s after the first restart
    assert!(w2.step(|s| matches!(s, Step::Probe { .. })).is_none(), "too soon");
    w2.advance(Duration::from_secs(8));
    assert!(w2.step(|s| matches!(s, Step::Probe { .. })).is_some(), "after the spacing");
}

#[test]
fn a_callees_request_is_answered_at_once_without_spacing() {
    let mut w = stalled_caller();
    assert!(caller_restart_offer(&mut w, "offer-1"));
    w.event(restart_event(None));
    assert!(caller_restart_offer(&mut w, "offer-1"), "the callee asked: offer again now");
}

#[test]
fn at_most_sixteen_restarts_per_call() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    for i in 0..40 {
        w.advance(Duration::from_secs(5));
        if caller_restart_offer(&mut w, &format!("offer-{i}")) {
            w.event(restart_event(Some("answer")));
        }
    }
    assert_eq!(w.call.restarts_sent(), 16);
    assert_eq!(offers(&w).len(), 16);
    // Asked by the callee after that: no more either.
    w.event(restart_event(None));
    assert!(w.step(|s| matches!(s, Step::Probe { .. })).is_none());
}

#[test]
fn a_moved_address_gathers_fresh_candidates_before_the_offer() {
    let mut w = stalled_caller();
    let (op, step) = w.step(|s| matches!(s, Step::Probe { .. })).unwrap();
    assert_eq!(step, Step::Probe { public_address: true });
    w.result(op, OpResult::Probed { public_ip: ip("203.0.113.200"), relay_died: false });
    let (op, _) = w.step(|s| *s == Step::Regather).expect("gathers anew");
    assert!(w.step(|s| *s == Step::RestartIce).is_none(), "the offer must carry them");
    w.result(
        op,
        OpResult::Gathered { lines: vec!["candidate:new".into()], public_ip: ip("203.0.113.200") },
    );
    // The caller's fresh candidates go in its offer, not trickled under the old credentials.
    assert_eq!(w.requests(|r| matches!(r, Request::CallCandidate { .. })), 1, "only the first");
    let (op, _) = w.step(|s| *s == Step::RestartIce).unwrap();
    w.result(op, OpResult::Sdp("offer-1".into()));
    w.event(restart_event(Some("answer-1")));
    // The new address is the reference from now on: the next probe at it is no move.
    w.take();
    w.advance(Duration::from_secs(4));
    let (op, _) = w.step(|s| matches!(s, Step::Probe { .. })).unwrap();
    w.result(op, OpResult::Probed { public_ip: ip("203.0.113.200"), relay_died: false });
    assert!(w.step(|s| *s == Step::Regather).is_none());
}

#[test]
fn an_unmoved_side_keeps_its_candidates() {
    let mut w = stalled_caller();
    let (op, _) = w.step(|s| matches!(s, Step::Probe { .. })).unwrap();
    w.result(op, OpResult::Probed { public_ip: ip("203.0.113.1"), relay_died: false });
    assert!(w.step(|s| *s == Step::Regather).is_none());
    assert!(w.step(|s| *s == Step::RestartIce).is_some());
}

#[test]
fn a_dead_relay_is_replaced_even_with_relay_only() {
    let mut w = World::caller(CallConfig { relay_only: true, ..config() });
    w.answered();
    w.connect();
    w.advance(Duration::from_secs(2));
    let (op, step) = w.step(|s| matches!(s, Step::Probe { .. })).unwrap();
    assert_eq!(step, Step::Probe { public_address: false }, "relay_only never asks STUN");
    w.result(op, OpResult::Probed { public_ip: None, relay_died: true });
    assert!(w.step(|s| *s == Step::Regather).is_some());
}

#[test]
fn a_callee_that_moved_trickles_its_fresh_candidates_when_it_asks() {
    let mut w = World::callee(config());
    w.accepted();
    w.connect();
    w.take();
    w.advance(Duration::from_secs(2));
    let before = w.requests(|r| matches!(r, Request::CallCandidate { .. }));
    let (op, _) = w.step(|s| matches!(s, Step::Probe { .. })).unwrap();
    w.result(op, OpResult::Probed { public_ip: ip("192.0.2.77"), relay_died: false });
    let (op, _) = w.step(|s| *s == Step::Regather).unwrap();
    w.result(
        op,
        OpResult::Gathered {
            lines: vec!["candidate:a".into(), "candidate:b".into()],
            public_ip: None,
        },
    );
    assert_eq!(w.requests(|r| matches!(r, Request::CallCandidate { .. })), before + 2);
}

#[test]
fn a_restart_request_without_an_answer_means_the_supernode_is_gone() {
    let mut w = stalled_caller();
    assert!(caller_restart_offer(&mut w, "offer-1"));
    let (op, _) = w.sent(|r| matches!(r, Request::CallRestart { .. })).unwrap();
    w.result(op, OpResult::Broken);
    assert!(!w.call.signaling_up());
    assert!(w.step(|s| *s == Step::Resume).is_some(), "reconnects");
}

#[test]
fn no_restart_while_the_supernode_is_away() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    w.call.signaling_lost(w.now);
    let _resume = w.step(|s| *s == Step::Resume).unwrap();
    w.advance(Duration::from_secs(2));
    assert!(w.step(|s| matches!(s, Step::Probe { .. })).is_none());
}
