//! The driver under `tokio::time::pause()`: hour-long calls with periodic stalls and a lost
//! supernode, against a scripted world (supernode, peer and media) that lives on tokio's clock.
//! An hour of call time runs in well under a second of wall time, through the same `select!`,
//! timers and action loop as a real call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use peerline_call_core::{Call, CallConfig, Dial, Invite, KeyCheck, PeerClaim};
use peerline_media::{CandidateType, EndReason, MediaEvent, Transport};
use peerline_wire::{CallEndReason, Reply, SdpRole, call_signature_payload};
use tokio::time::{Instant, sleep_until};

use super::*;
use crate::CallEnd;

const CALL_ID: &str = "0123456789abcdef0123456789abcdef";
const ME: &str = "alice";
const PEER: &str = "bob";
const HOUR: Duration = Duration::from_secs(3600);
/// The media goes silent this often once connected.
const STALL_EVERY: Duration = Duration::from_secs(600);
/// The supernode connection drops at this point of the call.
const SUPERNODE_DROP: Duration = Duration::from_secs(1500);
/// How long the peer (through the supernode) takes to answer a restart.
const PEER_DELAY: Duration = Duration::from_millis(300);

fn sdp(fingerprint: &str) -> String {
    format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-256 {fingerprint}\r\n")
}

/// The peer's claim for its SDP, signed by its device key.
fn claim(role: SdpRole) -> PeerClaim {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let payload = call_signature_payload(CALL_ID, role, PEER, ME, "sha-256 AA:BB:CC");
    PeerClaim {
        peer: PEER.into(),
        device_id: 3,
        device_key: hex::encode(key.verifying_key().to_bytes()),
        sdp: sdp("AA:BB:CC"),
        signature: hex::encode(key.sign(&payload).to_bytes()),
    }
}

fn selected() -> SelectedPath {
    SelectedPath {
        local_type: CandidateType::Host,
        remote_type: CandidateType::Host,
        transport: Transport::Udp,
        local_addr: "10.0.0.1:5000".parse().unwrap(),
        remote_addr: "10.0.0.2:6000".parse().unwrap(),
    }
}

/// What the scripted world saw the driver do.
#[derive(Debug)]
struct Seen {
    /// Every request, by name.
    requests: Vec<&'static str>,
    /// The SDP of every `call_restart` sent, in order.
    restarts_sent: Vec<Option<String>>,
    /// Fresh restart offers the media made (caller) or answers it made (callee).
    media_sdps: Vec<String>,
    /// Stalls the media went through.
    stalls: u32,
    /// Calls taken over on a new supernode connection.
    resumes: u32,
    /// When the driver asked the media to stop.
    stopped_at: Option<Instant>,
    /// When the call began.
    began: Instant,
}

/// The supernode, the peer and the media of one call, on tokio's clock.
struct Scripted {
    caller: bool,
    /// Supernode events and media inputs due at a time, in order.
    due: VecDeque<(Instant, Input)>,
    /// When the media started.
    started: Option<Instant>,
    /// The next `Received` report while audio flows.
    next_tick: Option<Instant>,
    /// The next stall.
    next_stall: Option<Instant>,
    /// When the supernode connection drops, until the call is resumed.
    drop_at: Option<Instant>,
    /// The connection is down: no events until the call is resumed.
    down: bool,
    /// The first restart message of the second stall is lost by the "network".
    lose_one: bool,
    /// The media's restart offer waiting for its answer.
    offer: Option<String>,
    seen: Seen,
}

impl Scripted {
    fn new(caller: bool) -> Self {
        Scripted {
            caller,
            due: VecDeque::new(),
            started: None,
            next_tick: None,
            next_stall: None,
            drop_at: None,
            down: false,
            lose_one: true,
            offer: None,
            seen: Seen {
                requests: Vec::new(),
                restarts_sent: Vec::new(),
                media_sdps: Vec::new(),
                stalls: 0,
                resumes: 0,
                stopped_at: None,
                began: Instant::now(),
            },
        }
    }

    fn at(&mut self, at: Instant, input: Input) {
        let i = self.due.iter().position(|(t, _)| *t > at).unwrap_or(self.due.len());
        self.due.insert(i, (at, input));
    }

    fn event(&mut self, after: Duration, event: Event) {
        self.at(Instant::now() + after, Input::Signaling(Some(event)));
    }

