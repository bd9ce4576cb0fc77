//! `peerline-supernode import`, end to end: the real binary imports a JSON Lines file into a data
//! dir, a supernode serves that data dir, and users log in through the real protocol (TLS
//! WebSocket, signed device proofs) with what was imported: the token bound to the imported
//! device key, the password of the imported hash, and the imported contacts listed as accepted.
//! Bad files are refused line by line and write nothing. In cluster mode the same import goes to
//! PostgreSQL (a throwaway server from the test kit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ed25519_dalek::SigningKey;
use peerline_client::ClientError;
use peerline_client::connection::{Connection, Endpoint};
use peerline_client::tls::Trust;
use peerline_store::Store;
use peerline_store_sqlite::SqliteStore;
use peerline_supernode::{Config, Supernode};
use peerline_wire::{ContactState, ErrorCode, Login, Reply, Request};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The password of every imported account.
const PASSWORD: &str = "imported password 1";

/// The name of imported devices: what the logins below send, so a token login finds the device
/// as it was imported.
const DEVICE_NAME: &str = "test device";

/// Longest wait for any one step.
const WAIT: Duration = Duration::from_secs(20);

/// A cheap Argon2id hash of [`PASSWORD`] (8 KiB, one pass): a valid PHC string the supernode
/// verifies with the parameters stored in it.
fn cheap_hash() -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A user of the file: a device key and a token bound to it.
struct Imported {
    name: &'static str,
    key: SigningKey,
    token: String,
}

impl Imported {
    fn new(name: &'static str) -> Self {
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        Self { name, key, token: hex::encode(rand::random::<[u8; 32]>()) }
    }

    /// Its `{"account": ...}` line, with one device and one session.
    fn line(&self, hash: &str) -> String {
        let public = hex::encode(self.key.verifying_key().to_bytes());
        json!({"account": {
            "username": self.name,
            "display_name": format!("{} imported", self.name),
            "password_hash": hash,
            "devices": [{"public_key": public, "name": DEVICE_NAME}],
            "sessions": [{
                "token_sha256": hex::encode(Sha256::digest(self.token.as_bytes())),
                "device_public_key": public,
            }],
        }})
        .to_string()
    }
}

/// `{"contact": [a, b]}`.
fn contact(a: &str, b: &str) -> String {
    json!({"contact": [a, b]}).to_string()
}

/// Runs `peerline-supernode import ARGS... --data-dir DATA FILE` with `lines` as the file.
fn import(data: &Path, lines: &[String], args: &[&str]) -> Output {
    import_to(data, &["--data-dir", data.to_str().unwrap()], lines, args)
}

