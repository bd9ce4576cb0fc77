//! Peerline's call engine: dial or answer through the supernode and run the call peer to peer.
//!
//! The policy — when to send what, when to verify, restart, resume or give up — is the sans-IO
//! [`peerline_call_core::Call`]. This crate is its tokio driver, as `peerline-supernode`'s session
//! is the hub's: [`driver`] feeds the core the supernode's events, the media's events, the time
//! and the user's hang-up, and carries out what the core asks for ([`steps`]: requests through
//! the [`Client`], the media session, gathering and TURN through `peerline-nat`).
//!
//! Privacy: the offer carries no addresses. The caller's candidates are trickled right after the
//! invite and the supernode holds them until a device accepts; the callee gathers and trickles
//! its own only after it accepted. So nobody learns a user's address before the call is answered.
//!
//! Security: each side signs its DTLS fingerprint with its device key
//! ([`peerline_wire::call_signature_payload`]). The supernode forwards the sender's device key;
//! the signature is checked against it, then the key against the one pinned for that device
//! ([`peerline_client::peer_keys`]). DTLS then only completes with a certificate matching the
//! signed fingerprint, so a supernode cannot put itself in the media path without the call
//! failing with "identity changed".
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod driver;
pub mod live;
pub mod steps;

use std::future::Future;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use peerline_call_core::{Call, CallConfig, Dial, Invite, PeerClaim};
use peerline_client::peer_keys::{IdentityChanged, PeerKeyError};
use peerline_client::{Client, ClientError};
use peerline_media::lossy::Impairment;
use peerline_media::{AudioSink, AudioSource, CallMedia, CallStats, MediaConfig, MediaError, Role};
use peerline_nat::{GatherError, gather, public_ip_of};
use peerline_wire::{CallEndReason, Event, Request, SdpRole, call_signature_payload};
use rand::RngCore;

pub use peerline_call_core::{CallEnd, KeyCheck, SetupTimings};
pub use peerline_media as media;
pub use peerline_nat::{CallPath, RelayInfo};

use crate::driver::Driver;
use crate::live::Live;

/// Progress of a call, reported as it happens, with the path as the user sees it.
pub type CallProgress = peerline_call_core::Progress<CallPath>;

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
    Home(#[from] peerline_client::home::HomeError),
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
    #[error("no TURN relay could be used for this relay-only call: {0}")]
    NoRelay(String),
    /// This side takes calls only through a relay (`relay_only`) and the network's supernode
    /// has no TURN relay configured: the call could never carry media.
    #[error(
        "this device makes calls only through a relay (relay-only is on), and this network has \
         no TURN relay configured, so the call was not placed. Turn relay-only off (`peerline \
         settings --relay-only false`, or without --relay-only) to call directly"
    )]
    NoRelayConfigured,
}

impl From<PeerKeyError> for CallError {
    fn from(e: PeerKeyError) -> Self {
        match e {
            PeerKeyError::Changed(c) => CallError::IdentityChanged(c),
            PeerKeyError::Home(h) => CallError::Home(h),
        }
    }
}

impl From<GatherError> for CallError {
    fn from(e: GatherError) -> Self {
        match e {
            GatherError::Io(e) => CallError::Io(e),
            GatherError::NoRelay(why) => CallError::NoRelay(why),
        }
    }
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
                received_at: now(),
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
    /// Simulates a bad network: drops and delays what this side sends (tests, demos). Such a
    /// call does not restart ICE.
    pub impair_sending: Option<Impairment>,
    /// Offer only relayed candidates, so the peer never learns this side's IP address (like
    /// Signal's "always relay calls"). The call fails if no relay can be reached.
    pub relay_only: bool,
    /// Timers and limits of the call policy; `None` for the defaults.
    pub policy: Option<CallConfig>,
}

impl CallOptions {
    pub(crate) fn policy(&self) -> CallConfig {
        let mut config = self.policy.clone().unwrap_or_default();
        config.relay_only = self.relay_only;
        if self.impair_sending.is_some() {
            // A simulated bad network is for tests of the audio path: no restarts.
            config.stall_after = None;
        }
        config
    }
}

