//! Failed-login throttling, so that guessing passwords costs an attacker time and can never lock
//! the owner of an account out.
//!
//! What is counted where:
//! - a wrong password from a device key *not* registered to the account counts against the
//!   account (any source: guessing from many addresses is still one account's guessing);
//! - a wrong password from a device key registered to the account (proved by its signature over
//!   the connection's nonce) counts against that account and device only, so a stranger's
//!   guesses never block the owner's own devices;
//! - a bad token counts against its source only (tokens are 256-bit random: nobody guesses one;
//!   a burst of bad ones is a scan), and token logins are never held by an account's failures;
//! - every wrong password also counts against its source (an IPv4 address or an IPv6 /64).
//!
//! Counts *decay* (halving every `half_life`) instead of resetting at the end of a window, so a
//! patient attacker who waits out each delay keeps a high count and keeps meeting the longest
//! delay; the owner's count fades away by itself. After `free_failures`, each attempt must wait
//! `base_delay` doubled per failure above that, at most `max_delay`. Unknown usernames are
//! throttled exactly like real ones, so throttling reveals nothing about which accounts exist.
//!
//! A password attempt is counted *before* its (slow) hash runs and forgiven if it succeeds, so
//! attempts sent in parallel cannot all pass the check before any of them is recorded.
//!
//! Memory is bounded: a full table forgets its entries with the lowest counts first (never all
//! at once, which would hand everyone fresh guesses).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Tuning of one throttle table.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures allowed before delays start.
    pub free_failures: u32,
    /// A count halves over this time without failures.
    pub half_life: Duration,
    /// First delay.
    pub base_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
}

impl ThrottleConfig {
    /// Account keys (wrong passwords from unregistered device keys): 5 free failures, then 1 s
    /// doubling to 1 h; a day without failures halves the count. A patient attacker gets about
    /// 24 guesses a day per account, for ever.
    pub fn per_account() -> Self {
        Self {
            free_failures: 5,
            half_life: Duration::from_secs(24 * 3600),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3600),
        }
    }

    /// A registered device's own mistakes: only its owner can sign for it, so the delays stay
    /// short (at most 15 min) and fade within the hour.
    pub fn per_device() -> Self {
        Self {
            free_failures: 5,
            half_life: Duration::from_secs(3600),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
        }
    }

    /// Source keys, for wrong passwords and for bad tokens (two tables): more generous, since
    /// many users can share one address behind a NAT.
    pub fn per_source() -> Self {
        Self { free_failures: 30, ..Self::per_device() }
    }
}

/// Where traffic comes from, as limits count it: an IPv4 address, or an IPv6 /64 (one host or
/// home usually owns a whole /64 and could otherwise spread over 2^64 addresses). An
/// IPv4-mapped IPv6 address is its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The account a password attempt is for, and the device key it was signed with if that key is
/// registered to the account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AccountKey {
    username: String,
    device: Option<[u8; 32]>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// The count as of `last`.
    score: f64,
    last: Instant,
}

impl Failures {
    /// The count as of `now`, halved for every `half_life` since the last failure.
    fn at(&self, now: Instant, half_life: Duration) -> f64 {
        let halves = now.saturating_duration_since(self.last).as_secs_f64()
            / half_life.as_secs_f64().max(1e-9);
        self.score * 0.5f64.powf(halves)
    }
}

/// Most keys one table keeps. Bounds memory under a spray of random usernames or addresses.
const MAX_KEYS: usize = 200_000;

/// One table of decaying failure counts.
#[derive(Debug)]
struct Table<K> {
    config: ThrottleConfig,
    entries: HashMap<K, Failures>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(config: ThrottleConfig, max_keys: usize) -> Self {
        Self { config, entries: HashMap::new(), max_keys }
    }

