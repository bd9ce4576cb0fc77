//! `storm`: a reconnect storm, measured. Saved users are connected as light clients spread over
//! the given supernodes; then the load generator waits while the operator (or a test) kills one
//! supernode, and measures how long the clients it dropped take to be back online on the others
//! — each with the real client's failover policy, against the survivors' admission control.
//!
//! Times count from the first connection the load generator saw drop (on loopback, the moment of
//! the kill). [`Recovery::from_reports`] reads a storm off a crowd's timeline; it is pure, so the
//! test kit's storm test and this subcommand report the same figures.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use peerline_client_core::FailoverConfig;
use serde::Serialize;

#[cfg(test)]
mod simulation;

use crate::crowd::{Crowd, CrowdPlan, Snapshot, Timeline};
use crate::light::{Account, Change, Dialers, LightConfig, Report};
use crate::plot::{self, Series};
use crate::source_addrs::SourceAddrs;
use crate::state_file::SavedUser;
use peerline_wire::ErrorCode;

/// After the last drop, how long no further drop may come before the storm counts as one
/// supernode's (its connections all close within milliseconds on loopback).
const QUIET_AFTER_LAST_DROP: Duration = Duration::from_secs(2);
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How long a storm may take to settle, from the settings alone: `dropped` clients coming back
/// to `survivors` supernodes that each admit `logins_per_second` after a burst of `login_burst`,
/// every client following the `failover` policy. The sum of
///
/// - noticing the loss: 1 s (the dead process's sockets close at once on loopback; across a
///   real network a silent death is noticed at the heartbeat timeout instead);
/// - the survivors' admission work at full rate: (dropped − survivors · burst) /
///   (survivors · rate);
/// - one hold: a refused login's `retry_after_secs` is at most ⌈2 · max(1 s, 1 / rate)⌉ (the
///   supernode's wait plus up to as much again, rounded up) and the policy adds up to
///   max(retry_after, base) of jitter;
/// - two capped backoffs: refusals go on for up to one cap after the work is done (clients
///   refused in the busiest seconds come back spread over a full backoff), and whoever they
///   refuse last sleeps up to one more cap before the attempt that is admitted.
///
/// No allowance for CPU: the caller adds what its machine needs. A simulation of the real
/// policy against the supernode's own token bucket (`storm/simulation.rs`) stays under it over
/// a range of settings.
pub fn settle_bound(
    dropped: usize,
    survivors: usize,
    logins_per_second: f64,
    login_burst: f64,
    failover: &FailoverConfig,
) -> Duration {
    let survivors = survivors.max(1) as f64;
    let rate = logins_per_second.max(1e-3);
    let work = ((dropped as f64 - survivors * login_burst) / (survivors * rate)).max(0.0);
    let retry_after = (2.0 * (1.0 / rate).max(1.0)).ceil();
    let hold = retry_after + retry_after.max(failover.base.as_secs_f64());
    let detection = 1.0;
    Duration::from_secs_f64(detection + work + hold) + failover.cap * 2
}

/// How the clients dropped by a supernode's death came back, read off a crowd's timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The supernodes the dropped clients were on (one, for one kill).
    pub lost_hosts: Vec<String>,
    /// Clients whose connection dropped.
    pub dropped: usize,
    /// Of those, back online.
    pub back: usize,
    /// Seconds from the first drop until 50, 90, 99 and 100 % of the dropped clients were
    /// back; `None` where not reached.
    pub seconds_to: Percentiles,
    /// Where the dropped clients came back.
    pub back_on: BTreeMap<String, usize>,
    /// Logins refused on the way back (`rate_limited`, full, ...), by error code.
    pub refusals: BTreeMap<String, usize>,
    /// Attempts that failed otherwise (connect, TLS, closed, timeout).
    pub failed_attempts: usize,
    /// The most attempts one client needed.
    pub max_attempts: u32,
    /// Seconds from the first drop to each return, sorted.
    #[serde(skip)]
    pub times: Vec<f64>,
}

