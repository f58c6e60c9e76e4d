//! The agent's copies of the data store's objects (README.md, "Data"), in a
//! directory of their own with a disk quota.
//!
//! Each copy is two files named by the SHA-256 of its key: the bytes,
//! `<hash>.<term>-<counter>.data`, and the metadata, `<hash>.meta` (JSON:
//! key, version, size, checksum, tombstone), which names the version whose
//! bytes are current. A copy is written as: bytes to a temporary file
//! (checksummed as they stream in, never whole in memory), fsync, rename to
//! its versioned name; then the metadata, atomically (temp, fsync, rename);
//! only then is the previous version's bytes file removed. A crash at any
//! point leaves the previous metadata naming the previous bytes, or the new
//! metadata naming the new bytes; opening the store removes what no
//! metadata names (temporary files, orphaned bytes) and drops a copy whose
//! bytes are missing or of the wrong size, so the console re-replicates it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ring::digest::{Context, SHA256};
use ringwatch_net::files;
use ringwatch_shared::data::digest::Digests;
use ringwatch_shared::data::{ObjectKey, ObjectMeta, Version};
use ringwatch_shared::token::to_hex;
use tracing::warn;

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
    index: BTreeMap<ObjectKey, ObjectMeta>,
    used: u64,
    digests: Digests,
}

/// A copy being written; [`ObjectStore::commit`] makes it durable and
/// current, dropping it abandons it (the temporary file is removed).
pub struct PendingCopy {
    meta: ObjectMeta,
    temp: PathBuf,
    file: Option<File>,
    hasher: Context,
    written: u64,
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
        let file = self.file.as_mut().ok_or_else(|| ObjectsError::Io {
            path: self.temp.clone(),
            source: io::Error::other("the copy was already finished"),
        })?;
        file.write_all(chunk).map_err(io_error(&self.temp))?;
        self.hasher.update(chunk);
        self.written += len;
        Ok(())
    }

    /// The copy's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
}

