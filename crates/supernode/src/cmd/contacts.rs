//! Contacts, presence and the directory: `contacts`, `contact_*`, `set_status`, `search`.
//!
//! Both users of a pair have a row about the other; presence and messages need both rows to be
//! `accepted`. A block sets the blocker's row and leaves the blocked user's row alone, so the
//! blocked user learns nothing except that the blocker now looks offline.

use std::time::Instant;

use peerline_store::{Account, ContactRow, ContactSide, UserId};
use peerline_wire::{
    Contact, ContactState, ErrorBody, ErrorCode, Event, MAX_SEARCH_RESULTS, Presence, Reply,
    Status, UserSummary, validate,
};

use crate::session::{Identity, Session, db};
use crate::state::now_ms;

use ContactState::{Accepted, Blocked, Incoming, Outgoing};

fn state(row: &Option<ContactRow>) -> Option<ContactState> {
    row.as_ref().map(|r| r.state)
}

impl Session {
    /// Resolves a username given by this user to an account other than their own.
    async fn other_user(&self, username: &str) -> Result<Account, ErrorBody> {
        let me = self.me()?;
        let name = validate::username(username).map_err(|_| ErrorCode::NoSuchUser)?;
        let account =
            db(self.shared.store.account_by_username(&name).await)?.ok_or(ErrorCode::NoSuchUser)?;
        if account.id == me.user_id {
            return Err(ErrorCode::SelfContact.into());
        }
        Ok(account)
    }

