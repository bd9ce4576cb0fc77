//! Every message of protocol version 1.
//!
//! A client sends [`ClientFrame`]s: a request id chosen by the client plus a [`Request`]. The
//! supernode answers each with a [`ServerFrame::Ok`] or [`ServerFrame::Error`] carrying the same id,
//! and pushes [`Event`]s at any time. All frames are JSON objects in WebSocket text messages.

use serde::{Deserialize, Serialize};

use crate::calls::{CallEndReason, CallId, DeviceKey, MissedCall};
use crate::error::ErrorBody;

mod debug;

/// Milliseconds since the Unix epoch, UTC.
pub type TimestampMs = i64;

/// A server-assigned message id; ids grow in the order messages were stored.
pub type MessageId = i64;

/// A server-assigned device id.
pub type DeviceId = i64;

/// A request from a client, with the id its answer will carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client, echoed in the answer. Unique among the client's pending requests.
    pub id: u64,
    /// The request itself; its `type` field names it.
    #[serde(flatten)]
    pub request: Request,
}

/// What a client can ask. The JSON form is an object whose `type` is the snake_case variant name.
// Debug is written out in `debug.rs`: it never shows passwords or tokens.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First request on every connection: protocol version negotiation.
    Hello {
        /// Must be [`crate::PROTOCOL_VERSION`].
        version: u32,
        /// Free-form client name and version, for logs.
        #[serde(default)]
        client: String,
    },
    /// Creates an account. Does not log in.
    Register {
        /// 3-32 of `a-z 0-9 . _ -`; upper case is folded to lower case.
        username: String,
        /// Up to 64 characters; defaults to the username.
        #[serde(default)]
        display_name: Option<String>,
        /// At least 8 characters.
        password: String,
    },
    /// Logs this connection in, with a password or a session token, and registers the device key.
    Login(Login),
    /// Revokes this device's session token and closes the connection.
    Logout,
    /// Changes the password; every other session token of the account is revoked.
    ChangePassword {
        /// The current password.
        old_password: String,
        /// The new password, at least 8 characters.
        new_password: String,
    },
    /// Who this session is.
    Whoami,
    /// Lists the account's devices.
    Devices,
    /// Revokes a device: its tokens are deleted and its connections closed.
    RemoveDevice {
        /// The device to remove.
        device_id: DeviceId,
    },
    /// Changes the profile.
    SetProfile {
        /// New display name.
        #[serde(default)]
        display_name: Option<String>,
        /// Whether directory search may find this account.
        #[serde(default)]
        discoverable: Option<bool>,
    },
    /// Directory search by username prefix or display-name substring.
    Search {
        /// 2-64 characters.
        query: String,
    },
    /// The contact list, with presence for accepted contacts, a page at a time.
    Contacts {
        /// Only entries whose username sorts after this one: the last username of the previous
        /// page, when that page said `more`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// Sends a contact authorization request.
    ContactAdd {
        /// Whom to add.
        username: String,
        /// A greeting shown with the request, up to 256 characters.
        #[serde(default)]
        message: Option<String>,
    },
    /// Accepts a pending incoming request.
    ContactAccept {
        /// The requester.
        username: String,
    },
    /// Declines a pending incoming request.
    ContactDecline {
        /// The requester.
        username: String,
    },
    /// Removes a contact (or cancels an outgoing request, or lifts a block).
    ContactRemove {
        /// The contact.
        username: String,
    },
    /// Blocks a user: no more requests or messages from them, and they see this user offline.
    ContactBlock {
        /// The user to block.
        username: String,
    },
    /// Sets this account's presence status.
    SetStatus {
        /// The new status.
        status: Status,
    },
    /// Sends an instant message to an accepted contact.
    SendMessage {
        /// Recipient username.
        to: String,
        /// 1-4096 bytes of UTF-8.
        text: String,
    },
    /// Acknowledges pushed messages as delivered to this device.
    AckDelivered {
        /// Ids from `message` events (at most 1000).
        ids: Vec<MessageId>,
    },
    /// Marks received messages as read; the senders get read receipts.
    MarkRead {
        /// Message ids (at most 1000).
        ids: Vec<MessageId>,
    },
    /// Received messages not yet marked read, oldest first.
    Inbox {
        /// At most this many (1-1000, default 100).
        #[serde(default)]
        limit: Option<u32>,
        /// Only messages with an id above this one: the last id of the previous page, when that
        /// page said `more`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<MessageId>,
    },
    /// The stored conversation with a user, oldest first.
    History {
        /// The other party.
        with: String,
        /// At most this many of the newest messages (1-1000, default 50).
        #[serde(default)]
        limit: Option<u32>,
        /// Only messages with an id below this one (paging backwards).
        #[serde(default)]
        before: Option<MessageId>,
    },
    /// Heartbeat. Any request counts as activity; idle clients send this.
    Ping,
    /// The public keys of an accepted contact's devices (or this account's own), to verify
    /// signed call fingerprints and compute safety numbers.
    DeviceKeys {
        /// The contact.
        username: String,
    },
    /// Calls an accepted contact: rings every online device of theirs. The SDP offer carries no
    /// addresses; candidates follow with `call_candidate` and reach the callee only once a
    /// device accepted.
    CallInvite {
        /// 32 lowercase hex characters chosen at random by the caller.
        call_id: CallId,
        /// The callee.
        to: String,
        /// The SDP offer (at most 8 KiB), without candidates.
        sdp: String,
        /// The device key's signature over [`crate::call_signature_payload`] of the offer's DTLS
        /// fingerprint, hex.
        fingerprint_signature: String,
    },
    /// A callee device tells the caller it is ringing.
    CallRinging {
        /// The call.
        call_id: CallId,
    },
    /// A callee device answers. The first accept wins; the other devices stop ringing.
    CallAccept {
        /// The call.
        call_id: CallId,
        /// The SDP answer (at most 8 KiB).
        sdp: String,
        /// Signature over the answer's DTLS fingerprint, as for `call_invite`.
        fingerprint_signature: String,
    },
    /// A callee device refuses the call (for every device), or with `busy` says only that this
    /// device cannot take it.
    CallDecline {
        /// The call.
        call_id: CallId,
        /// This device is busy: it stops ringing, the others keep ringing.
        #[serde(default)]
        busy: bool,
        /// Why this device cannot take the call (a reason for which
        /// [`CallEndReason::is_device_refusal`] holds, e.g. `no_audio_device`). Like `busy`,
        /// only this device stops ringing; the caller hears the reason when no device rings
        /// any more.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<CallEndReason>,
    },
    /// The caller gives up before an answer.
    CallCancel {
        /// The call.
        call_id: CallId,
    },
    /// Either side ends an answered call (a caller's hang-up while ringing cancels).
    CallHangup {
        /// The call.
        call_id: CallId,
    },
    /// A trickled ICE candidate for the other side of the call.
    CallCandidate {
        /// The call.
        call_id: CallId,
        /// An SDP `candidate:` attribute value (at most 512 bytes).
        candidate: String,
    },
    /// Restarts ICE on an answered call whose media path died (RFC 8445 §9): from the caller, an
    /// SDP offer with new ICE credentials; from the answering device, the answer to the latest
    /// such offer, or, without `sdp`, a request that the caller restart.
    CallRestart {
        /// The call.
        call_id: CallId,
        /// The restart offer (caller) or answer (callee); absent: "please restart" (callee).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp: Option<String>,
    },
    /// Takes over an answered call on this new connection after the device lost its previous
    /// one (its network changed mid-call). Only the same user's same device may.
    CallResume {
        /// The call.
        call_id: CallId,
    },
    /// Short-lived credentials for the TURN relays (used only when no direct path exists).
    TurnCredentials,
    /// Acknowledges pushed missed-call notices; they are not pushed again.
    AckMissedCalls {
        /// Ids from `missed_call` events (at most 1000).
        ids: Vec<i64>,
    },
    /// Adds a call that ended to this account's call log, as this device saw it (the supernode
    /// records calls that rang a user unanswered by itself). Idempotent per `call_id`.
    CallReport(CallReport),
    /// This account's call log, newest first.
    CallLog {
        /// Only incoming calls that were never answered.
        #[serde(default)]
        missed: bool,
        /// Only records with an id below this (the next page).
        #[serde(default)]
        before: Option<i64>,
        /// At most this many (1-1000, default 50).
        #[serde(default)]
        limit: Option<u32>,
    },
}

