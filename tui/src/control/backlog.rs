//! Whether the console is behind reading its own socket (ARCHITECTURE.md,
//! "The hot path").
//!
//! Heartbeats wait in the kernel's receive queue of the console's UDP
//! socket until the console reads them. When that queue is long — the
//! machine is saturated, or QUIC's probe timeouts (about 30 ms on a fast
//! network) fire on thousands of connections at once and double the
//! packet rate (BENCHMARKS.md, "The console at scale") — every node's
//! heartbeats arrive late together, and the detector would convict
//! thousands of live nodes. A console that has not read what was sent to
//! it cannot judge that silence: as for its own pauses, connected nodes
//! are not convicted for it. For a while only: a console that stays
//! behind must still find the nodes that really died.
//!
//! Linux tells the queue's length and the datagrams dropped for want of
//! room in `/proc/net/udp` and `/proc/net/udp6`; elsewhere the console
//! never counts itself behind.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// A queue at least this long, in bytes the kernel charges for it, is
/// "behind": at thousands of agents it is a fraction of a second of
/// datagrams, far more than a console that keeps up ever holds (0–60 kB
/// sampled every second at 5,000 agents), far less than the 8 MiB buffer.
pub const BEHIND_QUEUE_BYTES: u64 = 2 << 20;
/// The longest a console forgives silence for being behind, from the
/// first tick it was behind: after that, nodes are judged again even if it
/// still is.
pub const MAX_FORGIVEN: Duration = Duration::from_secs(10);

/// What the kernel says of one UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketQueue {
    /// Bytes charged for the datagrams waiting to be read.
    pub queued_bytes: u64,
    /// Datagrams dropped since the socket was made.
    pub drops: u64,
}

/// The line of `local` in the text of `/proc/net/udp` or `/proc/net/udp6`.
pub fn parse_proc_net_udp(text: &str, local: SocketAddr) -> Option<SocketQueue> {
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (address, port) = fields.get(1)?.split_once(':')?;
        if u16::from_str_radix(port, 16).ok()? != local.port() || parse_address(address)? != local.ip() {
            return None;
        }
        let (_, queued) = fields.get(4)?.split_once(':')?;
        Some(SocketQueue { queued_bytes: u64::from_str_radix(queued, 16).ok()?, drops: fields.get(12)?.parse().ok()? })
    })
}

/// An address as the kernel prints it: the 32-bit words of the address in
/// network order, each printed as a native integer in hex.
fn parse_address(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = hex
        .as_bytes()
        .chunks(8)
        .map(|chunk| std::str::from_utf8(chunk).ok().and_then(|word| u32::from_str_radix(word, 16).ok()))
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_ne_bytes()).collect();
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            let v6 = Ipv6Addr::from(octets);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

/// Reads the queue of the socket bound to `local`, or `None` where the
/// kernel does not say (not Linux, no procfs, the socket not found).
pub fn read_queue(local: SocketAddr) -> Option<SocketQueue> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|text| parse_proc_net_udp(&text, local))
}

/// What the owner does with a tick's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keeping up: judge every node.
    Judge,
    /// Behind since this tick: forgive connected nodes, and say so.
    FellBehind(SocketQueue),
    /// Still behind, within [`MAX_FORGIVEN`]: forgive connected nodes.
    StillBehind,
    /// Behind for longer than [`MAX_FORGIVEN`]: judge again, and say so
    /// once.
    GaveUp,
}

/// What `/metrics` shows of the console's socket (README.md, "Metrics"):
/// an operator sees the console falling behind before nodes flap, and
/// whether the kernel dropped what it could not hold.
#[derive(Debug, Default)]
pub struct SocketTallies {
    /// Bytes waiting in the receive queue at the last reading.
    pub queued_bytes: Gauge,
    /// Datagrams the kernel dropped for want of room, since the socket
    /// was made.
    pub drops: Counter,
    /// Times the console fell behind and forgave connected nodes.
    pub fell_behind: Counter,
}

