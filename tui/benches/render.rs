//! One overview frame and one tasks frame of a large fleet running
//! workloads, drawn into a 200×60 `TestBackend` (DESIGN §8: a frame with
//! 1,000 nodes in ≤ 10 ms), a frame with a drain's plan open, and the cost
//! of taking in one snapshot of that fleet.
//!
//! `cargo bench -p ringwatch --bench render -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ringwatch::handle::Snapshot;
use ringwatch::ui::keys::handle_key;
use ringwatch::ui::state::App;
use ringwatch::ui::views;
use ringwatch_shared::metrics::{DiskUsage, MetricsSample};
use ringwatch_shared::placement::Headroom;
use ringwatch_shared::plan::{Move, MoveKind, OperatorAction, Plan};
use ringwatch_shared::status::{
    ClusterEvent, ClusterStatus, EventKind, InstanceStatus, NodeState, NodeStatus, TaskStatus,
};

const GIB: u64 = 1024 * 1024 * 1024;

/// Replicas of each benchmark task.
const REPLICAS: usize = 3;

/// A fleet of `count` nodes with a few in trouble, full samples, a
/// thousand events, and `count / 4` tasks of three instances spread over
/// it (three quarters of an instance per node). Deterministic.
fn fleet(count: usize) -> Snapshot {
    let mut nodes: Vec<NodeStatus> = (0..count)
        .map(|index| {
            let state = match index % 50 {
                0 => NodeState::Failed,
                1 => NodeState::Suspect,
                2 => NodeState::Left,
                3 => NodeState::Degraded,
                _ => NodeState::Alive,
            };
            let spread = (index * 37 % 100) as u64;
            NodeStatus {
                name: format!("node-{index:05}"),
                state,
                cordoned: index % 97 == 0,
                phi: (index % 10) as f64 * 0.9,
                last_seen_ms: 100 + spread * 7,
                cpu_percent: spread as f64,
                mem_used_bytes: (spread + 1) * GIB / 8,
                mem_total_bytes: 16 * GIB,
                load: [spread as f64 / 25.0, 1.0, 0.5],
                net_rx_bytes_per_sec: spread * 100_000,
                net_tx_bytes_per_sec: spread * 30_000,
                weight: 1 + (index % 4) as u32,
                heartbeats_lost: 0,
                address: format!("10.{}.{}.{}:41000", index / 65_536, index / 256 % 256, index % 256),
                reason: "heartbeats arrive".to_string(),
                instances: Vec::new(),
                cert_sha256: None,
                cert_expires_unix: None,
                data_objects: 0,
                data_bytes: 0,
                data_free_bytes: None,
                rtt_ms: None,
            }
        })
        .collect();
    let tasks: Vec<TaskStatus> = (0..count / 4)
        .map(|task| {
            let name = format!("task-{task:04}");
            let instances = (0..REPLICAS)
                .map(|index| {
                    let id = format!("{name}/{index}");
                    // Distinct nodes per task: strides of a third of the fleet.
                    let node = (task * 7 + index * (count / REPLICAS)) % count;
                    nodes[node].instances.push(id.clone());
                    let state = match (task + index) % 40 {
                        0 => "pending",
                        1 => "restarting",
                        2 => "failed",
                        _ => "running",
                    };
                    InstanceStatus {
                        id,
                        node: Some(nodes[node].name.clone()),
                        state: state.to_string(),
                        restarts: u32::try_from((task + index) % 5).unwrap_or(0),
                    }
                })
                .collect();
            TaskStatus { name, replicas: REPLICAS as u32, instances }
        })
        .collect();
    let samples: BTreeMap<String, MetricsSample> = nodes
        .iter()
        .map(|node| {
            let sample = MetricsSample {
                uptime_secs: 86_400,
                cpu_permille: 300,
                core_permille: vec![300; 8],
                load_centi: [100, 80, 50],
                mem_used_bytes: node.mem_used_bytes,
                mem_total_bytes: node.mem_total_bytes,
                disks: vec![DiskUsage { mount: "/".into(), used_bytes: 100 * GIB, total_bytes: 500 * GIB }],
                ..MetricsSample::default()
            };
            (node.name.clone(), sample)
        })
        .collect();
    let events = (1..=1_000_u64)
        .map(|seq| ClusterEvent {
            seq,
            at_unix_ms: 1_700_000_000_000 + seq * 250,
            node: Some(format!("node-{:05}", seq as usize % count.max(1))),
            change: Some((NodeState::Alive, NodeState::Suspect)),
            reason: "phi 5.1 ≥ 5".to_string(),
            kind: EventKind::NodeState,
            task: None,
        })
        .collect();
    Snapshot {
        status: ClusterStatus {
            nodes,
            tasks,
            headroom: Headroom { failures_survived: Some(1), capacity_ok: true },
            failover_paused: Some(format!("{} of {count} nodes failed within 10s: failover PAUSED", count / 40)),
            ..ClusterStatus::default()
        },
        samples,
        events,
        dropped_events: 0,
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 7443))),
        demo: true,
        link_problem: None,
        read_only: false,
        at_unix_ms: 0,
    }
}

