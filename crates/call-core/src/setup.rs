//! A call from the invite to the start of its media.
//!
//! Caller: send the invite; a busy or unavailable callee ends the call at once; once placed,
//! trickle this side's candidates (the supernode holds them until a device accepts, and gives
//! them to that device only); keep the callee's early candidates; on `call_accepted` check the
//! signature, then the pinned key, then apply the answer and start the media. Give up after the
//! ring guard.
//!
//! Callee: check the caller's signature and key before anything about this side's network goes
//! out, decline when either fails; apply the offer, accept; another device that was faster
//! means `answered_elsewhere`; only after accepting gather and trickle candidates.

use std::net::IpAddr;
use std::time::Instant;

use peerline_wire::{CallEndReason, ErrorCode, Reply, Request, SdpRole};

use crate::verify::{KeyCheck, PeerClaim, signature_ok};
use crate::{
    CallEnd, Dial, Failure, Invite, OpId, OpResult, Ops, Outcome, Progress, Purpose, Step,
};

/// What a setup operation's result is awaited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Caller: the answer to the invite.
    Invite,
    /// The pinned-key check of the peer's device.
    Key,
    /// Caller: the media applied the answer.
    Answer,
    /// Callee: the media made and signed the answer.
    Offer,
    /// Callee: the supernode took the `call_accept`.
    Accept,
    /// Callee: candidates gathered after accepting.
    Gather,
}

/// What the call does after a setup step.
#[derive(Debug)]
pub(crate) enum Next {
    /// Still setting up.
    Wait,
    /// Start the media.
    Talk {
        /// The peer's candidates that came early.
        remote_candidates: Vec<String>,
        /// This side's public IP, when gathering found it now.
        public_ip: Option<IpAddr>,
    },
    /// The call is over.
    End(Outcome),
}

/// Where the setup stands.
#[derive(Debug)]
pub(crate) struct Setup {
    side: Side,
    /// Caller: this side's candidate lines, trickled once the invite is placed.
    candidates: Vec<String>,
    /// The peer's candidates, held until the media runs.
    early_candidates: Vec<String>,
    /// Caller: when to give up ringing.
    ring_guard: Option<Instant>,
    /// The peer's claim being checked (answer or offer, its device).
    claim: Option<PeerClaim>,
    key: Option<KeyCheck>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Callee,
}

impl Setup {
    /// Sends the invite.
    pub(crate) fn dial(ops: &mut Ops<'_>, dial: Dial) -> Self {
        let invite = Request::CallInvite {
            call_id: dial.call_id,
            to: dial.to,
            sdp: dial.sdp,
            fingerprint_signature: dial.signature,
        };
        ops.send(invite, Purpose::Setup(Wait::Invite));
        Setup {
            side: Side::Caller,
            candidates: dial.candidates,
            early_candidates: Vec::new(),
            ring_guard: None,
            claim: None,
            key: None,
        }
    }

    /// Checks the caller's claim; declines at once when its signature is bad (then the
    /// returned [`Next`] ends the call).
    pub(crate) fn answer(ops: &mut Ops<'_>, invite: Invite) -> (Self, Next) {
        let mut setup = Setup {
            side: Side::Callee,
            candidates: Vec::new(),
            early_candidates: Vec::new(),
            ring_guard: None,
            claim: None,
            key: None,
        };
        let next = setup.check_claim(ops, invite.caller, SdpRole::Offer);
        (setup, next)
    }

