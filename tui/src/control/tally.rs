//! What the control plane counts where it happens, for `/metrics`
//! (README.md, "Metrics"; ARCHITECTURE.md, "Metrics"): state transitions
//! and how long detection took, failovers, placement moves, restarts,
//! heartbeats lost and admin requests.
//!
//! The scheduler stays pure: a step returns its counts in a [`Tally`] with
//! its other effects, and the owner adds them to the shared [`Tallies`].
//! Connection tasks add to [`Tallies`] directly (atomics; a labelled family
//! takes a short lock, only on rare events). Every label value is one of a
//! fixed set of names: no free text, so the number of series is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use ringwatch_shared::plan::OperatorAction;
use ringwatch_shared::protocol::{AdminRequest, AdminResponse};
use ringwatch_shared::status::NodeState;

use crate::control::backlog::SocketTallies;
use crate::control::store::LeaseTallies;
use crate::control::store::redb::ChangeLogTallies;

/// Bucket bounds of the detection latency, in seconds: from a quick
/// conviction (phi over its threshold after a few missed beats) to a node
/// silent for the detector's `max_silence` and more.
pub const DETECTION_BUCKETS: [f64; 13] = [0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0];

/// Why an instance left its node without an operator asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailoverReason {
    /// Its node failed (or was revoked).
    NodeFailed,
    /// Its node said goodbye.
    NodeLeft,
    /// It failed on its node too often (its restart policy gave up): it is
    /// placed elsewhere.
    InstanceFailed,
}

impl FailoverReason {
    /// Every reason, for series that exist from the start.
    pub const ALL: [Self; 3] = [Self::NodeFailed, Self::NodeLeft, Self::InstanceFailed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NodeFailed => "node_failed",
            Self::NodeLeft => "node_left",
            Self::InstanceFailed => "instance_failed",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::NodeFailed => 0,
            Self::NodeLeft => 1,
            Self::InstanceFailed => 2,
        }
    }
}

/// How an instance came to run on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoveKind {
    /// Placed again after it left its node (a failover or an escalation).
    Replace,
    /// Make-before-break: a new copy started while the old one runs (a
    /// migration or a drain).
    Migrate,
}

impl MoveKind {
    /// Every kind, for series that exist from the start.
    pub const ALL: [Self; 2] = [Self::Replace, Self::Migrate];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replace => "replace",
            Self::Migrate => "migrate",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Replace => 0,
            Self::Migrate => 1,
        }
    }
}

/// What one step of the scheduler counted: plain numbers, added to the
/// shared [`Tallies`] by the owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Instance restarts the agents reported (in place, by their policy).
    pub restarts: u64,
    /// Instances that left their node, by [`FailoverReason`].
    failovers: [u64; 3],
    /// Instances placed on another node, by [`MoveKind`].
    moves: [u64; 2],
}

impl Tally {
    /// Counts a failover.
    pub fn failover(&mut self, reason: FailoverReason) {
        self.failovers[reason.index()] += 1;
    }

    /// Counts a move.
    pub fn moved(&mut self, kind: MoveKind) {
        self.moves[kind.index()] += 1;
    }

    /// Failovers counted for `reason`.
    pub fn failovers(&self, reason: FailoverReason) -> u64 {
        self.failovers[reason.index()]
    }

    /// Moves counted of `kind`.
    pub fn moves(&self, kind: MoveKind) -> u64 {
        self.moves[kind.index()]
    }

    /// Adds `other`.
    pub fn add(&mut self, other: &Self) {
        self.restarts += other.restarts;
        for (mine, theirs) in self.failovers.iter_mut().zip(other.failovers) {
            *mine += theirs;
        }
        for (mine, theirs) in self.moves.iter_mut().zip(other.moves) {
            *mine += theirs;
        }
    }
}

/// Labels of a node state transition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransitionLabels {
    /// The state before.
    pub from: &'static str,
    /// The state after.
    pub to: &'static str,
}

/// Labels of a failover.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// A [`FailoverReason`].
    pub reason: &'static str,
}

/// Labels of a placement move.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    /// A [`MoveKind`].
    pub kind: &'static str,
}

