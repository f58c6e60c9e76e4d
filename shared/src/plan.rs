//! Plans: every operator action (and every what-if) is first a list of moves
//! and its effect on headroom, shown in the confirmation dialog or printed
//! by `--dry-run`.

use serde::{Deserialize, Serialize};

use crate::placement::Headroom;

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
        };
        let text = plan.to_string();
        assert!(text.contains("migrate  web/0"), "{text}");
        assert!(text.contains("a → b"), "{text}");
        assert!(text.ends_with("survives 1 node failure → survives 1 node failure, capacity short"), "{text}");
    }
}
