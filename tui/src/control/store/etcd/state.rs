//! The leader's store ([`EtcdStore`]) and a standby's view of it
//! ([`Etcd::load_with_revision`], [`Etcd::watch_records`]).
//!
//! # Batches within etcd's limits
//! A batch is applied atomically (ARCHITECTURE.md, "The change log"): a
//! console never starts on part of one. etcd takes at most 128 operations
//! in one transaction (`--max-txn-ops`) and 1.5 MiB in one request
//! (`--max-request-bytes`), and a batch has no bound (group commit makes
//! batches larger while the store is slow, and a console resuming a large
//! fleet writes thousands of records at once). This store relies on those
//! defaults (or larger) and needs nothing raised.
//!
//! A batch that fits is one transaction, conditioned on the leadership. A
//! larger one is written in three steps, every transaction of them
//! conditioned on the leadership:
//! 1. *staged*: its operations, in chunks of at most a request's size,
//!    under `staged/<n>`, then a marker, `staged/commit` — from that
//!    transaction on, the batch is durable;
//! 2. *applied*: the operations, in as many transactions as the limits take;
//! 3. *cleared*: `staged/` deleted.
//!
//! A leader that finds a marker — when it loads, or before its first or
//! next large commit — applies the staged batch before anything else, and
//! it discards staged chunks without a marker: they are of a batch that
//! never became durable, whose effects the owner never released. Applying a
//! batch again is harmless: each operation writes a whole value or removes
//! keys, so applying it twice leaves what applying it once does.
//!
//! Cutting a large batch into independent transactions instead would not be
//! safe: a leader deposed half-way would leave half a batch — an instance
//! placed with a new epoch, say, without the cluster record's raised epoch
//! counter — for the next leader to trust.
//!
//! A standby following the records may see the first transactions of a
//! large batch's application before the last: it only shows what it sees,
//! and decides nothing on it.
//!
//! etcd refuses a transaction that writes one key twice, so a batch's
//! changes are first reduced to the last change of each record (the same
//! state: changes are whole records, applied in order).

use std::collections::HashMap;
use std::ops::Range;

use etcd_client::{
    DeleteOptions, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, WatchOptions, WatchStream,
};
use ringwatch_shared::status::ClusterEvent;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tracing::info;

use super::election::{Fence, Leadership};
use super::{Etcd, prefix_end, reason};
use crate::control::records::Image;
use crate::control::store::{Batch, EVENT_LOG_LIMIT, Loaded, StateStore, StoreError};

/// The records, under the prefix.
const RECORDS: &str = "records/";
/// The event log, under the prefix.
const EVENTS: &str = "events/";
/// A large batch while it is written.
const STAGED: &str = "staged/";
/// The first key after every staged one.
const STAGED_END: &str = "staged0";
/// The marker that makes a staged batch durable.
const STAGED_MARKER: &str = "staged/commit";

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;
/// Bytes of keys and values in one transaction: etcd's default
/// `--max-request-bytes` is 1.5 MiB (1,572,864 bytes); the rest is room
/// for the request's framing.
const MAX_TXN_BYTES: usize = 1_400_000;
/// Framing counted per operation on top of its key and value.
const OP_OVERHEAD: usize = 32;
/// Records read per page when loading.
const PAGE: i64 = 256;

/// One write, keys relative to the prefix. Staged batches hold these as
/// JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Op {
    /// Writes a whole value.
    Put {
        /// The key.
        key: String,
        /// The value (JSON).
        value: String,
    },
    /// Removes a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Removes the keys in `[from, to)`.
    DeleteRange {
        /// The first key.
        from: String,
        /// The first key after the range.
        to: String,
    },
}

impl Op {
    /// Its bytes in a request, roughly: keys, value and framing.
    fn size(&self, prefix: &str) -> usize {
        OP_OVERHEAD
            + match self {
                Self::Put { key, value } => prefix.len() + key.len() + value.len(),
                Self::Delete { key } => prefix.len() + key.len(),
                Self::DeleteRange { from, to } => 2 * prefix.len() + from.len() + to.len(),
            }
    }

