//! Calls from a client's side: dial or answer through the supernode, check the peer's signed
//! DTLS fingerprint against its pinned device key, gather candidates, and run the media
//! (`peerline-media`) peer to peer until either side hangs up.
//!
//! Privacy: the offer carries no addresses. The caller's candidates are trickled right after the
//! invite and the supernode holds them until a device accepts; the callee gathers and trickles
//! its own only after it accepted. So nobody learns a user's address before the call is answered.
//!
//! Security: each side signs its DTLS fingerprint with its device key
//! ([`peerline_wire::call_signature_payload`]). The supernode forwards the sender's device key;
//! it is checked against the key pinned for that device ([`crate::peer_keys`]), and the signature
//! against the key. DTLS then only completes with a certificate matching the signed fingerprint,
//! so a supernode cannot put itself in the media path without the call failing with "identity
//! changed".

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use peerline_media::lossy::{Impairment, LossySocket};
use peerline_media::{
    AudioSink, AudioSource, CallMedia, CallStats, Control, LocalCandidate, MediaConfig, MediaError,
    MediaEvent, Role, RunOptions, run_media, sdp_dtls_fingerprint,
};
use peerline_wire::{
    CallEndReason, ErrorCode, Event, Reply, Request, SdpRole, call_signature_payload,
};
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::client::Client;
use crate::error::ClientError;
pub use crate::gather::{CallPath, RelayInfo};
use crate::gather::{CallSocket, Gathered, gather};
use crate::home::HomeError;
use crate::peer_keys::{IdentityChanged, KeyCheck, PeerKeyError};

/// How long the caller waits for an answer before giving up on its own (the supernode ends an
/// unanswered call after 45 s; this only guards against a lost `call_ended`).
const RING_GUARD: Duration = Duration::from_secs(60);

/// What can make a call fail.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Talking to the supernode failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The peer's device key is not the pinned one.
    #[error(transparent)]
    IdentityChanged(#[from] IdentityChanged),
    /// The peer's fingerprint is not signed by its device key.
    #[error(
        "IDENTITY CHANGED: the DTLS fingerprint of {peer}'s device {device_id} is not signed by \
         that device's key. The supernode (or someone in its place) may be trying to intercept \
         the call, so it was refused. Compare safety numbers with `peerline verify {peer}`."
    )]
    BadSignature {
        /// The peer.
        peer: String,
        /// The device.
        device_id: i64,
    },
    /// A home directory file failed.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The media engine failed.
    #[error("call media failed: {0}")]
    Media(#[from] MediaError),
    /// A socket failed.
    #[error("network error while setting up the call: {0}")]
    Io(#[from] std::io::Error),
    /// The media task failed.
    #[error("the call's media task stopped unexpectedly: {0}")]
    Task(String),
    /// No TURN relay could be used (an error only with `relay_only`).
    #[error("no TURN relay: {0}")]
    NoRelay(String),
}

impl From<PeerKeyError> for CallError {
    fn from(e: PeerKeyError) -> Self {
        match e {
            PeerKeyError::Changed(c) => CallError::IdentityChanged(c),
            PeerKeyError::Home(h) => CallError::Home(h),
        }
    }
}

/// Progress of a call, reported as it happens. Durations count from the dial (caller) or from
/// the arrival of the invite (callee).
#[derive(Debug, Clone, PartialEq)]
pub enum CallProgress {
    /// The invite was placed; this many devices of the callee ring.
    Dialing {
        /// The call's id.
        call_id: String,
        /// Devices ringing.
        devices: u32,
    },
    /// A device of the callee rings.
    Ringing {
        /// Since the dial.
        after: Duration,
    },
    /// The call was answered (caller) or accepted (callee), and the peer's key checked.
    Answered {
        /// Since the dial.
        after: Duration,
        /// The peer's device.
        device_id: i64,
        /// Whether its key was known or pinned just now.
        key: KeyCheck,
    },
    /// ICE and DTLS are up.
    Connected {
        /// Since the dial.
        after: Duration,
    },
    /// The candidate pair carrying the call (again if ICE switches).
    Path(CallPath),
    /// The first audio from the peer arrived.
    FirstAudio {
        /// Since the dial.
        after: Duration,
    },
    /// The media path was lost; ICE keeps trying.
    PathLost,
    /// The media path came back.
    PathBack,
    /// ICE is restarting on fresh candidates because the path died (an address changed).
    Restarting,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// This side hung up (or cancelled).
    HungUpHere,
    /// The supernode said the call ended.
    Remote(CallEndReason),
    /// The media ended by itself (peer closed it, no path found, path lost).
    Media(peerline_media::EndReason),
}

impl CallEnd {
    /// A short machine-readable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallEnd::HungUpHere => "hung_up_here",
            CallEnd::Remote(reason) => reason.as_str(),
            CallEnd::Media(peerline_media::EndReason::Stopped) => "stopped",
            CallEnd::Media(peerline_media::EndReason::PeerClosed) => "peer_closed_media",
            CallEnd::Media(peerline_media::EndReason::ConnectTimeout) => "no_media_path",
            CallEnd::Media(peerline_media::EndReason::PathLost) => "media_path_lost",
        }
    }
}

