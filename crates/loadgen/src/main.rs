//! `peerline-loadgen`: puts local Peerline supernodes under load and says how they coped —
//! registrations per second, logins per second with latencies, memory per idle logged-in user,
//! calls, and how fast a reconnect storm settles after a supernode dies. Every run is bounded in
//! count and time and only ever targets loopback supernodes.
//!
//! The subcommands live in the library (`peerline_loadgen::{register, login, hold, calls, seed,
//! storm}`); this file parses flags and prints reports.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use peerline_loadgen::dial::Dialer;
use peerline_loadgen::source_addrs::SourceAddrs;
use peerline_loadgen::state_file::StateFile;
use peerline_loadgen::{calls, hold, login, procfs, register, run, seed, storm};
use serde::Serialize;

/// The password `register` gives every load-test user.
const DEFAULT_PASSWORD: &str = "loadtest-password";
/// File descriptors the load generator keeps for itself besides one per connection.
const SPARE_FDS: u64 = 100;

/// Load generator for a Peerline supernode on this machine.
///
/// Typical sequence: `register` once (slow: two Argon2id hashes per user), then `login` and
/// `hold` as often as needed with the saved tokens.
#[derive(Debug, Parser)]
#[command(name = "peerline-loadgen", version)]
struct Cli {
    /// Print one JSON object with the results on stdout (the human summary goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register users PREFIX0..PREFIX{N-1}, then log each in once with the password and save its
    /// session token and device key in the state file. Reports registrations per second.
    Register(RegisterArgs),
    /// Log saved users in (token by default, or password), each on a new connection, then
    /// disconnect. Reports logins per second and latency percentiles.
    Login(LoginArgs),
    /// Log saved users in by token at a fixed rate and keep them connected and pinging for a
    /// while. Reports how many stayed connected and, with --supernode-pid, the supernode's memory
    /// per connected user.
    Hold(HoldArgs),
    /// The comparison for `hold`: TLS WebSocket clients of a nats-server (its `websocket`
    /// port), connected at the same rate, pinging at the same interval and measured the same
    /// way (login = NATS handshake: INFO, CONNECT, PING → PONG).
    HoldNats(HoldNatsArgs),
    /// Calls between fresh users through the supernode, with the client library on both ends:
    /// setup times of sequential calls A→B (dial → ringing, connected, first audio), or with
    /// --concurrent the CPU of this process per active call. Always prints the JSON report on
    /// stdout too (the summary then goes to stderr).
    Calls(CallsArgs),
    /// Create users straight in a cluster's PostgreSQL (account, device key, session token
    /// each; thousands per second) and add them to the state file, for `storm` and `hold`
    /// without an hour of Argon2. Their logins stay real token logins.
    Seed(SeedArgs),
    /// Create N users, each with a device key, a session token and 20 accepted contacts (the
    /// roster ring), through the operator's bulk path: write a `peerline-supernode import` file
    /// and run the import (SQLite data dir, or a cluster's PostgreSQL), or only write the file
    /// with --import-file. Tokens and device keys go to the state file.
    Provision(ProvisionArgs),
    /// Connect saved users as light clients (the real client's failover policy) spread over the
    /// given supernodes, wait while one supernode is killed, and report how long the clients it
    /// dropped took to be back online elsewhere (50/90/99/100 %), optionally as CSV and PNG.
    Storm(StormArgs),
    /// STUN Binding requests at a target rate against any STUN server on this machine (the
    /// supernode's responder, coturn...), from several UDP sockets: sent, answered, lost and
    /// wrong answers, latency percentiles, and with --server-pid the server's responses per
    /// second per core of CPU.
    Stun(StunArgs),
    /// Log saved users in at a target rate from several worker processes, hold them with
    /// heartbeats and background activity (messages to contacts, status changes, searches,
    /// call-signaling exchanges), and report the latency of every request kind (p50, p99,
    /// p99.9, max) and the supernodes' memory per user and CPU.
    Run(RunArgs),
    /// One worker process of `run` (started by `run`; its plan comes on stdin).
    #[command(hide = true)]
    RunWorker,
}

