//! [`Ops`]: what the setup and restart policies use to queue work on their call — operation
//! ids, the action queue and the call's identity — borrowed apart from the rest of the call.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use peerline_wire::Request;

use crate::call::Purpose;
use crate::{Action, CallConfig, OpId, Progress, Step};

/// The part of a [`Call`] that setup and restart steps use to queue work: operation ids and
/// the action queue, with the call's identity.
pub(crate) struct Ops<'a> {
    pub(crate) next_op: &'a mut u64,
    pub(crate) ops: &'a mut HashMap<OpId, Purpose>,
    pub(crate) actions: &'a mut VecDeque<Action>,
    pub(crate) call_id: &'a str,
    pub(crate) me: &'a str,
    pub(crate) started: Instant,
    pub(crate) config: &'a CallConfig,
}

impl Ops<'_> {
    fn op(&mut self, purpose: Purpose) -> OpId {
        let id = OpId(*self.next_op);
        *self.next_op += 1;
        self.ops.insert(id, purpose);
        id
    }

    pub(crate) fn send(&mut self, request: Request, purpose: Purpose) -> OpId {
        let op = self.op(purpose);
        self.actions.push_back(Action::Send { op, request });
        op
    }

    /// An id for a failure that has no operation of its own: nothing awaits a result for it.
    pub(crate) fn failure(&mut self) -> OpId {
        let id = OpId(*self.next_op);
        *self.next_op += 1;
        id
    }

    pub(crate) fn run(&mut self, step: Step, purpose: Purpose) -> OpId {
        let op = self.op(purpose);
        self.actions.push_back(Action::Run { op, step });
        op
    }

    pub(crate) fn progress(&mut self, progress: Progress) {
        self.actions.push_back(Action::Progress(progress));
    }

    /// Sends this side's candidates to the peer, each awaited for `purpose`.
    pub(crate) fn trickle(&mut self, lines: Vec<String>, purpose: Purpose) {
        for candidate in lines {
            let request = Request::CallCandidate { call_id: self.call_id.to_owned(), candidate };
            self.send(request, purpose.clone());
        }
    }
}
