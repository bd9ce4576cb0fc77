//! Capacity of this machine (issue 15): as many logged-in users as asked (100,000 by default) on
//! a cluster of supernode processes sharing one PostgreSQL and one nats-server on loopback, with
//! the release binaries, and the same scenarios against established servers in the same run.
//!
//! - `users`: `peerline-loadgen provision N` (users with 20 accepted contacts each, through the
//!   operator's bulk import), then `peerline-loadgen run` (its workers log everyone in by token
//!   at a target rate, hold them with a ping every 30 s and background activity, and report the
//!   latency of every request kind and the supernodes' memory). While it runs, the supernodes'
//!   `peerline_online_users` and RSS are sampled every second: memory against users.
//! - `storm`: another `run` whose users are all dropped at once (every supernode killed with
//!   SIGKILL and started again); the share of users back online against time is read from the
//!   supernodes' `peerline_online_users` every 100 ms.
//! - `compare`: one supernode process against one nats-server, the same number of TLS WebSocket
//!   connections with the same ramp and ping interval (`hold` against `hold-nats`), and the
//!   connection + login rate of each (the same at a ramp faster than either can serve).
//!
//! One process may hold at most 20,000 open files here, so a supernode process gets at most
//! 17,000 users and the comparison runs at 15,000 connections per server process.
//!
//! ```sh
//! cargo build --release --bins
//! cargo bench -p peerline-loadgen --bench capacity                 # users, storm, compare
//! cargo bench -p peerline-loadgen --bench capacity -- compare      # or users, storm
//! cargo bench -p peerline-loadgen --bench capacity -- replot       # the PNGs again
//! PEERLINE_CAPACITY_USERS=20000 cargo bench -p peerline-loadgen --bench capacity
//! ```
//!
//! Settings (environment): `PEERLINE_CAPACITY_USERS` (100,000), `PEERLINE_CAPACITY_STORM_USERS`
//! (the same), `PEERLINE_CAPACITY_LOGIN_RATE` (300 token logins/s in all: what six supernodes,
//! PostgreSQL, NATS and seven load-generator workers sustain together on two cores without
//! logins timing out; docs/performance.md), `PEERLINE_CAPACITY_HOLD` (120 s).
//!
//! ```sh
//! ```
//!
//! JSON reports, CSVs and PNGs go to `$PEERLINE_BENCH_OUT` (default `target/capacity-bench`); one
//! JSON line per scenario on stdout. A benchmark, never a test: nothing here asserts a figure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use peerline_loadgen::plot::{self, Axes, Series};
use peerline_loadgen::procfs::load_average;
use peerline_loadgen::procfs::rss_bytes;
use peerline_testkit::cluster::TestCluster;
use peerline_testkit::nats_websocket::NatsWebSocket;
use peerline_testkit::{Supernode, bin};
use serde_json::{Value, json};

/// Users one supernode process serves: under its 20,000 open files with room for the store,
/// the bus and the admin port.
const USERS_PER_NODE: usize = 17_000;
/// Connections per server process in the comparison with nats-server.
const COMPARE_CONNECTIONS: usize = 15_000;
/// Every supernode of the run: a ping every 30 s is well inside the 60 s heartbeat timeout.
const HEARTBEAT_SECS: &str = "30";
/// Supernode settings for the runs: admission sized for six processes sharing two cores with
/// the load generator (about 1,500 token logins/s in all), so that logins past what the machine
/// can serve are refused with `retry_after_secs` instead of queued until they time out. With
/// more admitted (5,000/s per process was tried) the processes took every login, each waited
/// longer than the 5 s store-pool timeout, and almost none completed: congestion collapse.
const LIMITS: &str =
    "[limits]\nlogins_per_second = 250.0\nlogin_burst = 500.0\nmax_tls_handshakes = 128\n";

