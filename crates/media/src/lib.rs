//! Peerline's media plane: one voice call between two peers over the standard WebRTC media
//! stack (ICE, DTLS-SRTP, Opus over RTP), so that a browser can be the other peer.
//!
//! The crate is layered like str0m and quinn:
//!
//! - [`CallMedia`] is the sans-IO core. It wraps a [`str0m::Rtc`] with one audio m-line (Opus,
//!   48 kHz, 20 ms frames, in-band FEC, DTX), an Opus encoder and decoder and a jitter buffer.
//!   It never touches a socket or a clock: the caller hands in datagrams and the time
//!   ([`CallMedia::handle_input`]) and takes out datagrams, timers and events
//!   ([`CallMedia::poll_output`]).
//! - [`run_media`] is the thin tokio driver around it: it pumps UDP packets and timers and paces
//!   audio every 20 ms between an [`AudioSource`], the call and an [`AudioSink`].
//! - [`audio`] holds the sources and sinks (WAV files, a tone generator), [`tone`] the Goertzel
//!   tone detector that tests and the echo service use, and [`lossy`] a link that drops and
//!   delays packets, for tests of both the core and the driver.
//! - `device` (feature `sound-devices`, off by default) opens the default microphone and
//!   speaker through cpal.
//!
//! Signaling (offer/answer, trickled candidates, signed DTLS fingerprints) is not done here: the
//! caller moves the strings that [`CallMedia`] produces through the supernode.
//!
//! ```no_run
//! # async fn call() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, Instant};
//! use peerline_media::*;
//!
//! // One socket per interface address; never 0.0.0.0.
//! let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! let mut media = CallMedia::new(Role::Offerer, MediaConfig::default(), Instant::now())?;
//! let to_sign = media.local_dtls_fingerprint().to_string(); // signed with the device key
//! let trickle = media.add_local_candidate(LocalCandidate::Host(socket.local_addr()?))?;
//! let offer = media.create_offer()?;
//! // ... send `offer`, `to_sign` and `trickle` through the supernode; receive the answer,
//! // check sdp_dtls_fingerprint(&answer) against the callee's signed fingerprint ...
//! # let answer = String::new();
//! media.accept_answer(&answer)?;
//! let stats = run_media(
//!     vec![socket],
//!     media,
//!     WavSource::open("greeting.wav", true)?,
//!     WavSink::create("heard.wav")?,
//!     tokio::time::sleep(Duration::from_secs(30)),
//!     RunOptions::default(),
//! )
//! .await?;
//! println!("connected after {:?} over {:?}", stats.time_to_connected, stats.selected_path);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod audio;
mod call;
mod candidate;
mod codec;
mod config;
#[cfg(feature = "sound-devices")]
pub mod device;
pub mod driver;
mod error;
mod interface;
mod jitter;
pub mod lossy;
mod sdp;
pub mod tone;

pub use audio::{AudioSink, AudioSource, Frame, ToneSource, WavSink, WavSource, write_tone_wav};
pub use call::CallMedia;
pub use candidate::{CandidateType, LocalCandidate, SelectedPath, Transport};
pub use config::{MediaConfig, Role};
#[cfg(feature = "sound-devices")]
pub use device::{MicrophoneSource, SpeakerSink, devices_available, open_microphone, open_speaker};
pub use driver::{CallStats, Control, EndReason, PacketSocket, RunOptions, run_media};
pub use error::{AudioError, MediaError};
pub use interface::{Input, MediaEvent, MediaStats, Output};
pub use sdp::sdp_dtls_fingerprint;

/// The sample rate of all audio inside Peerline: 48 kHz, Opus's native rate.
pub const SAMPLE_RATE: u32 = 48_000;

/// Samples in one 20 ms frame of mono audio at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 960;

/// Duration of one audio frame.
pub const FRAME_DURATION: std::time::Duration = std::time::Duration::from_millis(20);
