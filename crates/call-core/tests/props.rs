//! Random sequences of events, results and timeouts against both sides of a call: the
//! invariants hold whatever the network, the peer and the supernode do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::*;
use peerline_call_core::{Action, KeyCheck, OpId, OpResult, Step};
use peerline_media::{EndReason as MediaEnd, MediaEvent};
use peerline_wire::{CallEndReason, ErrorCode, Event, Reply, Request, SdpRole};
use proptest::prelude::*;

/// One thing that happens to the call.
#[derive(Debug, Clone)]
enum Input {
    Advance(u64),
    Event(u8),
    Media(u8),
    /// Answer the oldest pending operation, in one of several ways.
    Answer(u8),
    HangUp,
    SignalingLost,
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (0u64..8_000).prop_map(Input::Advance),
        any::<u8>().prop_map(Input::Event),
        any::<u8>().prop_map(Input::Media),
        any::<u8>().prop_map(Input::Answer),
        any::<u8>().prop_map(Input::Answer),
        any::<u8>().prop_map(Input::Answer),
        Just(Input::HangUp),
        Just(Input::SignalingLost),
    ]
}

fn event(n: u8) -> Event {
    let id = if n.is_multiple_of(7) { "other".to_owned() } else { CALL_ID.to_owned() };
    match n % 6 {
        0 => Event::CallRinging { call_id: id },
        1 => accepted_event(&claim(
            SdpRole::Answer,
            PEER_FP,
            if n.is_multiple_of(5) { OTHER_FP } else { PEER_FP },
        )),
        2 => Event::CallCandidate { call_id: id, candidate: "candidate:x".into() },
        3 => Event::CallRestart { call_id: id, sdp: n.is_multiple_of(2).then(|| "sdp".to_owned()) },
        4 => Event::CallEnded { call_id: id, reason: CallEndReason::HungUp },
        _ => Event::CallRinging { call_id: id },
    }
}

fn media(n: u8) -> Result<MediaEvent, MediaEnd> {
    match n % 7 {
        0 => Ok(MediaEvent::Connected),
        1 | 2 => Ok(MediaEvent::Received),
        3 => Ok(MediaEvent::Disconnected),
        4 => Ok(MediaEvent::Reconnected),
        5 => Err(MediaEnd::PeerClosed),
        _ => Err(MediaEnd::Stopped),
    }
}

/// A plausible result for an operation, picked by `n`.
fn result_for(action: &Action, n: u8) -> OpResult {
    if n.is_multiple_of(9) {
        return OpResult::Broken;
    }
    if n.is_multiple_of(11) {
        return OpResult::Failed;
    }
    match action {
        Action::Send { request: Request::CallInvite { .. }, .. } => match n % 4 {
            0 => OpResult::Refused(ErrorCode::CalleeBusy),
            _ => OpResult::Reply(Reply::CallPlaced { call_id: CALL_ID.into(), ringing_devices: 1 }),
        },
        Action::Send { request: Request::CallAccept { .. }, .. } if n.is_multiple_of(5) => {
            OpResult::Refused(ErrorCode::NoSuchCall)
        }
        Action::Send { .. } => OpResult::Reply(Reply::Done),
        Action::Run { step, .. } => match step {
            Step::CheckKey(_) => OpResult::KeyChecked(KeyCheck::Known),
            Step::AcceptOffer(_) => OpResult::Signed { sdp: sdp("01"), signature: "00".into() },
            Step::Gather | Step::Regather => {
                OpResult::Gathered { lines: vec!["candidate:y".into()], public_ip: ip("192.0.2.1") }
            }
            Step::Probe { .. } => OpResult::Probed {
                public_ip: if n.is_multiple_of(3) { ip("192.0.2.9") } else { ip("203.0.113.1") },
                relay_died: n.is_multiple_of(13),
            },
            Step::RestartIce | Step::AcceptRestartOffer(_) => OpResult::Sdp(format!("sdp-{n}")),
            Step::Resume if n.is_multiple_of(4) => OpResult::Refused(ErrorCode::NoSuchCall),
            _ => OpResult::Done,
        },
        _ => OpResult::Done,
    }
}

