//! Budgets a request is held to beyond the per-connection rates: what one account may send and
//! register (messages per minute and per day, devices), what may wait for one recipient
//! (undelivered messages, unanswered contact requests), and how much of a list one reply
//! carries (what fits in one WebSocket frame).
//!
//! The counts behind the first two live in the database, not in this process: they hold across
//! the supernodes of a cluster and across restarts. Each is a bounded, indexed count, and two
//! requests racing past the same check can overshoot a cap by the number racing, never more.

use std::io;

use peerline_store::{Account, UserId};
use peerline_wire::{ErrorBody, ErrorCode, MAX_FRAME_BYTES};
use serde::Serialize;

use crate::session::{Session, db};
use crate::state::now_ms;

/// Bytes of a list reply left for its items: the frame limit less room for the envelope around
/// them (`{"type":"ok","id":…,"result":{"type":"messages","messages":[…],"more":true}}` is
/// under 150 bytes).
pub(crate) const REPLY_ITEMS_BYTES: usize = MAX_FRAME_BYTES - 1024;

/// Most rows a list request reads from the store for one reply. A frame holds a few hundred
/// short items at most (and a dozen of the largest), so reading more would only be thrown away.
pub(crate) const PAGE_ROWS: u32 = 200;

/// The short send-rate window, in milliseconds.
const MINUTE_MS: i64 = 60_000;
/// The long send-rate window (the daily budget), in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// Counts the bytes written to it.
struct ByteCount(usize);

impl io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes of `item` in a reply: its JSON and the comma before it.
fn encoded_len<T: Serialize>(item: &T) -> usize {
    let mut count = ByteCount(1);
    // Our wire types always serialize; if one ever failed, it counts as a whole page.
    match serde_json::to_writer(&mut count, item) {
        Ok(()) => count.0,
        Err(_) => REPLY_ITEMS_BYTES,
    }
}

/// How many of `items`, taken in order, fit in [`REPLY_ITEMS_BYTES`]; at least one, so a page
/// always moves on (one item always fits: a message's 4,096 bytes take at most 24,576 as JSON
/// escapes, a contact's names and greeting far less).
fn fitting<'a, T: Serialize + 'a>(items: impl Iterator<Item = &'a T>) -> usize {
    let mut used = 0;
    let mut n = 0;
    for item in items {
        used += encoded_len(item);
        if used > REPLY_ITEMS_BYTES && n > 0 {
            break;
        }
        n += 1;
    }
    n
}

/// The longest prefix of `items` that fits in one reply, and whether any were left out.
pub(crate) fn fit_first<T: Serialize>(mut items: Vec<T>) -> (Vec<T>, bool) {
    let keep = fitting(items.iter());
    let cut = keep < items.len();
    items.truncate(keep);
    (items, cut)
}

/// The longest suffix of `items` that fits in one reply (for `history`, which keeps the newest),
/// and whether any were left out.
pub(crate) fn fit_last<T: Serialize>(mut items: Vec<T>) -> (Vec<T>, bool) {
    let keep = fitting(items.iter().rev());
    let cut = keep < items.len();
    items.drain(..items.len() - keep);
    (items, cut)
}

/// Whole seconds until `until` (milliseconds since the epoch), at least 1.
fn secs_until(until: i64, now: i64) -> u64 {
    let ms = u64::try_from(until.saturating_sub(now)).unwrap_or(0);
    ms.div_ceil(1000).max(1)
}

