//! Call signaling in the hub with a fake clock: ringing every device, first answer wins, decline,
//! busy, cancel, no-answer timeout, hang-up, dropped connections, and the privacy rule that
//! candidates reach only the device that answered, and only after it answered.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use peerline_supernode_core::{
    CallAnswer, CallInvite, ConnId, Hub, HubConfig, InviteRefused, Link, OnlineLogin, Output,
};
use peerline_wire::{CallEndReason, ErrorCode, Event, Status};

const ALICE: i64 = 1;
const BOB: i64 = 2;
const CAROL: i64 = 3;
const A: ConnId = ConnId(1);
const B1: ConnId = ConnId(21);
const B2: ConnId = ConnId(22);
const C: ConnId = ConnId(3);

fn login(hub: &mut Hub, conn: ConnId, user: i64, device: i64, now: Instant) {
    hub.connect(conn, now);
    assert!(
        hub.login(
            conn,
            OnlineLogin {
                user_id: user,
                username: format!("user{user}"),
                device_id: device,
                status: Status::Online,
                contacts: [ALICE, BOB, CAROL]
                    .into_iter()
                    .filter(|u| *u != user)
                    .map(|peer| Link { peer, mutual: true, version: 1 })
                    .collect(),
            },
            now,
        )
    );
}

/// Alice on one device, Bob on two, Carol on one; outputs of the logins discarded.
fn hub(now: Instant) -> Hub {
    let mut hub = Hub::new(HubConfig::default(), now);
    login(&mut hub, A, ALICE, 10, now);
    login(&mut hub, B1, BOB, 21, now);
    login(&mut hub, B2, BOB, 22, now);
    login(&mut hub, C, CAROL, 30, now);
    hub.drain_outputs();
    hub
}

fn id(n: u8) -> String {
    format!("{n:02x}").repeat(16)
}

fn invite(call: u8, caller: i64, device: i64, callee: i64) -> CallInvite {
    CallInvite {
        call_id: id(call),
        caller,
        caller_name: format!("user{caller}"),
        caller_display_name: format!("User {caller}"),
        caller_device: device,
        caller_device_key: "ab".repeat(32),
        callee,
        sdp: "v=0\r\n".into(),
        fingerprint_signature: "cd".repeat(64),
    }
}

fn answer(device: i64) -> CallAnswer {
    CallAnswer {
        device_id: device,
        device_key: "ef".repeat(32),
        sdp: "v=0\r\nanswer".into(),
        fingerprint_signature: "01".repeat(64),
    }
}

/// Call events per connection, in order; missed calls as `(callee, caller)`.
#[derive(Debug, Default)]
struct Seen {
    events: Vec<(ConnId, Event)>,
    missed: Vec<(i64, i64)>,
}

impl Seen {
    fn of(hub: &mut Hub) -> Self {
        let mut seen = Seen::default();
        for o in hub.drain_outputs() {
            match o {
                Output::Send { conns, event } => {
                    for c in conns {
                        seen.events.push((c, event.clone()));
                    }
                }
                Output::MissedCall { callee, caller, .. } => seen.missed.push((callee, caller)),
                Output::Close { .. }
                | Output::Bus { .. }
                | Output::RegisterCall { .. }
                | Output::UnregisterCall { .. } => {}
            }
        }
        seen
    }

