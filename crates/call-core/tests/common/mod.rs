//! A fake world around one [`Call`]: a fake clock, peers with real Ed25519 keys that sign their
//! SDP, and helpers that answer the call's actions the way a driver would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use peerline_call_core::{
    Action, Call, CallConfig, Dial, Invite, KeyCheck, MediaInput, OpId, OpResult, Outcome,
    PeerClaim, Step,
};
use peerline_media::MediaEvent;
use peerline_wire::{Event, Reply, Request, SdpRole, call_signature_payload};

pub const CALL_ID: &str = "c0ffee";
pub const ME: &str = "alice";
pub const PEER: &str = "bob";

/// A minimal SDP carrying a DTLS fingerprint (all the core reads of it).
pub fn sdp(fingerprint: &str) -> String {
    format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 {fingerprint}\r\n")
}

pub const PEER_FP: &str = "AA:BB:CC";
pub const OTHER_FP: &str = "DD:EE:FF";

/// The peer's device key.
pub fn peer_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// A claim as the peer makes it: its key signs its SDP's fingerprint for `me`.
pub fn claim(role: SdpRole, signed_fp: &str, sent_fp: &str) -> PeerClaim {
    let key = peer_key();
    let payload = call_signature_payload(CALL_ID, role, PEER, ME, &format!("sha-256 {signed_fp}"));
    PeerClaim {
        peer: PEER.into(),
        device_id: 3,
        device_key: hex::encode(key.verifying_key().to_bytes()),
        sdp: sdp(sent_fp),
        signature: hex::encode(key.sign(&payload).to_bytes()),
    }
}

pub fn accepted_event(claim: &PeerClaim) -> Event {
    Event::CallAccepted {
        call_id: CALL_ID.into(),
        device_id: claim.device_id,
        device_key: claim.device_key.clone(),
        sdp: claim.sdp.clone(),
        fingerprint_signature: claim.signature.clone(),
    }
}

pub fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// Config with the default timers.
pub fn config() -> CallConfig {
    CallConfig::default()
}

/// One call and its fake clock. Actions are collected in `log` as they come out.
pub struct World {
    pub call: Call,
    pub now: Instant,
    pub t0: Instant,
    /// Every action so far, in order.
    pub log: Vec<Action>,
    /// Actions not looked at yet.
    pub fresh: Vec<Action>,
}

impl World {
    pub fn caller(config: CallConfig) -> Self {
        let t0 = Instant::now();
        let dial = Dial {
            call_id: CALL_ID.into(),
            me: ME.into(),
            to: PEER.into(),
            sdp: sdp("11:22"),
            signature: "ab".repeat(64),
            candidates: vec!["candidate:1 1 udp 1 10.0.0.1 5000 typ host".into()],
            public_ip: ip("203.0.113.1"),
        };
        Self::new(Call::dial(dial, config, t0), t0)
    }

    pub fn callee(config: CallConfig) -> Self {
        Self::callee_with(config, claim(SdpRole::Offer, PEER_FP, PEER_FP))
    }

    pub fn callee_with(config: CallConfig, caller: PeerClaim) -> Self {
        let t0 = Instant::now();
        let invite = Invite { call_id: CALL_ID.into(), me: ME.into(), caller };
        Self::new(Call::answer(invite, config, t0), t0)
    }

    fn new(call: Call, t0: Instant) -> Self {
        let mut w = World { call, now: t0, t0, log: Vec::new(), fresh: Vec::new() };
        w.collect();
        w
    }

    pub fn collect(&mut self) {
        while let Some(action) = self.call.poll_action() {
            self.log.push(action.clone());
            self.fresh.push(action);
        }
    }

    /// Takes the actions not looked at yet.
    pub fn take(&mut self) -> Vec<Action> {
        self.collect();
        std::mem::take(&mut self.fresh)
    }

