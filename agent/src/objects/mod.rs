//! The agent's copies of the data store's objects (README.md, "Data"), in a
//! directory of their own with a disk quota.
//!
//! Copies of at most [`MAX_PACKED`] bytes, and tombstones, are appended to
//! pack files (the `pack` module); what follows is how a larger copy is
//! kept. The index, the quota, the version checks and the digests are the
//! same for both.
//!
//! Each larger copy is one file named by the SHA-256 of its key and its
//! version, `<hash>.<term>-<counter>.obj`: a header (a magic tag, then the
//! metadata as length-prefixed JSON: key, version, size, checksum,
//! tombstone), then the bytes. A copy is written as: header and bytes to a temporary file
//! (checksummed as they stream in, never whole in memory), fsync, linked
//! under its versioned name (never replacing a file already there: the
//! same version again is taken as held if its checksum matches, refused
//! otherwise), a directory fsync; only then, under the store's lock, is it
//! checked against what is held and made current, and the previous
//! version's file removed. The fsyncs run outside the lock, so copies of
//! different objects are made durable at the same time, and one directory
//! fsync covers every rename done before it started (group commit): a
//! commit costs one fsync of its own and a share of a directory fsync.
//!
//! A crash at any point leaves the previous version's file, or the new one
//! complete (named only once durable), or both; opening the store keeps
//! the highest version of each key, removes the others and what no copy
//! names (temporary files), and drops a copy whose file is damaged (bad
//! header, wrong size), so the console re-replicates it. A lower version
//! never replaces a higher one: the check is made when the copy is made
//! current, under the lock, not only when it begins.
//!
//! Stores written before this layout keep each copy as two files,
//! `<hash>.meta` (the metadata as JSON) naming `<hash>.<term>-<counter>.data`
//! (the bytes alone). Opening reads them in place (no copying); the next
//! version of such a key is written in the new layout and the old files go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::digest::{Context, SHA256};
use ringwatch_net::files;
use ringwatch_shared::data::digest::Digests;
use ringwatch_shared::data::{ObjectKey, ObjectMeta, Version};
use ringwatch_shared::token::to_hex;
use tracing::warn;

use self::group_sync::GroupSync;
pub use self::pack::MAX_PACKED;
use self::pack::{PackLimits, PackedAt, Packs, Pin};

mod group_sync;
mod pack;

/// File mode of stored copies: the agent's own.
const PRIVATE: u32 = 0o600;

/// The store's directory in the agent's data dir (README.md, "Agent
/// options"): the copies live apart from the credentials, so the quota
/// counts only them.
pub const OBJECTS_DIR: &str = "objects";

/// The data quota when `--data-quota` is not given: 10 GiB. Large enough
/// for the workloads README.md's "Data" section shows (hundreds of objects,
/// a few of 64 MiB, a 1 GiB node's worth of repair) on every node, small
/// enough that an operator who never thought about it does not find a
/// host's disk filled by copies; a fixed figure rather than a share of the
/// free space, so that what a node accepts does not change with whatever
/// else writes to its disk.
pub const DEFAULT_DATA_QUOTA: u64 = 10 << 30;

/// Where the agent with data dir `data_dir` keeps its copies.
pub fn objects_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(OBJECTS_DIR)
}

/// Every copy on disk in the store directory `dir`, read without changing
/// anything (the store may be open in a running agent): each copy file's,
/// older versions a removal has not reached yet included, and the current
/// packed copies. For tests and inspection; damaged copies are left out.
///
/// # Errors
/// When the directory or a pack cannot be read.
pub fn copies_on_disk(dir: &Path) -> io::Result<Vec<ObjectMeta>> {
    let mut copies = pack::packed_copies(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".obj")
            && let Ok(found) = load_copy(&entry.path(), &name)
        {
            copies.push(found.entry.meta);
        } else if name.ends_with(".meta")
            && let Ok(meta) = fs::read_to_string(entry.path())
                .map_err(|err| err.to_string())
                .and_then(|text| serde_json::from_str::<ObjectMeta>(&text).map_err(|err| err.to_string()))
        {
            copies.push(meta);
        }
    }
    Ok(copies)
}

/// How full the store is, for `ringwatch-agent status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataUsage {
    /// Live copies held (tombstones not counted).
    pub objects: u64,
    /// Bytes they take.
    pub bytes: u64,
    /// The quota.
    pub quota: u64,
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The disk.
    #[error("object store at \"{path}\": {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// Taking the copy would exceed the quota.
    #[error("no room for {size} bytes: {used} of the {quota}-byte data quota are used")]
    OverQuota {
        /// The copy's size.
        size: u64,
        /// Bytes held.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// The store holds a newer version already: the write is stale.
    #[error("\"{key}\" is held at version {held}, newer than {offered}")]
    Stale {
        /// The key.
        key: ObjectKey,
        /// What is held.
        held: Version,
        /// What was offered.
        offered: Version,
    },
    /// The bytes that arrived are not what was announced.
    #[error("the bytes of \"{key}\" do not match: {problem}")]
    Mismatch {
        /// The key.
        key: ObjectKey,
        /// Size or checksum.
        problem: String,
    },
    /// No copy of the key.
    #[error("no copy of \"{0}\"")]
    NotFound(ObjectKey),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ObjectsError + '_ {
    move |source| ObjectsError::Io { path: path.to_path_buf(), source }
}

/// The store.
#[derive(Debug)]
pub struct ObjectStore {
    dir: PathBuf,
    quota: u64,
    /// What is held, by key. Hashed, not ordered: every copy a put makes
    /// looks its key up a few times, and with tens of thousands of keys
    /// an ordered map's string comparisons were 8 % of an agent's CPU
    /// (BENCHMARKS.md, "The data store"); nothing needs the keys in order.
    index: HashMap<ObjectKey, Entry>,
    used: u64,
    digests: Digests,
    /// Shared by the store's commits: one directory fsync covers the
    /// renames of all of them made before it started.
    dir_sync: Arc<DirSync>,
    /// Where copies of at most `max_packed` bytes go.
    packs: Arc<Packs>,
    max_packed: u64,
}

/// A copy's bytes, as [`ObjectStore::read`] finds them.
#[derive(Debug)]
pub enum StoredBytes {
    /// In a file of its own, positioned at the first byte.
    File(File),
    /// Packed: read whole (at most [`MAX_PACKED`] bytes).
    Packed(Vec<u8>),
}

/// One held copy and where its bytes are.
#[derive(Debug, Clone)]
struct Entry {
    meta: ObjectMeta,
    place: Place,
}

