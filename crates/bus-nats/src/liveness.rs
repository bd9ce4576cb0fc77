//! Which other supernodes are alive: a sans-IO core ([`Liveness`]) fed with heartbeats and the
//! clock, and the task that drives it (sends this node's heartbeats, reads the others').

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::connection::State;
use futures_util::StreamExt;
use peerline_bus::BusEvent;
use tokio::time::{Instant, MissedTickBehavior};

use crate::wire::{Beat, Subjects};
use crate::{EventSink, NodeIdentity};

/// What this node knows of the others: each one's incarnation and when it was last heard.
///
/// A node is kept only while it is up, so the table is as large as the live part of the network.
pub(crate) struct Liveness {
    own: String,
    down_after: Duration,
    peers: HashMap<String, Peer>,
    /// Per node, the incarnation that last said goodbye: a heartbeat of it still in flight
    /// (sent just before the goodbye, heard just after) must not bring it back up, only to
    /// report it down a second time. One entry per node id, replaced by its next incarnation.
    departed: HashMap<String, u64>,
}

struct Peer {
    incarnation: u64,
    last_heard: Instant,
}

impl Liveness {
    /// Nobody heard yet. Beats from `own` (this node's id) are ignored: they come from an
    /// earlier incarnation of this node that has not noticed it was replaced.
    pub(crate) fn new(own: &str, down_after: Duration) -> Liveness {
        Liveness {
            own: own.to_owned(),
            down_after,
            peers: HashMap::new(),
            departed: HashMap::new(),
        }
    }

    /// Takes in a heartbeat or goodbye heard at `now`; returns the event it causes, if any:
    /// `NodeUp` for a node first heard or heard with a new incarnation, `NodeDown` for the
    /// goodbye of the incarnation we know.
    pub(crate) fn handle_beat(&mut self, beat: Beat, now: Instant) -> Option<BusEvent> {
        match beat {
            Beat::Up { node, .. } | Beat::Down { node, .. } if node == self.own => None,
            Beat::Up { node, incarnation } if self.departed.get(&node) == Some(&incarnation) => {
                None
            }
            Beat::Up { node, incarnation } => match self.peers.get_mut(&node) {
                Some(peer) if peer.incarnation == incarnation => {
                    peer.last_heard = now;
                    None
                }
                _ => {
                    self.peers.insert(node.clone(), Peer { incarnation, last_heard: now });
                    Some(BusEvent::NodeUp { node, incarnation })
                }
            },
            Beat::Down { node, incarnation } => {
                // The goodbye of an older incarnation (after a quick restart) changes nothing.
                let known = self.peers.get(&node).is_some_and(|p| p.incarnation == incarnation);
                known.then(|| {
                    self.peers.remove(&node);
                    self.departed.insert(node.clone(), incarnation);
                    BusEvent::NodeDown { node }
                })
            }
        }
    }

    /// `NodeDown` for every node not heard for `down_after` by `now` (each reported once: it is
    /// forgotten, and a later heartbeat makes it `NodeUp` again).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<BusEvent> {
        let down_after = self.down_after;
        let mut silent: Vec<String> = Vec::new();
        self.peers.retain(|node, peer| {
            let alive = now.saturating_duration_since(peer.last_heard) < down_after;
            if !alive {
                silent.push(node.clone());
            }
            alive
        });
        silent.sort_unstable();
        silent.into_iter().map(|node| BusEvent::NodeDown { node }).collect()
    }

    /// How many other nodes are up.
    pub(crate) fn live(&self) -> usize {
        self.peers.len()
    }
}

/// Everything the liveness task needs.
pub(crate) struct LivenessTask {
    pub client: async_nats::Client,
    pub subjects: Subjects,
    pub me: NodeIdentity,
    pub heartbeat: Duration,
    pub down_after: Duration,
    pub beats: async_nats::Subscriber,
    pub sink: EventSink,
    pub live_nodes: Arc<AtomicUsize>,
}

