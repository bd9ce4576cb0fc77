//! Fuzz harness: a TURN server's side of an allocation, as the client of `peerline-nat`'s relay
//! driver reads it. The client is turn-client-proto's sans-IO `TurnClientUdp`/`TurnClientTcp`,
//! built as `RelaySocket::allocate` builds it, and driven the way its `Allocation` task drives it
//! (`recv`, `poll_recv`, `poll_event`, `poll_transmit`, `poll`, permissions before sends,
//! channels over UDP).
//!
//! The input is a script: answers to the client's requests (success or error, with any
//! attributes, signed with the allocation's long-term credentials or not), Data indications,
//! ChannelData, raw bytes (also split TCP reads), packets the call sends, and time passing.
//! Three flags let the harness answer like a working server (the 401 challenge to the first
//! Allocate, a signed success to the second, signed grants of permissions and channels), so the
//! fuzzer reaches a live allocation with peers as often as it likes.
//!
//! Beyond "no panic", it checks what the relay driver relies on:
//! - an allocation is only created by a response carrying MESSAGE-INTEGRITY, and only with a
//!   relayed address that response named (an off-path attacker cannot inject one);
//! - permissions appear only after a signed response;
//! - peer data from a Data indication comes only from a peer that was granted a permission, and
//!   ChannelData only from a peer a channel was bound to;
//! - everything the client sends goes from the client's address to the TURN server.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use arbitrary::Arbitrary;
use turn_client_proto::api::{TurnClientApi, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::stun::Instant;
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::types::TransportType;
use turn_client_proto::stun::types::attribute::{
    AttributeType, ErrorCode, Nonce, RawAttribute, Realm, XorMappedAddress,
};
use turn_client_proto::stun::types::message::{
    IntegrityAlgorithm, LongTermCredentials, Message, MessageClass, MessageWrite, MessageWriteExt,
    MessageWriteVec,
};
use turn_client_proto::tcp::TurnClientTcp;
use turn_client_proto::types::TurnCredentials;
use turn_client_proto::types::attribute::{
    ChannelNumber, Data, Lifetime, XorPeerAddress, XorRelayedAddress,
};
use turn_client_proto::types::channel::ChannelData;
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, DATA};
use turn_client_proto::types::transmit::DelayedTransmitBuild;
use turn_client_proto::udp::TurnClientUdp;

const USER: &str = "1767225600:peerline";
const PASS: &str = "fuzz-secret";
const REALM: &str = "peerline.example";
const LOCAL: &str = "192.0.2.50:40000";
const SERVER: &str = "203.0.113.1:3478";
/// Peers the script names by number, so sends, permissions and data meet.
const PEERS: [&str; 4] =
    ["198.51.100.1:5000", "198.51.100.2:6000", "[2001:db8::5]:7000", "198.51.100.1:5001"];
/// The relayed address the harness hands out when it answers the Allocate itself.
const RELAYED: &str = "203.0.113.1:50000";

const MAX_STEPS: usize = 64;
/// MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (RFC 8489 §14.5, §14.6, §14.7).
const INTEGRITY_TYPES: [u16; 3] = [0x0008, 0x001C, 0x8028];
const MAX_ATTRS: usize = 8;

