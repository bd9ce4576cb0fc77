//! The supernode's configuration: a TOML file (every field optional, unknown fields refused) with
//! command-line flags on top. Defaults are safe on the internet.

mod limits;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use limits::Limits;
use validate::Checker;
pub use validate::{InvalidConfig, Problem};

/// Everything an operator can set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the SQLite database and the generated TLS certificate.
    pub data_dir: PathBuf,
    /// Where clients connect (TLS WebSocket at `/v1/ws`).
    pub listen: SocketAddr,
    /// Where `/healthz` and `/metrics` are served (plain HTTP; keep it private).
    pub admin_listen: SocketAddr,
    /// UDP address of the STUN responder that tells clients their server-reflexive address
    /// (answers Binding requests only; calls never pass through the supernode).
    pub stun_listen: SocketAddr,
    /// PEM certificate chain. With `tls_key`; without both, a self-signed certificate is made in
    /// `data_dir/tls/` on first start.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the generated self-signed certificate.
    pub tls_names: Vec<String>,
    /// Serve plain WebSocket instead of TLS. Only allowed on a loopback address; for tests and
    /// for running behind a TLS-terminating proxy on the same host.
    pub insecure_plaintext: bool,
    /// Serve the web client at `https://HOST:PORT/` on `listen`, next to the WebSocket endpoint
    /// (`--no-web` turns it off: every path but the WebSocket's answers 404).
    pub web: bool,
    /// Load balancers or TLS-passthrough proxies whose PROXY protocol header (v1 or v2) names the
    /// real client: connections from these addresses must start with one, and every per-source
    /// limit counts the address it names. Empty (the default): no header is read from anyone.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Limits that protect the supernode from bad or abusive clients.
    pub limits: Limits,
    /// Session tokens.
    pub sessions: Sessions,
    /// Instant message storage.
    pub messages: Messages,
    /// Call signaling.
    pub calls: Calls,
    /// TURN relays (coturn with `use-auth-secret`) for calls without a direct path.
    pub turn: Turn,
    /// Cluster mode: many supernodes as one network.
    pub cluster: Cluster,
    /// Log filter in `tracing` syntax (`info`, `peerline=debug,warn`); `RUST_LOG` overrides it.
    pub log: String,
}

/// Session token settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    /// Days a session token stays valid after a password login.
    pub token_lifetime_days: u32,
}

/// Message storage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Messages {
    /// Days stored messages are kept; older ones are deleted hourly.
    pub retention_days: u32,
}

/// Call signaling settings. The supernode carries only signaling; media goes peer to peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Calls {
    /// Seconds a call rings before it ends as missed.
    pub ring_timeout_secs: u64,
    /// Most calls (ringing or answered) on this supernode at once.
    pub max_calls: usize,
    /// Most calls one user takes part in at once, over all devices.
    pub max_calls_per_user: usize,
    /// Calls one user may place per minute (sustained; bursts of the same size).
    pub invites_per_minute: f64,
}

impl Default for Calls {
    fn default() -> Self {
        Self {
            ring_timeout_secs: 45,
            max_calls: 200_000,
            max_calls_per_user: 4,
            invites_per_minute: 10.0,
        }
    }
}

/// Cluster mode. Without `database_url` and `nats_url` the supernode runs alone on SQLite with
/// an in-process bus; with both, it is one of many supernodes sharing one PostgreSQL and one NATS.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// This supernode's id in the network: unique, `[a-z0-9-]`, 1 to 32 characters.
    pub node_id: String,
    /// `postgres://user:password@host:port/database`; absent: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// `nats://host:port` of the bus between supernodes; absent: this supernode is alone.
    pub nats_url: Option<String>,
    /// The network's name: supernodes on one bus with different names never hear each other.
    pub network: String,
    /// Client URLs of the network's supernodes (`wss://host:port`), told to clients at login
    /// so they know where to go if this one fails.
    pub supernodes: Vec<String>,
    /// Groups the bus splits users into: a supernode holds one NATS subscription per group it
    /// has users in. Every supernode of a network must use the same number.
    pub user_shards: u32,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            node_id: "sn1".into(),
            database_url: None,
            nats_url: None,
            network: "peerline".into(),
            supernodes: Vec::new(),
            user_shards: peerline_bus::DEFAULT_USER_SHARDS,
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .field("database_url", &self.database_url.as_deref().map(redact_url))
            .field("nats_url", &self.nats_url.as_deref().map(redact_url))
            .field("network", &self.network)
            .field("supernodes", &self.supernodes)
            .field("user_shards", &self.user_shards)
            .finish()
    }
}

