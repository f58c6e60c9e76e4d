//! The messages agents and the console exchange.
//!
//! A connection carries one bidirectional control stream, opened by the
//! agent: its first frame is [`AgentFrame::Hello`] (an agent with a client
//! certificate), [`AgentFrame::Join`] (an agent without one, proving a join
//! token) or, for admin clients, an [`AdminRequest`]. Heartbeats travel as
//! unreliable QUIC datagrams ([`Datagram`]): their loss is exactly what the
//! failure detector measures.
//!
//! Every frame carries [`PROTOCOL_VERSION`] in its header (see
//! [`crate::codec`]), so a peer of another version is recognised before its
//! payload is decoded and refused with both versions named.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::{Consistency, DataError, ObjectKey, ObjectMeta, ObjectStat};
use crate::metrics::MetricsSample;
use crate::names::{InstanceId, NodeName};
use crate::plan::{OperatorAction, Plan};
use crate::status::{ClusterEvent, ClusterStatus};
use crate::task::TaskSpec;

/// The wire protocol version. Bump on any change to a message's layout.
pub const PROTOCOL_VERSION: u16 = 5;

/// The QUIC application protocol (ALPN) both sides require.
pub const ALPN: &[u8] = b"ringwatch/1";

/// The name the console's certificate is issued for and agents verify. Agents
/// pin the cluster CA, so one fixed name serves every console address.
pub const CONSOLE_SERVER_NAME: &str = "console.ringwatch";

/// Frames an agent sends on its control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentFrame {
    /// First frame of an authenticated agent.
    Hello(Hello),
    /// First and only frame of an agent without credentials.
    Join(JoinRequest),
    /// A full resource sample, at least once a second.
    Metrics(MetricsSample),
    /// Every instance the agent runs, sent after each welcome so a
    /// restarted console adopts them instead of starting duplicates.
    Inventory(Vec<InstanceReport>),
    /// One instance changed state.
    Instance(InstanceReport),
    /// The agent is leaving on purpose: mark it `left`, fail nothing over.
    Goodbye {
        /// Why it leaves, for the event log.
        reason: String,
    },
    /// Renew the agent's client certificate (README.md, "Certificates"):
    /// a certificate signing request for a new key, sent on the live
    /// control stream once two thirds of the certificate's life have
    /// passed. Answered by [`ConsoleFrame::Renewed`] or
    /// [`ConsoleFrame::RenewalRefused`]; the connection stays as it is.
    Renew(RenewRequest),
}

/// A certificate renewal request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenewRequest {
    /// A PKCS#10 certificate signing request (DER) for the agent's new key.
    pub csr_der: Vec<u8>,
}

/// An authenticated agent introduces itself. Its name comes from its
/// certificate, not from here, so it cannot be claimed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The agent's build, for the operator.
    pub agent_version: String,
    /// How often it sends heartbeats, seeding the failure detector.
    pub heartbeat_interval_ms: u32,
    /// Its share of the ring, relative to other nodes.
    pub weight: u32,
}

/// A request to join the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The join token, as printed by `ringwatch join-token`.
    pub token: String,
    /// The node name the agent asks for.
    pub name: String,
    /// A PKCS#10 certificate signing request (DER) for the agent's own key:
    /// the private key never leaves the agent.
    pub csr_der: Vec<u8>,
}

/// What a console sends on a control stream: a frame stamped with the
/// term of the console that sent it. An agent remembers the highest term it
/// has seen and ignores a console of a lower one — a leader that was
/// deposed and does not know it yet. A single console's term is 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FromConsole {
    /// The sender's term.
    pub term: u64,
    /// The frame.
    pub frame: ConsoleFrame,
}

