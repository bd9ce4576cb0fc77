//! Smoke test of the fuzz harnesses over mutated seeds, on stable, in every `cargo nextest run`.
//!
//! Every harness of `peerline-fuzzing` gets its seed corpus (`fuzz/seeds/<target>/`; for
//! `frame_decoder` the JSON examples of `docs/protocol.md`, as `scripts/fuzz` extracts them; for
//! STUN, requests and answers made by `peerline-stun` itself; for the structured targets, which
//! have no seeds, pseudo-random bytes), then a fixed number of mutations of those seeds: bit
//! flips, special bytes, small arithmetic, inserted, deleted and duplicated runs, splices of two
//! seeds, tokens of the target's libFuzzer dictionary. The mutations come from a fixed-seed RNG,
//! so every run feeds exactly the same inputs, and the counts are fixed, not a time budget.
//!
//! This is not fuzzing: nothing is guided by coverage, no sanitizer runs, and a few thousand
//! inputs near the seeds reach far less than libFuzzer does in minutes. It catches a harness, or
//! a parser under it, that breaks on ordinary and slightly damaged input, without the nightly
//! sanitizer build. Real fuzzing: `scripts/fuzz` (see fuzz/README.md).
//!
//! A failure names the target, the RNG seed and case, and prints the input in hex; write it to a
//! file (`xxd -r -p`) to replay it through the libFuzzer binary. `PEERLINE_SMOKE_MUTATIONS=N`
//! runs N mutations per target instead of the default, `PEERLINE_SMOKE_SEED=S` another stream.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use peerline_stun::client::binding_request;
use peerline_stun::{Responder, ResponderConfig};

/// One harness and how to feed it.
struct Target {
    name: &'static str,
    harness: fn(&[u8]),
    /// The `-max_len` `scripts/fuzz` gives libFuzzer for this target: mutants are cut to it.
    max_len: usize,
    /// The libFuzzer dictionary `scripts/fuzz` uses for it, in `fuzz/dict/`.
    dict: Option<&'static str>,
    /// Mutations fed after the seeds: a few seconds of the debug build each.
    mutations: usize,
}

#[test]
fn frame_decoder_survives_mutated_seeds() {
    let target = Target {
        name: "frame_decoder",
        harness: peerline_fuzzing::frame_decoder,
        max_len: 70_000,
        dict: None,
        mutations: 20_000,
    };
    smoke(&target, protocol_doc_examples());
}

#[test]
fn call_sdp_survives_mutated_seeds() {
    let target = Target {
        name: "call_sdp",
        harness: peerline_fuzzing::call_sdp,
        max_len: 9000,
        dict: Some("sdp.dict"),
        mutations: 1500,
    };
    smoke(&target, seed_files("call_sdp"));
}

#[test]
fn call_candidate_survives_mutated_seeds() {
    let target = Target {
        name: "call_candidate",
        harness: peerline_fuzzing::call_candidate,
        max_len: 4096,
        dict: Some("sdp.dict"),
        mutations: 1500,
    };
    smoke(&target, seed_files("call_candidate"));
}

#[test]
fn turn_client_survives_mutated_seeds() {
    let target = Target {
        name: "turn_client",
        harness: peerline_fuzzing::turn_client,
        max_len: 4096,
        dict: None,
        mutations: 20_000,
    };
    smoke(&target, random_seeds(&target));
}

#[test]
fn store_records_survives_mutated_seeds() {
    let target = Target {
        name: "store_records",
        harness: peerline_fuzzing::store_records,
        max_len: 4096,
        dict: None,
        mutations: 1500,
    };
    smoke(&target, random_seeds(&target));
}

#[test]
fn home_files_survives_mutated_seeds() {
    let target = Target {
        name: "home_files",
        harness: peerline_fuzzing::home_files,
        max_len: 16_384,
        dict: Some("home.dict"),
        mutations: 5000,
    };
    smoke(&target, seed_files("home_files"));
}

#[test]
fn stun_responder_survives_mutated_seeds() {
    let target = Target {
        name: "stun_responder",
        harness: peerline_fuzzing::stun_responder,
        max_len: 600,
        dict: None,
        mutations: 50_000,
    };
    // The selector byte picks each source address once; then a Binding request.
    let seeds = (0..4u8)
        .map(|selector| {
            let mut seed = vec![selector];
            seed.extend_from_slice(&binding_request(&[selector; 12]));
            seed
        })
        .collect();
    smoke(&target, seeds);
}

