//! A Peerline client session without IO: it numbers requests, bounds how many are in flight,
//! matches answers to requests, times out the ones that get none, sends heartbeats when the
//! connection is idle, drops duplicate message pushes, and ignores event types from newer
//! protocol revisions.
//!
//! The async driver in `peerline-client` feeds it frames and the time, and sends what
//! [`ClientSession::poll_transmit`] returns.
//!
//! [`failover`] decides where and when to reconnect after a connection is lost (full-jitter
//! backoff over the network's host cache, [`hosts`]); the driver only sleeps and dials.
//!
//! [`login`] holds the handshake that opens every connection (`hello`, then `login` with a
//! password or a saved token, signed by the device key); the client library and the load
//! generator both build their `hello` and `login` requests there.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod failover;
pub mod hosts;
pub mod login;

pub use failover::{Attempt, Failover, FailoverConfig, Refusal, is_refusal, sort_refusal};
pub use hosts::{HostCache, MAX_HOSTS};
pub use login::{
    Credential, HandshakeError, LoggedIn, LoginAttempt, LoginHandshake, LoginOutcome, ServerHello,
};

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use peerline_wire::{
    ClientFrame, ErrorBody, Event, MessageId, Reply, Request, ServerFrame, decode_server_frame,
    encode,
};

/// Tuning of a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Most requests awaiting an answer.
    pub max_pending: usize,
    /// A request with no answer after this long fails with [`Failure::TimedOut`].
    pub request_timeout: Duration,
    /// Send a `ping` after this long without sending anything.
    pub heartbeat_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_pending: 32,
            request_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(20),
        }
    }
}

/// Why a request failed without a server answer, or with an error answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The supernode answered with an error.
    #[error("{0}")]
    Server(ErrorBody),
    /// No answer within the request timeout.
    #[error("the supernode did not answer in time")]
    TimedOut,
}

/// Refused before sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Too many requests in flight; wait for answers first.
    #[error("too many requests in flight ({0})")]
    TooManyPending(usize),
}

/// What the session tells its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The answer to a request.
    Answer {
        /// The id [`ClientSession::request`] returned.
        id: u64,
        /// The reply or the failure.
        result: Result<Reply, Failure>,
    },
    /// A push from the supernode.
    Event(Event),
    /// An error the supernode sent without a request id: it is full (`shutting_down`, and closes
    /// the connection next), or it failed to push queued messages after a login (`internal`).
    Notice(ErrorBody),
    /// The supernode sent something this client cannot use (logged, not fatal).
    ProtocolError(String),
}

/// Remembered message ids for duplicate suppression; old ones are forgotten first.
const SEEN_CAPACITY: usize = 10_000;

/// One connection's client-side protocol state.
#[derive(Debug)]
pub struct ClientSession {
    config: SessionConfig,
    next_id: u64,
    pending: HashMap<u64, Instant>,
    internal: HashSet<u64>,
    outbox: VecDeque<String>,
    events: VecDeque<ClientEvent>,
    last_sent: Instant,
    seen: HashSet<MessageId>,
    seen_order: VecDeque<MessageId>,
}

impl ClientSession {
    /// A new session; nothing is sent until the first request.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        Self {
            config,
            next_id: 1,
            pending: HashMap::new(),
            internal: HashSet::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            last_sent: now,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// Adapts the heartbeat to the supernode's timeout (from its `hello` answer): a ping every
    /// third of it, so that one lost ping does not cost the session.
    pub fn set_server_heartbeat_timeout(&mut self, secs: u64) {
        let third = Duration::from_secs(secs.max(3) / 3);
        self.config.heartbeat_interval = self.config.heartbeat_interval.min(third);
    }

    /// Queues a request; returns its id.
    pub fn request(&mut self, request: Request, now: Instant) -> Result<u64, RequestError> {
        if self.pending.len() >= self.config.max_pending {
            return Err(RequestError::TooManyPending(self.pending.len()));
        }
        Ok(self.send(request, now))
    }

