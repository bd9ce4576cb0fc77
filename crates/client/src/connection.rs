//! One connection to a supernode: TCP, TLS with the chosen trust, WebSocket, `hello`; then a
//! background task that drives the sans-IO [`ClientSession`] and hands out answers and events.
//!
//! `hello` (and, in `client`, `login`) are built by the sans-IO [`login::LoginHandshake`] of
//! `peerline-client-core`, re-exported here as [`login`] for drivers that speak the protocol
//! themselves (the load generator). The driver takes its time from tokio's clock, so its tests
//! can run under `tokio::time::pause()`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use peerline_client_core::{
    ClientEvent, ClientSession, Failure, HandshakeError, LoginHandshake, ServerHello,
    SessionConfig, is_refusal,
};
use peerline_wire::{EndReason, ErrorBody, Event, MAX_FRAME_BYTES, Reply, Request, WS_PATH};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;

use crate::error::ClientError;
use crate::tls::{PinObservation, Trust, client_config, format_fingerprint, pin_mismatch};

pub use peerline_client_core::login;

/// Seconds to connect, finish TLS and the WebSocket upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How this library names itself in `hello`.
const CLIENT_NAME: &str = concat!("peerline/", env!("CARGO_PKG_VERSION"));

/// A parsed supernode URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TLS (`wss`) or plain (`ws`).
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// WebSocket path.
    pub path: String,
}

impl Endpoint {
    /// Parses `wss://host[:port][/path]` (`ws://` only for loopback hosts). The default port is
    /// 7443 and the default path `/v1/ws`. A URL without a scheme (`127.0.0.1:7443`,
    /// `sn.example.org`) is taken as `wss://`: people type the address the operator gave them,
    /// and TLS is the only safe default.
    pub fn parse(raw: &str) -> Result<Self, ClientError> {
        let bad =
            |reason: &str| ClientError::BadUrl { url: raw.to_owned(), reason: reason.to_owned() };
        let trimmed = raw.trim();
        let with_scheme;
        let text = if trimmed.contains("://") {
            trimmed
        } else {
            with_scheme = format!("wss://{trimmed}");
            &with_scheme
        };
        let url = url::Url::parse(text).map_err(|e| {
            bad(&format!("{e}; a supernode URL looks like wss://sn.example.org:7443"))
        })?;
        let tls = match url.scheme() {
            "wss" => true,
            "ws" => false,
            _ => {
                return Err(bad(
                    "the scheme must be wss:// (or ws:// for a loopback test supernode)",
                ));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(bad("no host")),
        };
        if !tls {
            let loopback = host == "localhost"
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(bad("plain ws:// is only allowed to a loopback address; use wss://"));
            }
        }
        let path = match url.path() {
            "" | "/" => WS_PATH.to_owned(),
            p => p.to_owned(),
        };
        // The URL parser drops a port equal to the scheme's default (`wss://h:443`), which must
        // not turn into Peerline's default 7443.
        let authority = text.split_once("://").map_or("", |(_, rest)| rest);
        let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
        let scheme_default = if tls { 443 } else { 80 };
        let port = match url.port() {
            Some(port) => port,
            None if authority.ends_with(&format!(":{scheme_default}")) => scheme_default,
            None => 7443,
        };
        Ok(Self { tls, host, port, path })
    }

    /// `host:port`, the key certificates are pinned under.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.host_port(), self.path)
    }

    /// The one spelling of this supernode's URL that the home stores and compares:
    /// `wss://host:port` (lower-case host, port always written), with the path only when it is
    /// not the default `/v1/ws`.
    pub fn canonical_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let path = if self.path == WS_PATH { "" } else { self.path.as_str() };
        format!("{scheme}://{}{path}", self.host_port())
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Reply_ = Result<Reply, ClientError>;

enum Command {
    Request(Request, oneshot::Sender<Reply_>),
}

