//! `peerline-supernode`: parse flags and config, start the server, reload its TLS certificate
//! on SIGHUP, stop on SIGTERM/SIGINT. Also prints shell completions and its man page, and imports
//! accounts and contacts in bulk (`import`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use peerline_supernode::tls::TlsReloader;
use peerline_supernode::{Config, Supernode};
use tracing_subscriber::EnvFilter;

/// `peerline-supernode import`: bulk provisioning of accounts and contacts.
mod import;

/// A Peerline supernode: lets users register, log in, find one another, see each other's
/// presence and exchange instant messages. Calls never pass through it.
///
/// With no options it keeps its data in ./peerline-data, creates a self-signed TLS certificate
/// there on first start (its fingerprint is printed; clients pin it), listens for clients on
/// 0.0.0.0:7443 and serves /healthz and /metrics on 127.0.0.1:7480. SIGHUP reloads the TLS
/// certificate and key (open connections keep theirs); SIGTERM drains and stops.
#[derive(Debug, Parser)]
#[command(name = "peerline-supernode", version)]
struct Args {
    /// Something other than serving.
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Do not serve the web client on the client address (only the WebSocket endpoint).
    #[arg(long)]
    no_web: bool,
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
    /// Check the effective configuration, print it as TOML and exit (non-zero, with every
    /// problem, if it is invalid); secrets (the TURN secret, database and NATS passwords) are
    /// shown as "<redacted>".
    #[arg(long)]
    print_config: bool,
}

/// What the supernode can do besides serving.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print a shell completion script, e.g. `peerline-supernode completions bash >
    /// /etc/bash_completion.d/peerline-supernode`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `peerline-supernode manpage | man -l -`.
    #[command(hide = true)]
    Manpage,
    /// Import accounts (with devices and session tokens) and accepted contact pairs from a JSON
    /// Lines file into the configured store (SQLite in the data dir, or the cluster's
    /// PostgreSQL); see docs/operations.md for the format. Every line is checked first: any
    /// problem is listed with its line number and nothing is written.
    Import(ImportArgs),
}

/// `import`'s options.
#[derive(Debug, clap::Args)]
struct ImportArgs {
    /// The JSON Lines file, or `-` for standard input.
    file: PathBuf,
    /// Check every line (and the store: existing usernames, contacts that must exist) and say
    /// what would be imported, without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// What to do about a username that is already an account: skip it (its contact pairs are
    /// still written) and count it, or fail before writing anything.
    #[arg(long, value_enum, default_value = "fail")]
    existing: import::Existing,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Batches (1,000 accounts, or 1,000 contact pairs, each one transaction) written at once;
    /// more than one helps PostgreSQL, SQLite writes one at a time anyway.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// TOML config file, as for serving (overrides the one before `import`).
    #[arg(long = "config", value_name = "CONFIG")]
    import_config: Option<PathBuf>,
    /// Data dir, as for serving (overrides the one before `import`).
    #[arg(long = "data-dir", value_name = "DATA_DIR")]
    import_data_dir: Option<PathBuf>,
    /// PostgreSQL URL, as for serving (overrides the one before `import`).
    #[arg(long = "database-url", value_name = "DATABASE_URL")]
    import_database_url: Option<String>,
}

