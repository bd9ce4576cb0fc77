//! Every way a call's setup can go, on both sides, with a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use peerline_call_core::{Action, CallEnd, Failure, KeyCheck, OpResult, Progress, Step};
use peerline_wire::{CallEndReason, ErrorCode, Event, Reply, Request, SdpRole};

fn ended(reason: CallEndReason) -> Event {
    Event::CallEnded { call_id: CALL_ID.into(), reason }
}

#[test]
fn caller_answered_trickles_after_placing_and_keeps_early_candidates() {
    let mut w = World::caller(config());
    assert!(matches!(&w.fresh[..], [Action::Send { request: Request::CallInvite { .. }, .. }]));
    assert_eq!(w.requests(|r| matches!(r, Request::CallCandidate { .. })), 0, "not before placing");
    w.placed();
    assert!(
        w.log.iter().any(|a| matches!(a, Action::Progress(Progress::Dialing { devices: 2, .. })))
    );
    assert_eq!(w.requests(|r| matches!(r, Request::CallCandidate { .. })), 1);
    w.advance(Duration::from_millis(300));
    w.event(Event::CallRinging { call_id: CALL_ID.into() });
    assert_eq!(w.call.timings().ringing, Some(Duration::from_millis(300)));
    // The callee's candidates may overtake its acceptance: they are kept for the media.
    w.event(Event::CallCandidate { call_id: CALL_ID.into(), candidate: "candidate:early".into() });
    w.event(accepted_event(&claim(SdpRole::Answer, PEER_FP, PEER_FP)));
    let (op, step) = w.step(|s| matches!(s, Step::CheckKey(_))).unwrap();
    assert!(matches!(step, Step::CheckKey(c) if c.device_id == 3));
    w.result(op, OpResult::KeyChecked(KeyCheck::NewlyPinned));
    let (op, _) = w.step(|s| matches!(s, Step::AcceptAnswer(_))).unwrap();
    assert!(!w.started_media(), "not before the answer is applied");
    w.result(op, OpResult::Done);
    let start = w.log.iter().find_map(|a| match a {
        Action::StartMedia { remote_candidates } => Some(remote_candidates.clone()),
        _ => None,
    });
    assert_eq!(start, Some(vec!["candidate:early".to_owned()]));
    assert!(w.log.iter().any(|a| matches!(
        a,
        Action::Progress(Progress::Answered { device_id: 3, key: KeyCheck::NewlyPinned, .. })
    )));
    assert_eq!(w.outcome(), None);
}

#[test]
fn caller_declined_or_cancelled_by_the_supernode_ends_with_its_reason() {
    for reason in [CallEndReason::Declined, CallEndReason::NoAnswer, CallEndReason::PeerGone] {
        let mut w = World::caller(config());
        w.placed();
        w.event(ended(reason));
        assert_eq!(w.outcome(), Some(Ok(CallEnd::Remote(reason))));
        assert!(!w.started_media());
    }
}

#[test]
fn busy_and_unavailable_callees_end_at_once() {
    for (code, reason) in [
        (ErrorCode::CalleeBusy, CallEndReason::Busy),
        (ErrorCode::CalleeUnavailable, CallEndReason::Unavailable),
    ] {
        let mut w = World::caller(config());
        let (op, _) = w.sent(|r| matches!(r, Request::CallInvite { .. })).unwrap();
        w.result(op, OpResult::Refused(code));
        assert_eq!(w.outcome(), Some(Ok(CallEnd::Remote(reason))));
        assert_eq!(w.requests(|r| matches!(r, Request::CallCandidate { .. })), 0);
    }
}

#[test]
fn non_contacts_and_lost_invites_fail_with_the_invites_error() {
    let mut w = World::caller(config());
    let (op, _) = w.sent(|r| matches!(r, Request::CallInvite { .. })).unwrap();
    w.result(op, OpResult::Refused(ErrorCode::NotContact));
    assert_eq!(w.outcome(), Some(Err(Failure::Op(op))));

    let mut w = World::caller(config());
    let (op, _) = w.sent(|r| matches!(r, Request::CallInvite { .. })).unwrap();
    w.result(op, OpResult::Broken);
    assert_eq!(w.outcome(), Some(Err(Failure::Op(op))));
}

#[test]
fn no_answer_within_the_ring_guard_cancels() {
    let mut w = World::caller(config());
    w.placed();
    w.advance(Duration::from_secs(59));
    assert_eq!(w.outcome(), None);
    w.advance(Duration::from_secs(1));
    assert_eq!(w.outcome(), Some(Ok(CallEnd::Remote(CallEndReason::NoAnswer))));
    assert_eq!(w.requests(|r| matches!(r, Request::CallCancel { .. })), 1);
}

#[test]
fn caller_hanging_up_while_ringing_cancels() {
    let mut w = World::caller(config());
    w.placed();
    w.call.hang_up(w.now);
    w.collect();
    assert_eq!(w.outcome(), Some(Ok(CallEnd::HungUpHere)));
    assert_eq!(w.requests(|r| matches!(r, Request::CallCancel { .. })), 1);
}

