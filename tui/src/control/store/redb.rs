//! The embedded store: `state.redb`, a crash-safe database (redb) with two
//! tables — the records by key, as JSON, and the event log by sequence
//! number — and in front of it the write-ahead file `state.wal`
//! ([`super::wal`]). Every commit is durable before it returns: appended to
//! the file and synced. The database catches up in one commit of
//! everything a file holds: once the file passes its fold size
//! ([`DEFAULT_FOLD_AT`]; `[change_log] fold_at` in the console's config
//! file), it is renamed `state.wal.folding` and folded on a thread of its
//! own while commits go on to a new `state.wal`, so a fold never holds up
//! a commit; when the
//! store is opened (a crash's leftovers: `state.wal.folding` first, the
//! older) and when it is closed, synchronously. Folding twice is harmless —
//! each batch sets records to values and events at their numbers —, so a
//! crash between the database's commit and the removal or emptying of a
//! file loses and repeats nothing.
//!
//! A damaged file is never trusted and never replaced silently: an empty
//! file, a failed integrity check, a record that does not decode, or a panic
//! inside the database library while opening or loading all end the start
//! with an error that names the file.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use ringwatch_shared::status::ClusterEvent;
use tracing::{debug, error, info, warn};

use super::round_one::{self, RoundOne};
use super::wal::{Wal, WalBatch};
use super::{Batch, EVENT_LOG_LIMIT, Loaded, StateStore, StoreError};
use crate::control::records::Image;

/// Record key (see [`crate::control::records::Change::key`]) → JSON.
const RECORDS: TableDefinition<&str, &str> = TableDefinition::new("records");
/// Event sequence number → [`ClusterEvent`] JSON.
const EVENTS: TableDefinition<u64, &str> = TableDefinition::new("events");
/// The first round's tables (store::round_one), read once and kept.
const ROUND_ONE_CREDENTIALS: TableDefinition<&str, &str> = TableDefinition::new("credentials");
const ROUND_ONE_NODES: TableDefinition<&str, &str> = TableDefinition::new("nodes");
const ROUND_ONE_WORKLOADS: TableDefinition<&str, &str> = TableDefinition::new("workloads");

/// The write-ahead file's size at which the database catches up, unless
/// the console's config says otherwise: a few seconds of the busiest
/// writing, and what the store keeps in memory meanwhile (twice, while a
/// fold runs).
pub const DEFAULT_FOLD_AT: u64 = 4 << 20;
/// The smallest and largest fold sizes a config may set.
pub const FOLD_AT_RANGE: std::ops::RangeInclusive<u64> = (4 << 10)..=(1 << 30);

/// Buckets of a fold's duration, seconds: from a small file on a fast
/// disk to a full one on a disk in trouble.
pub const FOLD_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// What the store counts of its change log, for `/metrics` (README.md,
/// "Metrics"): folds taking longer are a disk slowing down, seen before
/// the commits wait on it; folds failing, a disk refusing writes while
/// the write-ahead file still takes them.
#[derive(Debug, Clone)]
pub struct ChangeLogTallies {
    /// Folds into the database that succeeded, while the console runs
    /// (the fold when it opens the store comes before anyone counts).
    pub folds: Counter,
    /// Folds that failed; their batches are folded again with the next.
    pub failed_folds: Counter,
    /// How long each fold took, failed ones too, seconds.
    pub fold_seconds: Histogram,
    /// Bytes in the open write-ahead file, `state.wal`, not yet handed to
    /// a fold.
    pub open_bytes: Gauge,
}

impl Default for ChangeLogTallies {
    fn default() -> Self {
        Self {
            folds: Counter::default(),
            failed_folds: Counter::default(),
            fold_seconds: Histogram::new(FOLD_BUCKETS),
            open_bytes: Gauge::default(),
        }
    }
}

impl ChangeLogTallies {
    /// Counts a fold that took `took` and ended as `outcome`.
    fn count_fold(&self, took: std::time::Duration, outcome: &Result<(), StoreError>) {
        self.fold_seconds.observe(took.as_secs_f64());
        match outcome {
            Ok(()) => self.folds.inc(),
            Err(_) => self.failed_folds.inc(),
        };
    }
}