/// Setup times of a call, from the dial (caller) or the invite's arrival (callee).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetupTimings {
    /// Until a callee device rang.
    pub ringing: Option<Duration>,
    /// Until ICE and DTLS were up.
    pub connected: Option<Duration>,
    /// Until the first audio packet from the peer.
    pub first_audio: Option<Duration>,
}

/// What a finished call did.
#[derive(Debug, Clone)]
pub struct CallSummary {
    /// The call's id.
    pub call_id: String,
    /// The other user.
    pub peer: String,
    /// Setup times.
    pub timings: SetupTimings,
    /// The candidate pair that carried the media.
    pub path: Option<CallPath>,
    /// How it ended.
    pub end: CallEnd,
    /// Media counters, if media ran.
    pub media: Option<CallStats>,
}

impl CallSummary {
    fn unanswered(call_id: String, peer: String, timings: SetupTimings, end: CallEnd) -> Self {
        CallSummary { call_id, peer, timings, path: None, end, media: None }
    }
}

/// An incoming call, from a `call_incoming` event.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    /// The call's id.
    pub call_id: String,
    /// The caller.
    pub from: String,
    /// The caller's display name.
    pub display_name: String,
    device_id: i64,
    device_key: String,
    sdp: String,
    fingerprint_signature: String,
    received_at: Instant,
}

impl IncomingCall {
    /// The call in a `call_incoming` event, or `None` for any other event.
    pub fn from_event(event: &Event) -> Option<Self> {
        match event {
            Event::CallIncoming {
                call_id,
                from,
                display_name,
                device_id,
                device_key,
                sdp,
                fingerprint_signature,
            } => Some(IncomingCall {
                call_id: call_id.clone(),
                from: from.clone(),
                display_name: display_name.clone(),
                device_id: *device_id,
                device_key: device_key.clone(),
                sdp: sdp.clone(),
                fingerprint_signature: fingerprint_signature.clone(),
                received_at: Instant::now(),
            }),
            _ => None,
        }
    }
}

/// Settings of a call on this side.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// The media settings.
    pub media: MediaConfig,
    /// Simulates a bad network: drops and delays what this side sends (tests, demos).
    pub impair_sending: Option<Impairment>,
    /// Offer only relayed candidates, so the peer never learns this side's IP address (like
    /// Signal's "always relay calls"). The call fails if no relay can be reached.
    pub relay_only: bool,
}

fn random_call_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn sign(key: &SigningKey, call_id: &str, role: SdpRole, from: &str, to: &str, fp: &str) -> String {
    hex::encode(key.sign(&call_signature_payload(call_id, role, from, to, fp)).to_bytes())
}

/// Checks the peer's device key against the pin and its signature over the SDP's fingerprint.
#[allow(clippy::too_many_arguments)]
fn verify_peer(
    client: &Client,
    peer: &str,
    device_id: i64,
    device_key: &str,
    sdp: &str,
    signature: &str,
    call_id: &str,
    role: SdpRole,
    to: &str,
) -> Result<KeyCheck, CallError> {
    let bad = || CallError::BadSignature { peer: peer.to_owned(), device_id };
    let key_bytes: [u8; 32] =
        hex::decode(device_key).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let check = client.home().check_peer_key(peer, device_id, device_key)?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad())?;
    let sig_bytes: [u8; 64] =
        hex::decode(signature).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let fingerprint = sdp_dtls_fingerprint(sdp).ok_or_else(bad)?;
    let payload = call_signature_payload(call_id, role, peer, to, &fingerprint);
    key.verify(&payload, &Signature::from_bytes(&sig_bytes)).map_err(|_| bad())?;
    Ok(check)
}

