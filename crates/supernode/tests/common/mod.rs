//! Shared harness of the supernode integration tests: a real supernode bound to loopback port 0
//! in a temp dir and run on the test's runtime, users that connect through the client library,
//! and a raw TLS WebSocket client for speaking (and breaking) the protocol by hand.
//!
//! Every wait has a deadline ([`WAIT`]) and fails the test with what was seen instead of hanging;
//! nothing sleeps "a bit" to let things settle.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use peerline_client::connection::{Connection, Endpoint};
use peerline_client::tls::{Trust, client_config};
use peerline_client::{Client, ClientError, ConnectOptions, Home};
use peerline_store::{NewAccount, Store};
use peerline_store_sqlite::SqliteStore;
use peerline_supernode::{Config, Supernode};
use peerline_wire::{
    ClientFrame, DeviceProof, ErrorBody, Event, Login, PROTOCOL_VERSION, Presence, Reply, Request,
    ServerFrame, WS_PATH, decode_server_frame, encode, login_challenge,
};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// The longest any single expected thing may take before the test fails. Generous: real
/// password hashes (Argon2id, 19 MiB) are slow on a busy machine, and CI machines are shared.
pub const WAIT: Duration = Duration::from_secs(20);

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery staple";

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// A supernode serving on loopback for the length of one test.
pub struct TestNode {
    /// Where clients connect (TLS WebSocket).
    pub client_addr: SocketAddr,
    /// Where `/healthz` is served.
    pub admin_addr: SocketAddr,
    /// The STUN responder (UDP).
    pub stun_addr: SocketAddr,
    /// `wss://127.0.0.1:PORT` (`ws://` with `insecure_plaintext`).
    pub url: String,
    /// The fingerprint the supernode's certificate has (what clients pin).
    pub fingerprint: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    /// Holds the data dir; user homes live in it too.
    pub dir: TempDir,
}

/// A cheap Argon2id hash of [`PASSWORD`] (8 KiB, one pass) for accounts seeded into the store.
///
/// The supernode verifies a hash with the parameters stored in it, so seeded users log in
/// without the full-cost hash (19 MiB each, which adds up over a suite on two cores).
/// Registration itself, with the real cost, is covered where it is the subject of a test.
fn cheap_hash() -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

impl TestNode {
    /// A supernode with default limits and these accounts (password [`PASSWORD`]).
    pub async fn start(users: &[&str]) -> Self {
        Self::start_with(users, |_| {}).await
    }

    /// A supernode with these accounts, whose config `tune` adjusts (limits, timeouts) before it
    /// binds.
    pub async fn start_with(users: &[&str], tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().join("node"),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            stun_listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        tune(&mut config);
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let store = SqliteStore::open(&config.database_path()).await.expect("store opens");
        for name in users {
            let account = NewAccount {
                username: (*name).to_owned(),
                display_name: (*name).to_owned(),
                password_hash: cheap_hash(),
            };
            store.create_account(account, 1).await.expect("seed account");
        }
        store.close().await;
        let node = Supernode::bind(config).await.expect("supernode binds");
        let client_addr = node.client_addr();
        let admin_addr = node.admin_addr();
        let stun_addr = node.stun_addr();
        let url = node.client_url();
        // Empty when a test turned TLS off (`insecure_plaintext`, `ws://` on loopback).
        let fingerprint = node.tls().map(|tls| tls.fingerprint.clone()).unwrap_or_default();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(node.run(async {
            let _ = rx.await;
        }));
        Self { client_addr, admin_addr, stun_addr, url, fingerprint, shutdown: Some(tx), task, dir }
    }

    /// Fails the test if the server task has ended (crashed or returned an error).
    pub fn assert_serving(&self) {
        assert!(!self.task.is_finished(), "the supernode task ended while it should be serving");
    }

