//! What goes into a [`Call`](crate::Call) and what comes out: the work it asks its driver
//! for ([`Action`], [`Step`]) and the results it takes back ([`OpResult`], [`MediaInput`]), the
//! progress it reports and how a call ends.

use std::net::IpAddr;
use std::time::Duration;

use peerline_media::{EndReason as MediaEnd, MediaEvent, SelectedPath};
use peerline_wire::{CallEndReason, ErrorCode, Reply, Request};

use crate::verify::{KeyCheck, PeerClaim};

/// Names one piece of work the call asked its driver for, so that the result finds its way
/// back ([`Call::handle_result`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Work that needs IO, other than a request to the supernode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Check the peer's device key against the key pinned for it (pinning it on first use).
    /// Answer [`OpResult::KeyChecked`], or [`OpResult::Failed`] when it is not the pinned key.
    CheckKey(PeerClaim),
    /// Caller, before the media runs: apply the callee's answer. [`OpResult::Done`].
    AcceptAnswer(String),
    /// Callee, before the media runs: apply the caller's offer, make the answer and sign its
    /// fingerprint. [`OpResult::Signed`].
    AcceptOffer(String),
    /// Callee, after accepting: gather candidates and add them to the media.
    /// [`OpResult::Gathered`] with the `candidate:` lines to trickle.
    Gather,
    /// Look whether this side moved: whether a relay died, and (with `public_address`) this
    /// side's public IP now. [`OpResult::Probed`].
    Probe {
        /// Ask the STUN responder for the public address (not with `relay_only`).
        public_address: bool,
    },
    /// Gather anew on fresh sockets and hand them to the running media, dropping dead relays.
    /// [`OpResult::Gathered`].
    Regather,
    /// Caller: have the media make an ICE-restart offer. [`OpResult::Sdp`].
    RestartIce,
    /// Callee: the caller's ICE-restart offer; answer it. [`OpResult::Sdp`].
    AcceptRestartOffer(String),
    /// Caller: the answer to our restart offer. [`OpResult::Done`].
    AcceptRestartAnswer(String),
    /// Reconnect to the supernode with the saved session and take the call over there
    /// (`call_resume`). [`OpResult::Reply`], [`OpResult::Refused`] or [`OpResult::Broken`].
    Resume,
}

/// What became of an [`Action::Send`] or an [`Action::Run`].
#[derive(Debug, Clone, PartialEq)]
pub enum OpResult {
    /// The supernode answered.
    Reply(Reply),
    /// The supernode refused with this error.
    Refused(ErrorCode),
    /// No answer: the connection is closed or the step took too long.
    Broken,
    /// A local step failed; the driver kept its error (see [`Failure::Op`]).
    Failed,
    /// A local step succeeded.
    Done,
    /// The key check passed.
    KeyChecked(KeyCheck),
    /// The media made this SDP.
    Sdp(String),
    /// The callee's answer and the signature over its fingerprint.
    Signed {
        /// The SDP answer.
        sdp: String,
        /// Hex Ed25519 signature over the call's signature payload.
        signature: String,
    },
    /// Candidates were gathered and added to the media.
    Gathered {
        /// `candidate:` lines to trickle to the peer.
        lines: Vec<String>,
        /// This side's public IP among them (server-reflexive, or the host's without NAT).
        public_ip: Option<IpAddr>,
    },
    /// What [`Step::Probe`] found.
    Probed {
        /// The public IP now (`None`: not asked, or no answer).
        public_ip: Option<IpAddr>,
        /// A relay's connection to its TURN server died.
        relay_died: bool,
    },
}

/// What the media driver reports to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaInput {
    /// An event of the media (its core's, or the driver's [`MediaEvent::Received`]).
    Event(MediaEvent),
    /// The media stopped (after [`Action::StopMedia`], or by itself).
    Ended(MediaEnd),
}

/// Progress of a call as the user sees it. Durations count from the dial (caller) or from the
/// arrival of the invite (callee). `P` is how the driver describes a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress<P = SelectedPath> {
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
    Path(P),
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

