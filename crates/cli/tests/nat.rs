//! Calls across real Linux NATs (network namespaces, `crates/testkit/src/netlab.rs`): the
//! supernode and a coturn relay on public addresses, clients on public addresses or behind home
//! routers, symmetric NATs and a network that lets only TCP 443 out. Every call must carry tones
//! both ways and take the path it should: direct (hole punching through server-reflexive
//! candidates from the supernode's STUN responder) wherever a direct path exists, through the
//! TURN relay wherever none does, never through the supernode.
//!
//! Needs root, iproute2 and iptables; fails (never skips) without them. Runs in the `netlab`
//! nextest group, one test at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use peerline_media::audio::read_wav;
use peerline_media::tone::{ToneCriteria, analyze_tone};
use peerline_media::{SAMPLE_RATE, write_tone_wav};
use peerline_testkit::RelayLab;
use peerline_testkit::netlab::{Host, Lab, NatKind};
use peerline_testkit::{Supernode, User};
use serde_json::Value;

fn lab() -> Lab {
    Lab::new().unwrap_or_else(|e| panic!("cannot build the NAT lab: {e:#}"))
}

/// What a test call looks like: its length, extra flags for each side, something to do once
/// audio flows, and how much of the tone each side must hear.
struct TestCall<'a> {
    secs: u32,
    alice_flags: &'a [&'a str],
    bob_flags: &'a [&'a str],
    /// Runs once the caller hears the callee (e.g. change the network).
    during: Box<dyn FnOnce() + 'a>,
    /// `PEERLINE_LOG` for bob's side (its stderr is returned).
    bob_log: Option<&'a str>,
    max_gap: Duration,
    min_fraction: f64,
}

impl<'a> TestCall<'a> {
    /// A clean call: gaps of at most 300 ms, the tone in 95 % of it.
    fn clean(secs: u32) -> Self {
        TestCall {
            secs,
            alice_flags: &[],
            bob_flags: &[],
            during: Box::new(|| {}),
            bob_log: None,
            max_gap: Duration::from_millis(300),
            min_fraction: 0.95,
        }
    }
}

/// What both ends of a test call printed.
struct Ended {
    alice: Value,
    bob: Value,
    alice_lines: Vec<Value>,
    bob_stderr: String,
}

/// `alice` (in `a`) calls `bob` (in `b`); checks that both heard the other's tone to the end
/// and returns what both printed.
fn call_with(node: &Supernode, a: &Host, b: &Host, test: TestCall<'_>) -> Ended {
    let secs = test.secs;
    let mut bob = User::new_in("bob", node, b);
    if let Some(filter) = test.bob_log {
        bob = bob.with_env("PEERLINE_LOG", filter);
    }
    let alice = User::new_in("alice", node, a);
    alice.register();
    bob.register();
    alice.befriend(&bob);
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    write_tone_wav(p("440.wav"), 440.0, 2.0).unwrap();
    write_tone_wav(p("660.wav"), 660.0, 2.0).unwrap();
    let mut online = vec!["--auto-answer", "--play"];
    let (bob_play, bob_record) = (p("660.wav"), p("bob_heard.wav"));
    online.extend([bob_play.as_str(), "--record", bob_record.as_str()]);
    online.extend(test.bob_flags);
    let mut answering = bob.online_with(&online);
    let (alice_play, alice_record, duration) =
        (p("440.wav"), p("alice_heard.wav"), secs.to_string());
    let mut args = vec!["call", "bob", "--play", &alice_play, "--record", &alice_record];
    args.extend(["--duration", duration.as_str()]);
    args.extend(test.alice_flags);
    let mut call = alice.start(&args);
    call.expect(|v| v["event"] == "first_audio", "the caller's first audio");
    (test.during)();
    let (code, stderr) = call.wait(Duration::from_secs(u64::from(secs) + 40));
    assert_eq!(code, Some(0), "the call failed: {stderr}\n{:#?}\n{}", call.seen, node.log());
    let bob_ended = answering.expect(|v| v["event"] == "ended", "bob's end of the call");
    for (file, freq) in [("alice_heard.wav", 660.0), ("bob_heard.wav", 440.0)] {
        let r =
            analyze_tone(&read_wav(p(file)).unwrap(), SAMPLE_RATE, freq, &ToneCriteria::default());
        println!("{file}: longest gap {:?}, tone in {:.3}", r.longest_gap, r.tone_fraction());
        assert!(r.tone_windows >= 20, "{file}: the tone in only {} windows", r.tone_windows);
        assert!(r.longest_gap <= test.max_gap, "{file}: gap {:?}", r.longest_gap);
        assert!(r.tone_fraction() >= test.min_fraction, "{file}: {:.3}", r.tone_fraction());
        let last = r.last_tone.unwrap_or_default();
        assert!(
            last + Duration::from_secs(2) >= Duration::from_secs(u64::from(secs)),
            "{file}: the tone stopped at {last:?} of a {secs} s call"
        );
    }
    let alice_ended = call.seen.iter().find(|v| v["event"] == "ended").cloned().unwrap();
    let bob_stderr = answering.stop();
    Ended {
        alice: alice_ended,
        bob: bob_ended,
        alice_lines: std::mem::take(&mut call.seen),
        bob_stderr,
    }
}

