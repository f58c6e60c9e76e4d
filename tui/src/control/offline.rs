//! What the command line does on a data dir no console holds: join tokens
//! are issued, listed and revoked straight in the store, under the data
//! dir's lock, exactly as a running console records them — so a token made
//! before the console starts is one it knows.

use std::path::Path;

use crate::control::pki::ClusterPki;
use crate::control::records::Change;
use crate::control::registry::Registry;
use crate::control::store::redb::RedbStore;
use crate::control::store::{Batch, StateStore};
use crate::control::{ConsoleError, STATE_FILE, lock_data_dir};

/// Runs `work` on the registry of the store in `data_dir` (made if new) and
/// commits what it changed, with `event` in the event log when it changed
/// something.
///
/// # Errors
/// [`ConsoleError`] when a console holds the data dir, or the PKI or store
/// is unusable.
pub fn with_registry<T>(
    data_dir: &Path,
    work: impl FnOnce(&mut Registry, &ClusterPki) -> T,
    event: impl FnOnce(&T) -> Option<String>,
) -> Result<T, ConsoleError> {
    let _lock = lock_data_dir(data_dir)?;
    let pki = ClusterPki::load_or_create(data_dir)?;
    let mut store = RedbStore::open(&data_dir.join(STATE_FILE))?;
    let loaded = store.load(1)?;
    let mut registry = Registry::from_image(&loaded.image);
    let outcome = work(&mut registry, &pki);
    let changes: Vec<Change> = registry.take_changes();
    if !changes.is_empty() {
        let events = event(&outcome)
            .map(|reason| ringwatch_shared::status::ClusterEvent {
                seq: loaded.events.last().map_or(1, |last| last.seq + 1),
                at_unix_ms: crate::control::pki::unix_now().saturating_mul(1000),
                node: None,
                change: None,
                reason,
            })
            .into_iter()
            .collect();
        store.commit(&Batch { seq: 0, changes, events })?;
    }
    Ok(outcome)
}
