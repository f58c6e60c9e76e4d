//! Prometheus metrics (README.md, "Metrics"): `/metrics` passes `promtool`,
//! a real Prometheus scrapes the console and counts its nodes, the example
//! alerts load and fire, a taken address stops the console, the change
//! log's folds are counted, and the demo serves metrics too.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::prometheus::{self, Prometheus, check_metrics, http_get, promtool_check, sample, scrape};
use ringwatch_tests::{Agent, Console, Fleet, NodeState, Sandbox, bins};

use NodeState::{Alive, Failed};

/// Prometheus starts, scrapes every second and evaluates rules every
/// second; debug builds on a busy machine are slow.
const PROMETHEUS: Duration = Duration::from_secs(60);

#[test]
fn a_real_prometheus_scrapes_the_console_counts_its_nodes_and_alerts_on_a_failed_one() {
    let sandbox = Sandbox::new("metrics-prometheus");
    let console_dir = sandbox.dir("console");
    let mut console = Console::start_with(&console_dir, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = prometheus::metrics_addr(&console_dir);
    sandbox.step(format!("console up on {}, metrics on {metrics}", console.addr()));
    let token = console.join_token();
    let mut agents: Vec<Agent> = ["a", "b", "c"]
        .iter()
        .map(|name| Agent::start(console.addr(), &token, name, &sandbox.dir(&format!("agent-{name}")), &[]))
        .collect();
    console.wait_for_states(&[("a", Alive), ("b", Alive), ("c", Alive)]);
    sandbox.step("three nodes alive");

    let text = scrape(metrics);
    assert_eq!(sample(&text, "ringwatch_nodes{state=\"alive\"}"), Some(3.0), "{text}");
    assert_eq!(sample(&text, "ringwatch_node_up{node=\"b\"}"), Some(1.0), "{text}");
    // The console's own socket, read from /proc each tick.
    assert!(sample(&text, "ringwatch_socket_receive_queue_bytes").is_some_and(|bytes| bytes >= 0.0), "{text}");
    assert!(sample(&text, "ringwatch_socket_receive_drops_total").is_some(), "{text}");
    assert_eq!(sample(&text, "ringwatch_console_fell_behind_total"), Some(0.0), "{text}");
    let check = check_metrics(sandbox.path(), &text);
    assert!(check.status.success(), "promtool rejects the metrics: {check}");
    sandbox.step("promtool check metrics passes");
    let missing = http_get(metrics, "/nope", &[]).unwrap();
    assert_eq!(missing.status, 404, "{missing:?}");

    let dist = prometheus::dist_dir();
    let alerts = dist.join("prometheus").join("alerts.yml");
    let rules = promtool_check(&["rules", &alerts.to_string_lossy()]);
    assert!(rules.status.success(), "promtool rejects the example alerts: {rules}");
    let config = promtool_check(&["config", &dist.join("prometheus").join("prometheus.yml").to_string_lossy()]);
    assert!(config.status.success(), "promtool rejects the example configuration: {config}");
    sandbox.step("the example alerts and configuration pass promtool");

    let mut prometheus = Prometheus::start(&sandbox.dir("prometheus"), &[metrics], &[alerts]);
    sandbox.step(format!("prometheus up on {}", prometheus.addr()));
    prometheus.wait_for(PROMETHEUS, "count(ringwatch_node_up)", |answer| {
        answer.first().map(|(_, value)| *value) == Some(3.0)
    });
    sandbox.step("prometheus counts three nodes");
    // Heartbeats have come in by now: each connected node's round trip is
    // measured, in `status` and on `/metrics`.
    let status = console.status();
    for name in ["a", "b", "c"] {
        let node = status.node(name).unwrap_or_else(|| panic!("no node {name}: {status}"));
        assert!(node.rtt_ms.is_some_and(|rtt| rtt > 0.0 && rtt < 10_000.0), "{name}: {status}");
    }
    let text = scrape(metrics);
    assert!(sample(&text, "ringwatch_node_rtt_seconds{node=\"a\"}").is_some_and(|rtt| rtt > 0.0), "{text}");

    let exit = agents[2].kill9();
    sandbox.step(format!("c killed ({exit})"));
    console.wait_for_states(&[("c", Failed), ("a", Alive), ("b", Alive)]);
    prometheus
        .wait_for(PROMETHEUS, "sum(ringwatch_node_up)", |answer| answer.first().map(|(_, value)| *value) == Some(2.0));
    prometheus.wait_for(PROMETHEUS, "ALERTS{alertname=\"RingwatchNodeFailed\"}", |answer| {
        answer.iter().any(|(labels, _)| labels["node"] == "c")
    });
    sandbox.step("prometheus sees c down and the node-failed alert pending");

    // Counted where they happened: the conviction, with its latency, and
    // the admin requests the test made.
    let text = scrape(metrics);
    // At least c's: a loaded machine may make a or b flap meanwhile.
    let detected = sample(&text, "ringwatch_detection_latency_seconds_count").unwrap_or(0.0);
    assert!(detected >= 1.0, "{text}");
    let to_failed: f64 = text
        .lines()
        .filter(|line| line.starts_with("ringwatch_node_transitions_total{") && line.contains("to=\"failed\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(to_failed, detected, "every conviction of a node heard from has its latency: {text}");
    assert!(
        sample(&text, "ringwatch_admin_requests_total{request=\"status\",outcome=\"ok\"}").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "ringwatch_admin_requests_total{request=\"issue_token\",outcome=\"ok\"}"),
        Some(1.0),
        "{text}"
    );
}

/// A console whose change log folds every few commits (`fold_at` at its
/// smallest) counts on `/metrics` the folds its objects' records caused,
/// each with its duration, and its open write-ahead file stays under the
/// fold size.
#[test]
fn a_consoles_change_log_folds_are_counted_on_metrics() {
    const FOLD_AT: f64 = 4096.0;
    let sandbox = Sandbox::new("metrics-change-log");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    fleet.configure_keys("metrics_listen = \"127.0.0.1:0\"\n", "[change_log]\nfold_at = \"4KiB\"\n");
    let metrics = prometheus::metrics_addr(fleet.data_dir());
    sandbox.step(format!("console restarted with fold_at = 4KiB, metrics on {metrics}"));

    let file = sandbox.path().join("object");
    std::fs::write(&file, vec![7u8; 2048]).unwrap();
    for n in 0..30 {
        let put = fleet.admin(&["data", "put", &format!("fold/{n}"), file.to_str().unwrap()]);
        assert!(put.status.success(), "put {n}: {put}");
    }
    sandbox.step("30 objects stored");
    // A fold runs on a thread of its own: it is counted when it ends.
    let text = poll::until(Duration::from_secs(30), Duration::from_millis(100), || {
        let text = scrape(metrics);
        match sample(&text, "ringwatch_change_log_folds_total") {
            Some(folds) if folds >= 1.0 => Step::Done(text),
            folds => Step::Pending(format!("folds: {folds:?}")),
        }
    })
    .unwrap_or_else(|failure| panic!("no fold was counted: {failure}"));
    let folds = sample(&text, "ringwatch_change_log_folds_total").unwrap_or_default();
    let failures = sample(&text, "ringwatch_change_log_fold_failures_total");
    assert_eq!(failures, Some(0.0), "{text}");
    assert_eq!(sample(&text, "ringwatch_change_log_fold_duration_seconds_count"), Some(folds), "{text}");
    let open = sample(&text, "ringwatch_change_log_bytes").unwrap_or(f64::NAN);
    assert!((0.0..FOLD_AT).contains(&open), "the open file holds {open} bytes, past the fold size: {text}");
    let check = check_metrics(sandbox.path(), &text);
    assert!(check.status.success(), "promtool rejects the metrics: {check}");
    sandbox.step(format!("{folds} fold(s) counted, the open file at {open} bytes"));
}

#[test]
fn a_taken_metrics_address_stops_the_console_saying_which_flag_to_change() {
    let sandbox = Sandbox::new("metrics-taken");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let exited = match Console::try_start_with(&sandbox.dir("console"), &["--metrics-listen", &addr]) {
        Ok(console) => panic!("the console started on a taken metrics address\n{}", console.log_tail()),
        Err(exited) => exited,
    };
    assert!(!exited.status.success(), "{}", exited.log);
    assert!(
        exited.log.contains(&format!("failed to serve metrics on \"{addr}\""))
            && exited.log.contains("--metrics-listen"),
        "{}",
        exited.log
    );
}

/// A tmux server of this test's own, killed on drop.
struct Tmux {
    socket: String,
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

#[test]
fn the_demo_serves_metrics_of_its_nodes() {
    if !Command::new("tmux").arg("-V").output().is_ok_and(|output| output.status.success()) {
        eprintln!("skipped: tmux is not installed (the demo's terminal UI needs a terminal)");
        return;
    }
    let sandbox = Sandbox::new("metrics-demo");
    let data_dir = sandbox.dir("demo");
    let tmux = Tmux { socket: format!("rw-e2e-metrics-{}", std::process::id()) };
    let command = format!(
        "{} demo --nodes 3 --data-dir {} --metrics-listen 127.0.0.1:0; sleep 60",
        bins::ringwatch().display(),
        data_dir.display()
    );
    let status = Command::new("tmux")
        .args(["-L", &tmux.socket, "new-session", "-d", "-s", "demo", "-x", "160", "-y", "48", &command])
        .status()
        .unwrap();
    assert!(status.success(), "tmux new-session failed");
    let metrics = prometheus::metrics_addr(&data_dir);
    sandbox.step(format!("demo metrics on {metrics}"));
    poll::until(PROMETHEUS, Duration::from_millis(200), || {
        let text = scrape(metrics);
        match sample(&text, "ringwatch_nodes{state=\"alive\"}") {
            Some(3.0) => Step::Done(()),
            alive => Step::Pending(format!("{alive:?} alive")),
        }
    })
    .unwrap_or_else(|failure| panic!("the demo's metrics never showed three alive nodes: {failure}"));
}
