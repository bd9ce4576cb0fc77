//! Call signaling: the life of every call from invite to hang-up, without IO.
//!
//! A call rings every live connection of the callee; the first device to accept wins and the
//! others are told `answered_elsewhere`. No answer within [`CallConfig::ring_timeout`] ends it as
//! `no_answer`, and the callee gets a missed-call notice ([`Output::MissedCall`], which the driver
//! stores so that devices that come online later see it too).
//!
//! Privacy: the caller's trickled candidates are held here until a device accepts and then go to
//! that device only; the callee's candidates are accepted only from the device that answered,
//! after it answered. So neither side learns the other's addresses before the call is answered,
//! and devices that merely rang never learn the caller's.
//!
//! The supernode only relays signaling: no media ever passes through it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use peerline_wire::{CallEndReason, CallId, DeviceId, ErrorBody, ErrorCode, Event};

use crate::hub::{ConnId, Hub, Output, UserId};
use crate::rate::TokenBucket;

/// Limits and timers of call signaling. Defaults are safe for the internet.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// A call nobody answers ends after this long (and counts as missed).
    pub ring_timeout: Duration,
    /// Most calls (ringing or answered) one user takes part in at once, on all devices.
    pub max_calls_per_user: usize,
    /// Most calls on this supernode at once.
    pub max_calls: usize,
    /// Invites per user per minute (sustained); bursts up to [`CallConfig::invite_burst`].
    pub invites_per_minute: f64,
    /// Burst of invites.
    pub invite_burst: f64,
    /// Most candidates one side may trickle in one call (counted afresh after each ICE
    /// restart that side takes part in).
    pub max_candidates_per_side: usize,
    /// Most `call_restart` messages one side may send in one call.
    pub max_restarts_per_side: usize,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(45),
            max_calls_per_user: 4,
            max_calls: 200_000,
            invites_per_minute: 10.0,
            invite_burst: 10.0,
            max_candidates_per_side: 64,
            max_restarts_per_side: 16,
        }
    }
}

/// What the driver knows about a new call when it asks the hub to place it (after checking
/// that caller and callee are accepted contacts and the fields are well-formed).
#[derive(Debug, Clone)]
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

/// A callee device's answer.
#[derive(Debug, Clone)]
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

/// Why an invite did not ring anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteRefused {
    /// The request was refused (limits, duplicate id).
    Error(ErrorBody),
    /// The call ended at once: the callee is offline or in another call. A missed call was
    /// queued for the callee.
    Ended(CallEndReason),
}

#[derive(Debug)]
enum Phase {
    Ringing {
        since: Instant,
        /// Callee connections still ringing.
        devices: Vec<ConnId>,
        /// Whether the caller was told `call_ringing`.
        told_ringing: bool,
        /// Caller candidates held until a device accepts.
        held: Vec<String>,
    },
    Answered {
        callee_conn: ConnId,
    },
}

#[derive(Debug)]
struct Call {
    caller: UserId,
    caller_conn: ConnId,
    callee: UserId,
    phase: Phase,
    candidates_from_caller: usize,
    candidates_from_callee: usize,
    restarts_from_caller: usize,
    restarts_from_callee: usize,
}

/// Every call on this supernode.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    calls: HashMap<CallId, Call>,
    /// The calls each user takes part in (as caller or callee), so that an invite or a
    /// disconnect looks at that user's few calls, not at every call on the supernode.
    by_user: HashMap<UserId, Vec<CallId>>,
    invites: HashMap<UserId, TokenBucket>,
}

impl Calls {
    fn insert(&mut self, call_id: CallId, call: Call) {
        for user in [call.caller, call.callee] {
            self.by_user.entry(user).or_default().push(call_id.clone());
        }
        self.calls.insert(call_id, call);
    }

    fn remove(&mut self, call_id: &str) -> Option<Call> {
        let call = self.calls.remove(call_id)?;
        for user in [call.caller, call.callee] {
            if let Some(ids) = self.by_user.get_mut(&user) {
                ids.retain(|id| id != call_id);
                if ids.is_empty() {
                    self.by_user.remove(&user);
                }
            }
        }
        Some(call)
    }

    /// The ids of the calls `user` takes part in.
    fn ids_of(&self, user: UserId) -> &[CallId] {
        self.by_user.get(&user).map_or(&[], Vec::as_slice)
    }