fn users() -> usize {
    std::env::var("PEERLINE_CAPACITY_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

/// Users of the storm (default: as many as `users`).
fn storm_users() -> usize {
    std::env::var("PEERLINE_CAPACITY_STORM_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(users)
}

/// Token logins per second the run asks for (all supernodes together).
fn login_rate() -> String {
    std::env::var("PEERLINE_CAPACITY_LOGIN_RATE").unwrap_or_else(|_| "300".into())
}

fn hold_secs() -> u64 {
    std::env::var("PEERLINE_CAPACITY_HOLD").ok().and_then(|v| v.parse().ok()).unwrap_or(120)
}

fn out_dir() -> PathBuf {
    let dir = std::env::var_os("PEERLINE_BENCH_OUT")
        .map_or_else(|| bin("peerline-loadgen").with_file_name("../capacity-bench"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("creating the output directory");
    dir
}

/// Runs the load generator with `--json`, its stderr passed through with a prefix; returns its
/// report.
fn loadgen(tag: &str, args: &[String]) -> anyhow::Result<Value> {
    let child = Command::new(bin("peerline-loadgen"))
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting peerline-loadgen")?;
    finish(tag, child, |_| {})
}

/// Passes a child's stderr through (calling `on_line` for each line), then parses its stdout.
fn finish(tag: &str, mut child: Child, mut on_line: impl FnMut(&str)) -> anyhow::Result<Value> {
    let stderr = child.stderr.take().context("stderr")?;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        eprintln!("[{tag}] {line}");
        on_line(&line);
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("peerline-loadgen {tag} failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{tag}: no JSON report"))
}

fn write_json(name: &str, value: &Value) -> anyhow::Result<()> {
    std::fs::write(out_dir().join(format!("{name}.json")), serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

/// Sum of `peerline_online_users` over the running nodes (a node that does not answer counts 0).
fn online(urls: &[String]) -> f64 {
    urls.iter()
        .map(|u| {
            std::process::Command::new("curl")
                .args(["-s", "--max-time", "1", u])
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .find(|l| l.starts_with("peerline_online_users "))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                })
                .unwrap_or(0.0)
        })
        .sum()
}

fn metrics_urls(cluster: &TestCluster) -> Vec<String> {
    cluster.nodes().iter().map(|n| format!("{}/metrics", n.admin_url)).collect()
}

/// Samples `(seconds, online users, RSS of all nodes)` every `every` until `stop`.
fn sampler(
    urls: Vec<String>,
    pids: Vec<u32>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(f64, f64, u64)>> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let rss = pids.iter().filter_map(|p| rss_bytes(*p).ok()).sum();
            samples.push((started.elapsed().as_secs_f64(), online(&urls), rss));
            std::thread::sleep(every);
        }
        samples
    })
}

fn run_args(cluster: &TestCluster, state: &Path, n: usize, hold: u64, pids: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into()];
    for i in 0..cluster.nodes().len() {
        args.extend(["--supernode".into(), cluster.url(i).to_owned()]);
    }
    args.extend(
        [
            "--state",
            state.to_str().expect("utf-8 path"),
            "--users",
            &n.to_string(),
            "--login-rate",
            &login_rate(),
            "--hold",
            &hold.to_string(),
            "--heartbeat",
            HEARTBEAT_SECS,
            // Per user: a message every ~8 minutes, a status change every ~30 minutes, a search
            // every ~80 minutes, a call every ~80 minutes (of 100,000 users).
            "--message-rate",
            &(n as f64 / 500.0).to_string(),
            "--presence-rate",
            &(n as f64 / 2000.0).to_string(),
            "--search-rate",
            &(n as f64 / 5000.0).to_string(),
            "--call-rate",
            &(n as f64 / 5000.0).to_string(),
        ]
        .map(String::from),
    );
    if pids {
        let pids: Vec<String> =
            (0..cluster.nodes().len()).map(|i| cluster.pid(i).to_string()).collect();
        args.extend(["--supernode-pid".into(), pids.join(",")]);
    }
    args
}

/// A cluster big enough for `n` users, with `n` provisioned users in `state`.
fn provisioned_cluster(n: usize, tag: &str) -> anyhow::Result<(TestCluster, PathBuf, Value)> {
    let nodes = n.div_ceil(USERS_PER_NODE).max(1);
    eprintln!("[{tag}] starting PostgreSQL, nats-server and {nodes} supernodes");
    let cluster = TestCluster::start_with(nodes, LIMITS)?;
    let state = out_dir().join(format!("{tag}-users.json"));
    let _ = std::fs::remove_file(&state);
    let provision = loadgen(
        &format!("{tag}/provision"),
        &[
            "provision".into(),
            n.to_string(),
            "--state".into(),
            state.to_str().expect("utf-8 path").into(),
            "--database-url".into(),
            cluster.database_url(),
        ],
    )?;
    Ok((cluster, state, provision))
}

