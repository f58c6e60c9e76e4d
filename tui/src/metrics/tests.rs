#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ringwatch_shared::placement::Headroom;
use ringwatch_shared::status::{
    ClusterStatus, ConsoleRole, ConsoleStatus, InstanceStatus, NodeState, NodeStatus, TaskStatus,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::http::{METRICS_ADDRESS_FILE, MetricsListener};
use super::*;
use crate::control::backlog::{SocketQueue, Verdict};
use crate::control::owner::{ControlSnapshot, Counters};
use crate::control::tally::{FailoverReason, MoveKind, Tally};

fn node(name: &str, state: NodeState) -> NodeStatus {
    NodeStatus {
        name: name.into(),
        state,
        cordoned: name == "b",
        phi: 1.25,
        last_seen_ms: 1_500,
        cpu_percent: 42.0,
        mem_used_bytes: 1 << 30,
        mem_total_bytes: 4 << 30,
        load: [0.5, 0.25, 0.125],
        net_rx_bytes_per_sec: 1_000,
        net_tx_bytes_per_sec: 2_000,
        weight: 100,
        heartbeats_lost: 3,
        address: "127.0.0.1:1".into(),
        reason: "a sentence with \"quotes\" that never becomes a label".into(),
        instances: vec!["web/0".into()],
        cert_sha256: None,
        cert_expires_unix: None,
        data_objects: 0,
        data_bytes: 0,
        data_free_bytes: None,
        rtt_ms: (name == "a").then_some(0.5),
    }
}

fn instance(id: &str, state: &str) -> InstanceStatus {
    InstanceStatus { id: id.into(), node: Some("a".into()), state: state.into(), restarts: 2 }
}

fn snapshot() -> ControlSnapshot {
    ControlSnapshot {
        status: ClusterStatus {
            nodes: vec![node("a", NodeState::Alive), node("b", NodeState::Degraded), node("c", NodeState::Failed)],
            tasks: vec![TaskStatus {
                name: "web".into(),
                replicas: 3,
                instances: vec![
                    instance("web/0", "running"),
                    instance("web/1", "running"),
                    instance("web/2", "pending"),
                ],
            }],
            headroom: Headroom { failures_survived: Some(0), capacity_ok: false },
            failover_paused: Some("3 of 3 nodes failed".into()),
            console: ConsoleStatus { role: ConsoleRole::Leader, term: 7, ..ConsoleStatus::default() },
            data: ringwatch_shared::status::DataStatus::default(),
        },
        at_unix_ms: 1_700_000_000_000,
        ..ControlSnapshot::default()
    }
}

/// Metrics over `snapshot`, with some of everything counted.
fn metrics(snapshot: ControlSnapshot) -> (Metrics, watch::Sender<Arc<ControlSnapshot>>) {
    let (sender, receiver) = watch::channel(Arc::new(snapshot));
    let counters = Arc::new(Counters::default());
    counters.refused.store(5, Ordering::Relaxed);
    counters.handshakes_in_progress.store(7, Ordering::Relaxed);
    counters.tallies.heartbeats_lost.inc_by(9);
    counters.tallies.transition(NodeState::Alive, NodeState::Failed, Some(Duration::from_millis(3_200)));
    let mut tally = Tally::default();
    tally.failover(FailoverReason::NodeFailed);
    tally.moved(MoveKind::Replace);
    tally.restarts = 4;
    counters.tallies.add(&tally);
    counters.tallies.admin_request("drain", &ringwatch_shared::protocol::AdminResponse::Error("no".into()));
    let change_log = &counters.tallies.change_log;
    change_log.folds.inc_by(2);
    change_log.fold_seconds.observe(0.03);
    change_log.open_bytes.set(123_456);
    let socket = &counters.tallies.socket;
    socket.observe(
        SocketQueue { queued_bytes: 3 << 20, drops: 40 },
        Verdict::FellBehind(SocketQueue { queued_bytes: 3 << 20, drops: 40 }),
    );
    socket.observe(SocketQueue { queued_bytes: 4_096, drops: 42 }, Verdict::Judge);
    let lease = &counters.tallies.lease;
    lease.renewal_seconds.observe(0.003);
    lease.renewal_seconds.observe(0.6);
    lease.step_downs.inc();
    (Metrics::from_parts(receiver, counters), sender)
}

/// The samples of `text` (no comments), as `name{labels} value` lines.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).collect()
}