    pub(crate) async fn search(&mut self, query: String) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let conn = self.conn;
        self.shared.with_hub(|h| h.admit_search(conn, Instant::now()))?;
        let query = validate::search_query(&query)?;
        let hits =
            db(self.shared.store.search(&query, me.user_id, MAX_SEARCH_RESULTS as u32).await)?;
        let users = hits
            .into_iter()
            .map(|h| UserSummary { username: h.username, display_name: h.display_name })
            .collect();
        Ok(Reply::SearchResults { users })
    }

    pub(crate) async fn contacts(&mut self) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let entries = db(self.shared.store.contacts(me.user_id).await)?;
        let contacts = self.shared.with_hub(|h| {
            entries
                .into_iter()
                .map(|e| Contact {
                    presence: if e.state == Accepted {
                        h.presence_seen_by(me.user_id, e.peer)
                    } else {
                        Presence::Offline
                    },
                    username: e.username,
                    display_name: e.display_name,
                    state: e.state,
                    message: e.message,
                })
                .collect()
        });
        Ok(Reply::Contacts { contacts })
    }

    pub(crate) async fn contact_add(
        &mut self,
        username: String,
        message: Option<String>,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let greeting = validate::greeting(message.as_deref())?;
        let other = self.other_user(&username).await?;
        let store = self.shared.store.clone();
        let (mine, theirs) = db(store.contact_pair(me.user_id, other.id).await)?;
        match (state(&mine), state(&theirs)) {
            (Some(Accepted), Some(Accepted)) | (Some(Outgoing), _) => {
                Err(ErrorCode::AlreadyContacts.into())
            }
            // They asked first, or still list us: adding them completes the pair.
            (_, Some(Outgoing | Accepted)) => {
                self.make_mutual(&me, &other).await?;
                Ok(Reply::Done)
            }
            // Blocked by them: look as if the request went out, deliver nothing.
            (_, Some(Blocked)) => {
                self.shared.with_hub(|h| h.admit_contact_request(me.user_id, Instant::now()))?;
                self.write_pair(
                    me.user_id,
                    other.id,
                    Some((Outgoing, greeting)),
                    Some((Blocked, None)),
                )
                .await?;
                Ok(Reply::Done)
            }
            _ => {
                self.shared.with_hub(|h| h.admit_contact_request(me.user_id, Instant::now()))?;
                self.write_pair(
                    me.user_id,
                    other.id,
                    Some((Outgoing, greeting.clone())),
                    Some((Incoming, greeting.clone())),
                )
                .await?;
                let me_account =
                    db(store.account_by_id(me.user_id).await)?.ok_or(ErrorCode::Internal)?;
                let event = Event::ContactRequest {
                    username: me.username.clone(),
                    display_name: me_account.display_name,
                    message: greeting,
                };
                self.shared.with_hub(|h| h.send_to_user(other.id, event, None));
                Ok(Reply::Done)
            }
        }
    }

    /// Writes both rows of a pair, durably.
    async fn write_pair(
        &self,
        a: UserId,
        b: UserId,
        a_side: ContactSide,
        b_side: ContactSide,
    ) -> Result<(), ErrorBody> {
        db(self.shared.store.write_contact_pair(a, b, a_side, b_side, now_ms()).await)
    }

    /// Makes a pair mutual, then tells the hub (presence starts flowing) and both users (all
    /// their devices but this one).
    async fn make_mutual(&self, me: &Identity, other: &Account) -> Result<(), ErrorBody> {
        self.write_pair(me.user_id, other.id, Some((Accepted, None)), Some((Accepted, None)))
            .await?;
        let conn = self.conn;
        let (mine, theirs) = (me.username.clone(), other.username.clone());
        self.shared.with_hub(|h| {
            h.link(me.user_id, other.id);
            h.send_to_user(other.id, Event::ContactAccepted { username: mine }, None);
            h.send_to_user(me.user_id, Event::ContactAccepted { username: theirs }, Some(conn));
        });
        Ok(())
    }

    pub(crate) async fn contact_accept(&mut self, username: String) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let other = self.other_user(&username).await?;
        let store = self.shared.store.clone();
        let (mine, theirs) = db(store.contact_pair(me.user_id, other.id).await)?;
        if state(&mine) != Some(Incoming) || state(&theirs) != Some(Outgoing) {
            return Err(ErrorCode::NoPendingRequest.into());
        }
        self.make_mutual(&me, &other).await?;
        Ok(Reply::Done)
    }

    pub(crate) async fn contact_decline(&mut self, username: String) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let other = self.other_user(&username).await?;
        let store = self.shared.store.clone();
        let (mine, _) = db(store.contact_pair(me.user_id, other.id).await)?;
        if state(&mine) != Some(Incoming) {
            return Err(ErrorCode::NoPendingRequest.into());
        }
        // The requester is not told; their request simply disappears.
        self.write_pair(me.user_id, other.id, None, None).await?;
        let conn = self.conn;
        let event = Event::ContactRemoved { username: other.username.clone() };
        self.shared.with_hub(|h| h.send_to_user(me.user_id, event, Some(conn)));
        Ok(Reply::Done)
    }

    pub(crate) async fn contact_remove(&mut self, username: String) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let other = self.other_user(&username).await?;
        let store = self.shared.store.clone();
        let (mine, theirs) = db(store.contact_pair(me.user_id, other.id).await)?;
        if mine.is_none() {
            return Err(ErrorCode::NotContact.into());
        }
        // Their block stays: removing someone who blocked you must not lift it.
        let their_side = match theirs {
            Some(row) if row.state == Blocked => Some((Blocked, None)),
            _ => None,
        };
        let they_blocked = their_side.is_some();
        self.write_pair(me.user_id, other.id, None, their_side).await?;
        let conn = self.conn;
        self.shared.with_hub(|h| {
            h.unlink(me.user_id, other.id);
            if !they_blocked {
                h.send_to_user(
                    other.id,
                    Event::ContactRemoved { username: me.username.clone() },
                    None,
                );
            }
            h.send_to_user(
                me.user_id,
                Event::ContactRemoved { username: other.username.clone() },
                Some(conn),
            );
        });
        Ok(Reply::Done)
    }

    pub(crate) async fn contact_block(&mut self, username: String) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let other = self.other_user(&username).await?;
        let store = self.shared.store.clone();
        let (_, theirs) = db(store.contact_pair(me.user_id, other.id).await)?;
        // Pending requests between the two vanish; an accepted row on their side stays, so
        // they see a contact who is always offline.
        let their_side = match theirs {
            Some(row) if matches!(row.state, Accepted | Blocked) => Some((row.state, None)),
            _ => None,
        };
        self.write_pair(me.user_id, other.id, Some((Blocked, None)), their_side).await?;
        self.shared.with_hub(|h| h.unlink(me.user_id, other.id));
        Ok(Reply::Done)
    }

    pub(crate) async fn set_status(&mut self, status: Status) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        db(self.shared.store.set_status(me.user_id, status).await)?;
        self.shared.with_hub(|h| h.set_status(me.user_id, status));
        Ok(Reply::Done)
    }
}
