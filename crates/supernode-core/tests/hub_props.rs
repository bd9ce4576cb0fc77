//! Property test: random sequences of connects, logins, disconnects, status changes, contact
//! links and unlinks, requests, clock jumps and supernode crashes, on three hubs joined by a fake
//! bus (each message encoded as JSON on the way, as the real bus does), checked against an
//! independent model of one network.
//!
//! Invariants after every step:
//! - a non-offline presence event about S only ever reaches connections of users who are mutual
//!   contacts of S (privacy);
//! - what each logged-in connection last heard about each user equals what the model says it may
//!   see: S's status if mutual and S online, otherwise offline (convergence: every change arrives);
//! - the hub never panics and its counts match the model.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use peerline_supernode_core::{ConnId, Hub, HubConfig, Link, OnlineLogin, Output, coalesce};
use peerline_wire::{Event, Presence, Status};
use proptest::prelude::*;

const USERS: i64 = 5;
const CONNS: u64 = 8;
/// Supernodes; connection `c` is on hub `c % HUBS`.
const HUBS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Connect(u64),
    Login(u64, i64),
    Disconnect(u64),
    SetStatus(i64, Status),
    Link(i64, i64),
    Unlink(i64, i64),
    Request(u64),
    Advance(u64),
    /// A supernode dies: its connections are gone, the others hear it is down, it restarts empty.
    Crash(usize),
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Online),
        Just(Status::Away),
        Just(Status::Busy),
        Just(Status::Invisible)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..CONNS).prop_map(Op::Connect),
        (0..CONNS, 0..USERS).prop_map(|(c, u)| Op::Login(c, u)),
        (0..CONNS).prop_map(Op::Disconnect),
        (0..USERS, status()).prop_map(|(u, s)| Op::SetStatus(u, s)),
        (0..USERS, 0..USERS).prop_map(|(a, b)| Op::Link(a, b)),
        (0..USERS, 0..USERS).prop_map(|(a, b)| Op::Unlink(a, b)),
        (0..CONNS).prop_map(Op::Request),
        (0..40_000u64).prop_map(Op::Advance),
        (0..HUBS).prop_map(Op::Crash),
    ]
}

#[derive(Default)]
struct Model {
    mutual: BTreeSet<(i64, i64)>,
    status: HashMap<i64, Status>,
    connected: BTreeSet<u64>,
    logged_in: HashMap<u64, i64>,
    /// What each logged-in connection last heard about each user.
    heard: HashMap<u64, HashMap<String, Presence>>,
}

impl Model {
    fn is_mutual(&self, a: i64, b: i64) -> bool {
        self.mutual.contains(&(a.min(b), a.max(b)))
    }
    fn online(&self, u: i64) -> bool {
        self.logged_in.values().any(|v| *v == u)
    }
    fn expected(&self, viewer: i64, subject: i64) -> Presence {
        if viewer != subject && self.is_mutual(viewer, subject) && self.online(subject) {
            self.status.get(&subject).copied().unwrap_or(Status::Online).into()
        } else {
            Presence::Offline
        }
    }
}

fn name(u: i64) -> String {
    format!("u{u}")
}

fn hub_of(conn: u64) -> usize {
    (conn % HUBS as u64) as usize
}

/// Applies the hubs' outputs the way the drivers and the bus would: deliver events, carry bus
/// messages (as JSON) to the hubs holding a device of the user or to the named hub, and for a
/// close, drop the connection and tell its hub.
fn pump(hubs: &mut [Hub], model: &mut Model, now: Instant) {
    loop {
        let mut quiet = true;
        for h in 0..hubs.len() {
            let outputs = hubs[h].drain_outputs();
            quiet &= outputs.is_empty();
            // What the hub queued for the bus goes out as the publisher sends a burst.
            let mut bus = Vec::new();
            for o in outputs {
                match o {
                    Output::Send { conns, event: Event::Presence { username, presence } } => {
                        let subject: i64 = username[1..].parse().unwrap();
                        for c in conns {
                            assert_eq!(hub_of(c.0), h, "hub {h} sent to another hub's connection");
                            let viewer =
                                *model.logged_in.get(&c.0).expect("presence to a logged-in conn");
                            if presence != Presence::Offline {
                                assert!(
                                    model.is_mutual(viewer, subject),
                                    "u{subject}'s presence leaked to u{viewer}"
                                );
                            }
                            model.heard.entry(c.0).or_default().insert(username.clone(), presence);
                        }
                    }
                    Output::Send { .. }
                    | Output::MissedCall { .. }
                    | Output::RegisterCall { .. }
                    | Output::UnregisterCall { .. } => {}
                    Output::Close { conn, .. } => {
                        hubs[h].disconnect(conn);
                        model.connected.remove(&conn.0);
                        model.logged_in.remove(&conn.0);
                        model.heard.remove(&conn.0);
                    }
                    Output::Bus { to, msg } => bus.push((to, msg)),
                }
            }
            for (to, msg) in coalesce(bus) {
                common::carry(hubs, h, to, &msg, &[], now);
            }
        }
        if quiet {
            return;
        }
    }
}

