//! What a new user met (issue 13), with the real `peerline-supernode` and `peerline` binaries:
//! JSON lines with one key naming their kind, usage errors as JSON, removing this very device,
//! what the supernode says (when to try again, why a session ended), URLs as people type them,
//! a `--ca` remembered, `register` over another account's session, local times with their zone,
//! ticks only on one's own messages, invisible `online`, messages read once shown, `send -`,
//! `history --before`, `--device-name`, completions and the man page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use peerline_testkit::{Supernode, User, bin};
use serde_json::Value;

/// A finished run in human mode (no `--json`).
struct Human {
    code: Option<i32>,
    out: String,
    err: String,
}

/// `peerline ARGS...` as `user` (their home and password), without `--json`, with `env` set and
/// `stdin` as standard input.
fn human_with(user: &User, url: &str, env: &[(&str, &str)], stdin: &str, args: &[&str]) -> Human {
    let mut child = Command::new(bin("peerline"))
        .env("PEERLINE_HOME", user.home())
        .env("PEERLINE_SUPERNODE", url)
        .env("PEERLINE_PASSWORD", &user.password)
        .env_remove("PEERLINE_CA")
        .env_remove("PEERLINE_FINGERPRINT")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    Human {
        code: output.status.code(),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn human(user: &User, url: &str, args: &[&str]) -> Human {
    human_with(user, url, &[], "", args)
}

/// `peerline --json ARGS...` with `stdin` as standard input: (exit code, stdout as JSON).
fn json_with_stdin(user: &User, url: &str, stdin: &str, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = human_with(user, url, &[], stdin, &all);
    let value = serde_json::from_str(run.out.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", run.out, run.err));
    (run.code, value)
}

/// alice and bob, registered and contacts.
fn alice_and_bob(node: &Supernode) -> (User, User) {
    let alice = User::new("alice", node);
    let bob = User::new("bob", node);
    alice.register();
    bob.register();
    alice.befriend(&bob);
    (alice, bob)
}

#[test]
fn online_json_lines_name_their_kind_with_one_key_and_every_kind_is_documented() {
    let mut node = Supernode::start().unwrap();
    let (alice, bob) = alice_and_bob(&node);
    let carol = User::new("carol", &node);
    carol.register();
    let mut bob_online = bob.online();
    let mut alice_online = alice.online();
    bob_online.expect(|v| v["event"] == "presence" && v["username"] == "alice", "presence");
    carol.ok(&["contacts", "add", "bob", "--message", "hi"]);
    bob_online.expect(|v| v["event"] == "contact_request", "a contact request");
    alice.ok(&["send", "bob", "hello"]);
    bob_online.expect(|v| v["event"] == "message", "the message");
    alice_online.expect(|v| v["event"] == "receipt" && v["kind"] == "read", "a read receipt");
    // The supernode goes away and comes back: the failover lines are events too.
    node.kill9();
    node.restart().unwrap();
    bob_online.expect_within(Duration::from_secs(40), |v| v["event"] == "reconnected", "back");
    node.terminate().unwrap();
    bob_online.expect(|v| v["event"] == "connection_lost", "lost again");
    bob_online.stop();

    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md")).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for line in &bob_online.seen {
        assert!(line.get("type").is_none(), "a line still says `type`: {line}");
        let kind = line["event"].as_str().unwrap_or_else(|| panic!("no event key: {line}"));
        kinds.insert(kind.to_owned());
    }
    for kind in ["online", "presence", "contact_request", "message", "reconnected"] {
        assert!(kinds.contains(kind), "{kind} not seen in {kinds:?}");
    }
    for kind in &kinds {
        assert!(
            docs.lines().any(|l| l.starts_with(&format!("| `{kind}` |"))),
            "docs/cli.md has no row for the `{kind}` line"
        );
    }
}

#[test]
fn usage_errors_with_json_are_json_documents_with_clap_exit_status() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    for args in [&["whoami", "--bogus"][..], &["send"], &["call", "bob", "--duration", "0"]] {
        let run = alice.run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        let error = &run.json()["error"];
        assert_eq!(error["code"], "usage", "{args:?}: {run:?}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    let zero = alice.run(&["call", "bob", "--duration", "0"]);
    let message = zero.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("positive number of seconds"), "{message}");
    // Without --json, clap's own text on stderr, same status.
    let plain = human(&alice, &node.url, &["whoami", "--bogus"]);
    assert_eq!(plain.code, Some(2));
    assert!(plain.out.is_empty() && plain.err.contains("--bogus"), "{}", plain.err);
}

#[test]
fn removing_this_very_device_succeeds_and_logs_it_out() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let me = alice.register()["device_id"].as_i64().unwrap();
    let removed = alice.run(&["devices", "remove", &me.to_string()]);
    assert_eq!(removed.code, Some(0), "{removed:?}");
    let message = removed.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("this device is now logged out"), "{message}");
    // The saved session is gone: not refused by the supernode, simply not there.
    let whoami = alice.run(&["whoami"]);
    assert_eq!(whoami.error_code(), "not_logged_in");
    let told = whoami.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(!told.contains("no longer accepts"), "{told}");
}

