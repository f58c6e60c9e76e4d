//! Operator actions: planned without changing anything, executed only as
//! confirmed (ARCHITECTURE.md, "Plans are pure").
//!
//! [`Workloads::plan`] takes `&self`: it draws its random choices from a
//! generator seeded by the cluster record and moves no counter, so planning
//! twice gives the same plan. [`Workloads::execute`] plans again and, when
//! the operator confirmed a plan, refuses to act if the moves differ — the
//! world changed between the dialog and the keystroke — returning the fresh
//! plan instead.

use std::collections::BTreeMap;

use ringwatch_shared::names::{InstanceId, NodeName, TaskName};
use ringwatch_shared::plan::{Move, MoveKind, OperatorAction, Plan};
use ringwatch_shared::status::EventKind;
use ringwatch_shared::task::MigrateMode;

use super::{Effects, Nodes, Phase, Workloads, assign_frame};
use crate::control::records::Placement;

/// Why an action was not carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum ActError {
    /// It cannot be planned or done; the sentence says why.
    Refused(String),
    /// The confirmed plan no longer holds; this is the plan now. Nothing
    /// was done. Boxed: a plan is large beside a refusal.
    Changed(Box<Plan>),
}

impl std::fmt::Display for ActError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(reason) => f.write_str(reason),
            Self::Changed(plan) => write!(f, "the cluster changed since the plan was made; the plan now is:\n{plan}"),
        }
    }
}

impl Workloads {
    /// The plan of `action` over `nodes`, without doing anything.
    ///
    /// # Errors
    /// When the action names an unknown task, instance or node, or cannot be
    /// done.
    pub fn plan(&self, action: &OperatorAction, nodes: Nodes<'_>) -> Result<Plan, String> {
        let before = self.headroom(nodes, None);
        let known_node = |name: &str| nodes.get(name).map(|view| view.name.clone()).ok_or_else(|| no_node(name));
        let mut moves = Vec::new();
        let mut notes = Vec::new();
        let (text, lost) = match action {
            OperatorAction::Restart { target } => {
                for id in self.matching(target)? {
                    match self.instances.get(&id).and_then(|instance| instance.record.node()) {
                        Some(node) => moves.push(Move {
                            instance: id.to_string(),
                            kind: MoveKind::Restart,
                            from: Some(node.to_string()),
                            to: None,
                        }),
                        None => notes.push(format!("{id} is not placed; nothing to restart")),
                    }
                }
                (format!("restart {target}"), None)
            }
            OperatorAction::Migrate { instance, to } => {
                let target = known_node(to)?;
                let id = InstanceId::parse(instance).map_err(|err| err.to_string())?;
                let current = self.instances.get(&id).ok_or_else(|| format!("no instance named \"{instance}\""))?;
                let from = current.record.node().cloned();
                if from.as_ref() == Some(&target) {
                    return Err(format!("{instance} already runs on \"{to}\""));
                }
                if current.record.source.is_some() {
                    return Err(format!("{instance} is already moving; wait until its move finishes"));
                }
                let view = nodes.get(to).ok_or_else(|| no_node(to))?;
                if !self.eligible(view) {
                    return Err(format!(
                        "\"{to}\" cannot take work now ({}{})",
                        view.state,
                        if self.is_cordoned(to) { ", cordoned" } else { "" }
                    ));
                }
                if self.instances.iter().any(|(other, sibling)| {
                    *other != id && other.task() == id.task() && sibling.record.touches(target.as_str())
                }) {
                    return Err(format!("\"{to}\" already runs another instance of \"{}\"", id.task()));
                }
                moves.push(Move {
                    instance: id.to_string(),
                    kind: if from.is_some() { MoveKind::Migrate } else { MoveKind::Start },
                    from: from.map(|node| node.to_string()),
                    to: Some(to.clone()),
                });
                (format!("migrate {instance} to \"{to}\""), None)
            }
            OperatorAction::Drain { node } | OperatorAction::WhatIf { node } => {
                let node = known_node(node)?;
                let drain = matches!(action, OperatorAction::Drain { .. });
                let mut candidates = self.candidates(nodes, self.ring_for(nodes));
                let leaving: Vec<(InstanceId, Option<Placement>)> = self
                    .instances
                    .iter()
                    .filter(|(_, instance)| instance.record.node() == Some(&node))
                    // A drain leaves moves already under way alone.
                    .filter(|(_, instance)| !drain || instance.record.source.is_none())
                    .map(|(id, instance)| (id.clone(), instance.record.placement.clone()))
                    .collect();
                if !drain {
                    for (id, _) in &leaving {
                        candidates.release(id.task(), node.as_str());
                    }
                }
                for (id, _) in leaving {
                    let Some(spec) = self.tasks.get(id.task()) else { continue };
                    let avoid =
                        self.instances.get(&id).map(|instance| instance.record.avoid.clone()).unwrap_or_default();
                    match candidates.choose(&id, spec.placement, &avoid, Some(node.as_str())) {
                        Some(target) => {
                            candidates.take(id.task(), &target);
                            moves.push(Move {
                                instance: id.to_string(),
                                kind: if drain { MoveKind::Migrate } else { MoveKind::Start },
                                from: Some(node.to_string()),
                                to: Some(target.to_string()),
                            });
                        }
                        None => {
                            notes.push(format!(
                                "{id} has nowhere to go: no eligible node without an instance of its task"
                            ));
                        }
                    }
                }
                if !drain && self.failover_paused().is_some() {
                    notes.push("automatic failover is paused: nothing would move until resumed".into());
                }
                let text = if drain {
                    format!("drain node \"{node}\"")
                } else {
                    format!("what if node \"{node}\" failed now")
                };
                (text, Some(node))
            }
            OperatorAction::Cordon { node } => {
                known_node(node)?;
                (format!("cordon node \"{node}\" (keeps its work, takes nothing new)"), None)
            }
            OperatorAction::Uncordon { node } => {
                known_node(node)?;
                (format!("uncordon node \"{node}\""), None)
            }
            OperatorAction::Resume => {
                if self.cluster.failover_paused.is_none() {
                    notes.push("automatic failover is not paused".into());
                }
                ("resume automatic failover".to_string(), None)
            }
        };
        let after = match (&lost, action) {
            (Some(node), _) => self.headroom_with(nodes, Some(node.as_str()), &moves),
            (None, OperatorAction::Cordon { node }) => self.headroom_with_cordon(nodes, node),
            _ => self.headroom_with(nodes, None, &moves),
        };
        Ok(Plan { action: text, moves, headroom_before: before, headroom_after: after, notes, data: None })
    }

