//! Small copies, appended to pack files (ARCHITECTURE.md, "The data
//! store").
//!
//! A copy of at most [`MAX_PACKED`] bytes gets no file of its own:
//! creating, fsyncing and naming a file per copy is what small puts spent
//! most of their time on (BENCHMARKS.md, "The data store"). It is appended
//! to the pack being written, `<seq>.pack` (16 hex digits), as a record in
//! the copy file's own format (a header, then the bytes); one fdatasync,
//! shared by every append made before it started ([`GroupSync`]), makes it
//! durable. When a packed copy stops being current other than by a newer
//! packed version — replaced by a copy in a file, discarded, forgotten — a
//! forget record names its key and version, so reading the packs again
//! does not bring it back.
//!
//! Opening replays the packs oldest first: a copy record is current unless
//! its key's current version is as new or newer; a forget record ends the
//! copy of exactly its version. A record cut short, or whose bytes are not
//! their checksum — what a crash leaves at the end of the pack being
//! appended to — ends the reading of that pack; an opened store always
//! appends to a new pack, so nothing is written behind such a tail.
//!
//! Packs are sealed at a length ([`PackLimits`]). When the dead records of
//! all packs outweigh the live ones and pass a threshold, the oldest sealed
//! pack's live copies are appended anew and the pack is removed
//! ([`Packs::compaction_due`]). Only ever the oldest: a forget record ends
//! a copy appended before it, in its own pack or an older one, so once no
//! older pack is left every copy it could end goes with it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ring::digest::{Context, SHA256};
use ringwatch_shared::data::{ObjectKey, ObjectMeta, Version};
use ringwatch_shared::token::to_hex;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::group_sync::GroupSync;
use super::{MAGIC, MAX_HEADER_JSON, PRIVATE, header};

/// Copies of at most this many bytes are packed: 64 KiB, where a file of
/// its own stops costing much more than the bytes' own writing.
pub const MAX_PACKED: u64 = 64 * 1024;
/// When packs are sealed and compacted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PackLimits {
    /// A pack is sealed, and the next one begun, past this length.
    pub(crate) pack_len: u64,
    /// Dead records are compacted away only past this many bytes.
    pub(crate) compact_after: u64,
}

impl Default for PackLimits {
    /// 16 MiB packs, small enough that compacting one (under the store's
    /// lock) is brief; compaction past 32 MiB of dead records.
    fn default() -> Self {
        Self { pack_len: 16 << 20, compact_after: 32 << 20 }
    }
}
/// The tag of a forget record; the last byte is the layout's version.
const FORGET_MAGIC: &[u8; 8] = b"rwfgt\0\0\x01";
/// The packs' file-name suffix.
const SUFFIX: &str = ".pack";

/// Where a packed copy's record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackedAt {
    /// The pack's sequence number.
    pub(crate) pack: u64,
    /// The record's first byte.
    pub(crate) start: u64,
    /// The record's length: header and bytes.
    pub(crate) len: u64,
}

/// What a forget record holds.
#[derive(Debug, Serialize, Deserialize)]
struct Forgotten {
    key: ObjectKey,
    version: Version,
}

/// The packs of one store.
#[derive(Debug)]
pub(crate) struct Packs {
    dir: PathBuf,
    state: Mutex<PackState>,
    /// The active pack's fdatasyncs.
    sync: GroupSync,
    limits: PackLimits,
}

#[derive(Debug)]
struct PackState {
    /// The pack appended to.
    active: u64,
    packs: BTreeMap<u64, PackFile>,
    /// A forget record was appended since the last fdatasync began.
    unsynced_forgets: bool,
}

#[derive(Debug)]
struct PackFile {
    file: Arc<File>,
    /// Bytes written (the next record's start).
    len: u64,
    /// Bytes of the records that are current copies (or about to be).
    live: u64,
    /// Copies appended, not yet current or dropped: the pack is not
    /// compacted while any are, as compaction moves only current copies.
    pinned: usize,
}

/// Keeps a pack from compaction while a copy appended to it is not yet
/// current; see [`Packs::unpin`].
#[derive(Debug)]
pub(crate) struct Pin {
    pack: u64,
}

