//! One overview frame of a large fleet, drawn into a 200×60 `TestBackend`
//! (DESIGN §8: a frame with 1,000 nodes in ≤ 10 ms), and the cost of taking
//! in one snapshot of that fleet.
//!
//! `cargo bench -p ringwatch --bench render -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ringwatch::handle::Snapshot;
use ringwatch::ui::state::App;
use ringwatch::ui::views;
use ringwatch_shared::metrics::{DiskUsage, MetricsSample};
use ringwatch_shared::status::{ClusterEvent, ClusterStatus, NodeState, NodeStatus};

const GIB: u64 = 1024 * 1024 * 1024;

/// A fleet of `count` nodes with a few in trouble, full samples and a
/// thousand events. Deterministic.
fn fleet(count: usize) -> Snapshot {
    let nodes: Vec<NodeStatus> = (0..count)
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
            }
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
        })
        .collect();
    Snapshot {
        status: ClusterStatus { nodes, tasks: Vec::new(), ..ClusterStatus::default() },
        samples,
        events,
        dropped_events: 0,
        listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 7443))),
        demo: true,
        at_unix_ms: 0,
    }
}

fn render(c: &mut Criterion) {
    let mut group = c.benchmark_group("overview_frame_200x60");
    for count in [1_000, 5_000] {
        let mut app = App::new("ringwatch");
        app.apply_snapshot(fleet(count), 0);
        let Ok(mut terminal) = Terminal::new(TestBackend::new(200, 60));
        // Select a node in the middle so the table scrolls and the ring
        // highlights arcs.
        for _ in 0..count / 2 {
            ringwatch::ui::keys::handle_key(
                &mut app,
                crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Down),
            );
        }
        group.bench_with_input(BenchmarkId::from_parameter(count), &count, |bench, _| {
            bench.iter(|| {
                let mut hits = None;
                let Ok(_) = terminal.draw(|frame| hits = Some(views::draw(frame, &app)));
                black_box(hits)
            });
        });
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
