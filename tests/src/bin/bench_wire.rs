//! Bench driver: bytes on the wire. Encodes one heartbeat and one full
//! metrics sample of this machine with the real codec, then runs a real
//! agent through a counting UDP relay for a while and reports the UDP
//! payloads it sends (heartbeat datagrams, metrics frames, ACKs, all QUIC
//! overhead included).
//!
//! `cargo build --release --workspace && target/release/bench_wire [--seconds S]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringwatch_shared::codec;
use ringwatch_shared::protocol::{AgentFrame, Datagram, Heartbeat};
use ringwatch_tests::agent::Agent;
use ringwatch_tests::console::Console;
use ringwatch_tests::sandbox::Sandbox;
use ringwatch_tests::status::NodeState;
use tokio_util::sync::CancellationToken;

fn main() {
    let seconds: u64 = std::env::args().skip_while(|arg| arg != "--seconds").nth(1).map_or(30, |v| v.parse().unwrap());

    // One sample of this machine, from the agent's own collector.
    let stop = CancellationToken::new();
    let metrics = ringwatch_agent::collector::spawn(stop.clone(), None).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sample = metrics.borrow().clone();
    stop.cancel();
    let heartbeat = Datagram::Heartbeat(Heartbeat { seq: 1_000_000, cpu_permille: 123, mem_permille: 456 });
    let heartbeat_bytes = codec::encode_datagram(&heartbeat).unwrap().len();
    let metrics_bytes = codec::encode_frame(&AgentFrame::Metrics(sample.clone())).unwrap().len();
    println!(
        "message sizes: heartbeat datagram {heartbeat_bytes} B; metrics frame {metrics_bytes} B ({} cores, {} disks)",
        sample.core_permille.len(),
        sample.disks.len()
    );

    let sandbox = Sandbox::new("bench-wire");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let relay = CountingRelay::start(console.addr());
    let _agent = Agent::start(relay.addr, &token, "wire", &sandbox.dir("wire"), &[]);
    console.wait_for("the agent alive", |status| status.node("wire").is_some_and(|n| n.state == NodeState::Alive));
    std::thread::sleep(Duration::from_secs(3));
    relay.reset();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let elapsed = started.elapsed().as_secs_f64();
    let sizes = relay.sizes.lock().unwrap().clone();
    let total: usize = sizes.values().map(|(_, bytes)| bytes).sum();
    let packets: usize = sizes.values().map(|(count, _)| count).sum();
    println!(
        "agent → console over {elapsed:.0} s: {packets} UDP datagrams, {total} B payload ({:.0} B/s)",
        total as f64 / elapsed
    );
    println!("datagram sizes (bytes: count):");
    for (size, (count, _)) in &sizes {
        println!("  {size:>5}: {count}");
    }
}

/// A relay that records the size of every datagram the agent sends.
struct CountingRelay {
    addr: std::net::SocketAddr,
    /// Size → (count, bytes).
    sizes: Arc<Mutex<BTreeMap<usize, (usize, usize)>>>,
    stop: Arc<AtomicBool>,
}

impl CountingRelay {
    fn start(upstream: std::net::SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(upstream).unwrap();
        front.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        back.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = front.local_addr().unwrap();
        let sizes = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(Mutex::new(None));
        {
            let (front, back, sizes, stop, client) =
                (front.try_clone().unwrap(), back.try_clone().unwrap(), sizes.clone(), stop.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_535];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((len, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        let mut sizes = sizes.lock().unwrap();
                        let entry: &mut (usize, usize) = sizes.entry(len).or_default();
                        entry.0 += 1;
                        entry.1 += len;
                        let _ = back.send(&buf[..len]);
                    }
                }
            });
        }
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_535];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(len) = back.recv(&mut buf)
                        && let Some(to) = *client.lock().unwrap()
                    {
                        let _ = front.send_to(&buf[..len], to);
                    }
                }
            });
        }
        Self { addr, sizes, stop }
    }

    fn reset(&self) {
        self.sizes.lock().unwrap().clear();
    }
}

impl Drop for CountingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
