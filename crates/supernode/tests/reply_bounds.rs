//! Replies stay within one frame whatever a contact stored, and the client library pages
//! through the rest: a victim whose mailbox holds dozens of maximum-size messages made of
//! characters JSON escapes, and whose contact list holds dozens of maximum-length requests,
//! still logs in, gets every queued message pushed, and reads all of its `inbox`, `history` and
//! `contacts`, through real sockets.
//!
//! Part of each pile is written straight into the database, as a supernode from before control
//! characters were refused could have stored it: `\u0001` takes six bytes in JSON, the worst
//! case of any text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{TestNode, User, within};
use peerline_store::{ContactState, Store};
use peerline_store_sqlite::SqliteStore;
use peerline_wire::validate::MAX_GREETING_CHARS;
use peerline_wire::{
    ChatMessage, Event, MAX_FRAME_BYTES, MAX_MESSAGE_BYTES, Reply, Request, ServerFrame, encode,
};

/// A second connection to the supernode's database (SQLite in WAL mode lets both work).
async fn open_store(node: &TestNode) -> SqliteStore {
    let path = node.dir.path().join("node").join("peerline.db");
    SqliteStore::open(&path).await.expect("the supernode's database opens")
}

/// The bytes a reply takes on the wire.
fn frame_bytes(result: Reply) -> usize {
    encode(&ServerFrame::Ok { id: 1, result }).len()
}

