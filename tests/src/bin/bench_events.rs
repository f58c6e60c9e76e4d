//! Bench driver for the event stream (README.md, "Events"): how long after a
//! `kill -9` of an agent a follower (`ringwatch events --follow --json`,
//! through an operator credential) prints that node's `failed` event, over
//! `--runs` runs on one console with `--agents` agents (the killed agent is
//! started again between runs).
//!
//! Build first: `cargo build --release --workspace`, then
//! `target/release/bench_events --runs 20`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringwatch_tests::stats::quantile;
use ringwatch_tests::{Fleet, LIVENESS, NodeState, Sandbox, bins};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1)).cloned();
    let runs: usize = flag("--runs").map_or(20, |value| value.parse().unwrap());
    let agents: usize = flag("--agents").map_or(4, |value| value.parse().unwrap());
    let sandbox = Sandbox::new("bench-events");
    let names: Vec<String> = (0..agents).map(|i| format!("a{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut fleet = Fleet::start(&sandbox, &refs);
    let credential = sandbox.path().join("bench.credential");
    let issued = fleet.admin(&["credential", "issue", "bench", "--role", "viewer", "-o", credential.to_str().unwrap()]);
    assert!(issued.status.success(), "{issued}");

    let mut follower = Command::new(bins::ringwatch())
        .arg("--credential")
        .arg(&credential)
        .args(["events", "--follow", "--json", "--since", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the follower starts");
    let (lines, printed) = mpsc::channel::<(Instant, serde_json::Value)>();
    let stdout = follower.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line)
                && lines.send((Instant::now(), event)).is_err()
            {
                return;
            }
        }
    });

    let victim = names[agents - 1].clone();
    let mut latencies = Vec::new();
    for run in 0..runs {
        fleet.wait_all_alive(LIVENESS);
        while printed.try_recv().is_ok() {}
        let killed = Instant::now();
        fleet.kill_host(&victim);
        let deadline = killed + Duration::from_secs(60);
        let seen = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, event) = printed.recv_timeout(left).expect("the failed event within 60 s");
            if event["kind"] == "node-state"
                && event["node"] == victim.as_str()
                && event["to"] == NodeState::Failed.to_string()
            {
                break at;
            }
        };
        let latency = seen - killed;
        println!("run {run}: kill -9 → failed event printed {:.0} ms", latency.as_secs_f64() * 1000.0);
        latencies.push(latency);
        fleet.restart_agent(&victim);
    }
    let _ = follower.kill();
    let _ = follower.wait();
    latencies.sort();
    println!(
        "{} runs, {agents} agents: kill -9 → follower prints `failed`: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        quantile(&latencies, 0.5).as_secs_f64() * 1000.0,
        quantile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
}