/// Frames the console sends on a control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConsoleFrame {
    /// The agent is registered and may send heartbeats.
    Welcome(Welcome),
    /// The join succeeded: here is the agent's certificate.
    JoinGranted(JoinGrant),
    /// The console refuses the agent; the connection closes after this.
    Refused(Refusal),
    /// Run this instance (idempotent: an instance already running under the
    /// same epoch is left alone).
    Assign(Assignment),
    /// Stop this instance and forget it, if it runs under `epoch` or an
    /// older one: a stop meant for a stale copy never stops a newer
    /// placement of the same instance.
    Stop {
        /// `task/index`.
        instance: InstanceId,
        /// The newest epoch the stop applies to.
        epoch: u64,
        /// Why, for the agent's log.
        reason: String,
    },
    /// Restart this instance in place, if it runs under `epoch`.
    Restart {
        /// `task/index`.
        instance: InstanceId,
        /// The placement the restart is meant for.
        epoch: u64,
    },
    /// This console does not lead its group: connect to the leader.
    NotLeader {
        /// The leader's address, when one is known.
        leader: Option<String>,
    },
    /// The renewed client certificate (DER) for the key of the agent's
    /// [`AgentFrame::Renew`]: recorded by the console before it was sent,
    /// to be used from the agent's next connection on.
    Renewed {
        /// The new certificate.
        cert_der: Vec<u8>,
    },
    /// The console did not renew the certificate now; the agent keeps its
    /// certificate and tries again later.
    RenewalRefused {
        /// Why, for the agent's log.
        reason: String,
    },
}

/// An instance the console places on an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// `task/index`.
    pub instance: InstanceId,
    /// What to run and how.
    pub spec: TaskSpec,
    /// Increases every time the console places this instance anew: reports
    /// carry it, so a stale copy (the other side of a partition) is told
    /// apart from the current one.
    pub epoch: u64,
}

/// An instance's state as its agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// `task/index`.
    pub instance: InstanceId,
    /// The assignment's epoch.
    pub epoch: u64,
    /// Its state.
    pub state: InstanceState,
    /// Restarts in place so far.
    pub restarts: u32,
    /// The process id, while it runs.
    pub pid: Option<u32>,
    /// The last exit: code, or the signal that ended it.
    pub last_exit: Option<String>,
    /// What happened last, for the event log.
    pub message: String,
}

/// States an agent reports (`pending` exists only at the console).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceState {
    /// Being started.
    Starting,
    /// Running.
    Running,
    /// Exited; a restart is scheduled.
    Restarting,
    /// Being stopped.
    Stopping,
    /// Stopped on request (or fenced).
    Stopped,
    /// Gave up: it crashed more than the policy allows, or could not start.
    Failed,
}

impl InstanceState {
    /// The lowercase name used in status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

/// Acceptance of an authenticated agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The node name the console knows the agent by.
    pub node: NodeName,
    /// The console's build, for the agent's log.
    pub console_version: String,
    /// Renew the certificate now rather than at two thirds of its life: it
    /// outlives the console's agent certificate lifetime (issued before
    /// certificates were renewed, or under a longer setting).
    pub renew_now: bool,
}

/// Credentials for a newly joined agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinGrant {
    /// The agent's client certificate (DER), signed by the cluster CA.
    pub cert_der: Vec<u8>,
    /// The cluster CA certificate (DER), to verify the console from now on.
    pub ca_der: Vec<u8>,
}

/// Why the console refuses an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// The kind, which tells the agent whether trying again can help.
    pub kind: RefusalKind,
    /// A sentence for both sides' logs.
    pub reason: String,
}

/// The kinds of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalKind {
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The join token is malformed, forged or of another cluster.
    BadToken,
    /// The join token has expired.
    TokenExpired,
    /// The client certificate is not one the console issued, or was revoked.
    UnknownCredential,
    /// Another agent with a different key is connected under this name.
    NameInUse,
    /// The name belongs to another agent's key (an unrevoked credential):
    /// only `ringwatch revoke NODE` frees it.
    NameTaken,
    /// The requested name is not a valid node name.
    BadName,
    /// The peer broke the protocol (wrong first frame, garbage).
    ProtocolViolation,
    /// The console cannot serve the request now (e.g. its storage failed).
    Unavailable,
}

impl RefusalKind {
    /// The QUIC application close code that carries this refusal, so that a
    /// peer of any version can read it from the close alone.
    pub fn close_code(self) -> u32 {
        0x100
            + match self {
                Self::VersionMismatch => 1,
                Self::BadToken => 2,
                Self::TokenExpired => 3,
                Self::UnknownCredential => 4,
                Self::NameInUse => 5,
                Self::BadName => 6,
                Self::ProtocolViolation => 7,
                Self::Unavailable => 8,
                Self::NameTaken => 9,
            }
    }

    /// The refusal a close code carries, if it carries one.
    pub fn from_close_code(code: u64) -> Option<Self> {
        [
            Self::VersionMismatch,
            Self::BadToken,
            Self::TokenExpired,
            Self::UnknownCredential,
            Self::NameInUse,
            Self::BadName,
            Self::ProtocolViolation,
            Self::Unavailable,
            Self::NameTaken,
        ]
        .into_iter()
        .find(|kind| u64::from(kind.close_code()) == code)
    }

