//! The data store's `status` figures over a large catalog: what every
//! watched tick costs the owner. `Catalog::summary` adds up the catalog's
//! classes (objects by the nodes holding their current version, kept up to
//! date as objects change); `summary` counts them from scratch over every
//! object, as a standby does for each snapshot.
//!
//! `cargo bench -p ringwatch --bench catalog -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used)] // a bench's fixed names and keys are valid; it fails by panicking

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ringwatch::control::data::catalog::{Catalog, NodeInfo, summary};
use ringwatch::control::records::StoredObject;
use ringwatch_shared::data::{ObjectKey, Version};
use ringwatch_shared::names::NodeName;
use ringwatch_shared::ring::Ring;
use ringwatch_shared::status::NodeState;

/// Nodes in the fleet.
const NODES: usize = 40;

/// `objects` objects of 4 KiB with 3 replicas each, placed on a ring of
/// [`NODES`] nodes, every holder alive.
fn catalog(objects: usize) -> (Vec<StoredObject>, BTreeMap<NodeName, NodeInfo>) {
    let names: Vec<String> = (0..NODES).map(|n| format!("node-{n}")).collect();
    let ring = Ring::new(names.iter().map(|name| (name.clone(), 1)));
    let nodes = names
        .iter()
        .map(|name| {
            let info = NodeInfo { state: NodeState::Alive, connected: true, eligible: true };
            (NodeName::parse(name).unwrap(), info)
        })
        .collect();
    let stored = (0..objects)
        .map(|n| {
            let key = format!("bench/{n}");
            let version = Version { term: 0, counter: n as u64 + 1 };
            let holders = ring
                .replicas(&key, 3, |_| true)
                .into_iter()
                .map(|node| (NodeName::parse(node).unwrap(), version))
                .collect();
            StoredObject {
                key: ObjectKey::parse(&key).unwrap(),
                version,
                size: 4096,
                checksum: "c".into(),
                replicas: 3,
                tombstone: false,
                holders,
            }
        })
        .collect();
    (stored, nodes)
}

fn status_figures(c: &mut Criterion) {
    let mut group = c.benchmark_group("data status figures");
    for objects in [10_000, 200_000] {
        let (stored, nodes) = catalog(objects);
        let live = |node: &NodeName| nodes.get(node).is_some_and(|info| info.state == NodeState::Alive);
        group.bench_with_input(BenchmarkId::new("every object", objects), &stored, |b, stored| {
            b.iter(|| black_box(summary(stored.iter(), live)));
        });
        let by_key = stored.into_iter().map(|object| (object.key.clone(), object)).collect();
        let catalog = Catalog::new(by_key, BTreeMap::new(), 0, None);
        group.bench_with_input(BenchmarkId::new("kept by class", objects), &catalog, |b, catalog| {
            b.iter(|| black_box(catalog.summary(&nodes)));
        });
    }
    group.finish();
}

criterion_group!(benches, status_figures);
criterion_main!(benches);
