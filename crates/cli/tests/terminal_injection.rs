//! Terminal injection with the real binaries: the supernode refuses escape sequences in
//! messages, greetings and display names, and the CLI shows escaped whatever still reaches it —
//! from a supernode that passes bidi overrides in messages, and from a malicious supernode (a
//! proxy that rewrites the real supernode's frames) that sends ESC, BEL, CR, line breaks and
//! bidi overrides in every string it can.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use peerline_testkit::{Supernode, User, bin};

/// A finished human-mode run: what a terminal would have received.
struct Screen {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Screen {
    fn all(&self) -> String {
        format!("{}{}", self.out, self.err)
    }

    /// Nothing in the output can act on a terminal or reorder its text (line breaks and tabs
    /// only move the cursor forward).
    fn assert_inert(&self, what: &str) {
        let all = self.all();
        let active: Vec<char> = all
            .chars()
            .filter(|c| {
                (c.is_control() && !matches!(c, '\n' | '\t'))
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}')
            })
            .collect();
        assert!(active.is_empty(), "{what} printed {active:?} raw:\n{all}");
    }
}

/// Runs `peerline ARGS` without `--json`, against `url`, as `user`.
fn human(user: &User, url: &str, args: &[&str]) -> Screen {
    let out = Command::new(bin("peerline"))
        .env("PEERLINE_HOME", user.home())
        .env("PEERLINE_SUPERNODE", url)
        .env("PEERLINE_PASSWORD", &user.password)
        .env_remove("PEERLINE_CA")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Screen {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Attacks of the kind the issue names, each as typed.
const CLEAR_SCREEN: &str = "\u{1b}[2J\u{1b}[H";
const TITLE: &str = "\u{1b}]0;pwned\u{7}";
const HYPERLINK: &str = "\u{1b}]8;;https://evil.example\u{1b}\\click me\u{1b}]8;;\u{1b}\\";
const FORGED_LINE: &str = "ok\rerror: IDENTITY CHANGED: alice's device 1 now presents key 00";

#[test]
fn the_supernode_refuses_escape_sequences_in_messages_greetings_and_names() {
    let node = Supernode::start().unwrap();
    let (alice, bob) = (User::new("alice", &node), User::new("bob", &node));
    alice.register();
    let refused = bob.run(&["register", "bob", "--display-name", &format!("Bob{TITLE}")]);
    assert_eq!(refused.error_code(), "invalid_display_name");
    let refused = bob.run(&["register", "bob", "--display-name", "\u{202e}boB"]);
    assert_eq!(refused.error_code(), "invalid_display_name");
    bob.register();
    let refused = bob.run(&["profile", "--display-name", &format!("Bob{CLEAR_SCREEN}")]);
    assert_eq!(refused.error_code(), "invalid_display_name");

    for greeting in [CLEAR_SCREEN, TITLE, HYPERLINK, FORGED_LINE, "hi\u{202e}", "two\nlines"] {
        let refused = bob.run(&["contacts", "add", "alice", "--message", greeting]);
        assert_eq!(refused.error_code(), "invalid_argument", "{greeting:?}");
    }
    bob.ok(&["contacts", "add", "alice", "--message", "hi, it's Bob"]);
    alice.ok(&["contacts", "accept", "bob"]);

    for text in [CLEAR_SCREEN, TITLE, HYPERLINK, FORGED_LINE, "\u{9b}2J"] {
        let refused = bob.run(&["send", "alice", text]);
        assert_eq!(refused.error_code(), "invalid_argument", "{text:?}");
        let message = refused.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("control character"), "{message}");
    }
    // In human mode the refusal says which character, and prints it escaped.
    let screen = human(&bob, &node.url, &["send", "alice", &format!("hi{CLEAR_SCREEN}")]);
    assert_eq!(screen.code, Some(1));
    screen.assert_inert("a refused send");
    assert!(screen.err.contains("control character U+001B at character 2"), "{}", screen.err);

    // Line breaks and tabs go through, and so do bidi overrides in messages (phones insert
    // them); nothing refused reached alice.
    bob.ok(&["send", "alice", "line one\n\tline two"]);
    bob.ok(&["send", "alice", "see \u{202e}txt.exe"]);
    let inbox = alice.ok(&["inbox", "--peek"]);
    let texts: Vec<&str> =
        inbox.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["line one\n\tline two", "see \u{202e}txt.exe"]);

    // The CLI shows the override escaped, and the second line of a message indented.
    let screen = human(&alice, &node.url, &["inbox", "--peek"]);
    screen.assert_inert("inbox");
    let lines: Vec<&str> = screen.out.lines().collect();
    assert!(lines[0].ends_with("] bob → alice: line one"), "{}", screen.out);
    assert_eq!(lines[1], "    \tline two");
    assert!(lines[2].ends_with("] bob → alice: see \\u{202e}txt.exe"), "{}", screen.out);
}