/// The `call_report` request: one call as the reporting device saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallReport {
    /// The call's id from `call_invite` or `call_incoming` (at most 64 characters).
    pub call_id: CallId,
    /// The other party's username.
    pub peer: String,
    /// Whether this account placed the call.
    pub outgoing: bool,
    /// When the call was placed or rang here (ms since the Unix epoch).
    pub started_at: TimestampMs,
    /// When it was answered; absent if it never was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<TimestampMs>,
    /// When it ended; not before `started_at`, nor after the supernode's clock.
    pub ended_at: TimestampMs,
    /// Why it ended: a `call_ended` reason, or `hung_up_here` (1-32 of `a-z _`).
    pub reason: String,
    /// The media path it took: `direct`, `relay` or `unknown` (absent if media never flowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One call in a call log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLogEntry {
    /// Record id, increasing; the paging key (`before`).
    pub id: i64,
    /// The call.
    pub call_id: CallId,
    /// The other party.
    pub peer: String,
    /// Whether this account placed the call.
    pub outgoing: bool,
    /// When it was placed (ms since the Unix epoch).
    pub started_at: TimestampMs,
    /// When it was answered; absent if it never was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<TimestampMs>,
    /// When it ended.
    pub ended_at: TimestampMs,
    /// Why it ended.
    pub reason: String,
    /// The media path, if the device reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Request {
    /// The wire name of this request's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Register { .. } => "register",
            Self::Login(_) => "login",
            Self::Logout => "logout",
            Self::ChangePassword { .. } => "change_password",
            Self::Whoami => "whoami",
            Self::Devices => "devices",
            Self::RemoveDevice { .. } => "remove_device",
            Self::SetProfile { .. } => "set_profile",
            Self::Search { .. } => "search",
            Self::Contacts { .. } => "contacts",
            Self::ContactAdd { .. } => "contact_add",
            Self::ContactAccept { .. } => "contact_accept",
            Self::ContactDecline { .. } => "contact_decline",
            Self::ContactRemove { .. } => "contact_remove",
            Self::ContactBlock { .. } => "contact_block",
            Self::SetStatus { .. } => "set_status",
            Self::SendMessage { .. } => "send_message",
            Self::AckDelivered { .. } => "ack_delivered",
            Self::MarkRead { .. } => "mark_read",
            Self::Inbox { .. } => "inbox",
            Self::History { .. } => "history",
            Self::Ping => "ping",
            Self::DeviceKeys { .. } => "device_keys",
            Self::CallInvite { .. } => "call_invite",
            Self::CallRinging { .. } => "call_ringing",
            Self::CallAccept { .. } => "call_accept",
            Self::CallDecline { .. } => "call_decline",
            Self::CallCancel { .. } => "call_cancel",
            Self::CallHangup { .. } => "call_hangup",
            Self::CallCandidate { .. } => "call_candidate",
            Self::CallRestart { .. } => "call_restart",
            Self::CallResume { .. } => "call_resume",
            Self::TurnCredentials => "turn_credentials",
            Self::AckMissedCalls { .. } => "ack_missed_calls",
            Self::CallReport(_) => "call_report",
            Self::CallLog { .. } => "call_log",
        }
    }
}

