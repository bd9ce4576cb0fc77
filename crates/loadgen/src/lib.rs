//! The Peerline load generator as a library. The `peerline-loadgen` binary is a thin command line
//! over these modules; tests and benchmarks use them directly.
//!
//! - [`light`]: the light protocol client — one user staying online as the real client does
//!   (client-core's handshake, session and failover policy), cheap enough for thousands per
//!   process; [`crowd`] runs many and keeps the timeline of what happened to them.
//! - [`storm`]: a reconnect storm read off that timeline (`peerline-loadgen storm`), with
//!   [`plot`] for its recovery curve as a PNG.
//! - [`run`]: many users logged in from several worker processes and held with heartbeats and
//!   background activity, with HDR latency histograms of every request kind.
//! - [`stun`]: Binding requests at a target rate against any STUN server on this machine.
//! - [`seed`]: many users at once, straight into a cluster's PostgreSQL, for storms and holds.
//! - [`provision`]: users with 20 accepted contacts each, through `peerline-supernode import`.
//! - [`register`], [`login`], [`hold`], [`calls`]: the other subcommands; [`dial`] is the small
//!   protocol client the first three share.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod calls;
pub mod crowd;
pub mod dial;
pub mod hold;
pub mod latency;
pub mod light;
pub mod login;
pub mod plot;
pub mod procfs;
pub mod provision;
pub mod register;
pub mod roster;
pub mod run;
pub mod seed;
pub mod source_addrs;
pub mod state_file;
pub mod storm;
pub mod stun;
pub mod workers;
