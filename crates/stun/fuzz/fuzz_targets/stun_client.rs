//! cargo-fuzz target `stun_client`: datagrams as the answer to the client's Binding request.
//!
//! The harness, and the checks it makes beyond "no panic": `peerline_fuzzing::stun_client`
//! (crates/fuzzing/src/stun_client.rs), which the stable smoke test (crates/fuzzing/tests/smoke.rs)
//! runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peerline_fuzzing::stun_client(data));
