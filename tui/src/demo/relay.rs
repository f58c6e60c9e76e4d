//! UDP fault injection on loopback: a relay that can pass, partition or
//! jitter one agent's traffic to the console. The demo puts one in front of
//! each of its agents; the end-to-end tests use it for partitions and
//! jitter.
//!
//! QUIC runs over UDP, so putting a [`UdpRelay`] between an agent and the
//! console (the agent's `--console` is the relay's address) lets a test cut
//! or slow exactly that link while everything else stays healthy.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::Rng;

/// Largest datagram the relay carries (bigger than any QUIC packet).
const MAX_DATAGRAM: usize = 65_535;
/// How often blocked relay threads look at the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(20);

/// What the relay does with each datagram, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// Forward at once.
    Pass,
    /// Discard: a network partition. Datagrams already queued by `Delay` are
    /// still delivered, like packets already on the wire.
    Drop,
    /// Forward each datagram after its own random delay in `0..=max`, so
    /// they may also be reordered.
    Delay(Duration),
}

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
}

/// A datagram waiting for its delay to pass. Ordered by due time, then by
/// arrival so equal due times keep their order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Delayed {
    due: Instant,
    seq: u64,
    direction: Direction,
    bytes: Vec<u8>,
}

/// Packet counters, for tests that check the relay really did something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Datagrams sent on (after any delay).
    pub forwarded: u64,
    /// Datagrams discarded by [`RelayMode::Drop`].
    pub dropped: u64,
    /// Datagrams from peers other than the first client, ignored.
    pub strangers: u64,
}

/// State shared by the relay threads.
#[derive(Debug)]
struct Shared {
    /// The current mode; read for every datagram.
    mode: Mutex<RelayMode>,
    /// Set on drop; every thread exits within [`STOP_CHECK`].
    stop: AtomicBool,
    /// The first peer that sent to the front socket; replies go there.
    client: Mutex<Option<SocketAddr>>,
    /// Delayed datagrams, earliest first.
    queue: Mutex<BinaryHeap<Reverse<Delayed>>>,
    /// Wakes the delivery thread when the queue gets an earlier datagram.
    queued: Condvar,
    /// Arrival counter for [`Delayed::seq`].
    seq: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    strangers: AtomicU64,
    /// Faces the client.
    front: UdpSocket,
    /// Faces the upstream (connected to it).
    back: UdpSocket,
}

