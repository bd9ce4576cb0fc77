//! The contract of [`Store::token_login`]: the one read of a token login says what
//! [`Store::session`], [`Store::account_by_id`] and [`Store::devices`] say between them.

use super::*;
use crate::TokenLogin;

/// What the three separate reads say about a session, put together as `token_login` must.
async fn separately(store: &dyn Store, hash: &[u8; 32]) -> Option<TokenLogin> {
    let session = ok("session", store.session(hash).await)?;
    let account = ok("account_by_id", store.account_by_id(session.user_id).await)?;
    let device = ok("devices", store.devices(account.id).await)
        .into_iter()
        .find(|d| d.id == session.device_id)?;
    Some(TokenLogin { session, account, device })
}

/// `token_login` finds a session with its account (status, profile and all) and the device it
/// was issued to, among several accounts and devices; expired sessions too; nothing for an
/// unknown hash, a deleted session or a removed device; and it sees later changes of the
/// device and the account.
pub async fn token_login_reads_session_account_and_device(store: &dyn Store) {
    let alice = account(store, "alice", "Alice").await;
    let bob = account(store, "bob", "Bob").await;
    let laptop = ok("upsert_device", store.upsert_device(alice.id, &[1; 32], "laptop", T0).await);
    let phone = ok("upsert_device", store.upsert_device(alice.id, &[2; 32], "phone", T0 + 1).await);
    let bobs = ok("upsert_device", store.upsert_device(bob.id, &[3; 32], "desk", T0 + 2).await);
    ok("set_status", store.set_status(alice.id, Status::Away).await);
    ok("set_profile", store.set_profile(alice.id, Some("Alice A."), Some(false)).await);
    let (on_phone, on_laptop, expired, of_bob) = ([0x51; 32], [0x52; 32], [0x53; 32], [0x54; 32]);
    for (hash, user, device, expires_at) in [
        (on_phone, alice.id, phone.id, T0 + 5000),
        (on_laptop, alice.id, laptop.id, T0 + 6000),
        (expired, alice.id, laptop.id, T0 - 1),
        (of_bob, bob.id, bobs.id, T0 + 7000),
    ] {
        ok("create_session", store.create_session(&hash, user, device, expires_at).await);
    }

    let read = |hash: [u8; 32]| async move { ok("token_login", store.token_login(&hash).await) };
    for hash in [on_phone, on_laptop, expired, of_bob] {
        let found = read(hash).await.expect("token_login finds an existing session");
        assert_eq!(
            Some(&found),
            separately(store, &hash).await.as_ref(),
            "token_login must say what session, account_by_id and devices say"
        );
    }
    let found = read(on_phone).await.expect("the phone's session");
    assert_eq!(
        (found.session.user_id, found.session.device_id, found.session.expires_at),
        (alice.id, phone.id, T0 + 5000),
        "the session record"
    );
    assert_eq!(found.device, phone, "the device the session was issued to, not another of hers");
    assert_eq!(found.account.username, "alice");
    assert_eq!(found.account.display_name, "Alice A.", "the account as it is now");
    assert_eq!(found.account.status, Status::Away, "with its stored status");
    assert!(!found.account.discoverable, "and its discoverability");
    assert_eq!(found.account.password_hash, alice.password_hash);
    assert_eq!(
        read(expired).await.map(|t| t.session.expires_at),
        Some(T0 - 1),
        "an expired session is still returned (the caller checks expires_at)"
    );
    let of_bob = read(of_bob).await.expect("bob's session");
    assert_eq!((of_bob.account.id, of_bob.device), (bob.id, bobs), "bob's account and device");
    assert_eq!(read([0x99; 32]).await, None, "an unknown hash finds nothing");

    // A later login that refreshed the device is seen.
    let renamed =
        ok("upsert_device", store.upsert_device(alice.id, &[2; 32], "new phone", T0 + 9000).await);
    let found = read(on_phone).await.expect("the phone's session");
    assert_eq!(found.device, renamed, "the device's new name and last_seen_at");
    assert_eq!((renamed.name.as_str(), renamed.last_seen_at), ("new phone", T0 + 9000));

    ok("delete_session", store.delete_session(&on_laptop).await);
    assert_eq!(read(on_laptop).await, None, "a deleted session finds nothing");
    assert!(read(expired).await.is_some(), "the laptop's other session stays");
    assert!(ok("remove_device", store.remove_device(alice.id, phone.id).await), "removed");
    assert_eq!(read(on_phone).await, None, "a removed device's session finds nothing");
}
