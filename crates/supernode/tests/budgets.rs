//! The budgets that keep one account from filling a supernode's disk or a victim's mailbox,
//! through real sockets: the per-account send rate and daily budget, the caps on messages waiting
//! for a recipient (per sender and in total), on contact requests waiting for an answer, and on
//! devices per account, and the hourly purge of old messages, missed calls and expired sessions.
//! Each refusal is checked for its code and for a message that says what to do, and for what
//! still works beside it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{PASSWORD, TestNode, User, befriend, server_error, within};
use peerline_client::{ClientError, Home};
use peerline_store::{ContactState, NewAccount, Store};
use peerline_store_sqlite::SqliteStore;
use peerline_wire::{ErrorBody, ErrorCode, Event, Reply, Request};

/// The supernode's database file, for checking what it stored.
fn database(node: &TestNode) -> PathBuf {
    node.dir.path().join("node").join("peerline.db")
}

/// A second connection to the supernode's database (SQLite in WAL mode lets both work).
async fn open_store(node: &TestNode) -> SqliteStore {
    SqliteStore::open(&database(node)).await.expect("the supernode's database opens")
}

/// Sends a message that must be refused; returns the error.
async fn refused(user: &User, to: &str, text: &str) -> ErrorBody {
    server_error(within("send", user.client.request(send(to, text))).await)
}

fn send(to: &str, text: &str) -> Request {
    Request::SendMessage { to: to.into(), text: text.into() }
}