/// A connected, `hello`-ed session with a supernode.
pub struct Connection {
    commands: mpsc::Sender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    hello: ServerHello,
    /// Declared last: the driver stops when the connection (or a half-built one) is dropped.
    _driver: AbortOnDrop,
}

/// The driver task, aborted when dropped, so that a connection given up half-way (an error or
/// the connect timeout during `hello`) leaves nothing running.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a successful TLS connection presented.
#[derive(Debug, Clone)]
pub struct Presented {
    /// SHA-256 of the certificate, if TLS.
    pub fingerprint: Option<[u8; 32]>,
}

impl Connection {
    /// Connects, verifies the certificate as `trust` says, and says `hello`.
    pub async fn connect(
        endpoint: &Endpoint,
        trust: &Trust,
        known_file: &std::path::Path,
    ) -> Result<(Self, Presented), ClientError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(endpoint, trust, known_file))
            .await
            .map_err(|_| ClientError::TimedOut)?
    }

    async fn connect_inner(
        endpoint: &Endpoint,
        trust: &Trust,
        known_file: &std::path::Path,
    ) -> Result<(Self, Presented), ClientError> {
        let addr = endpoint.host_port();
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| ClientError::Connect { addr: addr.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let (stream, fingerprint, exporter): (Box<dyn Io>, Option<[u8; 32]>, _) = if endpoint.tls {
            let (config, observation) = client_config(trust)?;
            let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                ClientError::BadUrl { url: endpoint.ws_url(), reason: e.to_string() }
            })?;
            let connector = tokio_rustls::TlsConnector::from(config);
            match connector.connect(name, tcp).await {
                Ok(tls) => {
                    let exporter = tls_exporter(tls.get_ref().1);
                    (Box::new(tls), observation.observed(), exporter)
                }
                Err(err) => return Err(tls_error(&err, &addr, &observation, known_file)),
            }
        } else {
            (Box::new(tcp), None, None)
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(endpoint.ws_url(), stream, Some(config))
                .await
                .map_err(|e| websocket_error(&e, endpoint))?;
        let conn = Self::start(ws, exporter).await?;
        Ok((conn, Presented { fingerprint }))
    }

    /// Starts the driver on an upgraded WebSocket and says `hello`.
    async fn start(
        ws: tokio_tungstenite::WebSocketStream<Box<dyn Io>>,
        tls_exporter: Option<[u8; 32]>,
    ) -> Result<Self, ClientError> {
        let (commands, command_rx) = mpsc::channel(64);
        let (event_tx, events) = mpsc::unbounded_channel();
        let driver = AbortOnDrop(tokio::spawn(drive(ws, command_rx, event_tx)));
        let handshake = LoginHandshake::new(CLIENT_NAME);
        let answer = server_answer(ask(&commands, handshake.hello_request()).await)?;
        let mut hello = handshake.handle_hello(answer).map_err(handshake_error)?;
        if let Some(exporter) = tls_exporter {
            hello = hello.bind_to_tls(exporter);
        }
        Ok(Self { commands, events, hello, _driver: driver })
    }

    /// What the supernode said in its `hello`: the nonce to sign at login, its heartbeat
    /// timeout and STUN port.
    pub fn server_hello(&self) -> &ServerHello {
        &self.hello
    }

    /// The nonce from the supernode's `hello`, to sign at login.
    pub fn nonce(&self) -> &str {
        &self.hello.nonce
    }

    /// The UDP port of the supernode's STUN responder, from its `hello`.
    pub fn stun_port(&self) -> Option<u16> {
        self.hello.stun_port
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, request: Request) -> Result<Reply, ClientError> {
        ask(&self.commands, request).await
    }

    /// The next pushed event; `None` once the connection is closed.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Events already received, without waiting.
    pub fn try_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }
}

/// Hands a request to the driver and waits for its answer.
async fn ask(commands: &mpsc::Sender<Command>, request: Request) -> Result<Reply, ClientError> {
    let (tx, rx) = oneshot::channel();
    commands.send(Command::Request(request, tx)).await.map_err(|_| ClientError::Closed(None))?;
    rx.await.map_err(|_| ClientError::Closed(None))?
}