    /// Whether trying again later, unchanged, may succeed. A name in use
    /// frees itself when the other connection ends (often our own previous
    /// connection, not yet timed out).
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::NameInUse | Self::Unavailable)
    }
}

/// QUIC application close codes that are not refusals.
pub mod close_code {
    /// An ordinary close.
    pub const NORMAL: u32 = 0;
    /// The agent said goodbye.
    pub const GOODBYE: u32 = 1;
    /// The console is shutting down; agents reconnect.
    pub const SHUTDOWN: u32 = 2;
    /// Another connection of the same agent replaced this one.
    pub const REPLACED: u32 = 3;
}

/// Unreliable messages, sent as QUIC datagrams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Datagram {
    /// An agent is alive.
    Heartbeat(Heartbeat),
    /// The console is alive: an agent that stops hearing these fences the
    /// instances that ask for it (`on_disconnect.stop_after`).
    ConsoleBeat {
        /// Increases by one per beat.
        seq: u64,
        /// The sender's term (see [`FromConsole`]).
        term: u64,
    },
}

/// One heartbeat, with the two figures the console shows between samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Increases by one per heartbeat sent on this connection: gaps count loss.
    pub seq: u64,
    /// Total CPU use, per mille.
    pub cpu_permille: u16,
    /// Memory in use, per mille of installed memory.
    pub mem_permille: u16,
}

/// Requests of an admin client (`ringwatch status`, a remote UI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// The nodes and tasks as the console sees them now.
    Status,
    /// Add or replace tasks (tasks not named are kept).
    ApplyTasks(Vec<TaskSpec>),
    /// Remove a task and stop its instances.
    RemoveTask(String),
    /// The desired tasks.
    ListTasks,
    /// Revoke every credential issued to a node and close its connection:
    /// the agent must join again with a token (and may be refused).
    Revoke(String),
    /// Plan an operator action, and carry it out unless `dry_run`.
    Act {
        /// The action.
        action: OperatorAction,
        /// Only print the plan.
        dry_run: bool,
        /// The plan the operator confirmed: the action is carried out only
        /// if it still plans the same moves (otherwise the answer is
        /// [`AdminResponse::PlanChanged`]). `None` carries out whatever it
        /// plans now.
        confirmed: Option<Plan>,
    },
    /// Issue a join token valid for this many seconds (at most 30 days).
    IssueToken {
        /// Its lifetime.
        ttl_secs: u64,
    },
    /// Every join token issued, with its state.
    ListTokens,
    /// Revoke the join token with this id; agents that already joined keep
    /// their credentials.
    RevokeToken(String),
    /// Revoke every join token.
    RevokeAllTokens,
    /// The event log, oldest first, as [`AdminResponse::Events`] frames on
    /// the same stream; with `follow`, then every new event as it happens
    /// until the client goes away.
    Events(EventQuery),
    /// A stream of [`AdminResponse::Snapshot`] frames, pushed as the cluster
    /// changes (an attached terminal UI), until the client goes away.
    Watch,
    /// Sign an operator credential: `csr_der` is the certificate request
    /// of a key the client made (the key never travels).
    IssueCredential {
        /// Its name, unique among unrevoked credentials.
        name: String,
        /// What it may do.
        role: OperatorRole,
        /// Its lifetime in seconds.
        ttl_secs: u64,
        /// The certificate signing request (DER).
        csr_der: Vec<u8>,
    },
    /// Every operator credential issued, with its state.
    ListCredentials,
    /// Revoke the operator credential with this name: refused from now on,
    /// its open connections closed.
    RevokeCredential(String),
    /// Store an object (README.md, "Data"): `size` bytes follow on the same
    /// stream as [`DataChunk`](crate::data::wire::DataChunk) frames, then [`DataChunk::End`](crate::data::wire::DataChunk::End). Answered
    /// once the consistency is met: [`AdminResponse::DataStored`].
    DataPut(DataPut),
    /// Read an object: answered with [`AdminResponse::DataObject`], then its
    /// bytes as [`DataChunk`](crate::data::wire::DataChunk) frames, then [`DataChunk::End`](crate::data::wire::DataChunk::End).
    DataGet {
        /// The key.
        key: ObjectKey,
        /// How many replicas must answer.
        consistency: Consistency,
    },
    /// Remove an object everywhere (a tombstone at a new version).
    DataRemove {
        /// The key.
        key: ObjectKey,
        /// How many replicas must apply it before the answer.
        consistency: Consistency,
    },
    /// The objects whose keys start with this prefix.
    DataList(String),
    /// One object: version, size, checksum, each replica's node and state.
    DataStat(ObjectKey),
}