fn has(text: &str, sample: &str) -> bool {
    samples(text).contains(&sample)
}

#[test]
fn the_snapshot_becomes_node_task_and_console_gauges() {
    let (metrics, _sender) = metrics(snapshot());
    let text = metrics.encode(Format::Text).unwrap();
    for sample in [
        "ringwatch_nodes{state=\"alive\"} 1",
        "ringwatch_nodes{state=\"failed\"} 1",
        "ringwatch_nodes{state=\"suspect\"} 0",
        "ringwatch_node_up{node=\"a\"} 1",
        "ringwatch_node_up{node=\"b\"} 1",
        "ringwatch_node_up{node=\"c\"} 0",
        "ringwatch_node_state{node=\"c\",state=\"failed\"} 1",
        "ringwatch_node_state{node=\"c\",state=\"alive\"} 0",
        "ringwatch_node_cordoned{node=\"b\"} 1",
        "ringwatch_node_phi{node=\"a\"} 1.25",
        "ringwatch_node_last_heartbeat_age_seconds{node=\"a\"} 1.5",
        "ringwatch_node_cpu_ratio{node=\"a\"} 0.42",
        "ringwatch_node_memory_used_bytes{node=\"a\"} 1073741824",
        "ringwatch_node_memory_total_bytes{node=\"a\"} 4294967296",
        "ringwatch_node_load1{node=\"a\"} 0.5",
        "ringwatch_node_load15{node=\"a\"} 0.125",
        "ringwatch_node_network_receive_bytes_per_second{node=\"a\"} 1000",
        "ringwatch_node_network_transmit_bytes_per_second{node=\"a\"} 2000",
        "ringwatch_node_heartbeats_lost{node=\"a\"} 3",
        "ringwatch_node_rtt_seconds{node=\"a\"} 0.0005",
        "ringwatch_node_instances{node=\"a\"} 1",
        "ringwatch_task_replicas{task=\"web\"} 3",
        "ringwatch_instances{task=\"web\",state=\"running\"} 2",
        "ringwatch_instances{task=\"web\",state=\"pending\"} 1",
        "ringwatch_instances{task=\"web\",state=\"failed\"} 0",
        "ringwatch_headroom_failures_survived 0",
        "ringwatch_headroom_capacity_ok 0",
        "ringwatch_failover_paused 1",
        "ringwatch_console_leader 1",
        "ringwatch_console_term 7",
        "ringwatch_store_failing 0",
        "ringwatch_snapshot_timestamp_seconds 1700000000.0",
    ] {
        assert!(has(&text, sample), "missing {sample} in\n{text}");
    }
    assert_eq!(samples(&text).iter().filter(|line| line.starts_with("ringwatch_node_up{")).count(), 3);
    assert!(!text.contains("quotes"), "free text never becomes a label:\n{text}");
}