/// Adds local candidates to the media session and trickles them through the supernode.
async fn trickle(
    client: &Client,
    media: &mut CallMedia,
    call_id: &str,
    candidates: &[LocalCandidate],
) -> Result<(), CallError> {
    for candidate in candidates {
        if let Some(line) = media.add_local_candidate(*candidate)? {
            let request = Request::CallCandidate { call_id: call_id.to_owned(), candidate: line };
            if let Err(e) = client.request(request).await {
                warn!(error = %e, "could not send a candidate");
            }
        }
    }
    Ok(())
}

/// Declines an incoming call (`busy`: only this device is busy, others keep ringing).
pub async fn decline(client: &Client, call: &IncomingCall, busy: bool) -> Result<(), ClientError> {
    client.done(Request::CallDecline { call_id: call.call_id.clone(), busy }).await
}

/// Tells the caller this device rings.
pub async fn ring(client: &Client, call: &IncomingCall) -> Result<(), ClientError> {
    client.done(Request::CallRinging { call_id: call.call_id.clone() }).await
}

/// Calls `to` and runs the call until `stop` completes, the peer hangs up, or the call is not
/// answered. `progress` hears every step. A call that was not answered is not an error: see
/// [`CallSummary::end`].
pub async fn place_call<Src, Snk>(
    client: &mut Client,
    to: &str,
    source: Src,
    sink: Snk,
    options: CallOptions,
    stop: impl Future<Output = ()>,
    progress: &mut (dyn FnMut(CallProgress) + Send),
) -> Result<CallSummary, CallError>
where
    Src: AudioSource + 'static,
    Snk: AudioSink + 'static,
{
    let dialed = Instant::now();
    let me = client.logged_in_username()?;
    let to = to.to_ascii_lowercase();
    let key = client.device_key()?;
    let call_id = random_call_id();
    // Boxed: the media session is large, and call futures are often joined on one stack.
    let mut media = Box::new(CallMedia::new(Role::Offerer, options.media.clone(), dialed)?);
    let offer = media.create_offer()?;
    let signature = sign(&key, &call_id, SdpRole::Offer, &me, &to, media.local_dtls_fingerprint());
    let gathered = gather(client, options.relay_only).await?;

    let invite = Request::CallInvite {
        call_id: call_id.clone(),
        to: to.clone(),
        sdp: offer,
        fingerprint_signature: signature,
    };
    let mut timings = SetupTimings::default();
    let devices = match client.request(invite).await {
        Ok(Reply::CallPlaced { ringing_devices, .. }) => ringing_devices,
        Ok(other) => return Err(ClientError::UnexpectedReply(format!("{other:?}")).into()),
        Err(e) if e.code() == Some(ErrorCode::CalleeBusy) => {
            let end = CallEnd::Remote(CallEndReason::Busy);
            return Ok(CallSummary::unanswered(call_id, to, timings, end));
        }
        Err(e) if e.code() == Some(ErrorCode::CalleeUnavailable) => {
            let end = CallEnd::Remote(CallEndReason::Unavailable);
            return Ok(CallSummary::unanswered(call_id, to, timings, end));
        }
        Err(e) => return Err(e.into()),
    };
    progress(CallProgress::Dialing { call_id: call_id.clone(), devices });
    // The supernode holds these until a device answers, and gives them to that device only.
    trickle(client, &mut media, &call_id, &gathered.candidates).await?;

    tokio::pin!(stop);
    let guard = tokio::time::sleep(RING_GUARD);
    tokio::pin!(guard);
    let mut early_candidates = Vec::new();
    loop {
        tokio::select! {
            () = &mut stop => {
                let _ = client.done(Request::CallCancel { call_id: call_id.clone() }).await;
                return Ok(CallSummary::unanswered(call_id, to, timings, CallEnd::HungUpHere));
            }
            () = &mut guard => {
                let _ = client.done(Request::CallCancel { call_id: call_id.clone() }).await;
                let end = CallEnd::Remote(CallEndReason::NoAnswer);
                return Ok(CallSummary::unanswered(call_id, to, timings, end));
            }
            event = client.next_event() => {
                let Some(event) = event else { return Err(ClientError::Closed(None).into()) };
                match event {
                    Event::CallRinging { call_id: id } if id == call_id => {
                        if timings.ringing.is_none() {
                            let after = dialed.elapsed();
                            timings.ringing = Some(after);
                            progress(CallProgress::Ringing { after });
                        }
                    }
                    Event::CallAccepted { call_id: id, device_id, device_key, sdp, fingerprint_signature }
                        if id == call_id =>
                    {
                        let verified = verify_peer(
                            client, &to, device_id, &device_key, &sdp, &fingerprint_signature,
                            &call_id, SdpRole::Answer, &me,
                        );
                        let check = match verified {
                            Ok(check) => check,
                            Err(e) => {
                                let _ = client.done(Request::CallHangup { call_id: call_id.clone() }).await;
                                return Err(e);
                            }
                        };
                        if let Err(e) = media.accept_answer(&sdp) {
                            let _ = client.done(Request::CallHangup { call_id: call_id.clone() }).await;
                            return Err(e.into());
                        }
                        progress(CallProgress::Answered { after: dialed.elapsed(), device_id, key: check });
                        break;
                    }
                    Event::CallCandidate { call_id: id, candidate } if id == call_id => {
                        early_candidates.push(candidate);
                    }
                    Event::CallEnded { call_id: id, reason } if id == call_id => {
                        return Ok(CallSummary::unanswered(call_id, to, timings, CallEnd::Remote(reason)));
                    }
                    other => refuse_other_calls(client, &other).await,
                }
            }
        }
    }
    Box::pin(talk(
        client,
        Talk {
            call_id,
            peer: to,
            media,
            gathered,
            source,
            sink,
            started: dialed,
            timings,
            early_candidates,
            impair_sending: options.impair_sending,
            relay_only: options.relay_only,
        },
        stop,
        progress,
    ))
    .await
}