/// Where a copy's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// A file of its own, `<hash>.<version>.obj`; the bytes start at
    /// `offset`, after the header.
    File { name: String, offset: u64 },
    /// The old two-file layout: `<hash>.meta` and, unless the copy is a
    /// tombstone, the bytes alone in `data`.
    Legacy { data: Option<String> },
    /// A record in a pack.
    Packed(PackedAt),
}

impl Entry {
    fn packed(&self) -> Option<PackedAt> {
        match self.place {
            Place::Packed(at) => Some(at),
            _ => None,
        }
    }

    fn is_legacy(&self) -> bool {
        matches!(self.place, Place::Legacy { .. })
    }
}

/// A copy being written; [`PendingCopy::persist`] makes it durable, then
/// [`ObjectStore::install`] current ([`ObjectStore::commit`] does both).
/// Dropping it abandons it (the temporary file is removed).
pub struct PendingCopy {
    meta: ObjectMeta,
    dir: PathBuf,
    temp: PathBuf,
    file: Option<File>,
    hasher: Context,
    written: u64,
    /// Bytes of the header before the copy's bytes.
    offset: u64,
    dir_sync: Arc<DirSync>,
    /// A copy to be packed: its bytes as they arrive (at most
    /// [`MAX_PACKED`]), taken when it is persisted; `file` is `None`.
    packed: Option<Vec<u8>>,
    packs: Arc<Packs>,
}

impl std::fmt::Debug for PendingCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCopy").field("meta", &self.meta).field("written", &self.written).finish_non_exhaustive()
    }
}

impl PendingCopy {
    /// Appends the next chunk of the bytes.
    ///
    /// # Errors
    /// [`ObjectsError::Mismatch`] when more bytes arrive than announced;
    /// the disk's errors.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ObjectsError> {
        let len = chunk.len() as u64;
        if self.written.saturating_add(len) > self.meta.size {
            return Err(ObjectsError::Mismatch {
                key: self.meta.key.clone(),
                problem: format!("more than the {} bytes announced", self.meta.size),
            });
        }
        if let Some(packed) = self.packed.as_mut() {
            packed.extend_from_slice(chunk);
        } else {
            let file = self.file.as_mut().ok_or_else(|| ObjectsError::Io {
                path: self.temp.clone(),
                source: io::Error::other("the copy was already finished"),
            })?;
            file.write_all(chunk).map_err(io_error(&self.temp))?;
        }
        self.hasher.update(chunk);
        self.written += len;
        Ok(())
    }

    /// The copy's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// Checks the bytes against what was announced, fsyncs them, renames
    /// them to their versioned name and waits for a directory fsync that
    /// covers the rename: the copy is durable, not yet current. Runs
    /// without the store's lock, so copies are made durable side by side.
    ///
    /// # Errors
    /// [`ObjectsError::Mismatch`] when the size or checksum is not what was
    /// announced (the temporary file is removed); the disk's errors.
    pub fn persist(mut self) -> Result<DurableCopy, ObjectsError> {
        let meta = self.meta.clone();
        if let Some(bytes) = self.packed.take() {
            return self.persist_packed(meta, &bytes);
        }
        let file = self.file.take().ok_or_else(|| ObjectsError::Io {
            path: self.temp.clone(),
            source: io::Error::other("the copy was already finished"),
        })?;
        if let Err(err) = self.check(&meta) {
            let _ = fs::remove_file(&self.temp);
            return Err(err);
        }
        let synced = file.sync_all();
        drop(file);
        if let Err(err) = synced {
            let _ = fs::remove_file(&self.temp);
            return Err(io_error(&self.temp)(err));
        }
        let name = copy_name(&meta);
        let path = self.dir.join(&name);
        // Linked, not renamed, so an existing file of the same name — the
        // same version written before, or being written alongside — is
        // never replaced: `install` decides whether that one stands for
        // this copy. The temporary name goes either way.
        let existing = match fs::hard_link(&self.temp, &path) {
            Ok(()) => false,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => true,
            Err(err) => {
                let _ = fs::remove_file(&self.temp);
                return Err(io_error(&path)(err));
            }
        };
        let _ = fs::remove_file(&self.temp);
        // A failed directory fsync leaves the file: a copy of the same
        // version written at the same time may have the same name and be
        // current. Opening the store sorts it out either way.
        self.dir_sync.sync().map_err(io_error(&self.dir))?;
        Ok(DurableCopy {
            entry: Entry { meta, place: Place::File { name, offset: self.offset } },
            dir: self.dir.clone(),
            installed: false,
            existing,
            pin: None,
            packs: self.packs.clone(),
        })
    }

    /// [`PendingCopy::persist`] of a copy to be packed: checked, then
    /// appended to the active pack and made durable.
    fn persist_packed(&self, meta: ObjectMeta, bytes: &[u8]) -> Result<DurableCopy, ObjectsError> {
        self.check(&meta)?;
        let path = pack::packs_path(&self.dir);
        let (at, pin) = self.packs.append_copy(&meta, bytes).map_err(io_error(&path))?;
        Ok(self.durable_packed(at, pin))
    }

    /// The copy, appended at `at`.
    fn durable_packed(&self, at: PackedAt, pin: Pin) -> DurableCopy {
        DurableCopy {
            entry: Entry { meta: self.meta.clone(), place: Place::Packed(at) },
            dir: self.dir.clone(),
            installed: false,
            existing: false,
            pin: Some(pin),
            packs: self.packs.clone(),
        }
    }

    /// Whether the bytes that arrived are the ones announced.
    fn check(&self, meta: &ObjectMeta) -> Result<(), ObjectsError> {
        let mismatch = |problem: String| ObjectsError::Mismatch { key: meta.key.clone(), problem };
        if self.written != meta.size {
            return Err(mismatch(format!("{} bytes arrived, {} were announced", self.written, meta.size)));
        }
        let checksum = to_hex(self.hasher.clone().finish().as_ref());
        if !meta.tombstone && checksum != meta.checksum {
            return Err(mismatch(format!("their SHA-256 is {checksum}, not {}", meta.checksum)));
        }
        Ok(())
    }
}