    fn ended(&self, conn: ConnId) -> Vec<CallEndReason> {
        self.events
            .iter()
            .filter(|(c, _)| *c == conn)
            .filter_map(|(_, e)| match e {
                Event::CallEnded { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }

    fn to(&self, conn: ConnId) -> Vec<&Event> {
        self.events.iter().filter(|(c, _)| *c == conn).map(|(_, e)| e).collect()
    }
}

#[test]
fn an_invite_rings_every_device_and_the_first_answer_wins() {
    let now = Instant::now();
    let mut hub = hub(now);
    assert_eq!(hub.call_invite(A, invite(1, ALICE, 10, BOB), now), Ok(2));
    let seen = Seen::of(&mut hub);
    for device in [B1, B2] {
        assert!(matches!(seen.to(device)[..], [Event::CallIncoming { .. }]), "{seen:?}");
    }
    assert!(seen.to(A).is_empty() && seen.to(C).is_empty());

    // Both ring; the caller hears it once.
    hub.call_ringing(B1, &id(1)).unwrap();
    hub.call_ringing(B2, &id(1)).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.to(A), vec![&Event::CallRinging { call_id: id(1) }]);

    hub.call_accept(B2, &id(1), answer(22)).unwrap();
    let seen = Seen::of(&mut hub);
    assert!(matches!(seen.to(A)[..], [Event::CallAccepted { device_id: 22, .. }]), "{seen:?}");
    assert_eq!(seen.ended(B1), vec![CallEndReason::AnsweredElsewhere]);
    assert!(seen.to(B2).is_empty());

    // The loser is too late.
    assert_eq!(hub.call_accept(B1, &id(1), answer(21)).unwrap_err().code, ErrorCode::NoSuchCall);
    assert_eq!(hub.call_ringing(B1, &id(1)).unwrap_err().code, ErrorCode::NoSuchCall);
}

#[test]
fn candidates_reach_only_the_answering_device_and_only_after_the_answer() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    hub.call_candidate(A, &id(1), "candidate:1".into()).unwrap();
    hub.call_candidate(A, &id(1), "candidate:2".into()).unwrap();
    // Nothing with an address leaves while it rings, and a ringing device cannot send any.
    assert_eq!(
        hub.call_candidate(B1, &id(1), "candidate:9".into()).unwrap_err().code,
        ErrorCode::NoSuchCall
    );
    let seen = Seen::of(&mut hub);
    assert!(!seen.events.iter().any(|(_, e)| matches!(e, Event::CallCandidate { .. })), "{seen:?}");

    hub.call_accept(B1, &id(1), answer(21)).unwrap();
    let seen = Seen::of(&mut hub);
    let to_b1: Vec<_> = seen
        .to(B1)
        .into_iter()
        .filter_map(|e| match e {
            Event::CallCandidate { candidate, .. } => Some(candidate.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(to_b1, ["candidate:1", "candidate:2"]);
    assert!(!seen.to(B2).iter().any(|e| matches!(e, Event::CallCandidate { .. })));

    // After the answer, candidates flow both ways between the two answering connections.
    hub.call_candidate(B1, &id(1), "candidate:b".into()).unwrap();
    hub.call_candidate(A, &id(1), "candidate:3".into()).unwrap();
    assert_eq!(
        hub.call_candidate(B2, &id(1), "candidate:x".into()).unwrap_err().code,
        ErrorCode::NoSuchCall
    );
    let seen = Seen::of(&mut hub);
    assert_eq!(
        seen.to(A),
        vec![&Event::CallCandidate { call_id: id(1), candidate: "candidate:b".into() }]
    );
    assert_eq!(
        seen.to(B1),
        vec![&Event::CallCandidate { call_id: id(1), candidate: "candidate:3".into() }]
    );
    assert!(seen.to(B2).is_empty() && seen.to(C).is_empty());
}

#[test]
fn decline_ends_the_call_everywhere_but_busy_only_for_one_device() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    hub.call_decline(B1, &id(1), false).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.ended(A), vec![CallEndReason::Declined]);
    assert_eq!(seen.ended(B2), vec![CallEndReason::Declined]);
    assert!(seen.missed.is_empty(), "a declined call is not missed");
    assert_eq!(hub.call_count(), 0);

    hub.call_invite(A, invite(2, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    hub.call_decline(B1, &id(2), true).unwrap();
    let seen = Seen::of(&mut hub);
    assert!(seen.events.is_empty(), "B2 still rings: {seen:?}");
    hub.call_decline(B2, &id(2), true).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.ended(A), vec![CallEndReason::Busy]);
    assert_eq!(seen.missed, vec![(BOB, ALICE)]);
}

#[test]
fn a_device_that_cannot_take_calls_stops_ringing_and_the_caller_hears_why_without_a_missed_call() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    hub.call_refuse(B1, &id(1), CallEndReason::NoAudioDevice).unwrap();
    let seen = Seen::of(&mut hub);
    assert!(seen.events.is_empty(), "B2 still rings: {seen:?}");
    hub.call_refuse(B2, &id(1), CallEndReason::NoRelay).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.ended(A), vec![CallEndReason::NoAudioDevice], "the first reason given");
    assert!(seen.missed.is_empty(), "the devices showed the call: not missed");
    assert_eq!(hub.call_count(), 0);

    // A device that said busy makes it busy, with a missed call, as before.
    hub.call_invite(A, invite(2, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    hub.call_decline(B1, &id(2), true).unwrap();
    hub.call_refuse(B2, &id(2), CallEndReason::NoAudioDevice).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.ended(A), vec![CallEndReason::Busy]);
    assert_eq!(seen.missed, vec![(BOB, ALICE)]);

    // Only a device's refusal is passed on: a device cannot make the caller believe it hung up.
    hub.call_invite(A, invite(3, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    let err = hub.call_refuse(B1, &id(3), CallEndReason::HungUp).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(Seen::of(&mut hub).events.is_empty());
}

#[test]
fn a_user_in_an_answered_call_is_busy_and_an_offline_one_unavailable() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    hub.call_accept(B1, &id(1), answer(21)).unwrap();
    hub.drain_outputs();
    assert_eq!(
        hub.call_invite(C, invite(2, CAROL, 30, BOB), now),
        Err(InviteRefused::Ended(CallEndReason::Busy))
    );
    assert_eq!(Seen::of(&mut hub).missed, vec![(BOB, CAROL)]);

    hub.disconnect(C);
    assert_eq!(
        hub.call_invite(B2, invite(3, BOB, 22, CAROL), now),
        Err(InviteRefused::Ended(CallEndReason::Unavailable))
    );
    assert_eq!(Seen::of(&mut hub).missed, vec![(CAROL, BOB)]);
}

#[test]
fn cancel_and_no_answer_leave_a_missed_call() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    assert_eq!(hub.call_cancel(B1, &id(1)).unwrap_err().code, ErrorCode::NoSuchCall);
    hub.call_cancel(A, &id(1)).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.ended(B1), vec![CallEndReason::Cancelled]);
    assert_eq!(seen.ended(B2), vec![CallEndReason::Cancelled]);
    assert!(seen.ended(A).is_empty());
    assert_eq!(seen.missed, vec![(BOB, ALICE)]);

    hub.call_invite(A, invite(2, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    hub.handle_timeout(now + Duration::from_secs(44));
    assert!(Seen::of(&mut hub).events.is_empty(), "still ringing at 44 s");
    hub.handle_timeout(now + Duration::from_secs(46));
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.ended(A), vec![CallEndReason::NoAnswer]);
    assert_eq!(seen.ended(B1), vec![CallEndReason::NoAnswer]);
    assert_eq!(seen.missed, vec![(BOB, ALICE)]);
    assert_eq!(hub.call_count(), 0);
}

#[test]
fn hang_up_and_dropped_connections_end_the_call_for_the_other_side() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    hub.call_accept(B1, &id(1), answer(21)).unwrap();
    hub.drain_outputs();
    assert_eq!(hub.call_hangup(B2, &id(1)).unwrap_err().code, ErrorCode::NoSuchCall);
    hub.call_hangup(B1, &id(1)).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.ended(A), vec![CallEndReason::HungUp]);
    assert!(seen.ended(B1).is_empty());

