//! Latencies of every request kind of a `run`, as HDR histograms (microseconds, 3 significant
//! digits): a worker records into its own, sends them to the coordinator as `(value, count)`
//! lists, and the coordinator merges them. A run of 100,000 users makes millions of requests, so
//! samples are bucketed, not kept (unlike the bounded runs of `login` and `hold`).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds, in microseconds: ten minutes (requests time out long
/// before; a longer one is recorded as this).
const HIGHEST_US: u64 = 600_000_000;
/// Significant digits kept: 0.1 % resolution.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Histograms by request kind (`login`, `ping`, `send_message`, …).
#[derive(Debug, Default)]
pub struct Histograms {
    by_kind: BTreeMap<String, Histogram<u64>>,
}

/// A histogram as it travels from a worker to the coordinator: `(microseconds, count)` of every
/// recorded bucket.
pub type Recorded = Vec<(u64, u64)>;

/// Percentiles of one request kind, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many requests.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

#[allow(clippy::expect_used)]
fn new_histogram() -> Histogram<u64> {
    // Constant bounds within hdrhistogram's limits (low ≥ 1, high ≥ 2 × low, 0–5 digits): this
    // cannot fail, and a unit test builds one.
    Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS).expect("constant valid bounds")
}

impl Histograms {
    /// Records one latency of `kind`.
    pub fn record(&mut self, kind: &str, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, HIGHEST_US);
        self.histogram(kind).saturating_record(us);
    }

    fn histogram(&mut self, kind: &str) -> &mut Histogram<u64> {
        self.by_kind.entry(kind.to_owned()).or_insert_with(new_histogram)
    }

    /// Every histogram as `(value, count)` lists, for the coordinator.
    pub fn export(&self) -> BTreeMap<String, Recorded> {
        self.by_kind
            .iter()
            .map(|(kind, h)| {
                let buckets = h
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value()))
                    .collect();
                (kind.clone(), buckets)
            })
            .collect()
    }

    /// Adds a worker's exported histograms.
    pub fn merge(&mut self, exported: &BTreeMap<String, Recorded>) {
        for (kind, buckets) in exported {
            let h = self.histogram(kind);
            for &(value, count) in buckets {
                // A value out of range (a corrupt report) is clamped rather than failing the run.
                let _ = h.record_n(value.clamp(1, HIGHEST_US), count);
            }
        }
    }

    /// Percentiles of every kind.
    pub fn percentiles(&self) -> BTreeMap<String, Percentiles> {
        let ms = |us: u64| us as f64 / 1000.0;
        self.by_kind
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(kind, h)| {
                let p = Percentiles {
                    count: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    p999_ms: ms(h.value_at_quantile(0.999)),
                    max_ms: ms(h.max()),
                    mean_ms: h.mean() / 1000.0,
                };
                (kind.clone(), p)
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn exported_histograms_merge_into_the_same_percentiles() {
        let (mut a, mut b, mut all) =
            (Histograms::default(), Histograms::default(), Histograms::default());
        for i in 1..=1000u64 {
            let d = Duration::from_micros(i * 100);
            if i % 2 == 0 { &mut a } else { &mut b }.record("ping", d);
            all.record("ping", d);
        }
        a.record("search", Duration::from_millis(3));
        let mut merged = Histograms::default();
        merged.merge(&a.export());
        merged.merge(&b.export());
        let (m, p) = (merged.percentiles(), all.percentiles());
        assert_eq!(m["ping"], p["ping"]);
        assert_eq!(m["ping"].count, 1000);
        assert!((m["ping"].p50_ms - 50.0).abs() < 0.1, "{:?}", m["ping"]);
        assert!((m["ping"].p999_ms - 99.9).abs() < 0.1, "{:?}", m["ping"]);
        assert_eq!(m["search"].count, 1);
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut h = Histograms::default();
        h.record("slow", Duration::from_secs(100_000));
        h.record("fast", Duration::ZERO);
        let p = h.percentiles();
        assert_eq!((p["slow"].count, p["fast"].count), (1, 1));
        assert!(p["slow"].max_ms >= 599_000.0);
    }
}