/// Labels of an admin request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AdminLabels {
    /// What was asked ([`request_name`]).
    pub request: &'static str,
    /// How it was answered ([`outcome_name`]).
    pub outcome: &'static str,
}

/// The shared counts, for the whole life of the process (across
/// leaderships: a standby that takes over goes on counting).
#[derive(Debug)]
pub struct Tallies {
    /// Heartbeats missing from the agents' sequences.
    pub heartbeats_lost: Counter,
    /// Node state transitions.
    pub transitions: Family<TransitionLabels, Counter>,
    /// From a node's last heartbeat to its conviction (`failed`), seconds.
    pub detection_latency: Histogram,
    /// Instances that left their node on their own.
    pub failovers: Family<ReasonLabels, Counter>,
    /// Instances placed on another node.
    pub moves: Family<KindLabels, Counter>,
    /// Instance restarts in place.
    pub restarts: Counter,
    /// Requests over the admin channel.
    pub admin_requests: Family<AdminLabels, Counter>,
    /// The embedded store's change log (zero with an etcd store, which
    /// has none).
    pub change_log: ChangeLogTallies,
    /// The console's UDP socket (`control::backlog`).
    pub socket: SocketTallies,
    /// The etcd lease of a console in a group (zero on the embedded store).
    pub lease: LeaseTallies,
}

impl Default for Tallies {
    fn default() -> Self {
        let tallies = Self {
            heartbeats_lost: Counter::default(),
            transitions: Family::default(),
            detection_latency: Histogram::new(DETECTION_BUCKETS),
            failovers: Family::default(),
            moves: Family::default(),
            restarts: Counter::default(),
            admin_requests: Family::default(),
            change_log: ChangeLogTallies::default(),
            socket: SocketTallies::default(),
            lease: LeaseTallies::default(),
        };
        // Series that exist from the start: a rate over them is 0, not
        // absent, before the first event.
        for reason in FailoverReason::ALL {
            let _ = tallies.failovers.get_or_create(&ReasonLabels { reason: reason.as_str() });
        }
        for kind in MoveKind::ALL {
            let _ = tallies.moves.get_or_create(&KindLabels { kind: kind.as_str() });
        }
        tallies
    }
}

impl Tallies {
    /// A node went from `from` to `to`; `detected_after` is the time since
    /// its last heartbeat when that is a conviction of a node heard from in
    /// this process's life.
    pub fn transition(&self, from: NodeState, to: NodeState, detected_after: Option<std::time::Duration>) {
        self.transitions.get_or_create(&TransitionLabels { from: from.as_str(), to: to.as_str() }).inc();
        if to == NodeState::Failed
            && let Some(latency) = detected_after
        {
            self.detection_latency.observe(latency.as_secs_f64());
        }
    }

    /// Adds what a step of the scheduler counted.
    pub fn add(&self, tally: &Tally) {
        if tally.restarts > 0 {
            self.restarts.inc_by(tally.restarts);
        }
        for reason in FailoverReason::ALL {
            let count = tally.failovers(reason);
            if count > 0 {
                self.failovers.get_or_create(&ReasonLabels { reason: reason.as_str() }).inc_by(count);
            }
        }
        for kind in MoveKind::ALL {
            let count = tally.moves(kind);
            if count > 0 {
                self.moves.get_or_create(&KindLabels { kind: kind.as_str() }).inc_by(count);
            }
        }
    }

    /// Counts an admin request (named before it was answered) and its
    /// answer.
    pub fn admin_request(&self, request: &'static str, response: &AdminResponse) {
        self.admin_requests.get_or_create(&AdminLabels { request, outcome: outcome_name(response) }).inc();
    }
}