impl Shared {
    fn mode(&self) -> RelayMode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client(&self) -> Option<SocketAddr> {
        *self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn handle(&self, direction: Direction, bytes: &[u8]) {
        match self.mode() {
            RelayMode::Pass => self.send(direction, bytes),
            RelayMode::Drop => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            RelayMode::Delay(max) => {
                let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
                let delay = Duration::from_nanos(rand::rng().random_range(0..=max_nanos));
                let item = Delayed {
                    due: Instant::now() + delay,
                    seq: self.seq.fetch_add(1, Ordering::Relaxed),
                    direction,
                    bytes: bytes.to_vec(),
                };
                self.queue.lock().unwrap_or_else(PoisonError::into_inner).push(Reverse(item));
                self.queued.notify_one();
            }
        }
    }

    fn send(&self, direction: Direction, bytes: &[u8]) {
        // Send errors (a closed upstream port, a full buffer) are what a
        // lossy network does anyway: the datagram is lost.
        let sent = match direction {
            Direction::Up => self.back.send(bytes).is_ok(),
            Direction::Down => match self.client() {
                Some(client) => self.front.send_to(bytes, client).is_ok(),
                None => false,
            },
        };
        if sent {
            self.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A UDP relay between one client and a fixed upstream, switchable at run
/// time between [`RelayMode`]s. Its threads stop when it is dropped.
#[derive(Debug)]
pub struct UdpRelay {
    /// Where the client sends to.
    addr: SocketAddr,
    /// Shared with the threads.
    shared: Arc<Shared>,
    /// Joined on drop.
    threads: Vec<JoinHandle<()>>,
}

impl UdpRelay {
    /// Binds a loopback port (same IP family as `upstream`) and starts
    /// relaying in [`RelayMode::Pass`].
    ///
    /// # Errors
    /// When a socket cannot be bound or configured.
    pub fn start(upstream: SocketAddr) -> io::Result<Self> {
        let loopback: SocketAddr =
            if upstream.is_ipv6() { (Ipv6Addr::LOCALHOST, 0).into() } else { (Ipv4Addr::LOCALHOST, 0).into() };
        let front = UdpSocket::bind(loopback)?;
        let back = UdpSocket::bind(loopback)?;
        back.connect(upstream)?;
        front.set_read_timeout(Some(STOP_CHECK))?;
        back.set_read_timeout(Some(STOP_CHECK))?;
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(RelayMode::Pass),
            stop: AtomicBool::new(false),
            client: Mutex::new(None),
            queue: Mutex::new(BinaryHeap::new()),
            queued: Condvar::new(),
            seq: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            strangers: AtomicU64::new(0),
            front,
            back,
        });
        let threads = vec![
            spawn("udp-relay-up", Arc::clone(&shared), run_up)?,
            spawn("udp-relay-down", Arc::clone(&shared), run_down)?,
            spawn("udp-relay-delay", Arc::clone(&shared), run_delayed)?,
        ];
        Ok(Self { addr, shared, threads })
    }

    /// The address to give the client instead of the upstream's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client, once it has sent something.
    pub fn client(&self) -> Option<SocketAddr> {
        self.shared.client()
    }

    /// Switches the mode; applies to the next datagram.
    pub fn set_mode(&self, mode: RelayMode) {
        *self.shared.mode.lock().unwrap_or_else(PoisonError::into_inner) = mode;
    }

    /// The current mode.
    pub fn mode(&self) -> RelayMode {
        self.shared.mode()
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            forwarded: self.shared.forwarded.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            strangers: self.shared.strangers.load(Ordering::Relaxed),
        }
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.queued.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn spawn(name: &str, shared: Arc<Shared>, body: fn(&Shared)) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name.to_owned()).spawn(move || body(&shared))
}

/// Client → upstream. The first sender becomes the client; others are
/// ignored, as a NAT would.
fn run_up(shared: &Shared) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stopping() {
        let Ok((len, from)) = shared.front.recv_from(&mut buf) else {
            continue;
        };
        let client = {
            let mut client = shared.client.lock().unwrap_or_else(PoisonError::into_inner);
            *client.get_or_insert(from)
        };
        if client != from {
            shared.strangers.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        shared.handle(Direction::Up, &buf[..len]);
    }
}

/// Upstream → client.
fn run_down(shared: &Shared) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stopping() {
        // Errors include timeouts and ICMP "port unreachable" reported on
        // the connected socket while the upstream is down: keep going.
        let Ok(len) = shared.back.recv(&mut buf) else {
            continue;
        };
        shared.handle(Direction::Down, &buf[..len]);
    }
}