    /// Carries out `action`; returns its plan and the effects. With
    /// `confirmed`, only if the action still plans the same moves.
    ///
    /// # Errors
    /// [`ActError::Refused`] as [`Workloads::plan`] (what-if plans are never
    /// executed); [`ActError::Changed`] with the fresh plan when it differs
    /// from the confirmed one.
    pub fn execute(
        &mut self,
        action: &OperatorAction,
        confirmed: Option<&Plan>,
        nodes: Nodes<'_>,
    ) -> Result<(Plan, Effects), ActError> {
        if matches!(action, OperatorAction::WhatIf { .. }) {
            return Err(ActError::Refused("a what-if plan is never executed".into()));
        }
        let plan = self.plan(action, nodes).map_err(ActError::Refused)?;
        if let Some(confirmed) = confirmed
            && !confirmed.same_moves(&plan)
        {
            return Err(ActError::Changed(Box::new(plan)));
        }
        let mut effects = Effects::default();
        match action {
            OperatorAction::WhatIf { .. } => {}
            OperatorAction::Cordon { node } => {
                let name = self.known(nodes, node)?;
                if !self.is_cordoned(node) {
                    self.node_record(&name).cordoned = true;
                    effects.note(
                        EventKind::Operator,
                        None,
                        Some(&name),
                        format!("cordoned \"{name}\": no new placements"),
                    );
                }
            }
            OperatorAction::Uncordon { node } => {
                let name = self.known(nodes, node)?;
                if self.is_cordoned(node) || self.is_draining(node) {
                    let record = self.node_record(&name);
                    record.cordoned = false;
                    record.drained = false;
                    let stopped_drain = std::mem::take(&mut record.draining);
                    self.placement_due = true;
                    effects.note(
                        EventKind::Operator,
                        None,
                        Some(&name),
                        if stopped_drain {
                            format!("uncordoned \"{name}\": its drain stops; moves under way finish")
                        } else {
                            format!("uncordoned \"{name}\"")
                        },
                    );
                }
            }
            OperatorAction::Resume => {
                if self.cluster.failover_paused.take().is_some() {
                    self.recent_failures.clear();
                    self.placement_due = true;
                    self.touch_cluster();
                    effects.note(EventKind::Operator, None, None, "automatic failover resumed by the operator".into());
                }
            }
            OperatorAction::Restart { .. } => {
                for step in &plan.moves {
                    let (Ok(id), Some(node)) = (InstanceId::parse(&step.instance), &step.from) else { continue };
                    let Some(placement) = self.instances.get(&id).and_then(|i| i.record.placement.clone()) else {
                        continue;
                    };
                    effects.send(
                        &placement.node,
                        ringwatch_shared::protocol::ConsoleFrame::Restart {
                            instance: id.clone(),
                            epoch: placement.epoch,
                        },
                    );
                    effects.note(
                        EventKind::Operator,
                        Some(id.task()),
                        Some(&placement.node),
                        format!("operator restarts {id} on \"{node}\""),
                    );
                }
            }
            OperatorAction::Drain { node } => {
                let name = self.known(nodes, node)?;
                let record = self.node_record(&name);
                record.cordoned = true;
                record.draining = true;
                record.drained = true;
                effects.note(
                    EventKind::Operator,
                    None,
                    Some(&name),
                    format!("draining \"{name}\": cordoned, {} instance(s) to move", plan.moves.len()),
                );
                self.start_moves(&plan, &mut effects);
            }
            OperatorAction::Migrate { .. } => self.start_moves(&plan, &mut effects),
        }
        self.changed();
        Ok((plan, effects))
    }

