//! The durable records of a console and the typed changes that write them
//! (ARCHITECTURE.md, "The change log").
//!
//! Everything that must survive a crash is one of these records: the
//! desired tasks, each instance's placement and every pending step of its
//! life (a migration's old copy, a delayed failover's deadline), each node's
//! cordon and drain, the cluster's epoch counter and failover pause, the
//! credentials and join tokens. The owner changes them only by emitting a
//! [`Change`] — a whole new record, or a removal — and the store applies the
//! changes in order, by one writer, in batches that are atomic and durable.
//! A store is therefore a map from [`Change::key`] to the record's JSON: the
//! same shape in the embedded database and in etcd.
//!
//! Times that must survive a restart are wall-clock milliseconds since the
//! Unix epoch: an [`std::time::Instant`] means nothing to the next process.

use std::collections::{BTreeMap, BTreeSet};

use ringwatch_shared::data::{ObjectKey, Version};
use ringwatch_shared::names::{InstanceId, NodeName, TaskName};
use ringwatch_shared::protocol::{InstanceState, OperatorRole};
use ringwatch_shared::status::NodeState;
use ringwatch_shared::task::TaskSpec;
use serde::{Deserialize, Serialize};

/// Where one copy of an instance runs: a node, and the epoch the console
/// gave that placement. A report matches a placement only with both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The node.
    pub node: NodeName,
    /// The placement's epoch: unique across the cluster's history.
    pub epoch: u64,
}

/// One instance of a task, as the console means it to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `task/index`.
    pub id: InstanceId,
    /// Where it is meant to run; `None` while pending.
    pub placement: Option<Placement>,
    /// The old copy of a make-before-break move, kept until the new copy has
    /// run `min_healthy`.
    #[serde(default)]
    pub source: Option<Placement>,
    /// Its node failed: the wall-clock time it may move (a delayed or fenced
    /// failover), cancelled if the node returns first.
    #[serde(default)]
    pub failover_due_unix_ms: Option<u64>,
    /// Nodes it gave up on (a crash loop, a refused command): avoided until
    /// it runs healthy somewhere, or its task's command changes.
    #[serde(default)]
    pub avoid: BTreeSet<NodeName>,
    /// Moved by failover and not yet healthy: counts against a gradual
    /// task's `max_parallel`.
    #[serde(default)]
    pub settling: bool,
    /// It was placed at least once: placing it again is a move (rate-limited,
    /// paced), not a first start.
    #[serde(default)]
    pub placed_before: bool,
    /// What its agent last reported of the current placement: what a
    /// standby console shows (a leader relearns it from the agents).
    #[serde(default)]
    pub reported: Option<InstanceState>,
    /// Restarts in place its agent reported.
    #[serde(default)]
    pub restarts: u32,
}

impl InstanceRecord {
    /// A pending instance that never ran.
    pub fn new(id: InstanceId) -> Self {
        Self {
            id,
            placement: None,
            source: None,
            failover_due_unix_ms: None,
            avoid: BTreeSet::new(),
            settling: false,
            placed_before: false,
            reported: None,
            restarts: 0,
        }
    }

    /// The node it is placed on.
    pub fn node(&self) -> Option<&NodeName> {
        self.placement.as_ref().map(|placement| &placement.node)
    }

    /// Whether `node` holds a copy the console placed: the current one or a
    /// migration's old one.
    pub fn touches(&self, node: &str) -> bool {
        self.placement.iter().chain(&self.source).any(|placement| placement.node.as_str() == node)
    }
}

/// What an operator decided about a node, and its last known state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node.
    pub name: NodeName,
    /// Its state when last recorded: after a restart, a node that had left
    /// stays `left`; any other is `unknown` until it reconnects.
    pub last_state: NodeState,
    /// Takes no new work.
    #[serde(default)]
    pub cordoned: bool,
    /// Being drained: every instance on it moves away, make-before-break,
    /// at its task's pace. Cleared when the last one has moved.
    #[serde(default)]
    pub draining: bool,
    /// Drained, not merely cordoned: until it is uncordoned, the data
    /// store's copies move off it too (README.md, "Data"), also once every
    /// instance has moved and `draining` is cleared.
    #[serde(default)]
    pub drained: bool,
}

impl NodeRecord {
    /// A node seen for the first time.
    pub fn new(name: NodeName, last_state: NodeState) -> Self {
        Self { name, last_state, cordoned: false, draining: false, drained: false }
    }
}