/// The times until shares of the dropped clients were back, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Half.
    pub p50: Option<f64>,
    /// 90 %.
    pub p90: Option<f64>,
    /// 99 %.
    pub p99: Option<f64>,
    /// All.
    pub p100: Option<f64>,
}

impl Recovery {
    /// The storm in `reports` (a crowd's timeline from before the kill): every client whose
    /// connection dropped at or after `since`, and its first return after that. `None` when no
    /// connection dropped. A client that drops again after its return counts once.
    pub fn from_reports(reports: &[Report], since: Instant) -> Option<Recovery> {
        let mut reports: Vec<&Report> = reports.iter().filter(|r| r.at >= since).collect();
        reports.sort_by_key(|r| r.at);
        // Per dropped user: when it dropped and when it came back.
        let mut outages: HashMap<usize, (Instant, Option<Instant>)> = HashMap::new();
        let mut lost_hosts = Vec::new();
        let mut recovery = Recovery {
            lost_hosts: Vec::new(),
            dropped: 0,
            back: 0,
            seconds_to: Percentiles::default(),
            back_on: BTreeMap::new(),
            refusals: BTreeMap::new(),
            failed_attempts: 0,
            max_attempts: 0,
            times: Vec::new(),
        };
        let mut returns = Vec::new();
        for report in reports {
            let outage = outages.get_mut(&report.user);
            match (&report.change, outage) {
                (Change::Offline { host, .. }, None) => {
                    outages.insert(report.user, (report.at, None));
                    if !lost_hosts.contains(host) {
                        lost_hosts.push(host.clone());
                    }
                }
                (Change::Online { host, attempt }, Some((_, back @ None))) => {
                    *back = Some(report.at);
                    returns.push(report.at);
                    *recovery.back_on.entry(host.clone()).or_default() += 1;
                    recovery.max_attempts = recovery.max_attempts.max(*attempt);
                }
                (Change::Refused { code, .. }, Some((_, None))) => {
                    *recovery.refusals.entry(code_name(*code)).or_default() += 1;
                }
                (Change::Failed { .. }, Some((_, None))) => recovery.failed_attempts += 1,
                _ => {}
            }
        }
        let first_drop = outages.values().map(|(dropped, _)| *dropped).min()?;
        recovery.lost_hosts = lost_hosts;
        recovery.dropped = outages.len();
        recovery.back = returns.len();
        recovery.times = returns
            .iter()
            .map(|at| at.saturating_duration_since(first_drop).as_secs_f64())
            .collect();
        recovery.times.sort_by(f64::total_cmp);
        recovery.seconds_to = Percentiles {
            p50: recovery.seconds_to_share(0.50),
            p90: recovery.seconds_to_share(0.90),
            p99: recovery.seconds_to_share(0.99),
            p100: recovery.seconds_to_share(1.0),
        };
        Some(recovery)
    }

    /// Whether every dropped client is back.
    pub fn all_back(&self) -> bool {
        self.back == self.dropped
    }

    /// Seconds until `share` (0–1) of the dropped clients were back (nearest rank); `None` if
    /// not reached.
    pub fn seconds_to_share(&self, share: f64) -> Option<f64> {
        let rank = (share * self.dropped as f64).ceil().max(1.0) as usize;
        self.times.get(rank - 1).copied()
    }

    /// The recovery curve as the corners of a step line: (seconds since the first drop, share
    /// of the dropped clients back).
    pub fn curve(&self) -> Vec<(f64, f64)> {
        let n = self.dropped.max(1) as f64;
        let mut points = vec![(0.0, 0.0)];
        for (i, t) in self.times.iter().enumerate() {
            points.push((*t, i as f64 / n));
            points.push((*t, (i + 1) as f64 / n));
        }
        points
    }

