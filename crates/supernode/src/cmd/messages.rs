//! Instant messages: `send_message`, `ack_delivered`, `mark_read`, `inbox`, `history`, and the
//! push of messages that waited while a user was offline.
//!
//! A message is acknowledged to its sender only after the store made it durable. Delivery is
//! at-least-once on the wire (a message is pushed again until a device acknowledges it) and
//! exactly-once to the user, because clients drop ids they have already seen.

use peerline_store::StoredMessage;
use peerline_wire::{
    ChatMessage, ErrorBody, ErrorCode, Event, MessageId, ReceiptKind, Reply, ServerFrame, validate,
};

use crate::metrics as m;
use crate::session::{Session, db};
use crate::state::now_ms;

/// Most ids in one `ack_delivered`/`mark_read`.
const MAX_IDS: usize = 1000;
/// Most messages pushed at login; the rest come at the next login or through `inbox`.
const MAX_PUSH: u32 = 1000;

fn to_wire(m: StoredMessage) -> ChatMessage {
    ChatMessage {
        id: m.id,
        from: m.from,
        to: m.to,
        text: m.text,
        sent_at: m.sent_at,
        delivered_at: m.delivered_at,
        read_at: m.read_at,
    }
}

fn limit(raw: Option<u32>, default: u32) -> Result<u32, ErrorBody> {
    match raw.unwrap_or(default) {
        n @ 1..=1000 => Ok(n),
        _ => Err(ErrorBody::with_message(ErrorCode::InvalidArgument, "limit must be 1-1000")),
    }
}

impl Session {
    pub(crate) async fn send_message(
        &mut self,
        to: String,
        text: String,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        validate::message_text(&text)?;
        let store = self.shared.store.clone();
        let other = self.accepted_contact(&to).await?;
        let stored = db(store.store_message(me.user_id, other.id, &text, now_ms()).await)?;
        metrics::counter!(m::MESSAGES).increment(1);
        let message = to_wire(stored);
        let conn = self.conn;
        let event = Event::Message { message: message.clone() };
        self.shared.with_hub(|h| {
            h.send_to_user(other.id, event.clone(), None);
            h.send_to_user(me.user_id, event, Some(conn));
        });
        Ok(Reply::MessageSent { message })
    }

    fn check_ids(ids: &[MessageId]) -> Result<(), ErrorBody> {
        if ids.len() > MAX_IDS {
            return Err(ErrorBody::with_message(ErrorCode::InvalidArgument, "at most 1000 ids"));
        }
        Ok(())
    }

    fn send_receipts(&self, messages: &[StoredMessage], kind: ReceiptKind) {
        self.shared.with_hub(|h| {
            for msg in messages {
                let at = match kind {
                    ReceiptKind::Delivered => msg.delivered_at,
                    ReceiptKind::Read => msg.read_at,
                };
                let event =
                    Event::Receipt { message_id: msg.id, kind, at: at.unwrap_or(msg.sent_at) };
                h.send_to_user(msg.from_id, event, None);
            }
        });
    }

    pub(crate) async fn ack_delivered(&mut self, ids: Vec<MessageId>) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        Self::check_ids(&ids)?;
        let newly = db(self.shared.store.mark_delivered(me.user_id, &ids, now_ms()).await)?;
        self.send_receipts(&newly, ReceiptKind::Delivered);
        Ok(Reply::Done)
    }

    pub(crate) async fn mark_read(&mut self, ids: Vec<MessageId>) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        Self::check_ids(&ids)?;
        let newly = db(self.shared.store.mark_read(me.user_id, &ids, now_ms()).await)?;
        self.send_receipts(&newly, ReceiptKind::Read);
        Ok(Reply::Done)
    }

    pub(crate) async fn inbox(&mut self, raw_limit: Option<u32>) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let n = limit(raw_limit, 100)?;
        let messages = db(self.shared.store.unread(me.user_id, n).await)?;
        Ok(Reply::Messages { messages: messages.into_iter().map(to_wire).collect() })
    }

    pub(crate) async fn history(
        &mut self,
        with: String,
        raw_limit: Option<u32>,
        before: Option<MessageId>,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let n = limit(raw_limit, 50)?;
        let name = validate::username(&with).map_err(|_| ErrorCode::NoSuchUser)?;
        let Some(other) = db(self.shared.store.account_by_username(&name).await)? else {
            return Ok(Reply::Messages { messages: Vec::new() });
        };
        let messages = db(self.shared.store.history(me.user_id, other.id, n, before).await)?;
        Ok(Reply::Messages { messages: messages.into_iter().map(to_wire).collect() })
    }

    /// Pushes every message no device has acknowledged yet, oldest first. Returns `false` when
    /// the connection is gone.
    pub(crate) async fn push_undelivered(&mut self) -> bool {
        let Ok(me) = self.me().cloned() else { return true };
        match db(self.shared.store.undelivered(me.user_id, MAX_PUSH).await) {
            Ok(messages) => {
                for msg in messages {
                    let event = Event::Message { message: to_wire(msg) };
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
