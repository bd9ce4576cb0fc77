//! `peerline-loadgen stun`: Binding requests (RFC 8489) at a target rate against any STUN server
//! on this machine (the supernode's responder, coturn...), from several UDP sockets on several
//! loopback source addresses. Every response is matched to its request by transaction id and
//! checked (a Binding success whose XOR-MAPPED-ADDRESS is the socket's own address); the report
//! gives what was sent, answered, lost and wrong, the response rate, latency percentiles from an
//! HDR histogram and, given the server's pid, its CPU time and so responses per second per core.
//!
//! The sending threads are plain OS threads (`worker`), one socket loop each with batched
//! system calls; the bookkeeping of transactions is sans-IO (`transactions`).

pub mod transactions;
pub mod worker;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::procfs;
use crate::source_addrs::SourceAddrs;
use transactions::Transactions;
use worker::{Flow, Progress, Tally, Work};

/// Seconds of requests each socket's transaction window remembers: an answer later than that
/// counts as unmatched and its request as lost.
const WINDOW_SECS: f64 = 4.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct StunPlan {
    /// The STUN server (loopback only).
    pub server: SocketAddr,
    /// Requests per second, over all sockets.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// UDP sockets, each on the next source address.
    pub sockets: usize,
    /// Sending threads; the sockets are shared out among them.
    pub threads: usize,
    /// Source addresses for IPv4 servers, round robin over the sockets.
    pub sources: SourceAddrs,
    /// The server's process id, to read its CPU time before and after.
    pub server_pid: Option<u32>,
    /// How long to wait for the last answers after sending stops.
    pub drain: Duration,
    /// Draw a progress bar on stderr.
    pub progress_bar: bool,
}

/// Latency percentiles of the valid answers, in milliseconds, as the load generator saw them
/// (its own loop delay included: a few tens of microseconds under full load).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyMs {
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

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StunReport {
    /// The server measured.
    pub server: String,
    /// Sockets used.
    pub sockets: usize,
    /// Sending threads.
    pub threads: usize,
    /// Requests per second asked for.
    pub target_rate: f64,
    /// Seconds of sending (the planned duration, or longer if the load generator fell behind).
    pub duration_secs: f64,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered with a valid Binding success naming the right address.
    pub answered: u64,
    /// Requests that got no answer at all (within the drain time).
    pub lost: u64,
    /// Requests answered with something else (error response, wrong or missing address).
    pub wrong: u64,
    /// Datagrams that matched no open request (duplicates, late answers, noise).
    pub unmatched: u64,
    /// Socket errors on the load generator's side (ICMP port unreachable: no server).
    pub socket_errors: u64,
    /// Requests sent per second (below `target_rate` when the load generator could not keep up).
    pub offered_per_second: f64,
    /// Valid answers per second of sending: the achieved response rate.
    pub answered_per_second: f64,
    /// Latency of the valid answers; absent without any.
    pub latency: Option<LatencyMs>,
    /// CPU seconds (user + system) the server used during the run, with `--server-pid`.
    pub server_cpu_seconds: Option<f64>,
    /// Valid answers per CPU second of the server: responses per second per core.
    pub answered_per_server_core_second: Option<f64>,
    /// CPU seconds this load generator used.
    pub loadgen_cpu_seconds: f64,
}

