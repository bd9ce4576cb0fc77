//! The networks this home knows, in `networks.json`. A network is a set of supernodes sharing
//! one database: a session token issued by one is valid on all, and all present the same
//! certificate (or certificates of one CA). So the home keeps, per network, its host cache (the
//! URLs the user gave, then the list the supernodes sent at login), one pinned certificate
//! fingerprint (trust on first use) and this device's session. A URL belongs to one network;
//! `--supernode` finds the network by any of its hosts.
//!
//! Updates read, change and write the file under the home's lock. A home from before networks
//! is migrated on the fly from its per-URL files (`legacy`) until the first update writes
//! `networks.json`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;
use std::io;
use std::path::PathBuf;

use peerline_client_core::HostCache;

use super::files::{read_optional, write_atomic};
use super::{Home, HomeError};
use crate::connection::Endpoint;
use crate::tls::{format_fingerprint, parse_fingerprint};

const NETWORKS_FILE: &str = "networks.json";

/// Most networks one home keeps; the least recently used is forgotten first. No person uses
/// this many; the bound only keeps a script that invents URLs from growing the file forever.
const MAX_NETWORKS: usize = 100;

/// A login that can be resumed without the password: what the supernode returned at login.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedSession {
    /// The account name.
    pub username: String,
    /// The session token (a secret: never log it).
    pub token: String,
    /// The device id the supernode assigned to this home's device key.
    pub device_id: i64,
}

/// Redacts the token, so a session can be logged or printed in an assertion without leaking it.
impl fmt::Debug for SavedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedSession")
            .field("username", &self.username)
            .field("token", &"<redacted>")
            .field("device_id", &self.device_id)
            .finish()
    }
}

/// One network of supernodes as this home knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedNetwork {
    /// Its supernodes' URLs (canonical: see [`Endpoint::canonical_url`]).
    pub hosts: HostCache,
    /// The SHA-256 of the certificate every supernode of the network presents, pinned on first
    /// use; `None` before the first TLS connection, or with a CA file.
    pub pin: Option<[u8; 32]>,
    /// This device's session on the network.
    pub session: Option<SavedSession>,
    /// The CA certificate file given with `--ca` at login, so that later commands verify the
    /// network's supernodes against it without repeating the option.
    pub ca_file: Option<PathBuf>,
    /// The name this device gave at login (`--device-name`), sent again at every login: the
    /// supernode keeps the name each login sends.
    pub device_name: Option<String>,
}

/// `networks.json` as written: a list, most recently used network first.
#[derive(serde::Serialize, serde::Deserialize)]
struct NetworksFile {
    #[serde(default)]
    networks: Vec<NetworkRecord>,
}

/// One network in the file; the pin in the `AB:CD:…` form users compare.
#[derive(serde::Serialize, serde::Deserialize)]
struct NetworkRecord {
    #[serde(default)]
    given: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    learned: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<SavedSession>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_name: Option<String>,
}

/// The one spelling of a supernode URL the home stores and compares: lower-case scheme and host,
/// the port always written (7443 by default), no trailing slash, `wss://` when no scheme was
/// typed ([`Endpoint::canonical_url`]). Files written with other spellings (`LOCALHOST`, a
/// trailing `/`) are read through this too, so they are found again. A URL that does not parse
/// is kept as it is: it matches only itself and fails when dialed.
pub(super) fn canonical(url: &str) -> String {
    Endpoint::parse(url).map_or_else(|_| url.trim().to_owned(), |e| e.canonical_url())
}

fn canonical_all(urls: &[String]) -> Vec<String> {
    urls.iter().map(|u| canonical(u)).collect()
}

/// The network any of `urls` belongs to, trying the URLs in order.
fn find(networks: &[SavedNetwork], urls: &[String]) -> Option<usize> {
    urls.iter().find_map(|url| networks.iter().position(|n| n.hosts.contains(url)))
}

impl Home {
    /// Where the networks are kept.
    pub fn networks_path(&self) -> PathBuf {
        self.dir.join(NETWORKS_FILE)
    }

