//! The `ringwatch status --json` document (DESIGN.md §2), as the tests read
//! it.
//!
//! Declared here rather than imported from the console so that a renamed
//! field breaks these tests: the JSON is a public contract. Unknown fields
//! are ignored (fields may be added), and numbers that could reasonably be
//! absent or `null` (phi is infinite for a node never heard from) are
//! optional.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

/// The whole status document.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Status {
    /// Every node the console knows, in the console's order.
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
    /// Desired tasks and their instances.
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
    /// The console that answered and its place in its group.
    #[serde(default)]
    pub console: Option<ConsoleInfo>,
    /// The JSON text this was parsed from, for failure messages.
    #[serde(skip)]
    pub raw: String,
}

/// The console that answered `status`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsoleInfo {
    /// Its name in its group.
    pub name: String,
    /// The address agents reach it on.
    pub address: String,
    /// `leader` or `standby`.
    pub role: String,
    /// The term it leads or follows (0 when alone).
    pub term: u64,
    /// The leader's address, when one is known.
    #[serde(default)]
    pub leader: Option<String>,
    /// Why it cannot reach or write its store, while it cannot.
    #[serde(default)]
    pub store_problem: Option<String>,
    /// When the cluster CA expires, Unix seconds.
    #[serde(default)]
    pub ca_expires_unix: Option<u64>,
}

impl ConsoleInfo {
    /// Whether it says it leads.
    pub fn leads(&self) -> bool {
        self.role == "leader"
    }
}

/// One node as `status` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeStatus {
    /// The agent's name.
    pub name: String,
    /// Its state.
    pub state: NodeState,
    /// The detector's current suspicion.
    #[serde(default)]
    pub phi: Option<f64>,
    /// Milliseconds since its last heartbeat.
    #[serde(default)]
    pub last_seen_ms: Option<u64>,
    /// CPU use, in percent of the host.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Memory in use.
    #[serde(default)]
    pub mem_used_bytes: Option<u64>,
    /// Memory installed.
    #[serde(default)]
    pub mem_total_bytes: Option<u64>,
    /// Heartbeats missing from the sequence on the current connection.
    #[serde(default)]
    pub heartbeats_lost: Option<u64>,
    /// Ring capacity weight (kept as a float to accept either form).
    #[serde(default)]
    pub weight: Option<f64>,
    /// Ids of the task instances placed on it (`web/0`).
    #[serde(default)]
    pub instances: Vec<String>,
    /// Whether an operator cordoned it (it keeps its work, takes nothing
    /// new); shown beside any state.
    #[serde(default)]
    pub cordoned: bool,
    /// SHA-256 (hex) of its newest client certificate.
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// When that certificate expires, Unix seconds.
    #[serde(default)]
    pub cert_expires_unix: Option<u64>,
    /// Its connection's round-trip time, ms, while connected.
    #[serde(default)]
    pub rtt_ms: Option<f64>,
}

/// A node state. Deserialized from the lowercase string; a state this crate
/// does not know is kept as [`NodeState::Other`] rather than failing the
/// parse, so a test fails on what it asserts, not on an addition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum NodeState {
    /// Heartbeats arrive.
    Alive,
    /// Phi above the suspicion threshold.
    Suspect,
    /// Convicted: phi above the failure threshold, or the hard ceiling.
    Failed,
    /// Said goodbye.
    Left,
    /// Not heard from since the console (re)started.
    Unknown,
    /// Alive but over a resource limit.
    Degraded,
    /// Anything else the console printed.
    Other(String),
}

impl From<String> for NodeState {
    fn from(text: String) -> Self {
        match text.as_str() {
            "alive" => Self::Alive,
            "suspect" => Self::Suspect,
            "failed" => Self::Failed,
            "left" => Self::Left,
            "unknown" => Self::Unknown,
            "degraded" => Self::Degraded,
            _ => Self::Other(text),
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Alive => "alive",
            Self::Suspect => "suspect",
            Self::Failed => "failed",
            Self::Left => "left",
            Self::Unknown => "unknown",
            Self::Degraded => "degraded",
            Self::Other(text) => text,
        })
    }
}

