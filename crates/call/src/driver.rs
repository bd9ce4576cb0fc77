//! The tokio driver around one [`Call`]: it waits for the supernode, the media, the user and
//! the core's timer, feeds what happened to the core, and carries out the core's actions in
//! order until [`Action::End`]. No decision is made here.

use std::collections::HashMap;
use std::future::Future;

use ed25519_dalek::SigningKey;
use peerline_call_core::{Action, Call, Failure, MediaInput, OpId, OpResult, Outcome};
use peerline_client::{Client, ClientError};
use peerline_media::lossy::LossySocket;
use peerline_media::{
    AudioSink, AudioSource, CallMedia, CallStats, Control, MediaError, MediaEvent, RunOptions,
    run_media,
};
use peerline_nat::{CallSocket, Gathered};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::{CallError, CallOptions, CallProgress, CallSummary, MEDIA_STOP, now};

/// The media of a call: set up by the core's steps, then running in its own task.
pub(crate) enum MediaSlot<Src, Snk> {
    /// Not started: the session and the audio ends wait.
    Idle { media: Box<CallMedia>, source: Src, sink: Snk },
    /// Running in a task.
    Running {
        control: mpsc::Sender<Control<CallSocket>>,
        candidates: mpsc::Sender<String>,
        stop: Option<oneshot::Sender<()>>,
    },
    /// Over.
    Done,
}

/// One call's driver.
pub(crate) struct Driver<'a, Src, Snk> {
    pub(crate) client: &'a mut Client,
    pub(crate) call: Call,
    pub(crate) media: MediaSlot<Src, Snk>,
    pub(crate) gathered: Gathered,
    pub(crate) options: CallOptions,
    pub(crate) key: SigningKey,
    pub(crate) me: String,
    /// Errors behind failed operations, for [`Failure::Op`].
    pub(crate) errors: HashMap<OpId, CallError>,
    task: Option<JoinHandle<Result<CallStats, MediaError>>>,
    events: Option<mpsc::Receiver<MediaEvent>>,
    stats: Option<CallStats>,
}

