//! The Peerline supernode protocol: every message a client and a supernode exchange, the rules that
//! names and texts must follow, and the codec that turns WebSocket text frames into typed messages.
//!
//! This crate is the single source of truth for the protocol; `docs/protocol.md` documents it and a
//! test checks that every example there parses with these types.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod calls;
pub mod codec;
pub mod error;
pub mod messages;
pub mod validate;

pub use calls::{CallEndReason, CallId, DeviceKey, MissedCall, SdpRole, call_signature_payload};
pub use codec::{DecodeError, decode_client_frame, decode_server_frame, encode};
pub use error::{ErrorBody, ErrorCode};
pub use messages::*;

/// The protocol version this build speaks. A client announces it in `hello`; a supernode refuses
/// versions it does not know with `unsupported_version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest WebSocket message either side accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Largest instant message text, in bytes of UTF-8.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Most results a directory search returns.
pub const MAX_SEARCH_RESULTS: usize = 20;

/// The WebSocket path a supernode serves clients on.
pub const WS_PATH: &str = "/v1/ws";
