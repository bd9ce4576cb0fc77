//! [`Call`]: one call's state machine, from the dial or the invite to its one end. It routes
//! each input to the setup ([`crate::setup`]), the in-call timers ([`crate::talk`]) or the ICE
//! restart policy ([`crate::restart`]) and queues their actions in order.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use peerline_media::{EndReason as MediaEnd, MediaEvent, SelectedPath};
use peerline_wire::{CallEndReason, ErrorCode, Event, Request};

use crate::ops::Ops;
use crate::restart::{self, Restart};
use crate::setup::{self, Setup};
use crate::talk::{self, Talk};
use crate::verify::PeerClaim;
use crate::{
    Action, CallConfig, CallEnd, Dial, Failure, Invite, MediaInput, OpId, OpResult, Outcome,
    Progress, SetupTimings, Side, Step,
};

/// What an operation in flight was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Its result does not matter (a hang-up, a decline, a trickled candidate).
    Ignore,
    /// Part of the setup.
    Setup(setup::Wait),
    /// Part of an ICE restart.
    Restart(restart::Wait),
    /// A reconnect and `call_resume`.
    Resume,
}

/// One call on this side.
#[derive(Debug)]
pub struct Call {
    config: CallConfig,
    call_id: String,
    me: String,
    peer: String,
    side: Side,
    /// The dial, or the invite's arrival.
    started: Instant,
    next_op: u64,
    ops: HashMap<OpId, Purpose>,
    actions: VecDeque<Action>,
    timings: SetupTimings,
    path: Option<SelectedPath>,
    /// `Some` until the call is answered and its media started.
    setup: Option<Setup>,
    talk: Talk,
    restart: Restart,
    /// Set once [`Action::End`] is queued.
    ended: bool,
}

impl Call {
    fn new(
        config: CallConfig,
        call_id: String,
        me: String,
        peer: String,
        side: Side,
        now: Instant,
    ) -> Self {
        let restart = Restart::new(side, &config);
        Call {
            config,
            call_id,
            me,
            peer,
            side,
            started: now,
            next_op: 1,
            ops: HashMap::new(),
            actions: VecDeque::new(),
            timings: SetupTimings::default(),
            path: None,
            setup: None,
            talk: Talk::default(),
            restart,
            ended: false,
        }
    }

    /// Dials: the first action sends the invite.
    pub fn dial(dial: Dial, config: CallConfig, now: Instant) -> Self {
        let mut call = Call::new(
            config,
            dial.call_id.clone(),
            dial.me.clone(),
            dial.to.clone(),
            Side::Caller,
            now,
        );
        call.restart.set_public_ip(dial.public_ip);
        let setup = Setup::dial(&mut call_ops(&mut call), dial);
        call.setup = Some(setup);
        call
    }

    /// Answers an invite (the user or `--auto-answer` said yes; `started` is when it arrived):
    /// the first actions verify the caller.
    pub fn answer(invite: Invite, config: CallConfig, started: Instant) -> Self {
        let mut call = Call::new(
            config,
            invite.call_id.clone(),
            invite.me.clone(),
            invite.caller.peer.clone(),
            Side::Callee,
            started,
        );
        let (setup, next) = Setup::answer(&mut call_ops(&mut call), invite);
        call.setup = Some(setup);
        if let setup::Next::End(outcome) = next {
            call.end(outcome);
        }
        call
    }

    /// The timers and limits the call runs with.
    pub fn config(&self) -> &CallConfig {
        &self.config
    }

    /// The call's id.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The other user.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Which end this side is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Setup times so far.
    pub fn timings(&self) -> SetupTimings {
        self.timings
    }

    /// The last path the media reported.
    pub fn path(&self) -> Option<SelectedPath> {
        self.path
    }

    /// Whether [`Action::End`] was queued.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// `call_restart` messages this side sent (restart offers, answers, requests for one).
    pub fn restarts_sent(&self) -> u32 {
        self.restart.sent()
    }

    /// Caller: whether a restart offer awaits its answer.
    pub fn restart_offer_outstanding(&self) -> bool {
        self.restart.offer_outstanding()
    }

