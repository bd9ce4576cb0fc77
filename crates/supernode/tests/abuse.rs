//! An attacker against other users, through real sockets from distinct loopback addresses
//! (127.0.0.0/8 is all loopback): guessing cannot lock an account's owner out, and password
//! hashes queued by connections that hung up are given up instead of run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::{PASSWORD, Raw, TestNode, assert_still_serves_then_stop, device_key, proof, within};
use ed25519_dalek::SigningKey;
use peerline_wire::{ErrorBody, ErrorCode, Login, Reply, Request};
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