    /// Every network this home knows, most recently used first.
    pub fn networks(&self) -> Result<Vec<SavedNetwork>, HomeError> {
        let path = self.networks_path();
        let Some(text) = read_optional(&path)? else {
            return self.legacy_networks();
        };
        let corrupt = |reason: String| HomeError::CorruptNetworks { path: path.clone(), reason };
        let file: NetworksFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        file.networks
            .into_iter()
            .map(|record| {
                let pin = match &record.pin {
                    None => None,
                    Some(text) => Some(parse_fingerprint(text).ok_or_else(|| {
                        corrupt(format!("{text:?} is not a SHA-256 fingerprint"))
                    })?),
                };
                Ok(SavedNetwork {
                    hosts: HostCache::new(
                        canonical_all(&record.given),
                        canonical_all(&record.learned),
                    ),
                    pin,
                    session: record.session,
                    ca_file: record.ca_file,
                    device_name: record.device_name,
                })
            })
            .collect()
    }

    /// The network of which one of `urls` is a supernode (the first URL that is one decides), or
    /// a new, empty network of `urls` when none is.
    pub fn network(&self, urls: &[String]) -> Result<SavedNetwork, HomeError> {
        let urls = canonical_all(urls);
        let mut networks = self.networks()?;
        Ok(match find(&networks, &urls) {
            Some(i) => networks.swap_remove(i),
            None => SavedNetwork { hosts: HostCache::new(urls, Vec::new()), ..Default::default() },
        })
    }

    /// Reads the network of `urls` (as [`Home::network`] finds it, a new one if none), lets
    /// `change` update it, and saves it under the home's lock; returns it as saved. Its hosts
    /// are taken out of any other network (a URL belongs to one network), and a network left
    /// without hosts is forgotten.
    pub fn update_network(
        &self,
        urls: &[String],
        change: impl FnOnce(&mut SavedNetwork),
    ) -> Result<SavedNetwork, HomeError> {
        self.modify_network(urls, true, change).map(|n| n.unwrap_or_default())
    }

    /// Forgets the pinned certificate of the network of `urls`; returns whether there was one.
    pub fn forget_pin(&self, urls: &[String]) -> Result<bool, HomeError> {
        let mut had = false;
        self.modify_network(urls, false, |n| had = n.pin.take().is_some())?;
        Ok(had)
    }

    /// Pins `fingerprint` for the network of `urls` (a new network if none), without
    /// connecting: the user got it from the operator, so no first use is left to trust. A
    /// network pinned to another certificate keeps that pin unless `replace`, since a pin is
    /// only replaced on purpose. Returns the pin the network had before.
    pub fn pin(
        &self,
        urls: &[String],
        fingerprint: [u8; 32],
        replace: bool,
    ) -> Result<Option<[u8; 32]>, HomeError> {
        let mut before = None;
        self.modify_network(urls, true, |n| {
            before = n.pin;
            if n.pin.is_none() || replace {
                n.pin = Some(fingerprint);
            }
        })?;
        Ok(before)
    }

    /// Forgets the pin of the network of `urls` if it is `fingerprint`, and returns whether it
    /// was: for a pin set on first use that the user then did not confirm. A pin another
    /// process changed meanwhile is not this one to take back, and stays.
    pub fn unpin(&self, urls: &[String], fingerprint: [u8; 32]) -> Result<bool, HomeError> {
        let mut removed = false;
        self.modify_network(urls, false, |n| {
            if n.pin == Some(fingerprint) {
                n.pin = None;
                removed = true;
            }
        })?;
        Ok(removed)
    }

    /// The session saved for the network of `supernode_url`, if any.
    pub fn session(&self, supernode_url: &str) -> Result<Option<SavedSession>, HomeError> {
        Ok(self.network(&[supernode_url.to_owned()])?.session)
    }

    /// Saves (or replaces) the session of the network of `supernode_url`; other networks keep
    /// theirs.
    pub fn save_session(&self, supernode_url: &str, s: &SavedSession) -> Result<(), HomeError> {
        self.update_network(&[supernode_url.to_owned()], |n| n.session = Some(s.clone()))?;
        Ok(())
    }

