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

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        };
        assert_eq!(event.to_string(), "node \"a\" alive → failed: phi 8.1 ≥ 8");
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