/// The open database.
pub struct RedbStore {
    /// The redb handle, shared with a fold running in the background.
    db: Arc<Database>,
    /// Its file, for messages.
    path: PathBuf,
    /// The write-ahead file.
    wal: Wal,
    /// What the write-ahead file holds that the database does not.
    unfolded: Unfolded,
    /// The fold of `state.wal.folding` running in the background, if any.
    folding: Option<Folding>,
    /// `state.wal.folding` holds batches the database does not, and
    /// `unfolded` holds them too (under the newer ones): a fold of it
    /// failed, or the store was opened with it there. The next fold is
    /// synchronous and removes the file.
    older_file: bool,
    /// Renaming the write-ahead file failed once: from then on every fold
    /// is synchronous, so a name left in doubt is never reused.
    rotation_failed: bool,
    /// The write-ahead file's size at which it is folded.
    fold_at: u64,
    /// What it counts, for `/metrics`.
    tallies: ChangeLogTallies,
}

/// A fold of `state.wal.folding` on a thread of its own.
struct Folding {
    /// What it writes; kept, should the fold fail, to fold again.
    unfolded: Arc<Unfolded>,
    /// The thread, which removes the file once its batches are in the
    /// database; `None` if it could not be started.
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

/// Batches in the write-ahead file, as they will be written to the
/// database: each record's last value, the events by number.
#[derive(Debug, Default, Clone)]
struct Unfolded {
    records: BTreeMap<String, Option<String>>,
    events: BTreeMap<u64, String>,
}

impl Unfolded {
    fn absorb(&mut self, batch: WalBatch) {
        self.records.extend(batch.records);
        self.events.extend(batch.events);
    }

