//! Call signaling: the life of every call from invite to hang-up, without IO, across supernodes.
//!
//! A call rings every live device of the callee; the first device to accept wins and the others
//! are told `answered_elsewhere`. No answer within [`CallConfig::ring_timeout`] ends it as
//! `no_answer`, and the callee gets a missed-call notice ([`Output::MissedCall`], which the driver
//! stores so that devices that come online later see it too).
//!
//! **Across supernodes.** The caller's supernode holds the call while it rings and decides which
//! answer wins. Devices of the callee on other supernodes ring through a *leg* there: the invite
//! goes to the callee's subject on the bus, each supernode holding devices of the callee rings
//! them and says how many ring, and forwards their ringing, answer or refusal to the caller's
//! supernode. Once answered, each of the two supernodes holds its own party's side and forwards
//! what that party sends to the other party's device, wherever it is. An answered call is
//! registered on the bus ([`Output::RegisterCall`]), so that a device whose supernode died takes
//! the call over on another one (`call_resume`).
//!
//! Privacy: the caller's trickled candidates are held by the caller's supernode until a device
//! accepts and then go to that device only; the callee's candidates are accepted only from the
//! device that answered, after it answered. On a leg, a device that answered is answered `done`
//! before the caller's supernode has decided that its answer won; its candidates are held on the
//! leg until then and forwarded only if it did. So neither side learns the other's addresses
//! before the call is answered, and devices that merely rang never learn the caller's.
//!
//! The supernode only relays signaling: no media ever passes through it.

mod remote;
mod requests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use peerline_wire::{CallEndReason, CallId, DeviceId, ErrorBody, ErrorCode, Event};
use serde::{Deserialize, Serialize};

use crate::cluster::{BusMessage, Route};
use crate::hub::{ConnId, Hub, Output, UserId};
use crate::rate::TokenBucket;

pub use requests::{CallAnswer, CallInvite, InviteRefused};

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
    /// How long another supernode has to say whether it rings the callee's devices there.
    pub remote_ring_wait: Duration,
    /// How long an answered call waits for a party whose supernode died to take the call over
    /// on another supernode.
    pub resume_window: Duration,
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
            remote_ring_wait: Duration::from_secs(3),
            resume_window: Duration::from_secs(45),
        }
    }
}

/// What the bus keeps of an answered call, so that either party can take it over on another
/// supernode: who the two parties are, by user and device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The caller.
    pub caller: UserId,
    /// The calling device.
    pub caller_device: DeviceId,
    /// The callee.
    pub callee: UserId,
    /// The answering device.
    pub callee_device: DeviceId,
}

/// One party of a call as this supernode sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Connected here.
    Local(ConnId),
    /// The device, connected to another supernode (its id, or empty when not known yet).
    Remote { device: DeviceId, node: String },
}

impl End {
    fn conn(&self) -> Option<ConnId> {
        match self {
            End::Local(conn) => Some(*conn),
            End::Remote { .. } => None,
        }
    }

    fn is(&self, conn: ConnId) -> bool {
        self.conn() == Some(conn)
    }
}

/// What another supernode said about ringing the callee's devices there.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RemoteRing {
    /// Asked; no answer yet.
    Waiting { node: String, until: Instant },
    /// Devices ring there.
    Ringing { node: String },
    /// None (any more); `busy` when because of another call, `refusal` when a device there
    /// said why it cannot take the call (`call_decline` with a reason).
    Gone { node: String, busy: bool, refusal: Option<CallEndReason> },
}

impl RemoteRing {
    fn node(&self) -> &str {
        match self {
            RemoteRing::Waiting { node, .. }
            | RemoteRing::Ringing { node }
            | RemoteRing::Gone { node, .. } => node,
        }
    }

    fn live(&self) -> bool {
        !matches!(self, RemoteRing::Gone { .. })
    }
}

#[derive(Debug)]
enum Phase {
    /// Placed here: ringing this supernode's devices of the callee and other supernodes'.
    Ringing {
        since: Instant,
        /// Callee connections here still ringing.
        devices: Vec<ConnId>,
        /// Other supernodes asked to ring.
        remote: Vec<RemoteRing>,
        /// Whether the caller was told `call_ringing`.
        told_ringing: bool,
        /// Caller candidates held until a device accepts.
        held: Vec<String>,
    },
    /// Placed on another supernode (`Call::caller_end` names it): ringing the callee's devices
    /// here for it.
    Leg {
        since: Instant,
        /// Callee connections here still ringing.
        devices: Vec<ConnId>,
        /// Whether the caller's supernode was told a device rings.
        told_ringing: bool,
        /// Devices here that sent `call_accept`, waiting for the caller's supernode to say
        /// which answer won (`call_answered`), with the candidates they trickled meanwhile.
        accepted: Vec<PendingAnswer>,
    },
    /// Answered by a device.
    Answered { callee_end: End },
}

