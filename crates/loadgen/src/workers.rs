//! A fixed number of workers taking numbered jobs from a shared counter: closed-loop load with a
//! bounded concurrency, a bounded job count and a deadline after which no new job starts.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinSet;
use tokio::time::Instant;

/// What a run of jobs produced.
#[derive(Debug)]
pub struct Outcome<T> {
    /// `(job number, result)` of every job that ran, in no particular order.
    pub results: Vec<(usize, T)>,
    /// Jobs not started because the deadline passed.
    pub skipped: usize,
}

/// Runs jobs `0..count`, at most `concurrency` at a time, starting none after `deadline`.
pub async fn run<T, F, Fut>(
    concurrency: usize,
    count: usize,
    deadline: Instant,
    job: F,
) -> Outcome<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let mut set = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (next, job) = (next.clone(), job.clone());
        set.spawn(async move {
            let mut done = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                done.push((n, job(n).await));
            }
            done
        });
    }
    let mut results = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        // A panicking job loses that worker's results; they count as skipped below.
        if let Ok(done) = joined {
            results.extend(done);
        }
    }
    let skipped = count.saturating_sub(results.len());
    Outcome { results, skipped }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_every_job_once_within_the_concurrency() {
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        let out = run(3, 20, deadline, move |n| {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                r.fetch_sub(1, Ordering::SeqCst);
                n * 2
            }
        })
        .await;
        let mut got: Vec<usize> = out.results.iter().map(|(_, v)| *v).collect();
        got.sort_unstable();
        assert_eq!(got, (0..20).map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(out.skipped, 0);
        assert!(peak.load(Ordering::SeqCst) <= 3);
    }

    #[tokio::test]
    async fn nothing_starts_after_the_deadline() {
        let out = run(2, 5, Instant::now(), |n| async move { n }).await;
        assert_eq!((out.results.len(), out.skipped), (0, 5));
    }
}
