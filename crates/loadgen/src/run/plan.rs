//! What the coordinator and its worker processes say to each other: the worker's plan (one JSON
//! line on its stdin), the coordinator's phase commands (later lines on stdin), and the
//! worker's progress and final report (JSON lines on its stdout). Also how users, source
//! addresses and rates are split between workers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::histograms::Recorded;
use crate::source_addrs::SourceAddrs;

/// Rates of background activity, in requests per second (of a whole run, or of one worker).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// `send_message` to a contact.
    pub message: f64,
    /// `set_status` (online, away, busy).
    pub presence: f64,
    /// Directory `search`.
    pub search: f64,
    /// Call-signaling exchanges (invite → ringing → accept → hang-up) between a user and a
    /// contact.
    pub call: f64,
}

impl Rates {
    /// These rates scaled by `share`.
    pub fn scaled(self, share: f64) -> Self {
        Self {
            message: self.message * share,
            presence: self.presence * share,
            search: self.search * share,
            call: self.call * share,
        }
    }
}

/// One worker's part of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerPlan {
    /// This worker's number.
    pub worker: usize,
    /// A random tag of the run, in every message text, so that messages of earlier runs still
    /// waiting in mailboxes are told apart.
    pub run_id: String,
    /// The state file.
    pub state: PathBuf,
    /// The run's users are the state file's users `skip..skip + users` (natural order).
    pub skip: usize,
    /// Users of the whole run.
    pub users: usize,
    /// This worker's users: run users `first..first + count` (`first` is even, so that the
    /// call pairs `(2k, 2k + 1)` stay inside one worker).
    pub first: usize,
    /// How many.
    pub count: usize,
    /// Users in the roster ring (`roster::contacts_of(i, roster_size)`); the run's user `k` is
    /// roster number `skip + k`.
    pub roster_size: usize,
    /// Supernode URLs; run user `k` is given `supernodes[k % len]`.
    pub supernodes: Vec<String>,
    /// This worker's source addresses, `FIRST-LAST`.
    pub source_ips: String,
    /// Logins started per second by this worker.
    pub login_rate: f64,
    /// Seconds a user may take to log in once started before it counts as failed.
    pub login_timeout_secs: f64,
    /// Seconds between a user's `ping`s during the hold.
    pub heartbeat_secs: f64,
    /// This worker's activity rates.
    pub rates: Rates,
    /// Seconds a call stays up between the answer and the hang-up.
    pub call_secs: f64,
    /// Seconds a request may wait for its answer.
    pub request_timeout_secs: f64,
}

/// A coordinator's command to its workers, one JSON line each after the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Every worker has logged its users in: start heartbeats and activity.
    Hold,
    /// The hold is over: start nothing new, finish what is in flight, then say `quiet`.
    Quiesce,
    /// Close every connection and send the report.
    Stop,
}

/// Where a worker stands, sent a few times a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Users online now.
    pub online: usize,
    /// Users whose login has finished (online at least once, given up, or timed out).
    pub settled: usize,
    /// Messages sent (answered `message_sent`).
    pub messages_sent: u64,
    /// Messages of this run received by this worker's users (each once).
    pub messages_received: u64,
}

/// A line a worker writes on its stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerLine {
    /// Where it stands.
    Progress(Progress),
    /// Every login has finished (see [`Progress::settled`]).
    LoggedIn,
    /// Nothing is in flight any more after `quiesce`.
    Quiet,
    /// The final report, after `stop`.
    Report(Box<WorkerReport>),
}

/// Things counted by kind, with one example detail per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// How many of each kind.
    pub counts: BTreeMap<String, u64>,
    /// The first detail seen of each kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub examples: BTreeMap<String, String>,
}

impl Counts {
    /// Counts one of `kind`, keeping `detail` if it is the first of its kind.
    pub fn add(&mut self, kind: &str, detail: impl FnOnce() -> String) {
        *self.counts.entry(kind.to_owned()).or_default() += 1;
        if !self.examples.contains_key(kind) {
            self.examples.insert(kind.to_owned(), detail().chars().take(200).collect());
        }
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: &Counts) {
        for (kind, n) in &other.counts {
            *self.counts.entry(kind.clone()).or_default() += n;
        }
        for (kind, example) in &other.examples {
            self.examples.entry(kind.clone()).or_insert_with(|| example.clone());
        }
    }

    /// The total of every kind.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.counts.is_empty() {
            return f.write_str("none");
        }
        for (i, (kind, n)) in self.counts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match self.examples.get(kind) {
                Some(e) if !e.is_empty() => write!(f, "{n} × {kind} (e.g. {e})")?,
                _ => write!(f, "{n} × {kind}")?,
            }
        }
        Ok(())
    }
}