    /// The key it writes, for messages.
    fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key } | Self::DeleteRange { from: key, .. } => key,
        }
    }

    /// The etcd operation.
    fn txn_op(&self, prefix: &str) -> TxnOp {
        match self {
            Self::Put { key, value } => TxnOp::put(format!("{prefix}{key}"), value.as_str(), None::<PutOptions>),
            Self::Delete { key } => TxnOp::delete(format!("{prefix}{key}"), None),
            Self::DeleteRange { from, to } => {
                TxnOp::delete(format!("{prefix}{from}"), Some(DeleteOptions::new().with_range(format!("{prefix}{to}"))))
            }
        }
    }
}

/// The marker of a durable staged batch.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// The batch's sequence number, for messages.
    seq: u64,
    /// How many chunks it has: `staged/0000000000` onwards.
    chunks: usize,
}

/// What `staged/` holds.
enum Staged {
    /// Nothing.
    Nothing,
    /// Chunks without a marker: a batch that never became durable.
    Unmarked,
    /// A durable batch, not known to be applied.
    Marked(Vec<Op>),
}

fn event_key(seq: u64) -> String {
    format!("{EVENTS}{seq:020}")
}

fn staged_key(index: usize) -> String {
    format!("{STAGED}{index:010}")
}

/// The operations that apply `batch`: the last change of each record, the
/// events the log keeps, and the trim of its oldest.
fn operations(batch: &Batch) -> Result<Vec<Op>, serde_json::Error> {
    let mut ops: Vec<Op> = Vec::with_capacity(batch.changes.len() + batch.events.len() + 1);
    let mut position: HashMap<String, usize> = HashMap::with_capacity(ops.capacity());
    let mut set = |ops: &mut Vec<Op>, op: Op| {
        let key = op.key().to_string();
        match position.get(&key) {
            Some(&index) => ops[index] = op,
            None => {
                position.insert(key, ops.len());
                ops.push(op);
            }
        }
    };
    for change in &batch.changes {
        let key = format!("{RECORDS}{}", change.key());
        let op = match change.value()? {
            Some(value) => Op::Put { key, value },
            None => Op::Delete { key },
        };
        set(&mut ops, op);
    }
    if let Some(last) = batch.events.iter().map(|event| event.seq).max() {
        // As the embedded store: the newest EVENT_LOG_LIMIT events stay.
        let first_kept = last.saturating_sub(EVENT_LOG_LIMIT) + 1;
        for event in batch.events.iter().filter(|event| event.seq >= first_kept) {
            set(&mut ops, Op::Put { key: event_key(event.seq), value: serde_json::to_string(event)? });
        }
        if last > EVENT_LOG_LIMIT {
            ops.push(Op::DeleteRange { from: EVENTS.to_string(), to: event_key(first_kept) });
        }
    }
    Ok(ops)
}

/// Cuts `ops` into runs that each fit one transaction.
fn transactions(ops: &[Op], prefix: &str) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, op) in ops.iter().enumerate() {
        let size = op.size(prefix);
        if index > start && (index - start == MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES) {
            runs.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < ops.len() {
        runs.push(start..ops.len());
    }
    runs
}

/// The staged chunks of `ops`: JSON arrays of at most a request's size.
fn chunks(ops: &[Op]) -> Result<Vec<String>, serde_json::Error> {
    let mut chunks = Vec::new();
    let mut chunk = String::from("[");
    for op in ops {
        let json = serde_json::to_string(op)?;
        if chunk.len() > 1 && chunk.len() + json.len() + 2 > MAX_TXN_BYTES {
            chunk.push(']');
            chunks.push(std::mem::replace(&mut chunk, String::from("[")));
        }
        if chunk.len() > 1 {
            chunk.push(',');
        }
        chunk.push_str(&json);
    }
    chunk.push(']');
    chunks.push(chunk);
    Ok(chunks)
}

/// The console's records in etcd, for the leader's writer thread: every
/// commit is conditioned on the leadership it was made for
/// ([`Etcd::store`]). Its calls block (the writer is a plain thread): they
/// run on the runtime the store was made in, which must be a multi-thread
/// runtime (the console's) and must not be called from its async tasks
/// (use `spawn_blocking`).
pub struct EtcdStore {
    /// The connection.
    etcd: Etcd,
    /// The leadership every write is conditioned on.
    fence: Fence,
    /// The runtime the connection runs on.
    runtime: Handle,
    /// Whether a staged batch a previous leader left was dealt with.
    settled: bool,
    /// A test's way to stop a large commit where a crash would: after its
    /// marker, before its application.
    interrupt_after_staging: bool,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("etcd", &self.etcd).field("term", &self.fence.term()).finish_non_exhaustive()
    }
}

