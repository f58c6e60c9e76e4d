//! Plans: every operator action (and every what-if) is first a list of moves
//! and its effect on headroom, shown in the confirmation dialog or printed
//! by `--dry-run`.

use serde::{Deserialize, Serialize};

use crate::placement::Headroom;
use crate::size::format_size;

/// An operator action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorAction {
    /// Restart a task's instances, or one instance, in place.
    Restart {
        /// `task` or `task/index`.
        target: String,
    },
    /// Move one instance to a node, make-before-break.
    Migrate {
        /// `task/index`.
        instance: String,
        /// The target node.
        to: String,
    },
    /// Cordon a node and move all its instances away, make-before-break.
    Drain {
        /// The node.
        node: String,
    },
    /// No new placements on a node.
    Cordon {
        /// The node.
        node: String,
    },
    /// Undo a cordon.
    Uncordon {
        /// The node.
        node: String,
    },
    /// Resume automatic failover after a mass-failure pause.
    Resume,
    /// The plan if a node failed now (never executed).
    WhatIf {
        /// The node.
        node: String,
    },
}

/// What a move does to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveKind {
    /// Start it on `to` (a new or re-placed instance).
    Start,
    /// Start it on `to`, and stop the copy on `from` once the new one is
    /// healthy (make-before-break).
    Migrate,
    /// Restart it in place.
    Restart,
    /// Stop it on `from`.
    Stop,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// `task/index`.
    pub instance: String,
    /// What happens.
    pub kind: MoveKind,
    /// Where it is now.
    pub from: Option<String>,
    /// Where it goes.
    pub to: Option<String>,
}

/// An action's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The action, in words (`drain node "a"`).
    pub action: String,
    /// The moves, in order.
    pub moves: Vec<Move>,
    /// Headroom now.
    pub headroom_before: Headroom,
    /// Headroom once the plan has run.
    pub headroom_after: Headroom,
    /// Anything the operator should know (an instance with nowhere to go).
    pub notes: Vec<String>,
    /// What-if only: what the node's failure would do to the data store
    /// (`None` when it holds no objects at all, and for other actions).
    /// Added after the first release of plans: absent in older JSON.
    /// Boxed: most plans have none, and errors carry plans.
    #[serde(default)]
    pub data: Option<Box<DataImpact>>,
}

/// What a node's failure would do to the data store's objects (README.md,
/// "Data"): counted over the objects the node holds a current copy of,
/// given every other node's state now. The two counts are disjoint, like
/// `status`'s under-replicated and unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataImpact {
    /// Objects the node holds a current copy of.
    pub objects: u64,
    /// Their bytes (one copy each).
    pub bytes: u64,
    /// Objects that would keep a live current copy but fewer than a quorum
    /// (`replicas / 2 + 1`): readable only with `--consistency one`.
    pub below_quorum: u64,
    /// Objects that would have no live current copy: unreadable until a
    /// holder returns.
    pub unavailable: u64,
    /// The bytes of those unavailable objects.
    pub bytes_unavailable: u64,
}

impl DataImpact {
    /// The lines a plan shows for it: what the node holds, then what its
    /// failure would do.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("the node holds {} ({})", objects(self.objects), format_size(self.bytes))];
        if self.objects == 0 {
            return lines;
        }
        if self.below_quorum == 0 && self.unavailable == 0 {
            lines.push("every object would keep a quorum of live copies".to_string());
            return lines;
        }
        if self.below_quorum > 0 {
            lines.push(format!(
                "{} would drop below quorum (readable only with --consistency one)",
                objects(self.below_quorum)
            ));
        }
        if self.unavailable > 0 {
            lines.push(format!(
                "{} would become unavailable ({})",
                objects(self.unavailable),
                format_size(self.bytes_unavailable)
            ));
        }
        lines
    }
}

/// `1 object`, `3 objects`.
fn objects(count: u64) -> String {
    if count == 1 { "1 object".to_string() } else { format!("{count} objects") }
}

