//! One temporary directory per test, holding every data dir and log of it.

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

use tempfile::TempDir;

/// Set to `1` to keep every sandbox, not only those of failed tests.
pub const KEEP_ENV: &str = "RINGWATCH_E2E_KEEP";

/// A test's private directory. Tests run in parallel threads, so nothing is
/// shared: each console and agent gets a subdirectory of its own sandbox.
///
/// Declare it first in a test so it drops last, after the processes using
/// it. When the test fails (or [`KEEP_ENV`] is `1`) the directory is kept,
/// and its path printed, so the logs can be read.
#[derive(Debug)]
pub struct Sandbox {
    /// The directory; removed on drop unless the test is failing.
    dir: TempDir,
    /// Names the test in step messages.
    name: String,
    /// Origin of the step timestamps.
    started: Instant,
}

impl Sandbox {
    /// Creates `$TMPDIR/ringwatch-e2e-NAME-xxxx/`.
    ///
    /// # Panics
    /// When the directory cannot be created.
    #[track_caller]
    pub fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ringwatch-e2e-{name}-"))
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot create a temporary directory: {err}"));
        Self { dir, name: name.to_owned(), started: Instant::now() }
    }

    /// The sandbox root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A subdirectory, created empty if needed (a console or agent data dir).
    ///
    /// # Panics
    /// When it cannot be created.
    #[track_caller]
    pub fn dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path).unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        path
    }

    /// Prints a timestamped progress line. The test harness shows it only
    /// when the test fails, where it tells how far the test got and when.
    pub fn step(&self, message: impl Display) {
        eprintln!("[{:>7.3}s] {}: {message}", self.started.elapsed().as_secs_f64(), self.name);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if thread::panicking() || std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1") {
            self.dir.disable_cleanup(true);
            eprintln!(
                "{}: keeping {} for inspection (data dirs and process logs)",
                self.name,
                self.dir.path().display()
            );
        }
    }
}
