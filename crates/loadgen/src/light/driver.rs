//! The driver of one light client: its task, which dials, logs in through client-core's
//! handshake and session, serves the owner's requests, and after a loss asks client-core's
//! [`Failover`] where and when to go next. [`Link`] is one connection in use.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use peerline_client::connection::Endpoint;
use peerline_client_core::{
    ClientEvent, ClientSession, Credential, Failover, HandshakeError, HostCache, LoggedIn,
    LoginHandshake, LoginOutcome, Refusal, SessionConfig, is_refusal, sort_refusal,
};
use peerline_wire::{ErrorBody, ErrorCode, Event, Reply, Request};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::{Account, Change, Network, Report, RequestFailure};
use crate::dial::Ws;

/// How the light client names itself in `hello`.
const CLIENT_NAME: &str = concat!("peerline-loadgen-light/", env!("CARGO_PKG_VERSION"));

/// A request on its way to the driver, with where its answer goes.
pub(super) struct Command {
    pub(super) request: Request,
    pub(super) answer: oneshot::Sender<Result<Reply, RequestFailure>>,
}

/// Why an attempt did not log in, sorted as the client library's reconnect sorts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AttemptError {
    /// Come back later: this host is held for `retry_after` (plus the policy's jitter).
    Refused { code: ErrorCode, retry_after: Duration },
    /// No supernode will do better: stop.
    GiveUp(String),
    /// This host failed; the next one may do.
    Failed(String),
}

/// Sorts a supernode's refusal with client-core's [`sort_refusal`], as the client library's
/// reconnect does.
pub(super) fn judge(body: ErrorBody) -> AttemptError {
    match sort_refusal(&body) {
        Refusal::Wait(retry_after) => AttemptError::Refused { code: body.code, retry_after },
        Refusal::GiveUp => AttemptError::GiveUp(body.to_string()),
        Refusal::Failed => AttemptError::Failed(body.to_string()),
    }
}

/// How a logged-in connection ended.
enum Ending {
    /// The owner stopped the client.
    Stopped,
    /// The connection dropped.
    Lost(String),
}

/// The time, from tokio's clock (so that paused-clock tests control it), for the policy.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// A uniform random number in `[0, 1)`, the policy's jitter.
fn jitter() -> f64 {
    rand::random::<f64>()
}

/// `url` in the one spelling the host cache compares (as the client library stores it);
/// unparsable URLs stay as given and fail when dialed.
fn canonical(url: &str) -> String {
    Endpoint::parse(url).map_or_else(|_| url.to_owned(), |e| e.canonical_url())
}

/// One connection in use: the WebSocket and client-core's session on it.
struct Link {
    ws: Ws,
    session: ClientSession,
    /// Events pushed during the handshake (the presence snapshot follows the login answer).
    held: VecDeque<Event>,
    /// A refusal sent without a request id before the supernode closed (it is full).
    refusal: Option<ErrorBody>,
}

impl Link {
    fn new(ws: Ws, config: SessionConfig) -> Self {
        Self {
            ws,
            session: ClientSession::new(config, now()),
            held: VecDeque::new(),
            refusal: None,
        }
    }

    /// Sends what the session queued.
    async fn flush(&mut self) -> Result<(), String> {
        while let Some(text) = self.session.poll_transmit() {
            self.ws.send(Message::text(text)).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Waits for the next frame or the session's next timer; `Err` when the connection ended.
    async fn step(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::from_std(self.session.poll_timeout());
        tokio::select! {
            frame = self.ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    self.session.handle_frame(text.as_bytes(), now());
                    Ok(())
                }
                Some(Ok(Message::Close(frame))) => {
                    Err(format!("closed by the supernode ({:?})", frame.map(|f| f.code)))
                }
                None => Err("connection closed".to_owned()),
                Some(Err(e)) => Err(e.to_string()),
                Some(Ok(_)) => Ok(()),
            },
            () = tokio::time::sleep_until(deadline) => {
                self.session.handle_timeout(now());
                Ok(())
            }
        }
    }