/// `caller` (in `a`) calls `callee` (in `b`); returns the caller's `ended` line after checking
/// that both heard the other's tone.
fn call_between(node: &Supernode, a: &Host, b: &Host, secs: u32) -> Value {
    call_with(node, a, b, TestCall::clean(secs)).alice
}

#[test]
fn two_home_routers_connect_directly_by_hole_punching() {
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let a = lab.natted_host("a", NatKind::HomeRouter).unwrap();
    let b = lab.natted_host("b", NatKind::HomeRouter).unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let ended = call_between(&node, &a, &b, 3);
    let path = &ended["path"];
    assert_eq!(path["kind"], "direct", "{ended:#}");
    // The peer is reached at its router's public address: a server-reflexive (or, learned
    // from its checks, peer-reflexive) candidate, never the private 10.x address.
    assert!(
        path["remote"].as_str().unwrap().starts_with("203.0.113."),
        "the path must go through the peer's public mapping: {ended:#}"
    );
    assert!(matches!(path["remote_type"].as_str(), Some("srflx" | "prflx")), "{ended:#}");
}

#[test]
fn a_public_host_and_a_home_router_connect_directly() {
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let a = lab.public_host("a").unwrap();
    let b = lab.natted_host("b", NatKind::HomeRouter).unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let ended = call_between(&node, &a, &b, 3);
    assert_eq!(ended["path"]["kind"], "direct", "{ended:#}");
    assert_eq!(ended["path"]["local_type"], "host", "{ended:#}");
}

/// The routers forget idle UDP mappings after 20 s; ICE consent checks (RFC 7675) and the audio
/// itself must keep them open for a 3-minute call.
#[test]
fn a_long_call_keeps_its_nat_mappings_open() {
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let (a, router_a) = lab.natted_host_with_router("a", NatKind::HomeRouter).unwrap();
    let (b, router_b) = lab.natted_host_with_router("b", NatKind::HomeRouter).unwrap();
    router_a.set_udp_timeout(20).unwrap();
    router_b.set_udp_timeout(20).unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let ended = call_between(&node, &a, &b, 180);
    assert_eq!(ended["path"]["kind"], "direct", "{ended:#}");
    assert_eq!(ended["reason"], "hung_up_here", "{ended:#}");
}

/// Whether the issue expects a relay between these two networks: a symmetric NAT facing a
/// filtering one (home router or symmetric), or the UDP-blocked network on either side.
fn needs_relay(a: Option<NatKind>, b: Option<NatKind>) -> bool {
    use NatKind::*;
    let filtering = |k: Option<NatKind>| matches!(k, Some(HomeRouter | Symmetric));
    let blocked = |k: Option<NatKind>| k == Some(UdpBlocked);
    blocked(a)
        || blocked(b)
        || (a == Some(Symmetric) && filtering(b))
        || (b == Some(Symmetric) && filtering(a))
}

/// One cell of the NAT matrix: a 5-second call from `a` to `b`, tones both ways, path checked
/// on both ends. Prints a `MATRIX` line with the setup time for docs/nat.md.
fn matrix_call(a: Option<NatKind>, b: Option<NatKind>) {
    let lab = RelayLab::new(a, b).unwrap_or_else(|e| panic!("cannot build the NAT lab: {e:#}"));
    let Ended { alice, bob, .. } = call_with(&lab.node, &lab.a, &lab.b, TestCall::clean(5));
    let relayed = needs_relay(a, b);
    let want = if relayed { "relay" } else { "direct" };
    for (who, kind, ended) in [("alice", a, &alice), ("bob", b, &bob)] {
        let path = &ended["path"];
        assert_eq!(path["kind"], want, "{who} ({}): {ended:#}", NatKind::name(kind));
        // Nothing but the peers and the relay carries media: never the supernode.
        for end in ["local", "remote"] {
            let addr = path[end].as_str().unwrap();
            assert!(!addr.starts_with(&format!("{}:", lab.node.addr.split(':').next().unwrap())));
        }
        if kind == Some(NatKind::UdpBlocked) {
            // Only TCP 443 gets out: this side's relay leg must be TURN over TLS on 443.
            assert_eq!(path["local_type"], "relay", "{who}: {ended:#}");
            assert_eq!(path["transport"], "tls", "{who}: {ended:#}");
            assert_eq!(path["relay_server"], format!("{}:443", lab.relay_host.ip), "{ended:#}");
        }
        if relayed {
            let relay_ip = format!("{}:", lab.relay_host.ip);
            let through_relay = [&path["local"], &path["remote"]]
                .iter()
                .any(|v| v.as_str().unwrap().starts_with(&relay_ip));
            assert!(through_relay, "{who}: a relayed path must use the relay: {ended:#}");
        }
    }
    println!(
        "MATRIX {} -> {}: {} (caller {} / callee {}), dial->connected {} ms",
        NatKind::name(a),
        NatKind::name(b),
        want,
        alice["path"]["transport"],
        bob["path"]["transport"],
        alice["dial_to_connected_ms"]
    );
}

