//! Token buckets that cap how often the responder answers: one per source and one in total.
//!
//! A Binding request's source address can be forged, so a flood of requests "from" a victim
//! would make us send the victim a stream of responses. Answers per source are therefore capped
//! (an IPv4 address, or an IPv6 /64, since one host or home usually owns a whole /64 and could be
//! targeted through any address in it), and so is the total, which also caps our CPU and upstream
//! bandwidth. The table of sources is bounded: a bucket that has refilled to its burst carries no
//! information and is swept away, and when the table is full new sources are refused (failing
//! closed: an attacker with many forged sources cannot push the total past the global cap).
//! Only valid Binding requests reach the limiter, so garbage never fills the table.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often (at most) the source table is swept of idle entries. Sweeping is O(sources), so
/// once a second keeps it negligible even with a full table.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Limits on how often the responder answers. The defaults suit a supernode on the internet:
/// a client needs a few Binding requests per call, and a victim of spoofed requests gets at most
/// 20 small responses per second from us.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Sustained answers per second to one source (an IPv4 address or an IPv6 /64). Must be above
    /// zero for idle sources to be forgotten. Default 20.
    pub per_source_per_second: f64,
    /// Answers one source may get back to back before the sustained rate applies (at least 1).
    /// Default 40.
    pub per_source_burst: f64,
    /// Sustained answers per second in total, over all sources. Default 20,000.
    pub global_per_second: f64,
    /// Burst over all sources (at least 1). Default 20,000.
    pub global_burst: f64,
    /// Most sources tracked at once; beyond that, requests from new sources are refused until idle
    /// entries are swept (about 40 bytes each: the default costs at most a few MiB).
    /// Default 65,536.
    pub max_sources: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_source_per_second: 20.0,
            per_source_burst: 40.0,
            global_per_second: 20_000.0,
            global_burst: 20_000.0,
            max_sources: 65_536,
        }
    }
}

/// Whether a request may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Answer it.
    Allowed,
    /// This source has had its share.
    SourceLimited,
    /// The responder as a whole is at its cap (rate, or number of sources tracked).
    GlobalLimited,
}

/// Which bucket a source address falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// A token bucket: `tokens` as of `updated`, refilled at a steady rate up to a burst.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

/// A rate and burst, sanitised so that no configuration can produce NaN or a bucket that never
/// holds a whole token.
#[derive(Debug, Clone, Copy)]
struct Refill {
    per_second: f64,
    burst: f64,
}

impl Refill {
    fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second: per_second.max(0.0), burst: burst.max(1.0) }
    }

    /// Tokens in `bucket` at `now` (a clock that goes backwards adds nothing).
    fn level(self, bucket: &TokenBucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        if elapsed == 0.0 {
            return bucket.tokens;
        }
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    fn refill(self, bucket: &mut TokenBucket, now: Instant) {
        bucket.tokens = self.level(bucket, now);
        bucket.updated = bucket.updated.max(now);
    }
}

/// Per-source and global token buckets with a bounded source table.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_source: Refill,
    global_refill: Refill,
    max_sources: usize,
    global: Option<TokenBucket>,
    sources: HashMap<SourceKey, TokenBucket>,
    next_sweep: Option<Instant>,
}