    /// Removes the session of the network of `supernode_url`, if there is one (logout).
    pub fn clear_session(&self, supernode_url: &str) -> Result<(), HomeError> {
        self.modify_network(&[supernode_url.to_owned()], false, |n| n.session = None)?;
        Ok(())
    }

    /// [`Home::update_network`], or only an existing network when `create` is false (then
    /// `None` if there is none, and nothing is written).
    fn modify_network(
        &self,
        urls: &[String],
        create: bool,
        change: impl FnOnce(&mut SavedNetwork),
    ) -> Result<Option<SavedNetwork>, HomeError> {
        let urls = canonical_all(urls);
        let _lock = self.lock()?;
        let mut networks = self.networks()?;
        let mut network = match find(&networks, &urls) {
            Some(i) => networks.remove(i),
            None if create => {
                SavedNetwork { hosts: HostCache::new(urls, Vec::new()), ..Default::default() }
            }
            None => return Ok(None),
        };
        change(&mut network);
        let claimed = network.hosts.hosts();
        for other in &mut networks {
            let keep = |list: &[String]| {
                list.iter().filter(|u| !claimed.contains(u)).cloned().collect::<Vec<_>>()
            };
            other.hosts = HostCache::new(keep(other.hosts.given()), keep(other.hosts.learned()));
        }
        networks.retain(|n| !n.hosts.hosts().is_empty());
        networks.insert(0, network.clone());
        networks.truncate(MAX_NETWORKS);
        self.write_networks(&networks)?;
        Ok(Some(network))
    }

