//! Integration tests over real TLS on loopback: a supernode on port 0 and users connecting with
//! the client library (certificate pinned on first use), checking what a user would notice —
//! logins work or are refused with the right error, contacts see each other come and go,
//! messages wait for an offline user and are receipted once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{
    PASSWORD, Raw, TestNode, User, befriend, connection, device_key, login, server_error, within,
};
use peerline_wire::{
    EndReason, ErrorCode, Event, Presence, ReceiptKind, Reply, Request, ServerFrame, Status,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_token_logins_with_identical_credential_errors_and_logout_revoking_the_token()
{
    let node = TestNode::start(&[]).await;
    let alice = User::register(&node, "alice").await;
    assert_eq!(alice.client.newly_pinned.as_deref(), Some(node.fingerprint.as_str()));
    let saved = alice.client.home().session(&node.url).unwrap().expect("the token was saved");

    // A second connection of the same device logs in with the token alone.
    let mut again = User::reconnect(&node, "alice").await;
    match again.ok(Request::Whoami).await {
        Reply::Me(me) => assert_eq!(me.username, "alice"),
        other => panic!("whoami: {other:?}"),
    }

    // A wrong password and an unknown user (checked against a dummy hash) are indistinguishable.
    // One connection each, so that two full-strength hashes never race one login deadline.
    let key = device_key();
    let wrong = server_error(
        login(&connection(&node).await, &key, "alice", Some("not the password"), None).await,
    );
    let unknown = server_error(
        login(&connection(&node).await, &key, "nobody-here", Some(PASSWORD), None).await,
    );
    assert_eq!(wrong.code, ErrorCode::InvalidCredentials);
    assert_eq!(wrong, unknown, "wrong password and unknown user must give the same answer");

    // The token only works with the device key it was issued to.
    let conn = connection(&node).await;
    let stolen = server_error(login(&conn, &device_key(), "alice", None, Some(&saved.token)).await);
    assert_eq!(stolen.code, ErrorCode::InvalidToken);

    // Logout ends the session and revokes the token for good.
    within("logout", again.client.logout()).await.expect("logout");
    again
        .expect("session ended", |e| {
            matches!(e, Event::SessionEnded { reason: EndReason::LoggedOut })
        })
        .await;
    let conn = connection(&node).await;
    let home_key = alice.client.home().device_key().unwrap();
    let revoked = server_error(login(&conn, &home_key, "alice", None, Some(&saved.token)).await);
    assert_eq!(revoked.code, ErrorCode::InvalidToken);

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passwords_throttle_the_account_even_for_the_right_one() {
    let node = TestNode::start(&["alice", "bob"]).await;
    let conn = connection(&node).await;
    let key = device_key();
    for attempt in 1..=5 {
        let err = server_error(login(&conn, &key, "alice", Some("guess-guess"), None).await);
        assert_eq!(err.code, ErrorCode::InvalidCredentials, "attempt {attempt}");
    }
    let throttled = server_error(login(&conn, &key, "alice", Some(PASSWORD), None).await);
    assert_eq!(throttled.code, ErrorCode::LoginThrottled);
    let wait = throttled.retry_after_secs.expect("a throttled login says when to retry");
    assert!(wait >= 1, "retry_after_secs {wait}");

    // Only that account is throttled: another one logs in from the same address.
    let other = connection(&node).await;
    login(&other, &device_key(), "bob", Some(PASSWORD), None).await.expect("bob is not throttled");

    // After the wait the supernode asked for, the right password works again.
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let reply =
        login(&conn, &key, "alice", Some(PASSWORD), None).await.expect("login after the wait");
    assert!(matches!(reply, Reply::LoggedIn { .. }), "{reply:?}");

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_contacts_and_invisible_looks_offline() {
    let node = TestNode::start(&["alice", "bob"]).await;
    let mut alice = User::login(&node, "alice").await;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;

    assert_eq!(alice.ok(Request::SetStatus { status: Status::Away }).await, Reply::Done);
    bob.expect_presence("alice", Presence::Away).await;
    assert_eq!(alice.ok(Request::SetStatus { status: Status::Busy }).await, Reply::Done);
    bob.expect_presence("alice", Presence::Busy).await;

    assert_eq!(alice.ok(Request::SetStatus { status: Status::Invisible }).await, Reply::Done);
    bob.expect_presence("alice", Presence::Offline).await;
    let contacts = within("contacts", bob.client.contacts()).await.unwrap();
    let entry = contacts.iter().find(|c| c.username == "alice").expect("alice in bob's list");
    assert_eq!(entry.presence, Presence::Offline);
    // alice still sees bob: invisibility hides her, not them.
    let contacts = within("contacts", alice.client.contacts()).await.unwrap();
    assert_eq!(contacts.iter().find(|c| c.username == "bob").unwrap().presence, Presence::Online);

    assert_eq!(alice.ok(Request::SetStatus { status: Status::Online }).await, Reply::Done);
    bob.expect_presence("alice", Presence::Online).await;

    // Going away for real is seen too.
    drop(alice);
    bob.expect_presence("alice", Presence::Offline).await;

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_to_an_offline_user_waits_is_receipted_and_is_not_pushed_again() {
    let node = TestNode::start(&["alice", "bob"]).await;
    let mut alice = User::login(&node, "alice").await;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;
    drop(bob);
    alice.expect_presence("bob", Presence::Offline).await;

    let sent = within("send", alice.client.send_message("bob", "see you tomorrow")).await.unwrap();
    assert_eq!((sent.from.as_str(), sent.to.as_str()), ("alice", "bob"));
    assert_eq!(sent.delivered_at, None);

    // bob comes back: the stored message is pushed right after login.
    let mut bob = User::reconnect(&node, "bob").await;
    let pushed = bob.expect("the stored message", |e| matches!(e, Event::Message { .. })).await;
    let Event::Message { message } = pushed else { unreachable!() };
    assert_eq!(message.id, sent.id);
    assert_eq!(message.text, "see you tomorrow");
    assert_eq!(message.from, "alice");

    assert_eq!(bob.ok(Request::AckDelivered { ids: vec![message.id] }).await, Reply::Done);
    let receipt = alice.expect("delivery receipt", |e| matches!(e, Event::Receipt { .. })).await;
    let Event::Receipt { message_id, kind, .. } = receipt else { unreachable!() };
    assert_eq!((message_id, kind), (sent.id, ReceiptKind::Delivered));

    // Once acknowledged, it is not pushed at the next login.
    drop(bob);
    alice.expect_presence("bob", Presence::Offline).await;
    let mut bob = User::reconnect(&node, "bob").await;
    let events = bob.drain_events().await;
    assert!(!events.iter().any(|e| matches!(e, Event::Message { .. })), "pushed again: {events:?}");
    // It is still there to read, marked delivered.
    match bob.ok(Request::History { with: "alice".into(), limit: None, before: None }).await {
        Reply::Messages { messages, .. } => {
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0].id, sent.id);
            assert!(messages[0].delivered_at.is_some());
        }
        other => panic!("history: {other:?}"),
    }

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_after_the_heartbeat_timeout_and_contacts_see_it_offline() {
    let node =
        TestNode::start_with(&["alice", "bob"], |c| c.limits.heartbeat_timeout_secs = 5).await;
    let mut alice = User::login(&node, "alice").await;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;
    drop(bob);
    alice.expect_presence("bob", Presence::Offline).await;

    // bob logs in from a raw socket that never pings; alice's library client pings on its own.
    let mut raw = Raw::connect(&node).await;
    raw.login("bob").await;
    alice.expect_presence("bob", Presence::Online).await;

    let (frames, end) = raw.until_closed().await;
    assert!(
        frames.iter().any(|f| matches!(
            f,
            ServerFrame::Event {
                event: Event::SessionEnded { reason: EndReason::HeartbeatTimeout }
            }
        )),
        "expected session_ended heartbeat_timeout before the close; got {frames:?} then {end:?}"
    );
    alice.expect_presence("bob", Presence::Offline).await;
    // alice, who kept pinging, is still connected.
    assert_eq!(alice.ok(Request::Ping).await, Reply::Pong);

    node.stop().await;
}
