//! Cluster benchmarks on loopback: three supernodes sharing one PostgreSQL and one nats-server
//! (`peerline_testkit::cluster`), with the release binaries.
//!
//! - `failover`: the real `peerline online` loses its supernode to `kill -9`; time from the kill
//!   to its `reconnected` line, 20 runs (a fresh user and process, so a fresh failover policy,
//!   per run).
//! - `latency`: a message sent by a light client on sn1 to one on sn2, one at a time; time from
//!   the `send_message` to the `message` event on sn2 (and to the sender's answer). Its cluster
//!   allows 1,000 requests/s per connection (the default 20/s would refuse the sender).
//! - `storm`: `peerline-loadgen storm` (the subcommand, as an operator runs it) with admission
//!   settings like the storm test's and with the defaults; sn1 is killed once all are online.
//!   The recovery curves of both go into one PNG.
//!
//! ```sh
//! cargo build --release --bins
//! cargo bench -p peerline-loadgen --bench cluster               # all three
//! cargo bench -p peerline-loadgen --bench cluster -- storm      # or failover, latency
//! cargo bench -p peerline-loadgen --bench cluster -- replot     # the PNG again, from the CSVs
//! ```
//!
//! One JSON line per figure on stdout; the PNG and CSVs go to `$PEERLINE_BENCH_OUT` (default
//! `target/cluster-bench`). A benchmark, never a test: nothing here asserts a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use peerline_loadgen::latency::Latencies;
use peerline_loadgen::light::{Account, Dialers, LightClient, LightConfig, Network};
use peerline_loadgen::plot::{self, Series};
use peerline_loadgen::procfs::load_average;
use peerline_loadgen::seed::{self, SeedPlan};
use peerline_testkit::cluster::TestCluster;
use peerline_testkit::{User, bin};
use peerline_wire::{Event, Reply, Request};
use serde_json::{Value, json};

fn out_dir() -> PathBuf {
    let dir = std::env::var_os("PEERLINE_BENCH_OUT")
        .map_or_else(|| bin("peerline-loadgen").with_file_name("../cluster-bench"), PathBuf::from);
    std::fs::create_dir_all(&dir).expect("creating the output directory");
    dir
}

/// Kill → `reconnected`, 20 times, with the real CLI.
fn failover() -> anyhow::Result<Value> {
    const RUNS: usize = 20;
    let mut cluster = TestCluster::start(3)?;
    let (mut kill_to_back, mut loss_to_back) = (Latencies::default(), Latencies::default());
    let mut attempts = Vec::new();
    let load_before = load_average();
    for run in 0..RUNS {
        let victim = run % 3;
        // A fresh user (and home) per run: its first supernode is the victim.
        let user = User::new(&format!("failover{run}"), cluster.node(victim));
        user.register();
        let mut online = user.online();
        let killed = Instant::now();
        cluster.kill9(victim);
        let lost = online.expect(|v| v["event"] == "connection_lost", "the loss");
        if lost["supernode"] != cluster.url(victim) {
            bail!("run {run}: the client was not on the killed supernode: {lost}");
        }
        let back = online.expect_within(
            Duration::from_secs(60),
            |v| v["event"] == "reconnected",
            "back online",
        );
        kill_to_back.record(killed.elapsed());
        loss_to_back.record(Duration::from_millis(back["after_ms"].as_u64().unwrap_or(0)));
        attempts.push(back["attempts"].as_u64().unwrap_or(0));
        online.stop();
        cluster.restart(victim)?;
    }
    Ok(json!({
        "bench": "failover",
        "runs": RUNS,
        "kill_to_reconnected": kill_to_back.summary(),
        "client_loss_to_reconnected": loss_to_back.summary(),
        "attempts": attempts,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }))
}

/// Seeds `n` users into the cluster's database and returns their accounts.
async fn accounts(cluster: &TestCluster, prefix: &str, n: usize) -> anyhow::Result<Vec<Account>> {
    let plan = SeedPlan {
        database_url: cluster.database_url(),
        prefix: prefix.into(),
        first: 0,
        users: n,
        password: "bench-password".into(),
        concurrency: 16,
        token_lifetime: Duration::from_secs(86_400),
    };
    let (saved, _) = seed::run(plan).await?;
    saved.iter().map(|(name, user)| Account::from_saved(name, user)).collect()
}

