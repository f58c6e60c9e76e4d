//! The replicated data store's pure logic (README.md, "Data"): object keys,
//! versions, where an object's copies belong, what a read at a consistency
//! level returns and repairs, how replicas compare what they hold, and the
//! repair plan that brings every object back to its replica count.
//!
//! Nothing here does I/O: the console feeds it what the agents report and
//! carries out what it plans, so every rule is tested against an in-memory
//! model of the fleet.
//!
//! # Layout
//! - [`key`]: object keys (UTF-8, 1 byte to 1 KiB).
//! - [`version`]: versions (term, counter) and the console's clock.
//! - [`read`]: consistency levels and what a read of several replicas
//!   returns and repairs.
//! - [`digest`]: per-range digests replicas compare for anti-entropy.
//! - [`repair`]: the re-replication plan.
//! - [`wire`]: the messages between the console and an agent's copies.

pub mod digest;
pub mod key;
pub mod read;
pub mod repair;
pub mod version;
pub mod wire;

pub use key::ObjectKey;
pub use read::Consistency;
pub use version::{Version, VersionClock};

use serde::{Deserialize, Serialize};

/// What a replica holds of one object: its version, and either the bytes'
/// size and checksum or a tombstone (the object was removed at `version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// The key.
    pub key: ObjectKey,
    /// The version this copy is of.
    pub version: Version,
    /// Size of the bytes (0 for a tombstone).
    pub size: u64,
    /// SHA-256 (hex) of the bytes (empty for a tombstone).
    pub checksum: String,
    /// Removed at `version`: kept until every replica has applied it.
    pub tombstone: bool,
}

impl ObjectMeta {
    /// A tombstone for `key` at `version`.
    pub fn tombstone(key: ObjectKey, version: Version) -> Self {
        Self { key, version, size: 0, checksum: String::new(), tombstone: true }
    }
}

/// One copy of an object, as `data stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStat {
    /// The node holding it.
    pub node: String,
    /// That node's state now.
    pub state: crate::status::NodeState,
    /// The version it holds.
    pub version: Version,
    /// It holds the object's current version, on a node whose copies count.
    pub current: bool,
}

/// An object as `data stat` and `data ls` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStat {
    /// The key.
    pub key: ObjectKey,
    /// Its current version.
    pub version: Version,
    /// Size of the bytes.
    pub size: u64,
    /// SHA-256 (hex) of the bytes.
    pub checksum: String,
    /// The copies it should have.
    pub replicas: u8,
    /// Its copies, in the ring's order.
    pub copies: Vec<ReplicaStat>,
}

impl ObjectStat {
    /// Copies that count: the current version on a live node.
    pub fn live_copies(&self) -> usize {
        self.copies.iter().filter(|copy| copy.current).count()
    }
}

/// Why a data request failed, as the command line's exit code tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DataError {
    /// No such key (exit 4).
    #[error("{0}")]
    NotFound(String),
    /// Not enough live replicas for the consistency asked (exit 5); the
    /// sentence names the nodes that hold it and their states.
    #[error("{0}")]
    NotEnough(String),
    /// Refused before anything changed: a bad key, a size no node can
    /// take, bytes that did not match (exit 1).
    #[error("{0}")]
    Refused(String),
}