/// One task as `status` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskStatus {
    /// The task name.
    pub name: String,
    /// Desired instance count.
    #[serde(default)]
    pub replicas: Option<u64>,
    /// Its instances.
    #[serde(default)]
    pub instances: Vec<InstanceStatus>,
}

/// One task instance.
#[derive(Debug, Clone, Deserialize)]
pub struct InstanceStatus {
    /// `task/index`.
    pub id: String,
    /// Where it is placed; absent while pending.
    #[serde(default)]
    pub node: Option<String>,
    /// Its lowercase state (`running`, `pending`…).
    pub state: String,
    /// Restarts so far.
    #[serde(default)]
    pub restarts: Option<u64>,
}

impl Status {
    /// Parses `status --json` output.
    ///
    /// # Errors
    /// When the text is not the documented document.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        let mut status: Self = serde_json::from_str(json)?;
        status.raw = json.trim().to_owned();
        Ok(status)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The state of the node called `name`.
    pub fn state_of(&self, name: &str) -> Option<&NodeState> {
        self.node(name).map(|n| &n.state)
    }

    /// Whether the node called `name` is in `state`.
    pub fn is(&self, name: &str, state: &NodeState) -> bool {
        self.state_of(name) == Some(state)
    }

    /// Whether each `(name, state)` pair holds.
    pub fn all(&self, expected: &[(&str, NodeState)]) -> bool {
        expected.iter().all(|(name, state)| self.is(name, state))
    }

    /// The task called `name`.
    pub fn task(&self, name: &str) -> Option<&TaskStatus> {
        self.tasks.iter().find(|task| task.name == name)
    }

    /// The instance `task/index`, wherever it is listed.
    pub fn instance(&self, id: &str) -> Option<&InstanceStatus> {
        self.tasks.iter().flat_map(|task| &task.instances).find(|instance| instance.id == id)
    }

    /// The node `task/index` is placed on, if it is placed.
    pub fn node_of(&self, id: &str) -> Option<&str> {
        self.instance(id).and_then(|instance| instance.node.as_deref())
    }

    /// Where each instance of `task` runs, by id — only when the task has
    /// exactly `replicas` instances, every one `running` on a node, and no
    /// two on the same node: the steady state of DESIGN.md §5.
    pub fn running_on_distinct_nodes(&self, task: &str, replicas: usize) -> Option<BTreeMap<String, String>> {
        let task = self.task(task)?;
        if task.instances.len() != replicas {
            return None;
        }
        let mut placed = BTreeMap::new();
        for instance in &task.instances {
            if !instance.is_running() {
                return None;
            }
            placed.insert(instance.id.clone(), instance.node.clone()?);
        }
        let nodes: BTreeSet<&String> = placed.values().collect();
        (nodes.len() == replicas).then_some(placed)
    }

    /// One compact line per task, e.g. `web: web/0=running@a(0) web/1=pending`,
    /// for step and failure messages.
    pub fn tasks_summary(&self) -> String {
        if self.tasks.is_empty() {
            return "no tasks".to_owned();
        }
        self.tasks.iter().map(TaskStatus::to_string).collect::<Vec<_>>().join("; ")
    }
}

impl InstanceStatus {
    /// Whether its state is `running`.
    pub fn is_running(&self) -> bool {
        self.state == INSTANCE_RUNNING
    }
}

/// The instance state of a process that runs (DESIGN.md §2).
pub const INSTANCE_RUNNING: &str = "running";
/// The instance state of one waiting for a node.
pub const INSTANCE_PENDING: &str = "pending";
/// The instance state of one its node gave up on.
pub const INSTANCE_FAILED: &str = "failed";