/// Cluster-wide counters and switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The highest epoch ever given to a placement. A report carrying a
    /// higher one did not come from this console.
    pub last_epoch: u64,
    /// Why automatic failover is paused, if it is.
    #[serde(default)]
    pub failover_paused: Option<String>,
    /// Seeds the random placement strategies: plans draw from it without
    /// changing it, executions advance it, so a plan and its execution pick
    /// the same nodes.
    pub placement_seed: u64,
    /// The round-robin strategy's position.
    #[serde(default)]
    pub round_robin: u64,
}

impl ClusterRecord {
    /// A new cluster whose random placements start from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { last_epoch: 0, failover_paused: None, placement_seed: seed, round_robin: 0 }
    }
}

/// A client certificate the console issued to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// The node name it was issued for: a name belongs to the key that
    /// first joined under it until that credential is revoked.
    pub name: NodeName,
    /// SHA-256 (hex) of the agent's public key.
    pub key_fingerprint: String,
    /// When it was issued, Unix seconds.
    pub issued_unix: u64,
    /// Revoked credentials are refused.
    #[serde(default)]
    pub revoked: bool,
    /// The join token it was issued for: a revoked node does not join again
    /// with the token it used. A renewed credential keeps its
    /// predecessor's.
    #[serde(default)]
    pub token_id: Option<String>,
    /// When the certificate expires, Unix seconds (`None` for credentials
    /// recorded before certificates were renewed).
    #[serde(default)]
    pub expires_unix: Option<u64>,
    /// The fingerprint of the certificate that renewed this one: it stays
    /// valid until it expires or the agent connects with the renewed one
    /// (then this record is removed), and no longer owns the node's name.
    #[serde(default)]
    pub renewed_to: Option<String>,
}

/// A join token the console issued. Tokens are verified by their MAC; the
/// record makes them listable and revocable.
/// An operator credential (README.md, "Operating ringwatch"): a client
/// certificate the console signed for a person or a script, with a role.
/// Recorded by certificate fingerprint, like an agent's; revoked ones stay
/// recorded, so that they are refused across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRecord {
    /// SHA-256 (hex) of the certificate.
    pub fingerprint: String,
    /// Its name, unique among unrevoked operator credentials.
    pub name: String,
    /// What it may do.
    pub role: OperatorRole,
    /// When it was issued, Unix seconds.
    pub issued_unix: u64,
    /// When its certificate expires, Unix seconds.
    pub expires_unix: u64,
    /// Revoked by an operator.
    #[serde(default)]
    pub revoked: bool,
}

/// An object of the data store (README.md, "Data"): its current version
/// and which node holds which version of it, as acknowledged to the
/// console. Only what met its consistency is recorded: a put that failed
/// leaves no record, so no reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// The key.
    pub key: ObjectKey,
    /// The current version (a tombstone's, once removed).
    pub version: Version,
    /// Size of the bytes.
    pub size: u64,
    /// Their SHA-256 (hex).
    pub checksum: String,
    /// Copies to keep.
    pub replicas: u8,
    /// Removed at `version`.
    #[serde(default)]
    pub tombstone: bool,
    /// The version each holder acknowledged.
    pub holders: BTreeMap<NodeName, Version>,
}

impl StoredObject {
    /// The holders of the current version (the others hold an older one).
    pub fn current_holders(&self) -> impl Iterator<Item = &NodeName> {
        self.holders.iter().filter(|(_, version)| **version == self.version).map(|(node, _)| node)
    }
}

/// A put or a removal under way (README.md, "Data"; ARCHITECTURE.md, "The
/// data store"): durable with its version before any agent is asked, and
/// removed once the operation is recorded or rolled back. One found when a
/// console starts was cut short by a crash of its predecessor: the new
/// leader asks its targets and adopts what they hold, whole, or drops it —
/// so a crash mid-put leaves the object complete or absent, and a copy no
/// intent explains is known to be debris (a failed put's) and discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataIntent {
    /// The key.
    pub key: ObjectKey,
    /// The version handed out for it.
    pub version: Version,
    /// The nodes asked to hold it.
    pub targets: Vec<NodeName>,
    /// A removal (a tombstone) rather than a put.
    #[serde(default)]
    pub removal: bool,
    /// A put's size.
    #[serde(default)]
    pub size: u64,
    /// A put's SHA-256 (hex).
    #[serde(default)]
    pub checksum: String,
    /// A put's replica count.
    #[serde(default)]
    pub replicas: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its id, as printed in the token and by `join-token --list`.
    pub id: String,
    /// When it was issued, Unix seconds.
    pub issued_unix: u64,
    /// When it expires, Unix seconds.
    pub expires_unix: u64,
    /// Revoked tokens are refused.
    #[serde(default)]
    pub revoked: bool,
}