/// Runs `peerline-supernode import ARGS... STORE_ARGS... FILE`, the file written next to `near`.
fn import_to(near: &Path, store_args: &[&str], lines: &[String], args: &[&str]) -> Output {
    let file = near.with_extension(format!("{}.jsonl", rand::random::<u32>()));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_peerline-supernode"))
        .arg("import")
        .args(args)
        .args(store_args)
        .arg(&file)
        .env_remove("PEERLINE_SUPERNODE_CONFIG")
        .env_remove("PEERLINE_DATABASE_URL")
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// The JSON report of a successful import.
fn report(out: &Output) -> Value {
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A connection to `url`, `hello` said.
async fn connect(url: &str, dir: &Path) -> Connection {
    let endpoint = Endpoint::parse(url).unwrap();
    let known = dir.join(format!("known-{}", rand::random::<u32>()));
    let connecting = Connection::connect(&endpoint, &Trust::Pin { expected: None }, &known);
    let (conn, _) = tokio::time::timeout(WAIT, connecting).await.unwrap().unwrap();
    conn
}

/// Logs in on a fresh connection with a token or a password, signing with `key`.
async fn login(
    url: &str,
    dir: &Path,
    name: &str,
    key: &SigningKey,
    password: Option<&str>,
    token: Option<&str>,
) -> (Connection, Result<Reply, ClientError>) {
    let conn = connect(url, dir).await;
    let login = Login {
        username: name.into(),
        password: password.map(str::to_owned),
        token: token.map(str::to_owned),
        device: conn.server_hello().device_proof(key, DEVICE_NAME),
        quiet: false,
    };
    let answer = tokio::time::timeout(WAIT, conn.request(Request::Login(login))).await.unwrap();
    (conn, answer)
}

/// The contact list of a logged-in connection: (username, display name, state).
async fn contacts(conn: &Connection) -> Vec<(String, String, ContactState)> {
    let request = conn.request(Request::Contacts { after: None });
    match tokio::time::timeout(WAIT, request).await.unwrap().unwrap() {
        Reply::Contacts { contacts, more } => {
            assert!(!more, "a short list comes in one page");
            contacts.into_iter().map(|c| (c.username, c.display_name, c.state)).collect()
        }
        other => panic!("contacts answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_users_log_in_by_token_and_password_and_see_their_contacts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hash = cheap_hash();
    let (alice, bob, carol) =
        (Imported::new("alice"), Imported::new("bob"), Imported::new("carol"));
    let lines = [
        alice.line(&hash).replace("\"alice\"", "\"Alice\""),
        bob.line(&hash),
        carol.line(&hash),
        contact("alice", "bob"),
        contact("Carol", "alice"),
    ];
    let done = report(&import(&data, &lines, &["--json"]));
    assert_eq!(
        (&done["accounts"], &done["devices"], &done["sessions"], &done["contact_pairs"]),
        (&json!(3), &json!(3), &json!(3), &json!(2)),
        "{done}"
    );

    // The supernode serves the data dir the import wrote.
    let config = Config {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        stun_listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let node = Supernode::bind(config).await.expect("the supernode starts on the imported data");
    let url = node.client_url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.run(async {
        let _ = stopped.await;
    }));

    // (a) The imported token works with the imported device key, for the folded username.
    let (conn, answer) =
        login(&url, dir.path(), "alice", &alice.key, None, Some(&alice.token)).await;
    match answer.expect("token login of an imported user") {
        Reply::LoggedIn { username, display_name, token, .. } => {
            assert_eq!(username, "alice");
            assert_eq!(display_name, "alice imported");
            assert_eq!(token, alice.token, "a token login keeps its token");
        }
        other => panic!("login answered {other:?}"),
    }
    // (b) Her contacts are the imported ones, accepted.
    assert_eq!(
        contacts(&conn).await,
        [
            ("bob".to_owned(), "bob imported".to_owned(), ContactState::Accepted),
            ("carol".to_owned(), "carol imported".to_owned(), ContactState::Accepted),
        ]
    );
    // Only the device the token was issued to can use it.
    let (_, stolen) = login(&url, dir.path(), "alice", &bob.key, None, Some(&alice.token)).await;
    match stolen {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::InvalidToken),
        other => panic!("a token with another device key must be refused: {other:?}"),
    }

    // (c) The imported password hash logs in, from a new device too.
    let new_device = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let (conn, answer) = login(&url, dir.path(), "carol", &new_device, Some(PASSWORD), None).await;
    assert!(matches!(answer, Ok(Reply::LoggedIn { .. })), "password login: {answer:?}");
    assert_eq!(
        contacts(&conn).await,
        [("alice".to_owned(), "alice imported".to_owned(), ContactState::Accepted)]
    );
    let (_, wrong) = login(&url, dir.path(), "bob", &bob.key, Some("not the password"), None).await;
    match wrong {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::InvalidCredentials),
        other => panic!("a wrong password must be refused: {other:?}"),
    }

    drop(conn);
    let _ = stop.send(());
    tokio::time::timeout(WAIT, server).await.unwrap().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_are_reported_by_number_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("peerline.db");
    let hash = cheap_hash();
    let (alice, bob) = (Imported::new("alice"), Imported::new("bob"));

    // (d) Problems of the file itself, each with its line; nothing written, not even a database.
    let bad = [
        alice.line(&hash),
        bob.line(&hash).replace("\"bob\"", "\"b\""),
        "{\"account\": {\"username\": \"carol\"}}".to_owned(),
        contact("alice", "alice"),
        bob.line("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
    ];
    for args in [&["--dry-run"][..], &[]] {
        let out = import(&data, &bad, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: a bad file must fail: {stderr}");
        for (line, says) in [
            (2, "username \"b\" is invalid"),
            (3, "missing field `password_hash`"),
            (4, "cannot be a contact of itself"),
            (5, "only argon2id"),
        ] {
            assert!(
                stderr.contains(&format!("line {line}: ")) && stderr.contains(says),
                "{args:?}: line {line} must be reported ({says}): {stderr}"
            );
        }
        assert!(!stderr.contains("line 1:"), "line 1 is fine: {stderr}");
        assert!(stderr.contains("4 problems"), "{stderr}");
        assert!(!db.exists(), "{args:?}: a refused file creates no database");
    }

    // A dry run of a good file says what it would do and writes nothing either.
    let good = [alice.line(&hash), bob.line(&hash), contact("alice", "bob")];
    let planned = report(&import(&data, &good, &["--dry-run", "--json"]));
    assert_eq!((&planned["dry_run"], &planned["accounts"]), (&json!(true), &json!(2)), "{planned}");
    assert!(!db.exists(), "a dry run creates no database");
    report(&import(&data, &good, &["--json"]));

    // Problems found against the store: an unknown contact, an existing username. A failing dry
    // run, and a failing import, leave the new accounts of the file out.
    let dave = Imported::new("dave");
    let against_store = [dave.line(&hash), alice.line(&hash), contact("dave", "zed")];
    for args in [&["--dry-run"][..], &[]] {
        let out = import(&data, &against_store, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("line 2: username \"alice\" is an existing account"), "{stderr}");
        assert!(stderr.contains("line 3: contact \"zed\" is neither"), "{stderr}");
    }
    let store = SqliteStore::open(&db).await.unwrap();
    assert_eq!(store.account_by_username("dave").await.unwrap(), None, "nothing was written");
    store.close().await;

    // With --existing skip, existing accounts are counted and left as they are.
    let skip = [dave.line(&hash), alice.line(&hash), contact("dave", "alice")];
    let done = report(&import(&data, &skip, &["--existing", "skip", "--json"]));
    assert_eq!(
        (&done["accounts"], &done["skipped_existing"], &done["contact_pairs"]),
        (&json!(1), &json!(1), &json!(1)),
        "{done}"
    );
    let store = SqliteStore::open(&db).await.unwrap();
    let alice_id = store.account_by_username("alice").await.unwrap().unwrap().id;
    assert_eq!(store.devices(alice_id).await.unwrap().len(), 1, "alice keeps her one device");
    let dave_id = store.account_by_username("dave").await.unwrap().unwrap().id;
    let (a, d) = store.contact_pair(alice_id, dave_id).await.unwrap();
    assert_eq!(
        (a.map(|r| r.state), d.map(|r| r.state)),
        (Some(ContactState::Accepted), Some(ContactState::Accepted))
    );
    store.close().await;
}

/// In cluster mode the import writes to the cluster's PostgreSQL (`--database-url`), the same
/// rows as on SQLite: the token's session bound to the device, both contact rows accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_into_the_clusters_postgresql() {
    let server = peerline_testkit::postgres::TestPostgres::start()
        .expect("a throwaway PostgreSQL (scripts/setup installs it)");
    let url = server.create_database("imported").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hash = cheap_hash();
    let (alice, bob) = (Imported::new("alice"), Imported::new("bob"));
    let lines = [alice.line(&hash), bob.line(&hash), contact("bob", "alice")];
    let data = dir.path().join("data");
    let args = ["--database-url", url.as_str()];
    let done = report(&import_to(&data, &args, &lines, &["--json"]));
    assert_eq!((&done["accounts"], &done["contact_pairs"]), (&json!(2), &json!(1)), "{done}");
    assert!(!data.exists(), "nothing goes to a SQLite data dir in cluster mode");

    let store = peerline_store_postgres::PostgresStore::connect(&url).await.unwrap();
    let account = store.account_by_username("alice").await.unwrap().expect("alice imported");
    let token_hash: [u8; 32] = Sha256::digest(alice.token.as_bytes()).into();
    let session = store.session(&token_hash).await.unwrap().expect("her session");
    let devices = store.devices(account.id).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(
        (session.user_id, session.device_id, devices[0].public_key),
        (account.id, devices[0].id, alice.key.verifying_key().to_bytes()),
        "the token is bound to her imported device"
    );
    let bob_id = store.account_by_username("bob").await.unwrap().unwrap().id;
    let (a, b) = store.contact_pair(account.id, bob_id).await.unwrap();
    assert_eq!(
        (a.map(|r| r.state), b.map(|r| r.state)),
        (Some(ContactState::Accepted), Some(ContactState::Accepted))
    );
    // Importing the same file again: every username exists, nothing is written.
    let again = import_to(&data, &args, &lines, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("2 problems"), "{again:?}");
    store.close().await;
}