/// Answers an incoming call (after [`ring`], if the user was asked) and runs it until `stop`
/// completes or the peer hangs up. If another device answered first, the summary says
/// `answered_elsewhere`.
pub async fn answer_call<Src, Snk>(
    client: &mut Client,
    call: IncomingCall,
    source: Src,
    sink: Snk,
    options: CallOptions,
    stop: impl Future<Output = ()>,
    progress: &mut (dyn FnMut(CallProgress) + Send),
) -> Result<CallSummary, CallError>
where
    Src: AudioSource + 'static,
    Snk: AudioSink + 'static,
{
    let me = client.logged_in_username()?;
    let timings = SetupTimings::default();
    let verified = verify_peer(
        client,
        &call.from,
        call.device_id,
        &call.device_key,
        &call.sdp,
        &call.fingerprint_signature,
        &call.call_id,
        SdpRole::Offer,
        &me,
    );
    let check = match verified {
        Ok(check) => check,
        Err(e) => {
            let _ = decline(client, &call, false).await;
            return Err(e);
        }
    };
    let key = client.device_key()?;
    let mut media =
        Box::new(CallMedia::new(Role::Answerer, options.media.clone(), Instant::now())?);
    let answer = match media.accept_offer(&call.sdp) {
        Ok(answer) => answer,
        Err(e) => {
            let _ = decline(client, &call, false).await;
            return Err(e.into());
        }
    };
    let signature =
        sign(&key, &call.call_id, SdpRole::Answer, &me, &call.from, media.local_dtls_fingerprint());
    let accept = Request::CallAccept {
        call_id: call.call_id.clone(),
        sdp: answer,
        fingerprint_signature: signature,
    };
    match client.done(accept).await {
        Ok(()) => {}
        Err(e) if e.code() == Some(ErrorCode::NoSuchCall) => {
            // Another device was faster, or the caller gave up.
            let end = CallEnd::Remote(CallEndReason::AnsweredElsewhere);
            return Ok(CallSummary::unanswered(call.call_id, call.from, timings, end));
        }
        Err(e) => return Err(e.into()),
    }
    progress(CallProgress::Answered {
        after: call.received_at.elapsed(),
        device_id: call.device_id,
        key: check,
    });
    // Only now, after accepting, does anything about our network go out.
    let gathered = gather(client, options.relay_only).await?;
    trickle(client, &mut media, &call.call_id, &gathered.candidates).await?;
    Box::pin(talk(
        client,
        Talk {
            call_id: call.call_id,
            peer: call.from,
            media,
            gathered,
            source,
            sink,
            started: call.received_at,
            timings,
            early_candidates: Vec::new(),
            impair_sending: options.impair_sending,
            relay_only: options.relay_only,
        },
        stop,
        progress,
    ))
    .await
}

