//! What agents say about their instances, checked against the console's own
//! placements (ARCHITECTURE.md, "Nothing received is trusted").
//!
//! A report is believed only for a copy the console placed on that node at
//! that epoch — the current placement, or the old copy of a move under way.
//! Anything else is stopped: a copy left by a crash of this console, the
//! far side of a partition, a node that came back after its work moved, or
//! an agent that lies. An epoch above the console's own counter cannot have
//! come from it and is refused outright, so no agent can push the counter
//! (and with it the next placement's epoch) anywhere.

use std::collections::BTreeSet;

use ringwatch_shared::names::{InstanceId, NodeName};
use ringwatch_shared::protocol::{InstanceReport, InstanceState};
use ringwatch_shared::status::EventKind;

use super::{Effects, MAX_STOPS_REMEMBERED, Now, Phase, Workloads, assign_frame, capped};

/// How a reported copy relates to the console's placements.
enum Match {
    /// The instance's current placement.
    Current,
    /// The old copy of a move under way: it runs until the new one is
    /// healthy.
    Source,
    /// Not placed there by this console.
    Foreign,
    /// Claims an epoch this console never gave.
    FutureEpoch,
}

/// Foreign copies named one by one in an inventory's event; the rest are
/// counted.
const NAMED_FOREIGN: usize = 5;

impl Workloads {
    fn classify(&self, node: &NodeName, report: &InstanceReport) -> Match {
        if report.epoch > self.cluster.last_epoch {
            return Match::FutureEpoch;
        }
        let Some(instance) = self.instances.get(&report.instance) else { return Match::Foreign };
        let is = |copy: Option<&crate::control::records::Placement>| {
            copy.is_some_and(|copy| copy.node == *node && copy.epoch == report.epoch)
        };
        if is(instance.record.placement.as_ref()) {
            Match::Current
        } else if is(instance.record.source.as_ref()) {
            Match::Source
        } else {
            Match::Foreign
        }
    }

    /// An agent (re)connected and listed every instance it runs. Copies the
    /// console placed are matched; every other copy is stopped; what the
    /// console placed there but the agent does not run is assigned again.
    pub fn inventory(&mut self, node: &NodeName, reports: Vec<InstanceReport>, now: Now) -> Effects {
        self.stops_sent.retain(|(stopped, _, _)| stopped != node);
        let mut effects = Effects::default();
        let mut seen: BTreeSet<InstanceId> = BTreeSet::new();
        let mut foreign: Vec<String> = Vec::new();
        let mut future: Vec<String> = Vec::new();
        for report in reports {
            if !seen.insert(report.instance.clone()) {
                continue; // a duplicate entry says nothing new
            }
            match self.classify(node, &report) {
                Match::Current => {
                    if report.state == InstanceState::Stopped {
                        // Fenced while the console was away: it runs again.
                        if let Some(spec) = self.tasks.get(report.instance.task()) {
                            effects.send(node, assign_frame(&report.instance, spec, report.epoch));
                        }
                    } else {
                        self.learn(node, &report, now, &mut effects);
                    }
                }
                Match::Source => {}
                Match::Foreign | Match::FutureEpoch if is_down(report.state) => {
                    effects.stop(node, &report.instance, report.epoch, "forget it: this console did not place it here");
                }
                Match::Foreign => {
                    effects.stop(node, &report.instance, report.epoch, "this console did not place it here");
                    foreign.push(format!("{} (epoch {})", report.instance, report.epoch));
                }
                Match::FutureEpoch => {
                    effects.stop(node, &report.instance, report.epoch, "its epoch was never given by this console");
                    future.push(format!("{} (epoch {})", report.instance, report.epoch));
                }
            }
        }
        if !foreign.is_empty() {
            effects.note(
                EventKind::Instance,
                None,
                Some(node),
                format!(
                    "stopping {} on \"{node}\": this console did not place {} there",
                    listing(&foreign),
                    if foreign.len() == 1 { "it" } else { "them" }
                ),
            );
        }
        if !future.is_empty() {
            effects.note(
                EventKind::Instance,
                None,
                Some(node),
                format!(
                    "refused and stopping {} on \"{node}\": an epoch above any this console gave ({})",
                    listing(&future),
                    self.cluster.last_epoch
                ),
            );
        }
        self.repair_missing(node, &seen, &mut effects);
        effects
    }

