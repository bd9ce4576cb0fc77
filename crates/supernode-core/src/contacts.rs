//! Contact changes as a pure function of the pair's states.
//!
//! Each user of a pair has a row about the other (or none). A request handler reads both rows,
//! asks [`decide`] what the change makes of them, and writes the result with a compare-and-set
//! on the states it read; if either row changed meanwhile it reads and decides again. So every
//! change is decided from the states it replaces, and of two conflicting changes (a block and a
//! re-add) the one that commits second sees the first: a block always wins.
//!
//! Presence and messages need both rows `accepted`. A block sets the blocker's row and keeps the
//! blocked user's row only if it was `accepted` (or a block of their own), so the blocked user
//! learns nothing except that the blocker now looks offline.

use peerline_wire::{ContactState, ErrorCode};

use ContactState::{Accepted, Blocked, Incoming, Outgoing};

/// What to write for one side of a pair: `None` deletes the row.
pub type Side = Option<(ContactState, Option<String>)>;

/// The states of a pair as read: `(mine, theirs)`, `None` for a missing row.
pub type States = (Option<ContactState>, Option<ContactState>);

/// A contact change asked for by the user on one side ("me") about the other ("them").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactAction {
    /// Ask them to be contacts (or complete the pair if they asked first).
    Add {
        /// The greeting shown with the request.
        greeting: Option<String>,
    },
    /// Accept their pending request.
    Accept,
    /// Refuse their pending request; they are told once (`contact_declined`).
    Decline,
    /// Remove them (a block of theirs stays).
    Remove,
    /// Block them: no presence, messages or calls either way; they are not told.
    Block,
}

/// Who hears of a change (besides the hub, which follows the stored rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Nobody.
    None,
    /// They get a contact request with this greeting.
    Request(Option<String>),
    /// The pair is mutual now: both users hear `contact_accepted` (all their devices but the
    /// one that asked).
    Accepted,
    /// I declined their request: they hear `contact_declined`, my other devices
    /// `contact_removed`.
    Declined,
    /// My other devices hear `contact_removed`; with `tell_them`, they do too.
    Removed {
        /// Whether they are told (not when they blocked me).
        tell_them: bool,
    },
}

/// What a change writes, and who hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// My row about them.
    pub mine: Side,
    /// Their row about me.
    pub theirs: Side,
    /// Whether it counts against my daily contact-request quota.
    pub costs_request: bool,
    /// Who is told.
    pub notice: Notice,
}

impl Transition {
    /// Whether the pair is mutual after the change.
    pub fn mutual(&self) -> bool {
        matches!((&self.mine, &self.theirs), (Some((Accepted, _)), Some((Accepted, _))))
    }
}

fn mutual() -> Transition {
    Transition {
        mine: Some((Accepted, None)),
        theirs: Some((Accepted, None)),
        costs_request: false,
        notice: Notice::Accepted,
    }
}