#[test]
fn a_removed_device_online_is_told_why_its_session_ended() {
    let node = Supernode::start().unwrap();
    let laptop = User::new("alice", &node);
    laptop.register();
    let phone = laptop.another_device();
    let phone_id =
        laptop.ok(&["devices"]).as_array().unwrap().iter().find(|d| d["current"] == false).unwrap()
            ["id"]
            .as_i64()
            .unwrap();
    let mut online = phone.online();
    laptop.ok(&["devices", "remove", &phone_id.to_string()]);
    let (code, _) = online.wait(Duration::from_secs(10));
    assert_eq!(code, Some(1));
    let last = online.seen.last().unwrap();
    assert_eq!(last["error"]["code"], "session_ended", "{last}");
    assert_eq!(last["error"]["reason"], "device_removed", "{last}");
}

#[test]
fn the_supernode_says_when_to_try_again_and_a_cause_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supernode.toml");
    std::fs::write(&config, "[limits]\nlogins_per_second = 0.05\nlogin_burst = 2.0\n").unwrap();
    let node = Supernode::start_with(&["--config", config.to_str().unwrap()]).unwrap();
    let alice = User::new("alice", &node);
    alice.register();
    alice.ok(&["whoami"]);
    let refused = human(&alice, &node.url, &["whoami"]);
    assert_eq!(refused.code, Some(1));
    assert!(refused.err.contains("rate_limited"), "{}", refused.err);
    assert!(refused.err.contains("try again in "), "the wait is lost: {}", refused.err);

    // Nothing listens on this port: the OS's words come once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nobody = human(&alice, &format!("wss://127.0.0.1:{port}"), &["whoami"]);
    assert_eq!(nobody.code, Some(1));
    assert!(nobody.err.contains("cannot reach the supernode"), "{}", nobody.err);
    assert_eq!(nobody.err.matches("Connection refused").count(), 1, "{}", nobody.err);
}

#[test]
fn a_full_supernode_says_so_and_when_to_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("supernode.toml");
    std::fs::write(&config, "[limits]\nmax_connections = 1\n").unwrap();
    let node = Supernode::start_with(&["--config", config.to_str().unwrap()]).unwrap();
    let alice = User::new("alice", &node);
    alice.register();
    // The one place, once the supernode let go of register's connection.
    let _online = (0..50)
        .find_map(|_| {
            let mut online = alice.start(&["online"]);
            let seen = online.drain_for(Duration::from_millis(300));
            if seen.iter().any(|v| v["event"] == "online") {
                return Some(online);
            }
            online.stop();
            None
        })
        .expect("online never got the supernode's one place");
    let full = human(&alice, &node.url, &["whoami"]);
    assert_eq!(full.code, Some(1));
    assert!(full.err.contains("supernode is full"), "{}", full.err);
    assert!(full.err.contains("try again in "), "{}", full.err);
}

