//! Call setup time per NAT pair, and the relay's CPU per relayed call, in the NAT lab (real
//! binaries, real coturn, real Linux NAT; needs root like `tests/nat.rs`).
//!
//! `cargo build --release --bins && cargo bench -p peerline-cli --bench nat_setup` (`cargo bench`
//! builds this program, not the `peerline` and `peerline-supernode` binaries it runs). For each pair of network kinds: 20 calls of two
//! seconds, dial → connected p50/p95 from `peerline call --json`. For the relayed pairs, one
//! 20-second call while coturn's CPU time is read from /proc. Figures go to docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use peerline_testkit::netlab::NatKind;
use peerline_testkit::{RelayLab, User};

const CALLS: usize = 20;

/// CPU seconds (user + system) a process used so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), counted from after the name (field 3 is index 0).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    peerline_media::write_tone_wav(&wav, 440.0, 2.0).unwrap();
    let wav = wav.to_str().unwrap().to_owned();
    let kinds = NatKind::ALL;
    println!("| caller | callee | path | dial→connected p50 | p95 | relay CPU per call |");
    println!("|---|---|---|---|---|---|");
    for (i, &a) in kinds.iter().enumerate() {
        for &b in &kinds[i..] {
            // 21 calls in a row from one user: above the default invite rate limit.
            let lab = RelayLab::with_config(a, b, "[calls]\ninvites_per_minute = 600.0\n")
                .expect("the NAT lab (run as root after scripts/setup)");
            let (alice, bob) =
                (User::new_in("alice", &lab.node, &lab.a), User::new_in("bob", &lab.node, &lab.b));
            alice.register();
            bob.register();
            alice.befriend(&bob);
            let (alice_heard, bob_heard) =
                (dir.path().join("alice.wav"), dir.path().join("bob.wav"));
            let (alice_heard, bob_heard) =
                (alice_heard.to_str().unwrap(), bob_heard.to_str().unwrap());
            let mut answering =
                bob.online_with(&["--auto-answer", "--play", &wav, "--record", bob_heard]);
            let call = |secs: &str| {
                let mut call = alice.start(&[
                    "call",
                    "bob",
                    "--play",
                    &wav,
                    "--record",
                    alice_heard,
                    "--duration",
                    secs,
                ]);
                let (code, stderr) = call.wait(Duration::from_secs(60));
                assert_eq!(code, Some(0), "{stderr}\n{:#?}", call.seen);
                call.seen.iter().find(|v| v["event"] == "ended").cloned().unwrap()
            };
            let mut setup = Vec::new();
            let mut kind = String::new();
            for _ in 0..CALLS {
                let ended = call("2");
                setup.push(ended["dial_to_connected_ms"].as_u64().unwrap());
                kind = format!(
                    "{} ({})",
                    ended["path"]["kind"].as_str().unwrap(),
                    ended["path"]["transport"].as_str().unwrap()
                );
                answering.expect(|v| v["event"] == "ended", "bob's end of the call");
            }
            setup.sort_unstable();
            let relay_cpu = if kind.starts_with("relay") {
                let before = (cpu_secs(lab.relay.pid()), Instant::now());
                call("20");
                answering.expect(|v| v["event"] == "ended", "bob's end of the call");
                let used = cpu_secs(lab.relay.pid()) - before.0;
                let secs = before.1.elapsed().as_secs_f64();
                format!("{:.2} % of a core", 100.0 * used / secs)
            } else {
                "-".to_owned()
            };
            println!(
                "| {} | {} | {kind} | {} ms | {} ms | {relay_cpu} |",
                NatKind::name(a),
                NatKind::name(b),
                percentile(&setup, 50.0),
                percentile(&setup, 95.0)
            );
        }
    }
}