/// A URL with any password replaced, for logs and errors. In a `nats://` URL a user part
/// without a password is a token (`nats://TOKEN@host`), so it is replaced too.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let (prefix, rest) = (&url[..scheme + 3], &url[at..]);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{prefix}{user}:{REDACTED}{rest}"),
                None if url.starts_with("nats://") => format!("{prefix}{REDACTED}{rest}"),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// TURN relay settings: the supernode hands logged-in users short-lived credentials in the coturn
/// "TURN REST API" scheme; it never relays media itself.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Turn {
    /// The `static-auth-secret` shared with the relays. Never logged.
    pub static_auth_secret: Option<String>,
    /// Relay URLs handed to clients, e.g. `turn:relay.example.org:3478?transport=udp`,
    /// `turns:relay.example.org:443?transport=tcp`.
    pub urls: Vec<String>,
    /// Seconds the credentials stay valid (the relay refuses them afterwards). A user who asks
    /// again while at least half of this is left gets the same credentials, so that one user
    /// holds at most two valid usernames and coturn's `user-quota` counts per user.
    pub credential_lifetime_secs: u64,
    /// `turn_credentials` requests one user may make per minute (sustained; bursts of the same
    /// size); more are answered `rate_limited`.
    pub credentials_per_minute: f64,
}

impl Default for Turn {
    fn default() -> Self {
        Self {
            static_auth_secret: None,
            urls: Vec::new(),
            credential_lifetime_secs: 600,
            credentials_per_minute: 10.0,
        }
    }
}

/// Secrets that ship in examples and must never reach production: the commented value in
/// `deploy/supernode.toml`, the one in `deploy/coturn/turnserver.conf`, and what
/// `--print-config` shows in place of a secret.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "CHANGE-ME-to-the-static-auth-secret-in-turnserver-conf",
    "CHANGE-ME-to-the-secret-in-supernode-toml",
    "the same 32+ random characters as in turnserver.conf",
    REDACTED,
];

/// What `--print-config` and `Debug` show instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether `secret` is an example value rather than one the operator generated.
fn is_placeholder_secret(secret: &str) -> bool {
    let folded = secret.trim().to_ascii_lowercase();
    PLACEHOLDER_SECRETS.iter().any(|p| folded == p.to_ascii_lowercase())
        || ["change-me", "changeme", "change_me"].iter().any(|marker| folded.contains(marker))
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("static_auth_secret", &self.static_auth_secret.as_ref().map(|_| REDACTED))
            .field("urls", &self.urls)
            .field("credential_lifetime_secs", &self.credential_lifetime_secs)
            .field("credentials_per_minute", &self.credentials_per_minute)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./peerline-data"),
            listen: SocketAddr::from(([0, 0, 0, 0], 7443)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            stun_listen: peerline_stun::DEFAULT_LISTEN,
            tls_cert: None,
            tls_key: None,
            tls_names: Vec::new(),
            insecure_plaintext: false,
            web: true,
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            sessions: Sessions::default(),
            messages: Messages::default(),
            calls: Calls::default(),
            turn: Turn::default(),
            cluster: Cluster::default(),
            log: "info".into(),
        }
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self { token_lifetime_days: 30 }
    }
}

impl Default for Messages {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// The configuration with every secret replaced by [`REDACTED`] (the TURN secret, database
    /// and NATS passwords): what `--print-config` shows, so that its output can be pasted into a
    /// bug report.
    pub fn redacted(&self) -> Config {
        let mut shown = self.clone();
        if shown.turn.static_auth_secret.is_some() {
            shown.turn.static_auth_secret = Some(REDACTED.to_owned());
        }
        let cluster = &mut shown.cluster;
        cluster.database_url = cluster.database_url.as_deref().map(redact_url);
        cluster.nats_url = cluster.nats_url.as_deref().map(redact_url);
        shown
    }