impl LivenessTask {
    /// Sends a heartbeat every `heartbeat`, reads the others', and reports nodes up and down,
    /// until aborted or the subscription ends.
    pub(crate) async fn run(mut self) {
        let mut core = Liveness::new(&self.me.node_id, self.down_after);
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Checking four times per `down_after` reports a silent node at most a quarter late.
        let mut check = tokio::time::interval((self.down_after / 4).max(Duration::from_millis(1)));
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = beat.tick() => self.announce().await,
                _ = check.tick() => {
                    for event in core.handle_timeout(Instant::now()) {
                        self.sink.send(event);
                    }
                }
                message = self.beats.next() => {
                    let Some(message) = message else { break };
                    let Some(beat) = Beat::decode(&message.payload) else {
                        self.sink.count_drop("a heartbeat that does not parse");
                        continue;
                    };
                    if let Some(event) = core.handle_beat(beat, Instant::now()) {
                        // A newcomer hears from us at once instead of at our next heartbeat.
                        let newcomer = matches!(event, peerline_bus::BusEvent::NodeUp { .. });
                        self.sink.send(event);
                        if newcomer {
                            self.announce().await;
                        }
                    }
                }
            }
            self.live_nodes.store(core.live(), Ordering::Relaxed);
        }
    }

    /// Publishes this node's heartbeat, unless disconnected: a heartbeat queued while
    /// disconnected would only arrive late and stale.
    async fn announce(&self) {
        if self.client.connection_state() != State::Connected {
            return;
        }
        let beat = Beat::Up { node: self.me.node_id.clone(), incarnation: self.me.incarnation };
        if let Err(e) = self.client.publish(self.subjects.heartbeat(), beat.encode().into()).await {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(node: &str, incarnation: u64) -> Beat {
        Beat::Up { node: node.into(), incarnation }
    }

    #[tokio::test(start_paused = true)]
    async fn up_once_then_down_after_silence() {
        let t0 = Instant::now();
        let mut core = Liveness::new("me", Duration::from_secs(3));
        let node_up = BusEvent::NodeUp { node: "a".into(), incarnation: 1 };
        assert_eq!(core.handle_beat(up("a", 1), t0), Some(node_up.clone()));
        assert_eq!(core.handle_beat(up("a", 1), t0 + Duration::from_secs(2)), None);
        assert!(core.handle_timeout(t0 + Duration::from_secs(4)).is_empty(), "heard at 2 s");
        assert_eq!(core.live(), 1);
        let down = core.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(down, [BusEvent::NodeDown { node: "a".into() }]);
        assert!(core.handle_timeout(t0 + Duration::from_secs(60)).is_empty(), "reported once");
        assert_eq!(core.live(), 0);
        assert_eq!(core.handle_beat(up("a", 1), t0 + Duration::from_secs(61)), Some(node_up));
    }

    #[tokio::test(start_paused = true)]
    async fn new_incarnation_is_up_again_and_old_goodbye_ignored() {
        let t0 = Instant::now();
        let mut core = Liveness::new("me", Duration::from_secs(3));
        core.handle_beat(up("a", 1), t0);
        let again = core.handle_beat(up("a", 2), t0);
        assert_eq!(again, Some(BusEvent::NodeUp { node: "a".into(), incarnation: 2 }));
        let old_bye = Beat::Down { node: "a".into(), incarnation: 1 };
        assert_eq!(core.handle_beat(old_bye, t0), None, "the old incarnation's goodbye");
        let bye = Beat::Down { node: "a".into(), incarnation: 2 };
        assert_eq!(
            core.handle_beat(bye.clone(), t0),
            Some(BusEvent::NodeDown { node: "a".into() })
        );
        assert_eq!(core.handle_beat(bye, t0), None, "a second goodbye");
        assert!(core.handle_timeout(t0 + Duration::from_secs(10)).is_empty(), "already down");
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_heard_after_the_goodbye_does_not_bring_the_node_back() {
        // The conformance suite caught this under load: the heartbeat task's last beat left
        // just before the goodbye and arrived just after, so the node came up again and was
        // reported down a second time once it fell silent.
        let t0 = Instant::now();
        let mut core = Liveness::new("me", Duration::from_secs(3));
        core.handle_beat(up("c", 5), t0);
        let bye = Beat::Down { node: "c".into(), incarnation: 5 };
        assert_eq!(core.handle_beat(bye, t0), Some(BusEvent::NodeDown { node: "c".into() }));
        assert_eq!(core.handle_beat(up("c", 5), t0), None, "the late beat of the departed");
        assert!(core.handle_timeout(t0 + Duration::from_secs(10)).is_empty(), "down once");
        assert_eq!(
            core.handle_beat(up("c", 6), t0 + Duration::from_secs(11)),
            Some(BusEvent::NodeUp { node: "c".into(), incarnation: 6 }),
            "its next incarnation is up"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn own_beats_are_ignored() {
        let mut core = Liveness::new("me", Duration::from_secs(3));
        assert_eq!(core.handle_beat(up("me", 7), Instant::now()), None);
        assert_eq!(core.live(), 0);
    }
}