/// Runs `import`: the same config, data dir and database as serving would use.
async fn run_import(mut args: Args, import_args: ImportArgs) -> anyhow::Result<()> {
    if let Some(v) = import_args.import_config {
        args.config = Some(v);
    }
    if let Some(v) = import_args.import_data_dir {
        args.data_dir = Some(v);
    }
    if let Some(v) = import_args.import_database_url {
        args.database_url = Some(v);
    }
    let (config, _) = args.into_config()?;
    config.validate()?;
    // Warnings of the store (a failed checkpoint) on stderr, nothing chattier.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let options = import::ImportOptions {
        dry_run: import_args.dry_run,
        existing: import_args.existing,
        progress: std::io::stderr().is_terminal(),
        jobs: import_args.jobs as usize,
    };
    let path = &import_args.file;
    let report = if path.as_os_str() == "-" {
        let input = std::io::BufReader::new(std::io::stdin());
        import::run(&config, input, None, &options).await?
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening the import file {}", path.display()))?;
        let len = file.metadata().ok().map(|m| m.len());
        let input = std::io::BufReader::with_capacity(1 << 20, file);
        import::run(&config, input, len, &options).await?
    };
    let text = if import_args.json {
        serde_json::to_string(&report).context("encoding the report")?
    } else {
        report.to_string()
    };
    write_stdout(format!("{text}\n").as_bytes())
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
        if self.no_web {
            c.web = false;
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

/// Writes `text` to stdout. A closed stdout (`| head -1`, a reader that went away) ends the
/// output quietly instead of panicking the way `print!` does on EPIPE.
fn write_stdout(text: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing stdout"),
        _ => Ok(()),
    }
}

/// A line about the running supernode for whoever started it. Serving matters more than being
/// heard: a stdout that fails (closed, full disk) does not stop the supernode.
fn say(line: &str) {
    let _ = write_stdout(format!("{line}\n").as_bytes());
}

/// Prints what a subcommand asks for.
fn run_command(command: Command) -> anyhow::Result<()> {
    let mut cli = Args::command();
    let mut out = Vec::new();
    match command {
        // Into a buffer first: the generators panic on a failed write.
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut cli, "peerline-supernode", &mut out);
        }
        Command::Manpage => {
            clap_mangen::Man::new(cli).render(&mut out).context("rendering the man page")?;
        }
        Command::Import(_) => anyhow::bail!("import runs on the async runtime"),
    }
    write_stdout(&out)
}

/// Reloads the TLS certificate and key at each SIGHUP. A certificate that does not load keeps
/// the one in use, and says why.
async fn reload_on_sighup(reloader: Option<TlsReloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificate reloads need a restart");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let Some(reloader) = &reloader else {
            tracing::info!("SIGHUP: no TLS certificate to reload (plain WebSocket)");
            continue;
        };
        match reloader.reload() {
            Ok(fingerprint) => {
                tracing::info!(%fingerprint, "SIGHUP: reloaded the TLS certificate for new connections");
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "SIGHUP: the TLS certificate did not load; still serving the previous one"
            ),
        }
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
    let mut args = Args::parse();
    if let Some(command) = args.command.take() {
        if let Command::Import(import_args) = command {
            return run_import(args, import_args).await;
        }
        return run_command(command);
    }
    let (config, print_config) = args.into_config()?;
    if print_config {
        // A printed config is one that would start: the same checks, the same messages.
        config.validate()?;
        // Printed configs end up in bug reports and terminals' scrollback: never the secrets.
        let text = toml::to_string_pretty(&config.redacted()).context("rendering config")?;
        return write_stdout(text.as_bytes());
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .context("invalid log filter")?;
    // Colour codes only for a person at a terminal: in journald or a log file they are noise.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let web = config.web;
    let node = Supernode::bind(config).await?;
    if let Some(tls) = node.tls() {
        let note = if tls.created { "created self-signed certificate" } else { "certificate" };
        say(&format!("{note} {}", tls.cert_path.display()));
        say(&format!("TLS certificate SHA-256 fingerprint: {}", tls.fingerprint));
    } else {
        say("WARNING: plain WebSocket without TLS (--insecure-plaintext), loopback only");
    }
    say(&format!("listening on {}", node.client_url()));
    if web {
        // The same address: wss://… serves the app as https://…, ws:// as http://.
        say(&format!("web client on {}/", node.client_url().replacen("ws", "http", 1)));
    }
    say(&format!("admin on http://{}", node.admin_addr()));
    say(&format!("stun on udp://{}", node.stun_addr()));
    tokio::spawn(reload_on_sighup(node.tls_reloader()));
    node.run(shutdown_signal()).await
}
