//! Errors of the media plane: [`MediaError`] for the call core and driver, [`AudioError`] for
//! audio sources and sinks.

use std::path::PathBuf;

use crate::config::Role;

/// Something went wrong while setting up or running the media of a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// An offer/answer method was called on the side that does not own it.
    #[error(
        "{operation} is only valid for the {expected:?} side of a call, this side is the {actual:?}"
    )]
    WrongRole {
        /// The method that was called.
        operation: &'static str,
        /// The role that may call it.
        expected: Role,
        /// The role of this call.
        actual: Role,
    },
    /// `create_offer` was called twice, or `accept_offer` after the call was negotiated.
    #[error("the call is already negotiated; create one CallMedia per call")]
    AlreadyNegotiated,
    /// `accept_answer` was called without an outstanding offer.
    #[error("no offer is outstanding: call create_offer before accept_answer")]
    NoPendingOffer,
    /// An ICE-restart offer or answer arrived before the call was negotiated.
    #[error("an ICE restart needs a negotiated call")]
    NotNegotiated,
    /// The peer's DTLS fingerprint changed in a renegotiation: it was signed once, at the
    /// start of the call, so a new one is refused.
    #[error("the peer's DTLS fingerprint changed in an ICE restart; refused")]
    FingerprintChanged,
    /// The remote SDP could not be parsed.
    #[error("the remote SDP is malformed: {0}")]
    BadSdp(String),
    /// The remote SDP was well-formed but could not be applied (for example a wrong DTLS role).
    #[error("the remote SDP was refused: {0}")]
    Negotiation(String),
    /// The remote side offered no audio that this side can decode (Opus/48000).
    #[error("the remote side offered no Opus audio; Peerline calls need Opus")]
    NoCommonCodec,
    /// A candidate line from the remote side, or a local candidate, is unusable.
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// The Opus encoder or decoder failed to start or to encode.
    #[error("Opus codec error: {0}")]
    Codec(#[from] opus::Error),
    /// The WebRTC engine reported an error (DTLS failure, SRTP failure, ...).
    #[error("WebRTC engine error while {context}: {message}")]
    Engine {
        /// What the core was doing.
        context: &'static str,
        /// The engine's description.
        message: String,
    },
    /// A socket error in the driver.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// An audio source or sink failed in the driver.
    #[error(transparent)]
    Audio(#[from] AudioError),
}

/// Something went wrong with an audio source or sink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// The machine has no usable sound device (typical for servers and CI).
    #[error(
        "no default sound {direction} device found; use --play FILE (a WAV file to send) and \
         --record FILE (a WAV file to write what you hear) instead"
    )]
    NoDevice {
        /// `"input"` (microphone) or `"output"` (speaker).
        direction: &'static str,
    },
    /// A WAV file could not be opened, read or written.
    #[error("WAV file {path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: hound::Error,
    },
    /// The WAV file is valid but of a kind this crate does not read.
    #[error("WAV file {path} is not supported: {reason}")]
    UnsupportedWav {
        /// The file.
        path: PathBuf,
        /// Why, and what would work.
        reason: String,
    },
    /// Resampling to 48 kHz failed.
    #[error("could not resample {from_rate} Hz audio to 48000 Hz: {message}")]
    Resample {
        /// The source sample rate.
        from_rate: u32,
        /// The resampler's description.
        message: String,
    },
}