impl Etcd {
    /// The store the leader's writer commits to while `leadership` lasts:
    /// once it has ended, every commit fails with
    /// [`StoreError::NotLeader`] and writes nothing. Load it
    /// ([`StateStore::load`]) before the first commit: that finishes a large
    /// batch a previous leader left half-applied.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when called outside a tokio runtime.
    pub fn store(&self, leadership: &Leadership) -> Result<EtcdStore, StoreError> {
        let runtime = Handle::try_current()
            .map_err(|_| self.error("the etcd store must be made inside the console's tokio runtime"))?;
        Ok(EtcdStore {
            etcd: self.clone(),
            fence: leadership.fence(),
            runtime,
            settled: false,
            interrupt_after_staging: false,
        })
    }

    /// Every record, the newest `recent_events` events, and the revision
    /// they are as of — for a standby, which then follows the changes from
    /// the next revision ([`Etcd::watch_records`]). Reads only: a large
    /// batch staged and marked but not yet applied is included as if it
    /// were.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when etcd cannot be read;
    /// [`StoreError::EtcdData`] when a record or event does not decode.
    pub async fn load_with_revision(&self, recent_events: usize) -> Result<(Loaded, u64), StoreError> {
        let records = self.key(RECORDS);
        let end = prefix_end(&records);
        let mut image = Image::default();
        let mut from = records.clone().into_bytes();
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let page = self.request("loading the records", self.kv().get(from.clone(), Some(options))).await?;
            if revision == 0 {
                revision = page.header().map_or(0, etcd_client::ResponseHeader::revision);
            }
            for kv in page.kvs() {
                let key = self.relative(kv.key(), RECORDS)?;
                let json = std::str::from_utf8(kv.value())
                    .map_err(|_| self.data_error(format!("the record \"{key}\" is not UTF-8")))?;
                image.load(key, json).map_err(|err| self.data_error(err.to_string()))?;
            }
            match page.kvs().last() {
                Some(last) if page.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        let mut events = Vec::new();
        if recent_events > 0 {
            let newest = GetOptions::new()
                .with_prefix()
                .with_revision(revision)
                .with_sort(SortTarget::Key, SortOrder::Descend)
                .with_limit(i64::try_from(recent_events).unwrap_or(i64::MAX));
            let page = self.request("loading the events", self.kv().get(self.key(EVENTS), Some(newest))).await?;
            for kv in page.kvs() {
                events.push(self.event(kv.key(), kv.value())?);
            }
            events.reverse();
        }
        if let Staged::Marked(ops) = self.staged(Some(revision)).await? {
            for op in &ops {
                match op {
                    Op::Put { key, value } if key.starts_with(RECORDS) => {
                        image.load(&key[RECORDS.len()..], value).map_err(|err| self.data_error(err.to_string()))?
                    }
                    Op::Delete { key } if key.starts_with(RECORDS) => image.remove(&key[RECORDS.len()..]),
                    Op::Put { key, value } if key.starts_with(EVENTS) => {
                        events.push(self.event(key.as_bytes(), value.as_bytes())?);
                    }
                    _ => {}
                }
            }
            events.sort_by_key(|event| event.seq);
            events.dedup_by_key(|event| event.seq);
            events.drain(..events.len().saturating_sub(recent_events));
        }
        Ok((Loaded { image, events }, u64::try_from(revision).unwrap_or(0)))
    }

    /// Follows every change to the records and the event log made after
    /// `from_revision` (a standby: the revision [`Etcd::load_with_revision`]
    /// returned, plus one). `recent_events` is how many events a reload
    /// brings when etcd's history no longer reaches back (compaction).
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when the watch cannot be made.
    pub async fn watch_records(&self, from_revision: u64, recent_events: usize) -> Result<StoreWatch, StoreError> {
        let mut watch = StoreWatch {
            etcd: self.clone(),
            stream: None,
            from: i64::try_from(from_revision).unwrap_or(i64::MAX),
            recent_events,
        };
        watch.stream = Some(watch.open().await?);
        Ok(watch)
    }

    /// An event's JSON.
    fn event(&self, key: &[u8], value: &[u8]) -> Result<ClusterEvent, StoreError> {
        serde_json::from_slice(value).map_err(|err| {
            self.data_error(format!("the event \"{}\" does not decode: {err}", String::from_utf8_lossy(key)))
        })
    }

    /// `key` without the prefix and `kind`.
    fn relative<'k>(&self, key: &'k [u8], kind: &str) -> Result<&'k str, StoreError> {
        std::str::from_utf8(key)
            .ok()
            .and_then(|key| key.strip_prefix(self.options.prefix.as_str()))
            .and_then(|key| key.strip_prefix(kind))
            .ok_or_else(|| self.data_error(format!("the key \"{}\" is not UTF-8", String::from_utf8_lossy(key))))
    }

    /// One transaction of `ops`, conditioned on the leadership.
    async fn fenced(&self, fence: &Fence, what: &str, ops: &[Op]) -> Result<(), StoreError> {
        let prefix = self.options.prefix.as_str();
        let txn =
            Txn::new().when(vec![fence.compare()]).and_then(ops.iter().map(|op| op.txn_op(prefix)).collect::<Vec<_>>());
        let response = self.request(what, self.kv().txn(txn)).await?;
        if response.succeeded() { Ok(()) } else { Err(StoreError::NotLeader { term: fence.term() }) }
    }

    /// What `staged/` holds, as of `revision` (now when `None`).
    async fn staged(&self, revision: Option<i64>) -> Result<Staged, StoreError> {
        let at = |options: GetOptions| match revision {
            Some(revision) => options.with_revision(revision),
            None => options,
        };
        let count = self
            .request(
                "reading staged batches",
                self.kv().get(self.key(STAGED), Some(at(GetOptions::new().with_prefix().with_count_only()))),
            )
            .await?;
        if count.count() == 0 {
            return Ok(Staged::Nothing);
        }
        let marker = self
            .request("reading staged batches", self.kv().get(self.key(STAGED_MARKER), Some(at(GetOptions::new()))))
            .await?;
        let Some(marker) = marker.kvs().first() else {
            return Ok(Staged::Unmarked);
        };
        let marker: Marker = serde_json::from_slice(marker.value()).map_err(|err| {
            self.data_error(format!("the marker \"{}\" does not decode: {err}", self.key(STAGED_MARKER)))
        })?;
        let mut ops = Vec::new();
        for index in 0..marker.chunks {
            let key = self.key(&staged_key(index));
            let chunk = self
                .request("reading a staged batch", self.kv().get(key.as_str(), Some(at(GetOptions::new()))))
                .await?;
            let Some(chunk) = chunk.kvs().first() else {
                return Err(self.data_error(format!(
                    "the staged batch {} has {} chunks, but \"{key}\" is missing",
                    marker.seq, marker.chunks
                )));
            };
            let part: Vec<Op> = serde_json::from_slice(chunk.value())
                .map_err(|err| self.data_error(format!("the staged chunk \"{key}\" does not decode: {err}")))?;
            ops.extend(part);
        }
        Ok(Staged::Marked(ops))
    }

    /// Applies a staged batch's operations, then clears `staged/`.
    async fn apply_staged(&self, fence: &Fence, ops: &[Op]) -> Result<(), StoreError> {
        for run in transactions(ops, &self.options.prefix) {
            self.fenced(fence, "applying a large batch", &ops[run]).await?;
        }
        self.clear_staged(fence).await
    }

    async fn clear_staged(&self, fence: &Fence) -> Result<(), StoreError> {
        let clear = Op::DeleteRange { from: STAGED.to_string(), to: STAGED_END.to_string() };
        self.fenced(fence, "clearing a staged batch", &[clear]).await
    }

    /// Applies a durable staged batch a previous commit (of this or another
    /// leader) left, and discards chunks that never became durable.
    async fn finish_staged(&self, fence: &Fence) -> Result<(), StoreError> {
        match self.staged(None).await? {
            Staged::Nothing => Ok(()),
            Staged::Unmarked => {
                info!("discarding a large batch whose writing was interrupted before it became durable");
                self.clear_staged(fence).await
            }
            Staged::Marked(ops) => {
                info!(operations = ops.len(), "applying a large batch that became durable but was not applied");
                self.apply_staged(fence, &ops).await
            }
        }
    }
}