#[test]
fn stun_client_survives_mutated_seeds() {
    let target = Target {
        name: "stun_client",
        harness: peerline_fuzzing::stun_client,
        max_len: 600,
        dict: None,
        mutations: 50_000,
    };
    // The transaction id, then the responder's real answer to it, for an IPv4 and an IPv6 source.
    let mut responder = Responder::new(&ResponderConfig::default());
    let mut seeds = Vec::new();
    for (tid, source) in [([2u8; 12], "192.0.2.7:4000"), ([5u8; 12], "[2001:db8::7]:4000")] {
        let source = source.parse().unwrap_or_else(|e| panic!("{source}: {e}"));
        let mut answer = Vec::new();
        let outcome = responder.handle(&binding_request(&tid), source, Instant::now(), &mut answer);
        assert!(outcome.has_response(), "the responder did not answer a Binding request");
        let mut seed = tid.to_vec();
        seed.extend_from_slice(&answer);
        seeds.push(seed);
    }
    smoke(&target, seeds);
}

/// Feeds the seeds, then the mutations, through the harness; fails on the first input that
/// makes it panic.
fn smoke(target: &Target, seeds: Vec<Vec<u8>>) {
    assert!(!seeds.is_empty(), "{}: no seeds", target.name);
    let dict = target.dict.map(dictionary).unwrap_or_default();
    let seed = rng_seed(target.name);
    let mutations = std::env::var("PEERLINE_SMOKE_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(target.mutations);
    let mut rng = SplitMix64(seed);
    let started = Instant::now();

    for (i, input) in seeds.iter().enumerate() {
        feed(target, input, seed, &format!("seed {i}"));
    }
    for case in 0..mutations {
        let mut input = pick(&mut rng, &seeds).clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut input, &seeds, &dict);
        }
        input.truncate(target.max_len);
        feed(target, &input, seed, &format!("mutation {case}"));
    }
    println!(
        "{}: {} seeds and {mutations} mutations (RNG seed {seed:#018x}) in {:.1?}",
        target.name,
        seeds.len(),
        started.elapsed()
    );
}

fn feed(target: &Target, input: &[u8], seed: u64, case: &str) {
    if catch_unwind(AssertUnwindSafe(|| (target.harness)(input))).is_err() {
        let mut hex = String::with_capacity(input.len() * 2);
        for byte in input {
            let _ = write!(hex, "{byte:02x}");
        }
        panic!(
            "{name}: {case} (RNG seed {seed:#018x}) failed a check (see the panic above).\n\
             The input, {len} bytes, in hex:\n{hex}\n\
             Replay it on stable: `peerline_fuzzing::{name}(&bytes)` in a test; under libFuzzer: \
             `xxd -r -p crash.hex crash`, then `scripts/fuzz` builds the target and \
             `<crate>/target/x86_64-unknown-linux-gnu/release/{name} crash` runs it. Keep it as a \
             regular test in the crate with the bug.",
            name = target.name,
            len = input.len(),
        );
    }
}

