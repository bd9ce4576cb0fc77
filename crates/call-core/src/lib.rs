//! The call policy of a Peerline client, without IO: one [`Call`] state machine per call, from
//! the dial (or the incoming invite) to its one end.
//!
//! Like str0m's `Rtc` and the supernode's hub, a [`Call`] never touches a socket, a file or a
//! clock. Its driver (`peerline-call`) feeds it what happened — supernode events
//! ([`Call::handle_event`]), media events ([`Call::handle_media`]), the results of the work it
//! asked for ([`Call::handle_result`]), the user's hang-up ([`Call::hang_up`]), a lost supernode
//! connection ([`Call::signaling_lost`]) and the time ([`Call::handle_timeout`]) — and carries
//! out what it asks for ([`Call::poll_action`]) until [`Action::End`], waking it at
//! [`Call::poll_timeout`].
//!
//! Every decision lives here:
//! - setup ([`setup`]): the caller's dial → ringing → answered with early candidates and a ring
//!   guard, busy and unavailable callees; the callee's verify → accept, declining when
//!   verification fails, answered elsewhere; every signed fingerprint checked ([`verify`]);
//! - the call itself ([`talk`]): connect and lost-path timers, stall detection, the lost
//!   supernode and its resume window, waiting for `call_ended` after the peer closed the media;
//! - ICE restarts ([`restart`]): only the caller offers, offers are spaced and never cross, an
//!   unanswered offer is sent again unchanged, a moved address or a dead relay gathers anew.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod call;
mod config;
mod interface;
mod ops;
pub mod restart;
pub mod setup;
pub mod talk;
pub mod verify;

pub use call::Call;
pub(crate) use call::Purpose;
pub use config::CallConfig;
pub use interface::{
    Action, CallEnd, Dial, Failure, Invite, MediaInput, OpId, OpResult, Outcome, Progress,
    SetupTimings, Side, Step,
};
pub(crate) use ops::Ops;
pub use verify::{KeyCheck, PeerClaim};
