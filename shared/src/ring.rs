//! The weighted consistent-hash ring.
//!
//! Each node gets `weight × POINTS_PER_WEIGHT` virtual points at
//! `hash("<name>#<i>")`; a key belongs to the first point clockwise from
//! `hash(key)`, and its replicas to the next distinct nodes clockwise.
//! Removing one of N nodes therefore moves only that node's keys (about
//! 1/N), each to its successor; adding a node moves keys only onto it.
//!
//! The hash is XXH3-64 with seed 0 over the UTF-8 bytes ([`stable_hash`]):
//! a published algorithm, identical on every platform and pinned by test
//! vectors below, so placements never change between versions.

use std::collections::BTreeMap;

/// Virtual points per unit of weight.
pub const POINTS_PER_WEIGHT: u32 = 64;
/// No node gets more points than this, whatever its weight.
pub const MAX_POINTS_PER_NODE: u32 = 64 * 256;

/// The ring's hash: XXH3-64, seed 0.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// A ring over a set of weighted nodes.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// Node names with their weights, sorted by name; points refer to them
    /// by index.
    nodes: Vec<(String, u32)>,
    /// Virtual points `(position, node index)`, sorted by position.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// A ring over `nodes` (`(name, weight)`; a weight of 0 counts as 1).
    pub fn new(nodes: impl IntoIterator<Item = (String, u32)>) -> Self {
        let mut nodes: Vec<(String, u32)> = nodes.into_iter().map(|(name, weight)| (name, weight.max(1))).collect();
        nodes.sort();
        nodes.dedup_by(|a, b| a.0 == b.0);
        let mut points = Vec::new();
        // One label buffer for every point: a ring of ten thousand nodes has
        // hundreds of thousands of points.
        let mut label = String::new();
        for (index, (name, weight)) in nodes.iter().enumerate() {
            let count = weight.saturating_mul(POINTS_PER_WEIGHT).min(MAX_POINTS_PER_NODE);
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            points.reserve(count as usize);
            for point in 0..count {
                label.clear();
                label.push_str(name);
                label.push('#');
                let _ = std::fmt::Write::write_fmt(&mut label, format_args!("{point}"));
                points.push((stable_hash(label.as_bytes()), index));
            }
        }
        points.sort_unstable();
        Self { nodes, points }
    }

    /// Whether the ring has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node names, sorted.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|(name, _)| name.as_str())
    }

    /// The virtual points in ring order: position and node name.
    pub fn points(&self) -> impl Iterator<Item = (u64, &str)> {
        self.points.iter().map(|&(position, index)| (position, self.name(index)))
    }

    /// The node owning `key`.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.replicas(key, 1, |_| true).into_iter().next()
    }

    /// Up to `count` distinct nodes for `key`, clockwise from its hash,
    /// skipping nodes `eligible` refuses.
    pub fn replicas(&self, key: &str, count: usize, eligible: impl Fn(&str) -> bool) -> Vec<&str> {
        let mut chosen: Vec<&str> = Vec::with_capacity(count);
        if self.points.is_empty() || count == 0 {
            return chosen;
        }
        let start = self.points.partition_point(|&(position, _)| position < stable_hash(key.as_bytes()));
        let mut seen = vec![false; self.nodes.len()];
        for offset in 0..self.points.len() {
            let (_, index) = self.points[(start + offset) % self.points.len()];
            let slot = index as usize;
            if seen[slot] {
                continue;
            }
            seen[slot] = true;
            let name = self.name(index);
            if eligible(name) {
                chosen.push(name);
                if chosen.len() == count {
                    break;
                }
            }
        }
        chosen
    }

    /// Each node's share of the ring (arc lengths owned, summing to 1).
    pub fn shares(&self) -> BTreeMap<&str, f64> {
        let mut shares: BTreeMap<&str, f64> = self.nodes().map(|name| (name, 0.0)).collect();
        let Some(&(last, _)) = self.points.last() else {
            return shares;
        };
        let mut previous = last;
        for &(position, index) in &self.points {
            // The arc ending at a point belongs to that point's node.
            let arc = position.wrapping_sub(previous);
            #[allow(clippy::cast_precision_loss)] // a fraction for display and stats
            let fraction = if self.points.len() == 1 { 1.0 } else { arc as f64 / u64::MAX as f64 };
            *shares.entry(self.name(index)).or_default() += fraction;
            previous = position;
        }
        shares
    }

    fn name(&self, index: u32) -> &str {
        self.nodes.get(index as usize).map_or("", |(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ring(names: &[&str]) -> Ring {
        Ring::new(names.iter().map(|name| ((*name).to_string(), 1)))
    }

    #[test]
    fn the_hash_is_pinned_by_test_vectors() {
        // XXH3-64, seed 0. These values must never change: placements
        // depend on them.
        assert_eq!(stable_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(stable_hash(b"a"), 0xe6c6_32b6_1e96_4e1f);
        assert_eq!(stable_hash(b"web/0"), stable_hash("web/0".as_bytes()));
    }

    #[test]
    fn replicas_are_distinct_and_respect_eligibility() {
        let ring = ring(&["a", "b", "c", "d"]);
        let replicas = ring.replicas("web/0", 3, |name| name != "b");
        assert_eq!(replicas.len(), 3);
        assert!(!replicas.contains(&"b"));
        let mut unique = replicas.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 3);
        assert_eq!(ring.replicas("web/0", 9, |_| true).len(), 4, "never more than the nodes");
    }

    #[test]
    fn weights_give_proportional_shares() {
        let ring = Ring::new([("big".to_string(), 4), ("small".to_string(), 1)]);
        let shares = ring.shares();
        let total: f64 = shares.values().sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(shares["big"] > 0.7 && shares["big"] < 0.9, "{shares:?}");
    }

    #[test]
    fn an_empty_ring_places_nothing() {
        let ring = Ring::default();
        assert!(ring.owner("x").is_none());
        assert!(ring.shares().is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn removing_a_node_moves_only_its_keys(node_count in 2usize..12, removed in 0usize..12) {
            let names: Vec<String> = (0..node_count).map(|i| format!("node-{i}")).collect();
            let removed = &names[removed % node_count];
            let before = Ring::new(names.iter().map(|name| (name.clone(), 1)));
            let after = Ring::new(names.iter().filter(|name| *name != removed).map(|name| (name.clone(), 1)));
            for key in 0..500 {
                let key = format!("task-{key}/0");
                let old = before.owner(&key).unwrap();
                let new = after.owner(&key).unwrap();
                if old != removed {
                    prop_assert_eq!(old, new, "key {} moved though its node stayed", key);
                }
            }
        }

        #[test]
        fn adding_a_node_moves_keys_only_onto_it(node_count in 1usize..12) {
            let names: Vec<String> = (0..node_count).map(|i| format!("node-{i}")).collect();
            let before = Ring::new(names.iter().map(|name| (name.clone(), 1)));
            let after = Ring::new(names.iter().cloned().chain(["newcomer".to_string()]).map(|name| (name, 1)));
            for key in 0..500 {
                let key = format!("task-{key}/0");
                let old = before.owner(&key).unwrap();
                let new = after.owner(&key).unwrap();
                prop_assert!(old == new || new == "newcomer", "key {} moved from {} to {}", key, old, new);
            }
        }

        #[test]
        fn replicas_are_always_distinct(node_count in 1usize..10, count in 1usize..6, key in "[a-z]{1,8}") {
            let names: Vec<String> = (0..node_count).map(|i| format!("n{i}")).collect();
            let ring = Ring::new(names.iter().map(|name| (name.clone(), 1 + (name.len() as u32 % 3))));
            let replicas = ring.replicas(&key, count, |_| true);
            prop_assert_eq!(replicas.len(), count.min(node_count));
            let mut unique = replicas.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), replicas.len());
        }
    }
}