impl EtcdStore {
    /// Makes the next large commit stop after its batch became durable and
    /// before it is applied, failing as a crash there would. For tests of
    /// that recovery.
    #[doc(hidden)]
    pub fn interrupt_after_staging(&mut self) {
        self.interrupt_after_staging = true;
    }

    async fn commit_batch(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let etcd = &self.etcd;
        if !self.settled {
            etcd.finish_staged(&self.fence).await?;
            self.settled = true;
        }
        let ops = operations(batch).map_err(|err| etcd.error(format!("cannot encode a record: {err}")))?;
        let prefix = etcd.options.prefix.as_str();
        let too_large = |op: &Op, size: usize| {
            etcd.error(format!(
                "the record \"{}\" takes {size} bytes, more than one etcd request may carry (1.5 MiB by default, --max-request-bytes); it cannot be stored",
                op.key()
            ))
        };
        let mut bytes = 0;
        for op in &ops {
            let size = op.size(prefix);
            if size > MAX_TXN_BYTES {
                return Err(too_large(op, size));
            }
            bytes += size;
        }
        if ops.len() <= MAX_TXN_OPS && bytes <= MAX_TXN_BYTES {
            return etcd.fenced(&self.fence, "committing a batch", &ops).await;
        }

        // A batch too large for one transaction: staged, marked, applied.
        // A staged batch an earlier attempt left goes first.
        etcd.finish_staged(&self.fence).await?;
        for op in &ops {
            let size = serde_json::to_string(op).map_or(usize::MAX, |json| json.len()) + OP_OVERHEAD;
            if size > MAX_TXN_BYTES {
                return Err(too_large(op, size));
            }
        }
        let chunks = chunks(&ops).map_err(|err| etcd.error(format!("cannot encode a staged batch: {err}")))?;
        for (index, chunk) in chunks.iter().enumerate() {
            let put = Op::Put { key: staged_key(index), value: chunk.clone() };
            etcd.fenced(&self.fence, "staging a large batch", &[put]).await?;
        }
        let marker = serde_json::to_string(&Marker { seq: batch.seq, chunks: chunks.len() })
            .map_err(|err| etcd.error(format!("cannot encode a staged batch: {err}")))?;
        etcd.fenced(
            &self.fence,
            "marking a large batch durable",
            &[Op::Put { key: STAGED_MARKER.into(), value: marker }],
        )
        .await?;
        if std::mem::take(&mut self.interrupt_after_staging) {
            return Err(etcd.error("the commit was interrupted after its batch became durable (a test)"));
        }
        etcd.apply_staged(&self.fence, &ops).await
    }
}

