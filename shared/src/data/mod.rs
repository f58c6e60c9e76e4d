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
