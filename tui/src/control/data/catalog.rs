//! The data store's catalog (README.md, "Data"): which objects exist, their
//! current versions, and who holds what — pure state over durable records,
//! owned by the owner like the scheduler. It stamps versions, picks the
//! nodes a new object goes to, and says which holders a read or a removal
//! must reach; the connection handlers move the bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ringwatch_shared::data::digest::{Digests, range_of};
use ringwatch_shared::data::repair::ObjectRecord as RepairRecord;
use ringwatch_shared::data::{
    Consistency, DataError, ObjectKey, ObjectMeta, ObjectStat, ReplicaStat, Version, VersionClock,
};
use ringwatch_shared::names::NodeName;
use ringwatch_shared::plan::DataImpact;
use ringwatch_shared::ring::Ring;
use ringwatch_shared::status::{DataStatus, NodeState};

use crate::control::records::{Change, DataIntent, StoredObject};

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
    /// Versions up to this one are reserved: the clock record says so (or
    /// will, once the change that raised it is durable). Versions are
    /// reserved [`VERSION_BLOCK`] at a time, so the record is written once
    /// per block, not once per put.
    reserved: Version,
    /// Whether a block was reserved since the owner last asked
    /// ([`Catalog::take_reserved`]).
    reserved_since: bool,
    changes: Vec<Change>,
    /// Puts and removals under way, by key, then version.
    underway: BTreeMap<ObjectKey, BTreeMap<Version, Underway>>,
    /// What each node is recorded to hold, as anti-entropy compares it
    /// with what the node says it holds; kept up to date holder by holder.
    expected: HashMap<NodeName, Digests>,
    /// Counts the catalog's changes to objects.
    generation: u64,
    /// The generation each object last changed at: anti-entropy leaves
    /// alone an object that changed after it asked a node what it holds.
    touched: HashMap<ObjectKey, u64>,
    /// Objects changed since the repair planner last took them
    /// ([`Catalog::take_changed`]); `None` once more than
    /// [`MAX_CHANGED`] did (a console that plans no repairs, or a burst).
    changed: Option<BTreeSet<ObjectKey>>,
    /// Each node's use of its data quota, as last reported.
    usage: HashMap<NodeName, QuotaUse>,
    /// The live objects counted by who holds their current version, kept
    /// up to date object by object: `status` adds up these classes rather
    /// than every object ([`Catalog::summary`]).
    tallies: Tallies,
    /// Replicas of a put that names none.
    default_replicas: u8,
}

/// More changed objects than this between two repair plans are not
/// listed: the next plan looks at every object.
const MAX_CHANGED: usize = 100_000;

/// The live (not removed) objects, by the nodes holding their current
/// version and their replica count: how many, and their bytes. Objects
/// placed by one ring fall in few classes — at most one per run of
/// consecutive nodes on it — so `status` costs a look at each class, not
/// at each of possibly millions of objects, on every tick it is watched.
#[derive(Debug, Default)]
struct Tallies {
    classes: HashMap<(Vec<NodeName>, u8), (u64, u64)>,
}

impl Tallies {
    fn class(object: &StoredObject) -> Option<(Vec<NodeName>, u8)> {
        (!object.tombstone).then(|| (object.current_holders().cloned().collect(), object.replicas))
    }

    fn add(&mut self, object: &StoredObject) {
        if let Some(class) = Self::class(object) {
            let tally = self.classes.entry(class).or_default();
            tally.0 += 1;
            tally.1 += object.size;
        }
    }

    /// The figures for `status` (see [`summary`]), with a copy counted on
    /// the nodes `live` accepts.
    fn figures(&self, live: impl Fn(&NodeName) -> bool) -> (DataStatus, BTreeMap<NodeName, (u64, u64)>) {
        let mut status = DataStatus { replicas: DEFAULT_REPLICAS, ..DataStatus::default() };
        let mut by_node: BTreeMap<NodeName, (u64, u64)> = BTreeMap::new();
        for ((holders, replicas), &(objects, bytes)) in &self.classes {
            status.objects += objects;
            status.bytes += bytes;
            let mut copies = 0;
            for node in holders {
                let held = by_node.entry(node.clone()).or_default();
                held.0 += objects;
                held.1 += bytes;
                copies += usize::from(live(node));
            }
            if copies == 0 {
                status.unavailable += objects;
            } else if copies < usize::from(*replicas) {
                status.under_replicated += objects;
            }
        }
        (status, by_node)
    }

    fn remove(&mut self, object: &StoredObject) {
        let Some(class) = Self::class(object) else { return };
        if let Some(tally) = self.classes.get_mut(&class) {
            tally.0 = tally.0.saturating_sub(1);
            tally.1 = tally.1.saturating_sub(object.size);
            if tally.0 == 0 {
                self.classes.remove(&class);
            }
        }
    }
}

/// Versions reserved by one write of the clock record. A restarted console
/// starts after the reservation, so it skips at most this many.
pub const VERSION_BLOCK: u64 = 1024;

/// A put or removal under way.
#[derive(Debug, Clone)]
struct Underway {
    intent: DataIntent,
    /// Whether its intent is a record (see [`Catalog::plan_put`]); one
    /// kept only here leaves no record to end.
    recorded: bool,
    /// Found in the records at start: its console was cut short, and it
    /// waits to be resolved rather than finished.
    inherited: bool,
}

/// A node's use of its data quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaUse {
    /// Bytes held.
    pub used: u64,
    /// The quota.
    pub quota: u64,
}

impl QuotaUse {
    /// Bytes that still fit.
    pub fn free(self) -> u64 {
        self.quota.saturating_sub(self.used)
    }
}

