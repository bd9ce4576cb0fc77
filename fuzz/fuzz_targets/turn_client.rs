//! cargo-fuzz target `turn_client`: a scripted TURN server against turn-client-proto's clients, as
//! the relay driver drives them.
//!
//! The harness, and the checks it makes beyond "no panic": `peerline_fuzzing::turn_client`
//! (crates/fuzzing/src/turn_client.rs), which the stable smoke test (crates/fuzzing/tests/smoke.rs)
//! runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerline_fuzzing::turn_client::{Script, play};

// Typed, as before the harness moved: libFuzzer rejects inputs that do not decode, and
// `cargo fuzz fmt` prints them. `peerline_fuzzing::turn_client` decodes the same way.
fuzz_target!(|input: Script| play(&input));
