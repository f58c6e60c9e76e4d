//! Bench driver for a highly available group (README.md, "Running several
//! consoles"): a real etcd, three consoles, agents.
//!
//! - `--mode leader` (default): `kill -9` of the leader → a new leader
//!   serving every agent, over `--runs` runs (the killed console is started
//!   again between runs). Times come from the consoles' own event log lines
//!   ("… leads the group", "node … unknown → alive"), so polling does not
//!   blur them.
//! - `--mode leader-and-agent`: `kill -9` of the leader and of an agent's
//!   host at once → that agent's instance running elsewhere (the start
//!   stamp its new copy writes), compared with the consoles' reconnect
//!   grace.
//! - `--mode steady --agents N`: N swarm agents on the leader, no changes:
//!   etcd's writes (raft proposals, key puts, deletes, transactions) and
//!   lease keep-alives over `--seconds`; then how far a standby's `status`
//!   lags the leader, over `--runs` changes.
//!
//! Build the binaries with the feature first:
//! `cargo build --release -p ringwatch -p ringwatch-agent -p ringwatch-tests --features ringwatch-tests/etcd`,
//! then e.g. `target/release/bench_takeover --mode leader --runs 20`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use ringwatch_tests::stats::quantile;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use ringwatch_tests::console::status_json;
use ringwatch_tests::fleet::{AgentSpec, RECONNECT};
use ringwatch_tests::instances::{LifeLog, wall_clock_now};
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::scale::Swarm;
use ringwatch_tests::status::NodeState;
use ringwatch_tests::{ConsoleGroup, EtcdData, LIVENESS, Sandbox, TaskDef, tasks};

const CONSOLES: [&str; 3] = ["c1", "c2", "c3"];
/// The consoles' reconnect grace (their default).
const GRACE: Duration = Duration::from_secs(15);
/// How long every run waits before its kill: an agent starts its reconnect
/// backoff over after a session of 10 s, and a takeover is measured from
/// that steady state, not from the tail of the previous run's.
const STEADY: Duration = Duration::from_secs(11);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1)).cloned();
    let number = |name: &str, default: usize| flag(name).map_or(default, |value| value.parse().unwrap());
    let runs = number("--runs", 20);
    match flag("--mode").as_deref().unwrap_or("leader") {
        "leader" => leader(runs, number("--agents", 4)),
        "leader-and-agent" => leader_and_agent(runs),
        "steady" => steady(number("--agents", 1000), number("--seconds", 60), runs),
        other => panic!("unknown --mode {other}: leader, leader-and-agent or steady"),
    }
}

fn agents(count: usize) -> Vec<AgentSpec> {
    (0..count).map(|i| AgentSpec::new(&format!("a{i}"))).collect()
}

/// `kill -9` of the leader → the new leader's election, and every agent
/// connected to it.
fn leader(runs: usize, agent_count: usize) {
    let sandbox = Sandbox::new("bench-takeover");
    let mut group = ConsoleGroup::start_with(&sandbox, EtcdData::Disk, &CONSOLES, &agents(agent_count));
    let names = group.agent_names();
    let mut elected = Vec::new();
    let mut serving = Vec::new();
    for run in 1..=runs {
        let old = group.wait_leader(LIVENESS);
        group.wait_all_alive(RECONNECT);
        std::thread::sleep(STEADY);
        let killed_at = SystemTime::now();
        group.kill(old);
        let new = group.wait_leader_where(LIVENESS, "a new leader", |index| index != old);
        group.wait_all_alive(RECONNECT);
        let log = group.console_log(new);
        let led = event_at(&log, killed_at, |line| line.contains("leads the group")).expect("a leadership event");
        let last_back = names
            .iter()
            .map(|name| {
                let needle = format!("node \"{name}\" ");
                event_at(&log, killed_at, |line| line.contains(&needle) && line.contains("→ alive"))
                    .expect("an alive event per agent")
            })
            .max()
            .unwrap();
        let (led, back) = (since(killed_at, led), since(killed_at, last_back));
        println!(
            "run {run:>2}: {} killed; {} leads after {:>5} ms, serves all {} agents after {:>5} ms",
            group.name(old),
            group.name(new),
            led.as_millis(),
            names.len(),
            back.as_millis()
        );
        elected.push(led);
        serving.push(back);
        group.start_console(old);
    }
    summary("kill -9 of the leader → a new leader elected", &mut elected);
    summary("kill -9 of the leader → the new leader serving every agent", &mut serving);
}

