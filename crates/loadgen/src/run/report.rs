//! The report of a `run`: the workers' counts summed, their histograms merged into percentiles
//! per request kind, and the supernodes' memory and CPU; as text and as JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::histograms::Percentiles;
use super::plan::{Counts, Rates};

/// The login phase.
#[derive(Debug, Clone, Serialize)]
pub struct LoginPhase {
    /// Logins started per second, asked for.
    pub target_per_second: f64,
    /// Seconds from the first login to the last settled one.
    pub seconds: f64,
    /// Users logged in per second over the phase.
    pub per_second: f64,
    /// Users that logged in.
    pub ok: u64,
    /// Users that did not.
    pub failed: u64,
    /// Attempts that failed or were refused (users retry them as the real client does).
    pub attempts_failed: Counts,
}

/// The hold.
#[derive(Debug, Clone, Serialize)]
pub struct HoldPhase {
    /// Seconds held.
    pub seconds: f64,
    /// Seconds between a user's pings.
    pub heartbeat_secs: f64,
    /// Activity rates asked for (per second, whole run).
    pub target_rates: Rates,
    /// Users online when the hold started.
    pub online_at_start: u64,
    /// Users online when it ended.
    pub online_at_end: u64,
    /// Logins after a lost connection.
    pub relogins: u64,
    /// Logged-in connections lost, by why (whole run).
    pub disconnects: Counts,
    /// CPU seconds the worker processes (the load generator) used during the hold.
    pub workers_cpu_seconds: f64,
}

/// What the users did and got, summed over the workers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// `ping`s answered.
    pub pings: u64,
    /// Messages answered `message_sent`.
    pub messages_sent: u64,
    /// Messages of this run received by their recipients, each once.
    pub messages_delivered: u64,
    /// Second pushes of a message already received.
    pub messages_duplicated: u64,
    /// Messages of earlier runs pushed at login.
    pub messages_stale: u64,
    /// `set_status` answered.
    pub presence_changes: u64,
    /// Presence events received during the hold.
    pub presence_events: u64,
    /// `search` answered.
    pub searches: u64,
    /// Call exchanges started.
    pub calls_started: u64,
    /// Call exchanges that went through every step, seen by the caller.
    pub calls_completed: u64,
    /// Call exchanges the callee rang, answered and saw hung up.
    pub calls_answered: u64,
    /// Pushed events received, by type (whole run, login included).
    pub events: BTreeMap<String, u64>,
}

/// One supernode process's resources.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    /// Its process id.
    pub pid: u32,
    /// RSS before the first login.
    pub rss_before_bytes: u64,
    /// RSS once every login settled.
    pub rss_logged_in_bytes: u64,
    /// RSS at the end of the hold.
    pub rss_end_bytes: u64,
    /// CPU seconds during the hold.
    pub cpu_seconds_during_hold: f64,
}

/// The supernodes' resources (`--supernode-pid`), summed over their processes.
#[derive(Debug, Clone, Serialize)]
pub struct SupernodeUsage {
    /// Each process.
    pub processes: Vec<ProcessUsage>,
    /// Sum of RSS before the first login.
    pub rss_before_bytes: u64,
    /// Sum of RSS once every login settled.
    pub rss_logged_in_bytes: u64,
    /// Sum of RSS at the end of the hold.
    pub rss_end_bytes: u64,
    /// `(logged in − before) / users online then`.
    pub bytes_per_user_logged_in: Option<f64>,
    /// `(end − before) / users online at the end`.
    pub bytes_per_user_end: Option<f64>,
    /// CPU seconds of all of them during the hold.
    pub cpu_seconds_during_hold: f64,
    /// That, as a share of one core over the hold (100 = one core busy).
    pub cpu_percent_of_one_core: f64,
}