    /// One request of the handshake: the supernode's answer (its reply or its error), or the
    /// refusal it sent before closing.
    async fn round_trip(
        &mut self,
        request: Request,
    ) -> Result<Result<Reply, ErrorBody>, AttemptError> {
        let id = self
            .session
            .request(request, now())
            .map_err(|e| AttemptError::Failed(e.to_string()))?;
        loop {
            let ended = self.flush().await.err();
            while let Some(event) = self.session.poll_event() {
                match event {
                    ClientEvent::Answer { id: got, result } if got == id => {
                        return match result {
                            Ok(reply) => Ok(Ok(reply)),
                            Err(peerline_client_core::Failure::Server(body)) => Ok(Err(body)),
                            Err(peerline_client_core::Failure::TimedOut) => {
                                Err(AttemptError::Failed("no answer in time".to_owned()))
                            }
                        };
                    }
                    ClientEvent::Notice(body) if is_refusal(body.code) => self.refusal = Some(body),
                    ClientEvent::Event(Event::SessionEnded { reason }) => {
                        return Err(AttemptError::Failed(format!("session ended: {reason:?}")));
                    }
                    ClientEvent::Event(event) => self.held.push_back(event),
                    ClientEvent::Answer { .. }
                    | ClientEvent::Notice(_)
                    | ClientEvent::ProtocolError(_) => {}
                }
            }
            let ended = match ended {
                Some(why) => Err(why),
                None => self.step().await,
            };
            if let Err(why) = ended {
                return match self.refusal.take() {
                    Some(body) => Ok(Err(body)),
                    None => Err(AttemptError::Failed(why)),
                };
            }
        }
    }
}

/// One light client's task.
pub(super) struct Driver {
    user: usize,
    account: Account,
    network: Network,
    commands: mpsc::Receiver<Command>,
    events: Option<mpsc::Sender<Event>>,
}

impl Driver {
    pub(super) fn new(
        user: usize,
        account: Account,
        network: Network,
        commands: mpsc::Receiver<Command>,
        events: Option<mpsc::Sender<Event>>,
    ) -> Self {
        Self { user, account, network, commands, events }
    }

    fn report(&self, change: Change) {
        (self.network.report)(Report { user: self.user, at: now(), change });
    }

    /// Connects, stays online, and after every loss goes round the host cache as the client
    /// library's `reconnect` does, until stopped.
    pub(super) async fn run(mut self, given: Vec<String>) {
        let given: Vec<String> = given.iter().map(|u| canonical(u)).collect();
        let mut cache = HostCache::new(given, Vec::new());
        let mut failover = Failover::new(cache.hosts(), self.network.config.failover.clone());
        loop {
            let Some(attempt) = failover.plan(now(), jitter()) else {
                self.report(Change::GaveUp { why: "no supernode to connect to".to_owned() });
                return self.offline_until_stopped().await;
            };
            if !self.offline_until(Some(attempt.at)).await {
                return;
            }
            failover.started();
            let host = attempt.host;
            match self.log_in(&host).await {
                Ok((link, logged_in)) => {
                    failover.connected(now());
                    let learned: Vec<String> =
                        logged_in.supernodes.iter().map(|u| canonical(u)).collect();
                    cache.learn(&learned);
                    failover.set_hosts(cache.hosts());
                    self.report(Change::Online { host: host.clone(), attempt: attempt.number });
                    match self.serve(link).await {
                        Ending::Stopped => return,
                        Ending::Lost(why) => {
                            failover.lost(now());
                            self.report(Change::Offline { host, why });
                        }
                    }
                }
                Err(AttemptError::Refused { code, retry_after }) => {
                    failover.refused(now(), retry_after, jitter());
                    self.report(Change::Refused { host, code, retry_after });
                }
                Err(AttemptError::GiveUp(why)) => {
                    self.report(Change::GaveUp { why });
                    return self.offline_until_stopped().await;
                }
                Err(AttemptError::Failed(why)) => {
                    failover.failed();
                    self.report(Change::Failed { host, why });
                }
            }
        }
    }

    /// Answers requests `offline` until `until` (or forever with `None`); `false` once the owner
    /// stopped the client.
    async fn offline_until(&mut self, until: Option<Instant>) -> bool {
        let sleep = async {
            match until {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                command = self.commands.recv() => match command {
                    Some(command) => {
                        let _ = command.answer.send(Err(RequestFailure::Offline));
                    }
                    None => return false,
                },
            }
        }
    }

