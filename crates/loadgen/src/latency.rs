//! Latency samples and their summary (nearest-rank percentiles). Runs are bounded in count, so
//! every sample is kept and sorted once at the end; no histogram approximation is needed.

use std::time::Duration;

use serde::Serialize;

/// Collected latencies of one kind of operation.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<Duration>,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Latencies {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        self.samples.push(d);
    }

    /// Percentiles by nearest rank; `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        let last = *sorted.last()?;
        let at = |p: f64| {
            // Nearest rank: the smallest sample with at least p% of samples at or below it.
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            sorted.get(rank.clamp(1, n) - 1).copied().map_or(0.0, ms)
        };
        let total: Duration = sorted.iter().sum();
        Some(Summary {
            count: n,
            p50_ms: at(50.0),
            p95_ms: at(95.0),
            p99_ms: at(99.0),
            max_ms: ms(last),
            mean_ms: ms(total) / n as f64,
        })
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for i in (1..=100).rev() {
            l.record(Duration::from_millis(i));
        }
        let s = l.summary().unwrap();
        assert_eq!(
            (s.count, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn one_sample_is_every_percentile_and_none_is_no_summary() {
        assert!(Latencies::default().summary().is_none());
        let mut l = Latencies::default();
        l.record(Duration::from_millis(7));
        let s = l.summary().unwrap();
        assert_eq!((s.p50_ms, s.p99_ms), (7.0, 7.0));
    }
}
