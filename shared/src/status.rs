//! The cluster as an admin client sees it: node and instance states and the
//! `ringwatch status --json` document (DESIGN §2). Field names are a public
//! contract: fields may be added, never renamed.

use serde::{Deserialize, Serialize};

use crate::placement::Headroom;

/// A node's liveness, as the console judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Known, but not heard from since the console started: it is given a
    /// grace period to reconnect before anything is concluded.
    Unknown,
    /// Heartbeats arrive as expected.
    Alive,
    /// Over a resource limit: keeps its work, gets no new placements.
    Degraded,
    /// Heartbeats are late (phi ≥ the suspect threshold).
    Suspect,
    /// Taken for dead (phi ≥ the failed threshold, or silent too long).
    Failed,
    /// Said goodbye: gone on purpose.
    Left,
}

impl NodeState {
    /// The lowercase name used in JSON, logs and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Alive => "alive",
            Self::Degraded => "degraded",
            Self::Suspect => "suspect",
            Self::Failed => "failed",
            Self::Left => "left",
        }
    }

    /// Whether the node is up (it may take or keep work).
    pub fn is_up(self) -> bool {
        matches!(self, Self::Alive | Self::Degraded)
    }
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name (from its certificate).
    pub name: String,
    /// Its liveness.
    pub state: NodeState,
    /// Cordoned by an operator: receives nothing new.
    pub cordoned: bool,
    /// Current suspicion level.
    pub phi: f64,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
    /// Total CPU use, percent.
    pub cpu_percent: f64,
    /// Memory in use.
    pub mem_used_bytes: u64,
    /// Memory installed.
    pub mem_total_bytes: u64,
    /// Load averages (1, 5, 15 minutes).
    pub load: [f64; 3],
    /// Bytes received per second.
    pub net_rx_bytes_per_sec: u64,
    /// Bytes sent per second.
    pub net_tx_bytes_per_sec: u64,
    /// Ring weight.
    pub weight: u32,
    /// Heartbeats lost on the current connection (sequence gaps).
    pub heartbeats_lost: u64,
    /// The address its connection comes from, empty when disconnected.
    pub address: String,
    /// Why it is in its state, as the event log said.
    pub reason: String,
    /// Instances placed on it (`task/index`).
    pub instances: Vec<String>,
    /// SHA-256 (hex) of its newest client certificate: it changes when the
    /// agent renews it (README.md, "Certificates").
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// When that certificate expires, Unix seconds.
    #[serde(default)]
    pub cert_expires_unix: Option<u64>,
    /// Data store objects it holds a current copy of (README.md, "Data").
    #[serde(default)]
    pub data_objects: u64,
    /// Their bytes.
    #[serde(default)]
    pub data_bytes: u64,
    /// Bytes its data quota still takes, as it last reported (none before
    /// its first report): a node with too little takes no new copies.
    #[serde(default)]
    pub data_free_bytes: Option<u64>,
    /// The round-trip time of its connection, milliseconds, as QUIC
    /// estimates it (smoothed, taken at each heartbeat); none while it is
    /// not connected or before its first heartbeat. A slow network shows
    /// here, a slow host in its load and `last_seen_ms`.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
}

/// The data store in `status` (README.md, "Data").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataStatus {
    /// Objects stored (not removed).
    pub objects: u64,
    /// Their bytes (one copy each).
    pub bytes: u64,
    /// The replica count of a put that names none.
    pub replicas: u8,
    /// Objects with fewer live current copies than their replica count.
    pub under_replicated: u64,
    /// Objects with no live current copy: unreadable until a holder returns.
    pub unavailable: u64,
    /// Bytes per second being copied to repair objects.
    pub repair_bytes_per_sec: u64,
}

/// One task in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task's name.
    pub name: String,
    /// How many instances it wants.
    pub replicas: u32,
    /// Its instances.
    pub instances: Vec<InstanceStatus>,
}

/// One instance of a task in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// `task/index`.
    pub id: String,
    /// The node it is placed on, if any.
    pub node: Option<String>,
    /// `pending`, `starting`, `running`, `restarting`, `stopping`, `stopped`
    /// or `failed`.
    pub state: String,
    /// Restarts so far.
    pub restarts: u32,
}

/// The whole `status` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Every node the console knows, by name.
    pub nodes: Vec<NodeStatus>,
    /// Every task of the desired state, by name.
    pub tasks: Vec<TaskStatus>,
    /// How many more node failures every task survives.
    pub headroom: Headroom,
    /// Why automatic failover is paused, if it is.
    pub failover_paused: Option<String>,
    /// The console that answered: its role in its group, and its leader.
    #[serde(default)]
    pub console: ConsoleStatus,
    /// The data store.
    #[serde(default)]
    pub data: DataStatus,
}

/// A console's place in its group (a single console leads itself, term 0).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsoleStatus {
    /// Its name.
    pub name: String,
    /// The address agents reach it on.
    pub address: String,
    /// Whether it leads.
    pub role: ConsoleRole,
    /// The term of the leadership it holds or follows (0 for a single
    /// console).
    pub term: u64,
    /// The leader's address, when one is known.
    pub leader: Option<String>,
    /// Why it cannot write its state store, while it cannot: no decision
    /// takes effect meanwhile.
    #[serde(default)]
    pub store_problem: Option<String>,
    /// When the cluster CA expires, Unix seconds (0 when unknown): `status`
    /// warns 90 days ahead (README.md, "Certificates").
    #[serde(default)]
    pub ca_expires_unix: u64,
}