/// Provision, log in, hold: memory per user, logins per second, request latencies.
fn users_scenario() -> anyhow::Result<Value> {
    let n = users();
    let (cluster, state, provision) = provisioned_cluster(n, "users")?;
    let pids: Vec<u32> = (0..cluster.nodes().len()).map(|i| cluster.pid(i)).collect();
    let base_rss: u64 = pids.iter().filter_map(|p| rss_bytes(*p).ok()).sum();
    let stop = Arc::new(AtomicBool::new(false));
    let samples =
        sampler(metrics_urls(&cluster), pids.clone(), Duration::from_secs(1), stop.clone());
    let load_before = load_average();
    let run = loadgen("users/run", &run_args(&cluster, &state, n, hold_secs(), true));
    stop.store(true, Ordering::Relaxed);
    let samples = samples.join().map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
    let mut run = run?;

    let csv: String = std::iter::once("seconds,online_users,rss_bytes\n".to_owned())
        .chain(samples.iter().map(|(t, u, r)| format!("{t:.1},{u},{r}\n")))
        .collect();
    std::fs::write(out_dir().join("memory.csv"), csv)?;
    memory_png(pids.len())?;
    login_cdf_png(&run)?;
    run["bench"] = json!("users");
    run["provision"] = provision;
    run["supernode_processes"] = json!(pids.len());
    run["rss_all_nodes_at_start_bytes"] = json!(base_rss);
    run["load_average_before"] = json!(load_before);
    run["load_average_after"] = json!(load_average());
    write_json("users", &run)?;
    Ok(run)
}

/// Memory against users while they log in (the hold adds no users), from `memory.csv`.
fn memory_png(processes: usize) -> anyhow::Result<()> {
    let mut points: Vec<(f64, f64)> = Vec::new();
    for row in csv_rows(&out_dir().join("memory.csv"))? {
        let (Some(&users), Some(&rss)) = (row.get(1), row.get(2)) else { continue };
        if points.last().is_none_or(|(u, _)| users > *u) {
            points.push((users, rss / (1024.0 * 1024.0)));
        }
    }
    let axes = Axes {
        x_label: "logged-in users, all supernodes".into(),
        y_label: "RSS of all supernodes, MiB".into(),
        y_share: false,
    };
    let label = format!("{processes} supernode processes");
    plot::line_png(
        &out_dir().join("memory.png"),
        "Supernode memory against logged-in users",
        &axes,
        &[Series { label, points }],
    )
}

/// The storm's recovery curve, from `storm-all.csv`.
fn storm_png(users: usize, nodes: usize) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = csv_rows(&out_dir().join("storm-all.csv"))?
        .into_iter()
        .filter_map(|row| Some((*row.first()?, *row.get(1)?)))
        .collect();
    plot::recovery_png(
        &out_dir().join("storm-all.png"),
        &format!("All {users} users dropped at once"),
        &[Series { label: format!("{nodes} supernodes killed and restarted"), points }],
    )
}

/// The numeric rows of a CSV file with a header line.
fn csv_rows(path: &Path) -> anyhow::Result<Vec<Vec<f64>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .map(|l| l.split(',').filter_map(|f| f.parse().ok()).collect())
        .collect())
}

