//! Bad and abusive clients over raw sockets: oversized and malformed frames, requests before
//! `hello`, floods, clients that stop reading, stall the TLS handshake or never log in, and piles
//! of idle connections. In every case the supernode answers with typed errors or drops the
//! offender, and keeps serving a well-behaved client afterwards, which each test checks last.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{
    CLOSE_TOO_BIG, Incoming, Raw, TestNode, User, assert_still_serves_then_stop, until_eof, within,
};
use futures_util::{SinkExt, StreamExt};
use peerline_client::tls::{Trust, client_config};
use peerline_wire::{
    EndReason, ErrorBody, ErrorCode, Event, MAX_FRAME_BYTES, Presence, Reply, Request, ServerFrame,
    decode_server_frame,
};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// The error frame a raw client got next, as `(id, error)`.
async fn next_error(raw: &mut Raw, what: &str) -> (Option<u64>, ErrorBody) {
    match raw.recv().await {
        Incoming::Frame(ServerFrame::Error { id, error }) => (id, error),
        other => panic!("{what}: expected an error frame, got {other:?}"),
    }
}

fn ended_with(frames: &[ServerFrame], reason: EndReason) -> bool {
    frames.iter().any(|f| {
        matches!(f, ServerFrame::Event { event: Event::SessionEnded { reason: r } } if *r == reason)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_refused_with_frame_too_large_and_close_1009() {
    let node = TestNode::start(&["witness"]).await;
    let mut raw = Raw::connect(&node).await;
    raw.hello().await;

    let padding = "x".repeat(MAX_FRAME_BYTES + 1024);
    raw.send_text(format!(r#"{{"id":2,"type":"ping","padding":"{padding}"}}"#)).await;
    let (frames, end) = raw.until_closed().await;
    let told = frames.iter().any(
        |f| matches!(f, ServerFrame::Error { error, .. } if error.code == ErrorCode::FrameTooLarge),
    );
    let closed_too_big = matches!(end, Incoming::Close(Some(CLOSE_TOO_BIG)));
    // Usually both arrive. The supernode drops the socket with the rest of the big frame unread,
    // so the kernel may reset the connection before the client reads everything: either one is
    // enough to tell the client what happened.
    assert!(
        told || closed_too_big,
        "expected a frame_too_large error and/or close 1009; got {frames:?} then {end:?}"
    );

    // A frame just under the limit is no problem: it is read and answered.
    let mut raw = Raw::connect(&node).await;
    raw.hello().await;
    let padding = "x".repeat(MAX_FRAME_BYTES - 100);
    raw.send_text(format!(r#"{{"id":2,"type":"ping","padding":"{padding}"}}"#)).await;
    assert_eq!(raw.answer(2).await, Ok(Reply::Pong));

    assert_still_serves_then_stop(node, "witness").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames_get_typed_errors_with_the_request_id_and_the_session_goes_on() {
    let node = TestNode::start(&["mallory", "witness"]).await;
    let mut raw = Raw::connect(&node).await;

    // (frame, expected id, expected code), all before hello: none of them is a request, so
    // none of them breaks the "hello first" rule.
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let cases: Vec<(String, Option<u64>, ErrorCode)> = vec![
        ("this is not json".into(), None, ErrorCode::BadRequest),
        ("".into(), None, ErrorCode::BadRequest),
        ("null".into(), None, ErrorCode::BadRequest),
        (r#""a string""#.into(), None, ErrorCode::BadRequest),
        (r#"{"id":"nine","type":"ping"}"#.into(), None, ErrorCode::BadRequest),
        (r#"{"id":-1,"type":"ping"}"#.into(), None, ErrorCode::BadRequest),
        (r#"{"id":1e400,"type":"ping"}"#.into(), None, ErrorCode::BadRequest),
        (r#"{"id":3,"type":"ping""#.into(), None, ErrorCode::BadRequest),
        (nested, None, ErrorCode::BadRequest),
        (r#"{"id":4,"type":"launch_missiles"}"#.into(), Some(4), ErrorCode::UnknownType),
        (r#"{"id":5}"#.into(), Some(5), ErrorCode::UnknownType),
        (r#"{"id":6,"type":7}"#.into(), None, ErrorCode::BadRequest),
        (r#"{"id":7,"type":"hello","version":"one"}"#.into(), Some(7), ErrorCode::BadRequest),
        (r#"{"id":8,"type":"send_message","to":5}"#.into(), Some(8), ErrorCode::BadRequest),
        (r#"{"id":9,"type":"login","username":"mallory"}"#.into(), Some(9), ErrorCode::BadRequest),
    ];
    for (frame, id, code) in &cases {
        raw.send_text(frame.clone()).await;
        let shown: String = frame.chars().take(60).collect();
        let (got_id, error) = next_error(&mut raw, &shown).await;
        assert_eq!((got_id, error.code), (*id, *code), "answer to {shown:?}: {error}");
    }
    within("send binary", raw.ws.send(Message::binary(vec![0u8, 159, 146, 150]))).await.unwrap();
    let (id, error) = next_error(&mut raw, "binary frame").await;
    assert_eq!((id, error.code), (None, ErrorCode::BadRequest));

    // The same connection still works: hello, login, and typed errors for bad arguments.
    raw.hello().await;
    raw.login_after_hello("mallory").await;
    raw.send_text(r#"{"id":40,"type":"ack_delivered","ids":"all"}"#).await;
    assert_eq!(raw.answer(40).await.unwrap_err().code, ErrorCode::BadRequest);
    raw.send_text(r#"{"id":41,"type":"set_status","status":"on_the_moon"}"#).await;
    assert_eq!(raw.answer(41).await.unwrap_err().code, ErrorCode::BadRequest);
    let id = raw.send(Request::Inbox { limit: Some(5000), after: None }).await;
    assert_eq!(raw.answer(id).await.unwrap_err().code, ErrorCode::InvalidArgument);
    let id =
        raw.send(Request::SendMessage { to: "../../etc/passwd".into(), text: "hi".into() }).await;
    assert_eq!(raw.answer(id).await.unwrap_err().code, ErrorCode::NotContact);
    let id = raw.send(Request::Whoami).await;
    assert!(matches!(raw.answer(id).await, Ok(Reply::Me(ref me)) if me.username == "mallory"));

    assert_still_serves_then_stop(node, "witness").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_request_other_than_hello_ends_the_connection() {
    let node = TestNode::start(&["witness"]).await;

    let mut raw = Raw::connect(&node).await;
    let id = raw.send(Request::Ping).await;
    assert_eq!(raw.answer(id).await.unwrap_err().code, ErrorCode::HelloRequired);
    let (frames, end) = raw.until_closed().await;
    assert!(ended_with(&frames, EndReason::ProtocolViolation), "{frames:?} then {end:?}");

    // A second hello is refused the same way.
    let mut raw = Raw::connect(&node).await;
    raw.hello().await;
    let id = raw.send(Request::Hello { version: 1, client: "again".into() }).await;
    assert_eq!(raw.answer(id).await.unwrap_err().code, ErrorCode::HelloRequired);
    let (frames, end) = raw.until_closed().await;
    assert!(ended_with(&frames, EndReason::ProtocolViolation), "{frames:?} then {end:?}");

    // An unknown version is an answer, not an offence: the client may retry with one we speak.
    let mut raw = Raw::connect(&node).await;
    let id = raw.send(Request::Hello { version: 99, client: "future".into() }).await;
    assert_eq!(raw.answer(id).await.unwrap_err().code, ErrorCode::UnsupportedVersion);
    raw.hello().await;

    assert_still_serves_then_stop(node, "witness").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_rate_limited_then_cut_off_while_others_are_served() {
    // Default limits: answers to a client's own requests wait for room in its send queue, so a
    // flooder is cut off by the rate limiter, never mistaken for a slow reader.
    let node = TestNode::start(&["bystander", "witness"]).await;
    let bystander = User::login(&node, "bystander").await;
    let mut raw = Raw::connect(&node).await;
    raw.hello().await;

    let (mut sink, mut stream) = raw.ws.split();
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        for id in 100..5100u64 {
            let ping = Message::text(format!(r#"{{"id":{id},"type":"ping"}}"#));
            if sink.feed(ping).await.is_err() {
                break;
            }
            if id % 50 == 0 && sink.flush().await.is_err() {
                break;
            }
            sent += 1;
        }
        let _ = sink.flush().await;
        sent
    });

    let (mut pongs, mut limited, mut ended) = (0u64, 0u64, None);
    let end = within("the supernode to cut the flood off", async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    match decode_server_frame(text.as_bytes()).unwrap() {
                        ServerFrame::Ok { result: Reply::Pong, .. } => pongs += 1,
                        ServerFrame::Error { id: Some(_), error }
                            if error.code == ErrorCode::RateLimited =>
                        {
                            let retry =
                                error.retry_after_secs.expect("rate_limited says when to retry");
                            assert!(retry >= 1, "retry_after_secs {retry}");
                            limited += 1;
                        }
                        ServerFrame::Event { event: Event::SessionEnded { reason } } => {
                            ended = Some(reason)
                        }
                        other => panic!("unexpected answer to a ping: {other:?}"),
                    }
                }
                Some(Ok(Message::Close(frame))) => return format!("close {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(err)) => return format!("error {err}"),
                None => return "end of stream".into(),
            }
        }
    })
    .await;
    let sent = within("the flooding task", flood).await.unwrap();
    assert!(pongs >= 1, "the burst allowance is answered");
    assert!(limited >= 1, "sent {sent}, got {pongs} pongs and no rate_limited");
    // The supernode says why it ends the session, then closes. The notice can be lost: it drops
    // the socket with thousands of pings unread, so the kernel may send a reset that discards
    // what the client has not read yet. Then the close itself is the signal.
    assert!(
        matches!(ended, None | Some(EndReason::ProtocolViolation)),
        "sent {sent}, {pongs} pongs, {limited} limited, ended {ended:?}, {end}"
    );
    // The supernode stopped reading and answering long before the flood was over.
    assert!(
        pongs + limited < sent,
        "all {sent} pings were answered ({pongs} pongs, {limited} limited): never cut off"
    );

    // The bystander never noticed; the flooder's connection is gone.
    assert_eq!(bystander.ok(Request::Ping).await, Reply::Pong);
    node.wait_health("the flooder's connection to go", |connections, _| connections == 1).await;
    assert_still_serves_then_stop(node, "witness").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_not_buffered_forever() {
    let node = TestNode::start_with(&["sender", "victim", "witness"], |c| {
        c.limits.send_queue_frames = 16;
        c.limits.requests_per_second = 10_000.0;
        c.limits.request_burst = 10_000.0;
        // The sender floods a victim that acknowledges nothing: past the send rate and the
        // mailbox cap, which budgets.rs tests.
        c.limits.messages_per_minute = 1_000_000;
        c.limits.messages_per_day = 1_000_000;
        c.limits.max_undelivered_per_sender = 1_000_000;
        c.limits.max_undelivered_per_recipient = 1_000_000;
    })
    .await;
    let mut sender = User::login(&node, "sender").await;

    // The victim reads through a tiny receive buffer, so the kernel absorbs little for it.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = within("TCP connect", socket.connect(node.client_addr)).await.unwrap();
    let mut victim = Raw::over(&node, tcp).await;
    victim.login("victim").await;
    let add = Request::ContactAdd { username: "victim".into(), message: None };
    assert_eq!(sender.ok(add).await, Reply::Done);
    let accept = Request::ContactAccept { username: "sender".into() };
    assert_eq!(victim.request(accept).await, Ok(Reply::Done));
    sender.expect_presence("victim", Presence::Online).await;

    // From now on the victim never reads. The sender keeps messaging it, 16 at a time.
    let text = "y".repeat(4000);
    let mut sent = 0usize;
    within("the victim to be disconnected", async {
        loop {
            let batch = (0..16).map(|_| sender.client.send_message("victim", &text));
            for result in futures_util::future::join_all(batch).await {
                result.expect("the sender is never slowed down by the victim");
                sent += 1;
            }
            if node.health().await.1 == 1 {
                return;
            }
        }
    })
    .await;
    sender.expect_presence("victim", Presence::Offline).await;
    node.wait_health("one connection left", |connections, users| (connections, users) == (1, 1))
        .await;

    // The victim finds its socket closed by the server once it reads what was already in flight.
    let mut received = 0usize;
    let end = loop {
        match victim.recv().await {
            Incoming::Frame(ServerFrame::Event { event: Event::Message { .. } }) => received += 1,
            Incoming::Frame(_) | Incoming::Other(_) => {}
            end => break end,
        }
    };
    assert!(received < sent, "got all {sent} messages: the server buffered them all ({end:?})");

    assert_eq!(sender.ok(Request::Ping).await, Reply::Pong);
    assert_still_serves_then_stop(node, "witness").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_missing_upgrades_and_clients_that_never_log_in_are_dropped() {
    let node = TestNode::start_with(&["witness"], |c| {
        c.limits.handshake_timeout_secs = 1;
        c.limits.login_timeout_secs = 2;
    })
    .await;

    let silent_tcp = async {
        let mut tcp = TcpStream::connect(node.client_addr).await.unwrap();
        until_eof(&mut tcp, "a silent TCP connection to be dropped").await;
    };
    let half_hello = async {
        let (config, _) = client_config(&Trust::Pin { expected: None }).unwrap();
        let mut tls =
            rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap())
                .unwrap();
        let mut hello = Vec::new();
        tls.write_tls(&mut hello).unwrap();
        assert!(hello.len() > 100, "a ClientHello is a few hundred bytes");
        let mut tcp = TcpStream::connect(node.client_addr).await.unwrap();
        tcp.write_all(&hello[..hello.len() / 2]).await.unwrap();
        until_eof(&mut tcp, "a half ClientHello to be dropped").await;
    };
    let no_upgrade = async {
        let tcp = TcpStream::connect(node.client_addr).await.unwrap();
        let mut tls = common::tls(tcp).await;
        until_eof(&mut tls, "TLS without an HTTP request to be dropped").await;
    };
    let no_hello = async {
        let mut raw = Raw::connect(&node).await;
        let (frames, end) = raw.until_closed().await;
        assert!(ended_with(&frames, EndReason::LoginTimeout), "{frames:?} then {end:?}");
    };
    let no_login = async {
        let mut raw = Raw::connect(&node).await;
        raw.hello().await;
        let (frames, end) = raw.until_closed().await;
        assert!(ended_with(&frames, EndReason::LoginTimeout), "{frames:?} then {end:?}");
    };
    tokio::join!(silent_tcp, half_hello, no_upgrade, no_hello, no_login);

    node.wait_health("no connections left", |connections, _| connections == 0).await;
    assert_still_serves_then_stop(node, "witness").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_half_open_connections_do_not_keep_a_user_out() {
    let node = TestNode::start(&["witness"]).await;
    let mut idle = Vec::new();
    // From another address than the user's: one address gets only its share of handshakes
    // (tests/abuse.rs), and this is about everybody else.
    for _ in 0..200 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
        idle.push(within("TCP connect", socket.connect(node.client_addr)).await.unwrap());
    }
    let user = User::login(&node, "witness").await;
    assert_eq!(user.ok(Request::Ping).await, Reply::Pong);
    // Unfinished handshakes are not sessions.
    assert_eq!(node.health().await, (1, 1));
    drop(idle);
    node.stop().await;
}
