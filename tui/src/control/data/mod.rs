//! The data store's console side (README.md, "Data"; ARCHITECTURE.md,
//! "The data store"): the catalog the owner keeps, and the connection
//! handlers that move an object's bytes between a client and the agents
//! that hold it.

pub mod catalog;
pub mod entropy;
pub mod impact;
pub mod lane;
pub mod repair;
pub mod scope;
pub mod serve;

use ringwatch_shared::data::repair::RepairStep;
use ringwatch_shared::data::{Consistency, DataError, ObjectKey, ObjectStat, Version};
use ringwatch_shared::names::NodeName;

use crate::control::data::catalog::{Discards, PutPlan, QuotaUse, Reach};
use crate::control::records::{DataIntent, StoredObject};

/// The data store's settings (README.md, "Config file": `[data]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataConfig {
    /// Replicas of an object whose put names none.
    pub replicas: u8,
    /// How long a failed or departed node's copies are waited for before
    /// they are made again elsewhere (a node back sooner brings them).
    pub repair_delay: std::time::Duration,
    /// The repair copies' throttle, bytes per second.
    pub repair_rate: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            replicas: catalog::DEFAULT_REPLICAS,
            repair_delay: std::time::Duration::from_secs(5),
            repair_rate: repair::REPAIR_BYTES_PER_SEC,
        }
    }
}

/// What a connection handler asks the owner about the data store.
#[derive(Debug)]
pub enum DataInput {
    /// A version and the nodes for a put (answered once the version is
    /// durably handed out).
    PlanPut {
        /// The key.
        key: ObjectKey,
        /// The replica count asked for.
        replicas: Option<u8>,
        /// The consistency asked for.
        consistency: Consistency,
        /// The object's size.
        size: u64,
        /// Its SHA-256 (hex).
        checksum: String,
    },
    /// A put met its consistency: record it (answered once durable).
    Stored(StoredObject),
    /// No target acknowledged a put or removal: its targets are asked to
    /// discard it, and its intent ends (answered once durable).
    Abandoned {
        /// The key.
        key: ObjectKey,
        /// The operation's version.
        version: Version,
    },
    /// Which holders a read reaches.
    PlanRead {
        /// The key.
        key: ObjectKey,
        /// The consistency asked for.
        consistency: Consistency,
    },
    /// A version for a removal and the holders it reaches (answered once
    /// the version is durable).
    PlanRemove {
        /// The key.
        key: ObjectKey,
        /// The consistency asked for.
        consistency: Consistency,
    },
    /// A removal met its consistency: record the tombstone.
    Removed {
        /// The key.
        key: ObjectKey,
        /// The tombstone's version.
        version: Version,
        /// The holders that applied it.
        acked: Vec<NodeName>,
    },
    /// The objects under a prefix.
    List(String),
    /// What to repair now, and the connections to do it with.
    RepairPlan,
    /// A repair step was carried out.
    Repaired(Repaired),
    /// How fast repairs copy now, bytes per second.
    RepairRate(u64),
    /// One object.
    Stat(ObjectKey),
    /// The connected nodes for anti-entropy, and the operations a previous
    /// console left under way.
    Peers,
    /// What a node is recorded to hold, as digests.
    Expected(NodeName),
    /// What a node said it holds in some ranges (see
    /// [`catalog::Catalog::reconcile`]).
    Reconcile {
        /// The node.
        node: NodeName,
        /// The ranges listed.
        ranges: Vec<usize>,
        /// What it holds there.
        held: Vec<ringwatch_shared::data::ObjectMeta>,
        /// The generation [`DataAnswer::Expected`] gave.
        asked_at: u64,
    },
    /// A node's use of its data quota.
    Usage {
        /// The node.
        node: NodeName,
        /// Its use.
        usage: QuotaUse,
    },
    /// An inherited operation resolved: the targets holding its version.
    Resolved {
        /// The operation's version.
        version: Version,
        /// Targets that hold it.
        holding: Vec<NodeName>,
    },
}

/// A repair step that was carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repaired {
    /// `node` now holds `version` of `key` (a copy or a tombstone).
    Holds {
        /// The object.
        key: ObjectKey,
        /// The version.
        version: Version,
        /// The node.
        node: NodeName,
    },
    /// `node` no longer holds `version` of `key`: it dropped it, or a read
    /// found it missing.
    Dropped {
        /// The object.
        key: ObjectKey,
        /// The node.
        node: NodeName,
        /// The version it was recorded to hold.
        version: Version,
    },
    /// Every reachable holder dropped the tombstone of `key` at `version`.
    Forgotten {
        /// The object.
        key: ObjectKey,
        /// The tombstone's version.
        version: Version,
    },
}

/// A connection to one agent, for a data stream.
pub type AgentLink = (NodeName, quinn::Connection);

/// The owner's answer.
#[derive(Debug)]
pub enum DataAnswer {
    /// Where a put goes, with the lanes to its targets.
    Put {
        /// The plan.
        plan: PutPlan,
        /// The connected targets' lanes (with their connections), in the
        /// plan's order.
        lanes: Vec<lane::CopyLane>,
        /// The console's term, stamped on every data request.
        term: u64,
    },
    /// Whom a read or a removal reaches.
    Reach {
        /// The holders.
        reach: Reach,
        /// Their connections.
        links: Vec<AgentLink>,
        /// A removal's tombstone version.
        version: Option<Version>,
        /// The console's term.
        term: u64,
    },
    /// Recorded; the object now.
    Stat(ObjectStat),
    /// The objects listed.
    Listing(Vec<ObjectStat>),
    /// A removal recorded.
    Removed,
    /// The repair plan.
    Repair {
        /// Its steps, most urgent first.
        steps: Vec<RepairStep>,
        /// The connections of the nodes the steps name.
        links: std::collections::BTreeMap<String, quinn::Connection>,
        /// The metadata of each object a copy step copies.
        metas: std::collections::BTreeMap<ObjectKey, ringwatch_shared::data::ObjectMeta>,
        /// The console's term.
        term: u64,
    },
    /// Noted.
    Noted,
    /// Connected nodes, each with its connection, and inherited operations.
    Peers {
        /// The nodes.
        peers: Vec<AgentLink>,
        /// Operations a previous console left under way.
        inherited: Vec<DataIntent>,
        /// The console's term.
        term: u64,
    },
    /// A node's expected digests.
    Expected {
        /// Their leaves.
        digests: ringwatch_shared::data::digest::Digests,
        /// The catalog's generation when they were taken.
        asked_at: u64,
    },
    /// Copies nothing explains, to discard.
    Discards(Discards),
    /// Refused or impossible.
    Failed(DataError),
}