/// Every request `type` of this protocol version, for telling `unknown_type` from `bad_request`.
pub const REQUEST_TYPES: &[&str] = &[
    "hello",
    "register",
    "login",
    "logout",
    "change_password",
    "whoami",
    "devices",
    "remove_device",
    "set_profile",
    "search",
    "contacts",
    "contact_add",
    "contact_accept",
    "contact_decline",
    "contact_remove",
    "contact_block",
    "set_status",
    "send_message",
    "ack_delivered",
    "mark_read",
    "inbox",
    "history",
    "ping",
    "device_keys",
    "call_invite",
    "call_ringing",
    "call_accept",
    "call_decline",
    "call_cancel",
    "call_hangup",
    "call_candidate",
    "call_restart",
    "call_resume",
    "turn_credentials",
    "ack_missed_calls",
    "call_report",
    "call_log",
];

/// The `login` request.
// Debug is written out in `debug.rs`: it never shows passwords or tokens.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Login {
    /// The account.
    pub username: String,
    /// Exactly one of `password` and `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A session token from an earlier login of this device; costs no password hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The device's Ed25519 key and its proof of possession.
    pub device: DeviceProof,
    /// Log in for a few requests without appearing online (a one-shot command such as `send`
    /// or `contacts`): contacts see no presence change, and nothing is pushed to this
    /// connection (no presence, messages, missed calls or calls); offline messages wait for a
    /// device that goes online.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quiet: bool,
}