    /// These batches followed by `newer`'s.
    fn then(mut self, newer: Self) -> Self {
        self.records.extend(newer.records);
        self.events.extend(newer.events);
        self
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.events.is_empty()
    }
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the database at `path`, creating it if the file does not exist,
    /// checks its integrity, and folds into it what its write-ahead file
    /// (`path` with the extension `wal`) holds.
    ///
    /// # Errors
    /// [`StoreError::InUse`] if another process has it open,
    /// [`StoreError::Empty`] for a zero-length file, [`StoreError::Corrupt`]
    /// for a damaged one, [`StoreError::Log`] for a damaged write-ahead file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.len() == 0 => return Err(StoreError::Empty(path.to_path_buf())),
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(database(path, err)),
        }
        let db = guarded(path, || {
            let mut db = match Database::create(path) {
                Ok(db) => db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::InUse(path.to_path_buf())),
                Err(err) => return Err(corrupt(path, err)),
            };
            match db.check_integrity() {
                Ok(true) => {}
                Ok(false) => {
                    return Err(corrupt(
                        path,
                        "it failed its integrity check and was repaired as far as possible, so the latest records may be lost; starting again continues with the repaired state",
                    ));
                }
                Err(err) => return Err(corrupt(path, err)),
            }
            let txn = db.begin_write().map_err(|err| database(path, err))?;
            txn.open_table(RECORDS).map_err(|err| corrupt(path, err))?;
            txn.open_table(EVENTS).map_err(|err| corrupt(path, err))?;
            migrate_round_one(&txn, path)?;
            txn.commit().map_err(|err| database(path, err))?;
            Ok(db)
        })?;
        // Opened only once the database is ours: a second console is told
        // it is in use before it touches the files. A file being folded
        // when the console stopped holds the older batches.
        let older = match std::fs::metadata(folding_path(path)) {
            Ok(_) => Some(Wal::open(&folding_path(path))?.1),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(database(path, err)),
        };
        let (wal, batches) = Wal::open(&wal_path(path))?;
        let mut store = Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
            wal,
            unfolded: Unfolded::default(),
            folding: None,
            older_file: older.is_some(),
            rotation_failed: false,
            fold_at: DEFAULT_FOLD_AT,
            tallies: ChangeLogTallies::default(),
        };
        let batches: Vec<WalBatch> = older.into_iter().flatten().chain(batches).collect();
        if !batches.is_empty() {
            info!(path = %path.display(), batches = batches.len(), "folding the write-ahead log into the database");
        }
        for batch in batches {
            store.unfolded.absorb(batch);
        }
        guarded(path, || store.fold())?;
        Ok(store)
    }

    /// Folds the write-ahead file once it passes `bytes` (clamped to
    /// [`FOLD_AT_RANGE`]) instead of [`DEFAULT_FOLD_AT`].
    #[must_use]
    pub fn folding_at(mut self, bytes: u64) -> Self {
        self.fold_at = bytes.clamp(*FOLD_AT_RANGE.start(), *FOLD_AT_RANGE.end());
        self
    }

    /// Counts its folds and the open file's size in `tallies` (the
    /// console's, which `/metrics` reads).
    #[must_use]
    pub fn reporting_to(mut self, tallies: ChangeLogTallies) -> Self {
        self.tallies = tallies;
        self.note_open_bytes();
        self
    }

    fn note_open_bytes(&self) {
        self.tallies.open_bytes.set(i64::try_from(self.wal.len()).unwrap_or(i64::MAX));
    }

    /// Writes what the write-ahead files hold to the database in one
    /// durable commit, once a fold running in the background is done, then
    /// empties `state.wal` and removes `state.wal.folding`.
    fn fold(&mut self) -> Result<(), StoreError> {
        self.await_folding();
        if self.unfolded.is_empty() && self.wal.is_empty() && !self.older_file {
            return Ok(());
        }
        write_folded(&self.db, &self.path, &self.unfolded, self.wal.len(), &self.tallies)?;
        self.unfolded = Unfolded::default();
        // The older file goes first, durably: were `state.wal` emptied
        // first, a crash could leave the older file alone, and its batches
        // folded again over the newer ones. Should either fail, the files
        // are folded again later: harmless.
        if self.older_file {
            remove_folded(&folding_path(&self.path))?;
            self.older_file = false;
        }
        self.wal.clear()?;
        self.note_open_bytes();
        Ok(())
    }

    /// Catches the database up with a write-ahead file past its fold size:
    /// renames it `state.wal.folding` and folds it on a thread of its own
    /// while commits go on to a new `state.wal` — the fold takes tens of
    /// milliseconds, which no commit waits for (BENCHMARKS.md, "Small
    /// puts, fifth pass"). Synchronously when that cannot be done.
    fn catch_up(&mut self) -> Result<(), StoreError> {
        // The previous fold had a whole file's worth of commits to finish;
        // its file's name is free once it did.
        self.await_folding();
        if self.older_file || self.rotation_failed {
            return self.fold();
        }
        let (folding, log_bytes) = (folding_path(&self.path), self.wal.len());
        if let Err(err) = self.wal.rotate(&folding) {
            warn!(%err, "the write-ahead log could not be renamed to fold it in the background; folding it in place from now on");
            self.rotation_failed = true;
            return self.fold();
        }
        let unfolded = Arc::new(std::mem::take(&mut self.unfolded));
        let (db, path, job, tallies) = (self.db.clone(), self.path.clone(), unfolded.clone(), self.tallies.clone());
        let thread = std::thread::Builder::new()
            .name("state-fold".into())
            .spawn(move || {
                write_folded(&db, &path, &job, log_bytes, &tallies)?;
                remove_folded(&folding_path(&path))
            })
            .map_err(
                |err| warn!(%err, "could not start a thread to fold the write-ahead log; folding it with the next"),
            )
            .ok();
        self.folding = Some(Folding { unfolded, thread });
        Ok(())
    }

    /// Waits for the fold running in the background, if any. A fold that
    /// failed leaves its batches to the next fold, under the newer ones.
    fn await_folding(&mut self) {
        let Some(Folding { unfolded, thread }) = self.folding.take() else { return };
        let outcome = match thread.map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(database(&self.path, "the fold's thread panicked")),
            None => Err(database(&self.path, "the fold's thread did not start")),
        };
        if let Err(err) = outcome {
            warn!(%err, "the database could not catch up with the renamed write-ahead log; it is folded with the next");
            self.unfolded = Arc::unwrap_or_clone(unfolded).then(std::mem::take(&mut self.unfolded));
            self.older_file = true;
        }
    }

    fn load_unguarded(&self, recent_events: usize) -> Result<Loaded, StoreError> {
        let path = &self.path;
        let txn = self.db.begin_read().map_err(|err| database(path, err))?;
        let records = txn.open_table(RECORDS).map_err(|err| corrupt(path, err))?;
        let mut image = Image::default();
        for entry in records.iter().map_err(|err| corrupt(path, err))? {
            let (key, json) = entry.map_err(|err| corrupt(path, err))?;
            image
                .load(key.value(), json.value())
                .map_err(|source| StoreError::Record { path: path.clone(), source })?;
        }
        let log = txn.open_table(EVENTS).map_err(|err| corrupt(path, err))?;
        let mut events = Vec::new();
        for entry in log.iter().map_err(|err| corrupt(path, err))?.rev().take(recent_events) {
            let (seq, json) = entry.map_err(|err| corrupt(path, err))?;
            let event: ClusterEvent = serde_json::from_str(json.value())
                .map_err(|err| corrupt(path, format!("event {} does not decode: {err}", seq.value())))?;
            events.push(event);
        }
        events.reverse();
        Ok(Loaded { image, events })
    }
}

