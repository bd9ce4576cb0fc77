//! Fuzz harness: arbitrary text as ICE candidates trickled by the peer (`call_candidate`), one per
//! line, through the supernode's check (`validate_candidate`) and into a negotiated callee's
//! media (`CallMedia::add_remote_candidate`), whose ICE agent then runs for a simulated second.
//!
//! Beyond "no panic", it checks:
//! - the supernode's check says what it promises (at most 512 bytes, printable ASCII, a
//!   `candidate:` attribute);
//! - a candidate the media accepts is one str0m parses, and it survives its own SDP form
//!   unchanged (what we trickle on is what we were given);
//! - a refused candidate is `MediaError::BadCandidate`;
//! - ICE sends only from our own candidates, and only to addresses the peer named in its offer or
//!   its candidates (a peer cannot make us send elsewhere).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use peerline_media::{CallMedia, Input, LocalCandidate, MediaConfig, MediaError, Output, Role};
use peerline_wire::calls::{MAX_CANDIDATE_BYTES, validate_candidate};
use str0m::Candidate;

/// More lines than this are not looked at: each one costs ICE work, and a few reach every path.
const MAX_LINES: usize = 16;

const LOCAL: [&str; 2] = ["10.0.0.1:5000", "[2001:db8::1]:5000"];

/// The caller's offer every callee accepts: made once (a certificate costs time), with one host
/// candidate of its own.
fn offer() -> &'static (String, SocketAddr) {
    static OFFER: OnceLock<(String, SocketAddr)> = OnceLock::new();
    OFFER.get_or_init(|| {
        let addr: SocketAddr = "192.0.2.10:4000".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut caller = CallMedia::new(Role::Offerer, MediaConfig::default(), Instant::now())
            .unwrap_or_else(|e| panic!("caller: {e}"));
        caller.add_local_candidate(LocalCandidate::Host(addr)).unwrap_or_else(|e| panic!("{e}"));
        (caller.create_offer().unwrap_or_else(|e| panic!("offer: {e}")), addr)
    })
}

fn check_supernode_view(line: &str) {
    if validate_candidate(line).is_ok() {
        assert!(line.len() <= MAX_CANDIDATE_BYTES);
        assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert!(line.strip_prefix("a=").unwrap_or(line).starts_with("candidate:"));
    }
}

/// The candidate str0m makes of an accepted line; it must read back from its own SDP form.
fn check_accepted(line: &str) -> SocketAddr {
    let trimmed = line.trim();
    let body = trimmed.strip_prefix("a=").unwrap_or(trimmed);
    let candidate = Candidate::from_sdp_string(body)
        .unwrap_or_else(|e| panic!("accepted a candidate str0m cannot parse: {e}"));
    let again = Candidate::from_sdp_string(&candidate.to_sdp_string())
        .unwrap_or_else(|e| panic!("{candidate:?} does not parse from its own SDP form: {e}"));
    assert_eq!(again, candidate, "candidate changed through its SDP form");
    candidate.addr()
}

/// Trickles the lines of one input as candidates to a negotiated callee and runs a simulated
/// second of ICE; panics when a check fails.
pub fn call_candidate(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').take(MAX_LINES).collect();
    for line in &lines {
        check_supernode_view(line);
    }

    let (offer, caller_addr) = offer();
    let mut now = Instant::now();
    let Ok(mut callee) = CallMedia::new(Role::Answerer, MediaConfig::default(), now) else {
        return;
    };
    if let Err(e) = callee.accept_offer(offer) {
        panic!("the callee refused a real offer: {e}");
    }
    let local: Vec<SocketAddr> = LOCAL.iter().filter_map(|a| a.parse().ok()).collect();
    for addr in &local {
        if let Err(e) = callee.add_local_candidate(LocalCandidate::Host(*addr)) {
            panic!("local candidate {addr}: {e}");
        }
    }

    let mut named: HashSet<SocketAddr> = HashSet::from([*caller_addr]);
    for line in &lines {
        match callee.add_remote_candidate(line) {
            Ok(()) => {
                named.insert(check_accepted(line));
            }
            Err(MediaError::BadCandidate(_)) => {}
            Err(other) => panic!("a bad candidate gave {other:?}, not BadCandidate"),
        }
    }

    // A simulated second of ICE: connectivity checks go out to the candidates.
    for _ in 0..20 {
        now += Duration::from_millis(50);
        let _ = callee.handle_input(now, Input::Timeout);
        loop {
            match callee.poll_output() {
                Output::Transmit { source, destination, .. } => {
                    assert!(local.contains(&source), "sent from {source}, not our candidate");
                    assert!(named.contains(&destination), "sent to {destination}, never named");
                }
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
    }
}
