//! One worker process of `run` (`peerline-loadgen run-worker`, started by the coordinator): reads
//! its plan from stdin, logs its users in as light clients at its share of the login rate, says
//! `logged_in`, holds them with heartbeats and background activity from `hold` to `quiesce`,
//! says `quiet` once nothing is in flight, and after `stop` closes every connection and writes
//! its report. Everything it says is one JSON line on stdout ([`WorkerLine`]).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::activity;
use super::plan::{Control, Progress, WorkerLine, WorkerPlan, WorkerReport};
use super::shared::Shared;
use crate::light::{Account, Dialers, LightClient, LightConfig, Network};
use crate::procfs;
use crate::source_addrs::SourceAddrs;
use crate::state_file::StateFile;

/// How often progress is sent to the coordinator.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long in-flight work may take to finish after `quiesce` (a request times out after the
/// plan's request timeout; a call exchange waits up to 20 s per step besides).
const QUIESCE_LIMIT: Duration = Duration::from_secs(90);
/// File descriptors a worker keeps for itself besides one per connection.
const SPARE_FDS: u64 = 100;

/// Writes one line for the coordinator (a coordinator that is gone ends the worker when it
/// next reads stdin, so a failed write is ignored here).
fn say(line: &WorkerLine) {
    if let Ok(text) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

fn progress(shared: &Shared) -> Progress {
    let c = &shared.counters;
    Progress {
        online: c.online.load(Ordering::Relaxed),
        settled: c.settled.load(Ordering::Relaxed),
        messages_sent: c.messages_sent.load(Ordering::Relaxed),
        messages_received: c.messages_delivered.load(Ordering::Relaxed),
    }
}

/// The coordinator's commands, as they come (`None` once stdin closed: the coordinator is gone).
async fn next_control(controls: &mut mpsc::Receiver<Control>) -> Option<Control> {
    controls.recv().await
}

/// Runs a worker; its plan is the first line of stdin.
pub async fn run_worker() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.context("no plan on stdin")?;
    let plan: WorkerPlan =
        serde_json::from_str(&first).context("the plan on stdin is not valid")?;
    if let Some(limit) = procfs::open_file_limit()
        && plan.count as u64 + SPARE_FDS > limit
    {
        bail!(
            "worker {} has {} users but may open {limit} files; use more --workers",
            plan.worker,
            plan.count
        );
    }
    let (control_tx, mut controls) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Control>(&line) {
                Ok(control) => {
                    if control_tx.send(control).await.is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("run-worker: ignoring a bad command {line:?}: {e}"),
            }
        }
    });

    let state = StateFile::load(&plan.state)?;
    let users = state.take(plan.skip, plan.users)?;
    drop(state);
    let mut accounts = Vec::with_capacity(plan.count);
    for (username, saved) in users.iter().skip(plan.first).take(plan.count) {
        accounts.push(Account::from_saved(username, saved)?);
    }
    let names: Vec<String> = users.into_iter().map(|(name, _)| name).collect();
    let keys = accounts.iter().map(|a| a.key.clone()).collect();
    let sources: SourceAddrs = plan
        .source_ips
        .parse()
        .map_err(|e| anyhow::anyhow!("--source-ips of worker {}: {e}", plan.worker))?;
    let shared = Arc::new(Shared::new(plan.clone(), names, keys));

    // Progress, until the report.
    let (stop_progress, progress_stopped) = watch::channel(false);
    let progress_task = {
        let shared = shared.clone();
        let mut stopped = progress_stopped;
        tokio::spawn(async move {
            loop {
                say(&WorkerLine::Progress(progress(&shared)));
                tokio::select! {
                    () = tokio::time::sleep(PROGRESS_EVERY) => {}
                    _ = stopped.changed() => return,
                }
            }
        })
    };

    // Log in, at this worker's rate.
    let mut config = LightConfig::default();
    config.session.request_timeout = Duration::from_secs_f64(plan.request_timeout_secs);
    // Our pings come every `heartbeat` seconds; the session's own heartbeat (the real
    // client's, at most a third of the supernode's timeout) fills in only if they stop.
    config.session.heartbeat_interval = Duration::from_secs_f64(plan.heartbeat_secs * 1.5);
    let network = Network {
        dialers: Arc::new(Dialers::new(Some(sources))),
        config,
        report: {
            let shared = shared.clone();
            Arc::new(move |report| shared.on_report(report))
        },
    };
    let mut readers = JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / plan.login_rate.clamp(0.001, 1e6));
    let started = tokio::time::Instant::now();
    let mut stopped_early = false;
    for (local, account) in accounts.into_iter().enumerate() {
        let at = started + interval.mul_f64(local as f64);
        if let Ok(Some(Control::Stop) | None) =
            tokio::time::timeout_at(at, next_control(&mut controls)).await
        {
            stopped_early = true;
            break;
        }
        let run_index = plan.first + local;
        let home = plan.supernodes.get(run_index % plan.supernodes.len().max(1)).cloned();
        shared.started(local);
        let mut client =
            LightClient::spawn(local, account, home.into_iter().collect(), &network, true);
        if let Some(events) = client.take_events() {
            readers.spawn(activity::read_events(shared.clone(), local, events));
        }
        shared
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(client));
    }
    if !stopped_early {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs_f64(plan.login_timeout_secs);
        while shared.counters.settled.load(Ordering::Relaxed) < plan.count
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shared.settle_pending();
        // Fresh figures first: the coordinator reads who is online when it hears `logged_in`.
        say(&WorkerLine::Progress(progress(&shared)));
        say(&WorkerLine::LoggedIn);
    }

    // Hold, then quiesce, then stop; `stop` (or a closed stdin) at any point ends it.
    let (stop_activity, activity_stopped) = watch::channel(false);
    let mut online_at_end = None;
    if !stopped_early {
        loop {
            match next_control(&mut controls).await {
                Some(Control::Hold) => {
                    shared.holding.store(true, Ordering::Relaxed);
                    activity::start(&shared, &activity_stopped);
                }
                Some(Control::Quiesce) => {
                    online_at_end = Some(shared.counters.online.load(Ordering::Relaxed) as u64);
                    let _ = stop_activity.send(true);
                    if !shared.inflight.wait_idle(QUIESCE_LIMIT).await {
                        eprintln!(
                            "run-worker {}: {} requests still in flight after {QUIESCE_LIMIT:?}",
                            plan.worker,
                            shared.inflight.len()
                        );
                    }
                    say(&WorkerLine::Progress(progress(&shared)));
                    say(&WorkerLine::Quiet);
                }
                Some(Control::Stop) | None => break,
            }
        }
    }
    let _ = stop_activity.send(true);
    let online_at_end =
        online_at_end.unwrap_or_else(|| shared.counters.online.load(Ordering::Relaxed) as u64);

    // Close everything: the readers first (they hold the clients), then every client at once.
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    let clients = std::mem::take(
        &mut *shared.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut closing = JoinSet::new();
    for client in clients {
        // Tasks still holding a client (none after quiesce) drop theirs when they end.
        if let Ok(client) = Arc::try_unwrap(client) {
            closing.spawn(client.stop());
        }
    }
    while closing.join_next().await.is_some() {}
    let _ = stop_progress.send(true);
    let _ = progress_task.await;

    let report = report(&shared, online_at_end);
    say(&WorkerLine::Report(Box::new(report)));
    Ok(())
}

