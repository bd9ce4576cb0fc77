//! The Peerline supernode: a TLS WebSocket server that lets users find one another — accounts,
//! contacts, presence, directory search and instant messages — and nothing more. Calls never
//! pass through it.
//!
//! `server` binds and serves, `connection` runs one client socket, `session` and `cmd/` answer
//! requests, `state` holds what they share. The protocol logic that needs no IO lives in
//! `peerline-supernode-core`; durable state behind `peerline-store`.

pub mod accept;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod data_dir;
pub mod metrics;
pub mod passwords;
pub mod process_metrics;
pub mod proxy;
pub mod server;
pub mod session;
pub mod state;
pub mod tls;
pub mod web;

pub use config::Config;
pub use server::Supernode;
