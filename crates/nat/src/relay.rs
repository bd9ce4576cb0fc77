//! TURN relay allocations (RFC 8656) as sockets for a call's media.
//!
//! When no direct path exists (a symmetric NAT facing a filtering one, a network that lets only
//! TCP 443 out), ICE falls back to a relayed candidate: an address on a TURN server (coturn) that
//! forwards to and from the peer. The TURN protocol itself is turn-client-proto's sans-IO client;
//! this file is its thin driver: one tokio task per allocation that moves bytes between the
//! connection to the TURN server (UDP, TCP, or TLS over TCP) and the call's media driver, and
//! fires the client's timers (refreshes of the allocation, permissions and channels).
//!
//! A [`RelaySocket`] is a [`PacketSocket`] whose local address is the relayed address, so the
//! media driver routes packets whose source is the relayed candidate through it. Packets to a
//! peer wait until the TURN server confirmed a permission for the peer's address (sending before
//! that would be dropped by the server and cost ICE a retransmission).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use peerline_media::PacketSocket;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{debug, info, warn};
use turn_client_proto::api::{
    CreatePermissionError, TurnClientApi, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet,
};
use turn_client_proto::stun::Instant as TurnInstant;
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::types::TransportType;
use turn_client_proto::tcp::TurnClientTcp;
use turn_client_proto::types::TurnCredentials;
use turn_client_proto::types::transmit::DelayedTransmitBuild;
use turn_client_proto::udp::TurnClientUdp;

turn_client_proto::impl_client!(TurnClient, (Udp, TurnClientUdp), (Tcp, TurnClientTcp));

/// Largest datagram or stream read at once.
const MAX_READ: usize = 4096;

/// Packets queued between the media driver and an allocation's task, each way.
const QUEUE: usize = 256;

/// Packets held per peer address while the TURN server installs its permission.
const MAX_PENDING_PER_PEER: usize = 32;

/// Peer addresses waiting for a permission at once (a call has at most 64 remote candidates).
const MAX_PENDING_PEERS: usize = 64;

/// The longest the task sleeps without looking at the TURN client.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How the client reaches a TURN server, in order of preference (datagrams over a datagram
/// transport first: TCP adds head-of-line blocking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelayTransport {
    /// `turn:…?transport=udp` (the default for `turn:`).
    Udp,
    /// `turn:…?transport=tcp`.
    Tcp,
    /// `turns:…` (TLS over TCP; port 443 gets through networks that allow only HTTPS).
    Tls,
}

impl RelayTransport {
    /// `udp`, `tcp` or `tls`, as shown in `peerline call --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayTransport::Udp => "udp",
            RelayTransport::Tcp => "tcp",
            RelayTransport::Tls => "tls",
        }
    }
}

/// A TURN server from a `turn:` / `turns:` URL (RFC 7065).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (3478 for `turn:`, 5349 for `turns:` unless given).
    pub port: u16,
    /// How to reach it.
    pub transport: RelayTransport,
}

