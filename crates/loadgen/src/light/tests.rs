//! The light client against a scripted supernode on loopback (plain `ws://`): refusals are
//! waited out as the policy says, logins are signed over the connection's nonce, requests are
//! answered, and a dropped connection is taken up again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signature, SigningKey, Verifier};
use futures_util::{SinkExt, StreamExt};
use peerline_wire::{
    ErrorBody, ErrorCode, PROTOCOL_VERSION, Reply, Request, ServerFrame, Status,
    decode_client_frame, encode, login_challenge,
};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use super::driver::{AttemptError, judge};
use super::*;

const NONCE: &str = "0badc0de";

/// What the scripted supernode does with the `n`th connection (from 0).
#[derive(Clone, Copy)]
enum Script {
    /// Refuses the login `rate_limited`, retry after 1 s.
    RefuseLogin,
    /// Says it is full (an error without id) and closes, before any request.
    Full,
    /// Logs in, answers pings, and closes after the first one.
    LogInThenDrop,
    /// Logs in and answers everything.
    LogIn,
}

/// A supernode on 127.0.0.1 following `scripts`, one per connection (the last one repeats).
async fn scripted(scripts: Vec<Script>, key: SigningKey) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let script = scripts[n.min(scripts.len() - 1)];
            let public = key.verifying_key();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                if let Script::Full = script {
                    let mut full = ErrorBody::new(ErrorCode::ShuttingDown);
                    full.retry_after_secs = Some(1);
                    let frame = encode(&ServerFrame::Error { id: None, error: full });
                    let _ = ws.send(Message::text(frame)).await;
                    let _ = ws.close(None).await;
                    return;
                }
                while let Some(Ok(Message::Text(text))) = ws.next().await {
                    let frame = decode_client_frame(text.as_bytes()).unwrap();
                    let reply = match (&frame.request, script) {
                        (Request::Hello { .. }, _) => ServerFrame::Ok {
                            id: frame.id,
                            result: Reply::Hello {
                                version: PROTOCOL_VERSION,
                                server: "scripted".into(),
                                nonce: NONCE.into(),
                                heartbeat_timeout_secs: 60,
                                stun_port: None,
                            },
                        },
                        (Request::Login(_), Script::RefuseLogin) => {
                            let mut body = ErrorBody::new(ErrorCode::RateLimited);
                            body.retry_after_secs = Some(1);
                            ServerFrame::Error { id: Some(frame.id), error: body }
                        }
                        (Request::Login(login), _) => {
                            let signature: [u8; 64] =
                                hex::decode(&login.device.signature).unwrap().try_into().unwrap();
                            public
                                .verify(&login_challenge(NONCE), &Signature::from_bytes(&signature))
                                .expect("the login is signed over this connection's nonce");
                            ServerFrame::Ok {
                                id: frame.id,
                                result: Reply::LoggedIn {
                                    username: login.username.clone(),
                                    display_name: login.username.clone(),
                                    device_id: 1,
                                    token: login.token.clone().unwrap(),
                                    status: Status::Online,
                                    supernodes: Vec::new(),
                                },
                            }
                        }
                        (Request::Ping, Script::LogInThenDrop) => {
                            let pong = ServerFrame::Ok { id: frame.id, result: Reply::Pong };
                            let _ = ws.send(Message::text(encode(&pong))).await;
                            return; // dropped without a close frame, as by kill -9
                        }
                        (Request::Ping, _) => ServerFrame::Ok { id: frame.id, result: Reply::Pong },
                        _ => ServerFrame::Error {
                            id: Some(frame.id),
                            error: ErrorCode::BadRequest.into(),
                        },
                    };
                    if ws.send(Message::text(encode(&reply))).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A network whose reports land in the returned list.
fn network() -> (Network, Arc<Mutex<Vec<Report>>>) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let network = Network {
        dialers: Arc::new(Dialers::new(None)),
        config: LightConfig::default(),
        report: Arc::new(move |r| sink.lock().unwrap().push(r)),
    };
    (network, reports)
}

fn account(key: &SigningKey) -> Account {
    Account { username: "light1".into(), key: key.clone(), token: "tok".into() }
}