/// Writes today's records for a store the first round wrote
/// (store::round_one): once, while the records table is empty.
fn migrate_round_one(txn: &WriteTransaction, path: &Path) -> Result<(), StoreError> {
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(|err| corrupt(path, err))?
        .map(|table| redb::TableHandle::name(&table).to_string())
        .collect();
    let has = |name: &str| tables.iter().any(|table| table == name);
    if !(has("credentials") || has("nodes") || has("workloads")) {
        return Ok(());
    }
    let mut records = txn.open_table(RECORDS).map_err(|err| corrupt(path, err))?;
    if !records.is_empty().map_err(|err| corrupt(path, err))? {
        return Ok(());
    }
    let mut old = RoundOne::default();
    let read_all =
        |definition: TableDefinition<&str, &str>, into: &mut Vec<(String, String)>| -> Result<(), StoreError> {
            let table = txn.open_table(definition).map_err(|err| corrupt(path, err))?;
            for entry in table.iter().map_err(|err| corrupt(path, err))? {
                let (key, value) = entry.map_err(|err| corrupt(path, err))?;
                into.push((key.value().to_string(), value.value().to_string()));
            }
            Ok(())
        };
    if has("credentials") {
        read_all(ROUND_ONE_CREDENTIALS, &mut old.credentials)?;
    }
    if has("nodes") {
        read_all(ROUND_ONE_NODES, &mut old.nodes)?;
    }
    if has("workloads") {
        let mut documents = Vec::new();
        read_all(ROUND_ONE_WORKLOADS, &mut documents)?;
        old.workloads = documents.into_iter().next().map(|(_, json)| json);
    }
    let migrated = round_one::records_from(&old, rand::random());
    for change in &migrated.changes {
        if let Some(json) = change.value().map_err(|err| database(path, err))? {
            records.insert(change.key().as_str(), json.as_str()).map_err(|err| database(path, err))?;
        }
    }
    for skipped in &migrated.skipped {
        warn!(path = %path.display(), "a record of the first round's store does not carry over: {skipped}");
    }
    info!(
        path = %path.display(),
        credentials = old.credentials.len(),
        nodes = old.nodes.len(),
        "read the first round's store into today's records (its old tables stay in the file)"
    );
    Ok(())
}

impl StateStore for RedbStore {
    fn load(&mut self, recent_events: usize) -> Result<Loaded, StoreError> {
        let path = self.path.clone();
        // What the write-ahead file holds is read from the database too.
        guarded(&path, || self.fold().and_then(|()| self.load_unguarded(recent_events)))
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let path = &self.path;
        let mut encoded =
            WalBatch { seq: batch.seq, records: Vec::with_capacity(batch.changes.len()), events: Vec::new() };
        for change in &batch.changes {
            encoded.records.push((change.key(), change.value().map_err(|err| database(path, err))?));
        }
        for event in &batch.events {
            encoded.events.push((event.seq, serde_json::to_string(event).map_err(|err| database(path, err))?));
        }
        self.wal.append(&encoded)?;
        self.unfolded.absorb(encoded);
        if self.wal.len() >= self.fold_at
            && let Err(err) = self.catch_up()
        {
            // The batch is durable in the file; the fold is tried again at
            // the next commit.
            warn!(%err, "the database could not catch up with its write-ahead log; trying again at the next commit");
        }
        self.note_open_bytes();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("\"{}\"", self.path.display())
    }
}

/// Runs `work` on the database, turning a panic inside redb (which a
/// damaged file can cause) into [`StoreError::Corrupt`] naming the file.
/// The panic's default report is silenced while it runs: the error says
/// what happened, once.
fn guarded<T>(path: &Path, work: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = catch_unwind(AssertUnwindSafe(work));
    std::panic::set_hook(hook);
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the database library failed on it".into());
        Err(corrupt(path, format!("reading it failed: {message}")))
    })
}