    /// Whether the result of `op` is still awaited.
    pub fn awaits(&self, op: OpId) -> bool {
        self.ops.contains_key(&op)
    }

    /// Whether an ICE restart is in progress.
    pub fn restarting(&self) -> bool {
        self.restart.in_progress()
    }

    /// Whether the supernode connection is up as far as the call knows.
    pub fn signaling_up(&self) -> bool {
        self.talk.signaling_up()
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Call::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let setup = self.setup.as_ref().and_then(Setup::poll_timeout);
        let talk = self.talk.poll_timeout(&self.config);
        [setup, talk].into_iter().flatten().min()
    }

    /// A push from the supernode.
    pub fn handle_event(&mut self, event: Event, now: Instant) {
        if self.ended {
            return;
        }
        if let Event::CallIncoming { call_id, .. } = &event
            && *call_id != self.call_id
        {
            // Busy with this call: other calls are declined for this device only.
            let request =
                Request::CallDecline { call_id: call_id.clone(), busy: true, reason: None };
            self.send(request, Purpose::Ignore);
            return;
        }
        match event {
            Event::CallRinging { call_id }
                if call_id == self.call_id
                    && self.setup.is_some()
                    && self.timings.ringing.is_none() =>
            {
                let after = now.saturating_duration_since(self.started);
                self.timings.ringing = Some(after);
                self.progress(Progress::Ringing { after });
            }
            Event::CallAccepted { call_id, device_id, device_key, sdp, fingerprint_signature }
                if call_id == self.call_id =>
            {
                let claim = PeerClaim {
                    peer: self.peer.clone(),
                    device_id,
                    device_key,
                    sdp,
                    signature: fingerprint_signature,
                };
                self.with_setup(now, |setup, ops, _| setup.on_accepted(ops, claim));
            }
            Event::CallCandidate { call_id, candidate } if call_id == self.call_id => {
                if let Some(setup) = &mut self.setup {
                    setup.early_candidate(candidate);
                } else if self.talk.media_running() {
                    self.actions.push_back(Action::RemoteCandidate(candidate));
                }
            }
            Event::CallRestart { call_id, sdp }
                if call_id == self.call_id && self.setup.is_none() && self.talk.media_running() =>
            {
                self.restart_trigger(restart::Trigger::Signal(sdp), now);
            }
            Event::CallEnded { call_id, reason } if call_id == self.call_id => {
                if self.setup.is_some() {
                    self.setup = None;
                    self.end(Ok(CallEnd::Remote(reason)));
                } else {
                    self.finish(CallEnd::Remote(reason));
                }
            }
            _ => {}
        }
    }

    /// What the media reports.
    pub fn handle_media(&mut self, input: MediaInput, now: Instant) {
        if self.ended {
            return;
        }
        match input {
            MediaInput::Event(event) => self.media_event(event, now),
            MediaInput::Ended(reason) => self.media_ended(reason, now),
        }
    }

    /// The result of an [`Action::Send`] or [`Action::Run`].
    pub fn handle_result(&mut self, op: OpId, result: OpResult, now: Instant) {
        let Some(purpose) = self.ops.remove(&op) else { return };
        if self.ended {
            return;
        }
        match purpose {
            Purpose::Ignore => {}
            Purpose::Setup(wait) => {
                self.with_setup(now, |setup, ops, now| setup.on_result(ops, wait, op, result, now));
            }
            Purpose::Restart(wait) => {
                if result == OpResult::Broken {
                    // A request that got no answer: the supernode connection is gone.
                    self.abort_restart();
                    self.signaling_lost(now);
                    return;
                }
                let (mut ops, restart) = ops_and_restart(self);
                let started = restart.on_result(&mut ops, wait, result, now);
                self.after_restart_step(started);
            }
            Purpose::Resume => self.resumed(result, now),
        }
    }

    /// The user hung up (or cancelled, or the call's duration is over).
    pub fn hang_up(&mut self, _now: Instant) {
        if self.ended {
            return;
        }
        if self.setup.is_some() {
            self.abandon_setup(CallEnd::HungUpHere);
            return;
        }
        self.finish(CallEnd::HungUpHere);
    }