/// What `action` makes of a pair in the states `(mine, theirs)`, or why it is refused.
pub fn decide(action: &ContactAction, (mine, theirs): States) -> Result<Transition, ErrorCode> {
    match action {
        ContactAction::Add { greeting } => match (mine, theirs) {
            (Some(Accepted), Some(Accepted)) | (Some(Outgoing), _) => {
                Err(ErrorCode::AlreadyContacts)
            }
            // They asked first, or still list us: adding them completes the pair.
            (_, Some(Outgoing | Accepted)) => Ok(mutual()),
            // Blocked by them: look as if the request went out, deliver nothing.
            (_, Some(Blocked)) => Ok(Transition {
                mine: Some((Outgoing, greeting.clone())),
                theirs: Some((Blocked, None)),
                costs_request: true,
                notice: Notice::None,
            }),
            _ => Ok(Transition {
                mine: Some((Outgoing, greeting.clone())),
                theirs: Some((Incoming, greeting.clone())),
                costs_request: true,
                notice: Notice::Request(greeting.clone()),
            }),
        },
        ContactAction::Accept => match (mine, theirs) {
            (Some(Incoming), Some(Outgoing)) => Ok(mutual()),
            _ => Err(ErrorCode::NoPendingRequest),
        },
        ContactAction::Decline => match mine {
            // The requester is told, instead of waiting for an answer that never comes (but not
            // when they blocked me meanwhile: a block of theirs stays, and they hear nothing).
            Some(Incoming) => Ok(Transition {
                mine: None,
                theirs: keep_block(theirs),
                costs_request: false,
                notice: if theirs == Some(Blocked) {
                    Notice::Removed { tell_them: false }
                } else {
                    Notice::Declined
                },
            }),
            _ => Err(ErrorCode::NoPendingRequest),
        },
        ContactAction::Remove => match mine {
            None => Err(ErrorCode::NotContact),
            // Their block stays: removing someone who blocked you must not lift it.
            Some(_) => Ok(Transition {
                mine: None,
                theirs: keep_block(theirs),
                costs_request: false,
                notice: Notice::Removed { tell_them: theirs != Some(Blocked) },
            }),
        },
        // Pending requests between the two vanish; an accepted row on their side stays, so they
        // see a contact who is always offline.
        ContactAction::Block => Ok(Transition {
            mine: Some((Blocked, None)),
            theirs: match theirs {
                Some(state @ (Accepted | Blocked)) => Some((state, None)),
                _ => None,
            },
            costs_request: false,
            notice: Notice::None,
        }),
    }
}