/// The login latency CDF of a `run` report, from its HDR percentiles of `login` (first attempt)
/// and `login_after_retries` (after refusals and the client's backoff): each curve passes
/// through (p50, 50 %), (p99, 99 %), (p99.9, 99.9 %) and (max, 100 %).
fn login_cdf_png(run: &Value) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for (kind, label) in [("login", "first attempt"), ("login_after_retries", "after retries")] {
        let p = &run["latency"][kind];
        let (Some(p50), Some(p99), Some(p999), Some(max)) = (
            p["p50_ms"].as_f64(),
            p["p99_ms"].as_f64(),
            p["p999_ms"].as_f64(),
            p["max_ms"].as_f64(),
        ) else {
            continue;
        };
        let count = p["count"].as_u64().unwrap_or(0);
        let points = vec![(0.0, 0.0), (p50, 0.5), (p99, 0.99), (p999, 0.999), (max, 1.0)];
        series.push(Series { label: format!("{label} ({count} users)"), points });
    }
    let axes = Axes {
        x_label: "ms from a user's first login attempt to logged in".into(),
        y_label: "share of users".into(),
        y_share: true,
    };
    plot::line_png(
        &out_dir().join("login-cdf.png"),
        "Token login latency under the ramp",
        &axes,
        &series,
    )
}

/// Draws the PNGs again from the last reports (`replot`).
fn replot() -> anyhow::Result<()> {
    let users: Value = serde_json::from_slice(&std::fs::read(out_dir().join("users.json"))?)?;
    login_cdf_png(&users)?;
    memory_png(users["supernode_processes"].as_u64().unwrap_or(0) as usize)?;
    let storm: Value = serde_json::from_slice(&std::fs::read(out_dir().join("storm.json"))?)?;
    let count = |v: &Value| v.as_u64().unwrap_or(0) as usize;
    storm_png(count(&storm["users"]), count(&storm["supernodes"]))
}

