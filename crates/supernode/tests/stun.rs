//! The supernode's STUN responder, through the real server: a client learns its own address,
//! garbage is ignored, and both are counted in /metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{TestNode, within};
use tokio::net::UdpSocket;

const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// A Binding request with no attributes (RFC 8489 §5).
fn binding_request(txid: [u8; 12]) -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x00, 0x00];
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&txid);
    p
}

/// The IPv4 XOR-MAPPED-ADDRESS of a Binding success response (RFC 8489 §14.2).
fn xor_mapped_v4(resp: &[u8], txid: [u8; 12]) -> std::net::SocketAddr {
    assert_eq!(&resp[0..2], &[0x01, 0x01], "a Binding success response");
    assert_eq!(&resp[8..20], &txid, "the transaction id is echoed");
    let mut at = 20;
    while at + 4 <= resp.len() {
        let kind = u16::from_be_bytes([resp[at], resp[at + 1]]);
        let len = usize::from(u16::from_be_bytes([resp[at + 2], resp[at + 3]]));
        if kind == 0x0020 {
            let v = &resp[at + 4..at + 4 + len];
            assert_eq!(v[1], 0x01, "IPv4 family");
            let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
            let ip: Vec<u8> = v[4..8].iter().zip(MAGIC).map(|(b, m)| b ^ m).collect();
            return (std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]), port).into();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    panic!("no XOR-MAPPED-ADDRESS in {resp:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_learns_its_address_and_garbage_is_ignored() {
    let node = TestNode::start(&[]).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(node.stun_addr).await.unwrap();
    for _ in 0..1000 {
        socket.send(b"\x00\x01 not stun at all, just noise").await.unwrap();
    }
    let txid = *b"peerline-tx1";
    let request = binding_request(txid);
    let mut buf = [0u8; 1500];
    // UDP may drop under the noise: retry the request a few times.
    let n = within("a STUN answer", async {
        loop {
            socket.send(&request).await.unwrap();
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(300), socket.recv(&mut buf))
                    .await
            {
                return n;
            }
        }
    })
    .await;
    assert!(
        n <= request.len() + 12,
        "no amplification: {n} bytes for a {}-byte request",
        request.len()
    );
    assert_eq!(xor_mapped_v4(&buf[..n], txid), socket.local_addr().unwrap());
    let metrics = node.metrics().await;
    assert!(metrics.contains("peerline_stun_requests_total{result=\"answered\"}"), "{metrics}");
    assert!(metrics.contains("peerline_stun_requests_total{result=\"not_stun\"}"), "{metrics}");
    node.stop().await;
}