    /// How long `key` must wait before its next attempt, if at all.
    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let f = self.entries.get(key)?;
        // Rounded: five failures a few seconds apart have decayed to 4.99…, and are five.
        let over = f.score.round() - f64::from(self.config.free_failures);
        if over < 0.0 {
            return None;
        }
        let doublings = over.min(30.0) as u32;
        let delay = self.config.base_delay.saturating_mul(1u32 << doublings);
        let ready = f.last + delay.min(self.config.max_delay);
        (ready > now).then(|| ready - now)
    }

    fn record(&mut self, key: K, now: Instant) {
        if self.entries.len() >= self.max_keys && !self.entries.contains_key(&key) {
            self.evict(now);
        }
        let half_life = self.config.half_life;
        let score = self.entries.get(&key).map_or(0.0, |f| f.at(now, half_life));
        self.entries.insert(key, Failures { score: score + 1.0, last: now });
    }

    /// Takes back one failure recorded in advance (the attempt succeeded), without moving its
    /// time: earlier failures keep their delay.
    fn undo(&mut self, key: &K) {
        if let Some(f) = self.entries.get_mut(key) {
            f.score = (f.score - 1.0).max(0.0);
        }
    }

    fn forgive(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Forgets counts that have faded below one failure.
    fn expire(&mut self, now: Instant) {
        let half_life = self.config.half_life;
        self.entries.retain(|_, f| f.at(now, half_life) >= 0.5);
    }

    /// Makes room in a full table: faded entries go first, then the lowest tenth by count. The
    /// most throttled keys stay throttled.
    fn evict(&mut self, now: Instant) {
        self.expire(now);
        if self.entries.len() < self.max_keys {
            return;
        }
        let half_life = self.config.half_life;
        let mut scores: Vec<f64> = self.entries.values().map(|f| f.at(now, half_life)).collect();
        let cut = (scores.len() / 10).max(1);
        let (_, threshold, _) = scores.select_nth_unstable_by(cut - 1, f64::total_cmp);
        let threshold = *threshold;
        let mut dropped = 0;
        self.entries.retain(|_, f| {
            let keep = dropped >= cut || f.at(now, half_life) > threshold;
            if !keep {
                dropped += 1;
            }
            keep
        });
    }
}

/// Every login throttle of a supernode.
#[derive(Debug)]
pub struct LoginThrottle {
    accounts: Table<AccountKey>,
    devices: Table<AccountKey>,
    password_sources: Table<Source>,
    token_sources: Table<Source>,
}

impl LoginThrottle {
    /// A throttle with the given policies for accounts, registered devices and sources.
    pub fn new(account: ThrottleConfig, device: ThrottleConfig, source: ThrottleConfig) -> Self {
        Self::with_capacity(account, device, source, MAX_KEYS)
    }

    /// Like [`LoginThrottle::new`], keeping at most `max_keys` keys per table.
    pub fn with_capacity(
        account: ThrottleConfig,
        device: ThrottleConfig,
        source: ThrottleConfig,
        max_keys: usize,
    ) -> Self {
        Self {
            accounts: Table::new(account, max_keys),
            devices: Table::new(device, max_keys),
            password_sources: Table::new(source.clone(), max_keys),
            token_sources: Table::new(source, max_keys),
        }
    }

    /// Where a password attempt counts: its device's table when the key is registered to the
    /// account, else the account's.
    fn account_table(&self, device: Option<[u8; 32]>) -> &Table<AccountKey> {
        if device.is_some() { &self.devices } else { &self.accounts }
    }

    fn account_table_mut(&mut self, device: Option<[u8; 32]>) -> &mut Table<AccountKey> {
        if device.is_some() { &mut self.devices } else { &mut self.accounts }
    }

    /// `Err(wait)` if a password login for `username` from `source` must wait first.
    /// `registered_device` is the signing device key when it is registered to the account.
    pub fn check_password(
        &self,
        username: &str,
        registered_device: Option<[u8; 32]>,
        source: Source,
        now: Instant,
    ) -> Result<(), Duration> {
        let key = AccountKey { username: username.to_owned(), device: registered_device };
        let a = self.account_table(registered_device).wait(&key, now);
        let s = self.password_sources.wait(&source, now);
        a.max(s).map_or(Ok(()), Err)
    }