/// [`PendingCopy::persist`] of several copies at once: the packed ones
/// are appended in one write and made durable by one fdatasync (a put's
/// copies arrive many at a time, and each fdatasync is a trip to the
/// disk); the others persist one by one.
pub fn persist_together(copies: Vec<PendingCopy>) -> Vec<Result<DurableCopy, ObjectsError>> {
    let mut results: Vec<Option<Result<DurableCopy, ObjectsError>>> = Vec::with_capacity(copies.len());
    // The packed copies that passed their checks: where their result goes,
    // the copy, its record.
    let mut packing: Vec<(usize, PendingCopy, Vec<u8>)> = Vec::new();
    for mut copy in copies {
        let index = results.len();
        match copy.packed.take() {
            Some(bytes) => match copy
                .check(&copy.meta)
                .and_then(|()| pack::copy_record(&copy.meta, &bytes).map_err(io_error(&copy.dir)))
            {
                Ok(record) => {
                    packing.push((index, copy, record));
                    results.push(None);
                }
                Err(err) => results.push(Some(Err(err))),
            },
            None => results.push(Some(copy.persist())),
        }
    }
    if let Some((_, first, _)) = packing.first() {
        let (packs, path) = (first.packs.clone(), pack::packs_path(&first.dir));
        let records: Vec<&[u8]> = packing.iter().map(|(_, _, record)| record.as_slice()).collect();
        match packs.append_records(&records) {
            Ok(places) => {
                let synced = packs.sync().map_err(|err| err.to_string());
                for ((index, copy, _), (at, pin)) in packing.into_iter().zip(places) {
                    // Dropped on failure: that releases its record.
                    let durable = copy.durable_packed(at, pin);
                    results[index] = Some(match &synced {
                        Ok(()) => Ok(durable),
                        Err(why) => Err(ObjectsError::Io { path: path.clone(), source: io::Error::other(why.clone()) }),
                    });
                }
            }
            Err(err) => {
                let why = err.to_string();
                for (index, _, _) in packing {
                    results[index] =
                        Some(Err(ObjectsError::Io { path: path.clone(), source: io::Error::other(why.clone()) }));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(ObjectsError::Io { path: PathBuf::new(), source: io::Error::other("the copy was not persisted") })
            })
        })
        .collect()
}

impl Drop for PendingCopy {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// A copy durable under its versioned name, not yet current:
/// [`ObjectStore::install`] makes it so. Dropping it uninstalled removes
/// its file.
#[derive(Debug)]
pub struct DurableCopy {
    entry: Entry,
    dir: PathBuf,
    installed: bool,
    /// Its versioned name was taken already: the file is not this copy's
    /// to remove.
    existing: bool,
    /// A packed copy's hold on its pack until it is current or dropped.
    pin: Option<Pin>,
    packs: Arc<Packs>,
}

impl DurableCopy {
    /// The copy's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        &self.entry.meta
    }
}

impl Drop for DurableCopy {
    fn drop(&mut self) {
        if let Some(pin) = self.pin.take() {
            // Not made current: its record is dead (a later version, or a
            // forget record, outranks it when the packs are read again).
            if !self.installed
                && let Some(at) = self.entry.packed()
            {
                self.packs.release(at);
            }
            self.packs.unpin(pin);
        } else if !self.installed
            && !self.existing
            && let Place::File { name, .. } = &self.entry.place
        {
            let _ = fs::remove_file(self.dir.join(name));
        }
    }
}

/// The store directory's fsyncs, grouped ([`GroupSync`]).
#[derive(Debug)]
struct DirSync {
    dir: PathBuf,
    group: GroupSync,
}

impl DirSync {
    fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), group: GroupSync::default() }
    }

    /// Returns once a directory fsync begun after this call has finished.
    fn sync(&self) -> io::Result<()> {
        self.group.sync(|| File::open(&self.dir)?.sync_all())
    }
}

/// What opening found of one key.
struct Found {
    entry: Entry,
    /// Its files: the `.obj`, or the `.meta` and `.data` of the old layout.
    files: Vec<String>,
}

impl ObjectStore {
    /// Opens (creating) the store in `dir` with `quota` bytes, cleaning up
    /// what a crash left.
    ///
    /// # Errors
    /// When the directory cannot be read or created.
    pub fn open(dir: &Path, quota: u64) -> Result<Self, ObjectsError> {
        Self::open_packing(dir, quota, MAX_PACKED)
    }

    /// [`ObjectStore::open`], packing copies of at most `max_packed`
    /// bytes (0: none).
    ///
    /// # Errors
    /// When the directory cannot be read or created.
    fn open_packing(dir: &Path, quota: u64, max_packed: u64) -> Result<Self, ObjectsError> {
        Self::open_with(dir, quota, max_packed, PackLimits::default())
    }

