//! The driver over real UDP sockets on 127.0.0.1: two calls' media run concurrently, A plays a
//! 440 Hz tone and B a 660 Hz tone, each records to a WAV file, and the files are read back and
//! checked for the other side's tone.
//!
//! Host candidates are 127.0.0.1 only (sockets bound to it, never to 0.0.0.0), so no traffic
//! leaves loopback (see ../shared/BROWSER.md on peer-reflexive leaks from other interfaces).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use peerline_media::audio::read_wav;
use peerline_media::lossy::{Impairment, LossySocket};
use peerline_media::tone::{ToneCriteria, ToneReport, analyze_tone};
use peerline_media::{
    CallMedia, CallStats, CandidateType, EndReason, LocalCandidate, MediaConfig, MediaEvent,
    PacketSocket, Role, RunOptions, SAMPLE_RATE, ToneSource, WavSink, run_media,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const TALK: Duration = Duration::from_secs(3);

/// Offer/answer and candidate exchange, as signaling would do it.
fn negotiate(a_addr: std::net::SocketAddr, b_addr: std::net::SocketAddr) -> (CallMedia, CallMedia) {
    let now = Instant::now();
    let mut a = CallMedia::new(Role::Offerer, MediaConfig::default(), now).unwrap();
    let mut b = CallMedia::new(Role::Answerer, MediaConfig::default(), now).unwrap();
    let offer = a.create_offer().unwrap();
    let answer = b.accept_offer(&offer).unwrap();
    a.accept_answer(&answer).unwrap();
    // Both trickle their candidates after the offer/answer.
    let a_line = a.add_local_candidate(LocalCandidate::Host(a_addr)).unwrap().unwrap();
    let b_line = b.add_local_candidate(LocalCandidate::Host(b_addr)).unwrap().unwrap();
    b.add_remote_candidate(&a_line).unwrap();
    a.add_remote_candidate(&b_line).unwrap();
    (a, b)
}

async fn run_call<S: PacketSocket>(
    a_socket: S,
    b_socket: S,
    dir: &Path,
    (a_talk, b_talk): (Duration, Duration),
) -> ((CallStats, Vec<MediaEvent>), (CallStats, Vec<MediaEvent>)) {
    let (a, b) = negotiate(a_socket.local_addr().unwrap(), b_socket.local_addr().unwrap());
    let run = |socket: S, media: CallMedia, freq: f64, wav: &str, talk: Duration| {
        let sink = WavSink::create(dir.join(wav)).unwrap();
        let (events_tx, mut events_rx) = mpsc::channel(64);
        let options = RunOptions { events: Some(events_tx), ..RunOptions::default() };
        async move {
            let stats = run_media(
                vec![socket],
                media,
                ToneSource::new(freq),
                sink,
                tokio::time::sleep(talk),
                options,
            )
            .await
            .unwrap();
            let mut events = Vec::new();
            while let Ok(e) = events_rx.try_recv() {
                events.push(e);
            }
            (stats, events)
        }
    };
    tokio::join!(run(a_socket, a, 440.0, "a.wav", a_talk), run(b_socket, b, 660.0, "b.wav", b_talk))
}

fn analyze(path: &Path, freq: f64) -> ToneReport {
    let samples = read_wav(path).unwrap();
    analyze_tone(&samples, SAMPLE_RATE, freq, &ToneCriteria::default())
}

fn check_side(
    name: &str,
    stats: &CallStats,
    events: &[MediaEvent],
    report: &ToneReport,
    min_fraction: f64,
) {
    println!(
        "{name}: connected after {:?}, first audio after {:?}, path {:?}, {:?}",
        stats.time_to_connected, stats.time_to_first_audio, stats.selected_path, stats.media
    );
    println!(
        "{name}: {} windows, {} with tone, fraction {:.3}, longest gap {:?}, silent {:?}",
        report.windows.len(),
        report.tone_windows,
        report.tone_fraction(),
        report.longest_gap,
        report.silent_time_during_tone()
    );
    assert!(stats.time_to_connected.is_some(), "{name} never connected");
    assert!(stats.time_to_first_audio.is_some(), "{name} never heard audio");
    assert!(events.contains(&MediaEvent::Connected), "{name}: {events:?}");
    let path = stats.selected_path.expect("a selected path");
    assert_eq!((path.local_type, path.remote_type), (CandidateType::Host, CandidateType::Host));
    assert!(path.local_addr.ip().is_loopback() && path.remote_addr.ip().is_loopback());
    // Not silence, the other side's tone, no long gaps once it started.
    assert!(report.tone_windows >= 15, "{name}: only {} windows with tone", report.tone_windows);
    assert!(report.tone_fraction() >= min_fraction, "{name}: {:.3}", report.tone_fraction());
    assert!(report.longest_gap <= Duration::from_millis(200), "{name}: {:?}", report.longest_gap);
    assert!(report.silent_time_during_tone() <= Duration::from_millis(200), "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_call_on_loopback_records_each_others_tone() {
    let dir = tempfile::tempdir().unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ((a_stats, a_events), (b_stats, b_events)) = run_call(a, b, dir.path(), (TALK, TALK)).await;

    let a_report = analyze(&dir.path().join("a.wav"), 660.0);
    let b_report = analyze(&dir.path().join("b.wav"), 440.0);
    check_side("A", &a_stats, &a_events, &a_report, 0.95);
    check_side("B", &b_stats, &b_events, &b_report, 0.95);
    // Each side hears the other, not itself.
    assert_eq!(analyze(&dir.path().join("a.wav"), 440.0).tone_windows, 0);
    assert_eq!(analyze(&dir.path().join("b.wav"), 660.0).tone_windows, 0);
    assert!(a_stats.media.packets_sent >= 100 && b_stats.media.packets_received >= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_call_through_lossy_sockets_keeps_the_tone() {
    let dir = tempfile::tempdir().unwrap();
    let impairment = Impairment::new(0.05, Duration::from_millis(40));
    let a = LossySocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), impairment, 11);
    let b = LossySocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), impairment, 12);
    let ((a_stats, a_events), (b_stats, b_events)) = run_call(a, b, dir.path(), (TALK, TALK)).await;

    let a_report = analyze(&dir.path().join("a.wav"), 660.0);
    let b_report = analyze(&dir.path().join("b.wav"), 440.0);
    check_side("A", &a_stats, &a_events, &a_report, 0.9);
    check_side("B", &b_stats, &b_events, &b_report, 0.9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_ends_the_peers_media_too() {
    let dir = tempfile::tempdir().unwrap();
    let a_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (a, b) = negotiate(a_socket.local_addr().unwrap(), b_socket.local_addr().unwrap());

    // A hangs up one second after it connected; B would run for a minute but must see the close.
    let (a_events, mut a_events_rx) = mpsc::channel(64);
    let a_hangs_up = async move {
        while let Some(event) = a_events_rx.recv().await {
            if event == MediaEvent::Connected {
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let (b_events, mut b_events_rx) = mpsc::channel(64);
    let (a_stats, b_stats) = tokio::join!(
        run_media(
            vec![a_socket],
            a,
            ToneSource::new(440.0),
            Vec::new(),
            a_hangs_up,
            RunOptions { events: Some(a_events), ..RunOptions::default() },
        ),
        run_media(
            vec![b_socket],
            b,
            ToneSource::new(660.0),
            WavSink::create(dir.path().join("b.wav")).unwrap(),
            tokio::time::sleep(Duration::from_secs(60)),
            RunOptions { events: Some(b_events), ..RunOptions::default() },
        ),
    );
    let (a_stats, b_stats) = (a_stats.unwrap(), b_stats.unwrap());
    assert_eq!(a_stats.end, EndReason::Stopped);
    assert_eq!(b_stats.end, EndReason::PeerClosed);
    let mut b_saw_close = false;
    while let Ok(event) = b_events_rx.try_recv() {
        b_saw_close |= event == MediaEvent::Closed;
    }
    assert!(b_saw_close);
    // B's recording has A's tone.
    assert!(analyze(&dir.path().join("b.wav"), 440.0).tone_windows >= 5);
}

#[tokio::test]
async fn a_peer_that_never_answers_never_connects() {
    // B's socket exists but nothing runs B's media: A's checks go unanswered. Giving up is the
    // call policy's decision (peerline-call-core's connect timeout), which stops the media.
    let a_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (a, _b) = negotiate(a_socket.local_addr().unwrap(), silent.local_addr().unwrap());
    let stats = run_media(
        vec![a_socket],
        a,
        ToneSource::new(440.0),
        Vec::new(),
        tokio::time::sleep(Duration::from_secs(2)),
        RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(stats.end, EndReason::Stopped);
    assert_eq!(stats.time_to_connected, None);
    assert_eq!(stats.media.packets_sent, 0);
}
