//! The change log's write-ahead file, `state.wal`, in front of
//! `state.redb` (ARCHITECTURE.md, "The change log"): a commit appends its
//! batch here and waits for one `fdatasync` — a sequential write of a few
//! hundred bytes — instead of a database commit, which rewrites and syncs
//! every B-tree page the batch touched. The database catches up now and
//! then in one commit of many batches ([`super::redb::RedbStore`]), after
//! which the file is emptied.
//!
//! A record is `[payload length: u32 LE][xxh3-64 of the payload: u64 LE]
//! [payload: postcard]`. Each append is synced before the next begins, so
//! only the last record can be torn by a crash; reading stops there and the
//! file is cut back to the last whole record. A damaged record with more
//! behind it is not a torn append but a damaged file, and is refused: a
//! console never starts on a state it cannot trust.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ringwatch_net::files;
use serde::{Deserialize, Serialize};
use tracing::warn;
use xxhash_rust::xxh3::xxh3_64;

/// The bytes before a record's payload.
const HEADER_LEN: usize = 12;
/// The unit a disk writes at once: a torn append leaves whole sectors of
/// zeros where it did not reach.
const SECTOR: usize = 512;

/// One batch as the file holds it: what it does to each record and the
/// events it appends, already encoded as the database stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalBatch {
    /// The batch's sequence number.
    pub seq: u64,
    /// Record key → its JSON, or `None` for a removal; in order.
    pub records: Vec<(String, Option<String>)>,
    /// Event sequence number → its JSON.
    pub events: Vec<(u64, String)>,
}

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Reading, writing or syncing failed.
    #[error("the write-ahead log \"{path}\": {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A record in the middle of the file is damaged.
    #[error(
        "the write-ahead log \"{path}\" is damaged at byte {offset} ({reason}) with {following} bytes after it; it holds the console's latest changes, not yet in the database: restore it from a backup, or move it away to start from the database alone (the changes since its last catch-up are then lost)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
        /// How many bytes follow it.
        following: u64,
    },
}

/// The open file.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    /// Its length: where the next record goes.
    len: u64,
}

impl Wal {
    /// Opens (or creates) the file at `path` and reads its whole records,
    /// oldest first. A torn last record is cut off.
    ///
    /// # Errors
    /// [`WalError::Io`]; [`WalError::Damaged`] for a damaged record with
    /// more after it.
    pub fn open(path: &Path) -> Result<(Self, Vec<WalBatch>), WalError> {
        let io_error = |source| WalError::Io { path: path.to_path_buf(), source };
        let mut file = open_file(path).map_err(io_error)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error)?;
        let (batches, whole) = read_records(path, &bytes)?;
        if whole < bytes.len() {
            warn!(
                path = %path.display(),
                dropped = bytes.len() - whole,
                "the write-ahead log ends in a record torn by a crash; it was never acknowledged, and is cut off"
            );
            file.set_len(whole as u64).map_err(io_error)?;
            file.sync_data().map_err(io_error)?;
        }
        Ok((Self { file, path: path.to_path_buf(), len: whole as u64 }, batches))
    }

    /// Appends `batch` and returns once it is durable.
    ///
    /// # Errors
    /// [`WalError::Io`]; the file is then cut back to where it was, so a
    /// failed append leaves no half record for the next one to follow.
    pub fn append(&mut self, batch: &WalBatch) -> Result<(), WalError> {
        let record = encode(batch).map_err(|source| self.io_error(source))?;
        let written = self.file.write_all(&record).and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Best effort: the next open cuts a torn tail anyway.
            let _ = self.file.set_len(self.len);
            return Err(self.io_error(source));
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Empties the file, durably: everything in it is in the database.
    ///
    /// # Errors
    /// [`WalError::Io`].
    pub fn clear(&mut self) -> Result<(), WalError> {
        self.file.set_len(0).and_then(|()| self.file.sync_data()).map_err(|source| self.io_error(source))?;
        self.len = 0;
        Ok(())
    }

    /// Renames the file to `to`, replacing whatever is there, and goes on
    /// in a new, empty file at its own path; both names are durable before
    /// it returns. The renamed file is then folded into the database while
    /// appends go on here ([`super::redb::RedbStore`]).
    ///
    /// # Errors
    /// [`WalError::Io`]. The file is then named as before if it can be; in
    /// any case appends go on to it, whatever its name.
    pub fn rotate(&mut self, to: &Path) -> Result<(), WalError> {
        std::fs::rename(&self.path, to).map_err(|source| self.io_error(source))?;
        let fresh = open_file(&self.path).and_then(|file| files::sync_parent(&self.path).map(|()| file));
        match fresh {
            Ok(file) => {
                self.file = file;
                self.len = 0;
                Ok(())
            }
            Err(source) => {
                let _ = std::fs::rename(to, &self.path);
                Err(self.io_error(source))
            }
        }
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn io_error(&self, source: io::Error) -> WalError {
        WalError::Io { path: self.path.clone(), source }
    }
}

/// Opens (or creates) the file at `path` for reading and appending.
fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).create(true).open(path)
}

