//! `ringwatch-agent status [--json]`: the agent's own view, asked of the
//! agent process on a data dir. The JSON document is re-declared here, as
//! [`crate::status`] does for the console's, which pins the contract.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::poll::{self, Step};
use crate::process::{self, Output};
use crate::{COMMAND_TIMEOUT, bins};

/// The exit code of `status` when no agent runs on the data dir.
pub const NOT_RUNNING: i32 = 3;

/// `ringwatch-agent status --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentStatus {
    /// The node name (`None` before the first join).
    pub node: Option<String>,
    /// The agent's pid.
    pub pid: u32,
    /// Whether a console welcomed it and the connection is up.
    pub connected: bool,
    /// The console it is (or was last) connected to.
    pub console: Option<String>,
    /// Connected (or not connected) since, Unix seconds.
    pub since_unix: u64,
    /// Why the last connection ended.
    pub last_error: Option<String>,
    /// The certificate's expiry, Unix seconds.
    pub certificate_expires_unix: Option<u64>,
    /// The `--console` list.
    pub consoles: String,
    /// Its instances.
    pub instances: Vec<AgentInstance>,
    /// Copies of data store objects it holds.
    pub data_objects: u64,
    /// Bytes they take.
    pub data_bytes: u64,
    /// Its `--data-quota`, bytes.
    pub data_quota: u64,
}

/// One instance in [`AgentStatus`].
#[derive(Debug, Clone, Deserialize)]
pub struct AgentInstance {
    /// `task/index`.
    pub id: String,
    /// Its state (`running`, …).
    pub state: String,
    /// Its process, while it runs.
    pub pid: Option<u32>,
}

impl AgentStatus {
    /// The instance `id`, if the agent has it.
    pub fn instance(&self, id: &str) -> Option<&AgentInstance> {
        self.instances.iter().find(|instance| instance.id == id)
    }
}

/// Runs `ringwatch-agent status [--json] --data-dir DIR`; the caller judges
/// the outcome.
///
/// # Errors
/// When the command cannot be run or hangs.
pub fn run(data_dir: &Path, json: bool) -> anyhow::Result<Output> {
    let mut args: Vec<OsString> = vec!["status".into()];
    if json {
        args.push("--json".into());
    }
    args.extend(["--data-dir".into(), data_dir.as_os_str().to_owned()]);
    process::run(&bins::ringwatch_agent(), args, COMMAND_TIMEOUT)
}

/// The status of the agent on `data_dir`, parsed.
///
/// # Errors
/// When the command fails or prints something else than the document.
pub fn json(data_dir: &Path) -> anyhow::Result<AgentStatus> {
    let output = run(data_dir, true)?;
    if !output.status.success() {
        anyhow::bail!("{output}");
    }
    serde_json::from_str(&output.stdout).map_err(|err| anyhow::anyhow!("not an agent status ({err}): {output}"))
}

/// Asks until the status satisfies `pred`; returns that status.
///
/// # Panics
/// When it does not within `timeout`, naming `what` and the last answer.
#[track_caller]
pub fn wait_for(
    data_dir: &Path,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&AgentStatus) -> bool,
) -> AgentStatus {
    let result = poll::until(timeout, Duration::from_millis(200), || match json(data_dir) {
        Ok(status) if pred(&status) => Step::Done(status),
        Ok(status) => Step::Pending(format!("{status:?}")),
        Err(err) => Step::Pending(format!("{err:#}")),
    });
    result.unwrap_or_else(|failure| panic!("agent status on {}: {what}: {failure}", data_dir.display()))
}
