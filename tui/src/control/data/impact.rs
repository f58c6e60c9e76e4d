//! What a node's failure would do to the data store, for the what-if plan
//! (README.md, "Data"): pure, over the catalog's records, like
//! [`summary`](super::catalog::summary).

use ringwatch_shared::data::Consistency;
use ringwatch_shared::names::NodeName;
use ringwatch_shared::plan::DataImpact;

use crate::control::records::StoredObject;

/// The impact of `node` failing now on `objects`: over the objects it holds
/// a current copy of, those left with fewer live current copies than a
/// quorum (but at least one), and those left with none. A copy counts when
/// `live` accepts its node; `node`'s own copy never does. Removed objects
/// and stale copies count for nothing.
pub fn failure_impact<'a>(
    objects: impl Iterator<Item = &'a StoredObject>,
    node: &NodeName,
    live: impl Fn(&NodeName) -> bool,
) -> DataImpact {
    let mut impact = DataImpact::default();
    for object in objects.filter(|object| !object.tombstone) {
        if object.holders.get(node) != Some(&object.version) {
            continue;
        }
        impact.objects += 1;
        impact.bytes += object.size;
        let left = object.current_holders().filter(|holder| *holder != node && live(holder)).count();
        if left == 0 {
            impact.unavailable += 1;
            impact.bytes_unavailable += object.size;
        } else if left < Consistency::Quorum.required(usize::from(object.replicas)) {
            impact.below_quorum += 1;
        }
    }
    impact
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ringwatch_shared::data::{ObjectKey, Version};

    use super::*;

    fn name(text: &str) -> NodeName {
        NodeName::parse(text).unwrap()
    }

    const CURRENT: Version = Version { term: 0, counter: 7 };
    const OLDER: Version = Version { term: 0, counter: 3 };

    /// An object of `size` bytes wanting `replicas` copies, held at the
    /// given versions.
    fn object(key: &str, replicas: u8, size: u64, holders: &[(&str, Version)]) -> StoredObject {
        StoredObject {
            key: ObjectKey::parse(key).unwrap(),
            version: CURRENT,
            size,
            checksum: "c".into(),
            replicas,
            tombstone: false,
            holders: holders.iter().map(|(node, version)| (name(node), *version)).collect(),
        }
    }

    fn impact(objects: &[StoredObject], node: &str, down: &[&str]) -> DataImpact {
        let down: Vec<NodeName> = down.iter().map(|node| name(node)).collect();
        failure_impact(objects.iter(), &name(node), |holder| !down.contains(holder))
    }

    #[test]
    fn a_failure_counts_the_objects_left_below_quorum_or_without_a_live_copy() {
        let objects = [
            // 3 replicas: losing a leaves 2, a quorum.
            object("three", 3, 10, &[("a", CURRENT), ("b", CURRENT), ("c", CURRENT)]),
            // 2 replicas: quorum is 2, losing a leaves 1.
            object("two", 2, 20, &[("a", CURRENT), ("b", CURRENT)]),
            // The only copy.
            object("one", 1, 40, &[("a", CURRENT)]),
            // Not on a.
            object("elsewhere", 1, 80, &[("b", CURRENT)]),
        ];
        assert_eq!(
            impact(&objects, "a", &[]),
            DataImpact { objects: 3, bytes: 70, below_quorum: 1, unavailable: 1, bytes_unavailable: 40 }
        );
        assert_eq!(
            impact(&objects, "c", &[]),
            DataImpact { objects: 1, bytes: 10, ..DataImpact::default() },
            "c's only object keeps a quorum"
        );
        assert_eq!(impact(&objects, "nobody", &[]), DataImpact::default());
    }

    #[test]
    fn the_other_nodes_current_states_count() {
        let objects = [
            object("three", 3, 10, &[("a", CURRENT), ("b", CURRENT), ("c", CURRENT)]),
            object("five", 5, 30, &[("a", CURRENT), ("b", CURRENT), ("c", CURRENT), ("d", CURRENT), ("e", CURRENT)]),
        ];
        // b already down: a's failure leaves "three" with c alone, "five"
        // with c, d, e — still a quorum of 3.
        assert_eq!(
            impact(&objects, "a", &["b"]),
            DataImpact { objects: 2, bytes: 40, below_quorum: 1, unavailable: 0, bytes_unavailable: 0 }
        );
        // b and c down: "three" is left with nothing, "five" with d and e.
        assert_eq!(
            impact(&objects, "a", &["b", "c"]),
            DataImpact { objects: 2, bytes: 40, below_quorum: 1, unavailable: 1, bytes_unavailable: 10 }
        );
        // The failing node's own state does not matter: its copies are
        // what is lost either way.
        assert_eq!(impact(&objects, "a", &["a", "b", "c"]), impact(&objects, "a", &["b", "c"]));
    }

    #[test]
    fn stale_copies_and_removed_objects_count_for_nothing() {
        let mut removed = object("removed", 1, 5, &[("a", CURRENT)]);
        removed.tombstone = true;
        let objects = [
            // a's copy is stale: a holds no current copy of it.
            object("stale-here", 1, 10, &[("a", OLDER), ("b", CURRENT)]),
            // b's copy is stale: a's failure leaves no current copy.
            object("stale-there", 2, 20, &[("a", CURRENT), ("b", OLDER)]),
            removed,
        ];
        assert_eq!(
            impact(&objects, "a", &[]),
            DataImpact { objects: 1, bytes: 20, below_quorum: 0, unavailable: 1, bytes_unavailable: 20 }
        );
    }

    #[test]
    fn the_catalog_counts_copies_where_status_does() {
        use ringwatch_shared::status::NodeState;

        use crate::control::data::catalog::{Catalog, NodeInfo};
        let objects = [
            object("three", 3, 10, &[("a", CURRENT), ("b", CURRENT), ("c", CURRENT)]),
            object("two", 2, 20, &[("a", CURRENT), ("b", CURRENT)]),
        ];
        let catalog = Catalog::new(
            objects.into_iter().map(|object| (object.key.clone(), object)).collect(),
            BTreeMap::new(),
            0,
            None,
        );
        let fleet = |b: NodeState| -> BTreeMap<NodeName, NodeInfo> {
            [("a", NodeState::Alive), ("b", b), ("c", NodeState::Failed)]
                .into_iter()
                .map(|(node, state)| (name(node), NodeInfo { state, connected: true, eligible: true }))
                .collect()
        };
        // A suspect node's copies still count (as in `status`); a failed
        // or left node's do not.
        assert_eq!(
            catalog.failure_impact(&name("a"), &fleet(NodeState::Suspect)),
            DataImpact { objects: 2, bytes: 30, below_quorum: 2, unavailable: 0, bytes_unavailable: 0 }
        );
        assert_eq!(
            catalog.failure_impact(&name("a"), &fleet(NodeState::Left)),
            DataImpact { objects: 2, bytes: 30, below_quorum: 0, unavailable: 2, bytes_unavailable: 30 }
        );
    }

    #[test]
    fn the_counts_match_a_model_over_many_placements() {
        // Every object placed on every subset of four nodes, with every
        // replica count: the impact equals counting by hand.
        let nodes = ["a", "b", "c", "d"];
        let mut objects = Vec::new();
        for mask in 1u8..16 {
            for replicas in 1..=4 {
                let holders: Vec<(&str, Version)> = (0u8..4)
                    .filter(|bit| mask & (1 << bit) != 0)
                    .map(|bit| (nodes[usize::from(bit)], CURRENT))
                    .collect();
                objects.push(object(&format!("k{mask}-{replicas}"), replicas, 1, &holders));
            }
        }
        for down_mask in 0u8..16 {
            let down: Vec<&str> =
                (0u8..4).filter(|bit| down_mask & (1 << bit) != 0).map(|bit| nodes[usize::from(bit)]).collect();
            for failing in nodes {
                let mut expected = DataImpact::default();
                for object in &objects {
                    let holders: BTreeMap<&str, ()> = object.holders.keys().map(|node| (node.as_str(), ())).collect();
                    if !holders.contains_key(failing) {
                        continue;
                    }
                    expected.objects += 1;
                    expected.bytes += 1;
                    let left = holders.keys().filter(|node| **node != failing && !down.contains(node)).count();
                    let quorum = usize::from(object.replicas) / 2 + 1;
                    if left == 0 {
                        expected.unavailable += 1;
                        expected.bytes_unavailable += 1;
                    } else if left < quorum {
                        expected.below_quorum += 1;
                    }
                }
                assert_eq!(impact(&objects, failing, &down), expected, "{failing} failing, {down:?} down");
            }
        }
    }
}