    fn known(&self, nodes: Nodes<'_>, name: &str) -> Result<NodeName, ActError> {
        nodes.get(name).map(|view| view.name.clone()).ok_or_else(|| ActError::Refused(no_node(name)))
    }

    /// Starts the plan's moves, make-before-break: the new copy starts, the
    /// old one keeps running (recorded as the move's source) until the new
    /// one has run `min_healthy`. Gradual tasks start `max_parallel` at a
    /// time; the rest wait on the draining node for a later tick.
    pub(super) fn start_moves(&mut self, plan: &Plan, effects: &mut Effects) {
        let mut in_flight: BTreeMap<TaskName, u32> = BTreeMap::new();
        for (id, instance) in &self.instances {
            if instance.record.source.is_some() {
                *in_flight.entry(id.task().clone()).or_default() += 1;
            }
        }
        for step in &plan.moves {
            let (Ok(id), Some(to)) = (InstanceId::parse(&step.instance), &step.to) else { continue };
            let Ok(to) = NodeName::parse(to) else { continue };
            let Some(spec) = self.tasks.get(id.task()).cloned() else { continue };
            let moving = in_flight.entry(id.task().clone()).or_default();
            if spec.migrate.mode == MigrateMode::Gradual && *moving >= spec.migrate.max_parallel.max(1) {
                continue;
            }
            *moving += 1;
            let epoch = self.next_epoch();
            let Some(instance) = self.instances.get_mut(&id) else { continue };
            instance.record.source = instance.record.placement.take();
            instance.record.placement = Some(Placement { node: to.clone(), epoch });
            instance.record.placed_before = true;
            instance.record.failover_due_unix_ms = None;
            instance.record.reported = None;
            instance.phase = Phase::Starting;
            instance.running_since = None;
            instance.message.clear();
            effects.send(&to, assign_frame(&id, &spec, epoch));
            effects.tally.moved(crate::control::tally::MoveKind::Migrate);
            effects.note(
                EventKind::Operator,
                Some(id.task()),
                Some(&to),
                format!("{id} starting on \"{to}\" (make-before-break)"),
            );
            self.touch(&id);
        }
        self.placement_due = true;
        self.advance_seed();
    }

    /// Instances matching `task` or `task/index`.
    fn matching(&self, target: &str) -> Result<Vec<InstanceId>, String> {
        if target.contains('/') {
            let id = InstanceId::parse(target).map_err(|err| err.to_string())?;
            return if self.instances.contains_key(&id) {
                Ok(vec![id])
            } else {
                Err(format!("no instance named \"{target}\""))
            };
        }
        let task = TaskName::parse(target).map_err(|err| err.to_string())?;
        if !self.tasks.contains_key(&task) {
            return Err(format!("no task named \"{target}\""));
        }
        Ok(self.instances.keys().filter(|id| *id.task() == task).cloned().collect())
    }

    fn headroom_with_cordon(&self, nodes: Nodes<'_>, cordoned: &str) -> ringwatch_shared::placement::Headroom {
        let mut headroom = self.headroom(nodes, None);
        let eligible = nodes.all().iter().filter(|node| self.eligible(node) && node.name.as_str() != cordoned).count();
        let widest = self.tasks.values().map(|spec| spec.replicas).max().unwrap_or(0) as usize;
        headroom.capacity_ok = eligible.saturating_sub(1) >= widest;
        headroom
    }
}

fn no_node(name: &str) -> String {
    format!("no node named \"{name}\"")
}