    /// The curve as CSV: `seconds,back,share`, one row per returning client.
    pub fn csv(&self) -> String {
        let n = self.dropped.max(1) as f64;
        let mut csv = String::from("seconds,back,share\n0.000,0,0.0000\n");
        for (i, t) in self.times.iter().enumerate() {
            csv.push_str(&format!("{t:.3},{},{:.4}\n", i + 1, (i + 1) as f64 / n));
        }
        csv
    }
}

/// Waits for a storm in `timeline` after `since`: first for a connection to drop (`wait_for_drop`
/// at most), then until every dropped client is back (and no drop came for a moment), or until
/// `limit` after the first drop. Returns the recovery as it stands then.
pub async fn measure(
    timeline: &Timeline,
    since: Instant,
    wait_for_drop: Duration,
    limit: Duration,
) -> anyhow::Result<Recovery> {
    let drop_deadline = Instant::now() + wait_for_drop;
    let first = loop {
        let reports = timeline.reports_since(since);
        if let Some(first) = reports.iter().find(|r| matches!(r.change, Change::Offline { .. })) {
            break first.at;
        }
        if Instant::now() >= drop_deadline {
            bail!(
                "no client lost its connection within {wait_for_drop:?}: kill one supernode \
                 (e.g. kill -9 PID) while `storm` waits"
            );
        }
        timeline.changed_before(drop_deadline).await;
    };
    let end = first + limit;
    let mut last_progress = Instant::now();
    loop {
        let reports = timeline.reports_since(since);
        let recovery = Recovery::from_reports(&reports, since).context("a drop was seen")?;
        let last_drop = reports
            .iter()
            .filter(|r| matches!(r.change, Change::Offline { .. }))
            .map(|r| r.at)
            .max()
            .unwrap_or(first);
        let now = Instant::now();
        let quiet = now.saturating_duration_since(last_drop) >= QUIET_AFTER_LAST_DROP;
        if (recovery.all_back() && quiet) || now >= end {
            return Ok(recovery);
        }
        if now.saturating_duration_since(last_progress) >= PROGRESS_EVERY {
            last_progress = now;
            eprintln!(
                "  {:.0} s after the first drop: {} of {} dropped clients back",
                now.saturating_duration_since(first).as_secs_f64(),
                recovery.back,
                recovery.dropped
            );
        }
        // Wake at the next report, or when the quiet time after the last drop is over.
        timeline
            .changed_before(
                end.min(last_drop + QUIET_AFTER_LAST_DROP).max(now + Duration::from_millis(50)),
            )
            .await;
    }
}

/// What `storm` was asked to do.
#[derive(Debug, Clone)]
pub struct StormPlan {
    /// Users to connect, from the state file.
    pub users: Vec<(String, SavedUser)>,
    /// Supernode URLs; user `i` is given the `i`th, round robin.
    pub supernodes: Vec<String>,
    /// Source addresses for the connections.
    pub sources: Option<SourceAddrs>,
    /// New connections per second at the start.
    pub ramp_per_second: f64,
    /// How long all users may take to be online before the kill.
    pub connect_limit: Duration,
    /// How long to wait for the operator to kill a supernode.
    pub wait_for_kill: Duration,
    /// How long after the first drop to wait for the dropped clients at most.
    pub recover_limit: Duration,
    /// Where to write the curve as CSV.
    pub csv: Option<PathBuf>,
    /// Where to write the curve as a PNG plot.
    pub png: Option<PathBuf>,
}

/// The result of `storm`.
#[derive(Debug, Serialize)]
pub struct StormReport {
    /// Always `storm`.
    pub command: &'static str,
    /// Users connected.
    pub users: usize,
    /// Seconds until all were online.
    pub connect_seconds: f64,
    /// Where they were before the kill.
    pub before: BTreeMap<String, usize>,
    /// Logins refused while connecting (admission control at the start), by error code.
    pub connect_refusals: BTreeMap<String, usize>,
    /// The storm.
    pub recovery: Recovery,
    /// Where they were at the end.
    pub after: BTreeMap<String, usize>,
}

