//! TURN credentials against a real coturn: what the supernode hands out opens an allocation and
//! relays data; expired or forged credentials do not; and the shipped `deploy/coturn` config
//! refuses to relay into loopback, link-local, private and special networks (SSRF), IPv4 and
//! IPv6 alike, IPv4-mapped IPv6 peers (`::ffff:127.0.0.1`) included, whichever way a client asks
//! (CreatePermission or ChannelBind), and even with `allow-loopback-peers` turned on.
//!
//! Needs coturn's `turnserver`, `turnutils_uclient` and `turnutils_peer` (`scripts/setup`
//! installs them) and IPv6 on loopback (`::1`); without them the tests fail and say so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::{TestNode, User};
use hmac::{Hmac, Mac};
use peerline_wire::{Reply, Request};
use sha1::Sha1;

const SECRET: &str = "test-secret-for-the-relay-0123456789";

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: install coturn (run scripts/setup, or apt-get install coturn)"
    );
}

/// A port free for both UDP and TCP right now on 127.0.0.1.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A port free for both UDP and TCP right now on 127.0.0.1 and on ::1.
fn free_port_v4_and_v6() -> u16 {
    require_ipv6_loopback();
    loop {
        let port = free_port();
        let free = |ip: &str| {
            std::net::UdpSocket::bind((ip, port)).is_ok()
                && std::net::TcpListener::bind((ip, port)).is_ok()
        };
        if free("::1") {
            return port;
        }
    }
}

fn require_ipv6_loopback() {
    assert!(
        std::net::UdpSocket::bind("[::1]:0").is_ok(),
        "IPv6 loopback (::1) is unavailable: enable IPv6 (sysctl -w net.ipv6.conf.lo.disable_ipv6=0)"
    );
}

/// Waits until `addr` accepts TCP connections and answers a STUN Binding over UDP. coturn
/// starts its UDP listeners and relay threads one after another, which took over 10 s once
/// while the whole suite ran on two cores: the wait is generous, and only a failure pays it.
fn wait_listening(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "turnserver did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // coturn opens its UDP listeners in other threads than the TCP one, and turnutils_uclient
    // does not retransmit its first Allocate: wait until a STUN Binding request over UDP is
    // answered too.
    let any: std::net::SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    } else {
        ([127, 0, 0, 1], 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut binding = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    binding.extend_from_slice(b"peerline-rdy");
    let mut buf = [0u8; 1500];
    loop {
        socket.send_to(&binding, addr).unwrap();
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && n >= 20
            && buf[8..20] == binding[8..20]
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "turnserver did not answer UDP on {addr}");
    }
}

