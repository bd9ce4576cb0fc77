//! A crowd of light clients in one process, and the timeline of what happened to them: who is
//! online on which supernode, and every login, refusal, failure and loss with its time. A
//! reconnect storm is read off the timeline afterwards (`storm`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::light::{Account, Change, Dialers, LightClient, LightConfig, Network, Report, Reporter};

/// Where the crowd stands now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Users logged in somewhere.
    pub online: usize,
    /// Logged-in users by supernode URL.
    pub by_host: BTreeMap<String, usize>,
    /// Users that stopped for good (token refused).
    pub gave_up: usize,
    /// Every report so far.
    pub reports: usize,
}

struct Inner {
    reports: Vec<Report>,
    /// The supernode each user is logged in on.
    hosts: Vec<Option<String>>,
    snapshot: Snapshot,
}

/// Every report of a crowd, in the order they came, and the state they add up to.
pub struct Timeline {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl Timeline {
    /// An empty timeline for users `0..users`.
    pub fn new(users: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                reports: Vec::new(),
                hosts: vec![None; users],
                snapshot: Snapshot::default(),
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking reporter leaves consistent data (each update is one push and counters).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one report.
    pub fn record(&self, report: Report) {
        let mut inner = self.lock();
        let Inner { reports, hosts, snapshot } = &mut *inner;
        if let Some(slot) = hosts.get_mut(report.user) {
            if let Some(old) = slot.take() {
                snapshot.online -= 1;
                if let Some(n) = snapshot.by_host.get_mut(&old) {
                    *n -= 1;
                }
            }
            match &report.change {
                Change::Online { host, .. } => {
                    snapshot.online += 1;
                    *snapshot.by_host.entry(host.clone()).or_default() += 1;
                    *slot = Some(host.clone());
                }
                Change::GaveUp { .. } => snapshot.gave_up += 1,
                Change::Offline { .. } | Change::Refused { .. } | Change::Failed { .. } => {}
            }
        }
        reports.push(report);
        snapshot.reports = reports.len();
        drop(inner);
        self.changed.notify_waiters();
    }

    /// A reporter for light clients that records here.
    pub fn reporter(self: &Arc<Self>) -> Reporter {
        let timeline = self.clone();
        Arc::new(move |report| timeline.record(report))
    }

    /// Where the crowd stands now.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    /// The supernode user `user` is logged in on.
    pub fn host_of(&self, user: usize) -> Option<String> {
        self.lock().hosts.get(user).cloned().flatten()
    }

    /// The reports made at or after `since`, in order.
    pub fn reports_since(&self, since: Instant) -> Vec<Report> {
        self.lock().reports.iter().filter(|r| r.at >= since).cloned().collect()
    }

    /// Waits until `pred` holds for the snapshot, at most until `deadline`; returns the last
    /// snapshot and whether it held.
    pub async fn wait_until(
        &self,
        deadline: Instant,
        pred: impl Fn(&Snapshot) -> bool,
    ) -> (Snapshot, bool) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a change in between is not missed.
            notified.as_mut().enable();
            let snapshot = self.snapshot();
            if pred(&snapshot) {
                return (snapshot, true);
            }
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                () = &mut notified => {}
                () = sleep => {
                    let snapshot = self.snapshot();
                    let held = pred(&snapshot);
                    return (snapshot, held);
                }
            }
        }
    }

    /// Waits for the next report, at most until `deadline`.
    pub async fn changed_before(&self, deadline: Instant) {
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            () = self.changed.notified() => {}
            () = sleep => {}
        }
    }
}

/// Who joins a crowd, and how fast.
#[derive(Debug, Clone)]
pub struct CrowdPlan {
    /// The users; user `i` is the `i`th.
    pub accounts: Vec<Account>,
    /// Supernode URLs: user `i` is given `homes[i % homes.len()]` (and learns the others at
    /// login, as a real client does).
    pub homes: Vec<String>,
    /// New clients started per second.
    pub ramp_per_second: f64,
}

/// A running crowd of light clients.
pub struct Crowd {
    clients: Vec<LightClient>,
    timeline: Arc<Timeline>,
}

impl Crowd {
    /// Starts the crowd's clients at the plan's rate (returns once all are started, not once
    /// they are online: see [`Crowd::wait_all_online`]).
    pub async fn start(plan: CrowdPlan, dialers: Arc<Dialers>, config: LightConfig) -> Crowd {
        let timeline = Timeline::new(plan.accounts.len());
        let network = Network { dialers, config, report: timeline.reporter() };
        let interval = Duration::from_secs_f64(1.0 / plan.ramp_per_second.clamp(0.001, 1e6));
        let started = tokio::time::Instant::now();
        let mut clients = Vec::with_capacity(plan.accounts.len());
        for (i, account) in plan.accounts.into_iter().enumerate() {
            tokio::time::sleep_until(started + interval.mul_f64(i as f64)).await;
            let home = match plan.homes.len() {
                0 => Vec::new(),
                n => plan.homes.get(i % n).cloned().into_iter().collect(),
            };
            clients.push(LightClient::spawn(i, account, home, &network, false));
        }
        Crowd { clients, timeline }
    }

    /// The crowd's timeline.
    pub fn timeline(&self) -> &Arc<Timeline> {
        &self.timeline
    }

    /// How many clients the crowd has.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether the crowd has no clients.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Client `i`.
    pub fn client(&self, i: usize) -> Option<&LightClient> {
        self.clients.get(i)
    }

    /// Waits until every client is online (`within` at most); returns the snapshot and whether
    /// all were.
    pub async fn wait_all_online(&self, within: Duration) -> (Snapshot, bool) {
        let n = self.clients.len();
        self.timeline.wait_until(Instant::now() + within, |s| s.online == n).await
    }

    /// Stops every client (closing each connection politely), all at once.
    pub async fn stop(self) {
        let mut stopping = JoinSet::new();
        for client in self.clients {
            stopping.spawn(client.stop());
        }
        while stopping.join_next().await.is_some() {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn report(user: usize, change: Change) -> Report {
        Report { user, at: Instant::now(), change }
    }

    fn online(host: &str) -> Change {
        Change::Online { host: host.into(), attempt: 1 }
    }

    #[test]
    fn the_snapshot_follows_logins_losses_and_moves() {
        let t = Timeline::new(3);
        t.record(report(0, online("a")));
        t.record(report(1, online("a")));
        t.record(report(2, online("b")));
        t.record(report(0, Change::Offline { host: "a".into(), why: "closed".into() }));
        t.record(report(0, online("b")));
        t.record(report(9, online("z"))); // unknown users are kept, not counted
        let s = t.snapshot();
        assert_eq!(s.online, 3);
        assert_eq!(s.by_host, BTreeMap::from([("a".into(), 1), ("b".into(), 2)]));
        assert_eq!((s.reports, t.host_of(0).as_deref()), (6, Some("b")));
        t.record(report(1, Change::GaveUp { why: "token".into() }));
        let s = t.snapshot();
        assert_eq!((s.online, s.gave_up, s.by_host["a"]), (2, 1, 0));
    }

    #[tokio::test]
    async fn waiting_ends_when_the_condition_holds_or_at_the_deadline() {
        let t = Timeline::new(1);
        let waiter = {
            let t = t.clone();
            tokio::spawn(async move {
                t.wait_until(Instant::now() + Duration::from_secs(10), |s| s.online == 1).await
            })
        };
        tokio::task::yield_now().await;
        t.record(report(0, online("a")));
        assert!(waiter.await.unwrap().1);
        let (_, held) = t.wait_until(Instant::now(), |s| s.online == 2).await;
        assert!(!held);
    }
}