impl RateLimiter {
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        Self {
            per_source: Refill::new(config.per_source_per_second, config.per_source_burst),
            global_refill: Refill::new(config.global_per_second, config.global_burst),
            max_sources: config.max_sources,
            global: None,
            sources: HashMap::new(),
            next_sweep: None,
        }
    }

    /// Decides whether a request from `source` at `now` may be answered, and if so takes a token
    /// from its bucket and from the global one.
    pub(crate) fn admit(&mut self, source: IpAddr, now: Instant) -> Admission {
        self.sweep_if_due(now);
        let global_refill = self.global_refill;
        let global =
            self.global.get_or_insert(TokenBucket { tokens: global_refill.burst, updated: now });
        global_refill.refill(global, now);
        // Check the global bucket before touching the table, so that new table entries are
        // created no faster than the global rate.
        if global.tokens < 1.0 {
            return Admission::GlobalLimited;
        }
        let key = SourceKey::of(source);
        if self.sources.len() >= self.max_sources && !self.sources.contains_key(&key) {
            return Admission::GlobalLimited;
        }
        let bucket = self
            .sources
            .entry(key)
            .or_insert(TokenBucket { tokens: self.per_source.burst, updated: now });
        self.per_source.refill(bucket, now);
        if bucket.tokens < 1.0 {
            return Admission::SourceLimited;
        }
        bucket.tokens -= 1.0;
        global.tokens -= 1.0;
        Admission::Allowed
    }

    /// Sources tracked now.
    pub(crate) fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Forgets sources whose bucket has refilled to the burst: they are as good as new.
    fn sweep_if_due(&mut self, now: Instant) {
        match self.next_sweep {
            Some(due) if now < due => return,
            None => {
                self.next_sweep = Some(now + SWEEP_INTERVAL);
                return;
            }
            Some(_) => {}
        }
        let refill = self.per_source;
        self.sources.retain(|_, bucket| refill.level(bucket, now) < refill.burst);
        self.next_sweep = Some(now + SWEEP_INTERVAL);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn small(max_sources: usize) -> RateLimitConfig {
        RateLimitConfig {
            per_source_per_second: 20.0,
            per_source_burst: 40.0,
            global_per_second: 1_000.0,
            global_burst: 1_000.0,
            max_sources,
        }
    }

    #[test]
    fn flood_toward_one_victim_gets_the_burst_then_the_sustained_rate() {
        let mut limiter = RateLimiter::new(&RateLimitConfig::default());
        let start = Instant::now();
        let victim = ip("198.51.100.7");
        let allowed =
            (0..1_000).filter(|_| limiter.admit(victim, start) == Admission::Allowed).count();
        assert_eq!(allowed, 40);
        // Ten seconds of a 10,000-per-second flood: about 20 per second get through.
        let mut allowed = 0;
        for ms in 1..=10_000u64 {
            let now = start + Duration::from_millis(ms);
            if limiter.admit(victim, now) == Admission::Allowed {
                allowed += 1;
            }
        }
        assert!((199..=201).contains(&allowed), "{allowed}");
    }

    #[test]
    fn other_sources_are_unaffected_by_a_flood_at_one() {
        let mut limiter = RateLimiter::new(&RateLimitConfig::default());
        let now = Instant::now();
        for _ in 0..100 {
            limiter.admit(ip("198.51.100.7"), now);
        }
        assert_eq!(limiter.admit(ip("198.51.100.8"), now), Admission::Allowed);
    }

    #[test]
    fn ipv6_sources_share_a_bucket_per_slash_64_and_mapped_ipv4_is_ipv4() {
        let mut limiter = RateLimiter::new(&RateLimitConfig::default());
        let now = Instant::now();
        for i in 0..40u16 {
            let a = ip(&format!("2001:db8:1:2::{i:x}"));
            assert_eq!(limiter.admit(a, now), Admission::Allowed);
        }
        assert_eq!(limiter.admit(ip("2001:db8:1:2:ffff::1"), now), Admission::SourceLimited);
        assert_eq!(limiter.admit(ip("2001:db8:1:3::1"), now), Admission::Allowed);
        for _ in 0..40 {
            limiter.admit(ip("192.0.2.1"), now);
        }
        assert_eq!(limiter.admit(ip("::ffff:192.0.2.1"), now), Admission::SourceLimited);
    }

    #[test]
    fn global_cap_limits_many_sources() {
        let mut limiter = RateLimiter::new(&RateLimitConfig {
            global_burst: 100.0,
            global_per_second: 100.0,
            ..RateLimitConfig::default()
        });
        let now = Instant::now();
        let allowed = (0..1_000u32)
            .filter(|i| {
                limiter.admit(IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000u32 + i)), now)
                    == Admission::Allowed
            })
            .count();
        assert_eq!(allowed, 100);
        assert_eq!(limiter.tracked_sources(), 100);
    }

    #[test]
    fn source_table_stays_bounded_and_forgets_idle_sources() {
        let mut limiter = RateLimiter::new(&small(50));
        let start = Instant::now();
        let mut refused = 0;
        for i in 0..500u32 {
            if limiter.admit(IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000u32 + i)), start)
                == Admission::GlobalLimited
            {
                refused += 1;
            }
        }
        assert_eq!(limiter.tracked_sources(), 50);
        assert_eq!(refused, 450);
        // 40 tokens at 20/s: two seconds later every bucket is full again and is swept.
        let later = start + Duration::from_secs(3);
        assert_eq!(limiter.admit(ip("203.0.113.1"), later), Admission::Allowed);
        assert_eq!(limiter.tracked_sources(), 1);
    }

    #[test]
    fn a_clock_that_goes_backwards_adds_no_tokens() {
        let mut limiter = RateLimiter::new(&RateLimitConfig::default());
        let now = Instant::now() + Duration::from_secs(100);
        for _ in 0..40 {
            limiter.admit(ip("192.0.2.9"), now);
        }
        let earlier = now - Duration::from_secs(50);
        assert_eq!(limiter.admit(ip("192.0.2.9"), earlier), Admission::SourceLimited);
    }

    #[test]
    fn nonsense_config_values_do_not_break_the_buckets() {
        let mut limiter = RateLimiter::new(&RateLimitConfig {
            per_source_per_second: f64::NAN,
            per_source_burst: -3.0,
            global_per_second: f64::INFINITY,
            global_burst: f64::NAN,
            max_sources: 0,
        });
        let now = Instant::now();
        assert_eq!(limiter.admit(ip("192.0.2.9"), now), Admission::GlobalLimited);
        let mut limiter = RateLimiter::new(&RateLimitConfig {
            per_source_per_second: f64::NAN,
            per_source_burst: -3.0,
            ..RateLimitConfig::default()
        });
        assert_eq!(limiter.admit(ip("192.0.2.9"), now), Admission::Allowed);
        assert_eq!(limiter.admit(ip("192.0.2.9"), now), Admission::SourceLimited);
    }
}
