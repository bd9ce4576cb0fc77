//! Hub behaviour with a fake clock: presence fan-out and its privacy rules, heartbeats, login
//! deadlines, rate limits and throttling.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use peerline_supernode_core::{ConnId, Hub, HubConfig, Link, OnlineLogin, Output};
use peerline_wire::{EndReason, ErrorCode, Event, Presence, Status};

const ALICE: i64 = 1;
const BOB: i64 = 2;
const CAROL: i64 = 3;

fn login(
    hub: &mut Hub,
    conn: u64,
    user: i64,
    name: &str,
    device: i64,
    mutual: &[i64],
    now: Instant,
) {
    hub.connect(ConnId(conn), now);
    assert!(hub.login(
        ConnId(conn),
        OnlineLogin {
            user_id: user,
            username: name.into(),
            device_id: device,
            status: Status::Online,
            contacts: mutual.iter().map(|&peer| Link { peer, mutual: true, version: 1 }).collect(),
        },
        now,
    ));
}

/// Presence events per connection, in order.
fn presence_events(hub: &mut Hub) -> Vec<(u64, String, Presence)> {
    let mut out = Vec::new();
    for o in hub.drain_outputs() {
        if let Output::Send { conns, event: Event::Presence { username, presence } } = o {
            for c in conns {
                out.push((c.0, username.clone(), presence));
            }
        }
    }
    out
}

fn closes(hub: &mut Hub) -> Vec<(u64, EndReason)> {
    hub.drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Close { conn, reason } => Some((conn.0, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn mutual_contacts_see_each_other_come_and_go() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[ALICE], t0);
    assert!(presence_events(&mut hub).is_empty(), "nobody online to tell");
    login(&mut hub, 20, ALICE, "alice", 200, &[BOB], t0);
    assert_eq!(
        presence_events(&mut hub),
        vec![(20, "bob".into(), Presence::Online), (10, "alice".into(), Presence::Online)],
        "alice's snapshot is queued as she goes live, then bob hears of her"
    );
    assert_eq!(
        hub.presence_snapshot(ALICE),
        vec![Event::Presence { username: "bob".into(), presence: Presence::Online }]
    );

    hub.set_status(ALICE, Status::Away);
    assert_eq!(presence_events(&mut hub), vec![(10, "alice".into(), Presence::Away)]);
    hub.set_status(ALICE, Status::Away);
    assert!(presence_events(&mut hub).is_empty(), "no change, no event");

    hub.disconnect(ConnId(20));
    assert_eq!(presence_events(&mut hub), vec![(10, "alice".into(), Presence::Offline)]);
}

#[test]
fn a_second_device_does_not_reannounce_and_the_last_one_going_offline_does() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[ALICE], t0);
    login(&mut hub, 20, ALICE, "alice", 200, &[BOB], t0);
    login(&mut hub, 21, ALICE, "alice", 201, &[BOB], t0);
    let to_bob = presence_events(&mut hub).into_iter().filter(|(c, _, _)| *c == 10).count();
    assert_eq!(to_bob, 1, "bob hears of alice once");
    hub.disconnect(ConnId(20));
    assert!(presence_events(&mut hub).is_empty(), "alice still online on device 201");
    assert!(hub.is_device_online(ALICE, 201));
    assert!(!hub.is_device_online(ALICE, 200));
    hub.disconnect(ConnId(21));
    assert_eq!(presence_events(&mut hub), vec![(10, "alice".into(), Presence::Offline)]);
    assert!(!hub.is_online(ALICE));
}

#[test]
fn invisible_looks_offline_and_non_contacts_see_nothing() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[ALICE], t0);
    login(&mut hub, 30, CAROL, "carol", 300, &[], t0);
    login(&mut hub, 20, ALICE, "alice", 200, &[BOB], t0);
    let events = presence_events(&mut hub);
    assert!(events.iter().all(|(c, _, _)| *c != 30), "carol is no contact: {events:?}");
    hub.set_status(ALICE, Status::Invisible);
    assert_eq!(presence_events(&mut hub), vec![(10, "alice".into(), Presence::Offline)]);
    assert_eq!(hub.presence_seen_by(BOB, ALICE), Presence::Offline);
    assert_eq!(hub.presence_seen_by(CAROL, ALICE), Presence::Offline);
    hub.set_status(ALICE, Status::Busy);
    assert_eq!(hub.presence_seen_by(BOB, ALICE), Presence::Busy);
    assert_eq!(hub.presence_seen_by(CAROL, ALICE), Presence::Offline);
}

