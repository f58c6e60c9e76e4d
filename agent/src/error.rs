//! The agent library's errors: one variant per way the agent can fail, each
//! with a message an operator can act on.

use std::path::PathBuf;

use ringwatch_shared::protocol::RefusalKind;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file in the data dir could not be read or written.
    #[error("failed to access \"{path}\": {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Stored credentials are unusable.
    #[error("credentials in \"{dir}\" are unusable: {problem}")]
    Credentials {
        /// The data dir.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The agent's certificate expired: it was not renewed in time (the
    /// agent was down, or the console unreachable, for a third of its
    /// lifetime).
    #[error(
        "the agent's certificate in \"{dir}\" expired at {expired}: join again with a token: run `ringwatch join-token` on the console and start the agent with --token TOKEN (it keeps its name and key)"
    )]
    CertificateExpired {
        /// The data dir.
        dir: PathBuf,
        /// When it expired (UTC).
        expired: String,
    },
    /// The agent has no credentials and no token to join with.
    #[error(
        "no credentials in \"{0}\" and no --token to join with: run `ringwatch join-token` on the console and pass its output as --token"
    )]
    NotJoined(PathBuf),
    /// The configuration contradicts the stored identity.
    #[error("{0}")]
    Config(String),
    /// The console refused this agent for good.
    #[error("the console refused this agent: {reason}")]
    Refused {
        /// What kind of refusal.
        kind: RefusalKind,
        /// The console's sentence.
        reason: String,
    },
    /// The TLS handshake failed: wrong CA, wrong certificate, wrong token.
    #[error("TLS handshake with the console failed: {0}")]
    Handshake(String),
    /// The data store's directory could not be opened.
    #[error("failed to open the data store: {0}; check the data dir's permissions, or pass another --data-dir")]
    Data(#[from] crate::objects::ObjectsError),
    /// Setting up TLS or QUIC failed.
    #[error("failed to set up the QUIC endpoint: {0}")]
    Setup(String),
}

impl AgentError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