impl TurnServer {
    /// Parses `turn:host[:port][?transport=udp|tcp]` or `turns:host[:port][?transport=tcp]`.
    pub fn parse(url: &str) -> Result<Self, RelayError> {
        let bad = |why: &str| RelayError::BadUrl(format!("{url}: {why}"));
        let (secure, rest) = if let Some(rest) = url.strip_prefix("turns:") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("turn:") {
            (false, rest)
        } else {
            return Err(bad("not a turn: or turns: URL"));
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let transport = match (secure, query) {
            (false, "" | "transport=udp") => RelayTransport::Udp,
            (false, "transport=tcp") => RelayTransport::Tcp,
            (true, "" | "transport=tcp") => RelayTransport::Tls,
            _ => return Err(bad("the only query is transport=udp or transport=tcp (turns: tcp)")),
        };
        let default_port = if secure { 5349 } else { 3478 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("junk after the IPv6 address")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(bad("no valid host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("bad port"))?,
            None => default_port,
        };
        Ok(TurnServer { host: host.to_owned(), port, transport })
    }
}

/// Why an allocation could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The relay URL from the supernode is not usable.
    #[error("bad TURN URL {0}")]
    BadUrl(String),
    /// Talking to the TURN server failed.
    #[error("TURN server {server}: {source}")]
    Io {
        /// `host:port`.
        server: String,
        /// What failed.
        source: io::Error,
    },
    /// The TURN server refused the allocation (wrong or expired credentials, quota reached).
    #[error("TURN server {0} refused the allocation (credentials expired or quota reached?)")]
    Refused(String),
    /// No allocation within the time given.
    #[error("TURN server {0} did not answer in time")]
    Timeout(String),
}

/// One datagram between the media driver and the relay: bytes and the peer's address.
type Packet = (Vec<u8>, SocketAddr);

/// A relayed address on a TURN server, usable as a call socket. Dropping it deletes the
/// allocation.
#[derive(Debug)]
pub struct RelaySocket {
    relayed: SocketAddr,
    transport: RelayTransport,
    server: SocketAddr,
    outgoing: mpsc::Sender<Packet>,
    incoming: Mutex<mpsc::Receiver<Packet>>,
    alive: Arc<AtomicBool>,
}

impl RelaySocket {
    /// Allocates a relayed UDP address on `server` with the supernode's short-lived
    /// credentials. `tls` is the client config for `turns:` servers.
    pub async fn allocate(
        server: &TurnServer,
        username: &str,
        password: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Self, RelayError> {
        let name = format!("{}:{}", server.host, server.port);
        let io_err = |source| RelayError::Io { server: name.clone(), source };
        let connect = async {
            let addr = tokio::net::lookup_host((server.host.as_str(), server.port))
                .await
                .map_err(io_err)?
                .next()
                .ok_or_else(|| io_err(io::Error::other("resolves to no address")))?;
            let link = Link::connect(addr, server, tls).await.map_err(io_err)?;
            Ok::<_, RelayError>((addr, link))
        };
        let (addr, link) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| RelayError::Timeout(name.clone()))??;
        let local = link.local_addr().map_err(io_err)?;
        let config = TurnConfig::new(TurnCredentials::new(username, password));
        let client = match server.transport {
            RelayTransport::Udp => TurnClient::Udp(TurnClientUdp::allocate(local, addr, config)),
            RelayTransport::Tcp | RelayTransport::Tls => {
                TurnClient::Tcp(TurnClientTcp::allocate(local, addr, config))
            }
        };
        let (outgoing, from_media) = mpsc::channel(QUEUE);
        let (to_media, incoming) = mpsc::channel(QUEUE);
        let (ready_tx, ready) = oneshot::channel();
        let alive = Arc::new(AtomicBool::new(true));
        let task = Allocation {
            client,
            link,
            base: std::time::Instant::now(),
            local,
            server: addr,
            pending: HashMap::new(),
            channels: Vec::new(),
            to_media,
            ready: Some(ready_tx),
            outbox: Vec::new(),
        };
        let task_alive = alive.clone();
        tokio::spawn(async move {
            task.run(from_media).await;
            task_alive.store(false, Ordering::Relaxed);
        });
        let relayed = match tokio::time::timeout(timeout, ready).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => return Err(RelayError::Refused(name)),
            Err(_) => return Err(RelayError::Timeout(name)),
        };
        info!(%relayed, server = %name, transport = server.transport.as_str(), "TURN allocation");
        Ok(RelaySocket {
            relayed,
            transport: server.transport,
            server: addr,
            outgoing,
            incoming: Mutex::new(incoming),
            alive,
        })
    }

    /// A flag that turns false when the allocation's connection to its TURN server ends (the
    /// server closed it, it failed, or the allocation could not be refreshed).
    pub fn liveness(&self) -> Arc<AtomicBool> {
        self.alive.clone()
    }

    /// The relayed address (the candidate's address).
    pub fn relayed_addr(&self) -> SocketAddr {
        self.relayed
    }

    /// How this allocation reaches its TURN server.
    pub fn transport(&self) -> RelayTransport {
        self.transport
    }

    /// The TURN server's address.
    pub fn server_addr(&self) -> SocketAddr {
        self.server
    }
}

impl PacketSocket for RelaySocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.relayed)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        // Never wait on the relay: a full queue drops the packet as a congested link would.
        match self.outgoing.try_send((buf.to_vec(), target)) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(buf.len()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(io::Error::new(io::ErrorKind::NotConnected, "the TURN allocation is gone"))
            }
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let Some((bytes, peer)) = self.incoming.lock().await.recv().await else {
            // The allocation ended; keep the reader quiet instead of spinning on errors.
            return std::future::pending().await;
        };
        let n = bytes.len().min(buf.len());
        buf.get_mut(..n).unwrap_or_default().copy_from_slice(bytes.get(..n).unwrap_or_default());
        Ok((n, peer))
    }
}

/// The connection to the TURN server.
enum Link {
    Udp(UdpSocket),
    Stream {
        local: SocketAddr,
        read: Box<dyn AsyncRead + Send + Unpin>,
        write: Box<dyn AsyncWrite + Send + Unpin>,
    },
}