fn check(caller: bool, inputs: Vec<Input>) -> Result<(), TestCaseError> {
    let mut w = if caller { World::caller(config()) } else { World::callee(config()) };
    let mut pending: Vec<(OpId, Action)> = Vec::new();
    let mut seen = 0;
    let mut media_running = false;
    for input in inputs {
        match input {
            Input::Advance(ms) => w.advance(Duration::from_millis(ms)),
            Input::Event(n) => w.event(event(n)),
            Input::Media(n) if media_running => match media(n) {
                Ok(e) => w.media(e),
                Err(end) => {
                    media_running = false;
                    w.media_ended(end);
                }
            },
            Input::Media(_) => {}
            Input::Answer(n) => {
                if !pending.is_empty() {
                    let (op, action) = pending.remove(0);
                    w.result(op, result_for(&action, n));
                }
            }
            Input::HangUp => {
                w.call.hang_up(w.now);
                w.collect();
            }
            Input::SignalingLost => {
                w.call.signaling_lost(w.now);
                w.collect();
            }
        }
        for action in &w.log[seen..] {
            match action {
                Action::Send { op, .. } | Action::Run { op, .. } => {
                    pending.push((*op, action.clone()))
                }
                Action::StartMedia { .. } => media_running = true,
                _ => {}
            }
        }
        // A stopped media reports its end (the driver always does).
        if media_running && w.log[seen..].iter().any(|a| matches!(a, Action::StopMedia)) {
            media_running = false;
            w.media_ended(MediaEnd::Stopped);
            for action in &w.log[seen..] {
                if let Action::Send { op, .. } | Action::Run { op, .. } = action
                    && !pending.iter().any(|(p, _)| p == op)
                {
                    pending.push((*op, action.clone()));
                }
            }
        }
        seen = w.log.len();
        // Never two restarts at once: at most one offer or answer is being made, so two
        // offers can never be outstanding (a second offer is the first one sent again).
        let making = pending
            .iter()
            .filter(|(op, _)| w.call.awaits(*op))
            .filter(|(_, a)| {
                matches!(
                    a,
                    Action::Run {
                        step: Step::Probe { .. }
                            | Step::Regather
                            | Step::RestartIce
                            | Step::AcceptRestartOffer(_),
                        ..
                    }
                )
            })
            .count();
        prop_assert!(making <= 1, "two restarts at once: {:?}", pending);
        prop_assert!(w.call.restarts_sent() <= 16);
        prop_assert!(w.ends() <= 1, "ended twice: {:?}", w.log);
    }
    // Drive to the end: hang up, answer everything, let the media stop.
    w.call.hang_up(w.now);
    w.collect();
    for _ in 0..64 {
        for action in &w.log[seen..] {
            if let Action::Send { op, .. } | Action::Run { op, .. } = action {
                pending.push((*op, action.clone()));
            }
        }
        let stop = w.log[seen..].iter().any(|a| matches!(a, Action::StopMedia));
        seen = w.log.len();
        if stop || (media_running && w.outcome().is_none() && pending.is_empty()) {
            media_running = false;
            w.media_ended(MediaEnd::Stopped);
            continue;
        }
        if let Some((op, action)) = (!pending.is_empty()).then(|| pending.remove(0)) {
            w.result(op, result_for(&action, 1));
        } else {
            w.advance(Duration::from_secs(40));
        }
    }
    prop_assert_eq!(w.ends(), 1, "every call ends exactly once: {:?}", w.log);
    // Nothing after the end.
    let end = w.log.iter().position(|a| matches!(a, Action::End(_))).unwrap();
    prop_assert_eq!(end, w.log.len() - 1, "actions after the end: {:?}", &w.log[end..]);
    prop_assert_eq!(w.call.poll_timeout(), None);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn caller_invariants(inputs in proptest::collection::vec(input(), 0..80)) {
        check(true, inputs)?;
    }

    #[test]
    fn callee_invariants(inputs in proptest::collection::vec(input(), 0..80)) {
        check(false, inputs)?;
    }
}

/// A one-hour call whose path stalls every five minutes (the peer's NAT forgets it): each stall
/// is a restart, the restarts stay within the per-call limit, and the call is up at the end.
#[test]
fn an_hour_with_a_stall_every_five_minutes() {
    let mut w = World::caller(config());
    w.answered();
    w.connect();
    let mut restarts = 0;
    for minute in 0..60 {
        w.flowing(Duration::from_secs(60));
        if minute % 5 == 4 {
            w.take();
            w.advance(Duration::from_secs(2)); // silence: the path stalled
            if caller_restart_offer(&mut w, &format!("offer-{minute}")) {
                restarts += 1;
                w.event(Event::CallRestart { call_id: CALL_ID.into(), sdp: Some("answer".into()) });
                let (op, _) = w.step(|s| matches!(s, Step::AcceptRestartAnswer(_))).unwrap();
                w.result(op, OpResult::Done);
            }
        }
    }
    assert_eq!(restarts, 12);
    assert_eq!(w.outcome(), None, "{:?}", w.outcome());
    assert!(w.call.signaling_up());
    w.call.hang_up(w.now);
    w.media_ended(MediaEnd::Stopped);
    assert_eq!(w.ends(), 1);
}
