//! `ringwatch-agent status`: the running agent's own view — connected or
//! not, to which console and since when, its node name, its certificate's
//! expiry, the instances it runs — read from the agent itself, never from
//! the console (README.md, "The agent's status").
//!
//! The agent serves it on a Unix socket in its data dir, [`SOCKET_FILE`]:
//! whoever connects gets one JSON document ([`AgentStatus`]) and the end of
//! the stream. A socket cannot go stale the way a status file can: when no
//! agent runs, nothing accepts, and a client knows at once. The socket is
//! made mode 0600 in a data dir that is itself private, so only the agent's
//! user (and root) may ask. A socket left by a killed agent is replaced by
//! the next agent on that data dir; one that a live agent still answers on
//! is left alone.
//!
//! The data store's figures (copies held, bytes, quota) are read from the
//! store itself when a client asks.
//!
//! The link records what it knows in a [`LinkState`] as connections come
//! and go; the supervisor's inventory and the stored certificate are read
//! when a client asks.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::credentials::Credentials;
use crate::data::DataService;
use crate::supervisor::Supervisor;

/// The socket's file name in the agent's data dir.
pub const SOCKET_FILE: &str = "agent.sock";

/// How long the agent spends writing the document to one client: a client
/// that does not read cannot hold the socket up for longer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the socket pauses after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The largest document a client accepts: far above any real one (a few
/// hundred bytes per instance), far below what could hurt.
const MAX_DOCUMENT: u64 = 16 << 20;

/// What `ringwatch-agent status --json` prints: the agent's own view.
/// Fields may be added, never renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The node name: as the console welcomed it, else as stored by the
    /// join; `None` before the first join.
    pub node: Option<String>,
    /// The agent's process id.
    pub pid: u32,
    /// The agent's version.
    pub version: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// The consoles it was given (`--console`), as one comma-separated list.
    pub consoles: String,
    /// Whether a console welcomed it and the connection is up.
    pub connected: bool,
    /// The console it is connected to; when not connected, the one it was
    /// last connected to or tried; `None` before any attempt.
    pub console: Option<String>,
    /// Connected since (or, when not connected, without a connection
    /// since: the loss, or the agent's start), Unix seconds.
    pub since_unix: u64,
    /// The term of the console it follows (0 for a single console).
    pub term: u64,
    /// Why the last connection or attempt ended, when one did.
    pub last_error: Option<String>,
    /// When its certificate expires, Unix seconds; `None` before the first
    /// join.
    pub certificate_expires_unix: Option<u64>,
    /// The instances it runs (or is starting, restarting or stopping).
    pub instances: Vec<InstanceStatus>,
    /// Copies of data store objects it holds (README.md, "Data").
    #[serde(default)]
    pub data_objects: u64,
    /// Bytes those copies take.
    #[serde(default)]
    pub data_bytes: u64,
    /// Its data quota (`--data-quota`), bytes.
    #[serde(default)]
    pub data_quota: u64,
}

/// One instance on this agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// `task/index`.
    pub id: String,
    /// `starting`, `running`, `restarting`, `stopping`, `stopped`, `failed`.
    pub state: String,
    /// The placement's epoch.
    pub epoch: u64,
    /// The process id, while it runs.
    pub pid: Option<u32>,
    /// Restarts in place so far.
    pub restarts: u32,
    /// The last exit: code, or the signal that ended it.
    pub last_exit: Option<String>,
    /// What happened last.
    pub message: String,
}

/// What the link knows of its console, shared with the status socket.
/// Cheap to clone: clones share the state.
#[derive(Debug, Clone)]
pub struct LinkState {
    /// Written by the link, read when a client asks.
    inner: Arc<Mutex<LinkView>>,
}

#[derive(Debug, Clone)]
struct LinkView {
    /// The node name the console's welcome gave.
    node: Option<String>,
    /// Whether a welcomed connection is up.
    connected: bool,
    /// The console of that connection, or of the last one or attempt.
    console: Option<SocketAddr>,
    /// When `connected` last changed (or the agent started).
    since: SystemTime,
    /// The console's term when it welcomed the agent.
    term: u64,
    /// Why the last connection or attempt ended.
    last_error: Option<String>,
}