/// Messages from a light client on sn1 to one on sn2, one at a time.
async fn latency() -> anyhow::Result<Value> {
    const WARM_UP: usize = 50;
    const MESSAGES: usize = 1000;
    // Messages go one after another, well over the default 20 requests/s of one connection and
    // the default 60 messages a minute of one account, to a receiver that acknowledges none.
    let limits = "[limits]\nrequests_per_second = 1000.0\nrequest_burst = 1000.0\n\
                  messages_per_minute = 100000\nmessages_per_day = 100000\n\
                  max_undelivered_per_sender = 100000\nmax_undelivered_per_recipient = 100000\n";
    let cluster = TestCluster::start_with(3, limits)?;
    let mut users = accounts(&cluster, "lat", 2).await?.into_iter();
    let (alice, bob) = (users.next().context("alice")?, users.next().context("bob")?);
    let bob_name = bob.username.clone();
    let network = Network {
        dialers: Arc::new(Dialers::new(None)),
        config: LightConfig::default(),
        report: Arc::new(|_| {}),
    };
    let alice_name = alice.username.clone();
    let a = LightClient::spawn(0, alice, vec![cluster.url(0).into()], &network, false);
    let mut b = LightClient::spawn(1, bob, vec![cluster.url(1).into()], &network, true);
    // Both online: a request answered.
    for client in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.request(Request::Ping).await != Ok(Reply::Pong) {
            if Instant::now() > deadline {
                bail!("a light client did not log in");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    a.request(Request::ContactAdd { username: bob_name.clone(), message: None }).await?;
    b.request(Request::ContactAccept { username: alice_name }).await?;
    // Bob's events are timestamped as they arrive, in their own task.
    let (arrivals_tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(async move {
        while let Some(event) = b.next_event().await {
            if let Event::Message { message } = event {
                let _ = arrivals_tx.send((message.text, Instant::now()));
            }
        }
        b
    });
    let (mut delivered, mut answered) = (Latencies::default(), Latencies::default());
    let load_before = load_average();
    for i in 0..WARM_UP + MESSAGES {
        let text = format!("latency probe {i}");
        let started = Instant::now();
        let sent = a.request(Request::SendMessage { to: bob_name.clone(), text: text.clone() });
        match sent.await? {
            Reply::MessageSent { .. } => {}
            other => bail!("send_message answered {other:?}"),
        }
        let answer_took = started.elapsed();
        let arrived = loop {
            let next = tokio::time::timeout(Duration::from_secs(10), arrivals.recv()).await;
            match next.context("a message took over 10 s to arrive")? {
                Some((got, at)) if got == text => break at,
                Some(_) => {}
                None => bail!("bob's client stopped"),
            }
        };
        if i >= WARM_UP {
            answered.record(answer_took);
            delivered.record(arrived.saturating_duration_since(started));
        }
    }
    a.stop().await;
    receiver.abort();

    Ok(json!({
        "bench": "cross_node_message_latency",
        "messages": MESSAGES,
        "send_on_sn1_to_event_on_sn2": delivered.summary(),
        "send_to_answer_on_sn1": answered.summary(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }))
}

/// One storm through the `storm` subcommand: a fresh cluster with `limits`, `users` seeded and
/// connected, sn1 killed once the subcommand says so. Returns its JSON report and curve.
fn storm_run(name: &str, limits: &str, users: usize, ramp: f64) -> anyhow::Result<(Value, Series)> {
    let mut cluster = TestCluster::start_with(3, limits)?;
    let dir = out_dir();
    let state = dir.join(format!("{name}-users.json"));
    let _ = std::fs::remove_file(&state);
    let csv = dir.join(format!("{name}.csv"));
    let db = cluster.database_url();
    let seeded = Command::new(bin("peerline-loadgen"))
        .args(["seed", "--database-url", &db, "--users", &users.to_string(), "--state"])
        .arg(&state)
        .status()?;
    if !seeded.success() {
        bail!("seeding failed");
    }
    let load_before = load_average();
    let mut storm = Command::new(bin("peerline-loadgen"))
        .args(["--json", "storm", "--users", &users.to_string(), "--ramp", &ramp.to_string()])
        .args([
            "--supernode",
            cluster.url(0),
            "--supernode",
            cluster.url(1),
            "--supernode",
            cluster.url(2),
        ])
        .args(["--source-ips", "127.0.1.1-127.0.1.200", "--state"])
        .arg(&state)
        .arg("--csv")
        .arg(&csv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = BufReader::new(storm.stderr.take().context("stderr")?).lines();
    loop {
        let line = stderr.next().context("storm ended before the kill")??;
        eprintln!("[{name}] {line}");
        if line.contains("kill one supernode now") {
            break;
        }
    }
    let pids: Vec<u32> = (1..3).map(|i| cluster.pid(i)).collect();
    cluster.kill9(0);
    for line in stderr.map_while(Result::ok) {
        eprintln!("[{name}] {line}");
    }
    let out = storm.wait_with_output()?;
    if !out.status.success() {
        bail!("storm failed");
    }
    let mut report: Value = serde_json::from_slice(&out.stdout)?;
    let peaks: Vec<u64> = (1..3).map(|i| cluster.peak_rss_bytes(i).unwrap_or(0)).collect();
    report["bench"] = json!(name);
    report["limits"] = json!(limits);
    report["survivor_pids"] = json!(pids);
    report["survivor_peak_rss_bytes"] = json!(peaks);
    report["load_average_before"] = json!(load_before);
    report["load_average_after"] = json!(load_average());
    let dropped = report["recovery"]["dropped"].as_u64().unwrap_or(0);
    let label = label(name, usize::try_from(dropped).unwrap_or(0), users);
    Ok((report, Series { label, points: curve(&csv)? }))
}

/// The step line of a CSV written by `storm --csv`.
fn curve(csv: &Path) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(csv)?;
    let mut points = Vec::new();
    let mut share_before = 0.0;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (t, share): (f64, f64) = (fields[0].parse()?, fields[2].parse()?);
        points.push((t, share_before));
        points.push((t, share));
        share_before = share;
    }
    Ok(points)
}

/// The storm runs: name (for files), supernode limits, users, ramp.
const STORMS: [(&str, &str, usize, f64); 2] = [
    // The storm test's settings: admission engages.
    ("admission", "[limits]\nlogins_per_second = 100.0\nlogin_burst = 50.0\n", 2000, 200.0),
    // The defaults (1,000/s after a burst of 2,000): the machine's CPU is the limit.
    ("defaults", "", 6000, 300.0),
];

fn label(name: &str, dropped: usize, users: usize) -> String {
    let settings = match name {
        "admission" => "admission 100/s, burst 50",
        _ => "default limits",
    };
    format!("{settings}: {dropped} of {users} dropped")
}

fn write_png(series: &[Series]) -> anyhow::Result<()> {
    let png = out_dir().join("storm-recovery.png");
    plot::recovery_png(&png, "3 supernodes, sn1 killed: dropped clients back online", series)?;
    eprintln!("wrote {}", png.display());
    Ok(())
}

/// Draws the PNG again from the CSVs of the last storm runs.
fn replot() -> anyhow::Result<()> {
    let mut series = Vec::new();
    for (name, _, users, _) in STORMS {
        let csv = out_dir().join(format!("{name}.csv"));
        let points = curve(&csv)?;
        // Two corners per returning client, after the start.
        let dropped = points.len().saturating_sub(2) / 2;
        series.push(Series { label: label(name, dropped, users), points });
    }
    write_png(&series)
}

fn storms() -> anyhow::Result<Vec<Value>> {
    let runs = STORMS;
    let mut reports = Vec::new();
    let mut series = Vec::new();
    for (name, limits, users, ramp) in runs {
        let (report, curve) = storm_run(name, limits, users, ramp)?;
        println!("{report}");
        reports.push(report);
        series.push(curve);
    }
    write_png(&series)?;
    Ok(reports)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes flags such as --bench; the rest names what to run.
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    if runs("failover") {
        let report = tokio::task::spawn_blocking(failover).await??;
        println!("{report}");
    }
    if runs("latency") {
        println!("{}", latency().await?);
    }
    if runs("storm") {
        tokio::task::spawn_blocking(storms).await??;
    }
    // Only when asked for by name: redraw the PNG from the last storms' CSVs.
    if wanted.iter().any(|w| w == "replot") {
        replot()?;
    }
    Ok(())
}