    fn media(&mut self, after: Duration, event: MediaEvent) {
        self.at(Instant::now() + after, Input::Media(MediaInput::Event(event)));
    }

    /// Audio flows again after a restart.
    fn flowing_again(&mut self) {
        self.media(Duration::from_millis(100), MediaEvent::Reconnected);
        self.next_tick = Some(Instant::now() + Duration::from_millis(150));
        self.next_stall = Some(Instant::now() + STALL_EVERY);
    }

    /// The supernode's answer to a request, and what the peer does about it.
    fn answer(&mut self, request: &Request) -> Reply {
        match request {
            Request::CallInvite { call_id, .. } => {
                self.event(Duration::from_secs(1), Event::CallRinging { call_id: call_id.clone() });
                let claim = claim(SdpRole::Answer);
                self.event(
                    Duration::from_secs(4),
                    Event::CallAccepted {
                        call_id: call_id.clone(),
                        device_id: claim.device_id,
                        device_key: claim.device_key,
                        sdp: claim.sdp,
                        fingerprint_signature: claim.signature,
                    },
                );
                Reply::CallPlaced { call_id: call_id.clone(), ringing_devices: 1 }
            }
            Request::CallRestart { call_id, sdp } => {
                self.seen.restarts_sent.push(sdp.clone());
                if self.lose_one && self.seen.stalls == 2 {
                    self.lose_one = false;
                    return Reply::Done;
                }
                let n = self.seen.restarts_sent.len();
                let reply = match (self.caller, sdp) {
                    // The callee answers the caller's offer.
                    (true, Some(_)) => Some(format!("answer-{n}")),
                    // The caller offers when the callee asks.
                    (false, None) => Some(format!("offer-{n}")),
                    // The callee's answer reached the caller: audio flows again.
                    (false, Some(_)) => {
                        self.flowing_again();
                        None
                    }
                    (true, None) => None,
                };
                if let Some(sdp) = reply {
                    let event = Event::CallRestart { call_id: call_id.clone(), sdp: Some(sdp) };
                    self.event(PEER_DELAY, event);
                }
                Reply::Done
            }
            _ => Reply::Done,
        }
    }
}

impl CallIo for Scripted {
    async fn request(&mut self, _op: OpId, request: Request, _limit: Duration) -> OpResult {
        self.seen.requests.push(request.kind());
        // The supernode takes a few milliseconds to answer.
        tokio::time::sleep(Duration::from_millis(5)).await;
        OpResult::Reply(self.answer(&request))
    }

    async fn step(&mut self, _op: OpId, step: Step, _call: &Call) -> OpResult {
        tokio::time::sleep(Duration::from_millis(2)).await;
        match step {
            Step::CheckKey(_) => OpResult::KeyChecked(KeyCheck::Known),
            Step::AcceptAnswer(_) => OpResult::Done,
            Step::AcceptOffer(_) => {
                OpResult::Signed { sdp: sdp("11:22:33"), signature: "ab".repeat(64) }
            }
            Step::Gather => OpResult::Gathered {
                lines: vec!["candidate:1 1 udp 1 10.0.0.1 5000 typ host".into()],
                public_ip: None,
            },
            Step::Probe { .. } => OpResult::Probed { public_ip: None, relay_died: false },
            Step::Regather => OpResult::Gathered { lines: vec![], public_ip: None },
            Step::RestartIce => {
                // As the media core does, an offer not answered yet is made again unchanged.
                if let Some(offer) = &self.offer {
                    return OpResult::Sdp(offer.clone());
                }
                let offer = format!("restart-offer-{}", self.seen.media_sdps.len() + 1);
                self.seen.media_sdps.push(offer.clone());
                self.offer = Some(offer.clone());
                OpResult::Sdp(offer)
            }
            Step::AcceptRestartOffer(offer) => {
                let answer = format!("answer-to-{offer}");
                self.seen.media_sdps.push(answer.clone());
                OpResult::Sdp(answer)
            }
            Step::AcceptRestartAnswer(_) => {
                self.offer = None;
                self.flowing_again();
                OpResult::Done
            }
            Step::Resume => {
                // Reconnecting and taking the call over takes a while.
                tokio::time::sleep(Duration::from_millis(800)).await;
                self.down = false;
                self.seen.resumes += 1;
                OpResult::Done
            }
        }
    }

