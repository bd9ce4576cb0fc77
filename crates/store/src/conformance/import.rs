//! The contract of bulk import: `import_accounts` stores what `create_account`, `upsert_device`
//! and `create_session` would, skipping taken usernames; `import_contacts` stores what
//! `write_contact_pair` with two accepted sides would; `user_ids` finds accounts by name.

use std::collections::HashSet;

use super::*;
use crate::{
    DEVICE_ID_END, ImportAccount, ImportDevice, ImportSession, ImportedAccount, SessionRecord,
};

/// An account to import with `keys` as its devices and one session per device (token hash
/// `[k; 32]` for key `[k; 32]`).
fn to_import(username: &str, display_name: &str, keys: &[u8]) -> ImportAccount {
    ImportAccount {
        account: new_account(username, display_name),
        devices: keys
            .iter()
            .map(|&k| ImportDevice { public_key: [k; 32], name: format!("device {k}") })
            .collect(),
        sessions: keys
            .iter()
            .enumerate()
            .map(|(i, &k)| ImportSession {
                token_hash: [k; 32],
                device: i,
                expires_at: T0 + 1_000_000 + i64::from(k),
            })
            .collect(),
    }
}

/// `import_accounts` creates accounts exactly as one-by-one creation would (online,
/// discoverable, `created_at = now`), with their devices (fresh ids in `[1, 2^53)`, returned in
/// the order of the devices given)
/// and sessions bound to them; a taken username (any case) is skipped with its devices and
/// sessions; `user_ids` finds every account by name and leaves unknown names out.
pub async fn import_accounts_stores_what_registration_and_login_store(store: &dyn Store) {
    let bob = account(store, "bob", "Bob").await;
    let now = T0 + 50;
    let batch = [
        to_import("alice", "Alice A", &[1, 2]),
        to_import("bob", "Another Bob", &[3]),
        to_import("carol", "Carol", &[4]),
        to_import("dave", "Dave", &[]),
    ];
    let result = ok("import_accounts", store.import_accounts(&batch, now).await);
    assert_eq!(result.len(), 4, "one entry per account given");
    assert!(result[1].is_none(), "an existing username is skipped: {:?}", result[1]);
    assert_eq!(reload(store, bob.id).await, bob, "the existing account is unchanged");
    assert!(ok("devices", store.devices(bob.id).await).is_empty(), "no device added to bob");
    assert_eq!(ok("session", store.session(&[3; 32]).await), None, "nor a session");

    let mut all_ids = HashSet::new();
    for (given, imported) in batch.iter().zip(&result) {
        let Some(ImportedAccount { id, username, device_ids }) = imported else { continue };
        assert_eq!(username, &given.account.username, "imported username");
        let stored = reload(store, *id).await;
        assert_eq!(
            stored,
            Account {
                id: *id,
                username: given.account.username.clone(),
                display_name: given.account.display_name.clone(),
                password_hash: given.account.password_hash.clone(),
                status: Status::Online,
                discoverable: true,
                created_at: now,
            },
            "an imported account is stored as create_account stores one"
        );
        let devices = ok("devices", store.devices(*id).await);
        assert_eq!(devices.len(), given.devices.len(), "every device of {username} imported");
        assert_eq!(device_ids.len(), given.devices.len(), "one id per device");
        for (want, &id_given) in given.devices.iter().zip(device_ids) {
            // `devices` orders by first login, then id: devices of one import share the time.
            let device = devices
                .iter()
                .find(|d| d.public_key == want.public_key)
                .unwrap_or_else(|| panic!("device {:?} of {username} missing", want.name));
            assert_eq!(device.id, id_given, "each device has the id returned for it");
            assert!((1..DEVICE_ID_END).contains(&device.id), "device id {} in range", device.id);
            assert!(all_ids.insert(device.id), "device id {} given twice", device.id);
            assert_eq!(
                (device.user_id, device.public_key, device.name.as_str()),
                (*id, want.public_key, want.name.as_str()),
                "device as given"
            );
            assert_eq!((device.created_at, device.last_seen_at), (now, now), "device times");
        }
        for session in &given.sessions {
            let found = ok("session", store.session(&session.token_hash).await);
            assert_eq!(
                found,
                Some(SessionRecord {
                    user_id: *id,
                    device_id: device_ids[session.device],
                    expires_at: session.expires_at,
                }),
                "session bound to its device"
            );
        }
    }
    let alice = result[0].clone().expect("alice imported");
    // A key imported for alice logs in as the same device: upsert_device finds it.
    let again = ok("upsert_device", store.upsert_device(alice.id, &[1; 32], "device 1", now).await);
    assert_eq!(again.id, alice.device_ids[0], "an imported device is found by upsert_device");
    assert!(
        matches!(
            store.create_account(new_account("ALICE", "Impostor"), now).await,
            Err(StoreError::UsernameTaken)
        ),
        "an imported username is taken for registration, in any case"
    );

    let mut ids = ok(
        "user_ids",
        store.user_ids(&["alice".into(), "bob".into(), "carol".into(), "nobody".into()]).await,
    );
    ids.sort();
    let carol = result[2].as_ref().expect("carol imported").id;
    assert_eq!(
        ids,
        [("alice".to_owned(), alice.id), ("bob".to_owned(), bob.id), ("carol".to_owned(), carol)],
        "user_ids finds the accounts and leaves unknown names out"
    );
    assert!(ok("user_ids", store.user_ids(&[]).await).is_empty(), "no names, no ids");

    // A batch with a username twice is refused whole.
    let twice = [to_import("erin", "Erin", &[7]), to_import("erin", "Erin 2", &[8])];
    assert!(store.import_accounts(&twice, now).await.is_err(), "a username twice is an error");
    assert_eq!(store.account_by_username("erin").await.expect("lookup"), None, "nothing written");
    assert_eq!(ok("session", store.session(&[7; 32]).await), None, "no session written");
}