/// The RNG seed of a target: fixed (from its name), or `PEERLINE_SMOKE_SEED` mixed with the name.
fn rng_seed(name: &str) -> u64 {
    let base = std::env::var("PEERLINE_SMOKE_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x5045_4552_4c49_4e45); // "PEERLINE"
    // FNV-1a over the name, so each target gets its own stream.
    name.bytes()
        .fold(base ^ 0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, and the same stream on every platform
/// and every version of every crate.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len())]
}

/// Bytes that often sit on a boundary of a parser: limits, signs, separators, quotes.
const SPECIAL: [u8; 14] =
    [0, 1, 0x7f, 0x80, 0xff, 0xfe, b'\n', b'\r', b' ', b':', b'"', b'0', b'9', b'-'];

/// One mutation, in place.
fn mutate(rng: &mut SplitMix64, input: &mut Vec<u8>, seeds: &[Vec<u8>], dict: &[Vec<u8>]) {
    let len = input.len();
    let kinds = if dict.is_empty() { 7 } else { 8 };
    match rng.below(kinds) {
        // Flip one bit.
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        // A special byte.
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = *pick(rng, &SPECIAL);
        }
        // Small arithmetic on a byte (lengths, counts, ports).
        2 if len > 0 => {
            let at = rng.below(len);
            let delta = rng.below(35) as u8;
            input[at] = if rng.below(2) == 0 {
                input[at].wrapping_add(delta)
            } else {
                input[at].wrapping_sub(delta)
            };
        }
        // Delete a run.
        3 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(16)).min(len);
            input.drain(at..end);
        }
        // Duplicate a run somewhere else.
        4 if len > 0 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(32)).min(len);
            let run = input[at..end].to_vec();
            let to = rng.below(len + 1);
            input.splice(to..to, run);
        }
        // Splice: this input's start, another seed's end.
        5 => {
            let other = pick(rng, seeds);
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        // A dictionary token.
        7 => {
            let token = pick(rng, dict).clone();
            let to = rng.below(len + 1);
            input.splice(to..to, token);
        }
        // Random bytes inserted (also what an empty input gets).
        _ => {
            let to = rng.below(len + 1);
            let bytes: Vec<u8> = (0..=rng.below(8)).map(|_| rng.byte()).collect();
            input.splice(to..to, bytes);
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The files of `fuzz/seeds/<target>/`, in name order.
fn seed_files(target: &str) -> Vec<Vec<u8>> {
    let dir = repo_root().join("fuzz/seeds").join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// The JSON examples of docs/protocol.md, cut out as `scripts/fuzz` does: the lines between a
/// line "```json" and the next line "```", each ending in a newline.
fn protocol_doc_examples() -> Vec<Vec<u8>> {
    let path = repo_root().join("docs/protocol.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut examples = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (line, current.as_mut()) {
            ("```json", _) => current = Some(String::new()),
            ("```", Some(_)) => examples.extend(current.take().map(String::into_bytes)),
            (_, Some(text)) => {
                text.push_str(line);
                text.push('\n');
            }
            (_, None) => {}
        }
    }
    examples
}

/// Pseudo-random byte strings from the target's own RNG stream, for the structured targets: their
/// inputs are `arbitrary` encodings, which have no hand-written seeds. In most of them, 7 bytes
/// in 8 are odd: `arbitrary` reads a bool (the low bit of a byte) before each element of a `Vec`
/// and stops at the first false one, so uniform bytes make scripts of about one step and tables
/// of about one row, and mostly odd ones make scripts of 5 to 15 steps and tables full of rows.
fn random_seeds(target: &Target) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64(!rng_seed(target.name));
    let shapes =
        [(64, false), (1024, false), (512, true), (2048, true), (4096, true), (4096, true)];
    shapes
        .into_iter()
        .map(|(len, mostly_odd): (usize, bool)| {
            (0..len.min(target.max_len))
                .map(|_| {
                    let byte = rng.byte();
                    if mostly_odd && rng.below(8) != 0 { byte | 1 } else { byte }
                })
                .collect()
        })
        .collect()
}

/// The tokens of a libFuzzer dictionary in `fuzz/dict/`: one quoted string a line (optionally
/// `name="..."`), with `\\`, `\"` and `\xNN` escapes; `#` starts a comment line.
fn dictionary(file: &str) -> Vec<Vec<u8>> {
    let path = repo_root().join("fuzz/dict").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tokens = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (Some(open), Some(close)) = (line.find('"'), line.rfind('"')) else { continue };
        let Some(quoted) = line.get(open + 1..close) else { continue };
        let mut token = Vec::new();
        let mut bytes = quoted.bytes();
        while let Some(b) = bytes.next() {
            if b != b'\\' {
                token.push(b);
                continue;
            }
            match bytes.next() {
                Some(b'x') => {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    let value =
                        std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                    token.push(value.unwrap_or_else(|| panic!("{file}: bad escape in {line}")));
                }
                Some(other) => token.push(other),
                None => panic!("{file}: {line} ends in a backslash"),
            }
        }
        tokens.push(token);
    }
    assert!(!tokens.is_empty(), "{file}: no tokens");
    tokens
}
