//! Storms on a fake clock: dropped clients running the real failover policy (client-core's
//! [`Failover`]) against survivors admitting logins through the supernode's own token bucket
//! (supernode-core's `TokenBucket`), refusals carrying `retry_after_secs` as the supernode
//! computes it. Checks that [`settle_bound`] holds over a range of settings, for many seeds.
//! Connection attempts take no time here; the real test adds an allowance for CPU.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use peerline_client_core::{Failover, FailoverConfig};
use peerline_supernode_core::rate::TokenBucket;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::settle_bound;

/// One storm: `dropped` clients of `sn1` (dead: dials fail at once) coming back to `sn2` and
/// `sn3`, each admitting `rate` logins/s after a burst of `burst`. Returns when the last is back.
fn storm(seed: u64, dropped: usize, rate: f64, burst: f64) -> Duration {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let hosts: Vec<String> = ["sn1", "sn2", "sn3"].map(String::from).to_vec();
    let mut buckets: HashMap<&str, TokenBucket> =
        [("sn2", TokenBucket::new(burst, rate, t0)), ("sn3", TokenBucket::new(burst, rate, t0))]
            .into();
    let mut queue = BinaryHeap::new();
    let mut clients: Vec<Failover> = (0..dropped)
        .map(|i| {
            // Online on sn1 (the first host) for a while, then lost.
            let mut f = Failover::new(hosts.clone(), FailoverConfig::default());
            f.plan(t0, 0.0);
            f.started();
            f.connected(t0);
            f.lost(t0);
            queue.push(Reverse((f.plan(t0, rng.r#gen()).unwrap().at, i)));
            f
        })
        .collect();
    let mut last = t0;
    while let Some(Reverse((at, i))) = queue.pop() {
        let f = &mut clients[i];
        // The attempt planned before (a plan not yet started is kept as it was).
        let attempt = f.plan(at, 0.0).unwrap();
        f.started();
        match buckets.get_mut(attempt.host.as_str()) {
            None => f.failed(),
            Some(bucket) => match bucket.try_take(at) {
                Ok(()) => {
                    f.connected(at);
                    last = last.max(at);
                    continue;
                }
                Err(wait) => {
                    // The supernode's retry_after_secs: its wait, at least 1 s, plus up to as
                    // much again, rounded up (crates/supernode/src/session.rs, admit_login).
                    let base = wait.as_secs_f64().max(1.0);
                    let secs = (base + rng.r#gen::<f64>() * base).ceil();
                    f.refused(at, Duration::from_secs_f64(secs), rng.r#gen());
                }
            },
        }
        queue.push(Reverse((f.plan(at, rng.r#gen()).unwrap().at, i)));
    }
    last - t0
}

#[test]
fn simulated_storms_settle_within_the_bound_from_the_settings() {
    for (dropped, rate, burst, seeds) in [
        (667, 100.0, 50.0, 100),   // the storm test's
        (2000, 1000.0, 2000.0, 5), // the defaults: all admitted in the burst
        (3000, 100.0, 100.0, 10),
        (667, 20.0, 20.0, 20),
        (1500, 50.0, 10.0, 10),
        (500, 5.0, 5.0, 10),
        (10_000, 100.0, 100.0, 3),
    ] {
        let bound = settle_bound(dropped, 2, rate, burst, &FailoverConfig::default());
        let worst = (0..seeds).map(|seed| storm(seed, dropped, rate, burst)).max().unwrap();
        assert!(
            worst <= bound,
            "{dropped} clients, {rate}/s after {burst}: the last took {worst:?}, over {bound:?}"
        );
    }
}

#[test]
fn the_bound_adds_up_as_documented() {
    let bound = settle_bound(667, 2, 100.0, 50.0, &FailoverConfig::default());
    // 1 s + (667 − 100) / 200 s + (2 s + 2 s) + 2 × 30 s
    assert!((bound.as_secs_f64() - 67.835).abs() < 1e-9, "{bound:?}");
}