/// A device's public key and its signature over the connection's nonce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceProof {
    /// Ed25519 public key, 32 bytes, lowercase hex.
    pub public_key: String,
    /// Ed25519 signature over [`login_challenge`]`(nonce)`, or over
    /// [`login_challenge_bound`] with `channel_binding`; 64 bytes, lowercase hex.
    pub signature: String,
    /// A name for the device, shown in `devices` (up to 64 characters).
    #[serde(default)]
    pub name: String,
    /// `tls_exporter` when `signature` is over [`login_challenge_bound`] (the client bound it to
    /// its TLS connection, RFC 9266); absent when it is over [`login_challenge`] alone (a
    /// client that cannot read its TLS exporter, such as a browser).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_binding: Option<ChannelBinding>,
}

/// How a login signature is tied to its TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelBinding {
    /// The TLS exporter of RFC 9266 (`tls-exporter`): 32 bytes exported with the label
    /// `EXPORTER-Channel-Binding` and no context. A man in the middle who terminates TLS sees a
    /// different value on each side, so a signature relayed through it does not verify.
    TlsExporter,
}

/// The exporter label of RFC 9266.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// The bytes a device signs to log in over TLS with [`ChannelBinding::TlsExporter`]: a
/// domain-separation label, the nonce from `hello`, and the connection's 32-byte TLS exporter.
pub fn login_challenge_bound(nonce_hex: &str, exporter: &[u8; 32]) -> Vec<u8> {
    let mut bytes = b"peerline-login-tls-exporter-v1:".to_vec();
    bytes.extend_from_slice(nonce_hex.as_bytes());
    bytes.push(b':');
    bytes.extend_from_slice(exporter);
    bytes
}

/// The bytes a device signs to log in: a domain-separation label followed by the nonce from the
/// supernode's `hello` answer, so that a signature cannot be replayed on another connection.
pub fn login_challenge(nonce_hex: &str) -> Vec<u8> {
    let mut bytes = b"peerline-login-v1:".to_vec();
    bytes.extend_from_slice(nonce_hex.as_bytes());
    bytes
}

/// A presence status a user can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Available.
    Online,
    /// Away from the keyboard.
    Away,
    /// Do not disturb.
    Busy,
    /// Connected but shown as offline to everyone.
    Invisible,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Busy => "busy",
            Self::Invisible => "invisible",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "online" => Self::Online,
            "away" => Self::Away,
            "busy" => Self::Busy,
            "invisible" => Self::Invisible,
            _ => return None,
        })
    }
}

/// What other users see of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// Available.
    Online,
    /// Away.
    Away,
    /// Busy.
    Busy,
    /// Offline, invisible, or not visible to the viewer.
    Offline,
}

impl Presence {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Busy => "busy",
            Self::Offline => "offline",
        }
    }
}

impl From<Status> for Presence {
    fn from(s: Status) -> Self {
        match s {
            Status::Online => Self::Online,
            Status::Away => Self::Away,
            Status::Busy => Self::Busy,
            Status::Invisible => Self::Offline,
        }
    }
}

/// The state of a contact list entry, from the list owner's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactState {
    /// Both sides agreed.
    Accepted,
    /// The other user asked; the owner has not answered.
    Incoming,
    /// The owner asked; the other user has not answered.
    Outgoing,
    /// The owner blocked the other user.
    Blocked,
}

impl ContactState {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Incoming => "incoming",
            Self::Outgoing => "outgoing",
            Self::Blocked => "blocked",
        }
    }

    /// Parses the wire and storage name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "accepted" => Self::Accepted,
            "incoming" => Self::Incoming,
            "outgoing" => Self::Outgoing,
            "blocked" => Self::Blocked,
            _ => return None,
        })
    }
}

/// A frame from the supernode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The request with this id succeeded.
    Ok {
        /// The request's id.
        id: u64,
        /// What it returned.
        result: Reply,
    },
    /// The request with this id failed; `id` is absent when the frame could not be read far enough
    /// to find it.
    Error {
        /// The request's id, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// What went wrong.
        error: ErrorBody,
    },
    /// Something happened that the client did not ask about.
    Event {
        /// The event.
        event: Event,
    },
}

