//! cargo-fuzz target `call_candidate`: text lines as trickled ICE candidates, into a negotiated
//! callee's `CallMedia`.
//!
//! The harness, and the checks it makes beyond "no panic": `peerline_fuzzing::call_candidate`
//! (crates/fuzzing/src/call_candidate.rs), which the stable smoke test
//! (crates/fuzzing/tests/smoke.rs) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peerline_fuzzing::call_candidate(data));