/// One durable change: a whole record written, or one removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A task added or replaced.
    Task(TaskSpec),
    /// A task removed.
    TaskRemoved(TaskName),
    /// An instance's record.
    Instance(InstanceRecord),
    /// An instance removed (scaled down, task removed).
    InstanceRemoved(InstanceId),
    /// A node's record.
    Node(NodeRecord),
    /// The cluster record.
    Cluster(ClusterRecord),
    /// A credential, by the SHA-256 (hex) of its certificate.
    Credential {
        /// The certificate's fingerprint.
        fingerprint: String,
        /// The record.
        record: CredentialRecord,
    },
    /// A renewed credential removed: its agent connected with the
    /// certificate that renewed it.
    CredentialRemoved(String),
    /// A join token's record.
    Token(TokenRecord),
    /// An operator credential, issued or revoked.
    Operator(OperatorRecord),
    /// A data store object, stored, changed or removed (a tombstone).
    Object(StoredObject),
    /// A collected tombstone: the object is forgotten.
    ObjectForgotten(ObjectKey),
    /// The highest object version handed out: a restarted console never
    /// hands out one again, even for a put that failed.
    DataClock(Version),
    /// A put or removal begun.
    Intent(DataIntent),
    /// A put or removal recorded or rolled back, by its version.
    IntentEnded(Version),
}

/// The key prefixes of the records, one per kind.
pub mod prefix {
    /// Tasks, by name.
    pub const TASK: &str = "task/";
    /// Instances, by `task/index`.
    pub const INSTANCE: &str = "instance/";
    /// Nodes, by name.
    pub const NODE: &str = "node/";
    /// The one cluster record.
    pub const CLUSTER: &str = "cluster";
    /// Credentials, by certificate fingerprint.
    pub const CREDENTIAL: &str = "credential/";
    /// Join tokens, by id.
    pub const TOKEN: &str = "token/";
    /// Operator credentials, by certificate fingerprint.
    pub const OPERATOR: &str = "operator/";
    /// Data store objects, by key.
    pub const OBJECT: &str = "object/";
    /// The data store's version clock.
    pub const DATA_CLOCK: &str = "data-clock";
    /// Puts and removals under way, by version (`term.counter`).
    pub const DATA_INTENT: &str = "data-intent/";
}

/// A version as an intent's key names it, back.
fn parse_version(text: &str) -> Option<Version> {
    let (term, counter) = text.split_once('.')?;
    Some(Version { term: term.parse().ok()?, counter: counter.parse().ok()? })
}

impl Change {
    /// The key of the record it writes or removes.
    pub fn key(&self) -> String {
        match self {
            Self::Task(spec) => format!("{}{}", prefix::TASK, spec.name),
            Self::TaskRemoved(name) => format!("{}{name}", prefix::TASK),
            Self::Instance(record) => format!("{}{}", prefix::INSTANCE, record.id),
            Self::InstanceRemoved(id) => format!("{}{id}", prefix::INSTANCE),
            Self::Node(record) => format!("{}{}", prefix::NODE, record.name),
            Self::Cluster(_) => prefix::CLUSTER.to_string(),
            Self::Credential { fingerprint, .. } | Self::CredentialRemoved(fingerprint) => {
                format!("{}{fingerprint}", prefix::CREDENTIAL)
            }
            Self::Token(record) => format!("{}{}", prefix::TOKEN, record.id),
            Self::Operator(record) => format!("{}{}", prefix::OPERATOR, record.fingerprint),
            Self::Object(record) => format!("{}{}", prefix::OBJECT, record.key),
            Self::ObjectForgotten(key) => format!("{}{key}", prefix::OBJECT),
            Self::DataClock(_) => prefix::DATA_CLOCK.to_string(),
            Self::Intent(intent) => format!("{}{}", prefix::DATA_INTENT, intent.version),
            Self::IntentEnded(version) => format!("{}{version}", prefix::DATA_INTENT),
        }
    }

