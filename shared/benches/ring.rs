//! Ring lookup speed and balance (criterion): `cargo bench -p ringwatch-shared --bench ring`.
//! Balance and movement figures are printed once before the timings.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use ringwatch_shared::placement::{self, Candidate, PlacementInput};
use ringwatch_shared::ring::Ring;
use ringwatch_shared::task::Placement;

fn names(count: usize) -> Vec<(String, u32)> {
    (0..count).map(|index| (format!("node-{index}"), 1)).collect()
}

/// Peak/mean instances per node when `keys` instances are placed one by one.
fn peak_over_mean(nodes: usize, keys: usize, bound: Option<f64>) -> f64 {
    let members = names(nodes);
    let ring = Ring::new(members.clone());
    let mut loads: BTreeMap<String, u32> = members.iter().map(|(name, _)| (name.clone(), 0)).collect();
    let mut rng = StdRng::seed_from_u64(1);
    let mut counter = 0;
    let exclude = |_: &str| false;
    for key in 0..keys {
        let candidates: Vec<Candidate> = loads
            .iter()
            .map(|(name, load)| Candidate { name: name.clone(), weight: 1, load: *load, free: 1.0 })
            .collect();
        let id = format!("task-{key}/0");
        let input = PlacementInput {
            instance: &id,
            strategy: Placement::Ring,
            ring: &ring,
            candidates: &candidates,
            exclude: &exclude,
            load_bound: bound,
            total_instances: u32::try_from(key + 1).unwrap_or(u32::MAX),
        };
        if let Some(node) = placement::choose(&input, &mut counter, &mut rng) {
            *loads.entry(node).or_default() += 1;
        }
    }
    let peak = f64::from(*loads.values().max().unwrap_or(&0));
    peak / (keys as f64 / nodes as f64)
}

/// Share of keys that move when one of `nodes` nodes leaves (optimum 1/N).
fn moved_on_removal(nodes: usize, keys: usize) -> f64 {
    let members = names(nodes);
    let before = Ring::new(members.clone());
    let after = Ring::new(members.into_iter().skip(1));
    let moved = (0..keys)
        .filter(|key| {
            let key = format!("task-{key}/0");
            before.owner(&key) != after.owner(&key)
        })
        .count();
    moved as f64 / keys as f64
}

fn report() {
    println!("ring balance (peak/mean instances per node, 10 instances per node on average):");
    for nodes in [10, 100, 1000] {
        let keys = nodes * 10;
        println!(
            "  {nodes:>5} nodes: unbounded {:.2}, bounded ε=0.25 {:.2}",
            peak_over_mean(nodes, keys, None),
            peak_over_mean(nodes, keys, Some(0.25))
        );
    }
    println!("keys moved when one node leaves (optimum 1/N):");
    for nodes in [10, 100, 1000] {
        println!("  {nodes:>5} nodes: {:.4} (1/N = {:.4})", moved_on_removal(nodes, 100_000), 1.0 / nodes as f64);
    }
}

fn lookups(c: &mut Criterion) {
    report();
    for nodes in [10, 100, 1000] {
        let ring = Ring::new(names(nodes));
        c.bench_function(&format!("ring owner lookup, {nodes} nodes"), |b| {
            let mut key = 0u64;
            b.iter(|| {
                key += 1;
                black_box(ring.owner(black_box(&format!("task-{key}/0"))))
            });
        });
    }
    c.bench_function("ring build, 1000 nodes", |b| b.iter(|| black_box(Ring::new(names(1000)))));
}

criterion_group!(benches, lookups);
criterion_main!(benches);