/// The current time, on tokio's clock (so that `tokio::time::pause` works in tests).
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn random_call_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Signs this side's DTLS fingerprint for the call.
pub(crate) fn sign(
    key: &SigningKey,
    call_id: &str,
    role: SdpRole,
    from: &str,
    to: &str,
    fingerprint: &str,
) -> String {
    hex::encode(key.sign(&call_signature_payload(call_id, role, from, to, fingerprint)).to_bytes())
}

/// Declines an incoming call (`busy`: only this device is busy, others keep ringing).
pub async fn decline(client: &Client, call: &IncomingCall, busy: bool) -> Result<(), ClientError> {
    client.done(Request::CallDecline { call_id: call.call_id.clone(), busy, reason: None }).await
}

/// Tells the caller this device cannot take the call, and why (`no_audio_device`, `no_relay`):
/// only this device stops ringing; the caller hears `reason` once none rings any more.
pub async fn refuse(
    client: &Client,
    call: &IncomingCall,
    reason: CallEndReason,
) -> Result<(), ClientError> {
    let call_id = call.call_id.clone();
    client.done(Request::CallDecline { call_id, busy: false, reason: Some(reason) }).await
}

/// Whether the network has a TURN relay this device can use: the supernode hands out TURN
/// credentials with at least one relay URL. A relay-only device checks it before it places or
/// accepts a call, so that a call that could never carry media ends at once, saying why,
/// rather than after the connect timeout.
pub async fn relay_configured(client: &Client) -> Result<bool, CallError> {
    Ok(!steps::turn_credentials(client).await?.urls.is_empty())
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
    let dialed = now();
    let me = client.logged_in_username()?;
    let to = to.to_ascii_lowercase();
    let key = client.device_key()?;
    let servers = steps::servers(client, true).await?;
    if options.relay_only && servers.turn.as_ref().is_ok_and(|turn| turn.urls.is_empty()) {
        // Before anything is sent: nobody's phone rings for a call that cannot connect.
        return Err(CallError::NoRelayConfigured);
    }
    let call_id = random_call_id();
    // Boxed: the media session is large, and call futures are often joined on one stack.
    let mut media = Box::new(CallMedia::new(Role::Offerer, options.media.clone(), dialed)?);
    let sdp = media.create_offer()?;
    let signature = sign(&key, &call_id, SdpRole::Offer, &me, &to, media.local_dtls_fingerprint());
    let gathered = gather(&servers, options.relay_only).await?;
    let mut candidates = Vec::new();
    for candidate in &gathered.candidates {
        candidates.extend(media.add_local_candidate(*candidate)?);
    }
    let dial = Dial {
        call_id,
        me: me.clone(),
        to,
        sdp,
        signature,
        candidates,
        public_ip: public_ip_of(&gathered.candidates),
    };
    let call = Call::dial(dial, options.policy(), dialed);
    let io = Live::new(client, media, gathered, source, sink, options, key, me);
    let driver = Driver::new(call, io);
    Box::pin(driver.run(stop, progress)).await
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
    let key = client.device_key()?;
    let media = Box::new(CallMedia::new(Role::Answerer, options.media.clone(), now())?);
    let invite = Invite {
        call_id: call.call_id,
        me: me.clone(),
        caller: PeerClaim {
            peer: call.from,
            device_id: call.device_id,
            device_key: call.device_key,
            sdp: call.sdp,
            signature: call.fingerprint_signature,
        },
    };
    let core = Call::answer(invite, options.policy(), call.received_at);
    let gathered = Default::default();
    let io = Live::new(client, media, gathered, source, sink, options, key, me);
    let driver = Driver::new(core, io);
    Box::pin(driver.run(stop, progress)).await
}

/// How long the driver waits for the media task to stop once asked.
pub(crate) const MEDIA_STOP: Duration = Duration::from_secs(5);