mod matrix {
    use super::*;

    macro_rules! cell {
        ($name:ident, $a:expr, $b:expr) => {
            #[test]
            fn $name() {
                matrix_call($a, $b);
            }
        };
    }

    const P: Option<NatKind> = None;
    const H: Option<NatKind> = Some(NatKind::HomeRouter);
    const S: Option<NatKind> = Some(NatKind::Symmetric);
    const B: Option<NatKind> = Some(NatKind::UdpBlocked);

    cell!(public_to_public, P, P);
    cell!(public_to_home_router, P, H);
    cell!(public_to_symmetric, P, S);
    cell!(public_to_udp_blocked, P, B);
    cell!(home_router_to_home_router, H, H);
    cell!(home_router_to_symmetric, H, S);
    cell!(home_router_to_udp_blocked, H, B);
    cell!(symmetric_to_symmetric, S, S);
    cell!(symmetric_to_udp_blocked, S, B);
    cell!(udp_blocked_to_udp_blocked, B, B);
}

/// `relay_only` (like Signal's "always relay calls"): two home routers that could connect
/// directly still talk through the relay, and bob never learns an address of alice's: every
/// candidate he receives (in his debug log) is a relay's.
#[test]
fn relay_only_hides_the_callers_address() {
    let lab = RelayLab::new(Some(NatKind::HomeRouter), Some(NatKind::HomeRouter))
        .unwrap_or_else(|e| panic!("cannot build the NAT lab: {e:#}"));
    let test = TestCall {
        alice_flags: &["--relay-only"],
        bob_log: Some("peerline_media::call=debug"),
        ..TestCall::clean(3)
    };
    let Ended { alice, bob, bob_stderr, .. } = call_with(&lab.node, &lab.a, &lab.b, test);
    assert_eq!(alice["path"]["local_type"], "relay", "{alice:#}");
    assert_eq!(alice["path"]["kind"], "relay", "{alice:#}");
    let relay_ip = format!("{}:", lab.relay_host.ip);
    assert!(bob["path"]["remote"].as_str().unwrap().starts_with(&relay_ip), "{bob:#}");
    assert_eq!(bob["path"]["remote_type"], "relay", "{bob:#}");
    let received: Vec<&str> =
        bob_stderr.lines().filter(|l| l.contains("remote candidate")).collect();
    assert!(!received.is_empty(), "bob's log shows no remote candidate:\n{bob_stderr}");
    let alice_public = &lab.a_router.as_ref().unwrap().public_ip;
    for line in &received {
        assert!(line.contains("typ relay"), "bob received a non-relay candidate: {line}");
        for ip in [alice_public.as_str(), lab.a.ip.as_str()] {
            assert!(!line.contains(ip), "bob learned alice's address {ip}: {line}");
        }
    }
}

/// Path change: one side's router gets a new public address in the middle of a call (its old
/// mappings and its supernode connection die with it). Both sides notice that nothing arrives,
/// the moved side reconnects to the supernode and takes the call over, the caller restarts ICE
/// (asked by the callee if it is the callee that moved), the moved side gathers fresh
/// candidates, and audio resumes within 5 s, without redialing.
fn path_change(caller_moves: bool) {
    let mut lab = lab();
    let srv = lab.public_host("srv").unwrap();
    let (a, router_a) = lab.natted_host_with_router("a", NatKind::HomeRouter).unwrap();
    let (b, router_b) = lab.natted_host_with_router("b", NatKind::HomeRouter).unwrap();
    let node = Supernode::start_in(&srv, &[]).unwrap();
    let moved = if caller_moves { router_a } else { router_b };
    let test = TestCall {
        during: Box::new(move || {
            std::thread::sleep(Duration::from_secs(5));
            moved.change_public_address("203.0.113.200").unwrap();
        }),
        // Audio may stop for the time it takes to notice (2 s) and to restart, at most 5 s.
        max_gap: Duration::from_secs(5),
        min_fraction: 0.6,
        ..TestCall::clean(20)
    };
    let Ended { alice: alice_ended, bob: bob_ended, alice_lines, .. } =
        call_with(&node, &a, &b, test);
    assert!(
        alice_lines.iter().any(|v| v["event"] == "ice_restart"),
        "the caller never reported a restart: {alice_lines:#?}"
    );
    // The other side now reaches the moved one at its new public address, directly: only an
    // ICE restart with fresh candidates gets there.
    let other_end = if caller_moves { &bob_ended } else { &alice_ended };
    assert_eq!(other_end["path"]["kind"], "direct", "{other_end:#}");
    assert!(
        other_end["path"]["remote"].as_str().unwrap().starts_with("203.0.113.200:"),
        "{other_end:#}\nalice: {alice_lines:#?}"
    );
}

#[test]
fn audio_resumes_after_the_callers_nat_changes_address() {
    path_change(true);
}

#[test]
fn audio_resumes_after_the_callees_nat_changes_address() {
    path_change(false);
}