fn texts(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_history_and_the_login_push_survive_messages_that_escape_to_the_largest_json() {
    let node = TestNode::start_with(&["mallory", "victim"], |c| {
        c.limits.requests_per_second = 10_000.0;
        c.limits.request_burst = 10_000.0;
        c.limits.messages_per_minute = 10_000;
    })
    .await;
    let store = open_store(&node).await;
    let mallory_id = store.account_by_username("mallory").await.unwrap().unwrap().id;
    let victim_id = store.account_by_username("victim").await.unwrap().unwrap().id;
    let accepted = Some((ContactState::Accepted, None));
    store.write_contact_pair(mallory_id, victim_id, accepted.clone(), accepted, 1).await.unwrap();
    // Twelve stored before control characters were refused: 24 KiB of JSON each.
    let mut expected = Vec::new();
    for i in 0..12u8 {
        let text = format!("{}{}", char::from(b'a' + i), "\u{1}".repeat(MAX_MESSAGE_BYTES - 1));
        store.store_message(mallory_id, victim_id, &text, 1_000).await.unwrap();
        expected.push(text);
    }
    store.close().await;

    // Thirty more through the protocol, of quotes and backslashes: 8 KiB of JSON each.
    let mallory = User::login(&node, "mallory").await;
    for i in 0..30 {
        let fill = if i % 2 == 0 { "\"" } else { "\\" };
        let text = format!("{i:02}{}", fill.repeat(MAX_MESSAGE_BYTES - 2));
        mallory.client.send_message("victim", &text).await.unwrap();
        expected.push(text);
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();

    // The victim logs in: every one is pushed, one event each.
    let mut victim = User::login(&node, "victim").await;
    let mut pushed = Vec::new();
    while pushed.len() < expected.len() {
        match victim.expect("a queued message", |e| matches!(e, Event::Message { .. })).await {
            Event::Message { message } => pushed.push(message),
            _ => unreachable!(),
        }
    }
    assert_eq!(texts(&pushed), expected, "pushed in order, intact");

    // One inbox request gets what fits in a frame and says there is more.
    match victim.ok(Request::Inbox { limit: Some(1000), after: None }).await {
        Reply::Messages { messages, more } => {
            assert!(more, "42 large messages cannot fit in one frame");
            assert!(!messages.is_empty() && messages.len() < expected.len());
            let size = frame_bytes(Reply::Messages { messages, more });
            assert!(size <= MAX_FRAME_BYTES, "the reply takes {size} bytes");
        }
        other => panic!("inbox: {other:?}"),
    }
    // The client pages through all of them.
    let inbox = victim.client.messages(Request::Inbox { limit: Some(1000), after: None }).await;
    assert_eq!(texts(&inbox.unwrap()), expected, "the whole inbox, oldest first");
    let some = victim.client.messages(Request::Inbox { limit: Some(20), after: None }).await;
    assert_eq!(texts(&some.unwrap()), expected[..20], "no more than asked");

    let history = |limit| Request::History { with: "mallory".into(), limit, before: None };
    let all = victim.client.messages(history(Some(1000))).await.unwrap();
    assert_eq!(texts(&all), expected, "the whole conversation, oldest first");
    let newest = victim.client.messages(history(Some(25))).await.unwrap();
    assert_eq!(texts(&newest), expected[expected.len() - 25..], "the newest 25");

    // Read, they leave the inbox; the conversation goes on.
    let ids = all.iter().map(|m| m.id).collect();
    assert_eq!(victim.ok(Request::MarkRead { ids }).await, Reply::Done);
    let inbox = victim.client.messages(Request::Inbox { limit: None, after: None }).await;
    assert!(inbox.unwrap().is_empty());
    victim.client.send_message("mallory", "please stop").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_list_of_long_requests_comes_whole_in_pages() {
    let real: Vec<String> = (1..=12).map(|i| format!("requester{i:02}")).collect();
    let legacy: Vec<String> = (1..=40).map(|i| format!("legacy{i:02}")).collect();
    let mut names = vec!["victim"];
    names.extend(real.iter().map(String::as_str));
    names.extend(legacy.iter().map(String::as_str));
    let node = TestNode::start_with(&names, |_| {}).await;

    // Forty requests stored before greetings and names were checked: control characters, six
    // bytes of JSON each, in the longest name and greeting.
    let store = open_store(&node).await;
    let victim_id = store.account_by_username("victim").await.unwrap().unwrap().id;
    let name = "\u{1}".repeat(64);
    let greeting = "\u{1}".repeat(MAX_GREETING_CHARS);
    for username in &legacy {
        let id = store.account_by_username(username).await.unwrap().unwrap().id;
        store.set_profile(id, Some(&name), None).await.unwrap();
        let asked = Some((ContactState::Outgoing, Some(greeting.clone())));
        let asking = Some((ContactState::Incoming, Some(greeting.clone())));
        store.write_contact_pair(id, victim_id, asked, asking, 1).await.unwrap();
    }
    store.close().await;

    // Twelve through the protocol, with the longest name and greeting allowed now.
    let climber = "🧗".repeat(MAX_GREETING_CHARS);
    for username in &real {
        let user = User::login(&node, username).await;
        let profile =
            Request::SetProfile { display_name: Some("🧗".repeat(64)), discoverable: None };
        assert_eq!(user.ok(profile).await, Reply::Done);
        let add = Request::ContactAdd { username: "victim".into(), message: Some(climber.clone()) };
        assert_eq!(user.ok(add).await, Reply::Done);
    }

    // The victim logs in, and one contacts request gets what fits and says there is more.
    let victim = User::login(&node, "victim").await;
    match victim.ok(Request::Contacts { after: None }).await {
        Reply::Contacts { contacts, more } => {
            assert!(more, "52 long requests cannot fit in one frame");
            let size = frame_bytes(Reply::Contacts { contacts, more });
            assert!(size <= MAX_FRAME_BYTES, "the reply takes {size} bytes");
        }
        other => panic!("contacts: {other:?}"),
    }
    // The client pages through the whole list, in order, with every greeting intact.
    let contacts = victim.client.contacts().await.unwrap();
    let mut expected: Vec<&str> = legacy.iter().chain(&real).map(String::as_str).collect();
    expected.sort_unstable();
    let got: Vec<&str> = contacts.iter().map(|c| c.username.as_str()).collect();
    assert_eq!(got, expected);
    for contact in &contacts {
        assert_eq!(contact.state, ContactState::Incoming);
        let wanted = if contact.username.starts_with("legacy") { &greeting } else { &climber };
        assert_eq!(contact.message.as_ref(), Some(wanted), "{}", contact.username);
    }
    // And answers them.
    let accept = Request::ContactAccept { username: real[0].clone() };
    assert_eq!(within("accept", victim.client.request(accept)).await.unwrap(), Reply::Done);
}