#[test]
fn link_and_unlink_update_both_sides() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[], t0);
    login(&mut hub, 20, ALICE, "alice", 200, &[], t0);
    assert!(presence_events(&mut hub).is_empty());
    hub.set_link(ALICE, BOB, true, 1, t0);
    let mut ev = presence_events(&mut hub);
    ev.sort_by_key(|(c, u, _)| (*c, u.clone()));
    assert_eq!(
        ev,
        vec![(10, "alice".into(), Presence::Online), (20, "bob".into(), Presence::Online)]
    );
    // A block (no longer mutual): each now sees the other offline.
    hub.set_link(BOB, ALICE, false, 2, t0);
    let mut ev = presence_events(&mut hub);
    ev.sort_by_key(|(c, u, _)| (*c, u.clone()));
    assert_eq!(
        ev,
        vec![(10, "alice".into(), Presence::Offline), (20, "bob".into(), Presence::Offline)]
    );
    hub.set_status(BOB, Status::Away);
    assert!(presence_events(&mut hub).is_empty(), "blocked user learns nothing");
    assert_eq!(hub.presence_seen_by(ALICE, BOB), Presence::Offline);
}

#[test]
fn an_older_contact_change_heard_late_never_overwrites_a_newer_one() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[], t0);
    login(&mut hub, 20, ALICE, "alice", 200, &[], t0);
    // Bob's block (version 8) is applied before alice's accept (version 7) is heard of.
    hub.set_link(BOB, ALICE, false, 8, t0);
    hub.set_link(ALICE, BOB, true, 7, t0);
    assert!(!hub.is_linked(ALICE, BOB) && !hub.is_linked(BOB, ALICE), "the block stands");
    assert!(presence_events(&mut hub).is_empty(), "presence never flowed across the block");
    assert_eq!(hub.presence_seen_by(ALICE, BOB), Presence::Offline);
}

#[test]
fn a_login_that_read_its_contacts_before_a_change_gets_the_change() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[ALICE], t0);
    // Alice's login read "mutual with bob, version 1"; meanwhile bob blocked her (version 2),
    // and the hub heard of it before her login went live.
    hub.set_link(BOB, ALICE, false, 2, t0);
    login(&mut hub, 20, ALICE, "alice", 200, &[BOB], t0 + Duration::from_secs(1));
    assert!(!hub.is_linked(ALICE, BOB), "the newer change wins over the login's read");
    assert!(presence_events(&mut hub).is_empty(), "neither sees the other");
    // A minute later the change is forgotten: logins read storage after it anyway.
    hub.handle_timeout(t0 + Duration::from_secs(61));
    login(&mut hub, 30, CAROL, "carol", 300, &[], t0 + Duration::from_secs(61));
    assert!(!hub.is_linked(ALICE, BOB));
}

#[test]
fn one_sided_contact_rows_show_nothing() {
    // alice lists bob as accepted but bob does not list alice (e.g. bob blocked her).
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[], t0);
    login(&mut hub, 20, ALICE, "alice", 200, &[BOB], t0);
    assert!(presence_events(&mut hub).is_empty());
    assert!(hub.presence_snapshot(ALICE).is_empty());
    assert_eq!(hub.presence_seen_by(ALICE, BOB), Presence::Offline);
}

#[test]
fn silent_connections_expire_after_the_heartbeat_timeout() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[ALICE], t0);
    login(&mut hub, 20, ALICE, "alice", 200, &[BOB], t0);
    hub.drain_outputs();
    // Bob pings every 30 s; alice is silent.
    let mut now = t0;
    for _ in 0..4 {
        now += Duration::from_secs(15);
        hub.admit(ConnId(10), now).unwrap();
        hub.handle_timeout(now);
    }
    assert_eq!(closes(&mut hub), vec![(20, EndReason::HeartbeatTimeout)]);
    hub.disconnect(ConnId(20));
    assert_eq!(presence_events(&mut hub), vec![(10, "alice".into(), Presence::Offline)]);
    // Hours later, bob still pinging, nothing else happens.
    for _ in 0..1000 {
        now += Duration::from_secs(30);
        hub.admit(ConnId(10), now).unwrap();
        hub.handle_timeout(now);
    }
    assert!(hub.drain_outputs().is_empty());
}

