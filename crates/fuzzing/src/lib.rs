//! Fuzz harnesses for every parser of outside input: one function per fuzz target, taking the
//! input's bytes and panicking when a check fails (each checks more than "no panic": see its
//! module).
//!
//! Two callers run the same code:
//! - the cargo-fuzz targets (`fuzz/` and `crates/stun/fuzz/`, nightly, libFuzzer with
//!   AddressSanitizer), whose `fuzz_target!` only calls the function here; `scripts/fuzz` runs
//!   them;
//! - this crate's stable smoke test (`tests/smoke.rs`), which feeds every harness its seeds and a
//!   few thousand deterministic mutations of them on every `cargo nextest run`, so a harness or a
//!   parser that breaks is caught without the nightly sanitizer build.
//!
//! The STUN harnesses need only `peerline-stun`; the others sit behind one feature per group
//! (all on by default), so `crates/stun/fuzz` compiles nothing else.
#![deny(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "calls")]
pub mod call_candidate;
#[cfg(feature = "calls")]
pub mod call_sdp;
#[cfg(feature = "frames")]
pub mod frame_decoder;
#[cfg(feature = "home")]
pub mod home_files;
#[cfg(feature = "store")]
pub mod store_records;
pub mod stun_client;
pub mod stun_responder;
#[cfg(feature = "turn")]
pub mod turn_client;

#[cfg(feature = "calls")]
pub use call_candidate::call_candidate;
#[cfg(feature = "calls")]
pub use call_sdp::call_sdp;
#[cfg(feature = "frames")]
pub use frame_decoder::frame_decoder;
#[cfg(feature = "home")]
pub use home_files::home_files;
#[cfg(feature = "store")]
pub use store_records::store_records;
pub use stun_client::stun_client;
pub use stun_responder::stun_responder;
#[cfg(feature = "turn")]
pub use turn_client::turn_client;

/// Builds a structured input from raw bytes exactly as a typed `libfuzzer_sys::fuzz_target!`
/// does (libfuzzer-sys 0.4): too short for the type's minimum size, or not decodable, is no input.
#[cfg(any(feature = "turn", feature = "store"))]
fn structured<'a, T: arbitrary::Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    if data.len() < T::size_hint(0).0 {
        return None;
    }
    T::arbitrary_take_rest(arbitrary::Unstructured::new(data)).ok()
}
