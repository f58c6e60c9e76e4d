//! Choosing a node for an instance (DESIGN §5), and the headroom figure.
//!
//! Pure: the caller passes the candidates (already filtered to nodes that
//! may receive work: up, not degraded, not cordoned), the ring, a counter
//! for round-robin and a random source.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

use crate::ring::Ring;
use crate::task::Placement;

/// A node that may receive an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its name.
    pub name: String,
    /// Ring weight (capacity, relative).
    pub weight: u32,
    /// Instances it hosts now.
    pub load: u32,
    /// Free CPU capacity, 0.0–1.0.
    pub free: f64,
}

/// What one placement decision needs.
pub struct PlacementInput<'a> {
    /// The instance, `task/index` (the ring key).
    pub instance: &'a str,
    /// The strategy.
    pub strategy: Placement,
    /// The ring over every candidate (and possibly other nodes).
    pub ring: &'a Ring,
    /// Nodes that may receive work.
    pub candidates: &'a [Candidate],
    /// Whether a node must be avoided: hosts of the instance's siblings,
    /// nodes it just failed on. A predicate, so a caller keeps its sets in
    /// whatever form it has them.
    pub exclude: &'a dyn Fn(&str) -> bool,
    /// Bounded-load ε: no node takes more than ⌈(1+ε) × its weighted share
    /// of all instances⌉. `None` disables the bound.
    pub load_bound: Option<f64>,
    /// Instances placed in total, this one included.
    pub total_instances: u32,
}

/// Picks a node for one instance, or `None` when no candidate fits.
pub fn choose(input: &PlacementInput<'_>, round_robin: &mut u64, rng: &mut impl Rng) -> Option<String> {
    let total_weight: u64 = input.candidates.iter().map(|c| u64::from(c.weight.max(1))).sum();
    let fits = |candidate: &Candidate| !(input.exclude)(&candidate.name) && under_bound(candidate, input, total_weight);
    let mut eligible: Vec<&Candidate> = input.candidates.iter().filter(|c| fits(c)).collect();
    if eligible.is_empty() {
        // The bound is a preference, never a reason to leave work unplaced.
        eligible = input.candidates.iter().filter(|c| !(input.exclude)(&c.name)).collect();
    }
    if eligible.is_empty() {
        return None;
    }
    let chosen = match input.strategy {
        Placement::Ring => {
            let allowed: BTreeSet<&str> = eligible.iter().map(|c| c.name.as_str()).collect();
            input
                .ring
                .replicas(input.instance, 1, |name| allowed.contains(name))
                .first()
                .map(|name| (*name).to_string())
        }
        Placement::RoundRobin => {
            eligible.sort_by(|a, b| a.name.cmp(&b.name));
            let index = usize::try_from(*round_robin % eligible.len() as u64).unwrap_or(0);
            *round_robin = round_robin.wrapping_add(1);
            Some(eligible[index].name.clone())
        }
        Placement::Random => Some(eligible[rng.random_range(0..eligible.len())].name.clone()),
        Placement::Weighted => {
            let weights: Vec<f64> =
                eligible.iter().map(|c| f64::from(c.weight.max(1)) * c.free.clamp(0.05, 1.0)).collect();
            let total: f64 = weights.iter().sum();
            let mut pick = rng.random_range(0.0..total);
            let mut chosen = eligible[eligible.len() - 1];
            for (candidate, weight) in eligible.iter().zip(&weights) {
                if pick < *weight {
                    chosen = candidate;
                    break;
                }
                pick -= weight;
            }
            Some(chosen.name.clone())
        }
        Placement::LeastLoaded => eligible
            .iter()
            .min_by(|a, b| {
                let load_a = f64::from(a.load) / f64::from(a.weight.max(1));
                let load_b = f64::from(b.load) / f64::from(b.weight.max(1));
                load_a.total_cmp(&load_b).then_with(|| a.name.cmp(&b.name))
            })
            .map(|c| c.name.clone()),
    };
    // A ring that lacks a candidate (not rebuilt yet) falls back to least loaded.
    chosen.or_else(|| {
        let fallback = PlacementInput { strategy: Placement::LeastLoaded, ..*input };
        choose(&fallback, round_robin, rng)
    })
}

fn under_bound(candidate: &Candidate, input: &PlacementInput<'_>, total_weight: u64) -> bool {
    let Some(epsilon) = input.load_bound else {
        return true;
    };
    if total_weight == 0 {
        return true;
    }
    let share = f64::from(input.total_instances) * f64::from(candidate.weight.max(1)) / total_weight as f64;
    f64::from(candidate.load) < ((1.0 + epsilon) * share).ceil().max(1.0)
}

/// How many more node failures every task survives with an instance left,
/// and whether the remaining nodes could host all displaced work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Headroom {
    /// min over tasks of (distinct up nodes hosting it − 1); `None` with no
    /// tasks. Negative when some task has no instance up.
    pub failures_survived: Option<i64>,
    /// Whether, after losing any one node, every task could still place all
    /// its replicas on distinct eligible nodes.
    pub capacity_ok: bool,
}

impl Default for Headroom {
    /// No tasks: nothing to survive, nothing short.
    fn default() -> Self {
        Self { failures_survived: None, capacity_ok: true }
    }
}

