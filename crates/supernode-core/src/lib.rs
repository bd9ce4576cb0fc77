//! The supernode's protocol logic, free of IO: which connection belongs to which user, who sees
//! whose presence, when a silent connection is dropped, and how much any one connection, account
//! or address may ask for.
//!
//! The tokio driver in `peerline-supernode` owns sockets and storage; it feeds this crate inputs
//! with the current time and sends out what [`Hub::poll_output`] returns. Nothing here reads a
//! clock, so tests fast-forward hours of heartbeats in microseconds.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod calls;
pub mod cluster;
pub mod contacts;
pub mod hub;
mod limits;
mod presence;
mod quiet;
pub mod rate;
pub mod throttle;

pub use calls::{CallAnswer, CallConfig, CallInvite, CallRecord, InviteRefused};
pub use cluster::{BusMessage, Route, coalesce};
pub use contacts::{ContactAction, Notice, Transition};
pub use hub::{ConnId, Hub, HubConfig, Link, LinkVersion, OnlineLogin, Output, UserId};
pub use rate::TokenBucket;
pub use throttle::{LoginThrottle, Source, ThrottleConfig};
