//! What supernodes tell each other over the cluster bus, and what a hub does with it.
//!
//! A hub addresses users, not connections: whatever concerns a user with devices on other
//! supernodes goes out as [`Output::Bus`](crate::Output::Bus) to [`Route::User`], and the bus
//! brings it to exactly the supernodes holding a device of that user (see `peerline-bus`). What
//! comes in is fed to [`Hub::handle_bus`]; it is applied here and never sent on, so nothing
//! loops.

use std::time::Instant;

use peerline_wire::{CallEndReason, DeviceId, EndReason, Event, Presence, Status};
use serde::{Deserialize, Serialize};

use crate::calls::{CallAnswer, CallInvite};
use crate::hub::{Hub, LinkVersion, UserId};

/// Where a bus message goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// The other supernodes holding a device of this user.
    User(UserId),
    /// One supernode.
    Node(String),
}

/// A message between supernodes. Encoded as JSON with a `t` tag; docs/scaling.md lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum BusMessage {
    /// An event for every device of `user` on the receiving supernode.
    Deliver {
        /// The user.
        user: UserId,
        /// The event, as sent to clients.
        event: Event,
    },
    /// The presence of `subject` on the sending supernode (offline: no device there any more).
    /// Sent to the subject's mutual contacts; `seq` orders the sender's reports.
    Presence {
        /// The user.
        subject: UserId,
        /// Their username, for the event.
        username: String,
        /// Their presence there, as contacts may see it (`invisible` is `offline`).
        presence: Presence,
        /// Their devices connected there (invisible ones too: calls ring them), for the
        /// supernodes that place calls to them.
        #[serde(default)]
        devices: u32,
        /// The sending supernode's report number.
        seq: u64,
    },
    /// A viewer came online on the sending supernode and knows nothing of `subject`: the
    /// subject's supernodes answer with a [`BusMessage::Presence`] to the asking supernode.
    PresenceProbe {
        /// The user asked about.
        subject: UserId,
        /// The viewer who asks (answered only if the two are mutual contacts).
        viewer: UserId,
    },
    /// The user chose another status on a device elsewhere.
    Status {
        /// The user.
        user: UserId,
        /// The status.
        status: Status,
    },
    /// A contact change was stored.
    Link {
        /// One user of the pair.
        a: UserId,
        /// The other.
        b: UserId,
        /// Both rows are accepted now.
        mutual: bool,
        /// The change's version from storage.
        version: LinkVersion,
    },
    /// A call placed on the sending supernode, for the callee's devices here. Answered with
    /// [`BusMessage::CallRang`] or [`BusMessage::CallNone`] to the sending supernode.
    CallInvite {
        /// The call, as the caller's supernode checked it.
        invite: CallInvite,
    },
    /// This many devices of the callee ring here for the call.
    CallRang {
        /// The call.
        call_id: String,
        /// Devices ringing.
        devices: u32,
    },
    /// No device of the callee rings here (any more).
    CallNone {
        /// The call.
        call_id: String,
        /// Because the callee is in another call.
        busy: bool,
        /// Why the last device there that stopped ringing could not take the call (see
        /// `Hub::call_refuse`); absent from older supernodes.
        #[serde(default)]
        refusal: Option<peerline_wire::CallEndReason>,
    },
    /// A device of the callee here rings (the caller is told once).
    CallRinging {
        /// The call.
        call_id: String,
    },
    /// A device of the callee here answers; the caller's supernode decides whether it won.
    CallAccept {
        /// The call.
        call_id: String,
        /// The answer.
        answer: CallAnswer,
    },
    /// A device of the callee here declined the call for everyone.
    CallDecline {
        /// The call.
        call_id: String,
    },
    /// To the callee's supernodes: this device won; the others stop ringing.
    CallAnswered {
        /// The call.
        call_id: String,
        /// The winning device.
        device: DeviceId,
    },
    /// To the callee's supernodes: the ringing call ended (cancelled, declined, no answer).
    CallOver {
        /// The call.
        call_id: String,
        /// Why.
        reason: CallEndReason,
    },
    /// An answered call's party sends this event to the other party's device.
    CallSignal {
        /// The call.
        call_id: String,
        /// The receiving party.
        user: UserId,
        /// Its device.
        device: DeviceId,
        /// The event for it (`call_ended` ends the call there).
        event: Event,
    },
    /// A party of an answered call took it over on the sending supernode.
    CallResumed {
        /// The call.
        call_id: String,
        /// The party.
        user: UserId,
        /// Its device.
        device: DeviceId,
    },
    /// Several messages for one destination, in order (a burst the publisher had queued).
    Batch {
        /// The messages; never a batch.
        msgs: Vec<BusMessage>,
    },
    /// Close the connections of one device of the user (removed), or of all its devices.
    Close {
        /// The user.
        user: UserId,
        /// Only this device; all of the user's devices without it.
        device: Option<DeviceId>,
        /// Told to the client.
        reason: EndReason,
    },
}