impl StateStore for EtcdStore {
    fn load(&mut self, recent_events: usize) -> Result<Loaded, StoreError> {
        let runtime = self.runtime.clone();
        runtime.block_on(async {
            self.etcd.finish_staged(&self.fence).await?;
            self.settled = true;
            Ok(self.etcd.load_with_revision(recent_events).await?.0)
        })
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let runtime = self.runtime.clone();
        runtime.block_on(self.commit_batch(batch))
    }

    fn describe(&self) -> String {
        self.etcd.describe()
    }
}

/// One change a standby sees.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    /// A record written (its JSON) or removed (`None`), under its
    /// [`Change::key`](crate::control::records::Change::key); apply it with
    /// [`Image::load_stored`].
    Record {
        /// The record's key.
        key: String,
        /// Its JSON; `None` when it was removed.
        json: Option<String>,
    },
    /// An event appended to the log.
    Event(ClusterEvent),
    /// etcd's history no longer reaches back to where the standby was
    /// (compaction): everything as of now, to replace what it holds.
    Reloaded(Box<Loaded>),
}

/// A standby's watch of the records and the event log
/// ([`Etcd::watch_records`]).
pub struct StoreWatch {
    /// The connection.
    etcd: Etcd,
    /// The watch, while it works.
    stream: Option<WatchStream>,
    /// The revision it resumes from.
    from: i64,
    /// Events a reload brings.
    recent_events: usize,
}

