//! `run`: many users logged in at a target rate and held with heartbeats and background activity
//! (messages to contacts, status changes, directory searches, call-signaling exchanges), with
//! the latency of every request kind under that load.
//!
//! One process may hold at most about 20,000 open files here and one source address about
//! 28,000 ephemeral ports, so the coordinator ([`run`]) spawns worker processes of this binary
//! (`peerline-loadgen run-worker`, [`run_worker`]), each with a disjoint, even-aligned slice of
//! the users and its own slice of the source addresses, and sums what they report. The phases
//! are driven from here so that every worker holds at the same time: all log in (`logged_in`),
//! all hold (`hold`), all finish what is in flight (`quiesce` → `quiet`), the coordinator waits
//! for the last messages to be delivered, then all close and report (`stop`).
//!
//! Users are the state file's (`register`, `seed`, `provision`); contacts follow the roster ring
//! (`roster::contacts_of`), so messages go to accepted contacts without a file saying whom.

mod activity;
pub mod histograms;
pub mod plan;
pub mod report;
mod shared;
mod signaling;
mod worker;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::procfs::{cpu_seconds, rss_bytes};
use crate::source_addrs::SourceAddrs;
use histograms::Histograms;
use plan::{Control, Counts, Progress, Rates, WorkerLine, WorkerPlan, WorkerReport};
use report::{HoldPhase, LoginPhase, ProcessUsage, RunReport, SupernodeUsage, Totals};
pub use worker::run_worker;

/// Time for the supernodes to settle after the last login before their memory is read.
const SETTLE: Duration = Duration::from_secs(2);
/// How long workers may take to finish their in-flight work after `quiesce`.
const QUIET_LIMIT: Duration = Duration::from_secs(120);
/// How long messages sent before `quiet` may take to reach their recipients.
const DELIVERY_LIMIT: Duration = Duration::from_secs(15);
/// How long workers may take to close their connections and report.
const REPORT_LIMIT: Duration = Duration::from_secs(60);
/// How often the hold prints its progress when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What `run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The worker executable (this binary; `run-worker` is its hidden subcommand).
    pub worker_exe: PathBuf,
    /// The state file.
    pub state: PathBuf,
    /// Users of the run: the state file's `skip..skip + users`.
    pub users: usize,
    /// See [`RunPlan::users`].
    pub skip: usize,
    /// Users in the roster ring; `None`: every user of the state file.
    pub roster_size: Option<usize>,
    /// Supernode URLs; users are spread over them round robin.
    pub supernodes: Vec<String>,
    /// Source addresses, split between the workers.
    pub sources: SourceAddrs,
    /// Worker processes.
    pub workers: usize,
    /// Logins started per second, in total.
    pub login_rate: f64,
    /// How long a started login may take before it counts as failed.
    pub login_timeout: Duration,
    /// How long to hold.
    pub hold: Duration,
    /// Seconds between a user's pings.
    pub heartbeat: Duration,
    /// Activity rates in total.
    pub rates: Rates,
    /// How long a call stays up between the answer and the hang-up.
    pub call_secs: f64,
    /// How long a request may wait for its answer.
    pub request_timeout: Duration,
    /// Supernode processes whose memory and CPU to read.
    pub supernode_pids: Vec<u32>,
}

/// A random tag for this run's messages.
fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// The worker processes and what they said so far.
struct Fleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    lines: mpsc::Receiver<(usize, Option<WorkerLine>)>,
    progress: Vec<Progress>,
    logged_in: Vec<bool>,
    quiet: Vec<bool>,
    reports: Vec<Option<WorkerReport>>,
}