impl Drop for RedbStore {
    /// A store closed cleanly leaves everything in the database and an
    /// empty write-ahead file.
    fn drop(&mut self) {
        if let Err(err) = self.fold() {
            error!(%err, "the database could not catch up with its write-ahead log; the next start does");
        }
    }
}

/// The write-ahead file of the database at `path`.
pub fn wal_path(path: &Path) -> PathBuf {
    path.with_extension("wal")
}

/// The write-ahead file being folded into the database at `path`.
pub fn folding_path(path: &Path) -> PathBuf {
    path.with_extension("wal.folding")
}

/// Writes `unfolded` to the database in one durable commit, and counts
/// the fold in `tallies`.
fn write_folded(
    db: &Database,
    path: &Path,
    unfolded: &Unfolded,
    log_bytes: u64,
    tallies: &ChangeLogTallies,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let outcome = commit_folded(db, path, unfolded);
    let took = started.elapsed();
    tallies.count_fold(took, &outcome);
    outcome?;
    debug!(
        records = unfolded.records.len(),
        events = unfolded.events.len(),
        log_bytes,
        ?took,
        "folded the write-ahead log into the database"
    );
    Ok(())
}

fn commit_folded(db: &Database, path: &Path, unfolded: &Unfolded) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(|err| database(path, err))?;
    {
        let mut records = txn.open_table(RECORDS).map_err(|err| database(path, err))?;
        for (key, value) in &unfolded.records {
            match value {
                Some(json) => records.insert(key.as_str(), json.as_str()).map(drop),
                None => records.remove(key.as_str()).map(drop),
            }
            .map_err(|err| database(path, err))?;
        }
        let mut log = txn.open_table(EVENTS).map_err(|err| database(path, err))?;
        for (seq, json) in &unfolded.events {
            log.insert(*seq, json.as_str()).map_err(|err| database(path, err))?;
        }
        if let Some(last) = unfolded.events.keys().next_back()
            && *last > EVENT_LOG_LIMIT
        {
            log.retain_in(..=last - EVENT_LOG_LIMIT, |_, _| false).map_err(|err| database(path, err))?;
        }
    }
    txn.commit().map_err(|err| database(path, err))
}

/// Removes a folded `state.wal.folding`, durably (one already gone is
/// fine): before any newer batch is folded, so that a crash never leaves
/// it to be folded again over them.
fn remove_folded(folding: &Path) -> Result<(), StoreError> {
    let removed = match std::fs::remove_file(folding) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        removed => removed.and_then(|()| ringwatch_net::files::sync_parent(folding)),
    };
    removed.map_err(|source| StoreError::Log(super::wal::WalError::Io { path: folding.to_path_buf(), source }))
}

fn corrupt(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { path: path.to_path_buf(), reason: reason.to_string() }
}