/// The successful result of a request. The JSON form is an object whose `type` names it.
// Debug is written out in `debug.rs`: it never shows passwords or tokens.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// Answer to `hello`.
    Hello {
        /// The version the supernode will speak.
        version: u32,
        /// Software name and version.
        server: String,
        /// 32 random bytes, hex; sign [`login_challenge`] of it to log in.
        nonce: String,
        /// A connection with no request for this long is closed; send `ping` more often.
        heartbeat_timeout_secs: u64,
        /// The UDP port of the supernode's STUN responder (same host as the supernode), for
        /// server-reflexive candidates; absent when it runs none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stun_port: Option<u16>,
    },
    /// The request succeeded and returns nothing.
    Done,
    /// Answer to `register`.
    Registered {
        /// The canonical (lower-case) username.
        username: String,
    },
    /// Answer to `login`.
    LoggedIn {
        /// The canonical username.
        username: String,
        /// The display name.
        display_name: String,
        /// This device's id.
        device_id: DeviceId,
        /// A new session token for the next login of this device (a password login issues one; a
        /// token login returns the same token).
        token: String,
        /// The account's chosen status.
        status: Status,
        /// Client URLs (`wss://host:port`) of the network's supernodes, where this session's
        /// token is valid too: the client keeps them as its host cache and reconnects to one of
        /// them if this supernode fails. Absent when the operator lists none (a lone supernode).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        supernodes: Vec<String>,
    },
    /// Answer to `whoami`.
    Me(Profile),
    /// Answer to `devices`.
    Devices {
        /// The account's devices.
        devices: Vec<DeviceInfo>,
    },
    /// Answer to `search`.
    SearchResults {
        /// At most 20 users; never their presence.
        users: Vec<UserSummary>,
    },
    /// Answer to `contacts`.
    Contacts {
        /// Entries of the owner's list, ordered by username.
        contacts: Vec<Contact>,
        /// The list goes on: the reply stopped where one more entry would not fit in a frame.
        /// Ask again with `after` set to the last username here.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// Answer to `send_message`: the message as stored.
    MessageSent {
        /// The stored message.
        message: ChatMessage,
    },
    /// Answer to `inbox` and `history`.
    Messages {
        /// Oldest first.
        messages: Vec<ChatMessage>,
        /// Fewer than `limit` came because one more would not fit in a frame: ask again for
        /// the rest, an `inbox` with `after` the last id here, a `history` with `before` the
        /// first id here.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// Answer to `ping`.
    Pong,
    /// Answer to `call_log`.
    CallLog {
        /// Newest first.
        calls: Vec<CallLogEntry>,
        /// Fewer than `limit` came because one more would not fit in a frame: ask again with
        /// `before` the last id here.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// Answer to `device_keys`.
    DeviceKeys {
        /// The canonical username.
        username: String,
        /// Every device of the account.
        devices: Vec<DeviceKey>,
    },
    /// Answer to `turn_credentials`: the coturn "TURN REST API" scheme (a username holding the
    /// expiry time, a password that is an HMAC of it under a secret shared with the relays).
    TurnCredentials {
        /// `EXPIRY:USERNAME`, EXPIRY in seconds since the Unix epoch.
        username: String,
        /// Base64 of HMAC-SHA1(secret, username).
        password: String,
        /// Seconds the credentials stay valid.
        ttl_secs: u64,
        /// The relays, as `turn:` / `turns:` URLs (RFC 7065); empty when the supernode has none.
        urls: Vec<String>,
    },
    /// Answer to `call_invite`: the call exists; what happens next comes as events.
    CallPlaced {
        /// The call.
        call_id: CallId,
        /// How many of the callee's devices it rings (at least 1: an offline callee is answered
        /// with `callee_unavailable` instead).
        ringing_devices: u32,
    },
}

/// A session's own profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Canonical username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// This device's id.
    pub device_id: DeviceId,
    /// The chosen status.
    pub status: Status,
    /// Whether directory search finds this account.
    pub discoverable: bool,
}

/// One registered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device id.
    pub id: DeviceId,
    /// The name the device gave.
    pub name: String,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// When it first logged in.
    pub created_at: TimestampMs,
    /// When it last logged in.
    pub last_seen_at: TimestampMs,
    /// Whether it is connected now.
    pub online: bool,
    /// Whether it is the device asking.
    pub current: bool,
}

/// A directory search hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
}