/// A device on a leg that answered, before the caller's supernode confirmed that it won.
///
/// The device was answered `done` and, as the protocol says, trickles its candidates right
/// away; they are held here, not forwarded, because the answer may still lose to another
/// device (whose caller must then never see this device's addresses), and because the
/// caller's supernode drops signals for a call it has not seen answered yet. They go to the
/// caller once this device is confirmed, and are dropped if it is not.
#[derive(Debug)]
struct PendingAnswer {
    conn: ConnId,
    /// Candidates held, at most [`CallConfig::max_candidates_per_side`].
    held: Vec<String>,
}

#[derive(Debug)]
struct Call {
    caller: UserId,
    caller_device: DeviceId,
    caller_end: End,
    callee: UserId,
    phase: Phase,
    /// Why a device that stopped ringing could not take the call (busy, or a device's
    /// refusal such as `no_audio_device`): what the caller hears once no device rings.
    refusal: Option<CallEndReason>,
    candidates_from_caller: usize,
    candidates_from_callee: usize,
    restarts_from_caller: usize,
    restarts_from_callee: usize,
    /// The other party's supernode went down at this time; it has until the resume window
    /// closes to come back on another one.
    peer_lost_at: Option<Instant>,
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

    /// Sends a call event to one party: its connection here, or its device elsewhere.
    fn send_to_end(&mut self, user: UserId, end: &End, call_id: &str, event: Event) {
        match end {
            End::Local(conn) => self.send_call_event(vec![*conn], event),
            End::Remote { device, .. } => {
                let msg = BusMessage::CallSignal {
                    call_id: call_id.to_owned(),
                    user,
                    device: *device,
                    event,
                };
                self.push_output(Output::Bus { to: Route::User(user), msg });
            }
        }
    }

    fn missed(&mut self, callee: UserId, caller: UserId, call_id: &str) {
        self.push_output(Output::MissedCall { callee, caller, call_id: call_id.to_owned() });
    }

    /// Ends an answered call for the party other than `from_caller`'s side, and forgets it.
    fn end_answered(&mut self, call_id: &str, tell: Option<bool>, reason: CallEndReason) {
        let Some(call) = self.calls.remove(call_id) else { return };
        let Phase::Answered { callee_end } = &call.phase else { return };
        let event = Event::CallEnded { call_id: call_id.to_owned(), reason };
        match tell {
            Some(true) => self.send_to_end(call.caller, &call.caller_end, call_id, event),
            Some(false) => self.send_to_end(call.callee, callee_end, call_id, event),
            None => {}
        }
        self.push_output(Output::UnregisterCall { call_id: call_id.to_owned() });
    }

    /// Ends a call placed here while it rings: the caller (unless it is the one that left),
    /// every ringing device here and the other supernodes ringing are told, and the callee gets a
    /// missed call.
    fn end_ringing(
        &mut self,
        call_id: &str,
        reason: CallEndReason,
        tell_caller: Option<CallEndReason>,
    ) {
        let Some(call) = self.calls.remove(call_id) else { return };
        let Phase::Ringing { devices, remote, .. } = &call.phase else { return };
        self.ended(devices.clone(), call_id, reason);
        if remote.iter().any(RemoteRing::live) {
            let msg = BusMessage::CallOver { call_id: call_id.to_owned(), reason };
            self.push_output(Output::Bus { to: Route::User(call.callee), msg });
        }
        if let (Some(caller_reason), Some(conn)) = (tell_caller, call.caller_end.conn()) {
            self.ended(vec![conn], call_id, caller_reason);
        }
        self.missed(call.callee, call.caller, call_id);
    }

    /// Ends a ringing call placed here once no device rings any more, here or elsewhere.
    fn end_if_nothing_rings(&mut self, call_id: &str) {
        let Some(call) = self.calls.calls.get(call_id) else { return };
        let Phase::Ringing { devices, remote, .. } = &call.phase else { return };
        if !devices.is_empty() || remote.iter().any(RemoteRing::live) {
            return;
        }
        let remote_refusal = remote.iter().find_map(|r| match r {
            RemoteRing::Gone { refusal, .. } => *refusal,
            _ => None,
        });
        let refusal = call.refusal.or(remote_refusal);
        let busy = refusal == Some(CallEndReason::Busy)
            || remote.iter().any(|r| matches!(r, RemoteRing::Gone { busy: true, .. }));
        match refusal {
            Some(reason) if !busy => self.end_refused(call_id, reason),
            _ => {
                let reason = if busy { CallEndReason::Busy } else { CallEndReason::Unavailable };
                self.end_ringing(call_id, CallEndReason::PeerGone, Some(reason));
            }
        }
    }

