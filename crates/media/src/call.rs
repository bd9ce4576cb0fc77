//! [`CallMedia`], the sans-IO media session of one call: offer/answer, ICE candidates, DTLS-SRTP
//! (all inside str0m), Opus encoding of outgoing frames and jitter-buffered decoding of incoming
//! ones.
//!
//! It follows str0m's run-loop contract: after every call that changes it, drain
//! [`CallMedia::poll_output`] until it returns [`Output::Timeout`]. Internally every mutation of
//! the `Rtc` is followed by a full drain into a queue, so str0m's single-mutation invariant holds
//! whatever order the caller uses.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaData, MediaKind, MediaTime, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Rtc, RtcError};
use tracing::{debug, warn};

use crate::candidate::{
    CandidateType, LocalCandidate, SelectedPath, Transport, normalize_candidate_line,
};
use crate::codec::{EncoderSettings, OpusDecoder, OpusEncoder, packet_samples};
use crate::config::{MediaConfig, Role};
use crate::error::MediaError;
use crate::interface::{Input, MediaEvent, MediaStats, Output};
use crate::jitter::{Inserted, JitterBuffer, Step};
use crate::sdp::{audio_mid, sdp_dtls_fingerprint};
use crate::{FRAME_SAMPLES, Frame};

/// How many `poll_output` rounds one drain may take before it gives up (a str0m bug guard).
const MAX_DRAIN: usize = 100_000;

/// How many addresses that sent us authenticated STUN are remembered as the peer's.
const MAX_PEER_SOURCES: usize = 16;

/// The media session of one call: one Opus audio stream each way over ICE and DTLS-SRTP.
///
/// Sans-IO: it owns no socket and reads no clock. See the [crate docs](crate) for the shape of
/// a driver, and [`run_media`](crate::run_media) for the one this crate ships.
pub struct CallMedia {
    rtc: Rtc,
    role: Role,
    fingerprint: String,
    remote_fingerprint: Option<String>,
    mid: Option<Mid>,
    negotiated: bool,
    pending_offer: Option<SdpPendingOffer>,
    /// The ICE-restart offer waiting for its answer, to offer again unchanged.
    restart_offer: Option<String>,
    outputs: VecDeque<Output>,
    next_timeout: Instant,
    last_now: Instant,
    local_candidates: Vec<Candidate>,
    remote_candidates: Vec<Candidate>,
    peer_sources: Vec<SocketAddr>,
    path: Option<(SocketAddr, SocketAddr)>,
    connected: bool,
    ice_lost: bool,
    closed: bool,
    encoder: OpusEncoder,
    decoder: OpusDecoder,
    jitter: JitterBuffer,
    pcm: Vec<i16>,
    frames_pushed: u64,
    last_frame_sent: bool,
    seq_first: Option<u64>,
    seq_highest: u64,
    stats: MediaStats,
}