    /// The record's JSON, or `None` for a removal.
    ///
    /// # Errors
    /// When the record cannot be encoded (it always can: plain data).
    pub fn value(&self) -> Result<Option<String>, serde_json::Error> {
        Ok(Some(match self {
            Self::TaskRemoved(_)
            | Self::InstanceRemoved(_)
            | Self::CredentialRemoved(_)
            | Self::ObjectForgotten(_)
            | Self::IntentEnded(_) => {
                return Ok(None);
            }
            Self::Task(spec) => serde_json::to_string(spec)?,
            Self::Instance(record) => serde_json::to_string(record)?,
            Self::Node(record) => serde_json::to_string(record)?,
            Self::Cluster(record) => serde_json::to_string(record)?,
            Self::Credential { record, .. } => serde_json::to_string(record)?,
            Self::Token(record) => serde_json::to_string(record)?,
            Self::Operator(record) => serde_json::to_string(record)?,
            Self::Object(record) => serde_json::to_string(record)?,
            Self::DataClock(version) => serde_json::to_string(version)?,
            Self::Intent(intent) => serde_json::to_string(intent)?,
        }))
    }
}

/// Every durable record, in memory: what a store loads at start and what
/// the changes keep up to date.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    /// Desired tasks.
    pub tasks: BTreeMap<TaskName, TaskSpec>,
    /// Instances.
    pub instances: BTreeMap<InstanceId, InstanceRecord>,
    /// Nodes.
    pub nodes: BTreeMap<NodeName, NodeRecord>,
    /// The cluster record; `None` before the first start wrote one.
    pub cluster: Option<ClusterRecord>,
    /// Credentials by certificate fingerprint.
    pub credentials: BTreeMap<String, CredentialRecord>,
    /// Join tokens by id.
    pub tokens: BTreeMap<String, TokenRecord>,
    /// Operator credentials by certificate fingerprint.
    pub operators: BTreeMap<String, OperatorRecord>,
    /// Data store objects by key.
    pub objects: BTreeMap<ObjectKey, StoredObject>,
    /// The highest object version handed out.
    pub data_clock: Option<Version>,
    /// Puts and removals under way, by version.
    pub intents: BTreeMap<Version, DataIntent>,
}

/// A stored record that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("record \"{key}\" does not decode: {reason}")]
pub struct RecordError {
    /// Its key.
    pub key: String,
    /// Why.
    pub reason: String,
}

impl Image {
    /// Applies one change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Task(spec) => {
                self.tasks.insert(spec.name.clone(), spec.clone());
            }
            Change::TaskRemoved(name) => {
                self.tasks.remove(name);
            }
            Change::Instance(record) => {
                self.instances.insert(record.id.clone(), record.clone());
            }
            Change::InstanceRemoved(id) => {
                self.instances.remove(id);
            }
            Change::Node(record) => {
                self.nodes.insert(record.name.clone(), record.clone());
            }
            Change::Cluster(record) => self.cluster = Some(record.clone()),
            Change::Credential { fingerprint, record } => {
                self.credentials.insert(fingerprint.clone(), record.clone());
            }
            Change::CredentialRemoved(fingerprint) => {
                self.credentials.remove(fingerprint);
            }
            Change::Token(record) => {
                self.tokens.insert(record.id.clone(), record.clone());
            }
            Change::Operator(record) => {
                self.operators.insert(record.fingerprint.clone(), record.clone());
            }
            Change::Object(record) => {
                self.objects.insert(record.key.clone(), record.clone());
            }
            Change::ObjectForgotten(key) => {
                self.objects.remove(key);
            }
            Change::DataClock(version) => self.data_clock = Some(*version),
            Change::Intent(intent) => {
                self.intents.insert(intent.version, intent.clone());
            }
            Change::IntentEnded(version) => {
                self.intents.remove(version);
            }
        }
    }

    /// Adds the record stored under `key` as `json` (a store's load).
    /// Unknown kinds are skipped: a newer console may have written them.
    ///
    /// # Errors
    /// [`RecordError`] when the record does not decode or its key does not
    /// match its content.
    pub fn load(&mut self, key: &str, json: &str) -> Result<(), RecordError> {
        let bad = |reason: String| RecordError { key: key.to_string(), reason };
        let change = if let Some(name) = key.strip_prefix(prefix::TASK) {
            let spec: TaskSpec = serde_json::from_str(json).map_err(|err| bad(err.to_string()))?;
            check_key(name, spec.name.as_str()).map_err(bad)?;
            Change::Task(spec)
        } else if let Some(id) = key.strip_prefix(prefix::INSTANCE) {
            let record: InstanceRecord = serde_json::from_str(json).map_err(|err| bad(err.to_string()))?;
            check_key(id, &record.id.to_string()).map_err(bad)?;
            Change::Instance(record)
        } else if let Some(name) = key.strip_prefix(prefix::NODE) {
            let record: NodeRecord = serde_json::from_str(json).map_err(|err| bad(err.to_string()))?;
            check_key(name, record.name.as_str()).map_err(bad)?;
            Change::Node(record)
        } else if key == prefix::CLUSTER {
            Change::Cluster(serde_json::from_str(json).map_err(|err| bad(err.to_string()))?)
        } else if let Some(fingerprint) = key.strip_prefix(prefix::CREDENTIAL) {
            let record = serde_json::from_str(json).map_err(|err| bad(err.to_string()))?;
            Change::Credential { fingerprint: fingerprint.to_string(), record }
        } else if let Some(id) = key.strip_prefix(prefix::TOKEN) {
            let record: TokenRecord = serde_json::from_str(json).map_err(|err| bad(err.to_string()))?;
            check_key(id, &record.id).map_err(bad)?;
            Change::Token(record)
        } else if let Some(fingerprint) = key.strip_prefix(prefix::OPERATOR) {
            let record: OperatorRecord = serde_json::from_str(json).map_err(|err| bad(err.to_string()))?;
            check_key(fingerprint, &record.fingerprint).map_err(bad)?;
            Change::Operator(record)
        } else if let Some(key) = key.strip_prefix(prefix::OBJECT) {
            let record: StoredObject = serde_json::from_str(json).map_err(|err| bad(err.to_string()))?;
            check_key(key, record.key.as_str()).map_err(bad)?;
            Change::Object(record)
        } else if key == prefix::DATA_CLOCK {
            Change::DataClock(serde_json::from_str(json).map_err(|err| bad(err.to_string()))?)
        } else if let Some(version) = key.strip_prefix(prefix::DATA_INTENT) {
            let intent: DataIntent = serde_json::from_str(json).map_err(|err| bad(err.to_string()))?;
            check_key(version, &intent.version.to_string()).map_err(bad)?;
            Change::Intent(intent)
        } else {
            tracing::warn!(key, "skipped a stored record of an unknown kind");
            return Ok(());
        };
        self.apply(&change);
        Ok(())
    }
}