#[derive(Debug, Args)]
struct StunArgs {
    /// The STUN server, HOST:PORT on this machine (e.g. 127.0.0.1:3478).
    #[arg(long)]
    server: String,
    /// Binding requests per second, over all sockets.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// UDP sockets, each on the next source address of --source-ips.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4_096))]
    sockets: u32,
    /// Sending threads (the sockets are shared out among them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Source addresses, FIRST-LAST in 127.0.0.0/8, one per socket round robin (an IPv6
    /// server is asked from ::1).
    #[arg(long, default_value = "127.0.1.1-127.0.4.254")]
    source_ips: SourceAddrs,
    /// The server's process id: its CPU time is read before and after, for responses per
    /// second per core.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds to wait for the last answers once sending stops.
    #[arg(long, default_value_t = 1.0)]
    drain: f64,
}

/// Where to connect and from where.
#[derive(Debug, Args)]
struct Target {
    /// The supernode, `wss://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    supernode: String,
    /// Source addresses, FIRST-LAST in 127.0.0.0/8, used round robin: avoids running out of
    /// ephemeral ports and spreads per-address quotas (registrations per address per hour).
    #[arg(long, default_value = "127.0.1.1-127.0.4.254")]
    source_ips: SourceAddrs,
}

#[derive(Debug, Args)]
struct RegisterArgs {
    #[command(flatten)]
    target: Target,
    /// How many users.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Username prefix.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Number of the first user (to add users to an existing set).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// The password every user gets.
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    user_password: String,
    /// State file to add tokens and device keys to.
    #[arg(long)]
    state: PathBuf,
    /// Start no new work after this many seconds.
    #[arg(long, default_value_t = 3600)]
    time_limit_secs: u64,
}

#[derive(Debug, Args)]
struct LoginArgs {
    #[command(flatten)]
    target: Target,
    /// State file written by `register`.
    #[arg(long)]
    state: PathBuf,
    /// How many logins (the first N saved users after --skip).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Skip this many saved users.
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Log in with the password (Argon2id on the supernode) instead of the saved token.
    #[arg(long)]
    password: bool,
    /// The password, with --password.
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    user_password: String,
    /// Start no new login after this many seconds.
    #[arg(long, default_value_t = 600)]
    time_limit_secs: u64,
}

#[derive(Debug, Args)]
struct HoldArgs {
    #[command(flatten)]
    target: Target,
    /// State file written by `register`.
    #[arg(long)]
    state: PathBuf,
    /// How many users to keep connected (one connection, one file descriptor each).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Skip this many saved users (to split users over several load generator processes).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// New connections per second.
    #[arg(long, default_value_t = 500.0)]
    ramp: f64,
    /// Seconds to keep them connected after the ramp (at most a day).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    hold: u64,
    /// The supernode's process id: its VmRSS is read before and after.
    #[arg(long)]
    supernode_pid: Option<u32>,
    /// Seconds between two pings of one connection (default: a third of the supernode's
    /// heartbeat timeout, from its `hello`).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat: Option<u64>,
}

