//! What every task of one worker shares: who its users are and whether each is online, the
//! counters and histograms of the run, the calls waiting for their events, and the count of work
//! in flight that `quiesce` waits for.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use peerline_wire::{ErrorCode, Event, Reply, Request};
use tokio::sync::{Notify, mpsc};

use super::histograms::Histograms;
use super::plan::{Counts, WorkerPlan};
use crate::light::{Change, LightClient, Report, RequestFailure};
use crate::roster;

/// A login's state, per user.
const PENDING: u8 = 0;
const ONLINE_ONCE: u8 = 1;
const GAVE_UP: u8 = 2;

/// The wire name of an error code (`rate_limited`, …).
pub(super) fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A short name for why a request failed, for `request:reason` error kinds.
fn failure_reason(failure: &RequestFailure) -> String {
    match failure {
        RequestFailure::Offline => "offline".to_owned(),
        RequestFailure::Lost => "lost".to_owned(),
        RequestFailure::TimedOut => "timeout".to_owned(),
        RequestFailure::Busy => "too_many_in_flight".to_owned(),
        RequestFailure::Server(body) => code_name(body.code),
    }
}

/// Counters and histograms behind one lock (updated a few thousand times a second at most).
#[derive(Default)]
pub(super) struct Tallies {
    pub(super) histograms: Histograms,
    pub(super) errors: Counts,
    pub(super) skipped: Counts,
    pub(super) login_attempts_failed: Counts,
    pub(super) disconnects: Counts,
    pub(super) events: std::collections::BTreeMap<String, u64>,
    /// `(sending worker, sequence number)` of every message of this run received here.
    pub(super) delivered: HashSet<(u64, u64)>,
}

/// Counts of things that happen often, without the lock.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) online: AtomicUsize,
    pub(super) settled: AtomicUsize,
    pub(super) relogins: AtomicU64,
    pub(super) pings: AtomicU64,
    pub(super) messages_sent: AtomicU64,
    pub(super) messages_delivered: AtomicU64,
    pub(super) messages_duplicated: AtomicU64,
    pub(super) messages_stale: AtomicU64,
    pub(super) presence_changes: AtomicU64,
    pub(super) presence_events: AtomicU64,
    pub(super) searches: AtomicU64,
    pub(super) calls_started: AtomicU64,
    pub(super) calls_completed: AtomicU64,
    pub(super) calls_answered: AtomicU64,
    pub(super) message_seq: AtomicU64,
}

/// Work in flight (requests, call exchanges), so that `quiesce` can wait for it to finish.
#[derive(Default)]
pub(super) struct Inflight {
    count: AtomicUsize,
    idle: Notify,
}

/// One unit of work in flight; dropping it ends it.
pub(super) struct InflightGuard(std::sync::Arc<Inflight>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Inflight {
    /// Starts one unit of work.
    pub(super) fn enter(self: &std::sync::Arc<Self>) -> InflightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.clone())
    }

    /// Units in flight now.
    pub(super) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until nothing is in flight, `within` at most; whether it got there.
    pub(super) async fn wait_idle(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.len() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.len() == 0;
            }
        }
    }
}

/// One worker's shared state.
pub(super) struct Shared {
    pub(super) plan: WorkerPlan,
    /// Usernames of every user of the run (all workers), by run index.
    pub(super) names: Vec<String>,
    /// Device keys of this worker's users, by local index (to sign call offers and answers).
    pub(super) keys: Vec<SigningKey>,
    /// This worker's clients, by local index (set once started).
    pub(super) clients: Mutex<Vec<std::sync::Arc<LightClient>>>,
    online: Vec<AtomicBool>,
    login_state: Vec<AtomicU8>,
    started_at: Mutex<Vec<Option<Instant>>>,
    /// Each user's status as last set (index into [`super::activity::STATUSES`]).
    pub(super) status: Vec<AtomicU8>,
    /// Whether call pair `p` (local users `2p`, `2p + 1`) is in an exchange.
    pub(super) pair_busy: Vec<AtomicBool>,
    /// Whether the hold has started (presence events count from then).
    pub(super) holding: AtomicBool,
    pub(super) counters: Counters,
    pub(super) inflight: std::sync::Arc<Inflight>,
    tallies: Mutex<Tallies>,
    /// Where the events of a call go: `(call id, local user)` → its exchange's task.
    calls: Mutex<HashMap<(String, usize), mpsc::UnboundedSender<Event>>>,
}

impl Shared {
    /// The state of a worker with these users (`names` of the whole run, `keys` of its own).
    pub(super) fn new(plan: WorkerPlan, names: Vec<String>, keys: Vec<SigningKey>) -> Self {
        let count = plan.count;
        Self {
            plan,
            names,
            keys,
            clients: Mutex::new(Vec::with_capacity(count)),
            online: (0..count).map(|_| AtomicBool::new(false)).collect(),
            login_state: (0..count).map(|_| AtomicU8::new(PENDING)).collect(),
            started_at: Mutex::new(vec![None; count]),
            status: (0..count).map(|_| AtomicU8::new(0)).collect(),
            pair_busy: (0..count.div_ceil(2)).map(|_| AtomicBool::new(false)).collect(),
            holding: AtomicBool::new(false),
            counters: Counters::default(),
            inflight: std::sync::Arc::default(),
            tallies: Mutex::new(Tallies::default()),
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// The counters and histograms.
    pub(super) fn tallies(&self) -> MutexGuard<'_, Tallies> {
        // Every update is a few counter increments: a panic in one leaves usable data.
        self.tallies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The username of local user `local`.
    pub(super) fn name(&self, local: usize) -> &str {
        self.names.get(self.plan.first + local).map_or("", String::as_str)
    }

    /// Client of local user `local`.
    pub(super) fn client(&self, local: usize) -> Option<std::sync::Arc<LightClient>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).get(local).cloned()
    }