/// Runs the plan (blocking: the sending threads are OS threads).
pub fn run(plan: &StunPlan) -> anyhow::Result<StunReport> {
    if !plan.server.ip().is_loopback() {
        bail!("{}: the STUN server must be on this machine (a loopback address)", plan.server);
    }
    if !(plan.rate.is_finite() && plan.rate > 0.0) {
        bail!("the rate must be a positive number of requests per second");
    }
    let sockets = plan.sockets.max(1);
    let threads = plan.threads.clamp(1, sockets);
    let window = ((plan.rate / sockets as f64) * WINDOW_SECS).ceil() as usize;
    let mut flows: Vec<Vec<Flow>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..sockets {
        let source = match plan.server.ip() {
            IpAddr::V4(_) => SocketAddr::new(plan.sources.nth(i), 0),
            IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
        };
        let socket = worker::open_socket(source, plan.server)
            .with_context(|| format!("opening a UDP socket on {source}"))?;
        let local = socket.local_addr()?;
        let transactions = Transactions::new(i as u32, local, window);
        if let Some(group) = flows.get_mut(i % threads) {
            group.push(Flow { socket, transactions });
        }
    }

    let progress = Arc::new(Progress::default());
    let bar = plan.progress_bar.then(|| progress_bar(plan));
    let server_cpu_before = plan.server_pid.map(procfs::cpu_seconds).transpose()?;
    let own_cpu_before = procfs::cpu_seconds(std::process::id())?;
    // Each thread sends its sockets' share of the total; the first also the remainder.
    let total = (plan.rate * plan.duration.as_secs_f64()).round() as u64;
    let shares: Vec<u64> = flows.iter().map(|g| total * g.len() as u64 / sockets as u64).collect();
    let remainder = total - shares.iter().sum::<u64>();
    let start = Instant::now();
    let handles: Vec<_> = flows
        .into_iter()
        .zip(shares)
        .enumerate()
        .map(|(i, (group, share))| {
            let share = share + if i == 0 { remainder } else { 0 };
            let work = Work {
                flows: group,
                rate: plan.rate * share as f64 / total.max(1) as f64,
                start,
                send_for: plan.duration,
                total: share,
                drain_for: plan.drain,
            };
            let progress = progress.clone();
            std::thread::Builder::new()
                .name(format!("stun-load-{i}"))
                .spawn(move || worker::run(work, &progress))
                .context("starting a load thread")
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(bar) = &bar {
        while !handles.iter().all(std::thread::JoinHandle::is_finished) {
            bar.set_position(progress.sent.load(Ordering::Relaxed));
            bar.set_message(format!("answered {}", progress.answered.load(Ordering::Relaxed)));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mut tally = Tally::empty()?;
    for handle in handles {
        let part = handle.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        tally.merge(&part)?;
    }
    let server_cpu = match (plan.server_pid, server_cpu_before) {
        (Some(pid), Some(before)) => Some(procfs::cpu_seconds(pid)? - before),
        _ => None,
    };
    let own_cpu = procfs::cpu_seconds(std::process::id())? - own_cpu_before;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report(plan, sockets, threads, &tally, server_cpu, own_cpu))
}

fn progress_bar(plan: &StunPlan) -> indicatif::ProgressBar {
    let total = (plan.rate * plan.duration.as_secs_f64()) as u64;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} sent {pos}/{len} [{bar:30}] {per_sec} {msg} ({eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn report(
    plan: &StunPlan,
    sockets: usize,
    threads: usize,
    tally: &Tally,
    server_cpu: Option<f64>,
    own_cpu: f64,
) -> StunReport {
    // Rates over the time actually spent sending: a load generator that fell behind sends past
    // the planned duration (by at most a tenth) and must not be credited with the plan.
    let secs = tally.send_secs.max(plan.duration.as_secs_f64()).max(f64::MIN_POSITIVE);
    let h = &tally.latency_ns;
    let ms = |ns: u64| ns as f64 / 1e6;
    let latency = (!h.is_empty()).then(|| LatencyMs {
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1e6,
    });
    StunReport {
        server: plan.server.to_string(),
        sockets,
        threads,
        target_rate: plan.rate,
        duration_secs: secs,
        sent: tally.sent,
        answered: tally.answered,
        lost: tally.sent.saturating_sub(tally.answered + tally.wrong),
        wrong: tally.wrong,
        unmatched: tally.unmatched,
        socket_errors: tally.socket_errors,
        offered_per_second: tally.sent as f64 / secs,
        answered_per_second: tally.answered as f64 / secs,
        latency,
        server_cpu_seconds: server_cpu,
        answered_per_server_core_second: server_cpu
            .filter(|&cpu| cpu > 0.0)
            .map(|cpu| tally.answered as f64 / cpu),
        loadgen_cpu_seconds: own_cpu,
    }
}

impl std::fmt::Display for StunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "STUN {}: {} sockets, {} threads, {:.0}/s for {:.1} s",
            self.server, self.sockets, self.threads, self.target_rate, self.duration_secs
        )?;
        writeln!(
            f,
            "  sent {} ({:.0}/s), answered {} ({:.0}/s), lost {}, wrong {}, unmatched {}, socket errors {}",
            self.sent,
            self.offered_per_second,
            self.answered,
            self.answered_per_second,
            self.lost,
            self.wrong,
            self.unmatched,
            self.socket_errors
        )?;
        if let Some(l) = &self.latency {
            writeln!(
                f,
                "  latency p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, mean {:.3} ms",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
            )?;
        }
        if let (Some(cpu), Some(per_core)) =
            (self.server_cpu_seconds, self.answered_per_server_core_second)
        {
            writeln!(f, "  server CPU {cpu:.2} s: {per_core:.0} answers per second per core")?;
        } else if let Some(cpu) = self.server_cpu_seconds {
            writeln!(f, "  server CPU {cpu:.2} s")?;
        }
        write!(f, "  load generator CPU {:.2} s", self.loadgen_cpu_seconds)
    }
}