#[test]
fn unauthenticated_connections_get_a_login_deadline() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    hub.connect(ConnId(1), t0);
    // Activity does not extend the login deadline.
    for s in 1..10 {
        hub.admit(ConnId(1), t0 + Duration::from_secs(s)).unwrap();
        hub.handle_timeout(t0 + Duration::from_secs(s));
    }
    assert!(closes(&mut hub).is_empty());
    hub.handle_timeout(t0 + Duration::from_secs(11));
    assert_eq!(closes(&mut hub), vec![(1, EndReason::LoginTimeout)]);
}

#[test]
fn request_floods_are_limited_then_disconnected() {
    let t0 = Instant::now();
    let cfg = HubConfig::default();
    let burst = cfg.request_burst as usize;
    let mut hub = Hub::new(cfg.clone(), t0);
    hub.connect(ConnId(1), t0);
    for _ in 0..burst {
        hub.admit(ConnId(1), t0).unwrap();
    }
    let err = hub.admit(ConnId(1), t0).unwrap_err();
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert!(err.retry_after_secs.is_some());
    for _ in 0..cfg.max_violations {
        let _ = hub.admit(ConnId(1), t0);
    }
    assert_eq!(closes(&mut hub), vec![(1, EndReason::ProtocolViolation)]);
    // After a second the bucket refills for a well-behaved connection.
    hub.connect(ConnId(2), t0);
    for _ in 0..burst {
        hub.admit(ConnId(2), t0).unwrap();
    }
    assert!(hub.admit(ConnId(2), t0 + Duration::from_secs(1)).is_ok());
}

#[test]
fn contact_requests_are_limited_per_day() {
    let t0 = Instant::now();
    let cfg = HubConfig { contact_requests_per_day: 3.0, ..HubConfig::default() };
    let mut hub = Hub::new(cfg, t0);
    for _ in 0..3 {
        hub.admit_contact_request(ALICE, t0).unwrap();
    }
    assert_eq!(
        hub.admit_contact_request(ALICE, t0).unwrap_err().code,
        ErrorCode::ContactRequestLimit
    );
    assert!(hub.admit_contact_request(BOB, t0).is_ok());
    assert!(hub.admit_contact_request(ALICE, t0 + Duration::from_secs(86_400 / 3 + 1)).is_ok());
}

#[test]
fn searches_are_limited_per_connection() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    hub.connect(ConnId(1), t0);
    let mut ok = 0;
    while hub.admit_search(ConnId(1), t0).is_ok() {
        ok += 1;
        assert!(ok < 100);
    }
    assert_eq!(ok, 5);
    assert!(hub.admit_search(ConnId(1), t0 + Duration::from_secs(2)).is_ok());
}

#[test]
fn login_throttle_applies_through_the_hub() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    let ip: IpAddr = "198.51.100.4".parse().unwrap();
    for _ in 0..5 {
        hub.begin_password("alice", None, ip, t0).unwrap();
        hub.end_password("alice", None, ip, false, t0);
    }
    let refused = hub.begin_password("alice", None, ip, t0).unwrap_err();
    assert_eq!(refused.code, ErrorCode::LoginThrottled);
    // Token logins from the same address are not held by password failures.
    hub.check_token(ip, t0).unwrap();
}

#[test]
fn one_source_has_at_most_two_hashes_in_flight() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    let ip: IpAddr = "2001:db8:5::1".parse().unwrap();
    let same_64: IpAddr = "2001:db8:5::2".parse().unwrap();
    hub.begin_password("u1", None, ip, t0).unwrap();
    hub.begin_password("u2", None, same_64, t0).unwrap();
    let third = hub.begin_password("u3", None, ip, t0).unwrap_err();
    assert_eq!((third.code, third.retry_after_secs), (ErrorCode::RateLimited, Some(1)));
    // Another source is not affected; a finished hash frees a slot.
    hub.begin_password("u3", None, "2001:db8:6::1".parse().unwrap(), t0).unwrap();
    hub.end_password("u1", None, ip, true, t0);
    hub.begin_password("u3", None, ip, t0).unwrap();
}

#[test]
fn successful_password_logins_are_rate_limited_per_account() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    let mut ok = 0;
    for i in 0..100u32 {
        let ip: IpAddr = format!("10.4.0.{i}").parse().unwrap();
        match hub.begin_password("alice", None, ip, t0) {
            Ok(()) => {
                hub.end_password("alice", None, ip, true, t0);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                break;
            }
        }
    }
    assert_eq!(ok, 10, "a burst of ten, then one a minute");
    let ip: IpAddr = "10.4.1.1".parse().unwrap();
    hub.begin_password("alice", None, ip, t0 + Duration::from_secs(61)).unwrap();
}

