//! `peerline-loadgen stun` against a real supernode's STUN responder: every Binding request of a
//! small run is answered with the address of the socket that sent it. Counts only, never timings
//! (benchmarks measure speed; see scripts/bench-stun).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::{Duration, Instant};

use peerline_testkit::Supernode;
use serde_json::Value;

/// The supernode's STUN address, from the line its responder logs at start (the test kit starts
/// it on port 0).
fn stun_addr(node: &Supernode) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = node.log();
        let found = log.lines().find_map(|line| {
            let (_, rest) = line.split_once("STUN responder listening addr=")?;
            Some(rest.split_whitespace().next()?.to_owned())
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(Instant::now() < deadline, "the supernode never logged its STUN address:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_binding_request_is_answered_with_the_senders_address() {
    let node = Supernode::start().unwrap();
    let server = stun_addr(&node);
    // 2,000 requests from 100 sockets on 100 source addresses: 20 per source, half the
    // responder's per-source burst, so its rate limits (kept at their defaults) refuse none.
    let out = Command::new(env!("CARGO_BIN_EXE_peerline-loadgen"))
        .args(["--json", "stun", "--server", &server, "--rate", "1000", "--duration", "2"])
        .args(["--sockets", "100", "--source-ips", "127.0.9.1-127.0.9.100", "--drain", "5"])
        .output()
        .expect("running peerline-loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts = ["sent", "answered", "lost", "wrong", "unmatched", "socket_errors"]
        .map(|k| report[k].as_u64().unwrap_or(u64::MAX));
    assert_eq!(counts, [2_000, 2_000, 0, 0, 0, 0], "{report}");
    assert!(report["latency"]["p50_ms"].is_number(), "{report}");
}

#[test]
fn a_server_that_is_not_there_loses_every_request() {
    // A port nobody listens on: each request is lost (ICMP port unreachable comes back as a
    // socket error), none is counted as answered.
    let idle = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = idle.local_addr().unwrap().to_string();
    drop(idle);
    let out = Command::new(env!("CARGO_BIN_EXE_peerline-loadgen"))
        .args(["--json", "stun", "--server", &server, "--rate", "200", "--duration", "0.5"])
        .args(["--sockets", "2", "--source-ips", "127.0.9.1-127.0.9.2", "--drain", "0.2"])
        .output()
        .expect("running peerline-loadgen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["answered"], 0, "{report}");
    assert_eq!(report["lost"], report["sent"], "{report}");
    assert!(report["sent"].as_u64().unwrap() > 0, "{report}");
}
