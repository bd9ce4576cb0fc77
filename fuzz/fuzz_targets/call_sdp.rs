//! cargo-fuzz target `call_sdp`: text as the peer's SDP offer or answer, through the supernode's
//! checks, the identity check and `CallMedia`.
//!
//! The harness, and the checks it makes beyond "no panic": `peerline_fuzzing::call_sdp`
//! (crates/fuzzing/src/call_sdp.rs), which the stable smoke test (crates/fuzzing/tests/smoke.rs)
//! runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peerline_fuzzing::call_sdp(data));
