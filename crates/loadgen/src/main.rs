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
use peerline_loadgen::{calls, hold, login, procfs, register, seed, storm};
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
    /// Connect saved users as light clients (the real client's failover policy) spread over the
    /// given supernodes, wait while one supernode is killed, and report how long the clients it
    /// dropped took to be back online elsewhere (50/90/99/100 %), optionally as CSV and PNG.
    Storm(StormArgs),
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