/// Their row after I delete mine: only a block of theirs survives.
fn keep_block(theirs: Option<ContactState>) -> Side {
    (theirs == Some(Blocked)).then_some((Blocked, None))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ALL: [Option<ContactState>; 5] =
        [None, Some(Accepted), Some(Incoming), Some(Outgoing), Some(Blocked)];

    fn actions() -> Vec<ContactAction> {
        vec![
            ContactAction::Add { greeting: Some("hi".into()) },
            ContactAction::Accept,
            ContactAction::Decline,
            ContactAction::Remove,
            ContactAction::Block,
        ]
    }

    fn states(t: &Transition) -> States {
        (t.mine.as_ref().map(|s| s.0), t.theirs.as_ref().map(|s| s.0))
    }

    #[test]
    fn a_request_then_an_accept_makes_a_mutual_pair() {
        let add = ContactAction::Add { greeting: Some("hi".into()) };
        let t = decide(&add, (None, None)).unwrap();
        assert_eq!(states(&t), (Some(Outgoing), Some(Incoming)));
        assert_eq!(t.notice, Notice::Request(Some("hi".into())));
        assert!(t.costs_request);
        // From bob's side now: his row is incoming, alice's outgoing.
        let t = decide(&ContactAction::Accept, (Some(Incoming), Some(Outgoing))).unwrap();
        assert!(t.mutual());
        assert_eq!(t.notice, Notice::Accepted);
    }

    #[test]
    fn adding_someone_who_asked_first_completes_the_pair_without_a_quota() {
        let add = ContactAction::Add { greeting: None };
        let t = decide(&add, (Some(Incoming), Some(Outgoing))).unwrap();
        assert!(t.mutual());
        assert!(!t.costs_request);
        // They still list me (I removed them): adding them back is mutual at once.
        assert!(decide(&add, (None, Some(Accepted))).unwrap().mutual());
    }

    #[test]
    fn a_request_to_someone_who_blocked_me_looks_sent_and_delivers_nothing() {
        let add = ContactAction::Add { greeting: Some("let me in".into()) };
        let t = decide(&add, (None, Some(Blocked))).unwrap();
        assert_eq!(states(&t), (Some(Outgoing), Some(Blocked)));
        assert_eq!(t.notice, Notice::None);
        assert!(t.costs_request, "counts as a request, as it looks like one");
    }

    #[test]
    fn a_block_survives_every_action_of_the_blocked_user() {
        // Bob blocked alice; whatever alice (here "me") does, bob's row stays blocked.
        for mine in ALL {
            for action in actions() {
                if let Ok(t) = decide(&action, (mine, Some(Blocked))) {
                    assert_eq!(
                        t.theirs,
                        Some((Blocked, None)),
                        "{action:?} from {mine:?} lifted their block"
                    );
                    assert!(!t.mutual());
                    assert!(
                        !matches!(t.notice, Notice::Request(_) | Notice::Accepted),
                        "{action:?} told the blocker something"
                    );
                }
            }
        }
    }

    #[test]
    fn a_block_keeps_only_their_accepted_or_blocked_row() {
        for theirs in ALL {
            let t = decide(&ContactAction::Block, (Some(Accepted), theirs)).unwrap();
            assert_eq!(t.mine, Some((Blocked, None)));
            let kept = t.theirs.map(|s| s.0);
            match theirs {
                Some(Accepted | Blocked) => assert_eq!(kept, theirs),
                _ => assert_eq!(kept, None, "a pending request of theirs vanishes"),
            }
            assert_eq!(t.notice, Notice::None, "the blocked user is not told");
        }
    }

    #[test]
    fn refusals_name_the_reason() {
        let add = ContactAction::Add { greeting: None };
        assert_eq!(decide(&add, (Some(Accepted), Some(Accepted))), Err(ErrorCode::AlreadyContacts));
        assert_eq!(decide(&add, (Some(Outgoing), None)), Err(ErrorCode::AlreadyContacts));
        assert_eq!(decide(&ContactAction::Accept, (None, None)), Err(ErrorCode::NoPendingRequest));
        assert_eq!(
            decide(&ContactAction::Accept, (Some(Incoming), None)),
            Err(ErrorCode::NoPendingRequest),
            "their request was withdrawn"
        );
        assert_eq!(decide(&ContactAction::Decline, (None, None)), Err(ErrorCode::NoPendingRequest));
        assert_eq!(
            decide(&ContactAction::Remove, (None, Some(Accepted))),
            Err(ErrorCode::NotContact)
        );
    }

    #[test]
    fn removing_tells_them_unless_they_blocked_me() {
        let t = decide(&ContactAction::Remove, (Some(Accepted), Some(Accepted))).unwrap();
        assert_eq!(states(&t), (None, None));
        assert_eq!(t.notice, Notice::Removed { tell_them: true });
        let t = decide(&ContactAction::Remove, (Some(Accepted), Some(Blocked))).unwrap();
        assert_eq!(states(&t), (None, Some(Blocked)));
        assert_eq!(t.notice, Notice::Removed { tell_them: false });
    }

    #[test]
    fn declining_tells_the_requester_unless_they_blocked_me() {
        let t = decide(&ContactAction::Decline, (Some(Incoming), Some(Outgoing))).unwrap();
        assert_eq!(states(&t), (None, None));
        assert_eq!(t.notice, Notice::Declined);
        let t = decide(&ContactAction::Decline, (Some(Incoming), Some(Blocked))).unwrap();
        assert_eq!(states(&t), (None, Some(Blocked)));
        assert_eq!(t.notice, Notice::Removed { tell_them: false });
    }

    #[test]
    fn mutual_only_from_accept_or_completing_add() {
        for mine in ALL {
            for theirs in ALL {
                for action in actions() {
                    if let Ok(t) = decide(&action, (mine, theirs)) {
                        let completes = matches!(action, ContactAction::Accept)
                            || matches!(
                                (&action, theirs),
                                (ContactAction::Add { .. }, Some(Outgoing | Accepted))
                            );
                        assert_eq!(t.mutual(), completes, "{action:?} on {mine:?}/{theirs:?}");
                        assert_eq!(t.mutual(), t.notice == Notice::Accepted);
                    }
                }
            }
        }
    }
}
