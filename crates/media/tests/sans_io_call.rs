//! Two `CallMedia` cores in one process, wired through an in-memory network with a fake clock
//! (the way str0m tests itself): offer/answer, trickled candidates, ICE, DTLS-SRTP, then a
//! 440 Hz tone from A and a 660 Hz tone from B. Each side must hear the other's tone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use peerline_media::lossy::{Impairment, LossyLink};
use peerline_media::tone::{ToneCriteria, ToneReport, analyze_tone};
use peerline_media::{
    AudioSource, CallMedia, CandidateType, FRAME_DURATION, Input, LocalCandidate, MediaConfig,
    MediaError, MediaEvent, Output, Role, SAMPLE_RATE, ToneSource, WavSource, sdp_dtls_fingerprint,
};

type Packet = (SocketAddr, SocketAddr, Vec<u8>);

struct Peer {
    media: CallMedia,
    source: Box<dyn AudioSource>,
    recorded: Vec<i16>,
    events: Vec<MediaEvent>,
    wake_at: Instant,
    connected_at: Option<Instant>,
}

impl Peer {
    fn new(media: CallMedia, freq: f64, now: Instant) -> Self {
        Peer {
            media,
            source: Box::new(ToneSource::new(freq)),
            recorded: Vec::new(),
            events: Vec::new(),
            wake_at: now,
            connected_at: None,
        }
    }

    /// Drains the core: packets go onto `link`, events are recorded.
    fn drain(&mut self, now: Instant, link: &mut LossyLink<Packet>) {
        loop {
            match self.media.poll_output() {
                Output::Transmit { source, destination, bytes } => {
                    link.send(now, (source, destination, bytes));
                }
                Output::Timeout(at) => {
                    self.wake_at = at;
                    return;
                }
                Output::Event(event) => {
                    if event == MediaEvent::Connected {
                        self.connected_at = Some(now);
                    }
                    self.events.push(event);
                }
            }
        }
    }

    fn has_event(&self, wanted: impl Fn(&MediaEvent) -> bool) -> bool {
        self.events.iter().any(wanted)
    }
}

struct Call {
    now: Instant,
    a: Peer,
    b: Peer,
    a_to_b: LossyLink<Packet>,
    b_to_a: LossyLink<Packet>,
}

const A_ADDR: &str = "10.0.0.1:5000";
const B_ADDR: &str = "10.0.0.2:6000";

/// Offer/answer with A's candidate in the offer and B's trickled after the answer.
fn set_up_call(impairment: Impairment, seed: u64) -> Call {
    let now = Instant::now();
    let mut a = CallMedia::new(Role::Offerer, MediaConfig::default(), now).unwrap();
    let mut b = CallMedia::new(Role::Answerer, MediaConfig::default(), now).unwrap();

    let a_line =
        a.add_local_candidate(LocalCandidate::Host(A_ADDR.parse().unwrap())).unwrap().unwrap();
    let offer = a.create_offer().unwrap();
    assert!(offer.contains(&a_line), "the offer carries candidates added before it");
    assert_eq!(sdp_dtls_fingerprint(&offer).as_deref(), Some(a.local_dtls_fingerprint()));

    let answer = b.accept_offer(&offer).unwrap();
    assert_eq!(sdp_dtls_fingerprint(&answer).as_deref(), Some(b.local_dtls_fingerprint()));
    assert!(answer.contains("opus/48000/2"), "{answer}");
    let b_line =
        b.add_local_candidate(LocalCandidate::Host(B_ADDR.parse().unwrap())).unwrap().unwrap();

    a.accept_answer(&answer).unwrap();
    a.add_remote_candidate(&format!("a={b_line}\r\n")).unwrap();
    assert_eq!(a.remote_dtls_fingerprint(), Some(b.local_dtls_fingerprint()));
    assert_eq!(b.remote_dtls_fingerprint(), Some(a.local_dtls_fingerprint()));

    Call {
        now,
        a: Peer::new(a, 440.0, now),
        b: Peer::new(b, 660.0, now),
        a_to_b: LossyLink::new(impairment, seed),
        b_to_a: LossyLink::new(impairment, seed.wrapping_add(1)),
    }
}