/// `from` → `to` in the bytes the supernode sends, padded with spaces to the same length so
/// that WebSocket frame lengths stay right. `to` is JSON string content (`\u001b` for ESC).
fn rewrite(from: &str, to: &str) -> (Vec<u8>, Vec<u8>) {
    assert!(to.len() <= from.len(), "{to:?} is longer than {from:?}");
    (from.as_bytes().to_vec(), format!("{to:<width$}", width = from.len()).into_bytes())
}

/// A malicious supernode: passes the client's frames to the real supernode, and the
/// supernode's frames back with `rewrites` applied (its frames are not masked, RFC 6455 §5.1,
/// so the bytes are the JSON text).
fn malicious_proxy(upstream: String, rewrites: Vec<(Vec<u8>, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else { return };
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut s2);
            });
            let rewrites = rewrites.clone();
            std::thread::spawn(move || relay_rewriting(server, client, &rewrites));
        }
    });
    url
}

fn relay_rewriting(mut from: TcpStream, mut to: TcpStream, rewrites: &[(Vec<u8>, Vec<u8>)]) {
    let longest = rewrites.iter().map(|(f, _)| f.len()).max().unwrap_or(1);
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // A pattern may straddle two reads: a tail that could start one waits a moment.
        let wait = if pending.is_empty() { None } else { Some(Duration::from_millis(30)) };
        from.set_read_timeout(wait).unwrap();
        match from.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if to.write_all(&pending).is_err() {
                    return;
                }
                pending.clear();
                continue;
            }
            Err(_) => return,
        }
        for (pattern, replacement) in rewrites {
            let mut at = 0;
            while let Some(i) = find(&pending[at..], pattern) {
                let start = at + i;
                pending[start..start + pattern.len()].copy_from_slice(replacement);
                at = start + pattern.len();
            }
        }
        let keep = (1..longest.min(pending.len() + 1))
            .rev()
            .find(|k| {
                let tail = &pending[pending.len() - k..];
                rewrites.iter().any(|(p, _)| p.starts_with(tail))
            })
            .unwrap_or(0);
        let send = pending.len() - keep;
        if to.write_all(&pending[..send]).is_err() {
            return;
        }
        pending.drain(..send);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn the_cli_escapes_what_a_malicious_supernode_sends() {
    let node = Supernode::start_with(&["--insecure-plaintext"]).unwrap();
    assert!(node.url.starts_with("ws://"), "{}", node.url);
    // Placeholders the real supernode accepts, which the proxy turns into the attack.
    let proxy = malicious_proxy(
        node.addr.clone(),
        vec![
            rewrite("~ESC~~", "\\u001b"),
            rewrite("~BEL~~", "\\u0007"),
            rewrite("~CR~~~", "\\u000d"),
            rewrite("~LF~~~", "\\u000a"),
            rewrite("~RLO~~", "\\u202e"),
            rewrite("~C1~~~", "\\u009b"),
            // Device names, and the supernode's own error text.
            rewrite("peerline-cli", "\\u202eevil"),
            rewrite("not an accepted contact", "\\u001b[2Jnot a contact"),
        ],
    );
    // alice's every command goes through the malicious supernode.
    let (mut alice, bob) = (User::new("alice", &node), User::new("bob", &node));
    alice.set_url(&proxy);
    alice.register();
    // bob's device name is one the proxy rewrites.
    bob.ok(&[
        "register",
        "bob",
        "--display-name",
        "Bob~ESC~~]0;pwned~BEL~~~RLO~~",
        "--device-name",
        "peerline-cli",
    ]);
    bob.ok(&[
        "contacts",
        "add",
        "alice",
        "--message",
        "hi~ESC~~]8;;https://evil.example~ESC~~\\click~ESC~~]8;;~ESC~~\\~CR~~~IDENTITY CHANGED",
    ]);

    // The pending request, in the contact list and as `online` shows it.
    let contacts = human(&alice, &proxy, &["contacts"]);
    contacts.assert_inert("contacts");
    let name = "Bob\\x1b]0;pwned\\x07\\u{202e}";
    let greeting =
        "\"hi\\x1b]8;;https://evil.example\\x1b\\click\\x1b]8;;\\x1b\\\\rIDENTITY CHANGED\"";
    assert_eq!(contacts.out, format!("○ {:<20} {name} incoming  {greeting}\n", "bob"));
    let online = human(&alice, &proxy, &["online", "--exit-after", "1"]);
    online.assert_inert("online");
    let line =
        format!("Contact request from bob ({name}): {greeting} — `peerline contacts accept bob`");
    assert!(online.out.lines().any(|l| l == line), "{}", online.out);

    alice.ok(&["contacts", "accept", "bob"]);
    bob.ok(&[
        "send",
        "alice",
        "hi~ESC~~[2J~ESC~~[H~C1~~~31m~CR~~~error: IDENTITY CHANGED~LF~~~forged",
    ]);
    bob.ok(&["send", "alice", "a real second line:\nerror: IDENTITY CHANGED"]);

    // Listed by inbox and history, then pushed as events at login (which reads them).
    let inbox = human(&alice, &proxy, &["inbox", "--peek"]);
    inbox.assert_inert("inbox");
    let history = human(&alice, &proxy, &["history", "bob"]);
    history.assert_inert("history");
    let online = human(&alice, &proxy, &["online", "--exit-after", "2"]);
    online.assert_inert("online");
    for screen in [&online, &inbox, &history] {
        let lines: Vec<&str> = screen.out.lines().filter(|l| l.contains("bob → alice")).collect();
        assert_eq!(lines.len(), 2, "{}", screen.out);
        assert!(
            lines[0]
                .ends_with("] bob → alice: hi\\x1b[2J\\x1b[H\\x9b31m\\rerror: IDENTITY CHANGED"),
            "{}",
            screen.out
        );
        assert!(screen.out.contains("IDENTITY CHANGED\n    forged"), "{}", screen.out);
        // No line of someone else's text starts where the CLI's own lines start.
        assert!(screen.out.contains("] bob → alice: a real second line:\n    error: IDENTITY"));
        assert!(!screen.out.lines().any(|l| l.starts_with("error:")), "{}", screen.out);
    }

    // Display names in search and whoami, device names in verify and devices.
    for args in [&["search", "bob"][..], &["verify", "bob"], &["devices"], &["whoami"]] {
        let screen = human(&alice, &proxy, args);
        screen.assert_inert(&args.join(" "));
        assert_eq!(screen.code, Some(0), "{args:?}: {}", screen.all());
    }
    let search = human(&alice, &proxy, &["search", "bob"]);
    assert!(search.out.contains("Bob\\x1b]0;pwned\\x07\\u{202e}"), "{}", search.out);
    let verify = human(&alice, &proxy, &["verify", "bob"]);
    assert!(verify.out.contains("(\\u{202e}evil"), "{}", verify.out);

    // The supernode's own error text.
    let refused = human(&alice, &proxy, &["send", "carol", "hi"]);
    refused.assert_inert("a refused send");
    assert!(refused.err.contains("error: \\x1b[2Jnot a contact"), "{}", refused.err);

    // JSON output keeps the text as it came, escaped by JSON itself.
    let messages = alice.run(&["history", "bob"]);
    assert!(!messages.stdout.contains('\u{1b}'), "{}", messages.stdout);
    assert!(messages.ok_json()[0]["text"].as_str().unwrap().starts_with("hi\u{1b}[2J\u{1b}[H"));
}
