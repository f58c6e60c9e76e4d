//! The data store's catalog (README.md, "Data"): which objects exist, their
//! current versions, and who holds what — pure state over durable records,
//! owned by the owner like the scheduler. It stamps versions, picks the
//! nodes a new object goes to, and says which holders a read or a removal
//! must reach; the connection handlers move the bytes.

use std::collections::BTreeMap;

use ringwatch_shared::data::repair::ObjectRecord as RepairRecord;
use ringwatch_shared::data::{
    Consistency, DataError, ObjectKey, ObjectMeta, ObjectStat, ReplicaStat, Version, VersionClock,
};
use ringwatch_shared::names::NodeName;
use ringwatch_shared::plan::DataImpact;
use ringwatch_shared::ring::Ring;
use ringwatch_shared::status::{DataStatus, NodeState};

use crate::control::records::{Change, StoredObject};

/// The replica count when a put names none.
pub const DEFAULT_REPLICAS: u8 = 3;
/// The most replicas an object may ask for.
pub const MAX_REPLICAS: u8 = 7;

/// What the catalog needs to know of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its state.
    pub state: NodeState,
    /// Connected now (its copies can be reached).
    pub connected: bool,
    /// May take new copies (alive, not cordoned, draining or degraded).
    pub eligible: bool,
}

/// The catalog.
#[derive(Debug)]
pub struct Catalog {
    objects: BTreeMap<ObjectKey, StoredObject>,
    clock: VersionClock,
    changes: Vec<Change>,
}

/// Where a new version of an object goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutPlan {
    /// Its version.
    pub version: Version,
    /// The nodes to write, in the ring's order.
    pub targets: Vec<NodeName>,
    /// Acknowledgements needed.
    pub required: usize,
    /// The replica count.
    pub replicas: u8,
}

/// Which holders a read or a removal reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The object as recorded.
    pub object: StoredObject,
    /// Connected holders of its current version, in the ring's order.
    pub holders: Vec<NodeName>,
    /// Answers needed.
    pub required: usize,
}

impl Catalog {
    /// The catalog of stored `objects`, stamping versions of `term` after
    /// `clock` (the recorded high-water mark) and every recorded version.
    pub fn new(objects: BTreeMap<ObjectKey, StoredObject>, term: u64, clock: Option<Version>) -> Self {
        let seen = objects.values().map(|object| object.version).chain(clock).max().unwrap_or_default();
        Self { objects, clock: VersionClock::new(term, seen), changes: Vec::new() }
    }

    /// Whether no object was ever stored (or all were forgotten).
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The changed records, for the change log.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// A new version, recorded as handed out (the answer that carries it
    /// waits until that is durable).
    fn stamp(&mut self) -> Version {
        let version = self.clock.stamp();
        self.changes.push(Change::DataClock(version));
        version
    }

    /// Plans a put of `key`: a version and the first eligible nodes
    /// clockwise from the key on `ring`.
    ///
    /// # Errors
    /// [`DataError::Refused`] for a bad replica count;
    /// [`DataError::NotEnough`] when fewer eligible nodes exist than the
    /// consistency needs.
    pub fn plan_put(
        &mut self,
        key: &ObjectKey,
        replicas: Option<u8>,
        consistency: Consistency,
        ring: &Ring,
        nodes: &BTreeMap<NodeName, NodeInfo>,
    ) -> Result<PutPlan, DataError> {
        let replicas = replicas.unwrap_or(DEFAULT_REPLICAS);
        if replicas == 0 || replicas > MAX_REPLICAS {
            return Err(DataError::Refused(format!("--replicas must be 1 to {MAX_REPLICAS}, not {replicas}")));
        }
        let usable = |name: &str| {
            NodeName::parse(name)
                .ok()
                .and_then(|name| nodes.get(&name).copied())
                .is_some_and(|n| n.eligible && n.connected)
        };
        let targets: Vec<NodeName> = ring
            .replicas(key.as_str(), usize::from(replicas), usable)
            .into_iter()
            .filter_map(|name| NodeName::parse(name).ok())
            .collect();
        let required = consistency.required(usize::from(replicas));
        if targets.len() < required {
            return Err(DataError::NotEnough(format!(
                "{} of the {required} nodes a {} put of {replicas} replica(s) needs can take a copy now{}",
                targets.len(),
                consistency.as_str(),
                describe_nodes(nodes)
            )));
        }
        Ok(PutPlan { version: self.stamp(), targets, required, replicas })
    }

