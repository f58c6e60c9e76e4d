//! Child processes that cannot outlive their test.
//!
//! A [`Proc`] owns one child: its stdout and stderr go to one log file (so a
//! failing test can show what the process said), and dropping the `Proc` —
//! also while a failed assertion unwinds — sends SIGKILL and reaps it.
//!
//! Signals other than SIGKILL are sent with the system `kill` command: the
//! workspace denies `unsafe`, and this keeps `libc`/`nix` out of the tree.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::poll::{self, Step};

/// Lines of a process log shown in failure messages.
pub const TAIL_LINES: usize = 40;

/// How often a process is checked for exit while waiting for it.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// A signal a test sends to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Graceful stop: the agent says goodbye, the console shuts down.
    Term,
    /// Graceful stop, as Ctrl-C.
    Int,
    /// Freeze the process (a GC-like stall, a suspended VM).
    Stop,
    /// Resume a stopped process.
    Cont,
    /// Crash without a word.
    Kill,
}

impl Signal {
    /// The name `kill -s` takes.
    fn name(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Int => "INT",
            Self::Stop => "STOP",
            Self::Cont => "CONT",
            Self::Kill => "KILL",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

/// Sends `signal` to `pid` with the system `kill` command.
///
/// # Errors
/// When `kill` cannot be run or reports failure (no such process).
pub fn send_signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    let output = Command::new("kill")
        .args(["-s", signal.name(), &pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| anyhow::anyhow!("failed to run `kill`: {err}"))?;
    if !output.status.success() {
        anyhow::bail!(
            "`kill -s {} {pid}` failed ({}): {}",
            signal.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A running child process, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    /// Names the process in messages ("console", "agent b").
    label: String,
    /// The process itself; reaped through it so no zombie is left behind.
    child: Child,
    /// Where stdout and stderr go.
    log_path: PathBuf,
    /// Where this run's output starts in the log: a data dir may be reused by
    /// a second run (stored credentials), and assertions are about this one.
    log_start: u64,
    /// The exit status once reaped. Signals are only sent while this is
    /// `None`: a reaped pid may already belong to another process.
    exit: Option<ExitStatus>,
}

impl Proc {
    /// Starts `command` with its stdout and stderr appended to `log_path`,
    /// after a header line naming the command.
    ///
    /// # Panics
    /// When the log cannot be written or the program cannot be started.
    #[track_caller]
    pub fn spawn(label: impl Into<String>, mut command: Command, log_path: &Path) -> Self {
        let label = label.into();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap_or_else(|err| panic!("cannot open the log {}: {err}", log_path.display()));
        let header = format!("==== e2e: starting {label}: {}\n", describe(&command));
        log.write_all(header.as_bytes())
            .unwrap_or_else(|err| panic!("cannot write the log {}: {err}", log_path.display()));
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log.try_clone().unwrap_or_else(|err| panic!("cannot share the log {}: {err}", log_path.display()));
        command.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(stderr));
        child_env(&mut command);
        let child =
            command.spawn().unwrap_or_else(|err| panic!("cannot start {label} ({}): {err}", describe(&command)));
        Self { label, child, log_path: log_path.to_path_buf(), log_start, exit: None }
    }

    /// The name used in messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file (all runs that shared it).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// What this run has written so far (lossy UTF-8).
    pub fn log(&self) -> String {
        read_from(&self.log_path, self.log_start)
    }

    /// The last [`TAIL_LINES`] lines of this run's output, framed for a
    /// failure message.
    pub fn log_tail(&self) -> String {
        format!(
            "---- last lines of {} ({}) ----\n{}\n---- end of {} ----",
            self.label,
            self.log_path.display(),
            tail(&self.log(), TAIL_LINES),
            self.label
        )
    }

    /// Sends a signal. SIGKILL goes through [`Proc::kill`], which also reaps.
    ///
    /// # Panics
    /// When the process was already reaped, or `kill` fails.
    #[track_caller]
    pub fn signal(&mut self, signal: Signal) {
        if signal == Signal::Kill {
            self.kill();
            return;
        }
        if let Some(status) = self.exit {
            panic!("cannot send {signal} to {}: it already exited ({status})\n{}", self.label, self.log_tail());
        }
        if let Err(err) = send_signal(self.pid(), signal) {
            panic!("cannot send {signal} to {}: {err}\n{}", self.label, self.log_tail());
        }
    }

    /// SIGKILL and reap; returns the exit status. Harmless if already gone.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        // Fails only when the child already exited; `wait` reaps either way.
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => {
                self.exit = Some(status);
                status
            }
            Err(err) => panic!("cannot reap {}: {err}", self.label),
        }
    }

    /// The exit status if the process has exited (reaping it), without
    /// blocking.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.exit = status,
                Err(err) => panic!("cannot check on {}: {err}", self.label),
            }
        }
        self.exit
    }

    /// Whether the process is still running (a stopped process counts).
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Waits up to `timeout` for the process to exit.
    ///
    /// # Errors
    /// On timeout; the process is left running.
    pub fn wait_exit_within(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        poll::until(timeout, EXIT_POLL, || match self.try_exit() {
            Some(status) => Step::Done(status),
            None => Step::Pending("still running".to_owned()),
        })
        .map_err(|failure| anyhow::anyhow!("{} did not exit: {failure}", self.label))
    }

    /// Waits up to `timeout` for the process to exit.
    ///
    /// # Panics
    /// On timeout, with the log tail.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit_within(timeout) {
            Ok(status) => status,
            Err(err) => panic!("{err}\n{}", self.log_tail()),
        }
    }

    /// Waits until this run's log satisfies `pred`, or the process exits
    /// (then `pred` is checked once more on the final log). Returns whether
    /// `pred` held; `false` means the process exited without it.
    ///
    /// # Panics
    /// When neither happens within `timeout`, naming `what`.
    #[track_caller]
    pub fn wait_for_log(&mut self, timeout: Duration, what: &str, mut pred: impl FnMut(&str) -> bool) -> bool {
        let result = poll::until(timeout, EXIT_POLL * 2, || {
            let exited = self.try_exit();
            let log = self.log();
            if pred(&log) {
                Step::Done(true)
            } else if exited.is_some() {
                Step::Done(false)
            } else {
                Step::Pending(String::new())
            }
        });
        match result {
            Ok(held) => held,
            Err(failure) => {
                panic!("{}: gave up waiting for {what} in its log: {failure}\n{}", self.label, self.log_tail())
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // SIGKILL works on stopped processes too; the errors mean it is
            // already gone, and a drop must not panic during unwinding.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Environment every child gets: plain logs (no ANSI colour codes splitting
/// the words tests search for) and backtraces if a binary panics.
fn child_env(command: &mut Command) {
    command.env("NO_COLOR", "1");
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        command.env("RUST_BACKTRACE", "1");
    }
}

/// `program arg arg…` for messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(bytes) = fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// What a finished one-shot command printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output (lossy UTF-8).
    pub stdout: String,
    /// Its standard error (lossy UTF-8).
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ended with {}\n---- stdout ----\n{}\n---- stderr ----\n{}",
            self.command,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs a one-shot command to completion, capturing its output; kills it
/// after `timeout` so a hanging admin command fails the test instead of
/// hanging the run.
///
/// # Errors
/// When the program cannot be started or does not finish in time.
pub fn run<I, S>(program: &Path, args: I, timeout: Duration) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    let described = describe(&command);
    child_env(&mut command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| anyhow::anyhow!("failed to start `{described}`: {err}"))?;
    // Both pipes are drained on threads so a chatty child cannot block on a
    // full pipe while we wait for it.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => thread::sleep(EXIT_POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "`{described}` did not finish within {timeout:?}; stderr so far:\n{}",
                    stderr.join().unwrap_or_default()
                );
            }
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("failed to wait for `{described}`: {err}");
            }
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        command: described,
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn a_dropped_proc_is_killed_and_its_output_logged() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        let mut command = Command::new("sh");
        command.args(["-c", "echo hello; echo oops >&2; exec sleep 600"]);
        let mut proc = Proc::spawn("sh", command, &log);
        let pid = proc.pid();
        assert!(proc.wait_for_log(Duration::from_secs(10), "hello", |l| { l.contains("hello") && l.contains("oops") }));
        proc.signal(Signal::Stop);
        proc.signal(Signal::Cont);
        drop(proc);
        // Reaped: the pid no longer names our child.
        assert!(send_signal(pid, Signal::Cont).is_err());
    }

    #[test]
    fn wait_exit_reports_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("sh");
        command.args(["-c", "exit 3"]);
        let mut proc = Proc::spawn("sh", command, &dir.path().join("log"));
        let status = proc.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(3));
    }

    #[test]
    fn run_captures_output_and_times_out() {
        let out = run(Path::new("sh"), ["-c", "echo out; echo err >&2; exit 2"], Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(2));
        let err = run(Path::new("sh"), ["-c", "exec sleep 600"], Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
    }
}
