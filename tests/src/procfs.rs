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
    let fields = stat_fields(pid)?;
    // Field 14 of the man page is utime, 15 stime.
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

/// The processes whose parent is `pid`, from `/proc` (those that vanish
/// while it is read are left out).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|candidate| parent(*candidate) == Some(pid))
        .collect()
}

/// The parent of `pid`: field 4 of `/proc/<pid>/stat`.
fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The fields of `/proc/<pid>/stat` after the command name, from field 3
/// (the state) of the man page on: index `n` is field `n + 3`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

/// The kernel's UDP counters (`/proc/net/snmp`, this network namespace),
/// for checking two runs carried the same load and how much of it the
/// kernel dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Datagrams delivered to sockets.
    pub in_datagrams: u64,
    /// Datagrams dropped because a socket's receive buffer was full.
    pub rcvbuf_errors: u64,
}

/// Reads the UDP counters; `None` if `/proc/net/snmp` is unreadable or has
/// no UDP section.
pub fn udp_counters() -> Option<UdpCounters> {
    parse_udp_counters(&std::fs::read_to_string("/proc/net/snmp").ok()?)
}

fn parse_udp_counters(snmp: &str) -> Option<UdpCounters> {
    // A header line of names, then a line of values, both starting `Udp:`.
    let mut lines = snmp.lines().filter_map(|line| line.strip_prefix("Udp:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let field = |name: &str| -> Option<u64> { values.get(names.iter().position(|n| *n == name)?)?.parse().ok() };
    Some(UdpCounters { in_datagrams: field("InDatagrams")?, rcvbuf_errors: field("RcvbufErrors")? })
}

/// The machine, for a bench's report: the CPU model from `/proc/cpuinfo`
/// and the number of cores this process may use.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                line.strip_prefix("model name")?.split_once(':').map(|(_, model)| model.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    format!("{model}, {cores} cores")
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
    fn finds_a_child_of_this_process() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let found = children(std::process::id()).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "the child started is listed");
    }

    #[test]
    fn reads_this_process() {
        let reading = read(std::process::id()).expect("/proc is readable");
        assert!(reading.rss_bytes > 0);
    }

    #[test]
    fn udp_counters_come_from_the_udp_lines() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 21 0 3 22 7 0\n\
                    UdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        assert_eq!(parse_udp_counters(snmp), Some(UdpCounters { in_datagrams: 21, rcvbuf_errors: 7 }));
        assert_eq!(parse_udp_counters("Ip: 1\n"), None);
    }

    #[test]
    fn names_the_machine() {
        assert!(machine().ends_with(" cores"), "{}", machine());
    }
}
