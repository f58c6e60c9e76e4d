//! Bench driver: false failures under injected jitter. Every agent reaches
//! the console through its own UDP relay that delays each datagram, both
//! ways, by a random 0..=MAX (default 200 ms, so datagrams also reorder);
//! nothing is harmed, so every `failed` is false.
//!
//! `cargo build --release --workspace && target/release/bench_jitter [--agents N] [--jitter-ms MS] [--seconds S]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use std::time::Duration;

use ringwatch_tests::fleet::{AgentSpec, Fleet};
use ringwatch_tests::sandbox::Sandbox;
use ringwatch_tests::udp::RelayMode;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| {
        args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
    };
    let agents = flag("--agents", 8);
    let jitter = Duration::from_millis(flag("--jitter-ms", 200));
    let seconds = flag("--seconds", 120);
    let sandbox = Sandbox::new("bench-jitter");
    let names: Vec<String> = (0..agents).map(|index| format!("j{index}")).collect();
    let specs: Vec<AgentSpec> = names.iter().map(|name| AgentSpec::new(name).relayed()).collect();
    let fleet = Fleet::start_with(&sandbox, &specs);
    for name in &names {
        fleet.relay(name).set_mode(RelayMode::Delay(jitter));
    }
    let before = fleet.console.log();
    let count = |log: &str, needle: &str| {
        log.lines().filter(|line| line.contains("ringwatch::event") && line.contains(needle)).count()
    };
    std::thread::sleep(Duration::from_secs(seconds));
    let after = fleet.console.log();
    let status = fleet.console.status();
    println!(
        "over {seconds} s, {agents} agents, each datagram delayed by a random 0–{} ms both ways:",
        jitter.as_millis()
    );
    println!(
        "  false `failed` events: {}; `suspect` events: {}; heartbeats lost (sequence gaps): {}",
        count(&after, "→ failed") - count(&before, "→ failed"),
        count(&after, "→ suspect") - count(&before, "→ suspect"),
        status.nodes.iter().map(|node| node.heartbeats_lost.unwrap_or(0)).sum::<u64>()
    );
    let max_phi = status.nodes.iter().map(|node| node.phi.unwrap_or(0.0)).fold(0.0, f64::max);
    println!("  highest phi at the end: {max_phi:.2}");
}