/// `kill -9` of the leader and of an agent's host at once → the agent's
/// instance running elsewhere.
fn leader_and_agent(runs: usize) {
    let sandbox = Sandbox::new("bench-takeover-agent");
    let mut group = ConsoleGroup::start_with(&sandbox, EtcdData::Disk, &CONSOLES, &agents(4));
    let life = LifeLog::new(&sandbox.path().join("life.log"));
    let leader = group.wait_leader(LIVENESS);
    let immediate = r#"{ mode = "immediate" }"#;
    group.apply(leader, &[TaskDef::new("web", life.command()).replicas(2).set("restart", immediate)]);
    let mut latencies = Vec::new();
    for run in 1..=runs {
        let status = group.wait_on_leader(RECONNECT, "web running, every agent alive", |status| {
            status.running_on_distinct_nodes("web", 2).is_some()
                && status.nodes.iter().all(|node| node.state == NodeState::Alive)
        });
        let placed = status.running_on_distinct_nodes("web", 2).unwrap();
        let (instance, victim) = placed.iter().next().map(|(i, n)| (i.clone(), n.clone())).unwrap();
        let old = group.wait_leader(LIVENESS);
        std::thread::sleep(STEADY);
        let copies_before = life.copies().len();
        let killed_at = wall_clock_now();
        group.kill(old);
        let killed = group.kill_host(&victim);
        let replacement = life.wait_for(GRACE + RECONNECT, "a new copy", |copies| {
            copies.iter().skip(copies_before).any(|copy| copy.instance == instance && !killed.contains(&copy.pid))
        });
        let started = replacement
            .iter()
            .skip(copies_before)
            .find(|copy| copy.instance == instance && !killed.contains(&copy.pid))
            .map(|copy| copy.started)
            .unwrap();
        let latency = started.saturating_sub(killed_at);
        println!(
            "run {run:>2}: {} and {victim} killed; {instance} runs elsewhere after {:>5} ms (grace + {} ms)",
            group.name(old),
            latency.as_millis(),
            latency.saturating_sub(GRACE).as_millis()
        );
        latencies.push(latency);
        group.start_console(old);
        group.restart_agent(&victim);
        group.wait_leader(LIVENESS);
    }
    summary("kill -9 of the leader and an agent → its instance elsewhere", &mut latencies);
    let mut beyond: Vec<Duration> = latencies.iter().map(|latency| latency.saturating_sub(GRACE)).collect();
    summary("  of which beyond the 15 s grace", &mut beyond);
}

