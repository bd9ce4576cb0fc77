//! An attacker against other users, through real sockets from distinct loopback addresses
//! (127.0.0.0/8 is all loopback): guessing cannot lock an account's owner out, password hashes
//! queued by connections that hung up are given up instead of run, and neither one account nor
//! one address can take the supernode's connections or TLS handshakes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::{PASSWORD, Raw, TestNode, assert_still_serves_then_stop, device_key, proof, within};
use ed25519_dalek::SigningKey;
use peerline_wire::{EndReason, ErrorBody, ErrorCode, Event, Login, Reply, Request, ServerFrame};
use tokio::net::TcpSocket;

/// A raw client connected from `source` (a loopback address), hello said.
async fn raw_from(node: &TestNode, source: Ipv4Addr) -> Raw {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let tcp = within("TCP connect", socket.connect(node.client_addr)).await.unwrap();
    let mut raw = Raw::over(node, tcp).await;
    raw.hello().await;
    raw
}

/// One login attempt on `raw` as `username`, signed with `key`.
async fn attempt(
    raw: &mut Raw,
    key: &SigningKey,
    username: &str,
    password: Option<&str>,
    token: Option<&str>,
) -> Result<Reply, ErrorBody> {
    let login = Login {
        username: username.into(),
        password: password.map(str::to_owned),
        token: token.map(str::to_owned),
        device: proof(key, &raw.nonce),
        quiet: false,
    };
    raw.request(Request::Login(login)).await
}

fn code(result: &Result<Reply, ErrorBody>) -> Option<ErrorCode> {
    result.as_ref().err().map(|e| e.code)
}

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ALICE_HOME: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const ALICE_TRAVELLING: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_one_address_never_locks_alice_out_of_her_token_or_her_devices() {
    let node = TestNode::start(&["alice", "bob"]).await;
    // Alice's phone: a registered device with a session token.
    let phone = device_key();
    let mut raw = raw_from(&node, ALICE_HOME).await;
    let token = match attempt(&mut raw, &phone, "alice", Some(PASSWORD), None).await {
        Ok(Reply::LoggedIn { token, .. }) => token,
        other => panic!("alice's first login: {other:?}"),
    };
    drop(raw);

    // The attacker: wrong passwords for alice with made-up device keys, and made-up tokens,
    // far past every free allowance, each on a fresh connection (as a script would).
    let mut throttled = 0;
    for i in 0..40 {
        let mut raw = raw_from(&node, ATTACKER).await;
        let guess = format!("guess number {i}");
        let result = attempt(&mut raw, &device_key(), "alice", Some(&guess), None).await;
        match code(&result) {
            Some(ErrorCode::InvalidCredentials) => {}
            Some(ErrorCode::LoginThrottled) => throttled += 1,
            _ => panic!("guess {i}: {result:?}"),
        }
        let fake = format!("{i:064x}");
        let result = attempt(&mut raw, &device_key(), "alice", None, Some(&fake)).await;
        assert!(
            matches!(code(&result), Some(ErrorCode::InvalidToken | ErrorCode::LoginThrottled)),
            "made-up token {i}: {result:?}"
        );
    }
    assert!(throttled >= 30, "the guessing was throttled ({throttled} of 40)");

    // Alice, from elsewhere: her token works, and so does her phone's password login.
    let mut raw = raw_from(&node, ALICE_TRAVELLING).await;
    let result = attempt(&mut raw, &phone, "alice", None, Some(&token)).await;
    assert!(matches!(result, Ok(Reply::LoggedIn { .. })), "alice's token login: {result:?}");
    let mut raw = raw_from(&node, ALICE_TRAVELLING).await;
    let result = attempt(&mut raw, &phone, "alice", Some(PASSWORD), None).await;
    assert!(matches!(result, Ok(Reply::LoggedIn { .. })), "her phone's password: {result:?}");
    // A device alice never used is held (that is what throttling the guesses means), even with
    // the right password.
    let mut raw = raw_from(&node, ALICE_TRAVELLING).await;
    let result = attempt(&mut raw, &device_key(), "alice", Some(PASSWORD), None).await;
    assert_eq!(code(&result), Some(ErrorCode::LoginThrottled), "{result:?}");
    let wait = result.unwrap_err().retry_after_secs.unwrap();
    assert!(wait >= 1, "the held login says how long to wait: {wait} s");
    // The attacker's own address is held for tokens too (bad tokens are counted per source).
    let mut raw = raw_from(&node, ATTACKER).await;
    let result = attempt(&mut raw, &phone, "alice", None, Some(&token)).await;
    assert_eq!(code(&result), Some(ErrorCode::LoginThrottled), "{result:?}");
    assert_still_serves_then_stop(node, "bob").await;
}

