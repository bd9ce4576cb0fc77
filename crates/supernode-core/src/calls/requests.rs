//! What a device connected here asks of a call.

use std::time::Instant;

use peerline_wire::{CallEndReason, CallId, DeviceId, ErrorBody, ErrorCode, Event};

use super::{Call, CallRecord, End, PendingAnswer, Phase, RemoteRing, no_such_call};
use crate::cluster::{BusMessage, Route};
use crate::hub::{ConnId, Hub, Output, UserId};
use crate::rate::TokenBucket;

/// What the driver knows about a new call when it asks the hub to place it (after checking
/// that caller and callee are accepted contacts and the fields are well-formed).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallInvite {
    /// The caller's chosen id.
    pub call_id: CallId,
    /// Caller account.
    pub caller: UserId,
    /// Caller username.
    pub caller_name: String,
    /// Caller display name.
    pub caller_display_name: String,
    /// The calling device.
    pub caller_device: DeviceId,
    /// The calling device's public key, hex.
    pub caller_device_key: String,
    /// Callee account.
    pub callee: UserId,
    /// The SDP offer.
    pub sdp: String,
    /// The signature over the offer's fingerprint.
    pub fingerprint_signature: String,
}

impl CallInvite {
    /// The event a ringing device gets.
    pub(crate) fn incoming(&self) -> Event {
        Event::CallIncoming {
            call_id: self.call_id.clone(),
            from: self.caller_name.clone(),
            display_name: self.caller_display_name.clone(),
            device_id: self.caller_device,
            device_key: self.caller_device_key.clone(),
            sdp: self.sdp.clone(),
            fingerprint_signature: self.fingerprint_signature.clone(),
        }
    }
}

/// A callee device's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallAnswer {
    /// The answering device.
    pub device_id: DeviceId,
    /// Its public key, hex.
    pub device_key: String,
    /// The SDP answer.
    pub sdp: String,
    /// The signature over the answer's fingerprint.
    pub fingerprint_signature: String,
}

impl CallAnswer {
    pub(crate) fn accepted(self, call_id: &str) -> Event {
        Event::CallAccepted {
            call_id: call_id.to_owned(),
            device_id: self.device_id,
            device_key: self.device_key,
            sdp: self.sdp,
            fingerprint_signature: self.fingerprint_signature,
        }
    }
}

/// Why an invite did not ring anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteRefused {
    /// The request was refused (limits, duplicate id).
    Error(ErrorBody),
    /// The call ended at once: the callee is offline or in another call. A missed call was
    /// queued for the callee.
    Ended(CallEndReason),
}

impl Hub {
    /// Places a call: rings every live connection of the callee here and asks the other
    /// supernodes holding devices of the callee to ring theirs. Returns how many ring (or are
    /// asked to).
    pub fn call_invite(
        &mut self,
        conn: ConnId,
        invite: CallInvite,
        now: Instant,
    ) -> Result<u32, InviteRefused> {
        let refuse = |code: ErrorCode| InviteRefused::Error(ErrorBody::new(code));
        match self.login_of(conn) {
            Some((user, device)) if user == invite.caller && device == invite.caller_device => {}
            _ => return Err(refuse(ErrorCode::NotAuthenticated)),
        }
        let config = self.call_config().clone();
        if self.calls.calls.contains_key(&invite.call_id) {
            return Err(refuse(ErrorCode::CallExists));
        }
        let per_minute = config.invites_per_minute;
        self.calls
            .invites
            .entry(invite.caller)
            .or_insert_with(|| TokenBucket::new(config.invite_burst, per_minute / 60.0, now))
            .try_take(now)
            .map_err(|wait| {
                let mut body = ErrorBody::new(ErrorCode::CallLimit);
                body.retry_after_secs = Some(wait.as_secs().saturating_add(1));
                InviteRefused::Error(body)
            })?;
        if self.calls.len() >= config.max_calls
            || self.calls.calls_of(invite.caller) >= config.max_calls_per_user
        {
            return Err(refuse(ErrorCode::CallLimit));
        }
        let devices = self.user_conns(invite.callee);
        // Other supernodes that reported devices of the callee (invisible ones too).
        let elsewhere = self.devices_elsewhere(invite.callee);
        let busy = self.calls.in_answered_call(invite.callee)
            || self.calls.calls_of(invite.callee) >= config.max_calls_per_user;
        if (devices.is_empty() && elsewhere.is_empty()) || busy {
            self.missed(invite.callee, invite.caller, &invite.call_id);
            let reason = if busy { CallEndReason::Busy } else { CallEndReason::Unavailable };
            return Err(InviteRefused::Ended(reason));
        }
        self.send_call_event(devices.clone(), invite.incoming());
        let remote_devices: u32 = elsewhere.iter().map(|(_, n)| *n).sum();
        let remote = elsewhere
            .into_iter()
            .map(|(node, _)| RemoteRing::Waiting { node, until: now + config.remote_ring_wait })
            .collect::<Vec<_>>();
        if !remote.is_empty() {
            let msg = BusMessage::CallInvite { invite: invite.clone() };
            self.push_output(Output::Bus { to: Route::User(invite.callee), msg });
        }
        let ringing =
            u32::try_from(devices.len()).unwrap_or(u32::MAX).saturating_add(remote_devices);
        let call = Call {
            caller: invite.caller,
            caller_device: invite.caller_device,
            caller_end: End::Local(conn),
            callee: invite.callee,
            phase: Phase::Ringing {
                since: now,
                devices,
                remote,
                told_ringing: false,
                held: Vec::new(),
            },
            refusal: None,
            candidates_from_caller: 0,
            candidates_from_callee: 0,
            restarts_from_caller: 0,
            restarts_from_callee: 0,
            peer_lost_at: None,
        };
        self.calls.insert(invite.call_id, call);
        Ok(ringing)
    }