    /// Records a put that met its consistency: `acked` hold `version`. A
    /// put overtaken by a newer version changes nothing.
    pub fn record_put(&mut self, object: StoredObject) {
        if self.objects.get(&object.key).is_some_and(|held| held.version > object.version) {
            return;
        }
        self.changes.push(Change::Object(object.clone()));
        self.objects.insert(object.key.clone(), object);
    }

    /// Which holders a read of `key` reaches.
    ///
    /// # Errors
    /// [`DataError::NotFound`] for no object (or a removed one);
    /// [`DataError::NotEnough`] when fewer holders are reachable than the
    /// consistency needs.
    pub fn plan_read(
        &self,
        key: &ObjectKey,
        consistency: Consistency,
        nodes: &BTreeMap<NodeName, NodeInfo>,
    ) -> Result<Reach, DataError> {
        let object = self.live(key)?;
        self.reach(object, consistency, nodes)
    }

    /// Plans a removal of `key`: a new version for its tombstone, and the
    /// holders it must reach.
    ///
    /// # Errors
    /// As [`Catalog::plan_read`].
    pub fn plan_remove(
        &mut self,
        key: &ObjectKey,
        consistency: Consistency,
        nodes: &BTreeMap<NodeName, NodeInfo>,
    ) -> Result<(Version, Reach), DataError> {
        let reach = self.reach(self.live(key)?, consistency, nodes)?;
        Ok((self.stamp(), reach))
    }

    /// Records a removal that met its consistency: `acked` applied the
    /// tombstone at `version`.
    pub fn record_remove(&mut self, key: &ObjectKey, version: Version, acked: &[NodeName]) {
        let Some(object) = self.objects.get_mut(key) else { return };
        if object.version > version {
            return;
        }
        object.version = version;
        object.tombstone = true;
        for node in acked {
            object.holders.insert(node.clone(), version);
        }
        self.changes.push(Change::Object(object.clone()));
    }

    fn live(&self, key: &ObjectKey) -> Result<&StoredObject, DataError> {
        self.objects
            .get(key)
            .filter(|object| !object.tombstone)
            .ok_or_else(|| DataError::NotFound(format!("no object \"{key}\"")))
    }

    fn reach(
        &self,
        object: &StoredObject,
        consistency: Consistency,
        nodes: &BTreeMap<NodeName, NodeInfo>,
    ) -> Result<Reach, DataError> {
        let required = consistency.required(usize::from(object.replicas));
        let holders: Vec<NodeName> = object
            .holders
            .iter()
            .filter(|(node, version)| {
                **version == object.version && nodes.get(*node).is_some_and(|info| info.connected && counts(info.state))
            })
            .map(|(node, _)| node.clone())
            .collect();
        if holders.len() < required {
            return Err(DataError::NotEnough(format!(
                "\"{}\" needs {required} live replica(s) for a {} request and {} can be reached: {}",
                object.key,
                consistency.as_str(),
                holders.len(),
                describe_holders(object, nodes)
            )));
        }
        Ok(Reach { object: object.clone(), holders, required })
    }

    /// `key`'s stat, with each holder's node state now.
    pub fn stat(&self, key: &ObjectKey, nodes: &BTreeMap<NodeName, NodeInfo>) -> Result<ObjectStat, DataError> {
        Ok(stat_of(self.live(key)?, nodes))
    }

    /// The live objects whose keys start with `prefix`, by key.
    pub fn list(&self, prefix: &str, nodes: &BTreeMap<NodeName, NodeInfo>) -> Vec<ObjectStat> {
        self.objects
            .range::<ObjectKey, _>(..)
            .filter(|(key, object)| key.as_str().starts_with(prefix) && !object.tombstone)
            .map(|(_, object)| stat_of(object, nodes))
            .collect()
    }