    fn send(&mut self, request: Request, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, now);
        self.outbox.push_back(encode(&ClientFrame { id, request }));
        self.last_sent = now;
        id
    }

    /// Requests in flight.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one received WebSocket text frame.
    pub fn handle_frame(&mut self, bytes: &[u8], _now: Instant) {
        let frame = match decode_server_frame(bytes) {
            Ok(frame) => frame,
            Err(err) => {
                // Newer supernodes may add event types; an event we cannot read is skipped.
                let is_event = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(|t| t == "event"))
                    .unwrap_or(false);
                if !is_event {
                    self.events.push_back(ClientEvent::ProtocolError(err.to_string()));
                }
                return;
            }
        };
        match frame {
            ServerFrame::Ok { id, result } => self.answer(id, Ok(result)),
            ServerFrame::Error { id: Some(id), error } => {
                self.answer(id, Err(Failure::Server(error)))
            }
            ServerFrame::Error { id: None, error } => {
                self.events.push_back(ClientEvent::Notice(error));
            }
            ServerFrame::Event { event } => {
                if let Event::Message { message } = &event
                    && !self.first_sight(message.id)
                {
                    return;
                }
                self.events.push_back(ClientEvent::Event(event));
            }
        }
    }

    fn first_sight(&mut self, id: MessageId) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > SEEN_CAPACITY
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }

    fn answer(&mut self, id: u64, result: Result<Reply, Failure>) {
        if self.pending.remove(&id).is_none() {
            self.events
                .push_back(ClientEvent::ProtocolError(format!("answer to unknown request {id}")));
            return;
        }
        if self.internal.remove(&id) {
            return;
        }
        self.events.push_back(ClientEvent::Answer { id, result });
    }

    /// Checks timers: request timeouts and heartbeats.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.request_timeout;
        let mut expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, sent)| now.saturating_duration_since(**sent) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        for id in expired {
            self.answer(id, Err(Failure::TimedOut));
        }
        if now.saturating_duration_since(self.last_sent) >= self.config.heartbeat_interval {
            let id = self.send(Request::Ping, now);
            self.internal.insert(id);
        }
    }

    /// When [`ClientSession::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        let heartbeat = self.last_sent + self.config.heartbeat_interval;
        let oldest = self.pending.values().min().map(|sent| *sent + self.config.request_timeout);
        oldest.map_or(heartbeat, |t| t.min(heartbeat))
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.outbox.pop_front()
    }

    /// The next thing to tell the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use peerline_wire::{ChatMessage, ErrorCode, decode_client_frame};

    fn server(frame: &ServerFrame) -> Vec<u8> {
        encode(frame).into_bytes()
    }

    #[test]
    fn answers_match_requests() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(SessionConfig::default(), t0);
        let a = s.request(Request::Whoami, t0).unwrap();
        let b = s.request(Request::Contacts { after: None }, t0).unwrap();
        let sent: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
        assert_eq!(decode_client_frame(sent[1].as_bytes()).unwrap().id, b);
        s.handle_frame(&server(&ServerFrame::Ok { id: b, result: Reply::Done }), t0);
        s.handle_frame(
            &server(&ServerFrame::Error { id: Some(a), error: ErrorCode::NotAuthenticated.into() }),
            t0,
        );
        assert_eq!(s.poll_event(), Some(ClientEvent::Answer { id: b, result: Ok(Reply::Done) }));
        match s.poll_event() {
            Some(ClientEvent::Answer { id, result: Err(Failure::Server(e)) }) => {
                assert_eq!(id, a);
                assert_eq!(e.code, ErrorCode::NotAuthenticated);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn pending_requests_are_bounded() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(SessionConfig { max_pending: 2, ..Default::default() }, t0);
        s.request(Request::Ping, t0).unwrap();
        s.request(Request::Ping, t0).unwrap();
        assert_eq!(s.request(Request::Ping, t0), Err(RequestError::TooManyPending(2)));
    }

    #[test]
    fn unanswered_requests_time_out() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(SessionConfig::default(), t0);
        let id = s.request(Request::Whoami, t0).unwrap();
        s.handle_timeout(t0 + Duration::from_secs(29));
        assert!(!matches!(s.poll_event(), Some(ClientEvent::Answer { .. })));
        s.handle_timeout(t0 + Duration::from_secs(30));
        let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert!(events.contains(&ClientEvent::Answer { id, result: Err(Failure::TimedOut) }));
    }

    #[test]
    fn idle_sessions_ping_and_swallow_the_pong() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(SessionConfig::default(), t0);
        s.set_server_heartbeat_timeout(60);
        assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(20));
        s.handle_timeout(t0 + Duration::from_secs(20));
        let ping = decode_client_frame(s.poll_transmit().unwrap().as_bytes()).unwrap();
        assert_eq!(ping.request, Request::Ping);
        s.handle_frame(&server(&ServerFrame::Ok { id: ping.id, result: Reply::Pong }), t0);
        assert_eq!(s.poll_event(), None, "heartbeat answers are internal");
    }

    #[test]
    fn duplicate_message_pushes_are_dropped() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(SessionConfig::default(), t0);
        let msg = ChatMessage {
            id: 5,
            from: "alice".into(),
            to: "bob".into(),
            text: "hi".into(),
            sent_at: 1,
            delivered_at: None,
            read_at: None,
        };
        let frame = server(&ServerFrame::Event { event: Event::Message { message: msg } });
        s.handle_frame(&frame, t0);
        s.handle_frame(&frame, t0);
        assert!(matches!(s.poll_event(), Some(ClientEvent::Event(Event::Message { .. }))));
        assert_eq!(s.poll_event(), None);
    }

    #[test]
    fn errors_without_an_id_are_notices_with_their_retry_delay() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(SessionConfig::default(), t0);
        let mut full = ErrorBody::with_message(ErrorCode::ShuttingDown, "supernode is full");
        full.retry_after_secs = Some(7);
        s.handle_frame(&server(&ServerFrame::Error { id: None, error: full.clone() }), t0);
        assert_eq!(s.poll_event(), Some(ClientEvent::Notice(full)));
    }

    #[test]
    fn unknown_event_types_are_ignored_but_garbage_is_reported() {
        let t0 = Instant::now();
        let mut s = ClientSession::new(SessionConfig::default(), t0);
        s.handle_frame(br#"{"type":"event","event":{"type":"video_call_from_the_future"}}"#, t0);
        assert_eq!(s.poll_event(), None);
        s.handle_frame(b"\x00garbage", t0);
        assert!(matches!(s.poll_event(), Some(ClientEvent::ProtocolError(_))));
        s.handle_frame(&server(&ServerFrame::Ok { id: 99, result: Reply::Done }), t0);
        assert!(matches!(s.poll_event(), Some(ClientEvent::ProtocolError(_))));
    }
}