    /// A callee device says it rings; the caller is told once.
    pub fn call_ringing(&mut self, conn: ConnId, call_id: &str) -> Result<(), ErrorBody> {
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        match &mut call.phase {
            Phase::Ringing { devices, told_ringing, .. } if devices.contains(&conn) => {
                if !*told_ringing {
                    *told_ringing = true;
                    let (caller, end) = (call.caller, call.caller_end.clone());
                    let event = Event::CallRinging { call_id: call_id.to_owned() };
                    self.send_to_end(caller, &end, call_id, event);
                }
                Ok(())
            }
            Phase::Leg { devices, told_ringing, .. } if devices.contains(&conn) => {
                if !*told_ringing {
                    *told_ringing = true;
                    self.send_to_caller_node(
                        call_id,
                        BusMessage::CallRinging { call_id: call_id.to_owned() },
                    );
                }
                Ok(())
            }
            _ => Err(no_such_call()),
        }
    }

    /// A callee device answers. The first one wins; the other ringing devices stop, and the
    /// caller's held candidates go to the winner. On a leg, the caller's supernode decides:
    /// until it says who won, the device's candidates are held here.
    pub fn call_accept(
        &mut self,
        conn: ConnId,
        call_id: &str,
        answer: CallAnswer,
    ) -> Result<(), ErrorBody> {
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        match &mut call.phase {
            Phase::Ringing { devices, .. } if devices.contains(&conn) => {
                self.answered_by(call_id, End::Local(conn), answer);
                Ok(())
            }
            Phase::Leg { devices, accepted, .. } if devices.contains(&conn) => {
                // A second answer from the same device is refused, as it is once a call placed
                // here is answered.
                if accepted.iter().any(|a| a.conn == conn) {
                    return Err(no_such_call());
                }
                accepted.push(PendingAnswer { conn, held: Vec::new() });
                let msg = BusMessage::CallAccept { call_id: call_id.to_owned(), answer };
                self.send_to_caller_node(call_id, msg);
                Ok(())
            }
            _ => Err(no_such_call()),
        }
    }