/// Splits an answer into what the handshake judges (the reply or the supernode's refusal) and
/// what only the driver can handle (timeouts, a closed connection).
pub(crate) fn server_answer(
    answer: Result<Reply, ClientError>,
) -> Result<Result<Reply, ErrorBody>, ClientError> {
    match answer {
        Ok(reply) => Ok(Ok(reply)),
        Err(ClientError::Server(body)) => Ok(Err(body)),
        Err(other) => Err(other),
    }
}

/// A broken handshake as a client error: a refusal is the supernode's error, a reply of the wrong
/// kind is named in full.
pub(crate) fn handshake_error(err: HandshakeError) -> ClientError {
    match err {
        HandshakeError::HelloRefused(body) => ClientError::Server(body),
        HandshakeError::UnexpectedReply { reply, .. } => {
            ClientError::UnexpectedReply(format!("{reply:?}"))
        }
    }
}

/// The driver's clock: tokio's, so that `tokio::time::pause()` drives heartbeats and timeouts
/// in tests.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn tls_error(
    err: &std::io::Error,
    addr: &str,
    observation: &PinObservation,
    known_file: &std::path::Path,
) -> ClientError {
    if let Some(mismatch) = pin_mismatch(err) {
        return ClientError::CertificateChanged {
            host_port: addr.to_owned(),
            pinned: format_fingerprint(&mismatch.expected),
            presented: format_fingerprint(&mismatch.presented),
            known_file: known_file.to_path_buf(),
        };
    }
    let _ = observation;
    ClientError::Tls { addr: addr.to_owned(), reason: err.to_string() }
}

async fn drive(
    ws: tokio_tungstenite::WebSocketStream<Box<dyn Io>>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut session = ClientSession::new(SessionConfig::default(), now());
    let mut waiting: HashMap<u64, oneshot::Sender<Reply_>> = HashMap::new();
    let (mut sink, mut stream) = ws.split();
    let mut ended: Option<EndReason> = None;
    // A refusal the supernode sent without an id before closing (it is full): what the
    // requests still waiting fail with, so that the caller sees its retry_after_secs.
    let mut refusal: Option<ErrorBody> = None;
    loop {
        // Send what the session queued, hand out what it produced.
        while let Some(text) = session.poll_transmit() {
            if sink.send(Message::text(text)).await.is_err() {
                // A supernode that turns the connection away (it is full) says why and closes,
                // maybe before this request went out: what it said is read, not lost.
                read_goodbye(&mut stream, &mut session, &mut refusal, &mut ended).await;
                return finish(waiting, ended, refusal, events, commands).await;
            }
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Answer { id, result } => {
                    if let Some(tx) = waiting.remove(&id) {
                        if let Ok(Reply::Hello { heartbeat_timeout_secs, .. }) = &result {
                            session.set_server_heartbeat_timeout(*heartbeat_timeout_secs);
                        }
                        let _ = tx.send(result.map_err(|f| match f {
                            Failure::Server(body) => ClientError::Server(body),
                            Failure::TimedOut => ClientError::TimedOut,
                        }));
                    }
                }
                ClientEvent::Event(event) => {
                    if let Event::SessionEnded { reason } = &event {
                        ended = Some(*reason);
                    }
                    let _ = events.send(event);
                }
                ClientEvent::Notice(body) => {
                    debug!(code = ?body.code, message = %body.message, "supernode notice");
                    if is_refusal(body.code) {
                        refusal = Some(body);
                    }
                }
                ClientEvent::ProtocolError(text) => debug!(%text, "supernode protocol error"),
            }
        }
        let deadline = tokio::time::Instant::from_std(session.poll_timeout());
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => session.handle_frame(text.as_bytes(), now()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    return finish(waiting, ended, refusal, events, commands).await;
                }
                Some(Ok(_)) => {}
            },
            command = commands.recv() => match command {
                Some(Command::Request(request, tx)) => match session.request(request, now()) {
                    Ok(id) => { waiting.insert(id, tx); }
                    Err(_) => { let _ = tx.send(Err(ClientError::Busy)); }
                },
                None => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
            },
            () = tokio::time::sleep_until(deadline) => session.handle_timeout(now()),
        }
    }
}