impl Plan {
    /// Whether `other` does the same: the same action and the same moves.
    /// Headroom and notes are commentary, not part of what is done.
    pub fn same_moves(&self, other: &Self) -> bool {
        self.action == other.action && self.moves == other.moves
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "plan: {}", self.action)?;
        if self.moves.is_empty() {
            writeln!(f, "  (no moves)")?;
        }
        for step in &self.moves {
            let place = |node: &Option<String>| node.clone().unwrap_or_else(|| "-".into());
            match step.kind {
                MoveKind::Start => writeln!(f, "  start    {:<24} on {}", step.instance, place(&step.to))?,
                MoveKind::Migrate => writeln!(
                    f,
                    "  migrate  {:<24} {} → {} (make-before-break)",
                    step.instance,
                    place(&step.from),
                    place(&step.to)
                )?,
                MoveKind::Restart => writeln!(f, "  restart  {:<24} on {}", step.instance, place(&step.from))?,
                MoveKind::Stop => writeln!(f, "  stop     {:<24} on {}", step.instance, place(&step.from))?,
            }
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        if let Some(data) = &self.data {
            for line in data.lines() {
                writeln!(f, "  data: {line}")?;
            }
        }
        write!(f, "headroom: {} → {}", describe(self.headroom_before), describe(self.headroom_after))
    }
}

/// Headroom in words: `survives 1 node failure`, `capacity short`.
pub fn describe(headroom: Headroom) -> String {
    let survives = match headroom.failures_survived {
        None => "no tasks".to_string(),
        Some(n) if n < 0 => "a task has no instance up".to_string(),
        Some(1) => "survives 1 node failure".to_string(),
        Some(n) => format!("survives {n} node failures"),
    };
    if headroom.capacity_ok { survives } else { format!("{survives}, capacity short") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_as_a_list() {
        let plan = Plan {
            action: "drain node \"a\"".into(),
            moves: vec![Move {
                instance: "web/0".into(),
                kind: MoveKind::Migrate,
                from: Some("a".into()),
                to: Some("b".into()),
            }],
            headroom_before: Headroom { failures_survived: Some(1), capacity_ok: true },
            headroom_after: Headroom { failures_survived: Some(1), capacity_ok: false },
            notes: vec![],
            data: None,
        };
        let text = plan.to_string();
        assert!(text.contains("migrate  web/0"), "{text}");
        assert!(text.contains("a → b"), "{text}");
        assert!(text.ends_with("survives 1 node failure → survives 1 node failure, capacity short"), "{text}");
        assert!(!text.contains("data:"), "no data lines without data figures: {text}");
    }

    #[test]
    fn a_what_if_plan_reads_its_data_figures() {
        let plan = Plan {
            action: "what if node \"a\" failed now".into(),
            moves: vec![],
            headroom_before: Headroom::default(),
            headroom_after: Headroom::default(),
            notes: vec![],
            data: Some(Box::new(DataImpact {
                objects: 5,
                bytes: 3 << 20,
                below_quorum: 2,
                unavailable: 1,
                bytes_unavailable: 1536,
            })),
        };
        let text = plan.to_string();
        assert!(text.contains("  data: the node holds 5 objects (3.0 MiB)\n"), "{text}");
        assert!(text.contains("  data: 2 objects would drop below quorum (readable only with"), "{text}");
        assert!(text.contains("  data: 1 object would become unavailable (1.5 KiB)\n"), "{text}");
        let safe = DataImpact { objects: 5, bytes: 10, ..DataImpact::default() };
        assert_eq!(safe.lines()[1], "every object would keep a quorum of live copies");
        assert_eq!(DataImpact::default().lines(), ["the node holds 0 objects (0 B)"]);
    }

    #[test]
    fn a_plan_without_data_figures_still_reads_from_json() {
        // Plans as JSON from before the data figures existed.
        let old = r#"{"action":"drain node \"a\"","moves":[],"headroom_before":{"failures_survived":1,"capacity_ok":true},
            "headroom_after":{"failures_survived":0,"capacity_ok":true},"notes":[]}"#;
        let plan: Plan = serde_json::from_str(old).unwrap();
        assert_eq!(plan.data, None);
    }
}