/// What anti-entropy found on a node that the catalog does not explain:
/// copies to discard, up to a version.
pub type Discards = Vec<(ObjectKey, Version)>;

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
    /// Whether the put's intent is a record, which must be durable before
    /// any target is asked (a put over an existing record).
    pub intent_recorded: bool,
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
    ///
    /// `intents` are the puts and removals a previous console left under
    /// way: they wait for [`Catalog::resolve`].
    pub fn new(
        objects: BTreeMap<ObjectKey, StoredObject>,
        intents: BTreeMap<Version, DataIntent>,
        term: u64,
        clock: Option<Version>,
    ) -> Self {
        let seen = objects
            .values()
            .map(|object| object.version)
            .chain(intents.keys().copied())
            .chain(clock)
            .max()
            .unwrap_or_default();
        let mut expected: HashMap<NodeName, Digests> = HashMap::new();
        let mut tallies = Tallies::default();
        for object in objects.values() {
            tallies.add(object);
            for (node, version) in &object.holders {
                expected.entry(node.clone()).or_default().toggle(&object.key, *version);
            }
        }
        let mut underway: BTreeMap<ObjectKey, BTreeMap<Version, Underway>> = BTreeMap::new();
        for (version, intent) in intents {
            let underway_op = Underway { intent, recorded: true, inherited: true };
            underway.entry(underway_op.intent.key.clone()).or_default().insert(version, underway_op);
        }
        Self {
            objects,
            clock: VersionClock::new(term, seen),
            reserved: seen,
            reserved_since: false,
            changes: Vec::new(),
            underway,
            expected,
            generation: 0,
            touched: HashMap::new(),
            changed: None,
            usage: HashMap::new(),
            tallies,
            default_replicas: DEFAULT_REPLICAS,
        }
    }

    /// The catalog, with `replicas` for a put that names none.
    pub fn with_default_replicas(mut self, replicas: u8) -> Self {
        self.default_replicas = replicas;
        self
    }

    /// Stores `object` as its record now, keeping each node's expected
    /// digests in step with its holders.
    fn set(&mut self, object: StoredObject) {
        if let Some(old) = self.objects.get(&object.key) {
            for (node, version) in &old.holders {
                self.expected.entry(node.clone()).or_default().toggle(&old.key, *version);
            }
            self.tallies.remove(old);
        }
        self.tallies.add(&object);
        for (node, version) in &object.holders {
            self.expected.entry(node.clone()).or_default().toggle(&object.key, *version);
        }
        self.touch(&object.key);
        self.changes.push(Change::Object(object.clone()));
        self.objects.insert(object.key.clone(), object);
    }

    /// Forgets `key`'s record.
    fn unset(&mut self, key: &ObjectKey) {
        let Some(old) = self.objects.remove(key) else { return };
        for (node, version) in &old.holders {
            self.expected.entry(node.clone()).or_default().toggle(&old.key, *version);
        }
        self.tallies.remove(&old);
        self.touch(key);
        self.changes.push(Change::ObjectForgotten(key.clone()));
    }

    fn touch(&mut self, key: &ObjectKey) {
        self.generation += 1;
        self.touched.insert(key.clone(), self.generation);
        if let Some(changed) = self.changed.as_mut() {
            changed.insert(key.clone());
            if changed.len() > MAX_CHANGED {
                self.changed = None;
            }
        }
    }

    /// Notes an operation begun; `recorded`: as a record too (its intent).
    fn begin(&mut self, intent: DataIntent, recorded: bool) {
        if recorded {
            self.changes.push(Change::Intent(intent.clone()));
        }
        self.touch(&intent.key);
        self.underway
            .entry(intent.key.clone())
            .or_default()
            .insert(intent.version, Underway { intent, recorded, inherited: false });
    }

    /// Notes an operation ended (recorded or rolled back).
    fn end(&mut self, key: &ObjectKey, version: Version) {
        let Some(versions) = self.underway.get_mut(key) else { return };
        if versions.remove(&version).is_some_and(|ended| ended.recorded) {
            self.changes.push(Change::IntentEnded(version));
        }
        if versions.is_empty() {
            self.underway.remove(key);
        }
        self.touch(key);
    }

    /// Whether no object was ever stored (or all were forgotten).
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The changed records, for the change log.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// A new version. Past the reserved ones, the next block is reserved
    /// in the clock record; an answer carrying a version may go out only
    /// once its reservation is durable (see [`Catalog::take_reserved`]).
    fn stamp(&mut self) -> Version {
        let version = self.clock.stamp();
        if version > self.reserved {
            self.reserved = Version { counter: version.counter.saturating_add(VERSION_BLOCK - 1), ..version };
            self.changes.push(Change::DataClock(self.reserved));
            self.reserved_since = true;
        }
        version
    }

    /// Whether a new block of versions was reserved since the last call:
    /// the owner then holds back every answer carrying a version until the
    /// batch with the reservation is durable.
    pub fn take_reserved(&mut self) -> bool {
        std::mem::take(&mut self.reserved_since)
    }

    /// Plans a put of `key`: a version and the first eligible nodes
    /// clockwise from the key on `ring`.
    ///
    /// # Errors
    /// [`DataError::Refused`] for a bad replica count;
    /// [`DataError::NotEnough`] when fewer eligible nodes exist than the
    /// consistency needs.
    #[allow(clippy::too_many_arguments)]
    pub fn plan_put(
        &mut self,
        key: &ObjectKey,
        replicas: Option<u8>,
        consistency: Consistency,
        size: u64,
        checksum: &str,
        ring: &Ring,
        nodes: &BTreeMap<NodeName, NodeInfo>,
    ) -> Result<PutPlan, DataError> {
        let replicas = replicas.unwrap_or(self.default_replicas);
        if replicas == 0 || replicas > MAX_REPLICAS {
            return Err(DataError::Refused(format!("--replicas must be 1 to {MAX_REPLICAS}, not {replicas}")));
        }
        // A node whose quota cannot take the bytes takes no copy.
        let fits = |name: &NodeName| self.usage.get(name).is_none_or(|usage| usage.free() >= size);
        let usable = |name: &str| {
            NodeName::parse(name)
                .ok()
                .is_some_and(|name| nodes.get(&name).copied().is_some_and(|n| n.eligible && n.connected) && fits(&name))
        };
        let targets: Vec<NodeName> = ring
            .replicas(key.as_str(), usize::from(replicas), usable)
            .into_iter()
            .filter_map(|name| NodeName::parse(name).ok())
            .collect();
        let required = consistency.required(usize::from(replicas));
        if targets.len() < required {
            // When no node at all could take the bytes, the put is refused
            // as too large. The node with the most room (one that has not
            // reported counts as roomy enough) says so; it is looked for
            // only here, not on every put, as it takes a look at every node.
            let roomiest = nodes
                .iter()
                .filter(|(_, n)| n.eligible && n.connected)
                .map(|(name, _)| (name, self.usage.get(name).map(|usage| usage.free())))
                .max_by_key(|(_, free)| free.unwrap_or(u64::MAX));
            if let Some((roomiest, Some(most))) = roomiest
                && most < size
            {
                return Err(DataError::Refused(format!(
                    "a put of {size} bytes is larger than every node's free data quota (the most is {most} bytes, on \"{roomiest}\"); raise the agents' --data-quota or remove objects"
                )));
            }
            return Err(DataError::NotEnough(format!(
                "{} of the {required} nodes a {} put of {replicas} replica(s) needs can take a copy now{}",
                targets.len(),
                consistency.as_str(),
                describe_nodes(nodes)
            )));
        }
        let version = self.stamp();
        // A key with no record and nothing under way has no version a
        // crash mid-put could cost: its copies, if the console dies before
        // recording them, are debris anti-entropy discards. Only a put over
        // an existing record needs its intent durable before any agent
        // replaces what it holds (ARCHITECTURE.md, "The data store").
        let replaces = self.objects.contains_key(key) || self.underway.contains_key(key);
        self.begin(
            DataIntent {
                key: key.clone(),
                version,
                targets: targets.clone(),
                removal: false,
                size,
                checksum: checksum.to_string(),
                replicas,
            },
            replaces,
        );
        Ok(PutPlan { version, targets, required, replicas, intent_recorded: replaces })
    }

    /// Records a put that met its consistency: `acked` hold `version`. A
    /// put overtaken by a newer version changes nothing.
    pub fn record_put(&mut self, object: StoredObject) {
        self.end(&object.key, object.version);
        for node in object.holders.keys() {
            if let Some(usage) = self.usage.get_mut(node) {
                usage.used += object.size;
            }
        }
        let Some(held) = self.objects.get(&object.key) else {
            self.set(object);
            return;
        };
        if held.version > object.version {
            // Overtaken: still, the acknowledging nodes hold this version
            // now, not what the record says.
            // Acknowledgements can arrive out of order: a node recorded
            // at a newer version already holds that one.
            let mut updated = held.clone();
            for (node, version) in &object.holders {
                let entry = updated.holders.entry(node.clone()).or_insert(*version);
                *entry = (*entry).max(*version);
            }
            if updated != *held {
                self.set(updated);
            }
            return;
        }
        // Holders of older versions stay listed: the repair plan updates
        // or drops their copies.
        let mut object = object;
        for (node, version) in &held.holders {
            object.holders.entry(node.clone()).or_insert(*version);
        }
        self.set(object);
    }

    /// A put or removal no target acknowledged: it is no longer under way
    /// (the caller asks the targets to discard whatever they took).
    pub fn abandon(&mut self, key: &ObjectKey, version: Version) {
        self.end(key, version);
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
        let version = self.stamp();
        let intent = DataIntent {
            key: key.clone(),
            version,
            targets: reach.holders.clone(),
            removal: true,
            size: 0,
            checksum: String::new(),
            replicas: reach.object.replicas,
        };
        self.begin(intent, true);
        Ok((version, reach))
    }

    /// Records a removal that met its consistency: `acked` applied the
    /// tombstone at `version`.
    pub fn record_remove(&mut self, key: &ObjectKey, version: Version, acked: &[NodeName]) {
        self.end(key, version);
        let Some(mut object) = self.objects.get(key).cloned() else { return };
        if object.version <= version {
            object.version = version;
            object.tombstone = true;
        }
        for node in acked {
            object.holders.insert(node.clone(), version);
        }
        self.set(object);
    }

    fn live(&self, key: &ObjectKey) -> Result<&StoredObject, DataError> {
        self.objects.get(key).filter(|object| !object.tombstone).ok_or_else(|| {
            let writing = self
                .underway
                .get(key)
                .is_some_and(|versions| versions.values().any(|underway| !underway.intent.removal));
            DataError::NotFound(if writing {
                format!("\"{key}\" is being written and not stored yet: try again once its put has finished")
            } else {
                format!("no object \"{key}\"")
            })
        })
    }

    fn reach(
        &self,
        object: &StoredObject,
        consistency: Consistency,
        nodes: &BTreeMap<NodeName, NodeInfo>,
    ) -> Result<Reach, DataError> {
        let required = consistency.required(usize::from(object.replicas));
        let holders: Vec<NodeName> = object
            .current_holders()
            .filter(|node| nodes.get(*node).is_some_and(|info| info.connected && counts(info.state)))
            .cloned()
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
    /// every object (or those of `only`), and who holds which version,
    /// leaving out the objects `skip` names (a holder that failed a moment
    /// ago: its copies may come back).
    pub fn repair_inputs(
        &self,
        only: Option<&BTreeSet<ObjectKey>>,
        skip: impl Fn(&StoredObject) -> bool,
    ) -> (BTreeMap<ObjectKey, RepairRecord>, BTreeMap<ObjectKey, BTreeMap<String, Version>>) {
        let mut records = BTreeMap::new();
        let mut holders = BTreeMap::new();
        let objects: Box<dyn Iterator<Item = (&ObjectKey, &StoredObject)>> = match only {
            Some(keys) => Box::new(keys.iter().filter_map(|key| self.objects.get_key_value(key))),
            None => Box::new(self.objects.iter()),
        };
        for (key, object) in objects.filter(|(_, object)| !skip(object)) {
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

    /// The objects changed (put, removed, repaired, forgotten) since the
    /// last call: with those the planner last found unsettled, all a
    /// repair plan needs to look at while nodes and the ring stay as they
    /// were.
    /// `None` when too many changed to be worth listing (and before the
    /// first call): every object may have.
    pub fn take_changed(&mut self) -> Option<BTreeSet<ObjectKey>> {
        self.changed.replace(BTreeSet::new())
    }

    /// `node` now holds `version` of `key` (a repair's copy or tombstone);
    /// ignored when the object moved on meanwhile.
    pub fn add_holder(&mut self, key: &ObjectKey, version: Version, node: NodeName) {
        let Some(object) = self.objects.get(key) else { return };
        if object.version != version || object.holders.get(&node) == Some(&version) {
            return;
        }
        let mut object = object.clone();
        object.holders.insert(node, version);
        self.set(object);
    }

    /// `node` no longer holds `version` of `key` (dropped, or found
    /// missing by a read). Ignored when the record has it holding another
    /// version by now: a put or a repair that landed meanwhile.
    pub fn remove_holder(&mut self, key: &ObjectKey, node: &NodeName, version: Version) {
        let Some(object) = self.objects.get(key) else { return };
        if object.holders.get(node) != Some(&version) {
            return;
        }
        let mut object = object.clone();
        object.holders.remove(node);
        self.set(object);
    }

    /// Forgets the tombstone of `key` at `version`, its holders having
    /// dropped it (README.md, "Data": tombstones are collected once every
    /// replica has applied them). Ignored when the key moved on.
    pub fn forget(&mut self, key: &ObjectKey, version: Version) {
        if self.objects.get(key).is_some_and(|object| object.tombstone && object.version == version) {
            self.unset(key);
        }
    }

    /// What `node` is recorded to hold, as digests, and the generation to
    /// hand back to [`Catalog::reconcile`] with what it says it holds.
    ///
    /// Anti-entropy checks one node at a time, so a new check means the
    /// previous one is over: what was touched before now concerns no check
    /// and is forgotten, which keeps `touched` to the changes of one check.
    pub fn expected(&mut self, node: &NodeName) -> (Digests, u64) {
        self.touched.clear();
        (self.expected.get(node).cloned().unwrap_or_default(), self.generation)
    }

    /// Anti-entropy (README.md, "Data"): brings the record of what `node`
    /// holds in `ranges` in line with what it says it holds there
    /// (`held`, listed when the catalog's generation was `asked_at`), and
    /// returns the copies it holds that nothing explains — neither a
    /// recorded version nor an operation under way: a failed put's, a
    /// collected tombstone's, a forgotten object's — for the caller to
    /// discard. Objects changed since `asked_at` or with an operation under
    /// way are left for the next round. The repair plan takes it from
    /// there: a stale copy on a replica is overwritten, an extra one
    /// dropped once enough current copies exist elsewhere.
    pub fn reconcile(&mut self, node: &NodeName, ranges: &[usize], held: Vec<ObjectMeta>, asked_at: u64) -> Discards {
        let settled = |catalog: &Self, key: &ObjectKey| {
            catalog.touched.get(key).is_none_or(|at| *at <= asked_at) && !catalog.underway.contains_key(key)
        };
        let mut held: BTreeMap<ObjectKey, ObjectMeta> = held
            .into_iter()
            .filter(|meta| ranges.contains(&range_of(&meta.key)))
            .map(|meta| (meta.key.clone(), meta))
            .collect();
        let recorded: Vec<ObjectKey> = self
            .objects
            .values()
            .filter(|object| object.holders.contains_key(node) && ranges.contains(&range_of(&object.key)))
            .map(|object| object.key.clone())
            .collect();
        let mut discards = Vec::new();
        // Recorded holdings the node does not have, or has at another version.
        for key in recorded {
            if !settled(self, &key) {
                held.remove(&key);
                continue;
            }
            let Some(mut object) = self.objects.get(&key).cloned() else { continue };
            let actual = held.remove(&key);
            match actual.as_ref().map(|meta| self.explains(&object, meta)) {
                Some(Some(version)) if object.holders.get(node) == Some(&version) => continue,
                Some(Some(version)) => {
                    object.holders.insert(node.clone(), version);
                }
                Some(None) => {
                    object.holders.remove(node);
                    if let Some(meta) = actual {
                        discards.push((key.clone(), meta.version));
                    }
                }
                None => {
                    object.holders.remove(node);
                }
            }
            self.set(object);
        }
        // Holdings the record does not list for this node.
        for (key, meta) in held {
            if !settled(self, &key) {
                continue;
            }
            match self.objects.get(&key).map(|object| (object.clone(), self.explains(object, &meta))) {
                Some((mut object, Some(version))) => {
                    object.holders.insert(node.clone(), version);
                    self.set(object);
                }
                _ => discards.push((key, meta.version)),
            }
        }
        discards
    }

    /// The version of `object` a copy `meta` counts as, if the record
    /// explains it: the current version with the recorded checksum, or an
    /// older one (stale, for the repair plan to update or drop). A newer
    /// version nothing recorded, or the current version with other bytes,
    /// is not explained.
    fn explains(&self, object: &StoredObject, meta: &ObjectMeta) -> Option<Version> {
        if meta.version == object.version {
            let same = meta.tombstone == object.tombstone && (object.tombstone || meta.checksum == object.checksum);
            return same.then_some(meta.version);
        }
        (meta.version < object.version).then_some(meta.version)
    }

    /// The puts and removals a previous console left under way, to resolve.
    pub fn inherited(&self) -> Vec<DataIntent> {
        self.underway
            .values()
            .flat_map(|versions| versions.values())
            .filter(|underway| underway.inherited)
            .map(|underway| underway.intent.clone())
            .collect()
    }

    /// Resolves an operation a previous console left under way: `holding`
    /// are the targets that hold its version, whole (an agent keeps only
    /// complete, checksummed copies). Held anywhere, it is recorded as if
    /// it had finished — a later operation still wins — otherwise it is
    /// dropped; either way it is no longer under way.
    pub fn resolve(&mut self, version: Version, holding: &[NodeName]) {
        let Some(underway) = self
            .underway
            .values()
            .find_map(|versions| versions.get(&version))
            .filter(|underway| underway.inherited)
            .cloned()
        else {
            return;
        };
        let intent = underway.intent;
        if holding.is_empty() {
            self.end(&intent.key, version);
        } else if intent.removal {
            self.record_remove(&intent.key, version, holding);
        } else {
            self.record_put(StoredObject {
                key: intent.key.clone(),
                version,
                size: intent.size,
                checksum: intent.checksum.clone(),
                replicas: intent.replicas,
                tombstone: false,
                holders: holding.iter().map(|node| (node.clone(), version)).collect(),
            });
        }
    }

    /// `node`'s use of its data quota, as it reported it.
    pub fn set_usage(&mut self, node: NodeName, usage: QuotaUse) {
        self.usage.insert(node, usage);
    }

    /// `node`'s use of its data quota, if it reported it.
    pub fn usage(&self, node: &NodeName) -> Option<QuotaUse> {
        self.usage.get(node).copied()
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

    /// The figures for `status` (see [`summary`]), added up from the
    /// classes of [`Tallies`] rather than object by object.
    pub fn summary(&self, nodes: &BTreeMap<NodeName, NodeInfo>) -> (DataStatus, BTreeMap<NodeName, (u64, u64)>) {
        let (mut status, by_node) = self.tallies.figures(|node| nodes.get(node).is_some_and(|info| counts(info.state)));
        status.replicas = self.default_replicas;
        (status, by_node)
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
    let mut tallies = Tallies::default();
    for object in objects {
        tallies.add(object);
    }
    tallies.figures(live)
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
        let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        let first = catalog.plan_put(&key("k"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
        assert_eq!(first.targets.len(), 3);
        assert!(!first.targets.contains(&name("c")), "a failed node takes no copy");
        let expected: Vec<NodeName> = ring.replicas("k", 3, |node| node != "c").into_iter().map(name).collect();
        assert_eq!(first.targets, expected);
        let second = catalog.plan_put(&key("k"), Some(1), Consistency::One, 3, "c", &ring, &nodes).unwrap();
        assert!(second.version > first.version);
        assert!(
            catalog.take_changes().iter().all(|change| matches!(change, Change::DataClock(_) | Change::Intent(_))),
            "nothing but the clock and the intents is recorded before the put is"
        );
    }

    #[test]
    fn too_few_nodes_or_holders_for_the_consistency_are_not_enough_and_name_the_nodes() {
        let (ring, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Failed), ("c", NodeState::Left)]);
        let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        let err = catalog.plan_put(&key("k"), Some(3), Consistency::All, 3, "c", &ring, &nodes).unwrap_err();
        assert!(matches!(&err, DataError::NotEnough(why) if why.contains("\"b\" (failed)")), "{err}");
        let plan = catalog.plan_put(&key("k"), Some(3), Consistency::One, 3, "c", &ring, &nodes).unwrap();
        catalog.record_put(stored(&plan, "k"));
        let err = catalog.plan_read(&key("k"), Consistency::Quorum, &nodes).unwrap_err();
        assert!(matches!(&err, DataError::NotEnough(why) if why.contains("\"a\" (alive)")), "{err}");
        assert!(catalog.plan_read(&key("k"), Consistency::One, &nodes).is_ok());
    }

    #[test]
    fn a_removed_object_is_not_found_and_an_overtaken_put_changes_nothing() {
        let (ring, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Alive)]);
        let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        let older = catalog.plan_put(&key("k"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
        let newer = catalog.plan_put(&key("k"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
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
    fn a_put_of_a_new_key_records_no_intent_and_a_crash_before_it_is_recorded_leaves_nothing() {
        let (ring, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Alive)]);
        let mut before = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        let fresh = before.plan_put(&key("fresh"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
        assert!(!fresh.intent_recorded);
        // A second put of the same key while the first is under way, and
        // a removal, do record theirs.
        let again = before.plan_put(&key("fresh"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
        assert!(again.intent_recorded);
        let changes = before.take_changes();
        let intents: Vec<Version> = changes
            .iter()
            .filter_map(|change| match change {
                Change::Intent(intent) => Some(intent.version),
                _ => None,
            })
            .collect();
        assert_eq!(intents, vec![again.version]);
        // Anti-entropy still sees the first as under way: its copies are
        // explained while it runs.
        assert_eq!(before.underway[&key("fresh")].len(), 2);
        before.abandon(&key("fresh"), fresh.version);
        assert!(
            !before.take_changes().contains(&Change::IntentEnded(fresh.version)),
            "no record to end for an intent that was never one"
        );
        // The console crashed: only the recorded intent is inherited, and
        // no version handed out is stamped again.
        let mut image = crate::control::records::Image::default();
        for change in &changes {
            image.apply(change);
        }
        let mut after = Catalog::new(image.objects, image.intents, 0, image.data_clock);
        assert_eq!(after.inherited().iter().map(|intent| intent.version).collect::<Vec<_>>(), vec![again.version]);
        assert!(after.stamp() > again.version);
    }

    #[test]
    fn versions_are_reserved_a_block_at_a_time_and_a_restart_skips_the_rest_of_the_block() {
        let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        let mut last = Version::default();
        let stamps = VERSION_BLOCK * 2 + 1;
        for _ in 0..stamps {
            let version = catalog.stamp();
            assert!(version > last);
            last = version;
        }
        let reservations: Vec<Version> = catalog
            .take_changes()
            .into_iter()
            .filter_map(|change| match change {
                Change::DataClock(reserved) => Some(reserved),
                _ => None,
            })
            .collect();
        assert_eq!(reservations.len(), 3, "one record per block: {reservations:?}");
        assert!(catalog.take_reserved() && !catalog.take_reserved());
        let reserved = *reservations.last().unwrap();
        assert!(reserved >= last);
        let mut restarted = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, Some(reserved));
        assert_eq!(restarted.stamp(), Version { term: 0, counter: reserved.counter + 1 });
    }

    #[test]
    fn a_restarted_catalog_never_stamps_a_version_it_handed_out() {
        let handed_out = Version { term: 0, counter: 41 };
        let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, Some(handed_out));
        assert!(catalog.stamp() > handed_out);
        let mut next_term = Catalog::new(BTreeMap::new(), BTreeMap::new(), 2, Some(handed_out));
        assert_eq!(next_term.stamp(), Version { term: 2, counter: 1 });
    }

    fn meta_of(object: &StoredObject, version: Version) -> ObjectMeta {
        ObjectMeta {
            key: object.key.clone(),
            version,
            size: object.size,
            checksum: object.checksum.clone(),
            tombstone: object.tombstone && version == object.version,
        }
    }

    /// Three objects on a, b, c: "lost", "kept", "extra".
    fn stored_three() -> (Ring, BTreeMap<NodeName, NodeInfo>, Catalog, Vec<PutPlan>) {
        let (ring, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Alive)]);
        let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        let mut plans = Vec::new();
        for object in ["lost", "kept", "extra"] {
            let plan = catalog.plan_put(&key(object), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
            catalog.record_put(stored(&plan, object));
            plans.push(plan);
        }
        (ring, nodes, catalog, plans)
    }

    #[test]
    fn the_expected_digests_of_a_node_are_those_of_what_it_was_recorded_to_hold() {
        let (_, _, mut catalog, _) = stored_three();
        let held: Vec<ObjectMeta> = catalog.objects.values().map(|object| meta_of(object, object.version)).collect();
        let (expected, _) = catalog.expected(&name("a"));
        assert_eq!(expected, Digests::of(&held));
        assert!(expected.differing_ranges(&Digests::of(&held)).is_empty());
        assert_eq!(catalog.expected(&name("nobody")).0, Digests::default());
    }

    #[test]
    fn anti_entropy_forgets_lost_copies_counts_unrecorded_ones_and_discards_what_nothing_explains() {
        let (_, nodes, mut catalog, plans) = stored_three();
        // "a" lost "lost", holds "kept" as recorded, and holds a newer
        // version of "extra" nobody recorded (a failed put's), plus a key
        // the catalog never heard of.
        let kept = catalog.objects[&key("kept")].clone();
        let extra = catalog.objects[&key("extra")].clone();
        let newer = Version { counter: 99, ..plans[2].version };
        let stray = ObjectMeta {
            key: key("stray"),
            version: Version { term: 0, counter: 7 },
            size: 1,
            checksum: "x".into(),
            tombstone: false,
        };
        let held = vec![meta_of(&kept, kept.version), meta_of(&extra, newer), stray.clone()];
        let (expected, asked_at) = catalog.expected(&name("a"));
        let ranges = expected.differing_ranges(&Digests::of(&held));
        let all: Vec<usize> = (0..ringwatch_shared::data::digest::RANGES).collect();
        let mut discards = catalog.reconcile(&name("a"), &all, held.clone(), asked_at);
        discards.sort();
        assert_eq!(discards, vec![(key("extra"), newer), (key("stray"), stray.version)]);
        assert!(!catalog.objects[&key("lost")].holders.contains_key(&name("a")));
        assert!(!catalog.objects[&key("extra")].holders.contains_key(&name("a")));
        assert_eq!(catalog.objects[&key("kept")].holders[&name("a")], kept.version);
        assert_eq!(catalog.stat(&key("lost"), &nodes).unwrap().live_copies(), 2);
        // The differing ranges are where the three keys fall; the record
        // now matches the node except for what it is asked to discard.
        for object in ["lost", "extra", "stray"] {
            assert!(ranges.contains(&range_of(&key(object))));
        }
        let after: Vec<ObjectMeta> = held.into_iter().filter(|meta| meta.key.as_str() == "kept").collect();
        assert_eq!(catalog.expected(&name("a")).0, Digests::of(&after));
    }

    #[test]
    fn anti_entropy_adds_a_recorded_version_the_node_holds_and_leaves_changed_or_busy_objects_alone() {
        let (ring, nodes, mut catalog, _) = stored_three();
        let all: Vec<usize> = (0..ringwatch_shared::data::digest::RANGES).collect();
        // "d" joined and holds the current "kept" (a copy whose
        // acknowledgement was lost) and an older "lost".
        let kept = catalog.objects[&key("kept")].clone();
        let lost = catalog.objects[&key("lost")].clone();
        let older = Version { term: 0, counter: 0 };
        let (_, asked_at) = catalog.expected(&name("d"));
        let held = vec![meta_of(&kept, kept.version), meta_of(&lost, older)];
        assert!(catalog.reconcile(&name("d"), &all, held, asked_at).is_empty());
        assert_eq!(catalog.objects[&key("kept")].holders[&name("d")], kept.version);
        assert_eq!(catalog.objects[&key("lost")].holders[&name("d")], older, "a stale copy counts as what it is");
        // The same bytes under the current version but another checksum are
        // not the object: discarded.
        let mut forged = meta_of(&kept, kept.version);
        forged.checksum = "other".into();
        let (_, asked_at) = catalog.expected(&name("e"));
        assert_eq!(catalog.reconcile(&name("e"), &all, vec![forged], asked_at), vec![(key("kept"), kept.version)]);
        // Changed after the node was asked, or a put under way: left alone.
        let (_, asked_at) = catalog.expected(&name("a"));
        let kept_version = catalog.objects[&key("kept")].version;
        catalog.remove_holder(&key("kept"), &name("b"), kept_version);
        let writing = catalog.plan_put(&key("lost"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
        assert!(catalog.reconcile(&name("a"), &all, Vec::new(), asked_at).is_empty());
        assert!(catalog.objects[&key("kept")].holders.contains_key(&name("a")), "changed since the ask");
        assert!(catalog.objects[&key("lost")].holders.contains_key(&name("a")), "a put under way");
        assert!(!catalog.objects[&key("extra")].holders.contains_key(&name("a")), "settled: reconciled");
        catalog.abandon(&key("lost"), writing.version);
    }

    #[test]
    fn a_put_no_target_took_ends_its_intent_and_one_some_took_is_recorded_on_them() {
        let (ring, nodes, mut catalog, _) = stored_three();
        let before = catalog.objects[&key("kept")].version;
        let lost = catalog.plan_put(&key("kept"), None, Consistency::All, 3, "d", &ring, &nodes).unwrap();
        assert!(
            catalog
                .take_changes()
                .iter()
                .any(|change| matches!(change, Change::Intent(i) if i.version == lost.version))
        );
        catalog.abandon(&key("kept"), lost.version);
        assert!(catalog.take_changes().contains(&Change::IntentEnded(lost.version)));
        let stat = catalog.stat(&key("kept"), &nodes).unwrap();
        assert_eq!((stat.version, stat.live_copies()), (before, 3), "nothing of it is visible");
        // Taken by "a" only, short of `all`: "a" replaced its copy, so the
        // put is recorded there (rolled forward), and the others' copies
        // count as stale, for the repair plan to update.
        let short = catalog.plan_put(&key("kept"), None, Consistency::All, 4, "e", &ring, &nodes).unwrap();
        let mut partial = stored(&short, "kept");
        partial.holders.retain(|node, _| node.as_str() == "a");
        catalog.record_put(partial);
        let stat = catalog.stat(&key("kept"), &nodes).unwrap();
        assert_eq!((stat.version, stat.live_copies()), (short.version, 1));
        assert_eq!(stat.copies.iter().filter(|copy| copy.version == before).count(), 2);
        assert!(catalog.inherited().is_empty() && catalog.underway.is_empty());
    }

    #[test]
    fn a_get_of_a_key_whose_first_put_is_under_way_says_so() {
        let (ring, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Alive)]);
        let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        let plan = catalog.plan_put(&key("new"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
        let err = catalog.plan_read(&key("new"), Consistency::One, &nodes).unwrap_err();
        assert!(matches!(&err, DataError::NotFound(why) if why.contains("being written")), "{err}");
        catalog.record_put(stored(&plan, "new"));
        assert!(catalog.plan_read(&key("new"), Consistency::One, &nodes).is_ok());
        let err = catalog.plan_read(&key("never"), Consistency::One, &nodes).unwrap_err();
        assert!(matches!(&err, DataError::NotFound(why) if why.contains("no object")), "{err}");
    }

    #[test]
    fn operations_a_previous_console_left_under_way_are_adopted_whole_or_dropped() {
        let (ring, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Alive)]);
        let mut before = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        // Overwrites: a put over a record is the kind whose intent is one.
        let mut first = BTreeMap::new();
        for object in ["held", "lost"] {
            let plan = before.plan_put(&key(object), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
            before.record_put(stored(&plan, object));
            first.insert(object, plan.version);
        }
        let held = before.plan_put(&key("held"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
        let lost = before.plan_put(&key("lost"), None, Consistency::Quorum, 3, "c", &ring, &nodes).unwrap();
        assert!(held.intent_recorded && lost.intent_recorded);
        let mut image = crate::control::records::Image::default();
        for change in before.take_changes() {
            image.apply(&change);
        }
        // The console crashed; the next one starts from its records.
        let mut after = Catalog::new(image.objects, image.intents, 1, image.data_clock);
        assert_eq!(after.inherited().len(), 2);
        assert!(
            after.plan_put(&key("x"), None, Consistency::One, 3, "c", &ring, &nodes).unwrap().version > lost.version
        );
        after.resolve(held.version, &[name("a"), name("b")]);
        after.resolve(lost.version, &[]);
        let stat = after.stat(&key("held"), &nodes).unwrap();
        assert_eq!((stat.version, stat.live_copies()), (held.version, 2));
        let stat = after.stat(&key("lost"), &nodes).unwrap();
        assert_eq!(stat.version, first["lost"], "a put nobody took leaves the version before it current");
        assert!(after.inherited().is_empty());
        let changes = after.take_changes();
        assert!(
            changes.contains(&Change::IntentEnded(held.version))
                && changes.contains(&Change::IntentEnded(lost.version))
        );
    }

    #[test]
    fn full_nodes_take_no_copies_and_a_put_no_node_has_room_for_is_refused() {
        let (ring, nodes) = fleet(&[
            ("a", NodeState::Alive),
            ("b", NodeState::Alive),
            ("c", NodeState::Alive),
            ("d", NodeState::Alive),
        ]);
        let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
        catalog.set_usage(name("a"), QuotaUse { used: 100, quota: 100 });
        for node in ["b", "c", "d"] {
            catalog.set_usage(name(node), QuotaUse { used: 0, quota: 1_000 });
        }
        let plan = catalog.plan_put(&key("k"), None, Consistency::All, 10, "c", &ring, &nodes).unwrap();
        assert!(!plan.targets.contains(&name("a")), "{plan:?}");
        let err = catalog.plan_put(&key("big"), None, Consistency::One, 5_000, "c", &ring, &nodes).unwrap_err();
        assert!(
            matches!(&err, DataError::Refused(why) if why.contains("larger than every node's free data quota") && why.contains("1000 bytes")),
            "{err}"
        );
    }

    #[test]
    fn a_collected_tombstone_is_forgotten_unless_the_key_moved_on() {
        let (_, nodes, mut catalog, _) = stored_three();
        let (version, reach) = catalog.plan_remove(&key("kept"), Consistency::All, &nodes).unwrap();
        catalog.record_remove(&key("kept"), version, &reach.holders);
        catalog.forget(&key("kept"), Version { counter: version.counter - 1, ..version });
        assert!(catalog.objects.contains_key(&key("kept")));
        catalog.take_changes();
        catalog.forget(&key("kept"), version);
        assert!(!catalog.objects.contains_key(&key("kept")));
        assert_eq!(catalog.take_changes(), vec![Change::ObjectForgotten(key("kept"))]);
        assert_eq!(
            catalog.expected(&name("a")).0,
            Digests::of(
                &["lost", "extra"].map(|k| meta_of(&catalog.objects[&key(k)], catalog.objects[&key(k)].version))
            )
        );
    }

    #[test]
    fn status_figures_count_live_copies_and_leave_out_removed_objects() {
        let (_, nodes) = fleet(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Failed)]);
        let object = |key_name: &str, size: u64, holders: &[&str], tombstone: bool| {
            let version = Version { term: 0, counter: 1 };
            StoredObject {
                key: key(key_name),
                version,
                size,
                checksum: "c".into(),
                replicas: 3,
                tombstone,
                holders: holders.iter().map(|node| (name(node), version)).collect(),
            }
        };
        let objects = [
            object("whole", 10, &["a", "b", "c"], false),
            object("short", 20, &["a"], false),
            object("lost", 40, &["c"], false),
            object("removed", 80, &["a", "b"], true),
        ];
        let catalog =
            Catalog::new(objects.iter().map(|o| (o.key.clone(), o.clone())).collect(), BTreeMap::new(), 0, None);
        let (status, by_node) = catalog.summary(&nodes);
        assert_eq!((status.objects, status.bytes), (3, 70));
        assert_eq!((status.under_replicated, status.unavailable), (2, 1), "whole is short of c, short of b and c");
        assert_eq!(by_node[&name("a")], (2, 30));
        assert_eq!(by_node[&name("b")], (1, 10));
        assert_eq!(by_node[&name("c")], (2, 50));
    }

    proptest::proptest! {
        /// `status`'s figures, kept class by class as objects change, are
        /// exactly a count of every object, whatever the nodes' states.
        #[test]
        fn the_status_figures_kept_as_objects_change_equal_a_count_of_every_object(
            ops in proptest::collection::vec((0u8..6, 0usize..8, 0usize..5, proptest::prelude::any::<u8>()), 1..150),
            states in proptest::collection::vec(0usize..4, 5),
        ) {
            const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];
            let (ring, alive) = fleet(&NAMES.map(|node| (node, NodeState::Alive)));
            let kinds = [NodeState::Alive, NodeState::Suspect, NodeState::Failed, NodeState::Left];
            let (_, nodes) = fleet(&std::array::from_fn::<_, 5, _>(|i| (NAMES[i], kinds[states[i]])));
            let mut catalog = Catalog::new(BTreeMap::new(), BTreeMap::new(), 0, None);
            for (op, object, node, extra) in ops {
                let key = key(&format!("k{object}"));
                let node = name(NAMES[node]);
                let current = catalog.objects.get(&key).map(|held| (held.version, held.tombstone));
                match (op, current) {
                    (0 | 1, _) => {
                        let replicas = Some(1 + extra % 3);
                        let size = u64::from(extra);
                        let plan = catalog.plan_put(&key, replicas, Consistency::One, size, "c", &ring, &alive).unwrap();
                        let holders: BTreeMap<NodeName, Version> = plan
                            .targets
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| extra & (1 << i) != 0)
                            .map(|(_, target)| (target.clone(), plan.version))
                            .collect();
                        if holders.is_empty() {
                            catalog.abandon(&key, plan.version);
                        } else {
                            catalog.record_put(StoredObject {
                                key: key.clone(),
                                version: plan.version,
                                size,
                                checksum: "c".into(),
                                replicas: plan.replicas,
                                tombstone: false,
                                holders,
                            });
                        }
                    }
                    (2, Some((_, false))) => {
                        if let Ok((version, reach)) = catalog.plan_remove(&key, Consistency::One, &alive) {
                            catalog.record_remove(&key, version, &reach.holders[..1]);
                        }
                    }
                    (3, Some((version, _))) => catalog.add_holder(&key, version, node),
                    (4, Some((version, _))) => catalog.remove_holder(&key, &node, version),
                    (5, Some((version, true))) => catalog.forget(&key, version),
                    _ => {}
                }
            }
            let live = |node: &NodeName| nodes.get(node).is_some_and(|info| counts(info.state));
            let (mut counted, counted_by_node) = summary(catalog.objects.values(), live);
            counted.replicas = catalog.default_replicas;
            let (kept, kept_by_node) = catalog.summary(&nodes);
            proptest::prop_assert_eq!(kept, counted);
            proptest::prop_assert_eq!(kept_by_node, counted_by_node);
        }
    }
}