    /// When the ring guard fires.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.ring_guard
    }

    /// Whether the caller has rung long enough.
    pub(crate) fn ring_guard_expired(&self, now: Instant) -> bool {
        self.ring_guard.is_some_and(|at| now >= at)
    }

    /// What tells the supernode that this side gives up before the media ran: a cancel from
    /// the caller (a hang-up once the callee accepted), a decline from the callee.
    pub(crate) fn hang_up_request(&self, call_id: &str) -> Request {
        let call_id = call_id.to_owned();
        match (self.side, &self.claim) {
            (Side::Caller, None) => Request::CallCancel { call_id },
            (Side::Caller, Some(_)) => Request::CallHangup { call_id },
            (Side::Callee, _) => Request::CallDecline { call_id, busy: false, reason: None },
        }
    }

    /// A candidate of the peer's that came before the media runs.
    pub(crate) fn early_candidate(&mut self, line: String) {
        // The supernode limits candidates per side; this bound only guards memory.
        if self.early_candidates.len() < 256 {
            self.early_candidates.push(line);
        }
    }

    /// Caller: a callee device accepted.
    pub(crate) fn on_accepted(&mut self, ops: &mut Ops<'_>, claim: PeerClaim) -> Next {
        if self.side != Side::Caller || self.claim.is_some() || self.ring_guard.is_none() {
            return Next::Wait;
        }
        self.ring_guard = None;
        self.check_claim(ops, claim, SdpRole::Answer)
    }

    /// Checks the signature (here, pure), then asks the driver for the key check.
    fn check_claim(&mut self, ops: &mut Ops<'_>, claim: PeerClaim, role: SdpRole) -> Next {
        let signed = signature_ok(&claim, ops.call_id, role, ops.me);
        let failure =
            Failure::BadSignature { peer: claim.peer.clone(), device_id: claim.device_id };
        // Held from here on, so that giving up is a hang-up (caller) or a decline (callee).
        let claim = self.claim.insert(claim);
        if !signed {
            self.give_up(ops);
            return Next::End(Err(failure));
        }
        ops.run(Step::CheckKey(claim.clone()), Purpose::Setup(Wait::Key));
        Next::Wait
    }

    /// Tells the supernode this side gives up on the call.
    fn give_up(&self, ops: &mut Ops<'_>) {
        ops.send(self.hang_up_request(ops.call_id), Purpose::Ignore);
    }

    /// The result of a setup step.
    pub(crate) fn on_result(
        &mut self,
        ops: &mut Ops<'_>,
        wait: Wait,
        op: OpId,
        result: OpResult,
        now: Instant,
    ) -> Next {
        match (wait, result) {
            (Wait::Invite, OpResult::Reply(Reply::CallPlaced { ringing_devices, .. })) => {
                let call_id = ops.call_id.to_owned();
                ops.progress(Progress::Dialing { call_id, devices: ringing_devices });
                ops.trickle(std::mem::take(&mut self.candidates), Purpose::Ignore);
                self.ring_guard = Some(now + ops.config.ring_guard);
                Next::Wait
            }
            (Wait::Invite, OpResult::Refused(ErrorCode::CalleeBusy)) => {
                Next::End(Ok(CallEnd::Remote(CallEndReason::Busy)))
            }
            (Wait::Invite, OpResult::Refused(ErrorCode::CalleeUnavailable)) => {
                Next::End(Ok(CallEnd::Remote(CallEndReason::Unavailable)))
            }
            (Wait::Invite, _) => Next::End(Err(Failure::Op(op))),
            (Wait::Key, OpResult::KeyChecked(check)) => {
                self.key = Some(check);
                let Some(claim) = &self.claim else { return Next::End(Err(Failure::Op(op))) };
                let step = match self.side {
                    Side::Caller => Step::AcceptAnswer(claim.sdp.clone()),
                    Side::Callee => Step::AcceptOffer(claim.sdp.clone()),
                };
                let wait = match self.side {
                    Side::Caller => Wait::Answer,
                    Side::Callee => Wait::Offer,
                };
                ops.run(step, Purpose::Setup(wait));
                Next::Wait
            }
            (Wait::Answer, OpResult::Done) => {
                self.answered(ops, now);
                Next::Talk {
                    remote_candidates: std::mem::take(&mut self.early_candidates),
                    public_ip: None,
                }
            }
            (Wait::Offer, OpResult::Signed { sdp, signature }) => {
                let accept = Request::CallAccept {
                    call_id: ops.call_id.to_owned(),
                    sdp,
                    fingerprint_signature: signature,
                };
                ops.send(accept, Purpose::Setup(Wait::Accept));
                Next::Wait
            }
            (Wait::Accept, OpResult::Reply(_)) => {
                self.answered(ops, now);
                // Only now, after accepting, does anything about our network go out.
                ops.run(Step::Gather, Purpose::Setup(Wait::Gather));
                Next::Wait
            }
            (Wait::Accept, OpResult::Refused(ErrorCode::NoSuchCall)) => {
                // Another device was faster, or the caller gave up.
                Next::End(Ok(CallEnd::Remote(CallEndReason::AnsweredElsewhere)))
            }
            (Wait::Gather, OpResult::Gathered { lines, public_ip }) => {
                ops.trickle(lines, Purpose::Ignore);
                Next::Talk {
                    remote_candidates: std::mem::take(&mut self.early_candidates),
                    public_ip,
                }
            }
            (Wait::Key | Wait::Answer | Wait::Offer | Wait::Gather, _) => {
                // A refused key, an SDP the media could not use, no candidates: give up.
                self.give_up(ops);
                Next::End(Err(Failure::Op(op)))
            }
            (Wait::Accept, _) => Next::End(Err(Failure::Op(op))),
        }
    }

    fn answered(&mut self, ops: &mut Ops<'_>, now: Instant) {
        let after = now.saturating_duration_since(ops.started);
        let (Some(claim), Some(key)) = (&self.claim, self.key) else { return };
        ops.progress(Progress::Answered { after, device_id: claim.device_id, key });
    }
}
