//! The per-URL files of homes from before networks (`sessions.json`: supernode URL → session;
//! `known_supernodes`: one `host:port FINGERPRINT` per line), read once to migrate them: while a
//! home has no `networks.json`, each saved session becomes a network of its one URL with the pin
//! of its `host:port`, and each pin without a session a network of `wss://host:port`. The old
//! files are left as they were (an older client sharing the home still finds them) and are not
//! read again once `networks.json` exists.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use peerline_client_core::HostCache;

use super::files::read_optional;
use super::networks::{SavedNetwork, SavedSession};
use super::{Home, HomeError};
use crate::connection::Endpoint;
use crate::tls::parse_fingerprint;

/// The sessions of a home before networks: a JSON object, supernode URL → session.
const SESSIONS_FILE: &str = "sessions.json";
/// The pins of a home before networks.
const KNOWN_SUPERNODES_FILE: &str = "known_supernodes";

impl Home {
    /// The networks the per-URL files describe, for a home without `networks.json`. A corrupt
    /// sessions file or a malformed pin line is an error naming the file, never skipped:
    /// skipping a pin would silently turn a pinned supernode into an unpinned one.
    pub(super) fn legacy_networks(&self) -> Result<Vec<SavedNetwork>, HomeError> {
        let sessions = read_sessions(&self.dir.join(SESSIONS_FILE))?;
        let pins = read_pins(&self.dir.join(KNOWN_SUPERNODES_FILE))?;
        let pin_of = |host_port: &str| {
            pins.iter().find(|(host, _)| host.eq_ignore_ascii_case(host_port)).map(|(_, fp)| *fp)
        };
        let mut networks = Vec::new();
        let mut pinned_hosts_used = HashSet::new();
        for (url, session) in sessions {
            let endpoint = Endpoint::parse(&url).ok();
            // The one spelling every lookup uses, also for a URL that does not parse (found by
            // fuzzing: a key with a trailing space was kept as it was, and never found again).
            let canonical = super::networks::canonical(&url);
            // Only a TLS supernode had a pin; a plain ws:// test supernode had none.
            let pin = endpoint.filter(|e| e.tls).and_then(|e| {
                let host_port = e.host_port();
                let pin = pin_of(&host_port);
                pinned_hosts_used.insert(host_port.to_ascii_lowercase());
                pin
            });
            networks.push(SavedNetwork {
                hosts: HostCache::new(vec![canonical], Vec::new()),
                pin,
                session: Some(session),
                ..SavedNetwork::default()
            });
        }
        for (host_port, fingerprint) in &pins {
            if pinned_hosts_used.insert(host_port.to_ascii_lowercase()) {
                let url = super::networks::canonical(&format!("wss://{host_port}"));
                networks.push(SavedNetwork {
                    hosts: HostCache::new(vec![url], Vec::new()),
                    pin: Some(*fingerprint),
                    session: None,
                    ..SavedNetwork::default()
                });
            }
        }
        Ok(networks)
    }
}

/// `sessions.json` as it was: URL → session; empty when there is none.
fn read_sessions(path: &Path) -> Result<BTreeMap<String, SavedSession>, HomeError> {
    match read_optional(path)? {
        None => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|source| HomeError::CorruptSessions { path: path.to_path_buf(), source }),
    }
}

/// The pins of `known_supernodes`, in file order (the first line of a host wins, as before).
fn read_pins(path: &Path) -> Result<Vec<(String, [u8; 32])>, HomeError> {
    let Some(text) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    let mut pins: Vec<(String, [u8; 32])> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some((host, fingerprint)) = parse_pin_line(line) else { continue };
        let fingerprint = fingerprint.map_err(|reason| HomeError::BadPinLine {
            path: path.to_path_buf(),
            line: index + 1,
            reason,
        })?;
        if !pins.iter().any(|(h, _)| h.eq_ignore_ascii_case(host)) {
            pins.push((host.to_owned(), fingerprint));
        }
    }
    Ok(pins)
}