    /// The repair plan's inputs (see `ringwatch_shared::data::repair`):
    /// every object, and who holds which version, leaving out the objects
    /// `skip` names (a holder that failed a moment ago: its copies may come
    /// back).
    pub fn repair_inputs(
        &self,
        skip: impl Fn(&StoredObject) -> bool,
    ) -> (BTreeMap<ObjectKey, RepairRecord>, BTreeMap<ObjectKey, BTreeMap<String, Version>>) {
        let mut records = BTreeMap::new();
        let mut holders = BTreeMap::new();
        for (key, object) in self.objects.iter().filter(|(_, object)| !skip(object)) {
            records.insert(
                key.clone(),
                RepairRecord {
                    version: object.version,
                    replicas: usize::from(object.replicas),
                    tombstone: object.tombstone,
                    size: object.size,
                },
            );
            let held = object.holders.iter().map(|(node, version)| (node.to_string(), *version)).collect();
            holders.insert(key.clone(), held);
        }
        (records, holders)
    }

    /// `node` now holds `version` of `key` (a repair's copy or tombstone);
    /// ignored when the object moved on meanwhile.
    pub fn add_holder(&mut self, key: &ObjectKey, version: Version, node: NodeName) {
        let Some(object) = self.objects.get_mut(key) else { return };
        if object.version != version {
            return;
        }
        object.holders.insert(node, version);
        self.changes.push(Change::Object(object.clone()));
    }

    /// `node` dropped its copy of `key`.
    pub fn remove_holder(&mut self, key: &ObjectKey, node: &NodeName) {
        let Some(object) = self.objects.get_mut(key) else { return };
        if object.holders.remove(node).is_some() {
            self.changes.push(Change::Object(object.clone()));
        }
    }

    /// The metadata of `key` at its current version, for a repair's copy.
    pub fn meta(&self, key: &ObjectKey) -> Option<ObjectMeta> {
        self.objects.get(key).map(|object| ObjectMeta {
            key: object.key.clone(),
            version: object.version,
            size: object.size,
            checksum: object.checksum.clone(),
            tombstone: object.tombstone,
        })
    }

    /// The figures for `status` (see [`summary`]).
    pub fn summary(&self, nodes: &BTreeMap<NodeName, NodeInfo>) -> (DataStatus, BTreeMap<NodeName, (u64, u64)>) {
        summary(self.objects.values(), |node| nodes.get(node).is_some_and(|info| counts(info.state)))
    }
}

impl Catalog {
    /// What `node` failing now would do to the objects (the what-if plan's
    /// data figures; see [`super::impact::failure_impact`]), with every
    /// other node's copies counted as in `status`.
    pub fn failure_impact(&self, node: &NodeName, nodes: &BTreeMap<NodeName, NodeInfo>) -> DataImpact {
        super::impact::failure_impact(self.objects.values(), node, |holder| {
            nodes.get(holder).is_some_and(|info| counts(info.state))
        })
    }
}

/// The data store's figures for `status`: totals, under-replicated and
/// unavailable objects (a copy counts on a node `live` accepts), and each
/// node's current copies and their bytes.
pub fn summary<'a>(
    objects: impl Iterator<Item = &'a StoredObject>,
    live: impl Fn(&NodeName) -> bool,
) -> (DataStatus, BTreeMap<NodeName, (u64, u64)>) {
    let mut status = DataStatus { replicas: DEFAULT_REPLICAS, ..DataStatus::default() };
    let mut by_node: BTreeMap<NodeName, (u64, u64)> = BTreeMap::new();
    for object in objects.filter(|object| !object.tombstone) {
        status.objects += 1;
        status.bytes += object.size;
        let mut copies = 0;
        for (node, version) in &object.holders {
            if *version != object.version {
                continue;
            }
            let held = by_node.entry(node.clone()).or_default();
            held.0 += 1;
            held.1 += object.size;
            copies += usize::from(live(node));
        }
        if copies == 0 {
            status.unavailable += 1;
        } else if copies < usize::from(object.replicas) {
            status.under_replicated += 1;
        }
    }
    (status, by_node)
}