    fn open_with(dir: &Path, quota: u64, max_packed: u64, limits: PackLimits) -> Result<Self, ObjectsError> {
        files::create_private_dir(dir).map_err(io_error(dir))?;
        let (packs, packed) = Packs::open(dir, limits).map_err(io_error(dir))?;
        let mut store = Self {
            dir: dir.to_path_buf(),
            quota,
            index: HashMap::new(),
            used: 0,
            digests: Digests::default(),
            dir_sync: Arc::new(DirSync::new(dir)),
            packs: Arc::new(packs),
            max_packed: max_packed.min(MAX_PACKED),
        };
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if pack::pack_seq(&name).is_none() {
                names.push(name);
            }
        }
        // Per key, the highest version found; the others are removed with
        // what nothing names.
        let mut found: BTreeMap<ObjectKey, Found> = BTreeMap::new();
        for name in &names {
            let path = dir.join(name);
            let loaded = if name.ends_with(".meta") {
                store.load_legacy(&path)
            } else if name.ends_with(".obj") {
                load_copy(&path, name).map(Some)
            } else {
                continue;
            };
            match loaded {
                Ok(Some(candidate)) => {
                    let newer = found.get(&candidate.entry.meta.key).is_none_or(|held| {
                        let (offered, held) = (&candidate.entry, &held.entry);
                        // At the same version the new layout wins: the old
                        // one is what a crash left while replacing it.
                        offered.meta.version > held.meta.version
                            || (offered.meta.version == held.meta.version && held.is_legacy() && !offered.is_legacy())
                    });
                    if newer {
                        found.insert(candidate.entry.meta.key.clone(), candidate);
                    }
                }
                Ok(None) => {
                    let _ = fs::remove_file(&path);
                }
                Err(problem) => {
                    warn!(path = %path.display(), %problem, "dropped a stored copy; the console copies it again");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        // A packed copy against one in a file: the higher version stands (a
        // forget record ends the other, so it does not come back once the
        // file goes); at the same version the file does.
        for (meta, at) in packed {
            let entry = Entry { meta, place: Place::Packed(at) };
            let loses = found.get(&entry.meta.key).is_some_and(|file| file.entry.meta.version >= entry.meta.version);
            if loses {
                store.drop_packed(&entry).map_err(io_error(dir))?;
            } else {
                found.insert(entry.meta.key.clone(), Found { entry, files: Vec::new() });
            }
        }
        store.packs.sync_forgets().map_err(io_error(dir))?;
        let referenced: BTreeSet<String> = found.values().flat_map(|found| found.files.iter().cloned()).collect();
        for name in names.iter().filter(|name| !referenced.contains(*name)) {
            // Temporary files, older versions, the bytes of dropped copies.
            let _ = fs::remove_file(dir.join(name));
        }
        for found in found.into_values() {
            store.insert(found.entry);
        }
        Ok(store)
    }

    /// A metadata file of the old layout, checked against its bytes file:
    /// `None` when the bytes are missing (a crash after the bytes of the
    /// version that replaced it went: that version's file is there).
    fn load_legacy(&self, path: &Path) -> Result<Option<Found>, String> {
        let text = fs::read_to_string(path).map_err(|err| err.to_string())?;
        let meta: ObjectMeta = serde_json::from_str(&text).map_err(|err| err.to_string())?;
        let meta_name = format!("{}.meta", key_hash(&meta.key));
        if meta_name != path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default() {
            return Err("its file name is not its key's".into());
        }
        let data = legacy_data_name(&meta);
        if meta.tombstone {
            return Ok(Some(Found {
                entry: Entry { meta, place: Place::Legacy { data: None } },
                files: vec![meta_name],
            }));
        }
        match fs::metadata(self.dir.join(&data)) {
            Ok(bytes) if bytes.len() == meta.size => Ok(Some(Found {
                entry: Entry { meta, place: Place::Legacy { data: Some(data.clone()) } },
                files: vec![meta_name, data],
            })),
            Ok(bytes) => Err(format!("its bytes are {} long, not {}", bytes.len(), meta.size)),
            Err(_) => Ok(None),
        }
    }

    fn insert(&mut self, entry: Entry) {
        self.used += entry.meta.size;
        self.digests.add(&entry.meta);
        if let Some(old) = self.index.insert(entry.meta.key.clone(), entry) {
            self.used -= old.meta.size;
            self.digests.remove(&old.meta);
        }
    }

    /// A packed copy that is no longer current: its record is dead, and a
    /// forget record keeps it from coming back (durable at the next
    /// fdatasync of the packs; [`Packs::sync_forgets`] forces one).
    fn drop_packed(&self, entry: &Entry) -> io::Result<()> {
        if let Some(at) = entry.packed() {
            self.packs.release(at);
            self.packs.append_forget(&entry.meta.key, entry.meta.version)?;
        }
        Ok(())
    }

    /// Removes the files of `old`, replaced by `new` (the same file when
    /// the same version was written again); for a packed `old`, see
    /// [`ObjectStore::install`].
    fn remove_files(&self, old: &Entry, new: Option<&Entry>) {
        if new.is_some_and(|new| new.place == old.place) {
            return;
        }
        match &old.place {
            Place::File { name, .. } => {
                let _ = fs::remove_file(self.dir.join(name));
            }
            Place::Legacy { data } => {
                // The metadata first: a crash in between leaves bytes
                // nothing names, which opening removes.
                let _ = fs::remove_file(self.dir.join(format!("{}.meta", key_hash(&old.meta.key))));
                if let Some(data) = data {
                    let _ = fs::remove_file(self.dir.join(data));
                }
            }
            Place::Packed(_) => {}
        }
    }

    /// Starts writing a copy of `meta`'s object (its size and checksum as
    /// announced).
    ///
    /// # Errors
    /// [`ObjectsError::Stale`] when a newer version is held;
    /// [`ObjectsError::OverQuota`] when it does not fit.
    pub fn begin(&self, meta: ObjectMeta) -> Result<PendingCopy, ObjectsError> {
        let held = self.index.get(&meta.key).map(|held| &held.meta);
        if let Some(held) = held
            && held.version > meta.version
        {
            return Err(ObjectsError::Stale { key: meta.key, held: held.version, offered: meta.version });
        }
        let replaced = held.map_or(0, |held| held.size);
        let after = self.used - replaced + meta.size;
        if after > self.quota {
            return Err(ObjectsError::OverQuota { size: meta.size, used: self.used, quota: self.quota });
        }
        if self.max_packed > 0 && meta.size <= self.max_packed {
            return Ok(PendingCopy {
                offset: 0,
                packed: Some(Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0))),
                meta,
                dir: self.dir.clone(),
                temp: PathBuf::new(),
                file: None,
                hasher: Context::new(&SHA256),
                written: 0,
                dir_sync: self.dir_sync.clone(),
                packs: self.packs.clone(),
            });
        }
        let temp = self.dir.join(format!("{}.{}.tmp", key_hash(&meta.key), rand::random::<u64>()));
        let header = header(&meta).map_err(io_error(&temp))?;
        let file =
            OpenOptions::new().write(true).create_new(true).mode_private().open(&temp).map_err(io_error(&temp))?;
        let mut copy = PendingCopy {
            offset: header.len() as u64,
            meta,
            dir: self.dir.clone(),
            temp,
            file: None,
            hasher: Context::new(&SHA256),
            written: 0,
            dir_sync: self.dir_sync.clone(),
            packed: None,
            packs: self.packs.clone(),
        };
        // Held by the copy before writing, so a failed write removes it.
        copy.file = Some(file);
        if let Some(file) = copy.file.as_mut() {
            file.write_all(&header).map_err(io_error(&copy.temp))?;
        }
        Ok(copy)
    }

    /// Makes a durable copy current, unless a newer version is held, and
    /// removes the file of the version it replaces. Only this needs the
    /// store's lock: it touches no disk but for that removal.
    ///
    /// # Errors
    /// [`ObjectsError::Stale`] when a newer version is held (a put of the
    /// key that raced it won); the copy's file is removed.
    pub fn install(&mut self, mut copy: DurableCopy) -> Result<ObjectMeta, ObjectsError> {
        let meta = copy.entry.meta.clone();
        let held = self.index.get(&meta.key);
        if let Some(held) = held
            && held.meta.version > meta.version
        {
            return Err(ObjectsError::Stale { key: meta.key, held: held.meta.version, offered: meta.version });
        }
        if let Some(held) = held.filter(|held| held.meta.version == meta.version) {
            // The same version again (a retried put, a repair racing it):
            // the same bytes are already current. Anything else at that
            // version is refused, and its file left alone (see `persist`).
            if held.meta.tombstone == meta.tombstone && (meta.tombstone || held.meta.checksum == meta.checksum) {
                return Ok(held.meta.clone());
            }
            return Err(ObjectsError::Stale { key: meta.key, held: held.meta.version, offered: meta.version });
        }
        let entry = copy.entry.clone();
        if let Some(previous) = held.cloned() {
            if entry.packed().is_some() {
                // A newer packed version outranks it when the packs are
                // read again: no forget record needed.
                if let Some(at) = previous.packed() {
                    self.packs.release(at);
                }
            } else {
                self.drop_packed(&previous).map_err(io_error(&self.dir))?;
            }
            self.remove_files(&previous, Some(&entry));
        }
        copy.installed = true;
        self.insert(entry);
        self.compact_if_due();
        Ok(meta)
    }