impl Default for LinkState {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkState {
    /// Not connected, since now.
    pub fn new() -> Self {
        let view = LinkView {
            node: None,
            connected: false,
            console: None,
            since: SystemTime::now(),
            term: 0,
            last_error: None,
        };
        Self { inner: Arc::new(Mutex::new(view)) }
    }

    /// The console at `console`, of `term`, welcomed the agent as `node`.
    pub fn connected(&self, console: SocketAddr, node: &str, term: u64) {
        let mut view = self.lock();
        view.node = Some(node.to_string());
        view.connected = true;
        view.console = Some(console);
        view.since = SystemTime::now();
        view.term = term;
        view.last_error = None;
    }

    /// A connection or attempt to `console` ended; `reason` says why (empty
    /// when there is nothing to tell).
    pub fn ended(&self, console: SocketAddr, reason: &str) {
        let mut view = self.lock();
        if view.connected {
            view.connected = false;
            view.since = SystemTime::now();
        }
        view.console = Some(console);
        if !reason.is_empty() {
            view.last_error = Some(reason.to_string());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkView> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the status document is made of.
#[derive(Debug, Clone)]
pub struct StatusSource {
    /// The agent's data dir (its stored name and certificate).
    pub data_dir: PathBuf,
    /// `--console`, as given.
    pub consoles: String,
    /// The link's view.
    pub link: LinkState,
    /// The instances.
    pub supervisor: Supervisor,
    /// The data store's copies.
    pub data: DataService,
}

impl StatusSource {
    /// The document now. Reads the stored name and certificate from the data
    /// dir, so a renewed certificate shows at once. Blocks for as long as
    /// a data store commit holds the store (an fsync): call it off the
    /// async workers.
    pub fn snapshot(&self) -> AgentStatus {
        let view = self.link.lock().clone();
        let stored = match Credentials::load(&self.data_dir) {
            Ok(stored) => stored,
            Err(err) => {
                debug!(%err, "status: no usable stored credentials");
                None
            }
        };
        let certificate_expires_unix = stored.as_ref().and_then(|credentials| certificate_expiry(&credentials.cert));
        let node = view.node.clone().or_else(|| stored.map(|credentials| credentials.name));
        let instances = self
            .supervisor
            .inventory()
            .into_iter()
            .map(|report| InstanceStatus {
                id: report.instance.to_string(),
                state: report.state.as_str().to_string(),
                epoch: report.epoch,
                pid: report.pid,
                restarts: report.restarts,
                last_exit: report.last_exit,
                message: report.message,
            })
            .collect();
        let data = self.data.usage();
        AgentStatus {
            node,
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: self.data_dir.clone(),
            consoles: self.consoles.clone(),
            connected: view.connected,
            console: view.console.map(|console| console.to_string()),
            since_unix: unix_secs(view.since),
            term: view.term,
            last_error: view.last_error,
            certificate_expires_unix,
            instances,
            data_objects: data.objects,
            data_bytes: data.bytes,
            data_quota: data.quota,
        }
    }
}

/// A certificate's `notAfter`, Unix seconds; `None` when it does not parse.
pub fn certificate_expiry(der: &[u8]) -> Option<u64> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    u64::try_from(certificate.validity().not_after.timestamp()).ok()
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// The status socket of the agent on `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// The status socket being served; [`StatusServer::stop`] ends it and
/// removes the socket file.
#[derive(Debug)]
pub struct StatusServer {
    /// The socket file, removed at the end.
    path: PathBuf,
    /// Ends the accept loop.
    stop: CancellationToken,
    /// The accept loop.
    task: tokio::task::JoinHandle<()>,
}

impl StatusServer {
    /// Serves `source` on `data_dir/agent.sock` until [`stop`](Self::stop).
    /// `None` (with a warning saying why) when the socket cannot be made
    /// or another live agent answers on it: the agent runs on without a
    /// status socket rather than not at all. Must be called within a tokio
    /// runtime.
    pub fn start(source: StatusSource) -> Option<Self> {
        let path = socket_path(&source.data_dir);
        // A first run makes its data dir only when it joins; the socket
        // must be there from the start.
        if let Err(err) = ringwatch_net::files::create_private_dir(&source.data_dir) {
            warn!(
                "`ringwatch-agent status` will not work for this agent: failed to create \"{}\": {err}",
                source.data_dir.display()
            );
            return None;
        }
        let listener = match bind(&path) {
            Ok(listener) => listener,
            Err(problem) => {
                warn!("`ringwatch-agent status` will not work for this agent: {problem}");
                return None;
            }
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, source, stop.clone()));
        Some(Self { path, stop, task })
    }

    /// Stops answering and removes the socket file.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        if let Err(err) = std::fs::remove_file(&self.path)
            && err.kind() != io::ErrorKind::NotFound
        {
            warn!(path = %self.path.display(), %err, "failed to remove the status socket");
        }
    }
}

/// Binds the socket at `path`, replacing one that nothing answers on (left
/// by an agent that was killed).
fn bind(path: &Path) -> Result<UnixListener, String> {
    let shown = path.display();
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => {
            return Err(format!(
                "another agent answers on \"{shown}\": is a second agent running on the same data dir? Give each \
                 agent a --data-dir of its own"
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        // Nothing accepts: the socket of an agent that is gone.
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path)
                .map_err(|err| format!("failed to remove the stale socket \"{shown}\": {err}"))?;
        }
        Err(err) => return Err(format!("cannot check \"{shown}\": {err}")),
    }
    let listener = UnixListener::bind(path).map_err(|err| format!("failed to listen on \"{shown}\": {err}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|err| format!("failed to make \"{shown}\" private: {err}"))?;
    Ok(listener)
}

/// Answers each client with the document, one at a time (each write is
/// bounded by [`WRITE_TIMEOUT`]), until `stop`.
async fn serve(listener: UnixListener, source: StatusSource, stop: CancellationToken) {
    loop {
        let mut stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    warn!(%err, "status socket: accept failed");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                        () = stop.cancelled() => return,
                    }
                }
            },
            () = stop.cancelled() => return,
        };
        let snapshot_source = source.clone();
        let Ok(document) = tokio::task::spawn_blocking(move || snapshot_source.snapshot()).await else {
            continue;
        };
        let mut bytes = match serde_json::to_vec(&document) {
            Ok(bytes) => bytes,
            Err(err) => {
                warn!(%err, "status socket: failed to encode the status");
                continue;
            }
        };
        bytes.push(b'\n');
        let write = async {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => debug!(%err, "status socket: the client left early"),
            Err(_) => debug!("status socket: the client did not read in time"),
        }
    }
}