/// While busy with one call, other incoming calls are declined as busy for this device.
async fn refuse_other_calls(client: &Client, event: &Event) {
    if let Some(other) = IncomingCall::from_event(event) {
        info!(from = %other.from, "declining a second call: busy");
        let _ = decline(client, &other, true).await;
    }
}

struct Talk<Src, Snk> {
    call_id: String,
    peer: String,
    media: Box<CallMedia>,
    gathered: Gathered,
    source: Src,
    sink: Snk,
    started: Instant,
    timings: SetupTimings,
    early_candidates: Vec<String>,
    impair_sending: Option<Impairment>,
    relay_only: bool,
}

/// Runs the media of an answered call next to its signaling until one side ends it.
async fn talk<Src, Snk>(
    client: &mut Client,
    call: Talk<Src, Snk>,
    stop: impl Future<Output = ()>,
    progress: &mut (dyn FnMut(CallProgress) + Send),
) -> Result<CallSummary, CallError>
where
    Src: AudioSource + 'static,
    Snk: AudioSink + 'static,
{
    let Talk {
        call_id,
        peer,
        media,
        mut gathered,
        source,
        sink,
        started,
        mut timings,
        early_candidates,
        impair_sending,
        relay_only,
    } = call;
    let caller = media.role() == Role::Offerer;
    let (candidates_tx, candidates_rx) = mpsc::channel(128);
    for candidate in early_candidates {
        let _ = candidates_tx.try_send(candidate);
    }
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let (stop_media, media_stopped) = oneshot::channel::<()>();
    let stopped = async {
        let _ = media_stopped.await;
    };
    let sockets = std::mem::take(&mut gathered.sockets);
    let (control_tx, control_rx) = mpsc::channel(8);
    let mut restart = Restart::new(&call_id, control_tx, caller, relay_only, &gathered);
    let mut task = match impair_sending {
        None => {
            let options = RunOptions {
                remote_candidates: Some(candidates_rx),
                events: Some(events_tx),
                control: Some(control_rx),
                ..RunOptions::default()
            };
            tokio::spawn(run_media(sockets, *media, source, sink, stopped, options))
        }
        // A simulated bad network is for tests of the audio path; it does not restart ICE.
        Some(impairment) => {
            let options = RunOptions {
                remote_candidates: Some(candidates_rx),
                events: Some(events_tx),
                stall_after: None,
                ..RunOptions::default()
            };
            let lossy: Vec<LossySocket<CallSocket>> = sockets
                .into_iter()
                .map(|s| LossySocket::new(s, impairment, rand::random()))
                .collect();
            tokio::spawn(run_media(lossy, *media, source, sink, stopped, options))
        }
    };
    tokio::pin!(stop);
    let mut stop_media = Some(stop_media);
    let mut end: Option<CallEnd> = None;
    let mut path = None;
    let mut signaling = true;
    // While the supernode connection is down: when to try again, and until when.
    let mut reconnect: Option<(tokio::time::Instant, tokio::time::Instant)> = None;
    loop {
        let next_reconnect = reconnect.map(|(at, _)| at);
        tokio::select! {
            () = sleep_until_some(next_reconnect) => {
                let Some((_, give_up)) = reconnect else { continue };
                match tokio::time::timeout(RESUME_TRY, resume(client, &call_id)).await {
                    Ok(Ok(())) => {
                        info!("back on the supernode; the call goes on");
                        signaling = true;
                        reconnect = None;
                        progress(CallProgress::Restarting);
                        if !restart.step(Step::Resumed, client, &mut gathered).await {
                            start_reconnect(&mut reconnect, &mut signaling);
                        }
                    }
                    Ok(Err(e)) if e.code() == Some(ErrorCode::NoSuchCall) => {
                        // The call ended while we were away.
                        warn!("the call ended while the supernode connection was down");
                        reconnect = None;
                        signaling = true;
                        end = Some(CallEnd::Remote(CallEndReason::PeerGone));
                        if let Some(tx) = stop_media.take() {
                            let _ = tx.send(());
                        }
                    }
                    failed => {
                        debug!(?failed, "reconnecting failed");
                        let now = tokio::time::Instant::now();
                        reconnect = (now < give_up).then_some((now + RESUME_RETRY, give_up));
                    }
                }
            }
            result = &mut task => {
                let stats = result.map_err(|e| CallError::Task(e.to_string()))??;
                let end = match end {
                    Some(end) => end,
                    None => {
                        // The peer's orderly close of the media (DTLS close_notify) usually
                        // overtakes its hang-up through the supernode: wait briefly for the
                        // supernode's word, which names the reason.
                        let told = if signaling && stats.end == peerline_media::EndReason::PeerClosed {
                            wait_for_end(client, &call_id).await
                        } else {
                            None
                        };
                        match told {
                            Some(reason) => CallEnd::Remote(reason),
                            None => {
                                // The media ended by itself: tell the supernode the call is over.
                                let hangup = Request::CallHangup { call_id: call_id.clone() };
                                let _ = client.done(hangup).await;
                                CallEnd::Media(stats.end)
                            }
                        }
                    }
                };
                while let Ok(event) = events_rx.try_recv() {
                    on_media_event(event, started, &gathered, &mut timings, &mut path, progress);
                }
                path = path.or(stats.selected_path.map(|p| gathered.path(p)));
                return Ok(CallSummary { call_id, peer, timings, path, end, media: Some(stats) });
            }
            Some(event) = events_rx.recv() => {
                if event == MediaEvent::Stalled && signaling {
                    progress(CallProgress::Restarting);
                    if !restart.step(Step::Stalled, client, &mut gathered).await {
                        warn!("the supernode connection is not answering; reconnecting");
                        start_reconnect(&mut reconnect, &mut signaling);
                    }
                }
                on_media_event(event, started, &gathered, &mut timings, &mut path, progress);
            }
            event = client.next_event(), if signaling => match event {
                None => {
                    // The supernode connection went away (often because this side's address
                    // changed); the media is peer to peer and goes on while we reconnect.
                    warn!("lost the supernode connection during the call; reconnecting");
                    start_reconnect(&mut reconnect, &mut signaling);
                }
                Some(Event::CallCandidate { call_id: id, candidate }) if id == call_id => {
                    let _ = candidates_tx.send(candidate).await;
                }
                Some(Event::CallRestart { call_id: id, sdp }) if id == call_id => {
                    progress(CallProgress::Restarting);
                    if !restart.step(Step::Signal(sdp), client, &mut gathered).await {
                        start_reconnect(&mut reconnect, &mut signaling);
                    }
                }
                Some(Event::CallEnded { call_id: id, reason }) if id == call_id => {
                    end = Some(CallEnd::Remote(reason));
                    if let Some(tx) = stop_media.take() {
                        let _ = tx.send(());
                    }
                }
                Some(other) => refuse_other_calls(client, &other).await,
            },
            () = &mut stop, if stop_media.is_some() => {
                end = Some(CallEnd::HungUpHere);
                let _ = client.done(Request::CallHangup { call_id: call_id.clone() }).await;
                if let Some(tx) = stop_media.take() {
                    let _ = tx.send(());
                }
            }
        }
    }
}

