//! A deliberately small client for load: TCP from a chosen source address, TLS with the client
//! library's configuration, the WebSocket upgrade, `hello`, and one request at a time.
//!
//! `peerline_client::Connection` cannot bind a source address and keeps a driver task with two
//! channels per connection; tens of thousands of idle connections need neither, so the load
//! generator speaks the protocol directly (the frames are the `peerline-wire` types, the TLS
//! configuration is `peerline_client::tls::client_config`, so the bytes on the wire are the same).
//! `hello` and `login` are built and judged by the same sans-IO handshake as the client library's
//! (`peerline_client::connection::login`); only the round trips are done here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use peerline_client::connection::login::{
    Credential, HandshakeError, LoginHandshake, LoginOutcome, ServerHello,
};
use peerline_client::connection::{Endpoint, tls_exporter};
use peerline_client::tls::{Trust, client_config};
use peerline_wire::{
    ClientFrame, ErrorBody, Event, MAX_FRAME_BYTES, Reply, Request, ServerFrame,
    decode_server_frame, encode,
};
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::source_addrs::SourceAddrs;

/// Time allowed for TCP, TLS, the WebSocket upgrade and `hello` together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for one answer. Password requests queue for an Argon2 slot on the supernode.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The device name the load generator logs in with.
const DEVICE_NAME: &str = "peerline-loadgen";

/// Any byte stream a WebSocket can run over (TLS or, for a plaintext test supernode, TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket to the supernode.
pub type Ws = WebSocketStream<Box<dyn Io>>;

/// Why one connection or request failed. `kind` groups failures for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `connect`, `tls`, `websocket`, `timeout`, `closed`, `protocol` or `server:<error code>`.
    pub kind: String,
    /// What the underlying error said.
    pub detail: String,
}

impl Failure {
    /// A failure of kind `kind`.
    pub fn new(kind: &str, detail: impl ToString) -> Self {
        Self { kind: kind.to_owned(), detail: detail.to_string() }
    }

    fn timed_out(what: &str) -> Self {
        Self::new("timeout", format!("no answer to {what} in time"))
    }

    /// A broken handshake: a refused `hello` is the supernode's error, a reply of the wrong kind a
    /// protocol failure naming it.
    fn handshake(err: HandshakeError) -> Self {
        match err {
            HandshakeError::HelloRefused(body) => Self::server(&body),
            HandshakeError::UnexpectedReply { request, reply } => {
                Self::new("protocol", format!("{request} answered {reply:?}"))
            }
        }
    }

    fn server(body: &ErrorBody) -> Self {
        let code = serde_json::to_value(body.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".to_owned());
        Self::new(&format!("server:{code}"), body)
    }

    /// Whether the supernode refused with this error code (`rate_limited`, `username_taken`, …).
    pub fn is_server(&self, code: &str) -> bool {
        self.kind.strip_prefix("server:") == Some(code)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// Failures counted by kind, with the first detail seen of each kind as an example.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    /// How many of each kind.
    pub counts: BTreeMap<String, u64>,
    /// One detail per kind.
    pub examples: BTreeMap<String, String>,
}

impl Tally {
    /// Counts one failure.
    pub fn add(&mut self, failure: &Failure) {
        *self.counts.entry(failure.kind.clone()).or_default() += 1;
        self.examples
            .entry(failure.kind.clone())
            .or_insert_with(|| failure.detail.chars().take(300).collect());
    }

    /// Total failures.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.counts.is_empty() {
            return f.write_str("none");
        }
        let mut first = true;
        for (kind, n) in &self.counts {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            let example = self.examples.get(kind).map_or("", String::as_str);
            write!(f, "{n} × {kind} (e.g. {example})")?;
        }
        Ok(())
    }
}

/// Opens connections to one supernode.
pub struct Dialer {
    server: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    ws_url: String,
    sources: Option<SourceAddrs>,
    ws_config: WebSocketConfig,
}