/// Why [`query`] has no status.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No agent runs on the data dir.
    #[error(
        "no agent is running on the data dir \"{}\" ({detail}): start it with `ringwatch-agent --console ADDR` (or `systemctl start ringwatch-agent`), or pass the --data-dir it runs on",
        dir.display()
    )]
    NotRunning {
        /// The data dir.
        dir: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The socket exists but may not be used.
    #[error("may not ask the agent at \"{}\": {source}; run as the agent's user (or root)", path.display())]
    Denied {
        /// The socket.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The agent did not answer in time, or the socket failed.
    #[error("the agent at \"{}\" did not answer: {source}", path.display())]
    NoAnswer {
        /// The socket.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The answer is not a status document.
    #[error("the agent at \"{}\" sent a status this command cannot read ({problem}): is it of another version?", path.display())]
    Garbled {
        /// The socket.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Asks the agent running on `data_dir` for its status, waiting at most
/// `timeout` for the answer.
///
/// # Errors
/// [`StatusError::NotRunning`] when no agent runs there; the other variants
/// when one seems to but does not answer properly.
pub fn query(data_dir: &Path, timeout: Duration) -> Result<AgentStatus, StatusError> {
    let path = socket_path(data_dir);
    let not_running = |detail: &str| StatusError::NotRunning { dir: data_dir.to_path_buf(), detail: detail.into() };
    if !data_dir.is_dir() {
        return Err(not_running("the data dir does not exist"));
    }
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(not_running("it has no status socket")),
        Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(not_running("nothing answers on its status socket"));
        }
        Err(source) if source.kind() == io::ErrorKind::PermissionDenied => {
            return Err(StatusError::Denied { path, source });
        }
        Err(source) => return Err(StatusError::NoAnswer { path, source }),
    };
    let no_answer = |source: io::Error| {
        let source = if matches!(source.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {}s (is the agent stopped or stuck?)", timeout.as_secs()),
            )
        } else {
            source
        };
        StatusError::NoAnswer { path: path.clone(), source }
    };
    stream.set_read_timeout(Some(timeout)).map_err(no_answer)?;
    let mut bytes = Vec::new();
    (&stream).take(MAX_DOCUMENT).read_to_end(&mut bytes).map_err(no_answer)?;
    serde_json::from_slice(&bytes).map_err(|err| StatusError::Garbled { path: path.clone(), problem: err.to_string() })
}

/// The status as `ringwatch-agent status` prints it, times in UTC.
pub fn render(status: &AgentStatus, now: SystemTime) -> String {
    use std::fmt::Write as _;
    let now_unix = unix_secs(now);
    let mut text = String::new();
    let node = status.node.as_deref().map_or_else(|| "(not joined yet)".to_string(), |node| format!("\"{node}\""));
    let _ = writeln!(text, "agent {node} (pid {}, version {})", status.pid, status.version);
    let since = format!("{} ({} ago)", time(status.since_unix), ago(now_unix, status.since_unix));
    match (&status.console, status.connected) {
        (Some(console), true) => {
            let term = if status.term > 0 { format!(", term {}", status.term) } else { String::new() };
            let _ = writeln!(text, "connected to the console at {console} since {since}{term}");
        }
        (console, false) => {
            let _ = writeln!(text, "not connected since {since}; reconnecting to {}", status.consoles);
            if let Some(console) = console {
                let reason = status.last_error.as_deref().unwrap_or("no reason given");
                let _ = writeln!(text, "last console: {console} ({reason})");
            }
        }
        (None, true) => {
            let _ = writeln!(text, "connected since {since}");
        }
    }
    match status.certificate_expires_unix {
        Some(expires) if expires > now_unix => {
            let _ = writeln!(text, "certificate expires {} (in {})", time(expires), ago(expires, now_unix));
        }
        Some(expires) => {
            let _ = writeln!(text, "certificate EXPIRED {} ({} ago)", time(expires), ago(now_unix, expires));
        }
        None => {
            let _ = writeln!(text, "no certificate yet (the agent has not joined)");
        }
    }
    let _ = writeln!(text, "data dir {}", status.data_dir.display());
    let _ = writeln!(text, "{}", data_line(status));
    if status.instances.is_empty() {
        let _ = writeln!(text, "no instances");
        return text;
    }
    let _ = writeln!(text, "instances ({}):", status.instances.len());
    let rows: Vec<[String; 5]> = status
        .instances
        .iter()
        .map(|instance| {
            [
                instance.id.clone(),
                instance.state.clone(),
                instance.pid.map_or_else(|| "-".to_string(), |pid| pid.to_string()),
                instance.restarts.to_string(),
                instance.epoch.to_string(),
            ]
        })
        .collect();
    let header = ["INSTANCE", "STATE", "PID", "RESTARTS", "EPOCH"].map(String::from);
    let mut widths = header.each_ref().map(String::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(text, "  {}", line.join("  ").trim_end());
    }
    text
}

/// The data store's line: copies, bytes and how much of the quota they take.
fn data_line(status: &AgentStatus) -> String {
    use ringwatch_shared::size::format_size;
    let copies = if status.data_objects == 1 { "copy" } else { "copies" };
    let held = format!("data: {} {copies}, {}", status.data_objects, format_size(status.data_bytes));
    if status.data_quota == 0 {
        // An agent too old to say.
        return format!("{held} (quota unknown)");
    }
    let percent = u128::from(status.data_bytes) * 100 / u128::from(status.data_quota);
    let full = if status.data_bytes >= status.data_quota { "; FULL: it takes no new copies" } else { "" };
    format!("{held} of the {} quota ({percent}%){full}", format_size(status.data_quota))
}

/// A Unix time as RFC 3339 in UTC, to the second.
fn time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// `later - earlier`, never negative, as precise as a reader needs: "12s",
/// "3m 12s", "5h 7m", "29 days".
fn ago(later: u64, earlier: u64) -> String {
    const HOUR: u64 = 3_600;
    const DAY: u64 = 24 * HOUR;
    let secs = later.saturating_sub(earlier);
    if secs >= 2 * DAY {
        format!("{} days", secs / DAY)
    } else if secs >= HOUR {
        format!("{}h {}m", secs / HOUR, secs % HOUR / 60)
    } else {
        humantime::format_duration(Duration::from_secs(secs)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> AgentStatus {
        AgentStatus {
            node: Some("web-1".into()),
            pid: 42,
            version: "0.1.0".into(),
            data_dir: "/var/lib/ringwatch-agent".into(),
            consoles: "10.0.0.1:7443,10.0.0.2:7443".into(),
            connected: true,
            console: Some("10.0.0.2:7443".into()),
            since_unix: 1_000,
            term: 7,
            last_error: None,
            certificate_expires_unix: Some(1_000 + 30 * 86_400),
            instances: vec![InstanceStatus {
                id: "web/0".into(),
                state: "running".into(),
                epoch: 3,
                pid: Some(4242),
                restarts: 1,
                last_exit: None,
                message: "running".into(),
            }],
            data_objects: 3,
            data_bytes: 3 << 29,
            data_quota: 10 << 30,
        }
    }

    #[test]
    fn a_connected_agent_names_its_console_since_and_instances() {
        let text = render(&status(), UNIX_EPOCH + Duration::from_secs(1_192));
        assert!(text.contains("agent \"web-1\" (pid 42"), "{text}");
        assert!(
            text.contains("connected to the console at 10.0.0.2:7443 since 1970-01-01T00:16:40Z (3m 12s ago), term 7"),
            "{text}"
        );
        assert!(text.contains("certificate expires 1970-01-31T00:16:40Z (in 29 days)"), "{text}");
        assert!(text.contains("INSTANCE  STATE    PID   RESTARTS  EPOCH"), "{text}");
        assert!(text.contains("web/0     running  4242  1         3"), "{text}");
        assert!(text.contains("data: 3 copies, 1.5 GiB of the 10.0 GiB quota (15%)\n"), "{text}");
    }

    #[test]
    fn a_full_data_store_says_it_takes_no_new_copies() {
        let mut status = status();
        status.data_objects = 1;
        status.data_bytes = status.data_quota;
        let text = render(&status, UNIX_EPOCH + Duration::from_secs(1_192));
        assert!(text.contains("data: 1 copy, 10.0 GiB of the 10.0 GiB quota (100%); FULL"), "{text}");
    }

    #[test]
    fn an_older_agents_document_without_data_fields_still_reads() {
        let mut json = serde_json::to_value(status()).unwrap();
        for field in ["data_objects", "data_bytes", "data_quota"] {
            json.as_object_mut().unwrap().remove(field);
        }
        let status: AgentStatus = serde_json::from_value(json).unwrap();
        assert_eq!((status.data_objects, status.data_bytes, status.data_quota), (0, 0, 0));
        let text = render(&status, UNIX_EPOCH + Duration::from_secs(1_192));
        assert!(text.contains("data: 0 copies, 0 B (quota unknown)"), "{text}");
    }

    #[test]
    fn a_disconnected_agent_says_since_when_and_why() {
        let mut status = status();
        status.connected = false;
        status.last_error = Some("the console has been silent for 3s".into());
        status.certificate_expires_unix = Some(500);
        status.instances.clear();
        let text = render(&status, UNIX_EPOCH + Duration::from_secs(1_010));
        assert!(
            text.contains(
                "not connected since 1970-01-01T00:16:40Z (10s ago); reconnecting to 10.0.0.1:7443,10.0.0.2:7443"
            ),
            "{text}"
        );
        assert!(text.contains("last console: 10.0.0.2:7443 (the console has been silent for 3s)"), "{text}");
        assert!(text.contains("certificate EXPIRED"), "{text}");
        assert!(text.contains("no instances"), "{text}");
    }

    #[test]
    fn durations_are_as_precise_as_a_reader_needs() {
        assert_eq!(ago(10, 10), "0s");
        assert_eq!(ago(192, 0), "3m 12s");
        assert_eq!(ago(5 * 3_600 + 7 * 60 + 9, 0), "5h 7m");
        assert_eq!(ago(47 * 3_600, 0), "47h 0m");
        assert_eq!(ago(30 * 86_400 - 1, 0), "29 days");
        assert_eq!(ago(0, 10), "0s");
    }

    #[test]
    fn the_link_state_follows_connections() {
        let link = LinkState::new();
        let console: SocketAddr = "127.0.0.1:7443".parse().unwrap();
        link.ended(console, "no connection: timed out");
        let view = link.lock().clone();
        assert!(!view.connected && view.console == Some(console));
        assert_eq!(view.last_error.as_deref(), Some("no connection: timed out"));
        link.connected(console, "a", 3);
        let view = link.lock().clone();
        assert!(view.connected && view.node.as_deref() == Some("a") && view.term == 3 && view.last_error.is_none());
        link.ended(console, "");
        assert!(!link.lock().connected);
    }

    #[test]
    fn a_certificate_expiry_is_read_from_its_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2040, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(certificate_expiry(cert.der()), Some(2_209_075_200));
        assert_eq!(certificate_expiry(b"not a certificate"), None);
    }

    fn source(dir: &Path) -> StatusSource {
        let (reports, _) = tokio::sync::mpsc::channel(1);
        StatusSource {
            data_dir: dir.to_path_buf(),
            consoles: "127.0.0.1:7443".into(),
            link: LinkState::new(),
            supervisor: Supervisor::new(crate::SupervisorConfig::new(dir.to_path_buf()), reports),
            data: DataService::new(
                crate::objects::ObjectStore::open(&crate::objects::objects_dir(dir), 1 << 20).unwrap(),
            ),
        }
    }

    #[tokio::test]
    async fn the_socket_answers_while_served_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let server = StatusServer::start(source(dir.path())).unwrap();
        let mode = std::fs::metadata(socket_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let path = dir.path().to_path_buf();
        let answer = tokio::task::spawn_blocking(move || query(&path, Duration::from_secs(10))).await.unwrap();
        let answer = answer.unwrap();
        assert_eq!(answer.pid, std::process::id());
        assert!(!answer.connected && answer.node.is_none() && answer.instances.is_empty());
        assert_eq!((answer.data_objects, answer.data_bytes, answer.data_quota), (0, 0, 1 << 20));
        // A second agent on the same data dir leaves the live socket alone.
        assert!(bind(&socket_path(dir.path())).unwrap_err().contains("another agent answers"));
        server.stop().await;
        assert!(!socket_path(dir.path()).exists());
        let err = query(dir.path(), Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, StatusError::NotRunning { .. }), "{err}");
    }

    #[tokio::test]
    async fn regression_a_socket_left_by_a_killed_agent_is_replaced_and_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed agent leaves: a socket file nothing listens on.
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap());
        let err = query(dir.path(), Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, StatusError::NotRunning { .. }), "{err}");
        assert!(err.to_string().contains("no agent is running"), "{err}");
        let server = StatusServer::start(source(dir.path())).unwrap();
        let path = dir.path().to_path_buf();
        let answer = tokio::task::spawn_blocking(move || query(&path, Duration::from_secs(10))).await.unwrap();
        assert!(answer.is_ok(), "{answer:?}");
        server.stop().await;
    }

    #[test]
    fn an_agent_that_accepts_but_never_answers_is_reported_as_stuck() {
        let dir = tempfile::tempdir().unwrap();
        // A stopped (SIGSTOP) agent: the kernel accepts, nobody writes.
        let _listener = std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap();
        let err = query(dir.path(), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, StatusError::NoAnswer { .. }), "{err}");
        assert!(err.to_string().contains("is the agent stopped or stuck?"), "{err}");
    }

    #[test]
    fn no_data_dir_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = query(&dir.path().join("missing"), Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("the data dir does not exist"), "{err}");
    }
}