    /// Ends a ringing call placed here that every device refused for a reason of its own
    /// (`no_audio_device`, `no_relay`): the caller hears that reason. No missed call is stored:
    /// each device showed the call as it came in, with why it could not take it, so the call
    /// was not unanswered — and a missed-call notice would say it was.
    fn end_refused(&mut self, call_id: &str, reason: CallEndReason) {
        let Some(call) = self.calls.remove(call_id) else { return };
        if let Some(conn) = call.caller_end.conn() {
            self.ended(vec![conn], call_id, reason);
        }
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
                c.caller_end.is(conn)
                    || match &c.phase {
                        Phase::Ringing { devices, .. } | Phase::Leg { devices, .. } => {
                            devices.contains(&conn)
                        }
                        Phase::Answered { callee_end } => callee_end.is(conn),
                    }
            })
            .map(|(id, _)| id.clone())
            .collect();
        involved.sort();
        for call_id in involved {
            let Some(call) = self.calls.calls.get_mut(&call_id) else { continue };
            let caller_here = call.caller_end.is(conn);
            match &mut call.phase {
                Phase::Ringing { .. } if caller_here => {
                    self.end_ringing(&call_id, CallEndReason::PeerGone, None);
                }
                Phase::Ringing { devices, .. } => {
                    devices.retain(|c| *c != conn);
                    self.end_if_nothing_rings(&call_id);
                }
                Phase::Leg { devices, accepted, .. } => {
                    devices.retain(|c| *c != conn);
                    accepted.retain(|a| a.conn != conn);
                    self.leg_check(&call_id);
                }
                Phase::Answered { .. } => {
                    // The other party hears it; tell = the side that did not leave.
                    self.end_answered(&call_id, Some(!caller_here), CallEndReason::PeerGone);
                }
            }
        }
    }

    /// Ends calls that rang too long, supernodes that never said whether they ring, and
    /// answered calls whose other party did not come back after its supernode died.
    pub(crate) fn calls_timeout(&mut self, now: Instant) {
        let config = self.call_config().clone();
        let mut ring_expired = Vec::new();
        let mut remote_silent = Vec::new();
        let mut leg_expired = Vec::new();
        let mut peer_gone = Vec::new();
        for (id, call) in &mut self.calls.calls {
            match &mut call.phase {
                Phase::Ringing { since, remote, .. } => {
                    if now.saturating_duration_since(*since) >= config.ring_timeout {
                        ring_expired.push(id.clone());
                        continue;
                    }
                    for r in remote.iter_mut() {
                        if let RemoteRing::Waiting { node, until } = r
                            && now >= *until
                        {
                            *r = RemoteRing::Gone {
                                node: std::mem::take(node),
                                busy: false,
                                refusal: None,
                            };
                            remote_silent.push(id.clone());
                        }
                    }
                }
                // The caller's supernode ends the call; this is only in case it never says so.
                Phase::Leg { since, .. } => {
                    if now.saturating_duration_since(*since) >= config.ring_timeout * 2 {
                        leg_expired.push(id.clone());
                    }
                }
                Phase::Answered { .. } => {
                    if call
                        .peer_lost_at
                        .is_some_and(|at| now.saturating_duration_since(at) >= config.resume_window)
                    {
                        peer_gone.push(id.clone());
                    }
                }
            }
        }
        for list in [&mut ring_expired, &mut remote_silent, &mut leg_expired, &mut peer_gone] {
            list.sort();
            list.dedup();
        }
        for call_id in ring_expired {
            self.end_ringing(&call_id, CallEndReason::NoAnswer, Some(CallEndReason::NoAnswer));
        }
        for call_id in remote_silent {
            self.end_if_nothing_rings(&call_id);
        }
        for call_id in leg_expired {
            self.end_leg(&call_id, CallEndReason::NoAnswer);
        }
        for call_id in peer_gone {
            // Tell whichever party is here.
            let caller_here =
                self.calls.calls.get(&call_id).is_some_and(|c| c.caller_end.conn().is_some());
            self.end_answered(&call_id, Some(caller_here), CallEndReason::PeerGone);
        }
        self.calls.invites.retain(|_, b| !b.is_full(now));
    }

    /// Calls ringing or answered now.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
}
