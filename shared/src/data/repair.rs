//! The repair plan: what to copy where, and what may be dropped, so that
//! every object has its replica count of current copies on the nodes the
//! ring names (README.md, "Data").
//!
//! The rules:
//! - a copy counts only on a live node (alive, suspect, degraded or
//!   cordoned: its bytes are still there and readable) and only at the
//!   object's current version;
//! - new copies go to the first eligible nodes clockwise from the key's hash
//!   (the ring's replica order), then, if those are too few, to the next
//!   eligible ones; they are copied from a live current copy;
//! - a draining node's copies count until the ring's other nodes hold
//!   enough, then they are dropped: its data moves off before it goes;
//! - the objects with the fewest live copies go first (as GFS does): one
//!   copy left is more urgent than two;
//! - an extra or stale copy off the ring's targets is dropped only once the
//!   targets hold the replica count of current copies: the last copy of an
//!   object is never deleted;
//! - a removal is a tombstone at a newer version: it goes to every live
//!   holder of an older version, and is collected once no holder, live or
//!   not, has anything older.

use std::collections::{BTreeMap, BTreeSet};

use crate::data::{ObjectKey, Version};
use crate::ring::Ring;

/// What the console knows of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// Its current version.
    pub version: Version,
    /// The replica count it should have.
    pub replicas: usize,
    /// Removed at `version`.
    pub tombstone: bool,
    /// Its size, for throttling and progress.
    pub size: u64,
}

/// What a node can do for the store now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// Up, and may take new copies.
    Eligible,
    /// Up, its copies readable, but it takes no new ones (cordoned,
    /// degraded, over its quota).
    ReadOnly,
    /// Up, its copies readable, but they move off it (draining): the
    /// ring's replicas are chosen without it, and its copies are dropped
    /// once those hold enough.
    Leaving,
    /// Failed (past the failover delay), left, revoked: its copies do not
    /// count.
    Down,
}

/// One step of a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairStep {
    /// Copy `key` at `version` from `from` to `to`.
    Copy {
        /// The object.
        key: ObjectKey,
        /// The version copied.
        version: Version,
        /// A live holder of it.
        from: String,
        /// The new replica.
        to: String,
        /// Bytes to move.
        size: u64,
    },
    /// Send the tombstone of `key` at `version` to `to`, which holds an
    /// older version.
    Tombstone {
        /// The object.
        key: ObjectKey,
        /// The removal's version.
        version: Version,
        /// The holder of an older version.
        to: String,
    },
    /// Drop `node`'s copy of `key` (an extra or a stale one): enough current
    /// copies exist on the ring's targets.
    Drop {
        /// The object.
        key: ObjectKey,
        /// The holder.
        node: String,
        /// The version it holds: a newer one that arrives meanwhile stays.
        version: Version,
    },
    /// Nobody holds anything older than the tombstone of `key`: forget it
    /// (its holders drop the tombstone, then the console its record).
    Forget {
        /// The object.
        key: ObjectKey,
        /// The tombstone's version.
        version: Version,
        /// The nodes that hold the tombstone, to drop it.
        holders: Vec<String>,
    },
}

/// The plan, and what it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairPlan {
    /// Steps, most urgent first.
    pub steps: Vec<RepairStep>,
    /// Objects with fewer live current copies than their replica count.
    pub under_replicated: usize,
    /// Objects with no live current copy: nothing to repair them from.
    pub unavailable: Vec<ObjectKey>,
    /// Every object the plan found anything to say about: with steps,
    /// under-replicated, unavailable, or a tombstone. The others are
    /// settled: planned again with nothing changed, they give nothing.
    pub unsettled: Vec<ObjectKey>,
}