impl Image {
    /// Removes the record stored under `key`, as a store's deletion (a
    /// standby following the store sees removals by key only). Keys of
    /// unknown kinds, or naming nothing held, change nothing.
    pub fn remove(&mut self, key: &str) {
        if let Some(name) = key.strip_prefix(prefix::TASK) {
            self.tasks.remove(name);
        } else if let Some(id) = key.strip_prefix(prefix::INSTANCE) {
            if let Ok(id) = InstanceId::parse(id) {
                self.instances.remove(&id);
            }
        } else if let Some(name) = key.strip_prefix(prefix::NODE) {
            self.nodes.remove(name);
        } else if key == prefix::CLUSTER {
            self.cluster = None;
        } else if let Some(fingerprint) = key.strip_prefix(prefix::CREDENTIAL) {
            self.credentials.remove(fingerprint);
        } else if let Some(id) = key.strip_prefix(prefix::TOKEN) {
            self.tokens.remove(id);
        } else if let Some(fingerprint) = key.strip_prefix(prefix::OPERATOR) {
            self.operators.remove(fingerprint);
        } else if let Some(key) = key.strip_prefix(prefix::OBJECT) {
            self.objects.retain(|stored, _| stored.as_str() != key);
        } else if key == prefix::DATA_CLOCK {
            self.data_clock = None;
        } else if let Some(version) = key.strip_prefix(prefix::DATA_INTENT).and_then(parse_version) {
            self.intents.remove(&version);
        }
    }

    /// Applies what a store holds under `key` now: the record's JSON, or
    /// `None` when it was removed (a standby following the store).
    ///
    /// # Errors
    /// [`RecordError`] when the record does not decode (see [`Image::load`]).
    pub fn load_stored(&mut self, key: &str, json: Option<&str>) -> Result<(), RecordError> {
        match json {
            Some(json) => self.load(key, json),
            None => {
                self.remove(key);
                Ok(())
            }
        }
    }
}

