//! One connection to a supernode: TCP, TLS with the chosen trust, WebSocket, `hello`; then a
//! background task that drives the sans-IO [`ClientSession`] and hands out answers and events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use peerline_client_core::{ClientEvent, ClientSession, Failure, SessionConfig};
use peerline_wire::{EndReason, Event, MAX_FRAME_BYTES, PROTOCOL_VERSION, Reply, Request, WS_PATH};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;

use crate::error::ClientError;
use crate::tls::{PinObservation, Trust, client_config, format_fingerprint, pin_mismatch};

/// Seconds to connect, finish TLS and the WebSocket upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// 7443 and the default path `/v1/ws`.
    pub fn parse(raw: &str) -> Result<Self, ClientError> {
        let bad =
            |reason: &str| ClientError::BadUrl { url: raw.to_owned(), reason: reason.to_owned() };
        let url = url::Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
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
        let authority = raw.split_once("://").map_or("", |(_, rest)| rest);
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
    nonce: String,
    heartbeat_timeout_secs: u64,
    stun_port: Option<u16>,
    task: tokio::task::JoinHandle<()>,
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
        let (stream, fingerprint): (Box<dyn Io>, Option<[u8; 32]>) = if endpoint.tls {
            let (config, observation) = client_config(trust)?;
            let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| {
                ClientError::BadUrl { url: endpoint.ws_url(), reason: e.to_string() }
            })?;
            let connector = tokio_rustls::TlsConnector::from(config);
            match connector.connect(name, tcp).await {
                Ok(tls) => (Box::new(tls), observation.observed()),
                Err(err) => return Err(tls_error(&err, &addr, &observation, known_file)),
            }
        } else {
            (Box::new(tcp), None)
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(endpoint.ws_url(), stream, Some(config))
                .await
                .map_err(|e| ClientError::WebSocket(e.to_string()))?;

        let (commands, command_rx) = mpsc::channel(64);
        let (event_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(ws, command_rx, event_tx));
        let mut conn = Self {
            commands,
            events,
            nonce: String::new(),
            heartbeat_timeout_secs: 60,
            stun_port: None,
            task,
        };
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            client: concat!("peerline/", env!("CARGO_PKG_VERSION")).into(),
        };
        match conn.request(hello).await? {
            Reply::Hello { nonce, heartbeat_timeout_secs, stun_port, .. } => {
                conn.nonce = nonce;
                conn.heartbeat_timeout_secs = heartbeat_timeout_secs;
                conn.stun_port = stun_port;
            }
            other => return Err(ClientError::UnexpectedReply(format!("{other:?}"))),
        }
        Ok((conn, Presented { fingerprint }))
    }

    /// The nonce from the supernode's `hello`, to sign at login.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The UDP port of the supernode's STUN responder, from its `hello`.
    pub fn stun_port(&self) -> Option<u16> {
        self.stun_port
    }

    /// Sends a request and waits for its answer.
    pub async fn request(&self, request: Request) -> Result<Reply, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request(request, tx))
            .await
            .map_err(|_| ClientError::Closed(None))?;
        rx.await.map_err(|_| ClientError::Closed(None))?
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

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
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
    let mut session = ClientSession::new(SessionConfig::default(), Instant::now());
    let mut waiting: HashMap<u64, oneshot::Sender<Reply_>> = HashMap::new();
    let (mut sink, mut stream) = ws.split();
    let mut ended: Option<EndReason> = None;
    loop {
        // Send what the session queued, hand out what it produced.
        while let Some(text) = session.poll_transmit() {
            if sink.send(Message::text(text)).await.is_err() {
                return fail_all(waiting, ended);
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
                ClientEvent::ProtocolError(text) => debug!(%text, "supernode protocol error"),
            }
        }
        let deadline = tokio::time::Instant::from_std(session.poll_timeout());
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => session.handle_frame(text.as_bytes(), Instant::now()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return fail_all(waiting, ended),
                Some(Ok(_)) => {}
            },
            command = commands.recv() => match command {
                Some(Command::Request(request, tx)) => match session.request(request, Instant::now()) {
                    Ok(id) => { waiting.insert(id, tx); }
                    Err(_) => { let _ = tx.send(Err(ClientError::Busy)); }
                },
                None => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
            },
            () = tokio::time::sleep_until(deadline) => session.handle_timeout(Instant::now()),
        }
    }
}

fn fail_all(waiting: HashMap<u64, oneshot::Sender<Reply_>>, ended: Option<EndReason>) {
    for (_, tx) in waiting {
        let _ = tx.send(Err(ClientError::Closed(ended)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
    }
}