/// One contact list entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Where the authorization stands.
    pub state: ContactState,
    /// Presence; always `offline` unless `state` is `accepted` on both sides.
    pub presence: Presence,
    /// The greeting of a pending request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An instant message as stored by the supernode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Server-assigned id.
    pub id: MessageId,
    /// Sender username.
    pub from: String,
    /// Recipient username.
    pub to: String,
    /// The text.
    pub text: String,
    /// When the supernode stored it.
    pub sent_at: TimestampMs,
    /// When a device of the recipient first acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<TimestampMs>,
    /// When the recipient marked it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<TimestampMs>,
}

/// A receipt kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    /// A device of the recipient received the message.
    Delivered,
    /// The recipient read it.
    Read,
}

/// Why the supernode ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The supernode is shutting down.
    Shutdown,
    /// This device was removed from the account.
    DeviceRemoved,
    /// The session logged out.
    LoggedOut,
    /// No request for longer than the heartbeat timeout.
    HeartbeatTimeout,
    /// The client did not read its frames fast enough.
    SlowReader,
    /// The client broke the protocol too often.
    ProtocolViolation,
    /// The password changed on another device.
    PasswordChanged,
    /// The connection did not log in within the login deadline.
    LoginTimeout,
    /// The account (or this device) opened more connections than a supernode allows; the
    /// oldest ones are closed.
    TooManyConnections,
}

/// Something the supernode tells a client without being asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An accepted contact's presence changed (or is being announced after login).
    Presence {
        /// The contact.
        username: String,
        /// What to show.
        presence: Presence,
    },
    /// Someone asks to become a contact.
    ContactRequest {
        /// The requester.
        username: String,
        /// Their display name.
        display_name: String,
        /// Their greeting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A request was accepted (by the other side, or by this account on another device).
    ContactAccepted {
        /// The new contact.
        username: String,
    },
    /// A contact entry disappeared (removed, declined or cancelled).
    ContactRemoved {
        /// The former contact.
        username: String,
    },
    /// The user this account asked declined the request; it is gone from both lists. Sent once,
    /// to the requester's devices online at the time.
    ContactDeclined {
        /// Who declined.
        username: String,
    },
    /// An instant message: received, or sent by this account from another device.
    Message {
        /// The message.
        message: ChatMessage,
    },
    /// A sent message was delivered or read.
    Receipt {
        /// The message.
        message_id: MessageId,
        /// Which receipt.
        kind: ReceiptKind,
        /// When.
        at: TimestampMs,
    },
    /// The supernode is ending this session; the connection closes next.
    SessionEnded {
        /// Why.
        reason: EndReason,
    },
    /// A contact calls; sent to every online device of the callee. No addresses yet.
    CallIncoming {
        /// The call.
        call_id: CallId,
        /// The caller.
        from: String,
        /// The caller's display name.
        display_name: String,
        /// The calling device.
        device_id: DeviceId,
        /// The calling device's Ed25519 public key, hex.
        device_key: String,
        /// The SDP offer.
        sdp: String,
        /// The device key's signature over the offer's DTLS fingerprint.
        fingerprint_signature: String,
    },
    /// A callee device is ringing (sent to the caller once).
    CallRinging {
        /// The call.
        call_id: CallId,
    },
    /// A callee device answered (sent to the caller).
    CallAccepted {
        /// The call.
        call_id: CallId,
        /// The answering device.
        device_id: DeviceId,
        /// Its Ed25519 public key, hex.
        device_key: String,
        /// The SDP answer.
        sdp: String,
        /// The device key's signature over the answer's DTLS fingerprint.
        fingerprint_signature: String,
    },
    /// A trickled ICE candidate from the other side.
    CallCandidate {
        /// The call.
        call_id: CallId,
        /// An SDP `candidate:` attribute value.
        candidate: String,
    },
    /// The other side restarts ICE: an offer (to the callee), an answer (to the caller), or,
    /// without `sdp`, the callee's request that the caller restart.
    CallRestart {
        /// The call.
        call_id: CallId,
        /// The SDP offer or answer, as the other side sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp: Option<String>,
    },
    /// The call is over (or, for a callee device, over for this device).
    CallEnded {
        /// The call.
        call_id: CallId,
        /// Why.
        reason: CallEndReason,
    },
    /// A call nobody answered; also pushed at login until acknowledged.
    MissedCall {
        /// The notice.
        missed: MissedCall,
    },
}
