//! Failed-login throttling, per account and per source address, so that password guessing costs
//! an attacker time without letting them lock a victim out for long.
//!
//! Policy: after `free_failures` failures of one key inside `window`, each further attempt must
//! wait a delay that doubles per failure from `base_delay` up to `max_delay`. A success clears the
//! account key. Unknown usernames are throttled exactly like real ones, so throttling reveals
//! nothing about which accounts exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Tuning of one throttle.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures allowed before delays start.
    pub free_failures: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// First delay.
    pub base_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
}

impl ThrottleConfig {
    /// Defaults for account keys: 5 free failures per 15 minutes, then 1 s doubling to 15 min.
    pub fn per_account() -> Self {
        Self {
            free_failures: 5,
            window: Duration::from_secs(15 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
        }
    }

    /// Defaults for source addresses: more generous (NATs share addresses), same shape.
    pub fn per_address() -> Self {
        Self { free_failures: 30, ..Self::per_account() }
    }
}

#[derive(Debug, Clone)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Both throttles together.
#[derive(Debug)]
pub struct LoginThrottle {
    account: ThrottleConfig,
    address: ThrottleConfig,
    by_account: HashMap<String, Failures>,
    by_address: HashMap<IpAddr, Failures>,
}

/// Most keys each map keeps; the oldest are dropped first when full. Bounds memory under a
/// spray of random usernames.
const MAX_KEYS: usize = 200_000;

fn wait_for(cfg: &ThrottleConfig, f: Option<&Failures>, now: Instant) -> Option<Duration> {
    let f = f?;
    if now.saturating_duration_since(f.last) >= cfg.window || f.count < cfg.free_failures {
        return None;
    }
    let doublings = (f.count - cfg.free_failures).min(20);
    let delay = cfg.base_delay.saturating_mul(1u32 << doublings).min(cfg.max_delay);
    let ready = f.last + delay;
    (ready > now).then(|| ready - now)
}

fn record<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Failures>,
    cfg: &ThrottleConfig,
    key: K,
    now: Instant,
) {
    if map.len() >= MAX_KEYS {
        map.retain(|_, f| now.saturating_duration_since(f.last) < cfg.window);
        if map.len() >= MAX_KEYS {
            map.clear();
        }
    }
    let entry = map.entry(key).or_insert(Failures { count: 0, last: now });
    if now.saturating_duration_since(entry.last) >= cfg.window {
        entry.count = 0;
    }
    entry.count = entry.count.saturating_add(1);
    entry.last = now;
}

impl LoginThrottle {
    /// A throttle with the given policies.
    pub fn new(account: ThrottleConfig, address: ThrottleConfig) -> Self {
        Self { account, address, by_account: HashMap::new(), by_address: HashMap::new() }
    }

    /// `Err(wait)` if a login for this account from this address must wait first.
    pub fn check(&self, username: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let a = wait_for(&self.account, self.by_account.get(username), now);
        let b = wait_for(&self.address, self.by_address.get(&addr), now);
        match a.max(b) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Records a failed attempt.
    pub fn failed(&mut self, username: &str, addr: IpAddr, now: Instant) {
        record(&mut self.by_account, &self.account, username.to_owned(), now);
        record(&mut self.by_address, &self.address, addr, now);
    }

    /// Records a success: the account's failures are forgiven.
    pub fn succeeded(&mut self, username: &str) {
        self.by_account.remove(username);
    }

    /// Forgets entries older than their window.
    pub fn expire(&mut self, now: Instant) {
        let (wa, wb) = (self.account.window, self.address.window);
        self.by_account.retain(|_, f| now.saturating_duration_since(f.last) < wa);
        self.by_address.retain(|_, f| now.saturating_duration_since(f.last) < wb);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn account_delays_double_after_free_failures() {
        let t0 = Instant::now();
        let mut t =
            LoginThrottle::new(ThrottleConfig::per_account(), ThrottleConfig::per_address());
        for _ in 0..5 {
            assert!(t.check("alice", ip("10.0.0.1"), t0).is_ok());
            t.failed("alice", ip("10.0.0.1"), t0);
        }
        assert_eq!(t.check("alice", ip("10.0.0.2"), t0), Err(Duration::from_secs(1)));
        t.failed("alice", ip("10.0.0.2"), t0);
        assert_eq!(t.check("alice", ip("10.0.0.3"), t0), Err(Duration::from_secs(2)));
        // Another account from the same address is unaffected.
        assert!(t.check("bob", ip("10.0.0.9"), t0).is_ok());
        // The window forgets.
        assert!(t.check("alice", ip("10.0.0.1"), t0 + Duration::from_secs(901)).is_ok());
    }

    #[test]
    fn unknown_and_known_accounts_are_throttled_alike() {
        let t0 = Instant::now();
        let mut t =
            LoginThrottle::new(ThrottleConfig::per_account(), ThrottleConfig::per_address());
        for i in 0..6 {
            t.failed("ghost", ip(&format!("10.0.1.{i}")), t0);
        }
        assert!(t.check("ghost", ip("10.0.9.9"), t0).is_err());
    }

    #[test]
    fn address_throttle_catches_a_spray_of_usernames() {
        let t0 = Instant::now();
        let mut t =
            LoginThrottle::new(ThrottleConfig::per_account(), ThrottleConfig::per_address());
        for i in 0..30 {
            t.failed(&format!("user{i}"), ip("192.0.2.7"), t0);
        }
        assert!(t.check("fresh", ip("192.0.2.7"), t0).is_err());
        assert!(t.check("fresh", ip("192.0.2.8"), t0).is_ok());
    }

    #[test]
    fn success_forgives_the_account() {
        let t0 = Instant::now();
        let mut t =
            LoginThrottle::new(ThrottleConfig::per_account(), ThrottleConfig::per_address());
        for _ in 0..6 {
            t.failed("alice", ip("10.0.0.1"), t0);
        }
        t.succeeded("alice");
        assert!(t.check("alice", ip("10.0.0.5"), t0).is_ok());
    }
}