impl<'a, Src, Snk> Driver<'a, Src, Snk>
where
    Src: AudioSource + 'static,
    Snk: AudioSink + 'static,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: &'a mut Client,
        call: Call,
        media: Box<CallMedia>,
        gathered: Gathered,
        source: Src,
        sink: Snk,
        options: CallOptions,
        key: SigningKey,
        me: String,
    ) -> Self {
        Driver {
            client,
            call,
            media: MediaSlot::Idle { media, source, sink },
            gathered,
            options,
            key,
            me,
            errors: HashMap::new(),
            task: None,
            events: None,
            stats: None,
        }
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
            if let Some(outcome) = self.act(progress).await? {
                return self.finish(outcome).await;
            }
            let timeout = self.call.poll_timeout();
            let signaling = self.call.signaling_up();
            tokio::select! {
                () = &mut stop, if !hung_up => {
                    hung_up = true;
                    self.call.hang_up(now());
                }
                event = self.client.next_event(), if signaling => match event {
                    // Often because this side's address changed; the media is peer to peer
                    // and goes on while the core decides.
                    None => {
                        warn!("lost the supernode connection during the call");
                        self.call.signaling_lost(now());
                    }
                    Some(event) => self.call.handle_event(event, now()),
                },
                Some(event) = next_media_event(&mut self.events) => {
                    self.call.handle_media(MediaInput::Event(event), now());
                }
                result = media_done(&mut self.task) => {
                    self.task = None;
                    self.media = MediaSlot::Done;
                    let stats = result.map_err(|e| CallError::Task(e.to_string()))??;
                    // Events the media sent before it ended come first.
                    while let Some(event) = self.events.as_mut().and_then(|rx| rx.try_recv().ok()) {
                        self.call.handle_media(MediaInput::Event(event), now());
                    }
                    let end = stats.end;
                    self.stats = Some(stats);
                    self.call.handle_media(MediaInput::Ended(end), now());
                }
                () = sleep_until(timeout) => self.call.handle_timeout(now()),
            }
        }
    }

    /// Carries out what the core asked for; returns the outcome once it ended.
    async fn act(
        &mut self,
        progress: &mut (dyn FnMut(CallProgress) + Send),
    ) -> Result<Option<Outcome>, CallError> {
        while let Some(action) = self.call.poll_action() {
            match action {
                Action::Send { op, request } => {
                    let result = self.request(op, request).await;
                    self.call.handle_result(op, result, now());
                }
                Action::Run { op, step } => {
                    let result = self.step(op, step).await;
                    self.call.handle_result(op, result, now());
                }
                Action::StartMedia { remote_candidates } => self.start_media(remote_candidates),
                Action::RemoteCandidate(line) => {
                    if let MediaSlot::Running { candidates, .. } = &self.media {
                        let _ = candidates.try_send(line);
                    }
                }
                Action::StopMedia => self.stop_media(),
                Action::Progress(p) => {
                    progress(p.map_path(|selected| self.gathered.path(selected)))
                }
                Action::End(outcome) => return Ok(Some(outcome)),
            }
        }
        Ok(None)
    }

    /// Sends a request for the core, bounded by its step time.
    async fn request(&mut self, op: OpId, request: peerline_wire::Request) -> OpResult {
        let limit = self.call.config().step_timeout;
        match tokio::time::timeout(limit, self.client.request(request)).await {
            Ok(Ok(reply)) => OpResult::Reply(reply),
            Ok(Err(e)) => {
                let result = refusal(&e);
                debug!(error = %e, "request failed");
                self.errors.insert(op, e.into());
                result
            }
            Err(_) => {
                self.errors.insert(op, ClientError::TimedOut.into());
                OpResult::Broken
            }
        }
    }

    /// Starts the media task with the sockets gathered so far.
    fn start_media(&mut self, remote_candidates: Vec<String>) {
        let MediaSlot::Idle { media, source, sink } =
            std::mem::replace(&mut self.media, MediaSlot::Done)
        else {
            return;
        };
        let (candidates_tx, candidates_rx) = mpsc::channel(128);
        for line in remote_candidates {
            let _ = candidates_tx.try_send(line);
        }
        let (events_tx, events_rx) = mpsc::channel(64);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let stopped = async {
            let _ = stop_rx.await;
        };
        let (control_tx, control_rx) = mpsc::channel(8);
        let sockets = std::mem::take(&mut self.gathered.sockets);
        let options = RunOptions {
            remote_candidates: Some(candidates_rx),
            events: Some(events_tx),
            control: Some(control_rx),
            ..RunOptions::default()
        };
        let task = match self.options.impair_sending {
            None => tokio::spawn(run_media(sockets, *media, source, sink, stopped, options)),
            Some(impairment) => {
                let lossy: Vec<LossySocket<CallSocket>> = sockets
                    .into_iter()
                    .map(|s| LossySocket::new(s, impairment, rand::random()))
                    .collect();
                let options = RunOptions {
                    remote_candidates: options.remote_candidates,
                    events: options.events,
                    ..RunOptions::default()
                };
                tokio::spawn(run_media(lossy, *media, source, sink, stopped, options))
            }
        };
        self.task = Some(task);
        self.events = Some(events_rx);
        self.media = MediaSlot::Running {
            control: control_tx,
            candidates: candidates_tx,
            stop: Some(stop_tx),
        };
    }

    /// Asks the running media to stop (once).
    fn stop_media(&mut self) {
        if let MediaSlot::Running { stop, .. } = &mut self.media
            && let Some(stop) = stop.take()
        {
            let _ = stop.send(());
        }
    }

    /// Builds the summary, or the error, of the call's end.
    async fn finish(mut self, outcome: Outcome) -> Result<CallSummary, CallError> {
        if let Some(task) = self.task.take() {
            // The core ends with the media still running only when the media is moot (an
            // error): stop it and keep its counters.
            self.stop_media();
            match tokio::time::timeout(MEDIA_STOP, task).await {
                Ok(Ok(Ok(stats))) => self.stats = Some(stats),
                other => debug!(?other, "the media did not stop cleanly"),
            }
        }
        let end = match outcome {
            Ok(end) => end,
            Err(Failure::BadSignature { peer, device_id }) => {
                return Err(CallError::BadSignature { peer, device_id });
            }
            Err(Failure::Op(op)) => {
                return Err(self.errors.remove(&op).unwrap_or(ClientError::Closed(None).into()));
            }
        };
        let selected = self.call.path().or(self.stats.as_ref().and_then(|s| s.selected_path));
        Ok(CallSummary {
            call_id: self.call.call_id().to_owned(),
            peer: self.call.peer().to_owned(),
            timings: self.call.timings(),
            path: selected.map(|p| self.gathered.path(p)),
            end,
            media: self.stats,
        })
    }
}

/// What a failed request means to the core: the supernode's refusal, or a broken connection
/// when no answer came.
pub(crate) fn refusal(error: &ClientError) -> OpResult {
    match error.code() {
        Some(code) => OpResult::Refused(code),
        None => OpResult::Broken,
    }
}

/// The next media event; never resolves without a channel or once it closed.
async fn next_media_event(events: &mut Option<mpsc::Receiver<MediaEvent>>) -> Option<MediaEvent> {
    match events {
        Some(rx) => match rx.recv().await {
            Some(event) => Some(event),
            None => {
                *events = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// The media task's end; never resolves without a task.
async fn media_done(
    task: &mut Option<JoinHandle<Result<CallStats, MediaError>>>,
) -> Result<Result<CallStats, MediaError>, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
