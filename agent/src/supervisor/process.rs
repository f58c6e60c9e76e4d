//! Starting an instance's process in a process group of its own, and
//! ending that group.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use ringwatch_shared::names::InstanceId;
use ringwatch_shared::protocol::Assignment;
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::task::AbortOnDropHandle;

use super::SupervisorConfig;
use super::allow::AllowList;
use super::error::SupervisorError;
use super::logs::{self, LogFile};

/// Instance directories hold the instance's files and logs: private.
const DIR_MODE: u32 = 0o700;
/// How long a SIGKILLed process may take to be reaped before we stop
/// waiting for it (it may be stuck in the kernel; tokio reaps it later).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long the log pumps may take to drain the pipes after the group is
/// gone; a pipe still open then is held by a process that left the group.
const LOG_DRAIN: Duration = Duration::from_secs(2);

/// A started process.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// The process; `kill_on_drop` is off, the group is ended explicitly.
    pub(crate) child: Child,
    /// Its pid, which is also its process group id.
    pub(crate) pid: u32,
    /// The tasks copying stdout and stderr into the log files.
    logs: Vec<AbortOnDropHandle<()>>,
}

impl Spawned {
    /// Waits (bounded) until the log pumps have copied everything the pipes
    /// still held; pumps still running then are aborted.
    pub(crate) async fn drain_logs(&mut self) {
        let deadline = Instant::now() + LOG_DRAIN;
        for pump in self.logs.drain(..) {
            let _ = timeout_at(deadline, pump).await;
        }
    }
}

/// The directory name of an instance: `web/0` → `web-0`, or `None` when the
/// instance is not `task/index` (nothing the console sends becomes a path
/// unchecked).
fn dir_name(instance: &InstanceId) -> String {
    // An `InstanceId` is valid by construction (a task name and a decimal
    // index): nothing in it can climb out of `instances/`.
    format!("{}-{}", instance.task(), instance.index())
}

/// `data_dir/instances/<task>-<index>`.
pub(crate) fn instance_dir(data_dir: &Path, instance: &InstanceId) -> PathBuf {
    data_dir.join("instances").join(dir_name(instance))
}

/// Starts `assignment` in its working directory, in a new process group,
/// with its output going to the log files. `node` (this agent's name, if
/// known) goes into a refusal's message.
///
/// # Errors
/// A bad instance name, an empty or refused command, a working directory or
/// log file that cannot be made, or a program that cannot be started.
pub(crate) async fn spawn(
    config: &SupervisorConfig,
    allow: &AllowList,
    node: Option<String>,
    assignment: &Assignment,
) -> Result<Spawned, SupervisorError> {
    let instance = &assignment.instance;
    let dir = instance_dir(&config.data_dir, instance);
    let (program, args) =
        assignment.spec.command.split_first().ok_or_else(|| SupervisorError::EmptyCommand(instance.to_string()))?;
    if !allow.allows(program) {
        return Err(SupervisorError::NotAllowed {
            program: program.clone(),
            node,
            allow_source: config.allow_source.clone(),
        });
    }
    let prepare = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SupervisorError::Prepare { path, source }
    };
    tokio::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(&dir).await.map_err(prepare(&dir))?;
    // An existing directory keeps the mode it had: make it private again.
    set_mode(&dir, DIR_MODE).await.map_err(prepare(&dir))?;
    let stdout_path = dir.join("stdout.log");
    let stderr_path = dir.join("stderr.log");
    let stdout_log = LogFile::open(stdout_path.clone(), config.log_max_bytes, config.log_keep)
        .await
        .map_err(prepare(&stdout_path))?;
    let stderr_log = LogFile::open(stderr_path.clone(), config.log_max_bytes, config.log_keep)
        .await
        .map_err(prepare(&stderr_path))?;

    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&dir)
        .env("RINGWATCH_INSTANCE", instance.to_string())
        .env("RINGWATCH_EPOCH", assignment.epoch.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let spawn_error = |source| SupervisorError::Spawn { program: program.clone(), source };
    let mut child = command.spawn().map_err(spawn_error)?;
    let Some(pid) = child.id().filter(|&pid| pid > 1) else {
        let _ = child.start_kill();
        return Err(spawn_error(io::Error::other("the process has no pid")));
    };
    // Recorded so that a restarted agent can find what a killed one left.
    let _ = tokio::fs::write(dir.join(PGID_FILE), pid.to_string()).await;
    let mut pumps = Vec::with_capacity(2);
    if let Some(stdout) = child.stdout.take() {
        pumps.push(logs::pump(stdout, stdout_log));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(logs::pump(stderr, stderr_log));
    }
    Ok(Spawned { child, pid, logs: pumps })
}

