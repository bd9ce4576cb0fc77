//! Candidate gathering for a call (RFC 8445 §5.1.1): one host socket on the interface that
//! reaches the supernode, its server-reflexive address from the supernode's STUN responder, and
//! relayed addresses on the supernode's TURN servers (UDP, TCP and TLS), all at once.
//!
//! ICE prefers host over server-reflexive over relayed candidates by their type preference, so a
//! relay only carries a call when no direct pair works. With `relay_only`, only relayed
//! candidates are gathered: the peer then never learns this user's IP address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use peerline_media::{LocalCandidate, PacketSocket, SelectedPath};
use rand::RngCore;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::relay::{RelaySocket, RelayTransport, TurnServer};

/// How long to wait for the STUN responder's answer, per try.
const STUN_TRY: Duration = Duration::from_millis(200);

/// How long a TURN allocation may take before the call goes on without it.
const RELAY_TIMEOUT: Duration = Duration::from_secs(3);

/// After the first relay answered, how much longer to wait for the others (a network that
/// blocks UDP never answers the UDP one).
const RELAY_STRAGGLERS: Duration = Duration::from_millis(500);

/// At most this many relay URLs are tried per call.
const MAX_RELAYS: usize = 4;

/// Why gathering failed.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// A socket or a name lookup failed.
    #[error("network error while gathering candidates: {0}")]
    Io(#[from] std::io::Error),
    /// No TURN relay could be used (an error only with `relay_only`).
    #[error("no TURN relay: {0}")]
    NoRelay(String),
}

/// Short-lived credentials for the supernode's TURN relays (coturn REST scheme).
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    /// `EXPIRY:USERNAME`.
    pub username: String,
    /// The HMAC password; never logged.
    pub password: String,
    /// Seconds they stay valid.
    pub ttl_secs: u64,
    /// `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
}

impl std::fmt::Debug for TurnCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("ttl_secs", &self.ttl_secs)
            .field("urls", &self.urls)
            .finish()
    }
}

/// The servers a call gathers against, as the supernode connection knows them.
#[derive(Debug, Clone)]
pub struct Servers {
    /// The supernode's host (name or IP literal) and port: the interface that reaches it
    /// carries the host candidate, and its STUN responder answers on the same host.
    pub supernode: (String, u16),
    /// The UDP port of the supernode's STUN responder, if it runs one.
    pub stun_port: Option<u16>,
    /// TURN credentials and relay URLs, or why there are none.
    pub turn: Result<TurnCredentials, String>,
    /// TLS settings for `turns:` relays (`None`: nothing to verify them against, so they are
    /// skipped).
    pub relay_tls: Option<Arc<rustls::ClientConfig>>,
}

/// A socket a call sends and receives on.
#[derive(Debug)]
pub enum CallSocket {
    /// The host candidate's UDP socket (also the base of the server-reflexive candidate).
    Udp(UdpSocket),
    /// A TURN allocation.
    Relay(RelaySocket),
}

impl PacketSocket for CallSocket {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            CallSocket::Udp(s) => s.local_addr(),
            CallSocket::Relay(s) => PacketSocket::local_addr(s),
        }
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> std::io::Result<usize> {
        match self {
            CallSocket::Udp(s) => s.send_to(buf, target).await,
            CallSocket::Relay(s) => PacketSocket::send_to(s, buf, target).await,
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        match self {
            CallSocket::Udp(s) => s.recv_from(buf).await,
            CallSocket::Relay(s) => PacketSocket::recv_from(s, buf).await,
        }
    }
}

/// A relay allocation a call holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayInfo {
    /// The relayed address (the candidate).
    pub relayed: SocketAddr,
    /// How this side reaches the TURN server.
    pub transport: RelayTransport,
    /// The TURN server.
    pub server: SocketAddr,
}

/// The path of a call as the user sees it: the ICE pair, and the relay under it if this side's
/// candidate is relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPath {
    /// The candidate pair.
    pub selected: SelectedPath,
    /// This side's relay, when the local candidate is relayed.
    pub relay: Option<RelayInfo>,
}

