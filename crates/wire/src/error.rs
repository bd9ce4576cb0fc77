//! Typed protocol errors with stable codes. Clients and scripts match on `code`; `message` is for
//! people and may change.

use serde::{Deserialize, Serialize};

/// Stable error codes. The wire form is the snake_case name; new codes may be added, so clients
/// must treat an unknown code as a generic failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON or did not match the message's shape.
    BadRequest,
    /// The `type` field names no request this supernode knows.
    UnknownType,
    /// The client's protocol version is not supported.
    UnsupportedVersion,
    /// The first request was not `hello`, or `hello` came twice.
    HelloRequired,
    /// The frame was larger than 64 KiB.
    FrameTooLarge,
    /// Too many requests per second on this connection; retry later.
    RateLimited,
    /// Too many requests waiting for an answer on this connection.
    TooManyPending,
    /// The request needs a logged-in session.
    NotAuthenticated,
    /// `login` or `register` on a connection that is already logged in.
    AlreadyAuthenticated,
    /// Username is not 3-32 characters of `a-z 0-9 . _ -`.
    InvalidUsername,
    /// Display name is empty, longer than 64 characters or holds control characters.
    InvalidDisplayName,
    /// Password shorter than 8 characters (or longer than 1024 bytes).
    WeakPassword,
    /// The username is registered already (names are unique regardless of case).
    UsernameTaken,
    /// Wrong username or password. Deliberately the same for both.
    InvalidCredentials,
    /// Too many failed logins for this account or address; wait and retry.
    LoginThrottled,
    /// The session token is unknown, expired or revoked; log in with the password.
    InvalidToken,
    /// The device key signature over the server's nonce did not verify.
    InvalidDeviceSignature,
    /// No such user (only where revealing it is harmless, e.g. to an accepted contact).
    NoSuchUser,
    /// The operation needs an accepted contact.
    NotContact,
    /// There is no pending request from that user to accept or decline.
    NoPendingRequest,
    /// Already contacts, or a request is already pending.
    AlreadyContacts,
    /// A user cannot be their own contact.
    SelfContact,
    /// Too many contact requests sent in the last 24 hours.
    ContactRequestLimit,
    /// Message text is empty.
    EmptyMessage,
    /// Message text is larger than 4 KiB.
    MessageTooLong,
    /// Search query is shorter than 2 or longer than 64 characters.
    InvalidQuery,
    /// No device with that id on this account.
    NoSuchDevice,
    /// A value in the request is out of range (limit, ids list, ...).
    InvalidArgument,
    /// No ringing or answered call with that id that this device takes part in.
    NoSuchCall,
    /// A call id that is already in use.
    CallExists,
    /// Too many calls at once, or placed too fast; wait and retry.
    CallLimit,
    /// The callee is in another call; they get a missed-call notice.
    CalleeBusy,
    /// The callee has no device online; they get a missed-call notice.
    CalleeUnavailable,
    /// The supernode is shutting down; reconnect later.
    ShuttingDown,
    /// The supernode failed; the request may be retried.
    Internal,
    /// The supernode cannot reach its database or its cluster right now; nothing was changed.
    /// Retry after `retry_after_secs` seconds.
    Unavailable,
    /// The recipient has too much waiting for them (messages their devices have not received,
    /// or contact requests they have not answered); retry once they caught up.
    MailboxFull,
    /// The account has as many devices as it may; remove one (`peerline devices remove`) from
    /// a device that is logged in, then log in here again.
    TooManyDevices,
    /// A code this build does not know (from a newer supernode); treat as a generic failure.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The default human-readable text for this code.
    pub fn default_message(self) -> &'static str {
        match self {
            Self::BadRequest => "malformed request",
            Self::UnknownType => "unknown request type",
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::HelloRequired => "send hello first, exactly once",
            Self::FrameTooLarge => "frame larger than 64 KiB",
            Self::RateLimited => "too many requests, slow down",
            Self::TooManyPending => "too many requests in flight",
            Self::NotAuthenticated => "log in first",
            Self::AlreadyAuthenticated => "this connection is already logged in",
            Self::InvalidUsername => "username must be 3-32 characters of a-z 0-9 . _ -",
            Self::InvalidDisplayName => {
                "display name must be 1-64 characters without control characters"
            }
            Self::WeakPassword => "password must be at least 8 characters",
            Self::UsernameTaken => "username already taken",
            Self::InvalidCredentials => "wrong username or password",
            Self::LoginThrottled => "too many failed logins; wait and try again",
            Self::InvalidToken => "session expired or revoked; log in again with your password",
            Self::InvalidDeviceSignature => "device key signature did not verify",
            Self::NoSuchUser => "no such user",
            Self::NotContact => "not an accepted contact",
            Self::NoPendingRequest => "no pending contact request from that user",
            Self::AlreadyContacts => "already a contact or request pending",
            Self::SelfContact => "you cannot add yourself",
            Self::ContactRequestLimit => "too many contact requests today",
            Self::EmptyMessage => "message is empty",
            Self::MessageTooLong => "message longer than 4096 bytes",
            Self::InvalidQuery => "search query must be 2-64 characters",
            Self::NoSuchDevice => "no such device on this account",
            Self::InvalidArgument => "argument out of range",
            Self::NoSuchCall => "no such call (it ended, or another device answered it)",
            Self::CallExists => "a call with this id exists already",
            Self::CallLimit => "too many calls; wait and try again",
            Self::CalleeBusy => "the callee is in another call",
            Self::CalleeUnavailable => "the callee is not online; they will see a missed call",
            Self::ShuttingDown => "supernode is shutting down",
            Self::Internal => "internal error, try again",
            Self::Unavailable => "the supernode's storage is unavailable for a moment; try again",
            Self::MailboxFull => {
                "the recipient has too much waiting for them; try again once they caught up"
            }
            Self::TooManyDevices => {
                "this account has too many devices; remove one with `peerline devices remove` \
                 on a device that is logged in, then log in again"
            }
            Self::Unknown => "request failed",
        }
    }
}

/// An error as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// For throttling errors: seconds after which a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl ErrorBody {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        Self { code, message: code.default_message().to_owned(), retry_after_secs: None }
    }

    /// An error with a specific message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_secs: None }
    }
}

impl From<ErrorCode> for ErrorBody {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            self.message,
            serde_json::to_string(&self.code).unwrap_or_default().trim_matches('"')
        )
    }
}

impl std::error::Error for ErrorBody {}