impl Packs {
    /// Opens the packs in `dir`: the current packed copies, found by
    /// replaying them. The next append begins a new pack.
    ///
    /// # Errors
    /// When the directory cannot be read or a pack opened or made.
    pub(crate) fn open(dir: &Path, limits: PackLimits) -> io::Result<(Self, Vec<(ObjectMeta, PackedAt)>)> {
        let seqs = pack_seqs(dir)?;
        let mut current: BTreeMap<ObjectKey, (ObjectMeta, PackedAt)> = BTreeMap::new();
        let mut packs = BTreeMap::new();
        for &seq in &seqs {
            let path = dir.join(pack_name(seq));
            let file = File::open(&path)?;
            let len = file.metadata()?.len();
            if len == 0 {
                let _ = fs::remove_file(&path);
                continue;
            }
            replay(seq, &path, &file, &mut current);
            packs.insert(seq, PackFile { file: Arc::new(file), len, live: 0, pinned: 0 });
        }
        for (_, at) in current.values() {
            if let Some(pack) = packs.get_mut(&at.pack) {
                pack.live += at.len;
            }
        }
        let active = seqs.last().map_or(1, |last| last + 1);
        let state = PackState { active, packs, unsynced_forgets: false };
        let packs = Self { dir: dir.to_path_buf(), state: Mutex::new(state), sync: GroupSync::default(), limits };
        Ok((packs, current.into_values().collect()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PackState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a copy of `meta` holding `bytes` and waits until it is
    /// durable. The copy counts as live and its pack is pinned until
    /// [`Packs::unpin`]; [`Packs::release`] once it is no longer current.
    ///
    /// # Errors
    /// The disk's; the copy is then dropped.
    pub(crate) fn append_copy(&self, meta: &ObjectMeta, bytes: &[u8]) -> io::Result<(PackedAt, Pin)> {
        let at = self.append(&copy_record(meta, bytes)?, 1)?;
        let pin = Pin { pack: at.pack };
        if let Err(err) = self.sync() {
            self.release(at);
            self.unpin(pin);
            return Err(err);
        }
        Ok((at, pin))
    }

    /// Appends the copy records `records` (each a header and its bytes)
    /// in one write, without waiting: durable at the next
    /// [`Packs::sync`]. Each is live and pinned, as with
    /// [`Packs::append_copy`].
    ///
    /// # Errors
    /// The disk's.
    pub(crate) fn append_records(&self, records: &[&[u8]]) -> io::Result<Vec<(PackedAt, Pin)>> {
        let whole = records.concat();
        let first = self.append(&whole, records.len())?;
        let mut start = first.start;
        Ok(records
            .iter()
            .map(|record| {
                let at = PackedAt { pack: first.pack, start, len: record.len() as u64 };
                start += at.len;
                (at, Pin { pack: at.pack })
            })
            .collect())
    }

    /// Appends a forget record for `key` at `version`, durable at the next
    /// [`Packs::sync_forgets`] (or any later fdatasync).
    ///
    /// # Errors
    /// The disk's.
    pub(crate) fn append_forget(&self, key: &ObjectKey, version: Version) -> io::Result<()> {
        let json = serde_json::to_vec(&Forgotten { key: key.clone(), version }).map_err(io::Error::other)?;
        let len = u32::try_from(json.len()).map_err(io::Error::other)?;
        let mut record = Vec::with_capacity(FORGET_MAGIC.len() + 4 + json.len());
        record.extend_from_slice(FORGET_MAGIC);
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&json);
        self.append(&record, 0)?;
        self.lock().unsynced_forgets = true;
        Ok(())
    }

    /// Writes `record` at the end of the active pack (sealing it first if
    /// it is full). With `copies` > 0 it is that many copy records, live
    /// and each pinned; with 0, a forget record.
    fn append(&self, record: &[u8], copies: usize) -> io::Result<PackedAt> {
        let mut state = self.lock();
        let begin = match state.packs.get(&state.active) {
            // The first append since the store opened.
            None => Some(state.active),
            Some(sealed) if sealed.len >= self.limits.pack_len => {
                // The sealed pack's appends are made durable before any
                // lands in the next, so an fdatasync of the active pack
                // covers every append made before it began.
                sealed.file.sync_data()?;
                Some(state.active + 1)
            }
            Some(_) => None,
        };
        if let Some(next) = begin {
            let file = create(&self.dir, next)?;
            state.packs.insert(next, PackFile { file: Arc::new(file), len: 0, live: 0, pinned: 0 });
            state.active = next;
        }
        let active = state.active;
        let pack = state.packs.get_mut(&active).ok_or_else(|| io::Error::other("no active pack"))?;
        // At the recorded end, not appended: a write that failed part way
        // is written over by the next.
        pack.file.write_all_at(record, pack.len)?;
        let at = PackedAt { pack: active, start: pack.len, len: record.len() as u64 };
        pack.len += at.len;
        if copies > 0 {
            pack.live += at.len;
            pack.pinned += copies;
        }
        Ok(at)
    }

    /// Returns once every record appended before the call is durable.
    ///
    /// # Errors
    /// The disk's.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.sync.sync(|| {
            let file = {
                let mut state = self.lock();
                state.unsynced_forgets = false;
                state.packs.get(&state.active).map(|pack| pack.file.clone())
            };
            file.map_or(Ok(()), |file| file.sync_data())
        })
    }

    /// Makes the forget records appended so far durable, if there are any
    /// not yet: before a copy in a file is removed, so that a packed copy
    /// it replaced cannot come back.
    ///
    /// # Errors
    /// The disk's.
    pub(crate) fn sync_forgets(&self) -> io::Result<()> {
        if self.lock().unsynced_forgets { self.sync() } else { Ok(()) }
    }

    /// The bytes of the `size`-byte copy at `at`.
    ///
    /// # Errors
    /// The disk's; a pack gone (compacted away under a stale location).
    pub(crate) fn read(&self, at: PackedAt, size: u64) -> io::Result<Vec<u8>> {
        let file = self.file_of(at.pack)?;
        let mut bytes = vec![0; usize::try_from(size).map_err(io::Error::other)?];
        file.read_exact_at(&mut bytes, at.start + at.len - size)?;
        Ok(bytes)
    }

    /// Pack `seq`'s file.
    fn file_of(&self, seq: u64) -> io::Result<Arc<File>> {
        let file = self.lock().packs.get(&seq).map(|pack| pack.file.clone());
        file.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("pack {seq} is gone")))
    }

    /// The copy at `at` is no longer current: its record is dead.
    pub(crate) fn release(&self, at: PackedAt) {
        if let Some(pack) = self.lock().packs.get_mut(&at.pack) {
            pack.live = pack.live.saturating_sub(at.len);
        }
    }

    /// The copy `pin` was taken for is current, or dropped.
    pub(crate) fn unpin(&self, pin: Pin) {
        if let Some(pack) = self.lock().packs.get_mut(&pin.pack) {
            pack.pinned = pack.pinned.saturating_sub(1);
        }
    }

    /// The pack to compact, if one is due: the oldest, when it is sealed
    /// and unpinned and dead records outweigh live ones past the limit.
    pub(crate) fn compaction_due(&self) -> Option<u64> {
        let state = self.lock();
        let (len, live) = state.packs.values().fold((0, 0), |(len, live), pack| (len + pack.len, live + pack.live));
        let dead = len - live.min(len);
        let (&oldest, pack) = state.packs.iter().next()?;
        (dead > self.limits.compact_after && dead > live && oldest != state.active && pack.pinned == 0)
            .then_some(oldest)
    }

    /// Appends the record at `at` anew (compaction), without waiting for
    /// it to be durable: [`Packs::sync`] once all are moved.
    ///
    /// # Errors
    /// The disk's.
    pub(crate) fn move_record(&self, at: PackedAt) -> io::Result<PackedAt> {
        let file = self.file_of(at.pack)?;
        let mut record = vec![0; usize::try_from(at.len).map_err(io::Error::other)?];
        file.read_exact_at(&mut record, at.start)?;
        let moved = self.append(&record, 1)?;
        let mut state = self.lock();
        if let Some(pack) = state.packs.get_mut(&moved.pack) {
            pack.pinned = pack.pinned.saturating_sub(1);
        }
        Ok(moved)
    }

    /// Removes pack `seq`, whose live copies were moved; the caller makes
    /// the removal durable (a directory fsync).
    ///
    /// # Errors
    /// The disk's.
    pub(crate) fn remove(&self, seq: u64) -> io::Result<()> {
        self.lock().packs.remove(&seq);
        fs::remove_file(self.dir.join(pack_name(seq)))
    }

    /// The active packs' fdatasyncs started so far.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.sync.started()
    }

    /// Bytes the packs take on disk, live and dead.
    #[cfg(test)]
    pub(crate) fn disk_len(&self) -> u64 {
        self.lock().packs.values().map(|pack| pack.len).sum()
    }
}