    fn calls_of(&self, user: UserId) -> usize {
        self.ids_of(user).len()
    }

    fn in_answered_call(&self, user: UserId) -> bool {
        self.ids_of(user)
            .iter()
            .filter_map(|id| self.calls.get(id))
            .any(|c| matches!(c.phase, Phase::Answered { .. }))
    }

    /// Live call count.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }
}

fn no_such_call() -> ErrorBody {
    ErrorBody::new(ErrorCode::NoSuchCall)
}

impl Hub {
    fn send_call_event(&mut self, conns: Vec<ConnId>, event: Event) {
        let conns: Vec<ConnId> = conns.into_iter().filter(|c| !self.is_closing(*c)).collect();
        if !conns.is_empty() {
            self.push_output(Output::Send { conns, event });
        }
    }

    fn ended(&mut self, conns: Vec<ConnId>, call_id: &str, reason: CallEndReason) {
        self.send_call_event(conns, Event::CallEnded { call_id: call_id.to_owned(), reason });
    }

    fn missed(&mut self, call: &Call, call_id: &str) {
        self.push_output(Output::MissedCall {
            callee: call.callee,
            caller: call.caller,
            call_id: call_id.to_owned(),
        });
    }

    /// Places a call: rings every live connection of the callee. Returns how many ring.
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
        let call = Call {
            caller: invite.caller,
            caller_conn: conn,
            callee: invite.callee,
            phase: Phase::Ringing {
                since: now,
                devices: Vec::new(),
                told_ringing: false,
                held: Vec::new(),
            },
            candidates_from_caller: 0,
            candidates_from_callee: 0,
            restarts_from_caller: 0,
            restarts_from_callee: 0,
        };
        let devices = self.user_conns(invite.callee);
        let busy = self.calls.in_answered_call(invite.callee)
            || self.calls.calls_of(invite.callee) >= config.max_calls_per_user;
        if devices.is_empty() || busy {
            self.missed(&call, &invite.call_id);
            let reason = if busy { CallEndReason::Busy } else { CallEndReason::Unavailable };
            return Err(InviteRefused::Ended(reason));
        }
        let event = Event::CallIncoming {
            call_id: invite.call_id.clone(),
            from: invite.caller_name,
            display_name: invite.caller_display_name,
            device_id: invite.caller_device,
            device_key: invite.caller_device_key,
            sdp: invite.sdp,
            fingerprint_signature: invite.fingerprint_signature,
        };
        self.send_call_event(devices.clone(), event);
        let ringing = u32::try_from(devices.len()).unwrap_or(u32::MAX);
        let mut call = call;
        if let Phase::Ringing { devices: d, .. } = &mut call.phase {
            *d = devices;
        }
        self.calls.insert(invite.call_id, call);
        Ok(ringing)
    }

    /// A callee device says it rings; the caller is told once.
    pub fn call_ringing(&mut self, conn: ConnId, call_id: &str) -> Result<(), ErrorBody> {
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        let caller_conn = call.caller_conn;
        match &mut call.phase {
            Phase::Ringing { devices, told_ringing, .. } if devices.contains(&conn) => {
                if !*told_ringing {
                    *told_ringing = true;
                    let event = Event::CallRinging { call_id: call_id.to_owned() };
                    self.send_call_event(vec![caller_conn], event);
                }
                Ok(())
            }
            _ => Err(no_such_call()),
        }
    }

    /// A callee device answers. The first one wins; the other ringing devices stop, and the
    /// caller's held candidates go to the winner.
    pub fn call_accept(
        &mut self,
        conn: ConnId,
        call_id: &str,
        answer: CallAnswer,
    ) -> Result<(), ErrorBody> {
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        let (others, held) = match &mut call.phase {
            Phase::Ringing { devices, held, .. } if devices.contains(&conn) => {
                let others: Vec<ConnId> = devices.iter().copied().filter(|c| *c != conn).collect();
                (others, std::mem::take(held))
            }
            _ => return Err(no_such_call()),
        };
        call.phase = Phase::Answered { callee_conn: conn };
        let caller_conn = call.caller_conn;
        self.send_call_event(
            vec![caller_conn],
            Event::CallAccepted {
                call_id: call_id.to_owned(),
                device_id: answer.device_id,
                device_key: answer.device_key,
                sdp: answer.sdp,
                fingerprint_signature: answer.fingerprint_signature,
            },
        );
        self.ended(others, call_id, CallEndReason::AnsweredElsewhere);
        for candidate in held {
            let event = Event::CallCandidate { call_id: call_id.to_owned(), candidate };
            self.send_call_event(vec![conn], event);
        }
        Ok(())
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
        let Phase::Ringing { devices, .. } = &mut call.phase else { return Err(no_such_call()) };
        if !devices.contains(&conn) {
            return Err(no_such_call());
        }
        if busy {
            devices.retain(|c| *c != conn);
            if !devices.is_empty() {
                return Ok(());
            }
        }
        let Some(call) = self.calls.remove(call_id) else { return Err(no_such_call()) };
        let Phase::Ringing { devices, .. } = &call.phase else { return Ok(()) };
        let others: Vec<ConnId> = devices.iter().copied().filter(|c| *c != conn).collect();
        if busy {
            self.missed(&call, call_id);
            self.ended(vec![call.caller_conn], call_id, CallEndReason::Busy);
        } else {
            self.ended(vec![call.caller_conn], call_id, CallEndReason::Declined);
            self.ended(others, call_id, CallEndReason::Declined);
        }
        Ok(())
    }

    /// The caller gives up before an answer: the callee's devices stop ringing and a missed
    /// call is recorded.
    pub fn call_cancel(&mut self, conn: ConnId, call_id: &str) -> Result<(), ErrorBody> {
        match self.calls.calls.get(call_id) {
            Some(c) if c.caller_conn == conn && matches!(c.phase, Phase::Ringing { .. }) => {}
            _ => return Err(no_such_call()),
        }
        self.end_ringing(call_id, CallEndReason::Cancelled, None);
        Ok(())
    }

    /// Either side ends an answered call; the caller's hang-up of a ringing call cancels it.
    pub fn call_hangup(&mut self, conn: ConnId, call_id: &str) -> Result<(), ErrorBody> {
        let call = self.calls.calls.get(call_id).ok_or_else(no_such_call)?;
        match call.phase {
            Phase::Ringing { .. } if call.caller_conn == conn => self.call_cancel(conn, call_id),
            Phase::Answered { callee_conn } if conn == call.caller_conn || conn == callee_conn => {
                let other = if conn == callee_conn { call.caller_conn } else { callee_conn };
                self.calls.remove(call_id);
                self.ended(vec![other], call_id, CallEndReason::HungUp);
                Ok(())
            }
            _ => Err(no_such_call()),
        }
    }

    /// A trickled candidate: held while the call rings (from the caller), forwarded once it
    /// is answered (between the two answering connections only).
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
        let target = match &mut call.phase {
            Phase::Ringing { held, .. } if conn == call.caller_conn => {
                if call.candidates_from_caller >= limit {
                    return Err(too_many());
                }
                call.candidates_from_caller += 1;
                held.push(candidate);
                return Ok(());
            }
            Phase::Answered { callee_conn } if conn == call.caller_conn => {
                if call.candidates_from_caller >= limit {
                    return Err(too_many());
                }
                call.candidates_from_caller += 1;
                *callee_conn
            }
            Phase::Answered { callee_conn } if conn == *callee_conn => {
                if call.candidates_from_callee >= limit {
                    return Err(too_many());
                }
                call.candidates_from_callee += 1;
                call.caller_conn
            }
            _ => return Err(no_such_call()),
        };
        self.send_call_event(
            vec![target],
            Event::CallCandidate { call_id: call_id.to_owned(), candidate },
        );
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
        let Phase::Answered { callee_conn } = call.phase else { return Err(no_such_call()) };
        let (sent, candidates, target) = if conn == call.caller_conn {
            if sdp.is_none() {
                return Err(ErrorBody::with_message(
                    ErrorCode::InvalidArgument,
                    "the caller's call_restart carries the restart offer in sdp",
                ));
            }
            (&mut call.restarts_from_caller, &mut call.candidates_from_caller, callee_conn)
        } else if conn == callee_conn {
            (&mut call.restarts_from_callee, &mut call.candidates_from_callee, call.caller_conn)
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
        self.send_call_event(vec![target], Event::CallRestart { call_id: call_id.to_owned(), sdp });
        Ok(())
    }

    /// A device whose connection died mid-call (its address changed) takes the answered call
    /// over on its new connection: the same user and the same device as the party it
    /// replaces, whose old connection the supernode may not have noticed is gone yet.
    pub fn call_resume(&mut self, conn: ConnId, call_id: &str) -> Result<(), ErrorBody> {
        let me = self.login_of(conn).ok_or_else(no_such_call)?;
        let call = self.calls.calls.get(call_id).ok_or_else(no_such_call)?;
        let Phase::Answered { callee_conn } = call.phase else { return Err(no_such_call()) };
        let caller_conn = call.caller_conn;
        let as_caller = caller_conn == conn || self.login_of(caller_conn) == Some(me);
        let as_callee = callee_conn == conn || self.login_of(callee_conn) == Some(me);
        let call = self.calls.calls.get_mut(call_id).ok_or_else(no_such_call)?;
        if as_caller {
            call.caller_conn = conn;
        } else if as_callee {
            call.phase = Phase::Answered { callee_conn: conn };
        } else {
            return Err(no_such_call());
        }
        Ok(())
    }

    /// Ends a ringing call: the caller (unless it is the one that left) and every ringing device
    /// are told, and the callee gets a missed call.
    fn end_ringing(
        &mut self,
        call_id: &str,
        reason: CallEndReason,
        tell_caller: Option<CallEndReason>,
    ) {
        let Some(call) = self.calls.remove(call_id) else { return };
        let Phase::Ringing { devices, .. } = &call.phase else { return };
        self.ended(devices.clone(), call_id, reason);
        if let Some(caller_reason) = tell_caller {
            self.ended(vec![call.caller_conn], call_id, caller_reason);
        }
        self.missed(&call, call_id);
    }

    /// A connection is gone: calls it placed end, answered calls it took part in end for the
    /// other side, and it stops ringing.
    pub(crate) fn calls_disconnect(&mut self, conn: ConnId) {
        let Some((user, _)) = self.login_of(conn) else { return };
        let mut involved: Vec<CallId> = self
            .calls
            .ids_of(user)
            .iter()
            .filter_map(|id| self.calls.calls.get(id).map(|c| (id, c)))
            .filter(|(_, c)| {
                c.caller_conn == conn
                    || match &c.phase {
                        Phase::Ringing { devices, .. } => devices.contains(&conn),
                        Phase::Answered { callee_conn } => *callee_conn == conn,
                    }
            })
            .map(|(id, _)| id.clone())
            .collect();
        involved.sort();
        for call_id in involved {
            let Some(call) = self.calls.calls.get_mut(&call_id) else { continue };
            let caller_conn = call.caller_conn;
            match &mut call.phase {
                Phase::Ringing { .. } if caller_conn == conn => {
                    self.end_ringing(&call_id, CallEndReason::PeerGone, None);
                }
                Phase::Ringing { devices, .. } => {
                    devices.retain(|c| *c != conn);
                    if devices.is_empty() {
                        self.end_ringing(
                            &call_id,
                            CallEndReason::PeerGone,
                            Some(CallEndReason::Unavailable),
                        );
                    }
                }
                Phase::Answered { callee_conn } => {
                    let other = if *callee_conn == conn { caller_conn } else { *callee_conn };
                    self.calls.remove(&call_id);
                    self.ended(vec![other], &call_id, CallEndReason::PeerGone);
                }
            }
        }
    }

    /// Ends calls that rang too long.
    pub(crate) fn calls_timeout(&mut self, now: Instant) {
        let timeout = self.call_config().ring_timeout;
        let mut expired: Vec<CallId> = self
            .calls
            .calls
            .iter()
            .filter(|(_, c)| match c.phase {
                Phase::Ringing { since, .. } => now.saturating_duration_since(since) >= timeout,
                Phase::Answered { .. } => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        expired.sort();
        for call_id in expired {
            self.end_ringing(&call_id, CallEndReason::NoAnswer, Some(CallEndReason::NoAnswer));
        }
        self.calls.invites.retain(|_, b| !b.is_full(now));
    }

    /// Calls ringing or answered now.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
}
