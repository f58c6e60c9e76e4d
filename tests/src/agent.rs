//! A `ringwatch-agent` process.

use std::ffi::OsStr;
use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::process::{Proc, Signal};
use crate::{EXIT_DEADLINE, bins};

/// Our capture of the agent's stdout and stderr, inside its data dir. A
/// second run on the same dir appends to it; [`Agent::log`] shows only the
/// current run.
pub const LOG_FILE: &str = "e2e-agent.log";

/// The heartbeat every test agent uses: the documented default, spelled out
/// so a changed default does not silently change the tests.
pub const HEARTBEAT: &str = "500ms";

/// A running agent, killed when dropped.
#[derive(Debug)]
pub struct Agent {
    /// The agent process.
    proc: Proc,
    /// The node name the test expects in `status`.
    name: String,
    /// Its data dir (credentials and our log).
    data_dir: PathBuf,
}

impl Agent {
    /// Joins with a token: `ringwatch-agent --console ADDR --token TOKEN
    /// --name NAME --data-dir DIR --heartbeat 500ms EXTRA…`. `console` is
    /// what `--console` gets: one address, or a list like `"A,B"`. Without
    /// `--allow-exec` in `extra_args` it runs no task (a
    /// [`Fleet`](crate::Fleet) passes the test tasks' programs).
    ///
    /// # Panics
    /// When the process cannot be started.
    #[track_caller]
    pub fn start(console: impl Display, token: &str, name: &str, data_dir: &Path, extra_args: &[&str]) -> Self {
        let mut args: Vec<&OsStr> = ["--token", token, "--name", name].into_iter().map(OsStr::new).collect();
        args.extend(extra_args.iter().copied().map(OsStr::new));
        Self::spawn(console, name, data_dir, &args)
    }

    /// Runs with the credentials stored in `data_dir` by an earlier join: no
    /// `--token`, no `--name` (the name is in the stored certificate).
    /// `name` is only what the test calls it.
    ///
    /// # Panics
    /// When the process cannot be started.
    #[track_caller]
    pub fn start_stored(console: impl Display, name: &str, data_dir: &Path, extra_args: &[&str]) -> Self {
        let args: Vec<&OsStr> = extra_args.iter().map(OsStr::new).collect();
        Self::spawn(console, name, data_dir, &args)
    }

    #[track_caller]
    fn spawn(console: impl Display, name: &str, data_dir: &Path, args: &[&OsStr]) -> Self {
        fs::create_dir_all(data_dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", data_dir.display()));
        let mut command = Command::new(bins::ringwatch_agent());
        command
            .arg("--console")
            .arg(console.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--heartbeat", HEARTBEAT])
            .args(args);
        let proc = Proc::spawn(format!("agent {name}"), command, &data_dir.join(LOG_FILE));
        Self { proc, name: name.to_owned(), data_dir: data_dir.to_path_buf() }
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The agent process.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// SIGKILL (and reap): a crash with no goodbye.
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc.kill()
    }

    /// SIGTERM: a graceful exit with goodbye.
    #[track_caller]
    pub fn term(&mut self) {
        self.proc.signal(Signal::Term);
    }

    /// SIGSTOP: the process freezes, its heartbeats stop.
    #[track_caller]
    pub fn stop(&mut self) {
        self.proc.signal(Signal::Stop);
    }

    /// SIGCONT: it resumes.
    #[track_caller]
    pub fn cont(&mut self) {
        self.proc.signal(Signal::Cont);
    }

    /// Waits up to `timeout` for the agent to exit.
    ///
    /// # Panics
    /// On timeout, with its log tail.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.proc.wait_exit(timeout)
    }

    /// Waits up to [`EXIT_DEADLINE`] for the agent to exit and asserts it
    /// failed (a refused agent must not exit 0).
    ///
    /// # Panics
    /// On timeout or a successful exit, with its log tail.
    #[track_caller]
    pub fn wait_refused_exit(&mut self) -> ExitStatus {
        let status = self.proc.wait_exit(EXIT_DEADLINE);
        if status.success() {
            panic!("{} was refused but exited successfully ({status})\n{}", self.proc.label(), self.proc.log_tail());
        }
        status
    }

    /// The exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.proc.try_exit()
    }

    /// What this run has logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The last lines it logged, framed for a failure message.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// Waits until this run's log satisfies `pred` or the agent exits;
    /// returns whether `pred` held.
    ///
    /// # Panics
    /// When neither happens within `timeout`.
    #[track_caller]
    pub fn wait_for_log(&mut self, timeout: Duration, what: &str, pred: impl FnMut(&str) -> bool) -> bool {
        self.proc.wait_for_log(timeout, what, pred)
    }

    /// Asserts that this run's log mentions at least one of `phrases`
    /// (case-insensitive).
    ///
    /// # Panics
    /// When none is found, with the log tail.
    #[track_caller]
    pub fn assert_log_mentions(&self, phrases: &[&str]) {
        let log = self.log();
        if mentions_any(&log, phrases) {
            return;
        }
        panic!("{}: expected its log to mention one of {phrases:?}\n{}", self.proc.label(), self.log_tail());
    }
}

/// Whether `text` contains one of `phrases`, ignoring case.
pub fn mentions_any(text: &str, phrases: &[&str]) -> bool {
    let text = text.to_lowercase();
    phrases.iter().any(|p| text.contains(&p.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_ignore_case() {
        assert!(mentions_any("Join Token EXPIRED at 12:00", &["expired"]));
        assert!(!mentions_any("all good", &["expired", "token"]));
    }
}