/// `peerline_password_hashes_abandoned_total{reason="closed"}` from /metrics.
async fn abandoned_on_close(node: &TestNode) -> u64 {
    let metrics = node.metrics().await;
    metrics
        .lines()
        .filter(|l| l.starts_with("peerline_password_hashes_abandoned_total{reason=\"closed\"}"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_queued_by_a_connection_that_hung_up_is_never_run() {
    let node = TestNode::start_with(&["alice"], |c| c.limits.password_hash_concurrency = 1).await;
    // Six registrations (real Argon2id hashes) from six addresses keep the one hash slot busy.
    let mut busy = Vec::new();
    for i in 0..6u8 {
        let mut raw = raw_from(&node, Ipv4Addr::new(127, 0, 1, i + 1)).await;
        let id = raw
            .send(Request::Register {
                username: format!("busy{i}"),
                display_name: None,
                password: PASSWORD.into(),
            })
            .await;
        busy.push((raw, id));
    }
    // Logins queue behind them, and their clients hang up at once.
    for i in 0..4u8 {
        let mut raw = raw_from(&node, Ipv4Addr::new(127, 0, 2, i + 1)).await;
        let login = Login {
            username: "alice".into(),
            password: Some(PASSWORD.into()),
            token: None,
            device: proof(&device_key(), &raw.nonce),
            quiet: false,
        };
        raw.send(Request::Login(login)).await;
        drop(raw);
    }
    for (mut raw, id) in busy {
        let answer = raw.answer(id).await;
        assert!(matches!(answer, Ok(Reply::Registered { .. })), "{answer:?}");
    }
    let abandoned = abandoned_on_close(&node).await;
    assert!(abandoned >= 1, "no queued hash was given up after its client hung up");
    assert_still_serves_then_stop(node, "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_with_ten_connections_keeps_only_its_share_and_the_newest() {
    let node = TestNode::start_with(&["mallory", "bob"], |c| {
        c.limits.max_connections_per_user = 4;
        c.limits.max_connections_per_device = 2;
    })
    .await;
    let key = device_key();
    let mut conns = Vec::new();
    for i in 0..10u8 {
        // Every connection from its own address, so only the per-account caps apply.
        let mut raw = raw_from(&node, Ipv4Addr::new(127, 0, 3, i + 1)).await;
        let device = if i % 2 == 0 { key.clone() } else { device_key() };
        let result = attempt(&mut raw, &device, "mallory", Some(PASSWORD), None).await;
        assert!(matches!(result, Ok(Reply::LoggedIn { .. })), "login {i}: {result:?}");
        conns.push(raw);
    }
    // The six oldest were told why and closed; the four newest still answer.
    let (old, new) = conns.split_at_mut(6);
    for (i, raw) in old.iter_mut().enumerate() {
        let (frames, _) = raw.until_closed().await;
        let ended = frames.iter().any(|f| {
            matches!(
                f,
                ServerFrame::Event {
                    event: Event::SessionEnded { reason: EndReason::TooManyConnections }
                }
            )
        });
        assert!(ended, "connection {i} was not told why it closed: {frames:?}");
    }
    for raw in new.iter_mut() {
        assert_eq!(raw.request(Request::Ping).await, Ok(Reply::Pong));
    }
    assert_still_serves_then_stop(node, "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_connections_without_logging_in_or_every_tls_handshake() {
    let node = TestNode::start_with(&["alice"], |c| {
        c.limits.max_pre_login_per_source = 5;
        c.limits.max_tls_handshakes_per_source = 3;
    })
    .await;
    let attacker = Ipv4Addr::new(127, 0, 4, 1);
    // Connections that finish TLS and the WebSocket, then never log in: the sixth is turned
    // away with a reason.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(raw_from(&node, attacker).await);
    }
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(attacker), 0)).unwrap();
    let tcp = within("TCP connect", socket.connect(node.client_addr)).await.unwrap();
    let mut sixth = Raw::over(&node, tcp).await;
    match sixth.recv().await {
        common::Incoming::Frame(ServerFrame::Error { id: None, error }) => {
            assert_eq!(error.code, ErrorCode::ShuttingDown);
            assert!(error.message.contains("have not logged in"), "{error:?}");
            assert!(error.retry_after_secs.is_some());
        }
        other => panic!("the sixth idle connection: {other:?}"),
    }
    // Connections that never even start TLS: past three, the rest are closed at once.
    let mut silent = Vec::new();
    for _ in 0..3 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 4, 2)), 0)).unwrap();
        silent.push(within("TCP connect", socket.connect(node.client_addr)).await.unwrap());
    }
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 4, 2)), 0)).unwrap();
    let mut fourth = within("TCP connect", socket.connect(node.client_addr)).await.unwrap();
    common::until_eof(&mut fourth, "the fourth silent connection to be closed").await;
    // Meanwhile everybody else connects and logs in.
    assert_still_serves_then_stop(node, "alice").await;
    drop((idle, silent));
}

