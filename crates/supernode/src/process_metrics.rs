//! The standard `process_*` metrics (resident memory, open and allowed file descriptors, CPU
//! seconds, start time), read from /proc/self at each scrape and rendered in the Prometheus text
//! format. Read directly rather than through the `metrics` crate because its counters hold whole
//! numbers and CPU seconds are fractional. Elsewhere than Linux the families are left out.

use std::fmt::Write;

/// Clock ticks per second of /proc's CPU times: `USER_HZ`, fixed at 100 in Linux's user ABI
/// on every architecture this runs on (what `getconf CLK_TCK` prints).
const USER_HZ: f64 = 100.0;

/// The `process_*` families as Prometheus text; empty where /proc cannot be read.
pub fn render() -> String {
    let mut out = String::new();
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    // Fields after the command name (which may hold spaces, so split after its last ')'):
    // index 0 is field 3 (state) of proc(5), so field N is at N - 3.
    let fields: Vec<&str> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());

    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        family(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (utime + stime) / USER_HZ,
        );
    }
    if let Some(rss) = status_kib("VmRSS:") {
        let help = "Resident memory size in bytes.";
        family(&mut out, "process_resident_memory_bytes", "gauge", help, rss * 1024.0);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let open = fds.count() as f64;
        family(&mut out, "process_open_fds", "gauge", "Number of open file descriptors.", open);
    }
    if let Some(max) = max_open_files() {
        let help = "Maximum number of open file descriptors.";
        family(&mut out, "process_max_fds", "gauge", help, max);
    }
    if let (Some(start_ticks), Some(boot)) = (field(22), boot_time()) {
        let help = "Start time of the process since unix epoch in seconds.";
        let start = boot + start_ticks / USER_HZ;
        family(&mut out, "process_start_time_seconds", "gauge", help, start);
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
}

/// A `kB` value from /proc/self/status.
fn status_kib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft limit on open files.
fn max_open_files() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// When the machine booted, in Unix seconds.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    /// Each family has its HELP and TYPE, and plausible values for a running process.
    #[test]
    fn every_process_family_is_there_with_a_plausible_value() {
        let text = super::render();
        let value = |name: &str| -> f64 {
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{text}");
            let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
            line.split(' ').nth(1).unwrap().parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_cpu_seconds_total") >= 0.0);
        // Started after 2020 and not in the future.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let started = value("process_start_time_seconds");
        assert!(started > 1_577_836_800.0 && started <= now.as_secs_f64() + 1.0, "{started}");
    }
}
