//! A child's stdout and stderr, appended to size-capped files in its
//! working directory.
//!
//! When a file would grow past the cap it is rotated first: `stdout.log`
//! becomes `stdout.log.1`, `.1` becomes `.2`, and so on up to `keep`; the
//! oldest is dropped. A chunk is split at the cap, so no file ever exceeds
//! it. The pipe is drained even when the disk refuses writes: a child must
//! never block on a full pipe because its log cannot be written.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use tokio::fs::{self, File, OpenOptions};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

/// Log files hold what the instance printed: private to the agent's user.
const LOG_MODE: u32 = 0o600;
/// Bytes read from a pipe at a time.
const CHUNK: usize = 16 * 1024;

/// One capped, rotated log file.
#[derive(Debug)]
pub(crate) struct LogFile {
    /// `…/stdout.log`; rotated copies get `.1`, `.2`, … appended.
    path: PathBuf,
    /// Rotate before the file would exceed this; 0 means no cap.
    max_bytes: u64,
    /// Rotated copies kept.
    keep: usize,
    /// The open file; `None` after a failed rotation, reopened on the next
    /// write.
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
}

impl LogFile {
    /// Opens (creating it, mode 0600) `path` for appending.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub(crate) async fn open(path: PathBuf, max_bytes: u64, keep: usize) -> io::Result<Self> {
        let file = open_append(&path).await?;
        let size = file.metadata().await?.len();
        Ok(Self { path, max_bytes, keep, file: Some(file), size })
    }

    /// Appends `bytes`, rotating as often as the cap requires.
    ///
    /// # Errors
    /// The first write, rotation or reopening that failed.
    pub(crate) async fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.max_bytes > 0 && self.size >= self.max_bytes {
                self.rotate().await?;
            }
            let room = if self.max_bytes == 0 { u64::MAX } else { self.max_bytes - self.size };
            let take = usize::try_from(room).map_or(bytes.len(), |room| room.min(bytes.len()));
            let (now, rest) = bytes.split_at(take);
            let file = match &mut self.file {
                Some(file) => file,
                None => {
                    let file = open_append(&self.path).await?;
                    self.size = file.metadata().await?.len();
                    self.file.insert(file)
                }
            };
            file.write_all(now).await?;
            // tokio writes in the background: flushing makes the bytes land
            // before the child's exit is reported.
            file.flush().await?;
            self.size += now.len() as u64;
            bytes = rest;
        }
        Ok(())
    }

    async fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush().await?;
        }
        if self.keep == 0 {
            remove_if_present(&self.path).await?;
        } else {
            for index in (1..self.keep).rev() {
                rename_if_present(&numbered(&self.path, index), &numbered(&self.path, index + 1)).await?;
            }
            rename_if_present(&self.path, &numbered(&self.path, 1)).await?;
        }
        self.file = Some(open_append(&self.path).await?);
        self.size = 0;
        Ok(())
    }
}

/// Copies `pipe` into `log` until the pipe closes, in a task of its own.
pub(crate) fn pump<R>(mut pipe: R, mut log: LogFile) -> AbortOnDropHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut buffer = vec![0; CHUNK];
        let mut failing = false;
        loop {
            let read = match pipe.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            let Some(chunk) = buffer.get(..read) else { return };
            match log.write(chunk).await {
                Ok(()) => failing = false,
                Err(err) => {
                    if !failing {
                        warn!(path = %log.path.display(), %err, "cannot write an instance's log; dropping its output");
                    }
                    failing = true;
                }
            }
        }
    }))
}

/// `path` with `.index` appended: `stdout.log.2`.
pub(crate) fn numbered(path: &Path, index: usize) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

async fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(path).await
}

async fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to).await {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

async fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path).await {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(path: &Path, keep: usize) -> Vec<Option<u64>> {
        (0..=keep + 1)
            .map(|index| {
                let file = if index == 0 { path.to_path_buf() } else { numbered(path, index) };
                std::fs::metadata(file).ok().map(|meta| meta.len())
            })
            .collect()
    }

    #[tokio::test]
    async fn files_rotate_at_the_cap_and_the_oldest_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = LogFile::open(path.clone(), 100, 2).await.unwrap();
        log.write(&[b'a'; 100]).await.unwrap();
        assert_eq!(sizes(&path, 2), [Some(100), None, None, None], "exactly full: not rotated yet");
        log.write(&[b'b'; 150]).await.unwrap();
        assert_eq!(sizes(&path, 2), [Some(50), Some(100), Some(100), None]);
        log.write(&[b'c'; 200]).await.unwrap();
        // 450 bytes written, 250 kept: the oldest 200 are gone.
        assert_eq!(sizes(&path, 2), [Some(50), Some(100), Some(100), None]);
        assert_eq!(std::fs::read(&path).unwrap(), [b'c'; 50]);
        let mut middle = vec![b'b'; 50];
        middle.extend([b'c'; 50]);
        assert_eq!(std::fs::read(numbered(&path, 2)).unwrap(), middle);
    }

    #[tokio::test]
    async fn appending_continues_an_existing_file_and_keep_zero_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr.log");
        std::fs::write(&path, [b'x'; 80]).unwrap();
        let mut log = LogFile::open(path.clone(), 100, 0).await.unwrap();
        log.write(&[b'y'; 30]).await.unwrap();
        assert_eq!(sizes(&path, 0), [Some(10), None]);
        assert_eq!(std::fs::read(&path).unwrap(), [b'y'; 10]);
    }

    #[tokio::test]
    async fn a_zero_cap_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let mut log = LogFile::open(path.clone(), 0, 3).await.unwrap();
        log.write(&[b'z'; 10_000]).await.unwrap();
        assert_eq!(sizes(&path, 1), [Some(10_000), None, None]);
    }

    #[tokio::test]
    async fn pump_copies_until_the_pipe_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        let log = LogFile::open(path.clone(), 1000, 1).await.unwrap();
        let input: Vec<u8> = (0..1500u32).map(|i| b'a' + (i % 26) as u8).collect();
        pump(std::io::Cursor::new(input.clone()), log).await.unwrap();
        let mut kept = std::fs::read(numbered(&path, 1)).unwrap();
        kept.extend(std::fs::read(&path).unwrap());
        assert_eq!(kept, input);
    }
}
