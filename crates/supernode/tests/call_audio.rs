//! Calls end to end through a real supernode, with the client library on both sides: alice
//! sends a 440 Hz tone, bob a 660 Hz tone, each records what it hears, and the recordings must
//! carry the other side's tone without long gaps — on a clean loopback and with 5 % loss and
//! 40 ms of jitter each way. The path must be direct (host candidates): the supernode only
//! carried the signaling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestNode, User, befriend, within};
use peerline_call::media::lossy::Impairment;
use peerline_call::media::tone::{ToneCriteria, ToneReport, analyze_tone};
use peerline_call::media::{AudioError, AudioSink, CandidateType, Frame, SAMPLE_RATE, ToneSource};
use peerline_call::{CallEnd, CallOptions, CallSummary, IncomingCall};
use peerline_client::wire::{CallEndReason, Event};

/// A sink the test can read after the call moved it into the media task.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<i16>>>);

impl AudioSink for Recorder {
    fn write_frame(&mut self, frame: &Frame) -> Result<(), AudioError> {
        self.0.lock().unwrap().extend_from_slice(frame);
        Ok(())
    }
}

impl Recorder {
    fn report(&self, freq: f64) -> ToneReport {
        analyze_tone(&self.0.lock().unwrap(), SAMPLE_RATE, freq, &ToneCriteria::default())
    }
}

/// alice calls bob; both talk for `talk`, then alice hangs up.
async fn call(
    options: CallOptions,
    talk: Duration,
) -> (CallSummary, CallSummary, Recorder, Recorder) {
    let node = TestNode::start(&["alice", "bob"]).await;
    let mut alice = User::login(&node, "alice").await;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;
    let (alice_heard, bob_heard) = (Recorder::default(), Recorder::default());

    let caller = {
        let heard = alice_heard.clone();
        let options = options.clone();
        let client = &mut alice.client;
        async move {
            peerline_call::place_call(
                client,
                "bob",
                ToneSource::new(440.0),
                heard,
                options,
                // Setup takes well under a second on loopback; the rest is talk time.
                tokio::time::sleep(talk + Duration::from_secs(1)),
                &mut |_| {},
            )
            .await
        }
    };
    let callee = {
        let heard = bob_heard.clone();
        let bob = &mut bob;
        async move {
            let event = bob.expect("the call", |e| matches!(e, Event::CallIncoming { .. })).await;
            let incoming = IncomingCall::from_event(&event).unwrap();
            assert_eq!(incoming.from, "alice");
            peerline_call::ring(&bob.client, &incoming).await.unwrap();
            peerline_call::answer_call(
                &mut bob.client,
                incoming,
                ToneSource::new(660.0),
                heard,
                options,
                std::future::pending(),
                &mut |_| {},
            )
            .await
        }
    };
    let (a, b) = within("the call", async { tokio::join!(caller, callee) }).await;
    let (a, b) = (a.expect("alice's call"), b.expect("bob's call"));
    node.assert_serving();
    (a, b, alice_heard, bob_heard)
}

fn assert_heard(name: &str, report: &ToneReport, min_fraction: f64) {
    assert!(
        report.tone_windows >= 20,
        "{name}: only {} windows with the tone",
        report.tone_windows
    );
    assert!(
        report.tone_fraction() >= min_fraction,
        "{name}: {:.3} of the call",
        report.tone_fraction()
    );
    assert!(
        report.longest_gap <= Duration::from_millis(300),
        "{name}: gap {:?}",
        report.longest_gap
    );
    assert!(report.silent_time_during_tone() <= Duration::from_millis(300), "{name}: silence");
}

fn assert_direct(summary: &CallSummary) {
    let path = summary.path.expect("a selected path").selected;
    assert_eq!(path.local_type, CandidateType::Host, "{path:?}");
    assert!(path.is_direct(), "{path:?}");
    assert!(path.local_addr.ip().is_loopback() && path.remote_addr.ip().is_loopback());
    assert!(summary.timings.connected.is_some() && summary.timings.first_audio.is_some());
}

#[tokio::test]
async fn tones_cross_a_call_both_ways_directly() {
    let (alice, bob, alice_heard, bob_heard) =
        call(CallOptions::default(), Duration::from_secs(3)).await;
    assert_eq!(alice.end, CallEnd::HungUpHere);
    assert_eq!(bob.end, CallEnd::Remote(CallEndReason::HungUp));
    assert!(alice.timings.ringing.is_some());
    assert_direct(&alice);
    assert_direct(&bob);
    assert_heard("alice hears bob's 660 Hz", &alice_heard.report(660.0), 0.95);
    assert_heard("bob hears alice's 440 Hz", &bob_heard.report(440.0), 0.95);
    // Each side hears the other's tone, not its own echoed back.
    assert_eq!(alice_heard.report(440.0).tone_windows, 0);
    assert_eq!(bob_heard.report(660.0).tone_windows, 0);
}

#[tokio::test]
async fn tones_survive_5_percent_loss_and_40ms_jitter() {
    let options = CallOptions {
        impair_sending: Some(Impairment::new(0.05, Duration::from_millis(40))),
        ..CallOptions::default()
    };
    let (alice, bob, alice_heard, bob_heard) = call(options, Duration::from_secs(5)).await;
    assert_direct(&alice);
    let lost = |s: &CallSummary| s.media.as_ref().unwrap().media.packets_lost;
    assert!(lost(&alice) > 0 && lost(&bob) > 0, "the link really lost packets");
    assert_heard("alice hears bob's 660 Hz", &alice_heard.report(660.0), 0.85);
    assert_heard("bob hears alice's 440 Hz", &bob_heard.report(440.0), 0.85);
}