/// The current packed copies in `dir`, read without changing anything.
///
/// # Errors
/// When the directory or a pack cannot be read.
pub(crate) fn packed_copies(dir: &Path) -> io::Result<Vec<ObjectMeta>> {
    let mut current = BTreeMap::new();
    for seq in pack_seqs(dir)? {
        let path = dir.join(pack_name(seq));
        replay(seq, &path, &File::open(&path)?, &mut current);
    }
    Ok(current.into_values().map(|(meta, _)| meta).collect())
}

/// A copy's record: its header, then its bytes.
pub(crate) fn copy_record(meta: &ObjectMeta, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut record = header(meta)?;
    record.extend_from_slice(bytes);
    Ok(record)
}

/// The sequence numbers of the packs in `dir`, oldest first.
fn pack_seqs(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(seq) = pack_seq(&entry?.file_name().to_string_lossy()) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The packs of the store in `dir`, as errors about them name them.
pub(crate) fn packs_path(dir: &Path) -> PathBuf {
    dir.join(format!("*{SUFFIX}"))
}

/// Whether `name` is a pack's, and its sequence number.
pub(crate) fn pack_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SUFFIX)?;
    (stem.len() == 16).then(|| u64::from_str_radix(stem, 16).ok()).flatten()
}

fn pack_name(seq: u64) -> String {
    format!("{seq:016x}{SUFFIX}")
}

