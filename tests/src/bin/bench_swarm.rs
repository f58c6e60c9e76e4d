//! Bench driver: the console under N swarm agents (default 1,000) at default
//! rates for a window (default 300 s): console CPU and RSS, and how many
//! nodes were (falsely) flagged failed — no agent is harmed in this run, so
//! every `failed` is false.
//!
//! `cargo build --release --workspace && target/release/bench_swarm [--agents N] [--seconds S]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use std::process::Command;
use std::time::{Duration, Instant};

use ringwatch_tests::bins;
use ringwatch_tests::console::Console;
use ringwatch_tests::process::Proc;
use ringwatch_tests::procfs;
use ringwatch_tests::sandbox::Sandbox;
use ringwatch_tests::status::NodeState;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| {
        args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
    };
    let agents = flag("--agents", 1_000);
    let seconds = flag("--seconds", 300);
    let sandbox = Sandbox::new("bench-swarm");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let mut command = Command::new(bins::ringwatch_agent());
    command
        .arg("swarm")
        .args(["--console", &console.addr().to_string(), "--token", &token, "--agents", &agents.to_string()])
        .arg("--data-dir")
        .arg(sandbox.dir("swarm"));
    let swarm = Proc::spawn("swarm", command, &sandbox.dir("swarm").join("log"));
    let started = Instant::now();
    console.wait_for_within(Duration::from_secs(600), "every swarm agent alive", |status| {
        status.nodes.iter().filter(|node| node.state == NodeState::Alive).count() as u64 == agents
    });
    println!("{agents} agents alive after {:.1} s", started.elapsed().as_secs_f64());
    let failed_before = failed_events(&console.log());
    let console_start = procfs::read(console.proc().pid()).unwrap();
    let swarm_start = procfs::read(swarm.pid()).unwrap();
    let mut peak_rss = console_start.rss_bytes;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(5));
        peak_rss = peak_rss.max(procfs::read(console.proc().pid()).unwrap().rss_bytes);
    }
    let console_end = procfs::read(console.proc().pid()).unwrap();
    let swarm_end = procfs::read(swarm.pid()).unwrap();
    let status = console.status();
    let false_failed = failed_events(&console.log()) - failed_before;
    println!("over {seconds} s with {agents} swarm agents (heartbeat 500ms, metrics 1s):");
    println!(
        "  console: CPU {:.1}% of one core, RSS {:.1} MiB (peak {:.1} MiB)",
        procfs::cpu_percent(&console_start, &console_end),
        console_end.rss_bytes as f64 / 1048576.0,
        peak_rss as f64 / 1048576.0
    );
    println!("  swarm process: CPU {:.1}% of one core", procfs::cpu_percent(&swarm_start, &swarm_end));
    println!(
        "  false `failed` events: {false_failed}; suspect events: {}; nodes alive at the end: {}",
        suspect_events(&console.log()),
        status.nodes.iter().filter(|node| node.state == NodeState::Alive).count()
    );
}

fn failed_events(log: &str) -> usize {
    log.lines().filter(|line| line.contains("ringwatch::event") && line.contains("→ failed")).count()
}

fn suspect_events(log: &str) -> usize {
    log.lines().filter(|line| line.contains("ringwatch::event") && line.contains("→ suspect")).count()
}