/// Runs `storm`.
pub async fn run(plan: StormPlan) -> anyhow::Result<StormReport> {
    let accounts = plan
        .users
        .iter()
        .map(|(name, saved)| Account::from_saved(name, saved))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let users = accounts.len();
    eprintln!(
        "connecting {users} users over {} supernode(s) at {} per second…",
        plan.supernodes.len(),
        plan.ramp_per_second
    );
    let started = Instant::now();
    let crowd_plan = CrowdPlan {
        accounts,
        homes: plan.supernodes.clone(),
        ramp_per_second: plan.ramp_per_second,
    };
    let dialers = Arc::new(Dialers::new(plan.sources));
    let crowd = Crowd::start(crowd_plan, dialers, LightConfig::default()).await;
    let (snapshot, all) =
        wait_online(&crowd, plan.connect_limit.saturating_sub(started.elapsed())).await;
    let connect_seconds = started.elapsed().as_secs_f64();
    if !all {
        let refused = Recovery::refusals_of(&crowd.timeline().reports_since(started));
        crowd.stop().await;
        bail!(
            "only {} of {users} users were online after {connect_seconds:.0} s ({:?}; refusals \
             {refused:?}); lower --ramp or raise the supernodes' limits.logins_per_second",
            snapshot.online,
            snapshot.by_host
        );
    }
    let connect_refusals = Recovery::refusals_of(&crowd.timeline().reports_since(started));
    eprintln!(
        "all {users} online in {connect_seconds:.1} s: {}\nkill one supernode now (e.g. kill -9 \
         PID); waiting up to {} s…",
        hosts_line(&snapshot.by_host),
        plan.wait_for_kill.as_secs()
    );
    let since = Instant::now();
    let measured = measure(crowd.timeline(), since, plan.wait_for_kill, plan.recover_limit).await;
    let after = crowd.timeline().snapshot().by_host;
    crowd.stop().await;
    let recovery = measured?;
    if let Some(path) = &plan.csv {
        std::fs::write(path, recovery.csv())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &plan.png {
        let label = format!("{} of {users} clients dropped", recovery.dropped);
        let series = [Series { label, points: recovery.curve() }];
        plot::recovery_png(path, "Reconnect storm: dropped clients back online", &series)?;
    }
    Ok(StormReport {
        command: "storm",
        users,
        connect_seconds,
        before: snapshot.by_host,
        connect_refusals,
        recovery,
        after,
    })
}

async fn wait_online(crowd: &Crowd, within: Duration) -> (Snapshot, bool) {
    let deadline = Instant::now() + within;
    let n = crowd.len();
    loop {
        let step = (Instant::now() + PROGRESS_EVERY).min(deadline);
        let (snapshot, all) = crowd.timeline().wait_until(step, |s| s.online == n).await;
        if all || Instant::now() >= deadline {
            return (snapshot, all);
        }
        eprintln!("  {} of {n} online", snapshot.online);
    }
}

impl Recovery {
    /// Refusals in `reports`, by error code.
    fn refusals_of(reports: &[Report]) -> BTreeMap<String, usize> {
        let mut refusals = BTreeMap::new();
        for report in reports {
            if let Change::Refused { code, .. } = &report.change {
                *refusals.entry(code_name(*code)).or_default() += 1;
            }
        }
        refusals
    }
}

/// An error code as the protocol spells it (`rate_limited`).
fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

fn hosts_line(by_host: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = by_host.iter().map(|(h, n)| format!("{n} on {h}")).collect();
    parts.join(", ")
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "not reached".to_owned(), |s| format!("{s:.2} s"))
}

