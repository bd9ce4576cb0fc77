//! Where and when to connect next, without IO: the policy a client follows after losing its
//! supernode. It goes round the network's host cache, starting with the host after the one it
//! lost, and waits before each attempt with full-jitter exponential backoff (a random delay
//! between 0 and min(cap, base · 2ⁿ), as in "Exponential Backoff And Jitter", AWS Architecture
//! Blog, 2015), so that the users of a failed supernode spread their logins over the survivors
//! instead of arriving in one wave (docs/scaling.md works out the numbers). A supernode that
//! refuses with `retry_after_secs` is not tried again before then, plus jitter.
//!
//! The driver asks [`Failover::plan`] for the next [`Attempt`], sleeps until [`Attempt::at`],
//! calls [`Failover::started`], dials, and reports [`Failover::connected`],
//! [`Failover::failed`] or [`Failover::refused`]; later [`Failover::lost`]. Time and randomness
//! come in as arguments (`jitter` is a uniform random number in `[0, 1]`), so tests run on a
//! fake clock with chosen jitter.
//!
//! The plan survives a cancelled wait (a caller that gives up on a reconnect and asks again
//! later gets the same attempt, at the same time), while an attempt that was started and never
//! reported counts as failed: a host that swallows connections cannot hold the client forever.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use peerline_wire::{ErrorBody, ErrorCode};

/// What a supernode's refusal of a login attempt means for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not now: hold this host for the delay it asked for ([`Failover::refused`]).
    Wait(Duration),
    /// No supernode will do better (the session is void or the device key refused): stop and
    /// ask the user.
    GiveUp,
    /// This host failed; the next one may do ([`Failover::failed`]).
    Failed,
}

/// Sorts a supernode's refusal: `shutting_down`, `unavailable`, `rate_limited` and
/// `login_throttled` with `retry_after_secs` hold the host; a void session (`invalid_token`,
/// `invalid_credentials`) or a refused device key (`invalid_device_signature`) gives up;
/// anything else is an ordinary failure. Every client (the library, the load generator, the
/// web client) sorts refusals this one way.
pub fn sort_refusal(body: &ErrorBody) -> Refusal {
    match (body.code, body.retry_after_secs) {
        (
            ErrorCode::InvalidToken
            | ErrorCode::InvalidCredentials
            | ErrorCode::InvalidDeviceSignature,
            _,
        ) => Refusal::GiveUp,
        (code, Some(secs)) if is_refusal(code) || code == ErrorCode::LoginThrottled => {
            Refusal::Wait(Duration::from_secs(secs))
        }
        _ => Refusal::Failed,
    }
}

/// Whether an error code says "not now, try later or elsewhere" (the supernode is full,
/// stopping, or without its database): the refusals a client waits out, also when they come
/// without a request id as a notice before the connection closes.
pub fn is_refusal(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::ShuttingDown | ErrorCode::Unavailable | ErrorCode::RateLimited)
}

/// Tuning of the policy. The defaults are the protocol's (docs/protocol.md, "Failover").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverConfig {
    /// The first retry of an outage waits up to this long; each further retry doubles the bound.
    /// Default 0.5 s.
    pub base: Duration,
    /// The bound stops doubling here. Default 30 s.
    pub cap: Duration,
    /// A connection that stayed up this long ends the outage: the next loss starts again from
    /// `base`. One that drops sooner keeps the grown bound, so a supernode that accepts and
    /// drops at once is not hammered. Default 60 s.
    pub stable_after: Duration,
    /// Longest `retry_after_secs` obeyed; a larger one is cut to this (a confused supernode
    /// should not park a host for days). Default 1 hour.
    pub max_retry_after: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

/// One connection attempt the policy asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The supernode URL to dial.
    pub host: String,
    /// Not before this instant.
    pub at: Instant,
    /// Which attempt of the current outage this is, from 1.
    pub number: u32,
}

/// Where the client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Never connected, nothing tried: the first attempt goes at once.
    Fresh,
    /// Connected since then.
    Up { since: Instant },
    /// Trying to connect.
    Down,
}

/// An attempt handed out and not yet reported.
#[derive(Debug, Clone)]
struct Planned {
    attempt: Attempt,
    started: bool,
}

/// The failover policy of one client: which host next, and when.
#[derive(Debug, Clone)]
pub struct Failover {
    config: FailoverConfig,
    hosts: Vec<String>,
    /// The host last tried or connected to; the next attempt starts after it.
    current: Option<String>,
    link: Link,
    /// Delayed attempts made in this outage: the exponent of the next bound.
    retries: u32,
    /// Attempts made in this outage (for [`Attempt::number`]).
    attempts: u32,
    planned: Option<Planned>,
    /// Hosts that asked not to be tried before an instant (`retry_after_secs`).
    holds: HashMap<String, Instant>,
}

