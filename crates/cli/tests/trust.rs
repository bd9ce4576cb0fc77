//! End-to-end: which supernode certificate the real `peerline` CLI trusts, against the real
//! `peerline-supernode` — a fingerprint pinned in advance with `peerline trust --fingerprint`,
//! one given with `--fingerprint` or `PEERLINE_FINGERPRINT`, and the question asked at a terminal
//! before a password goes to a supernode trusted on first use. The terminal is a real one: a
//! pseudo-terminal from util-linux `script`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peerline_testkit::{Supernode, User, bin};
use serde_json::Value;

/// A well-formed fingerprint that no test supernode has.
const STRANGER: &str = "42:42:42:42:42:42:42:42:42:42:42:42:42:42:42:42:\
                        42:42:42:42:42:42:42:42:42:42:42:42:42:42:42:42";

fn fingerprint(node: &Supernode) -> String {
    node.fingerprint.clone().expect("the supernode printed its certificate fingerprint")
}

/// The pin `user`'s home keeps for its (only) network, if any.
fn pin(user: &User) -> Option<String> {
    let path = user.home().join("networks.json");
    let text = std::fs::read_to_string(path).ok()?;
    let file: Value = serde_json::from_str(&text).unwrap();
    file["networks"][0]["pin"].as_str().map(str::to_owned)
}

/// Whether `name` is still free on `node`: a fresh install registers it (and so takes it).
fn still_free(name: &str, node: &Supernode) -> bool {
    User::new(name, node).run(&["register", name]).code == Some(0)
}

#[test]
fn a_fingerprint_pinned_in_advance_is_the_only_certificate_trusted() {
    let node = Supernode::start().unwrap();
    let fp = fingerprint(&node);
    let alice = User::new("alice", &node);

    let pinned = alice.ok(&["trust", "--fingerprint", &fp]);
    let message = pinned["message"].as_str().unwrap();
    assert!(message.contains("Pinned") && message.contains(&fp), "{message}");
    assert_eq!(pin(&alice), Some(fp.clone()), "pinned without connecting");

    let run = alice.run(&["register", "alice"]);
    run.ok_json();
    assert!(!run.stderr.contains("on first use"), "nothing trusted on first use: {}", run.stderr);
    let shown = alice.ok(&["trust"]);
    assert!(shown["message"].as_str().unwrap().contains(&fp), "{shown}");
}

#[test]
fn a_wrong_fingerprint_pinned_in_advance_refuses_the_supernode_and_sends_nothing() {
    let node = Supernode::start().unwrap();
    let fp = fingerprint(&node);
    let alice = User::new("alice", &node);
    alice.ok(&["trust", "--fingerprint", STRANGER]);

    let run = alice.run(&["register", "alice"]);
    assert_eq!(run.error_code(), "certificate_changed");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(STRANGER) && message.contains(&fp), "names both: {message}");
    assert_eq!(pin(&alice), Some(STRANGER.to_owned()), "the pin stays");
    assert!(still_free("alice", &node), "the registration never reached the supernode");
}

#[test]
fn trust_keeps_a_different_pin_until_it_is_forgotten_and_shows_the_pin_without_options() {
    let node = Supernode::start().unwrap();
    let fp = fingerprint(&node);
    let alice = User::new("alice", &node);
    alice.register();
    assert_eq!(pin(&alice), Some(fp.clone()), "pinned on first use");

    let run = alice.run(&["trust", "--fingerprint", STRANGER]);
    assert_eq!(run.error_code(), "pin_conflict");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(STRANGER) && message.contains(&fp), "names both: {message}");
    assert!(message.contains("peerline trust --forget --fingerprint"), "{message}");
    assert_eq!(pin(&alice), Some(fp.clone()));

    let same = alice.ok(&["trust", "--fingerprint", &fp.to_lowercase()]);
    assert!(same["message"].as_str().unwrap().contains("already pinned"), "{same}");

    // A fingerprint in the environment is what connections expect; `trust` only shows the pin.
    let carol = User::new("carol", &node).with_env("PEERLINE_FINGERPRINT", STRANGER);
    let shown = carol.ok(&["trust"]);
    assert!(shown["message"].as_str().unwrap().contains("No certificate pinned"), "{shown}");
    assert_eq!(pin(&carol), None);

    alice.ok(&["trust", "--forget", "--fingerprint", STRANGER]);
    assert_eq!(pin(&alice), Some(STRANGER.to_owned()), "replaced on purpose");
    assert_eq!(alice.run(&["whoami"]).error_code(), "certificate_changed");
}