/// Plans the repair of `objects`, given who holds which version of each
/// (`holders`: key → node → version; a tombstone is held like any version),
/// each node's `roles`, and the `ring` of the nodes.
pub fn plan(
    objects: &BTreeMap<ObjectKey, ObjectRecord>,
    holders: &BTreeMap<ObjectKey, BTreeMap<String, Version>>,
    roles: &BTreeMap<String, NodeRole>,
    ring: &Ring,
) -> RepairPlan {
    let role = |node: &str| roles.get(node).copied().unwrap_or(NodeRole::Down);
    let live = |node: &str| role(node) != NodeRole::Down;
    let empty = BTreeMap::new();
    let mut urgent: Vec<(usize, RepairStep)> = Vec::new();
    let mut later: Vec<RepairStep> = Vec::new();
    let mut result = RepairPlan::default();
    for (key, record) in objects {
        let held = holders.get(key).unwrap_or(&empty);
        let steps_before = urgent.len() + later.len();
        if record.tombstone {
            result.unsettled.push(key.clone());
            let older: Vec<&String> =
                held.iter().filter(|(_, version)| **version < record.version).map(|(n, _)| n).collect();
            for node in older.iter().filter(|node| live(node)) {
                later.push(RepairStep::Tombstone { key: key.clone(), version: record.version, to: (*node).clone() });
            }
            if older.is_empty() {
                later.push(RepairStep::Forget {
                    key: key.clone(),
                    version: record.version,
                    holders: held.keys().cloned().collect(),
                });
            }
            continue;
        }
        let current: BTreeSet<&str> = held
            .iter()
            .filter(|(node, version)| **version == record.version && live(node))
            .map(|(node, _)| node.as_str())
            .collect();
        let wanted = record.replicas.max(1);
        let Some(&source) = current.iter().next() else {
            result.unavailable.push(key.clone());
            result.unsettled.push(key.clone());
            continue;
        };
        let under = current.len() < wanted;
        if under {
            result.under_replicated += 1;
        }
        // The targets: the ring's order over nodes that hold it already
        // (live) or may take it.
        let order = ring.replicas(key.as_str(), roles.len(), |node| {
            (current.contains(node) && role(node) != NodeRole::Leaving) || role(node) == NodeRole::Eligible
        });
        let targets: Vec<&str> = order.iter().copied().take(wanted).collect();
        let missing = targets.iter().filter(|node| !current.contains(*node));
        // Copies sourced from the holder nearest the key on the ring, so
        // the same plan comes out every time.
        let source = order.iter().copied().find(|node| current.contains(node)).unwrap_or(source);
        let mut copies = 0;
        for to in missing {
            copies += 1;
            urgent.push((
                current.len(),
                RepairStep::Copy {
                    key: key.clone(),
                    version: record.version,
                    from: source.to_string(),
                    to: (*to).to_string(),
                    size: record.size,
                },
            ));
        }
        let on_targets = targets.iter().filter(|node| current.contains(*node)).count();
        if copies == 0 && on_targets >= wanted {
            for (node, version) in held.iter().filter(|(node, _)| live(node) && !targets.contains(&node.as_str())) {
                later.push(RepairStep::Drop { key: key.clone(), node: node.clone(), version: *version });
            }
        }
        if under || urgent.len() + later.len() > steps_before {
            result.unsettled.push(key.clone());
        }
    }
    urgent.sort_by_key(|(copies, _)| *copies);
    result.steps = urgent.into_iter().map(|(_, step)| step).chain(later).collect();
    result
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(text: &str) -> ObjectKey {
        ObjectKey::parse(text).unwrap()
    }

    fn v(counter: u64) -> Version {
        Version { term: 1, counter }
    }

    fn ring(nodes: &[&str]) -> Ring {
        Ring::new(nodes.iter().map(|node| (node.to_string(), 1)))
    }

    fn roles(entries: &[(&str, NodeRole)]) -> BTreeMap<String, NodeRole> {
        entries.iter().map(|(node, role)| (node.to_string(), *role)).collect()
    }

    fn record(counter: u64, replicas: usize) -> ObjectRecord {
        ObjectRecord { version: v(counter), replicas, tombstone: false, size: 10 }
    }

    #[test]
    fn a_holder_that_takes_no_new_copies_keeps_its_own_a_leaving_one_does_not() {
        let nodes = ["a", "b", "c", "d", "e"];
        let ring = ring(&nodes);
        let k = key("object");
        let order = ring.replicas("object", 3, |_| true);
        let objects = BTreeMap::from([(k.clone(), record(1, 3))]);
        let holders =
            BTreeMap::from([(k, order.iter().map(|node| (node.to_string(), v(1))).collect::<BTreeMap<_, _>>())]);
        let mut roles: BTreeMap<String, NodeRole> =
            nodes.iter().map(|node| (node.to_string(), NodeRole::Eligible)).collect();
        // Suspect, degraded, cordoned or full: on the ring, its copy stays.
        roles.insert(order[0].to_string(), NodeRole::ReadOnly);
        let kept = plan(&objects, &holders, &roles, &ring);
        assert!(kept.steps.is_empty() && kept.unsettled.is_empty(), "{kept:?}");
        // Drained: copied to the next node of the ring first.
        roles.insert(order[0].to_string(), NodeRole::Leaving);
        let moved = plan(&objects, &holders, &roles, &ring);
        assert!(matches!(&moved.steps[..], [RepairStep::Copy { from, .. }] if from != order[0]), "{moved:?}");
    }

    #[test]
    fn a_failed_holders_copies_are_made_again_from_a_survivor_fewest_copies_first() {
        let nodes = ["a", "b", "c", "d", "e"];
        let ring = ring(&nodes);
        let mut objects = BTreeMap::new();
        let mut holders = BTreeMap::new();
        for (name, replicas) in [("one-left", 3), ("two-left", 3)] {
            let k = key(name);
            let order = ring.replicas(name, 3, |_| true);
            objects.insert(k.clone(), record(1, replicas));
            holders.insert(k, order.iter().map(|node| (node.to_string(), v(1))).collect::<BTreeMap<_, _>>());
        }
        // "one-left" loses two holders, "two-left" one.
        let one = ring.replicas("one-left", 3, |_| true);
        let two = ring.replicas("two-left", 3, |_| true);
        let mut role_list: BTreeMap<String, NodeRole> =
            nodes.iter().map(|node| (node.to_string(), NodeRole::Eligible)).collect();
        role_list.insert(one[0].to_string(), NodeRole::Down);
        role_list.insert(one[1].to_string(), NodeRole::Down);
        if !one[..2].contains(&two[0]) {
            role_list.insert(two[0].to_string(), NodeRole::Down);
        }
        let plan = plan(&objects, &holders, &role_list, &ring);
        let RepairStep::Copy { key: first, from, .. } = &plan.steps[0] else { panic!("{plan:?}") };
        assert_eq!(first.as_str(), "one-left", "the object with one copy left goes first: {plan:?}");
        assert_eq!(from, one[2]);
        assert!(plan.unavailable.is_empty());
        assert_eq!(plan.under_replicated, 2);
    }

    #[test]
    fn an_object_without_a_live_current_copy_is_unavailable_and_nothing_is_dropped() {
        let ring = ring(&["a", "b", "c"]);
        let objects = BTreeMap::from([(key("k"), record(2, 3))]);
        let holders = BTreeMap::from([(key("k"), BTreeMap::from([("a".to_string(), v(2)), ("b".to_string(), v(1))]))]);
        let roles = roles(&[("a", NodeRole::Down), ("b", NodeRole::Eligible), ("c", NodeRole::Eligible)]);
        let plan = plan(&objects, &holders, &roles, &ring);
        assert_eq!(plan.unavailable, vec![key("k")]);
        assert!(plan.steps.is_empty(), "the stale copy on b is all there is: kept: {plan:?}");
    }

    #[test]
    fn a_tombstone_reaches_every_live_older_holder_and_is_forgotten_once_none_is_left() {
        let ring = ring(&["a", "b", "c"]);
        let objects = BTreeMap::from([(key("k"), ObjectRecord { tombstone: true, ..record(3, 3) })]);
        let mut holders = BTreeMap::from([(
            key("k"),
            BTreeMap::from([("a".to_string(), v(3)), ("b".to_string(), v(2)), ("c".to_string(), v(2))]),
        )]);
        let roles = roles(&[("a", NodeRole::Eligible), ("b", NodeRole::Eligible), ("c", NodeRole::Down)]);
        let steps = plan(&objects, &holders, &roles, &ring).steps;
        assert_eq!(steps, vec![RepairStep::Tombstone { key: key("k"), version: v(3), to: "b".into() }]);
        // b applied it; c is down with an older copy: not forgotten, or c's
        // copy would come back when it returns.
        holders.get_mut(&key("k")).unwrap().insert("b".into(), v(3));
        assert!(plan(&objects, &holders, &roles, &ring).steps.is_empty());
        holders.get_mut(&key("k")).unwrap().insert("c".into(), v(3));
        assert_eq!(
            plan(&objects, &holders, &roles, &ring).steps,
            vec![RepairStep::Forget {
                key: key("k"),
                version: v(3),
                holders: vec!["a".into(), "b".into(), "c".into()]
            }]
        );
    }

    #[test]
    fn a_draining_nodes_copies_move_to_the_next_nodes_and_are_dropped_once_they_hold_them() {
        let ring = ring(&["a", "b", "c", "d"]);
        let order = ring.replicas("k", 4, |_| true);
        let (leaving, kept, spare) = (order[0], &order[1..3], order[3]);
        let objects = BTreeMap::from([(key("k"), record(1, 3))]);
        let mut holders = BTreeMap::from([(
            key("k"),
            order[..3].iter().map(|node| (node.to_string(), v(1))).collect::<BTreeMap<_, _>>(),
        )]);
        let mut roles: BTreeMap<String, NodeRole> =
            order.iter().map(|node| (node.to_string(), NodeRole::Eligible)).collect();
        roles.insert(leaving.to_string(), NodeRole::Leaving);
        let first = plan(&objects, &holders, &roles, &ring);
        assert_eq!(
            first.steps,
            vec![RepairStep::Copy { key: key("k"), version: v(1), from: kept[0].into(), to: spare.into(), size: 10 }],
            "the copy comes from a holder that stays"
        );
        assert_eq!(first.under_replicated, 0, "the draining copy still counts");
        holders.get_mut(&key("k")).unwrap().insert(spare.to_string(), v(1));
        let second = plan(&objects, &holders, &roles, &ring);
        assert_eq!(second.steps, vec![RepairStep::Drop { key: key("k"), node: leaving.into(), version: v(1) }]);
    }

    /// The fleet as the model sees it: who holds what.
    fn apply(step: &RepairStep, holders: &mut BTreeMap<ObjectKey, BTreeMap<String, Version>>) {
        match step {
            RepairStep::Copy { key, version, to, .. } | RepairStep::Tombstone { key, version, to } => {
                holders.entry(key.clone()).or_default().insert(to.clone(), *version);
            }
            RepairStep::Drop { key, node, .. } => {
                holders.entry(key.clone()).or_default().remove(node);
            }
            RepairStep::Forget { key, .. } => {
                holders.remove(key);
            }
        }
    }

    fn role_strategy() -> impl Strategy<Value = NodeRole> {
        prop_oneof![
            4 => Just(NodeRole::Eligible),
            1 => Just(NodeRole::ReadOnly),
            1 => Just(NodeRole::Leaving),
            1 => Just(NodeRole::Down)
        ]
    }

    proptest! {
        /// Against the in-memory model: after the plan's steps, every object
        /// that had a live current copy has min(replicas, usable nodes) of
        /// them, no step ever removed the last live current copy, and a
        /// second plan has nothing left to copy.
        #[test]
        fn repairs_converge_and_never_lose_the_last_copy(
            node_roles in proptest::collection::vec(role_strategy(), 3..9),
            objects in proptest::collection::vec((1u64..4, 1usize..5, proptest::collection::vec((0usize..9, 1u64..4), 0..6)), 1..25),
        ) {
            let names: Vec<String> = (0..node_roles.len()).map(|i| format!("n{i}")).collect();
            let roles: BTreeMap<String, NodeRole> = names.iter().cloned().zip(node_roles.iter().copied()).collect();
            let ring = Ring::new(names.iter().map(|name| (name.clone(), 1)));
            let mut records = BTreeMap::new();
            let mut holders: BTreeMap<ObjectKey, BTreeMap<String, Version>> = BTreeMap::new();
            for (i, (counter, replicas, held)) in objects.iter().enumerate() {
                let k = key(&format!("object-{i}"));
                records.insert(k.clone(), record(*counter, *replicas));
                let map = holders.entry(k).or_default();
                for (node, version) in held {
                    map.insert(names[node % names.len()].clone(), v((*version).min(*counter)));
                }
            }
            let live = |node: &str| roles[node] != NodeRole::Down;
            let live_current = |holders: &BTreeMap<ObjectKey, BTreeMap<String, Version>>, k: &ObjectKey| {
                holders.get(k).map_or(0, |held| held.iter().filter(|(n, ver)| live(n) && **ver == records[k].version).count())
            };
            let before: BTreeMap<ObjectKey, usize> = records.keys().map(|k| (k.clone(), live_current(&holders, k))).collect();
            let first = plan(&records, &holders, &roles, &ring);
            for step in &first.steps {
                apply(step, &mut holders);
                if let RepairStep::Drop { key, .. } = step {
                    prop_assert!(live_current(&holders, key) >= 1, "a drop removed the last copy of {}", key);
                }
            }
            let usable = roles.values().filter(|role| **role == NodeRole::Eligible).count();
            for (k, record) in &records {
                let had = before[k];
                let now = live_current(&holders, k);
                if had == 0 {
                    prop_assert!(first.unavailable.contains(k));
                    continue;
                }
                prop_assert!(now >= had.min(record.replicas), "{k}: {had} → {now}");
                prop_assert!(now >= record.replicas.min(had.max(usable)), "{k}: {now} of {}", record.replicas);
            }
            let second = plan(&records, &holders, &roles, &ring);
            prop_assert!(
                !second.steps.iter().any(|step| matches!(step, RepairStep::Copy { .. })),
                "a second plan copies again: {:?}", second.steps
            );
        }

        /// The objects a plan calls settled give nothing when planned
        /// again: a plan of the unsettled ones alone has the same steps,
        /// counts and unavailable objects as a plan of all (what lets the
        /// console plan only those and the changed ones).
        #[test]
        fn a_plan_of_the_unsettled_objects_alone_is_the_plan_of_all(
            node_roles in proptest::collection::vec(role_strategy(), 3..9),
            objects in proptest::collection::vec((1u64..4, 1usize..5, any::<bool>(), proptest::collection::vec((0usize..9, 1u64..4), 0..6)), 1..25),
        ) {
            let names: Vec<String> = (0..node_roles.len()).map(|i| format!("n{i}")).collect();
            let roles: BTreeMap<String, NodeRole> = names.iter().cloned().zip(node_roles.iter().copied()).collect();
            let ring = Ring::new(names.iter().map(|name| (name.clone(), 1)));
            let mut records = BTreeMap::new();
            let mut holders: BTreeMap<ObjectKey, BTreeMap<String, Version>> = BTreeMap::new();
            for (i, (counter, replicas, tombstone, held)) in objects.iter().enumerate() {
                let k = key(&format!("object-{i}"));
                records.insert(k.clone(), ObjectRecord { tombstone: *tombstone, ..record(*counter, *replicas) });
                let map = holders.entry(k).or_default();
                for (node, version) in held {
                    map.insert(names[node % names.len()].clone(), v((*version).min(*counter)));
                }
            }
            let all = plan(&records, &holders, &roles, &ring);
            let unsettled: BTreeMap<ObjectKey, ObjectRecord> = records
                .iter()
                .filter(|(k, _)| all.unsettled.contains(k))
                .map(|(k, record)| (k.clone(), record.clone()))
                .collect();
            let some = plan(&unsettled, &holders, &roles, &ring);
            prop_assert_eq!(&some.steps, &all.steps);
            prop_assert_eq!(some.under_replicated, all.under_replicated);
            prop_assert_eq!(&some.unavailable, &all.unavailable);
            prop_assert_eq!(&some.unsettled, &all.unsettled);
        }
    }
}