impl SocketTallies {
    /// Takes a tick's reading and its verdict.
    pub fn observe(&self, reading: SocketQueue, verdict: Verdict) {
        self.queued_bytes.set(i64::try_from(reading.queued_bytes).unwrap_or(i64::MAX));
        // The kernel's count only grows while the socket lives, and only
        // the owner writes here.
        let counted = self.drops.get();
        if reading.drops > counted {
            self.drops.inc_by(reading.drops - counted);
        }
        if matches!(verdict, Verdict::FellBehind(_)) {
            self.fell_behind.inc();
        }
    }
}

/// The console's own socket, tick by tick.
#[derive(Debug, Default)]
pub struct Backlog {
    /// The socket's address (`None`: none to watch, never behind).
    socket: Option<SocketAddr>,
    /// The last reading.
    last: Option<SocketQueue>,
    /// Drops at the last reading.
    drops: Option<u64>,
    /// Since when it has been behind, and whether forgiving stopped.
    behind_since: Option<(Instant, bool)>,
}

impl Backlog {
    /// Watches the socket bound to `socket`.
    pub fn new(socket: Option<SocketAddr>) -> Self {
        Self { socket, ..Self::default() }
    }

    /// Reads the socket's queue and judges it, at `now`.
    pub fn poll(&mut self, now: Instant) -> Verdict {
        self.last = self.socket.and_then(read_queue);
        self.observe(self.last, now)
    }

    /// What the last [`Backlog::poll`] read (`None`: nothing known).
    pub fn last(&self) -> Option<SocketQueue> {
        self.last
    }

