//! Call signaling: `call_invite`, `call_ringing`, `call_accept`, `call_decline`, `call_cancel`,
//! `call_hangup`, `call_candidate`, `call_restart` (ICE restart on a dead path), `call_resume` (a
//! device takes its call over on a new connection), `ack_missed_calls`, the contacts'
//! `device_keys`, and the push of missed calls at login.
//!
//! Handlers check who may call whom (accepted contacts only) and the shape of every field; the
//! life of each call is the hub's (`peerline_supernode_core::calls`). Offers are refused if they
//! carry addresses, so nothing about the caller's network reaches a device before it answers.

use std::time::Instant;

use peerline_supernode_core::{CallAnswer, CallInvite, CallRecord, ConnId, Hub, InviteRefused};
use peerline_wire::calls::{
    sdp_has_addresses, validate_call_id, validate_candidate, validate_sdp, validate_signature,
};
use peerline_wire::{
    CallEndReason, DeviceKey, ErrorBody, ErrorCode, Event, Reply, ServerFrame, validate,
};

use crate::metrics as m;
use crate::session::{Session, db};
use crate::state::missed_call_to_wire;

/// Most ids in one `ack_missed_calls`.
const MAX_IDS: usize = 1000;
/// Most missed calls pushed at login.
const MAX_PUSH: u32 = 1000;

fn bad(message: &str) -> ErrorBody {
    ErrorBody::with_message(ErrorCode::InvalidArgument, message)
}

fn check_call_id(call_id: &str) -> Result<(), ErrorBody> {
    validate_call_id(call_id).map_err(|_| bad("call_id must be 32 lowercase hex characters"))
}

fn check_description(sdp: &str, signature: &str) -> Result<(), ErrorBody> {
    validate_sdp(sdp).map_err(|_| bad("sdp must start with v=0 and be at most 8 KiB"))?;
    validate_signature(signature)
        .map_err(|_| bad("fingerprint_signature must be 128 lowercase hex characters"))
}

impl Session {
    /// Runs one step of an existing call in the hub, for this logged-in connection.
    fn on_call(
        &mut self,
        call_id: &str,
        step: impl FnOnce(&mut Hub, ConnId, &str) -> Result<(), ErrorBody>,
    ) -> Result<Reply, ErrorBody> {
        self.me()?;
        check_call_id(call_id)?;
        let conn = self.conn;
        self.shared.with_hub(|h| step(h, conn, call_id))?;
        Ok(Reply::Done)
    }