fn check(hubs: &[Hub], model: &Model) {
    for (conn, viewer) in &model.logged_in {
        let hub = &hubs[hub_of(*conn)];
        for subject in 0..USERS {
            if subject == *viewer {
                continue;
            }
            let want = model.expected(*viewer, subject);
            assert_eq!(
                hub.presence_seen_by(*viewer, subject),
                want,
                "hub {} view u{viewer}→u{subject}",
                hub_of(*conn)
            );
            let heard = model
                .heard
                .get(conn)
                .and_then(|h| h.get(&name(subject)))
                .copied()
                .unwrap_or(Presence::Offline);
            assert_eq!(heard, want, "conn {conn} (u{viewer}) heard wrong presence of u{subject}");
        }
    }
    let conns: usize = hubs.iter().map(Hub::connection_count).sum();
    assert_eq!(conns, model.connected.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn presence_is_private_and_converges(ops in proptest::collection::vec(op(), 1..120)) {
        let mut now = Instant::now();
        let mut hubs: Vec<Hub> = (0..HUBS).map(|_| Hub::new(HubConfig::default(), now)).collect();
        let mut model = Model::default();
        // Each contact change is newer than the last; a login reads the newest.
        let mut version = 0;
        for op in ops {
            match op {
                Op::Connect(c) if !model.connected.contains(&c) => {
                    hubs[hub_of(c)].connect(ConnId(c), now);
                    model.connected.insert(c);
                }
                Op::Login(c, u) if model.connected.contains(&c) && !model.logged_in.contains_key(&c) => {
                    let contacts = (0..USERS)
                        .filter(|o| *o != u)
                        .map(|o| Link { peer: o, mutual: model.is_mutual(u, o), version })
                        .collect();
                    let login = OnlineLogin {
                        user_id: u,
                        username: name(u),
                        device_id: c as i64,
                        status: model.status.get(&u).copied().unwrap_or(Status::Online),
                        contacts,
                    };
                    // The snapshot comes out of the hub with the other outputs.
                    assert!(hubs[hub_of(c)].login(ConnId(c), login, now));
                    model.logged_in.insert(c, u);
                    model.heard.entry(c).or_default();
                }
                Op::Disconnect(c) if model.connected.contains(&c) => {
                    hubs[hub_of(c)].disconnect(ConnId(c));
                    model.connected.remove(&c);
                    model.logged_in.remove(&c);
                    model.heard.remove(&c);
                }
                Op::SetStatus(u, s) => {
                    model.status.insert(u, s);
                    // Asked on one of the user's devices; stored for logins anywhere later.
                    if let Some(h) = (0..HUBS).find(|h| hubs[*h].is_online(u)) {
                        hubs[h].set_status(u, s);
                    }
                }
                Op::Link(a, b) if a != b => {
                    model.mutual.insert((a.min(b), a.max(b)));
                    version += 1;
                    hubs[(a as usize) % HUBS].set_link(a, b, true, version, now);
                }
                Op::Unlink(a, b) if a != b => {
                    model.mutual.remove(&(a.min(b), a.max(b)));
                    version += 1;
                    hubs[(b as usize) % HUBS].set_link(a, b, false, version, now);
                }
                Op::Request(c) if model.connected.contains(&c) => {
                    let _ = hubs[hub_of(c)].admit(ConnId(c), now);
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    for hub in &mut hubs {
                        hub.handle_timeout(now);
                    }
                }
                Op::Crash(h) => {
                    hubs[h] = Hub::new(HubConfig::default(), now);
                    let gone: Vec<u64> =
                        model.connected.iter().copied().filter(|c| hub_of(*c) == h).collect();
                    for c in gone {
                        model.connected.remove(&c);
                        model.logged_in.remove(&c);
                        model.heard.remove(&c);
                    }
                    for (other, hub) in hubs.iter_mut().enumerate() {
                        if other != h {
                            hub.node_gone(&h.to_string(), now);
                        }
                    }
                }
                _ => {}
            }
            pump(&mut hubs, &mut model, now);
            check(&hubs, &model);
        }
    }
}