impl CallMedia {
    /// Creates the media session of a call at time `now`. Its DTLS certificate is made here, so
    /// [`CallMedia::local_dtls_fingerprint`] is known before any SDP.
    pub fn new(role: Role, config: MediaConfig, now: Instant) -> Result<Self, MediaError> {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            // Our jitter buffer orders packets; str0m must hand each one over as it arrives,
            // not hold audio back waiting for a lost packet (its default waits 15 packets).
            .set_reordering_size_audio(0)
            .set_reordering_timeout_audio(None)
            .build(now);
        let fingerprint = rtc.direct_api().local_dtls_fingerprint().to_string();
        let encoder = OpusEncoder::new(&EncoderSettings {
            bitrate: config.opus_bitrate,
            complexity: config.opus_complexity,
            fec: config.fec,
            expected_loss_percent: config.expected_loss_percent,
            dtx: config.dtx,
        })?;
        let mut media = CallMedia {
            rtc,
            role,
            fingerprint,
            remote_fingerprint: None,
            mid: None,
            negotiated: false,
            pending_offer: None,
            restart_offer: None,
            outputs: VecDeque::new(),
            next_timeout: now,
            last_now: now,
            local_candidates: Vec::new(),
            remote_candidates: Vec::new(),
            peer_sources: Vec::new(),
            path: None,
            connected: false,
            ice_lost: false,
            closed: false,
            encoder,
            decoder: OpusDecoder::new()?,
            jitter: JitterBuffer::new(config.jitter_delay),
            pcm: Vec::with_capacity(2 * FRAME_SAMPLES),
            frames_pushed: 0,
            last_frame_sent: false,
            seq_first: None,
            seq_highest: 0,
            stats: MediaStats::default(),
        };
        media.drain();
        Ok(media)
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The fingerprint of this side's DTLS certificate as it appears in the SDP's
    /// `a=fingerprint:` line, e.g. `sha-256 AB:CD:…`. Signaling signs it with the device key.
    pub fn local_dtls_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The peer's DTLS fingerprint from its offer or answer, once accepted, in the same form
    /// as [`CallMedia::local_dtls_fingerprint`]. DTLS only completes with a peer certificate that
    /// matches it (str0m checks), so verifying this string verifies the media's peer.
    pub fn remote_dtls_fingerprint(&self) -> Option<&str> {
        self.remote_fingerprint.as_deref()
    }

    /// Creates the SDP offer with one send-and-receive Opus audio m-line. Local candidates added
    /// before this call are in the offer; later ones are trickled.
    pub fn create_offer(&mut self) -> Result<String, MediaError> {
        self.expect_role("create_offer", Role::Offerer)?;
        if self.negotiated || self.pending_offer.is_some() {
            return Err(MediaError::AlreadyNegotiated);
        }
        let mut api = self.rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let applied = api.apply();
        let offer = self.take_offer(applied, "creating the offer")?;
        self.mid = Some(mid);
        Ok(offer)
    }

    /// Accepts the caller's SDP offer and returns the SDP answer.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, MediaError> {
        self.expect_role("accept_offer", Role::Answerer)?;
        if self.negotiated {
            return Err(MediaError::AlreadyNegotiated);
        }
        let remote_fingerprint = single_fingerprint(sdp)?;
        let answer = self.apply_remote_offer(sdp)?;
        self.negotiated = true;
        self.remote_fingerprint = Some(remote_fingerprint);
        // str0m announces the offered media with Event::MediaAdded only on a later poll, so
        // take the mid from the offer itself.
        if self.mid.is_none() {
            self.mid = audio_mid(sdp)
                .filter(|mid| self.rtc.media(*mid).is_some_and(|m| m.kind() == MediaKind::Audio));
        }
        if self.opus_pt().is_none() {
            return Err(MediaError::NoCommonCodec);
        }
        Ok(answer)
    }