#[test]
fn counted_events_are_counters_with_bounded_labels() {
    let (metrics, _sender) = metrics(snapshot());
    let text = metrics.encode(Format::Text).unwrap();
    for sample in [
        "ringwatch_connections_refused_total 5",
        "ringwatch_connections_shed_total 0",
        "ringwatch_handshakes_in_progress 7",
        "ringwatch_malformed_datagrams_total 0",
        "ringwatch_heartbeats_lost_total 9",
        "ringwatch_node_transitions_total{from=\"alive\",to=\"failed\"} 1",
        "ringwatch_detection_latency_seconds_count 1",
        "ringwatch_detection_latency_seconds_bucket{le=\"3\"} 0",
        "ringwatch_detection_latency_seconds_bucket{le=\"4\"} 1",
        "ringwatch_failovers_total{reason=\"node_failed\"} 1",
        "ringwatch_failovers_total{reason=\"node_left\"} 0",
        "ringwatch_failovers_total{reason=\"instance_failed\"} 0",
        "ringwatch_placement_moves_total{kind=\"replace\"} 1",
        "ringwatch_placement_moves_total{kind=\"migrate\"} 0",
        "ringwatch_instance_restarts_total 4",
        "ringwatch_admin_requests_total{request=\"drain\",outcome=\"error\"} 1",
        "ringwatch_events_total 0",
        "ringwatch_change_log_folds_total 2",
        "ringwatch_change_log_fold_failures_total 0",
        "ringwatch_change_log_fold_duration_seconds_count 1",
        "ringwatch_change_log_fold_duration_seconds_bucket{le=\"0.025\"} 0",
        "ringwatch_change_log_fold_duration_seconds_bucket{le=\"0.05\"} 1",
        "ringwatch_change_log_bytes 123456",
        "ringwatch_socket_receive_queue_bytes 4096",
        "ringwatch_socket_receive_drops_total 42",
        "ringwatch_console_fell_behind_total 1",
        "ringwatch_etcd_lease_renewal_duration_seconds_count 2",
        "ringwatch_etcd_lease_renewal_duration_seconds_bucket{le=\"0.0025\"} 0",
        "ringwatch_etcd_lease_renewal_duration_seconds_bucket{le=\"0.005\"} 1",
        "ringwatch_etcd_lease_renewal_duration_seconds_bucket{le=\"0.5\"} 1",
        "ringwatch_etcd_lease_renewal_duration_seconds_bucket{le=\"0.75\"} 2",
        "ringwatch_console_step_downs_total 1",
    ] {
        assert!(has(&text, sample), "missing {sample} in\n{text}");
    }
    assert!(text.contains("# TYPE ringwatch_heartbeats_lost_total counter"), "{text}");
    assert!(text.contains("# TYPE ringwatch_detection_latency_seconds histogram"), "{text}");
    assert!(samples(&text).iter().any(|line| line.starts_with("ringwatch_build_info{version=")), "{text}");
}

#[test]
fn openmetrics_ends_with_eof_and_names_counters_without_total() {
    let (metrics, _sender) = metrics(snapshot());
    let text = metrics.encode(Format::OpenMetrics).unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE ringwatch_heartbeats_lost counter\n"), "{text}");
    assert!(has(&text, "ringwatch_heartbeats_lost_total 9"), "{text}");
    assert!(has(&text, "ringwatch_node_up{node=\"c\"} 0"), "{text}");
}

#[test]
fn before_the_first_snapshot_there_are_no_nodes_and_no_headroom() {
    let (metrics, _sender) = metrics(ControlSnapshot::default());
    let text = metrics.encode(Format::Text).unwrap();
    assert!(!text.contains("ringwatch_node_up{"), "{text}");
    assert!(has(&text, "ringwatch_nodes{state=\"alive\"} 0"), "{text}");
    assert!(!samples(&text).iter().any(|line| line.starts_with("ringwatch_headroom_failures_survived")), "{text}");
}

#[test]
fn a_scrape_reads_the_latest_snapshot() {
    let (metrics, sender) = metrics(ControlSnapshot::default());
    assert!(!metrics.encode(Format::Text).unwrap().contains("ringwatch_node_up{"));
    sender.send_replace(Arc::new(snapshot()));
    assert!(has(&metrics.encode(Format::Text).unwrap(), "ringwatch_node_up{node=\"a\"} 1"));
}