    fn write_networks(&self, networks: &[SavedNetwork]) -> Result<(), HomeError> {
        let path = self.networks_path();
        let file = NetworksFile {
            networks: networks
                .iter()
                .map(|n| NetworkRecord {
                    given: n.hosts.given().to_vec(),
                    learned: n.hosts.learned().to_vec(),
                    pin: n.pin.as_ref().map(format_fingerprint),
                    session: n.session.clone(),
                    ca_file: n.ca_file.clone(),
                    device_name: n.device_name.clone(),
                })
                .collect(),
        };
        let mut json = serde_json::to_string_pretty(&file)
            .map_err(|e| HomeError::Write { path: path.clone(), source: io::Error::other(e) })?;
        json.push('\n');
        write_atomic(&path, json.as_bytes()).map_err(|source| HomeError::Write { path, source })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use std::fs;

    use super::*;
    use crate::home::tests::home;

    fn session(name: &str, device_id: i64) -> SavedSession {
        SavedSession { username: name.into(), token: format!("tok-{name}"), device_id }
    }

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|u| (*u).to_owned()).collect()
    }

    #[test]
    fn sessions_save_load_clear_for_two_networks() {
        let (_tmp, home) = home();
        let a = "wss://a.example:7443";
        let b = "wss://b.example:7443";
        assert_eq!(home.session(a).unwrap(), None);
        home.clear_session(a).unwrap(); // clearing nothing is fine, and writes nothing
        assert!(!home.networks_path().exists());

        home.save_session(a, &session("alice", 1)).unwrap();
        home.save_session(b, &session("bob", 2)).unwrap();
        assert_eq!(home.session(a).unwrap(), Some(session("alice", 1)));
        assert_eq!(home.session(b).unwrap(), Some(session("bob", 2)));

        home.save_session(a, &session("alice2", 3)).unwrap();
        assert_eq!(home.session(a).unwrap(), Some(session("alice2", 3)));

        home.clear_session(a).unwrap();
        assert_eq!(home.session(a).unwrap(), None);
        assert_eq!(home.session(b).unwrap(), Some(session("bob", 2)));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(home.networks_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_session_and_pin_from_one_supernode_hold_on_every_supernode_of_its_network() {
        let (_tmp, home) = home();
        let sn1 = "wss://sn1.example:7443";
        home.update_network(&urls(&[sn1]), |n| {
            n.pin = Some([9; 32]);
            n.session = Some(session("alice", 1));
            n.hosts.learn(&urls(&["wss://sn2.example:7443", "wss://sn3.example:7443"]));
        })
        .unwrap();
        let via_sn3 = home.network(&urls(&["wss://sn3.example:7443"])).unwrap();
        assert_eq!(via_sn3.session, Some(session("alice", 1)));
        assert_eq!(via_sn3.pin, Some([9; 32]));
        assert_eq!(via_sn3.hosts.hosts()[0], sn1);
        // Other spellings of one URL are that URL.
        assert_eq!(
            home.session("wss://SN2.example:7443/v1/ws").unwrap(),
            Some(session("alice", 1))
        );
        // A URL of no network is a new, empty one of its own.
        let other = home.network(&urls(&["wss://elsewhere.example"])).unwrap();
        assert_eq!((other.pin, other.session), (None, None));
        assert_eq!(other.hosts.hosts(), ["wss://elsewhere.example:7443"]);
        // Forgetting the pin forgets it for the whole network.
        assert!(home.forget_pin(&urls(&["wss://sn2.example:7443"])).unwrap());
        assert_eq!(home.network(&urls(&[sn1])).unwrap().pin, None);
        assert!(!home.forget_pin(&urls(&[sn1])).unwrap());
    }

    #[test]
    fn a_pin_set_in_advance_holds_for_the_network_and_is_replaced_only_on_purpose() {
        let (_tmp, home) = home();
        let sn1 = urls(&["wss://sn1.example:7443"]);
        home.update_network(&sn1, |n| n.hosts.learn(&urls(&["wss://sn2.example:7443"]))).unwrap();
        assert_eq!(home.pin(&sn1, [1; 32], false).unwrap(), None, "no pin before");
        let via_sn2 = urls(&["wss://sn2.example:7443"]);
        assert_eq!(home.network(&via_sn2).unwrap().pin, Some([1; 32]));
        assert_eq!(home.pin(&via_sn2, [1; 32], false).unwrap(), Some([1; 32]), "the same again");

        assert_eq!(home.pin(&sn1, [2; 32], false).unwrap(), Some([1; 32]));
        assert_eq!(home.network(&sn1).unwrap().pin, Some([1; 32]), "another pin is kept");
        assert_eq!(home.pin(&sn1, [2; 32], true).unwrap(), Some([1; 32]));
        assert_eq!(home.network(&via_sn2).unwrap().pin, Some([2; 32]), "replaced on purpose");

        // A network never seen is created with its pin.
        let new = urls(&["wss://new.example:7443"]);
        assert_eq!(home.pin(&new, [3; 32], false).unwrap(), None);
        assert_eq!(home.network(&new).unwrap().pin, Some([3; 32]));
    }

    #[test]
    fn unpin_takes_back_only_the_pin_it_names() {
        let (_tmp, home) = home();
        let sn1 = urls(&["wss://sn1.example:7443"]);
        assert!(!home.unpin(&sn1, [1; 32]).unwrap(), "no network, nothing to take back");
        assert!(!home.networks_path().exists(), "and nothing written");
        home.pin(&sn1, [2; 32], false).unwrap();
        assert!(!home.unpin(&sn1, [1; 32]).unwrap(), "another process pinned another one");
        assert_eq!(home.network(&sn1).unwrap().pin, Some([2; 32]));
        assert!(home.unpin(&sn1, [2; 32]).unwrap());
        assert_eq!(home.network(&sn1).unwrap().pin, None);
    }

    #[test]
    fn a_url_belongs_to_the_network_that_last_claimed_it() {
        let (_tmp, home) = home();
        home.save_session("wss://sn2.example:7443", &session("old", 7)).unwrap();
        home.save_session("wss://x.example:7443", &session("x", 8)).unwrap();
        home.update_network(&urls(&["wss://sn1.example:7443"]), |n| {
            n.session = Some(session("alice", 1));
            n.hosts.learn(&urls(&["wss://sn2.example:7443", "wss://x.example:7443"]));
        })
        .unwrap();
        let networks = home.networks().unwrap();
        assert_eq!(networks.len(), 1, "the emptied networks are gone: {networks:?}");
        assert_eq!(home.session("wss://sn2.example:7443").unwrap(), Some(session("alice", 1)));
    }

    #[test]
    fn an_old_home_is_migrated_without_losing_sessions_or_pins() {
        let (_tmp, home) = home();
        let fp = format_fingerprint(&[0xAB; 32]);
        fs::write(
            home.dir().join("sessions.json"),
            r#"{"wss://127.0.0.1:7443": {"username": "alice", "token": "tok-alice", "device_id": 1},
                "wss://other.example:9": {"username": "bob", "token": "tok-bob", "device_id": 2}}"#,
        )
        .unwrap();
        fs::write(home.dir().join("known_supernodes"), format!("127.0.0.1:7443 {fp}\n")).unwrap();
        // Read as networks before anything is written.
        let net = home.network(&urls(&["wss://127.0.0.1:7443/v1/ws"])).unwrap();
        assert_eq!((net.pin, net.session), (Some([0xAB; 32]), Some(session("alice", 1))));
        // The first update writes networks.json with everything the old files held.
        home.update_network(&urls(&["wss://127.0.0.1:7443"]), |n| {
            n.hosts.learn(&urls(&["wss://127.0.0.1:7444"]));
        })
        .unwrap();
        assert!(home.networks_path().exists());
        let net = home.network(&urls(&["wss://127.0.0.1:7444"])).unwrap();
        assert_eq!((net.pin, net.session), (Some([0xAB; 32]), Some(session("alice", 1))));
        assert_eq!(home.session("wss://other.example:9").unwrap(), Some(session("bob", 2)));
        // The old files stay as they were, and are no longer read.
        assert!(home.dir().join("sessions.json").exists());
        fs::write(home.dir().join("sessions.json"), "{}").unwrap();
        assert_eq!(home.session("wss://other.example:9").unwrap(), Some(session("bob", 2)));
    }

    #[test]
    fn a_corrupt_networks_file_names_the_file_and_is_not_clobbered() {
        let (_tmp, home) = home();
        let path = home.networks_path();
        for bad in ["{not json", r#"{"networks": [{"given": ["wss://a:1"], "pin": "zz"}]}"#] {
            fs::write(&path, bad).unwrap();
            let err = home.session("wss://a:1").unwrap_err();
            assert!(matches!(err, HomeError::CorruptNetworks { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()));
            assert!(home.save_session("wss://a:1", &session("a", 1)).is_err());
            assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        }
    }

    #[test]
    fn concurrent_saves_keep_every_network() {
        let (_tmp, home) = home();
        std::thread::scope(|s| {
            for i in 0..8 {
                let home = home.clone();
                s.spawn(move || {
                    home.save_session(&format!("wss://n{i}:1"), &session("u", i)).unwrap();
                });
            }
        });
        for i in 0..8 {
            assert_eq!(home.session(&format!("wss://n{i}:1")).unwrap(), Some(session("u", i)));
        }
    }

    #[test]
    fn other_spellings_of_a_url_find_its_session_also_in_files_written_with_them() {
        let (_tmp, home) = home();
        fs::write(
            home.networks_path(),
            r#"{"networks": [{"given": ["wss://LOCALHOST:7443/"],
                "session": {"username": "alice", "token": "tok-alice", "device_id": 1}}]}"#,
        )
        .unwrap();
        for spelling in [
            "wss://localhost:7443",
            "wss://LocalHost",
            "localhost:7443",
            "WSS://localhost/",
            "localhost",
        ] {
            assert_eq!(home.session(spelling).unwrap(), Some(session("alice", 1)), "{spelling}");
        }
    }

    #[test]
    fn the_ca_file_and_device_name_are_kept_with_the_network() {
        let (_tmp, home) = home();
        let sn = urls(&["wss://sn1.example:7443"]);
        home.update_network(&sn, |n| {
            n.ca_file = Some(PathBuf::from("/etc/peerline/ca.pem"));
            n.device_name = Some("laptop".into());
        })
        .unwrap();
        let n = home.network(&urls(&["sn1.example"])).unwrap();
        assert_eq!(n.ca_file, Some(PathBuf::from("/etc/peerline/ca.pem")));
        assert_eq!(n.device_name.as_deref(), Some("laptop"));
    }

    #[test]
    fn debug_redacts_the_token() {
        let text = format!("{:?}", session("alice", 1));
        assert!(text.contains("alice"));
        assert!(!text.contains("tok-alice"), "{text}");
    }
}