impl Failover {
    /// A policy over `hosts` (in the order to try them, usually [`crate::HostCache::hosts`]).
    pub fn new(hosts: Vec<String>, config: FailoverConfig) -> Self {
        Self {
            config,
            hosts,
            current: None,
            link: Link::Fresh,
            retries: 0,
            attempts: 0,
            planned: None,
            holds: HashMap::new(),
        }
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Replaces the host list (a login brought the network's list). The current host keeps its
    /// place by name; holds on hosts no longer listed are forgotten.
    pub fn set_hosts(&mut self, hosts: Vec<String>) {
        self.holds.retain(|host, _| hosts.contains(host));
        if let Some(planned) = &self.planned
            && !hosts.contains(&planned.attempt.host)
        {
            self.planned = None;
        }
        self.hosts = hosts;
    }

    /// The host last tried or connected to.
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// The next attempt: the one already planned if its wait was cancelled, or a new one.
    /// `None` only when there are no hosts. `jitter` is uniform in `[0, 1]`; values outside are
    /// clamped.
    pub fn plan(&mut self, now: Instant, jitter: f64) -> Option<Attempt> {
        if let Some(planned) = &self.planned {
            if !planned.started {
                return Some(planned.attempt.clone());
            }
            // Started and never reported: the driver gave up on it, so it failed.
            self.planned = None;
        }
        if self.hosts.is_empty() {
            return None;
        }
        let delay = if self.link == Link::Fresh {
            Duration::ZERO
        } else {
            let bound = self.bound(self.retries);
            self.retries = self.retries.saturating_add(1);
            bound.mul_f64(unit(jitter))
        };
        self.link = Link::Down;
        let earliest = now.checked_add(delay).unwrap_or(now);
        let (host, held_until) = self.choose(earliest);
        self.attempts = self.attempts.saturating_add(1);
        let attempt =
            Attempt { host: host.clone(), at: earliest.max(held_until), number: self.attempts };
        self.current = Some(host);
        self.planned = Some(Planned { attempt: attempt.clone(), started: false });
        Some(attempt)
    }

    /// The driver is dialing the planned attempt now. If it never reports back (its task was
    /// cancelled), the next [`Failover::plan`] counts the attempt as failed.
    pub fn started(&mut self) {
        if let Some(planned) = &mut self.planned {
            planned.started = true;
        }
    }

    /// The attempt connected (and logged in).
    pub fn connected(&mut self, now: Instant) {
        self.planned = None;
        if let Some(host) = &self.current {
            self.holds.remove(host);
        }
        self.link = Link::Up { since: now };
        self.attempts = 0;
    }

    /// The attempt failed (unreachable, TLS, a dropped connection); the next one goes to the
    /// next host after the backoff.
    pub fn failed(&mut self) {
        self.planned = None;
    }

    /// The supernode refused with `retry_after`: it is not tried again before that, plus a
    /// random extra of up to as much again (at least `base`), so that clients refused together
    /// do not come back together.
    pub fn refused(&mut self, now: Instant, retry_after: Duration, jitter: f64) {
        self.planned = None;
        let retry_after = retry_after.min(self.config.max_retry_after);
        let spread = retry_after.max(self.config.base).mul_f64(unit(jitter));
        if let Some(host) = &self.current
            && let Some(until) = now.checked_add(retry_after + spread)
        {
            self.holds.insert(host.clone(), until);
        }
    }

    /// The connection that was up is gone. If it had been up for
    /// [`FailoverConfig::stable_after`], the backoff starts again from `base`.
    pub fn lost(&mut self, now: Instant) {
        if let Link::Up { since } = self.link {
            if now.saturating_duration_since(since) >= self.config.stable_after {
                self.retries = 0;
            }
            self.link = Link::Down;
        }
    }

    /// The bound of the `retries`-th delayed attempt: base · 2^retries, at most cap.
    fn bound(&self, retries: u32) -> Duration {
        let factor = 2u32.saturating_pow(retries.min(31));
        self.config.base.saturating_mul(factor).min(self.config.cap)
    }

    /// The host for an attempt not before `earliest`: the first after the current one (round
    /// the list) that is not held past `earliest`; if all are, the one free soonest. Returns it
    /// with the instant its hold ends (or `earliest`).
    fn choose(&self, earliest: Instant) -> (String, Instant) {
        let n = self.hosts.len();
        let start = self
            .current
            .as_ref()
            .and_then(|c| self.hosts.iter().position(|h| h == c))
            .and_then(|i| (i + 1).checked_rem(n))
            .unwrap_or(0);
        let free_at = |host: &String| self.holds.get(host).copied().unwrap_or(earliest);
        let order = self.hosts.iter().cycle().skip(start).take(n);
        let mut best: Option<(&String, Instant)> = None;
        for host in order {
            let at = free_at(host).max(earliest);
            if at == earliest {
                return (host.clone(), earliest);
            }
            if best.is_none_or(|(_, b)| at < b) {
                best = Some((host, at));
            }
        }
        best.map_or_else(|| (String::new(), earliest), |(h, at)| (h.clone(), at))
    }
}

/// `jitter` brought into `[0, 1]`; NaN counts as 0 (a Duration cannot be scaled by it).
fn unit(jitter: f64) -> f64 {
    if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn refusals_sort_into_wait_give_up_or_next_host() {
        let body = |code, secs| {
            let mut b = ErrorBody::new(code);
            b.retry_after_secs = secs;
            b
        };
        for code in [
            ErrorCode::ShuttingDown,
            ErrorCode::Unavailable,
            ErrorCode::RateLimited,
            ErrorCode::LoginThrottled,
        ] {
            assert_eq!(sort_refusal(&body(code, Some(7))), Refusal::Wait(7 * 1000 * MS));
            assert_eq!(sort_refusal(&body(code, None)), Refusal::Failed, "{code:?}");
        }
        for code in [
            ErrorCode::InvalidToken,
            ErrorCode::InvalidCredentials,
            ErrorCode::InvalidDeviceSignature,
        ] {
            assert_eq!(sort_refusal(&body(code, Some(7))), Refusal::GiveUp, "{code:?}");
        }
        assert_eq!(sort_refusal(&body(ErrorCode::Internal, Some(7))), Refusal::Failed);
        assert!(!is_refusal(ErrorCode::LoginThrottled), "a throttle is per account, not per host");
    }

    fn hosts(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("wss://sn{i}:7443")).collect()
    }

    fn policy(n: usize) -> Failover {
        Failover::new(hosts(n), FailoverConfig::default())
    }

    /// Plans with `jitter`, dials, and fails; returns the attempt.
    fn fail(f: &mut Failover, now: Instant, jitter: f64) -> Attempt {
        let attempt = f.plan(now, jitter).unwrap();
        f.started();
        f.failed();
        attempt
    }

    #[test]
    fn the_first_attempt_goes_at_once_to_the_first_host() {
        let t0 = Instant::now();
        let mut f = policy(3);
        let a = f.plan(t0, 0.9).unwrap();
        assert_eq!((a.host.as_str(), a.at, a.number), ("wss://sn1:7443", t0, 1));
        f.started();
        f.connected(t0);
        assert!(f.is_connected());
        assert_eq!(f.current(), Some("wss://sn1:7443"));
    }

    #[test]
    fn after_a_loss_the_next_host_comes_first_and_the_list_wraps() {
        let t0 = Instant::now();
        let mut f = policy(3);
        f.plan(t0, 0.0);
        f.started();
        f.connected(t0);
        f.lost(t0 + Duration::from_secs(5));
        let order: Vec<String> = (0..5).map(|_| fail(&mut f, t0, 0.0).host).collect();
        assert_eq!(
            order,
            [
                "wss://sn2:7443",
                "wss://sn3:7443",
                "wss://sn1:7443",
                "wss://sn2:7443",
                "wss://sn3:7443"
            ]
        );

        // One host: it is the next one after itself.
        let mut single = policy(1);
        single.plan(t0, 0.0);
        single.connected(t0);
        single.lost(t0);
        assert_eq!(single.plan(t0, 0.5).unwrap().host, "wss://sn1:7443");
    }

    #[test]
    fn delays_are_full_jitter_under_a_doubling_bound_capped_at_30_s() {
        let t0 = Instant::now();
        let mut f = policy(3);
        fail(&mut f, t0, 1.0); // the first attempt, at once
        let bounds: Vec<Duration> = (0..9).map(|_| fail(&mut f, t0, 1.0).at - t0).collect();
        let expected: Vec<Duration> = [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
            .map(|ms| ms * MS)
            .to_vec();
        assert_eq!(bounds, expected, "jitter 1 waits the whole bound");

        // Any jitter in [0, 1] scales the bound; out of range is clamped.
        for (jitter, expected) in [
            (0.0, 0),
            (0.25, 7500),
            (0.5, 15_000),
            (-3.0, 0),
            (7.0, 30_000),
            (f64::NAN, 0),
            (f64::INFINITY, 30_000),
        ] {
            assert_eq!(fail(&mut f, t0, jitter).at - t0, expected * MS, "jitter {jitter}");
        }
    }

    #[test]
    fn a_stable_connection_resets_the_backoff_and_a_short_one_does_not() {
        let t0 = Instant::now();
        let mut f = policy(2);
        for _ in 0..6 {
            fail(&mut f, t0, 0.0);
        }
        // Up for a moment only: the bound keeps growing (the 6th delayed attempt: 16 s).
        let a = f.plan(t0, 1.0).unwrap();
        f.started();
        f.connected(a.at);
        f.lost(a.at + Duration::from_secs(10));
        let t1 = a.at + Duration::from_secs(10);
        assert_eq!(f.plan(t1, 1.0).unwrap().at - t1, Duration::from_secs(30));
        f.started();
        f.connected(t1);
        // Up for a minute: back to base.
        let t2 = t1 + Duration::from_secs(60);
        f.lost(t2);
        let again = f.plan(t2, 1.0).unwrap();
        assert_eq!((again.at - t2, again.number), (500 * MS, 1));
    }

    #[test]
    fn retry_after_holds_that_host_and_the_others_go_first() {
        let t0 = Instant::now();
        let mut f = policy(3);
        let a = f.plan(t0, 0.0).unwrap();
        assert_eq!(a.host, "wss://sn1:7443");
        f.started();
        f.refused(t0, Duration::from_secs(5), 0.5); // held until 5 s + 0.5·5 s
        // sn2 and sn3 are tried meanwhile; sn1 is skipped while held.
        let b = fail(&mut f, t0, 0.0);
        let c = fail(&mut f, t0, 0.0);
        let d = fail(&mut f, t0, 0.0);
        assert_eq!(
            [b.host, c.host, d.host],
            ["wss://sn2:7443", "wss://sn3:7443", "wss://sn2:7443"]
        );
        // Once both others refuse for longer, sn1 is next, at the end of its hold.
        let e = f.plan(t0, 0.0).unwrap();
        f.started();
        f.refused(t0, Duration::from_secs(20), 0.0);
        let g = f.plan(t0, 0.0).unwrap();
        f.started();
        f.refused(t0, Duration::from_secs(20), 0.0);
        assert_eq!([e.host.as_str(), g.host.as_str()], ["wss://sn3:7443", "wss://sn2:7443"]);
        let h = f.plan(t0, 0.0).unwrap();
        assert_eq!((h.host.as_str(), h.at), ("wss://sn1:7443", t0 + Duration::from_millis(7500)));
        // A connection clears the hold of that host.
        f.started();
        f.connected(h.at);
        assert!(!f.holds.contains_key("wss://sn1:7443"));
    }

    #[test]
    fn retry_after_is_at_least_spread_by_base_and_bounded() {
        let t0 = Instant::now();
        let mut f = Failover::new(hosts(1), FailoverConfig::default());
        f.plan(t0, 0.0);
        f.started();
        f.refused(t0, Duration::ZERO, 1.0);
        assert_eq!(f.plan(t0, 0.0).unwrap().at - t0, 500 * MS);
        f.started();
        f.refused(t0, Duration::from_secs(u64::MAX), f64::NAN);
        assert_eq!(f.plan(t0, 0.0).unwrap().at - t0, Duration::from_secs(3600));
    }

    #[test]
    fn a_cancelled_wait_keeps_the_plan_and_an_abandoned_dial_counts_as_failed() {
        let t0 = Instant::now();
        let mut f = policy(3);
        fail(&mut f, t0, 0.0);
        let waiting = f.plan(t0, 0.8).unwrap();
        // The caller gave up while waiting and asks again later: same host, same time.
        assert_eq!(f.plan(t0 + Duration::from_millis(100), 0.1).unwrap(), waiting);
        // Dialing started, then the caller gave up: the next plan moves on.
        f.started();
        let next = f.plan(t0 + Duration::from_secs(3), 0.0).unwrap();
        assert_eq!(next.host, "wss://sn3:7443");
        assert_eq!(next.number, waiting.number + 1);
    }

    #[test]
    fn new_hosts_keep_the_current_one_in_place() {
        let t0 = Instant::now();
        let mut f = Failover::new(hosts(1), FailoverConfig::default());
        f.plan(t0, 0.0);
        f.started();
        f.connected(t0);
        f.set_hosts(hosts(3));
        f.lost(t0);
        assert_eq!(f.plan(t0, 0.0).unwrap().host, "wss://sn2:7443");
        // No hosts: nothing to plan.
        let mut empty = Failover::new(Vec::new(), FailoverConfig::default());
        assert_eq!(empty.plan(t0, 0.0), None);
    }
}