    /// Moves the clock on, firing every timer on the way.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.call.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.call.handle_timeout(self.now);
            self.collect();
        }
        self.now = until;
    }

    pub fn event(&mut self, event: Event) {
        self.call.handle_event(event, self.now);
        self.collect();
    }

    pub fn media(&mut self, event: MediaEvent) {
        self.call.handle_media(MediaInput::Event(event), self.now);
        self.collect();
    }

    pub fn media_ended(&mut self, end: peerline_media::EndReason) {
        self.call.handle_media(MediaInput::Ended(end), self.now);
        self.collect();
    }

    pub fn result(&mut self, op: OpId, result: OpResult) {
        self.call.handle_result(op, result, self.now);
        self.collect();
    }

    /// The first fresh request matching `f`, taken out of `fresh`.
    pub fn sent(&mut self, f: impl Fn(&Request) -> bool) -> Option<(OpId, Request)> {
        self.collect();
        let i = self
            .fresh
            .iter()
            .position(|a| matches!(a, Action::Send { request, .. } if f(request)))?;
        match self.fresh.remove(i) {
            Action::Send { op, request } => Some((op, request)),
            _ => None,
        }
    }

    /// The first fresh step matching `f`, taken out of `fresh`.
    pub fn step(&mut self, f: impl Fn(&Step) -> bool) -> Option<(OpId, Step)> {
        self.collect();
        let i = self.fresh.iter().position(|a| matches!(a, Action::Run { step, .. } if f(step)))?;
        match self.fresh.remove(i) {
            Action::Run { op, step } => Some((op, step)),
            _ => None,
        }
    }

    /// The outcome, if the call ended.
    pub fn outcome(&self) -> Option<Outcome> {
        self.log.iter().find_map(|a| match a {
            Action::End(outcome) => Some(outcome.clone()),
            _ => None,
        })
    }

    pub fn ends(&self) -> usize {
        self.log.iter().filter(|a| matches!(a, Action::End(_))).count()
    }

    /// Caller: the supernode placed the invite.
    pub fn placed(&mut self) {
        let (op, _) = self.sent(|r| matches!(r, Request::CallInvite { .. })).expect("invite");
        self.result(
            op,
            OpResult::Reply(Reply::CallPlaced { call_id: CALL_ID.into(), ringing_devices: 2 }),
        );
    }

    /// Caller: answered with a good claim, key known, answer applied: the media starts.
    pub fn answered(&mut self) {
        self.placed();
        self.event(accepted_event(&claim(SdpRole::Answer, PEER_FP, PEER_FP)));
        let (op, _) = self.step(|s| matches!(s, Step::CheckKey(_))).expect("key check");
        self.result(op, OpResult::KeyChecked(KeyCheck::Known));
        let (op, _) = self.step(|s| matches!(s, Step::AcceptAnswer(_))).expect("apply answer");
        self.result(op, OpResult::Done);
        assert!(self.started_media(), "{:?}", self.log);
    }

    /// Callee: key known, offer applied and signed, accept taken, gathered: the media starts.
    pub fn accepted(&mut self) {
        let (op, _) = self.step(|s| matches!(s, Step::CheckKey(_))).expect("key check");
        self.result(op, OpResult::KeyChecked(KeyCheck::Known));
        let (op, _) = self.step(|s| matches!(s, Step::AcceptOffer(_))).expect("offer");
        self.result(op, OpResult::Signed { sdp: sdp("33:44"), signature: "cd".repeat(64) });
        let (op, _) = self.sent(|r| matches!(r, Request::CallAccept { .. })).expect("accept");
        self.result(op, OpResult::Reply(Reply::Done));
        let (op, _) = self.step(|s| *s == Step::Gather).expect("gather");
        self.result(
            op,
            OpResult::Gathered {
                lines: vec!["candidate:9 1 udp 1 10.0.0.2 6000 typ host".into()],
                public_ip: ip("198.51.100.2"),
            },
        );
        assert!(self.started_media(), "{:?}", self.log);
    }

    pub fn started_media(&self) -> bool {
        self.log.iter().any(|a| matches!(a, Action::StartMedia { .. }))
    }

    /// The media connects and audio flows.
    pub fn connect(&mut self) {
        self.media(MediaEvent::Connected);
        self.media(MediaEvent::Received);
    }

    /// Audio keeps arriving for `by` (a report every 250 ms), timers firing meanwhile.
    pub fn flowing(&mut self, by: Duration) {
        let step = Duration::from_millis(250);
        let mut left = by;
        while left > Duration::ZERO {
            let d = left.min(step);
            self.advance(d);
            self.media(MediaEvent::Received);
            left -= d;
        }
    }

    pub fn requests(&self, f: impl Fn(&Request) -> bool) -> usize {
        self.log.iter().filter(|a| matches!(a, Action::Send { request, .. } if f(request))).count()
    }
}

/// A caller's restart: answers the probe (not moved) and the media's offer; returns the SDP.
pub fn caller_restart_offer(w: &mut World, sdp_text: &str) -> bool {
    let Some((op, _)) = w.step(|s| matches!(s, Step::Probe { .. })) else { return false };
    w.result(op, OpResult::Probed { public_ip: ip("203.0.113.1"), relay_died: false });
    let Some((op, _)) = w.step(|s| *s == Step::RestartIce) else { return false };
    w.result(op, OpResult::Sdp(sdp_text.into()));
    true
}