    async fn offline_until_stopped(&mut self) {
        self.offline_until(None).await;
    }

    /// Dials `host` and logs in with the token: `hello`, then `login` signed over the nonce.
    async fn log_in(&self, host: &str) -> Result<(Link, LoggedIn), AttemptError> {
        let dialer = self.network.dialers.get(host).await.map_err(AttemptError::Failed)?;
        let (ws, exporter) = dialer
            .open(self.user, self.network.config.connect_timeout)
            .await
            .map_err(|f| AttemptError::Failed(f.to_string()))?;
        let mut link = Link::new(ws, self.network.config.session.clone());
        let handshake = LoginHandshake::new(CLIENT_NAME);
        let answer = link.round_trip(handshake.hello_request()).await?;
        let mut hello = handshake.handle_hello(answer).map_err(|e| match e {
            HandshakeError::HelloRefused(body) => judge(body),
            other => AttemptError::Failed(other.to_string()),
        })?;
        if let Some(exporter) = exporter {
            hello = hello.bind_to_tls(exporter);
        }
        link.session.set_server_heartbeat_timeout(hello.heartbeat_timeout_secs);
        let account = &self.account;
        let attempt = hello.login(
            &account.username,
            Credential::Token(account.token.clone()),
            &account.key,
            self.network.config.device_name.clone(),
        );
        let answer = link.round_trip(attempt.request()).await?;
        match attempt.handle_answer(answer).map_err(|e| AttemptError::Failed(e.to_string()))? {
            LoginOutcome::LoggedIn(logged_in) => Ok((link, logged_in)),
            LoginOutcome::ForgetToken(body) => Err(AttemptError::GiveUp(body.to_string())),
            LoginOutcome::Failed(body) => Err(judge(body)),
        }
    }

    fn forward(&self, event: Event) {
        if let Some(events) = &self.events {
            // A caller that reads too slowly loses events rather than holding the connection.
            let _ = events.try_send(event);
        }
    }

    /// Serves a logged-in connection: the owner's requests, heartbeats, pushed events, until
    /// the connection drops or the owner stops the client.
    async fn serve(&mut self, mut link: Link) -> Ending {
        let mut waiting: HashMap<u64, oneshot::Sender<Result<Reply, RequestFailure>>> =
            HashMap::new();
        for event in std::mem::take(&mut link.held) {
            self.forward(event);
        }
        let mut ended_because = None;
        let ending = loop {
            if let Err(why) = link.flush().await {
                break Ending::Lost(why);
            }
            while let Some(event) = link.session.poll_event() {
                match event {
                    ClientEvent::Answer { id, result } => {
                        if let Some(answer) = waiting.remove(&id) {
                            let _ = answer.send(result.map_err(|f| match f {
                                peerline_client_core::Failure::Server(body) => {
                                    RequestFailure::Server(body)
                                }
                                peerline_client_core::Failure::TimedOut => RequestFailure::TimedOut,
                            }));
                        }
                    }
                    ClientEvent::Event(event) => {
                        if let Event::SessionEnded { reason } = &event {
                            ended_because = Some(*reason);
                        }
                        self.forward(event);
                    }
                    ClientEvent::Notice(_) | ClientEvent::ProtocolError(_) => {}
                }
            }
            tokio::select! {
                stepped = link.step() => if let Err(why) = stepped {
                    break Ending::Lost(match ended_because {
                        Some(reason) => format!("session ended: {reason:?}"),
                        None => why,
                    });
                },
                command = self.commands.recv() => match command {
                    Some(Command { request, answer }) => match link.session.request(request, now()) {
                        Ok(id) => {
                            waiting.insert(id, answer);
                        }
                        Err(_) => {
                            let _ = answer.send(Err(RequestFailure::Busy));
                        }
                    },
                    None => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), link.ws.close(None)).await;
                        break Ending::Stopped;
                    }
                },
            }
        };
        for (_, answer) in waiting {
            let _ = answer.send(Err(RequestFailure::Lost));
        }
        ending
    }
}
