//! Fuzz harness: arbitrary contents for the files of a client's home directory (`Home`), then the
//! reads and updates the CLI makes on every start.
//!
//! The input is split at 0xFF bytes (never part of UTF-8 text, so a seed file of JSON or pins is
//! one part) into the contents of, in order: `networks.json`, `sessions.json`,
//! `known_supernodes`, `peer_keys.json`, `settings.json`, `device.key`. An empty or missing part
//! leaves that file out, so a home without `networks.json` is read through the legacy files.
//!
//! Beyond "no panic", it checks the home's promises:
//! - a file that cannot be read is an error of the variant that names that file, and no read or
//!   refused update changes a byte of any file (a corrupt file is reported, never clobbered);
//! - what is read respects the limits: at most 200 hosts per network, none empty or repeated, each
//!   in the one canonical spelling (canonicalizing it again changes nothing);
//! - an update writes a file that reads back: the saved session is found again, and a pinned
//!   peer key is listed afterwards.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use peerline_client::connection::Endpoint;
use peerline_client::home::HomeError;
use peerline_client::peer_keys::PeerKeyError;
use peerline_client::{Home, SavedNetwork, SavedSession};
use peerline_client_core::hosts::MAX_HOSTS;

const FILES: [&str; 6] = [
    "networks.json",
    "sessions.json",
    "known_supernodes",
    "peer_keys.json",
    "settings.json",
    "device.key",
];
const NETWORKS: usize = 0;
const DEVICE_KEY: usize = 5;

/// Most networks a home keeps (`networks::MAX_NETWORKS`).
const MAX_NETWORKS: usize = 100;

/// One directory for the whole run, emptied before every input: far cheaper than a new one, and
/// on tmpfs where there is one, so the home's fsyncs cost nothing.
fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let made = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        made.unwrap_or_else(|e| panic!("no temporary directory for the fuzz home: {e}"))
    })
    .path()
}

fn reset(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Every file of the home and its bytes, to see that reads and refused updates change nothing.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((name, fs::read(e.path()).ok()?))
        })
        .filter(|(name, _)| name != ".lock")
        .collect();
    files.sort();
    files
}

fn check_networks(networks: &[SavedNetwork]) {
    for network in networks {
        let hosts = network.hosts.hosts();
        assert!(hosts.len() <= MAX_HOSTS, "{} hosts in one network", hosts.len());
        let mut seen = HashSet::new();
        for host in &hosts {
            assert!(!host.is_empty(), "an empty host");
            assert!(seen.insert(host), "{host:?} twice in one network");
            let again = Endpoint::parse(host)
                .map_or_else(|_| host.trim().to_owned(), |e| e.canonical_url());
            assert_eq!(&again, host, "a stored URL is not in its canonical spelling");
        }
    }
}

/// Which errors may name which file: the variant must match what was wrong.
fn check_networks_error(err: &HomeError, had_networks_file: bool) {
    match err {
        HomeError::CorruptNetworks { .. } => assert!(had_networks_file),
        HomeError::CorruptSessions { .. } | HomeError::BadPinLine { .. } => {
            assert!(!had_networks_file, "legacy files read although networks.json exists");
        }
        // Not UTF-8.
        HomeError::Read { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidData, "{err}");
        }
        other => panic!("unexpected error reading networks: {other}"),
    }
}

fn check_session_update(home: &Home, dir: &Path, networks: Result<Vec<SavedNetwork>, ()>) {
    let url = networks
        .as_ref()
        .ok()
        .and_then(|n| n.first())
        .and_then(|n| n.hosts.hosts().into_iter().next())
        .unwrap_or_else(|| "wss://fuzz.example:7443".to_owned());
    let session = SavedSession { username: "fuzz".into(), token: "tok".into(), device_id: 7 };
    let before = snapshot(dir);
    let saved = home.save_session(&url, &session);
    match networks {
        Err(()) => {
            assert!(saved.is_err(), "an update over a corrupt file succeeded");
            assert_eq!(snapshot(dir), before, "a refused update changed the home");
        }
        Ok(_) => {
            if let Err(e) = saved {
                panic!("saving a session in a readable home failed: {e}");
            }
            let after =
                home.networks().unwrap_or_else(|e| panic!("wrote what it cannot read: {e}"));
            assert!(after.len() <= MAX_NETWORKS);
            check_networks(&after);
            let found = home.session(&url).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(found, Some(session), "the saved session is not found again");
        }
    }
}

fn check_peer_keys(home: &Home, dir: &Path) {
    let before = snapshot(dir);
    match home.pinned_peer_keys("bob") {
        Err(err) => {
            assert!(
                matches!(&err, HomeError::CorruptPeerKeys { .. } | HomeError::Read { .. }),
                "{err}"
            );
            assert!(home.check_peer_key("bob", 1, "aa").is_err());
            assert_eq!(snapshot(dir), before, "a refused pin changed the home");
        }
        Ok(_) => match home.check_peer_key("bob", 1, "aa") {
            Ok(_) => {
                let pinned = home.pinned_peer_keys("bob").unwrap_or_else(|e| panic!("{e}"));
                assert!(pinned.contains(&(1, "aa".to_owned())), "{pinned:?}");
            }
            Err(PeerKeyError::Changed(_)) => {}
            Err(PeerKeyError::Home(e)) => panic!("pinning in a readable home failed: {e}"),
        },
    }
}

/// Writes one input as the files of a home directory, then makes the CLI's reads and updates;
/// panics when a check fails.
pub fn home_files(data: &[u8]) {
    let dir = dir();
    reset(dir);
    let mut parts = data.split(|&b| b == 0xFF);
    let mut present = [false; FILES.len()];
    for (i, name) in FILES.iter().enumerate() {
        if let Some(part) = parts.next().filter(|p| !p.is_empty()) {
            if fs::write(dir.join(name), part).is_err() {
                return;
            }
            present[i] = true;
        }
    }
    let Ok(home) = Home::open(dir) else { return };
    let original = snapshot(dir);

    let networks = home.networks();
    match &networks {
        Ok(networks) => check_networks(networks),
        Err(err) => check_networks_error(err, present[NETWORKS]),
    }
    if let Err(err) = home.settings() {
        assert!(matches!(err, HomeError::CorruptSettings { .. } | HomeError::Read { .. }), "{err}");
    }
    // A missing key would be created from OS randomness: only read one that is there.
    if present[DEVICE_KEY] {
        match home.device_key() {
            Ok(key) => {
                let text = String::from_utf8_lossy(
                    data.split(|&b| b == 0xFF).nth(DEVICE_KEY).unwrap_or_default(),
                );
                assert_eq!(hex::encode(key.to_bytes()), text.trim().to_ascii_lowercase());
            }
            Err(err) => assert!(
                matches!(err, HomeError::CorruptDeviceKey { .. } | HomeError::Read { .. }),
                "{err}"
            ),
        }
    }
    assert_eq!(snapshot(dir), original, "reading the home changed it");

    check_session_update(&home, dir, networks.map_err(drop));
    check_peer_keys(&home, dir);
}
