//! cargo-fuzz target `store_records`: rows of any SQLite type in a tampered supernode database,
//! read back through the `Store` API.
//!
//! The harness, and the checks it makes beyond "no panic": `peerline_fuzzing::store_records`
//! (crates/fuzzing/src/store_records.rs), which the stable smoke test
//! (crates/fuzzing/tests/smoke.rs) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peerline_fuzzing::store_records::{Input, fill_and_read};

// Typed, as before the harness moved: libFuzzer rejects inputs that do not decode, and
// `cargo fuzz fmt` prints them. `peerline_fuzzing::store_records` decodes the same way.
fuzz_target!(|input: Input| fill_and_read(&input));