    /// Judges the reading of a tick at `now` (`None`: nothing known).
    pub fn observe(&mut self, reading: Option<SocketQueue>, now: Instant) -> Verdict {
        let Some(queue) = reading else {
            self.behind_since = None;
            return Verdict::Judge;
        };
        let dropped = self.drops.is_some_and(|before| queue.drops > before);
        self.drops = Some(queue.drops);
        if queue.queued_bytes < BEHIND_QUEUE_BYTES && !dropped {
            self.behind_since = None;
            return Verdict::Judge;
        }
        match &mut self.behind_since {
            None => {
                self.behind_since = Some((now, false));
                Verdict::FellBehind(queue)
            }
            Some((_, true)) => Verdict::Judge,
            Some((since, gave_up)) if now.saturating_duration_since(*since) > MAX_FORGIVEN => {
                *gave_up = true;
                Verdict::GaveUp
            }
            Some(_) => Verdict::StillBehind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_NET_UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  794: 0100007F:D36C 00000000:0000 07 00000000:00B24853 00:00000000 00000000     0        0 81425 2 0000000081827b3c 22040
 1614: 00000000:D6A0 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 83137 2 000000006679a9f9 0
";

    const PROC_NET_UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 07 00000000:00001000 00:00000000 00000000     0        0 9999 2 0000000000000000 7
";

    #[test]
    fn the_line_of_the_socket_is_found_by_address_and_port() {
        let loopback: SocketAddr = "127.0.0.1:54124".parse().unwrap();
        assert_eq!(
            parse_proc_net_udp(PROC_NET_UDP, loopback),
            Some(SocketQueue { queued_bytes: 0x00B2_4853, drops: 22_040 })
        );
        let any: SocketAddr = "0.0.0.0:54944".parse().unwrap();
        assert_eq!(parse_proc_net_udp(PROC_NET_UDP, any), Some(SocketQueue { queued_bytes: 0, drops: 0 }));
        let other_port: SocketAddr = "127.0.0.1:54125".parse().unwrap();
        assert_eq!(parse_proc_net_udp(PROC_NET_UDP, other_port), None);
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(parse_proc_net_udp(PROC_NET_UDP6, v6), Some(SocketQueue { queued_bytes: 4096, drops: 7 }));
    }

    #[test]
    fn garbage_is_no_reading_never_a_panic() {
        let local: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for text in ["", "header only", "h\n 1: zz:zz", "h\n 1: 0100007F:0001 x 07 00000000", "h\n 1: 0100007F:0001"] {
            assert_eq!(parse_proc_net_udp(text, local), None, "{text:?}");
        }
    }

    #[test]
    fn this_hosts_own_socket_is_read_back() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        if !std::path::Path::new("/proc/net/udp").exists() {
            return; // not Linux: nothing to read
        }
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(&[0u8; 100], local).unwrap();
        // Waits until it arrived, leaving it queued.
        socket.peek(&mut [0u8; 1]).unwrap();
        let queue = read_queue(local).expect("the socket is listed");
        assert!(queue.queued_bytes > 0, "{queue:?}");
    }

    fn queue(queued_bytes: u64, drops: u64) -> Option<SocketQueue> {
        Some(SocketQueue { queued_bytes, drops })
    }

    #[test]
    fn a_long_queue_or_new_drops_forgive_for_a_while_then_judging_resumes() {
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        let mut backlog = Backlog::default();
        assert_eq!(backlog.observe(queue(1_000, 5), at(0)), Verdict::Judge);
        assert_eq!(backlog.observe(queue(1_000, 5), at(100)), Verdict::Judge, "old drops are not new");
        assert_eq!(
            backlog.observe(queue(1_000, 6), at(200)),
            Verdict::FellBehind(SocketQueue { queued_bytes: 1_000, drops: 6 })
        );
        assert_eq!(backlog.observe(queue(BEHIND_QUEUE_BYTES, 6), at(300)), Verdict::StillBehind);
        assert_eq!(backlog.observe(queue(0, 6), at(400)), Verdict::Judge, "caught up");
        assert!(matches!(backlog.observe(queue(BEHIND_QUEUE_BYTES, 6), at(500)), Verdict::FellBehind(_)));
        assert_eq!(backlog.observe(queue(BEHIND_QUEUE_BYTES, 6), at(10_500)), Verdict::StillBehind);
        assert_eq!(backlog.observe(queue(BEHIND_QUEUE_BYTES, 6), at(10_600)), Verdict::GaveUp);
        assert_eq!(backlog.observe(queue(BEHIND_QUEUE_BYTES, 7), at(10_700)), Verdict::Judge, "no second pass");
        assert_eq!(backlog.observe(queue(0, 7), at(10_800)), Verdict::Judge);
        assert!(matches!(backlog.observe(queue(0, 8), at(10_900)), Verdict::FellBehind(_)), "a new episode");
        assert_eq!(backlog.observe(None, at(11_000)), Verdict::Judge, "nothing known: judge");
    }

    #[test]
    fn the_metrics_follow_the_queue_count_the_kernels_drops_once_and_each_episode() {
        let tallies = SocketTallies::default();
        let behind = SocketQueue { queued_bytes: BEHIND_QUEUE_BYTES, drops: 12 };
        tallies.observe(SocketQueue { queued_bytes: 700, drops: 10 }, Verdict::Judge);
        assert_eq!((tallies.queued_bytes.get(), tallies.drops.get(), tallies.fell_behind.get()), (700, 10, 0));
        tallies.observe(behind, Verdict::FellBehind(behind));
        tallies.observe(behind, Verdict::StillBehind);
        assert_eq!(tallies.drops.get(), 12, "drops already counted are not counted again");
        assert_eq!(tallies.fell_behind.get(), 1, "one episode, however many ticks");
        tallies.observe(SocketQueue { queued_bytes: 0, drops: 12 }, Verdict::Judge);
        assert_eq!((tallies.queued_bytes.get(), tallies.drops.get()), (0, 12));
        tallies.observe(behind, Verdict::FellBehind(behind));
        assert_eq!(tallies.fell_behind.get(), 2);
    }

    #[test]
    fn the_last_reading_is_kept_for_the_metrics() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let local = socket.local_addr().expect("address");
        let mut backlog = Backlog::new(Some(local));
        assert_eq!(backlog.last(), None, "nothing read yet");
        backlog.poll(Instant::now());
        if cfg!(target_os = "linux") {
            assert!(backlog.last().is_some(), "the socket is listed in /proc/net/udp");
        }
        assert_eq!(Backlog::new(None).last(), None);
    }
}