#[test]
fn device_removal_and_password_change_close_the_right_connections() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 1, ALICE, "alice", 11, &[], t0);
    login(&mut hub, 2, ALICE, "alice", 12, &[], t0);
    login(&mut hub, 3, ALICE, "alice", 13, &[], t0);
    hub.drain_outputs();
    hub.close_device(ALICE, 12, EndReason::DeviceRemoved);
    assert_eq!(closes(&mut hub), vec![(2, EndReason::DeviceRemoved)]);
    hub.close_user_except(ALICE, ConnId(1), EndReason::PasswordChanged);
    // conn 2 is already closing: not closed twice.
    assert_eq!(closes(&mut hub), vec![(3, EndReason::PasswordChanged)]);
}

#[test]
fn shutdown_closes_everyone_once() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    hub.connect(ConnId(1), t0);
    login(&mut hub, 2, ALICE, "alice", 11, &[], t0);
    hub.drain_outputs();
    hub.close_all(EndReason::Shutdown);
    hub.close_all(EndReason::Shutdown);
    assert_eq!(closes(&mut hub), vec![(1, EndReason::Shutdown), (2, EndReason::Shutdown)]);
}

#[test]
fn many_users_fan_out_only_to_contacts() {
    // 1000 users in a ring of contacts; each change reaches exactly two neighbours.
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    let n = 1000i64;
    for u in 0..n {
        let mutual = [(u + 1) % n, (u + n - 1) % n];
        login(&mut hub, u as u64, u, &format!("u{u}"), u, &mutual, t0);
    }
    hub.drain_outputs();
    hub.set_status(500, Status::Busy);
    let mut ev = presence_events(&mut hub);
    ev.sort_by_key(|(c, u, _)| (*c, u.clone()));
    assert_eq!(
        ev,
        vec![(499, "u500".into(), Presence::Busy), (501, "u500".into(), Presence::Busy)]
    );
}

#[test]
fn registrations_are_limited_per_address() {
    let t0 = Instant::now();
    let cfg = HubConfig { registrations_per_hour: 2.0, ..HubConfig::default() };
    let mut hub = Hub::new(cfg, t0);
    let a: IpAddr = "203.0.113.5".parse().unwrap();
    let b: IpAddr = "203.0.113.6".parse().unwrap();
    hub.admit_registration(a, t0).unwrap();
    hub.admit_registration(a, t0).unwrap();
    assert_eq!(hub.admit_registration(a, t0).unwrap_err().code, ErrorCode::RateLimited);
    hub.admit_registration(b, t0).unwrap();
    assert!(hub.admit_registration(a, t0 + Duration::from_secs(1801)).is_ok());
}

#[test]
fn admission_control_refuses_logins_past_the_rate_and_says_when_to_come_back() {
    let t0 = Instant::now();
    let config = HubConfig { logins_per_sec: 10.0, login_burst: 3.0, ..HubConfig::default() };
    let mut hub = Hub::new(config, t0);
    for _ in 0..3 {
        assert!(hub.admit_login(t0).is_ok(), "the burst is admitted");
    }
    let wait = hub.admit_login(t0).unwrap_err();
    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
    assert!(hub.admit_login(t0 + wait).is_ok(), "admitted again once the bucket refilled");
    // Ten a second, sustained: a second later ten more are admitted, not more.
    let t1 = t0 + Duration::from_secs(1) + wait;
    let admitted = (0..20).filter(|_| hub.admit_login(t1).is_ok()).count();
    assert_eq!(admitted, 3, "refills up to the burst only");
}