/// Waits up to a second for the supernode's `call_ended` of this call.
async fn wait_for_end(client: &mut Client, call_id: &str) -> Option<CallEndReason> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, client.next_event()).await {
            Ok(Some(Event::CallEnded { call_id: id, reason })) if id == call_id => {
                return Some(reason);
            }
            Ok(Some(other)) => refuse_other_calls(client, &other).await,
            Ok(None) | Err(_) => return None,
        }
    }
}

fn on_media_event(
    event: MediaEvent,
    started: Instant,
    gathered: &Gathered,
    timings: &mut SetupTimings,
    path: &mut Option<CallPath>,
    progress: &mut (dyn FnMut(CallProgress) + Send),
) {
    let after = started.elapsed();
    match event {
        MediaEvent::Connected if timings.connected.is_none() => {
            timings.connected = Some(after);
            progress(CallProgress::Connected { after });
        }
        MediaEvent::FirstAudio if timings.first_audio.is_none() => {
            timings.first_audio = Some(after);
            progress(CallProgress::FirstAudio { after });
        }
        MediaEvent::SelectedPath(selected) => {
            let selected = gathered.path(selected);
            *path = Some(selected);
            progress(CallProgress::Path(selected));
        }
        MediaEvent::Disconnected => progress(CallProgress::PathLost),
        MediaEvent::Reconnected => progress(CallProgress::PathBack),
        _ => {}
    }
}

/// The longest one step of an ICE restart (gathering, a request) may hold up the call's loop.
const RESTART_STEP: Duration = Duration::from_secs(5);

