//! Bench driver: kill -9 of an agent → `failed` at the console, over many
//! runs with default settings. The time of each verdict is read from the
//! console's event log line (its own timestamp), so status polling does not
//! blur the figure.
//!
//! `cargo build --release --workspace && target/release/bench_failover [--runs N] [--parallel K]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use ringwatch_tests::stats::quantile;
use std::time::{Duration, SystemTime};

use rand::Rng;
use ringwatch_tests::agent::Agent;
use ringwatch_tests::console::Console;
use ringwatch_tests::sandbox::Sandbox;
use ringwatch_tests::status::NodeState;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
    };
    let runs = flag("--runs", 20);
    let parallel = flag("--parallel", 4).max(1);
    let sandbox = Sandbox::new("bench-failover");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let mut latencies = Vec::new();
    let mut round = 0;
    while latencies.len() < runs {
        round += 1;
        let batch = parallel.min(runs - latencies.len());
        let names: Vec<String> = (0..batch).map(|i| format!("r{round}-{i}")).collect();
        let mut agents: Vec<Agent> =
            names.iter().map(|name| Agent::start(console.addr(), &token, name, &sandbox.dir(name), &[])).collect();
        console.wait_for("the round's agents alive", |status| {
            names.iter().all(|name| status.node(name).is_some_and(|node| node.state == NodeState::Alive))
        });
        // Steady state: let each detector learn a few seconds of heartbeats.
        std::thread::sleep(Duration::from_secs(5));
        let mut killed_at = Vec::new();
        for agent in &mut agents {
            // A random phase within the heartbeat period.
            std::thread::sleep(Duration::from_millis(rand::rng().random_range(0..500)));
            killed_at.push(SystemTime::now());
            agent.kill9();
        }
        console.wait_for("the round's agents failed", |status| {
            names.iter().all(|name| status.node(name).is_some_and(|node| node.state == NodeState::Failed))
        });
        let log = console.log();
        for (name, killed) in names.iter().zip(killed_at) {
            let failed = failed_at(&log, name).expect("a failed event in the console log");
            let latency = failed.duration_since(killed).unwrap_or_default();
            println!("run {:>3}: {name} failed {:>5} ms after kill -9", latencies.len() + 1, latency.as_millis());
            latencies.push(latency);
        }
    }
    latencies.sort();
    let pick = |q: f64| quantile(&latencies, q);
    println!(
        "kill -9 → failed over {} runs: p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        pick(0.50).as_millis(),
        pick(0.99).as_millis(),
        latencies.last().unwrap().as_millis()
    );
}

/// When the console logged `node "<name>" … → failed`.
fn failed_at(log: &str, name: &str) -> Option<SystemTime> {
    let needle = format!("node \"{name}\" ");
    log.lines()
        .find(|line| line.contains(&needle) && line.contains("→ failed"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|stamp| humantime::parse_rfc3339(stamp).ok())
}
