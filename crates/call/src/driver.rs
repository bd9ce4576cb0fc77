//! The tokio driver around one [`Call`]: it waits for the supernode, the media, the user and
//! the core's timer, feeds what happened to the core, and carries out the core's actions in
//! order until [`Action::End`]. No decision is made here, and no IO either: the IO is a
//! [`CallIo`] ([`crate::live::Live`] in real calls, a scripted world in the driver's tests, which
//! run under `tokio::time::pause()`).

use std::future::Future;
use std::time::Duration;

use peerline_call_core::{Action, Call, Failure, MediaInput, OpId, OpResult, Outcome, Step};
use peerline_media::{CallStats, SelectedPath};
use peerline_wire::{Event, Request};
use tracing::warn;

use crate::{CallError, CallPath, CallProgress, CallSummary, now};

/// What the IO around a call brings in.
#[derive(Debug)]
pub(crate) enum Input {
    /// A supernode event; `None` when the connection closed.
    Signaling(Option<Event>),
    /// News from the media.
    Media(MediaInput),
}

/// The IO a [`Driver`] carries out for its core: the supernode, the media and the steps.
pub(crate) trait CallIo {
    /// Sends a request; no answer within `limit` is [`OpResult::Broken`].
    fn request(
        &mut self,
        op: OpId,
        request: Request,
        limit: Duration,
    ) -> impl Future<Output = OpResult>;
    /// Carries out a step for `call`, bounded in time.
    fn step(&mut self, op: OpId, step: Step, call: &Call) -> impl Future<Output = OpResult>;
    /// Starts the media with the peer's candidates so far.
    fn start_media(&mut self, remote_candidates: Vec<String>);
    /// Hands a peer candidate to the running media.
    fn remote_candidate(&mut self, line: String);
    /// Asks the running media to stop (its end comes as [`MediaInput::Ended`]).
    fn stop_media(&mut self);
    /// The next input. Cancel-safe: dropped when the user or a timer comes first. Supernode
    /// events are waited for only with `signaling`.
    fn next(&mut self, signaling: bool) -> impl Future<Output = Result<Input, CallError>>;
    /// Stops the media if it still runs and returns its counters.
    fn finish(&mut self) -> impl Future<Output = Option<CallStats>>;
    /// The path as the user sees it.
    fn path(&self, selected: SelectedPath) -> CallPath;
    /// The error behind a failed operation.
    fn error(&mut self, op: OpId) -> CallError;
}

/// One call's driver.
pub(crate) struct Driver<I> {
    call: Call,
    io: I,
}

impl<I: CallIo> Driver<I> {
    pub(crate) fn new(call: Call, io: I) -> Self {
        Driver { call, io }
    }

    /// Runs the call to its end.
    pub(crate) async fn run(
        mut self,
        stop: impl Future<Output = ()>,
        progress: &mut (dyn FnMut(CallProgress) + Send),
    ) -> Result<CallSummary, CallError> {
        tokio::pin!(stop);
        let mut hung_up = false;
        loop {
            if let Some(outcome) = self.act(progress).await {
                return self.finish(outcome).await;
            }
            let timeout = self.call.poll_timeout();
            let signaling = self.call.signaling_up();
            tokio::select! {
                () = &mut stop, if !hung_up => {
                    hung_up = true;
                    self.call.hang_up(now());
                }
                input = self.io.next(signaling) => match input? {
                    // Often because this side's address changed; the media is peer to peer
                    // and goes on while the core decides.
                    Input::Signaling(None) => {
                        warn!("lost the supernode connection during the call");
                        self.call.signaling_lost(now());
                    }
                    Input::Signaling(Some(event)) => self.call.handle_event(event, now()),
                    Input::Media(input) => self.call.handle_media(input, now()),
                },
                () = sleep_until(timeout) => self.call.handle_timeout(now()),
            }
        }
    }

    /// Carries out what the core asked for; returns the outcome once it ended.
    async fn act(&mut self, progress: &mut (dyn FnMut(CallProgress) + Send)) -> Option<Outcome> {
        while let Some(action) = self.call.poll_action() {
            match action {
                Action::Send { op, request } => {
                    let limit = self.call.config().step_timeout;
                    let result = self.io.request(op, request, limit).await;
                    self.call.handle_result(op, result, now());
                }
                Action::Run { op, step } => {
                    let result = self.io.step(op, step, &self.call).await;
                    self.call.handle_result(op, result, now());
                }
                Action::StartMedia { remote_candidates } => self.io.start_media(remote_candidates),
                Action::RemoteCandidate(line) => self.io.remote_candidate(line),
                Action::StopMedia => self.io.stop_media(),
                Action::Progress(p) => progress(p.map_path(|selected| self.io.path(selected))),
                Action::End(outcome) => return Some(outcome),
            }
        }
        None
    }

    /// Builds the summary, or the error, of the call's end.
    async fn finish(mut self, outcome: Outcome) -> Result<CallSummary, CallError> {
        let stats = self.io.finish().await;
        let end = match outcome {
            Ok(end) => end,
            Err(Failure::BadSignature { peer, device_id }) => {
                return Err(CallError::BadSignature { peer, device_id });
            }
            Err(Failure::Op(op)) => return Err(self.io.error(op)),
        };
        let selected = self.call.path().or(stats.as_ref().and_then(|s| s.selected_path));
        Ok(CallSummary {
            call_id: self.call.call_id().to_owned(),
            peer: self.call.peer().to_owned(),
            timings: self.call.timings(),
            path: selected.map(|p| self.io.path(p)),
            end,
            media: stats,
        })
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
