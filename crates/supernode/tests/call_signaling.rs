//! Call signaling through a real supernode, as users see it: who rings, who is told the call
//! ended and why, who gets a missed-call notice (live and again at every login until
//! acknowledged), which device wins when several ring, where trickled candidates go, and which
//! calls are refused. The requests are raw (`call_invite`, `call_accept`, …): the supernode only
//! checks the shape of the SDP and signature, never their meaning.
//!
//! The last two tests go end to end through the client library with a man in the middle between
//! alice and the supernode that rewrites bob's answer, as a malicious supernode would: a swapped
//! DTLS fingerprint must fail the signature check, and a swapped device key (with a valid
//! signature by that key) must fail the pin — in both cases the call is refused and bob's side
//! ends without media.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestNode, User, befriend, within};
use ed25519_dalek::{Signer, SigningKey};
use futures_util::{SinkExt, StreamExt};
use peerline_call::media::{ToneSource, sdp_dtls_fingerprint};
use peerline_call::{CallEnd, CallError, CallOptions, CallSummary, IncomingCall};
use peerline_client::Client;
use peerline_wire::{
    CallEndReason, ErrorCode, Event, Presence, Reply, Request, SdpRole, ServerFrame, WS_PATH,
    call_signature_payload, decode_server_frame, encode,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// An offer (or answer) the supernode accepts: no candidates, only the placeholder address.
const SDP: &str = "v=0\r\nc=IN IP4 0.0.0.0\r\n";

/// A host candidate as clients trickle it.
const CANDIDATE: &str = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host";

/// A well-formed signature (the supernode does not verify it; the peer does).
fn signature() -> String {
    "ab".repeat(64)
}

/// A fresh call id: 32 lowercase hex characters.
fn new_call_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn invite(call_id: &str, to: &str) -> Request {
    Request::CallInvite {
        call_id: call_id.into(),
        to: to.into(),
        sdp: SDP.into(),
        fingerprint_signature: signature(),
    }
}

fn accept(call_id: &str) -> Request {
    Request::CallAccept {
        call_id: call_id.into(),
        sdp: SDP.into(),
        fingerprint_signature: signature(),
    }
}

fn candidate(call_id: &str, candidate: &str) -> Request {
    Request::CallCandidate { call_id: call_id.into(), candidate: candidate.into() }
}

/// `alice` places call `id` to `to`; it must ring `devices` devices.
async fn place(caller: &User, id: &str, to: &str, devices: u32) {
    match caller.ok(invite(id, to)).await {
        Reply::CallPlaced { call_id, ringing_devices } => {
            assert_eq!(call_id, id);
            assert_eq!(ringing_devices, devices, "devices ringing for {to}");
        }
        other => panic!("call_invite: {other:?}"),
    }
}

fn is_incoming(id: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::CallIncoming { call_id, .. } if call_id == id)
}

fn is_ended(id: &str, why: CallEndReason) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::CallEnded { call_id, reason } if call_id == id && *reason == why)
}

fn is_missed<'a>(id: &'a str, caller: &'a str) -> impl Fn(&Event) -> bool + 'a {
    move |e| matches!(e, Event::MissedCall { missed } if missed.call_id == id && missed.from == caller)
}

fn is_any_missed(e: &Event) -> bool {
    matches!(e, Event::MissedCall { .. })
}

/// The id of a `missed_call` event's notice.
fn missed_id(event: &Event) -> i64 {
    match event {
        Event::MissedCall { missed } => missed.id,
        other => panic!("not a missed call: {other:?}"),
    }
}

/// The public key of a client's device, hex.
fn key_hex(client: &Client) -> String {
    hex::encode(client.device_key().unwrap().verifying_key().to_bytes())
}

/// The device id under which `owner`'s device with key `key` is registered, as `asker` (the
/// owner or a contact) sees it through `device_keys`.
async fn device_id(asker: &User, owner: &str, key: &str) -> i64 {
    match asker.ok(Request::DeviceKeys { username: owner.into() }).await {
        Reply::DeviceKeys { username, devices } => {
            assert_eq!(username, owner);
            devices
                .iter()
                .find(|d| d.public_key == key)
                .unwrap_or_else(|| panic!("{owner} has no device with key {key}: {devices:?}"))
                .device_id
        }
        other => panic!("device_keys: {other:?}"),
    }
}