/// `import_contacts` makes each pair mutual contacts (both rows accepted, no greeting, written at
/// `now`), whatever the rows were, each pair with a version of its own that is newer than any
/// before; a pair given in both orders is written once; a bad pair fails the whole call.
pub async fn import_contacts_stores_accepted_pairs(store: &dyn Store) {
    let a = account(store, "alice", "Alice").await.id;
    let b = account(store, "bob", "Bob").await.id;
    let c = account(store, "carol", "Carol").await.id;
    let d = account(store, "dave", "Dave").await.id;
    // A pending request between alice and carol before the import.
    let before = ok(
        "write_contact_pair",
        store
            .write_contact_pair(
                a,
                c,
                side(ContactState::Outgoing, Some("hi")),
                side(ContactState::Incoming, Some("hi")),
                T0,
            )
            .await,
    );
    let now = T0 + 77;
    let written =
        ok("import_contacts", store.import_contacts(&[(a, b), (b, a), (c, a)], now).await);
    assert_eq!(written, 2, "two distinct pairs");
    let mut versions = HashSet::new();
    for (x, y) in [(a, b), (a, c)] {
        let (xy, yx) = ok("contact_pair", store.contact_pair(x, y).await);
        let (xy, yx) = (xy.expect("row x about y"), yx.expect("row y about x"));
        for (row, owner, peer) in [(&xy, x, y), (&yx, y, x)] {
            assert_eq!(
                (row.owner, row.peer, row.state, row.message.as_deref(), row.updated_at),
                (owner, peer, ContactState::Accepted, None, now),
                "an imported pair is accepted on both sides, without a greeting"
            );
        }
        assert_eq!(xy.version, yx.version, "both rows of a pair carry its version");
        assert!(xy.version > before, "an imported change is newer than every earlier one");
        assert!(versions.insert(xy.version), "each pair has a version of its own");
    }
    let links = ok("contact_links", store.contact_links(a).await);
    assert_eq!(
        links.iter().map(|l| (l.peer, l.mutual)).collect::<Vec<_>>(),
        [(b, true), (c, true)]
    );
    let listed = ok("contacts", store.contacts(b, None, 10).await);
    assert_eq!(
        listed.iter().map(|e| (e.username.as_str(), e.state)).collect::<Vec<_>>(),
        [("alice", ContactState::Accepted)],
        "bob's list shows alice as accepted"
    );

    for bad in [vec![(c, d), (d, d)], vec![(c, d), (d, unknown_user_id(d))]] {
        assert!(store.import_contacts(&bad, now).await.is_err(), "{bad:?} must be refused");
        assert_eq!(
            ok("contact_pair", store.contact_pair(c, d).await),
            (None, None),
            "a refused import writes none of its pairs"
        );
    }
    assert_eq!(ok("import_contacts", store.import_contacts(&[], now).await), 0, "no pairs");
}

/// An id far above `id`, which no account has in these tests.
fn unknown_user_id(id: UserId) -> UserId {
    id + 1_000_000
}
