//! ICE restarts (RFC 8445 §9) on this side of a call.
//!
//! Only the caller (the offerer) restarts, so offers never cross: the callee asks it to with a
//! `call_restart` without SDP. A restart offer still waiting for its answer is sent again
//! unchanged (the media core keeps it). Restarts are spaced by
//! [`CallConfig::restart_spacing`] and at most [`CallConfig::max_restarts`] `call_restart`
//! messages go out per call, as the supernode allows.
//!
//! The side whose network changed — its public address is not the one it started with, or one
//! of its relays lost its connection to the TURN server — gathers fresh candidates on new
//! sockets before it makes its offer or answer, so that the SDP carries them under the new ICE
//! credentials (a trickled line would carry the old ones and be refused). A callee that asks for
//! a restart trickles its fresh candidates at once; the other side keeps its candidates, which
//! still work.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use peerline_wire::Request;

use crate::{CallConfig, OpResult, Ops, Purpose, Side, Step};

/// What asks for a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Nothing arrived from the peer for a while.
    Stalled,
    /// Back on the supernode after the connection dropped: what this side tried to say while
    /// away was lost.
    Resumed,
    /// A `call_restart` from the other side (the caller's offer or answer, or the callee's
    /// request without SDP).
    Signal(Option<String>),
}

/// What a restart operation's result is awaited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Did this side move?
    Probe,
    /// Fresh candidates.
    Regather,
    /// The caller's restart offer.
    Offer,
    /// The callee's answer to a restart offer.
    Answer,
    /// The media applied the answer to our offer.
    AppliedAnswer,
    /// A `call_restart` or fresh candidate went to the supernode.
    Sent,
}

/// What to do once this side knows whether it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Caller: make and send the restart offer.
    Offer,
    /// Callee: answer this restart offer.
    Answer(String),
    /// Callee that asked for a restart: only the fresh candidates, trickled.
    Candidates,
}

/// The restart policy of one call.
#[derive(Debug)]
pub(crate) struct Restart {
    side: Side,
    relay_only: bool,
    spacing: Duration,
    max: u32,
    /// The public address the call started with (its server-reflexive candidate's IP).
    public_ip: Option<IpAddr>,
    /// When this side last started or asked for a restart.
    last: Option<Instant>,
    /// `call_restart` messages sent.
    sent: u32,
    /// The restart in progress.
    plan: Option<Plan>,
    /// Triggers that came while one was in progress.
    queued: VecDeque<Trigger>,
    /// Caller: an offer was sent and not answered yet.
    offer_outstanding: bool,
}

/// Triggers remembered while a restart is in progress.
const MAX_QUEUED: usize = 4;

impl Restart {
    pub(crate) fn new(side: Side, config: &CallConfig) -> Self {
        Restart {
            side,
            relay_only: config.relay_only,
            spacing: config.restart_spacing,
            max: config.max_restarts,
            public_ip: None,
            last: None,
            sent: 0,
            plan: None,
            queued: VecDeque::new(),
            offer_outstanding: false,
        }
    }

    pub(crate) fn set_public_ip(&mut self, ip: Option<IpAddr>) {
        self.public_ip = ip;
    }

    /// `call_restart` messages this side sent.
    pub(crate) fn sent(&self) -> u32 {
        self.sent
    }

    /// Whether a caller's offer awaits its answer.
    pub(crate) fn offer_outstanding(&self) -> bool {
        self.offer_outstanding
    }

    /// Whether a restart is in progress.
    pub(crate) fn in_progress(&self) -> bool {
        self.plan.is_some()
    }

    /// Forgets the restart in progress (the supernode connection is gone, or the call ends).
    pub(crate) fn abort(&mut self) {
        self.plan = None;
        self.queued.clear();
    }