    // The callee's connection drops mid-call.
    hub.call_invite(A, invite(2, ALICE, 10, BOB), now).unwrap();
    hub.call_accept(B1, &id(2), answer(21)).unwrap();
    hub.drain_outputs();
    hub.disconnect(B1);
    assert_eq!(Seen::of(&mut hub).ended(A), vec![CallEndReason::PeerGone]);

    // The caller drops while it rings: the callee's device stops, with a missed call.
    hub.call_invite(A, invite(3, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    hub.disconnect(A);
    let seen = Seen::of(&mut hub);
    assert_eq!(seen.ended(B2), vec![CallEndReason::PeerGone]);
    assert_eq!(seen.missed, vec![(BOB, ALICE)]);
    assert_eq!(hub.call_count(), 0);

    // Every ringing device drops: the caller hears "unavailable".
    login(&mut hub, A, ALICE, 10, now);
    hub.call_invite(A, invite(4, ALICE, 10, BOB), now).unwrap();
    hub.drain_outputs();
    hub.disconnect(B2);
    assert_eq!(Seen::of(&mut hub).ended(A), vec![CallEndReason::Unavailable]);
}

#[test]
fn invites_are_limited_and_checked() {
    let now = Instant::now();
    let mut hub = hub(now);
    // Only the logged-in device may place a call in its own name.
    let err = hub.call_invite(A, invite(1, BOB, 21, CAROL), now).unwrap_err();
    assert!(matches!(err, InviteRefused::Error(e) if e.code == ErrorCode::NotAuthenticated));
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    let err = hub.call_invite(A, invite(1, ALICE, 10, CAROL), now).unwrap_err();
    assert!(matches!(err, InviteRefused::Error(e) if e.code == ErrorCode::CallExists));
    // Four calls at once at most per user.
    for n in 2..=4 {
        hub.call_invite(A, invite(n, ALICE, 10, CAROL), now).unwrap();
    }
    let err = hub.call_invite(A, invite(5, ALICE, 10, CAROL), now).unwrap_err();
    assert!(matches!(err, InviteRefused::Error(e) if e.code == ErrorCode::CallLimit));
    for n in 1..=4 {
        hub.call_cancel(A, &id(n)).unwrap();
    }
    // Ten invites a minute: a burst of ten more is refused at some point.
    let refused = (10..40)
        .filter(|n| {
            let r = hub.call_invite(A, invite(*n, ALICE, 10, CAROL), now);
            if r.is_ok() {
                hub.call_cancel(A, &id(*n)).unwrap();
            }
            matches!(r, Err(InviteRefused::Error(e)) if e.code == ErrorCode::CallLimit)
        })
        .count();
    assert!(refused >= 20, "{refused}");
    // Too many candidates.
    let later = now + Duration::from_secs(59);
    hub.handle_timeout(later);
    hub.call_invite(A, invite(99, ALICE, 10, BOB), later).unwrap();
    for n in 0..64 {
        hub.call_candidate(A, &id(99), format!("candidate:{n}")).unwrap();
    }
    assert_eq!(
        hub.call_candidate(A, &id(99), "candidate:x".into()).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
}

fn restarts_to(seen: &Seen, conn: ConnId) -> Vec<Option<String>> {
    seen.to(conn)
        .into_iter()
        .filter_map(|e| match e {
            Event::CallRestart { sdp, .. } => Some(sdp.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn ice_restarts_pass_only_between_the_two_ends_of_an_answered_call() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    // Not while it rings.
    let offer = Some("v=0\r\nrestart".to_owned());
    assert_eq!(hub.call_restart(A, &id(1), offer.clone()).unwrap_err().code, ErrorCode::NoSuchCall);
    hub.call_accept(B1, &id(1), answer(21)).unwrap();
    hub.drain_outputs();
    // The caller's restart carries an offer; the callee may ask without one.
    assert_eq!(hub.call_restart(A, &id(1), None).unwrap_err().code, ErrorCode::InvalidArgument);
    hub.call_restart(A, &id(1), offer.clone()).unwrap();
    hub.call_restart(B1, &id(1), None).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(restarts_to(&seen, B1), vec![offer.clone()]);
    assert_eq!(restarts_to(&seen, A), vec![None]);
    assert!(restarts_to(&seen, B2).is_empty(), "{seen:?}");
    // Neither the callee's other device nor a stranger may.
    assert_eq!(hub.call_restart(B2, &id(1), None).unwrap_err().code, ErrorCode::NoSuchCall);
    assert_eq!(hub.call_restart(C, &id(1), None).unwrap_err().code, ErrorCode::NoSuchCall);
    // At most 16 from one side.
    for _ in 1..16 {
        hub.call_restart(A, &id(1), offer.clone()).unwrap();
    }
    let err = hub.call_restart(A, &id(1), offer).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
}

#[test]
fn a_device_that_lost_its_connection_resumes_the_call_on_a_new_one() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.call_invite(A, invite(1, ALICE, 10, BOB), now).unwrap();
    hub.call_accept(B1, &id(1), answer(21)).unwrap();
    hub.drain_outputs();
    // Only the same user's same device: not bob's other device, not carol.
    assert_eq!(hub.call_resume(B2, &id(1)).unwrap_err().code, ErrorCode::NoSuchCall);
    assert_eq!(hub.call_resume(C, &id(1)).unwrap_err().code, ErrorCode::NoSuchCall);
    // Bob's device 21 reconnects (its address changed) before the old connection is noticed
    // gone.
    let b1_again = ConnId(23);
    login(&mut hub, b1_again, BOB, 21, now);
    hub.drain_outputs();
    hub.call_resume(b1_again, &id(1)).unwrap();
    let offer = Some("v=0\r\nrestart".to_owned());
    hub.call_restart(A, &id(1), offer.clone()).unwrap();
    let seen = Seen::of(&mut hub);
    assert_eq!(restarts_to(&seen, b1_again), vec![offer]);
    assert!(restarts_to(&seen, B1).is_empty());
    // The old connection's end no longer ends the call; the new one's does.
    hub.disconnect(B1);
    assert!(Seen::of(&mut hub).ended(A).is_empty());
    assert_eq!(hub.call_count(), 1);
    hub.disconnect(b1_again);
    assert_eq!(Seen::of(&mut hub).ended(A), vec![CallEndReason::PeerGone]);

    // The caller can resume too.
    login(&mut hub, B1, BOB, 21, now);
    hub.call_invite(A, invite(2, ALICE, 10, BOB), now).unwrap();
    hub.call_accept(B1, &id(2), answer(21)).unwrap();
    hub.drain_outputs();
    let a_again = ConnId(4);
    login(&mut hub, a_again, ALICE, 10, now);
    hub.call_resume(a_again, &id(2)).unwrap();
    hub.call_restart(B1, &id(2), None).unwrap();
    assert_eq!(restarts_to(&Seen::of(&mut hub), a_again), vec![None]);
}
