//! What other supernodes say about calls: legs ringing the callee's devices here for a call
//! placed elsewhere, answers and refusals for calls placed here, what an answered call's other
//! party sends, takeovers, and supernodes that go down.

use std::time::Instant;

use peerline_wire::{CallEndReason, DeviceId, Event};

use super::{Call, CallInvite, End, Phase, RemoteRing};
use crate::cluster::{BusMessage, Route};
use crate::hub::{ConnId, Hub, Output, UserId};

impl Hub {
    /// Other supernodes with devices of `user`, and how many: from their presence reports
    /// (which count invisible devices too).
    pub(crate) fn devices_elsewhere(&self, user: UserId) -> Vec<(String, u32)> {
        self.remote
            .get(&user)
            .map(|r| {
                r.by_node
                    .iter()
                    .filter(|e| e.devices > 0)
                    .map(|e| (e.node.clone(), e.devices))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends a message about a leg to the supernode that placed the call.
    pub(crate) fn send_to_caller_node(&mut self, call_id: &str, msg: BusMessage) {
        if let Some(Call { caller_end: End::Remote { node, .. }, .. }) =
            self.calls.calls.get(call_id)
        {
            let to = Route::Node(node.clone());
            self.push_output(Output::Bus { to, msg });
        }
    }

    /// A leg with no device ringing any more says so and goes.
    pub(crate) fn leg_check(&mut self, call_id: &str) {
        self.leg_check_busy(call_id, false);
    }

    pub(crate) fn leg_check_busy(&mut self, call_id: &str, busy: bool) {
        let Some(Call { phase: Phase::Leg { devices, .. }, refusal, .. }) =
            self.calls.calls.get(call_id)
        else {
            return;
        };
        if devices.is_empty() {
            let refusal = *refusal;
            self.send_to_caller_node(
                call_id,
                BusMessage::CallNone { call_id: call_id.to_owned(), busy, refusal },
            );
            self.calls.remove(call_id);
        }
    }

    /// Ends a leg's ringing devices and forgets it.
    pub(crate) fn end_leg(&mut self, call_id: &str, reason: CallEndReason) {
        if let Some(Call { phase: Phase::Leg { devices, .. }, .. }) = self.calls.remove(call_id) {
            self.ended(devices, call_id, reason);
        }
    }

    /// A call message from supernode `from`.
    pub(crate) fn handle_call_bus(&mut self, from: &str, msg: BusMessage, now: Instant) {
        match msg {
            BusMessage::CallInvite { invite } => self.ring_leg(from, invite, now),
            BusMessage::CallRang { call_id, .. } => {
                self.remote_ring(&call_id, from, RemoteRing::Ringing { node: from.to_owned() });
            }
            BusMessage::CallNone { call_id, busy, refusal } => {
                let gone = RemoteRing::Gone { node: from.to_owned(), busy, refusal };
                self.remote_ring(&call_id, from, gone);
                self.end_if_nothing_rings(&call_id);
            }
            BusMessage::CallRinging { call_id } => {
                if let Some(call) = self.calls.calls.get_mut(&call_id)
                    && let Phase::Ringing { told_ringing, .. } = &mut call.phase
                    && !*told_ringing
                {
                    *told_ringing = true;
                    let (caller, end) = (call.caller, call.caller_end.clone());
                    let event = Event::CallRinging { call_id: call_id.clone() };
                    self.send_to_end(caller, &end, &call_id, event);
                }
            }
            BusMessage::CallAccept { call_id, answer } => match self.calls.calls.get(&call_id) {
                Some(Call { phase: Phase::Ringing { .. }, .. }) => {
                    let winner = End::Remote { device: answer.device_id, node: from.to_owned() };
                    self.answered_by(&call_id, winner, answer);
                }
                // Too late: another device won, or the call ended. The leg hears who won.
                Some(Call { phase: Phase::Answered { callee_end }, callee, .. }) => {
                    let device = match callee_end {
                        End::Local(c) => self.login_of(*c).map_or(0, |(_, d)| d),
                        End::Remote { device, .. } => *device,
                    };
                    let msg = BusMessage::CallAnswered { call_id: call_id.clone(), device };
                    let to = Route::User(*callee);
                    self.push_output(Output::Bus { to, msg });
                }
                _ => {
                    let msg = BusMessage::CallOver { call_id, reason: CallEndReason::PeerGone };
                    self.push_output(Output::Bus { to: Route::Node(from.to_owned()), msg });
                }
            },
            BusMessage::CallDecline { call_id } => {
                if matches!(
                    self.calls.calls.get(&call_id),
                    Some(Call { phase: Phase::Ringing { .. }, .. })
                ) {
                    self.declined(&call_id);
                }
            }
            BusMessage::CallAnswered { call_id, device } => self.leg_answered(&call_id, device),
            BusMessage::CallOver { call_id, reason } => self.end_leg(&call_id, reason),
            BusMessage::CallSignal { call_id, user, device, event } => {
                self.call_signal(from, &call_id, user, device, event);
            }
            BusMessage::CallResumed { call_id, user, device } => {
                self.call_moved(from, &call_id, user, device);
            }
            _ => {}
        }
    }

    /// Another supernode placed a call to a user with devices here: ring them, and say how many
    /// ring (or why none does).
    fn ring_leg(&mut self, from: &str, invite: CallInvite, now: Instant) {
        if self.calls.calls.contains_key(&invite.call_id) {
            return;
        }
        let config = self.call_config().clone();
        let devices = self.user_conns(invite.callee);
        let busy = self.calls.in_answered_call(invite.callee)
            || self.calls.calls_of(invite.callee) >= config.max_calls_per_user;
        let reply = |msg| Output::Bus { to: Route::Node(from.to_owned()), msg };
        if devices.is_empty() || busy {
            let msg = BusMessage::CallNone { call_id: invite.call_id.clone(), busy, refusal: None };
            self.push_output(reply(msg));
            return;
        }
        self.send_call_event(devices.clone(), invite.incoming());
        let count = u32::try_from(devices.len()).unwrap_or(u32::MAX);
        let msg = BusMessage::CallRang { call_id: invite.call_id.clone(), devices: count };
        self.push_output(reply(msg));
        let call = Call {
            caller: invite.caller,
            caller_device: invite.caller_device,
            caller_end: End::Remote { device: invite.caller_device, node: from.to_owned() },
            callee: invite.callee,
            phase: Phase::Leg { since: now, devices, told_ringing: false, accepted: Vec::new() },
            refusal: None,
            candidates_from_caller: 0,
            candidates_from_callee: 0,
            restarts_from_caller: 0,
            restarts_from_callee: 0,
            peer_lost_at: None,
        };
        self.calls.insert(invite.call_id, call);
    }

    /// What supernode `from` said about ringing a call placed here.
    fn remote_ring(&mut self, call_id: &str, from: &str, state: RemoteRing) {
        if let Some(call) = self.calls.calls.get_mut(call_id)
            && let Phase::Ringing { remote, .. } = &mut call.phase
            && let Some(entry) = remote.iter_mut().find(|r| r.node() == from)
            && entry.live()
        {
            *entry = state;
        }
    }

    /// The caller's supernode says which device won: the leg's winner (if here) takes the call
    /// and the candidates it trickled since its `call_accept` go to the caller; the other devices
    /// here stop ringing, and what they trickled after answering is dropped unseen.
    fn leg_answered(&mut self, call_id: &str, winner: DeviceId) {
        let Some(Call { phase: Phase::Leg { devices, .. }, callee, .. }) =
            self.calls.calls.get(call_id)
        else {
            return;
        };
        let callee = *callee;
        let won: Option<ConnId> =
            devices.iter().copied().find(|c| self.login_of(*c) == Some((callee, winner)));
        let others: Vec<ConnId> = devices.iter().copied().filter(|c| Some(*c) != won).collect();
        self.ended(others, call_id, CallEndReason::AnsweredElsewhere);
        let Some(conn) = won else {
            self.calls.remove(call_id);
            return;
        };
        let Some(call) = self.calls.calls.get_mut(call_id) else { return };
        let held = match &mut call.phase {
            Phase::Leg { accepted, .. } => accepted
                .iter_mut()
                .find(|a| a.conn == conn)
                .map(|a| std::mem::take(&mut a.held))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        call.phase = Phase::Answered { callee_end: End::Local(conn) };
        // The held ones count against the winner's side, as if they had been sent now.
        call.candidates_from_callee = held.len();
        let (caller, caller_end) = (call.caller, call.caller_end.clone());
        for candidate in held {
            let event = Event::CallCandidate { call_id: call_id.to_owned(), candidate };
            self.send_to_end(caller, &caller_end, call_id, event);
        }
    }

    /// The other party of an answered call sent something for our party's device.
    fn call_signal(
        &mut self,
        from: &str,
        call_id: &str,
        user: UserId,
        device: DeviceId,
        event: Event,
    ) {
        let Some(call) = self.calls.calls.get(call_id) else { return };
        let Phase::Answered { callee_end } = &call.phase else { return };
        let mine = |u: UserId, end: &End| match end {
            End::Local(c) => u == user && self.login_of(*c).is_some_and(|(_, d)| d == device),
            End::Remote { .. } => false,
        };
        let target = if mine(call.caller, &call.caller_end) {
            call.caller_end.conn()
        } else if mine(call.callee, callee_end) {
            callee_end.conn()
        } else {
            None
        };
        let Some(conn) = target else { return };
        let ends = matches!(event, Event::CallEnded { .. });
        // The sender is where the other party is now.
        if let Some(call) = self.calls.calls.get_mut(call_id) {
            if let End::Remote { node, .. } = &mut call.caller_end {
                from.clone_into(node);
            }
            if let Phase::Answered { callee_end: End::Remote { node, .. } } = &mut call.phase {
                from.clone_into(node);
            }
            call.peer_lost_at = None;
        }
        self.send_call_event(vec![conn], event);
        if ends {
            self.calls.remove(call_id);
        }
    }

    /// A party of an answered call took it over on supernode `from`.
    fn call_moved(&mut self, from: &str, call_id: &str, user: UserId, device: DeviceId) {
        let Some(call) = self.calls.calls.get_mut(call_id) else { return };
        let Phase::Answered { callee_end } = &mut call.phase else { return };
        let moved = End::Remote { device, node: from.to_owned() };
        let is_party = |u: UserId, end: &End, login: Option<(UserId, DeviceId)>| match end {
            End::Local(_) => u == user && login.is_some_and(|(_, d)| d == device),
            End::Remote { device: d, .. } => u == user && *d == device,
        };
        let caller_login =
            call.caller_end.conn().and_then(|c| self.conns.get(&c)).and_then(|c| c.login);
        let callee_login = callee_end.conn().and_then(|c| self.conns.get(&c)).and_then(|c| c.login);
        if is_party(call.caller, &call.caller_end, caller_login) {
            call.caller_end = moved;
        } else if is_party(call.callee, callee_end, callee_login) {
            *callee_end = moved;
        } else {
            return;
        }
        call.peer_lost_at = None;
        // Neither party is here any more: this supernode has no part in the call.
        let (caller_end, callee_end) = (&call.caller_end, callee_end.clone());
        if caller_end.conn().is_none() && callee_end.conn().is_none() {
            self.calls.remove(call_id);
        }
    }

    /// A supernode went down: calls it was ringing stop waiting for it, legs of calls it placed
    /// end, and answered calls whose other party was there wait for a takeover.
    pub(crate) fn calls_node_down(&mut self, node: &str, now: Instant) {
        let mut ringing = Vec::new();
        let mut legs = Vec::new();
        for (id, call) in &mut self.calls.calls {
            let peer_there = matches!(&call.caller_end, End::Remote { node: n, .. } if n == node);
            match &mut call.phase {
                Phase::Ringing { remote, .. } => {
                    for r in remote.iter_mut().filter(|r| r.node() == node && r.live()) {
                        *r = RemoteRing::Gone { node: node.to_owned(), busy: false, refusal: None };
                        ringing.push(id.clone());
                    }
                }
                Phase::Leg { .. } if peer_there => legs.push(id.clone()),
                Phase::Leg { .. } => {}
                Phase::Answered { callee_end } => {
                    let callee_there =
                        matches!(callee_end, End::Remote { node: n, .. } if n == node);
                    if peer_there || callee_there {
                        call.peer_lost_at = Some(now);
                    }
                }
            }
        }
        ringing.sort();
        ringing.dedup();
        legs.sort();
        for call_id in ringing {
            self.end_if_nothing_rings(&call_id);
        }
        for call_id in legs {
            self.end_leg(&call_id, CallEndReason::PeerGone);
        }
    }
}
