//! A call between users on two real supernodes of a cluster (one PostgreSQL, one nats-server,
//! from `peerline_testkit::cluster`), with raw call requests through the client library: the
//! callee trickles a candidate right after its `call_accept`, pipelined behind it, as the
//! protocol says the answering device does. Its supernode must take the candidate (not refuse it
//! `no_such_call` because the caller's supernode has not confirmed the answer yet) and the caller
//! must get it, once.
//!
//! Needs PostgreSQL and nats-server (`scripts/setup`) and the built binaries (`cargo build -p
//! peerline-supernode --bins`); fails, never skips, when they are missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use peerline_client::{Client, ConnectOptions, Home};
use peerline_testkit::cluster::TestCluster;
use peerline_wire::{Event, Presence, Reply, Request};

/// The longest any single expected thing may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

const PASSWORD: &str = "correct horse battery staple";

/// An offer (or answer) the supernode accepts: no candidates, only the placeholder address.
const SDP: &str = "v=0\r\nc=IN IP4 0.0.0.0\r\n";

/// The candidate bob trickles right after answering.
const CANDIDATE: &str = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host";

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// One user's device on one supernode, with the events it got and has not matched yet.
struct Device {
    client: Client,
    backlog: Vec<Event>,
}

impl Device {
    /// Registers `name` on the supernode at `url` and logs in from a fresh home under `dir`.
    async fn register(url: &str, name: &str, dir: &Path) -> Device {
        let options =
            ConnectOptions { url: url.to_owned(), ca_file: None, device_name: name.to_owned() };
        let home = Home::open(&dir.join(name)).unwrap();
        let mut client = within("connect", Client::connect(&options, home)).await.unwrap();
        within("register", client.register(name, None, PASSWORD)).await.unwrap();
        within("login", client.login_with_password(name, PASSWORD)).await.unwrap();
        Device { client, backlog: Vec::new() }
    }

    async fn ok(&self, request: Request) -> Reply {
        let what = request.kind();
        within(what, self.client.request(request)).await.unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Takes the oldest event matching `pred`, waiting for it if need be.
    async fn expect(&mut self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let (client, backlog) = (&mut self.client, &mut self.backlog);
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
            _ => panic!("no {what}; saw {:?}", self.backlog),
        }
    }

    /// Every event received so far: after a `ping` round trip, since a supernode pushes what a
    /// request caused before answering the next one.
    async fn drain(&mut self) -> Vec<Event> {
        assert_eq!(self.ok(Request::Ping).await, Reply::Pong);
        let mut events = std::mem::take(&mut self.backlog);
        while let Some(e) = self.client.try_event() {
            events.push(e);
        }
        events
    }
}

fn online(who: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Presence { username, presence: Presence::Online } if username == who)
}

#[test]
fn a_candidate_right_after_an_answer_on_another_supernode_reaches_the_caller() {
    let cluster = TestCluster::start(2).expect("the test cluster must start");
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut alice = Device::register(cluster.url(0), "alice", dir.path()).await;
        let mut bob = Device::register(cluster.url(1), "bob", dir.path()).await;
        let add = Request::ContactAdd { username: "bob".into(), message: None };
        assert_eq!(alice.ok(add).await, Reply::Done);
        bob.expect("alice's contact request", |e| matches!(e, Event::ContactRequest { .. }))
            .await;
        assert_eq!(bob.ok(Request::ContactAccept { username: "alice".into() }).await, Reply::Done);
        // Alice's supernode knows where bob is before she calls.
        alice.expect("bob online", online("bob")).await;
        bob.expect("alice online", online("alice")).await;

        let call_id = hex::encode(rand::random::<[u8; 16]>());
        let invite = Request::CallInvite {
            call_id: call_id.clone(),
            to: "bob".into(),
            sdp: SDP.into(),
            fingerprint_signature: "ab".repeat(64),
        };
        assert!(
            matches!(alice.ok(invite).await, Reply::CallPlaced { ringing_devices: 1, .. }),
            "bob's device on the other supernode rings"
        );
        bob.expect("the call", |e| matches!(e, Event::CallIncoming { .. })).await;

        // The candidate is pipelined behind the answer: bob's supernode reads it before the
        // caller's supernode can have confirmed the answer.
        let accept = Request::CallAccept {
            call_id: call_id.clone(),
            sdp: SDP.into(),
            fingerprint_signature: "cd".repeat(64),
        };
        let candidate =
            Request::CallCandidate { call_id: call_id.clone(), candidate: CANDIDATE.into() };
        let (accepted, trickled) = within("call_accept and call_candidate", async {
            tokio::join!(bob.client.request(accept), bob.client.request(candidate))
        })
        .await;
        assert_eq!(accepted.unwrap(), Reply::Done, "bob answers");
        assert_eq!(trickled.unwrap(), Reply::Done, "bob's candidate right after his answer");

        alice.expect("bob's answer", |e| matches!(e, Event::CallAccepted { .. })).await;
        let got = alice
            .expect("bob's candidate", |e| matches!(e, Event::CallCandidate { .. }))
            .await;
        assert!(
            matches!(&got, Event::CallCandidate { candidate, call_id: id } if candidate == CANDIDATE && *id == call_id),
            "{got:?}"
        );

        // The call goes on as usual: the hang-up reaches bob, and alice got the one candidate
        // only.
        assert_eq!(alice.ok(Request::CallHangup { call_id: call_id.clone() }).await, Reply::Done);
        bob.expect("the hang-up", |e| matches!(e, Event::CallEnded { .. })).await;
        let extra = alice.drain().await;
        assert!(
            !extra.iter().any(|e| matches!(e, Event::CallCandidate { .. })),
            "one candidate sent, one received: {extra:?}"
        );
    });
}