    /// Accepts the callee's SDP answer to [`CallMedia::create_offer`].
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), MediaError> {
        self.expect_role("accept_answer", Role::Offerer)?;
        let remote_fingerprint = single_fingerprint(sdp)?;
        self.apply_remote_answer(sdp)?;
        self.negotiated = true;
        self.remote_fingerprint = Some(remote_fingerprint);
        if self.opus_pt().is_none() {
            return Err(MediaError::NoCommonCodec);
        }
        Ok(())
    }

    /// Starts an ICE restart (RFC 8445 §9) on a negotiated call: new ICE credentials, the
    /// local candidates kept. Returns the SDP offer for the peer's
    /// [`CallMedia::accept_restart_offer`]; audio goes on over the old path until the answer
    /// is in. Only the offerer restarts (the answerer asks it to), so offers never cross.
    pub fn restart_ice(&mut self) -> Result<String, MediaError> {
        self.expect_role("restart_ice", Role::Offerer)?;
        if !self.negotiated {
            return Err(MediaError::NotNegotiated);
        }
        // A restart still waiting for its answer is offered again, unchanged: a new offer could
        // cross the answer to the old one, which would then be applied to the wrong credentials.
        // The peer treats the same credentials as no new restart.
        if let (Some(_), Some(offer)) = (&self.pending_offer, &self.restart_offer) {
            return Ok(offer.clone());
        }
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let applied = api.apply();
        let offer = self.take_offer(applied, "restarting ICE")?;
        self.restart_offer = Some(offer.clone());
        Ok(offer)
    }

    /// Accepts the offerer's ICE-restart offer and returns the answer. The DTLS fingerprint
    /// must be the one signed at the start of the call.
    pub fn accept_restart_offer(&mut self, sdp: &str) -> Result<String, MediaError> {
        self.expect_role("accept_restart_offer", Role::Answerer)?;
        self.check_same_fingerprint(sdp)?;
        self.apply_remote_offer(sdp)
    }

    /// Accepts the answer to [`CallMedia::restart_ice`].
    pub fn accept_restart_answer(&mut self, sdp: &str) -> Result<(), MediaError> {
        self.expect_role("accept_restart_answer", Role::Offerer)?;
        self.check_same_fingerprint(sdp)?;
        self.apply_remote_answer(sdp)?;
        self.restart_offer = None;
        Ok(())
    }

    /// Keeps the pending half of an offer str0m just made (the answer completes it).
    fn take_offer(
        &mut self,
        applied: Option<(SdpOffer, SdpPendingOffer)>,
        context: &'static str,
    ) -> Result<String, MediaError> {
        self.drain();
        let Some((offer, pending)) = applied else {
            return Err(MediaError::Engine { context, message: "str0m produced no offer".into() });
        };
        self.pending_offer = Some(pending);
        Ok(offer.to_sdp_string())
    }

    /// Applies the peer's offer (first or ICE restart) and returns the answer.
    fn apply_remote_offer(&mut self, sdp: &str) -> Result<String, MediaError> {
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| MediaError::BadSdp(e.to_string()))?;
        let answer = self.rtc.sdp_api().accept_offer(offer);
        self.drain();
        let answer = answer.map_err(negotiation_error)?;
        self.remember_sdp_candidates(sdp);
        Ok(answer.to_sdp_string())
    }

    /// Applies the peer's answer to the pending offer (first or ICE restart).
    fn apply_remote_answer(&mut self, sdp: &str) -> Result<(), MediaError> {
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| MediaError::BadSdp(e.to_string()))?;
        let pending = self.pending_offer.take().ok_or(MediaError::NoPendingOffer)?;
        let result = self.rtc.sdp_api().accept_answer(pending, answer);
        self.drain();
        result.map_err(negotiation_error)?;
        self.remember_sdp_candidates(sdp);
        Ok(())
    }

    fn check_same_fingerprint(&self, sdp: &str) -> Result<(), MediaError> {
        if !self.negotiated {
            return Err(MediaError::NotNegotiated);
        }
        if Some(single_fingerprint(sdp)?) != self.remote_fingerprint {
            return Err(MediaError::FingerprintChanged);
        }
        Ok(())
    }

    /// Adds a local candidate. Returns the `candidate:…` line to trickle to the peer, or `None`
    /// when ICE already has an equivalent candidate (nothing to send).
    pub fn add_local_candidate(
        &mut self,
        candidate: LocalCandidate,
    ) -> Result<Option<String>, MediaError> {
        let candidate = candidate.to_str0m()?;
        let added = self.rtc.add_local_candidate(candidate).cloned();
        self.drain();
        Ok(added.map(|c| {
            let line = c.to_sdp_string();
            self.local_candidates.push(c);
            line
        }))
    }

    /// Adds a candidate trickled by the peer: a `candidate:…` line, with or without `a=`.
    pub fn add_remote_candidate(&mut self, line: &str) -> Result<(), MediaError> {
        let candidate = Candidate::from_sdp_string(normalize_candidate_line(line))
            .map_err(|e| MediaError::BadCandidate(e.to_string()))?;
        debug!(candidate = %normalize_candidate_line(line), "remote candidate");
        self.remote_candidates.push(candidate.clone());
        self.rtc.add_remote_candidate(candidate);
        self.drain();
        Ok(())
    }

    /// Feeds a received datagram or a timeout at time `now`. Datagrams that are not for this
    /// call (unknown type, unknown sender) are ignored. An error means the engine refused input
    /// it accepted (for example a failed DTLS handshake); check [`CallMedia::is_alive`].
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) -> Result<(), MediaError> {
        self.last_now = self.last_now.max(now);
        let result = match input {
            Input::Timeout => self.rtc.handle_input(str0m::Input::Timeout(now)),
            Input::Receive { source, destination, bytes } => {
                let Ok(contents) = DatagramRecv::try_from(bytes) else {
                    debug!(len = bytes.len(), "ignoring a datagram that is not STUN, DTLS or RTP");
                    return Ok(());
                };
                let input = str0m::Input::Receive(
                    now,
                    Receive { proto: Protocol::Udp, source, destination, contents },
                );
                if !self.accepts_from(source, bytes, &input) {
                    debug!("ignoring a datagram from an unknown peer");
                    return Ok(());
                }
                self.rtc.handle_input(input)
            }
        };
        self.drain();
        result.map_err(|e| engine_error("handling input", &e))
    }

    /// The next output: a datagram to send, an event, or (when nothing is queued) the time at
    /// which [`CallMedia::handle_input`] wants [`Input::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        self.outputs.pop_front().unwrap_or(Output::Timeout(self.next_timeout))
    }

    /// Encodes one 20 ms frame of the local microphone and sends it. Call it every 20 ms from
    /// the start of the call: frames pushed before the call connects are discarded, but they
    /// advance the RTP clock as real time does.
    pub fn push_pcm(&mut self, now: Instant, frame: &Frame) -> Result<(), MediaError> {
        self.last_now = self.last_now.max(now);
        let rtp_time = self.frames_pushed * FRAME_SAMPLES as u64;
        self.frames_pushed += 1;
        if !self.connected || self.closed {
            return Ok(());
        }
        let (Some(mid), Some(pt)) = (self.mid, self.opus_pt()) else { return Ok(()) };
        let Some(packet) = self.encoder.encode(frame)? else {
            self.stats.frames_dtx += 1;
            self.last_frame_sent = false;
            return Ok(());
        };
        let Some(writer) = self.rtc.writer(mid) else { return Ok(()) };
        let result = writer
            // RFC 3551 §4.1: the marker bit flags the first packet after silence.
            .start_of_talkspurt(!self.last_frame_sent)
            .write(pt, now, MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ), packet);
        self.drain();
        result.map_err(|e| engine_error("sending audio", &e))?;
        self.last_frame_sent = true;
        self.stats.packets_sent += 1;
        Ok(())
    }

    /// The next 20 ms frame of the peer's audio to play, from the jitter buffer, with missing
    /// packets recovered by FEC or concealed. Call it every 20 ms. `None` until the first
    /// audio's playout time; after that always a frame (silence while the peer sends nothing).
    pub fn pull_pcm(&mut self, now: Instant) -> Option<Frame> {
        // Each step adds at least 2.5 ms; the bound only guards against a logic error.
        for _ in 0..64 {
            if self.pcm.len() >= FRAME_SAMPLES {
                break;
            }
            match self.jitter.step(now) {
                Step::NotStarted => return None,
                Step::Silence(n) => self.pcm.extend(std::iter::repeat_n(0, n)),
                Step::Packet { payload } => {
                    let n = packet_samples(&payload).map_or(FRAME_SAMPLES, |n| n as usize);
                    self.decoder.decode(&payload, n, &mut self.pcm);
                }
                Step::Fec { next, samples } => {
                    self.decoder.decode_fec(&next, samples, &mut self.pcm);
                    self.stats.frames_concealed += 1;
                    self.stats.frames_fec += 1;
                }
                Step::Conceal(n) => {
                    self.decoder.conceal(n, &mut self.pcm);
                    self.stats.frames_concealed += 1;
                }
            }
        }
        if self.pcm.len() < FRAME_SAMPLES {
            self.pcm.resize(FRAME_SAMPLES, 0);
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        for (out, sample) in frame.iter_mut().zip(self.pcm.drain(..FRAME_SAMPLES)) {
            *out = sample;
        }
        self.stats.frames_played += 1;
        Some(frame)
    }

    /// Starts an orderly end of the call's media: RTCP BYE and DTLS close_notify to the peer.
    /// Drain [`CallMedia::poll_output`] and send what it gives; then drop the session.
    pub fn close(&mut self) {
        if let Err(e) = self.rtc.close() {
            debug!(error = %e, "closing the media session");
        }
        self.drain();
    }

    /// Whether ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.connected && !self.closed
    }

    /// Whether the session can still carry media (not closed or failed).
    pub fn is_alive(&self) -> bool {
        !self.closed && self.rtc.is_alive()
    }

    /// The candidate pair in use, once known.
    pub fn selected_path(&self) -> Option<SelectedPath> {
        self.path.map(|(local, remote)| self.describe_path(local, remote))
    }

    /// Counters of sent, received, lost and concealed audio.
    pub fn stats(&self) -> MediaStats {
        let mut stats = self.stats;
        if let Some(first) = self.seq_first {
            let expected = self.seq_highest.saturating_sub(first) + 1;
            stats.packets_lost = expected.saturating_sub(stats.packets_received);
        }
        let jitter = self.jitter.counters();
        stats.packets_late = jitter.late;
        stats.packets_discarded = jitter.overflow;
        stats.jitter_delay = self.jitter.delay();
        stats
    }

    /// Whether a datagram comes from the peer. str0m only accepts DTLS and SRTP from a source
    /// on a pair it already validated, but the peer's first DTLS flight can overtake our side's
    /// ICE validation (it retransmits only after a second). So DTLS and SRTP are also taken from
    /// the peer's announced candidates and from sources that sent STUN with our ICE credentials
    /// (peer-reflexive, RFC 8445 §7.3.1.3); str0m holds the reply until ICE has a path.
    fn accepts_from(&mut self, source: SocketAddr, bytes: &[u8], input: &str0m::Input<'_>) -> bool {
        let is_stun = bytes.first().is_some_and(|&b| b <= 3);
        if self.rtc.accepts(input) {
            if is_stun && !self.peer_sources.contains(&source) {
                if self.peer_sources.len() >= MAX_PEER_SOURCES {
                    self.peer_sources.remove(0);
                }
                self.peer_sources.push(source);
            }
            return true;
        }
        !is_stun
            && (self.peer_sources.contains(&source)
                || self.remote_candidates.iter().any(|c| c.addr() == source))
    }

    fn expect_role(&self, operation: &'static str, expected: Role) -> Result<(), MediaError> {
        if self.role == expected {
            Ok(())
        } else {
            Err(MediaError::WrongRole { operation, expected, actual: self.role })
        }
    }

    /// Keeps the peer's candidates from its SDP, to name the type of the selected path.
    fn remember_sdp_candidates(&mut self, sdp: &str) {
        let candidates = sdp
            .lines()
            .filter_map(|line| line.trim().strip_prefix("a="))
            .filter(|line| line.starts_with("candidate:"))
            .filter_map(|line| Candidate::from_sdp_string(line).ok())
            .collect::<Vec<_>>();
        for c in &candidates {
            debug!(candidate = %c.to_sdp_string(), "remote candidate from SDP");
        }
        self.remote_candidates.extend(candidates);
    }

    /// The payload type negotiated for Opus on our audio m-line.
    fn opus_pt(&mut self) -> Option<str0m::media::Pt> {
        let mid = self.mid?;
        let writer = self.rtc.writer(mid)?;
        writer.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt())
    }

    /// Moves everything str0m has to say into our queue, until it names its next timeout.
    fn drain(&mut self) {
        for _ in 0..MAX_DRAIN {
            match self.rtc.poll_output() {
                Ok(str0m::Output::Timeout(at)) => {
                    self.next_timeout = at;
                    return;
                }
                Ok(str0m::Output::Transmit(t)) => {
                    self.on_transmit(t.source, t.destination, Vec::from(t.contents));
                }
                Ok(str0m::Output::Event(event)) => self.on_event(event),
                Err(e) => {
                    warn!(error = %e, "media session failed");
                    if !self.rtc.is_alive() {
                        self.mark_closed();
                    }
                    break;
                }
            }
        }
        // Either str0m failed or it never settled: look again soon rather than spin.
        self.next_timeout = self.last_now + Duration::from_millis(20);
    }

    fn on_transmit(&mut self, source: SocketAddr, destination: SocketAddr, bytes: Vec<u8>) {
        // RFC 7983 §7: a first byte of 0..=3 is STUN. ICE checks probe every pair; DTLS and
        // SRTP only go over the nominated one, which is the path we report.
        let is_stun = bytes.first().is_none_or(|&b| b <= 3);
        if !is_stun && self.path != Some((source, destination)) {
            self.path = Some((source, destination));
            let path = self.describe_path(source, destination);
            debug!(%path, "selected candidate pair");
            self.outputs.push_back(Output::Event(MediaEvent::SelectedPath(path)));
        }
        self.outputs.push_back(Output::Transmit { source, destination, bytes });
    }

    fn describe_path(&self, local: SocketAddr, remote: SocketAddr) -> SelectedPath {
        let local_type = if self
            .local_candidates
            .iter()
            .any(|c| c.kind() == str0m::CandidateKind::Relayed && c.addr() == local)
        {
            CandidateType::Relay
        } else {
            CandidateType::Host
        };
        let remote_type = self
            .remote_candidates
            .iter()
            .find(|c| c.addr() == remote)
            .map_or(CandidateType::PeerReflexive, |c| CandidateType::from_kind(c.kind()));
        SelectedPath {
            local_type,
            remote_type,
            transport: Transport::Udp,
            local_addr: local,
            remote_addr: remote,
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.connected = true;
                self.outputs.push_back(Output::Event(MediaEvent::Connected));
            }
            Event::IceConnectionStateChange(state) => match state {
                IceConnectionState::Disconnected if !self.ice_lost => {
                    self.ice_lost = true;
                    self.outputs.push_back(Output::Event(MediaEvent::Disconnected));
                }
                IceConnectionState::Connected | IceConnectionState::Completed if self.ice_lost => {
                    self.ice_lost = false;
                    self.outputs.push_back(Output::Event(MediaEvent::Reconnected));
                }
                _ => {}
            },
            Event::MediaAdded(added) if added.kind == MediaKind::Audio && self.mid.is_none() => {
                self.mid = Some(added.mid);
            }
            Event::MediaData(data) => self.on_media_data(data),
            Event::Closed => self.mark_closed(),
            _ => {}
        }
    }

    fn mark_closed(&mut self) {
        if !self.closed {
            self.closed = true;
            self.outputs.push_back(Output::Event(MediaEvent::Closed));
        }
    }

    fn on_media_data(&mut self, data: MediaData) {
        if Some(data.mid) != self.mid || data.params.spec().codec != Codec::Opus {
            return;
        }
        let Some(samples) = packet_samples(&data.data) else {
            self.stats.packets_malformed += 1;
            return;
        };
        let seq = **data.seq_range.start();
        self.seq_first = Some(self.seq_first.map_or(seq, |first| first.min(seq)));
        self.seq_highest = self.seq_highest.max(seq);
        if self.stats.packets_received == 0 {
            self.outputs.push_back(Output::Event(MediaEvent::FirstAudio));
        }
        let ts = data.time.rebase(Frequency::FORTY_EIGHT_KHZ).numer();
        match self.jitter.insert(data.network_time, ts, data.data, samples) {
            Inserted::Duplicate => {}
            Inserted::Accepted | Inserted::Stretched | Inserted::Late | Inserted::Restarted => {
                self.stats.packets_received += 1;
            }
        }
    }
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMedia")
            .field("role", &self.role)
            .field("mid", &self.mid)
            .field("connected", &self.connected)
            .field("closed", &self.closed)
            .field("path", &self.selected_path())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn single_fingerprint(sdp: &str) -> Result<String, MediaError> {
    sdp_dtls_fingerprint(sdp)
        .ok_or_else(|| MediaError::BadSdp("the SDP must carry exactly one DTLS fingerprint".into()))
}

fn negotiation_error(e: RtcError) -> MediaError {
    MediaError::Negotiation(e.to_string())
}

fn engine_error(context: &'static str, e: &RtcError) -> MediaError {
    MediaError::Engine { context, message: e.to_string() }
}