    pub(crate) async fn device_keys(&mut self, username: String) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let account = if validate::username(&username).ok().as_deref() == Some(&me.username) {
            db(self.shared.store.account_by_id(me.user_id).await)?.ok_or(ErrorCode::Internal)?
        } else {
            self.accepted_contact(&username).await?
        };
        let devices = db(self.shared.store.devices(account.id).await)?;
        Ok(Reply::DeviceKeys {
            username: account.username,
            devices: devices
                .into_iter()
                .map(|d| DeviceKey {
                    device_id: d.id,
                    public_key: hex::encode(d.public_key.as_slice()),
                    name: d.name,
                })
                .collect(),
        })
    }

    pub(crate) async fn call_invite(
        &mut self,
        call_id: String,
        to: String,
        sdp: String,
        fingerprint_signature: String,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        check_call_id(&call_id)?;
        check_description(&sdp, &fingerprint_signature)?;
        if sdp_has_addresses(&sdp) {
            return Err(bad(
                "the offer must not carry addresses: send candidates with call_candidate; the \
                 supernode passes them on once the call is answered",
            ));
        }
        if validate::username(&to).ok().as_deref() == Some(&me.username) {
            return Err(ErrorBody::with_message(
                ErrorCode::InvalidArgument,
                "you cannot call yourself",
            ));
        }
        let callee = self.accepted_contact(&to).await?;
        let caller =
            db(self.shared.store.account_by_id(me.user_id).await)?.ok_or(ErrorCode::Internal)?;
        let invite = CallInvite {
            call_id: call_id.clone(),
            caller: me.user_id,
            caller_name: me.username.clone(),
            caller_display_name: caller.display_name,
            caller_device: me.device_id,
            caller_device_key: me.device_key.clone(),
            callee: callee.id,
            sdp,
            fingerprint_signature,
        };
        let conn = self.conn;
        let placed = self.shared.with_hub(|h| h.call_invite(conn, invite, Instant::now()));
        let (result, outcome) = match placed {
            Ok(ringing_devices) => (Ok(Reply::CallPlaced { call_id, ringing_devices }), "ringing"),
            Err(InviteRefused::Ended(CallEndReason::Busy)) => {
                (Err(ErrorBody::new(ErrorCode::CalleeBusy)), "busy")
            }
            Err(InviteRefused::Ended(_)) => {
                (Err(ErrorBody::new(ErrorCode::CalleeUnavailable)), "unavailable")
            }
            Err(InviteRefused::Error(e)) => (Err(e), "refused"),
        };
        metrics::counter!(m::CALL_INVITES, "result" => outcome).increment(1);
        result
    }

    pub(crate) fn call_ringing(&mut self, call_id: String) -> Result<Reply, ErrorBody> {
        self.on_call(&call_id, |h, conn, id| h.call_ringing(conn, id))
    }

    pub(crate) fn call_accept(
        &mut self,
        call_id: String,
        sdp: String,
        fingerprint_signature: String,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        check_call_id(&call_id)?;
        check_description(&sdp, &fingerprint_signature)?;
        let answer = CallAnswer {
            device_id: me.device_id,
            device_key: me.device_key,
            sdp,
            fingerprint_signature,
        };
        self.on_call(&call_id, |h, conn, id| h.call_accept(conn, id, answer))?;
        metrics::counter!(m::CALLS_ANSWERED).increment(1);
        Ok(Reply::Done)
    }

    pub(crate) fn call_decline(
        &mut self,
        call_id: String,
        busy: bool,
        reason: Option<CallEndReason>,
    ) -> Result<Reply, ErrorBody> {
        self.on_call(&call_id, |h, conn, id| match reason {
            Some(reason) => h.call_refuse(conn, id, reason),
            None => h.call_decline(conn, id, busy),
        })
    }

    pub(crate) fn call_cancel(&mut self, call_id: String) -> Result<Reply, ErrorBody> {
        self.on_call(&call_id, |h, conn, id| h.call_cancel(conn, id))
    }

    pub(crate) fn call_hangup(&mut self, call_id: String) -> Result<Reply, ErrorBody> {
        self.on_call(&call_id, |h, conn, id| h.call_hangup(conn, id))
    }

    pub(crate) fn call_candidate(
        &mut self,
        call_id: String,
        candidate: String,
    ) -> Result<Reply, ErrorBody> {
        validate_candidate(&candidate).map_err(|_| {
            bad("candidate must be an SDP candidate: attribute of at most 512 bytes")
        })?;
        self.on_call(&call_id, |h, conn, id| h.call_candidate(conn, id, candidate))
    }

    pub(crate) fn call_restart(
        &mut self,
        call_id: String,
        sdp: Option<String>,
    ) -> Result<Reply, ErrorBody> {
        if let Some(sdp) = &sdp {
            validate_sdp(sdp)
                .map_err(|_| bad("sdp must be an SDP offer or answer of at most 8 KiB"))?;
        }
        self.on_call(&call_id, |h, conn, id| h.call_restart(conn, id, sdp))
    }

    /// Takes a call over on this connection: one this supernode carries (the device's old
    /// connection died), or, from its record on the bus, one whose supernode died.
    pub(crate) async fn call_resume(&mut self, call_id: String) -> Result<Reply, ErrorBody> {
        match self.on_call(&call_id, |h, conn, id| h.call_resume(conn, id)) {
            Err(e) if e.code == ErrorCode::NoSuchCall => {}
            done => return done,
        }
        let record = match self.shared.bus.get_call(&call_id).await {
            Ok(Some(bytes)) => serde_json::from_slice::<CallRecord>(&bytes)
                .map_err(|_| ErrorBody::new(ErrorCode::NoSuchCall))?,
            Ok(None) => return Err(ErrorBody::new(ErrorCode::NoSuchCall)),
            Err(e) => {
                tracing::warn!(error = %e, "the call registry is unavailable");
                let mut body = ErrorBody::new(ErrorCode::Unavailable);
                body.retry_after_secs = Some(1);
                return Err(body);
            }
        };
        let conn = self.conn;
        self.shared.with_hub(|h| h.call_take_over(conn, &call_id, &record))?;
        tracing::info!(%call_id, "took a call over from another supernode");
        Ok(Reply::Done)
    }

    pub(crate) async fn ack_missed_calls(&mut self, ids: Vec<i64>) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        if ids.len() > MAX_IDS {
            return Err(bad("at most 1000 ids"));
        }
        db(self.shared.store.ack_missed_calls(me.user_id, &ids).await)?;
        Ok(Reply::Done)
    }

    /// Pushes missed calls no device acknowledged yet, oldest first. Returns `false` when the
    /// connection is gone.
    pub(crate) async fn push_missed_calls(&mut self) -> bool {
        let Ok(me) = self.me().cloned() else { return true };
        match db(self.shared.store.undelivered_missed_calls(me.user_id, MAX_PUSH).await) {
            Ok(missed) => {
                for m in missed {
                    let event = Event::MissedCall { missed: missed_call_to_wire(m) };
                    if !self.send(ServerFrame::Event { event }).await {
                        return false;
                    }
                }
                true
            }
            Err(error) => self.send(ServerFrame::Error { id: None, error }).await,
        }
    }
}