/// A TCP connection from `from` that first sends `header`, then TLS and the WebSocket.
async fn via_proxy(node: &TestNode, from: Ipv4Addr, header: &str) -> Raw {
    use tokio::io::AsyncWriteExt;
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    let mut tcp = within("TCP connect", socket.connect(node.client_addr)).await.unwrap();
    tcp.write_all(header.as_bytes()).await.unwrap();
    Raw::over(node, tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_client_is_counted_at_its_own_address() {
    let proxy = Ipv4Addr::new(127, 0, 5, 1);
    let node = TestNode::start_with(&["alice"], |c| {
        c.trusted_proxies = vec![IpAddr::V4(proxy)];
        c.limits.max_pre_login_per_source = 2;
    })
    .await;
    let header = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 40000 7443\r\n");
    // Four clients behind the proxy: the proxy's one address would be over the limit of two,
    // but each client is counted at the address the proxy reports.
    let mut clients = Vec::new();
    for i in 1..=4 {
        let mut raw = via_proxy(&node, proxy, &header(&format!("198.51.100.{i}"))).await;
        raw.hello().await;
        clients.push(raw);
    }
    // Two more connections of one of them reach its limit.
    let mut again = via_proxy(&node, proxy, &header("198.51.100.1")).await;
    again.hello().await;
    let mut third = via_proxy(&node, proxy, &header("198.51.100.1")).await;
    match third.recv().await {
        common::Incoming::Frame(ServerFrame::Error { id: None, error }) => {
            assert!(error.message.contains("have not logged in"), "{error:?}");
        }
        other => panic!("a third connection of 198.51.100.1: {other:?}"),
    }
    // Anyone else's PROXY header is not believed: it is just bytes before TLS, which fail.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 5, 2)), 0)).unwrap();
    let mut tcp = within("TCP connect", socket.connect(node.client_addr)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, header("198.51.100.9").as_bytes()).await.unwrap();
    common::until_eof(&mut tcp, "the untrusted PROXY header to be refused").await;
    drop(clients);
    assert_still_serves_then_stop(node, "alice").await;
}