/// An object about to be stored: what its bytes must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPut {
    /// The key.
    pub key: ObjectKey,
    /// Size of the bytes that follow.
    pub size: u64,
    /// Their SHA-256 (hex), computed by the client: every replica checks it
    /// before it acknowledges.
    pub checksum: String,
    /// Copies to keep [default: the cluster's, 3].
    pub replicas: Option<u8>,
    /// How many replicas must hold it durably before the answer.
    pub consistency: Consistency,
}

/// Which events an [`AdminRequest::Events`] asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    /// Only events at or after this time (milliseconds since the Unix
    /// epoch); `None`: every event the console keeps.
    pub since_unix_ms: Option<u64>,
    /// Then every new event as it happens.
    pub follow: bool,
    /// Only events about this node.
    pub node: Option<String>,
    /// Only events about this task.
    pub task: Option<String>,
}

impl EventQuery {
    /// Whether `event` is one this query asks for.
    pub fn matches(&self, event: &ClusterEvent) -> bool {
        self.since_unix_ms.is_none_or(|since| event.at_unix_ms >= since)
            && self.node.as_ref().is_none_or(|node| event.node.as_ref() == Some(node))
            && self.task.as_ref().is_none_or(|task| event.task.as_ref() == Some(task))
    }
}

/// What an operator credential may do (README.md, "Operating ringwatch").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperatorRole {
    /// Everything the console's own admin tool may do.
    Admin,
    /// Read everything, change nothing.
    Viewer,
}

impl OperatorRole {
    /// The lowercase name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }
}

impl std::fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AdminRequest {
    /// Whether the request only reads: what a viewer may send. A dry run
    /// plans and changes nothing.
    pub fn is_read_only(&self) -> bool {
        match self {
            Self::Status
            | Self::ListTasks
            | Self::ListTokens
            | Self::Events(_)
            | Self::Watch
            | Self::ListCredentials
            | Self::DataGet { .. }
            | Self::DataList(_)
            | Self::DataStat(_)
            | Self::Act { dry_run: true, .. } => true,
            Self::ApplyTasks(_)
            | Self::RemoveTask(_)
            | Self::Revoke(_)
            | Self::Act { dry_run: false, .. }
            | Self::IssueToken { .. }
            | Self::RevokeToken(_)
            | Self::RevokeAllTokens
            | Self::IssueCredential { .. }
            | Self::RevokeCredential(_)
            | Self::DataPut(_)
            | Self::DataRemove { .. } => false,
        }
    }

    /// Whether the answer is a stream of frames rather than one.
    pub fn is_stream(&self) -> bool {
        matches!(self, Self::Events(_) | Self::Watch | Self::DataGet { .. })
    }
}

/// An operator credential as `credential list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialInfo {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub role: OperatorRole,
    /// SHA-256 (hex) of its certificate.
    pub fingerprint: String,
    /// When it was issued, Unix seconds.
    pub issued_unix: u64,
    /// When it expires, Unix seconds.
    pub expires_unix: u64,
    /// Revoked by an operator.
    pub revoked: bool,
}

/// A signed operator credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    /// The client certificate (PEM).
    pub certificate_pem: String,
    /// The cluster CA certificate (PEM).
    pub ca_pem: String,
    /// The addresses of the group's consoles the console knows.
    pub consoles: Vec<String>,
    /// When it expires, Unix seconds.
    pub expires_unix: u64,
}

/// What an attached terminal UI is pushed (see [`AdminRequest::Watch`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchedSnapshot {
    /// The status document.
    pub status: ClusterStatus,
    /// The latest full metrics sample of each node.
    pub samples: BTreeMap<String, MetricsSample>,
    /// Events after the ones sent before on this stream (all the console
    /// keeps in the first frame), oldest first.
    pub new_events: Vec<ClusterEvent>,
    /// When it was taken, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The watcher may only read (a viewer credential).
    pub read_only: bool,
}