impl std::fmt::Display for StormReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.recovery;
        writeln!(
            f,
            "{} users online in {:.1} s: {}",
            self.users,
            self.connect_seconds,
            hosts_line(&self.before)
        )?;
        writeln!(
            f,
            "{} dropped (from {}), {} back: 50 % after {}, 90 % after {}, 99 % after {}, all after {}",
            r.dropped,
            r.lost_hosts.join(", "),
            r.back,
            secs(r.seconds_to.p50),
            secs(r.seconds_to.p90),
            secs(r.seconds_to.p99),
            secs(r.seconds_to.p100)
        )?;
        writeln!(
            f,
            "  back on: {}; refused on the way: {:?}; other failed attempts: {}; most attempts by one client: {}",
            hosts_line(&r.back_on),
            r.refusals,
            r.failed_attempts,
            r.max_attempts
        )?;
        write!(f, "at the end: {}", hosts_line(&self.after))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64, user: usize, change: Change) -> Report {
        Report { user, at: t0 + Duration::from_millis(ms), change }
    }

    fn online(host: &str, attempt: u32) -> Change {
        Change::Online { host: host.into(), attempt }
    }

    fn offline(host: &str) -> Change {
        Change::Offline { host: host.into(), why: "closed".into() }
    }

    #[test]
    fn times_count_from_the_first_drop_and_each_client_counts_once() {
        let t0 = Instant::now();
        let refused = Change::Refused {
            host: "b".into(),
            code: ErrorCode::RateLimited,
            retry_after: Duration::from_secs(2),
        };
        let reports = vec![
            at(t0, 0, 0, online("a", 1)), // before the storm: ignored
            at(t0, 1000, 0, offline("a")),
            at(t0, 1010, 1, offline("a")),
            at(t0, 1020, 2, offline("a")),
            at(t0, 1030, 3, offline("a")),
            at(t0, 1300, 0, online("b", 1)),
            at(t0, 1400, 1, refused.clone()),
            at(t0, 2000, 1, online("c", 2)),
            at(t0, 3000, 2, online("b", 1)),
            at(t0, 3500, 2, offline("b")), // dropped again: its first return counts
            at(t0, 3600, 2, online("c", 1)),
        ];
        let r = Recovery::from_reports(&reports, t0 + Duration::from_millis(500)).unwrap();
        assert_eq!((r.dropped, r.back, r.all_back()), (4, 3, false));
        assert_eq!(r.lost_hosts, ["a"]);
        assert_eq!(r.times, [0.3, 1.0, 2.0]);
        assert_eq!(r.seconds_to.p50, Some(1.0));
        assert_eq!((r.seconds_to.p90, r.seconds_to.p100), (None, None));
        assert_eq!(r.back_on, BTreeMap::from([("b".into(), 2), ("c".into(), 1)]));
        assert_eq!(r.refusals, BTreeMap::from([("rate_limited".into(), 1)]));
        assert_eq!(r.max_attempts, 2);
        assert_eq!(r.curve()[..3], [(0.0, 0.0), (0.3, 0.0), (0.3, 0.25)]);
        assert!(r.csv().starts_with("seconds,back,share\n0.000,0,0.0000\n0.300,1,0.2500\n"));
        assert!(Recovery::from_reports(&reports[..1], t0).is_none());
    }

    #[tokio::test]
    async fn measuring_waits_for_a_drop_and_for_every_return() {
        let timeline = Timeline::new(2);
        let since = Instant::now();
        let nothing = measure(&timeline, since, Duration::from_millis(50), Duration::from_secs(1));
        assert!(nothing.await.unwrap_err().to_string().contains("kill one supernode"));

        let t = timeline.clone();
        tokio::spawn(async move {
            t.record(Report { user: 0, at: Instant::now(), change: offline("a") });
            tokio::time::sleep(Duration::from_millis(100)).await;
            t.record(Report { user: 0, at: Instant::now(), change: online("b", 1) });
        });
        let r = measure(&timeline, since, Duration::from_secs(5), Duration::from_secs(30)).await;
        let r = r.unwrap();
        assert_eq!((r.dropped, r.back), (1, 1));
        assert!(r.times[0] >= 0.1, "{r:?}");
    }
}
