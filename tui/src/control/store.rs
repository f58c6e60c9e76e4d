//! The console's persistent state in `state.redb` (an embedded, crash-safe
//! database): the credentials it issued, every node's last state, and the
//! event log. Values are JSON so fields can be added without migrations.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ringwatch_shared::status::{ClusterEvent, NodeState};
use serde::{Deserialize, Serialize};

use crate::control::workload::PersistedWorkloads;

/// Certificate fingerprint (hex) → [`CredentialRecord`].
const CREDENTIALS: TableDefinition<&str, &str> = TableDefinition::new("credentials");
/// Node name → last [`NodeState`].
const NODES: TableDefinition<&str, &str> = TableDefinition::new("nodes");
/// Event sequence number → [`ClusterEvent`].
const EVENTS: TableDefinition<u64, &str> = TableDefinition::new("events");
/// `"state"` → the scheduler's [`PersistedWorkloads`], written whole (and
/// atomically) on each change.
const WORKLOADS: TableDefinition<&str, &str> = TableDefinition::new("workloads");

/// How many events the log keeps; older ones are dropped.
pub const EVENT_LOG_LIMIT: u64 = 100_000;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another console holds the database.
    #[error("the state database \"{0}\" is in use by another console")]
    InUse(String),
    /// The database failed.
    #[error("state database error: {0}")]
    Database(#[from] redb::Error),
    /// A stored value does not decode.
    #[error("state database holds a value that does not decode: {0}")]
    Corrupt(#[from] serde_json::Error),
}

fn db_error(err: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(err.into())
}

/// A credential the console issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// The node name it was issued for.
    pub name: String,
    /// SHA-256 (hex) of the agent's public key.
    pub key_fingerprint: String,
    /// When it was issued, Unix seconds.
    pub issued_unix: u64,
    /// Revoked credentials are refused.
    #[serde(default)]
    pub revoked: bool,
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    /// The redb handle.
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`StoreError::InUse`] if another process has it open, or a database
    /// error.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(path.display().to_string()));
            }
            Err(err) => return Err(db_error(err)),
        };
        let txn = db.begin_write().map_err(db_error)?;
        {
            txn.open_table(CREDENTIALS).map_err(db_error)?;
            txn.open_table(NODES).map_err(db_error)?;
            txn.open_table(EVENTS).map_err(db_error)?;
            txn.open_table(WORKLOADS).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(Self { db })
    }

    /// The credential with certificate fingerprint `fingerprint`, if issued.
    ///
    /// # Errors
    /// A database or decoding error.
    pub fn credential(&self, fingerprint: &str) -> Result<Option<CredentialRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(CREDENTIALS).map_err(db_error)?;
        let Some(value) = table.get(fingerprint).map_err(db_error)? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_str(value.value())?))
    }

    /// Records a credential issued now, durably, before it is handed out.
    ///
    /// # Errors
    /// A database error.
    pub fn add_credential(&self, fingerprint: &str, record: &CredentialRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record)?;
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(CREDENTIALS).map_err(db_error)?;
            table.insert(fingerprint, json.as_str()).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    /// Marks every credential issued for node `name` revoked; returns how
    /// many were.
    ///
    /// # Errors
    /// A database or decoding error.
    pub fn revoke(&self, name: &str) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let revoked = {
            let mut table = txn.open_table(CREDENTIALS).map_err(db_error)?;
            let mut updates = Vec::new();
            for entry in table.iter().map_err(db_error)? {
                let (fingerprint, json) = entry.map_err(db_error)?;
                let mut record: CredentialRecord = serde_json::from_str(json.value())?;
                if record.name == name && !record.revoked {
                    record.revoked = true;
                    updates.push((fingerprint.value().to_string(), serde_json::to_string(&record)?));
                }
            }
            for (fingerprint, json) in &updates {
                table.insert(fingerprint.as_str(), json.as_str()).map_err(db_error)?;
            }
            updates.len()
        };
        txn.commit().map_err(db_error)?;
        Ok(revoked)
    }

    /// Every node's last recorded state.
    ///
    /// # Errors
    /// A database or decoding error.
    pub fn nodes(&self) -> Result<Vec<(String, NodeState)>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(NODES).map_err(db_error)?;
        let mut nodes = Vec::new();
        for entry in table.iter().map_err(db_error)? {
            let (name, state) = entry.map_err(db_error)?;
            nodes.push((name.value().to_string(), serde_json::from_str(state.value())?));
        }
        Ok(nodes)
    }

    /// Appends `events` to the log and records the nodes' new states, in
    /// one transaction; trims the log to [`EVENT_LOG_LIMIT`].
    ///
    /// # Errors
    /// A database error.
    pub fn record(&self, events: &[ClusterEvent]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut log = txn.open_table(EVENTS).map_err(db_error)?;
            let mut nodes = txn.open_table(NODES).map_err(db_error)?;
            for event in events {
                log.insert(event.seq, serde_json::to_string(event)?.as_str()).map_err(db_error)?;
                if let (Some(node), Some((_, to))) = (&event.node, event.change) {
                    nodes.insert(node.as_str(), serde_json::to_string(&to)?.as_str()).map_err(db_error)?;
                }
            }
            if let Some(last) = events.last().map(|event| event.seq)
                && last > EVENT_LOG_LIMIT
            {
                log.retain_in(..=last - EVENT_LOG_LIMIT, |_, _| false).map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }

    /// The scheduler's state, empty on a first start.
    ///
    /// # Errors
    /// A database or decoding error.
    pub fn workloads(&self) -> Result<PersistedWorkloads, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(WORKLOADS).map_err(db_error)?;
        match table.get("state").map_err(db_error)? {
            Some(json) => Ok(serde_json::from_str(json.value())?),
            None => Ok(PersistedWorkloads::default()),
        }
    }

    /// Replaces the scheduler's state, durably.
    ///
    /// # Errors
    /// A database error.
    pub fn save_workloads(&self, state: &PersistedWorkloads) -> Result<(), StoreError> {
        let json = serde_json::to_string(state)?;
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(WORKLOADS).map_err(db_error)?;
            table.insert("state", json.as_str()).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    /// The newest `limit` events, oldest first.
    ///
    /// # Errors
    /// A database or decoding error.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<ClusterEvent>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(EVENTS).map_err(db_error)?;
        let mut events = Vec::new();
        for entry in table.iter().map_err(db_error)?.rev().take(limit) {
            let (_, event) = entry.map_err(db_error)?;
            events.push(serde_json::from_str(event.value())?);
        }
        events.reverse();
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, node: &str, to: NodeState) -> ClusterEvent {
        ClusterEvent {
            seq,
            at_unix_ms: seq,
            node: Some(node.to_string()),
            change: Some((NodeState::Alive, to)),
            reason: "test".into(),
        }
    }

    #[test]
    fn credentials_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let record = CredentialRecord { name: "a".into(), key_fingerprint: "k".into(), issued_unix: 1, revoked: false };
        Store::open(&path).unwrap().add_credential("fp", &record).unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.credential("fp").unwrap(), Some(record));
        assert_eq!(store.credential("other").unwrap(), None);
    }

    #[test]
    fn revoking_a_name_revokes_all_its_credentials_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        let record = |name: &str| CredentialRecord {
            name: name.into(),
            key_fingerprint: "k".into(),
            issued_unix: 1,
            revoked: false,
        };
        store.add_credential("fp-1", &record("a")).unwrap();
        store.add_credential("fp-2", &record("a")).unwrap();
        store.add_credential("fp-3", &record("b")).unwrap();
        assert_eq!(store.revoke("a").unwrap(), 2);
        assert!(store.credential("fp-1").unwrap().unwrap().revoked);
        assert!(!store.credential("fp-3").unwrap().unwrap().revoked);
        assert_eq!(store.revoke("a").unwrap(), 0, "already revoked");
    }

    #[test]
    fn events_record_the_last_state_of_each_node() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        store.record(&[event(1, "a", NodeState::Failed), event(2, "b", NodeState::Left)]).unwrap();
        store.record(&[event(3, "a", NodeState::Alive)]).unwrap();
        let mut nodes = store.nodes().unwrap();
        nodes.sort();
        assert_eq!(nodes, vec![("a".into(), NodeState::Alive), ("b".into(), NodeState::Left)]);
        let recent = store.recent_events(2).unwrap();
        assert_eq!(recent.iter().map(|event| event.seq).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn workloads_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        assert!(Store::open(&path).unwrap().workloads().unwrap().tasks.is_empty());
        let mut state = PersistedWorkloads::default();
        state.cordoned.insert("a".into());
        state.next_epoch = 9;
        Store::open(&path).unwrap().save_workloads(&state).unwrap();
        let loaded = Store::open(&path).unwrap().workloads().unwrap();
        assert_eq!((loaded.next_epoch, loaded.cordoned.len()), (9, 1));
    }

    #[test]
    fn a_second_opener_is_told_the_store_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let _first = Store::open(&path).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::InUse(_))));
    }
}
