//! A connection's protocol session: hello, then login, then requests. Handlers for each request
//! live in `cmd/`, grouped by topic; this file holds the state they share and the dispatch.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peerline_store::{StoreError, StoreResult, UserId};
use peerline_supernode_core::ConnId;
use peerline_wire::{
    ContactState, DeviceId, ErrorBody, ErrorCode, Reply, Request, ServerFrame, encode, validate,
};
use tracing::{error, warn};

use crate::metrics as m;
use crate::state::{Offer, Outbound, Outbox, Shared};

/// Who a logged-in connection is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Account id.
    pub user_id: UserId,
    /// Canonical username.
    pub username: String,
    /// Device id.
    pub device_id: DeviceId,
    /// This device's Ed25519 public key, hex.
    pub device_key: String,
    /// SHA-256 of this session's token (for logout).
    pub token_hash: [u8; 32],
}

/// Work to do right after the current reply has been queued.
#[derive(Debug, Default)]
pub(crate) struct AfterReply {
    /// Let the events held back since login follow the reply (presence snapshot first).
    pub release: bool,
    /// Push stored undelivered messages to this device.
    pub push_undelivered: bool,
}

/// The protocol state of one connection.
pub struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: ConnId,
    pub(crate) peer: SocketAddr,
    outbox: Arc<Outbox>,
    pub(crate) nonce: Option<String>,
    pub(crate) identity: Option<Identity>,
    pub(crate) after: AfterReply,
    /// When the connection opened (the login deadline counts from it).
    opened: tokio::time::Instant,
    /// Becomes `true` when the connection closes while the current request runs; set by the
    /// connection for each request (an idle connection keeps no channel).
    pub(crate) closed: Option<tokio::sync::watch::Receiver<bool>>,
    /// The connection's TLS exporter, which a login signature may be bound to (RFC 9266).
    pub(crate) tls_exporter: Option<[u8; 32]>,
}

/// Maps a storage failure to the wire, logging the cause (the client learns only "internal").
pub(crate) fn db<T>(result: StoreResult<T>) -> Result<T, ErrorBody> {
    result.map_err(|err| match err {
        StoreError::UsernameTaken => ErrorBody::new(ErrorCode::UsernameTaken),
        StoreError::Backend(msg) => {
            error!(error = %msg, "storage failed");
            ErrorBody::new(ErrorCode::Internal)
        }
        StoreError::Retryable(msg) => {
            warn!(error = %msg, "storage unavailable");
            let mut body = ErrorBody::new(ErrorCode::Unavailable);
            body.retry_after_secs = Some(1);
            body
        }
    })
}

impl Session {
    /// A fresh session for a new connection.
    pub fn new(shared: Arc<Shared>, conn: ConnId, peer: SocketAddr, outbox: Arc<Outbox>) -> Self {
        Self {
            shared,
            conn,
            peer,
            outbox,
            nonce: None,
            identity: None,
            after: AfterReply::default(),
            opened: tokio::time::Instant::now(),
            closed: None,
            tls_exporter: None,
        }
    }

    /// When a password hash this request queues is given up: when the connection closes, or at
    /// the login deadline (before login), or one login timeout from now (after).
    pub(crate) fn hash_gate(&self) -> crate::passwords::Gate {
        let wait = Duration::from_secs(self.shared.config.limits.login_timeout_secs);
        let deadline = match self.identity {
            None => self.opened + wait,
            Some(_) => tokio::time::Instant::now() + wait,
        };
        // Outside a request nothing waits on a hash; a sender dropped at once reads as closed.
        let closed = self.closed.clone().unwrap_or_else(|| tokio::sync::watch::channel(true).1);
        crate::passwords::Gate { deadline, closed }
    }