/// Waits until `pred` holds for the reports (10 s at most).
async fn until(reports: &Mutex<Vec<Report>>, pred: impl Fn(&[Report]) -> bool) -> Vec<Report> {
    for _ in 0..1000 {
        let now = reports.lock().unwrap().clone();
        if pred(&now) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out; reports: {:#?}", reports.lock().unwrap());
}

fn online(r: &Report) -> bool {
    matches!(r.change, Change::Online { .. })
}

#[tokio::test]
async fn a_refused_login_holds_the_host_for_retry_after_then_logs_in() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let url = scripted(vec![Script::RefuseLogin, Script::LogIn], key.clone()).await;
    let (network, reports) = network();
    let client = LightClient::spawn(0, account(&key), vec![url.clone()], &network, false);
    let seen = until(&reports, |r| r.iter().any(online)).await;
    let [refused, back] = seen.as_slice() else { panic!("{seen:#?}") };
    assert_eq!(
        refused.change,
        Change::Refused {
            host: url.clone(),
            code: ErrorCode::RateLimited,
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(back.change, Change::Online { host: url, attempt: 2 });
    // The only host was held for retry_after plus jitter, never less.
    assert!(back.at - refused.at >= Duration::from_secs(1), "{seen:#?}");
    assert_eq!(client.request(Request::Ping).await, Ok(Reply::Pong));
    client.stop().await;
}

#[tokio::test]
async fn a_full_supernode_is_a_refusal_and_a_dropped_connection_is_taken_up_again() {
    let key = SigningKey::from_bytes(&[4; 32]);
    let url = scripted(vec![Script::Full, Script::LogInThenDrop, Script::LogIn], key.clone()).await;
    let (network, reports) = network();
    let client = LightClient::spawn(0, account(&key), vec![url.clone()], &network, false);
    until(&reports, |r| r.iter().any(online)).await;
    // The supernode answers this ping, then drops the connection.
    assert_eq!(client.request(Request::Ping).await, Ok(Reply::Pong));
    let seen = until(&reports, |r| r.iter().filter(|r| online(r)).count() == 2).await;
    let changes: Vec<&Change> = seen.iter().map(|r| &r.change).collect();
    assert!(
        matches!(changes[0], Change::Refused { code: ErrorCode::ShuttingDown, .. }),
        "{changes:#?}"
    );
    assert!(matches!(changes[1], Change::Online { attempt: 2, .. }), "{changes:#?}");
    assert!(matches!(changes[2], Change::Offline { .. }), "{changes:#?}");
    assert!(matches!(changes.last(), Some(Change::Online { attempt: 1, .. })), "{changes:#?}");
    // The reconnect waited at most the next backoff bound (1 s: the connection was short-lived,
    // so the outage's backoff went on growing) after the loss.
    let (lost, back) = (&seen[2], seen.last().unwrap());
    assert!(back.at - lost.at < Duration::from_secs(2), "{seen:#?}");
    client.stop().await;
}

#[tokio::test]
async fn requests_while_offline_fail_at_once() {
    let key = SigningKey::from_bytes(&[5; 32]);
    // Nothing listens on this port (bound, then closed): every attempt fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (network, reports) = network();
    let url = format!("ws://127.0.0.1:{port}");
    let client = LightClient::spawn(0, account(&key), vec![url], &network, false);
    until(&reports, |r| r.iter().any(|r| matches!(r.change, Change::Failed { .. }))).await;
    assert_eq!(client.request(Request::Ping).await, Err(RequestFailure::Offline));
    client.stop().await;
}

#[test]
fn refusals_are_sorted_as_the_client_library_sorts_them() {
    let body = |code, secs| {
        let mut b = ErrorBody::new(code);
        b.retry_after_secs = secs;
        b
    };
    for code in [
        ErrorCode::ShuttingDown,
        ErrorCode::Unavailable,
        ErrorCode::RateLimited,
        ErrorCode::LoginThrottled,
    ] {
        assert_eq!(
            judge(body(code, Some(3))),
            AttemptError::Refused { code, retry_after: Duration::from_secs(3) }
        );
        assert!(matches!(judge(body(code, None)), AttemptError::Failed(_)));
    }
    for code in
        [ErrorCode::InvalidToken, ErrorCode::InvalidCredentials, ErrorCode::InvalidDeviceSignature]
    {
        assert!(matches!(judge(body(code, Some(3))), AttemptError::GiveUp(_)));
    }
    assert!(matches!(judge(body(ErrorCode::Internal, Some(3))), AttemptError::Failed(_)));
}