#[test]
fn supernode_urls_are_taken_as_people_type_them() {
    let node = Supernode::start().unwrap();
    let port = node.addr.rsplit(':').next().unwrap().to_owned();
    // No scheme: wss:// is meant.
    let mut alice = User::new("alice", &node);
    alice.set_url(&format!("127.0.0.1:{port}"));
    assert_eq!(alice.register()["username"], "alice");
    assert_eq!(alice.ok(&["whoami"])["username"], "alice");
    // Other spellings of one supernode are one network: one session.
    let mut bob = User::new("bob", &node);
    bob.set_url(&format!("wss://localhost:{port}"));
    bob.register();
    for spelling in [
        format!("LOCALHOST:{port}/"),
        format!("WSS://LocalHost:{port}/"),
        format!("localhost:{port}"),
    ] {
        bob.set_url(&spelling);
        assert_eq!(bob.ok(&["whoami"])["username"], "bob", "{spelling}");
    }
    // ws:// to the TLS port says to use wss://.
    let plain = human(&alice, &format!("ws://127.0.0.1:{port}"), &["whoami"]);
    assert_eq!(plain.code, Some(1));
    assert!(
        plain.err.contains(&format!("this port speaks TLS: use wss://127.0.0.1:{port}")),
        "{}",
        plain.err
    );
}

#[test]
fn a_ca_given_at_login_is_remembered_for_the_supernode() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let (cert, _) = node.tls_files();
    alice.ok(&["--ca", cert.to_str().unwrap(), "register", "alice"]);
    // Later commands need not repeat --ca: verified against it, nothing trusted on first use.
    let whoami = human(&alice, &node.url, &["whoami"]);
    assert_eq!(whoami.code, Some(0), "{}", whoami.err);
    assert!(!whoami.err.contains("on first use"), "pinned instead: {}", whoami.err);
    let networks = std::fs::read_to_string(alice.home().join("networks.json")).unwrap();
    assert!(!networks.contains("\"pin\""), "{networks}");
}

#[test]
fn register_does_not_replace_another_accounts_session() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    alice.register();
    let refused = alice.run(&["register", "mallory"]);
    assert_eq!(refused.error_code(), "logged_in_as_other");
    let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("this home is logged in as alice"), "{message}");
    assert!(message.contains("log out first"), "{message}");
    assert_eq!(alice.ok(&["whoami"])["username"], "alice", "alice's session is kept");
    // Nothing was registered either.
    let search = alice.ok(&["search", "mallory"]);
    assert_eq!(search.as_array().unwrap().len(), 0, "{search}");
}

#[test]
fn times_are_local_with_their_offset_and_ticks_are_only_on_my_messages() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = alice_and_bob(&node);
    alice.ok(&["send", "bob", "from alice"]);
    let inbox = human_with(&bob, &node.url, &[("TZ", "Asia/Kolkata")], "", &["inbox", "--peek"]);
    assert_eq!(inbox.code, Some(0), "{}", inbox.err);
    assert!(inbox.out.contains(" +05:30] alice → bob: from alice"), "{}", inbox.out);
    let utc = human_with(&bob, &node.url, &[("TZ", "UTC")], "", &["inbox", "--peek"]);
    assert!(utc.out.contains(" +00:00] alice → bob"), "{}", utc.out);

    // bob's device receives alice's message, and alice's device bob's; each sender hears of it.
    let mut alice_online = alice.online();
    let mut bob_online = bob.online();
    bob_online.expect(|v| v["event"] == "message", "alice's message");
    alice_online.expect(|v| v["event"] == "receipt" && v["kind"] == "delivered", "delivered");
    bob.ok(&["send", "alice", "from bob"]);
    alice_online.expect(|v| v["event"] == "message", "bob's message");
    bob_online.expect(|v| v["event"] == "receipt" && v["kind"] == "delivered", "delivered");
    alice_online.stop();
    bob_online.stop();
    let history = human(&bob, &node.url, &["history", "alice"]);
    let lines: Vec<&str> = history.out.lines().collect();
    assert_eq!(lines.len(), 2, "{}", history.out);
    assert!(
        lines[0].ends_with("alice → bob: from alice"),
        "no ticks on a received message: {}",
        lines[0]
    );
    assert!(lines[1].contains("bob → alice: from bob ✓"), "ticks on a sent one: {}", lines[1]);
}