impl Link {
    async fn connect(
        addr: SocketAddr,
        server: &TurnServer,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> io::Result<Self> {
        match server.transport {
            RelayTransport::Udp => {
                let socket = UdpSocket::bind((crate::gather::unspecified(addr.ip()), 0)).await?;
                socket.connect(addr).await?;
                Ok(Link::Udp(socket))
            }
            RelayTransport::Tcp => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let local = stream.local_addr()?;
                let (read, write) = stream.into_split();
                Ok(Link::Stream { local, read: Box::new(read), write: Box::new(write) })
            }
            RelayTransport::Tls => {
                let config = tls.ok_or_else(|| io::Error::other("no TLS configuration"))?;
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let local = stream.local_addr()?;
                let name = match server.host.parse::<IpAddr>() {
                    Ok(ip) => ServerName::IpAddress(ip.into()),
                    Err(_) => ServerName::try_from(server.host.clone())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
                };
                let tls = tokio_rustls::TlsConnector::from(config).connect(name, stream).await?;
                let (read, write) = tokio::io::split(tls);
                Ok(Link::Stream { local, read: Box::new(read), write: Box::new(write) })
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Link::Udp(socket) => socket.local_addr(),
            Link::Stream { local, .. } => Ok(*local),
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Udp(socket) => socket.send(bytes).await.map(drop),
            Link::Stream { write, .. } => {
                write.write_all(bytes).await?;
                write.flush().await
            }
        }
    }

    /// Reads what arrived; `Ok(0)` means the stream closed.
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Udp(socket) => socket.recv(buf).await,
            Link::Stream { read, .. } => read.read(buf).await,
        }
    }
}

/// The task behind one [`RelaySocket`].
struct Allocation {
    client: TurnClient,
    link: Link,
    /// The TURN client's clock counts from here.
    base: std::time::Instant,
    local: SocketAddr,
    server: SocketAddr,
    /// Packets waiting for a permission, by peer address.
    pending: HashMap<IpAddr, Vec<Packet>>,
    /// Peers a channel was asked for (a channel costs 4 bytes a packet instead of 36).
    channels: Vec<SocketAddr>,
    to_media: mpsc::Sender<Packet>,
    ready: Option<oneshot::Sender<Result<SocketAddr, RelayError>>>,
    /// Wrapped packets for peers, written by the next pump.
    outbox: Vec<Vec<u8>>,
}

impl Allocation {
    fn now(&self) -> TurnInstant {
        TurnInstant::from_std(self.base)
    }

    fn transport(&self) -> TransportType {
        self.client.transport()
    }

