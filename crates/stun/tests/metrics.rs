//! The driver's `metrics` counters, read through a small in-memory recorder: answers and drops
//! are counted by result, and an ICMP port-unreachable (ECONNREFUSED from `recv_from`) is counted
//! as a socket error without ending the loop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use peerline_stun::server::{REQUESTS_TOTAL, SOCKET_ERRORS_TOTAL};
use peerline_stun::{ResponderConfig, StunServer};
use stun_types::attribute::XorMappedAddress;
use stun_types::message::{BINDING, Message, MessageWrite, MessageWriteVec};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Counters by `name{label=value}`.
#[derive(Debug, Default, Clone)]
struct TestRecorder {
    counters: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
}

impl TestRecorder {
    fn value(&self, name: &str, label: &str, value: &str) -> u64 {
        let key = format!("{name}{{{label}={value}}}");
        self.counters.lock().unwrap().get(&key).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Waits (up to 10 s) until the counter reaches `at_least`.
    async fn wait_for(&self, name: &str, label: &str, value: &str, at_least: u64) {
        for _ in 0..1_000 {
            if self.value(name, label, value) >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{name}{{{label}={value}}} never reached {at_least}");
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> =
            key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(self.counters.lock().unwrap().entry(name).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

async fn ask(client: &UdpSocket, server: std::net::SocketAddr) -> std::net::SocketAddr {
    let request = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let mut buf = [0u8; 1500];
    for _ in 0..50 {
        client.send_to(&request, server).await.unwrap();
        if let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf)).await
        {
            let msg = Message::from_bytes(&buf[..len]).unwrap();
            return msg.attribute::<XorMappedAddress>().unwrap().addr(msg.transaction_id());
        }
    }
    panic!("no answer");
}

#[tokio::test]
async fn requests_and_socket_errors_are_counted_and_icmp_errors_do_not_end_the_loop() {
    let recorder = TestRecorder::default();
    metrics::set_global_recorder(recorder.clone()).unwrap();

    // On Linux a *connected* UDP socket reports an ICMP port-unreachable for what it sent as
    // ECONNREFUSED from its next recv. Connect the responder's socket to a client port, have it
    // answer a request after that client has gone, wait for the error to be counted, then check
    // that a new client on the same port is still answered.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = socket.local_addr().unwrap();
    let gone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = gone.local_addr().unwrap();
    socket.connect(port).await.unwrap();
    let request = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    gone.send_to(&request, server).await.unwrap();
    drop(gone);

    let responder = StunServer::from_socket(socket, &ResponderConfig::default()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(responder.run(async move {
        let _ = stopped.await;
    }));
    recorder.wait_for(REQUESTS_TOTAL, "result", "answered", 1).await;
    recorder.wait_for(SOCKET_ERRORS_TOTAL, "op", "recv", 1).await;

    let client = UdpSocket::bind(port).await.unwrap();
    assert_eq!(ask(&client, server).await, port);
    client.send_to(b"not stun", server).await.unwrap();
    recorder.wait_for(REQUESTS_TOTAL, "result", "answered", 2).await;
    recorder.wait_for(REQUESTS_TOTAL, "result", "not_stun", 1).await;

    // Every result label is registered up front, so dashboards see zeros, not gaps.
    assert!(recorder.counters.lock().unwrap().keys().any(|k| k.contains("result=would_amplify")));
    stop.send(()).unwrap();
    let stats = task.await.unwrap();
    assert_eq!(stats.answered, recorder.value(REQUESTS_TOTAL, "result", "answered"));
}