#[test]
fn fingerprint_from_the_flag_or_the_environment_is_pinned_once_the_supernode_presented_it() {
    let node = Supernode::start().unwrap();
    let fp = fingerprint(&node);

    // As users may type it: lowercase, without colons.
    let alice = User::new("alice", &node);
    let typed = fp.replace(':', "").to_lowercase();
    let run = alice.run(&["--fingerprint", &typed, "register", "alice"]);
    run.ok_json();
    assert!(!run.stderr.contains("on first use"), "{}", run.stderr);
    assert_eq!(pin(&alice), Some(fp.clone()));
    alice.ok(&["whoami"]);

    let bob = User::new("bob", &node).with_env("PEERLINE_FINGERPRINT", &fp);
    let run = bob.run(&["register", "bob"]);
    run.ok_json();
    assert!(!run.stderr.contains("on first use"), "{}", run.stderr);
    assert_eq!(pin(&bob), Some(fp.clone()));
    bob.ok(&["whoami"]);
}

#[test]
fn a_fingerprint_other_than_the_supernodes_or_the_pin_is_refused_naming_both() {
    let node = Supernode::start().unwrap();
    let fp = fingerprint(&node);

    // The supernode presents another certificate: nothing is sent, nothing pinned.
    let alice = User::new("alice", &node);
    let run = alice.run(&["--fingerprint", STRANGER, "register", "alice"]);
    assert_eq!(run.error_code(), "certificate_changed");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(STRANGER) && message.contains(&fp), "names both: {message}");
    assert_eq!(pin(&alice), None);
    assert!(still_free("alice", &node), "the registration never reached the supernode");

    // The same from the environment.
    let carol = User::new("carol", &node).with_env("PEERLINE_FINGERPRINT", STRANGER);
    let run = carol.run(&["register", "carol"]);
    assert_eq!(run.error_code(), "certificate_changed");
    assert_eq!(pin(&carol), None);
    assert!(still_free("carol", &node), "the registration never reached the supernode");

    // The network is pinned to another certificate than the one given.
    let bob = User::new("bob", &node);
    bob.register();
    let run = bob.run(&["--fingerprint", STRANGER, "whoami"]);
    assert_eq!(run.error_code(), "pin_conflict");
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(STRANGER) && message.contains(&fp), "names both: {message}");
    assert_eq!(pin(&bob), Some(fp));
}

#[test]
fn a_fingerprint_and_a_ca_file_are_refused_together() {
    let node = Supernode::start().unwrap();
    let fp = fingerprint(&node);
    let alice = User::new("alice", &node);
    let (cert, _) = node.tls_files();
    let ca = cert.to_str().unwrap();
    for args in [
        vec!["--ca", ca, "--fingerprint", &fp, "register", "alice"],
        vec!["--ca", ca, "--fingerprint", &fp, "trust"],
    ] {
        let run = alice.run(&args);
        assert_eq!(run.error_code(), "client_error");
        let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("CA file") && message.contains("use one"), "{message}");
    }
    assert_eq!(pin(&alice), None);
    assert!(still_free("alice", &node));
}

/// A run of `peerline ARGS...` (human output) on a pseudo-terminal, as `user` with `env` added,
/// typing `input`.
struct TerminalRun {
    code: Option<i32>,
    /// Everything the terminal showed: stdout, stderr and the echo of what was typed.
    screen: String,
}