/// A join token as `join-token --list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Its id (printed in the token itself).
    pub id: String,
    /// When it was issued, Unix seconds.
    pub issued_unix: u64,
    /// When it expires, Unix seconds.
    pub expires_unix: u64,
    /// Revoked by an operator.
    pub revoked: bool,
    /// Agents that joined with it.
    pub joined: Vec<String>,
}

/// Answers to [`AdminRequest`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminResponse {
    /// The cluster now.
    Status(ClusterStatus),
    /// The desired tasks.
    Tasks(Vec<TaskSpec>),
    /// Done; the sentence says what happened.
    Done(String),
    /// An action's plan, and whether it was carried out.
    Plan {
        /// The plan.
        plan: Plan,
        /// False for a dry run.
        executed: bool,
    },
    /// A join token, as agents take it.
    Token(String),
    /// Every join token issued.
    Tokens(Vec<TokenInfo>),
    /// The confirmed plan no longer holds: the world changed since it was
    /// made. Nothing was done; this is the plan now.
    PlanChanged(Plan),
    /// This console does not lead its group and did not carry out the
    /// request: ask the leader.
    NotLeader {
        /// The leader's address, when one is known.
        leader: Option<String>,
    },
    /// The request failed; the sentence says why.
    Error(String),
    /// Events of the log, oldest first (one of several frames).
    Events(Vec<ClusterEvent>),
    /// A follower fell behind: this many events were not sent.
    EventsMissed(u64),
    /// The cluster now, for a watcher (one of several frames).
    Snapshot(Box<WatchedSnapshot>),
    /// An operator credential, signed.
    Credential(IssuedCredential),
    /// Every operator credential issued.
    Credentials(Vec<CredentialInfo>),
    /// An object stored (or removed: `version` is the tombstone's) as its
    /// replicas acknowledged it.
    DataStored(ObjectStat),
    /// An object's metadata; its bytes follow as [`DataChunk`](crate::data::wire::DataChunk) frames.
    DataObject(ObjectMeta),
    /// Objects, by key.
    DataListing(Vec<ObjectStat>),
    /// One object.
    DataStat(ObjectStat),
    /// A data request failed.
    DataFailed(DataError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_query_filters_by_time_node_and_task() {
        let event = ClusterEvent {
            at_unix_ms: 5_000,
            node: Some("a".into()),
            task: Some("web".into()),
            ..ClusterEvent::default()
        };
        assert!(EventQuery::default().matches(&event));
        assert!(EventQuery { since_unix_ms: Some(5_000), ..EventQuery::default() }.matches(&event));
        assert!(!EventQuery { since_unix_ms: Some(5_001), ..EventQuery::default() }.matches(&event));
        assert!(
            EventQuery { node: Some("a".into()), task: Some("web".into()), ..EventQuery::default() }.matches(&event)
        );
        assert!(!EventQuery { node: Some("b".into()), ..EventQuery::default() }.matches(&event));
        assert!(!EventQuery { task: Some("db".into()), ..EventQuery::default() }.matches(&ClusterEvent::default()));
    }

    #[test]
    fn a_viewer_may_send_only_what_reads() {
        let dry = |dry_run| AdminRequest::Act {
            action: OperatorAction::Drain { node: "a".into() },
            dry_run,
            confirmed: None,
        };
        assert!(dry(true).is_read_only());
        assert!(!dry(false).is_read_only());
        for reader in [AdminRequest::Status, AdminRequest::Watch, AdminRequest::ListCredentials] {
            assert!(reader.is_read_only(), "{reader:?}");
        }
        for writer in [
            AdminRequest::IssueToken { ttl_secs: 60 },
            AdminRequest::RevokeCredential("x".into()),
            AdminRequest::RemoveTask("web".into()),
        ] {
            assert!(!writer.is_read_only(), "{writer:?}");
        }
    }

    #[test]
    fn close_codes_round_trip_and_are_distinct() {
        let kinds = [
            RefusalKind::VersionMismatch,
            RefusalKind::BadToken,
            RefusalKind::TokenExpired,
            RefusalKind::UnknownCredential,
            RefusalKind::NameInUse,
            RefusalKind::BadName,
            RefusalKind::ProtocolViolation,
            RefusalKind::Unavailable,
            RefusalKind::NameTaken,
        ];
        for kind in kinds {
            assert_eq!(RefusalKind::from_close_code(u64::from(kind.close_code())), Some(kind));
        }
        assert_eq!(RefusalKind::from_close_code(u64::from(close_code::GOODBYE)), None);
    }
}