    /// Compacts the oldest pack if it is due ([`Packs::compaction_due`]):
    /// its current copies are appended anew, made durable, pointed at,
    /// and the pack removed. A failure leaves the pack (and the copies
    /// where they were) for the next attempt.
    fn compact_if_due(&mut self) {
        let Some(oldest) = self.packs.compaction_due() else { return };
        let moving: Vec<(ObjectKey, PackedAt)> = self
            .index
            .iter()
            .filter_map(|(key, entry)| entry.packed().filter(|at| at.pack == oldest).map(|at| (key.clone(), at)))
            .collect();
        let mut moved = Vec::with_capacity(moving.len());
        for (key, at) in moving {
            match self.packs.move_record(at) {
                Ok(to) => moved.push((key, to)),
                Err(err) => {
                    for (_, to) in moved {
                        self.packs.release(to);
                    }
                    warn!(%err, pack = oldest, "failed to compact a pack; left as it is");
                    return;
                }
            }
        }
        if let Err(err) = self.packs.sync() {
            warn!(%err, pack = oldest, "failed to compact a pack; left as it is");
            return;
        }
        for (key, to) in moved {
            if let Some(entry) = self.index.get_mut(&key) {
                entry.place = Place::Packed(to);
            }
        }
        let removed = self.packs.remove(oldest).and_then(|()| self.dir_sync.sync());
        if let Err(err) = removed {
            warn!(%err, pack = oldest, "failed to remove a compacted pack");
        }
    }

    /// Makes a fully written copy durable and current:
    /// [`PendingCopy::persist`], then [`ObjectStore::install`]. Holds the
    /// store (and whatever lock guards it) across the fsyncs; the data
    /// service persists without the lock and installs with it.
    ///
    /// # Errors
    /// Those of both.
    pub fn commit(&mut self, copy: PendingCopy) -> Result<ObjectMeta, ObjectsError> {
        let durable = copy.persist()?;
        self.install(durable)
    }

    /// Records a tombstone for `key` at `version` (the removal), dropping
    /// the bytes of any older copy.
    ///
    /// # Errors
    /// [`ObjectsError::Stale`] when a newer version is held; the disk's.
    pub fn remove(&mut self, key: &ObjectKey, version: Version) -> Result<(), ObjectsError> {
        if let Some(held) = self.index.get(key)
            && held.meta.version > version
        {
            return Err(ObjectsError::Stale { key: key.clone(), held: held.meta.version, offered: version });
        }
        let copy = self.begin(ObjectMeta::tombstone(key.clone(), version))?;
        self.commit(copy).map(|_| ())
    }

    /// Forgets `key` entirely: a dropped extra copy, or a tombstone
    /// collected. Returns whether anything was held.
    ///
    /// # Errors
    /// The disk's.
    pub fn forget(&mut self, key: &ObjectKey) -> Result<bool, ObjectsError> {
        let Some(entry) = self.index.get(key).cloned() else { return Ok(false) };
        let packs = pack::packs_path(&self.dir);
        let first = match &entry.place {
            Place::Packed(_) => {
                self.drop_packed(&entry).map_err(io_error(&packs))?;
                self.packs.sync().map_err(io_error(&packs))?;
                None
            }
            Place::File { name, .. } => Some(self.dir.join(name)),
            Place::Legacy { .. } => Some(self.dir.join(format!("{}.meta", key_hash(key)))),
        };
        if let Some(first) = first {
            // The forget records of packed copies this one replaced first:
            // the file gone, they must not come back.
            self.packs.sync_forgets().map_err(io_error(&packs))?;
            match fs::remove_file(&first) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_error(&first)(err)),
            }
            self.remove_files(&entry, None);
            let _ = self.dir_sync.sync();
        }
        self.used -= entry.meta.size;
        self.digests.remove(&entry.meta);
        self.index.remove(key);
        self.compact_if_due();
        Ok(true)
    }

    /// Forgets `key` if what is held is of exactly `version`; any other
    /// version stays. Returns what is held afterwards.
    ///
    /// # Errors
    /// The disk's.
    pub fn discard(&mut self, key: &ObjectKey, version: Version) -> Result<Option<ObjectMeta>, ObjectsError> {
        if self.index.get(key).is_some_and(|held| held.meta.version == version) {
            self.forget(key)?;
        }
        Ok(self.get(key).cloned())
    }

    /// Opens the current copy of `key` for reading, positioned at its
    /// first byte, with its metadata.
    ///
    /// # Errors
    /// [`ObjectsError::NotFound`] without a live copy; the disk's.
    pub fn read(&self, key: &ObjectKey) -> Result<(ObjectMeta, StoredBytes), ObjectsError> {
        let entry = self
            .index
            .get(key)
            .filter(|entry| !entry.meta.tombstone)
            .ok_or_else(|| ObjectsError::NotFound(key.clone()))?;
        let (name, offset) = match &entry.place {
            Place::Packed(at) => {
                let bytes = self.packs.read(*at, entry.meta.size).map_err(io_error(&pack::packs_path(&self.dir)))?;
                return Ok((entry.meta.clone(), StoredBytes::Packed(bytes)));
            }
            Place::File { name, offset } => (name, *offset),
            // Tombstones are not read, so a live legacy copy has its bytes.
            Place::Legacy { data } => (data.as_ref().ok_or_else(|| ObjectsError::NotFound(key.clone()))?, 0),
        };
        let path = self.dir.join(name);
        let mut file = File::open(&path).map_err(io_error(&path))?;
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).map_err(io_error(&path))?;
        }
        Ok((entry.meta.clone(), StoredBytes::File(file)))
    }

    /// What is held of `key` (a tombstone too).
    pub fn get(&self, key: &ObjectKey) -> Option<&ObjectMeta> {
        self.index.get(key).map(|entry| &entry.meta)
    }

    /// Everything held, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &ObjectMeta> {
        self.index.values().map(|entry| &entry.meta)
    }

    /// The per-range digests of what is held.
    pub fn digests(&self) -> &Digests {
        &self.digests
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The quota.
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The packs' fdatasyncs started so far.
    #[cfg(test)]
    pub(crate) fn pack_syncs(&self) -> u64 {
        self.packs.syncs()
    }

    /// Live copies, bytes and quota.
    pub fn usage(&self) -> DataUsage {
        let objects = self.index.values().filter(|entry| !entry.meta.tombstone).count();
        DataUsage { objects: objects as u64, bytes: self.used, quota: self.quota }
    }
}