    /// Whether local user `local` is logged in now.
    pub(super) fn is_online(&self, local: usize) -> bool {
        self.online.get(local).is_some_and(|o| o.load(Ordering::Relaxed))
    }

    /// Notes that local user `local` was started now (its login latency counts from here).
    pub(super) fn started(&self, local: usize) {
        let mut started = self.started_at.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = started.get_mut(local) {
            *slot = Some(Instant::now());
        }
    }

    /// Users that logged in at least once.
    pub(super) fn logins_ok(&self) -> u64 {
        self.login_state.iter().filter(|s| s.load(Ordering::Relaxed) == ONLINE_ONCE).count() as u64
    }

    /// Counts users still pending as settled (the login phase is over for them); returns how
    /// many that was.
    pub(super) fn settle_pending(&self) -> usize {
        let mut n = 0;
        for state in &self.login_state {
            if state.compare_exchange(PENDING, GAVE_UP, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                n += 1;
            }
        }
        self.counters.settled.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Takes a light client's report (its reporter callback).
    pub(super) fn on_report(&self, report: Report) {
        let local = report.user;
        let (Some(online), Some(state)) = (self.online.get(local), self.login_state.get(local))
        else {
            return;
        };
        match report.change {
            Change::Online { attempt, .. } => {
                if !online.swap(true, Ordering::AcqRel) {
                    self.counters.online.fetch_add(1, Ordering::Relaxed);
                }
                let first = state.swap(ONLINE_ONCE, Ordering::AcqRel);
                match first {
                    PENDING => {
                        self.counters.settled.fetch_add(1, Ordering::Relaxed);
                        let started = self
                            .started_at
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(local)
                            .copied()
                            .flatten();
                        if let Some(started) = started {
                            // A first-try login is one TCP + TLS + WebSocket + hello + login;
                            // after refusals it includes the client's backoff, kept apart.
                            let kind = if attempt <= 1 { "login" } else { "login_after_retries" };
                            let latency = report.at.saturating_duration_since(started);
                            self.tallies().histograms.record(kind, latency);
                        }
                    }
                    // Logged in after the login phase gave up on it: late, not a relogin.
                    GAVE_UP => {}
                    _ => {
                        self.counters.relogins.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Change::Offline { why, .. } => {
                if online.swap(false, Ordering::AcqRel) {
                    self.counters.online.fetch_sub(1, Ordering::Relaxed);
                }
                let kind = if why.starts_with("session ended") {
                    "session_ended"
                } else if why.contains("closed") {
                    "closed"
                } else {
                    "connection_error"
                };
                self.tallies().disconnects.add(kind, || why.clone());
            }
            Change::Refused { code, .. } => {
                let kind = format!("refused:{}", code_name(code));
                self.tallies().login_attempts_failed.add(&kind, String::new);
            }
            Change::Failed { why, .. } => {
                self.tallies().login_attempts_failed.add("failed", || why.clone());
            }
            Change::GaveUp { why } => {
                if state
                    .compare_exchange(PENDING, GAVE_UP, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.counters.settled.fetch_add(1, Ordering::Relaxed);
                }
                self.tallies().login_attempts_failed.add("gave_up", || why.clone());
            }
        }
    }

    /// Records that `kind` failed with `detail`, as error `kind:reason`.
    pub(super) fn error(&self, kind: &str, reason: &str, detail: impl FnOnce() -> String) {
        self.tallies().errors.add(&format!("{kind}:{reason}"), detail);
    }

    /// Counts activity that was not started, by why.
    pub(super) fn skip(&self, why: &str) {
        self.tallies().skipped.add(why, String::new);
    }

    /// Sends `request` from local user `local` and times it as `kind`: the reply, or `None`
    /// after counting the error.
    pub(super) async fn timed(&self, local: usize, kind: &str, request: Request) -> Option<Reply> {
        let Some(client) = self.client(local) else {
            self.error(kind, "no_client", String::new);
            return None;
        };
        let started = Instant::now();
        match client.request(request).await {
            Ok(reply) => {
                self.tallies().histograms.record(kind, started.elapsed());
                Some(reply)
            }
            Err(failure) => {
                self.error(kind, &failure_reason(&failure), || failure.to_string());
                None
            }
        }
    }

    /// Records a latency measured by the caller (from a request to an event, say).
    pub(super) fn record(&self, kind: &str, latency: Duration) {
        self.tallies().histograms.record(kind, latency);
    }

    /// The run users that are contacts of run user `run_index` (the roster's contacts that take
    /// part in this run).
    pub(super) fn contacts_in_run(&self, run_index: usize) -> Vec<usize> {
        let skip = self.plan.skip;
        roster::contacts_of(skip + run_index, self.plan.roster_size)
            .into_iter()
            .filter_map(|c| c.checked_sub(skip))
            .filter(|&c| c < self.plan.users)
            .collect()
    }

    /// Routes the events of call `call_id` that reach local user `local` to `to` from now on.
    pub(super) fn expect_call(
        &self,
        call_id: &str,
        local: usize,
        to: mpsc::UnboundedSender<Event>,
    ) {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.insert((call_id.to_owned(), local), to);
    }

    /// Stops routing the events of call `call_id` to local user `local`'s exchange.
    pub(super) fn forget_call(&self, call_id: &str, local: usize) {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.remove(&(call_id.to_owned(), local));
    }

    /// Passes a call event for local user `local` to its exchange; `false` if none waits for it.
    pub(super) fn route_call_event(&self, call_id: &str, local: usize, event: Event) -> bool {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        match calls.get(&(call_id.to_owned(), local)) {
            Some(to) => to.send(event).is_ok(),
            None => false,
        }
    }
}