#[test]
fn a_nan_value_is_left_out_not_encoded() {
    let mut snapshot = snapshot();
    snapshot.status.nodes[0].phi = f64::NAN;
    let (metrics, _sender) = metrics(snapshot);
    let text = metrics.encode(Format::OpenMetrics).unwrap();
    assert!(!text.contains("ringwatch_node_phi{node=\"a\"}"), "{text}");
    assert!(has(&text, "ringwatch_node_phi{node=\"b\"} 1.25"), "{text}");
}

#[test]
fn the_accept_header_chooses_the_format() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
    assert_eq!(Format::from_accept(None), Format::Text);
}

/// One HTTP/1.0 request on `addr`: the whole answer.
fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_metrics_404_and_405_and_removes_its_address_file() {
    let dir = tempfile::tempdir().unwrap();
    let (metrics, _sender) = metrics(snapshot());
    let listener = MetricsListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr();
    let shutdown = CancellationToken::new();
    let server = listener.serve(metrics, dir.path(), shutdown.clone()).unwrap();
    assert_eq!(server.local_addr(), addr);
    let written = std::fs::read_to_string(dir.path().join(METRICS_ADDRESS_FILE)).unwrap();
    assert_eq!(written.trim(), addr.to_string());

    let answers = tokio::task::spawn_blocking(move || {
        [
            http(addr, "GET /metrics HTTP/1.0\r\n\r\n"),
            http(addr, "GET /metrics HTTP/1.0\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n"),
            http(addr, "GET /other HTTP/1.0\r\n\r\n"),
            http(addr, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
        ]
    })
    .await
    .unwrap();
    assert!(answers[0].starts_with("HTTP/1.0 200 OK\r\n"), "{}", answers[0]);
    assert!(answers[0].contains("content-type: text/plain; version=0.0.4"), "{}", answers[0]);
    assert!(answers[0].contains("\nringwatch_node_up{node=\"a\"} 1\n"), "{}", answers[0]);
    assert!(answers[1].contains("content-type: application/openmetrics-text"), "{}", answers[1]);
    assert!(answers[1].ends_with("# EOF\n"), "{}", answers[1]);
    assert!(answers[2].starts_with("HTTP/1.0 404 Not Found\r\n"), "{}", answers[2]);
    assert!(answers[3].starts_with("HTTP/1.0 405 Method Not Allowed\r\n"), "{}", answers[3]);

    shutdown.cancel();
    server.stopped().await;
    assert!(!dir.path().join(METRICS_ADDRESS_FILE).exists(), "the address file goes with the server");
}

#[tokio::test]
async fn a_taken_address_is_a_clear_error() {
    let taken = MetricsListener::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let err = MetricsListener::bind(taken.local_addr()).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("\"{}\"", taken.local_addr())) && text.contains("--metrics-listen"), "{text}");
}

/// The `ringwatch_…` names `text` mentions.
fn mentioned_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ringwatch_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_dashboard_and_the_alerts_use_only_names_the_console_exposes() {
    let (metrics, _sender) = metrics(snapshot());
    let text = metrics.encode(Format::Text).unwrap();
    let exposed: Vec<(&str, &str)> =
        text.lines().filter_map(|line| line.strip_prefix("# TYPE ")).filter_map(|line| line.split_once(' ')).collect();
    let known = |name: &str| {
        exposed.iter().any(|(exposed, kind)| {
            *exposed == name
                || (*kind == "histogram"
                    && ["_bucket", "_sum", "_count"].iter().any(|suffix| name.strip_suffix(suffix) == Some(*exposed)))
        })
    };
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("dist");
    for file in ["grafana/ringwatch.json", "prometheus/alerts.yml"] {
        let content = std::fs::read_to_string(dist.join(file)).unwrap();
        let names = mentioned_names(&content);
        assert!(names.len() > 5, "{file} mentions {names:?}");
        for name in names {
            assert!(known(&name), "{file} uses \"{name}\", which the console does not expose");
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dist.join("grafana/ringwatch.json")).unwrap()).unwrap();
    assert!(dashboard["panels"].as_array().is_some_and(|panels| panels.len() > 10), "an importable dashboard");
}
