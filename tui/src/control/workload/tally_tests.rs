//! What the scheduler counts for `/metrics` (control/tally.rs): failovers by
//! reason, moves by kind, restarts counted once.

use std::time::{Duration, Instant};

use ringwatch_shared::names::InstanceId;
use ringwatch_shared::plan::OperatorAction;
use ringwatch_shared::protocol::{ConsoleFrame, InstanceReport, InstanceState};
use ringwatch_shared::status::NodeState;

use super::tests::{name, spec};
use super::*;

fn nodes(states: &[(&str, NodeState)]) -> Vec<NodeView> {
    let mut views: Vec<NodeView> = states
        .iter()
        .map(|(node, state)| NodeView { name: name(node), state: *state, weight: 1, cpu_free: 0.9 })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

fn now(start: Instant, ms: u64) -> Now {
    Now { at: start + Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms }
}

fn report(instance: &str, epoch: u64, state: InstanceState, restarts: u32) -> InstanceReport {
    InstanceReport {
        instance: InstanceId::parse(instance).unwrap(),
        epoch,
        state,
        restarts,
        pid: Some(1),
        last_exit: None,
        message: String::new(),
    }
}

/// A scheduler running `web` (`replicas` instances) on nodes a–d; where
/// each instance went, with its epoch.
fn running(replicas: u32, start: Instant) -> (Workloads, Vec<(String, String, u64)>) {
    let mut workloads = Workloads::new(WorkloadConfig::default(), WorkloadRecords::default(), 7);
    let all =
        nodes(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Alive), ("d", NodeState::Alive)]);
    workloads.apply(vec![spec("web", replicas)]);
    let effects = workloads.tick(now(start, 0), Nodes::new(&all));
    assert_eq!(effects.tally, Tally::default(), "a first placement is no move");
    let mut placed = Vec::new();
    for out in &effects.outgoing {
        if let ConsoleFrame::Assign(assignment) = &out.frame {
            let instance = assignment.instance.to_string();
            workloads.report(&out.node, report(&instance, assignment.epoch, InstanceState::Running, 0), now(start, 0));
            placed.push((out.node.to_string(), instance, assignment.epoch));
        }
    }
    (workloads, placed)
}

fn down(victim: &str, state: NodeState) -> Vec<NodeView> {
    let states: Vec<(&str, NodeState)> = ["a", "b", "c", "d"]
        .iter()
        .map(|node| (*node, if *node == victim { state } else { NodeState::Alive }))
        .collect();
    nodes(&states)
}

#[test]
fn a_failed_node_counts_a_failover_and_a_replacing_move() {
    let start = Instant::now();
    let (mut workloads, placed) = running(1, start);
    let victim = placed[0].0.clone();
    let mut effects = workloads.node_changed(&name(&victim), NodeState::Failed, Some(start), now(start, 0), 4);
    effects.extend(workloads.tick(now(start, 0), Nodes::new(&down(&victim, NodeState::Failed))));
    assert_eq!(effects.tally.failovers(FailoverReason::NodeFailed), 1);
    assert_eq!(effects.tally.moves(MoveKind::Replace), 1);
    assert_eq!(effects.tally.moves(MoveKind::Migrate), 0);
}

#[test]
fn a_node_that_left_counts_its_failovers_as_left() {
    let start = Instant::now();
    let (mut workloads, placed) = running(1, start);
    let victim = placed[0].0.clone();
    let mut effects = workloads.node_changed(&name(&victim), NodeState::Left, Some(start), now(start, 0), 4);
    effects.extend(workloads.tick(now(start, 0), Nodes::new(&down(&victim, NodeState::Left))));
    assert_eq!(effects.tally.failovers(FailoverReason::NodeLeft), 1);
    assert_eq!(effects.tally.failovers(FailoverReason::NodeFailed), 0);
}

#[test]
fn a_drain_counts_make_before_break_moves() {
    let start = Instant::now();
    let (mut workloads, placed) = running(2, start);
    let node = placed[0].0.clone();
    let on_node = placed.iter().filter(|(at, _, _)| *at == node).count() as u64;
    let all = down("none", NodeState::Alive);
    let (_, effects) = workloads.execute(&OperatorAction::Drain { node }, None, Nodes::new(&all)).unwrap();
    assert_eq!(effects.tally.moves(MoveKind::Migrate), on_node);
    assert_eq!(effects.tally.failovers(FailoverReason::NodeFailed), 0);
}

#[test]
fn restarts_are_counted_once_from_the_agents_count_and_an_escalation_is_a_failover() {
    let start = Instant::now();
    let (mut workloads, placed) = running(1, start);
    let (node, instance, epoch) = placed[0].clone();
    let node = name(&node);
    let effects = workloads.report(&node, report(&instance, epoch, InstanceState::Restarting, 2), now(start, 10));
    assert_eq!(effects.tally.restarts, 2);
    let effects = workloads.report(&node, report(&instance, epoch, InstanceState::Running, 2), now(start, 20));
    assert_eq!(effects.tally.restarts, 0, "the same count again is no restart");
    let effects = workloads.report(&node, report(&instance, epoch, InstanceState::Restarting, 3), now(start, 30));
    assert_eq!(effects.tally.restarts, 1);
    let effects = workloads.report(&node, report(&instance, epoch, InstanceState::Failed, 3), now(start, 40));
    assert_eq!(effects.tally.failovers(FailoverReason::InstanceFailed), 1);
}
