//! The tokio driver over real UDP sockets on loopback: a client learns its own address, a flood of
//! garbage does not stop the responder, and shutdown works. (ICMP errors: tests/metrics.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::time::Duration;

use peerline_stun::{ResponderConfig, Stats, StunServer};
use stun_types::attribute::XorMappedAddress;
use stun_types::message::{BINDING, Message, MessageClass, MessageWrite, MessageWriteVec};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A responder on `bind` (port 0), running until the returned sender is dropped or fired.
async fn start(bind: &str) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<Stats>) {
    let server =
        StunServer::bind(bind.parse().unwrap(), &ResponderConfig::default()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

/// Sends a Binding request and waits for its answer, retransmitting every 200 ms (as STUN clients
/// do, RFC 8489 §6.2.1) for up to 10 s. Returns the reported address.
async fn binding(client: &UdpSocket, server: SocketAddr) -> SocketAddr {
    let request = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let request_id = Message::from_bytes(&request).unwrap().transaction_id();
    let mut buf = [0u8; 1500];
    for _ in 0..50 {
        client.send_to(&request, server).await.unwrap();
        let Ok(received) =
            tokio::time::timeout(Duration::from_millis(200), client.recv_from(&mut buf)).await
        else {
            continue;
        };
        let (len, from) = received.unwrap();
        assert_eq!(from, server);
        assert!(len <= request.len() + 24);
        let msg = Message::from_bytes(&buf[..len]).unwrap();
        if msg.transaction_id() != request_id {
            continue; // the answer to an earlier retransmission
        }
        assert!(msg.has_class(MessageClass::Success));
        return msg.attribute::<XorMappedAddress>().unwrap().addr(msg.transaction_id());
    }
    panic!("no answer from the STUN responder within 10 s");
}

#[tokio::test]
async fn client_learns_its_own_ipv4_address() {
    let (server, stop, task) = start("127.0.0.1:0").await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(binding(&client, server).await, client.local_addr().unwrap());
    stop.send(()).unwrap();
    let stats = task.await.unwrap();
    assert!(stats.answered >= 1);
}

#[tokio::test]
async fn client_learns_its_own_ipv6_address() {
    let (server, stop, task) = start("[::1]:0").await;
    let client = UdpSocket::bind("[::1]:0").await.unwrap();
    assert_eq!(binding(&client, server).await, client.local_addr().unwrap());
    drop(stop);
    task.await.unwrap();
}

#[tokio::test]
async fn garbage_flood_does_not_stop_the_responder() {
    let (server, stop, task) = start("127.0.0.1:0").await;
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(binding(&client, server).await, client.local_addr().unwrap());

    // 10,000 bad datagrams as fast as the socket takes them: noise, truncated and oversize STUN,
    // responses, indications, other methods.
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let valid = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..10_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let packet: Vec<u8> = match i % 6 {
            0 => (0..(seed % 200) as usize).map(|k| (seed >> (k % 56)) as u8).collect(),
            1 => valid[..(seed % 20) as usize].to_vec(),
            2 => vec![0; 1400],
            3 => [&[0x01, 0x01][..], &valid[2..]].concat(), // success response
            4 => [&[0x00, 0x11][..], &valid[2..]].concat(), // indication
            _ => [&[0x00, 0x03][..], &valid[2..]].concat(), // Allocate request
        };
        attacker.send_to(&packet, server).await.unwrap();
    }
    // The flood got no answers at all.
    let mut buf = [0u8; 64];
    assert!(attacker.try_recv_from(&mut buf).is_err());

    assert_eq!(binding(&client, server).await, client.local_addr().unwrap());
    stop.send(()).unwrap();
    let stats = task.await.unwrap();
    assert!(stats.answered >= 2);
    assert!(stats.dropped() > 0, "{stats:?}");
    assert_eq!(stats.source_rate_limited + stats.global_rate_limited, 0);
    assert_eq!(stats.would_amplify, 0);
}

#[tokio::test]
async fn shutdown_stops_the_responder() {
    let (_, stop, task) = start("127.0.0.1:0").await;
    stop.send(()).unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    assert_eq!(stats, Stats::default());
}