/// Holds the process group id of an instance's latest process.
const PGID_FILE: &str = ".ringwatch.pgid";

/// Kills instance processes a previous run of this agent left behind (it was
/// killed, so nobody stopped them): every process group recorded in
/// `data_dir/instances/*/.ringwatch.pgid` whose leader still runs in that
/// directory. The directory check keeps a recycled pid safe. Returns the
/// instance directories cleaned.
pub fn reap_orphans(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("instances")) else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(pid) =
            std::fs::read_to_string(dir.join(PGID_FILE)).ok().and_then(|text| text.trim().parse::<u32>().ok())
        else {
            continue;
        };
        let runs_here = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .is_ok_and(|cwd| std::fs::canonicalize(&dir).is_ok_and(|dir| dir == cwd));
        if runs_here {
            signal_group(pid, Signal::SIGKILL);
            reaped.push(entry.file_name().to_string_lossy().into_owned());
        }
        let _ = std::fs::remove_file(dir.join(PGID_FILE));
    }
    reaped
}

async fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await
}

/// Sends `signal` to the process group `pgid`. Best effort: a group that is
/// already gone is not an error, and pids 0 and 1 are never signalled (they
/// would mean our own group, or every process).
pub(crate) fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    if raw > 1 {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

/// Ends a running process group: SIGTERM, then SIGKILL after `grace`; then
/// SIGKILL again for whatever is left of the group.
///
/// # Errors
/// When waiting for the process failed or it could not be reaped in time.
pub(crate) async fn terminate(spawned: &mut Spawned, grace: Duration) -> io::Result<ExitStatus> {
    signal_group(spawned.pid, Signal::SIGTERM);
    let status = match timeout(grace, spawned.child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(spawned.pid, Signal::SIGKILL);
            let _ = spawned.child.start_kill();
            timeout(KILL_WAIT, spawned.child.wait())
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the process did not die after SIGKILL")))
        }
    };
    signal_group(spawned.pid, Signal::SIGKILL);
    status
}

/// `exit code 3`, or `killed by signal 9`.
pub(crate) fn describe_exit(status: &io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => status.to_string(),
        },
        Err(err) => format!("unknown exit ({err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_dirs_come_only_from_task_slash_index() {
        let dir = |id: &str| InstanceId::parse(id).map(|id| dir_name(&id)).ok();
        assert_eq!(dir("web/0").as_deref(), Some("web-0"));
        assert_eq!(dir("a-b.c_d/12").as_deref(), Some("a-b.c_d-12"));
        for bad in
            ["web", "web/", "/0", "web/x", "web/0/1", "../x/0", "web/../0", "Web/0", "web/-1", "web/12345678901", ""]
        {
            assert_eq!(dir(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn exits_are_described_by_code_or_signal() {
        assert_eq!(describe_exit(&Ok(ExitStatus::from_raw(3 << 8))), "exit code 3");
        assert_eq!(describe_exit(&Ok(ExitStatus::from_raw(9))), "killed by signal 9");
        assert!(describe_exit(&Err(io::Error::other("boom"))).contains("boom"));
    }
}