fn check_key(in_key: &str, in_value: &str) -> Result<(), String> {
    if in_key == in_value { Ok(()) } else { Err(format!("its key names \"{in_key}\" but it holds \"{in_value}\"")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeName {
        NodeName::parse(name).unwrap()
    }

    #[test]
    fn every_change_round_trips_through_its_key_and_value() {
        let id = InstanceId::parse("web/3").unwrap();
        let mut instance = InstanceRecord::new(id.clone());
        instance.placement = Some(Placement { node: node("a"), epoch: 7 });
        instance.source = Some(Placement { node: node("b"), epoch: 5 });
        instance.failover_due_unix_ms = Some(1_700_000_000_000);
        instance.avoid.insert(node("c"));
        let changes = [
            Change::Instance(instance),
            Change::Node(NodeRecord {
                name: node("a"),
                last_state: NodeState::Alive,
                cordoned: true,
                draining: true,
                drained: true,
            }),
            Change::Cluster(ClusterRecord::new(42)),
            Change::Credential {
                fingerprint: "ab12".into(),
                record: CredentialRecord {
                    name: node("a"),
                    key_fingerprint: "k".into(),
                    issued_unix: 1,
                    revoked: false,
                    token_id: Some("t1".into()),
                    expires_unix: Some(3),
                    renewed_to: Some("cd34".into()),
                },
            },
            Change::Token(TokenRecord { id: "t1".into(), issued_unix: 1, expires_unix: 2, revoked: true }),
            Change::Object(StoredObject {
                key: ObjectKey::parse("photos/2026/a b.jpg").unwrap(),
                version: Version { term: 2, counter: 9 },
                size: 5,
                checksum: "ab".into(),
                replicas: 3,
                tombstone: false,
                holders: BTreeMap::from([(node("a"), Version { term: 2, counter: 9 })]),
            }),
            Change::DataClock(Version { term: 2, counter: 10 }),
            Change::Intent(DataIntent {
                key: ObjectKey::parse("photos/b").unwrap(),
                version: Version { term: 2, counter: 11 },
                targets: vec![node("a"), node("b")],
                removal: false,
                size: 7,
                checksum: "cd".into(),
                replicas: 2,
            }),
            Change::Operator(OperatorRecord {
                fingerprint: "cd34".into(),
                name: "alice".into(),
                role: OperatorRole::Viewer,
                issued_unix: 1,
                expires_unix: 2,
                revoked: true,
            }),
        ];
        let mut direct = Image::default();
        let mut loaded = Image::default();
        for change in &changes {
            direct.apply(change);
            loaded.load(&change.key(), &change.value().unwrap().unwrap()).unwrap();
        }
        assert_eq!(direct, loaded);
        assert_eq!(direct.instances[&id].source.as_ref().unwrap().epoch, 5);
    }

    #[test]
    fn a_record_under_the_wrong_key_or_garbled_is_refused() {
        let record = Change::Node(NodeRecord::new(node("a"), NodeState::Alive));
        let json = record.value().unwrap().unwrap();
        let mut image = Image::default();
        assert!(image.load("node/b", &json).unwrap_err().to_string().contains("\"node/b\""));
        assert!(image.load("node/a", "{not json").is_err());
        image.load("future-kind/x", "{}").unwrap();
        assert_eq!(image, Image::default());
    }

    #[test]
    fn a_removal_by_key_undoes_every_kind_of_record() {
        let id = InstanceId::parse("web/3").unwrap();
        let changes = [
            Change::Instance(InstanceRecord::new(id.clone())),
            Change::Node(NodeRecord::new(node("a"), NodeState::Alive)),
            Change::Cluster(ClusterRecord::new(42)),
            Change::Token(TokenRecord { id: "t1".into(), issued_unix: 1, expires_unix: 2, revoked: false }),
            Change::Intent(DataIntent {
                key: ObjectKey::parse("k").unwrap(),
                version: Version { term: 3, counter: 4 },
                targets: vec![node("a")],
                removal: true,
                size: 0,
                checksum: String::new(),
                replicas: 0,
            }),
        ];
        let mut image = Image::default();
        for change in &changes {
            image.load_stored(&change.key(), change.value().unwrap().as_deref()).unwrap();
        }
        assert_eq!(image.instances.len(), 1);
        assert_eq!(image.intents.len(), 1);
        assert_eq!(Change::IntentEnded(Version { term: 3, counter: 4 }).key(), changes[4].key());
        for change in &changes {
            image.load_stored(&change.key(), None).unwrap();
        }
        image.remove("instance/not an id");
        image.remove("future-kind/x");
        assert_eq!(image, Image::default());
        image.load_stored(&Change::InstanceRemoved(id).key(), None).unwrap();
    }
}
