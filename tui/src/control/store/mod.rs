//! Where a console's durable records live: a small trait, so that one
//! console keeps them in an embedded database ([`redb::RedbStore`], the
//! default) and a group of consoles can keep them in etcd ([`etcd`], cargo
//! feature `etcd`), and the writer thread that applies the owner's batches of
//! changes in order ([`writer`]).
//!
//! ARCHITECTURE.md, "The change log", explains the contract: batches are
//! applied in the order they are made, each atomically and durably, and
//! nothing the owner decided takes effect outside the console (a frame to an
//! agent, an answer to an operator) before the batch holding it is durable.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod redb;
pub mod round_one;
pub mod wal;
pub mod writer;

use std::path::PathBuf;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use ringwatch_shared::status::ClusterEvent;

use crate::control::records::{Change, Image, RecordError};

/// How many events a store keeps; older ones are dropped.
pub const EVENT_LOG_LIMIT: u64 = 100_000;

/// Buckets of a lease renewal's round trip, seconds: from an idle etcd on
/// a fast disk to one slow enough to cost a 2 s lease (a second).
pub const RENEWAL_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0];

/// What a console of a group counts of its etcd lease, for `/metrics`
/// (README.md, "Metrics"): renewals growing slow are etcd in trouble, seen
/// before the leadership goes; step-downs, the takeovers it cost. Zero for
/// a console on the embedded store.
#[derive(Debug, Clone)]
pub struct LeaseTallies {
    /// How long etcd took to confirm each renewal of this console's lease
    /// (leading, or campaigning for the leadership), seconds.
    pub renewal_seconds: Histogram,
    /// Leaderships this console lost without resigning: a renewal
    /// unconfirmed too long, the lease expired or revoked, the election
    /// key deleted.
    pub step_downs: Counter,
}

impl Default for LeaseTallies {
    fn default() -> Self {
        Self { renewal_seconds: Histogram::new(RENEWAL_BUCKETS), step_downs: Counter::default() }
    }
}

/// One atomic, durable step of the change log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Batch {
    /// Its position: batches are applied in increasing order.
    pub seq: u64,
    /// Changes, applied in order.
    pub changes: Vec<Change>,
    /// Events appended to the event log.
    pub events: Vec<ClusterEvent>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.events.is_empty()
    }

    /// Appends `later` to this batch: one commit for both, in order.
    pub fn absorb(&mut self, later: Self) {
        self.seq = self.seq.max(later.seq);
        self.changes.extend(later.changes);
        self.events.extend(later.events);
    }
}

/// What a store holds, as loaded at start.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Loaded {
    /// Every record.
    pub image: Image,
    /// The newest events, oldest first.
    pub events: Vec<ClusterEvent>,
}

/// A store of a console's records.
pub trait StateStore: Send + 'static {
    /// Every record and the newest `recent_events` events.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read or holds records that do
    /// not decode: a console never starts on a state it cannot trust.
    fn load(&mut self, recent_events: usize) -> Result<Loaded, StoreError>;

    /// Applies `batch` atomically and durably.
    ///
    /// # Errors
    /// [`StoreError`] when it could not be written; nothing of it was.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;

    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// Why a store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another console holds the database.
    #[error("the state database \"{0}\" is in use by another console")]
    InUse(PathBuf),
    /// The file exists but is empty: not a database, perhaps truncated.
    #[error(
        "the state database \"{0}\" is empty (0 bytes): it was truncated or replaced, and starting on it would forget every credential, task and placement; restore it from a backup, or move it away to start a new, empty cluster state (every agent must then join again)"
    )]
    Empty(PathBuf),
    /// The file is damaged.
    #[error(
        "the state database \"{path}\" is damaged ({reason}); restore it from a backup, or move it away to start a new, empty cluster state (every agent must then join again)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, as the database said it.
        reason: String,
    },
    /// A record does not decode.
    #[error("the state database \"{path}\" holds a record that does not decode: {source}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Which record, and why.
        source: RecordError,
    },
    /// The embedded store's write-ahead file cannot be used.
    #[error(transparent)]
    Log(#[from] wal::WalError),
    /// Reading or writing failed.
    #[error("state database \"{path}\": {reason}")]
    Database {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A write conditioned on this console's leadership was refused: the
    /// leadership ended (its etcd lease expired or was revoked, or its
    /// election key is gone), so another console may lead. Retrying cannot
    /// succeed; the console must stand by and campaign again.
    #[error(
        "this console no longer leads the group (term {term}): its etcd lease expired or was revoked, or its election key is gone, so another console may lead; nothing of the write was stored"
    )]
    NotLeader {
        /// The term that ended.
        term: u64,
    },
    /// etcd could not be reached, refused a request or did not answer in
    /// time.
    #[error("etcd {store}: {reason}")]
    Etcd {
        /// The endpoints and prefix, as [`StateStore::describe`] says them.
        store: String,
        /// What failed, and what to check.
        reason: String,
    },
    /// etcd holds a record, event or election value that does not decode.
    #[error(
        "etcd {store} holds data that does not decode ({reason}); a console never starts on a state it cannot trust: restore the prefix from a backup, or remove the key with etcdctl"
    )]
    EtcdData {
        /// The endpoints and prefix.
        store: String,
        /// Which key, and why.
        reason: String,
    },
}