/// alice and bob, logged in and accepted contacts.
async fn alice_and_bob(node: &TestNode) -> (User, User) {
    let mut alice = User::login(node, "alice").await;
    let mut bob = User::login(node, "bob").await;
    befriend(&mut alice, &mut bob).await;
    (alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_rings_the_caller_then_ends_declined_and_is_not_missed() {
    let node = TestNode::start(&["alice", "bob"]).await;
    let (mut alice, mut bob) = alice_and_bob(&node).await;
    let alice_key = key_hex(&alice.client);
    let alice_device = device_id(&alice, "alice", &alice_key).await;

    let id = new_call_id();
    place(&alice, &id, "bob", 1).await;
    match bob.expect("the call", is_incoming(&id)).await {
        Event::CallIncoming { from, display_name, device_id, device_key, sdp, .. } => {
            assert_eq!((from.as_str(), display_name.as_str()), ("alice", "alice"));
            assert_eq!(device_id, alice_device, "the calling device");
            assert_eq!(device_key, alice_key, "the calling device's key, to check the signature");
            assert_eq!(sdp, SDP);
        }
        other => unreachable!("{other:?}"),
    }
    assert_eq!(bob.ok(Request::CallRinging { call_id: id.clone() }).await, Reply::Done);
    alice
        .expect("ringing", |e| matches!(e, Event::CallRinging { call_id } if *call_id == id))
        .await;
    let decline = Request::CallDecline { call_id: id.clone(), busy: false, reason: None };
    assert_eq!(bob.ok(decline).await, Reply::Done);
    alice.expect("declined", is_ended(&id, CallEndReason::Declined)).await;
    // The call is gone: accepting it now is too late.
    assert_eq!(bob.err(accept(&id)).await.code, ErrorCode::NoSuchCall);

    // A declined call is not a missed one. Missed calls are written and pushed in order, so the
    // first notice bob gets must be that of a later, cancelled call.
    let later = new_call_id();
    place(&alice, &later, "bob", 1).await;
    bob.expect("the second call", is_incoming(&later)).await;
    assert_eq!(alice.ok(Request::CallCancel { call_id: later.clone() }).await, Reply::Done);
    let first_missed = bob.expect("a missed call", is_any_missed).await;
    assert!(is_missed(&later, "alice")(&first_missed), "{first_missed:?}");

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_stops_ringing_and_leaves_a_missed_call() {
    let node = TestNode::start(&["alice", "bob"]).await;
    let (mut alice, mut bob) = alice_and_bob(&node).await;

    let id = new_call_id();
    place(&alice, &id, "bob", 1).await;
    bob.expect("the call", is_incoming(&id)).await;
    assert_eq!(bob.ok(Request::CallRinging { call_id: id.clone() }).await, Reply::Done);
    alice
        .expect("ringing", |e| matches!(e, Event::CallRinging { call_id } if *call_id == id))
        .await;
    assert_eq!(alice.ok(Request::CallCancel { call_id: id.clone() }).await, Reply::Done);
    bob.expect("cancelled", is_ended(&id, CallEndReason::Cancelled)).await;
    bob.expect("the missed call", is_missed(&id, "alice")).await;
    // Ringing stopped for good: bob can no longer pick up.
    assert_eq!(bob.err(accept(&id)).await.code, ErrorCode::NoSuchCall);
    // The caller is not told about her own cancel.
    let events = alice.drain_events().await;
    assert!(!events.iter().any(|e| matches!(e, Event::CallEnded { .. })), "{events:?}");

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callee_in_a_call_is_busy_and_gets_a_missed_call() {
    let node = TestNode::start(&["alice", "bob", "carol"]).await;
    let (mut alice, mut bob) = alice_and_bob(&node).await;
    let mut carol = User::login(&node, "carol").await;
    befriend(&mut carol, &mut bob).await;

    // bob is in an answered call with carol.
    let with_carol = new_call_id();
    place(&carol, &with_carol, "bob", 1).await;
    bob.expect("carol's call", is_incoming(&with_carol)).await;
    assert_eq!(bob.ok(accept(&with_carol)).await, Reply::Done);
    carol
        .expect(
            "bob answers",
            |e| matches!(e, Event::CallAccepted { call_id, .. } if *call_id == with_carol),
        )
        .await;

    // alice's call does not ring at all: busy, and bob sees he missed it.
    let id = new_call_id();
    assert_eq!(alice.err(invite(&id, "bob")).await.code, ErrorCode::CalleeBusy);
    bob.expect("alice's missed call", is_missed(&id, "alice")).await;
    let events = bob.drain_events().await;
    assert!(!events.iter().any(is_incoming(&id)), "a busy callee must not ring: {events:?}");

    // After the call with carol, bob's only device says busy by itself: the call ends busy.
    assert_eq!(carol.ok(Request::CallHangup { call_id: with_carol.clone() }).await, Reply::Done);
    bob.expect("carol hung up", is_ended(&with_carol, CallEndReason::HungUp)).await;
    let id = new_call_id();
    place(&alice, &id, "bob", 1).await;
    bob.expect("alice's call", is_incoming(&id)).await;
    let busy = Request::CallDecline { call_id: id.clone(), busy: true, reason: None };
    assert_eq!(bob.ok(busy).await, Reply::Done);
    alice.expect("busy", is_ended(&id, CallEndReason::Busy)).await;
    bob.expect("the busy call is missed too", is_missed(&id, "alice")).await;

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_ends_no_answer_and_the_missed_call_is_pushed_until_acknowledged() {
    let node = TestNode::start_with(&["alice", "bob", "carol"], |c| {
        c.calls.ring_timeout_secs = 2;
    })
    .await;
    let (mut alice, mut bob) = alice_and_bob(&node).await;

    let id = new_call_id();
    place(&alice, &id, "bob", 1).await;
    bob.expect("the call", is_incoming(&id)).await;
    alice.expect("no answer (caller)", is_ended(&id, CallEndReason::NoAnswer)).await;
    bob.expect("no answer (callee)", is_ended(&id, CallEndReason::NoAnswer)).await;
    let notice = missed_id(&bob.expect("the missed call", is_missed(&id, "alice")).await);

    // Every login pushes it again until a device acknowledges it.
    drop(bob);
    let mut bob = User::reconnect(&node, "bob").await;
    let again = bob.expect("the missed call again at login", is_missed(&id, "alice")).await;
    assert_eq!(missed_id(&again), notice);
    assert_eq!(bob.ok(Request::AckMissedCalls { ids: vec![notice] }).await, Reply::Done);
    drop(bob);
    let mut bob = User::reconnect(&node, "bob").await;
    let events = bob.drain_events().await;
    assert!(!events.iter().any(is_any_missed), "acknowledged, yet pushed: {events:?}");

    // A callee with no device online: refused at once, and the notice waits for her login.
    let mut carol = User::login(&node, "carol").await;
    befriend(&mut alice, &mut carol).await;
    drop(carol);
    alice.expect_presence("carol", Presence::Offline).await;
    let id = new_call_id();
    assert_eq!(alice.err(invite(&id, "carol")).await.code, ErrorCode::CalleeUnavailable);
    let mut carol = User::reconnect(&node, "carol").await;
    carol.expect("the missed call at login", is_missed(&id, "alice")).await;

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_device_to_answer_wins_and_alone_gets_the_callers_candidates() {
    let node = TestNode::start(&["alice", "bob"]).await;
    let (mut alice, mut phone) = alice_and_bob(&node).await;
    let mut laptop = User::login_from(&node, "bob", &node.dir.path().join("bob2")).await;
    let laptop_id = device_id(&alice, "bob", &key_hex(&laptop.client)).await;

    let id = new_call_id();
    place(&alice, &id, "bob", 2).await;
    phone.expect("the call on the phone", is_incoming(&id)).await;
    laptop.expect("the call on the laptop", is_incoming(&id)).await;
    // alice trickles a candidate while it rings: nobody gets it yet.
    assert_eq!(alice.ok(candidate(&id, CANDIDATE)).await, Reply::Done);
    let early = laptop.drain_events().await;
    assert!(!early.iter().any(|e| matches!(e, Event::CallCandidate { .. })), "{early:?}");
    assert_eq!(phone.ok(Request::CallRinging { call_id: id.clone() }).await, Reply::Done);

    // The laptop answers first.
    assert_eq!(laptop.ok(accept(&id)).await, Reply::Done);
    match alice
        .expect("answered", |e| matches!(e, Event::CallAccepted { call_id, .. } if *call_id == id))
        .await
    {
        Event::CallAccepted { device_id, .. } => assert_eq!(device_id, laptop_id),
        other => unreachable!("{other:?}"),
    }
    phone.expect("answered elsewhere", is_ended(&id, CallEndReason::AnsweredElsewhere)).await;
    let late = phone.err(accept(&id)).await;
    assert_eq!(late.code, ErrorCode::NoSuchCall);

    // The held candidate goes to the laptop now, and later ones too; the laptop's go to alice.
    let held = |e: &Event| matches!(e, Event::CallCandidate { call_id, candidate } if *call_id == id && candidate == CANDIDATE);
    laptop.expect("the held candidate", held).await;
    let second = CANDIDATE.replace("50000", "50001");
    assert_eq!(alice.ok(candidate(&id, &second)).await, Reply::Done);
    laptop
        .expect(
            "a later candidate",
            |e| matches!(e, Event::CallCandidate { candidate, .. } if *candidate == second),
        )
        .await;
    let from_laptop = CANDIDATE.replace("50000", "50002");
    assert_eq!(laptop.ok(candidate(&id, &from_laptop)).await, Reply::Done);
    alice
        .expect(
            "the laptop's candidate",
            |e| matches!(e, Event::CallCandidate { candidate, .. } if *candidate == from_laptop),
        )
        .await;
    // The phone, which only rang, may not trickle into the call and never learned an address.
    assert_eq!(phone.err(candidate(&id, CANDIDATE)).await.code, ErrorCode::NoSuchCall);
    let seen = phone.drain_events().await;
    assert!(!seen.iter().any(|e| matches!(e, Event::CallCandidate { .. })), "{seen:?}");

    assert_eq!(alice.ok(Request::CallHangup { call_id: id.clone() }).await, Reply::Done);
    laptop.expect("alice hung up", is_ended(&id, CallEndReason::HungUp)).await;
    let seen = phone.drain_events().await;
    assert!(!seen.iter().any(|e| matches!(e, Event::CallEnded { .. })), "{seen:?}");

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_accepted_contacts_can_be_called_with_offers_that_carry_no_addresses() {
    let node = TestNode::start(&["alice", "bob", "carol"]).await;
    let (alice, mut bob) = alice_and_bob(&node).await;
    let _carol = User::login(&node, "carol").await;

    // Not a contact, or no such user: the same answer.
    assert_eq!(alice.err(invite(&new_call_id(), "carol")).await.code, ErrorCode::NotContact);
    assert_eq!(alice.err(invite(&new_call_id(), "nobody")).await.code, ErrorCode::NotContact);

    // An offer that would reveal alice's address before bob answers.
    let leaky = Request::CallInvite {
        call_id: new_call_id(),
        to: "bob".into(),
        sdp: format!("{SDP}a={CANDIDATE}\r\n"),
        fingerprint_signature: signature(),
    };
    assert_eq!(alice.err(leaky).await.code, ErrorCode::InvalidArgument);
    let leaky = Request::CallInvite {
        call_id: new_call_id(),
        to: "bob".into(),
        sdp: "v=0\r\nc=IN IP4 192.0.2.7\r\n".into(),
        fingerprint_signature: signature(),
    };
    assert_eq!(alice.err(leaky).await.code, ErrorCode::InvalidArgument);
    // Malformed call ids.
    for bad in ["ABCDEF0123456789ABCDEF0123456789".to_owned(), "ab".repeat(15), "zz".repeat(16)] {
        assert_eq!(alice.err(invite(&bad, "bob")).await.code, ErrorCode::InvalidArgument, "{bad}");
    }

    // Once bob blocks alice she cannot call him.
    let block = Request::ContactBlock { username: "alice".into() };
    assert_eq!(bob.ok(block).await, Reply::Done);
    assert_eq!(alice.err(invite(&new_call_id(), "bob")).await.code, ErrorCode::NotContact);

    let events = bob.drain_events().await;
    assert!(!events.iter().any(|e| matches!(e, Event::CallIncoming { .. })), "{events:?}");
    node.stop().await;
}

/// How the man in the middle rewrites bob's answer on its way to alice.
enum Tamper {
    /// Flips one hex digit of the DTLS fingerprint in the SDP; the signature is left as is.
    Fingerprint,
    /// Flips the fingerprint too, but presents this key as bob's device key and signs the new
    /// fingerprint with it: a valid signature, by the wrong key.
    KeyAndFingerprint(Box<SigningKey>),
}

/// A WebSocket relay between a client and the supernode that rewrites `call_accepted` events.
struct Mitm {
    /// `ws://127.0.0.1:PORT`.
    url: String,
    /// How many answers it rewrote.
    rewrites: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mitm {
    async fn start(upstream: &str, tamper: Tamper) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let upstream = format!("{upstream}{WS_PATH}");
        let tamper = Arc::new(tamper);
        let rewrites = Arc::new(AtomicUsize::new(0));
        let counter = rewrites.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(relay(tcp, upstream.clone(), tamper.clone(), counter.clone()));
            }
        });
        Self { url, rewrites, task }
    }
}

async fn relay(tcp: TcpStream, upstream: String, tamper: Arc<Tamper>, rewrites: Arc<AtomicUsize>) {
    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else { return };
    let Ok((server, _)) = tokio_tungstenite::connect_async(upstream).await else { return };
    let (mut to_client, mut from_client) = client.split();
    let (mut to_server, mut from_server) = server.split();
    let up = async {
        while let Some(Ok(message)) = from_client.next().await {
            if to_server.send(message).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        while let Some(Ok(message)) = from_server.next().await {
            let message = match message {
                Message::Text(text) => Message::text(rewrite(text.as_str(), &tamper, &rewrites)),
                other => other,
            };
            if to_client.send(message).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

/// Flips the first hex digit of the digest on every `a=fingerprint:` line.
fn flip_fingerprint(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| match line.strip_prefix("a=fingerprint:") {
            Some(value) => {
                let (hash, digest) = value.split_once(' ').expect("a fingerprint line");
                let flipped = if digest.starts_with('0') { '1' } else { '0' };
                format!("a=fingerprint:{hash} {flipped}{}", &digest[1..])
            }
            None => line.to_owned(),
        })
        .collect()
}

fn rewrite(text: &str, tamper: &Tamper, rewrites: &AtomicUsize) -> String {
    let Ok(ServerFrame::Event {
        event: Event::CallAccepted { call_id, device_id, device_key, sdp, fingerprint_signature },
    }) = decode_server_frame(text.as_bytes())
    else {
        return text.to_owned();
    };
    let sdp = flip_fingerprint(&sdp);
    let (device_key, fingerprint_signature) = match tamper {
        Tamper::Fingerprint => (device_key, fingerprint_signature),
        Tamper::KeyAndFingerprint(key) => {
            let fingerprint = sdp_dtls_fingerprint(&sdp).expect("one fingerprint");
            let payload =
                call_signature_payload(&call_id, SdpRole::Answer, "bob", "alice", &fingerprint);
            (
                hex::encode(key.verifying_key().to_bytes()),
                hex::encode(key.sign(&payload).to_bytes()),
            )
        }
    };
    rewrites.fetch_add(1, Ordering::SeqCst);
    let event = Event::CallAccepted { call_id, device_id, device_key, sdp, fingerprint_signature };
    encode(&ServerFrame::Event { event })
}

/// What an intercepted call left behind.
struct Intercepted {
    alice: Result<CallSummary, CallError>,
    bob: Result<CallSummary, CallError>,
    bob_device: i64,
    bob_key: String,
    rewrites: usize,
}

/// alice (through the man in the middle) calls bob (direct) with the client library. With
/// `pin_first`, alice pins bob's real device key (from `device_keys`) before the call.
async fn intercepted_call(tamper: Tamper, pin_first: bool) -> Intercepted {
    let mut node = TestNode::start_with(&["alice", "bob"], |c| c.insecure_plaintext = true).await;
    assert!(node.url.starts_with("ws://127.0.0.1:"), "{}", node.url);
    let mitm = Mitm::start(&node.url, tamper).await;
    // alice's device reaches the supernode only through the relay.
    let direct = std::mem::replace(&mut node.url, mitm.url.clone());
    let mut alice = User::login(&node, "alice").await;
    node.url = direct;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;
    let bob_key = key_hex(&bob.client);
    let bob_device = device_id(&alice, "bob", &bob_key).await;
    if pin_first {
        let check = alice.client.home().check_peer_key("bob", bob_device, &bob_key).unwrap();
        assert_eq!(check, peerline_call::KeyCheck::NewlyPinned);
    }

    let mut alice_progress = |_| {};
    let caller = peerline_call::place_call(
        &mut alice.client,
        "bob",
        ToneSource::new(440.0),
        Vec::<i16>::new(),
        CallOptions::default(),
        tokio::time::sleep(Duration::from_secs(10)),
        &mut alice_progress,
    );
    let callee = async {
        let event = bob.expect("the call", |e| matches!(e, Event::CallIncoming { .. })).await;
        let incoming = IncomingCall::from_event(&event).unwrap();
        peerline_call::ring(&bob.client, &incoming).await.unwrap();
        peerline_call::answer_call(
            &mut bob.client,
            incoming,
            ToneSource::new(660.0),
            Vec::<i16>::new(),
            CallOptions::default(),
            tokio::time::sleep(Duration::from_secs(10)),
            &mut |_| {},
        )
        .await
    };
    let (alice_result, bob_result) =
        within("the call", async { tokio::join!(caller, callee) }).await;
    let rewrites = mitm.rewrites.load(Ordering::SeqCst);
    drop((alice, bob, mitm));
    node.stop().await;
    Intercepted { alice: alice_result, bob: bob_result, bob_device, bob_key, rewrites }
}

/// bob answered, then alice refused the answer: his side ended as hung up without media.
fn assert_bob_hung_up_without_media(bob: Result<CallSummary, CallError>) {
    let bob = bob.expect("bob's side of the call");
    assert_eq!(bob.end, CallEnd::Remote(CallEndReason::HungUp), "{bob:?}");
    assert_eq!(bob.timings.connected, None, "media must not connect: {bob:?}");
    assert_eq!(bob.timings.first_audio, None, "{bob:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_substituted_dtls_fingerprint_fails_the_signature_and_the_call_is_refused() {
    let call = intercepted_call(Tamper::Fingerprint, false).await;
    assert_eq!(call.rewrites, 1, "the relay rewrote bob's answer");
    match call.alice {
        Err(e @ CallError::BadSignature { .. }) => {
            let CallError::BadSignature { ref peer, device_id } = e else { unreachable!() };
            assert_eq!((peer.as_str(), device_id), ("bob", call.bob_device));
            assert!(e.to_string().contains("IDENTITY CHANGED"), "{e}");
        }
        other => panic!("alice must refuse the answer: {other:?}"),
    }
    assert_bob_hung_up_without_media(call.bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_substituted_device_key_fails_the_pin_and_the_call_is_refused() {
    let mitm_key = common::device_key();
    let mitm_hex = hex::encode(mitm_key.verifying_key().to_bytes());
    let call = intercepted_call(Tamper::KeyAndFingerprint(Box::new(mitm_key)), true).await;
    assert_eq!(call.rewrites, 1, "the relay rewrote bob's answer");
    match call.alice {
        Err(CallError::IdentityChanged(changed)) => {
            assert_eq!(changed.username, "bob");
            assert_eq!(changed.device_id, call.bob_device);
            assert_eq!(changed.pinned, call.bob_key);
            assert_eq!(changed.presented, mitm_hex);
            assert!(changed.to_string().contains("IDENTITY CHANGED"), "{changed}");
        }
        other => panic!("alice must refuse the answer: {other:?}"),
    }
    assert_bob_hung_up_without_media(call.bob);
}
