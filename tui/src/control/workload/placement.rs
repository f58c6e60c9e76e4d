//! Choosing nodes for instances, over a snapshot of who may take work and
//! who already holds what. Built once per reconcile step or plan, then
//! updated as each choice is made, so placing many instances costs what
//! they need, not instances × nodes.
//!
//! Pure: it draws randomness from the generator it is given (seeded from
//! the cluster record, so a plan and its execution choose alike) and
//! changes nothing but itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rand::rngs::StdRng;
use ringwatch_shared::names::{InstanceId, NodeName, TaskName};
use ringwatch_shared::placement::{self, Candidate, PlacementInput};
use ringwatch_shared::ring::Ring;
use ringwatch_shared::task::Placement as Strategy;

use super::NodeView;
use crate::control::records::InstanceRecord;

/// Who may take work, and what each node holds.
pub(super) struct Candidates {
    /// The ring over eligible nodes.
    ring: Arc<Ring>,
    /// Nodes that may take work, with their loads.
    nodes: Vec<Candidate>,
    /// Index into `nodes` by name.
    index: HashMap<NodeName, usize>,
    /// The nodes holding a copy of each task (placed or a migration's old
    /// copy): an instance never joins a sibling.
    occupied: BTreeMap<TaskName, BTreeSet<NodeName>>,
    /// Instances placed in total, for the load bound.
    total: u32,
    /// Bounded-load ε.
    load_bound: Option<f64>,
    /// The round-robin strategy's position.
    pub(super) round_robin: u64,
    /// Random choices draw from this.
    pub(super) rng: StdRng,
}

impl Candidates {
    /// Candidates among `nodes` that pass `eligible`, with the loads and
    /// occupancy of `instances`.
    pub(super) fn new<'i>(
        ring: Arc<Ring>,
        nodes: &[NodeView],
        eligible: impl Fn(&NodeView) -> bool,
        instances: impl Iterator<Item = &'i InstanceRecord>,
        load_bound: Option<f64>,
        round_robin: u64,
        rng: StdRng,
    ) -> Self {
        let mut loads: HashMap<&str, u32> = HashMap::new();
        let mut occupied: BTreeMap<TaskName, BTreeSet<NodeName>> = BTreeMap::new();
        let mut total = 0u32;
        for record in instances {
            for copy in record.placement.iter().chain(&record.source) {
                *loads.entry(copy.node.as_str()).or_insert(0) += 1;
                occupied.entry(record.id.task().clone()).or_default().insert(copy.node.clone());
                total = total.saturating_add(1);
            }
        }
        let mut index = HashMap::new();
        let mut candidates = Vec::new();
        for node in nodes.iter().filter(|node| eligible(node)) {
            index.insert(node.name.clone(), candidates.len());
            candidates.push(Candidate {
                name: node.name.to_string(),
                weight: node.weight,
                load: loads.get(node.name.as_str()).copied().unwrap_or(0),
                free: node.cpu_free,
            });
        }
        Self { ring, nodes: candidates, index, occupied, total, load_bound, round_robin, rng }
    }

    /// Whether some eligible node holds no copy of `task`: if not, none of
    /// its pending instances can be placed until something changes.
    pub(super) fn has_room(&self, task: &TaskName) -> bool {
        let occupied = self.occupied.get(task);
        self.nodes.iter().any(|node| occupied.is_none_or(|nodes| !nodes.contains(node.name.as_str())))
    }

    /// A node for `id`: not one holding a sibling, not one it gave up on
    /// (`avoid`), not `leaving`.
    pub(super) fn choose(
        &mut self,
        id: &InstanceId,
        strategy: Strategy,
        avoid: &BTreeSet<NodeName>,
        leaving: Option<&str>,
    ) -> Option<NodeName> {
        let occupied = self.occupied.get(id.task());
        let exclude = |name: &str| {
            occupied.is_some_and(|nodes| nodes.contains(name)) || avoid.contains(name) || leaving == Some(name)
        };
        let key = id.to_string();
        let input = PlacementInput {
            instance: &key,
            strategy,
            ring: &self.ring,
            candidates: &self.nodes,
            exclude: &exclude,
            load_bound: self.load_bound,
            total_instances: self.total.saturating_add(1),
        };
        let chosen = placement::choose(&input, &mut self.round_robin, &mut self.rng)?;
        self.index.get_key_value(chosen.as_str()).map(|(name, _)| name.clone())
    }

    /// Records that a copy of `task` now lives on `node`.
    pub(super) fn take(&mut self, task: &TaskName, node: &NodeName) {
        if let Some(&at) = self.index.get(node) {
            self.nodes[at].load = self.nodes[at].load.saturating_add(1);
        }
        self.occupied.entry(task.clone()).or_default().insert(node.clone());
        self.total = self.total.saturating_add(1);
    }

    /// Records that the copy of `task` on `node` is gone (a plan pretending
    /// a node failed or drained).
    pub(super) fn release(&mut self, task: &TaskName, node: &str) {
        if let Some(&at) = self.index.get(node) {
            self.nodes[at].load = self.nodes[at].load.saturating_sub(1);
        }
        if let Some(nodes) = self.occupied.get_mut(task) {
            nodes.remove(node);
        }
        self.total = self.total.saturating_sub(1);
    }
}
