//! The real IO of a call ([`CallIo`]): the supernode connection, the media task on the gathered
//! sockets, and the errors behind failed operations. The steps themselves are in
//! [`crate::steps`].

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use peerline_call_core::{Call, MediaInput, OpId, OpResult, Step};
use peerline_client::{Client, ClientError};
use peerline_media::lossy::LossySocket;
use peerline_media::{
    AudioSink, AudioSource, CallMedia, CallStats, Control, MediaError, MediaEvent, RunOptions,
    SelectedPath, run_media,
};
use peerline_nat::{CallSocket, Gathered};
use peerline_wire::Request;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::driver::{CallIo, Input};
use crate::{CallError, CallOptions, CallPath, MEDIA_STOP};

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

/// A call's IO on a real supernode connection, real sockets and real audio ends.
pub(crate) struct Live<'a, Src, Snk> {
    pub(crate) client: &'a mut Client,
    pub(crate) media: MediaSlot<Src, Snk>,
    pub(crate) gathered: Gathered,
    pub(crate) options: CallOptions,
    pub(crate) key: SigningKey,
    pub(crate) me: String,
    /// Errors behind failed operations, for [`peerline_call_core::Failure::Op`].
    pub(crate) errors: HashMap<OpId, CallError>,
    task: Option<JoinHandle<Result<CallStats, MediaError>>>,
    events: Option<mpsc::Receiver<MediaEvent>>,
    /// Inputs already taken from the media, to hand out one at a time.
    pending: VecDeque<Input>,
    stats: Option<CallStats>,
}

impl<'a, Src, Snk> Live<'a, Src, Snk>
where
    Src: AudioSource + 'static,
    Snk: AudioSink + 'static,
{
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: &'a mut Client,
        media: Box<CallMedia>,
        gathered: Gathered,
        source: Src,
        sink: Snk,
        options: CallOptions,
        key: SigningKey,
        me: String,
    ) -> Self {
        Live {
            client,
            media: MediaSlot::Idle { media, source, sink },
            gathered,
            options,
            key,
            me,
            errors: HashMap::new(),
            task: None,
            events: None,
            pending: VecDeque::new(),
            stats: None,
        }
    }

    /// The media task ended: the events it sent before come first, then its end.
    fn media_ended(&mut self, stats: CallStats) {
        while let Some(event) = self.events.as_mut().and_then(|rx| rx.try_recv().ok()) {
            self.pending.push_back(Input::Media(MediaInput::Event(event)));
        }
        self.pending.push_back(Input::Media(MediaInput::Ended(stats.end)));
        self.stats = Some(stats);
    }
}

impl<Src, Snk> CallIo for Live<'_, Src, Snk>
where
    Src: AudioSource + 'static,
    Snk: AudioSink + 'static,
{
    async fn request(&mut self, op: OpId, request: Request, limit: Duration) -> OpResult {
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

    async fn step(&mut self, op: OpId, step: Step, call: &Call) -> OpResult {
        self.run_step(op, step, call).await
    }

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

    fn remote_candidate(&mut self, line: String) {
        if let MediaSlot::Running { candidates, .. } = &self.media {
            let _ = candidates.try_send(line);
        }
    }

    fn stop_media(&mut self) {
        if let MediaSlot::Running { stop, .. } = &mut self.media
            && let Some(stop) = stop.take()
        {
            let _ = stop.send(());
        }
    }

    async fn next(&mut self, signaling: bool) -> Result<Input, CallError> {
        loop {
            if let Some(input) = self.pending.pop_front() {
                return Ok(input);
            }
            tokio::select! {
                event = self.client.next_event(), if signaling => {
                    return Ok(Input::Signaling(event));
                }
                Some(event) = next_media_event(&mut self.events) => {
                    return Ok(Input::Media(MediaInput::Event(event)));
                }
                result = media_done(&mut self.task) => {
                    self.task = None;
                    self.media = MediaSlot::Done;
                    let stats = result.map_err(|e| CallError::Task(e.to_string()))??;
                    self.media_ended(stats);
                }
            }
        }
    }

    async fn finish(&mut self) -> Option<CallStats> {
        if let Some(task) = self.task.take() {
            // The core ends with the media still running only when the media is moot (an
            // error): stop it and keep its counters.
            self.stop_media();
            match tokio::time::timeout(MEDIA_STOP, task).await {
                Ok(Ok(Ok(stats))) => self.stats = Some(stats),
                other => debug!(?other, "the media did not stop cleanly"),
            }
        }
        self.stats.take()
    }

    fn path(&self, selected: SelectedPath) -> CallPath {
        self.gathered.path(selected)
    }

    fn error(&mut self, op: OpId) -> CallError {
        self.errors.remove(&op).unwrap_or(ClientError::Closed(None).into())
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