/// A node whose rate limits stay out of the way of a test about the mailbox caps.
fn generous_rates(c: &mut peerline_supernode::Config) {
    c.limits.messages_per_minute = 10_000;
    c.limits.messages_per_day = 10_000;
    c.limits.requests_per_second = 10_000.0;
    c.limits.request_burst = 10_000.0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_contact_fills_only_its_share_of_the_victims_mailbox() {
    let node = TestNode::start_with(&["mallory", "victim", "friend", "other"], |c| {
        generous_rates(c);
        c.limits.max_undelivered_per_sender = 20;
        c.limits.max_undelivered_per_recipient = 30;
    })
    .await;
    let mut mallory = User::login(&node, "mallory").await;
    let mut friend = User::login(&node, "friend").await;
    let mut victim = User::login(&node, "victim").await;
    let mut other = User::login(&node, "other").await;
    befriend(&mut mallory, &mut victim).await;
    befriend(&mut friend, &mut victim).await;
    befriend(&mut friend, &mut other).await;
    drop(victim);

    // The flood stops at mallory's share, with a refusal that says why and what to do.
    let mut stored = 0;
    let error = loop {
        match within("send", mallory.client.request(send("victim", "buy now!!!"))).await {
            Ok(Reply::MessageSent { .. }) => stored += 1,
            Err(ClientError::Server(error)) => break error,
            other => panic!("send: {other:?}"),
        }
        assert!(stored <= 20, "the flood was never refused");
    };
    assert_eq!((stored, error.code), (20, ErrorCode::MailboxFull), "{error}");
    assert!(
        error.message.contains("victim") && error.message.contains("20 messages from you"),
        "{error}"
    );
    let again = refused(&mallory, "victim", "and again").await;
    assert_eq!(again.code, ErrorCode::MailboxFull, "{again}");

    // The victim's other conversations keep working: a friend still gets through, and the
    // flooder can still message others.
    for i in 0..10 {
        friend.client.send_message("victim", &format!("are you there? {i}")).await.unwrap();
    }
    friend.client.send_message("other", "victim is away").await.unwrap();
    other.expect("friend's message", |e| matches!(e, Event::Message { .. })).await;
    // Past the total, nobody gets through until the victim catches up.
    let full = refused(&friend, "victim", "one more").await;
    assert_eq!(full.code, ErrorCode::MailboxFull, "{full}");
    assert!(full.message.contains("victim's mailbox is full"), "{full}");

    // The database holds what the budget allows, no more.
    let store = open_store(&node).await;
    let victim_id = store.account_by_username("victim").await.unwrap().unwrap().id;
    let waiting = store.undelivered(victim_id, None, 1000).await.unwrap();
    assert_eq!(waiting.len(), 30, "20 from mallory and 10 from friend wait, nothing more");
    assert_eq!(waiting.iter().filter(|m| m.from == "mallory").count(), 20);
    store.close().await;

    // The victim comes back: everything waiting is pushed, and once acknowledged the mailbox
    // has room again.
    let mut victim = User::reconnect(&node, "victim").await;
    let mut ids = Vec::new();
    while ids.len() < 30 {
        let event = victim.expect("a queued message", |e| matches!(e, Event::Message { .. })).await;
        if let Event::Message { message } = event {
            ids.push(message.id);
        }
    }
    assert_eq!(victim.ok(Request::AckDelivered { ids }).await, Reply::Done);
    friend.client.send_message("victim", "welcome back").await.unwrap();
    mallory.client.send_message("victim", "me again").await.unwrap();
    let unread = victim.client.messages(Request::Inbox { limit: Some(100), after: None }).await;
    assert_eq!(unread.unwrap().len(), 32, "the inbox lists every one of them");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_send_rate_refuses_with_the_wait_and_stores_nothing() {
    let node = TestNode::start_with(&["alice", "bob"], |c| {
        c.limits.messages_per_minute = 5;
    })
    .await;
    let mut alice = User::login(&node, "alice").await;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;
    for i in 0..5 {
        alice.client.send_message("bob", &format!("{i}")).await.unwrap();
    }
    let error = refused(&alice, "bob", "one too many").await;
    assert_eq!(error.code, ErrorCode::RateLimited, "{error}");
    assert!(error.message.contains("5 messages in the last minute"), "{error}");
    let wait = error.retry_after_secs.expect("says when to retry");
    assert!((1..=60).contains(&wait), "within the minute: {wait}");
    // Per account, not per connection: another device of alice is held too; bob is not.
    let second = User::login_from(&node, "alice", &node.home_dir("alice-phone")).await;
    assert_eq!(refused(&second, "bob", "from the phone").await.code, ErrorCode::RateLimited);
    bob.client.send_message("alice", "bob is not limited").await.unwrap();
    let history = Request::History { with: "bob".into(), limit: Some(100), before: None };
    let stored = alice.client.messages(history).await.unwrap();
    assert_eq!(
        stored.len(),
        6,
        "five of alice's and bob's reply; the refused ones were not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_budget_refuses_until_the_oldest_message_is_a_day_old() {
    let node = TestNode::start_with(&["alice", "bob"], |c| {
        c.limits.messages_per_day = 3;
    })
    .await;
    let mut alice = User::login(&node, "alice").await;
    let mut bob = User::login(&node, "bob").await;
    befriend(&mut alice, &mut bob).await;
    for i in 0..3 {
        alice.client.send_message("bob", &format!("{i}")).await.unwrap();
    }
    let error = refused(&alice, "bob", "over budget").await;
    assert_eq!(error.code, ErrorCode::RateLimited, "{error}");
    assert!(error.message.contains("3 messages in the last 24 hours"), "{error}");
    let wait = error.retry_after_secs.expect("says when to retry");
    assert!((86_000..=86_400).contains(&wait), "a day after the first message: {wait}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_requests_waiting_for_one_user_are_capped() {
    let node =
        TestNode::start_with(&["victim", "asker1", "asker2", "asker3", "asker4", "carol"], |c| {
            c.limits.max_pending_requests = 3;
        })
        .await;
    let victim = User::login(&node, "victim").await;
    let add = |to: &str| Request::ContactAdd { username: to.into(), message: Some("hi".into()) };
    let mut askers = Vec::new();
    for name in ["asker1", "asker2", "asker3", "asker4"] {
        askers.push(User::login(&node, name).await);
    }
    for asker in &askers[..3] {
        assert_eq!(asker.ok(add("victim")).await, Reply::Done);
    }
    let error = askers[3].err(add("victim")).await;
    assert_eq!(error.code, ErrorCode::MailboxFull, "{error}");
    assert!(error.message.contains("victim has 3 contact requests waiting"), "{error}");
    // The refused user can still ask others, and the victim's list holds the three.
    assert_eq!(askers[3].ok(add("carol")).await, Reply::Done);
    let contacts = victim.client.contacts().await.unwrap();
    assert_eq!(contacts.len(), 3, "{contacts:?}");
    assert!(contacts.iter().all(|c| c.state == ContactState::Incoming));
    // Once the victim answers one, there is room again.
    assert_eq!(victim.ok(Request::ContactDecline { username: "asker1".into() }).await, Reply::Done);
    assert_eq!(askers[3].ok(add("victim")).await, Reply::Done);
    // Accepting a request the victim received is never refused by the cap.
    assert_eq!(victim.ok(Request::ContactAccept { username: "asker2".into() }).await, Reply::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_from_one_device_too_many_is_refused_with_how_to_remove_one() {
    let node = TestNode::start_with(&["alice"], |c| c.limits.max_devices = 2).await;
    let laptop = User::login_from(&node, "alice", &node.home_dir("laptop")).await;
    drop(User::login_from(&node, "alice", &node.home_dir("phone")).await);

    let tablet_home = node.home_dir("tablet");
    let mut tablet = User::connect(&node, "alice", &tablet_home).await;
    let refused = within("login", tablet.login_with_password("alice", PASSWORD)).await;
    let error = server_error(refused);
    assert_eq!(error.code, ErrorCode::TooManyDevices, "{error}");
    assert!(
        error.message.contains("2 devices") && error.message.contains("peerline devices remove"),
        "{error}"
    );
    assert_eq!(Home::open(&tablet_home).unwrap().session(&node.url).unwrap(), None, "no token");
    drop(tablet);

    // The devices the account has still log in, with their token or their password.
    drop(User::reconnect(&node, "phone").await);
    drop(User::login_from(&node, "alice", &node.home_dir("phone")).await);
    let store = open_store(&node).await;
    let alice = store.account_by_username("alice").await.unwrap().unwrap();
    let devices = store.devices(alice.id).await.unwrap();
    assert_eq!(devices.len(), 2, "the refused login registered nothing");
    store.close().await;

    // Removing one makes room for the new one.
    let phone = Home::open(&node.home_dir("phone")).unwrap().session(&node.url).unwrap();
    let phone = phone.expect("the phone's saved session").device_id;
    assert!(devices.iter().any(|d| d.id == phone));
    assert_eq!(laptop.ok(Request::RemoveDevice { device_id: phone }).await, Reply::Done);
    drop(User::login_from(&node, "alice", &tablet_home).await);
}

/// What a supernode that ran for months leaves behind: messages and missed calls older than the
/// retention period (more than one purge batch of them), and sessions whose token expired.
async fn seed_old_rows(path: &std::path::Path) -> (Vec<[u8; 32]>, [u8; 32]) {
    let store = SqliteStore::open(path).await.unwrap();
    let account = |name: &str| NewAccount {
        username: name.into(),
        display_name: name.into(),
        password_hash: "$argon2id$unused".into(),
    };
    let alice = store.create_account(account("alice"), 1).await.unwrap().id;
    let bob = store.create_account(account("bob"), 1).await.unwrap().id;
    for i in 0..2_100 {
        store.store_message(alice, bob, &format!("old {i}"), 1_000 + i).await.unwrap();
    }
    let now = now_ms();
    store.store_message(alice, bob, "recent", now).await.unwrap();
    for i in 0..5 {
        store.record_missed_call(bob, alice, &format!("old-{i}"), 1_000 + i).await.unwrap();
    }
    store.record_missed_call(bob, alice, "recent", now).await.unwrap();
    let device = store.upsert_device(bob, &[7; 32], "laptop", 1).await.unwrap();
    let expired: Vec<[u8; 32]> = (0..5u8).map(|i| [i; 32]).collect();
    for hash in &expired {
        store.create_session(hash, bob, device.id, 2_000).await.unwrap();
    }
    let live = [0xee; 32];
    store.create_session(&live, bob, device.id, now + 86_400_000).await.unwrap();
    store.close().await;
    (expired, live)
}

/// Milliseconds since the epoch now.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_messages_missed_calls_and_expired_sessions_in_batches() {
    let seeded = tempfile::tempdir().unwrap();
    let data_dir = seeded.path().join("data");
    let (expired, live) = seed_old_rows(&data_dir.join("peerline.db")).await;
    let dir = data_dir.clone();
    let node = TestNode::start_with(&[], move |c| c.data_dir = dir).await;

    // The purge runs at start, a batch at a time, until nothing past retention is left.
    let store = SqliteStore::open(&data_dir.join("peerline.db")).await.unwrap();
    let alice = store.account_by_username("alice").await.unwrap().unwrap().id;
    let bob = store.account_by_username("bob").await.unwrap().unwrap().id;
    within("the purge at start", async {
        loop {
            let left = store.history(alice, bob, 10, None).await.unwrap();
            let calls = store.undelivered_missed_calls(bob, 10).await.unwrap();
            let sessions = store.session(&expired[4]).await.unwrap();
            if left.len() == 1 && calls.len() == 1 && sessions.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(store.history(alice, bob, 10, None).await.unwrap()[0].text, "recent");
    assert_eq!(store.undelivered_missed_calls(bob, 10).await.unwrap()[0].call_id, "recent");
    for hash in &expired {
        assert_eq!(store.session(hash).await.unwrap(), None, "expired sessions are deleted");
    }
    assert!(store.session(&live).await.unwrap().is_some(), "a live session is kept");
    assert_eq!(store.devices(bob).await.unwrap().len(), 1, "devices are kept");
    store.close().await;
    node.stop().await;
}