/// Delivers delayed datagrams when they are due.
fn run_delayed(shared: &Shared) {
    let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
    while !shared.stopping() {
        let now = Instant::now();
        let wait = match queue.peek() {
            Some(Reverse(first)) if first.due <= now => {
                if let Some(Reverse(item)) = queue.pop() {
                    // Not sent under the lock: the receiving threads must
                    // not wait on a send to queue more.
                    drop(queue);
                    shared.send(item.direction, &item.bytes);
                    queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
                }
                continue;
            }
            Some(Reverse(first)) => first.due - now,
            None => STOP_CHECK * 5,
        };
        queue = shared.queued.wait_timeout(queue, wait).unwrap_or_else(PoisonError::into_inner).0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Nothing should arrive within this; short, since absence can only be
    /// observed by waiting.
    const QUIET: Duration = Duration::from_millis(300);
    /// Something should arrive within this (a liveness bound).
    const ARRIVAL: Duration = Duration::from_secs(5);

    fn socket() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(ARRIVAL)).unwrap();
        socket
    }

    fn recv(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        socket.recv_from(&mut buf).ok().map(|(len, from)| (buf[..len].to_vec(), from))
    }

    fn recv_quiet(socket: &UdpSocket) -> Option<Vec<u8>> {
        socket.set_read_timeout(Some(QUIET)).unwrap();
        let got = recv(socket).map(|(bytes, _)| bytes);
        socket.set_read_timeout(Some(ARRIVAL)).unwrap();
        got
    }

    #[test]
    fn passes_both_ways() {
        let upstream = socket();
        let client = socket();
        let relay = UdpRelay::start(upstream.local_addr().unwrap()).unwrap();

        client.send_to(b"ping", relay.addr()).unwrap();
        let (bytes, relay_back) = recv(&upstream).expect("upstream gets the ping");
        assert_eq!(bytes, b"ping");
        assert_eq!(relay.client(), Some(client.local_addr().unwrap()));

        upstream.send_to(b"pong", relay_back).unwrap();
        let (bytes, from) = recv(&client).expect("client gets the pong");
        assert_eq!(bytes, b"pong");
        assert_eq!(from, relay.addr(), "replies come from the relay");
        // The counter is bumped after the send returns, which may be after
        // the datagram arrived: wait for it.
        let deadline = Instant::now() + ARRIVAL;
        while relay.stats().forwarded < 2 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(relay.stats().forwarded, 2);
    }

    #[test]
    fn drop_mode_partitions_both_ways_until_switched_back() {
        let upstream = socket();
        let client = socket();
        let relay = UdpRelay::start(upstream.local_addr().unwrap()).unwrap();
        client.send_to(b"hello", relay.addr()).unwrap();
        let (_, relay_back) = recv(&upstream).unwrap();

        relay.set_mode(RelayMode::Drop);
        client.send_to(b"lost up", relay.addr()).unwrap();
        upstream.send_to(b"lost down", relay_back).unwrap();
        assert_eq!(recv_quiet(&upstream), None);
        assert_eq!(recv_quiet(&client), None);
        assert_eq!(relay.stats().dropped, 2);

        relay.set_mode(RelayMode::Pass);
        client.send_to(b"back", relay.addr()).unwrap();
        assert_eq!(recv(&upstream).unwrap().0, b"back");
        upstream.send_to(b"again", relay_back).unwrap();
        assert_eq!(recv(&client).unwrap().0, b"again");
    }

    #[test]
    fn delay_mode_delivers_everything_within_the_bound() {
        let upstream = socket();
        let client = socket();
        let relay = UdpRelay::start(upstream.local_addr().unwrap()).unwrap();
        let max = Duration::from_millis(100);
        relay.set_mode(RelayMode::Delay(max));

        let sent_at = Instant::now();
        for i in 0..20u8 {
            client.send_to(&[i], relay.addr()).unwrap();
        }
        let mut got: Vec<u8> = (0..20).map(|_| recv(&upstream).expect("every datagram arrives").0[0]).collect();
        // Generous: the bound is on the relay's delay, not on the scheduler.
        assert!(sent_at.elapsed() < max + ARRIVAL);
        got.sort_unstable();
        assert_eq!(got, (0..20).collect::<Vec<u8>>());
    }

    #[test]
    fn ignores_a_second_client() {
        let upstream = socket();
        let client = socket();
        let stranger = socket();
        let relay = UdpRelay::start(upstream.local_addr().unwrap()).unwrap();
        client.send_to(b"first", relay.addr()).unwrap();
        assert_eq!(recv(&upstream).unwrap().0, b"first");
        stranger.send_to(b"second", relay.addr()).unwrap();
        assert_eq!(recv_quiet(&upstream), None);
        assert_eq!(relay.stats().strangers, 1);
    }

    #[test]
    fn dropping_the_relay_stops_it() {
        let upstream = socket();
        let client = socket();
        let relay = UdpRelay::start(upstream.local_addr().unwrap()).unwrap();
        let addr = relay.addr();
        drop(relay);
        client.send_to(b"anyone?", addr).unwrap();
        assert_eq!(recv_quiet(&upstream), None);
    }
}
