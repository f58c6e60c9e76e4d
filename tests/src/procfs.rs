//! CPU time and resident memory of a process, from `/proc`, for the bench
//! drivers' footprint figures.

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`;
/// 100 on every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// When it was taken.
    pub at: Instant,
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// Reads `pid` now; `None` if it is gone or `/proc` is unreadable.
pub fn read(pid: u32) -> Option<Reading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After ')': state is field 3 of the man page, so utime (14) and
    // stime (15) are at indices 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 =
        status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    Some(Reading {
        at: Instant::now(),
        cpu: Duration::from_secs_f64((utime + stime) / TICKS_PER_SECOND),
        rss_bytes: rss_kib * 1024,
    })
}

/// CPU use between two readings, in percent of one core.
pub fn cpu_percent(start: &Reading, end: &Reading) -> f64 {
    let wall = end.at.saturating_duration_since(start.at).as_secs_f64();
    if wall == 0.0 { 0.0 } else { end.cpu.saturating_sub(start.cpu).as_secs_f64() * 100.0 / wall }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let reading = read(std::process::id()).expect("/proc is readable");
        assert!(reading.rss_bytes > 0);
    }
}