fn database(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Database { path: path.to_path_buf(), reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use ringwatch_shared::names::NodeName;
    use ringwatch_shared::status::NodeState;

    use super::*;
    use crate::control::records::{Change, ClusterRecord, CredentialRecord, NodeRecord};

    fn event(seq: u64) -> ClusterEvent {
        ClusterEvent { seq, at_unix_ms: seq, reason: format!("event {seq}"), ..ClusterEvent::default() }
    }

    fn node_change(name: &str) -> Change {
        Change::Node(NodeRecord::new(NodeName::parse(name).unwrap(), NodeState::Alive))
    }

    #[test]
    fn a_first_round_store_is_read_into_records_once_and_its_tables_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut credentials = txn.open_table(ROUND_ONE_CREDENTIALS).unwrap();
                credentials
                    .insert("ab12", r#"{"name":"a","key_fingerprint":"ff","issued_unix":1,"revoked":false}"#)
                    .unwrap();
                txn.open_table(ROUND_ONE_NODES).unwrap().insert("a", r#""alive""#).unwrap();
                let workloads =
                    r#"{"tasks":{},"instances":{},"cordoned":["a"],"next_epoch":12,"failover_paused":null}"#;
                txn.open_table(ROUND_ONE_WORKLOADS).unwrap().insert("state", workloads).unwrap();
                txn.open_table(EVENTS).unwrap().insert(1, serde_json::to_string(&event(1)).unwrap().as_str()).unwrap();
            }
            txn.commit().unwrap();
        }
        let mut store = RedbStore::open(&path).unwrap();
        let loaded = store.load(10).unwrap();
        assert_eq!(loaded.image.credentials["ab12"].name.as_str(), "a", "the agents keep their credentials");
        assert!(loaded.image.nodes[&NodeName::parse("a").unwrap()].cordoned);
        assert_eq!(loaded.image.cluster.as_ref().unwrap().last_epoch, 11, "epochs only grow");
        assert_eq!(loaded.events, vec![event(1)], "the event log is the same table");
        // Later changes are today's records only: a reopen does not read the
        // old tables again over them.
        let uncordoned = Change::Node(NodeRecord::new(NodeName::parse("a").unwrap(), NodeState::Alive));
        store.commit(&Batch { seq: 1, changes: vec![uncordoned], events: vec![] }).unwrap();
        drop(store);
        let mut store = RedbStore::open(&path).unwrap();
        assert!(!store.load(10).unwrap().image.nodes[&NodeName::parse("a").unwrap()].cordoned);
        let txn = store.db.begin_read().unwrap();
        assert!(txn.open_table(ROUND_ONE_CREDENTIALS).is_ok(), "the old tables stay in the file");
    }

    #[test]
    fn committed_records_and_events_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut store = RedbStore::open(&path).unwrap();
        assert_eq!(store.load(10).unwrap().image, Image::default());
        let batch = Batch {
            seq: 1,
            changes: vec![node_change("a"), node_change("b"), Change::Cluster(ClusterRecord::new(7))],
            events: vec![event(1), event(2)],
        };
        store.commit(&batch).unwrap();
        drop(store);
        let loaded = RedbStore::open(&path).unwrap().load(1).unwrap();
        assert_eq!(loaded.image.nodes.len(), 2);
        assert_eq!(loaded.image.cluster.unwrap().placement_seed, 7);
        assert_eq!(loaded.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2], "the newest event only");
    }

    /// The files as a crash now would leave them: redb's at its last
    /// durable commit, the write-ahead files as synced.
    fn crash_copy(from: &Path, to: &Path) {
        std::fs::copy(from, to).unwrap();
        std::fs::copy(wal_path(from), wal_path(to)).unwrap();
        if folding_path(from).exists() {
            std::fs::copy(folding_path(from), folding_path(to)).unwrap();
        }
    }

    /// Commits batches of one node record and one 64 KiB event each, from
    /// `*seq` on, until `until` says stop after one.
    fn commit_until(store: &mut RedbStore, seq: &mut u64, mut until: impl FnMut(&RedbStore) -> bool) {
        let mut big = event(0);
        big.reason = "x".repeat(64 << 10);
        for _ in 0..1000 {
            *seq += 1;
            let events = vec![ClusterEvent { seq: *seq, ..big.clone() }];
            store.commit(&Batch { seq: *seq, changes: vec![node_change(&format!("n{seq}"))], events }).unwrap();
            if until(store) {
                return;
            }
        }
        panic!("never reached");
    }

    fn nodes(loaded: &Loaded) -> Vec<String> {
        loaded.image.nodes.keys().map(ToString::to_string).collect()
    }

    #[test]
    fn a_crash_before_the_database_caught_up_loses_no_committed_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (path, crashed) = (dir.path().join("state.redb"), dir.path().join("crashed.redb"));
        let mut store = RedbStore::open(&path).unwrap();
        let credential = |fingerprint: &str| Change::Credential {
            fingerprint: fingerprint.into(),
            record: CredentialRecord {
                name: NodeName::parse("a").unwrap(),
                key_fingerprint: "ff".into(),
                issued_unix: 1,
                revoked: false,
                token_id: None,
                expires_unix: None,
                renewed_to: None,
            },
        };
        let changes = vec![node_change("a"), node_change("b"), credential("old"), credential("new")];
        store.commit(&Batch { seq: 1, changes, events: vec![event(1)] }).unwrap();
        let changes = vec![Change::CredentialRemoved("old".into()), node_change("c")];
        store.commit(&Batch { seq: 2, changes, events: vec![event(2)] }).unwrap();
        assert!(std::fs::metadata(wal_path(&path)).unwrap().len() > 0, "the batches wait in the write-ahead file");
        crash_copy(&path, &crashed);
        let loaded = RedbStore::open(&crashed).unwrap().load(10).unwrap();
        assert_eq!(nodes(&loaded), ["a", "b", "c"]);
        assert_eq!(loaded.image.credentials.keys().collect::<Vec<_>>(), ["new"], "a removal is folded in too");
        assert_eq!(loaded.events, vec![event(1), event(2)]);
        assert_eq!(std::fs::metadata(wal_path(&crashed)).unwrap().len(), 0, "folded in at the start, then emptied");
    }

    #[test]
    fn past_fold_at_the_file_is_folded_in_the_background_while_commits_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut store = RedbStore::open(&path).unwrap();
        let mut seq = 0;
        commit_until(&mut store, &mut seq, |store| store.folding.is_some());
        let folded = seq;
        assert!(folded * (64 << 10) >= DEFAULT_FOLD_AT, "not before the file passed its fold size");
        assert!(store.wal.is_empty(), "the next commit goes to a new file");
        for _ in 0..3 {
            seq += 1;
            store.commit(&Batch { seq, changes: vec![node_change(&format!("n{seq}"))], events: vec![] }).unwrap();
        }
        store.await_folding();
        assert!(!folding_path(&path).exists(), "a folded file is removed");
        let in_database = store.load_unguarded(0).unwrap();
        assert_eq!(in_database.image.nodes.len(), usize::try_from(folded).unwrap(), "the first file, not the second");
        drop(store);
        let loaded = RedbStore::open(&path).unwrap().load(1000).unwrap();
        assert_eq!(loaded.image.nodes.len(), usize::try_from(seq).unwrap());
        assert_eq!(loaded.events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=folded).collect::<Vec<_>>());
    }

    #[test]
    fn folds_and_the_open_files_size_are_counted_for_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let tallies = ChangeLogTallies::default();
        let mut store = RedbStore::open(&dir.path().join("state.redb")).unwrap().reporting_to(tallies.clone());
        let mut seq = 0;
        commit_until(&mut store, &mut seq, |store| {
            assert_eq!(tallies.open_bytes.get(), i64::try_from(store.wal.len()).unwrap(), "after each commit");
            store.folding.is_some()
        });
        assert_eq!(tallies.open_bytes.get(), 0, "the file went to the fold");
        seq += 1;
        store.commit(&Batch { seq, changes: vec![node_change("last")], events: vec![] }).unwrap();
        assert_eq!(tallies.open_bytes.get(), i64::try_from(store.wal.len()).unwrap());
        assert!(tallies.open_bytes.get() > 0);
        store.await_folding();
        assert_eq!(tallies.folds.get(), 1, "the background fold");
        drop(store);
        assert_eq!(tallies.folds.get(), 2, "and the one at close");
        assert_eq!(tallies.failed_folds.get(), 0);
        assert_eq!(tallies.open_bytes.get(), 0, "closed with everything in the database");
    }

    #[test]
    fn a_crash_while_a_file_is_folded_in_the_background_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (path, crashed) = (dir.path().join("state.redb"), dir.path().join("crashed.redb"));
        let mut store = RedbStore::open(&path).unwrap();
        let mut seq = 0;
        // Copies taken just before the file is renamed, with the fold
        // running and with it done: each is a state a crash can leave.
        let mut before = None;
        commit_until(&mut store, &mut seq, |store| {
            if store.wal.len() + (80 << 10) >= DEFAULT_FOLD_AT && before.is_none() {
                let copy = dir.path().join("before.redb");
                crash_copy(&path, &copy);
                before = Some(copy);
            }
            store.folding.is_some()
        });
        seq += 1;
        store.commit(&Batch { seq, changes: vec![node_change("after")], events: vec![] }).unwrap();
        crash_copy(&path, &crashed);
        store.await_folding();
        let done = dir.path().join("done.redb");
        crash_copy(&path, &done);
        // Folded, and a crash before the file was removed: its batches (here
        // all but its last) are folded again, under the newer file's.
        let before = before.unwrap();
        std::fs::copy(wal_path(&before), folding_path(&done)).unwrap();
        drop(store);
        for copy in [before, crashed, done] {
            let loaded = RedbStore::open(&copy).unwrap().load(1000).unwrap();
            // The copy before holds every commit up to the one before the
            // rename (its 64 KiB event is what passed the fold size).
            let expected = if copy.ends_with("before.redb") { seq - 2 } else { seq };
            assert_eq!(loaded.image.nodes.len() as u64, expected, "{}", copy.display());
            assert!(!folding_path(&copy).exists() && std::fs::metadata(wal_path(&copy)).unwrap().len() == 0);
        }
    }

    #[test]
    fn the_file_being_folded_is_read_before_the_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        drop(RedbStore::open(&path).unwrap());
        let cordoned = |name: &str, cordoned: bool| {
            let mut record = NodeRecord::new(NodeName::parse(name).unwrap(), NodeState::Alive);
            record.cordoned = cordoned;
            let change = Change::Node(record);
            (change.key(), change.value().unwrap())
        };
        let write = |file: PathBuf, records: Vec<(String, Option<String>)>, seq: u64| {
            let (mut wal, _) = Wal::open(&file).unwrap();
            wal.append(&WalBatch { seq, records, events: vec![(seq, serde_json::to_string(&event(seq)).unwrap())] })
                .unwrap();
        };
        // The older file cordons "a" and records "b"; the newer uncordons
        // "a" and removes "b".
        write(folding_path(&path), vec![cordoned("a", true), cordoned("b", false)], 1);
        write(wal_path(&path), vec![cordoned("a", false), (cordoned("b", false).0, None)], 2);
        let loaded = RedbStore::open(&path).unwrap().load(10).unwrap();
        assert_eq!(nodes(&loaded), ["a"]);
        assert!(!loaded.image.nodes[&NodeName::parse("a").unwrap()].cordoned, "the newer file wins");
        assert_eq!(loaded.events, vec![event(1), event(2)]);
        assert!(!folding_path(&path).exists());
    }

    #[test]
    fn when_the_file_cannot_be_renamed_it_is_folded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut store = RedbStore::open(&path).unwrap();
        // A directory in the way of the rename.
        std::fs::create_dir_all(folding_path(&path).join("in-the-way")).unwrap();
        let mut seq = 0;
        commit_until(&mut store, &mut seq, |store| store.wal.is_empty());
        assert!(store.rotation_failed && store.folding.is_none());
        assert_eq!(store.load_unguarded(0).unwrap().image.nodes.len(), usize::try_from(seq).unwrap());
        drop(store);
        std::fs::remove_dir_all(folding_path(&path)).unwrap();
        assert_eq!(RedbStore::open(&path).unwrap().load(0).unwrap().image.nodes.len(), usize::try_from(seq).unwrap());
    }

    #[test]
    fn a_damaged_write_ahead_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, crashed) = (dir.path().join("state.redb"), dir.path().join("crashed.redb"));
        let mut store = RedbStore::open(&path).unwrap();
        for seq in 1..=3 {
            store.commit(&Batch { seq, changes: vec![node_change(&format!("n{seq}"))], events: vec![] }).unwrap();
        }
        crash_copy(&path, &crashed);
        let mut bytes = std::fs::read(wal_path(&crashed)).unwrap();
        bytes[20] ^= 0x40;
        std::fs::write(wal_path(&crashed), &bytes).unwrap();
        let Err(err) = RedbStore::open(&crashed) else { panic!("a damaged log was trusted") };
        assert!(matches!(err, StoreError::Log(_)), "{err}");
        assert!(err.to_string().contains(&wal_path(&crashed).display().to_string()), "{err}");
    }

    #[test]
    fn a_second_opener_is_told_the_store_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let _first = RedbStore::open(&path).unwrap();
        assert!(matches!(RedbStore::open(&path), Err(StoreError::InUse(_))));
    }

    #[test]
    fn regression_a_zero_length_store_is_refused_not_started_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        std::fs::write(&path, b"").unwrap();
        let err = RedbStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Empty(_)), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn regression_random_bytes_in_the_store_are_an_error_never_a_panic() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for attempt in 0..12u64 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.redb");
            {
                let mut store = RedbStore::open(&path).unwrap();
                for seq in 1..=50 {
                    let batch = Batch { seq, changes: vec![node_change(&format!("n{seq}"))], events: vec![event(seq)] };
                    store.commit(&batch).unwrap();
                }
            }
            let len = std::fs::metadata(&path).unwrap().len();
            let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut garbage = vec![0u8; 4096];
            rng.fill_bytes(&mut garbage);
            let at = (attempt * 4096) % len.saturating_sub(4096).max(1);
            file.seek(SeekFrom::Start(at)).unwrap();
            file.write_all(&garbage).unwrap();
            drop(file);
            // Whatever redb makes of it: an error naming the file, or a
            // store that loads; never a panic.
            match RedbStore::open(&path).and_then(|mut store| store.load(100)) {
                Ok(_) => {}
                Err(err) => assert!(err.to_string().contains(&path.display().to_string()), "{err}"),
            }
        }
    }
}
