//! What the load generator reads from `/proc`: a process's resident memory (`VmRSS`, to measure
//! the supernode's memory per connection) and this process's open-file limit (each connection is
//! one file descriptor; the machines here cap a process at 20,000).

use anyhow::Context;

/// Resident set size of process `pid` in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path} (is process {pid} running?)"))?;
    parse_vm_rss(&text).with_context(|| format!("no VmRSS line in {path}"))
}

/// The `VmRSS:   12345 kB` line of a status file, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kib * 1024)
}

/// CPU time (user + system) process `pid` has used, in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path} (is process {pid} running?)"))?;
    parse_cpu_seconds(&text).with_context(|| format!("cannot read CPU times from {path}"))
}

/// Fields 14 and 15 (`utime`, `stime`) of a stat line, in clock ticks of 1/100 s (`USER_HZ`, 100
/// on every Linux architecture this runs on). The command name may hold spaces and parentheses,
/// so fields are counted after its closing parenthesis.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After the name come field 3 (state) onwards: utime is the 12th of those, stime the 13th.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// This process's soft limit on open files, from `/proc/self/limits`; `None` if unreadable or
/// unlimited.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&text)
}

fn parse_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg` ("1.52 0.98 0.61"; empty if
/// unreadable): benchmarks record them beside their figures, since other work on the same
/// cores changes rates.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tpeerline\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn reads_cpu_times_after_an_awkward_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.25));
        assert!(cpu_seconds(std::process::id()).is_ok());
    }

    #[test]
    fn reads_the_open_file_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files(limits), Some(20000));
        assert!(open_file_limit().is_some());
        assert!(rss_bytes(std::process::id()).unwrap() > 0);
    }
}
