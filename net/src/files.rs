//! Durable file writes: nothing persisted may be lost or half-written on a
//! crash, and key files are private from their first byte. Private files
//! whose permissions let group or others read them are refused on read, as
//! ssh refuses a loose private key.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of files holding private keys or secrets.
pub const PRIVATE: u32 = 0o600;
/// Mode of files anyone on the host may read (certificates, addresses).
pub const PUBLIC: u32 = 0o644;

/// Writes `bytes` to `path` atomically: a temporary file beside it, created
/// with `mode`, written, fsynced, renamed over `path`, then the directory
/// fsynced. A reader sees the old content or the new, never a mix.
///
/// # Errors
/// Any I/O error; the temporary file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_then(path, bytes, mode, |temp, path| fs::rename(temp, path))
}

/// Writes `bytes` to a new file `path`, as [`write_atomic`] does, but never
/// over an existing file: the finished temporary file is hard-linked to
/// `path`, which fails when `path` exists — no window between a check and
/// the write.
///
/// # Errors
/// [`io::ErrorKind::AlreadyExists`] when `path` exists; any other I/O error.
/// The temporary file is removed either way.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_then(path, bytes, mode, |temp, path| fs::hard_link(temp, path))
}

/// Writes `bytes` to a temporary file beside `path` (created with `mode`,
/// fsynced), puts it in place with `place`, fsyncs the directory, and
/// removes the temporary file if it is still there (always after a link,
/// after a rename only on failure).
fn write_then(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    place: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| io::Error::other("path has no file name"))?;
    let temp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        place(&temp, path)?;
        sync_parent(path)
    })();
    // Gone already after a rename; a link leaves it, and a failure may.
    let _ = fs::remove_file(&temp);
    result
}

/// Makes the directory entries of `path`'s directory durable: a file
/// created, renamed or removed there stays so through a crash.
///
/// # Errors
/// Any I/O error.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Reads `path`, or `None` if it does not exist.
///
/// # Errors
/// Any I/O error other than the file not existing.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Why a private file (a key) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// The file could not be read.
    #[error("failed to read \"{path}\": {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Group or others may access it: a secret that may already have leaked,
    /// and a setup mistake worth stopping for.
    #[error(
        "\"{path}\" is accessible by group or others (mode {mode:04o}): a private key must be readable by its owner only; fix it with `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Reads the private file `path` (a key), or `None` if it does not exist.
///
/// # Errors
/// [`PrivateFileError::TooOpen`] when group or others have any access to it;
/// any I/O error other than the file not existing.
pub fn read_private(path: &Path) -> Result<Option<Vec<u8>>, PrivateFileError> {
    let io_error = |source| PrivateFileError::Io { path: path.to_path_buf(), source };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_error(err)),
    };
    let mode = file.metadata().map_err(io_error)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PrivateFileError::TooOpen { path: path.to_path_buf(), mode });
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut &file, &mut bytes).map_err(io_error)?;
    Ok(Some(bytes))
}

/// Creates `dir` and its parents, private to the owner when new.
///
/// # Errors
/// Any I/O error.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_with_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        write_atomic(&path, b"one", PRIVATE).unwrap();
        write_atomic(&path, b"two", PRIVATE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn write_new_creates_a_private_file_and_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        write_new(&path, b"one", PRIVATE).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let err = write_new(&path, b"two", PRIVATE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn missing_files_read_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("absent")).unwrap().is_none());
    }

    #[test]
    fn regression_a_key_readable_by_others_is_refused_with_the_chmod_that_fixes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        write_atomic(&path, b"secret", PRIVATE).unwrap();
        assert_eq!(read_private(&path).unwrap().unwrap(), b"secret");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private(&path).unwrap_err();
        assert!(matches!(err, PrivateFileError::TooOpen { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains(&format!("chmod 600 {}", path.display())), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_private(&path).is_err(), "group-readable is refused too");
        assert!(read_private(&dir.path().join("absent")).unwrap().is_none());
    }
}