impl<P> Progress<P> {
    /// The same progress with the path described another way.
    pub fn map_path<Q>(self, f: impl FnOnce(P) -> Q) -> Progress<Q> {
        match self {
            Progress::Dialing { call_id, devices } => Progress::Dialing { call_id, devices },
            Progress::Ringing { after } => Progress::Ringing { after },
            Progress::Answered { after, device_id, key } => {
                Progress::Answered { after, device_id, key }
            }
            Progress::Connected { after } => Progress::Connected { after },
            Progress::Path(path) => Progress::Path(f(path)),
            Progress::FirstAudio { after } => Progress::FirstAudio { after },
            Progress::PathLost => Progress::PathLost,
            Progress::PathBack => Progress::PathBack,
            Progress::Restarting => Progress::Restarting,
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// This side hung up (or cancelled).
    HungUpHere,
    /// The supernode said the call ended.
    Remote(CallEndReason),
    /// The media ended by itself (peer closed it, no path found, path lost).
    Media(MediaEnd),
    /// The supernode connection was lost and the call could not be taken over on a new one
    /// within the resume window.
    SupernodeLost,
}

impl CallEnd {
    /// A short machine-readable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            CallEnd::HungUpHere => "hung_up_here",
            CallEnd::Remote(reason) => reason.as_str(),
            CallEnd::Media(MediaEnd::Stopped) => "stopped",
            CallEnd::Media(MediaEnd::PeerClosed) => "peer_closed_media",
            CallEnd::Media(MediaEnd::ConnectTimeout) => "no_media_path",
            CallEnd::Media(MediaEnd::PathLost) => "media_path_lost",
            CallEnd::SupernodeLost => "supernode_lost",
        }
    }
}

/// Why a call failed (an error for the user, rather than an ordinary end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The peer's fingerprint is not signed by the device key the supernode named.
    BadSignature {
        /// The peer.
        peer: String,
        /// Its device.
        device_id: i64,
    },
    /// This operation failed; its driver kept the error (a refused key, a refused request, a
    /// media or gathering error).
    Op(OpId),
}

/// How a call finished: its end, or a failure.
pub type Outcome = Result<CallEnd, Failure>;

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

/// What the call asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this request to the supernode and report the answer with this id.
    Send {
        /// Where the answer goes.
        op: OpId,
        /// The request.
        request: Request,
    },
    /// Carry out this step and report its result with this id.
    Run {
        /// Where the result goes.
        op: OpId,
        /// The work.
        step: Step,
    },
    /// Start the media, with the peer's candidates that arrived before it ran.
    StartMedia {
        /// `candidate:` lines.
        remote_candidates: Vec<String>,
    },
    /// A candidate the peer trickled, for the running media.
    RemoteCandidate(String),
    /// Stop the media; it reports [`MediaInput::Ended`] once stopped.
    StopMedia,
    /// Tell the user.
    Progress(Progress),
    /// The call is over. Always the last action, exactly once.
    End(Outcome),
}

/// Which end of the call this side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Dialed: offers, and is the only side that restarts ICE.
    Caller,
    /// Was called: answers.
    Callee,
}

/// What the caller needs to dial: the offer and what goes with it, prepared by the driver.
#[derive(Debug, Clone)]
pub struct Dial {
    /// A fresh random call id.
    pub call_id: String,
    /// This user.
    pub me: String,
    /// The callee.
    pub to: String,
    /// The SDP offer, without addresses.
    pub sdp: String,
    /// Hex signature of the offer's fingerprint by this device's key.
    pub signature: String,
    /// This side's `candidate:` lines, trickled once the invite is placed.
    pub candidates: Vec<String>,
    /// This side's public IP among its candidates.
    pub public_ip: Option<IpAddr>,
}

/// An invite to answer, as the supernode pushed it.
#[derive(Debug, Clone)]
pub struct Invite {
    /// The call's id.
    pub call_id: String,
    /// This user.
    pub me: String,
    /// The caller, its device, that device's key and its signature over the offer.
    pub caller: PeerClaim,
}
