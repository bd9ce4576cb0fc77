//! Calls between users on different supernodes, with a fake clock and a fake bus between three
//! hubs (every message encoded as JSON on the way, as the real bus does): ringing and answering
//! through a leg, the first answer winning across supernodes, busy elsewhere, cancel, ICE
//! messages both ways, and a supernode that dies mid-call with the call taken over elsewhere.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use peerline_supernode_core::{
    CallAnswer, CallInvite, CallRecord, ConnId, Hub, HubConfig, Link, OnlineLogin, Output,
};
use peerline_wire::{CallEndReason, Event, Status};

const ALICE: i64 = 1;
const BOB: i64 = 2;
/// Alice's device on hub 0.
const A: ConnId = ConnId(1);
/// Bob's devices: on hub 1 and on hub 0.
const B_REMOTE: ConnId = ConnId(21);
const B_LOCAL: ConnId = ConnId(22);

/// Three supernodes and what reached their connections.
struct Net {
    hubs: Vec<Hub>,
    now: Instant,
    /// Events per (hub, connection).
    events: Vec<(usize, ConnId, Event)>,
    registry: HashMap<String, CallRecord>,
    missed: Vec<(i64, i64)>,
    /// Hubs that are down: nothing reaches them.
    down: Vec<usize>,
}

impl Net {
    fn new() -> Net {
        let now = Instant::now();
        let hubs = (0..3).map(|_| Hub::new(HubConfig::default(), now)).collect();
        Net {
            hubs,
            now,
            events: Vec::new(),
            registry: HashMap::new(),
            missed: Vec::new(),
            down: vec![],
        }
    }

    fn login(&mut self, hub: usize, conn: ConnId, user: i64, device: i64) {
        let peer = if user == ALICE { BOB } else { ALICE };
        self.hubs[hub].connect(conn, self.now);
        let login = OnlineLogin {
            user_id: user,
            username: format!("user{user}"),
            device_id: device,
            status: Status::Online,
            contacts: vec![Link { peer, mutual: true, version: 1 }],
        };
        assert!(self.hubs[hub].login(conn, login, self.now));
        self.pump();
    }