/// What one worker counted and measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's number.
    pub worker: usize,
    /// Its users.
    pub users: usize,
    /// Users that logged in (at least once).
    pub logins_ok: u64,
    /// Users that never logged in (refused for good, or not within the login timeout).
    pub logins_failed: u64,
    /// Login attempts that failed or were refused (a user may retry, as the real client does).
    pub login_attempts_failed: Counts,
    /// Logins after a lost connection.
    pub relogins: u64,
    /// Logged-in connections lost, by why.
    pub disconnects: Counts,
    /// Users online at the end of the hold.
    pub online_at_end: u64,
    /// `ping`s answered.
    pub pings: u64,
    /// Messages answered `message_sent`.
    pub messages_sent: u64,
    /// Messages of this run received by their recipients here, each counted once.
    pub messages_delivered: u64,
    /// Messages of this run received again (a second push of the same message).
    pub messages_duplicated: u64,
    /// Messages of earlier runs pushed at login (acknowledged, not counted as delivered).
    pub messages_stale: u64,
    /// `set_status` answered.
    pub presence_changes: u64,
    /// Presence events received during the hold.
    pub presence_events: u64,
    /// `search` answered.
    pub searches: u64,
    /// Call exchanges started by callers here.
    pub calls_started: u64,
    /// Call exchanges that went through every step (the caller's view: placed, ringing,
    /// answered with a valid signature, hung up).
    pub calls_completed: u64,
    /// Calls the callees here rang, answered and saw hung up, with a valid offer signature.
    pub calls_answered: u64,
    /// Failed requests and exchanges, by `request:reason`.
    pub errors: Counts,
    /// Activity not started because the chosen user was offline or busy, or too much was in
    /// flight.
    pub skipped: Counts,
    /// Pushed events received, by type.
    pub events: BTreeMap<String, u64>,
    /// Latency histograms by request kind.
    pub histograms: BTreeMap<String, Recorded>,
}

/// Splits `users` into `workers` contiguous slices `(first, count)` of nearly equal size whose
/// boundaries are even (call pairs never straddle two workers).
pub fn split_users(users: usize, workers: usize) -> Vec<(usize, usize)> {
    let workers = workers.max(1);
    let pairs = users.div_ceil(2);
    let mut out = Vec::with_capacity(workers);
    let mut first = 0;
    for w in 0..workers {
        // Pairs of this worker: an equal share, the remainder to the first ones.
        let n = pairs / workers + usize::from(w < pairs % workers);
        let end = (first + 2 * n).min(users);
        out.push((first, end - first));
        first = end;
    }
    out
}

/// Splits a range of source addresses into `parts` disjoint ranges (each worker gets its own
/// ephemeral ports); with fewer addresses than parts, every part gets the whole range.
pub fn split_sources(sources: &SourceAddrs, parts: usize) -> Vec<String> {
    let text = sources.to_string();
    let bounds = text
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<Ipv4Addr>().ok()?, b.parse::<Ipv4Addr>().ok()?)));
    let parts = parts.max(1);
    let Some((a, b)) = bounds else { return vec![text; parts] };
    let (first, last) = (u32::from(a), u32::from(b));
    let count = (last - first + 1) as usize;
    if count < parts {
        return vec![text; parts];
    }
    let mut out = Vec::with_capacity(parts);
    let mut start = first;
    for p in 0..parts {
        let n = (count / parts + usize::from(p < count % parts)) as u32;
        out.push(format!("{}-{}", Ipv4Addr::from(start), Ipv4Addr::from(start + n - 1)));
        start += n;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn users_split_into_even_aligned_slices_covering_everyone_once() {
        for (users, workers) in [(10, 3), (11, 2), (300, 2), (1, 2), (100_000, 7)] {
            let slices = split_users(users, workers);
            assert_eq!(slices.len(), workers);
            let mut next = 0;
            for &(first, count) in &slices {
                assert_eq!(first, next, "{users}/{workers}: {slices:?}");
                assert!(first % 2 == 0 || count == 0, "{slices:?}");
                next = first + count;
            }
            assert_eq!(next, users);
            let max = slices.iter().map(|s| s.1).max().unwrap();
            let min = slices.iter().map(|s| s.1).min().unwrap();
            assert!(max - min <= 2, "{slices:?}");
        }
    }

    #[test]
    fn sources_split_into_disjoint_ranges() {
        let r: SourceAddrs = "127.0.1.1-127.0.1.10".parse().unwrap();
        assert_eq!(
            split_sources(&r, 3),
            ["127.0.1.1-127.0.1.4", "127.0.1.5-127.0.1.7", "127.0.1.8-127.0.1.10"]
        );
        for part in split_sources(&r, 3) {
            assert!(part.parse::<SourceAddrs>().is_ok());
        }
        let one: SourceAddrs = "127.0.0.9".parse().unwrap();
        assert_eq!(split_sources(&one, 2), ["127.0.0.9-127.0.0.9", "127.0.0.9-127.0.0.9"]);
    }

    #[test]
    fn lines_round_trip_as_json() {
        let line = WorkerLine::Progress(Progress { online: 3, ..Progress::default() });
        let text = serde_json::to_string(&line).unwrap();
        assert!(matches!(
            serde_json::from_str::<WorkerLine>(&text).unwrap(),
            WorkerLine::Progress(Progress { online: 3, .. })
        ));
        assert_eq!(serde_json::to_string(&Control::Quiesce).unwrap(), "\"quiesce\"");
        let mut c = Counts::default();
        c.add("send_message:timeout", || "x".into());
        c.add("send_message:timeout", || "y".into());
        let mut d = Counts::default();
        d.merge(&c);
        d.merge(&c);
        assert_eq!((d.total(), d.examples["send_message:timeout"].as_str()), (4, "x"));
    }
}