impl CallPath {
    /// Whether the call goes directly between the peers (no relay on either side).
    pub fn is_direct(&self) -> bool {
        self.selected.is_direct()
    }

    /// How this side's packets travel: the relay's transport (`udp`, `tcp`, `tls`) when
    /// relayed here, else the pair's transport.
    pub fn transport(&self) -> String {
        match self.relay {
            Some(relay) => relay.transport.as_str().to_owned(),
            None => self.selected.transport.to_string(),
        }
    }
}

/// What gathering found.
#[derive(Debug, Default)]
pub struct Gathered {
    /// The sockets, for the media driver.
    pub sockets: Vec<CallSocket>,
    /// The candidates to announce, in gathering order.
    pub candidates: Vec<LocalCandidate>,
    /// The relay allocations among the sockets.
    pub relays: Vec<RelayInfo>,
    /// Whether each allocation's connection to its TURN server is still up.
    pub relays_alive: Vec<Arc<AtomicBool>>,
}

impl Gathered {
    /// The call path for a selected pair, with this side's relay if it is relayed.
    pub fn path(&self, selected: SelectedPath) -> CallPath {
        let relay = self.relays.iter().find(|r| r.relayed == selected.local_addr).copied();
        CallPath { selected, relay }
    }
}

/// Gathers the call's candidates: host and server-reflexive (unless `relay_only`) and relayed
/// ones, concurrently.
pub async fn gather(servers: &Servers, relay_only: bool) -> Result<Gathered, GatherError> {
    let direct =
        async { if relay_only { Ok(None) } else { gather_direct(servers).await.map(Some) } };
    let (direct, relays) = tokio::join!(direct, gather_relays(servers));
    let mut gathered = Gathered::default();
    if let Some((socket, candidates)) = direct? {
        gathered.sockets.push(CallSocket::Udp(socket));
        gathered.candidates.extend(candidates);
    }
    let mut relays = match relays {
        Ok(relays) => relays,
        Err(e) if relay_only => return Err(e),
        Err(e) => {
            warn!(error = %e, "no relay candidates");
            Vec::new()
        }
    };
    // The first relayed candidate added gets the highest local preference: UDP before TCP
    // before TLS.
    relays.sort_by_key(RelaySocket::transport);
    for relay in relays {
        let info = RelayInfo {
            relayed: relay.relayed_addr(),
            transport: relay.transport(),
            server: relay.server_addr(),
        };
        gathered.candidates.push(LocalCandidate::Relay { addr: info.relayed, local: info.server });
        gathered.relays.push(info);
        gathered.relays_alive.push(relay.liveness());
        gathered.sockets.push(CallSocket::Relay(relay));
    }
    if relay_only && gathered.relays.is_empty() {
        return Err(GatherError::NoRelay(
            "relay_only is set but the supernode offered no TURN relay".to_owned(),
        ));
    }
    Ok(gathered)
}

/// Binds the host candidate's socket and asks the supernode's STUN responder for the
/// server-reflexive address.
async fn gather_direct(servers: &Servers) -> Result<(UdpSocket, Vec<LocalCandidate>), GatherError> {
    let (host, port) = (servers.supernode.0.as_str(), servers.supernode.1);
    let server = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))?;
    // The interface that reaches the supernode is the one that reaches the internet (or, in a
    // test on loopback, the other peer).
    let local_ip = if server.ip().is_loopback() {
        server.ip()
    } else {
        let probe = UdpSocket::bind(SocketAddr::new(unspecified(server.ip()), 0)).await?;
        probe.connect(server).await?;
        probe.local_addr()?.ip()
    };
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    let base = socket.local_addr()?;
    let mut candidates = vec![LocalCandidate::Host(base)];
    if let Some(stun_port) = servers.stun_port {
        match stun_mapped_address(&socket, SocketAddr::new(server.ip(), stun_port)).await {
            Some(mapped) if mapped != base => {
                candidates.push(LocalCandidate::ServerReflexive { addr: mapped, base });
            }
            Some(_) => {}
            None => debug!("no answer from the supernode's STUN responder"),
        }
    }
    Ok((socket, candidates))
}