/// A record of `batch`.
fn encode(batch: &WalBatch) -> io::Result<Vec<u8>> {
    let payload = postcard::to_stdvec(batch).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("a batch larger than 4 GiB"))?;
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// The whole records in `bytes` and how many bytes they take; the rest is
/// a torn last record.
fn read_records(path: &Path, bytes: &[u8]) -> Result<(Vec<WalBatch>, usize), WalError> {
    let mut batches = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(header) = rest.get(..HEADER_LEN) else { break };
        let (len_bytes, sum_bytes) = header.split_at(4);
        let len = u32::from_le_bytes(len_bytes.try_into().unwrap_or_default()) as usize;
        let sum = u64::from_le_bytes(sum_bytes.try_into().unwrap_or_default());
        let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else { break };
        let end = HEADER_LEN + len;
        let damage = if xxh3_64(payload) == sum {
            match postcard::from_bytes::<WalBatch>(payload) {
                Ok(batch) => {
                    batches.push(batch);
                    at += end;
                    continue;
                }
                Err(err) => format!("its checksum matches but it does not decode: {err}"),
            }
        } else {
            "its checksum does not match".to_string()
        };
        // A torn append: it is the last thing in the file, or what is left
        // holds a sector the disk never wrote (its header may be one).
        // Anything else is damage.
        if end >= rest.len() || has_unwritten_sector(rest) {
            break;
        }
        return Err(WalError::Damaged {
            path: path.to_path_buf(),
            offset: at as u64,
            reason: damage,
            following: (rest.len() - end) as u64,
        });
    }
    Ok((batches, at))
}

/// Whether `bytes` hold a sector's length of zeros: a record never does
/// (its JSON holds no zero byte), a sector the disk did not write does.
fn has_unwritten_sector(bytes: &[u8]) -> bool {
    let mut run = 0;
    bytes.iter().any(|&byte| {
        run = if byte == 0 { run + 1 } else { 0 };
        run >= SECTOR
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seq: u64) -> WalBatch {
        WalBatch {
            seq,
            records: vec![(format!("node/n{seq}"), Some(format!("{{\"n\":{seq}}}"))), ("task/t".into(), None)],
            events: vec![(seq, format!("{{\"seq\":{seq}}}"))],
        }
    }

    /// Changes the file's bytes with `change`.
    fn altered(path: &Path, change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut bytes = std::fs::read(path).unwrap();
        change(&mut bytes);
        std::fs::write(path, &bytes).unwrap();
        bytes
    }

    fn written(path: &Path, count: u64) -> Vec<u64> {
        let (mut wal, read) = Wal::open(path).unwrap();
        assert!(read.is_empty());
        let mut ends = Vec::new();
        for seq in 1..=count {
            wal.append(&batch(seq)).unwrap();
            ends.push(wal.len());
        }
        ends
    }

    #[test]
    fn appended_batches_are_read_back_in_order_and_clear_empties_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.wal");
        written(&path, 5);
        let (mut wal, read) = Wal::open(&path).unwrap();
        assert_eq!(read, (1..=5).map(batch).collect::<Vec<_>>());
        wal.clear().unwrap();
        wal.append(&batch(6)).unwrap();
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().1, vec![batch(6)], "a cleared log starts again at its beginning");
    }

    #[test]
    fn a_record_torn_anywhere_by_a_crash_is_cut_off_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.wal");
        let ends = written(&path, 3);
        let full = std::fs::read(&path).unwrap();
        // Every length the file can have when the third append is cut short.
        for cut in ends[1]..ends[2] {
            std::fs::write(&path, &full[..usize::try_from(cut).unwrap()]).unwrap();
            let (mut wal, read) = Wal::open(&path).unwrap();
            assert_eq!(read, vec![batch(1), batch(2)], "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[1], "the torn bytes are gone");
            wal.append(&batch(9)).unwrap();
            drop(wal);
            assert_eq!(Wal::open(&path).unwrap().1, vec![batch(1), batch(2), batch(9)]);
        }
    }

    #[test]
    fn a_last_record_with_garbage_in_it_is_a_torn_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.wal");
        let ends = written(&path, 2);
        altered(&path, |bytes| bytes[usize::try_from(ends[1]).unwrap() - 1] ^= 0xff);
        assert_eq!(Wal::open(&path).unwrap().1, vec![batch(1)]);
    }

    #[test]
    fn a_torn_record_with_a_sector_the_disk_never_wrote_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&batch(1)).unwrap();
        let start = usize::try_from(wal.len()).unwrap();
        let big = WalBatch { seq: 2, records: vec![("k".into(), Some("x".repeat(4000)))], events: vec![] };
        wal.append(&big).unwrap();
        drop(wal);
        let whole = std::fs::read(&path).unwrap();
        // The file grew to its full length, but a sector in the middle of
        // the record, or the one holding its header, was never written;
        // whatever follows (here: a stray block) cannot make it damage.
        for unwritten in [start + 1024..start + 2048, start..start + 600] {
            std::fs::write(&path, &whole).unwrap();
            altered(&path, |bytes| {
                bytes[unwritten].fill(0);
                bytes.extend_from_slice(&[7; 100]);
            });
            assert_eq!(Wal::open(&path).unwrap().1, vec![batch(1)]);
            assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, start, "cut back to the whole records");
        }
    }

    #[test]
    fn a_damaged_record_in_the_middle_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.wal");
        let ends = written(&path, 3);
        let bytes = altered(&path, |bytes| bytes[usize::try_from(ends[0]).unwrap() + HEADER_LEN] ^= 0x01);
        let err = Wal::open(&path).unwrap_err();
        assert!(matches!(err, WalError::Damaged { offset, .. } if offset == ends[0]), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "a refused log is left as it was");
    }

    #[test]
    fn random_bytes_are_an_error_or_a_shorter_log_never_a_panic() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.wal");
            let mut bytes = vec![0u8; usize::try_from(rng.next_u32() % 3000).unwrap()];
            rng.fill_bytes(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            match Wal::open(&path) {
                Ok((_, read)) => assert!(read.len() <= 1),
                Err(err) => assert!(matches!(err, WalError::Damaged { .. }), "{err}"),
            }
        }
    }
}