impl Dialer {
    /// A dialer for `url` (`wss://host:port`, or `ws://` to a loopback supernode), binding each
    /// connection to the next address of `sources` when given.
    pub async fn new(url: &str, sources: Option<SourceAddrs>) -> anyhow::Result<Self> {
        let endpoint = Endpoint::parse(url)?;
        let server = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .with_context(|| format!("resolving {}", endpoint.host))?
            .find(|a| sources.is_none() || a.is_ipv4())
            .with_context(|| format!("{} has no usable address", endpoint.host))?;
        if !server.ip().is_loopback() {
            anyhow::bail!(
                "the load generator only targets loopback supernodes, not {server}; \
                 it is a benchmark tool, not a way to load someone else's server"
            );
        }
        let tls = if endpoint.tls {
            // Trust whatever the local test supernode presents (the pin is not checked), and make
            // every handshake a full one, as a first connection of a real client would be.
            let (config, _observation) = client_config(&Trust::Pin { expected: None })?;
            let mut config = (*config).clone();
            config.resumption = rustls::client::Resumption::disabled();
            let name = ServerName::try_from(endpoint.host.clone())
                .with_context(|| format!("{} is not a valid TLS server name", endpoint.host))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let scheme = if endpoint.tls { "wss" } else { "ws" };
        // Small buffers: the load generator holds many idle connections and reads small frames.
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        Ok(Self {
            server,
            tls,
            ws_url: format!("{scheme}://{}{}", endpoint.host_port(), endpoint.path),
            sources,
            ws_config,
        })
    }

    /// Opens connection number `n` (which picks its source address) and says `hello`.
    pub async fn connect(&self, n: usize) -> Result<Session, Failure> {
        let greeted = async {
            let (ws, exporter) = self.open_inner(n).await?;
            Session::greet(ws, exporter).await
        };
        tokio::time::timeout(CONNECT_TIMEOUT, greeted)
            .await
            .map_err(|_| Failure::timed_out("connect, TLS, upgrade and hello"))?
    }

    /// Opens connection number `n` up to the WebSocket upgrade, within `timeout`, and leaves the
    /// protocol to the caller (the light client runs `hello` and `login` through client-core's
    /// session, as the client library does). Returns the connection's TLS exporter too, for
    /// binding logins to it as the client library does.
    pub async fn open(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(Ws, Option<[u8; 32]>), Failure> {
        tokio::time::timeout(timeout, self.open_inner(n))
            .await
            .map_err(|_| Failure::timed_out("connect, TLS and upgrade"))?
    }

    async fn open_inner(&self, n: usize) -> Result<(Ws, Option<[u8; 32]>), Failure> {
        let connect = |e: std::io::Error| Failure::new("connect", e);
        let socket = TcpSocket::new_v4().map_err(connect)?;
        if let Some(sources) = &self.sources {
            socket.bind(SocketAddr::new(sources.nth(n), 0)).map_err(connect)?;
        }
        let tcp = socket.connect(self.server).await.map_err(connect)?;
        let _ = tcp.set_nodelay(true);
        let (stream, exporter): (Box<dyn Io>, _) = match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| Failure::new("tls", e))?;
                let exporter = tls_exporter(tls.get_ref().1);
                (Box::new(tls), exporter)
            }
            None => (Box::new(tcp), None),
        };
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            self.ws_url.as_str(),
            stream,
            Some(self.ws_config),
        )
        .await
        .map_err(|e| Failure::new("websocket", e))?;
        Ok((ws, exporter))
    }
}

/// A connection that said `hello`.
pub struct Session {
    /// The WebSocket.
    pub ws: Ws,
    /// The supernode's `hello`: the nonce to sign at login.
    hello: ServerHello,
    /// From `hello`: the supernode closes connections silent for longer.
    pub heartbeat_timeout_secs: u64,
    next_id: u64,
}

/// Sends request `id` as one text frame.
async fn send_frame(ws: &mut Ws, id: u64, request: Request) -> Result<(), Failure> {
    let text = encode(&ClientFrame { id, request });
    ws.send(Message::text(text)).await.map_err(|e| Failure::new("websocket", e))
}