    /// A call placed here is answered by `winner` (here or elsewhere): the caller hears it,
    /// every other device stops ringing, held candidates go to the winner, and the call is
    /// registered for takeovers.
    pub(crate) fn answered_by(&mut self, call_id: &str, winner: End, answer: CallAnswer) {
        let Some(call) = self.calls.calls.get_mut(call_id) else { return };
        let Phase::Ringing { devices, remote, held, .. } = &mut call.phase else { return };
        let others: Vec<ConnId> = devices.iter().copied().filter(|c| !winner.is(*c)).collect();
        let held = std::mem::take(held);
        let remote_live = remote.iter().any(RemoteRing::live);
        let callee_device = match &winner {
            End::Local(c) => self.login_of(*c).map_or(answer.device_id, |(_, d)| d),
            End::Remote { device, .. } => *device,
        };
        let Some(call) = self.calls.calls.get_mut(call_id) else { return };
        call.phase = Phase::Answered { callee_end: winner.clone() };
        let (caller, callee, caller_end) = (call.caller, call.callee, call.caller_end.clone());
        let record =
            CallRecord { caller, caller_device: call.caller_device, callee, callee_device };
        self.send_to_end(caller, &caller_end, call_id, answer.accepted(call_id));
        self.ended(others, call_id, CallEndReason::AnsweredElsewhere);
        if remote_live || matches!(winner, End::Remote { .. }) {
            let msg =
                BusMessage::CallAnswered { call_id: call_id.to_owned(), device: callee_device };
            self.push_output(Output::Bus { to: Route::User(callee), msg });
        }
        for candidate in held {
            let event = Event::CallCandidate { call_id: call_id.to_owned(), candidate };
            self.send_to_end(callee, &winner, call_id, event);
        }
        self.push_output(Output::RegisterCall { call_id: call_id.to_owned(), record });
    }

    /// A callee device declines. Without `busy` the call ends for everyone; with `busy` only
    /// this device stops ringing, and the call ends `busy` when no device rings any more.
    pub fn call_decline(
        &mut self,
        conn: ConnId,
        call_id: &str,
        busy: bool,
    ) -> Result<(), ErrorBody> {
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        if busy && matches!(&call.phase, Phase::Ringing { devices, .. } if devices.contains(&conn))
        {
            // Remembered in case another device refuses for a reason of its own later: the
            // person is busy, which says more than one device's reason.
            call.refusal = Some(CallEndReason::Busy);
        }
        match &mut call.phase {
            Phase::Ringing { devices, .. } if devices.contains(&conn) => {
                devices.retain(|c| *c != conn);
                if busy {
                    if !devices.is_empty() {
                        return Ok(());
                    }
                    self.declined_busy(call_id);
                } else {
                    self.declined(call_id);
                }
                Ok(())
            }
            Phase::Leg { devices, .. } if devices.contains(&conn) => {
                devices.retain(|c| *c != conn);
                if busy {
                    self.leg_check_busy(call_id, true);
                } else {
                    self.send_to_caller_node(
                        call_id,
                        BusMessage::CallDecline { call_id: call_id.to_owned() },
                    );
                }
                Ok(())
            }
            _ => Err(no_such_call()),
        }
    }

    /// A callee device cannot take the call for `reason` (it has no audio device, or it takes
    /// calls only through a relay and the network has none): like a busy device, only it stops
    /// ringing. Once no device rings any more, here or on other supernodes, the caller hears
    /// the reason ([`CallEndReason::Busy`] if a device said busy) and no missed call is stored
    /// (see `end_refused`). Only reasons for which [`CallEndReason::is_device_refusal`] holds
    /// are taken: a device must not make the caller believe anything else.
    pub fn call_refuse(
        &mut self,
        conn: ConnId,
        call_id: &str,
        reason: CallEndReason,
    ) -> Result<(), ErrorBody> {
        if !reason.is_device_refusal() {
            return Err(ErrorBody::with_message(
                ErrorCode::InvalidArgument,
                "a call_decline reason must be no_audio_device or no_relay",
            ));
        }
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        let (Phase::Ringing { devices, .. } | Phase::Leg { devices, .. }) = &mut call.phase else {
            return Err(no_such_call());
        };
        if !devices.contains(&conn) {
            return Err(no_such_call());
        }
        devices.retain(|c| *c != conn);
        let left = devices.len();
        call.refusal.get_or_insert(reason);
        if matches!(call.phase, Phase::Leg { .. }) {
            self.leg_check(call_id);
        } else if left == 0 {
            self.end_if_nothing_rings(call_id);
        }
        Ok(())
    }

    /// Every device here said busy: the call ends busy unless another supernode still rings.
    fn declined_busy(&mut self, call_id: &str) {
        let Some(call) = self.calls.calls.get_mut(call_id) else { return };
        let Phase::Ringing { remote, .. } = &mut call.phase else { return };
        if remote.iter().any(RemoteRing::live) {
            return;
        }
        let Some(call) = self.calls.remove(call_id) else { return };
        self.missed(call.callee, call.caller, call_id);
        if let Some(conn) = call.caller_end.conn() {
            self.ended(vec![conn], call_id, CallEndReason::Busy);
        }
    }