#[derive(Arbitrary, Debug)]
enum Addr {
    Known(u8),
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl Addr {
    fn get(&self) -> SocketAddr {
        match self {
            Addr::Known(n) => parse(PEERS[usize::from(*n) % PEERS.len()]),
            Addr::V4(ip, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(*ip)), *port),
            Addr::V6(ip, port) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(*ip)), *port),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Attr {
    XorRelayed(Addr),
    XorMapped(Addr),
    XorPeer(Addr),
    Lifetime(u32),
    /// `None`: the realm the harness signs with.
    Realm(Option<String>),
    Nonce(String),
    Error {
        code: u16,
        reason: String,
    },
    Channel(u16),
    Raw {
        kind: u16,
        value: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// The server answers one of the client's requests so far.
    Reply {
        request: u8,
        error: Option<u16>,
        attrs: Vec<Attr>,
        sign: bool,
        fingerprint: bool,
        /// Over TCP, deliver the answer in two reads split here.
        split: Option<u16>,
    },
    /// A Data indication from a peer (indications are never signed).
    Data { peer: Addr, data: Vec<u8>, attrs: Vec<Attr> },
    /// ChannelData on a channel number.
    Channel { channel: u16, data: Vec<u8> },
    /// Bytes as they arrive: garbage, truncated or concatenated messages.
    Raw(Vec<u8>),
    /// The call sends a packet to a peer through the relay.
    Send { peer: Addr, len: u8 },
    /// Time passes (milliseconds, up to about 18 hours in all).
    Wait(u16, u8),
    /// The call ends: the allocation is deleted.
    Delete,
}

/// A TURN server's side of one allocation, as the fuzzer writes it.
#[derive(Arbitrary, Debug)]
pub struct Script {
    tcp: bool,
    /// The harness answers the first Allocate with the 401 challenge (realm and nonce).
    challenge: bool,
    /// The harness answers the authenticated Allocate with a signed success.
    allocate: bool,
    /// The harness grants every permission and channel asked for (signed successes).
    permit: bool,
    steps: Vec<Step>,
}

fn parse(addr: &str) -> SocketAddr {
    addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"))
}

/// What the harness knows about the server side, to judge the client's reactions.
#[derive(Default)]
struct Server {
    /// Every request the client sent, oldest first.
    requests: Vec<Vec<u8>>,
    /// A response carrying MESSAGE-INTEGRITY was delivered (signed by the harness, or raw bytes
    /// that might carry one).
    authentic: bool,
    /// Relayed addresses named in signed success responses.
    relayed: HashSet<SocketAddr>,
    /// Peers a channel was asked for, as the relay driver keeps them.
    channels: Vec<SocketAddr>,
    /// Peer addresses the client announced a permission for.
    permitted: HashSet<IpAddr>,
}

fn key() -> turn_client_proto::stun::types::message::MessageIntegrityCredentials {
    LongTermCredentials::new(USER.into(), PASS.into()).to_key(REALM.into()).into()
}

/// Builds the server's answer to `request`.
fn answer(
    server: &mut Server,
    request: &[u8],
    error: Option<u16>,
    attrs: &[Attr],
    sign: bool,
    fingerprint: bool,
) -> Option<Vec<u8>> {
    let request = Message::from_bytes(request).ok()?;
    let mut reply = match error {
        Some(_) => Message::builder_error(&request, MessageWriteVec::new()),
        None => Message::builder_success(&request, MessageWriteVec::new()),
    };
    let tid = reply.transaction_id();
    if let Some(code) = error
        && let Ok(attr) = ErrorCode::builder(code).build()
    {
        let _ = reply.add_attribute(&attr);
    }
    let mut relayed = Vec::new();
    let mut forged_integrity = false;
    for attr in attrs.iter().take(MAX_ATTRS) {
        // Attributes the writer refuses (a duplicate, bad text) are left out, as a server would.
        let _ = match attr {
            Attr::XorRelayed(addr) => {
                relayed.push(addr.get());
                reply.add_attribute(&XorRelayedAddress::new(addr.get(), tid))
            }
            Attr::XorMapped(addr) => reply.add_attribute(&XorMappedAddress::new(addr.get(), tid)),
            Attr::XorPeer(addr) => reply.add_attribute(&XorPeerAddress::new(addr.get(), tid)),
            Attr::Lifetime(seconds) => reply.add_attribute(&Lifetime::new(*seconds)),
            Attr::Realm(realm) => match Realm::new(realm.as_deref().unwrap_or(REALM)) {
                Ok(realm) => reply.add_attribute(&realm),
                Err(e) => Err(e),
            },
            Attr::Nonce(nonce) => match Nonce::new(nonce) {
                Ok(nonce) => reply.add_attribute(&nonce),
                Err(e) => Err(e),
            },
            Attr::Error { code, reason } => {
                match ErrorCode::builder(*code).reason(reason).build() {
                    Ok(attr) => reply.add_attribute(&attr),
                    Err(e) => Err(e),
                }
            }
            Attr::Channel(id) => reply.add_attribute(&ChannelNumber::new(*id)),
            Attr::Raw { kind, value } => {
                let raw = RawAttribute::new(AttributeType::new(*kind), value);
                if INTEGRITY_TYPES.contains(kind) {
                    // The writer refuses these by panicking; a server can still send them.
                    // A forged integrity attribute might, in principle, be the right one.
                    reply.push_attribute_unchecked(&raw);
                    forged_integrity = true;
                    Ok(())
                } else {
                    reply.add_attribute(&raw)
                }
            }
        };
    }
    if forged_integrity {
        server.authentic = true;
        server.relayed.extend(relayed.iter().copied());
    }
    if sign && reply.add_message_integrity(&key(), IntegrityAlgorithm::Sha1).is_ok() {
        server.authentic = true;
        if error.is_none() {
            server.relayed.extend(relayed);
        }
    }
    if fingerprint {
        let _ = reply.add_fingerprint();
    }
    Some(reply.finish())
}

/// The answer to the first Allocate: 401 with the realm and nonce of the long-term credential
/// mechanism (RFC 8489 §9.2.4).
fn challenge(request: &Message<'_>) -> Vec<u8> {
    let mut reply = Message::builder_error(request, MessageWriteVec::new());
    if let Ok(code) = ErrorCode::builder(ErrorCode::UNAUTHORIZED).build() {
        let _ = reply.add_attribute(&code);
    }
    if let Ok(realm) = Realm::new(REALM) {
        let _ = reply.add_attribute(&realm);
    }
    if let Ok(nonce) = Nonce::new("fuzz-nonce") {
        let _ = reply.add_attribute(&nonce);
    }
    reply.finish()
}

/// The signed success to the authenticated Allocate (RFC 8656 §7.3).
fn allocation(server: &mut Server, request: &Message<'_>) -> Vec<u8> {
    let mut reply = Message::builder_success(request, MessageWriteVec::new());
    let tid = reply.transaction_id();
    let _ = reply.add_attribute(&XorRelayedAddress::new(parse(RELAYED), tid));
    let _ = reply.add_attribute(&XorMappedAddress::new(parse(LOCAL), tid));
    let _ = reply.add_attribute(&Lifetime::new(600));
    if reply.add_message_integrity(&key(), IntegrityAlgorithm::Sha1).is_ok() {
        server.authentic = true;
        server.relayed.insert(parse(RELAYED));
    }
    reply.finish()
}

/// A signed success without attributes: how a server grants a permission or a channel.
fn granted(server: &mut Server, request: &Message<'_>) -> Vec<u8> {
    let mut reply = Message::builder_success(request, MessageWriteVec::new());
    if reply.add_message_integrity(&key(), IntegrityAlgorithm::Sha1).is_ok() {
        server.authentic = true;
    }
    reply.finish()
}

struct Harness<C: TurnClientApi> {
    client: C,
    server: Server,
    now: Instant,
    transport: TransportType,
    challenge: bool,
    allocate: bool,
    permit: bool,
}

impl<C: TurnClientApi> Harness<C> {
    /// Collects what the client sends and does, checking each; answers the opening Allocates
    /// when the script asked the harness to.
    fn settle(&mut self) {
        for _ in 0..16 {
            let mut auto = Vec::new();
            while let Some(transmit) = self.client.poll_transmit(self.now) {
                assert_eq!(transmit.from, self.client.local_addr(), "sent from elsewhere");
                assert_eq!(transmit.to, parse(SERVER), "sent somewhere but the TURN server");
                let bytes = transmit.data.as_ref().to_vec();
                if let Ok(msg) = Message::from_bytes(&bytes)
                    && msg.has_class(MessageClass::Request)
                {
                    if msg.method() == ALLOCATE && self.challenge {
                        self.challenge = false;
                        auto.push(challenge(&msg));
                    } else if msg.method() == ALLOCATE && self.allocate {
                        self.allocate = false;
                        auto.push(allocation(&mut self.server, &msg));
                    } else if (msg.method() == CREATE_PERMISSION || msg.method() == CHANNEL_BIND)
                        && self.permit
                    {
                        auto.push(granted(&mut self.server, &msg));
                    }
                    self.server.requests.push(bytes);
                }
            }
            self.events();
            if auto.is_empty() {
                return;
            }
            for bytes in auto {
                self.deliver(&bytes);
            }
        }
    }

    fn events(&mut self) {
        while let Some(event) = self.client.poll_event() {
            match event {
                TurnEvent::AllocationCreated(_, relayed) => {
                    assert!(self.server.authentic, "an allocation without a signed response");
                    assert!(
                        self.server.relayed.contains(&relayed),
                        "allocated {relayed}, which no signed response named"
                    );
                }
                TurnEvent::PermissionCreated(_, ip) => {
                    assert!(
                        self.server.authentic,
                        "a permission for {ip} without a signed response"
                    );
                    self.server.permitted.insert(ip);
                }
                _ => {}
            }
        }
    }

    /// Hands bytes from the server to the client, as `Allocation::received` does.
    fn deliver(&mut self, bytes: &[u8]) {
        let from_channel = bytes.first().is_some_and(|b| b & 0xC0 == 0x40);
        let transmit = Transmit {
            data: bytes,
            transport: self.transport,
            from: parse(SERVER),
            to: parse(LOCAL),
        };
        if let TurnRecvRet::PeerData(data) = self.client.recv(transmit, self.now) {
            assert!(data.data().len() <= bytes.len());
            // Over UDP one datagram is one message, so its kind is known.
            if self.transport == TransportType::Udp {
                if from_channel {
                    assert!(
                        self.server.channels.contains(&data.peer),
                        "ChannelData from {}",
                        data.peer
                    );
                } else {
                    // Not `have_permission`: that is false once the allocation is deleted or
                    // expired, while turn-client-proto 0.7 still delivers data from a peer whose
                    // permission was granted late (after `delete`). Harmless for the relay
                    // driver, which stops reading when it deletes; what matters is that the peer
                    // was permitted at all.
                    assert!(
                        self.server.permitted.contains(&data.peer.ip()),
                        "peer data from {}, never permitted",
                        data.peer
                    );
                }
            }
        }
        while self.client.poll_recv(self.now).is_some() {}
        self.events();
    }

    /// The relay driver's `Allocation::send`: a permission first, then a channel (UDP only),
    /// then the data.
    fn send(&mut self, peer: SocketAddr, len: u8) {
        let transport = TransportType::Udp;
        if !self.client.have_permission(transport, peer.ip()) {
            let _ = self.client.create_permission(transport, peer.ip(), self.now);
            return;
        }
        if self.transport == TransportType::Udp && !self.server.channels.contains(&peer) {
            self.server.channels.push(peer);
            let _ = self.client.bind_channel(transport, peer, self.now);
        }
        let payload = vec![0x5A; usize::from(len)];
        if let Ok(Some(build)) = self.client.send_to(transport, peer, payload.as_slice(), self.now)
        {
            assert_eq!(build.to, parse(SERVER), "peer data sent around the TURN server");
            let _ = build.data.build();
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Reply { request, error, attrs, sign, fingerprint, split } => {
                let Some(req) = self
                    .server
                    .requests
                    .get(usize::from(*request) % self.server.requests.len().max(1))
                    .cloned()
                else {
                    return;
                };
                let Some(bytes) =
                    answer(&mut self.server, &req, *error, attrs, *sign, *fingerprint)
                else {
                    return;
                };
                match split {
                    Some(at) if self.transport == TransportType::Tcp => {
                        let (a, b) = bytes.split_at(usize::from(*at) % (bytes.len() + 1));
                        self.deliver(a);
                        self.deliver(b);
                    }
                    _ => self.deliver(&bytes),
                }
            }
            Step::Data { peer, data, attrs } => {
                let mut msg = Message::builder_indication(DATA, MessageWriteVec::new());
                let tid = msg.transaction_id();
                let _ = msg.add_attribute(&XorPeerAddress::new(peer.get(), tid));
                let _ = msg.add_attribute(&Data::new(data));
                // Only raw extras: an indication carries no integrity to sign.
                for attr in attrs.iter().take(MAX_ATTRS) {
                    if let Attr::Raw { kind, value } = attr {
                        let raw = RawAttribute::new(AttributeType::new(*kind), value);
                        if INTEGRITY_TYPES.contains(kind) {
                            msg.push_attribute_unchecked(&raw);
                        } else {
                            let _ = msg.add_attribute(&raw);
                        }
                    }
                }
                self.deliver(&msg.finish());
            }
            Step::Channel { channel, data } => {
                let channel = ChannelData::new(*channel, data);
                let mut bytes = vec![0; 4 + data.len()];
                let written = channel.write_into_unchecked(&mut bytes);
                bytes.truncate(written);
                self.deliver(&bytes);
            }
            Step::Raw(bytes) => {
                // Bytes the harness did not build might carry a valid MESSAGE-INTEGRITY (the
                // fuzzer can learn one from comparisons): count any that could as signed.
                let might_sign = bytes.windows(2).any(|w| w == [0x00, 0x08] || w == [0x00, 0x1C]);
                if might_sign {
                    self.server.authentic = true;
                    self.server.relayed.extend(addresses_in(bytes));
                }
                self.deliver(bytes);
            }
            Step::Send { peer, len } => self.send(peer.get(), *len),
            Step::Wait(millis, factor) => {
                let millis = u64::from(*millis) * (1 + u64::from(*factor));
                self.now += Duration::from_millis(millis);
                let _ = self.client.poll(self.now);
            }
            Step::Delete => {
                let _ = self.client.delete(self.now);
            }
        }
        self.settle();
        if let TurnPollRet::WaitUntil(at) = self.client.poll(self.now) {
            // Timers the client wants in the past are fired at once by the driver.
            if at <= self.now {
                self.settle();
            }
        }
    }
}

/// Relayed addresses raw bytes could name: any STUN message in them, decoded as the client would.
fn addresses_in(bytes: &[u8]) -> Vec<SocketAddr> {
    let Ok(msg) = Message::from_bytes(bytes) else { return Vec::new() };
    let mut found = Vec::new();
    let mut i = 0;
    while let Ok(attr) = msg.nth_attribute::<XorRelayedAddress>(i) {
        found.push(attr.addr(msg.transaction_id()));
        i += 1;
    }
    found
}

fn run<C: TurnClientApi>(client: C, transport: TransportType, script: &Script) {
    let mut harness = Harness {
        client,
        server: Server::default(),
        now: Instant::ZERO + Duration::from_secs(1),
        transport,
        challenge: script.challenge,
        allocate: script.allocate,
        permit: script.permit,
    };
    harness.settle();
    for step in script.steps.iter().take(MAX_STEPS) {
        harness.step(step);
    }
}

/// Decodes a [`Script`] from one input the way a typed cargo-fuzz target does, and plays it.
pub fn turn_client(data: &[u8]) {
    if let Some(script) = crate::structured::<Script>(data) {
        play(&script);
    }
}

/// Plays one script against a fresh TURN client over UDP or TCP; panics when a check fails.
pub fn play(script: &Script) {
    let config = TurnConfig::new(TurnCredentials::new(USER, PASS));
    if script.tcp {
        let client = TurnClientTcp::allocate(parse(LOCAL), parse(SERVER), config);
        run(client, TransportType::Tcp, script);
    } else {
        let client = TurnClientUdp::allocate(parse(LOCAL), parse(SERVER), config);
        run(client, TransportType::Udp, script);
    }
}
