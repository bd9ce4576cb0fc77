//! Instant messages: `send_message`, `ack_delivered`, `mark_read`, `inbox`, `history`, and the
//! push of messages that waited while a user was offline.
//!
//! A message is acknowledged to its sender only after the store made it durable. Delivery is
//! at-least-once on the wire (a message is pushed again until a device acknowledges it) and
//! exactly-once to the user, because clients drop ids they have already seen. Lists come a frame
//! at a time: a reply that stops short of its `limit` to fit says `more` (see `budget.rs`).

use peerline_store::StoredMessage;
use peerline_wire::{
    ChatMessage, ErrorBody, ErrorCode, Event, MessageId, ReceiptKind, Reply, ServerFrame, Status,
    validate,
};

use super::budget::{self, PAGE_ROWS};
use crate::metrics as m;
use crate::session::{Session, db};
use crate::state::now_ms;

/// Most ids in one `ack_delivered`/`mark_read`.
const MAX_IDS: usize = 1000;
/// Most messages pushed at login; the rest come at the next login or through `inbox`.
const MAX_PUSH: u32 = 1000;
/// Messages read from the store at a time for the push at login, so that its memory stays
/// bounded whatever waits.
const PUSH_PAGE: u32 = 100;

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
        self.admit_message(me.user_id, &other).await?;
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
        // A `delivered` receipt says a device of the recipient is connected now: an invisible
        // user sends none (a `read` receipt is the user's own act, and still goes).
        let invisible =
            self.shared.with_hub(|h| h.status_of(me.user_id)) == Some(Status::Invisible);
        if !invisible {
            self.send_receipts(&newly, ReceiptKind::Delivered);
        }
        Ok(Reply::Done)
    }

    pub(crate) async fn mark_read(&mut self, ids: Vec<MessageId>) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        Self::check_ids(&ids)?;
        let newly = db(self.shared.store.mark_read(me.user_id, &ids, now_ms()).await)?;
        self.send_receipts(&newly, ReceiptKind::Read);
        Ok(Reply::Done)
    }

    /// Unread messages after `after`, oldest first: as many of `limit` as fit in a frame.
    pub(crate) async fn inbox(
        &mut self,
        raw_limit: Option<u32>,
        after: Option<MessageId>,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let n = limit(raw_limit, 100)?;
        let read = n.min(PAGE_ROWS);
        let rows = db(self.shared.store.unread(me.user_id, after, read).await)?;
        let stopped_early = read < n && rows.len() == read as usize;
        let (messages, cut) = budget::fit_first(rows.into_iter().map(to_wire).collect());
        Ok(Reply::Messages { messages, more: cut || stopped_early })
    }

    /// The conversation with `with` before `before`: as many of the newest `limit` as fit in a
    /// frame, oldest first.
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
            return Ok(Reply::Messages { messages: Vec::new(), more: false });
        };
        let read = n.min(PAGE_ROWS);
        let rows = db(self.shared.store.history(me.user_id, other.id, read, before).await)?;
        let stopped_early = read < n && rows.len() == read as usize;
        // The newest are what was asked for; older ones come with the next `before`.
        let mut messages: Vec<ChatMessage> = rows.into_iter().map(to_wire).collect();
        // Nor does the sender's history show when an invisible recipient's device took a
        // message, until it is read.
        if other.status == Status::Invisible {
            for m in messages.iter_mut().filter(|m| m.to == other.username && m.read_at.is_none()) {
                m.delivered_at = None;
            }
        }
        let (messages, cut) = budget::fit_last(messages);
        Ok(Reply::Messages { messages, more: cut || stopped_early })
    }

    /// Pushes the messages no device has acknowledged yet, oldest first, one event each (every
    /// message fits a frame), [`MAX_PUSH`] at most, read from the store a page at a time.
    /// Returns `false` when the connection is gone.
    pub(crate) async fn push_undelivered(&mut self) -> bool {
        let Ok(me) = self.me().cloned() else { return true };
        let mut after = None;
        let mut pushed = 0;
        while pushed < MAX_PUSH {
            let page = PUSH_PAGE.min(MAX_PUSH - pushed);
            let messages = match db(self.shared.store.undelivered(me.user_id, after, page).await) {
                Ok(messages) => messages,
                Err(error) => return self.send(ServerFrame::Error { id: None, error }).await,
            };
            let last_page = messages.len() < page as usize;
            for msg in messages {
                after = Some(msg.id);
                pushed += 1;
                let event = Event::Message { message: to_wire(msg) };
                if !self.send(ServerFrame::Event { event }).await {
                    return false;
                }
            }
            if last_page {
                break;
            }
        }
        true
    }
}