/// Leader or standby.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleRole {
    /// Decides, and serves agents.
    #[default]
    Leader,
    /// Watches the store and points agents and operators at the leader.
    Standby,
}

impl ConsoleRole {
    /// The lowercase name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Standby => "standby",
        }
    }
}

/// What an event is about: `ringwatch events --json` prints it as `kind`,
/// and scripts filter on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The console itself: start, stop, pauses, leadership, the store.
    #[default]
    Console,
    /// A node changed state (`from` and `to` are set).
    NodeState,
    /// A node joined, or its credentials were revoked.
    Membership,
    /// The desired state: a task added, updated or removed.
    Task,
    /// An instance was placed, started, stopped, restarted or crashed.
    Instance,
    /// Work moves because something failed, or automatic failover was
    /// paused or resumed.
    Failover,
    /// An operator's action: cordon, drain, restart, migrate.
    Operator,
    /// Join tokens and operator credentials were issued or revoked.
    Credential,
    /// The data store: objects removed, repairs, unavailable objects.
    Data,
}

impl EventKind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [Self; 9] = [
        Self::Console,
        Self::NodeState,
        Self::Membership,
        Self::Task,
        Self::Instance,
        Self::Failover,
        Self::Operator,
        Self::Credential,
        Self::Data,
    ];

    /// The kebab-case name used in JSON and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Console => "console",
            Self::NodeState => "node-state",
            Self::Membership => "membership",
            Self::Task => "task",
            Self::Instance => "instance",
            Self::Failover => "failover",
            Self::Operator => "operator",
            Self::Credential => "credential",
            Self::Data => "data",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the event log.
///
/// Stored as JSON: fields added later carry `#[serde(default)]`, so the
/// events a store kept before them still read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// Position in the log, increasing from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The node concerned, if one is.
    pub node: Option<String>,
    /// The node's state before and after, for state changes.
    pub change: Option<(NodeState, NodeState)>,
    /// Why, in a sentence.
    pub reason: String,
    /// What it is about.
    #[serde(default)]
    pub kind: EventKind,
    /// The task concerned, if one is.
    #[serde(default)]
    pub task: Option<String>,
}

impl std::fmt::Display for ClusterEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.node, self.change) {
            (Some(node), Some((from, to))) => write!(f, "node \"{node}\" {from} → {to}: {}", self.reason),
            (Some(node), None) => write!(f, "node \"{node}\": {}", self.reason),
            (None, _) => f.write_str(&self.reason),
        }
    }
}

/// An event as `ringwatch events --json` prints it: one object per line,
/// with the field names scripts and alerting rules match on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// Position in the log (a follower that reconnects skips what it saw).
    pub seq: u64,
    /// RFC 3339 time, UTC, milliseconds.
    pub time: String,
    /// What it is about.
    pub kind: EventKind,
    /// The node concerned, or null.
    pub node: Option<String>,
    /// The task concerned, or null.
    pub task: Option<String>,
    /// A node's state before a state change, or null.
    pub from: Option<NodeState>,
    /// A node's state after a state change, or null.
    pub to: Option<NodeState>,
    /// What happened, in a sentence.
    pub message: String,
}

impl From<&ClusterEvent> for EventLine {
    fn from(event: &ClusterEvent) -> Self {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.at_unix_ms);
        Self {
            seq: event.seq,
            time: humantime::format_rfc3339_millis(time).to_string(),
            kind: event.kind,
            node: event.node.clone(),
            task: event.task.clone(),
            from: event.change.map(|(from, _)| from),
            to: event.change.map(|(_, to)| to),
            message: event.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line() {
        let event = ClusterEvent {
            seq: 1,
            at_unix_ms: 0,
            node: Some("a".into()),
            change: Some((NodeState::Alive, NodeState::Failed)),
            reason: "phi 8.1 ≥ 8".into(),
            kind: EventKind::NodeState,
            task: None,
        };
        assert_eq!(event.to_string(), "node \"a\" alive → failed: phi 8.1 ≥ 8");
    }

    #[test]
    fn events_stored_before_kinds_existed_still_read() {
        let json = r#"{"seq":3,"at_unix_ms":5,"node":null,"change":null,"reason":"console started"}"#;
        let event: ClusterEvent = serde_json::from_str(json).unwrap();
        assert_eq!((event.kind, event.task), (EventKind::Console, None));
    }

    #[test]
    fn an_event_line_has_the_documented_fields() {
        let event = ClusterEvent {
            seq: 7,
            at_unix_ms: 1_700_000_000_123,
            node: Some("web-1".into()),
            change: Some((NodeState::Suspect, NodeState::Failed)),
            reason: "phi 9.0 ≥ 8".into(),
            kind: EventKind::NodeState,
            task: None,
        };
        let line = serde_json::to_value(EventLine::from(&event)).unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "seq": 7,
                "time": "2023-11-14T22:13:20.123Z",
                "kind": "node-state",
                "node": "web-1",
                "task": null,
                "from": "suspect",
                "to": "failed",
                "message": "phi 9.0 ≥ 8",
            })
        );
    }

    #[test]
    fn event_kinds_name_themselves_as_in_json() {
        for kind in EventKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(kind.as_str()));
        }
    }

    #[test]
    fn states_have_stable_lowercase_names() {
        for state in [
            NodeState::Unknown,
            NodeState::Alive,
            NodeState::Degraded,
            NodeState::Suspect,
            NodeState::Failed,
            NodeState::Left,
        ] {
            assert_eq!(state.to_string(), state.as_str());
            assert_eq!(state.as_str(), state.as_str().to_lowercase());
        }
    }
}