impl std::fmt::Debug for StoreWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWatch").field("etcd", &self.etcd).field("from", &self.from).finish_non_exhaustive()
    }
}

impl StoreWatch {
    /// The next changes (at least one), in the order they were made.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when the watch broke (etcd restarted or cannot
    /// be reached); calling `next` again resumes where it stopped.
    /// [`StoreError::EtcdData`] when a change does not decode.
    pub async fn next(&mut self) -> Result<Vec<Watched>, StoreError> {
        loop {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => self.stream.insert(self.open().await?),
            };
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => {
                    self.stream = None;
                    return Err(self.etcd.error("etcd ended the watch of the records"));
                }
                Err(err) => {
                    self.stream = None;
                    return Err(self.etcd.error(format!("the watch of the records failed: {}", reason(&err))));
                }
            };
            if response.canceled() {
                self.stream = None;
                if response.compact_revision() > 0 {
                    let (loaded, revision) = self.etcd.load_with_revision(self.recent_events).await?;
                    self.from = i64::try_from(revision).unwrap_or(i64::MAX) + 1;
                    return Ok(vec![Watched::Reloaded(Box::new(loaded))]);
                }
                return Err(self
                    .etcd
                    .error(format!("etcd cancelled the watch of the records: {}", response.cancel_reason())));
            }
            let mut changes = Vec::new();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                self.from = self.from.max(kv.mod_revision() + 1);
                let Some(key) = std::str::from_utf8(kv.key())
                    .ok()
                    .and_then(|key| key.strip_prefix(self.etcd.options.prefix.as_str()))
                else {
                    continue;
                };
                let put = event.event_type() == EventType::Put;
                if let Some(record) = key.strip_prefix(RECORDS) {
                    let json = if put {
                        Some(
                            String::from_utf8(kv.value().to_vec())
                                .map_err(|_| self.etcd.data_error(format!("the record \"{record}\" is not UTF-8")))?,
                        )
                    } else {
                        None
                    };
                    changes.push(Watched::Record { key: record.to_string(), json });
                } else if put && key.starts_with(EVENTS) {
                    changes.push(Watched::Event(self.etcd.event(kv.key(), kv.value())?));
                }
            }
            if !changes.is_empty() {
                return Ok(changes);
            }
        }
    }

    async fn open(&self) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(self.from);
        self.etcd
            .request(
                "watching the records",
                self.etcd.watcher().watch(self.etcd.options.prefix.as_str(), Some(options)),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use ringwatch_shared::names::NodeName;
    use ringwatch_shared::status::NodeState;

    use super::*;
    use crate::control::records::{Change, ClusterRecord, NodeRecord};

    fn event(seq: u64) -> ClusterEvent {
        ClusterEvent { seq, at_unix_ms: seq, reason: format!("event {seq}"), ..ClusterEvent::default() }
    }

    fn node(name: &str) -> Change {
        Change::Node(NodeRecord::new(NodeName::parse(name).unwrap(), NodeState::Alive))
    }

    #[test]
    fn a_batch_keeps_the_last_change_of_each_record_once() {
        let mut later = NodeRecord::new(NodeName::parse("a").unwrap(), NodeState::Alive);
        later.cordoned = true;
        let batch = Batch {
            seq: 1,
            changes: vec![node("a"), Change::Cluster(ClusterRecord::new(1)), Change::Node(later.clone()), node("b")],
            events: vec![event(1), event(2)],
        };
        let ops = operations(&batch).unwrap();
        let keys: Vec<&str> = ops.iter().map(Op::key).collect();
        assert_eq!(keys, ["records/node/a", "records/cluster", "records/node/b", &event_key(1), &event_key(2)]);
        assert_eq!(ops[0], Op::Put { key: "records/node/a".into(), value: serde_json::to_string(&later).unwrap() });
    }

    #[test]
    fn the_event_log_keeps_its_newest_events_and_trims_the_rest_in_the_same_batch() {
        let last = EVENT_LOG_LIMIT + 5;
        let batch = Batch { seq: 1, changes: Vec::new(), events: (1..=last).map(event).collect() };
        let ops = operations(&batch).unwrap();
        // Only events that stay are written: a put and the trim never
        // touch one key (etcd refuses that in one transaction).
        let first_kept = last - EVENT_LOG_LIMIT + 1;
        assert_eq!(ops.first().unwrap().key(), event_key(first_kept));
        assert_eq!(ops.len() as u64, EVENT_LOG_LIMIT + 1);
        assert_eq!(ops.last().unwrap(), &Op::DeleteRange { from: EVENTS.into(), to: event_key(first_kept) });
        let few = Batch { seq: 1, changes: Vec::new(), events: vec![event(3)] };
        assert_eq!(operations(&few).unwrap().len(), 1, "no trim below the limit");
        // Zero-padding keeps the keys in numeric order.
        assert!(event_key(99) < event_key(100));
    }

    #[test]
    fn transactions_respect_etcds_operation_and_size_limits() {
        let small: Vec<Op> = (0..300).map(|i| Op::Delete { key: format!("records/node/n{i}") }).collect();
        let runs = transactions(&small, "/ringwatch/");
        assert_eq!(runs, vec![0..128, 128..256, 256..300]);
        let big = "x".repeat(500_000);
        let large: Vec<Op> = (0..5).map(|i| Op::Put { key: format!("records/k{i}"), value: big.clone() }).collect();
        let runs = transactions(&large, "/ringwatch/");
        assert_eq!(runs, vec![0..2, 2..4, 4..5]);
        for run in runs {
            assert!(large[run].iter().map(|op| op.size("/ringwatch/")).sum::<usize>() <= MAX_TXN_BYTES);
        }
        assert!(transactions(&[], "/").is_empty());
    }

    #[test]
    fn staged_chunks_hold_every_operation_in_order_within_a_request() {
        let big = "y".repeat(300_000);
        let ops: Vec<Op> = (0..10).map(|i| Op::Put { key: format!("records/k{i}"), value: big.clone() }).collect();
        let chunks = chunks(&ops).unwrap();
        assert!(chunks.len() > 1);
        let mut back = Vec::new();
        for chunk in &chunks {
            assert!(chunk.len() <= MAX_TXN_BYTES, "{}", chunk.len());
            back.extend(serde_json::from_str::<Vec<Op>>(chunk).unwrap());
        }
        assert_eq!(back, ops);
        assert_eq!(super::chunks(&[]).unwrap(), vec!["[]".to_string()]);
    }
}