    /// Counts a password attempt as failed before its hash runs; [`LoginThrottle::password_ok`]
    /// takes it back if it succeeds.
    pub fn begin_password(
        &mut self,
        username: &str,
        registered_device: Option<[u8; 32]>,
        source: Source,
        now: Instant,
    ) {
        let key = AccountKey { username: username.to_owned(), device: registered_device };
        self.account_table_mut(registered_device).record(key, now);
        self.password_sources.record(source, now);
    }

    /// The password was right: the account (or device) key is forgiven, the source gets its
    /// attempt back.
    pub fn password_ok(
        &mut self,
        username: &str,
        registered_device: Option<[u8; 32]>,
        source: Source,
    ) {
        let key = AccountKey { username: username.to_owned(), device: registered_device };
        self.account_table_mut(registered_device).forgive(&key);
        self.password_sources.undo(&source);
    }

    /// `Err(wait)` if a token login from `source` must wait first (only bad tokens from the
    /// same source can make it).
    pub fn check_token(&self, source: Source, now: Instant) -> Result<(), Duration> {
        self.token_sources.wait(&source, now).map_or(Ok(()), Err)
    }

    /// Records a token that was not valid.
    pub fn token_failed(&mut self, source: Source, now: Instant) {
        self.token_sources.record(source, now);
    }

    /// Forgets counts that have faded.
    pub fn expire(&mut self, now: Instant) {
        self.accounts.expire(now);
        self.devices.expire(now);
        self.password_sources.expire(now);
        self.token_sources.expire(now);
    }

    /// Keys held, over all tables (for metrics and tests).
    pub fn len(&self) -> usize {
        self.accounts.entries.len()
            + self.devices.entries.len()
            + self.password_sources.entries.len()
            + self.token_sources.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(
            ThrottleConfig::per_account(),
            ThrottleConfig::per_device(),
            ThrottleConfig::per_source(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn src(s: &str) -> Source {
        Source::from(s.parse::<IpAddr>().unwrap())
    }

    const SEC: Duration = Duration::from_secs(1);
    const ALICE_PHONE: [u8; 32] = [7; 32];

    /// Fails `n` password attempts for `user`, each from its own source, at `now`.
    fn fail(t: &mut LoginThrottle, user: &str, device: Option<[u8; 32]>, n: u32, now: Instant) {
        for i in 0..n {
            t.begin_password(user, device, src(&format!("10.9.{}.{}", i / 250, i % 250)), now);
        }
    }

    #[test]
    fn account_delays_double_after_free_failures() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::default();
        for _ in 0..5 {
            assert!(t.check_password("alice", None, src("10.0.0.1"), t0).is_ok());
            t.begin_password("alice", None, src("10.0.0.1"), t0);
        }
        assert_eq!(t.check_password("alice", None, src("10.0.0.2"), t0), Err(SEC));
        t.begin_password("alice", None, src("10.0.0.2"), t0);
        assert_eq!(t.check_password("alice", None, src("10.0.0.3"), t0), Err(2 * SEC));
        // Another account from the same address is unaffected.
        assert!(t.check_password("bob", None, src("10.0.0.9"), t0).is_ok());
    }

    #[test]
    fn strangers_guesses_never_hold_the_owners_device_or_token() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::default();
        fail(&mut t, "alice", None, 500, t0);
        for _ in 0..200 {
            t.token_failed(src("203.0.113.66"), t0);
        }
        assert!(t.check_password("alice", None, src("198.51.100.1"), t0).is_err());
        // Her phone's password login and any token login from elsewhere go through.
        assert_eq!(t.check_password("alice", Some(ALICE_PHONE), src("198.51.100.1"), t0), Ok(()));
        assert_eq!(t.check_token(src("198.51.100.1"), t0), Ok(()));
        // The scanning source is held for tokens.
        assert!(t.check_token(src("203.0.113.66"), t0).is_err());
    }

    #[test]
    fn a_patient_attacker_keeps_meeting_the_longest_delay() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::default();
        let max = ThrottleConfig::per_account().max_delay;
        // One guess whenever allowed, for a week: with a reset window the count would start
        // over every 15 minutes; decaying, it stays high.
        let mut now = t0;
        let mut guesses = 0u32;
        while now < t0 + 7 * 24 * 3600 * SEC {
            match t.check_password("alice", None, src("192.0.2.1"), now) {
                Ok(()) => {
                    t.begin_password(
                        "alice",
                        None,
                        src(&format!("192.0.2.{}", guesses % 200)),
                        now,
                    );
                    guesses += 1;
                }
                Err(wait) => now += wait,
            }
            t.expire(now);
        }
        assert!(guesses < 200, "{guesses} guesses in a week: about 24 a day");
        // And the owner's count fades: a week after the last failure, nothing is held.
        now += 30 * 24 * 3600 * SEC;
        t.expire(now);
        assert!(t.check_password("alice", None, src("192.0.2.1"), now).is_ok());
        assert!(max >= 3600 * SEC);
    }

