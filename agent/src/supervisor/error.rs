//! Why an instance could not start, or why the supervisor's configuration is
//! unusable. Each message is the one an instance's `Failed` report carries.

use std::io;
use std::path::PathBuf;

use super::allow::{self, AllowSource};

/// Why an instance could not start, or the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The console named an instance that is not `task/index`; it never
    /// becomes a path.
    #[error("instance \"{0}\" is not of the form task/index")]
    BadInstance(String),
    /// The assignment's command has no program.
    #[error("the command of instance \"{0}\" is empty")]
    EmptyCommand(String),
    /// The program matches none of the `--allow-exec` patterns. The message
    /// names the change that allows it and is at most 200 bytes.
    #[error("{}", allow::refusal(.program, .node.as_deref(), .allow_source))]
    NotAllowed {
        /// `command[0]`.
        program: String,
        /// This agent's node name, once the console has said it.
        node: Option<String>,
        /// How the operator changes the allowlist.
        allow_source: AllowSource,
    },
    /// An `--allow-exec` pattern is not a valid glob.
    #[error("--allow-exec pattern \"{pattern}\" is invalid: {reason}")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The instance's working directory or a log file could not be made.
    #[error("failed to prepare \"{path}\": {source}")]
    Prepare {
        /// The directory or file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The program could not be started (missing, not executable, …).
    #[error("failed to start \"{program}\": {source}")]
    Spawn {
        /// `command[0]`.
        program: String,
        /// The OS error.
        source: io::Error,
    },
}