/// An app over `count` nodes, selection in the middle so tables scroll and
/// the ring highlights arcs and instances, on view `view` (`'1'`–`'4'`).
fn app(count: usize, view: char) -> App {
    let mut app = App::new("ringwatch");
    app.apply_snapshot(fleet(count), 0);
    handle_key(&mut app, KeyEvent::from(KeyCode::Char(view)));
    for _ in 0..count / 2 {
        handle_key(&mut app, KeyEvent::from(KeyCode::Down));
    }
    app
}

/// A drain's plan: one move per instance of a busy node, and a note.
fn drain_plan() -> Plan {
    Plan {
        action: "drain node \"node-00500\"".to_string(),
        moves: (0..40)
            .map(|index| Move {
                instance: format!("task-{index:04}/0"),
                kind: MoveKind::Migrate,
                from: Some("node-00500".to_string()),
                to: Some(format!("node-{:05}", index * 11)),
            })
            .collect(),
        headroom_before: Headroom { failures_survived: Some(1), capacity_ok: true },
        headroom_after: Headroom { failures_survived: Some(1), capacity_ok: false },
        notes: vec!["task-0041/0 has nowhere to go: no eligible node without an instance of its task".to_string()],
        data: None,
    }
}

fn frame(bench: &mut criterion::Bencher<'_>, app: &App) {
    let Ok(mut terminal) = Terminal::new(TestBackend::new(200, 60));
    bench.iter(|| {
        let mut hits = None;
        let Ok(_) = terminal.draw(|frame| hits = Some(views::draw(frame, app)));
        black_box(hits)
    });
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("overview_frame_200x60");
    for count in [1_000, 5_000] {
        let app = app(count, '1');
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |bench, _| frame(bench, &app));
    }
    group.finish();

    let mut group = c.benchmark_group("tasks_frame_200x60");
    for count in [1_000, 5_000] {
        let app = app(count, '4');
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |bench, _| frame(bench, &app));
    }
    group.finish();

    let mut group = c.benchmark_group("plan_dialog_frame_200x60");
    for count in [1_000, 5_000] {
        let mut app = app(count, '1');
        app.show_plan(OperatorAction::Drain { node: "node-00500".to_string() }, Ok(drain_plan()));
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |bench, _| frame(bench, &app));
    }
    group.finish();

    let mut group = c.benchmark_group("apply_snapshot");
    for count in [1_000, 5_000] {
        let mut app = App::new("ringwatch");
        let snapshot = fleet(count);
        app.apply_snapshot(snapshot.clone(), 0);
        let mut now = 0;
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |bench, _| {
            bench.iter_batched(
                || snapshot.clone(),
                |snapshot| {
                    now += 250;
                    app.apply_snapshot(snapshot, now);
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_rebuild");
    group.sample_size(10);
    for count in [1_000, 5_000] {
        let nodes: Vec<(String, u32)> =
            fleet(count).status.nodes.into_iter().map(|node| (node.name, node.weight)).collect();
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |bench, _| {
            bench.iter_batched(|| nodes.clone(), ringwatch::ui::ring::RingCache::build, BatchSize::LargeInput);
        });
    }
    group.finish();
}

criterion_group!(benches, render, ring);
criterion_main!(benches);