impl Drop for PendingCopy {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

impl ObjectStore {
    /// Opens (creating) the store in `dir` with `quota` bytes, cleaning up
    /// what a crash left.
    ///
    /// # Errors
    /// When the directory cannot be read or created.
    pub fn open(dir: &Path, quota: u64) -> Result<Self, ObjectsError> {
        files::create_private_dir(dir).map_err(io_error(dir))?;
        let mut store =
            Self { dir: dir.to_path_buf(), quota, index: BTreeMap::new(), used: 0, digests: Digests::default() };
        let mut names: Vec<String> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        let mut referenced = std::collections::BTreeSet::new();
        for name in names.iter().filter(|name| name.ends_with(".meta")) {
            let path = dir.join(name);
            match store.load_meta(&path) {
                Ok(Some(meta)) => {
                    if !meta.tombstone {
                        referenced.insert(store.data_name(&meta));
                    }
                    store.insert(meta);
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
        for name in names.iter().filter(|name| !name.ends_with(".meta") && !referenced.contains(*name)) {
            // Temporary files and the bytes of replaced or dropped versions.
            let _ = fs::remove_file(dir.join(name));
        }
        Ok(store)
    }

    /// A stored metadata file, checked against its bytes file: `None` when
    /// the bytes are missing or of the wrong size (a crash mid-write of a
    /// first version cannot produce that; a damaged disk can).
    fn load_meta(&self, path: &Path) -> Result<Option<ObjectMeta>, String> {
        let text = fs::read_to_string(path).map_err(|err| err.to_string())?;
        let meta: ObjectMeta = serde_json::from_str(&text).map_err(|err| err.to_string())?;
        if format!("{}.meta", key_hash(&meta.key))
            != path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        {
            return Err("its file name is not its key's".into());
        }
        if meta.tombstone {
            return Ok(Some(meta));
        }
        match fs::metadata(self.dir.join(self.data_name(&meta))) {
            Ok(data) if data.len() == meta.size => Ok(Some(meta)),
            Ok(data) => Err(format!("its bytes are {} long, not {}", data.len(), meta.size)),
            Err(_) => Ok(None),
        }
    }

    fn data_name(&self, meta: &ObjectMeta) -> String {
        format!("{}.{}-{}.data", key_hash(&meta.key), meta.version.term, meta.version.counter)
    }

    fn meta_path(&self, key: &ObjectKey) -> PathBuf {
        self.dir.join(format!("{}.meta", key_hash(key)))
    }

    fn insert(&mut self, meta: ObjectMeta) {
        if let Some(old) = self.index.remove(&meta.key) {
            self.used -= old.size;
            self.digests.remove(&old);
        }
        self.used += meta.size;
        self.digests.add(&meta);
        self.index.insert(meta.key.clone(), meta);
    }

    /// Starts writing a copy of `meta`'s object (its size and checksum as
    /// announced).
    ///
    /// # Errors
    /// [`ObjectsError::Stale`] when a newer version is held;
    /// [`ObjectsError::OverQuota`] when it does not fit.
    pub fn begin(&self, meta: ObjectMeta) -> Result<PendingCopy, ObjectsError> {
        if let Some(held) = self.index.get(&meta.key)
            && held.version > meta.version
        {
            return Err(ObjectsError::Stale { key: meta.key, held: held.version, offered: meta.version });
        }
        let replaced = self.index.get(&meta.key).map_or(0, |held| held.size);
        let after = self.used - replaced + meta.size;
        if after > self.quota {
            return Err(ObjectsError::OverQuota { size: meta.size, used: self.used, quota: self.quota });
        }
        let temp = self.dir.join(format!("{}.{}.tmp", key_hash(&meta.key), rand::random::<u64>()));
        let file =
            OpenOptions::new().write(true).create_new(true).mode_private().open(&temp).map_err(io_error(&temp))?;
        Ok(PendingCopy { meta, temp, file: Some(file), hasher: Context::new(&SHA256), written: 0 })
    }

    /// Makes a fully written copy durable and current (fsync, rename, the
    /// metadata written atomically), then removes the bytes it replaces.
    ///
    /// # Errors
    /// [`ObjectsError::Mismatch`] when the size or checksum is not what was
    /// announced (nothing changes); the disk's errors.
    pub fn commit(&mut self, mut copy: PendingCopy) -> Result<ObjectMeta, ObjectsError> {
        let meta = copy.meta.clone();
        let file = copy.file.take().ok_or_else(|| ObjectsError::Io {
            path: copy.temp.clone(),
            source: io::Error::other("the copy was already finished"),
        })?;
        let mismatch = |problem: String| ObjectsError::Mismatch { key: meta.key.clone(), problem };
        let checksum = to_hex(copy.hasher.clone().finish().as_ref());
        if copy.written != meta.size || checksum != meta.checksum {
            let _ = fs::remove_file(&copy.temp);
            return Err(if copy.written != meta.size {
                mismatch(format!("{} bytes arrived, {} were announced", copy.written, meta.size))
            } else {
                mismatch(format!("their SHA-256 is {checksum}, not {}", meta.checksum))
            });
        }
        // Checked again now, not only when the copy began: a newer version
        // may have been committed while these bytes streamed in, and it
        // must not be replaced by an older one.
        if let Some(held) = self.index.get(&meta.key).filter(|held| held.version >= meta.version) {
            let _ = fs::remove_file(&copy.temp);
            if held.version == meta.version && held.checksum == meta.checksum && !held.tombstone {
                return Ok(held.clone());
            }
            return Err(ObjectsError::Stale { key: meta.key.clone(), held: held.version, offered: meta.version });
        }
        file.sync_all().map_err(io_error(&copy.temp))?;
        drop(file);
        let data = self.dir.join(self.data_name(&meta));
        fs::rename(&copy.temp, &data).map_err(io_error(&data))?;
        self.publish(meta.clone())?;
        Ok(meta)
    }

    /// Records a tombstone for `key` at `version` (the removal), dropping
    /// the bytes of any older copy.
    ///
    /// # Errors
    /// [`ObjectsError::Stale`] when a newer version is held; the disk's.
    pub fn remove(&mut self, key: &ObjectKey, version: Version) -> Result<(), ObjectsError> {
        if let Some(held) = self.index.get(key)
            && held.version > version
        {
            return Err(ObjectsError::Stale { key: key.clone(), held: held.version, offered: version });
        }
        self.publish(ObjectMeta::tombstone(key.clone(), version))
    }

    /// Writes `meta` as current and removes the bytes it replaces.
    fn publish(&mut self, meta: ObjectMeta) -> Result<(), ObjectsError> {
        let path = self.meta_path(&meta.key);
        let json =
            serde_json::to_vec(&meta).map_err(|err| ObjectsError::Io { path: path.clone(), source: err.into() })?;
        files::write_atomic(&path, &json, PRIVATE).map_err(io_error(&path))?;
        let previous = self.index.get(&meta.key).filter(|old| !old.tombstone && old.version != meta.version).cloned();
        self.insert(meta);
        if let Some(previous) = previous {
            let _ = fs::remove_file(self.dir.join(self.data_name(&previous)));
        }
        Ok(())
    }

    /// Forgets `key` entirely: a dropped extra copy, or a tombstone
    /// collected. Returns whether anything was held.
    ///
    /// # Errors
    /// The disk's.
    pub fn forget(&mut self, key: &ObjectKey) -> Result<bool, ObjectsError> {
        let Some(meta) = self.index.get(key).cloned() else { return Ok(false) };
        let path = self.meta_path(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error(&path)(err)),
        }
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        if !meta.tombstone {
            let _ = fs::remove_file(self.dir.join(self.data_name(&meta)));
        }
        self.used -= meta.size;
        self.digests.remove(&meta);
        self.index.remove(key);
        Ok(true)
    }

    /// Forgets `key` if what is held is of exactly `version`; any other
    /// version stays. Returns what is held afterwards.
    ///
    /// # Errors
    /// The disk's.
    pub fn discard(&mut self, key: &ObjectKey, version: Version) -> Result<Option<ObjectMeta>, ObjectsError> {
        if self.index.get(key).is_some_and(|held| held.version == version) {
            self.forget(key)?;
        }
        Ok(self.index.get(key).cloned())
    }

    /// Opens the current copy of `key` for reading, with its metadata.
    ///
    /// # Errors
    /// [`ObjectsError::NotFound`] without a live copy; the disk's.
    pub fn read(&self, key: &ObjectKey) -> Result<(ObjectMeta, File), ObjectsError> {
        let meta =
            self.index.get(key).filter(|meta| !meta.tombstone).ok_or_else(|| ObjectsError::NotFound(key.clone()))?;
        let path = self.dir.join(self.data_name(meta));
        let file = File::open(&path).map_err(io_error(&path))?;
        Ok((meta.clone(), file))
    }

    /// What is held of `key` (a tombstone too).
    pub fn get(&self, key: &ObjectKey) -> Option<&ObjectMeta> {
        self.index.get(key)
    }

    /// Everything held, by key.
    pub fn entries(&self) -> impl Iterator<Item = &ObjectMeta> {
        self.index.values()
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

    /// Live copies, bytes and quota.
    pub fn usage(&self) -> DataUsage {
        let objects = self.index.values().filter(|meta| !meta.tombstone).count();
        DataUsage { objects: objects as u64, bytes: self.used, quota: self.quota }
    }
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
mod tests {
    use std::io::Read;

    use super::*;

    fn meta(key: &str, counter: u64, bytes: &[u8]) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::parse(key).unwrap(),
            version: Version { term: 1, counter },
            size: bytes.len() as u64,
            checksum: to_hex(ring::digest::digest(&SHA256, bytes).as_ref()),
            tombstone: false,
        }
    }

    fn put(store: &mut ObjectStore, key: &str, counter: u64, bytes: &[u8]) -> Result<ObjectMeta, ObjectsError> {
        let mut copy = store.begin(meta(key, counter, bytes))?;
        for chunk in bytes.chunks(3) {
            copy.write(chunk)?;
        }
        store.commit(copy)
    }

    fn read_all(store: &ObjectStore, key: &str) -> Vec<u8> {
        let (_, mut reader) = store.read(&ObjectKey::parse(key).unwrap()).unwrap();
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_copy_streams_in_and_survives_a_reopen_newer_versions_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(dir.path(), 1 << 20).unwrap();
        put(&mut store, "photos/1", 1, b"hello world").unwrap();
        put(&mut store, "photos/1", 2, b"hello again").unwrap();
        let stale = put(&mut store, "photos/1", 1, b"old").unwrap_err();
        assert!(matches!(stale, ObjectsError::Stale { .. }), "{stale}");
        let digests = store.digests().clone();
        drop(store);
        let store = ObjectStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&store, "photos/1"), b"hello again");
        assert_eq!(store.used(), 11);
        assert_eq!(store.digests(), &digests);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "one metadata file and one bytes file");
    }

