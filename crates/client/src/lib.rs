//! The Peerline client library: connects to a supernode over TLS WebSocket (pinning its
//! certificate on first use), logs in with a device key kept in the home directory, and offers
//! every request of the protocol as an async call plus a stream of pushed events.
//!
//! `connection` is the thin tokio driver around the sans-IO `peerline-client-core`; `client`
//! adds login, device keys and saved sessions; `reconnect` fails over to another supernode of
//! the network after a loss; `home` and `tls` keep the client's files and trust decisions.

pub mod client;
pub mod connection;
pub mod error;
pub mod home;
pub mod peer_keys;
pub mod reconnect;
pub mod tls;

pub use client::{Client, ConnectOptions};
pub use connection::Connection;
pub use error::ClientError;
pub use home::{Home, SavedNetwork, SavedSession, Settings};
pub use peerline_wire as wire;
pub use reconnect::Reconnected;