    #[test]
    fn failures_seconds_apart_count_whole() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::default();
        for i in 0..5u32 {
            t.begin_password("alice", None, src("10.0.0.1"), t0 + i * 3 * SEC);
        }
        let now = t0 + 12 * SEC + SEC / 2;
        assert!(t.check_password("alice", None, src("10.0.0.1"), now).is_err());
    }

    #[test]
    fn parallel_attempts_are_counted_before_their_hash() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::default();
        let mut passed = 0;
        // Twenty attempts arrive together: each checks, then begins (before any hash ends).
        for i in 0..20 {
            if t.check_password("alice", None, src(&format!("10.1.0.{i}")), t0).is_ok() {
                t.begin_password("alice", None, src(&format!("10.1.0.{i}")), t0);
                passed += 1;
            }
        }
        assert_eq!(passed, 5, "only the free failures pass");
    }

    #[test]
    fn a_success_forgives_the_account_and_returns_the_sources_attempt() {
        let t0 = Instant::now();
        let mut t = LoginThrottle::default();
        fail(&mut t, "alice", None, 6, t0);
        t.password_ok("alice", None, src("10.9.0.0"));
        assert!(t.check_password("alice", None, src("10.0.0.5"), t0).is_ok());
        // Many users logging in successfully behind one NAT never throttle it.
        for i in 0..100 {
            let user = format!("user{i}");
            t.begin_password(&user, None, src("100.64.1.1"), t0);
            t.password_ok(&user, None, src("100.64.1.1"));
        }
        assert!(t.check_password("zed", None, src("100.64.1.1"), t0).is_ok());
    }

    #[test]
    fn ipv6_sources_are_counted_per_slash_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(src("2001:db8:1:2::1"), src("2001:db8:1:2:ffff::9"));
        assert_ne!(src("2001:db8:1:2::1"), src("2001:db8:1:3::1"));
        assert_eq!(src("::ffff:192.0.2.1"), src("192.0.2.1"));
        let t0 = Instant::now();
        let mut t = LoginThrottle::default();
        for i in 0..30u32 {
            t.begin_password(&format!("u{i}"), None, src(&format!("2001:db8::{i:x}")), t0);
        }
        assert!(t.check_password("fresh", None, src("2001:db8::ffff"), t0).is_err());
        assert!(t.check_password("fresh", None, src("2001:db9::1"), t0).is_ok());
    }

    #[test]
    fn a_full_table_evicts_the_least_throttled_never_everyone() {
        let t0 = Instant::now();
        let c = || ThrottleConfig::per_account();
        let mut t = LoginThrottle::with_capacity(c(), c(), ThrottleConfig::per_source(), 100);
        fail(&mut t, "alice", None, 20, t0);
        // A spray of one-failure usernames fills the table many times over.
        for i in 0..1_000 {
            t.begin_password(&format!("spray{i}"), None, src("10.2.0.1"), t0);
        }
        assert!(t.accounts.entries.len() <= 100);
        assert!(t.check_password("alice", None, src("10.3.0.1"), t0).is_err(), "alice stays held");
    }
}