#[test]
fn one_account_cannot_hold_more_than_its_share_of_connections() {
    let t0 = Instant::now();
    let config = HubConfig {
        max_connections_per_user: 4,
        max_connections_per_device: 2,
        ..HubConfig::default()
    };
    let mut hub = Hub::new(config, t0);
    let login = |device| OnlineLogin {
        user_id: 1,
        username: "mallory".into(),
        device_id: device,
        status: Status::Online,
        contacts: Vec::new(),
    };
    // Device 7 logs in three times: its oldest connection is closed.
    for c in 1..=3 {
        hub.connect(ConnId(c), t0);
        assert!(hub.login(ConnId(c), login(7), t0));
    }
    let closed = |hub: &mut Hub| -> Vec<ConnId> {
        hub.drain_outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Close { conn, reason: EndReason::TooManyConnections } => Some(conn),
                _ => None,
            })
            .collect()
    };
    assert_eq!(closed(&mut hub), vec![ConnId(1)]);
    // Three more devices: past four connections, the account's oldest go.
    for (c, device) in [(4, 8), (5, 9), (6, 10)] {
        hub.connect(ConnId(c), t0);
        assert!(hub.login(ConnId(c), login(device), t0));
    }
    assert_eq!(closed(&mut hub), vec![ConnId(2)]);
    assert_eq!(hub.user_conns(1).len(), 4);
}

#[test]
fn one_source_cannot_hold_more_than_its_share_of_connections_before_login() {
    let t0 = Instant::now();
    let config = HubConfig { max_pre_login_per_source: 3, ..HubConfig::default() };
    let mut hub = Hub::new(config, t0);
    let a: IpAddr = "2001:db8:7::1".parse().unwrap();
    let same_64: IpAddr = "2001:db8:7::99".parse().unwrap();
    for c in 1..=3 {
        assert!(hub.connect_from(ConnId(c), a, t0));
    }
    assert!(!hub.connect_from(ConnId(4), same_64, t0), "a fourth from the same /64 is refused");
    assert!(hub.connect_from(ConnId(5), "192.0.2.1".parse().unwrap(), t0));
    // Logging in or leaving frees a place.
    let login = OnlineLogin {
        user_id: 1,
        username: "alice".into(),
        device_id: 1,
        status: Status::Online,
        contacts: Vec::new(),
    };
    assert!(hub.login(ConnId(1), login, t0));
    hub.disconnect(ConnId(2));
    assert!(hub.connect_from(ConnId(6), a, t0));
    assert!(hub.connect_from(ConnId(7), a, t0));
    assert!(!hub.connect_from(ConnId(8), a, t0));
}

#[test]
fn a_quiet_login_shows_nothing_to_contacts_and_gets_no_events() {
    let t0 = Instant::now();
    let mut hub = Hub::new(HubConfig::default(), t0);
    login(&mut hub, 10, BOB, "bob", 100, &[ALICE], t0);
    // A one-shot command of alice's (`peerline send`, `contacts`…): logged in, not online.
    hub.connect(ConnId(20), t0);
    assert!(hub.login_quiet(ConnId(20), ALICE, 200, t0));
    assert_eq!(hub.login_of(ConnId(20)), Some((ALICE, 200)), "its requests act as alice");
    assert!(hub.is_quiet(ConnId(20)));
    assert!(!hub.is_online(ALICE), "alice is not online");
    hub.disconnect(ConnId(20));
    assert!(presence_events(&mut hub).is_empty(), "bob saw no online/offline flap");

    // Events to alice go to her online devices only.
    login(&mut hub, 30, ALICE, "alice", 201, &[BOB], t0);
    hub.connect(ConnId(31), t0);
    assert!(hub.login_quiet(ConnId(31), ALICE, 202, t0));
    hub.drain_outputs();
    hub.send_to_user(
        ALICE,
        Event::Presence { username: "x".into(), presence: Presence::Away },
        None,
    );
    let sent_to: Vec<u64> = presence_events(&mut hub).into_iter().map(|(c, _, _)| c).collect();
    assert_eq!(sent_to, vec![30], "the quiet connection gets nothing");
    // Removing the quiet device closes its connection like any other.
    hub.close_device(ALICE, 202, EndReason::DeviceRemoved);
    assert_eq!(closes(&mut hub), vec![(31, EndReason::DeviceRemoved)]);
}

#[test]
fn quiet_connections_are_capped_per_account() {
    let t0 = Instant::now();
    let config = HubConfig { max_connections_per_user: 3, ..HubConfig::default() };
    let mut hub = Hub::new(config, t0);
    for conn in 1..=5 {
        hub.connect(ConnId(conn), t0);
        assert!(hub.login_quiet(ConnId(conn), ALICE, 200, t0));
    }
    assert_eq!(
        closes(&mut hub),
        vec![(1, EndReason::TooManyConnections), (2, EndReason::TooManyConnections)],
        "the oldest quiet connections make room"
    );
}