    /// Delivers outputs until quiet.
    fn pump(&mut self) {
        loop {
            let mut quiet = true;
            for h in 0..self.hubs.len() {
                for o in self.hubs[h].drain_outputs() {
                    quiet = false;
                    match o {
                        Output::Send { conns, event } => {
                            for c in conns {
                                self.events.push((h, c, event.clone()));
                            }
                        }
                        Output::Bus { to, msg } => {
                            common::carry(&mut self.hubs, h, to, &msg, &self.down, self.now);
                        }
                        Output::RegisterCall { call_id, record } => {
                            self.registry.insert(call_id, record);
                        }
                        Output::UnregisterCall { call_id } => {
                            self.registry.remove(&call_id);
                        }
                        Output::MissedCall { callee, caller, .. } => {
                            self.missed.push((callee, caller));
                        }
                        Output::Close { .. } => {}
                    }
                }
            }
            if quiet {
                return;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for h in 0..self.hubs.len() {
            self.hubs[h].handle_timeout(self.now);
        }
        self.pump();
    }

    /// Events of one connection, taken.
    fn take(&mut self, hub: usize, conn: ConnId) -> Vec<Event> {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.events.drain(..).partition(|(h, c, _)| *h == hub && *c == conn);
        self.events = rest;
        mine.into_iter().map(|(_, _, e)| e).collect()
    }

    /// A supernode dies: its connections are gone without a word, the others hear it is down.
    fn crash(&mut self, hub: usize) {
        self.down.push(hub);
        self.hubs[hub] = Hub::new(HubConfig::default(), self.now);
        for other in 0..self.hubs.len() {
            if other != hub {
                self.hubs[other].node_gone(&hub.to_string(), self.now);
            }
        }
        self.pump();
        self.down.retain(|h| *h != hub);
    }
}

fn call_id() -> String {
    "ab".repeat(16)
}

fn invite() -> CallInvite {
    CallInvite {
        call_id: call_id(),
        caller: ALICE,
        caller_name: "user1".into(),
        caller_display_name: "Alice".into(),
        caller_device: 10,
        caller_device_key: "aa".repeat(32),
        callee: BOB,
        sdp: "v=0\r\n".into(),
        fingerprint_signature: "ee".repeat(64),
    }
}

fn answer(device: i64) -> CallAnswer {
    CallAnswer {
        device_id: device,
        device_key: "bb".repeat(32),
        sdp: "v=0 answer\r\n".into(),
        fingerprint_signature: "ff".repeat(64),
    }
}

fn ended(events: &[Event]) -> Vec<CallEndReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CallEnded { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

/// Alice on hub 0, bob on hub 1 only.
fn apart() -> Net {
    let mut net = Net::new();
    net.login(0, A, ALICE, 10);
    net.login(1, B_REMOTE, BOB, 21);
    net.events.clear();
    net
}

/// Alice calls bob on another supernode; bob answers there.
fn answered_apart() -> Net {
    let mut net = apart();
    let ringing = net.hubs[0].call_invite(A, invite(), net.now).unwrap();
    assert_eq!(ringing, 1, "bob's device elsewhere counts as ringing");
    net.hubs[0]
        .call_candidate(A, &call_id(), "candidate:1 1 udp 1 10.0.0.1 5000 typ host".into())
        .unwrap();
    net.pump();
    let incoming = net.take(1, B_REMOTE);
    assert!(
        matches!(incoming.as_slice(), [Event::CallIncoming { from, .. }] if from == "user1"),
        "{incoming:?}"
    );
    net.hubs[1].call_ringing(B_REMOTE, &call_id()).unwrap();
    net.pump();
    assert!(matches!(net.take(0, A).as_slice(), [Event::CallRinging { .. }]));
    net.hubs[1].call_accept(B_REMOTE, &call_id(), answer(21)).unwrap();
    net.pump();
    assert!(
        matches!(net.take(0, A).as_slice(), [Event::CallAccepted { device_id: 21, .. }]),
        "alice hears bob's answer"
    );
    let held = net.take(1, B_REMOTE);
    assert!(
        matches!(held.as_slice(), [Event::CallCandidate { candidate, .. }] if candidate.contains("10.0.0.1")),
        "the held candidate reaches the winner only now: {held:?}"
    );
    assert_eq!(
        net.registry.get(&call_id()),
        Some(&CallRecord { caller: ALICE, caller_device: 10, callee: BOB, callee_device: 21 }),
        "the answered call is registered for takeovers"
    );
    net
}

#[test]
fn a_call_to_another_supernode_rings_is_answered_and_carries_ice_both_ways() {
    let mut net = answered_apart();
    let id = call_id();
    net.hubs[1]
        .call_candidate(B_REMOTE, &id, "candidate:2 1 udp 1 10.0.0.2 6000 typ host".into())
        .unwrap();
    net.hubs[0].call_restart(A, &id, Some("v=0 restart offer".into())).unwrap();
    net.pump();
    assert!(matches!(net.take(0, A).as_slice(), [Event::CallCandidate { .. }]));
    assert!(matches!(net.take(1, B_REMOTE).as_slice(), [Event::CallRestart { sdp: Some(_), .. }]));
    net.hubs[1].call_restart(B_REMOTE, &id, Some("v=0 restart answer".into())).unwrap();
    net.pump();
    assert!(matches!(net.take(0, A).as_slice(), [Event::CallRestart { sdp: Some(_), .. }]));
    // Bob hangs up on his supernode: alice hears it on hers; both forget the call.
    net.hubs[1].call_hangup(B_REMOTE, &id).unwrap();
    net.pump();
    assert_eq!(ended(&net.take(0, A)), [CallEndReason::HungUp]);
    assert!(net.take(1, B_REMOTE).is_empty(), "the one who hung up is not told");
    assert_eq!(net.hubs[0].call_count() + net.hubs[1].call_count(), 0);
    assert!(net.registry.is_empty(), "the registration is gone with the call");
}

#[test]
fn the_first_answer_wins_across_supernodes() {
    let mut net = Net::new();
    net.login(0, A, ALICE, 10);
    net.login(1, B_REMOTE, BOB, 21);
    net.login(0, B_LOCAL, BOB, 22);
    net.events.clear();
    assert_eq!(net.hubs[0].call_invite(A, invite(), net.now).unwrap(), 2);
    net.pump();
    assert!(matches!(net.take(0, B_LOCAL).as_slice(), [Event::CallIncoming { .. }]));
    assert!(matches!(net.take(1, B_REMOTE).as_slice(), [Event::CallIncoming { .. }]));
    // The remote device answers first; the local one is told answered_elsewhere.
    net.hubs[1].call_accept(B_REMOTE, &call_id(), answer(21)).unwrap();
    net.pump();
    assert_eq!(ended(&net.take(0, B_LOCAL)), [CallEndReason::AnsweredElsewhere]);
    assert!(net.hubs[0].call_accept(B_LOCAL, &call_id(), answer(22)).is_err(), "too late");
    assert!(matches!(net.take(0, A).as_slice(), [Event::CallAccepted { device_id: 21, .. }]));
}

#[test]
fn a_late_answer_elsewhere_loses_to_a_local_one() {
    let mut net = Net::new();
    net.login(0, A, ALICE, 10);
    net.login(1, B_REMOTE, BOB, 21);
    net.login(0, B_LOCAL, BOB, 22);
    net.events.clear();
    net.hubs[0].call_invite(A, invite(), net.now).unwrap();
    net.pump();
    net.hubs[0].call_accept(B_LOCAL, &call_id(), answer(22)).unwrap();
    net.pump();
    assert_eq!(
        ended(&net.take(1, B_REMOTE)),
        [CallEndReason::AnsweredElsewhere],
        "the device elsewhere stops ringing"
    );
    assert_eq!(net.hubs[1].call_count(), 0, "its leg is gone");
}

#[test]
fn a_device_elsewhere_that_cannot_take_calls_gives_its_reason_to_the_caller() {
    let mut net = apart();
    net.hubs[0].call_invite(A, invite(), net.now).unwrap();
    net.pump();
    net.hubs[1].call_refuse(B_REMOTE, &call_id(), CallEndReason::NoAudioDevice).unwrap();
    net.pump();
    assert_eq!(ended(&net.take(0, A)), [CallEndReason::NoAudioDevice]);
    assert!(net.missed.is_empty(), "bob's device showed the call: {:?}", net.missed);
    assert_eq!((net.hubs[0].call_count(), net.hubs[1].call_count()), (0, 0));
}

#[test]
fn busy_elsewhere_cancel_and_no_answer_end_the_call_everywhere() {
    // Bob declines as busy on his only device elsewhere: alice hears busy, bob missed a call.
    let mut net = apart();
    net.hubs[0].call_invite(A, invite(), net.now).unwrap();
    net.pump();
    net.hubs[1].call_decline(B_REMOTE, &call_id(), true).unwrap();
    net.pump();
    assert_eq!(ended(&net.take(0, A)), [CallEndReason::Busy]);
    assert_eq!(net.missed, [(BOB, ALICE)]);

    // Alice cancels while bob's device elsewhere rings.
    let mut net = apart();
    net.hubs[0].call_invite(A, invite(), net.now).unwrap();
    net.pump();
    net.take(1, B_REMOTE);
    net.hubs[0].call_cancel(A, &call_id()).unwrap();
    net.pump();
    assert_eq!(ended(&net.take(1, B_REMOTE)), [CallEndReason::Cancelled]);
    assert_eq!(net.hubs[1].call_count(), 0);

    // Nobody answers: both sides hear no_answer after the ring timeout.
    let mut net = apart();
    net.hubs[0].call_invite(A, invite(), net.now).unwrap();
    net.pump();
    net.take(1, B_REMOTE);
    net.advance(Duration::from_secs(46));
    assert_eq!(ended(&net.take(0, A)), [CallEndReason::NoAnswer]);
    assert_eq!(ended(&net.take(1, B_REMOTE)), [CallEndReason::NoAnswer]);

    // A supernode that never answers the invite is given up after a few seconds.
    let mut net = apart();
    net.down.push(1);
    assert_eq!(net.hubs[0].call_invite(A, invite(), net.now).unwrap(), 1);
    net.pump();
    net.advance(Duration::from_secs(4));
    assert_eq!(ended(&net.take(0, A)), [CallEndReason::Unavailable]);
}

#[test]
fn a_call_survives_the_death_of_the_callees_supernode() {
    let mut net = answered_apart();
    let id = call_id();
    let record = net.registry[&id].clone();
    net.crash(1);
    // Bob's device reconnects to supernode 2 and takes the call over from its record.
    net.login(2, ConnId(31), BOB, 21);
    net.hubs[2].call_take_over(ConnId(31), &id, &record).unwrap();
    net.pump();
    // Alice's ICE restart reaches bob where he is now; his answer reaches her.
    net.hubs[0].call_restart(A, &id, Some("v=0 restart offer".into())).unwrap();
    net.pump();
    let bob = net.take(2, ConnId(31));
    assert!(bob.iter().any(|e| matches!(e, Event::CallRestart { sdp: Some(_), .. })), "{bob:?}");
    net.hubs[2].call_restart(ConnId(31), &id, Some("v=0 restart answer".into())).unwrap();
    net.pump();
    let alice = net.take(0, A);
    assert!(
        alice.iter().any(|e| matches!(e, Event::CallRestart { sdp: Some(_), .. })),
        "{alice:?}"
    );
    // Well past the resume window, the call goes on (both clients send heartbeats meanwhile);
    // alice hangs up and bob hears it.
    for _ in 0..3 {
        net.advance(Duration::from_secs(20));
        net.hubs[0].admit(A, net.now).unwrap();
        net.hubs[2].admit(ConnId(31), net.now).unwrap();
    }
    assert!(ended(&net.take(0, A)).is_empty(), "the call did not end while bob was away");
    net.hubs[0].call_hangup(A, &id).unwrap();
    net.pump();
    assert_eq!(ended(&net.take(2, ConnId(31))), [CallEndReason::HungUp]);
}

#[test]
fn a_call_whose_caller_and_callee_shared_a_dead_supernode_is_taken_over_by_both() {
    let mut net = Net::new();
    net.login(0, A, ALICE, 10);
    net.login(0, B_LOCAL, BOB, 22);
    net.events.clear();
    let id = call_id();
    net.hubs[0].call_invite(A, invite(), net.now).unwrap();
    net.hubs[0].call_accept(B_LOCAL, &id, answer(22)).unwrap();
    net.pump();
    let record = net.registry[&id].clone();
    net.crash(0);
    net.login(1, ConnId(41), ALICE, 10);
    net.login(2, ConnId(42), BOB, 22);
    net.hubs[1].call_take_over(ConnId(41), &id, &record).unwrap();
    net.hubs[2].call_take_over(ConnId(42), &id, &record).unwrap();
    net.pump();
    net.hubs[1].call_hangup(ConnId(41), &id).unwrap();
    net.pump();
    assert_eq!(ended(&net.take(2, ConnId(42))), [CallEndReason::HungUp], "hang-up still works");
    // A stranger cannot take a call over.
    net.login(2, ConnId(43), ALICE, 99);
    assert!(net.hubs[2].call_take_over(ConnId(43), &id, &record).is_err());
}

#[test]
fn a_party_that_never_comes_back_ends_the_call_after_the_resume_window() {
    let mut net = answered_apart();
    net.crash(1);
    net.advance(Duration::from_secs(30));
    assert!(ended(&net.take(0, A)).is_empty(), "still waiting for bob to come back");
    net.advance(Duration::from_secs(20));
    assert_eq!(ended(&net.take(0, A)), [CallEndReason::PeerGone]);
}

/// Bob on hub 1 answers alice's call from hub 0 and, as the protocol says, trickles a candidate
/// right after: before hub 0 has confirmed his answer (nothing carried between the two).
#[test]
fn a_candidate_sent_right_after_an_answer_elsewhere_reaches_the_caller_once_confirmed() {
    let mut net = apart();
    let id = call_id();
    net.hubs[0].call_invite(A, invite(), net.now).unwrap();
    net.pump();
    net.take(1, B_REMOTE);
    net.hubs[1].call_accept(B_REMOTE, &id, answer(21)).unwrap();
    // No pump: hub 0 has not heard the answer yet.
    net.hubs[1]
        .call_candidate(B_REMOTE, &id, "candidate:7 1 udp 1 10.0.0.7 7000 typ host".into())
        .expect("a candidate right after call_accept is taken, not refused no_such_call");
    assert!(net.take(0, A).is_empty(), "nothing reached alice before her supernode decided");
    net.pump();
    let alice = net.take(0, A);
    assert!(
        matches!(
            alice.as_slice(),
            [Event::CallAccepted { device_id: 21, .. }, Event::CallCandidate { candidate, .. }]
                if candidate.contains("10.0.0.7")
        ),
        "alice gets bob's answer, then his candidate: {alice:?}"
    );
    // From here on, candidates flow at once, and the held one counted against bob's side.
    for n in 1..64 {
        let candidate = format!("candidate:{n} 1 udp 1 10.0.1.{n} 7000 typ host");
        net.hubs[1].call_candidate(B_REMOTE, &id, candidate).unwrap();
    }
    let over = net.hubs[1].call_candidate(
        B_REMOTE,
        &id,
        "candidate:99 1 udp 1 10.0.2.1 1 typ host".into(),
    );
    assert!(over.is_err(), "65 candidates from one side are too many");
    net.pump();
    assert_eq!(net.take(0, A).len(), 63);
}

/// Two devices of bob on other supernodes answer at once and trickle right away: only the
/// winner's candidates reach alice; the loser's, held unconfirmed, are dropped unseen. Held
/// candidates are bounded like sent ones.
#[test]
fn candidates_held_for_an_answer_that_loses_never_reach_the_caller() {
    let mut net = Net::new();
    net.login(0, A, ALICE, 10);
    net.login(1, B_REMOTE, BOB, 21);
    let b_third = ConnId(23);
    net.login(2, b_third, BOB, 23);
    net.events.clear();
    let id = call_id();
    assert_eq!(net.hubs[0].call_invite(A, invite(), net.now).unwrap(), 2);
    net.pump();
    net.hubs[1].call_accept(B_REMOTE, &id, answer(21)).unwrap();
    net.hubs[2].call_accept(b_third, &id, answer(23)).unwrap();
    assert!(net.hubs[2].call_accept(b_third, &id, answer(23)).is_err(), "one answer per device");
    net.hubs[1]
        .call_candidate(B_REMOTE, &id, "candidate:1 1 udp 1 10.0.0.21 1 typ host".into())
        .unwrap();
    for n in 0..64 {
        let candidate = format!("candidate:{n} 1 udp 1 10.0.0.23 1 typ host");
        net.hubs[2].call_candidate(b_third, &id, candidate).unwrap();
    }
    assert!(
        net.hubs[2]
            .call_candidate(b_third, &id, "candidate:64 1 udp 1 10.0.0.23 1 typ host".into())
            .is_err(),
        "at most 64 held from one device"
    );
    // Hub 1's answer is carried first and wins.
    net.pump();
    let alice = net.take(0, A);
    let candidates: Vec<&str> = alice
        .iter()
        .filter_map(|e| match e {
            Event::CallCandidate { candidate, .. } => Some(candidate.as_str()),
            _ => None,
        })
        .collect();
    assert!(matches!(alice.first(), Some(Event::CallAccepted { device_id: 21, .. })), "{alice:?}");
    assert_eq!(candidates, ["candidate:1 1 udp 1 10.0.0.21 1 typ host"], "the winner's only");
    assert_eq!(ended(&net.take(2, b_third)), [CallEndReason::AnsweredElsewhere]);
    assert_eq!(net.hubs[2].call_count(), 0, "the losing leg is gone with what it held");
    assert!(
        net.hubs[2]
            .call_candidate(b_third, &id, "candidate:65 1 udp 1 10.0.0.23 1 typ host".into())
            .is_err(),
        "the loser may not send candidates any more"
    );
}