    /// Shuts down gracefully and checks that `run` returned `Ok`.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = within("graceful shutdown", &mut self.task).await;
        result.expect("supernode task panicked").expect("supernode run returned an error");
    }

    /// `(connections, online_users)` from `GET /healthz` on the admin listener.
    pub async fn health(&self) -> (u64, u64) {
        let body = self.admin_get("/healthz").await;
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("healthz body {body:?}: {e}"));
        (json["connections"].as_u64().unwrap(), json["online_users"].as_u64().unwrap())
    }

    /// The Prometheus text from `/metrics`.
    #[allow(dead_code)] // not every test binary reads metrics
    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics").await
    }

    /// GET on the admin listener; the body of a 200 answer.
    async fn admin_get(&self, path: &str) -> String {
        let mut tcp = TcpStream::connect(self.admin_addr).await.expect("admin listener accepts");
        let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).expect("the admin listener answers UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        body.to_owned()
    }

    /// Polls `/healthz` until `pred(connections, online_users)` holds.
    pub async fn wait_health(&self, what: &str, pred: impl Fn(u64, u64) -> bool) -> (u64, u64) {
        within(what, async {
            loop {
                let (c, u) = self.health().await;
                if pred(c, u) {
                    return (c, u);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
    }

    /// Options for the client library.
    pub fn options(&self, device_name: &str) -> ConnectOptions {
        ConnectOptions { url: self.url.clone(), ca_file: None, device_name: device_name.into() }
    }

    /// A new, empty home directory for one user's device.
    pub fn home_dir(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join("homes").join(name)
    }
}

/// One user's device, connected through the client library.
pub struct User {
    /// The connection.
    pub client: Client,
    /// The username.
    pub name: String,
    /// Events received but not yet matched by [`User::expect`], oldest first.
    backlog: Vec<Event>,
}

impl User {
    /// Connects a device whose home is `home` (created if new).
    pub async fn connect(node: &TestNode, name: &str, home: &std::path::Path) -> Client {
        let home = Home::open(home).expect("home opens");
        within("connect", Client::connect(&node.options(name), home)).await.expect("connects")
    }

    /// Registers `name` through the protocol and logs in on the same connection, with a fresh
    /// home. Costs two full-strength password hashes.
    pub async fn register(node: &TestNode, name: &str) -> Self {
        let client = Self::connect(node, name, &node.home_dir(name)).await;
        let registered =
            within("register", client.register(name, None, PASSWORD)).await.expect("registers");
        assert_eq!(registered, name);
        Self::password_login(node, name, client).await
    }

    /// Logs in an existing (seeded) account with its password, from a fresh home.
    pub async fn login(node: &TestNode, name: &str) -> Self {
        let client = Self::connect(node, name, &node.home_dir(name)).await;
        Self::password_login(node, name, client).await
    }

    /// Logs in an existing account with its password from another home: a second device.
    pub async fn login_from(node: &TestNode, name: &str, home: &std::path::Path) -> Self {
        let client = Self::connect(node, name, home).await;
        Self::password_login(node, name, client).await
    }

    async fn password_login(node: &TestNode, name: &str, mut client: Client) -> Self {
        if let Some(pinned) = &client.newly_pinned {
            assert_eq!(*pinned, node.fingerprint, "pinned the node's certificate on first use");
        }
        let reply =
            within("login", client.login_with_password(name, PASSWORD)).await.expect("logs in");
        assert!(
            matches!(reply, Reply::LoggedIn { ref username, .. } if username == name),
            "{reply:?}"
        );
        Self { client, name: name.into(), backlog: Vec::new() }
    }

    /// Reconnects `name`'s existing home and logs in with the saved token.
    pub async fn reconnect(node: &TestNode, name: &str) -> Self {
        let mut client = Self::connect(node, name, &node.home_dir(name)).await;
        assert_eq!(client.newly_pinned, None, "the pin from the first connection is reused");
        let reply = within("token login", client.login_saved()).await.expect("token login");
        assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");
        Self { client, name: name.into(), backlog: Vec::new() }
    }

    /// Sends a request that must succeed.
    pub async fn ok(&self, request: Request) -> Reply {
        let what = request.kind();
        within(what, self.client.request(request)).await.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Sends a request that must fail with a server error.
    pub async fn err(&self, request: Request) -> ErrorBody {
        let what = request.kind();
        match within(what, self.client.request(request)).await {
            Err(ClientError::Server(body)) => body,
            other => panic!("{what}: expected a server error, got {other:?}"),
        }
    }

    /// Takes the oldest event matching `pred`, waiting for it if it has not come yet. Events
    /// that do not match stay queued for later calls, so the order in which a test expects
    /// events need not be the order the supernode sent them.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let backlog = &mut self.backlog;
        let client = &mut self.client;
        let found = tokio::time::timeout(WAIT, async {
            while let Some(event) = client.next_event().await {
                if pred(&event) {
                    return Some(event);
                }
                backlog.push(event);
            }
            None
        })
        .await;
        match found {
            Ok(Some(event)) => event,
            Ok(None) => panic!(
                "{}: connection closed waiting for {what}; saw {:?}",
                self.name, self.backlog
            ),
            Err(_) => panic!("{}: timed out waiting for {what}; saw {:?}", self.name, self.backlog),
        }
    }

    /// Waits until this user sees `who` with `presence`.
    pub async fn expect_presence(&mut self, who: &str, presence: Presence) {
        let what = format!("{who} {}", presence.as_str());
        let wanted = |e: &Event| match e {
            Event::Presence { username, presence: p } => username == who && *p == presence,
            _ => false,
        };
        self.expect(&what, wanted).await;
    }

    /// Events already received, after a round trip: the supernode answers requests in order and
    /// pushes what a request caused before reading the next, so once `ping` is answered every
    /// event caused earlier has arrived.
    pub async fn drain_events(&mut self) -> Vec<Event> {
        assert_eq!(self.ok(Request::Ping).await, Reply::Pong);
        let mut events = std::mem::take(&mut self.backlog);
        while let Some(e) = self.client.try_event() {
            events.push(e);
        }
        events
    }
}

/// Makes `a` and `b` mutual contacts through the protocol and waits until each sees the other
/// online.
pub async fn befriend(a: &mut User, b: &mut User) {
    let add = Request::ContactAdd {
        username: b.name.clone(),
        message: Some(format!("hi, {} here", a.name)),
    };
    assert_eq!(a.ok(add).await, Reply::Done);
    let from = a.name.clone();
    b.expect(
        "contact request",
        |e| matches!(e, Event::ContactRequest { username, .. } if *username == from),
    )
    .await;
    assert_eq!(b.ok(Request::ContactAccept { username: a.name.clone() }).await, Reply::Done);
    let by = b.name.clone();
    a.expect(
        "contact accepted",
        |e| matches!(e, Event::ContactAccepted { username } if *username == by),
    )
    .await;
    a.expect_presence(&b.name, Presence::Online).await;
    b.expect_presence(&a.name, Presence::Online).await;
}

/// A fresh device key.
pub fn device_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// A device proof for `key` over a connection's nonce.
pub fn proof(key: &SigningKey, nonce: &str) -> DeviceProof {
    DeviceProof {
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(key.sign(&login_challenge(nonce)).to_bytes()),
        name: "test device".into(),
        channel_binding: None,
    }
}

/// A `Connection` (client library, below `Client`) to the node, hello done.
pub async fn connection(node: &TestNode) -> Connection {
    let endpoint = Endpoint::parse(&node.url).unwrap();
    let known = node.dir.path().join("known_supernodes");
    let (conn, presented) =
        within("connect", Connection::connect(&endpoint, &Trust::Pin { expected: None }, &known))
            .await
            .expect("connects");
    assert!(presented.fingerprint.is_some());
    conn
}

/// Logs `conn` in as `username` with a password or a token, signing with `key`.
pub async fn login(
    conn: &Connection,
    key: &SigningKey,
    username: &str,
    password: Option<&str>,
    token: Option<&str>,
) -> Result<Reply, ClientError> {
    let login = Login {
        username: username.into(),
        password: password.map(str::to_owned),
        token: token.map(str::to_owned),
        // As the client signs: bound to the TLS connection.
        device: conn.server_hello().device_proof(key, "test device"),
        quiet: false,
    };
    within("login", conn.request(Request::Login(login))).await
}

/// The server error inside a failed request.
pub fn server_error(result: Result<Reply, ClientError>) -> ErrorBody {
    match result {
        Err(ClientError::Server(body)) => body,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Checks that the node still serves a well-behaved client — a fresh client logs in as `name`
/// (a seeded account) and gets answers — and then still shuts down cleanly.
pub async fn assert_still_serves_then_stop(node: TestNode, name: &str) {
    node.assert_serving();
    let user = User::login(&node, name).await;
    match user.ok(Request::Whoami).await {
        Reply::Me(profile) => assert_eq!(profile.username, name),
        other => panic!("whoami: {other:?}"),
    }
    drop(user);
    node.stop().await;
}

/// A raw TLS WebSocket, for sending what the client library never would.
pub type RawSocket = WebSocketStream<TlsStream<TcpStream>>;

/// What the next read of a raw socket produced.
#[derive(Debug)]
pub enum Incoming {
    /// A server frame.
    Frame(ServerFrame),
    /// A close frame, with its code.
    Close(Option<u16>),
    /// A binary, ping or pong frame (the server sends none of these).
    Other(String),
    /// The stream ended or failed (EOF, reset) without a close frame.
    Gone(String),
}

/// A raw protocol client over TLS, with no automatic pings and no hidden reads.
pub struct Raw {
    /// The socket.
    pub ws: RawSocket,
    next_id: u64,
    /// The nonce from `hello`, once said.
    pub nonce: String,
}

/// Finishes TLS (accepting any certificate, like a first-use client) on a connected socket.
pub async fn tls(tcp: TcpStream) -> TlsStream<TcpStream> {
    let (config, _) = client_config(&Trust::Pin { expected: None }).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    within("TLS handshake", connector.connect(name, tcp)).await.expect("TLS handshake")
}

impl Raw {
    /// Connects TCP, TLS and WebSocket.
    pub async fn connect(node: &TestNode) -> Self {
        let tcp = TcpStream::connect(node.client_addr).await.expect("TCP connect");
        Self::over(node, tcp).await
    }

    /// TLS and WebSocket over an already connected socket (e.g. one with a small receive buffer).
    pub async fn over(node: &TestNode, tcp: TcpStream) -> Self {
        let stream = tls(tcp).await;
        let url = format!("wss://{}{WS_PATH}", node.client_addr);
        let (ws, _) = within(
            "WebSocket upgrade",
            tokio_tungstenite::client_async_with_config(url, stream, None),
        )
        .await
        .expect("WebSocket upgrade");
        Self { ws, next_id: 1, nonce: String::new() }
    }

    /// Sends a text frame as is.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        within("send", self.ws.send(Message::text(text.into()))).await.expect("send");
    }

    /// Sends a request; returns its id.
    pub async fn send(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(encode(&ClientFrame { id, request })).await;
        id
    }

    /// Reads the next thing the server sent.
    pub async fn recv(&mut self) -> Incoming {
        match within("a frame from the supernode", self.ws.next()).await {
            Some(Ok(Message::Text(text))) => Incoming::Frame(
                decode_server_frame(text.as_bytes())
                    .unwrap_or_else(|e| panic!("server sent {text:?}: {e}")),
            ),
            Some(Ok(Message::Close(frame))) => Incoming::Close(frame.map(|f| u16::from(f.code))),
            Some(Ok(other)) => Incoming::Other(format!("{other:?}")),
            Some(Err(err)) => Incoming::Gone(err.to_string()),
            None => Incoming::Gone("end of stream".into()),
        }
    }

    /// Reads frames until one matches, failing on close.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&ServerFrame) -> bool) -> ServerFrame {
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                Incoming::Frame(frame) if pred(&frame) => return frame,
                Incoming::Frame(frame) => seen.push(frame),
                other => panic!("connection ended ({other:?}) waiting for {what}; saw {seen:?}"),
            }
        }
    }

    /// Waits for the answer to request `id` (skipping events); `Ok` or the error body.
    pub async fn answer(&mut self, id: u64) -> Result<Reply, ErrorBody> {
        let frame = self
            .expect(&format!("the answer to request {id}"), |f| match f {
                ServerFrame::Ok { id: i, .. } => *i == id,
                ServerFrame::Error { id: i, .. } => *i == Some(id),
                ServerFrame::Event { .. } => false,
            })
            .await;
        match frame {
            ServerFrame::Ok { result, .. } => Ok(result),
            ServerFrame::Error { error, .. } => Err(error),
            ServerFrame::Event { .. } => unreachable!(),
        }
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&mut self, request: Request) -> Result<Reply, ErrorBody> {
        let id = self.send(request).await;
        self.answer(id).await
    }

    /// Says hello; keeps the nonce.
    pub async fn hello(&mut self) {
        let hello = Request::Hello { version: PROTOCOL_VERSION, client: "raw-test".into() };
        match self.request(hello).await {
            Ok(Reply::Hello { nonce, .. }) => self.nonce = nonce,
            other => panic!("hello: {other:?}"),
        }
    }

    /// Hello, then a password login with a fresh device key.
    pub async fn login(&mut self, username: &str) {
        self.hello().await;
        self.login_after_hello(username).await;
    }

    /// A password login with a fresh device key, `hello` already said.
    pub async fn login_after_hello(&mut self, username: &str) {
        let login = Login {
            username: username.into(),
            password: Some(PASSWORD.into()),
            token: None,
            device: proof(&device_key(), &self.nonce),
            quiet: false,
        };
        match self.request(Request::Login(login)).await {
            Ok(Reply::LoggedIn { .. }) => {}
            other => panic!("raw login as {username}: {other:?}"),
        }
    }

    /// Reads until the server closes the connection; returns everything it sent on the way and
    /// how it ended. Fails the test if the server keeps it open past [`WAIT`].
    pub async fn until_closed(&mut self) -> (Vec<ServerFrame>, Incoming) {
        let mut frames = Vec::new();
        loop {
            match self.recv().await {
                Incoming::Frame(frame) => frames.push(frame),
                Incoming::Other(_) => {}
                end => return (frames, end),
            }
        }
    }
}

/// The close code the server sends for a frame that is too large (RFC 6455 §7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Reads a byte stream until EOF or error; fails the test if the peer keeps it open past
/// [`WAIT`].
pub async fn until_eof(stream: &mut (impl tokio::io::AsyncRead + Unpin), what: &str) {
    within(what, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}
