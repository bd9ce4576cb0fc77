//! cargo-fuzz target `stun_responder`: UDP datagrams to the STUN responder.
//!
//! The harness, and the checks it makes beyond "no panic": `peerline_fuzzing::stun_responder`
//! (crates/fuzzing/src/stun_responder.rs), which the stable smoke test
//! (crates/fuzzing/tests/smoke.rs) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peerline_fuzzing::stun_responder(data));