/// The nodes whose copies are waited for rather than made again: every
/// node out of reach, unless it has been `failed` or `left` for `delay`
/// (`down_since` says since when). A suspect, unknown or reconnecting node
/// may come back with its copies, and a dropped connection alone is no
/// failure.
pub fn waited_for<'a>(
    nodes: &'a BTreeMap<NodeName, NodeInfo>,
    down_since: &std::collections::HashMap<NodeName, std::time::Instant>,
    now: std::time::Instant,
    delay: std::time::Duration,
) -> std::collections::HashSet<&'a NodeName> {
    nodes
        .iter()
        .filter(|(name, info)| {
            let reachable = info.connected && counts(info.state);
            let given_up = matches!(info.state, NodeState::Failed | NodeState::Left)
                && down_since.get(*name).is_none_or(|since| now.saturating_duration_since(*since) >= delay);
            !reachable && !given_up
        })
        .map(|(name, _)| name)
        .collect()
}

/// Whether a node in `state` holds copies that count.
fn counts(state: NodeState) -> bool {
    matches!(state, NodeState::Alive | NodeState::Suspect | NodeState::Degraded)
}

/// An object's stat as the command line shows it.
pub fn stat_of(object: &StoredObject, nodes: &BTreeMap<NodeName, NodeInfo>) -> ObjectStat {
    ObjectStat {
        key: object.key.clone(),
        version: object.version,
        size: object.size,
        checksum: object.checksum.clone(),
        replicas: object.replicas,
        copies: object
            .holders
            .iter()
            .map(|(node, version)| {
                let state = nodes.get(node).map_or(NodeState::Unknown, |info| info.state);
                ReplicaStat {
                    node: node.to_string(),
                    state,
                    version: *version,
                    current: *version == object.version && counts(state),
                }
            })
            .collect(),
    }
}

fn describe_holders(object: &StoredObject, nodes: &BTreeMap<NodeName, NodeInfo>) -> String {
    let listed: Vec<String> = object
        .holders
        .iter()
        .map(|(node, version)| {
            let info = nodes.get(node);
            let state = info.map_or("unknown".to_string(), |info| info.state.to_string());
            let reach = if info.is_some_and(|info| info.connected) { "" } else { ", not connected" };
            let stale = if *version == object.version { String::new() } else { format!(", holds older {version}") };
            format!("\"{node}\" ({state}{reach}{stale})")
        })
        .collect();
    if listed.is_empty() { "no node holds it".into() } else { format!("held by {}", listed.join(", ")) }
}