/// The tag a copy's file starts with; the last byte is the layout's
/// version.
const MAGIC: &[u8; 8] = b"rwobj\0\0\x01";
/// The longest metadata a header may hold: a 1 KiB key, hex, numbers.
const MAX_HEADER_JSON: usize = 16 * 1024;

/// A copy's header: [`MAGIC`], the metadata's length (u32, little-endian),
/// the metadata as JSON.
fn header(meta: &ObjectMeta) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let len = u32::try_from(json.len()).map_err(io::Error::other)?;
    let mut header = Vec::with_capacity(MAGIC.len() + 4 + json.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&json);
    Ok(header)
}

/// A copy's file, checked: its header's metadata is the key and version
/// its name says, and its length is the header's and the bytes'.
fn load_copy(path: &Path, name: &str) -> Result<Found, String> {
    let mut file = File::open(path).map_err(|err| err.to_string())?;
    let mut start = [0u8; 12];
    file.read_exact(&mut start).map_err(|_| "its header is cut short".to_string())?;
    if &start[..8] != MAGIC {
        return Err("it does not start with a copy's header".into());
    }
    let len = u32::from_le_bytes([start[8], start[9], start[10], start[11]]) as usize;
    if len > MAX_HEADER_JSON {
        return Err(format!("its header claims {len} bytes of metadata"));
    }
    let mut json = vec![0; len];
    file.read_exact(&mut json).map_err(|_| "its header is cut short".to_string())?;
    let meta: ObjectMeta = serde_json::from_slice(&json).map_err(|err| err.to_string())?;
    if copy_name(&meta) != name {
        return Err("its file name is not its key's and version's".into());
    }
    let offset = (start.len() + len) as u64;
    let actual = file.metadata().map_err(|err| err.to_string())?.len();
    if actual != offset + meta.size {
        return Err(format!("its bytes are {} long, not {}", actual.saturating_sub(offset), meta.size));
    }
    Ok(Found {
        entry: Entry { meta, place: Place::File { name: name.to_string(), offset } },
        files: vec![name.to_string()],
    })
}

/// The file of a copy: its key's hash and its version.
fn copy_name(meta: &ObjectMeta) -> String {
    format!("{}.{}-{}.obj", key_hash(&meta.key), meta.version.term, meta.version.counter)
}

/// The bytes file of a copy in the old layout.
fn legacy_data_name(meta: &ObjectMeta) -> String {
    format!("{}.{}-{}.data", key_hash(&meta.key), meta.version.term, meta.version.counter)
}

/// The file-name stem of `key`: its SHA-256, so any key makes a valid name.
fn key_hash(key: &ObjectKey) -> String {
    to_hex(ring::digest::digest(&SHA256, key.as_str().as_bytes()).as_ref())
}

/// `OpenOptions::mode` under a name that says why.
trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(PRIVATE)
    }
}

