//! What the command line does on a data dir no console holds: join tokens
//! are issued, listed and revoked straight in the store, under the data
//! dir's lock, exactly as a running console records them — so a token made
//! before the console starts is one it knows; and a PKI bundle is imported
//! (a running console would go on with the PKI it loaded).

use std::path::{Path, PathBuf};

use crate::control::pki::{ClusterPki, DirPki, ImportOutcome, PkiBundle, PkiError};
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
                reason,
                kind: ringwatch_shared::status::EventKind::Credential,
                ..Default::default()
            })
            .into_iter()
            .collect();
        store.commit(&Batch { seq: 0, changes, events })?;
    }
    Ok(outcome)
}

/// Why a PKI bundle was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A console runs on the data dir: it holds the PKI it loaded, and
    /// would hand out certificates of the old CA.
    #[error("a console is running with data dir \"{0}\": stop it before importing a PKI into its data dir")]
    ConsoleRunning(PathBuf),
    /// The bundle, the data dir or their combination is refused.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The data dir's lock could not be taken.
    #[error(transparent)]
    Console(ConsoleError),
}

/// `ringwatch pki import`: installs the bundle at `bundle_path` in
/// `data_dir`. Nothing is written — so a running console is no obstacle —
/// when the data dir already holds the bundle's PKI; anything else happens
/// under the data dir's lock.
///
/// # Errors
/// [`ImportError`]: a bundle others may read or that is not one, a data dir
/// with another CA or token key (unless `force`), a console running on it.
pub fn import_pki(data_dir: &Path, bundle_path: &Path, force: bool) -> Result<ImportOutcome, ImportError> {
    let bundle = PkiBundle::read(bundle_path)?;
    // Refusals first: an operator told to stop the console should not then
    // learn that the import was never possible.
    match bundle.compare(data_dir)? {
        DirPki::Same => return Ok(ImportOutcome::AlreadyPresent),
        DirPki::OtherCa(present) if !force => {
            return Err(
                PkiError::OtherCa { dir: data_dir.to_path_buf(), present, bundle: bundle.ca_fingerprint() }.into()
            );
        }
        DirPki::OtherTokenKey if !force => return Err(PkiError::OtherTokenKey(data_dir.to_path_buf()).into()),
        _ => {}
    }
    let _lock = lock_data_dir(data_dir).map_err(|err| match err {
        ConsoleError::AlreadyRunning(dir) => ImportError::ConsoleRunning(dir),
        other => ImportError::Console(other),
    })?;
    Ok(bundle.install(data_dir, force)?)
}