impl Hub {
    /// A message from supernode `from`.
    pub fn handle_bus(&mut self, from: &str, msg: BusMessage, now: Instant) {
        match msg {
            BusMessage::Deliver { user, event } => self.deliver_here(user, event, None),
            BusMessage::Presence { subject, username, presence, devices, seq } => {
                self.remote_presence(from, subject, username, presence, devices, seq);
            }
            BusMessage::PresenceProbe { subject, viewer } => {
                self.report_presence(subject, viewer, Route::Node(from.to_owned()));
            }
            BusMessage::Status { user, status } => self.apply_status(user, status),
            BusMessage::Link { a, b, mutual, version } => {
                self.apply_link(a, b, mutual, version, now)
            }
            BusMessage::Close { user, device, reason } => match device {
                Some(device) => self.close_where(user, reason, |_, d| d == device),
                None => self.close_where(user, reason, |_, _| true),
            },
            BusMessage::Batch { msgs } => {
                for msg in msgs {
                    if !matches!(msg, BusMessage::Batch { .. }) {
                        self.handle_bus(from, msg, now);
                    }
                }
            }
            call => self.handle_call_bus(from, call, now),
        }
    }
}

/// Most messages in one [`BusMessage::Batch`].
pub const MAX_BATCH: usize = 256;

/// Shapes a burst of queued messages for the bus: reports of one user's presence to one
/// destination collapse to the newest (it supersedes the others), and messages to one
/// destination travel together in a [`BusMessage::Batch`], in their order. A queue of one is
/// left as it is, so a quiet supernode adds no delay and no framing.
///
/// After a mass reconnect, a supernode announces thousands of users to the same few contact
/// subjects in a burst: this turns one bus message per change into one per destination.
pub fn coalesce(queue: Vec<(Route, BusMessage)>) -> Vec<(Route, BusMessage)> {
    if queue.len() < 2 {
        return queue;
    }
    // The newest presence report per (destination, subject) wins.
    let mut newest: std::collections::HashMap<(Route, UserId), usize> =
        std::collections::HashMap::new();
    for (i, (route, msg)) in queue.iter().enumerate() {
        if let BusMessage::Presence { subject, .. } = msg {
            newest.insert((route.clone(), *subject), i);
        }
    }
    let mut order: Vec<Route> = Vec::new();
    let mut grouped: std::collections::HashMap<Route, Vec<BusMessage>> =
        std::collections::HashMap::new();
    for (i, (route, msg)) in queue.into_iter().enumerate() {
        if let BusMessage::Presence { subject, .. } = &msg
            && newest.get(&(route.clone(), *subject)) != Some(&i)
        {
            continue;
        }
        let msgs = grouped.entry(route.clone()).or_insert_with(|| {
            order.push(route.clone());
            Vec::new()
        });
        msgs.push(msg);
    }
    let mut out = Vec::new();
    for route in order {
        let Some(msgs) = grouped.remove(&route) else { continue };
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let chunk: Vec<BusMessage> = msgs.by_ref().take(MAX_BATCH).collect();
            match <[BusMessage; 1]>::try_from(chunk) {
                Ok([one]) => out.push((route.clone(), one)),
                Err(chunk) => out.push((route.clone(), BusMessage::Batch { msgs: chunk })),
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn report(subject: UserId, presence: Presence, seq: u64) -> BusMessage {
        BusMessage::Presence { subject, username: format!("u{subject}"), presence, devices: 1, seq }
    }

    #[test]
    fn a_lone_message_goes_as_it_is() {
        let one = vec![(Route::User(1), report(2, Presence::Online, 1))];
        assert_eq!(coalesce(one.clone()), one);
    }

    #[test]
    fn a_burst_is_batched_per_destination_in_order_with_only_the_newest_report() {
        let deliver =
            BusMessage::Deliver { user: 1, event: Event::ContactRemoved { username: "x".into() } };
        let queue = vec![
            (Route::User(1), report(7, Presence::Online, 1)),
            (Route::User(2), report(7, Presence::Online, 2)),
            (Route::User(1), deliver.clone()),
            (Route::User(1), report(7, Presence::Away, 3)),
            (Route::User(1), report(8, Presence::Online, 4)),
            (Route::Node("sn2".into()), report(9, Presence::Busy, 5)),
        ];
        let out = coalesce(queue);
        let batch = BusMessage::Batch {
            msgs: vec![deliver, report(7, Presence::Away, 3), report(8, Presence::Online, 4)],
        };
        assert_eq!(
            out,
            vec![
                (Route::User(2), report(7, Presence::Online, 2)),
                (Route::User(1), batch),
                (Route::Node("sn2".into()), report(9, Presence::Busy, 5)),
            ],
            "user 1 gets one batch: the delivery, then only u7's newest report, then u8's; \
             destinations in the order of their first message kept"
        );
    }

    #[test]
    fn batches_are_bounded_and_decode_back() {
        let queue: Vec<_> =
            (0..600).map(|i| (Route::User(1), report(i, Presence::Online, i as u64))).collect();
        let out = coalesce(queue);
        assert_eq!(out.len(), 3, "256 + 256 + 88");
        let json = serde_json::to_string(&out[0].1).unwrap();
        let back: BusMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, out[0].1);
    }
}