/// One line of `known_supernodes`: `None` for a blank line or a `#` comment, else the host and
/// its fingerprint or what is wrong with the line.
fn parse_pin_line(line: &str) -> Option<(&str, Result<[u8; 32], String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let host = fields.next()?;
    let fingerprint = match fields.next() {
        None => Err(format!("no fingerprint after {host:?}")),
        Some(fp) => match fields.next() {
            // A trailing `# comment` is allowed.
            Some(extra) if !extra.starts_with('#') => {
                Err(format!("unexpected {extra:?} after the fingerprint"))
            }
            _ => parse_fingerprint(fp).ok_or_else(|| {
                format!("{fp:?} is not a SHA-256 fingerprint (32 hex byte pairs, ':'-separated)")
            }),
        },
    };
    Some((host, fingerprint))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::fs;

    use super::*;
    use crate::home::tests::home;
    use crate::tls::format_fingerprint;

    fn session(name: &str, device_id: i64) -> SavedSession {
        SavedSession { username: name.into(), token: format!("tok-{name}"), device_id }
    }

    /// Writes the two files as a client from before networks did.
    fn write_old_home(home: &Home, sessions: &str, pins: &str) {
        fs::write(home.dir().join(SESSIONS_FILE), sessions).unwrap();
        fs::write(home.dir().join(KNOWN_SUPERNODES_FILE), pins).unwrap();
    }

    /// From the `home_files` fuzz target (fuzz/artifacts/home_files/crash-c343b71a…): a session
    /// under a key that is no URL, with a trailing space, was stored as it was while every
    /// lookup trims it, so the session could never be found (or replaced) again.
    #[test]
    fn an_old_session_under_an_odd_key_is_found_by_its_canonical_spelling() {
        let (_tmp, home) = home();
        let key = "////////////[////1.1:9 ";
        write_old_home(
            &home,
            &format!(r#"{{"{key}": {{"username": "io", "token": "u", "device_id": 2}}}}"#),
            "",
        );
        let networks = home.networks().unwrap();
        let hosts = networks[0].hosts.hosts();
        assert_eq!(hosts, vec![key.trim().to_owned()], "stored in the spelling lookups use");
        assert_eq!(home.session(key).unwrap().map(|s| s.device_id), Some(2));
    }

    #[test]
    fn each_old_session_becomes_a_network_with_its_pin() {
        let (_tmp, home) = home();
        let fp_a = format_fingerprint(&[0xAA; 32]);
        let fp_b = hex::encode([0xBB; 32]);
        let fp_c = format_fingerprint(&[0xCC; 32]);
        write_old_home(
            &home,
            r#"{"wss://a.example:7443": {"username": "alice", "token": "tok-alice", "device_id": 1},
                "ws://127.0.0.1:9": {"username": "bob", "token": "tok-bob", "device_id": 2}}"#,
            &format!(
                "# Peerline known supernodes\n\nA.example:7443 {fp_a}  # office\n\
                 c.example:1 {fp_c}\na.example:7443 {fp_b}\n"
            ),
        );
        let networks = home.legacy_networks().unwrap();
        assert_eq!(networks.len(), 3, "{networks:?}");
        assert_eq!(networks[0].hosts.hosts(), ["ws://127.0.0.1:9"]);
        assert_eq!((networks[0].pin, networks[0].session.clone()), (None, Some(session("bob", 2))));
        assert_eq!(networks[1].hosts.hosts(), ["wss://a.example:7443"]);
        assert_eq!(networks[1].pin, Some([0xAA; 32]), "the first line of a host wins");
        assert_eq!(networks[1].session, Some(session("alice", 1)));
        // A pin without a session keeps its supernode pinned.
        assert_eq!(networks[2].hosts.hosts(), ["wss://c.example:1"]);
        assert_eq!((networks[2].pin, networks[2].session.clone()), (Some([0xCC; 32]), None));
    }

    #[test]
    fn a_home_without_old_files_has_no_old_networks() {
        let (_tmp, home) = home();
        assert!(home.legacy_networks().unwrap().is_empty());
    }

    #[test]
    fn malformed_old_files_are_errors_naming_the_file() {
        let (_tmp, home) = home();
        write_old_home(&home, "{}", "good.example:1 ZZ:ZZ\n");
        let err = home.legacy_networks().unwrap_err();
        assert!(matches!(err, HomeError::BadPinLine { line: 1, .. }), "{err}");
        assert!(err.to_string().contains(KNOWN_SUPERNODES_FILE), "{err}");

        write_old_home(&home, "{not json", "");
        let err = home.legacy_networks().unwrap_err();
        assert!(matches!(err, HomeError::CorruptSessions { .. }), "{err}");
        assert!(err.to_string().contains(SESSIONS_FILE), "{err}");
    }

    #[test]
    fn pin_lines_parse_as_before() {
        assert!(parse_pin_line("  # comment").is_none());
        assert!(parse_pin_line("").is_none());
        let fp = format_fingerprint(&[7; 32]);
        let line = format!("h:1\t{fp} # note");
        let (host, parsed) = parse_pin_line(&line).unwrap();
        assert_eq!((host, parsed), ("h:1", Ok([7; 32])));
        assert!(parse_pin_line("h:1").unwrap().1.is_err());
        assert!(parse_pin_line(&format!("h:1 {fp} extra")).unwrap().1.is_err());
    }
}
