//! Contacts, presence and the directory: `contacts`, `contact_*`, `set_status`, `search`.
//!
//! What a contact change does is decided by `peerline_supernode_core::contacts` from the states
//! of the pair; here it is read, written with a compare-and-set, and announced.

use std::time::Instant;

use peerline_store::{Account, ContactRow};
use peerline_supernode_core::contacts::{self, ContactAction, Notice, Transition};
use peerline_wire::{
    Contact, ContactState, ErrorBody, ErrorCode, Event, MAX_SEARCH_RESULTS, Presence, Reply,
    Status, UserSummary, validate,
};
use tracing::warn;

use super::budget::{self, PAGE_ROWS};
use crate::metrics as m;
use crate::session::{Identity, Session, db};
use crate::state::now_ms;

/// How often a contact change is decided again after concurrent changes of the same pair won:
/// each loss means another change committed, so this is only reached under a flood.
const MAX_CONTACT_ATTEMPTS: usize = 16;

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

    /// The contact list after `after`: as many entries as fit in a frame, `more` if it goes on.
    pub(crate) async fn contacts(&mut self, after: Option<String>) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let store = &self.shared.store;
        // One row more than a page holds tells whether the list goes on.
        let mut entries = db(store.contacts(me.user_id, after.as_deref(), PAGE_ROWS + 1).await)?;
        let longer = entries.len() > PAGE_ROWS as usize;
        entries.truncate(PAGE_ROWS as usize);
        let contacts = self.shared.with_hub(|h| {
            entries
                .into_iter()
                .map(|e| Contact {
                    presence: if e.state == ContactState::Accepted {
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
        let (contacts, cut) = budget::fit_first(contacts);
        Ok(Reply::Contacts { contacts, more: cut || longer })
    }

    pub(crate) async fn contact_add(
        &mut self,
        username: String,
        message: Option<String>,
    ) -> Result<Reply, ErrorBody> {
        let greeting = validate::greeting(message.as_deref())?;
        self.change_contact(&username, ContactAction::Add { greeting }).await
    }

    pub(crate) async fn contact_accept(&mut self, username: String) -> Result<Reply, ErrorBody> {
        self.change_contact(&username, ContactAction::Accept).await
    }

    pub(crate) async fn contact_decline(&mut self, username: String) -> Result<Reply, ErrorBody> {
        self.change_contact(&username, ContactAction::Decline).await
    }

    pub(crate) async fn contact_remove(&mut self, username: String) -> Result<Reply, ErrorBody> {
        self.change_contact(&username, ContactAction::Remove).await
    }

    pub(crate) async fn contact_block(&mut self, username: String) -> Result<Reply, ErrorBody> {
        self.change_contact(&username, ContactAction::Block).await
    }

    /// Applies a contact change: read the pair, let the core decide, write with a
    /// compare-and-set on the states read (again from the start if either row changed
    /// meanwhile), then let the hub follow the stored outcome and tell whom the core names.
    async fn change_contact(
        &mut self,
        username: &str,
        action: ContactAction,
    ) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        let other = self.other_user(username).await?;
        let store = self.shared.store.clone();
        let mut charged = false;
        for _ in 0..MAX_CONTACT_ATTEMPTS {
            let (mine, theirs) = db(store.contact_pair(me.user_id, other.id).await)?;
            let read = (state(&mine), state(&theirs));
            let change = contacts::decide(&action, read)?;
            let asks_them = matches!(change.theirs, Some((ContactState::Incoming, _)));
            if asks_them && read.1 != Some(ContactState::Incoming) {
                self.admit_pending_request(&other).await?;
            }
            if change.costs_request && !charged {
                self.shared.with_hub(|h| h.admit_contact_request(me.user_id, Instant::now()))?;
                charged = true;
            }
            let (mine_side, theirs_side) = (change.mine.clone(), change.theirs.clone());
            let written = store
                .update_contact_pair(me.user_id, other.id, read, mine_side, theirs_side, now_ms())
                .await;
            if let Some(version) = db(written)? {
                self.announce_contact_change(&me, &other, &change, version).await?;
                return Ok(Reply::Done);
            }
            // A concurrent change of the pair won; decide again from what it wrote.
            metrics::counter!(m::CONTACT_CONFLICTS).increment(1);
        }
        warn!(user = me.user_id, peer = other.id, "a contact change kept losing to others");
        let mut body = ErrorBody::new(ErrorCode::Unavailable);
        body.retry_after_secs = Some(1);
        Err(body)
    }

    /// After a stored change: the hub follows the rows as of `version`, and the core's notice
    /// goes out (to the other user's devices, and to mine but the one that asked).
    async fn announce_contact_change(
        &self,
        me: &Identity,
        other: &Account,
        change: &Transition,
        version: i64,
    ) -> Result<(), ErrorBody> {
        let request_event = match &change.notice {
            Notice::Request(greeting) => {
                let account = db(self.shared.store.account_by_id(me.user_id).await)?
                    .ok_or(ErrorCode::Internal)?;
                Some(Event::ContactRequest {
                    username: me.username.clone(),
                    display_name: account.display_name,
                    message: greeting.clone(),
                })
            }
            _ => None,
        };
        let conn = self.conn;
        let (mine, theirs) = (me.username.clone(), other.username.clone());
        self.shared.with_hub(|h| {
            h.set_link(me.user_id, other.id, change.mutual(), version, Instant::now());
            match &change.notice {
                Notice::None => {}
                Notice::Request(_) => {
                    if let Some(event) = request_event {
                        h.send_to_user(other.id, event, None);
                    }
                }
                Notice::Accepted => {
                    h.send_to_user(other.id, Event::ContactAccepted { username: mine }, None);
                    h.send_to_user(
                        me.user_id,
                        Event::ContactAccepted { username: theirs },
                        Some(conn),
                    );
                }
                Notice::Declined => {
                    h.send_to_user(other.id, Event::ContactDeclined { username: mine }, None);
                    h.send_to_user(
                        me.user_id,
                        Event::ContactRemoved { username: theirs },
                        Some(conn),
                    );
                }
                Notice::Removed { tell_them } => {
                    if *tell_them {
                        h.send_to_user(other.id, Event::ContactRemoved { username: mine }, None);
                    }
                    h.send_to_user(
                        me.user_id,
                        Event::ContactRemoved { username: theirs },
                        Some(conn),
                    );
                }
            }
        });
        Ok(())
    }

    pub(crate) async fn set_status(&mut self, status: Status) -> Result<Reply, ErrorBody> {
        let me = self.me()?.clone();
        db(self.shared.store.set_status(me.user_id, status).await)?;
        self.shared.with_hub(|h| h.set_status(me.user_id, status));
        Ok(Reply::Done)
    }
}