    /// Checks every field against its range (deploy/supernode.toml documents them) and refuses
    /// combinations that would be unsafe or cannot work; every problem is reported at once,
    /// each named by its TOML path.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let mut check = Checker::default();
        self.check_top_level(&mut check);
        self.limits.check(&mut check);
        check.int("sessions.token_lifetime_days", self.sessions.token_lifetime_days, 1, 3650);
        check.int("messages.retention_days", self.messages.retention_days, 1, 3650);
        let calls = &self.calls;
        check.int("calls.ring_timeout_secs", calls.ring_timeout_secs, 1, 600);
        check.int("calls.max_calls", calls.max_calls, 1, 10_000_000);
        check.int("calls.max_calls_per_user", calls.max_calls_per_user, 1, 100);
        check.rate("calls.invites_per_minute", calls.invites_per_minute, 1_000_000.0);
        self.check_turn(&mut check);
        self.check_cluster(&mut check);
        check.finish()
    }

    fn check_top_level(&self, check: &mut Checker) {
        if self.data_dir.as_os_str().is_empty() {
            check.fail("data_dir", "is empty; must name a directory (e.g. /var/lib/peerline)");
        }
        if self.insecure_plaintext && !self.listen.ip().is_loopback() {
            check.fail(
                "insecure_plaintext",
                format!(
                    "is only allowed on a loopback address, not {}; remove --insecure-plaintext \
                     or listen on 127.0.0.1",
                    self.listen
                ),
            );
        }
        if self.listen.port() != 0 && self.listen == self.admin_listen {
            check.fail("admin_listen", format!("is {}, the same address as listen", self.listen));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let missing = if self.tls_cert.is_some() { "tls_key" } else { "tls_cert" };
            check.fail(missing, "is missing: tls_cert and tls_key must be given together");
        }
        for name in &self.tls_names {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-:*".contains(c));
            if !ok {
                check.fail(
                    "tls_names",
                    format!("entry {name:?} must be a DNS name or an IP address"),
                );
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            check.fail("log", format!("{:?} is not a log filter ({e}); e.g. \"info\"", self.log));
        }
    }

    fn check_turn(&self, check: &mut Checker) {
        let turn = &self.turn;
        if turn.static_auth_secret.as_deref().is_some_and(is_placeholder_secret) {
            check.fail(
                "turn.static_auth_secret",
                "is still the example value; generate a secret with `openssl rand -hex 32` and \
                 set it both as turn.static_auth_secret here and as static-auth-secret in the \
                 relays' turnserver.conf",
            );
        } else if !turn.urls.is_empty()
            && turn.static_auth_secret.as_deref().unwrap_or("").len() < 16
        {
            check.fail(
                "turn.static_auth_secret",
                "must be set (at least 16 characters, the same as coturn's static-auth-secret) \
                 when turn.urls is",
            );
        }
        for url in turn.urls.iter().filter(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            check.fail("turn.urls", format!("entry {url:?} must start with turn: or turns:"));
        }
        check.int("turn.credential_lifetime_secs", turn.credential_lifetime_secs, 60, 86_400);
        check.float("turn.credentials_per_minute", turn.credentials_per_minute, 1.0, 10_000.0);
    }

    fn check_cluster(&self, check: &mut Checker) {
        let c = &self.cluster;
        if !peerline_bus::valid_node_id(&c.node_id) {
            let what = format!("{:?} must be 1 to 32 characters of a-z 0-9 -", c.node_id);
            check.fail("cluster.node_id", what);
        }
        if !(1..=65_536).contains(&c.user_shards) {
            check.fail(
                "cluster.user_shards",
                format!("is {}; must be between 1 and 65536", c.user_shards),
            );
        }
        if !peerline_bus::valid_node_id(&c.network) {
            let what = format!("{:?} must be 1 to 32 characters of a-z 0-9 -", c.network);
            check.fail("cluster.network", what);
        }
        if let Some(url) = &c.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            let what = format!("must start with postgres:// (got {})", redact_url(url));
            check.fail("cluster.database_url", what);
        }
        if let Some(url) = &c.nats_url
            && !url.starts_with("nats://")
        {
            let what = format!("must start with nats:// (got {})", redact_url(url));
            check.fail("cluster.nats_url", what);
        }
        if c.nats_url.is_some() && c.database_url.is_none() {
            check.fail(
                "cluster.database_url",
                "is needed with cluster.nats_url: supernodes of one network must share one \
                 PostgreSQL database (SQLite is one supernode's own)",
            );
        }
        for url in
            c.supernodes.iter().filter(|u| !(u.starts_with("wss://") || u.starts_with("ws://")))
        {
            check.fail("cluster.supernodes", format!("entry {url:?} must start with wss://"));
        }
    }

    /// The heartbeat timeout as a duration.
    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.heartbeat_timeout_secs)
    }

    /// Path of the SQLite database.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("peerline.db")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_config_parses_and_unknown_fields_are_refused() {
        let example = include_str!("../../../deploy/supernode.toml");
        let config: Config = toml::from_str(example).unwrap();
        config.validate().unwrap();
        let err = toml::from_str::<Config>("listen = \"127.0.0.1:1\"\nlisen = 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn cluster_settings_are_checked_and_urls_keep_their_passwords_out_of_logs() {
        let mut c = Config::default();
        c.cluster.nats_url = Some("nats://127.0.0.1:4222".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("database_url"), "a shared database is required: {err}");
        c.cluster.database_url = Some("postgres://peerline:s3cret@db:5432/peerline".into());
        c.validate().unwrap();
        c.cluster.node_id = "Node 1".into();
        assert!(c.validate().is_err(), "node ids are a-z 0-9 -");
        c.cluster.node_id = "sn-2".into();
        c.cluster.database_url = Some("mysql://x".into());
        assert!(c.validate().is_err());
        let shown = format!(
            "{:?}",
            Config {
                cluster: Cluster {
                    database_url: Some("postgres://peerline:s3cret@db:5432/peerline".into()),
                    ..Cluster::default()
                },
                ..Config::default()
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(redact_url("postgres://u:p@h/d"), "postgres://u:<redacted>@h/d");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn plaintext_needs_loopback() {
        let mut c = Config { insecure_plaintext: true, ..Config::default() };
        assert!(c.validate().is_err());
        c.listen = "127.0.0.1:7443".parse().unwrap();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn relays_need_a_secret_and_turn_urls_and_the_secret_stays_out_of_debug() {
        let mut c = Config::default();
        c.turn.urls = vec!["turn:relay.example.org:3478".into()];
        assert!(c.validate().is_err(), "urls without a secret");
        c.turn.static_auth_secret = Some("0123456789abcdef-secret".into());
        assert!(c.validate().is_ok());
        c.turn.urls.push("http://relay.example.org".into());
        assert!(c.validate().is_err(), "not a turn: URL");
        c.turn.urls.pop();
        c.turn.credential_lifetime_secs = 5;
        assert!(c.validate().is_err(), "lifetime too short");
        assert!(!format!("{c:?}").contains("0123456789abcdef-secret"));
    }

    /// The example secrets (uncommented in supernode.toml, copied from turnserver.conf, or
    /// pasted back from `--print-config`) stop the supernode at start, with how to make one.
    #[test]
    fn placeholder_turn_secrets_are_refused_with_how_to_make_one() {
        let example = include_str!("../../../deploy/supernode.toml");
        let uncommented = example.replace("# static_auth_secret = ", "static_auth_secret = ");
        assert_ne!(uncommented, example, "the example shows static_auth_secret commented out");
        let config: Config = toml::from_str(&uncommented).unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("turn.static_auth_secret"), "names the field: {err}");
        assert!(err.contains("openssl rand -hex 32"), "says how to make one: {err}");

        let coturn = include_str!("../../../deploy/coturn/turnserver.conf");
        let coturn_secret = coturn
            .lines()
            .find_map(|l| l.strip_prefix("static-auth-secret="))
            .expect("turnserver.conf ships a static-auth-secret line");
        let mut c = Config::default();
        c.turn.urls = vec!["turn:relay.example.org:3478".into()];
        for placeholder in [coturn_secret, REDACTED, "ChangeMe-0123456789abcdef0123456789"] {
            c.turn.static_auth_secret = Some(placeholder.into());
            assert!(c.validate().is_err(), "{placeholder:?} must be refused");
        }
        c.turn.static_auth_secret =
            Some("5f0c2b9e8d7a6c4b3a29180f7e6d5c4b3a2918f7e6d5c4b3a29180f7e6d5c4b3".into());
        c.validate().unwrap();
    }

    #[test]
    fn the_redacted_config_keeps_every_secret_out_and_the_rest_in() {
        let mut c = Config::default();
        c.turn.static_auth_secret = Some("turn-secret-0123456789abcdef".into());
        c.turn.urls = vec!["turn:relay.example.org:3478".into()];
        c.cluster.database_url = Some("postgres://peerline:db-pass-42@db:5432/peerline".into());
        c.cluster.nats_url = Some("nats://nats-token-42@nats:4222".into());
        let shown = toml::to_string_pretty(&c.redacted()).unwrap();
        for secret in ["turn-secret-0123456789abcdef", "db-pass-42", "nats-token-42"] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        let back: Config = toml::from_str(&shown).unwrap();
        assert_eq!(back.turn.static_auth_secret.as_deref(), Some(REDACTED));
        assert_eq!(back.turn.urls, c.turn.urls);
        assert_eq!(
            back.cluster.database_url.as_deref(),
            Some("postgres://peerline:<redacted>@db:5432/peerline")
        );
        assert_eq!(back.cluster.nats_url.as_deref(), Some("nats://<redacted>@nats:4222"));
        assert!(back.validate().is_err(), "a printed config cannot start a relay-using node");
    }
}