#[cfg(test)]
mod packed_tests;

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Mutex;

    use super::*;

    /// The store with every copy in a file of its own (the layout these
    /// tests look at); `packed_tests` has the packed copies'.
    fn open_files(dir: &Path, quota: u64) -> Result<ObjectStore, ObjectsError> {
        ObjectStore::open_packing(dir, quota, 0)
    }

    pub(super) fn meta(key: &str, counter: u64, bytes: &[u8]) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::parse(key).unwrap(),
            version: Version { term: 1, counter },
            size: bytes.len() as u64,
            checksum: to_hex(ring::digest::digest(&SHA256, bytes).as_ref()),
            tombstone: false,
        }
    }

    pub(super) fn put(
        store: &mut ObjectStore,
        key: &str,
        counter: u64,
        bytes: &[u8],
    ) -> Result<ObjectMeta, ObjectsError> {
        let mut copy = store.begin(meta(key, counter, bytes))?;
        for chunk in bytes.chunks(3) {
            copy.write(chunk)?;
        }
        store.commit(copy)
    }

    pub(super) fn read_all(store: &ObjectStore, key: &str) -> Vec<u8> {
        match store.read(&ObjectKey::parse(key).unwrap()).unwrap() {
            (_, StoredBytes::File(mut file)) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).unwrap();
                bytes
            }
            (_, StoredBytes::Packed(bytes)) => bytes,
        }
    }

    #[test]
    fn a_copy_streams_in_and_survives_a_reopen_newer_versions_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        put(&mut store, "photos/1", 1, b"hello world").unwrap();
        put(&mut store, "photos/1", 2, b"hello again").unwrap();
        let stale = put(&mut store, "photos/1", 1, b"old").unwrap_err();
        assert!(matches!(stale, ObjectsError::Stale { .. }), "{stale}");
        let digests = store.digests().clone();
        drop(store);
        let store = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&store, "photos/1"), b"hello again");
        assert_eq!(store.used(), 11);
        assert_eq!(store.digests(), &digests);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "one file: the current version's");
    }

    #[test]
    fn wrong_bytes_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        let mut announced = meta("k", 1, b"abc");
        announced.checksum = "00".repeat(32);
        let mut copy = store.begin(announced).unwrap();
        copy.write(b"abc").unwrap();
        assert!(matches!(store.commit(copy), Err(ObjectsError::Mismatch { .. })));
        let mut short = store.begin(meta("k", 1, b"abc")).unwrap();
        assert!(short.write(b"abcd").is_err(), "more than announced");
        short.write(b"ab").unwrap();
        assert!(matches!(store.commit(short), Err(ObjectsError::Mismatch { .. })));
        assert!(store.get(&ObjectKey::parse("k").unwrap()).is_none());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "no temporary file is left");
    }

    #[test]
    fn the_quota_refuses_what_does_not_fit_counting_what_a_new_version_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 10).unwrap();
        put(&mut store, "a", 1, b"12345678").unwrap();
        assert!(matches!(put(&mut store, "b", 1, b"123"), Err(ObjectsError::OverQuota { .. })));
        put(&mut store, "a", 2, b"1234567890").unwrap();
        assert_eq!(store.used(), 10);
    }

    #[test]
    fn what_a_crash_leaves_is_cleaned_up_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        put(&mut store, "kept", 1, b"kept").unwrap();
        let torn = store.begin(meta("torn", 1, b"torn")).unwrap();
        std::mem::forget(torn); // a crash: the temporary file stays
        fs::write(dir.path().join("orphan.1-1.data"), b"bytes no metadata names").unwrap();
        // Metadata whose bytes are the wrong size: a damaged disk.
        let bad = meta("bad", 1, b"right");
        fs::write(dir.path().join(format!("{}.meta", key_hash(&bad.key))), serde_json::to_vec(&bad).unwrap()).unwrap();
        fs::write(dir.path().join(legacy_data_name(&bad)), b"wrong size").unwrap();
        drop(store);
        let store = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.entries().map(|meta| meta.key.as_str()).collect::<Vec<_>>(), vec!["kept"]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn usage_counts_live_copies_and_their_bytes_not_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(&objects_dir(dir.path()), 1 << 20).unwrap();
        assert!(dir.path().join(OBJECTS_DIR).is_dir());
        put(&mut store, "a", 1, b"12345").unwrap();
        put(&mut store, "b", 1, b"123").unwrap();
        store.remove(&ObjectKey::parse("b").unwrap(), Version { term: 1, counter: 2 }).unwrap();
        assert_eq!(store.usage(), DataUsage { objects: 1, bytes: 5, quota: 1 << 20 });
    }

    #[test]
    fn regression_an_older_copy_committed_after_a_newer_one_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        // The older copy began before the newer one was committed.
        let mut older = store.begin(meta("k", 1, b"older")).unwrap();
        older.write(b"older").unwrap();
        put(&mut store, "k", 2, b"newer").unwrap();
        let err = store.commit(older).unwrap_err();
        assert!(matches!(err, ObjectsError::Stale { .. }), "{err}");
        assert_eq!(read_all(&store, "k"), b"newer");
        let reopened = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&reopened, "k"), b"newer");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "the newer copy's file only");
    }

    #[test]
    fn discarding_drops_only_the_version_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        put(&mut store, "k", 5, b"five").unwrap();
        let k = ObjectKey::parse("k").unwrap();
        let kept = store.discard(&k, Version { term: 1, counter: 4 }).unwrap();
        assert_eq!(kept.map(|meta| meta.version.counter), Some(5), "a newer copy stays");
        let kept = store.discard(&k, Version { term: 1, counter: 6 }).unwrap();
        assert_eq!(kept.map(|meta| meta.version.counter), Some(5), "an older copy stays");
        assert_eq!(store.discard(&k, Version { term: 1, counter: 5 }).unwrap(), None);
        assert_eq!(store.usage().objects, 0);
        let reopened = open_files(dir.path(), 1 << 20).unwrap();
        assert!(reopened.get(&k).is_none());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no file is left");
    }

    #[test]
    fn a_tombstone_replaces_the_bytes_and_forgetting_removes_every_trace() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        put(&mut store, "k", 1, b"bytes").unwrap();
        let key = ObjectKey::parse("k").unwrap();
        store.remove(&key, Version { term: 1, counter: 2 }).unwrap();
        assert!(matches!(store.read(&key), Err(ObjectsError::NotFound(_))));
        assert_eq!(store.used(), 0);
        assert!(store.get(&key).is_some_and(|meta| meta.tombstone));
        assert!(store.forget(&key).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(!store.forget(&key).unwrap());
    }

    pub(super) fn key(name: &str) -> ObjectKey {
        ObjectKey::parse(name).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    /// A copy of `bytes` at `counter`, durable but not yet current.
    fn durable(store: &ObjectStore, name: &str, counter: u64, bytes: &[u8]) -> DurableCopy {
        let mut copy = store.begin(meta(name, counter, bytes)).unwrap();
        copy.write(bytes).unwrap();
        copy.persist().unwrap()
    }

    /// Writes a copy in the layout stores used before copies had headers:
    /// `<hash>.meta` naming `<hash>.<version>.data`.
    fn write_legacy(dir: &Path, meta: &ObjectMeta, bytes: &[u8]) {
        fs::write(dir.join(format!("{}.meta", key_hash(&meta.key))), serde_json::to_vec(meta).unwrap()).unwrap();
        if !meta.tombstone {
            fs::write(dir.join(legacy_data_name(meta)), bytes).unwrap();
        }
    }

    /// Two puts of a key raced: the lower version began before the higher
    /// was committed and finished after it. Its commit replaced the higher
    /// version: the check was made only when a copy began.
    #[test]
    fn regression_a_lower_version_committed_after_a_higher_one_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        let mut older = store.begin(meta("k", 2, b"older")).unwrap();
        let mut newer = store.begin(meta("k", 3, b"newer")).unwrap();
        newer.write(b"newer").unwrap();
        older.write(b"older").unwrap();
        store.commit(newer).unwrap();
        let stale = store.commit(older).unwrap_err();
        assert!(matches!(stale, ObjectsError::Stale { held: Version { counter: 3, .. }, .. }), "{stale}");
        assert_eq!(read_all(&store, "k"), b"newer");
        assert_eq!(names(dir.path()).len(), 1, "the stale copy's file is gone: {:?}", names(dir.path()));
        drop(store);
        assert_eq!(read_all(&open_files(dir.path(), 1 << 20).unwrap(), "k"), b"newer");
    }

    #[test]
    fn racing_copies_made_durable_in_either_order_leave_the_highest_version_current() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        let (two, three) = (durable(&store, "k", 2, b"two"), durable(&store, "k", 3, b"three"));
        store.install(two).unwrap();
        store.install(three).unwrap();
        assert_eq!(read_all(&store, "k"), b"three");
        let (four, five) = (durable(&store, "k", 4, b"four"), durable(&store, "k", 5, b"five"));
        store.install(five).unwrap();
        assert!(matches!(store.install(four), Err(ObjectsError::Stale { .. })));
        assert_eq!(read_all(&store, "k"), b"five");
        assert_eq!(store.used(), 4);
        assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));
    }

    #[test]
    fn a_version_written_again_stays_current() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        put(&mut store, "k", 1, b"same").unwrap();
        put(&mut store, "k", 1, b"same").unwrap();
        assert_eq!(read_all(&store, "k"), b"same");
        drop(store);
        assert_eq!(read_all(&open_files(dir.path(), 1 << 20).unwrap(), "k"), b"same");
    }

    /// What a crash leaves between the steps of a commit: the new version
    /// renamed but not made current, or current with the old version's
    /// file not yet removed. Opening keeps the highest complete version.
    #[test]
    fn a_crash_between_rename_and_removal_leaves_the_highest_complete_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        put(&mut store, "renamed", 1, b"one").unwrap();
        std::mem::forget(durable(&store, "renamed", 2, b"two")); // crash before install
        put(&mut store, "both", 1, b"one").unwrap();
        let old = fs::read(dir.path().join(copy_name(&meta("both", 1, b"one")))).unwrap();
        put(&mut store, "both", 2, b"two").unwrap();
        // The old version's file back, as if the crash came before its removal.
        fs::write(dir.path().join(copy_name(&meta("both", 1, b"one"))), old).unwrap();
        let torn = store.begin(meta("torn", 1, b"torn")).unwrap();
        std::mem::forget(torn); // crash mid-write
        drop(store);
        assert_eq!(names(dir.path()).len(), 5);
        let store = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&store, "renamed"), b"two");
        assert_eq!(read_all(&store, "both"), b"two");
        assert!(store.get(&key("torn")).is_none());
        assert_eq!(store.used(), 6);
        assert_eq!(names(dir.path()).len(), 2, "{:?}", names(dir.path()));
    }

    #[test]
    fn damaged_copy_files_are_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        put(&mut store, "short", 1, b"twelve bytes").unwrap();
        put(&mut store, "renamed", 1, b"bytes").unwrap();
        put(&mut store, "kept", 1, b"kept").unwrap();
        drop(store);
        let short = dir.path().join(copy_name(&meta("short", 1, b"twelve bytes")));
        let len = fs::metadata(&short).unwrap().len();
        File::options().write(true).open(&short).unwrap().set_len(len - 1).unwrap();
        // A copy under another key's name.
        fs::rename(
            dir.path().join(copy_name(&meta("renamed", 1, b"bytes"))),
            dir.path().join(copy_name(&meta("other", 1, b"bytes"))),
        )
        .unwrap();
        fs::write(dir.path().join(copy_name(&meta("garbage", 1, b""))), b"not a header").unwrap();
        let store = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.entries().map(|meta| meta.key.as_str()).collect::<Vec<_>>(), vec!["kept"]);
        assert_eq!(names(dir.path()).len(), 1);
    }

    #[test]
    fn a_store_in_the_two_file_layout_opens_in_place_and_moves_to_the_new_one_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (meta("a", 1, b"legacy a"), meta("b", 1, b"legacy b"));
        write_legacy(dir.path(), &a, b"legacy a");
        write_legacy(dir.path(), &b, b"legacy b");
        write_legacy(dir.path(), &ObjectMeta::tombstone(key("gone"), Version { term: 1, counter: 4 }), b"");
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&store, "a"), b"legacy a");
        assert_eq!(read_all(&store, "b"), b"legacy b");
        assert!(store.get(&key("gone")).is_some_and(|meta| meta.tombstone));
        assert_eq!(store.usage(), DataUsage { objects: 2, bytes: 16, quota: 1 << 20 });
        put(&mut store, "a", 2, b"new a").unwrap();
        store.remove(&key("b"), Version { term: 1, counter: 3 }).unwrap();
        assert!(store.forget(&key("gone")).unwrap());
        assert_eq!(
            names(dir.path()),
            {
                let mut expected = vec![
                    copy_name(&meta("a", 2, b"new a")),
                    copy_name(&ObjectMeta::tombstone(key("b"), Version { term: 1, counter: 3 })),
                ];
                expected.sort();
                expected
            },
            "no file of the old layout is left"
        );
        drop(store);
        let store = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&store, "a"), b"new a");
        assert!(store.get(&key("b")).is_some_and(|meta| meta.tombstone));
        assert!(store.get(&key("gone")).is_none());
    }

    /// A crash while a key moves from the old layout to the new: the new
    /// version's file is there, and the old metadata, or only the old
    /// bytes.
    #[test]
    fn a_crash_while_replacing_a_copy_in_the_old_layout_leaves_the_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let old = meta("k", 1, b"old");
        write_legacy(dir.path(), &old, b"old");
        let store = open_files(dir.path(), 1 << 20).unwrap();
        std::mem::forget(durable(&store, "k", 2, b"new"));
        drop(store);
        let store = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&store, "k"), b"new");
        assert_eq!(names(dir.path()), vec![copy_name(&meta("k", 2, b"new"))]);
        drop(store);
        // The metadata removed, the bytes not yet.
        fs::write(dir.path().join(legacy_data_name(&old)), b"old").unwrap();
        let store = open_files(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&store, "k"), b"new");
        assert_eq!(names(dir.path()).len(), 1);
    }

    #[test]
    fn copies_committed_from_many_threads_at_once_are_all_durable_and_current() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Mutex::new(open_files(dir.path(), 1 << 20).unwrap()));
        let threads: Vec<_> = (0..16u64)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for round in 0..4u64 {
                        let name = format!("k{}", i % 8);
                        let bytes = format!("{i}-{round}").into_bytes();
                        let begun = store.lock().unwrap().begin(meta(&name, 1 + round * 16 + i, &bytes));
                        let Ok(mut copy) = begun else { continue };
                        copy.write(&bytes).unwrap();
                        // The fsyncs without the lock, as the data service does.
                        let durable = copy.persist().unwrap();
                        match store.lock().unwrap().install(durable) {
                            Ok(_) | Err(ObjectsError::Stale { .. }) => {}
                            Err(err) => panic!("{err}"),
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let mut held: Vec<(String, u64)> =
            store.lock().unwrap().entries().map(|meta| (meta.key.as_str().to_string(), meta.version.counter)).collect();
        held.sort();
        drop(store);
        // Each key ends at the highest version any thread wrote for it.
        let expected: Vec<(String, u64)> = (0..8u64).map(|k| (format!("k{k}"), 1 + 3 * 16 + k + 8)).collect();
        assert_eq!(held, expected);
        let reopened = open_files(dir.path(), 1 << 20).unwrap();
        for (name, counter) in &expected {
            let i = counter - 1 - 3 * 16;
            assert_eq!(read_all(&reopened, name), format!("{i}-3").into_bytes());
        }
        assert_eq!(names(dir.path()).len(), 8);
    }

    #[test]
    fn the_same_version_again_is_taken_as_held_and_a_different_one_at_that_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_files(dir.path(), 1 << 20).unwrap();
        put(&mut store, "k", 3, b"bytes").unwrap();
        // Made durable alongside: the name is taken, nothing is replaced.
        let again = durable(&store, "k", 3, b"bytes");
        let other = durable(&store, "k", 3, b"other");
        assert_eq!(store.install(again).unwrap().version.counter, 3);
        assert!(matches!(store.install(other), Err(ObjectsError::Stale { .. })));
        assert_eq!(read_all(&store, "k"), b"bytes");
        let tombstone = Version { term: 1, counter: 4 };
        store.remove(&key("k"), tombstone).unwrap();
        store.remove(&key("k"), tombstone).unwrap();
        assert!(store.get(&key("k")).is_some_and(|meta| meta.tombstone));
        drop(store);
        assert_eq!(names(dir.path()), vec![copy_name(&ObjectMeta::tombstone(key("k"), tombstone))]);
        let store = open_files(dir.path(), 1 << 20).unwrap();
        assert!(store.get(&key("k")).is_some_and(|meta| meta.tombstone));
    }
}