/// Sends request `id` and waits for its answer (the reply, or the supernode's error), skipping
/// pushed events.
async fn exchange(
    ws: &mut Ws,
    id: u64,
    request: Request,
) -> Result<Result<Reply, ErrorBody>, Failure> {
    let what = request.kind();
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        send_frame(ws, id, request).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match decode_server_frame(text.as_bytes()) {
                    Ok(ServerFrame::Ok { id: got, result }) if got == id => return Ok(Ok(result)),
                    Ok(ServerFrame::Error { id: got, error })
                        if got == Some(id) || got.is_none() =>
                    {
                        return Ok(Err(error));
                    }
                    Ok(ServerFrame::Event { event: Event::SessionEnded { reason } }) => {
                        // Say why (login_timeout, slow_reader, …) rather than just "closed".
                        return Err(Failure::new(
                            "session_ended",
                            format!("supernode ended the session: {reason:?}"),
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Failure::new("protocol", e)),
                },
                Some(Ok(Message::Close(frame))) => {
                    return Err(Failure::new("closed", format!("closed by supernode: {frame:?}")));
                }
                None => return Err(Failure::new("closed", "connection closed")),
                Some(Err(e)) => return Err(Failure::new("websocket", e)),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .map_err(|_| Failure::timed_out(what))?
}

impl Session {
    /// Says `hello` on an upgraded WebSocket.
    async fn greet(mut ws: Ws, tls_exporter: Option<[u8; 32]>) -> Result<Self, Failure> {
        let handshake =
            LoginHandshake::new(concat!("peerline-loadgen/", env!("CARGO_PKG_VERSION")));
        let answer = exchange(&mut ws, 1, handshake.hello_request()).await?;
        let mut hello = handshake.handle_hello(answer).map_err(Failure::handshake)?;
        if let Some(exporter) = tls_exporter {
            hello = hello.bind_to_tls(exporter);
        }
        Ok(Self { ws, heartbeat_timeout_secs: hello.heartbeat_timeout_secs, hello, next_id: 2 })
    }

    /// Sends one request and waits for its answer, skipping pushed events.
    pub async fn call(&mut self, request: Request) -> Result<Reply, Failure> {
        let id = self.next_id();
        exchange(&mut self.ws, id, request).await?.map_err(|error| Failure::server(&error))
    }

    /// Sends a request without waiting for the answer (`ping` from an idle connection).
    pub async fn send(&mut self, id: u64, request: Request) -> Result<(), Failure> {
        send_frame(&mut self.ws, id, request).await
    }

    /// A fresh request id for [`Session::send`].
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// `register`.
    pub async fn register(&mut self, username: &str, password: &str) -> Result<(), Failure> {
        let request = Request::Register {
            username: username.to_owned(),
            display_name: None,
            password: password.to_owned(),
        };
        match self.call(request).await? {
            Reply::Registered { .. } => Ok(()),
            other => Err(Failure::new("protocol", format!("register answered {other:?}"))),
        }
    }

    /// `login` with a password or a token; returns the session token.
    pub async fn login(
        &mut self,
        username: &str,
        key: &SigningKey,
        secret: LoginSecret<'_>,
    ) -> Result<String, Failure> {
        let credential = match secret {
            LoginSecret::Password(p) => Credential::Password(p.to_owned()),
            LoginSecret::Token(t) => Credential::Token(t.to_owned()),
        };
        let attempt = self.hello.login(username, credential, key, DEVICE_NAME);
        let id = self.next_id();
        let answer = exchange(&mut self.ws, id, attempt.request()).await?;
        match attempt.handle_answer(answer).map_err(Failure::handshake)? {
            LoginOutcome::LoggedIn(logged_in) => Ok(logged_in.token),
            // The load generator keeps its tokens in the state file and never rewrites it here:
            // a rejected token is reported as `server:invalid_token` like any other refusal.
            LoginOutcome::ForgetToken(error) | LoginOutcome::Failed(error) => {
                Err(Failure::server(&error))
            }
        }
    }

    /// Closes politely (a WebSocket close frame), without waiting for the answer.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// What a login proves itself with.
#[derive(Debug, Clone, Copy)]
pub enum LoginSecret<'a> {
    /// The account password (an Argon2id verification on the supernode).
    Password(&'a str),
    /// A session token from an earlier password login of the same device.
    Token(&'a str),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tallies_group_by_kind_and_keep_one_example() {
        let mut t = Tally::default();
        t.add(&Failure::new("connect", "refused"));
        t.add(&Failure::new("connect", "unreachable"));
        t.add(&Failure::new("timeout", "slow"));
        assert_eq!(t.total(), 3);
        assert_eq!(t.to_string(), "2 × connect (e.g. refused); 1 × timeout (e.g. slow)");
    }

    #[test]
    fn server_failures_are_named_by_code() {
        let f = Failure::server(&ErrorBody::new(peerline_wire::ErrorCode::RateLimited));
        assert!(f.is_server("rate_limited"));
        assert!(!f.is_server("username_taken"));
    }

    /// A session with a supernode on an in-memory WebSocket that answers `hello` (nonce
    /// `0badc0de`, heartbeat 45 s) and then every request with `answer`.
    async fn scripted(
        answer: impl Fn(&ClientFrame) -> ServerFrame + Send + 'static,
    ) -> Result<Session, Failure> {
        use peerline_wire::{PROTOCOL_VERSION, decode_client_frame};
        use tokio_tungstenite::tungstenite::protocol::Role;
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let ws = WebSocketStream::from_raw_socket(
            Box::new(client_end) as Box<dyn Io>,
            Role::Client,
            None,
        )
        .await;
        let mut server = WebSocketStream::from_raw_socket(server_end, Role::Server, None).await;
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = server.next().await {
                let frame = decode_client_frame(text.as_bytes()).unwrap();
                let reply = match &frame.request {
                    Request::Hello { .. } => ServerFrame::Ok {
                        id: frame.id,
                        result: Reply::Hello {
                            version: PROTOCOL_VERSION,
                            server: "test".into(),
                            nonce: "0badc0de".into(),
                            heartbeat_timeout_secs: 45,
                            stun_port: None,
                        },
                    },
                    _ => answer(&frame),
                };
                if server.send(Message::text(encode(&reply))).await.is_err() {
                    break;
                }
            }
        });
        Session::greet(ws, None).await
    }

    fn refuse(frame: &ClientFrame, code: peerline_wire::ErrorCode) -> ServerFrame {
        ServerFrame::Error { id: Some(frame.id), error: code.into() }
    }

    #[tokio::test]
    async fn token_logins_return_the_token_signed_over_the_nonce() {
        use ed25519_dalek::{Signature, Verifier};
        let key = SigningKey::from_bytes(&[9; 32]);
        let public = key.verifying_key();
        let mut session = scripted(move |frame| match &frame.request {
            Request::Login(login) => {
                let signature: [u8; 64] =
                    hex::decode(&login.device.signature).unwrap().try_into().unwrap();
                let signed = public.verify(
                    &peerline_wire::login_challenge("0badc0de"),
                    &Signature::from_bytes(&signature),
                );
                assert!(signed.is_ok(), "the device proof signs this connection's nonce");
                assert_eq!(login.device.name, DEVICE_NAME);
                ServerFrame::Ok {
                    id: frame.id,
                    result: Reply::LoggedIn {
                        username: login.username.clone(),
                        display_name: login.username.clone(),
                        device_id: 1,
                        token: login.token.clone().unwrap(),
                        status: peerline_wire::Status::Online,
                        supernodes: Vec::new(),
                    },
                }
            }
            _ => refuse(frame, peerline_wire::ErrorCode::BadRequest),
        })
        .await
        .unwrap();
        assert_eq!(session.heartbeat_timeout_secs, 45);
        let token = session.login("u1", &key, LoginSecret::Token("tok")).await.unwrap();
        assert_eq!(token, "tok");
    }

    #[tokio::test]
    async fn refused_and_odd_logins_are_named_failures() {
        use peerline_wire::ErrorCode;
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut session = scripted(|frame| refuse(frame, ErrorCode::InvalidToken)).await.unwrap();
        let failure = session.login("u1", &key, LoginSecret::Token("old")).await.unwrap_err();
        assert!(failure.is_server("invalid_token"), "{failure}");

        let mut session =
            scripted(|frame| refuse(frame, ErrorCode::InvalidCredentials)).await.unwrap();
        let failure = session.login("u1", &key, LoginSecret::Password("pw")).await.unwrap_err();
        assert!(failure.is_server("invalid_credentials"), "{failure}");

        let mut session =
            scripted(|frame| ServerFrame::Ok { id: frame.id, result: Reply::Done }).await.unwrap();
        let failure = session.login("u1", &key, LoginSecret::Password("pw")).await.unwrap_err();
        assert_eq!(failure, Failure::new("protocol", "login answered Done"));
    }

    #[tokio::test]
    async fn refuses_non_loopback_targets() {
        assert!(Dialer::new("wss://192.0.2.1:7443", None).await.is_err());
    }
}