/// Computes the headroom from each task's hosts and replica count.
///
/// `hosts` maps each task to the up nodes running or starting its
/// instances; `replicas` to its desired count; `eligible_nodes` counts
/// nodes that may receive work.
pub fn headroom(
    hosts: &BTreeMap<String, BTreeSet<String>>,
    replicas: &BTreeMap<String, u32>,
    eligible_nodes: usize,
) -> Headroom {
    let failures_survived = replicas.keys().map(|task| hosts.get(task).map_or(0, BTreeSet::len) as i64 - 1).min();
    let widest = replicas.values().copied().max().unwrap_or(0) as usize;
    Headroom { failures_survived, capacity_ok: eligible_nodes.saturating_sub(1) >= widest }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn candidates(loads: &[(&str, u32, u32)]) -> Vec<Candidate> {
        loads
            .iter()
            .map(|(name, weight, load)| Candidate { name: (*name).into(), weight: *weight, load: *load, free: 0.5 })
            .collect()
    }

    fn pick(strategy: Placement, candidates: &[Candidate], exclude: &[&str], bound: Option<f64>) -> Option<String> {
        let ring = Ring::new(candidates.iter().map(|c| (c.name.clone(), c.weight)));
        let exclude = |name: &str| exclude.contains(&name);
        let total = candidates.iter().map(|c| c.load).sum::<u32>() + 1;
        let input = PlacementInput {
            instance: "web/0",
            strategy,
            ring: &ring,
            candidates,
            exclude: &exclude,
            load_bound: bound,
            total_instances: total,
        };
        choose(&input, &mut 0, &mut StdRng::seed_from_u64(1))
    }

    #[test]
    fn every_strategy_respects_exclusions() {
        let nodes = candidates(&[("a", 1, 0), ("b", 1, 0), ("c", 1, 0)]);
        for strategy in
            [Placement::Ring, Placement::RoundRobin, Placement::Random, Placement::Weighted, Placement::LeastLoaded]
        {
            for _ in 0..20 {
                let chosen = pick(strategy, &nodes, &["a", "b"], None);
                assert_eq!(chosen.as_deref(), Some("c"), "{strategy:?}");
            }
            assert_eq!(pick(strategy, &nodes, &["a", "b", "c"], None), None, "{strategy:?}");
        }
    }

    #[test]
    fn least_loaded_weighs_load_by_capacity() {
        let nodes = candidates(&[("a", 1, 2), ("b", 4, 4), ("c", 1, 3)]);
        assert_eq!(pick(Placement::LeastLoaded, &nodes, &[], None).as_deref(), Some("b"));
    }

    #[test]
    fn ring_placement_is_the_rings_choice_among_candidates() {
        let nodes = candidates(&[("a", 1, 0), ("b", 1, 0), ("c", 1, 0)]);
        let ring = Ring::new(nodes.iter().map(|c| (c.name.clone(), 1)));
        let expected = ring.owner("web/0").map(str::to_string);
        assert_eq!(pick(Placement::Ring, &nodes, &[], None), expected);
    }

    #[test]
    fn round_robin_takes_turns() {
        let nodes = candidates(&[("a", 1, 0), ("b", 1, 0), ("c", 1, 0)]);
        let ring = Ring::default();
        let exclude = |_: &str| false;
        let input = PlacementInput {
            instance: "x/0",
            strategy: Placement::RoundRobin,
            ring: &ring,
            candidates: &nodes,
            exclude: &exclude,
            load_bound: None,
            total_instances: 1,
        };
        let mut counter = 0;
        let mut rng = StdRng::seed_from_u64(2);
        let picks: Vec<String> = (0..4).map(|_| choose(&input, &mut counter, &mut rng).unwrap()).collect();
        assert_eq!(picks, ["a", "b", "c", "a"]);
    }

    #[test]
    fn the_load_bound_skips_a_full_node_but_never_leaves_work_unplaced() {
        // 8 instances over 2 equal nodes, ε = 0.25: a node takes at most 5.
        let nodes = candidates(&[("a", 1, 5), ("b", 1, 2)]);
        for _ in 0..10 {
            assert_eq!(pick(Placement::Random, &nodes, &[], Some(0.25)).as_deref(), Some("b"));
        }
        let only_full = candidates(&[("a", 1, 9)]);
        assert_eq!(pick(Placement::Ring, &only_full, &[], Some(0.25)).as_deref(), Some("a"));
    }

    #[test]
    fn headroom_counts_the_thinnest_task() {
        let hosts: BTreeMap<String, BTreeSet<String>> = [
            ("web".to_string(), ["a", "b", "c"].into_iter().map(String::from).collect()),
            ("db".to_string(), ["a", "b"].into_iter().map(String::from).collect()),
        ]
        .into();
        let replicas: BTreeMap<String, u32> = [("web".to_string(), 3), ("db".to_string(), 2)].into();
        assert_eq!(headroom(&hosts, &replicas, 4), Headroom { failures_survived: Some(1), capacity_ok: true });
        assert_eq!(headroom(&hosts, &replicas, 3), Headroom { failures_survived: Some(1), capacity_ok: false });
        assert_eq!(headroom(&BTreeMap::new(), &BTreeMap::new(), 3).failures_survived, None);
    }
}