    /// The supernode connection closed. During setup the call fails with it; during the call
    /// the media goes on while the driver reconnects and resumes.
    pub fn signaling_lost(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.setup.is_some() {
            self.setup = None;
            // No operation failed: the driver reports the closed connection for this id.
            let op = call_ops(self).failure();
            self.end(Err(Failure::Op(op)));
            return;
        }
        if self.talk.signaling_up() && !self.talk.is_finishing() {
            self.abort_restart();
            self.talk.start_reconnect(now, &self.config);
            self.resume_if_due(now);
        }
    }

    /// Timers: the ring guard, connect and lost-path timeouts, stalls, the resume window and
    /// the wait for `call_ended`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if let Some(setup) = &self.setup {
            if setup.ring_guard_expired(now) {
                self.abandon_setup(CallEnd::Remote(CallEndReason::NoAnswer));
            }
            return;
        }
        match self.talk.on_timeout(now, &self.config) {
            Some(talk::Due::GiveUp(end)) => {
                // This side gives up on the media: tell the supernode the call is over.
                self.send_hangup();
                self.finish(end);
            }
            Some(talk::Due::NoEndWord(media_end)) => {
                self.send_hangup();
                self.end(Ok(CallEnd::Media(media_end)));
            }
            Some(talk::Due::Stalled) => self.restart_trigger(restart::Trigger::Stalled, now),
            Some(talk::Due::ResumeExpired) => {
                // The call cannot be signaled any more (no hang-up, no restart): end it
                // rather than leave a call nobody can end but this side.
                self.finish(CallEnd::SupernodeLost);
            }
            Some(talk::Due::Resume) => self.resume_if_due(now),
            None => {}
        }
    }

    fn media_event(&mut self, event: MediaEvent, now: Instant) {
        let after = now.saturating_duration_since(self.started);
        match event {
            MediaEvent::Connected => {
                self.talk.connected(now);
                if self.timings.connected.is_none() {
                    self.timings.connected = Some(after);
                    self.progress(Progress::Connected { after });
                }
            }
            MediaEvent::FirstAudio if self.timings.first_audio.is_none() => {
                self.timings.first_audio = Some(after);
                self.progress(Progress::FirstAudio { after });
            }
            MediaEvent::SelectedPath(path) => {
                self.path = Some(path);
                self.progress(Progress::Path(path));
            }
            MediaEvent::Received => self.talk.received(now),
            MediaEvent::Disconnected => {
                self.talk.path_lost(now);
                self.progress(Progress::PathLost);
            }
            MediaEvent::Reconnected => {
                self.talk.path_back();
                self.progress(Progress::PathBack);
            }
            _ => {}
        }
    }

    fn media_ended(&mut self, reason: MediaEnd, now: Instant) {
        match self.talk.media_ended() {
            Some(decided) => self.end(Ok(decided)),
            None if reason == MediaEnd::PeerClosed && self.talk.signaling_up() => {
                // The peer's orderly close of the media (DTLS close_notify) usually overtakes
                // its hang-up through the supernode: wait briefly for the supernode's word.
                self.talk.wait_for_end_word(now, &self.config, reason);
            }
            None => {
                // The media ended by itself: tell the supernode the call is over.
                self.send_hangup();
                self.end(Ok(CallEnd::Media(reason)));
            }
        }
    }

    /// Ends an answered call for `end`: tells the supernode when this side ends it, stops the
    /// media and ends once it stopped.
    fn finish(&mut self, end: CallEnd) {
        if let Some(media_end) = self.talk.waiting_for_end_word() {
            // The media already ended; the supernode's word is what we waited for.
            let end =
                if matches!(end, CallEnd::Remote(_)) { end } else { CallEnd::Media(media_end) };
            if !matches!(end, CallEnd::Remote(_)) {
                self.send_hangup();
            }
            self.end(Ok(end));
            return;
        }
        if self.talk.is_finishing() {
            return;
        }
        if matches!(end, CallEnd::HungUpHere) {
            self.send_hangup();
        }
        self.abort_restart();
        if self.talk.media_running() {
            self.talk.media_stopping();
            self.actions.push_back(Action::StopMedia);
            self.talk.decide(end);
        } else {
            self.end(Ok(end));
        }
    }

    /// Gives up a call that is still being set up: cancels, hangs up or declines, as this
    /// side's setup stands, and ends.
    fn abandon_setup(&mut self, end: CallEnd) {
        if let Some(setup) = self.setup.take() {
            self.send(setup.hang_up_request(&self.call_id), Purpose::Ignore);
        }
        self.end(Ok(end));
    }

    /// Forgets the restart in progress; the results of its operations still in flight are
    /// ignored when they come (a new restart must not take them for its own).
    fn abort_restart(&mut self) {
        self.restart.abort();
        self.ops.retain(|_, purpose| {
            !matches!(
                purpose,
                Purpose::Restart(
                    restart::Wait::Probe
                        | restart::Wait::Regather
                        | restart::Wait::Offer
                        | restart::Wait::Answer
                )
            )
        });
    }

    fn send_hangup(&mut self) {
        if self.talk.signaling_up() {
            self.send(Request::CallHangup { call_id: self.call_id.clone() }, Purpose::Ignore);
        }
    }

    fn restart_trigger(&mut self, trigger: restart::Trigger, now: Instant) {
        if !self.talk.signaling_up() || self.talk.is_finishing() {
            return;
        }
        let (mut ops, restart) = ops_and_restart(self);
        let started = restart.trigger(&mut ops, trigger, now);
        self.after_restart_step(started);
    }

    fn after_restart_step(&mut self, started: bool) {
        if started {
            self.progress(Progress::Restarting);
        }
    }

    fn resume_if_due(&mut self, now: Instant) {
        if self.talk.resume_due(now) && !self.ops.values().any(|p| *p == Purpose::Resume) {
            self.talk.resume_started();
            call_ops(self).run(Step::Resume, Purpose::Resume);
        }
    }

    fn resumed(&mut self, result: OpResult, now: Instant) {
        match result {
            OpResult::Reply(_) | OpResult::Done => {
                self.talk.signaling_back();
                if self.talk.is_finishing() {
                    return;
                }
                // What this side tried to say while it was away was lost: restart (or ask for
                // it) now.
                self.restart_trigger(restart::Trigger::Resumed, now);
            }
            OpResult::Refused(ErrorCode::NoSuchCall) => {
                // The call ended while we were away.
                self.talk.signaling_back();
                self.finish(CallEnd::Remote(CallEndReason::PeerGone));
            }
            _ => {
                if !self.talk.resume_failed(now, &self.config) {
                    self.finish(CallEnd::SupernodeLost);
                }
            }
        }
    }

    /// Runs a setup step and moves on when it says the media can start or the call is over.
    fn with_setup(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Setup, &mut Ops<'_>, Instant) -> setup::Next,
    ) {
        let Some(mut setup) = self.setup.take() else { return };
        let next = f(&mut setup, &mut call_ops(self), now);
        match next {
            setup::Next::Wait => self.setup = Some(setup),
            setup::Next::Talk { remote_candidates, public_ip } => {
                if let Some(ip) = public_ip {
                    self.restart.set_public_ip(Some(ip));
                }
                self.talk.media_started(now);
                self.actions.push_back(Action::StartMedia { remote_candidates });
            }
            setup::Next::End(outcome) => self.end(outcome),
        }
    }

    fn progress(&mut self, progress: Progress) {
        call_ops(self).progress(progress);
    }

    fn send(&mut self, request: Request, purpose: Purpose) {
        call_ops(self).send(request, purpose);
    }

    fn end(&mut self, outcome: Outcome) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.setup = None;
        self.actions.push_back(Action::End(outcome));
    }
}

pub(crate) fn call_ops(call: &mut Call) -> Ops<'_> {
    ops_and_restart(call).0
}

/// The call's [`Ops`] beside its restart policy, borrowed apart.
pub(crate) fn ops_and_restart(call: &mut Call) -> (Ops<'_>, &mut Restart) {
    let ops = Ops {
        next_op: &mut call.next_op,
        ops: &mut call.ops,
        actions: &mut call.actions,
        call_id: &call.call_id,
        me: &call.me,
        started: call.started,
        config: &call.config,
    };
    (ops, &mut call.restart)
}