#[derive(Debug, Args)]
struct HoldNatsArgs {
    /// nats-server's WebSocket port, `wss://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    server: String,
    /// Source addresses, FIRST-LAST in 127.0.0.0/8, used round robin.
    #[arg(long, default_value = "127.0.1.1-127.0.4.254")]
    source_ips: SourceAddrs,
    /// How many connections to keep open.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    connections: u32,
    /// The server's authorization token, sent in every CONNECT.
    #[arg(long, env = "PEERLINE_LOADGEN_NATS_TOKEN")]
    token: Option<String>,
    /// New connections per second.
    #[arg(long, default_value_t = 500.0)]
    ramp: f64,
    /// Seconds to keep them connected after the ramp (at most a day).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    hold: u64,
    /// Seconds between two PINGs of one connection.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat: u64,
    /// nats-server's process id: its VmRSS is read before and after.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Debug, Args)]
struct CallsArgs {
    /// The supernode, `wss://127.0.0.1:PORT` (loopback only).
    #[arg(long)]
    supernode: String,
    /// CA file to verify the supernode's certificate with; without it each test user pins the
    /// certificate on first use.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Calls from A to B, one after another.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    calls: u32,
    /// Seconds each call talks (tones both ways) once its media is connected.
    #[arg(long, default_value_t = 1.0)]
    talk_secs: f64,
    /// Instead of sequential calls, hold this many calls at once between as many pairs of
    /// users for --talk-secs, and report the CPU of this process per call (both ends of each
    /// call run here).
    #[arg(long, conflicts_with = "calls", value_parser = clap::value_parser!(u32).range(1..=1_000))]
    concurrent: Option<u32>,
    /// The password the fresh users get.
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    user_password: String,
}

#[derive(Debug, Args)]
struct SeedArgs {
    /// The cluster's database, `postgres://USER@127.0.0.1:PORT/DATABASE` (loopback only).
    #[arg(long)]
    database_url: String,
    /// How many users.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Username prefix.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Number of the first user.
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Users written at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    concurrency: u32,
    /// The password every user gets.
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    user_password: String,
    /// Days the session tokens stay valid (as the supernodes' `sessions.token_lifetime_days`).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3650))]
    token_days: u64,
    /// State file to add tokens and device keys to.
    #[arg(long)]
    state: PathBuf,
}

#[derive(Debug, Args)]
struct ProvisionArgs {
    /// How many users.
    #[arg(value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    users: u32,
    /// Username prefix.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// Number of the first user.
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// The password every user gets.
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    user_password: String,
    /// State file to add tokens and device keys to.
    #[arg(long)]
    state: PathBuf,
    /// Only write the import file here (for `peerline-supernode import`); import nothing.
    #[arg(long, conflicts_with_all = ["supernode_bin", "config", "data_dir", "database_url", "keep_file"])]
    import_file: Option<PathBuf>,
    /// Keep the import file here after importing it.
    #[arg(long)]
    keep_file: Option<PathBuf>,
    /// The `peerline-supernode` binary that imports [default: next to this program].
    #[arg(long)]
    supernode_bin: Option<PathBuf>,
    /// The supernode's config file (passed to `import`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The supernode's data dir (SQLite; passed to `import`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The cluster's database, `postgres://USER@127.0.0.1:PORT/DATABASE` (loopback only; passed
    /// to `import`).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct StormArgs {
    /// A supernode of the network, `wss://127.0.0.1:PORT` (loopback only); repeat for each.
    /// User `i` is given the `i`th, round robin, and learns the others at login.
    #[arg(long = "supernode", required = true)]
    supernodes: Vec<String>,
    /// Source addresses, FIRST-LAST in 127.0.0.0/8, used round robin (one per user).
    #[arg(long, default_value = "127.0.1.1-127.0.4.254")]
    source_ips: SourceAddrs,
    /// State file written by `register` or `seed`.
    #[arg(long)]
    state: PathBuf,
    /// How many users to connect (one connection, one file descriptor each).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Skip this many saved users.
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// New connections per second at the start (keep it under the supernodes' admitted logins
    /// per second, or the first logins are refused and spread by the policy).
    #[arg(long, default_value_t = 200.0)]
    ramp: f64,
    /// Seconds all users may take to be online.
    #[arg(long, default_value_t = 300)]
    connect_secs: u64,
    /// Seconds to wait for a supernode to be killed once all are online.
    #[arg(long, default_value_t = 600)]
    kill_wait_secs: u64,
    /// Seconds after the first drop to wait for the dropped clients at most.
    #[arg(long, default_value_t = 300)]
    recover_secs: u64,
    /// Write the recovery curve as CSV (`seconds,back,share`).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write the recovery curve as a PNG plot.
    #[arg(long)]
    png: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A supernode, `wss://127.0.0.1:PORT` (loopback only); repeat for each. User `i` is given
    /// the `i`th, round robin, and learns the others at login.
    #[arg(long = "supernode", required = true)]
    supernodes: Vec<String>,
    /// Source addresses, FIRST-LAST in 127.0.0.0/8, split between the workers (each source
    /// address has about 28,000 ephemeral ports).
    #[arg(long, default_value = "127.0.1.1-127.0.4.254")]
    source_ips: SourceAddrs,
    /// State file written by `register`, `seed` or `provision`.
    #[arg(long)]
    state: PathBuf,
    /// How many users (the first N saved users after --skip).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Skip this many saved users.
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Users in the contact ring of `provision` (user i's contacts are i±1..i±10 modulo this);
    /// default: every user of the state file.
    #[arg(long)]
    roster_size: Option<usize>,
    /// Worker processes (a process may hold about 19,900 connections); default: one per
    /// 15,000 users.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: Option<u32>,
    /// Logins started per second, in total.
    #[arg(long, default_value_t = 500.0)]
    login_rate: f64,
    /// Seconds a started login may take (with the real client's retries) before it counts as
    /// failed.
    #[arg(long, default_value_t = 120)]
    login_timeout_secs: u64,
    /// Seconds to hold the users once all have logged in (at most a day).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    hold: u64,
    /// Seconds between a user's pings (the supernode closes a connection silent for its
    /// `heartbeat_timeout_secs`; the client pings at least every third of that).
    #[arg(long, default_value_t = 30.0)]
    heartbeat: f64,
    /// Messages per second, in total, each to a contact of the sender.
    #[arg(long, default_value_t = 0.0)]
    message_rate: f64,
    /// Status changes (online, away, busy) per second, in total.
    #[arg(long, default_value_t = 0.0)]
    presence_rate: f64,
    /// Directory searches per second, in total.
    #[arg(long, default_value_t = 0.0)]
    search_rate: f64,
    /// Call-signaling exchanges (signed invite, ringing, signed answer, candidates, hang-up; no
    /// media) per second, in total, between fixed pairs of contacts.
    #[arg(long, default_value_t = 0.0)]
    call_rate: f64,
    /// Seconds a call stays up between the answer and the hang-up.
    #[arg(long, default_value_t = 5.0)]
    call_secs: f64,
    /// Seconds a request may wait for its answer.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Supernode process ids (comma-separated): their RSS before and after, per logged-in
    /// user, and their CPU during the hold.
    #[arg(long, value_delimiter = ',')]
    supernode_pid: Vec<u32>,
}

fn emit<R: Serialize + std::fmt::Display>(report: &R, json: bool) -> anyhow::Result<()> {
    if json {
        eprintln!("{report}");
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

fn check_fd_budget(connections: u64) -> anyhow::Result<()> {
    if let Some(limit) = procfs::open_file_limit()
        && connections + SPARE_FDS > limit
    {
        bail!(
            "{connections} connections need about {} open files but this process may open {limit}; \
             run several load generator processes with --skip (e.g. 2 × --users {} --skip 0/{})",
            connections + SPARE_FDS,
            connections / 2,
            connections / 2
        );
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Register(a) => {
            let dialer =
                Arc::new(Dialer::new(&a.target.supernode, Some(a.target.source_ips)).await?);
            let plan = register::RegisterPlan {
                users: a.users as usize,
                prefix: a.prefix,
                first: a.first,
                concurrency: a.concurrency as usize,
                password: a.user_password,
                state: a.state,
                time_limit: Duration::from_secs(a.time_limit_secs),
            };
            emit(&register::run(dialer, plan).await?, cli.json)
        }
        Command::Login(a) => {
            check_fd_budget(u64::from(a.concurrency))?;
            let users = StateFile::load(&a.state)?.take(a.skip, a.users as usize)?;
            let dialer =
                Arc::new(Dialer::new(&a.target.supernode, Some(a.target.source_ips)).await?);
            let plan = login::LoginPlan {
                users,
                concurrency: a.concurrency as usize,
                password: a.password.then_some(a.user_password),
                time_limit: Duration::from_secs(a.time_limit_secs),
            };
            emit(&login::run(dialer, plan).await, cli.json)
        }
        Command::Hold(a) => {
            if !(a.ramp.is_finite() && a.ramp > 0.0 && a.ramp <= 100_000.0) {
                bail!("--ramp must be between 0 and 100000 connections per second");
            }
            check_fd_budget(u64::from(a.users))?;
            let users = StateFile::load(&a.state)?.take(a.skip, a.users as usize)?;
            let dialer =
                Arc::new(Dialer::new(&a.target.supernode, Some(a.target.source_ips)).await?);
            let plan = hold::HoldPlan {
                who: hold::Who::Peerline(users),
                ramp_per_second: a.ramp,
                hold: Duration::from_secs(a.hold),
                supernode_pid: a.supernode_pid,
                heartbeat: a.heartbeat.map(Duration::from_secs),
            };
            emit(&hold::run(dialer, plan).await?, cli.json)
        }
        Command::HoldNats(a) => {
            if !(a.ramp.is_finite() && a.ramp > 0.0 && a.ramp <= 100_000.0) {
                bail!("--ramp must be between 0 and 100000 connections per second");
            }
            check_fd_budget(u64::from(a.connections))?;
            let dialer = Arc::new(Dialer::new(&a.server, Some(a.source_ips)).await?);
            let plan = hold::HoldPlan {
                who: hold::Who::Nats { count: a.connections as usize, token: a.token },
                ramp_per_second: a.ramp,
                hold: Duration::from_secs(a.hold),
                supernode_pid: a.server_pid,
                heartbeat: Some(Duration::from_secs(a.heartbeat)),
            };
            emit(&hold::run(dialer, plan).await?, cli.json)
        }
        Command::Calls(a) => {
            if !(a.talk_secs.is_finite() && (0.0..=3600.0).contains(&a.talk_secs)) {
                bail!("--talk-secs must be between 0 and 3600");
            }
            calls::check_loopback(&a.supernode).await?;
            let plan = calls::CallsPlan {
                supernode: a.supernode,
                ca_file: a.ca,
                password: a.user_password,
                talk: Duration::from_secs_f64(a.talk_secs),
            };
            match a.concurrent {
                // Per call: two WebSockets and two UDP sockets.
                Some(n) => {
                    check_fd_budget(4 * u64::from(n))?;
                    emit(&calls::run_concurrent(plan, n as usize).await?, true)
                }
                None => emit(&calls::run_sequential(plan, a.calls as usize).await?, true),
            }
        }
        Command::Seed(a) => {
            let mut state = StateFile::load(&a.state)?;
            let plan = seed::SeedPlan {
                database_url: a.database_url,
                prefix: a.prefix,
                first: a.first,
                users: a.users as usize,
                password: a.user_password,
                concurrency: a.concurrency as usize,
                token_lifetime: Duration::from_secs(a.token_days * 86_400),
            };
            let (saved, report) = seed::run(plan).await?;
            for (username, user) in saved {
                state.insert(username, user);
            }
            state.save(&a.state)?;
            emit(&report, cli.json)
        }
        Command::Provision(a) => {
            use peerline_loadgen::provision::{self, Destination, ProvisionPlan};
            let mut state = StateFile::load(&a.state)?;
            let destination = match a.import_file {
                Some(path) => Destination::FileOnly(path),
                None => Destination::Import {
                    supernode_bin: a.supernode_bin.unwrap_or_else(provision::default_supernode_bin),
                    config: a.config,
                    data_dir: a.data_dir,
                    database_url: a.database_url,
                    keep_file: a.keep_file,
                },
            };
            let plan = ProvisionPlan {
                users: a.users as usize,
                prefix: a.prefix,
                first: a.first,
                password: a.user_password,
                destination,
            };
            let (saved, report) = provision::run(plan).await?;
            for (username, user) in saved {
                state.insert(username, user);
            }
            state.save(&a.state)?;
            emit(&report, cli.json)
        }
        Command::Storm(a) => {
            if !(a.ramp.is_finite() && a.ramp > 0.0 && a.ramp <= 100_000.0) {
                bail!("--ramp must be between 0 and 100000 connections per second");
            }
            check_fd_budget(u64::from(a.users))?;
            let plan = storm::StormPlan {
                users: StateFile::load(&a.state)?.take(a.skip, a.users as usize)?,
                supernodes: a.supernodes,
                sources: Some(a.source_ips),
                ramp_per_second: a.ramp,
                connect_limit: Duration::from_secs(a.connect_secs),
                wait_for_kill: Duration::from_secs(a.kill_wait_secs),
                recover_limit: Duration::from_secs(a.recover_secs),
                csv: a.csv,
                png: a.png,
            };
            emit(&storm::run(plan).await?, cli.json)
        }
        Command::Stun(a) => {
            use peerline_loadgen::stun;
            use std::io::IsTerminal;
            use std::net::ToSocketAddrs;
            if !(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 10_000_000.0) {
                bail!("--rate must be between 0 and 10000000 requests per second");
            }
            if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 3_600.0) {
                bail!("--duration must be between 0 and 3600 seconds");
            }
            if !(a.drain.is_finite() && (0.0..=60.0).contains(&a.drain)) {
                bail!("--drain must be between 0 and 60 seconds");
            }
            check_fd_budget(u64::from(a.sockets))?;
            let server = a
                .server
                .to_socket_addrs()
                .map_err(|e| anyhow::anyhow!("--server {}: {e}", a.server))?
                .next()
                .ok_or_else(|| anyhow::anyhow!("--server {}: no address", a.server))?;
            let plan = stun::StunPlan {
                server,
                rate: a.rate,
                duration: Duration::from_secs_f64(a.duration),
                sockets: a.sockets as usize,
                threads: a.threads as usize,
                sources: a.source_ips,
                server_pid: a.server_pid,
                drain: Duration::from_secs_f64(a.drain),
                progress_bar: a.duration > 3.0 && std::io::stderr().is_terminal(),
            };
            let report = tokio::task::spawn_blocking(move || stun::run(&plan)).await??;
            emit(&report, cli.json)
        }
        Command::Run(a) => {
            let rates = [
                ("--login-rate", a.login_rate),
                ("--heartbeat", a.heartbeat),
                ("--message-rate", a.message_rate),
                ("--presence-rate", a.presence_rate),
                ("--search-rate", a.search_rate),
                ("--call-rate", a.call_rate),
                ("--call-secs", a.call_secs),
            ];
            for (flag, v) in rates {
                if !(v.is_finite() && (0.0..=1_000_000.0).contains(&v)) {
                    bail!("{flag} must be between 0 and 1000000");
                }
            }
            if a.login_rate <= 0.0 || a.heartbeat < 1.0 {
                bail!("--login-rate must be above 0 and --heartbeat at least 1 second");
            }
            let users = a.users as usize;
            let plan = run::RunPlan {
                worker_exe: std::env::current_exe()?,
                state: a.state,
                users,
                skip: a.skip,
                roster_size: a.roster_size,
                supernodes: a.supernodes,
                sources: a.source_ips,
                workers: a.workers.map_or(users.div_ceil(15_000).max(1), |w| w as usize),
                login_rate: a.login_rate,
                login_timeout: Duration::from_secs(a.login_timeout_secs),
                hold: Duration::from_secs(a.hold),
                heartbeat: Duration::from_secs_f64(a.heartbeat),
                rates: run::plan::Rates {
                    message: a.message_rate,
                    presence: a.presence_rate,
                    search: a.search_rate,
                    call: a.call_rate,
                },
                call_secs: a.call_secs,
                request_timeout: Duration::from_secs(a.request_timeout_secs.max(1)),
                supernode_pids: a.supernode_pid,
            };
            emit(&run::run(plan).await?, cli.json)
        }
        Command::RunWorker => run::run_worker().await,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Cli::parse()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