fn on_terminal(
    user: &User,
    node: &Supernode,
    env: &[(&str, &str)],
    args: &[&str],
    input: &str,
) -> TerminalRun {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(bin("peerline").to_str().unwrap());
    for arg in args {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("PEERLINE_HOME", user.home())
        .env("PEERLINE_SUPERNODE", &node.url)
        .env("PEERLINE_PASSWORD", &user.password)
        .env_remove("PEERLINE_CA")
        .env_remove("PEERLINE_FINGERPRINT")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("these tests need `script` from util-linux for a pseudo-terminal");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    TerminalRun {
        code: output.status.code(),
        screen: String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n"),
    }
}

const QUESTION: &str = "Send your password to this supernode? [y/N]";

#[test]
fn at_a_terminal_a_password_goes_to_a_supernode_trusted_on_first_use_only_after_yes() {
    let node = Supernode::start().unwrap();
    let fp = fingerprint(&node);
    let alice = User::new("alice", &node);

    let no = on_terminal(&alice, &node, &[], &["register", "alice"], "n\n");
    assert_eq!(no.code, Some(1), "{}", no.screen);
    assert!(no.screen.contains(&fp) && no.screen.contains(QUESTION), "{}", no.screen);
    assert!(no.screen.contains("nothing was sent"), "{}", no.screen);
    assert_eq!(pin(&alice), None, "the pin is not kept");

    // An empty answer is no as well; the next run asks again.
    let enter = on_terminal(&alice, &node, &[], &["register", "alice"], "\n");
    assert_eq!(enter.code, Some(1), "{}", enter.screen);
    assert!(enter.screen.contains(QUESTION), "asked again: {}", enter.screen);

    let yes = on_terminal(&alice, &node, &[], &["register", "alice"], "yes\n");
    assert_eq!(yes.code, Some(0), "{}", yes.screen);
    assert!(yes.screen.contains(QUESTION), "{}", yes.screen);
    // The registration went through: the answers no did not register the name.
    assert!(yes.screen.contains("Registered and logged in as alice"), "{}", yes.screen);
    assert_eq!(pin(&alice), Some(fp));

    // Pinned now: a later password is sent without asking.
    let again = on_terminal(&alice, &node, &[], &["login", "alice"], "");
    assert_eq!(again.code, Some(0), "{}", again.screen);
    assert!(!again.screen.contains(QUESTION), "{}", again.screen);
}

#[test]
fn at_a_terminal_passwd_asks_too_and_a_given_fingerprint_or_password_stdin_does_not() {
    let node = Supernode::start().unwrap();
    let fp = fingerprint(&node);

    // passwd after the pin was forgotten: the session holds, the certificate is new again.
    let alice = User::new("alice", &node);
    alice.register();
    alice.ok(&["trust", "--forget"]);
    let new_password = [("PEERLINE_NEW_PASSWORD", "a-new-secret-pw")];
    let passwd = on_terminal(&alice, &node, &new_password, &["passwd"], "n\n");
    assert_eq!(passwd.code, Some(1), "{}", passwd.screen);
    assert!(passwd.screen.contains(QUESTION), "{}", passwd.screen);
    assert!(passwd.screen.contains("nothing was sent"), "{}", passwd.screen);
    // The old password still works: the change never reached the supernode.
    alice.ok(&["login", "alice"]);

    let bob = User::new("bob", &node);
    let given = on_terminal(&bob, &node, &[], &["--fingerprint", &fp, "register", "bob"], "");
    assert_eq!(given.code, Some(0), "{}", given.screen);
    assert!(!given.screen.contains(QUESTION), "{}", given.screen);

    // A program feeds the password: nobody to ask, the first-use notice is all there is.
    let carol = User::new("carol", &node);
    let line = format!("{}\n", carol.password);
    let piped = on_terminal(&carol, &node, &[], &["register", "carol", "--password-stdin"], &line);
    assert_eq!(piped.code, Some(0), "{}", piped.screen);
    assert!(!piped.screen.contains(QUESTION), "{}", piped.screen);
    assert!(piped.screen.contains("on first use"), "{}", piped.screen);
}

#[test]
fn without_a_terminal_the_first_use_is_only_noted() {
    let node = Supernode::start().unwrap();
    let alice = User::new("alice", &node);
    let run = alice.run(&["register", "alice"]);
    run.ok_json();
    assert!(run.stderr.contains("on first use"), "{}", run.stderr);
    assert!(run.stderr.contains(&fingerprint(&node)), "{}", run.stderr);
    assert!(!run.stderr.contains(QUESTION), "{}", run.stderr);
}