    fn start_media(&mut self, _remote_candidates: Vec<String>) {
        let now = Instant::now();
        self.started = Some(now);
        self.media(Duration::from_millis(60), MediaEvent::Connected);
        self.media(Duration::from_millis(60), MediaEvent::SelectedPath(selected()));
        self.media(Duration::from_millis(90), MediaEvent::FirstAudio);
        self.next_tick = Some(now + Duration::from_millis(100));
        self.next_stall = Some(now + STALL_EVERY);
        self.drop_at = Some(now + SUPERNODE_DROP);
    }

    fn remote_candidate(&mut self, _line: String) {}

    fn stop_media(&mut self) {
        if self.seen.stopped_at.is_none() {
            self.seen.stopped_at = Some(Instant::now());
            self.next_tick = None;
            self.next_stall = None;
            let end = Input::Media(MediaInput::Ended(EndReason::Stopped));
            self.at(Instant::now() + Duration::from_millis(20), end);
        }
    }

    async fn next(&mut self, signaling: bool) -> Result<Input, CallError> {
        loop {
            // The earliest of: an input due, the next audio report, the next stall, the drop.
            let due = self
                .due
                .iter()
                .position(|(_, input)| {
                    !matches!(input, Input::Signaling(_)) || (signaling && !self.down)
                })
                .map(|i| self.due[i].0);
            let drop = self.drop_at.filter(|_| signaling);
            let wake = [due, self.next_tick, self.next_stall, drop].into_iter().flatten().min();
            let Some(wake) = wake else { return std::future::pending().await };
            sleep_until(wake).await;
            // Nothing below awaits: a `next` dropped by the driver's `select!` loses nothing.
            if drop == Some(wake) {
                self.drop_at = None;
                self.down = true;
                return Ok(Input::Signaling(None));
            }
            if self.next_stall == Some(wake) {
                self.seen.stalls += 1;
                self.next_stall = None;
                self.next_tick = None;
                self.media(Duration::from_secs(1), MediaEvent::Disconnected);
                continue;
            }
            if due == Some(wake) {
                let i = self
                    .due
                    .iter()
                    .position(|(t, input)| {
                        *t == wake
                            && (!matches!(input, Input::Signaling(_)) || (signaling && !self.down))
                    })
                    .expect("the input that woke us");
                let (_, input) = self.due.remove(i).expect("present");
                return Ok(input);
            }
            if self.next_tick == Some(wake) {
                self.next_tick = Some(wake + Duration::from_millis(250));
                return Ok(Input::Media(MediaInput::Event(MediaEvent::Received)));
            }
        }
    }

    async fn finish(&mut self) -> Option<CallStats> {
        None
    }

    fn path(&self, selected: SelectedPath) -> CallPath {
        CallPath { selected, relay: None }
    }

    fn error(&mut self, op: OpId) -> CallError {
        panic!("no operation fails in this world, yet {op:?} did")
    }
}

fn caller_call() -> Call {
    let dial = Dial {
        call_id: CALL_ID.into(),
        me: ME.into(),
        to: PEER.into(),
        sdp: sdp("11:22:33"),
        signature: "ab".repeat(64),
        candidates: vec!["candidate:1 1 udp 1 10.0.0.1 5000 typ host".into()],
        public_ip: None,
    };
    Call::dial(dial, CallConfig::default(), now())
}

fn callee_call() -> Call {
    let invite = Invite { call_id: CALL_ID.into(), me: ME.into(), caller: claim(SdpRole::Offer) };
    Call::answer(invite, CallConfig::default(), now())
}

/// Runs a call for an hour of tokio time; returns the summary, what the world saw, the progress
/// and the call time that passed.
async fn an_hour(
    call: Call,
    world: Scripted,
    stop: impl Future<Output = ()>,
) -> (CallSummary, Seen, Vec<CallProgress>, Duration) {
    let start = Instant::now();
    let wall = std::time::Instant::now();
    let mut progress = Vec::new();
    let mut world = world;
    let summary = {
        let driver = Driver::new(call, &mut world);
        driver.run(stop, &mut |p| progress.push(p)).await.expect("the call ends without error")
    };
    eprintln!("{:?} of call time in {:?} of wall time", start.elapsed(), wall.elapsed());
    (summary, world.seen, progress, start.elapsed())
}