/// Every user dropped at once: every supernode killed and started again.
fn storm_scenario() -> anyhow::Result<Value> {
    let n = storm_users();
    let (mut cluster, state, _) = provisioned_cluster(n, "storm")?;
    let urls = metrics_urls(&cluster);
    let hold = 150;
    let child = Command::new(bin("peerline-loadgen"))
        .arg("--json")
        .args(run_args(&cluster, &state, n, hold, false))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let logged_in = Arc::new(Mutex::new(None::<Instant>));
    let marker = logged_in.clone();
    let run = std::thread::spawn(move || {
        finish("storm/run", child, |line| {
            if line.starts_with("logged in ") {
                *marker.lock().unwrap() = Some(Instant::now());
            }
        })
    });
    while logged_in.lock().unwrap().is_none() {
        if run.is_finished() {
            bail!("the run ended before everyone logged in");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the hold settle: pings and activity going, then drop everyone.
    std::thread::sleep(Duration::from_secs(20));
    let before = online(&urls);
    let load_before = load_average();
    let killed = Instant::now();
    let nodes = cluster.nodes().len();
    for i in 0..nodes {
        cluster.kill9(i);
    }
    for i in 0..nodes {
        cluster.restart(i)?;
    }
    let restarted_after = killed.elapsed().as_secs_f64();
    // A restarted node's admin listener has a new port.
    let urls = metrics_urls(&cluster);
    let mut curve = vec![(0.0, 0.0)];
    let deadline = killed + Duration::from_secs(120);
    loop {
        let back = online(&urls) / before.max(1.0);
        curve.push((killed.elapsed().as_secs_f64(), back.min(1.0)));
        if back >= 1.0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = |share: f64| curve.iter().find(|(_, b)| *b >= share).map(|(t, _)| *t);
    let peaks: Vec<u64> = (0..nodes).map(|i| cluster.peak_rss_bytes(i).unwrap_or(0)).collect();
    let csv: String = std::iter::once("seconds,share_back\n".to_owned())
        .chain(curve.iter().map(|(t, b)| format!("{t:.2},{b:.5}\n")))
        .collect();
    std::fs::write(out_dir().join("storm-all.csv"), csv)?;
    storm_png(n, nodes)?;
    let run = run.join().map_err(|_| anyhow::anyhow!("the run thread panicked"))??;
    let report = json!({
        "bench": "storm",
        "users": n,
        "supernodes": nodes,
        "online_before": before,
        "seconds_until_all_restarted": restarted_after,
        "seconds_to_share": {"50": at(0.5), "90": at(0.9), "99": at(0.99), "100": at(1.0)},
        "peak_rss_bytes_after_restart": peaks,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "run": run,
    });
    write_json("storm", &report)?;
    Ok(report)
}

/// One supernode against one nats-server: memory per connection and connections per second.
fn compare_scenario() -> anyhow::Result<Value> {
    let n = COMPARE_CONNECTIONS.min(users());
    // `hold` makes one attempt per user and no retry, so this supernode admits every login
    // (nats-server has no admission control either): the rate is what the process serves.
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(
        config.path(),
        "[limits]\nlogins_per_second = 1000000.0\nlogin_burst = 1000000.0\n",
    )?;
    let node = Supernode::start_with(&["--config", config.path().to_str().expect("utf-8 path")])?;
    let pid = node.pid().to_string();
    let state = out_dir().join("compare-users.json");
    let _ = std::fs::remove_file(&state);
    let data_dir = node.data_dir.to_str().expect("utf-8 path").to_owned();
    // The supernode's SQLite is written while it runs (WAL mode; the import is one more writer).
    let provision = loadgen(
        "compare/provision",
        &[
            "provision".into(),
            n.to_string(),
            "--state".into(),
            state.to_str().expect("utf-8 path").into(),
            "--data-dir".into(),
            data_dir,
        ],
    )?;
    let nats = NatsWebSocket::start()?;
    let nats_pid = nats.pid().to_string();
    let state_arg = state.to_str().expect("utf-8 path").to_owned();
    let common = |ramp: &str, hold: &str| -> Vec<String> {
        [
            "--ramp",
            ramp,
            "--hold",
            hold,
            "--heartbeat",
            "20",
            "--source-ips",
            "127.0.1.1-127.0.2.254",
        ]
        .map(String::from)
        .to_vec()
    };
    let hold = |ramp: &str, hold_secs: &str| -> anyhow::Result<(Value, Value)> {
        let mut peerline = vec!["hold".into(), "--supernode".into(), node.url.clone()];
        peerline.extend(["--state".into(), state_arg.clone(), "--users".into(), n.to_string()]);
        peerline.extend(["--supernode-pid".into(), pid.clone()]);
        peerline.extend(common(ramp, hold_secs));
        let p = loadgen("compare/peerline", &peerline)?;
        let mut other = vec!["hold-nats".into(), "--server".into(), nats.url.clone()];
        other.extend(["--connections".into(), n.to_string(), "--token".into(), nats.token.clone()]);
        other.extend(["--server-pid".into(), nats_pid.clone()]);
        other.extend(common(ramp, hold_secs));
        let o = loadgen("compare/nats", &other)?;
        Ok((p, o))
    };
    let load_before = load_average();
    // Memory: both ramped at 1,000/s and held over two ping intervals.
    let (p_mem, n_mem) = hold("1000", "45")?;
    // Rate: a ramp faster than either serves; logins per second = connected / ramp time.
    let (p_rate, n_rate) = hold("20000", "0")?;
    let per_user = |v: &Value| v["memory"]["bytes_per_user_end"].as_f64();
    let rate = |v: &Value| {
        let c = v["connected"].as_f64()?;
        let s = v["ramp_seconds"].as_f64()?;
        Some(c / s.max(1e-9))
    };
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let report = json!({
        "bench": "compare",
        "connections": n,
        "provision": provision,
        "memory_per_connection_bytes": {"peerline": per_user(&p_mem), "nats": per_user(&n_mem)},
        "memory_ratio_peerline_to_nats": ratio(per_user(&p_mem), per_user(&n_mem)),
        "logins_per_second": {"peerline": rate(&p_rate), "nats": rate(&n_rate)},
        "login_rate_ratio_peerline_to_nats": ratio(rate(&p_rate), rate(&n_rate)),
        "runs": {"peerline_memory": p_mem, "nats_memory": n_mem, "peerline_rate": p_rate, "nats_rate": n_rate},
        "load_average_before": load_before,
        "load_average_after": load_average(),
    });
    write_json("compare", &report)?;
    Ok(report)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes flags such as --bench; the rest names what to run.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    if runs("users") {
        println!("{}", users_scenario()?);
    }
    if runs("storm") {
        println!("{}", storm_scenario()?);
    }
    if runs("compare") {
        println!("{}", compare_scenario()?);
    }
    // Only when asked for by name.
    if wanted.iter().any(|w| w == "replot") {
        replot()?;
    }
    Ok(())
}