fn describe_nodes(nodes: &BTreeMap<NodeName, NodeInfo>) -> String {
    let unusable: Vec<String> = nodes
        .iter()
        .filter(|(_, info)| !(info.eligible && info.connected))
        .map(|(name, info)| format!("\"{name}\" ({})", info.state))
        .take(10)
        .collect();
    if unusable.is_empty() { String::new() } else { format!("; not taking copies: {}", unusable.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> ObjectKey {
        ObjectKey::parse(text).unwrap()
    }

    fn name(text: &str) -> NodeName {
        NodeName::parse(text).unwrap()
    }

    fn fleet(states: &[(&str, NodeState)]) -> (Ring, BTreeMap<NodeName, NodeInfo>) {
        let ring = Ring::new(states.iter().map(|(node, _)| (node.to_string(), 1)));
        let nodes = states
            .iter()
            .map(|(node, state)| {
                let up = *state == NodeState::Alive;
                (name(node), NodeInfo { state: *state, connected: up, eligible: up })
            })
            .collect();
        (ring, nodes)
    }

    fn stored(plan: &PutPlan, object: &str) -> StoredObject {
        StoredObject {
            key: key(object),
            version: plan.version,
            size: 3,
            checksum: "c".into(),
            replicas: plan.replicas,
            tombstone: false,
            holders: plan.targets.iter().map(|node| (node.clone(), plan.version)).collect(),
        }
    }

    #[test]
    fn a_put_goes_to_the_first_eligible_nodes_on_the_ring_and_versions_grow() {
        let (ring, nodes) = fleet(&[
            ("a", NodeState::Alive),
            ("b", NodeState::Alive),
            ("c", NodeState::Failed),
            ("d", NodeState::Alive),
        ]);
        let mut catalog = Catalog::new(BTreeMap::new(), 0, None);
        let first = catalog.plan_put(&key("k"), None, Consistency::Quorum, &ring, &nodes).unwrap();
        assert_eq!(first.targets.len(), 3);
        assert!(!first.targets.contains(&name("c")), "a failed node takes no copy");
        let expected: Vec<NodeName> = ring.replicas("k", 3, |node| node != "c").into_iter().map(name).collect();
        assert_eq!(first.targets, expected);
        let second = catalog.plan_put(&key("k"), Some(1), Consistency::One, &ring, &nodes).unwrap();
        assert!(second.version > first.version);
        assert!(catalog.take_changes().iter().all(|change| matches!(change, Change::DataClock(_))));
    }

    #[test]
    fn too_few_nodes_or_holders_for_the_consistency_are_not_enough_and_name_the_nodes() {
        let (ring, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Failed), ("c", NodeState::Left)]);
        let mut catalog = Catalog::new(BTreeMap::new(), 0, None);
        let err = catalog.plan_put(&key("k"), Some(3), Consistency::All, &ring, &nodes).unwrap_err();
        assert!(matches!(&err, DataError::NotEnough(why) if why.contains("\"b\" (failed)")), "{err}");
        let plan = catalog.plan_put(&key("k"), Some(3), Consistency::One, &ring, &nodes).unwrap();
        catalog.record_put(stored(&plan, "k"));
        let err = catalog.plan_read(&key("k"), Consistency::Quorum, &nodes).unwrap_err();
        assert!(matches!(&err, DataError::NotEnough(why) if why.contains("\"a\" (alive)")), "{err}");
        assert!(catalog.plan_read(&key("k"), Consistency::One, &nodes).is_ok());
    }

    #[test]
    fn a_removed_object_is_not_found_and_an_overtaken_put_changes_nothing() {
        let (ring, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Alive)]);
        let mut catalog = Catalog::new(BTreeMap::new(), 0, None);
        let older = catalog.plan_put(&key("k"), None, Consistency::Quorum, &ring, &nodes).unwrap();
        let newer = catalog.plan_put(&key("k"), None, Consistency::Quorum, &ring, &nodes).unwrap();
        catalog.record_put(stored(&newer, "k"));
        catalog.record_put(stored(&older, "k"));
        assert_eq!(catalog.stat(&key("k"), &nodes).unwrap().version, newer.version);
        let (version, reach) = catalog.plan_remove(&key("k"), Consistency::Quorum, &nodes).unwrap();
        catalog.record_remove(&key("k"), version, &reach.holders);
        assert!(matches!(catalog.plan_read(&key("k"), Consistency::One, &nodes), Err(DataError::NotFound(_))));
        assert_eq!(catalog.summary(&nodes).0.objects, 0);
        assert!(catalog.list("", &nodes).is_empty());
    }

    #[test]
    fn regression_copies_are_waited_for_from_the_failure_not_from_the_dropped_connection() {
        // Repair began the moment a killed agent's connection dropped, while
        // its node was still `suspect`: the 5 s wait counted from nothing.
        let info = |state, connected| NodeInfo { state, connected, eligible: connected };
        let nodes = BTreeMap::from([
            (name("up"), info(NodeState::Alive, true)),
            (name("dropped"), info(NodeState::Suspect, false)),
            (name("unknown"), info(NodeState::Unknown, false)),
            (name("just-failed"), info(NodeState::Failed, false)),
            (name("long-failed"), info(NodeState::Failed, false)),
            (name("left-before-restart"), info(NodeState::Left, false)),
        ]);
        let now = std::time::Instant::now();
        let delay = std::time::Duration::from_secs(5);
        let down_since = std::collections::HashMap::from([
            (name("just-failed"), now - std::time::Duration::from_secs(1)),
            (name("long-failed"), now - std::time::Duration::from_secs(6)),
        ]);
        let waiting = waited_for(&nodes, &down_since, now, delay);
        let mut waiting: Vec<&str> = waiting.iter().map(|node| node.as_str()).collect();
        waiting.sort_unstable();
        assert_eq!(waiting, ["dropped", "just-failed", "unknown"]);
    }

    #[test]
    fn a_restarted_catalog_never_stamps_a_version_it_handed_out() {
        let handed_out = Version { term: 0, counter: 41 };
        let mut catalog = Catalog::new(BTreeMap::new(), 0, Some(handed_out));
        assert!(catalog.stamp() > handed_out);
        let mut next_term = Catalog::new(BTreeMap::new(), 2, Some(handed_out));
        assert_eq!(next_term.stamp(), Version { term: 2, counter: 1 });
    }
}