/// A failed WebSocket upgrade. A plain `ws://` dial whose answer is no HTTP at all most likely
/// reached a TLS port (the supernode answered the HTTP request with a TLS alert): say so, rather
/// than the HTTP parser's complaint.
fn websocket_error(
    err: &tokio_tungstenite::tungstenite::Error,
    endpoint: &Endpoint,
) -> ClientError {
    use tokio_tungstenite::tungstenite::Error;
    let not_http = matches!(err, Error::HttpFormat(_) | Error::Protocol(_) | Error::Io(_));
    if !endpoint.tls && not_http {
        let wss = Endpoint { tls: true, ..endpoint.clone() };
        return ClientError::WebSocket(format!(
            "{err}: {} did not answer in plain HTTP; this port speaks TLS: use {}",
            endpoint.host_port(),
            wss.canonical_url()
        ));
    }
    ClientError::WebSocket(err.to_string())
}

/// How long a connection whose sending failed is still read for the supernode's last words.
const GOODBYE_WAIT: Duration = Duration::from_millis(500);

/// Reads what the supernode sent before the connection broke (a refusal without a request id,
/// a `session_ended`), for the error the waiting requests fail with.
async fn read_goodbye<S>(
    stream: &mut S,
    session: &mut ClientSession,
    refusal: &mut Option<ErrorBody>,
    ended: &mut Option<EndReason>,
) where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let _ = tokio::time::timeout(GOODBYE_WAIT, async {
        while let Some(Ok(frame)) = stream.next().await {
            if let Message::Text(text) = frame {
                session.handle_frame(text.as_bytes(), now());
            }
        }
    })
    .await;
    while let Some(ev) = session.poll_event() {
        match ev {
            ClientEvent::Notice(body) if is_refusal(body.code) => *refusal = Some(body),
            ClientEvent::Event(Event::SessionEnded { reason }) => *ended = Some(reason),
            _ => {}
        }
    }
}

/// The connection's TLS exporter for channel binding (RFC 9266), which login signatures
/// cover; `None` if the TLS library cannot export one (then logins are not bound).
pub fn tls_exporter(tls: &rustls::ClientConnection) -> Option<[u8; 32]> {
    tls.export_keying_material([0u8; 32], peerline_wire::TLS_EXPORTER_LABEL, None).ok()
}

/// The connection is over: the requests waiting fail with why (the supernode's refusal, or the
/// closed connection with the session's end reason), the event stream ends, and requests made
/// afterwards fail the same way until the connection is dropped — also the ones that raced the
/// supernode's goodbye (a `hello` not yet handed to the driver when a full supernode said so and
/// closed), so that what the supernode said is not lost.
async fn finish(
    waiting: HashMap<u64, oneshot::Sender<Reply_>>,
    ended: Option<EndReason>,
    refusal: Option<ErrorBody>,
    events: mpsc::UnboundedSender<Event>,
    mut commands: mpsc::Receiver<Command>,
) {
    drop(events);
    fail_all(waiting, ended, refusal.clone());
    while let Some(Command::Request(_, tx)) = commands.recv().await {
        let error = match &refusal {
            Some(body) => ClientError::Server(body.clone()),
            None => ClientError::Closed(ended),
        };
        let _ = tx.send(Err(error));
    }
}

fn fail_all(
    waiting: HashMap<u64, oneshot::Sender<Reply_>>,
    ended: Option<EndReason>,
    refusal: Option<ErrorBody>,
) {
    for (_, tx) in waiting {
        let error = match &refusal {
            Some(body) => ClientError::Server(body.clone()),
            None => ClientError::Closed(ended),
        };
        let _ = tx.send(Err(error));
    }
}