#[test]
fn a_bad_signature_on_the_answer_hangs_up_before_any_key_is_pinned() {
    let mut w = World::caller(config());
    w.placed();
    // The supernode (or a man in the middle) swapped the fingerprint in the answer.
    w.event(accepted_event(&claim(SdpRole::Answer, PEER_FP, OTHER_FP)));
    assert_eq!(w.outcome(), Some(Err(Failure::BadSignature { peer: PEER.into(), device_id: 3 })));
    assert!(w.step(|s| matches!(s, Step::CheckKey(_))).is_none(), "pinned a key it never verified");
    assert_eq!(w.requests(|r| matches!(r, Request::CallHangup { .. })), 1);
    assert!(!w.started_media());
}

#[test]
fn a_signature_for_the_other_role_is_refused() {
    // An offer's signature replayed as an answer.
    let mut w = World::caller(config());
    w.placed();
    w.event(accepted_event(&claim(SdpRole::Offer, PEER_FP, PEER_FP)));
    assert!(matches!(w.outcome(), Some(Err(Failure::BadSignature { .. }))));
}

#[test]
fn a_changed_key_hangs_up_with_the_key_checks_error() {
    let mut w = World::caller(config());
    w.placed();
    w.event(accepted_event(&claim(SdpRole::Answer, PEER_FP, PEER_FP)));
    let (op, _) = w.step(|s| matches!(s, Step::CheckKey(_))).unwrap();
    w.result(op, OpResult::Failed);
    assert_eq!(w.outcome(), Some(Err(Failure::Op(op))));
    assert_eq!(w.requests(|r| matches!(r, Request::CallHangup { .. })), 1);
    assert!(!w.started_media());
}

#[test]
fn callee_accepts_only_after_verifying_and_gathers_only_after_accepting() {
    let mut w = World::callee(config());
    let order: Vec<String> = {
        w.accepted();
        w.log
            .iter()
            .filter_map(|a| match a {
                Action::Run { step: Step::CheckKey(_), .. } => Some("key".into()),
                Action::Run { step: Step::AcceptOffer(_), .. } => Some("offer".into()),
                Action::Send { request: Request::CallAccept { .. }, .. } => Some("accept".into()),
                Action::Run { step: Step::Gather, .. } => Some("gather".into()),
                Action::Send { request: Request::CallCandidate { .. }, .. } => {
                    Some("candidate".into())
                }
                Action::StartMedia { .. } => Some("media".into()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(order, ["key", "offer", "accept", "gather", "candidate", "media"]);
    assert!(w.log.iter().any(|a| matches!(a, Action::Progress(Progress::Answered { .. }))));
}

#[test]
fn callee_declines_a_bad_signature_without_revealing_anything() {
    let mut w = World::callee_with(config(), claim(SdpRole::Offer, PEER_FP, OTHER_FP));
    assert!(matches!(w.outcome(), Some(Err(Failure::BadSignature { .. }))));
    assert_eq!(w.requests(|r| matches!(r, Request::CallDecline { busy: false, .. })), 1);
    assert_eq!(w.requests(|r| matches!(r, Request::CallAccept { .. })), 0);
    assert!(w.step(|s| *s == Step::Gather).is_none());
}

#[test]
fn callee_declines_a_changed_key() {
    let mut w = World::callee(config());
    let (op, _) = w.step(|s| matches!(s, Step::CheckKey(_))).unwrap();
    w.result(op, OpResult::Failed);
    assert_eq!(w.outcome(), Some(Err(Failure::Op(op))));
    assert_eq!(w.requests(|r| matches!(r, Request::CallDecline { busy: false, .. })), 1);
}

#[test]
fn callee_that_was_too_late_was_answered_elsewhere() {
    let mut w = World::callee(config());
    let (op, _) = w.step(|s| matches!(s, Step::CheckKey(_))).unwrap();
    w.result(op, OpResult::KeyChecked(KeyCheck::Known));
    let (op, _) = w.step(|s| matches!(s, Step::AcceptOffer(_))).unwrap();
    w.result(op, OpResult::Signed { sdp: sdp("33:44"), signature: "cd".repeat(64) });
    let (op, _) = w.sent(|r| matches!(r, Request::CallAccept { .. })).unwrap();
    w.result(op, OpResult::Refused(ErrorCode::NoSuchCall));
    assert_eq!(w.outcome(), Some(Ok(CallEnd::Remote(CallEndReason::AnsweredElsewhere))));
    assert!(w.step(|s| *s == Step::Gather).is_none(), "no address may go out");
}

#[test]
fn a_second_call_during_a_call_is_declined_busy() {
    let mut w = World::caller(config());
    w.answered();
    w.event(Event::CallIncoming {
        call_id: "other".into(),
        from: "carol".into(),
        display_name: "Carol".into(),
        device_id: 1,
        device_key: "00".repeat(32),
        sdp: sdp("01:02"),
        fingerprint_signature: "00".repeat(64),
    });
    let (_, request) = w.sent(|r| matches!(r, Request::CallDecline { .. })).unwrap();
    assert_eq!(request, Request::CallDecline { call_id: "other".into(), busy: true, reason: None });
    assert_eq!(w.outcome(), None, "this call goes on");
}

#[test]
fn events_of_other_calls_are_ignored() {
    let mut w = World::caller(config());
    w.placed();
    w.event(Event::CallEnded { call_id: "other".into(), reason: CallEndReason::HungUp });
    w.event(Event::CallAccepted {
        call_id: "other".into(),
        device_id: 1,
        device_key: String::new(),
        sdp: String::new(),
        fingerprint_signature: String::new(),
    });
    assert_eq!(w.outcome(), None);
    assert!(w.step(|_| true).is_none());
    let _ = Reply::Done;
}