/// The result of `run`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Always `run`.
    pub command: &'static str,
    /// Users of the run.
    pub users: usize,
    /// Worker processes.
    pub workers: usize,
    /// Supernode URLs.
    pub supernodes: Vec<String>,
    /// The login phase.
    pub login: LoginPhase,
    /// The hold.
    pub hold: HoldPhase,
    /// Latency of every request kind (and of `message_delivery`, sender to recipient,
    /// `call_invite_to_ringing` / `call_invite_to_answer`, caller's invite to the event, and
    /// `login` / `login_after_retries`, from a user's start to logged in at the first attempt or
    /// after refusals and the client's backoff).
    pub latency: BTreeMap<String, Percentiles>,
    /// Counts.
    pub totals: Totals,
    /// What was achieved per second during the hold, by activity.
    pub achieved_rates: Rates,
    /// Failed requests and exchanges, by `request:reason`.
    pub errors: Counts,
    /// Activity not started (user offline, pair busy, overloaded).
    pub skipped: Counts,
    /// The supernodes' memory and CPU, with `--supernode-pid`.
    pub supernode: Option<SupernodeUsage>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl std::fmt::Display for RunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.login;
        writeln!(
            f,
            "run: {} users over {} workers against {}",
            self.users,
            self.workers,
            self.supernodes.join(", ")
        )?;
        writeln!(
            f,
            "login: {} ok, {} failed in {:.1} s ({:.0}/s, target {:.0}/s); failed attempts: {}",
            l.ok, l.failed, l.seconds, l.per_second, l.target_per_second, l.attempts_failed
        )?;
        let h = &self.hold;
        writeln!(
            f,
            "hold: {:.0} s, ping every {:.0} s; online {} at the start, {} at the end; \
             {} relogins; disconnects: {}",
            h.seconds,
            h.heartbeat_secs,
            h.online_at_start,
            h.online_at_end,
            h.relogins,
            h.disconnects
        )?;
        writeln!(
            f,
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "request", "count", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        )?;
        for (kind, p) in &self.latency {
            writeln!(
                f,
                "{kind:<24} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                p.count, p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms
            )?;
        }
        let t = &self.totals;
        let (a, r) = (&self.achieved_rates, &self.hold.target_rates);
        writeln!(
            f,
            "messages: {} sent, {} delivered ({} duplicated, {} from earlier runs); {:.1}/s (target {:.1}/s)",
            t.messages_sent,
            t.messages_delivered,
            t.messages_duplicated,
            t.messages_stale,
            a.message,
            r.message
        )?;
        writeln!(
            f,
            "presence: {} changes, {} events received; {:.1}/s (target {:.1}/s)",
            t.presence_changes, t.presence_events, a.presence, r.presence
        )?;
        writeln!(f, "searches: {}; {:.1}/s (target {:.1}/s)", t.searches, a.search, r.search)?;
        writeln!(
            f,
            "calls: {} started, {} completed (caller), {} answered and hung up (callee); {:.1}/s (target {:.1}/s)",
            t.calls_started, t.calls_completed, t.calls_answered, a.call, r.call
        )?;
        writeln!(
            f,
            "pings: {}; load generator CPU during the hold: {:.1} s ({:.1} % of one core)",
            t.pings,
            h.workers_cpu_seconds,
            100.0 * h.workers_cpu_seconds / h.seconds.max(1e-9)
        )?;
        writeln!(f, "errors: {}", self.errors)?;
        write!(f, "skipped: {}", self.skipped)?;
        if let Some(s) = &self.supernode {
            let per =
                |b: Option<f64>| b.map_or("-".to_owned(), |b| format!("{:.1} KiB", b / 1024.0));
            write!(
                f,
                "\nsupernode RSS ({} processes): {:.1} MiB before, {:.1} MiB logged in, {:.1} MiB \
                 at the end → {} per logged-in user ({} at the end)\n\
                 supernode CPU during the hold: {:.1} s ({:.1} % of one core)",
                s.processes.len(),
                mib(s.rss_before_bytes),
                mib(s.rss_logged_in_bytes),
                mib(s.rss_end_bytes),
                per(s.bytes_per_user_logged_in),
                per(s.bytes_per_user_end),
                s.cpu_seconds_during_hold,
                s.cpu_percent_of_one_core
            )?;
        }
        Ok(())
    }
}