impl Call {
    /// Runs the simulated call until `talk` after both sides connected (or `limit`).
    fn run(&mut self, talk: Duration, limit: Duration) {
        let start = self.now;
        let mut next_audio = self.now + FRAME_DURATION;
        let mut stuck = 0;
        loop {
            self.a.drain(self.now, &mut self.a_to_b);
            self.b.drain(self.now, &mut self.b_to_a);

            if let (Some(a_at), Some(b_at)) = (self.a.connected_at, self.b.connected_at)
                && self.now >= a_at.max(b_at) + talk
            {
                return;
            }
            assert!(self.now - start < limit, "call did not finish within {limit:?}");

            let next = [
                Some(self.a.wake_at),
                Some(self.b.wake_at),
                self.a_to_b.next_arrival(),
                self.b_to_a.next_arrival(),
                Some(next_audio),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
            if next > self.now {
                self.now = next;
                stuck = 0;
            } else {
                stuck += 1;
                if stuck > 1000 {
                    // Guard against a core that keeps asking for "now".
                    self.now += Duration::from_millis(1);
                    stuck = 0;
                }
            }
            let now = self.now;

            while let Some((source, destination, bytes)) = self.a_to_b.receive(now) {
                let input = Input::Receive { source, destination, bytes: &bytes };
                self.b.media.handle_input(now, input).unwrap();
                self.b.drain(now, &mut self.b_to_a);
            }
            while let Some((source, destination, bytes)) = self.b_to_a.receive(now) {
                let input = Input::Receive { source, destination, bytes: &bytes };
                self.a.media.handle_input(now, input).unwrap();
                self.a.drain(now, &mut self.a_to_b);
            }
            if self.a.wake_at <= now {
                self.a.media.handle_input(now, Input::Timeout).unwrap();
            }
            if self.b.wake_at <= now {
                self.b.media.handle_input(now, Input::Timeout).unwrap();
            }
            if next_audio <= now {
                next_audio += FRAME_DURATION;
                for peer in [&mut self.a, &mut self.b] {
                    let frame = peer.source.next_frame().unwrap_or([0; 960]);
                    peer.media.push_pcm(now, &frame).unwrap();
                    if let Some(frame) = peer.media.pull_pcm(now) {
                        peer.recorded.extend_from_slice(&frame);
                    }
                }
            }
        }
    }
}

fn report(samples: &[i16], freq: f64) -> ToneReport {
    analyze_tone(samples, SAMPLE_RATE, freq, &ToneCriteria::default())
}

fn summary(r: &ToneReport) -> String {
    format!(
        "{} windows, {} with tone, fraction {:.3}, first {:?}, longest gap {:?}, silent {:?}",
        r.windows.len(),
        r.tone_windows,
        r.tone_fraction(),
        r.first_tone,
        r.longest_gap,
        r.silent_time_during_tone()
    )
}

#[test]
fn tones_cross_a_perfect_network() {
    let mut call = set_up_call(Impairment::NONE, 1);
    call.run(Duration::from_secs(3), Duration::from_secs(10));

    for (name, peer, heard, own) in [("A", &call.a, 660.0, 440.0), ("B", &call.b, 440.0, 660.0)] {
        assert!(peer.has_event(|e| *e == MediaEvent::Connected), "{name}: {:?}", peer.events);
        assert!(peer.has_event(|e| *e == MediaEvent::FirstAudio), "{name}: {:?}", peer.events);
        let path = peer.media.selected_path().expect("a selected path");
        assert_eq!((path.local_type, path.remote_type), (CandidateType::Host, CandidateType::Host));
        assert!(path.is_direct());

        let heard_report = report(&peer.recorded, heard);
        println!("{name} hears {heard} Hz: {}", summary(&heard_report));
        assert!(heard_report.tone_windows >= 25, "{name}: {}", summary(&heard_report));
        assert_eq!(heard_report.tone_fraction(), 1.0, "{name}: {}", summary(&heard_report));
        assert_eq!(heard_report.longest_gap, Duration::ZERO);
        assert_eq!(heard_report.silent_time_during_tone(), Duration::ZERO);
        assert_eq!(report(&peer.recorded, own).tone_windows, 0, "{name} hears itself");

        let stats = peer.media.stats();
        println!("{name} stats: {stats:?}");
        assert!(stats.packets_received >= 140, "{name}: {stats:?}");
        assert_eq!(stats.packets_lost, 0, "{name}: {stats:?}");
    }
}

#[test]
fn tones_survive_5_percent_loss_and_40ms_jitter() {
    let mut call = set_up_call(Impairment::new(0.05, Duration::from_millis(40)), 7);
    call.run(Duration::from_secs(3), Duration::from_secs(30));

    for (name, peer, heard) in [("A", &call.a, 660.0), ("B", &call.b, 440.0)] {
        let heard_report = report(&peer.recorded, heard);
        let stats = peer.media.stats();
        println!("{name} hears {heard} Hz: {}; {stats:?}", summary(&heard_report));
        for w in heard_report.windows.iter().filter(|w| !w.tone) {
            println!("  {name} window without tone: {w:?}");
        }
        assert!(heard_report.tone_windows >= 25, "{name}: {}", summary(&heard_report));
        assert!(heard_report.tone_fraction() >= 0.9, "{name}: {}", summary(&heard_report));
        assert!(heard_report.longest_gap <= Duration::from_millis(200), "{name}");
        assert!(stats.packets_lost > 0, "the link should have lost packets: {stats:?}");
        assert!(stats.frames_concealed > 0, "{stats:?}");
    }
}

#[test]
fn silence_is_not_sent_and_the_tone_after_it_is_heard() {
    let mut call = set_up_call(Impairment::NONE, 5);
    // A starts with 1.5 s of silence, then plays its tone.
    let mut tone = ToneSource::new(440.0);
    let mut samples = vec![0i16; 72_000];
    for _ in 0..150 {
        samples.extend_from_slice(&tone.next_frame().unwrap());
    }
    call.a.source = Box::new(WavSource::from_samples(samples, false));
    call.run(Duration::from_secs(4), Duration::from_secs(10));

    let a_stats = call.a.media.stats();
    println!("A: {a_stats:?}");
    assert!(a_stats.frames_dtx > 20, "DTX should have skipped silent frames: {a_stats:?}");
    let heard = report(&call.b.recorded, 440.0);
    println!("B hears 440 Hz: {}", summary(&heard));
    assert!(heard.tone_windows >= 20, "{}", summary(&heard));
    assert!(heard.tone_fraction() >= 0.95, "{}", summary(&heard));
    assert!(heard.silent_time >= Duration::from_millis(500), "the silence is silent");
}

#[test]
fn closing_one_side_reaches_the_other() {
    let mut call = set_up_call(Impairment::NONE, 3);
    call.run(Duration::from_millis(500), Duration::from_secs(10));
    call.a.media.close();
    let end = call.now + Duration::from_secs(2);
    while call.now < end && !call.b.has_event(|e| *e == MediaEvent::Closed) {
        let now = call.now;
        call.a.drain(now, &mut call.a_to_b);
        while let Some((source, destination, bytes)) = call.a_to_b.receive(now) {
            let input = Input::Receive { source, destination, bytes: &bytes };
            call.b.media.handle_input(now, input).unwrap();
        }
        call.b.drain(now, &mut call.b_to_a);
        call.now += Duration::from_millis(10);
        let _ = call.a.media.handle_input(call.now, Input::Timeout);
        let _ = call.b.media.handle_input(call.now, Input::Timeout);
    }
    assert!(call.b.has_event(|e| *e == MediaEvent::Closed), "{:?}", call.b.events);
    assert!(!call.b.media.is_alive());
}

#[test]
fn misuse_and_bad_peer_input_give_errors_not_panics() {
    let now = Instant::now();
    let mut a = CallMedia::new(Role::Offerer, MediaConfig::default(), now).unwrap();
    let mut b = CallMedia::new(Role::Answerer, MediaConfig::default(), now).unwrap();

    assert!(matches!(b.create_offer(), Err(MediaError::WrongRole { .. })));
    assert!(matches!(a.accept_offer("v=0"), Err(MediaError::WrongRole { .. })));
    assert!(matches!(a.accept_answer("v=0"), Err(MediaError::BadSdp(_))));
    assert!(matches!(b.accept_offer("not sdp"), Err(MediaError::BadSdp(_))));
    assert!(matches!(
        a.add_remote_candidate("candidate:garbage"),
        Err(MediaError::BadCandidate(_))
    ));
    let wildcard = LocalCandidate::Host("0.0.0.0:5000".parse().unwrap());
    assert!(matches!(a.add_local_candidate(wildcard), Err(MediaError::BadCandidate(_))));

    let offer = a.create_offer().unwrap();
    assert!(matches!(a.create_offer(), Err(MediaError::AlreadyNegotiated)));
    // Garbage datagrams from anywhere are ignored.
    for bytes in [&b""[..], &[0u8; 3], &[0x80; 40], &[22u8; 100], &[0xff; 1500]] {
        let input = Input::Receive {
            source: "10.9.9.9:9".parse().unwrap(),
            destination: A_ADDR.parse().unwrap(),
            bytes,
        };
        a.handle_input(now, input).unwrap();
    }
    // A second, different fingerprint (say, inserted by a meddling relay) makes the SDP
    // unverifiable: refused.
    let fingerprint = sdp_dtls_fingerprint(&offer).unwrap();
    let doubled = offer.replace(
        "a=setup:",
        "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:",
    );
    assert_eq!(sdp_dtls_fingerprint(&doubled), None);
    assert!(matches!(b.accept_offer(&doubled), Err(MediaError::BadSdp(_))));
    // The same fingerprint in other letter case is the same fingerprint.
    assert_eq!(
        sdp_dtls_fingerprint(&offer.replace(&fingerprint, &fingerprint.to_lowercase())),
        Some(fingerprint)
    );

    b.accept_offer(&offer).unwrap();
    assert!(matches!(b.accept_offer(&offer), Err(MediaError::AlreadyNegotiated)));
    // Pulling before any audio gives nothing; pushing before connecting is harmless.
    assert!(b.pull_pcm(now).is_none());
    b.push_pcm(now, &[0; 960]).unwrap();
}

#[test]
fn server_reflexive_and_relay_candidates_are_announced() {
    let now = Instant::now();
    let mut a = CallMedia::new(Role::Offerer, MediaConfig::default(), now).unwrap();
    let base: SocketAddr = A_ADDR.parse().unwrap();
    a.add_local_candidate(LocalCandidate::Host(base)).unwrap().unwrap();
    let srflx =
        LocalCandidate::ServerReflexive { addr: "203.0.113.7:41000".parse().unwrap(), base };
    let line = a.add_local_candidate(srflx).unwrap().unwrap();
    assert!(line.contains("203.0.113.7 41000 typ srflx"), "{line}");
    let relay = LocalCandidate::Relay { addr: "198.51.100.9:50000".parse().unwrap(), local: base };
    let line = a.add_local_candidate(relay).unwrap().unwrap();
    assert!(line.contains("198.51.100.9 50000 typ relay"), "{line}");
    // The peer parses what we announce.
    let mut b = CallMedia::new(Role::Answerer, MediaConfig::default(), now).unwrap();
    b.add_remote_candidate(&line).unwrap();
}
