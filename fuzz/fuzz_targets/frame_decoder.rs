//! cargo-fuzz target `frame_decoder`: bytes as a WebSocket text frame to both frame decoders
//! (`peerline-wire`).
//!
//! The harness, and the checks it makes beyond "no panic": `peerline_fuzzing::frame_decoder`
//! (crates/fuzzing/src/frame_decoder.rs), which the stable smoke test
//! (crates/fuzzing/tests/smoke.rs) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peerline_fuzzing::frame_decoder(data));