#[test]
fn online_as_invisible_says_so() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    alice.register();
    alice.ok(&["status", "invisible"]);
    let online = human(&alice, &node.url, &["online", "--exit-after", "0.5"]);
    assert_eq!(online.code, Some(0), "{}", online.err);
    assert!(
        online.out.contains("Online as alice (invisible: others see you offline)"),
        "{}",
        online.out
    );
    let json = alice.online();
    assert_eq!(json.seen[0]["status"], "invisible");
}

#[test]
fn messages_shown_by_online_are_read_and_not_in_the_inbox_again() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = alice_and_bob(&node);
    let mut bob_online = bob.online();
    let mut alice_online = alice.online();
    alice.ok(&["send", "bob", "seen live"]);
    bob_online.expect(|v| v["event"] == "message", "the message");
    alice_online.expect(|v| v["event"] == "receipt" && v["kind"] == "read", "read receipt");
    assert_eq!(bob.ok(&["inbox"]).as_array().unwrap().len(), 0, "shown already");
}

#[test]
fn send_reads_a_multi_line_message_from_stdin_up_to_the_protocols_size() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = alice_and_bob(&node);
    let (code, sent) =
        json_with_stdin(&alice, &node.url, "line one\nline two\n", &["send", "bob", "-"]);
    assert_eq!(code, Some(0), "{sent}");
    assert_eq!(sent["text"], "line one\nline two");
    let too_long = "x".repeat(4097);
    let (code, refused) = json_with_stdin(&alice, &node.url, &too_long, &["send", "bob", "-"]);
    assert_eq!(code, Some(1));
    assert_eq!(refused["error"]["code"], "message_too_long", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("at most 4096 bytes"));
    let inbox = bob.ok(&["inbox"]);
    let texts: Vec<&str> =
        inbox.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["line one\nline two"], "the long one was not sent");
}

#[test]
fn history_pages_back_with_before() {
    let node = Supernode::start().unwrap();
    let (alice, _bob) = alice_and_bob(&node);
    for i in 1..=5 {
        alice.ok(&["send", "bob", &format!("m{i}")]);
    }
    let page = human(&alice, &node.url, &["history", "bob", "--limit", "2"]);
    assert_eq!(page.code, Some(0), "{}", page.err);
    let hint =
        page.err.lines().find(|l| l.contains("--before")).unwrap_or_else(|| panic!("{}", page.err));
    let before = hint.rsplit(' ').next().unwrap();
    let texts = |v: Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        texts(alice.ok(&["history", "bob", "--limit", "2", "--before", before])),
        ["m2", "m3"]
    );
    // A page that reaches the first message says nothing more.
    let oldest = human(&alice, &node.url, &["history", "bob", "--limit", "5"]);
    assert!(!oldest.err.contains("--before"), "{}", oldest.err);
}

#[test]
fn the_device_name_given_at_login_is_shown_in_devices_and_kept() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    alice.ok(&["register", "alice", "--device-name", "kitchen laptop"]);
    alice.ok(&["whoami"]); // another login, which sends the name again
    let devices = human(&alice, &node.url, &["devices"]);
    assert!(devices.out.contains("kitchen laptop"), "{}", devices.out);
    let phone = User::new("alice", &node);
    phone.ok(&["login", "alice", "--device-name", "phone"]);
    let names: Vec<String> = alice
        .ok(&["devices"])
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"phone".to_owned()) && names.contains(&"kitchen laptop".to_owned()),
        "{names:?}"
    );
}

#[test]
fn completions_and_the_man_page_come_from_the_binary() {
    let run = |args: &[&str]| {
        let out = Command::new(bin("peerline")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("complete -F _peerline"), "{bash}");
    assert!(bash.contains("--supernode"), "the options are in it");
    assert!(run(&["completions", "zsh"]).contains("#compdef peerline"));
    assert!(run(&["completions", "fish"]).contains("complete -c peerline"));
    let man = run(&["manpage"]);
    assert!(man.contains(".TH peerline"), "{}", &man[..man.len().min(300)]);
    assert!(man.contains("register"), "subcommands are listed");
    // Hidden from help: it is for scripts/man.
    assert!(!run(&["--help"]).contains("manpage"));
}