    /// A device declined for everyone: the caller, the other devices here and the other
    /// supernodes hear it.
    pub(crate) fn declined(&mut self, call_id: &str) {
        let Some(call) = self.calls.remove(call_id) else { return };
        let Phase::Ringing { devices, remote, .. } = &call.phase else { return };
        if let Some(conn) = call.caller_end.conn() {
            self.ended(vec![conn], call_id, CallEndReason::Declined);
        }
        self.ended(devices.clone(), call_id, CallEndReason::Declined);
        if remote.iter().any(RemoteRing::live) {
            let msg = BusMessage::CallOver {
                call_id: call_id.to_owned(),
                reason: CallEndReason::Declined,
            };
            self.push_output(Output::Bus { to: Route::User(call.callee), msg });
        }
    }

    /// The caller gives up before an answer: the callee's devices stop ringing and a missed
    /// call is recorded.
    pub fn call_cancel(&mut self, conn: ConnId, call_id: &str) -> Result<(), ErrorBody> {
        match self.calls.calls.get(call_id) {
            Some(c) if c.caller_end.is(conn) && matches!(c.phase, Phase::Ringing { .. }) => {}
            _ => return Err(no_such_call()),
        }
        self.end_ringing(call_id, CallEndReason::Cancelled, None);
        Ok(())
    }

    /// Either side ends an answered call; the caller's hang-up of a ringing call cancels it.
    pub fn call_hangup(&mut self, conn: ConnId, call_id: &str) -> Result<(), ErrorBody> {
        let call = self.calls.calls.get(call_id).ok_or_else(no_such_call)?;
        match &call.phase {
            Phase::Ringing { .. } if call.caller_end.is(conn) => self.call_cancel(conn, call_id),
            Phase::Answered { callee_end } if call.caller_end.is(conn) || callee_end.is(conn) => {
                let tell_caller = callee_end.is(conn);
                self.end_answered(call_id, Some(tell_caller), CallEndReason::HungUp);
                Ok(())
            }
            _ => Err(no_such_call()),
        }
    }

    /// A trickled candidate: held while the call rings (from the caller), forwarded once it
    /// is answered (between the two answering devices only). A device on a leg that answered
    /// trickles before the caller's supernode confirmed its answer: its candidates are held
    /// until then, within the same per-side limit.
    pub fn call_candidate(
        &mut self,
        conn: ConnId,
        call_id: &str,
        candidate: String,
    ) -> Result<(), ErrorBody> {
        let limit = self.call_config().max_candidates_per_side;
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        let too_many =
            || ErrorBody::with_message(ErrorCode::InvalidArgument, "too many candidates");
        let from_caller = call.caller_end.is(conn);
        let (user, target) = match &mut call.phase {
            Phase::Ringing { held, .. } if from_caller => {
                if call.candidates_from_caller >= limit {
                    return Err(too_many());
                }
                call.candidates_from_caller += 1;
                held.push(candidate);
                return Ok(());
            }
            Phase::Answered { callee_end } if from_caller => {
                if call.candidates_from_caller >= limit {
                    return Err(too_many());
                }
                call.candidates_from_caller += 1;
                (call.callee, callee_end.clone())
            }
            Phase::Answered { callee_end } if callee_end.is(conn) => {
                if call.candidates_from_callee >= limit {
                    return Err(too_many());
                }
                call.candidates_from_callee += 1;
                (call.caller, call.caller_end.clone())
            }
            Phase::Leg { accepted, .. } => {
                let pending =
                    accepted.iter_mut().find(|a| a.conn == conn).ok_or_else(no_such_call)?;
                if pending.held.len() >= limit {
                    return Err(too_many());
                }
                pending.held.push(candidate);
                return Ok(());
            }
            _ => return Err(no_such_call()),
        };
        let event = Event::CallCandidate { call_id: call_id.to_owned(), candidate };
        self.send_to_end(user, &target, call_id, event);
        Ok(())
    }