impl Session {
    /// Refuses a message from `from` to `to` that the sender's rate or daily budget, or the
    /// recipient's mailbox, has no room for.
    pub(crate) async fn admit_message(&self, from: UserId, to: &Account) -> Result<(), ErrorBody> {
        let limits = &self.shared.config.limits;
        let store = &self.shared.store;
        let now = now_ms();
        let windows = [
            (MINUTE_MS, limits.messages_per_minute, "minute"),
            (DAY_MS, limits.messages_per_day, "24 hours"),
        ];
        for (length, limit, name) in windows {
            let recent = db(store.recent_sends(from, now - length, limit).await)?;
            if recent.count >= u64::from(limit) {
                // The window has room again when the oldest message counted leaves it.
                let free_at = recent.oldest.unwrap_or(now) + length;
                let wait = secs_until(free_at, now);
                let mut body = ErrorBody::with_message(
                    ErrorCode::RateLimited,
                    format!(
                        "you sent {limit} messages in the last {name}, the most this network \
                         allows; the next one fits in {wait} s"
                    ),
                );
                body.retry_after_secs = Some(wait);
                return Err(body);
            }
        }
        let per_sender = limits.max_undelivered_per_sender;
        let total = limits.max_undelivered_per_recipient;
        let waiting = db(store.undelivered_counts(from, to.id, per_sender.max(total)).await)?;
        if waiting.from_sender >= u64::from(per_sender) {
            return Err(ErrorBody::with_message(
                ErrorCode::MailboxFull,
                format!(
                    "{} has {per_sender} messages from you that none of their devices has \
                     received yet, the most that may wait; send more once they come online",
                    to.username
                ),
            ));
        }
        if waiting.total >= u64::from(total) {
            return Err(ErrorBody::with_message(
                ErrorCode::MailboxFull,
                format!(
                    "{}'s mailbox is full: {total} messages wait for them to come online; try \
                     again later",
                    to.username
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a contact request to `to` while as many requests wait for their answer as may.
    pub(crate) async fn admit_pending_request(&self, to: &Account) -> Result<(), ErrorBody> {
        let max = self.shared.config.limits.max_pending_requests;
        let pending = db(self.shared.store.incoming_requests(to.id, max).await)?;
        if pending >= u64::from(max) {
            return Err(ErrorBody::with_message(
                ErrorCode::MailboxFull,
                format!(
                    "{} has {max} contact requests waiting for an answer, the most that may \
                     wait; try again once they answered some",
                    to.username
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a login that would register one device more than an account may have: `key` is
    /// new to the account and it has `limits.max_devices` already. A device the login already
    /// found (`known`: every token login) passes without a read.
    pub(crate) async fn admit_device(
        &self,
        user: UserId,
        key: &[u8; 32],
        known: bool,
    ) -> Result<(), ErrorBody> {
        if known {
            return Ok(());
        }
        let max = self.shared.config.limits.max_devices;
        let devices = db(self.shared.store.devices(user).await)?;
        if devices.iter().any(|d| d.public_key == *key) || devices.len() < max as usize {
            return Ok(());
        }
        Err(ErrorBody::with_message(
            ErrorCode::TooManyDevices,
            format!(
                "this account already has {} devices, the most this network allows; on a device \
                 that is logged in, list them with `peerline devices` and remove one with \
                 `peerline devices remove ID`, then log in here again",
                devices.len()
            ),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use peerline_wire::{
        ChatMessage, Contact, ContactState, Presence, Reply, ServerFrame, UserSummary, encode,
    };

    use super::*;

    /// Characters JSON escapes to six bytes each (`\u0001`): what a stored message could hold
    /// before control characters were refused, and the worst case of any text.
    fn escaped(n: usize) -> String {
        "\u{1}".repeat(n)
    }

    fn message(id: i64, text: String) -> ChatMessage {
        ChatMessage {
            id,
            from: "a".repeat(32),
            to: "b".repeat(32),
            text,
            sent_at: i64::MAX,
            delivered_at: Some(i64::MAX),
            read_at: Some(i64::MAX),
        }
    }

    fn frame(result: Reply) -> usize {
        encode(&ServerFrame::Ok { id: u64::MAX, result }).len()
    }

    #[test]
    fn pages_of_the_worst_messages_fit_a_frame_and_say_more() {
        for text in [escaped(4096), "\"".repeat(4096), "\\".repeat(4096), "é".repeat(2048)] {
            let all: Vec<_> = (0..40).map(|i| message(i, text.clone())).collect();
            let (first, more) = fit_first(all.clone());
            assert!(more && !first.is_empty(), "a page of 40 large messages is cut");
            assert_eq!(first[0].id, 0, "fit_first keeps the oldest");
            let size = frame(Reply::Messages { messages: first.clone(), more });
            assert!(size <= MAX_FRAME_BYTES, "{size} bytes");
            // Nothing more would have fit.
            let one_more = all[..=first.len()].to_vec();
            assert!(frame(Reply::Messages { messages: one_more, more }) > REPLY_ITEMS_BYTES);

            let (last, more) = fit_last(all.clone());
            assert!(more);
            assert_eq!(last.last().unwrap().id, 39, "fit_last keeps the newest");
            assert_eq!(last.len(), first.len());
            assert!(frame(Reply::Messages { messages: last, more }) <= MAX_FRAME_BYTES);
        }
    }

    #[test]
    fn a_page_that_fits_is_kept_whole() {
        let few: Vec<_> = (0..5).map(|i| message(i, "hi".into())).collect();
        assert_eq!(fit_first(few.clone()), (few.clone(), false));
        assert_eq!(fit_last(few.clone()), (few, false));
        let none: Vec<ChatMessage> = Vec::new();
        assert_eq!(fit_first(none.clone()), (none.clone(), false));
        assert_eq!(fit_last(none.clone()), (none, false));
    }

    #[test]
    fn one_item_always_goes_even_alone_over_the_budget() {
        let huge = vec![message(1, "x".repeat(REPLY_ITEMS_BYTES)), message(2, "y".into())];
        let (first, more) = fit_first(huge.clone());
        assert_eq!((first.len(), more), (1, true), "a page always moves on");
        let (last, more) = fit_last(huge);
        assert_eq!((last[0].id, more), (2, true));
    }

    #[test]
    fn pages_of_the_longest_contact_requests_fit_a_frame() {
        let contact = |i: usize| Contact {
            username: format!("{i:0>32}"),
            display_name: escaped(64),
            state: ContactState::Incoming,
            presence: Presence::Offline,
            message: Some(escaped(256)),
        };
        let all: Vec<_> = (0..200).map(contact).collect();
        let (page, more) = fit_first(all);
        assert!(more && page.len() > 10, "{}", page.len());
        assert!(frame(Reply::Contacts { contacts: page, more }) <= MAX_FRAME_BYTES);
    }

    /// Search answers are bounded by count alone (20), and even at their worst that is far
    /// within a frame.
    #[test]
    fn the_worst_search_answer_fits_a_frame() {
        let users = (0..peerline_wire::MAX_SEARCH_RESULTS)
            .map(|i| UserSummary { username: format!("{i:0>32}"), display_name: escaped(64) })
            .collect();
        assert!(frame(Reply::SearchResults { users }) <= MAX_FRAME_BYTES / 4);
    }

    #[test]
    fn waits_are_whole_seconds_of_at_least_one() {
        assert_eq!(secs_until(1_500, 0), 2);
        assert_eq!(secs_until(60_000, 0), 60);
        assert_eq!(secs_until(0, 5_000), 1, "already free: retry at once, after a second");
    }
}
