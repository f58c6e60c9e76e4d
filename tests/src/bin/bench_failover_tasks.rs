//! Bench driver: kill -9 of an agent hosting an `immediate` task instance →
//! that instance running on another node (DESIGN.md §8: ≤ 3 s p99), over
//! many runs.
//!
//! Each run applies a fresh one-replica task, waits until it runs, lets the
//! fleet settle, then kills its host — the agent and the task's process, as
//! a dead host loses both — and measures two figures from the kill:
//!
//! - **running**: the first `status --json` poll (every 50 ms) that shows
//!   the instance `running` on another node; the time is taken when the
//!   poll returns, so it may be late by one poll;
//! - **placed**: the console's own timestamp on its `<id> placed on "<node>"`
//!   event line (when it sent the assignment), beside the `→ failed` line of
//!   the host for context.
//!
//! Then the task is removed and the killed agent restarted with its stored
//! credentials, so every run sees the same fleet. The console pauses
//! automatic failover when half the nodes fail within 10 s — counting
//! failures, also of nodes that came back — so kills are spaced: with N
//! agents, at most `ceil(N / 2) - 1` of them fall in any 10 s window.
//!
//! `cargo build --release --workspace && target/release/bench_failover_tasks [--runs N] [--agents K]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use ringwatch_tests::stats::quantile;
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use ringwatch_tests::console;
use ringwatch_tests::fleet::{Fleet, RECONNECT};
use ringwatch_tests::instances;
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::sandbox::Sandbox;
use ringwatch_tests::tasks::TaskDef;

/// How often `status` is polled after a kill.
const POLL: Duration = Duration::from_millis(50);
/// How long the fleet runs undisturbed before a kill, so every detector has
/// a few seconds of heartbeats (the restarted agent too).
const SETTLE: Duration = Duration::from_secs(3);
/// The default fleet size.
const DEFAULT_AGENTS: usize = 5;
/// The host and somewhere for its instance to go.
const MIN_AGENTS: usize = 2;
/// The console's mass-failure window (DESIGN.md §4), plus a margin.
const MASS_FAILURE_WINDOW: Duration = Duration::from_millis(10_500);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: usize| {
        args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
    };
    let runs = flag("--runs", 20);
    let agents = flag("--agents", DEFAULT_AGENTS);
    assert!(agents >= MIN_AGENTS, "--agents must be at least {MIN_AGENTS}");
    // The most failures that stay under half the nodes (and the guard needs
    // two at least).
    let kills_per_window = agents.div_ceil(2).saturating_sub(1).max(1);
    let mut recent_kills: VecDeque<Instant> = VecDeque::new();

    let sandbox = Sandbox::new("bench-failover-tasks");
    let names: Vec<String> = (0..agents).map(|i| format!("n{i}")).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut fleet = Fleet::start(&sandbox, &name_refs);

    let mut running_latencies = Vec::new();
    let mut placed_latencies = Vec::new();
    for run in 1..=runs {
        let task = format!("bench-{run}");
        let id = format!("{task}/0");
        fleet.apply(&[TaskDef::new(&task, instances::pid_file_command()).set("restart", r#"{ mode = "immediate" }"#)]);
        let (placed, _) = fleet.wait_running(&task, 1);
        let host = placed[&id].clone();
        fleet.wait_pid(&host, &id);
        // Steady state, then a random phase within the heartbeat period.
        std::thread::sleep(SETTLE + Duration::from_millis(rand::rng().random_range(0..500)));
        // Stay under the mass-failure guard: the oldest kill of a full
        // window must have left it.
        if recent_kills.len() >= kills_per_window
            && let Some(oldest) = recent_kills.pop_front()
        {
            std::thread::sleep(MASS_FAILURE_WINDOW.saturating_sub(oldest.elapsed()));
        }

        let killed_wall = SystemTime::now();
        let killed = Instant::now();
        recent_kills.push_back(killed);
        fleet.kill_host(&host);
        let data_dir = fleet.data_dir().to_path_buf();
        let seen = poll::until(RECONNECT, POLL, || match console::status_json(&data_dir) {
            Ok(status) => match status.instance(&id) {
                Some(instance) if instance.is_running() && instance.node.as_deref().is_some_and(|n| n != host) => {
                    Step::Done((killed.elapsed(), instance.node.clone().unwrap_or_default()))
                }
                _ => Step::Pending(status.tasks_summary()),
            },
            Err(err) => Step::Pending(format!("status failed: {err:#}")),
        });
        let (running_after, to) = match seen {
            Ok(seen) => seen,
            Err(failure) => panic!("run {run}: {id} never ran elsewhere: {failure}\n{}", fleet.console.log_tail()),
        };

        let log = fleet.console.log();
        let failed = event_at(&log, &format!("node \"{host}\" "), "→ failed", killed_wall);
        let placed_at = event_at(&log, &format!("{id} placed on \""), "", killed_wall);
        let after = |at: Option<SystemTime>| at.map(|at| at.duration_since(killed_wall).unwrap_or_default());
        let (failed_after, placed_after) = (after(failed), after(placed_at));
        println!(
            "run {run:>3}: {id} {host} → {to}: failed {}, placed {}, running (status poll) {:>5} ms",
            ms(failed_after),
            ms(placed_after),
            running_after.as_millis()
        );
        running_latencies.push(running_after);
        if let Some(placed_after) = placed_after {
            placed_latencies.push(placed_after);
        }

        fleet.admin(&["task", "rm", &task]);
        fleet.restart_agent(&host);
        fleet.wait_all_alive(RECONNECT);
    }
    summary("kill -9 → instance running elsewhere (status poll)", &mut running_latencies);
    summary("kill -9 → instance placed elsewhere (console log)", &mut placed_latencies);
}

/// `  1234 ms`, or `     ? ms` when the event was not found.
fn ms(latency: Option<Duration>) -> String {
    latency.map_or_else(|| format!("{:>5} ms", "?"), |latency| format!("{:>5} ms", latency.as_millis()))
}

/// The timestamp of the first console log line at or after `since` that
/// contains `needle` and `also`.
fn event_at(log: &str, needle: &str, also: &str, since: SystemTime) -> Option<SystemTime> {
    log.lines()
        .filter(|line| line.contains(needle) && line.contains(also))
        .filter_map(|line| line.split_whitespace().next().and_then(|stamp| humantime::parse_rfc3339(stamp).ok()))
        .find(|at| *at >= since)
}

fn summary(what: &str, latencies: &mut [Duration]) {
    if latencies.is_empty() {
        println!("{what}: no runs");
        return;
    }
    latencies.sort();
    let pick = |q: f64| quantile(latencies, q);
    println!(
        "{what} over {} runs: p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        pick(0.50).as_millis(),
        pick(0.99).as_millis(),
        latencies.last().unwrap().as_millis()
    );
}