impl Fleet {
    /// Starts one worker per plan and sends it its plan.
    async fn start(exe: &PathBuf, plans: Vec<WorkerPlan>) -> anyhow::Result<Fleet> {
        let n = plans.len();
        let (tx, lines) = mpsc::channel(1024);
        let mut children = Vec::with_capacity(n);
        let mut stdins = Vec::with_capacity(n);
        for plan in plans {
            let worker = plan.worker;
            let mut child = Command::new(exe)
                .arg("run-worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting worker {worker} ({})", exe.display()))?;
            let mut stdin = child.stdin.take().context("worker stdin")?;
            let stdout = child.stdout.take().context("worker stdout")?;
            let mut text = serde_json::to_string(&plan)?;
            text.push('\n');
            stdin.write_all(text.as_bytes()).await.context("sending a worker its plan")?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut out = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = out.next_line().await {
                    match serde_json::from_str::<WorkerLine>(&line) {
                        Ok(parsed) => {
                            if tx.send((worker, Some(parsed))).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => eprintln!("worker {worker} said something odd ({e}): {line}"),
                    }
                }
                let _ = tx.send((worker, None)).await;
            });
            children.push(child);
            stdins.push(Some(stdin));
        }
        Ok(Fleet {
            children,
            stdins,
            lines,
            progress: vec![Progress::default(); n],
            logged_in: vec![false; n],
            quiet: vec![false; n],
            reports: vec![None; n],
        })
    }

    /// Tells every worker `control`.
    async fn tell(&mut self, control: Control) -> anyhow::Result<()> {
        let mut text = serde_json::to_string(&control)?;
        text.push('\n');
        for (w, stdin) in self.stdins.iter_mut().enumerate() {
            if let Some(s) = stdin {
                s.write_all(text.as_bytes())
                    .await
                    .with_context(|| format!("worker {w} is gone (telling it {control:?})"))?;
            }
        }
        Ok(())
    }

    /// Takes what the workers say until `done` holds or `deadline` passes; whether it held. A
    /// worker that ends without its report fails the run.
    async fn until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Fleet) -> bool,
        mut tick: impl FnMut(&Fleet),
    ) -> anyhow::Result<bool> {
        loop {
            if done(self) {
                return Ok(true);
            }
            let Ok(next) = tokio::time::timeout_at(deadline, self.lines.recv()).await else {
                return Ok(false);
            };
            match next {
                Some((w, Some(line))) => self.take(w, line),
                Some((w, None)) => {
                    if self.reports.get(w).is_some_and(Option::is_none) {
                        let status = match self.children.get_mut(w) {
                            Some(child) => child.wait().await.ok(),
                            None => None,
                        };
                        bail!(
                            "worker {w} ended before its report ({status:?}); see its errors above"
                        );
                    }
                }
                None => bail!("every worker is gone"),
            }
            tick(self);
        }
    }

    fn take(&mut self, w: usize, line: WorkerLine) {
        match line {
            WorkerLine::Progress(p) => {
                if let Some(slot) = self.progress.get_mut(w) {
                    *slot = p;
                }
            }
            WorkerLine::LoggedIn => {
                if let Some(slot) = self.logged_in.get_mut(w) {
                    *slot = true;
                }
            }
            WorkerLine::Quiet => {
                if let Some(slot) = self.quiet.get_mut(w) {
                    *slot = true;
                }
            }
            WorkerLine::Report(r) => {
                if let Some(slot) = self.reports.get_mut(w) {
                    *slot = Some(*r);
                }
            }
        }
    }

    fn online(&self) -> usize {
        self.progress.iter().map(|p| p.online).sum()
    }

    fn settled(&self) -> usize {
        self.progress.iter().map(|p| p.settled).sum()
    }

    fn messages(&self) -> (u64, u64) {
        let sent = self.progress.iter().map(|p| p.messages_sent).sum();
        let received = self.progress.iter().map(|p| p.messages_received).sum();
        (sent, received)
    }
}

/// CPU seconds the given processes used so far (those that can be read).
fn cpu_of(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&pid| cpu_seconds(pid).ok()).sum()
}

