//! `peerline-supernode`: parse flags and config, start the server, stop on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use peerline_supernode::{Config, Supernode};
use tracing_subscriber::EnvFilter;

/// A Peerline supernode: lets users register, log in, find one another, see each other's
/// presence and exchange instant messages. Calls never pass through it.
///
/// With no options it keeps its data in ./peerline-data, creates a self-signed TLS certificate
/// there on first start (its fingerprint is printed; clients pin it), listens for clients on
/// 0.0.0.0:7443 and serves /healthz and /metrics on 127.0.0.1:7480.
#[derive(Debug, Parser)]
#[command(name = "peerline-supernode", version)]
struct Args {
    /// TOML config file (see deploy/supernode.toml for every field); flags override it.
    #[arg(long, env = "PEERLINE_SUPERNODE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the database and the generated certificate [default: ./peerline-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Client address (TLS WebSocket) [default: 0.0.0.0:7443].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin address for /healthz and /metrics, plain HTTP [default: 127.0.0.1:7480].
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// UDP address of the STUN responder [default: 0.0.0.0:3478].
    #[arg(long)]
    stun_listen: Option<SocketAddr>,
    /// PEM certificate chain to use instead of the generated self-signed one (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain WebSocket without TLS; refused unless --listen is a loopback address.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Close connections silent for this many seconds [default: 60].
    #[arg(long)]
    heartbeat_timeout_secs: Option<u64>,
    /// Keep instant messages this many days [default: 90].
    #[arg(long)]
    message_retention_days: Option<u32>,
    /// This supernode's id in a cluster (unique; a-z 0-9 -) [default: sn1].
    #[arg(long, env = "PEERLINE_NODE_ID")]
    node_id: Option<String>,
    /// PostgreSQL shared by the cluster, `postgres://user:password@host/db` [default: SQLite in
    /// the data dir].
    #[arg(long, env = "PEERLINE_DATABASE_URL")]
    database_url: Option<String>,
    /// NATS bus between the cluster's supernodes, `nats://host:4222` [default: none, alone].
    #[arg(long, env = "PEERLINE_NATS_URL")]
    nats_url: Option<String>,
    /// Log filter, e.g. `info` or `peerline_supernode=debug` [default: info]; RUST_LOG wins.
    #[arg(long)]
    log: Option<String>,
    /// Print the effective configuration as TOML and exit; secrets (the TURN secret, database and
    /// NATS passwords) are shown as "<redacted>".
    #[arg(long)]
    print_config: bool,
}

impl Args {
    fn into_config(self) -> anyhow::Result<(Config, bool)> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.stun_listen {
            c.stun_listen = v;
        }
        if let Some(v) = self.admin_listen {
            c.admin_listen = v;
        }
        if let Some(v) = self.tls_cert {
            c.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            c.tls_key = Some(v);
        }
        if self.insecure_plaintext {
            c.insecure_plaintext = true;
        }
        if let Some(v) = self.heartbeat_timeout_secs {
            c.limits.heartbeat_timeout_secs = v;
        }
        if let Some(v) = self.message_retention_days {
            c.messages.retention_days = v;
        }
        if let Some(v) = self.node_id {
            c.cluster.node_id = v;
        }
        if let Some(v) = self.database_url {
            c.cluster.database_url = Some(v);
        }
        if let Some(v) = self.nats_url {
            c.cluster.nats_url = Some(v);
        }
        if let Some(v) = self.log {
            c.log = v;
        }
        Ok((c, self.print_config))
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (config, print_config) = Args::parse().into_config()?;
    if print_config {
        // Printed configs end up in bug reports and terminals' scrollback: never the secrets.
        print!("{}", toml::to_string_pretty(&config.redacted()).context("rendering config")?);
        return Ok(());
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .context("invalid log filter")?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let node = Supernode::bind(config).await?;
    if let Some(tls) = node.tls() {
        let note = if tls.created { "created self-signed certificate" } else { "certificate" };
        println!("{note} {}", tls.cert_path.display());
        println!("TLS certificate SHA-256 fingerprint: {}", tls.fingerprint);
    } else {
        println!("WARNING: plain WebSocket without TLS (--insecure-plaintext), loopback only");
    }
    println!("listening on {}", node.client_url());
    println!("admin on http://{}", node.admin_addr());
    println!("stun on udp://{}", node.stun_addr());
    node.run(shutdown_signal()).await
}