/// Starts coturn on loopback with `args` and waits until it answers.
fn turnserver(port: u16, args: &[&str]) -> Running {
    require("turnserver");
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("turnserver")
        .args(args)
        .args(["--listening-ip=127.0.0.1", &format!("--listening-port={port}")])
        .args([&format!("--tls-listening-port={}", free_port()), "--no-tls", "--no-dtls"])
        .args([&format!("--static-auth-secret={SECRET}"), "--log-file=stdout"])
        .args(["--pidfile", log.path().with_extension("pid").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting turnserver");
    let running = Running(child);
    // Ready when it accepts a TCP connection on its port.
    wait_listening(([127, 0, 0, 1], port).into());
    running
}

/// Allocates on the relay with these credentials and sends a few packets to `peer`; returns
/// what the client printed.
fn allocate_and_send(
    port: u16,
    username: &str,
    password: &str,
    peer: &str,
    peer_port: u16,
) -> String {
    uclient("127.0.0.1", port, username, password, peer, peer_port, &[])
}

/// Runs `turnutils_uclient` against the relay at `server`:`port` with `flags` (`-x`: an IPv6
/// relay address; `-s`: CreatePermission and Send indications instead of ChannelBind; `-v`:
/// say what was allocated); returns what it printed.
fn uclient(
    server: &str,
    port: u16,
    username: &str,
    password: &str,
    peer: &str,
    peer_port: u16,
    flags: &[&str],
) -> String {
    require("turnutils_uclient");
    let output = Command::new("timeout")
        .args(["15", "turnutils_uclient", "-u", username, "-w", password])
        .args(flags)
        .args(["-p", &port.to_string(), "-e", peer, "-r", &peer_port.to_string()])
        .args(["-n", "5", "-m", "1", "-l", "100", server])
        .output()
        .expect("running turnutils_uclient");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn relayed(output: &str) -> bool {
    // The final report: every packet sent through the relay came back from the peer.
    let received = output
        .lines()
        .filter_map(|l| l.split("tot_recv_bytes ~ ").nth(1))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    received > 0
        && output.contains("Total lost packets 0")
        && !output.contains("Cannot complete Allocation")
}

fn refused(output: &str) -> bool {
    !relayed(output)
        && (output.contains("Cannot complete Allocation") || output.contains("401 (Unauthorized)"))
}

fn rest_credentials(user: &str, expiry: i64) -> (String, String) {
    let username = format!("{expiry}:{user}");
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    (username, base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supernode_credentials_open_a_relay_and_expired_or_forged_ones_do_not() {
    let port = free_port();
    // This relay may reach loopback: the test's peer lives there.
    let _relay = turnserver(
        port,
        &["-n", "--use-auth-secret", "--realm=peerline.test", "--allow-loopback-peers", "--no-cli"],
    );
    require("turnutils_peer");
    let peer_port = free_port();
    let _peer = Running(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting turnutils_peer"),
    );
    let url = format!("turn:127.0.0.1:{port}?transport=udp");
    let node = TestNode::start_with(&["alice"], |c| {
        c.turn.static_auth_secret = Some(SECRET.into());
        c.turn.urls = vec![url.clone()];
        c.turn.credential_lifetime_secs = 600;
    })
    .await;
    let alice = User::login(&node, "alice").await;
    let Reply::TurnCredentials { username, password, ttl_secs, urls } =
        alice.ok(Request::TurnCredentials).await
    else {
        panic!("not turn credentials");
    };
    assert_eq!((ttl_secs, urls), (600, vec![url]));
    let expiry: i64 = username.split(':').next().unwrap().parse().unwrap();
    assert!((expiry - now_secs() - 600).abs() <= 5, "expires in 10 minutes: {username}");
    assert!(username.ends_with(":alice"), "{username}");

    let (u, p) = (username.clone(), password.clone());
    let out = tokio::task::spawn_blocking(move || {
        allocate_and_send(port, &u, &p, "127.0.0.1", peer_port)
    })
    .await
    .unwrap();
    assert!(relayed(&out), "the supernode's credentials should relay:\n{out}");

    let (u, p) = rest_credentials("alice", now_secs() - 5);
    let out = tokio::task::spawn_blocking(move || {
        allocate_and_send(port, &u, &p, "127.0.0.1", peer_port)
    })
    .await
    .unwrap();
    assert!(refused(&out), "expired credentials must be refused:\n{out}");

    let (u, _) = rest_credentials("alice", now_secs() + 600);
    let forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned();
    let out = tokio::task::spawn_blocking(move || {
        allocate_and_send(port, &u, &forged, "127.0.0.1", peer_port)
    })
    .await
    .unwrap();
    assert!(refused(&out), "a forged password must be refused:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_relays_the_supernode_hands_out_nothing() {
    let node = TestNode::start(&["alice"]).await;
    let alice = User::login(&node, "alice").await;
    let reply = alice.ok(Request::TurnCredentials).await;
    assert_eq!(
        reply,
        Reply::TurnCredentials {
            username: String::new(),
            password: String::new(),
            ttl_secs: 0,
            urls: Vec::new()
        }
    );
}

#[test]
fn the_shipped_coturn_config_refuses_loopback_link_local_and_private_peers() {
    let config = shipped_config();
    let port = free_port();
    let _relay = turnserver(port, &["-c", config.to_str().unwrap()]);
    for (i, peer) in [
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
    ]
    .into_iter()
    .enumerate()
    {
        // One user per peer: allocations stay until they expire, and the config has a per-user
        // quota.
        let (u, p) = rest_credentials(&format!("user{i}"), now_secs() + 600);
        let out = allocate_and_send(port, &u, &p, peer, 9);
        assert!(
            out.contains("403 (Forbidden IP)"),
            "the shipped config must refuse relaying to {peer}:\n{out}"
        );
    }
}

/// Asks the relay on ::1 for an IPv6 allocation and for permission to reach `peer`, once by
/// ChannelBind and once by CreatePermission; asserts that the allocation succeeded and both were
/// refused with 403 (Forbidden IP). `user` must be fresh (the config has a per-user quota).
fn assert_ipv6_peer_refused(port: u16, user: &str, peer: &str) {
    for (method, flags, refusal) in [
        ("ChannelBind", &["-v", "-x"][..], "channel bind: error 403 (Forbidden IP)"),
        ("CreatePermission", &["-v", "-x", "-s"][..], "create permission error 403 (Forbidden IP)"),
    ] {
        let (u, p) = rest_credentials(&format!("{user}-{method}"), now_secs() + 600);
        let out = uclient("::1", port, &u, &p, peer, 9, flags);
        assert!(
            out.contains("IPv6. Received relay addr:"),
            "the relay should allocate an IPv6 address before refusing {peer}:\n{out}"
        );
        assert!(out.contains(refusal), "{method} to {peer} must be refused:\n{out}");
    }
}

fn shipped_config() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/coturn/turnserver.conf")
}

/// IPv6 peers, through an IPv6 allocation on ::1 (so that even a regression relays nothing off
/// this machine: the kernel does not send loopback-sourced packets out of other interfaces).
/// coturn's own loopback check misses `::ffff:127.0.0.1`; only the config's
/// `::ffff:0.0.0.0-::ffff:255.255.255.255` line refuses it.
#[test]
fn the_shipped_coturn_config_refuses_ipv6_and_ipv4_mapped_special_peers() {
    let port = free_port_v4_and_v6();
    let config = shipped_config();
    let _relay = turnserver(port, &["-c", config.to_str().unwrap(), "--listening-ip=::1"]);
    wait_listening((std::net::Ipv6Addr::LOCALHOST, port).into());
    for (i, peer) in [
        // Loopback, and the IPv4 loopback and metadata address written as IPv6 (IPv4-mapped,
        // IPv4-compatible, NAT64, 6to4): the classic ways around a filter of IPv4 literals.
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::1",
        "::",
        // IPv4-mapped private and carrier-grade NAT ranges.
        "::ffff:10.1.2.3",
        "::ffff:172.16.0.1",
        "::ffff:192.168.1.1",
        "::ffff:100.64.0.1",
        // IPv6 link-local, site-local, unique local, documentation and multicast.
        "fe80::1",
        "fec0::1",
        "fd12:3456:789a::1",
        "2001:db8::1",
        "3fff::1",
        "ff02::1",
    ]
    .into_iter()
    .enumerate()
    {
        assert_ipv6_peer_refused(port, &format!("v6user{i}"), peer);
    }
}

/// The config's own deny lines refuse loopback: it does not rest on coturn's default, which one
/// `allow-loopback-peers` line (a common debugging step) turns off.
#[test]
fn the_shipped_coturn_config_refuses_loopback_even_with_allow_loopback_peers() {
    let port = free_port_v4_and_v6();
    let config = shipped_config();
    let _relay = turnserver(
        port,
        &["-c", config.to_str().unwrap(), "--listening-ip=::1", "--allow-loopback-peers"],
    );
    wait_listening((std::net::Ipv6Addr::LOCALHOST, port).into());
    let (u, p) = rest_credentials("v4loop", now_secs() + 600);
    let out = allocate_and_send(port, &u, &p, "127.0.0.1", 9);
    assert!(out.contains("403 (Forbidden IP)"), "relaying to 127.0.0.1 must be refused:\n{out}");
    for (i, peer) in ["::1", "::ffff:127.0.0.1", "::127.0.0.1"].into_iter().enumerate() {
        assert_ipv6_peer_refused(port, &format!("loop{i}"), peer);
    }
}

/// `no-tcp-relay`: an allocation that would open TCP connections to peers (RFC 6062) is refused,
/// so the relay cannot carry a client to TCP services (ssh, HTTP, databases).
#[test]
fn the_shipped_coturn_config_refuses_tcp_relay_allocations() {
    let config = shipped_config();
    let port = free_port();
    let _relay = turnserver(port, &["-c", config.to_str().unwrap()]);
    let (u, p) = rest_credentials("tcp-relay", now_secs() + 600);
    // -T: TCP relay (implies a TCP connection to the relay and client-to-client peers).
    let out = uclient("127.0.0.1", port, &u, &p, "127.0.0.1", 9, &["-T"]);
    assert!(
        out.contains("error 442"),
        "a TCP allocation must be refused with 442 (Unsupported Transport Protocol):\n{out}"
    );
}

/// A user who asks again gets the same credentials (coturn's per-user quota then counts per
/// user, not per request), and one who asks too often is told when to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_credentials_keep_one_username_and_are_rate_limited_per_user() {
    let node = TestNode::start_with(&["alice", "bob"], |c| {
        c.turn.static_auth_secret = Some(SECRET.into());
        c.turn.urls = vec!["turn:relay.example.org:3478?transport=udp".into()];
        c.turn.credentials_per_minute = 3.0;
    })
    .await;
    let alice = User::login(&node, "alice").await;
    let first = alice.ok(Request::TurnCredentials).await;
    let Reply::TurnCredentials { username, .. } = &first else { panic!("{first:?}") };
    assert!(username.ends_with(":alice"), "{username}");
    for _ in 0..2 {
        let again = alice.ok(Request::TurnCredentials).await;
        let (
            Reply::TurnCredentials { username: u1, password: p1, .. },
            Reply::TurnCredentials { username: u2, password: p2, .. },
        ) = (&first, &again)
        else {
            panic!("{again:?}")
        };
        assert_eq!((u1, p1), (u2, p2), "the same credentials while most of their life is left");
    }
    let refused = alice.err(Request::TurnCredentials).await;
    assert_eq!(refused.code, peerline_wire::ErrorCode::RateLimited, "{refused:?}");
    let wait = refused.retry_after_secs.expect("says when to come back");
    assert!((1..=21).contains(&wait), "3 per minute: one every 20 s, not {wait}");

    let bob = User::login(&node, "bob").await;
    let Reply::TurnCredentials { username, .. } = bob.ok(Request::TurnCredentials).await else {
        panic!("not turn credentials");
    };
    assert!(username.ends_with(":bob"), "another user has a limit of their own: {username}");
    node.stop().await;
}
