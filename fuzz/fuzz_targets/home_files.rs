//! cargo-fuzz target `home_files`: contents for the files of a client's home directory, then the
//! CLI's reads and updates.
//!
//! The harness, and the checks it makes beyond "no panic": `peerline_fuzzing::home_files`
//! (crates/fuzzing/src/home_files.rs), which the stable smoke test (crates/fuzzing/tests/smoke.rs)
//! runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| peerline_fuzzing::home_files(data));