    /// Queues a frame of this session's own (an answer, or the pushes that follow login). It
    /// waits for room in the send queue, so a client's requests are read only as fast as it reads
    /// the answers; a client that reads nothing for the write timeout is dropped. Returns `false`
    /// when the connection is gone.
    pub fn send(&self, frame: ServerFrame) -> impl Future<Output = bool> + Send + '_ {
        // Encoded before the future is made: the future (part of every connection task's
        // state) then holds the encoded bytes, not the frame.
        self.queue(Outbound::Frame(encode(&frame).into()))
    }

    /// Queues an encoded frame: at once while the outbox has room (the usual case); otherwise
    /// it waits in a boxed future, so that only a connection whose client reads slowly holds
    /// the waiting's state.
    async fn queue(&self, outbound: Outbound) -> bool {
        match self.outbox.offer(outbound) {
            Offer::Queued => true,
            Offer::Gone => false,
            Offer::Full(outbound) => Box::pin(self.queue_when_room(outbound)).await,
        }
    }

    async fn queue_when_room(&self, outbound: Outbound) -> bool {
        let write_timeout = Duration::from_secs(self.shared.config.limits.write_timeout_secs);
        match tokio::time::timeout(write_timeout, self.outbox.push(outbound)).await {
            Ok(sent) => sent,
            Err(_) => {
                self.shared.drop_slow_reader(self.conn);
                false
            }
        }
    }

    /// Queues an error answer.
    pub fn reply_error(
        &self,
        id: Option<u64>,
        error: ErrorBody,
    ) -> impl Future<Output = bool> + Send + '_ {
        let code = serde_json::to_value(error.code).ok();
        let code = code.as_ref().and_then(|v| v.as_str()).unwrap_or("unknown").to_owned();
        metrics::counter!(m::REQUEST_ERRORS, "code" => code).increment(1);
        self.send(ServerFrame::Error { id, error })
    }

    /// The logged-in identity, or `not_authenticated`.
    pub(crate) fn me(&self) -> Result<&Identity, ErrorBody> {
        self.identity.as_ref().ok_or_else(|| ErrorBody::new(ErrorCode::NotAuthenticated))
    }

    /// The other user, if both sides accepted each other; unknown users and non-contacts get
    /// the same answer.
    pub(crate) async fn accepted_contact(
        &self,
        username: &str,
    ) -> Result<peerline_store::Account, ErrorBody> {
        let me = self.me()?;
        let store = &self.shared.store;
        let name = validate::username(username).map_err(|_| ErrorCode::NotContact)?;
        let other = db(store.account_by_username(&name).await)?.ok_or(ErrorCode::NotContact)?;
        let (mine, theirs) = db(store.contact_pair(me.user_id, other.id).await)?;
        let accepted = |r: &Option<peerline_store::ContactRow>| {
            r.as_ref().is_some_and(|r| r.state == ContactState::Accepted)
        };
        if accepted(&mine) && accepted(&theirs) {
            Ok(other)
        } else {
            Err(ErrorCode::NotContact.into())
        }
    }

    /// Admission control on logins: past the supernode's rate, the client is told to come back
    /// later, each client at a different time (the wait plus up to as much again, at random).
    fn admit_login(&self) -> Result<(), ErrorBody> {
        let wait = match self.shared.with_hub(|h| h.admit_login(Instant::now())) {
            Ok(()) => return Ok(()),
            Err(wait) => wait,
        };
        metrics::counter!(crate::metrics::LOGINS_REFUSED).increment(1);
        let base = wait.as_secs_f64().max(1.0);
        let secs = base + rand::random::<f64>() * base;
        let mut body = ErrorBody::with_message(
            ErrorCode::RateLimited,
            "this supernode takes no more logins right now; come back after retry_after_secs",
        );
        body.retry_after_secs = Some(secs.ceil() as u64);
        Err(body)
    }

    /// Runs one request.
    pub async fn handle(&mut self, request: Request) -> Result<Reply, ErrorBody> {
        match (&self.nonce, &request) {
            (None, Request::Hello { .. }) => {}
            (None, _) | (Some(_), Request::Hello { .. }) => {
                return Err(ErrorBody::new(ErrorCode::HelloRequired));
            }
            _ => {}
        }
        match request {
            Request::Hello { version, .. } => self.hello(version),
            Request::Ping => Ok(Reply::Pong),
            Request::Register { username, display_name, password } => {
                self.register(username, display_name, password).await
            }
            Request::Login(login) => {
                self.admit_login()?;
                self.login(login).await
            }
            Request::Logout => self.logout().await,
            Request::ChangePassword { old_password, new_password } => {
                self.change_password(old_password, new_password).await
            }
            Request::Whoami => self.whoami().await,
            Request::Devices => self.devices().await,
            Request::RemoveDevice { device_id } => self.remove_device(device_id).await,
            Request::SetProfile { display_name, discoverable } => {
                self.set_profile(display_name, discoverable).await
            }
            Request::Search { query } => self.search(query).await,
            Request::Contacts { after } => self.contacts(after).await,
            Request::ContactAdd { username, message } => self.contact_add(username, message).await,
            Request::ContactAccept { username } => self.contact_accept(username).await,
            Request::ContactDecline { username } => self.contact_decline(username).await,
            Request::ContactRemove { username } => self.contact_remove(username).await,
            Request::ContactBlock { username } => self.contact_block(username).await,
            Request::SetStatus { status } => self.set_status(status).await,
            Request::SendMessage { to, text } => self.send_message(to, text).await,
            Request::AckDelivered { ids } => self.ack_delivered(ids).await,
            Request::MarkRead { ids } => self.mark_read(ids).await,
            Request::Inbox { limit, after } => self.inbox(limit, after).await,
            Request::History { with, limit, before } => self.history(with, limit, before).await,
            Request::DeviceKeys { username } => self.device_keys(username).await,
            Request::CallInvite { call_id, to, sdp, fingerprint_signature } => {
                self.call_invite(call_id, to, sdp, fingerprint_signature).await
            }
            Request::CallRinging { call_id } => self.call_ringing(call_id),
            Request::CallAccept { call_id, sdp, fingerprint_signature } => {
                self.call_accept(call_id, sdp, fingerprint_signature)
            }
            Request::CallDecline { call_id, busy, reason } => {
                self.call_decline(call_id, busy, reason)
            }
            Request::CallCancel { call_id } => self.call_cancel(call_id),
            Request::CallHangup { call_id } => self.call_hangup(call_id),
            Request::CallCandidate { call_id, candidate } => {
                self.call_candidate(call_id, candidate)
            }
            Request::CallRestart { call_id, sdp } => self.call_restart(call_id, sdp),
            Request::CallResume { call_id } => self.call_resume(call_id).await,
            Request::AckMissedCalls { ids } => self.ack_missed_calls(ids).await,
            Request::CallReport(report) => self.call_report(report).await,
            Request::CallLog { missed, before, limit } => {
                self.call_log(missed, before, limit).await
            }
            Request::TurnCredentials => self.turn_credentials(),
        }
    }

    /// Whether [`Session::after_reply`] has anything to do.
    pub fn has_after_reply(&self) -> bool {
        self.after.release || self.after.push_undelivered
    }

    /// Pushes what must follow the reply just sent (after login: presence of contacts, then
    /// messages that waited while this user was offline, in order).
    pub async fn after_reply(&mut self) -> bool {
        let after = std::mem::take(&mut self.after);
        if after.release && !self.shared.release(self.conn, &self.outbox).await {
            return false;
        }
        if after.push_undelivered {
            return self.push_undelivered().await && self.push_missed_calls().await;
        }
        true
    }
}