fn report(shared: &Shared, online_at_end: u64) -> WorkerReport {
    let c = &shared.counters;
    let logins_ok = shared.logins_ok();
    let tallies = shared.tallies();
    WorkerReport {
        worker: shared.plan.worker,
        users: shared.plan.count,
        logins_ok,
        logins_failed: shared.plan.count as u64 - logins_ok.min(shared.plan.count as u64),
        login_attempts_failed: tallies.login_attempts_failed.clone(),
        relogins: c.relogins.load(Ordering::Relaxed),
        disconnects: tallies.disconnects.clone(),
        online_at_end,
        pings: c.pings.load(Ordering::Relaxed),
        messages_sent: c.messages_sent.load(Ordering::Relaxed),
        messages_delivered: c.messages_delivered.load(Ordering::Relaxed),
        messages_duplicated: c.messages_duplicated.load(Ordering::Relaxed),
        messages_stale: c.messages_stale.load(Ordering::Relaxed),
        presence_changes: c.presence_changes.load(Ordering::Relaxed),
        presence_events: c.presence_events.load(Ordering::Relaxed),
        searches: c.searches.load(Ordering::Relaxed),
        calls_started: c.calls_started.load(Ordering::Relaxed),
        calls_completed: c.calls_completed.load(Ordering::Relaxed),
        calls_answered: c.calls_answered.load(Ordering::Relaxed),
        errors: tallies.errors.clone(),
        skipped: tallies.skipped.clone(),
        events: tallies.events.clone(),
        histograms: tallies.histograms.export(),
    }
}