    /// An ICE restart message on an answered call, forwarded between the caller's connection
    /// and the answering device only. A side that sends an offer or answer trickles its
    /// candidates anew, so its candidate count starts again.
    pub fn call_restart(
        &mut self,
        conn: ConnId,
        call_id: &str,
        sdp: Option<String>,
    ) -> Result<(), ErrorBody> {
        let limit = self.call_config().max_restarts_per_side;
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        let Phase::Answered { callee_end } = &call.phase else { return Err(no_such_call()) };
        let callee_end = callee_end.clone();
        let (sent, candidates, user, target) = if call.caller_end.is(conn) {
            if sdp.is_none() {
                return Err(ErrorBody::with_message(
                    ErrorCode::InvalidArgument,
                    "the caller's call_restart carries the restart offer in sdp",
                ));
            }
            (
                &mut call.restarts_from_caller,
                &mut call.candidates_from_caller,
                call.callee,
                callee_end,
            )
        } else if callee_end.is(conn) {
            let caller_end = call.caller_end.clone();
            (
                &mut call.restarts_from_callee,
                &mut call.candidates_from_callee,
                call.caller,
                caller_end,
            )
        } else {
            return Err(no_such_call());
        };
        if *sent >= limit {
            return Err(ErrorBody::with_message(
                ErrorCode::InvalidArgument,
                "too many ICE restarts in this call",
            ));
        }
        *sent += 1;
        if sdp.is_some() {
            *candidates = 0;
        }
        let event = Event::CallRestart { call_id: call_id.to_owned(), sdp };
        self.send_to_end(user, &target, call_id, event);
        Ok(())
    }

    /// A device whose connection died mid-call (its address changed, or its supernode died)
    /// takes the answered call over on its new connection here: the same user and the same
    /// device as the party it replaces. Calls not known here are taken over with
    /// [`Hub::call_take_over`] once the driver has read the call's record from the bus.
    pub fn call_resume(&mut self, conn: ConnId, call_id: &str) -> Result<(), ErrorBody> {
        let me = self.login_of(conn).ok_or_else(no_such_call)?;
        let call = self.calls.calls.get(call_id).ok_or_else(no_such_call)?;
        let Phase::Answered { callee_end } = &call.phase else { return Err(no_such_call()) };
        let matches = |user: UserId, end: &End| match end {
            End::Local(c) => *c == conn || self.login_of(*c) == Some(me),
            End::Remote { device, .. } => (user, *device) == me,
        };
        let as_caller = matches(call.caller, &call.caller_end);
        let as_callee = matches(call.callee, callee_end);
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        let (other_user, other_end) = if as_caller {
            call.caller_end = End::Local(conn);
            let Phase::Answered { callee_end } = &call.phase else { return Err(no_such_call()) };
            (call.callee, callee_end.clone())
        } else if as_callee {
            call.phase = Phase::Answered { callee_end: End::Local(conn) };
            (call.caller, call.caller_end.clone())
        } else {
            return Err(no_such_call());
        };
        call.peer_lost_at = None;
        if let End::Remote { .. } = other_end {
            self.announce_resumed(call_id, me.0, me.1, other_user);
        }
        Ok(())
    }

    /// Takes over an answered call this supernode knows nothing of (the one that carried it
    /// died), from its record on the bus: the connection must be one of the two parties.
    pub fn call_take_over(
        &mut self,
        conn: ConnId,
        call_id: &str,
        record: &CallRecord,
    ) -> Result<(), ErrorBody> {
        let me = self.login_of(conn).ok_or_else(no_such_call)?;
        if self.calls.calls.contains_key(call_id) {
            return self.call_resume(conn, call_id);
        }
        let (caller_end, callee_end, other) = if me == (record.caller, record.caller_device) {
            let callee = End::Remote { device: record.callee_device, node: String::new() };
            (End::Local(conn), callee, record.callee)
        } else if me == (record.callee, record.callee_device) {
            let caller = End::Remote { device: record.caller_device, node: String::new() };
            (caller, End::Local(conn), record.caller)
        } else {
            return Err(no_such_call());
        };
        let call = Call {
            caller: record.caller,
            caller_device: record.caller_device,
            caller_end,
            callee: record.callee,
            phase: Phase::Answered { callee_end },
            refusal: None,
            candidates_from_caller: 0,
            candidates_from_callee: 0,
            restarts_from_caller: 0,
            restarts_from_callee: 0,
            peer_lost_at: None,
        };
        self.calls.insert(call_id.to_owned(), call);
        self.announce_resumed(call_id, me.0, me.1, other);
        Ok(())
    }

    /// Tells the other party's supernode where this party is now, and the supernode this party
    /// left (if it still lives) to forget its side.
    fn announce_resumed(&mut self, call_id: &str, user: UserId, device: DeviceId, other: UserId) {
        for to in [other, user] {
            let msg = BusMessage::CallResumed { call_id: call_id.to_owned(), user, device };
            self.push_output(Output::Bus { to: Route::User(to), msg });
        }
    }
}