    #[test]
    fn wrong_bytes_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(dir.path(), 1 << 20).unwrap();
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
        let mut store = ObjectStore::open(dir.path(), 10).unwrap();
        put(&mut store, "a", 1, b"12345678").unwrap();
        assert!(matches!(put(&mut store, "b", 1, b"123"), Err(ObjectsError::OverQuota { .. })));
        put(&mut store, "a", 2, b"1234567890").unwrap();
        assert_eq!(store.used(), 10);
    }

    #[test]
    fn what_a_crash_leaves_is_cleaned_up_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(dir.path(), 1 << 20).unwrap();
        put(&mut store, "kept", 1, b"kept").unwrap();
        let torn = store.begin(meta("torn", 1, b"torn")).unwrap();
        std::mem::forget(torn); // a crash: the temporary file stays
        fs::write(dir.path().join("orphan.1-1.data"), b"bytes no metadata names").unwrap();
        // Metadata whose bytes are the wrong size: a damaged disk.
        let bad = meta("bad", 1, b"right");
        fs::write(dir.path().join(format!("{}.meta", key_hash(&bad.key))), serde_json::to_vec(&bad).unwrap()).unwrap();
        fs::write(dir.path().join(store.data_name(&bad)), b"wrong size").unwrap();
        drop(store);
        let store = ObjectStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.entries().map(|meta| meta.key.as_str()).collect::<Vec<_>>(), vec!["kept"]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn usage_counts_live_copies_and_their_bytes_not_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(&objects_dir(dir.path()), 1 << 20).unwrap();
        assert!(dir.path().join(OBJECTS_DIR).is_dir());
        put(&mut store, "a", 1, b"12345").unwrap();
        put(&mut store, "b", 1, b"123").unwrap();
        store.remove(&ObjectKey::parse("b").unwrap(), Version { term: 1, counter: 2 }).unwrap();
        assert_eq!(store.usage(), DataUsage { objects: 1, bytes: 5, quota: 1 << 20 });
    }

    #[test]
    fn regression_an_older_copy_committed_after_a_newer_one_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(dir.path(), 1 << 20).unwrap();
        // The older copy began before the newer one was committed.
        let mut older = store.begin(meta("k", 1, b"older")).unwrap();
        older.write(b"older").unwrap();
        put(&mut store, "k", 2, b"newer").unwrap();
        let err = store.commit(older).unwrap_err();
        assert!(matches!(err, ObjectsError::Stale { .. }), "{err}");
        assert_eq!(read_all(&store, "k"), b"newer");
        let reopened = ObjectStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(read_all(&reopened, "k"), b"newer");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "the newer copy's bytes and metadata only");
    }

    #[test]
    fn discarding_drops_only_the_version_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(dir.path(), 1 << 20).unwrap();
        put(&mut store, "k", 5, b"five").unwrap();
        let k = ObjectKey::parse("k").unwrap();
        let kept = store.discard(&k, Version { term: 1, counter: 4 }).unwrap();
        assert_eq!(kept.map(|meta| meta.version.counter), Some(5), "a newer copy stays");
        let kept = store.discard(&k, Version { term: 1, counter: 6 }).unwrap();
        assert_eq!(kept.map(|meta| meta.version.counter), Some(5), "an older copy stays");
        assert_eq!(store.discard(&k, Version { term: 1, counter: 5 }).unwrap(), None);
        assert_eq!(store.usage().objects, 0);
        let reopened = ObjectStore::open(dir.path(), 1 << 20).unwrap();
        assert!(reopened.get(&k).is_none());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no file is left");
    }

    #[test]
    fn a_tombstone_replaces_the_bytes_and_forgetting_removes_every_trace() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(dir.path(), 1 << 20).unwrap();
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
}