/// One attempt to reconnect and take the call over.
const RESUME_TRY: Duration = Duration::from_secs(3);
/// Between attempts.
const RESUME_RETRY: Duration = Duration::from_secs(1);
/// How long to keep trying (the media goes on meanwhile).
const RESUME_FOR: Duration = Duration::from_secs(30);

/// Reconnects to the supernode and takes the call over on the new connection.
async fn resume(client: &mut Client, call_id: &str) -> Result<(), ClientError> {
    client.reconnect().await?;
    client.done(Request::CallResume { call_id: call_id.to_owned() }).await
}

/// Stops signaling until a reconnect (tried at once, then every second for a while) succeeds.
fn start_reconnect(
    reconnect: &mut Option<(tokio::time::Instant, tokio::time::Instant)>,
    signaling: &mut bool,
) {
    let now = tokio::time::Instant::now();
    *reconnect = Some((now, now + RESUME_FOR));
    *signaling = false;
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where an ICE restart (RFC 8445 §9) stands on this side of a call.
///
/// Only the caller (the offerer) restarts, so offers never cross: the callee asks it to with a
/// `call_restart` without SDP. The side whose network changed (its public address is not the
/// one it started with) gathers fresh candidates on new sockets and trickles them after the
/// offer or answer; the other side keeps its candidates, which still work.
struct Restart {
    call_id: String,
    /// The media task's commands.
    control: mpsc::Sender<Control<CallSocket>>,
    caller: bool,
    relay_only: bool,
    /// The public address the call started with (its server-reflexive candidate's IP).
    public_ip: Option<IpAddr>,
    /// When this side last started or asked for a restart.
    last: Option<Instant>,
    /// A request to the supernode failed for want of a connection: reconnect.
    signaling_failed: bool,
}

/// What moves a restart on.
enum Step {
    /// The media saw nothing from the peer for a while.
    Stalled,
    /// Back on the supernode after the connection dropped.
    Resumed,
    /// A `call_restart` from the other side.
    Signal(Option<String>),
}

/// At most one restart (or request for one) per this long.
const RESTART_SPACING: Duration = Duration::from_secs(2);

impl Restart {
    fn new(
        call_id: &str,
        control: mpsc::Sender<Control<CallSocket>>,
        caller: bool,
        relay_only: bool,
        gathered: &Gathered,
    ) -> Self {
        let public_ip = crate::gather::public_ip_of(&gathered.candidates);
        Restart {
            call_id: call_id.to_owned(),
            control,
            caller,
            relay_only,
            public_ip,
            last: None,
            signaling_failed: false,
        }
    }

    /// Runs one step, for at most [`RESTART_STEP`] (hang-up and the supernode's events wait
    /// meanwhile). Returns whether the supernode connection held up.
    async fn step(&mut self, step: Step, client: &Client, gathered: &mut Gathered) -> bool {
        let run = async {
            match step {
                Step::Stalled => self.path_stalled(client, gathered).await,
                Step::Resumed => {
                    // What this side tried to say while it was away was lost: restart (or ask
                    // for it) now.
                    self.last = None;
                    self.path_stalled(client, gathered).await;
                }
                Step::Signal(sdp) => self.on_signal(client, sdp, gathered).await,
            }
        };
        let in_time = tokio::time::timeout(RESTART_STEP, run).await.is_ok();
        in_time && !std::mem::take(&mut self.signaling_failed)
    }

    /// Logs a failed request; a failure of the connection (not a refusal) asks for a reconnect.
    fn sent(&mut self, result: Result<(), ClientError>, what: &str) {
        if let Err(e) = result {
            warn!(error = %e, "{what}");
            self.signaling_failed |= e.code().is_none();
        }
    }

    fn due(&mut self) -> bool {
        if self.last.is_some_and(|t| t.elapsed() < RESTART_SPACING) {
            return false;
        }
        self.last = Some(Instant::now());
        true
    }

    async fn path_stalled(&mut self, client: &Client, gathered: &mut Gathered) {
        if !self.due() {
            return;
        }
        if self.caller {
            self.offer(client, gathered).await;
        } else {
            info!("media path stalled: asking the caller to restart ICE");
            let ask = Request::CallRestart { call_id: self.call_id.clone(), sdp: None };
            self.sent(client.done(ask).await, "could not ask for an ICE restart");
            // Our own address may be the one that changed: the caller learns the fresh
            // candidates now, and again from our restart answer.
            self.fresh_candidates(client, gathered, true).await;
        }
    }

    async fn on_signal(&mut self, client: &Client, sdp: Option<String>, gathered: &mut Gathered) {
        match (self.caller, sdp) {
            (true, None) => {
                // The callee asks (the supernode limits how often): an offer of ours may have
                // been lost with its old connection, so no spacing here.
                self.last = Some(Instant::now());
                self.offer(client, gathered).await;
            }
            (true, Some(answer)) => {
                let result =
                    ask(&self.control, |tx| Control::AcceptRestartAnswer(answer, tx)).await;
                if let Err(e) = result {
                    warn!(error = %e, "refused the ICE restart answer");
                }
            }
            (false, Some(offer)) => {
                let answer = |tx| Control::AcceptRestartOffer(offer, tx);
                self.send_sdp(client, gathered, answer, "answer the ICE restart").await;
            }
            (false, None) => debug!("ignoring a call_restart without SDP from the caller"),
        }
    }

    async fn offer(&mut self, client: &Client, gathered: &mut Gathered) {
        info!("restarting ICE");
        self.send_sdp(client, gathered, Control::RestartIce, "restart ICE").await;
    }

    /// Has the media make this side's restart offer or answer and sends it. Fresh candidates
    /// come first, so that the SDP carries them under the new ICE credentials (a trickled line
    /// would carry the old ones and be refused).
    async fn send_sdp(
        &mut self,
        client: &Client,
        gathered: &mut Gathered,
        command: impl FnOnce(oneshot::Sender<Result<String, MediaError>>) -> Control<CallSocket>,
        what: &str,
    ) {
        self.fresh_candidates(client, gathered, false).await;
        let sdp = match ask(&self.control, command).await {
            Ok(sdp) => sdp,
            Err(e) => {
                warn!(error = %e, "could not {what}");
                return;
            }
        };
        let request = Request::CallRestart { call_id: self.call_id.clone(), sdp: Some(sdp) };
        self.sent(client.done(request).await, &format!("could not send the SDP to {what}"));
    }

    /// If this side's public address changed, gathers anew on new sockets and hands them to
    /// the media; with `trickle`, also sends the new candidates to the peer (else the next
    /// restart offer or answer carries them).
    async fn fresh_candidates(&mut self, client: &Client, gathered: &mut Gathered, trickle: bool) {
        // A relay whose connection to its server died (its 5-tuple changed with the address)
        // must be replaced; with only relays (relay_only, or no UDP) that is the only sign.
        let relay_died = gathered.relays_alive.iter().any(|alive| !alive.load(Ordering::Relaxed));
        let moved = relay_died
            || (!self.relay_only
                && {
                    let now = crate::gather::public_ip(client).await;
                    let moved = now.is_some() && now != self.public_ip;
                    if moved {
                        debug!(before = ?self.public_ip, after = ?now, "this side's public address changed");
                        info!("this side's public address changed");
                        self.public_ip = now;
                    }
                    moved
                });
        if !moved {
            return;
        }
        gathered.relays_alive.retain(|alive| alive.load(Ordering::Relaxed));
        let fresh = match gather(client, self.relay_only).await {
            Ok(fresh) => fresh,
            Err(e) => {
                warn!(error = %e, "could not gather fresh candidates");
                return;
            }
        };
        gathered.relays.extend(fresh.relays.iter().copied());
        gathered.relays_alive.extend(fresh.relays_alive.iter().cloned());
        let command = |tx| Control::AddSockets(fresh.sockets, fresh.candidates, tx);
        match ask(&self.control, command).await {
            Ok(lines) => {
                for line in lines.into_iter().filter(|_| trickle) {
                    let request =
                        Request::CallCandidate { call_id: self.call_id.clone(), candidate: line };
                    self.sent(client.done(request).await, "could not send a candidate");
                }
            }
            Err(e) => warn!(error = %e, "could not use the fresh candidates"),
        }
    }
}

/// Sends a command to the media task and waits for its answer.
async fn ask<T>(
    control: &mpsc::Sender<Control<CallSocket>>,
    command: impl FnOnce(oneshot::Sender<Result<T, MediaError>>) -> Control<CallSocket>,
) -> Result<T, MediaError> {
    let (tx, rx) = oneshot::channel();
    let gone =
        || MediaError::Engine { context: "restarting ICE", message: "the media ended".into() };
    control.send(command(tx)).await.map_err(|_| gone())?;
    rx.await.map_err(|_| gone())?
}