/// A world the driver borrows, so that the test can read it after the call.
impl CallIo for &mut Scripted {
    fn request(
        &mut self,
        op: OpId,
        request: Request,
        limit: Duration,
    ) -> impl Future<Output = OpResult> {
        (**self).request(op, request, limit)
    }
    fn step(&mut self, op: OpId, step: Step, call: &Call) -> impl Future<Output = OpResult> {
        (**self).step(op, step, call)
    }
    fn start_media(&mut self, remote_candidates: Vec<String>) {
        (**self).start_media(remote_candidates)
    }
    fn remote_candidate(&mut self, line: String) {
        (**self).remote_candidate(line)
    }
    fn stop_media(&mut self) {
        (**self).stop_media()
    }
    fn next(&mut self, signaling: bool) -> impl Future<Output = Result<Input, CallError>> {
        (**self).next(signaling)
    }
    fn finish(&mut self) -> impl Future<Output = Option<CallStats>> {
        (**self).finish()
    }
    fn path(&self, selected: SelectedPath) -> CallPath {
        (**self).path(selected)
    }
    fn error(&mut self, op: OpId) -> CallError {
        (**self).error(op)
    }
}

fn restarts(progress: &[CallProgress]) -> usize {
    progress.iter().filter(|p| matches!(p, CallProgress::Restarting)).count()
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_call_with_a_stall_every_ten_minutes_and_a_lost_supernode() {
    let hang_up = tokio::time::sleep(HOUR);
    let (summary, seen, progress, took) =
        an_hour(caller_call(), Scripted::new(true), hang_up).await;

    assert_eq!(summary.end, CallEnd::HungUpHere, "{progress:?}");
    assert!(took >= HOUR, "the call lasted {took:?}");
    let stopped = seen.stopped_at.expect("the media was stopped");
    assert!(stopped >= seen.began + HOUR, "the media stopped only at the hang-up");
    // A stall every ten minutes of the hour, and the return to the supernode (what was said
    // while away may be lost), each recovered by one fresh offer; the offer whose answer was
    // lost went out again unchanged.
    assert_eq!(seen.stalls, 5, "{seen:?}");
    assert_eq!(seen.resumes, 1, "taken over on a new supernode connection");
    assert_eq!(seen.media_sdps.len(), 6, "one fresh offer per stall and resume: {seen:?}");
    let sent: Vec<_> = seen.restarts_sent.iter().map(|s| s.clone().unwrap()).collect();
    assert_eq!(sent.len(), 7, "{sent:?}");
    assert_eq!(sent[1], sent[2], "the unanswered offer is re-sent unchanged");
    assert_eq!(restarts(&progress), 7, "{progress:?}");
    assert_eq!(seen.requests.first(), Some(&"call_invite"));
    assert_eq!(seen.requests.last(), Some(&"call_hangup"));
    assert!(seen.requests.contains(&"call_candidate"));
    assert_eq!(summary.path.map(|p| p.selected), Some(selected()));
    let timings = summary.timings;
    assert_eq!(timings.ringing, Some(Duration::from_millis(1005)), "{timings:?}");
    assert!(timings.first_audio.is_some());
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_answered_call_asks_for_restarts_and_ends_when_the_peer_hangs_up() {
    let mut world = Scripted::new(false);
    let end = Event::CallEnded { call_id: CALL_ID.into(), reason: CallEndReason::HungUp };
    world.at(Instant::now() + HOUR, Input::Signaling(Some(end)));
    let (summary, seen, progress, took) =
        an_hour(callee_call(), world, std::future::pending()).await;

    assert_eq!(summary.end, CallEnd::Remote(CallEndReason::HungUp), "{progress:?}");
    assert!(took >= HOUR, "the call lasted {took:?}");
    assert_eq!(seen.stalls, 5, "{seen:?}");
    assert_eq!(seen.resumes, 1);
    // The callee never offers: it asks (again, once its request was lost) and answers, after
    // every stall and after its return to the supernode.
    assert!(seen.media_sdps.iter().all(|s| s.starts_with("answer-to-offer-")), "{seen:?}");
    assert_eq!(seen.media_sdps.len(), 6, "{seen:?}");
    let asks = seen.restarts_sent.iter().filter(|s| s.is_none()).count();
    assert_eq!(asks, 7, "{seen:?}");
    assert_eq!(seen.requests.first(), Some(&"call_accept"));
    assert!(!seen.requests.contains(&"call_hangup"), "the peer hung up: {:?}", seen.requests);
}