/// Steady state with `agent_count` agents: what etcd is asked to do, and how
/// far a standby lags.
fn steady(agent_count: usize, seconds: usize, runs: usize) {
    let sandbox = Sandbox::new("bench-takeover-steady");
    let mut group = ConsoleGroup::start_with(&sandbox, EtcdData::Disk, &CONSOLES, &[]);
    let leader = group.wait_leader(LIVENESS);
    let _swarm = Swarm::start(
        group.address(leader),
        Some(&group.token),
        agent_count,
        &sandbox.dir("swarm"),
        &sandbox.path().join("swarm.log"),
        &[],
    );
    let started = Instant::now();
    group.console(leader).wait_for_within(Duration::from_secs(600), "every swarm agent alive", |status| {
        status.nodes.len() == agent_count && status.nodes.iter().all(|node| node.state == NodeState::Alive)
    });
    println!("{agent_count} agents alive after {:.1} s", started.elapsed().as_secs_f64());
    // Let the joins' writes and the detectors settle before counting.
    std::thread::sleep(Duration::from_secs(10));
    let before = etcd_counters(&group);
    let window = Duration::from_secs(seconds as u64);
    std::thread::sleep(window);
    let after = etcd_counters(&group);
    let alive = status_json(&group_dir(&group, leader)).unwrap();
    let all_alive = alive.nodes.iter().filter(|node| node.state == NodeState::Alive).count();
    println!("steady state, {agent_count} agents ({all_alive} alive at the end), {seconds} s:");
    for (name, value) in &after {
        let delta = value - before.get(name).copied().unwrap_or(0.0);
        println!("  {name:<55} {delta:>8.0} ({:.2}/s)", delta / window.as_secs_f64());
    }

    // Standby lag: a change made through the leader (its answer means it is
    // in etcd) → seen in a standby's status.
    let standby = (0..group.len()).find(|index| *index != leader).unwrap();
    let standby_dir = group_dir(&group, standby);
    let node = alive.nodes.first().expect("a node").name.clone();
    let leader_dir = group_dir(&group, leader);
    let mut lags = Vec::new();
    for run in 1..=runs {
        // Cordon and uncordon one node, in turn.
        let cordoned = run % 2 == 1;
        tasks::act(&leader_dir, &[if cordoned { "cordon" } else { "uncordon" }, &node]);
        let applied = Instant::now();
        let seen = poll::until(LIVENESS, Duration::from_millis(10), || match status_json(&standby_dir) {
            Ok(status) if status.node(&node).is_some_and(|n| n.cordoned == cordoned) => Step::Done(applied.elapsed()),
            Ok(_) => Step::Pending("not yet".into()),
            Err(err) => Step::Pending(format!("{err:#}")),
        })
        .unwrap();
        println!(
            "run {run:>2}: {node} {} on the standby {:>4} ms after the leader carried it out",
            if cordoned { "cordoned" } else { "uncordoned" },
            seen.as_millis()
        );
        lags.push(seen);
    }
    summary("a change through the leader → in a standby's status", &mut lags);
}

fn group_dir(group: &ConsoleGroup, index: usize) -> std::path::PathBuf {
    group.root().join(format!("console-{}", group.name(index)))
}

/// The etcd counters that say what it was asked to do.
fn etcd_counters(group: &ConsoleGroup) -> BTreeMap<String, f64> {
    const WANTED: [&str; 6] = [
        "etcd_server_proposals_committed_total",
        "etcd_mvcc_put_total",
        "etcd_mvcc_delete_total",
        "etcd_mvcc_txn_total",
        "etcd_mvcc_range_total",
        "grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\"",
    ];
    let text = group.etcd.metrics().expect("etcd metrics");
    let mut counters = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        if let Some(wanted) = WANTED.iter().find(|wanted| name.starts_with(*wanted)) {
            *counters
                .entry((*wanted).replace("{grpc_method=\"LeaseKeepAlive\"", " (LeaseKeepAlive)"))
                .or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    counters
}

/// The time of the first event line after `after` that `matches`.
fn event_at(log: &str, after: SystemTime, matches: impl Fn(&str) -> bool) -> Option<SystemTime> {
    log.lines()
        .filter(|line| line.contains("ringwatch::event") && matches(line))
        .filter_map(|line| line.split_whitespace().next().and_then(|stamp| humantime::parse_rfc3339(stamp).ok()))
        .find(|at| *at > after)
}

fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}

fn summary(what: &str, values: &mut [Duration]) {
    values.sort();
    let pick = |q: f64| quantile(values, q);
    println!(
        "{what}, {} runs: p50 {} ms, p99 {} ms, max {} ms",
        values.len(),
        pick(0.50).as_millis(),
        pick(0.99).as_millis(),
        values.last().unwrap().as_millis()
    );
}
