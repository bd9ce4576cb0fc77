//! Publish-to-deliver latency over NATS on loopback: one message at a time (the latency a lone
//! message sees), then a burst (latency under load). A benchmark, not a test: run it on an idle
//! machine with `cargo bench -p peerline-bus-nats --bench latency`; the figures go to
//! docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use peerline_bus::{Address, Bus, BusConfig, BusEvent, Bytes};
use peerline_bus_nats::NatsBus;
use peerline_testkit::nats::TestNats;

const MESSAGES: usize = 10_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    eprintln!(
        "{what}: {} messages, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
}

/// Decodes the send time (nanoseconds since `base`) carried in a payload.
fn sent_at(base: Instant, payload: &[u8]) -> Instant {
    base + Duration::from_nanos(u64::from_be_bytes(payload[..8].try_into().unwrap()))
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(publish_to_deliver_latency_on_loopback());
}

async fn publish_to_deliver_latency_on_loopback() {
    let nats = TestNats::start().expect("starting nats-server");
    let a = NatsBus::connect(&nats.url(), BusConfig::new("a", "latency")).await.unwrap();
    let b = NatsBus::connect(&nats.url(), BusConfig::new("b", "latency")).await.unwrap();
    let mut events = b.events().unwrap();
    b.watch(1).await.unwrap();
    let base = Instant::now();
    let payload = |i: usize| {
        let mut bytes = vec![0u8; 200];
        bytes[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
        bytes[8..16].copy_from_slice(&(i as u64).to_be_bytes());
        Bytes::from(bytes)
    };
    let mut next_message = async || loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(BusEvent::Message { payload, .. })) => return (Instant::now(), payload),
            Ok(Some(_)) => {}
            other => panic!("message lost (the bus drops for a slow consumer): {other:?}"),
        }
    };

    let mut one_at_a_time = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        a.publish(&Address::User(1), payload(i)).await.unwrap();
        let (arrived, got) = next_message().await;
        one_at_a_time.push(arrived - sent_at(base, &got));
    }
    report("one at a time (200-byte payload)", one_at_a_time);

    let started = Instant::now();
    let sender = async {
        for i in 0..MESSAGES {
            a.publish(&Address::User(1), payload(i)).await.unwrap();
        }
    };
    // A burst may overflow the receiver's bounded queue (the bus drops rather than buffer
    // without bound): take what arrives until the line is quiet.
    let receiver = async {
        let mut latencies = Vec::with_capacity(MESSAGES);
        let mut last = Instant::now();
        while latencies.len() < MESSAGES {
            match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
                Ok(Some(BusEvent::Message { payload, .. })) => {
                    last = Instant::now();
                    latencies.push(last - sent_at(base, &payload));
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        (latencies, last)
    };
    let ((), (burst, last)) = tokio::join!(sender, receiver);
    let took = last - started;
    let delivered = burst.len();
    report("burst (200-byte payload)", burst);
    eprintln!(
        "burst: {delivered} of {MESSAGES} messages delivered in {took:?} ({:.0}/s)",
        delivered as f64 / took.as_secs_f64()
    );
    eprintln!("dropped by the bus (slow consumer): {}", b.health().dropped_events);
}