impl fmt::Display for TaskStatus {
    /// `web: web/0=running@a(0) web/1=pending`: state, node, restarts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.name)?;
        for instance in &self.instances {
            write!(f, " {}={}", instance.id, instance.state)?;
            if let Some(node) = &instance.node {
                write!(f, "@{node}")?;
            }
            if let Some(restarts) = instance.restarts {
                write!(f, "({restarts})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Status {
    /// One compact line per node, e.g. `a=alive(phi 0.4, 120ms)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes.is_empty() {
            return f.write_str("no nodes");
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", node.name, node.state)?;
            match (node.phi, node.last_seen_ms) {
                (Some(phi), Some(ms)) => write!(f, "(phi {phi:.1}, {ms}ms)")?,
                (Some(phi), None) => write!(f, "(phi {phi:.1})")?,
                (None, Some(ms)) => write!(f, "({ms}ms)")?,
                (None, None) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example() {
        let json = r#"
        { "nodes": [ { "name": "a", "state": "alive", "phi": 0.4, "last_seen_ms": 120,
                       "cpu_percent": 3.1, "mem_used_bytes": 1, "mem_total_bytes": 2,
                       "weight": 2, "instances": ["web/0"] } ],
          "tasks": [ { "name": "web", "replicas": 2,
                       "instances": [ { "id": "web/0", "node": "a", "state": "running",
                                        "restarts": 0 } ] } ] }"#;
        let status = Status::parse(json).unwrap();
        assert!(status.is("a", &NodeState::Alive));
        let a = status.node("a").unwrap();
        assert_eq!(a.weight, Some(2.0));
        assert_eq!(a.instances, ["web/0"]);
        assert_eq!(status.tasks[0].instances[0].node.as_deref(), Some("a"));
        assert_eq!(status.to_string(), "a=alive(phi 0.4, 120ms)");
        assert!(!a.cordoned, "absent means not cordoned");
        assert_eq!(status.node_of("web/0"), Some("a"));
        // Two replicas wanted, one listed: not the steady state yet.
        assert_eq!(status.running_on_distinct_nodes("web", 2), None);
        assert_eq!(status.running_on_distinct_nodes("web", 1).unwrap()["web/0"], "a");
        assert_eq!(status.tasks_summary(), "web: web/0=running@a(0)");
    }

    #[test]
    fn reads_the_tasks_section() {
        let json = r#"
        { "nodes": [ { "name": "a", "state": "alive", "instances": ["web/0", "web/1"], "cordoned": true },
                     { "name": "b", "state": "alive", "instances": [] } ],
          "tasks": [ { "name": "web", "replicas": 3,
                       "instances": [ { "id": "web/0", "node": "a", "state": "running", "restarts": 2 },
                                      { "id": "web/1", "node": "a", "state": "running", "restarts": 0 },
                                      { "id": "web/2", "node": null, "state": "pending", "restarts": 0 } ] } ] }"#;
        let status = Status::parse(json).unwrap();
        assert!(status.node("a").unwrap().cordoned);
        assert_eq!(status.node_of("web/2"), None);
        assert_eq!(status.instance("web/2").unwrap().state, INSTANCE_PENDING);
        assert_eq!(status.instance("web/0").unwrap().restarts, Some(2));
        assert_eq!(status.running_on_distinct_nodes("web", 3), None, "one is pending");
        assert_eq!(status.tasks_summary(), "web: web/0=running@a(2) web/1=running@a(0) web/2=pending(0)");
    }

    #[test]
    fn tolerates_additions_and_nulls() {
        let json = r#"{ "nodes": [ { "name": "b", "state": "cordoned-ish", "phi": null,
                                     "new_field": {"x": 1} } ], "headroom": 1 }"#;
        let status = Status::parse(json).unwrap();
        assert_eq!(status.state_of("b"), Some(&NodeState::Other("cordoned-ish".into())));
        assert!(status.tasks.is_empty());
    }
}
