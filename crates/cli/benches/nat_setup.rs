//! Call setup time per NAT pair, and the relay's CPU per relayed call, in the NAT lab (real
//! binaries, real coturn, real Linux NAT; needs root like `tests/nat.rs`).
//!
//! `cargo bench -p peerline-cli --bench nat_setup` (release binaries are built by `cargo bench`;
//! run `cargo build --release --bins` first). For each pair of network kinds: 20 calls of two
//! seconds, dial → connected p50/p95 from `peerline call --json`. For the relayed pairs, one
//! 20-second call while coturn's CPU time is read from /proc. Figures go to docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::{Duration, Instant};

use peerline_media::{AudioSink, AudioSource, ToneSource, WavSink};
use peerline_testkit::netlab::NatKind;
use peerline_testkit::{RelayLab, User};

const CALLS: usize = 20;

fn tone_wav(path: &Path, freq: f64) {
    let mut source = ToneSource::new(freq);
    let mut sink = WavSink::create(path).unwrap();
    for _ in 0..100 {
        sink.write_frame(&source.next_frame().unwrap()).unwrap();
    }
    sink.finish().unwrap();
}

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
    tone_wav(&wav, 440.0);
    let wav = wav.to_str().unwrap().to_owned();
    let kinds = NatKind::ALL;
    println!("| caller | callee | path | dial→connected p50 | p95 | relay CPU per call |");
    println!("|---|---|---|---|---|---|");
    for (i, &a) in kinds.iter().enumerate() {
        for &b in &kinds[i..] {
            let lab = RelayLab::new(a, b).expect("the NAT lab (run as root after scripts/setup)");
            let (alice, bob) =
                (User::new_in("alice", &lab.node, &lab.a), User::new_in("bob", &lab.node, &lab.b));
            alice.register();
            bob.register();
            alice.ok(&["contacts", "add", "bob"]);
            bob.ok(&["contacts", "accept", "alice"]);
            let heard = dir.path().join("heard.wav");
            let heard = heard.to_str().unwrap().to_owned();
            let mut answering =
                bob.online_with(&["--auto-answer", "--play", &wav, "--record", &heard]);
            let call = |secs: &str| {
                let mut call = alice.start(&[
                    "call",
                    "bob",
                    "--play",
                    &wav,
                    "--record",
                    &heard,
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