/// A scripted supernode on an in-memory WebSocket, for tests of the connection and the client.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod scripted {
    use futures_util::{SinkExt, StreamExt};
    use peerline_wire::{ClientFrame, ServerFrame, decode_client_frame, encode};
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::{Connection, Io};
    use crate::error::ClientError;

    /// Connects to a supernode that answers every request with `answer`, until the connection
    /// closes; the task returns the requests it received, in order.
    pub(crate) async fn connect(
        mut answer: impl FnMut(&ClientFrame) -> ServerFrame + Send + 'static,
    ) -> (Result<Connection, ClientError>, tokio::task::JoinHandle<Vec<ClientFrame>>) {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let client_ws = WebSocketStream::from_raw_socket(
            Box::new(client_end) as Box<dyn Io>,
            Role::Client,
            None,
        )
        .await;
        let mut server_ws = WebSocketStream::from_raw_socket(server_end, Role::Server, None).await;
        let supernode = tokio::spawn(async move {
            let mut received = Vec::new();
            while let Some(Ok(message)) = server_ws.next().await {
                let Message::Text(text) = message else { continue };
                let frame = decode_client_frame(text.as_bytes()).unwrap();
                let reply = answer(&frame);
                received.push(frame);
                if server_ws.send(Message::text(encode(&reply))).await.is_err() {
                    break;
                }
            }
            received
        });
        (Connection::start(client_ws, None).await, supernode)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use peerline_wire::{ErrorCode, PROTOCOL_VERSION, ServerFrame};

    fn hello(id: u64) -> ServerFrame {
        ServerFrame::Ok {
            id,
            result: Reply::Hello {
                version: PROTOCOL_VERSION,
                server: "peerline-supernode/test".into(),
                nonce: "abcd".into(),
                heartbeat_timeout_secs: 30,
                stun_port: Some(3478),
            },
        }
    }

    #[tokio::test]
    async fn hello_names_the_client_and_keeps_the_nonce_and_stun_port() {
        let (conn, supernode) = scripted::connect(|frame| hello(frame.id)).await;
        let conn = conn.unwrap();
        assert_eq!(conn.nonce(), "abcd");
        assert_eq!(conn.stun_port(), Some(3478));
        assert_eq!(conn.server_hello().heartbeat_timeout_secs, 30);
        drop(conn);
        let received = supernode.await.unwrap();
        assert_eq!(
            received.iter().map(|f| &f.request).collect::<Vec<_>>(),
            [&Request::Hello { version: PROTOCOL_VERSION, client: CLIENT_NAME.into() }]
        );
    }

    #[tokio::test]
    async fn a_refused_or_odd_hello_fails_the_connection() {
        let (conn, _supernode) = scripted::connect(|frame| ServerFrame::Error {
            id: Some(frame.id),
            error: ErrorCode::UnsupportedVersion.into(),
        })
        .await;
        assert_eq!(conn.err().and_then(|e| e.code()), Some(ErrorCode::UnsupportedVersion));

        let (conn, _supernode) =
            scripted::connect(|frame| ServerFrame::Ok { id: frame.id, result: Reply::Done }).await;
        assert!(matches!(conn, Err(ClientError::UnexpectedReply(text)) if text == "Done"));
    }

    #[tokio::test]
    async fn a_full_supernode_refuses_with_its_retry_delay() {
        use futures_util::{SinkExt, StreamExt};
        use peerline_wire::encode;
        use tokio_tungstenite::WebSocketStream;
        use tokio_tungstenite::tungstenite::protocol::Role;

        // A supernode at its connection limit: an error without id, then it closes.
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(server_end, Role::Server, None).await;
            let _hello = ws.next().await;
            let mut full = ErrorBody::with_message(ErrorCode::ShuttingDown, "supernode is full");
            full.retry_after_secs = Some(9);
            let frame = ServerFrame::Error { id: None, error: full };
            ws.send(Message::text(encode(&frame))).await.unwrap();
            ws.close(None).await.unwrap();
        });
        let client_ws = WebSocketStream::from_raw_socket(
            Box::new(client_end) as Box<dyn Io>,
            Role::Client,
            None,
        )
        .await;
        let err = Connection::start(client_ws, None).await.err().unwrap();
        match err {
            ClientError::Server(body) => {
                assert_eq!((body.code, body.retry_after_secs), (ErrorCode::ShuttingDown, Some(9)));
            }
            other => panic!("{other:?}"),
        }
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_refusal_sent_before_hello_is_what_hello_fails_with() {
        use futures_util::SinkExt;
        use peerline_wire::encode;
        use tokio_tungstenite::WebSocketStream;
        use tokio_tungstenite::tungstenite::protocol::Role;

        // The supernode says it is full and closes before the client's hello reached the
        // driver: hello must still fail with what it said, not with a bare "closed".
        for _ in 0..20 {
            let (client_end, server_end) = tokio::io::duplex(64 * 1024);
            let mut server = WebSocketStream::from_raw_socket(server_end, Role::Server, None).await;
            let mut full =
                ErrorBody::with_message(ErrorCode::ShuttingDown, "supernode is full, try later");
            full.retry_after_secs = Some(7);
            let frame = ServerFrame::Error { id: None, error: full };
            server.send(Message::text(encode(&frame))).await.unwrap();
            server.close(None).await.unwrap();
            drop(server);
            let client_ws = WebSocketStream::from_raw_socket(
                Box::new(client_end) as Box<dyn Io>,
                Role::Client,
                None,
            )
            .await;
            let err = Connection::start(client_ws, None).await.err().unwrap();
            assert!(
                matches!(&err, ClientError::Server(body) if body.retry_after_secs == Some(7)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn canonical_urls() {
        for (raw, canonical) in [
            ("wss://127.0.0.1:7443", "wss://127.0.0.1:7443"),
            ("wss://127.0.0.1:7443/v1/ws", "wss://127.0.0.1:7443"),
            ("wss://SN1.Example.org", "wss://sn1.example.org:7443"),
            ("wss://[::1]:9/other", "wss://[::1]:9/other"),
            ("ws://localhost:80", "ws://localhost:80"),
        ] {
            assert_eq!(Endpoint::parse(raw).unwrap().canonical_url(), canonical, "{raw}");
        }
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("wss://127.0.0.1:7443").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.path.as_str()),
            (true, "127.0.0.1", 7443, "/v1/ws")
        );
        assert_eq!(Endpoint::parse("wss://example.org").unwrap().port, 7443);
        assert_eq!(Endpoint::parse("wss://example.org:443").unwrap().port, 443);
        assert_eq!(Endpoint::parse("wss://203.0.113.10:443/v1/ws").unwrap().port, 443);
        assert_eq!(Endpoint::parse("wss://[::1]:9/x").unwrap().host_port(), "[::1]:9");
        assert!(Endpoint::parse("ws://example.org:1").is_err());
        assert!(Endpoint::parse("ws://127.0.0.1:1").is_ok());
        assert!(Endpoint::parse("http://127.0.0.1:1").is_err());
        assert!(Endpoint::parse("not a url").is_err());
        // Without a scheme, wss:// is meant.
        for raw in ["127.0.0.1:7443", "127.0.0.1", " 127.0.0.1:7443/ "] {
            let e = Endpoint::parse(raw).unwrap();
            assert_eq!(e.canonical_url(), "wss://127.0.0.1:7443", "{raw}");
        }
        assert_eq!(Endpoint::parse("LOCALHOST:9").unwrap().canonical_url(), "wss://localhost:9");
        assert_eq!(
            Endpoint::parse("WSS://LocalHost:9/").unwrap().canonical_url(),
            "wss://localhost:9"
        );
    }
}
