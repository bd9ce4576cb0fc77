//! What can go wrong on the client side, with messages that say what to do about it.

use std::path::PathBuf;

use peerline_wire::{EndReason, ErrorBody, ErrorCode};

use crate::home::HomeError;
use crate::tls::TlsSetupError;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The supernode URL is not `wss://host:port` (or `ws://` on loopback).
    #[error("invalid supernode URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// TCP connect failed.
    #[error("cannot reach the supernode at {addr}: {source} (is it running? check --supernode)")]
    Connect {
        /// host:port.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The certificate is not the pinned one.
    #[error(
        "the certificate of supernode {host_port} has CHANGED.\n  pinned:    {pinned}\n  presented: {presented}\n\
         This can mean someone is intercepting the connection. If the operator really replaced the \
         certificate, compare the new fingerprint with the one the supernode printed at start, then \
         run `peerline trust --forget` (it forgets the pin of this supernode's network, kept in \
         {known_file}) and connect again."
    )]
    CertificateChanged {
        /// host:port of the supernode.
        host_port: String,
        /// Pinned fingerprint.
        pinned: String,
        /// Presented fingerprint.
        presented: String,
        /// The file that keeps the pin (`networks.json` in the home).
        known_file: PathBuf,
    },
    /// TLS failed for another reason.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// host:port.
        addr: String,
        /// What rustls said.
        reason: String,
    },
    /// WebSocket upgrade or transport error.
    #[error("WebSocket error talking to the supernode: {0}")]
    WebSocket(String),
    /// The supernode answered with an error (with when to try again, if it said).
    #[error("{}", describe_server(.0))]
    Server(ErrorBody),
    /// No answer in time.
    #[error("the supernode did not answer in time")]
    TimedOut,
    /// The connection closed.
    #[error("connection to the supernode closed{}", .0.map(|r| format!(": {}", describe_end(r))).unwrap_or_default())]
    Closed(Option<EndReason>),
    /// No saved session for this supernode, or the saved one was just refused (and forgotten).
    #[error("{}", describe_not_logged_in(url, rejected.as_deref()))]
    NotLoggedIn {
        /// The supernode.
        url: String,
        /// The account whose saved session the supernode refused as unknown (it expired, was
        /// revoked, or the network's database was reset), if that is why.
        rejected: Option<String>,
    },
    /// Home directory trouble.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// TLS configuration trouble.
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    /// The supernode answered with a reply of the wrong kind.
    #[error("unexpected reply from the supernode: {0}")]
    UnexpectedReply(String),
    /// Too many requests in flight.
    #[error("too many requests in flight")]
    Busy,
}

/// Why the supernode ended a session, in words (and, where the session is void, what to do).
pub fn describe_end(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Shutdown => "the supernode is shutting down",
        EndReason::DeviceRemoved => {
            "this device was removed from the account; log in again with the password"
        }
        EndReason::LoggedOut => "this session was logged out; log in again with the password",
        EndReason::HeartbeatTimeout => "the supernode heard nothing from this client in time",
        EndReason::SlowReader => "this client read too slowly",
        EndReason::ProtocolViolation => "this client broke the protocol",
        EndReason::PasswordChanged => {
            "the password was changed on another device; log in again with the new password"
        }
        EndReason::LoginTimeout => "this client did not log in in time",
        EndReason::TooManyConnections => {
            "this account opened too many connections to the supernode; the oldest are closed"
        }
    }
}

/// The supernode's error as the user reads it: its message and code, then when to try again
/// if it said (throttled logins, rate limits, a full or stopping supernode).
fn describe_server(body: &ErrorBody) -> String {
    match body.retry_after_secs {
        Some(secs) => format!("{body}; try again in {secs} s"),
        None => body.to_string(),
    }
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server(body) => Some(body.code),
            _ => None,
        }
    }
}

/// Why there is no session, and what to run: a refused session says so, since the user did
/// log in before and would otherwise not know why that no longer holds.
fn describe_not_logged_in(url: &str, rejected: Option<&str>) -> String {
    match rejected {
        Some(user) => format!(
            "{url} no longer accepts the saved session of {user} (it expired, the device was \
             removed, or the network's accounts were reset); run `peerline login {user}`"
        ),
        None => format!("not logged in to {url}; run `peerline login USERNAME` first"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_when_to_try_again() {
        let mut body = ErrorBody::new(ErrorCode::LoginThrottled);
        body.retry_after_secs = Some(42);
        let text = ClientError::Server(body).to_string();
        assert!(text.contains("login_throttled") && text.ends_with("try again in 42 s"), "{text}");
        let full = ErrorBody::with_message(ErrorCode::ShuttingDown, "supernode is full, try later");
        assert_eq!(
            ClientError::Server(full).to_string(),
            "supernode is full, try later (shutting_down)"
        );
    }

    #[test]
    fn a_closed_session_says_why() {
        let text = ClientError::Closed(Some(EndReason::DeviceRemoved)).to_string();
        assert!(text.contains("this device was removed"), "{text}");
        assert_eq!(ClientError::Closed(None).to_string(), "connection to the supernode closed");
    }
}