    fn due(&mut self, now: Instant) -> bool {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < self.spacing) {
            return false;
        }
        self.last = Some(now);
        true
    }

    fn budget(&self) -> bool {
        self.sent < self.max
    }

    /// Reacts to a trigger; returns whether a restart started (for the user's progress).
    pub(crate) fn trigger(&mut self, ops: &mut Ops<'_>, trigger: Trigger, now: Instant) -> bool {
        if self.plan.is_some() {
            if self.queued.len() < MAX_QUEUED && !self.queued.contains(&trigger) {
                self.queued.push_back(trigger);
            }
            return false;
        }
        match (self.side, trigger) {
            (_, Trigger::Stalled) => self.path_stalled(ops, now),
            (_, Trigger::Resumed) => {
                self.last = None;
                self.path_stalled(ops, now)
            }
            (Side::Caller, Trigger::Signal(None)) => {
                // The callee asks (the supernode limits how often): an offer of ours may have
                // been lost with its old connection, so no spacing here.
                self.last = Some(now);
                if !self.budget() {
                    return false;
                }
                self.begin(ops, Plan::Offer);
                true
            }
            (Side::Caller, Trigger::Signal(Some(answer))) => {
                self.offer_outstanding = false;
                ops.run(Step::AcceptRestartAnswer(answer), Purpose::Restart(Wait::AppliedAnswer));
                false
            }
            (Side::Callee, Trigger::Signal(Some(offer))) => {
                if !self.budget() {
                    return false;
                }
                self.begin(ops, Plan::Answer(offer));
                true
            }
            // Only the caller asks without SDP; nothing to answer.
            (Side::Callee, Trigger::Signal(None)) => false,
        }
    }

    fn path_stalled(&mut self, ops: &mut Ops<'_>, now: Instant) -> bool {
        if !self.budget() || !self.due(now) {
            return false;
        }
        match self.side {
            Side::Caller => self.begin(ops, Plan::Offer),
            Side::Callee => {
                let ask = Request::CallRestart { call_id: ops.call_id.to_owned(), sdp: None };
                self.sent += 1;
                ops.send(ask, Purpose::Restart(Wait::Sent));
                // Our own address may be the one that changed: the caller learns the fresh
                // candidates now, and again from our restart answer.
                self.begin(ops, Plan::Candidates);
            }
        }
        true
    }

    /// Starts a restart: first find out whether this side moved.
    fn begin(&mut self, ops: &mut Ops<'_>, plan: Plan) {
        self.plan = Some(plan);
        let probe = Step::Probe { public_address: !self.relay_only };
        ops.run(probe, Purpose::Restart(Wait::Probe));
    }

    /// The result of a restart operation; returns whether a queued restart started.
    pub(crate) fn on_result(
        &mut self,
        ops: &mut Ops<'_>,
        wait: Wait,
        result: OpResult,
        now: Instant,
    ) -> bool {
        match (wait, result) {
            (Wait::Probe, OpResult::Probed { public_ip, relay_died }) => {
                // A relay whose connection to its server died (its 5-tuple changed with the
                // address) must be replaced; with only relays that is the only sign.
                let moved_address =
                    !self.relay_only && public_ip.is_some() && public_ip != self.public_ip;
                if moved_address {
                    self.public_ip = public_ip;
                }
                if moved_address || relay_died {
                    ops.run(Step::Regather, Purpose::Restart(Wait::Regather));
                    return false;
                }
                self.proceed(ops, now)
            }
            (Wait::Regather, OpResult::Gathered { lines, .. }) => {
                if self.plan == Some(Plan::Candidates) {
                    ops.trickle(lines, Purpose::Restart(Wait::Sent));
                }
                self.proceed(ops, now)
            }
            // Without an answer from the STUN responder or fresh candidates, the restart goes
            // on with the candidates this side has.
            (Wait::Probe | Wait::Regather, _) => self.proceed(ops, now),
            (Wait::Offer | Wait::Answer, OpResult::Sdp(sdp)) => {
                if !self.budget() {
                    return self.done(ops, now);
                }
                self.sent += 1;
                self.offer_outstanding |= wait == Wait::Offer;
                let request =
                    Request::CallRestart { call_id: ops.call_id.to_owned(), sdp: Some(sdp) };
                ops.send(request, Purpose::Restart(Wait::Sent));
                self.done(ops, now)
            }
            // The media could not restart (it ended, or refused the peer's SDP): give up this
            // restart; a later stall tries again.
            (Wait::Offer | Wait::Answer, _) => self.done(ops, now),
            (Wait::AppliedAnswer | Wait::Sent, _) => false,
        }
    }

    /// This side knows whether it moved: make the offer or answer, or finish.
    fn proceed(&mut self, ops: &mut Ops<'_>, now: Instant) -> bool {
        match self.plan.clone() {
            Some(Plan::Offer) => {
                ops.run(Step::RestartIce, Purpose::Restart(Wait::Offer));
                false
            }
            Some(Plan::Answer(offer)) => {
                ops.run(Step::AcceptRestartOffer(offer), Purpose::Restart(Wait::Answer));
                false
            }
            Some(Plan::Candidates) | None => self.done(ops, now),
        }
    }

    /// The restart in progress is over: take the next queued trigger.
    fn done(&mut self, ops: &mut Ops<'_>, now: Instant) -> bool {
        self.plan = None;
        let mut started = false;
        while self.plan.is_none()
            && let Some(trigger) = self.queued.pop_front()
        {
            started |= self.trigger(ops, trigger, now);
        }
        started
    }
}
