//! Secrets in the supernode binary's output and at start: `--print-config` never prints the TURN
//! secret or the database and NATS passwords, and the example TURN secret shipped in
//! `deploy/supernode.toml` stops the supernode before it writes or binds anything.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use peerline_supernode::Config;

const TURN_SECRET: &str = "9f3c61d2a8b74e05c1d2e3f4a5b6c7d8-turn";
const DB_PASSWORD: &str = "db-pass-5e7a1c";
const NATS_TOKEN: &str = "nats-token-0b9d4f";

/// Runs the supernode binary with `args` and without the environment variables it reads, so
/// that only the test's config counts; fails the test if it runs for more than 20 s.
fn supernode(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerline-supernode"))
        .args(args)
        .env_remove("PEERLINE_SUPERNODE_CONFIG")
        .env_remove("PEERLINE_NODE_ID")
        .env_remove("PEERLINE_DATABASE_URL")
        .env_remove("PEERLINE_NATS_URL")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting peerline-supernode");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("peerline-supernode {args:?} was still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn print_config_shows_every_setting_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir.path().join("supernode.toml"),
        &format!(
            "[turn]\nstatic_auth_secret = \"{TURN_SECRET}\"\n\
             urls = [\"turn:relay.example.org:3478?transport=udp\"]\n\
             [cluster]\ndatabase_url = \"postgres://peerline:{DB_PASSWORD}@db.example.org/peerline\"\n\
             nats_url = \"nats://{NATS_TOKEN}@nats.example.org:4222\"\n"
        ),
    );
    let out = supernode(&["--config", &config, "--print-config"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for secret in [TURN_SECRET, DB_PASSWORD, NATS_TOKEN] {
        assert!(!stdout.contains(secret), "--print-config shows {secret}:\n{stdout}");
    }
    let shown: Config = toml::from_str(&stdout).expect("--print-config prints TOML");
    assert_eq!(shown.turn.static_auth_secret.as_deref(), Some("<redacted>"));
    assert_eq!(shown.turn.urls, ["turn:relay.example.org:3478?transport=udp"]);
    assert_eq!(
        shown.cluster.database_url.as_deref(),
        Some("postgres://peerline:<redacted>@db.example.org/peerline")
    );
    assert_eq!(shown.cluster.nats_url.as_deref(), Some("nats://<redacted>@nats.example.org:4222"));
}

#[test]
fn the_example_turn_secret_stops_the_supernode_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let example = include_str!("../../../deploy/supernode.toml");
    // What an operator gets by uncommenting the line without changing the value.
    let uncommented = example.replace("# static_auth_secret = ", "static_auth_secret = ");
    assert_ne!(uncommented, example, "the example shows static_auth_secret commented out");
    let config = write(&dir.path().join("supernode.toml"), &uncommented);
    let data_dir = dir.path().join("data");
    let out = supernode(&[
        "--config",
        &config,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--stun-listen",
        "127.0.0.1:0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with the example secret:\n{stderr}");
    assert!(stderr.contains("turn.static_auth_secret"), "names the field:\n{stderr}");
    assert!(stderr.contains("openssl rand -hex 32"), "says how to make one:\n{stderr}");
    assert!(!data_dir.exists(), "refused before creating anything");
}