/// This side's public IP address now, from a STUN request on a fresh socket (`None` when the
/// STUN responder does not answer).
pub async fn public_ip(servers: &Servers) -> Option<IpAddr> {
    let (_, candidates) = gather_direct(servers).await.ok()?;
    public_ip_of(&candidates)
}

/// The public IP address among gathered candidates: the server-reflexive one, or the host's
/// when the STUN responder saw the host address itself (no NAT).
pub fn public_ip_of(candidates: &[LocalCandidate]) -> Option<IpAddr> {
    let srflx = candidates.iter().find_map(|c| match c {
        LocalCandidate::ServerReflexive { addr, .. } => Some(addr.ip()),
        _ => None,
    });
    srflx.or_else(|| {
        candidates.iter().find_map(|c| match c {
            LocalCandidate::Host(addr) => Some(addr.ip()),
            _ => None,
        })
    })
}

/// Allocates on every relay the supernode offers, at once; keeps what answered in time.
async fn gather_relays(servers: &Servers) -> Result<Vec<RelaySocket>, GatherError> {
    let credentials = servers.turn.as_ref().map_err(|e| GatherError::NoRelay(e.clone()))?;
    if credentials.urls.is_empty() {
        return Ok(Vec::new());
    }
    let mut turn_servers: Vec<TurnServer> = credentials
        .urls
        .iter()
        .take(MAX_RELAYS)
        .filter_map(|url| match TurnServer::parse(url) {
            Ok(server) => Some(server),
            Err(e) => {
                warn!(error = %e, "skipping a relay");
                None
            }
        })
        .collect();
    let tls = servers.relay_tls.clone();
    if tls.is_none() {
        turn_servers.retain(|s| s.transport != RelayTransport::Tls);
    }
    let mut pending: FuturesUnordered<_> =
        turn_servers
            .iter()
            .map(|server| {
                let tls = tls.clone();
                let (user, pass) = (credentials.username.as_str(), credentials.password.as_str());
                async move {
                    (server, RelaySocket::allocate(server, user, pass, tls, RELAY_TIMEOUT).await)
                }
            })
            .collect();
    let mut relays = Vec::new();
    let mut errors = Vec::new();
    let mut deadline = tokio::time::Instant::now() + RELAY_TIMEOUT;
    loop {
        match tokio::time::timeout_at(deadline, pending.next()).await {
            Ok(Some((server, Ok(relay)))) => {
                debug!(?server, relayed = %relay.relayed_addr(), "relay candidate");
                relays.push(relay);
                let soon = tokio::time::Instant::now() + RELAY_STRAGGLERS;
                deadline = deadline.min(soon);
            }
            Ok(Some((server, Err(e)))) => {
                info!(?server, error = %e, "no allocation on this relay");
                errors.push(e.to_string());
            }
            Ok(None) | Err(_) => break,
        }
    }
    if relays.is_empty() {
        let why = if errors.is_empty() {
            "no relay answered in time".to_owned()
        } else {
            errors.join("; ")
        };
        return Err(GatherError::NoRelay(why));
    }
    Ok(relays)
}

/// The wildcard address of `like`'s family.
pub(crate) fn unspecified(like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::from([0u8; 4]),
        IpAddr::V6(_) => IpAddr::from([0u16; 8]),
    }
}

/// One STUN Binding transaction with up to three tries.
async fn stun_mapped_address(socket: &UdpSocket, server: SocketAddr) -> Option<SocketAddr> {
    let mut tid = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut tid);
    let request = peerline_stun::client::binding_request(&tid);
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send_to(&request, server).await.ok()?;
        let deadline = tokio::time::Instant::now() + STUN_TRY;
        while let Ok(Ok((n, from))) =
            tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            if from == server
                && let Some(mapped) =
                    buf.get(..n).and_then(|b| peerline_stun::client::mapped_address(b, &tid))
            {
                return Some(mapped);
            }
        }
    }
    None
}