    /// Copies the console placed on `node` that its inventory (`seen`) does
    /// not list: a current placement is assigned again, the old copy of a
    /// move is gone.
    fn repair_missing(&mut self, node: &NodeName, seen: &BTreeSet<InstanceId>, effects: &mut Effects) {
        let mut forgotten = Vec::new();
        for (id, instance) in &mut self.instances {
            if seen.contains(id) {
                continue;
            }
            if let Some(placement) = instance.record.placement.as_ref().filter(|placement| placement.node == *node)
                && let Some(spec) = self.tasks.get(id.task())
            {
                instance.phase = Phase::Starting;
                instance.running_since = None;
                effects.send(node, assign_frame(id, spec, placement.epoch));
            }
            if instance.record.source.as_ref().is_some_and(|source| source.node == *node) {
                instance.record.source = None;
                forgotten.push(id.clone());
            }
        }
        for id in forgotten {
            self.touch(&id);
        }
    }

    /// An agent reported one instance's new state.
    pub fn report(&mut self, node: &NodeName, report: InstanceReport, now: Now) -> Effects {
        let mut effects = Effects::default();
        match self.classify(node, &report) {
            Match::Current => self.learn(node, &report, now, &mut effects),
            Match::Source => {}
            found @ (Match::Foreign | Match::FutureEpoch) => {
                let key = (node.clone(), report.instance.clone(), report.epoch);
                if is_down(report.state) || self.stops_sent.contains(&key) {
                    return effects;
                }
                if self.stops_sent.len() >= MAX_STOPS_REMEMBERED {
                    self.stops_sent.clear();
                }
                self.stops_sent.insert(key);
                let why = if matches!(found, Match::FutureEpoch) {
                    format!("an epoch above any this console gave ({})", self.cluster.last_epoch)
                } else {
                    "this console did not place it there".to_string()
                };
                effects.stop(node, &report.instance, report.epoch, &why);
                effects.note(
                    EventKind::Instance,
                    Some(report.instance.task()),
                    Some(node),
                    format!("stopping {} (epoch {}) on \"{node}\": {why}", report.instance, report.epoch),
                );
            }
        }
        effects
    }

    /// The current copy of an instance changed state.
    fn learn(&mut self, node: &NodeName, report: &InstanceReport, now: Now, effects: &mut Effects) {
        let id = &report.instance;
        let Some(instance) = self.instances.get_mut(id) else { return };
        let phase = Phase::from_report(report.state);
        // The durable count, so a console restart does not count them again.
        effects.tally.restarts += u64::from(report.restarts.saturating_sub(instance.record.restarts));
        instance.restarts = report.restarts;
        instance.message = capped(&report.message);
        if instance.record.reported != Some(report.state) || instance.record.restarts != report.restarts {
            // A state change a standby console shows: durable, but only
            // when it changes (heartbeats and metrics never are).
            instance.record.reported = Some(report.state);
            instance.record.restarts = report.restarts;
            self.dirty.instances.insert(id.clone());
        }
        if instance.phase == phase {
            return;
        }
        instance.running_since = (phase == Phase::Running).then_some(now.at);
        match phase {
            Phase::Failed => {
                // Escalation: it gave up here; it goes elsewhere.
                effects.note(
                    EventKind::Failover,
                    Some(id.task()),
                    Some(node),
                    format!("{id} failed on \"{node}\": {}; placing it elsewhere", instance.message),
                );
                effects.tally.failover(crate::control::tally::FailoverReason::InstanceFailed);
                instance.record.avoid.insert(node.clone());
                instance.record.placement = None;
                instance.record.reported = None;
                instance.phase = Phase::Pending;
                effects.stop(node, id, report.epoch, "escalated: placed elsewhere");
                self.placement_due = true;
                self.touch(id);
                return;
            }
            Phase::Restarting => {
                effects.note(
                    EventKind::Instance,
                    Some(id.task()),
                    Some(node),
                    format!("{id} crashed on \"{node}\" ({}); restarting in place", instance.message),
                );
            }
            _ => {}
        }
        instance.phase = phase;
        self.changed();
    }
}

/// Whether a reported state means the copy no longer runs.
fn is_down(state: InstanceState) -> bool {
    matches!(state, InstanceState::Stopped | InstanceState::Stopping)
}

/// `a, b, c and 7 more`.
fn listing(items: &[String]) -> String {
    let named = items.iter().take(NAMED_FOREIGN).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(NAMED_FOREIGN) {
        0 => named,
        more => format!("{named} and {more} more"),
    }
}