/// Reads the RSS and CPU time of the given processes.
fn sample(pids: &[u32]) -> anyhow::Result<Vec<(u64, f64)>> {
    pids.iter().map(|&pid| Ok((rss_bytes(pid)?, cpu_seconds(pid)?))).collect()
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// The worker plans of a run.
fn worker_plans(plan: &RunPlan, roster_size: usize) -> Vec<WorkerPlan> {
    // No worker without a user: at most one per call pair.
    let workers = plan.workers.clamp(1, plan.users.div_ceil(2).max(1));
    let slices = plan::split_users(plan.users, workers);
    let sources = plan::split_sources(&plan.sources, workers);
    let run_id = run_id();
    slices
        .into_iter()
        .zip(sources)
        .enumerate()
        .map(|(worker, ((first, count), source_ips))| {
            let share = count as f64 / plan.users.max(1) as f64;
            WorkerPlan {
                worker,
                run_id: run_id.clone(),
                state: plan.state.clone(),
                skip: plan.skip,
                users: plan.users,
                first,
                count,
                roster_size,
                supernodes: plan.supernodes.clone(),
                source_ips,
                login_rate: (plan.login_rate * share).max(0.001),
                login_timeout_secs: plan.login_timeout.as_secs_f64(),
                heartbeat_secs: plan.heartbeat.as_secs_f64(),
                rates: plan.rates.scaled(share),
                call_secs: plan.call_secs,
                request_timeout_secs: plan.request_timeout.as_secs_f64(),
            }
        })
        .collect()
}

/// Runs `run`: spawns the workers, drives the phases, and sums what they report.
pub async fn run(plan: RunPlan) -> anyhow::Result<RunReport> {
    if plan.supernodes.is_empty() {
        bail!("give at least one --supernode");
    }
    let state = crate::state_file::StateFile::load(&plan.state)?;
    state.take(plan.skip, plan.users)?;
    let roster_size = plan.roster_size.unwrap_or(state.len());
    drop(state);
    let plans = worker_plans(&plan, roster_size);
    let workers = plans.len();

    let before = sample(&plan.supernode_pids)?;
    eprintln!("run: {} users, {workers} workers, logging in at {}/s…", plan.users, plan.login_rate);
    let login_started = Instant::now();
    let mut fleet = Fleet::start(&plan.worker_exe, plans).await?;

    // Login phase.
    let login_bar = bar(plan.users as u64, "login {bar:40} {pos}/{len} online {msg} ({elapsed})");
    let login_limit = Duration::from_secs_f64(plan.users as f64 / plan.login_rate.max(0.001))
        + plan.login_timeout
        + Duration::from_secs(30);
    let mut last_log = Instant::now();
    let all_in = fleet
        .until(
            login_started + login_limit,
            |f| f.logged_in.iter().all(|&l| l),
            |f| {
                login_bar.set_position(f.online() as u64);
                login_bar.set_message(format!("({} settled)", f.settled()));
                if login_bar.is_hidden() && last_log.elapsed() >= LOG_EVERY {
                    last_log = Instant::now();
                    eprintln!("  login: {} of {} online", f.online(), plan.users);
                }
            },
        )
        .await?;
    login_bar.finish_and_clear();
    if !all_in {
        bail!("the workers did not finish logging in within {login_limit:?}");
    }
    let login_seconds = login_started.elapsed().as_secs_f64();
    let online_at_start = fleet.online() as u64;
    eprintln!("logged in {online_at_start} of {} in {login_seconds:.1} s", plan.users);

    tokio::time::sleep(SETTLE).await;
    let logged_in = sample(&plan.supernode_pids)?;
    let worker_pids: Vec<u32> = fleet.children.iter().filter_map(Child::id).collect();
    let workers_cpu_start = cpu_of(&worker_pids);

    // Hold.
    fleet.tell(Control::Hold).await?;
    let hold_started = Instant::now();
    let hold_end = hold_started + plan.hold;
    let hold_bar = bar(plan.hold.as_secs(), "hold  {bar:40} {pos}/{len} s, {msg}");
    let mut last_log = Instant::now();
    fleet
        .until(
            hold_end,
            |_| false,
            |f| {
                let (sent, received) = f.messages();
                hold_bar.set_position(hold_started.elapsed().as_secs());
                hold_bar.set_message(format!(
                    "online {}/{}, messages {sent} sent, {received} delivered",
                    f.online(),
                    plan.users
                ));
                if hold_bar.is_hidden() && last_log.elapsed() >= LOG_EVERY {
                    last_log = Instant::now();
                    eprintln!(
                        "  hold {:.0}/{:.0} s: {} online, messages {sent} sent, {received} delivered",
                        hold_started.elapsed().as_secs_f64(),
                        plan.hold.as_secs_f64(),
                        f.online()
                    );
                }
            },
        )
        .await?;
    hold_bar.finish_and_clear();
    let hold_seconds = hold_started.elapsed().as_secs_f64();
    let end = sample(&plan.supernode_pids)?;
    let workers_cpu = cpu_of(&worker_pids) - workers_cpu_start;

    // Quiesce, let the last messages arrive, stop.
    fleet.tell(Control::Quiesce).await?;
    let quiet =
        fleet.until(Instant::now() + QUIET_LIMIT, |f| f.quiet.iter().all(|&q| q), |_| {}).await?;
    if !quiet {
        eprintln!("some workers still had work in flight after {QUIET_LIMIT:?}");
    }
    fleet
        .until(
            Instant::now() + DELIVERY_LIMIT,
            |f| {
                let (sent, received) = f.messages();
                received >= sent
            },
            |_| {},
        )
        .await?;
    fleet.tell(Control::Stop).await?;
    let reported = fleet
        .until(Instant::now() + REPORT_LIMIT, |f| f.reports.iter().all(Option::is_some), |_| {})
        .await?;
    if !reported {
        bail!("not every worker reported within {REPORT_LIMIT:?}");
    }
    for child in &mut fleet.children {
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }

    let reports: Vec<WorkerReport> = fleet.reports.into_iter().flatten().collect();
    let supernode = usage(
        &plan.supernode_pids,
        &before,
        &logged_in,
        &end,
        online_at_start,
        &reports,
        hold_seconds,
    );
    let mut report = sum(&plan, reports, login_seconds, online_at_start, hold_seconds, supernode);
    report.hold.workers_cpu_seconds = workers_cpu;
    Ok(report)
}

fn usage(
    pids: &[u32],
    before: &[(u64, f64)],
    logged_in: &[(u64, f64)],
    end: &[(u64, f64)],
    online_at_start: u64,
    reports: &[WorkerReport],
    hold_seconds: f64,
) -> Option<SupernodeUsage> {
    if pids.is_empty() {
        return None;
    }
    let processes: Vec<ProcessUsage> = pids
        .iter()
        .zip(before)
        .zip(logged_in)
        .zip(end)
        .map(|(((&pid, b), l), e)| ProcessUsage {
            pid,
            rss_before_bytes: b.0,
            rss_logged_in_bytes: l.0,
            rss_end_bytes: e.0,
            cpu_seconds_during_hold: e.1 - l.1,
        })
        .collect();
    let rss_before: u64 = processes.iter().map(|p| p.rss_before_bytes).sum();
    let rss_logged_in: u64 = processes.iter().map(|p| p.rss_logged_in_bytes).sum();
    let rss_end: u64 = processes.iter().map(|p| p.rss_end_bytes).sum();
    let cpu: f64 = processes.iter().map(|p| p.cpu_seconds_during_hold).sum();
    let online_at_end: u64 = reports.iter().map(|r| r.online_at_end).sum();
    let per =
        |rss: u64, users: u64| (users > 0).then(|| (rss as f64 - rss_before as f64) / users as f64);
    Some(SupernodeUsage {
        processes,
        rss_before_bytes: rss_before,
        rss_logged_in_bytes: rss_logged_in,
        rss_end_bytes: rss_end,
        bytes_per_user_logged_in: per(rss_logged_in, online_at_start),
        bytes_per_user_end: per(rss_end, online_at_end),
        cpu_seconds_during_hold: cpu,
        cpu_percent_of_one_core: 100.0 * cpu / hold_seconds.max(1e-9),
    })
}

fn sum(
    plan: &RunPlan,
    reports: Vec<WorkerReport>,
    login_seconds: f64,
    online_at_start: u64,
    hold_seconds: f64,
    supernode: Option<SupernodeUsage>,
) -> RunReport {
    let mut histograms = Histograms::default();
    let (mut attempts_failed, mut disconnects) = (Counts::default(), Counts::default());
    let (mut errors, mut skipped) = (Counts::default(), Counts::default());
    let mut t = Totals::default();
    let (mut ok, mut failed, mut relogins, mut online_at_end) = (0, 0, 0, 0);
    for r in &reports {
        histograms.merge(&r.histograms);
        attempts_failed.merge(&r.login_attempts_failed);
        disconnects.merge(&r.disconnects);
        errors.merge(&r.errors);
        skipped.merge(&r.skipped);
        ok += r.logins_ok;
        failed += r.logins_failed;
        relogins += r.relogins;
        online_at_end += r.online_at_end;
        t.pings += r.pings;
        t.messages_sent += r.messages_sent;
        t.messages_delivered += r.messages_delivered;
        t.messages_duplicated += r.messages_duplicated;
        t.messages_stale += r.messages_stale;
        t.presence_changes += r.presence_changes;
        t.presence_events += r.presence_events;
        t.searches += r.searches;
        t.calls_started += r.calls_started;
        t.calls_completed += r.calls_completed;
        t.calls_answered += r.calls_answered;
        for (kind, n) in &r.events {
            *t.events.entry(kind.clone()).or_default() += n;
        }
    }
    let per_second = |n: u64| n as f64 / hold_seconds.max(1e-9);
    let achieved_rates = Rates {
        message: per_second(t.messages_sent),
        presence: per_second(t.presence_changes),
        search: per_second(t.searches),
        call: per_second(t.calls_started),
    };
    RunReport {
        command: "run",
        users: plan.users,
        workers: reports.len(),
        supernodes: plan.supernodes.clone(),
        login: LoginPhase {
            target_per_second: plan.login_rate,
            seconds: login_seconds,
            per_second: ok as f64 / login_seconds.max(1e-9),
            ok,
            failed,
            attempts_failed,
        },
        hold: HoldPhase {
            seconds: hold_seconds,
            heartbeat_secs: plan.heartbeat.as_secs_f64(),
            target_rates: plan.rates,
            online_at_start,
            online_at_end,
            relogins,
            disconnects,
            workers_cpu_seconds: 0.0,
        },
        latency: histograms.percentiles(),
        totals: t,
        achieved_rates,
        errors,
        skipped,
        supernode,
    }
}