/// The label value naming a request: its kind, never its arguments.
pub fn request_name(request: &AdminRequest) -> &'static str {
    #[allow(unreachable_patterns)] // requests added later count as "other" until named here
    match request {
        AdminRequest::Status => "status",
        AdminRequest::ApplyTasks(_) => "apply_tasks",
        AdminRequest::RemoveTask(_) => "remove_task",
        AdminRequest::ListTasks => "list_tasks",
        AdminRequest::Revoke(_) => "revoke",
        AdminRequest::Act { action, .. } => match action {
            OperatorAction::Restart { .. } => "restart",
            OperatorAction::Migrate { .. } => "migrate",
            OperatorAction::Drain { .. } => "drain",
            OperatorAction::Cordon { .. } => "cordon",
            OperatorAction::Uncordon { .. } => "uncordon",
            OperatorAction::WhatIf { .. } => "what_if",
            OperatorAction::Resume => "resume",
            _ => "other",
        },
        AdminRequest::IssueToken { .. } => "issue_token",
        AdminRequest::ListTokens => "list_tokens",
        AdminRequest::RevokeToken(_) => "revoke_token",
        AdminRequest::RevokeAllTokens => "revoke_all_tokens",
        AdminRequest::Events(_) => "events",
        AdminRequest::Watch => "watch",
        AdminRequest::IssueCredential { .. } => "issue_credential",
        AdminRequest::ListCredentials => "list_credentials",
        AdminRequest::RevokeCredential(_) => "revoke_credential",
        AdminRequest::DataPut(_) => "data_put",
        AdminRequest::DataGet { .. } => "data_get",
        AdminRequest::DataRemove { .. } => "data_remove",
        AdminRequest::DataList(_) => "data_list",
        AdminRequest::DataStat(_) => "data_stat",
        _ => "other",
    }
}

/// The label value naming how a request was answered.
pub fn outcome_name(response: &AdminResponse) -> &'static str {
    match response {
        AdminResponse::Error(_) => "error",
        AdminResponse::NotLeader { .. } => "not_leader",
        AdminResponse::PlanChanged(_) => "plan_changed",
        AdminResponse::DataFailed(_) => "error",
        _ => "ok",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::TypedMetric;

    use super::*;

    #[test]
    fn a_step_s_tally_adds_up_by_label() {
        let mut step = Tally::default();
        step.failover(FailoverReason::NodeFailed);
        step.failover(FailoverReason::NodeFailed);
        step.moved(MoveKind::Migrate);
        step.restarts = 3;
        let mut total = Tally::default();
        total.add(&step);
        total.add(&step);
        assert_eq!(total.failovers(FailoverReason::NodeFailed), 4);
        assert_eq!(total.failovers(FailoverReason::NodeLeft), 0);
        assert_eq!(total.moves(MoveKind::Migrate), 2);
        assert_eq!(total.restarts, 6);

        let tallies = Tallies::default();
        tallies.add(&total);
        let failed = ReasonLabels { reason: "node_failed" };
        assert_eq!(tallies.failovers.get_or_create(&failed).get(), 4);
        assert_eq!(tallies.moves.get_or_create(&KindLabels { kind: "replace" }).get(), 0);
        assert_eq!(tallies.restarts.get(), 6);
    }

    #[test]
    fn only_a_conviction_is_a_detection_latency() {
        let tallies = Tallies::default();
        let after = Some(Duration::from_millis(2_500));
        tallies.transition(NodeState::Alive, NodeState::Suspect, after);
        tallies.transition(NodeState::Suspect, NodeState::Failed, after);
        tallies.transition(NodeState::Unknown, NodeState::Failed, None);
        let labels = TransitionLabels { from: "suspect", to: "failed" };
        assert_eq!(tallies.transitions.get_or_create(&labels).get(), 1);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("latency", "", tallies.detection_latency.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("latency_count 1\n") && text.contains("latency_sum 2.5\n"), "{text}");
        assert_eq!(Histogram::TYPE, MetricType::Histogram);
    }

    #[test]
    fn requests_are_named_by_kind_never_by_argument() {
        let drain =
            AdminRequest::Act { action: OperatorAction::Drain { node: "n1".into() }, dry_run: false, confirmed: None };
        assert_eq!(request_name(&drain), "drain");
        assert_eq!(request_name(&AdminRequest::RemoveTask("a very long name".into())), "remove_task");
        assert_eq!(outcome_name(&AdminResponse::Error("no".into())), "error");
        assert_eq!(outcome_name(&AdminResponse::Done("yes".into())), "ok");
    }
}