    async fn run(mut self, mut from_media: mpsc::Receiver<Packet>) {
        let mut buf = vec![0u8; MAX_READ];
        loop {
            let wake = match self.pump().await {
                Ok(Some(at)) => at,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, server = %self.server, "TURN connection failed");
                    self.fail();
                    return;
                }
            };
            let sleep = wake.min(std::time::Instant::now() + MAX_SLEEP);
            tokio::select! {
                packet = from_media.recv() => match packet {
                    Some(packet) => self.send(packet),
                    None => {
                        // The call is over: delete the allocation instead of letting it time out.
                        let now = self.now();
                        if self.client.delete(now).is_ok() {
                            let _ = tokio::time::timeout(Duration::from_secs(1), self.pump()).await;
                        }
                        return;
                    }
                },
                read = self.link.recv(&mut buf) => match read {
                    Ok(0) if matches!(self.link, Link::Stream { .. }) => {
                        warn!(server = %self.server, "the TURN server closed the connection");
                        self.fail();
                        return;
                    }
                    Ok(n) => self.received(buf.get(..n).unwrap_or_default()),
                    // An ICMP error for an earlier datagram; the socket is still usable.
                    Err(e) if matches!(self.link, Link::Udp(_)) => debug!(error = %e, "TURN receive"),
                    Err(e) => {
                        warn!(error = %e, server = %self.server, "TURN connection failed");
                        self.fail();
                        return;
                    }
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(sleep)) => {}
            }
        }
    }

    /// Sends what the client queued and handles its events; returns when it next wants to be
    /// woken, or `None` once the allocation is closed.
    async fn pump(&mut self) -> io::Result<Option<std::time::Instant>> {
        loop {
            let now = self.now();
            let mut progressed = false;
            for bytes in std::mem::take(&mut self.outbox) {
                self.link.send(&bytes).await?;
            }
            while let Some(transmit) = self.client.poll_transmit(now) {
                self.link.send(transmit.data.as_ref()).await?;
                progressed = true;
            }
            while let Some(event) = self.client.poll_event() {
                self.on_event(event);
                progressed = true;
            }
            if !self.outbox.is_empty() {
                continue;
            }
            if progressed {
                continue;
            }
            return Ok(match self.client.poll(now) {
                TurnPollRet::WaitUntil(at) => Some(at.to_std(self.base)),
                TurnPollRet::Closed => None,
                // Only TCP allocations (RFC 6062) ask for sockets; Peerline relays UDP.
                other => {
                    debug!(?other, "unexpected TURN poll result");
                    Some(std::time::Instant::now() + MAX_SLEEP)
                }
            });
        }
    }

    fn on_event(&mut self, event: TurnEvent) {
        match event {
            TurnEvent::AllocationCreated(_, relayed) => {
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(relayed));
                }
            }
            TurnEvent::AllocationCreateFailed(family) => {
                debug!(?family, "TURN allocation refused");
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Err(RelayError::Refused(self.server.to_string())));
                }
            }
            TurnEvent::PermissionCreated(_, ip) => {
                for packet in self.pending.remove(&ip).unwrap_or_default() {
                    self.send(packet);
                }
            }
            TurnEvent::PermissionCreateFailed(_, ip) => {
                // coturn refuses private and loopback peers (denied-peer-ip): not a path.
                debug!(%ip, "TURN permission refused");
                self.pending.remove(&ip);
            }
            other => debug!(?other, "TURN event"),
        }
    }

    /// Hands one packet from the media driver to the TURN client, or holds it until the
    /// peer's permission exists.
    fn send(&mut self, (bytes, peer): Packet) {
        let now = self.now();
        let transport = TransportType::Udp;
        if !self.client.have_permission(transport, peer.ip()) {
            let first = !self.pending.contains_key(&peer.ip());
            if first && self.pending.len() >= MAX_PENDING_PEERS {
                return;
            }
            let queue = self.pending.entry(peer.ip()).or_default();
            if queue.len() < MAX_PENDING_PER_PEER {
                queue.push((bytes, peer));
            }
            if first {
                match self.client.create_permission(transport, peer.ip(), now) {
                    Ok(()) | Err(CreatePermissionError::AlreadyExists) => {}
                    // No permission will come (no allocation for that address family): do not
                    // hold packets for it.
                    Err(e) => {
                        debug!(error = %e, %peer, "TURN permission");
                        self.pending.remove(&peer.ip());
                    }
                }
            }
            return;
        }
        // Channels only over UDP: turn-client-proto 0.7 neither pads ChannelData to four bytes
        // over TCP (RFC 8656 §12.5) nor expects coturn's padding, which desynchronizes the
        // stream. Send/Data indications are STUN messages, always padded, at 36 bytes a packet.
        let datagrams = matches!(self.link, Link::Udp(_));
        if datagrams && !self.channels.contains(&peer) && self.channels.len() < MAX_PENDING_PEERS {
            self.channels.push(peer);
            if let Err(e) = self.client.bind_channel(transport, peer, now) {
                debug!(error = %e, %peer, "TURN channel");
            }
        }
        match self.client.send_to(transport, peer, bytes.as_slice(), now) {
            Ok(Some(build)) => {
                self.outbox.push(build.data.build());
            }
            Ok(None) => {}
            Err(e) => debug!(error = %e, %peer, "TURN send"),
        }
    }

    fn received(&mut self, bytes: &[u8]) {
        let now = self.now();
        let transmit = Transmit {
            data: bytes,
            transport: self.transport(),
            from: self.server,
            to: self.local,
        };
        match self.client.recv(transmit, now) {
            TurnRecvRet::PeerData(data) => self.deliver(data.data().to_vec(), data.peer),
            TurnRecvRet::Handled | TurnRecvRet::Ignored(_) => {}
            TurnRecvRet::PeerIcmp { peer, icmp_type, .. } => {
                debug!(%peer, icmp_type, "ICMP from a peer through the relay");
            }
        }
        while let Some(data) = self.client.poll_recv(now) {
            self.deliver(data.data().to_vec(), data.peer);
        }
    }

    fn deliver(&mut self, bytes: Vec<u8>, peer: SocketAddr) {
        // A slow media driver loses packets rather than stalling the TURN connection.
        let _ = self.to_media.try_send((bytes, peer));
    }

    fn fail(&mut self) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(RelayError::Refused(self.server.to_string())));
        }
    }
}
