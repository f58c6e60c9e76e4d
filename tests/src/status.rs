//! The `ringwatch status --json` document (DESIGN.md §2), as the tests read
//! it.
//!
//! Declared here rather than imported from the console so that a renamed
//! field breaks these tests: the JSON is a public contract. Unknown fields
//! are ignored (fields may be added), and numbers that could reasonably be
//! absent or `null` (phi is infinite for a node never heard from) are
//! optional.

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
    /// The JSON text this was parsed from, for failure messages.
    #[serde(skip)]
    pub raw: String,
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
    /// Ring capacity weight (kept as a float to accept either form).
    #[serde(default)]
    pub weight: Option<f64>,
    /// Ids of the task instances placed on it (`web/0`).
    #[serde(default)]
    pub instances: Vec<String>,
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