/// Makes pack `seq`, durably named.
fn create(dir: &Path, seq: u64) -> io::Result<File> {
    let file =
        OpenOptions::new().read(true).write(true).create_new(true).mode(PRIVATE).open(dir.join(pack_name(seq)))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// One record read back.
enum Record {
    Copy(ObjectMeta),
    Forget(Forgotten),
}

/// Replays pack `seq` into `current`, up to its first damaged record.
fn replay(seq: u64, path: &Path, file: &File, current: &mut BTreeMap<ObjectKey, (ObjectMeta, PackedAt)>) {
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut start = 0u64;
    loop {
        let (record, len) = match read_record(&mut reader) {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(problem) => {
                warn!(pack = %path.display(), offset = start, %problem,
                    "a pack ends in a damaged record; the copies after it are dropped and the console copies them again");
                return;
            }
        };
        match record {
            Record::Copy(meta) => {
                let newer = current.get(&meta.key).is_none_or(|(held, _)| meta.version > held.version);
                if newer {
                    current.insert(meta.key.clone(), (meta, PackedAt { pack: seq, start, len }));
                }
            }
            Record::Forget(forgotten) => {
                if current.get(&forgotten.key).is_some_and(|(held, _)| held.version == forgotten.version) {
                    current.remove(&forgotten.key);
                }
            }
        }
        start += len;
    }
}

/// The next record and its length; `None` at the clean end of the pack.
fn read_record(reader: &mut impl Read) -> Result<Option<(Record, u64)>, String> {
    let mut start = [0u8; 12];
    match reader.read(&mut start[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(err) => return Err(err.to_string()),
    }
    reader.read_exact(&mut start[1..]).map_err(|_| "a header cut short".to_string())?;
    let len = u32::from_le_bytes([start[8], start[9], start[10], start[11]]) as usize;
    if len > MAX_HEADER_JSON {
        return Err(format!("a header claiming {len} bytes of metadata"));
    }
    let mut json = vec![0; len];
    reader.read_exact(&mut json).map_err(|_| "a header cut short".to_string())?;
    let header_len = (start.len() + len) as u64;
    if &start[..8] == FORGET_MAGIC {
        let forgotten: Forgotten = serde_json::from_slice(&json).map_err(|err| err.to_string())?;
        return Ok(Some((Record::Forget(forgotten), header_len)));
    }
    if &start[..8] != MAGIC {
        return Err("a record that is neither a copy nor a forget".into());
    }
    let meta: ObjectMeta = serde_json::from_slice(&json).map_err(|err| err.to_string())?;
    if meta.size > MAX_PACKED {
        return Err(format!("a copy of {} bytes, more than a pack holds", meta.size));
    }
    let mut bytes = vec![0; usize::try_from(meta.size).map_err(|err| err.to_string())?];
    reader.read_exact(&mut bytes).map_err(|_| format!("the bytes of \"{}\" cut short", meta.key))?;
    if !meta.tombstone {
        let mut hasher = Context::new(&SHA256);
        hasher.update(&bytes);
        if to_hex(hasher.finish().as_ref()) != meta.checksum {
            return Err(format!("the bytes of \"{}\" are not their checksum", meta.key));
        }
    }
    Ok(Some((Record::Copy(meta), header_len + bytes.len() as u64)))
}
