//! The scheduler against hand-built clusters: placement, failover, moves,
//! reports, plans, and the records a restarted console resumes from.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ringwatch_shared::names::{InstanceId, NodeName, TaskName};
use ringwatch_shared::plan::{MoveKind, OperatorAction};
use ringwatch_shared::protocol::{ConsoleFrame, InstanceReport, InstanceState};
use ringwatch_shared::status::{EventKind, NodeState};
use ringwatch_shared::task::{
    MigrateMode, MigratePolicy, OnDisconnect, Placement as Strategy, RestartMode, RestartPolicy, TaskSpec,
};

use super::*;
use crate::control::records::{Change, Image, InstanceRecord, NodeRecord, Placement};

pub(super) fn name(text: &str) -> NodeName {
    NodeName::parse(text).unwrap()
}

fn id(text: &str) -> InstanceId {
    InstanceId::parse(text).unwrap()
}

pub(super) fn spec(task: &str, replicas: u32) -> TaskSpec {
    TaskSpec {
        name: TaskName::parse(task).unwrap(),
        command: vec!["sleep".into(), "1000".into()],
        replicas,
        placement: Strategy::Ring,
        restart: RestartPolicy::default(),
        migrate: MigratePolicy::default(),
        on_disconnect: OnDisconnect::Keep,
    }
}

fn view(node: &str, state: NodeState) -> NodeView {
    NodeView { name: name(node), state, weight: 1, cpu_free: 0.9 }
}

fn cluster(states: &[(&str, NodeState)]) -> Vec<NodeView> {
    let mut views: Vec<NodeView> = states.iter().map(|(node, state)| view(node, *state)).collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

fn alive(names: &[&str]) -> Vec<NodeView> {
    cluster(&names.iter().map(|node| (*node, NodeState::Alive)).collect::<Vec<_>>())
}

fn four_alive() -> Vec<NodeView> {
    alive(&["a", "b", "c", "d"])
}

fn with_state(nodes: &[NodeView], node: &str, state: NodeState) -> Vec<NodeView> {
    nodes
        .iter()
        .cloned()
        .map(|mut view| {
            if view.name.as_str() == node {
                view.state = state;
            }
            view
        })
        .collect()
}

/// A clock for tests: `at(ms)` is the start plus `ms`, on both clocks.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }

    fn at(self, ms: u64) -> Now {
        Now { at: self.0 + Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms }
    }
}

fn workloads() -> Workloads {
    Workloads::new(WorkloadConfig::default(), WorkloadRecords::default(), 7)
}

fn assigned(effects: &Effects) -> Vec<(String, String, u64)> {
    effects
        .outgoing
        .iter()
        .filter_map(|out| match &out.frame {
            ConsoleFrame::Assign(assignment) => {
                Some((out.node.to_string(), assignment.instance.to_string(), assignment.epoch))
            }
            _ => None,
        })
        .collect()
}

fn stopped(effects: &Effects) -> Vec<(String, String, u64)> {
    effects
        .outgoing
        .iter()
        .filter_map(|out| match &out.frame {
            ConsoleFrame::Stop { instance, epoch, .. } => Some((out.node.to_string(), instance.to_string(), *epoch)),
            _ => None,
        })
        .collect()
}

fn notes(effects: &Effects) -> Vec<String> {
    effects.notes.iter().map(|note| note.text.clone()).collect()
}

fn report(instance: &str, epoch: u64, state: InstanceState) -> InstanceReport {
    InstanceReport {
        instance: id(instance),
        epoch,
        state,
        restarts: 0,
        pid: Some(1),
        last_exit: None,
        message: String::new(),
    }
}

fn running(instance: &str, epoch: u64) -> InstanceReport {
    report(instance, epoch, InstanceState::Running)
}

/// Applies `task` and runs it: returns where each instance went.
fn placed(workloads: &mut Workloads, task: TaskSpec, nodes: &[NodeView], now: Now) -> BTreeMap<String, (String, u64)> {
    workloads.apply(vec![task]);
    let effects = workloads.tick(now, Nodes::new(nodes));
    let mut placed = BTreeMap::new();
    for (node, instance, epoch) in assigned(&effects) {
        workloads.report(&name(&node), running(&instance, epoch), now);
        placed.insert(instance, (node, epoch));
    }
    placed
}

fn where_is(workloads: &Workloads, instance: &str) -> Option<String> {
    workloads.instances.get(&id(instance)).and_then(|i| i.record.node()).map(ToString::to_string)
}

/// What a console restarted on the records `workloads` wrote would start
/// from.
fn restarted(workloads: &mut Workloads, image: &mut Image) -> Workloads {
    for change in workloads.take_changes() {
        image.apply(&change);
    }
    let records = WorkloadRecords {
        tasks: image.tasks.clone(),
        instances: image.instances.clone(),
        nodes: image.nodes.clone(),
        cluster: image.cluster.clone(),
    };
    Workloads::new(WorkloadConfig::default(), records, 99)
}

#[test]
fn phases_name_themselves_as_agents_do() {
    let states = [
        InstanceState::Starting,
        InstanceState::Running,
        InstanceState::Restarting,
        InstanceState::Stopping,
        InstanceState::Stopped,
        InstanceState::Failed,
    ];
    for state in states {
        let phase = Phase::from_report(state);
        assert_eq!(phase.reported(), Some(state));
        assert_eq!(phase.as_str(), state.as_str());
    }
    assert_eq!(Phase::Pending.as_str(), "pending");
}

#[test]
fn replicas_land_on_distinct_nodes() {
    let mut workloads = workloads();
    let placed = placed(&mut workloads, spec("web", 3), &four_alive(), Clock::new().at(0));
    let nodes: BTreeSet<&String> = placed.values().map(|(node, _)| node).collect();
    assert_eq!((placed.len(), nodes.len()), (3, 3));
    assert!(workloads.task_status()[0].instances.iter().all(|instance| instance.state == "running"));
}

#[test]
fn a_failed_nodes_instance_moves_at_once_to_a_distinct_live_node() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = four_alive();
    let placed = placed(&mut workloads, spec("web", 2), &nodes, clock.at(0));
    let (victim, _) = placed["web/0"].clone();
    let sibling = placed["web/1"].0.clone();
    workloads.node_changed(&name(&victim), NodeState::Failed, Some(clock.0), clock.at(0), 4);
    let effects = workloads.tick(clock.at(0), Nodes::new(&with_state(&nodes, &victim, NodeState::Failed)));
    let moved = assigned(&effects);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].1, "web/0");
    assert!(moved[0].0 != victim && moved[0].0 != sibling, "{moved:?}");
    assert!(moved[0].2 > placed["web/0"].1, "a new placement has a new epoch");
}

/// A one-instance task whose failover waits 10 s for its node to return.
fn delayed_web() -> TaskSpec {
    let mut task = spec("web", 1);
    task.restart.mode = RestartMode::Delayed;
    task.restart.delay = Duration::from_secs(10);
    task
}

#[test]
fn delayed_failover_is_cancelled_when_the_node_returns_in_time() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, delayed_web(), &four_alive(), clock.at(0));
    let (victim, _) = placed["web/0"].clone();
    let down = with_state(&four_alive(), &victim, NodeState::Failed);
    workloads.node_changed(&name(&victim), NodeState::Failed, Some(clock.0), clock.at(0), 4);
    assert!(assigned(&workloads.tick(clock.at(5_000), Nodes::new(&down))).is_empty());
    let back = workloads.node_changed(&name(&victim), NodeState::Alive, None, clock.at(6_000), 4);
    assert!(notes(&back).iter().any(|note| note.contains("returned in time")), "{:?}", notes(&back));
    assert!(assigned(&workloads.tick(clock.at(20_000), Nodes::new(&four_alive()))).is_empty());
    assert_eq!(where_is(&workloads, "web/0"), Some(victim));
}

#[test]
fn failover_events_name_their_kind_task_and_node() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, delayed_web(), &four_alive(), clock.at(0));
    let (victim, _) = placed["web/0"].clone();
    let effects = workloads.node_changed(&name(&victim), NodeState::Failed, Some(clock.0), clock.at(0), 4);
    let note = effects.notes.iter().find(|note| note.text.contains("unless")).expect("the delayed failover is told");
    assert_eq!(note.kind, EventKind::Failover);
    assert_eq!(note.task.as_ref().map(TaskName::as_str), Some("web"));
    assert_eq!(note.node.as_ref().map(NodeName::as_str), Some(victim.as_str()));
    let removed = workloads.remove("web").unwrap();
    assert!(removed.notes.iter().any(|note| note.kind == EventKind::Task && note.text.contains("removed")));
}

#[test]
fn a_fenced_instance_moves_only_after_stop_after_plus_the_margin() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let mut task = spec("web", 1);
    task.on_disconnect = OnDisconnect::StopAfter(Duration::from_secs(5));
    let placed = placed(&mut workloads, task, &four_alive(), clock.at(0));
    let (victim, _) = placed["web/0"].clone();
    workloads.node_changed(&name(&victim), NodeState::Failed, Some(clock.0), clock.at(1_500), 4);
    let down = with_state(&four_alive(), &victim, NodeState::Failed);
    assert!(assigned(&workloads.tick(clock.at(5_900), Nodes::new(&down))).is_empty());
    let moved = assigned(&workloads.tick(clock.at(6_000), Nodes::new(&down)));
    assert_eq!(moved.len(), 1, "moves at last heartbeat + 5s + 1s margin");
}

#[test]
fn regression_a_stop_after_of_the_longest_duration_does_not_overflow() {
    // Case 2: `stop_after = "10000000000000000000s"` panicked the detection
    // loop ("overflow when adding duration to instant") when its node
    // failed. Specs are now bounded, and the arithmetic saturates anyway.
    let mut workloads = workloads();
    let clock = Clock::new();
    let mut task = spec("web", 1);
    task.on_disconnect = OnDisconnect::StopAfter(Duration::MAX);
    task.restart.mode = RestartMode::Delayed;
    task.restart.delay = Duration::MAX;
    task.restart.max_delay = Duration::MAX;
    let placed = placed(&mut workloads, task, &four_alive(), clock.at(0));
    let (victim, _) = placed["web/0"].clone();
    let effects = workloads.node_changed(&name(&victim), NodeState::Failed, Some(clock.0), clock.at(0), 4);
    assert!(notes(&effects).iter().any(|note| note.contains("unless")), "{:?}", notes(&effects));
    let down = with_state(&four_alive(), &victim, NodeState::Failed);
    assert!(assigned(&workloads.tick(clock.at(60_000), Nodes::new(&down))).is_empty());
}

#[test]
fn an_escalated_crash_loop_goes_to_another_node() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, spec("web", 1), &four_alive(), clock.at(0));
    let (first, epoch) = placed["web/0"].clone();
    let mut failed = report("web/0", epoch, InstanceState::Failed);
    failed.message = "6 restarts within 60s".into();
    let effects = workloads.report(&name(&first), failed, clock.at(0));
    assert_eq!(stopped(&effects), vec![(first.clone(), "web/0".to_string(), epoch)]);
    let moved = assigned(&workloads.tick(clock.at(0), Nodes::new(&four_alive())));
    assert_eq!(moved.len(), 1);
    assert_ne!(moved[0].0, first);
}

#[test]
fn a_stale_copy_and_an_unknown_one_are_stopped() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, spec("web", 1), &four_alive(), clock.at(0));
    let (node, epoch) = placed["web/0"].clone();
    let other = if node == "a" { "b" } else { "a" };
    let effects = workloads.report(&name(other), running("web/0", epoch - 1), clock.at(0));
    assert_eq!(stopped(&effects), vec![(other.to_string(), "web/0".to_string(), epoch - 1)]);
    let effects = workloads.report(&name(other), running("ghost/0", 1), clock.at(0));
    assert_eq!(stopped(&effects), vec![(other.to_string(), "ghost/0".to_string(), 1)]);
    assert!(notes(&effects)[0].contains("did not place it there"), "{:?}", notes(&effects));
    assert!(stopped(&workloads.report(&name(other), running("ghost/0", 1), clock.at(0))).is_empty(), "said once");
    assert_eq!(where_is(&workloads, "web/0"), Some(node));
}

#[test]
fn regression_a_report_cannot_adopt_a_pending_instance_even_on_a_cordoned_node() {
    // Case 4: a joined agent could adopt any pending instance, even onto a
    // cordoned node. Only placements the console made are matched.
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = four_alive();
    for node in ["a", "b", "c", "d"] {
        workloads.execute(&OperatorAction::Cordon { node: node.into() }, None, Nodes::new(&nodes)).unwrap();
    }
    workloads.apply(vec![spec("web", 1)]);
    workloads.tick(clock.at(0), Nodes::new(&nodes));
    let effects = workloads.inventory(&name("a"), vec![running("web/0", 0)], clock.at(0));
    assert_eq!(stopped(&effects).len(), 1);
    let effects = workloads.report(&name("a"), running("web/0", 0), clock.at(0));
    assert!(assigned(&effects).is_empty());
    assert_eq!(where_is(&workloads, "web/0"), None, "still pending: nothing was adopted");
}

#[test]
fn regression_an_epoch_above_the_counter_is_refused_and_never_moves_it() {
    // Case 4: an agent pushed the epoch counter to u64::MAX, so the next
    // assignment carried epoch 0.
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, spec("web", 1), &four_alive(), clock.at(0));
    let (node, epoch) = placed["web/0"].clone();
    let counter = workloads.last_epoch();
    let effects = workloads.inventory(&name(&node), vec![running("web/0", u64::MAX)], clock.at(0));
    assert_eq!(stopped(&effects), vec![(node.clone(), "web/0".to_string(), u64::MAX)]);
    assert!(notes(&effects).iter().any(|note| note.contains("epoch above any this console gave")));
    assert_eq!(workloads.last_epoch(), counter);
    // The next placement's epoch is still above the last one.
    workloads.node_changed(&name(&node), NodeState::Left, None, clock.at(0), 4);
    let moved = assigned(&workloads.tick(clock.at(0), Nodes::new(&with_state(&four_alive(), &node, NodeState::Left))));
    assert_eq!(moved[0].2, epoch + 1);
}

#[test]
fn regression_report_messages_are_capped() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, spec("web", 1), &four_alive(), clock.at(0));
    let (node, epoch) = placed["web/0"].clone();
    let mut crash = report("web/0", epoch, InstanceState::Restarting);
    crash.message = "x".repeat(1 << 20);
    let effects = workloads.report(&name(&node), crash, clock.at(0));
    assert!(notes(&effects)[0].len() < 1_024, "{}", notes(&effects)[0].len());
}

#[test]
fn regression_an_instance_may_return_to_a_node_it_failed_over_from() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = alive(&["a", "b"]);
    let placed = placed(&mut workloads, spec("web", 1), &nodes, clock.at(0));
    let (first, _) = placed["web/0"].clone();
    let second = if first == "a" { "b" } else { "a" };
    workloads.node_changed(&name(&first), NodeState::Failed, Some(clock.0), clock.at(0), 2);
    let moved = assigned(&workloads.tick(clock.at(0), Nodes::new(&with_state(&nodes, &first, NodeState::Failed))));
    assert_eq!(moved[0].0, second);
    workloads.report(&name(second), running("web/0", moved[0].2), clock.at(0));
    workloads.node_changed(&name(&first), NodeState::Alive, None, clock.at(30_000), 2);
    workloads.node_changed(&name(second), NodeState::Failed, None, clock.at(30_000), 2);
    let back = assigned(&workloads.tick(clock.at(30_000), Nodes::new(&with_state(&nodes, second, NodeState::Failed))));
    assert_eq!(back.len(), 1, "web/0 goes back to the node it once left");
    assert_eq!(back[0].0, first);
}

#[test]
fn regression_one_flapping_node_does_not_pause_failover() {
    let mut workloads = workloads();
    let clock = Clock::new();
    for step in 0..3u64 {
        workloads.node_changed(&name("a"), NodeState::Failed, None, clock.at(step * 2_000), 4);
        workloads.node_changed(&name("a"), NodeState::Alive, None, clock.at(step * 2_000 + 1_000), 4);
    }
    workloads.node_changed(&name("b"), NodeState::Failed, None, clock.at(7_000), 4);
    assert!(workloads.failover_paused().is_none(), "only b is down now: 1 of 4");
}

#[test]
fn half_the_nodes_failing_at_once_pauses_failover_until_resumed() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, spec("web", 2), &four_alive(), clock.at(0));
    let mut nodes = four_alive();
    for (victim, _) in placed.values() {
        workloads.node_changed(&name(victim), NodeState::Failed, None, clock.at(0), 4);
        nodes = with_state(&nodes, victim, NodeState::Failed);
    }
    assert!(workloads.failover_paused().is_some());
    assert!(assigned(&workloads.tick(clock.at(0), Nodes::new(&nodes))).is_empty(), "paused: nothing moves");
    workloads.execute(&OperatorAction::Resume, None, Nodes::new(&nodes)).unwrap();
    assert_eq!(assigned(&workloads.tick(clock.at(0), Nodes::new(&nodes))).len(), 2);
}

/// Five nodes with `web/0` and `db/0` (gradual, min_healthy 5s) both on "a".
fn two_tasks_on_a(workloads: &mut Workloads, clock: Clock) -> Vec<NodeView> {
    let nodes = alive(&["a", "b", "c", "d", "e"]);
    let mut web = spec("web", 1);
    web.migrate = MigratePolicy { mode: MigrateMode::Gradual, max_parallel: 1, min_healthy: Duration::from_secs(5) };
    let mut db = web.clone();
    db.name = TaskName::parse("db").unwrap();
    placed(workloads, web, &nodes, clock.at(0));
    placed(workloads, db, &nodes, clock.at(0));
    for instance in ["web/0", "db/0"] {
        if where_is(workloads, instance).as_deref() != Some("a") {
            let action = OperatorAction::Migrate { instance: instance.into(), to: "a".into() };
            let (_, effects) = workloads.execute(&action, None, Nodes::new(&nodes)).unwrap();
            let (node, started, epoch) = assigned(&effects)[0].clone();
            workloads.report(&name(&node), running(&started, epoch), clock.at(0));
            workloads.tick(clock.at(5_000), Nodes::new(&nodes));
        }
    }
    assert_eq!(workloads.instances_by_node()[&name("a")].len(), 2);
    nodes
}

#[test]
fn a_drain_cordons_and_is_make_before_break() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = two_tasks_on_a(&mut workloads, clock);
    let (plan, effects) =
        workloads.execute(&OperatorAction::Drain { node: "a".into() }, None, Nodes::new(&nodes)).unwrap();
    assert_eq!(plan.moves.len(), 2);
    assert!(plan.moves.iter().all(|step| step.kind == MoveKind::Migrate));
    assert!(workloads.is_cordoned("a") && workloads.is_draining("a"));
    let started = assigned(&effects);
    assert_eq!(started.len(), 2, "different tasks move in parallel");
    assert!(stopped(&effects).is_empty(), "make-before-break: nothing stops yet");
    for (node, instance, epoch) in &started {
        workloads.report(&name(node), running(instance, *epoch), clock.at(10_000));
    }
    assert!(stopped(&workloads.tick(clock.at(14_000), Nodes::new(&nodes))).is_empty());
    let done = workloads.tick(clock.at(15_000), Nodes::new(&nodes));
    assert_eq!(stopped(&done).len(), 2, "the old copies stop once the new ones are healthy");
    assert!(stopped(&done).iter().all(|(node, _, _)| node == "a"));
    assert!(notes(&done).iter().any(|note| note.contains("drain of \"a\" finished")), "{:?}", notes(&done));
    assert!(!workloads.is_draining("a") && workloads.is_cordoned("a"));
    // Still drained for the data store, whose copies move at their own
    // pace, until the operator uncordons it; a plain cordon is not a drain.
    assert!(workloads.is_drained("a"));
    workloads.execute(&OperatorAction::Uncordon { node: "a".into() }, None, Nodes::new(&nodes)).unwrap();
    assert!(!workloads.is_drained("a") && !workloads.is_cordoned("a"));
    workloads.execute(&OperatorAction::Cordon { node: "a".into() }, None, Nodes::new(&nodes)).unwrap();
    assert!(workloads.is_cordoned("a") && !workloads.is_drained("a"));
}

#[test]
fn regression_duplicate_after_console_crash_during_a_drain() {
    // Case 1: a console killed during a drain's make-before-break forgot
    // the pending "stop the old copy": after the restart both copies ran,
    // the old one untracked. The move is a durable record now: the
    // restarted console matches both copies and stops the old one on time.
    let mut workloads = workloads();
    let clock = Clock::new();
    let mut image = Image::default();
    let nodes = two_tasks_on_a(&mut workloads, clock);
    let web_epoch = workloads.instances[&id("web/0")].record.placement.as_ref().unwrap().epoch;
    let (_, effects) =
        workloads.execute(&OperatorAction::Drain { node: "a".into() }, None, Nodes::new(&nodes)).unwrap();
    let started = assigned(&effects);
    let (target, _, new_epoch) = started.iter().find(|(_, instance, _)| instance == "web/0").unwrap().clone();

    // kill -9, then a restart on the same records.
    let mut back = restarted(&mut workloads, &mut image);
    let resumed = notes(&back.resume(clock.at(20_000)));
    assert!(resumed.iter().any(|note| note.starts_with("resuming the move of web/0")), "{resumed:?}");
    assert!(resumed.iter().any(|note| note.starts_with("resuming the drain of \"a\"")), "{resumed:?}");

    // The agents report what they run: the old copy on "a", the new one on
    // the target. Neither is a stranger.
    let old = back.inventory(&name("a"), vec![running("web/0", web_epoch)], clock.at(20_000));
    assert!(stopped(&old).is_empty(), "the old copy runs until the new one is healthy");
    let new = back.inventory(&name(&target), vec![running("web/0", new_epoch)], clock.at(20_000));
    assert!(stopped(&new).is_empty() && assigned(&new).is_empty());
    assert!(stopped(&back.tick(clock.at(24_000), Nodes::new(&nodes))).iter().all(|(_, i, _)| i != "web/0"));
    let done = back.tick(clock.at(25_000), Nodes::new(&nodes));
    assert!(stopped(&done).contains(&("a".to_string(), "web/0".to_string(), web_epoch)), "{:?}", stopped(&done));
}

#[test]
fn a_copy_the_restarted_console_did_not_place_is_stopped_with_an_event() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let mut image = Image::default();
    let placed = placed(&mut workloads, spec("web", 1), &four_alive(), clock.at(0));
    let (node, epoch) = placed["web/0"].clone();
    let mut back = restarted(&mut workloads, &mut image);
    let stranger = if node == "a" { "b" } else { "a" };
    let effects = back.inventory(&name(stranger), vec![running("web/0", epoch)], clock.at(0));
    assert_eq!(stopped(&effects), vec![(stranger.to_string(), "web/0".to_string(), epoch)]);
    assert!(notes(&effects)[0].contains("did not place"), "{:?}", notes(&effects));
    let effects = back.inventory(&name(&node), vec![running("web/0", epoch)], clock.at(0));
    assert!(stopped(&effects).is_empty(), "the placed copy is matched");
    assert_eq!(back.task_status()[0].instances[0].state, "running");
}

#[test]
fn an_instance_missing_from_an_inventory_is_assigned_again() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, spec("web", 1), &four_alive(), clock.at(0));
    let (node, epoch) = placed["web/0"].clone();
    let again = assigned(&workloads.inventory(&name(&node), Vec::new(), clock.at(0)));
    assert_eq!(again, vec![(node, "web/0".to_string(), epoch)]);
}

#[test]
fn a_fenced_copy_reported_stopped_runs_again() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, spec("web", 1), &four_alive(), clock.at(0));
    let (node, epoch) = placed["web/0"].clone();
    let effects = workloads.inventory(&name(&node), vec![report("web/0", epoch, InstanceState::Stopped)], clock.at(0));
    assert_eq!(assigned(&effects), vec![(node, "web/0".to_string(), epoch)]);
}

#[test]
fn plans_are_pure_and_what_if_is_never_executed() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = four_alive();
    let placed = placed(&mut workloads, spec("web", 2), &nodes, clock.at(0));
    workloads.take_changes();
    let (victim, _) = placed["web/0"].clone();
    let version = workloads.version();
    let plan = workloads.plan(&OperatorAction::WhatIf { node: victim.clone() }, Nodes::new(&nodes)).unwrap();
    assert_eq!(plan.moves.len(), 1);
    assert_ne!(plan.moves[0].to.as_deref(), Some(victim.as_str()));
    assert_eq!(plan.headroom_before.failures_survived, Some(1));
    assert_eq!(where_is(&workloads, "web/0"), Some(victim));
    assert_eq!(workloads.version(), version, "planning changes nothing");
    assert!(workloads.take_changes().is_empty());
    let err = workloads.execute(&OperatorAction::WhatIf { node: "a".into() }, None, Nodes::new(&nodes));
    assert!(matches!(err, Err(ActError::Refused(_))));
}

#[test]
fn random_placement_plans_the_same_twice_and_executes_what_was_planned() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = alive(&["a", "b", "c", "d", "e", "f", "g", "h"]);
    let mut task = spec("web", 3);
    task.placement = Strategy::Random;
    placed(&mut workloads, task, &nodes, clock.at(0));
    let node = where_is(&workloads, "web/0").unwrap();
    let drain = OperatorAction::Drain { node: node.clone() };
    let first = workloads.plan(&drain, Nodes::new(&nodes)).unwrap();
    let second = workloads.plan(&drain, Nodes::new(&nodes)).unwrap();
    assert!(first.same_moves(&second), "no hidden counter or random step moved");
    let (executed, effects) = workloads.execute(&drain, Some(&first), Nodes::new(&nodes)).unwrap();
    assert!(executed.same_moves(&first));
    assert_eq!(assigned(&effects)[0].0, first.moves[0].to.clone().unwrap());
}

#[test]
fn a_confirmed_plan_that_no_longer_holds_is_refused_with_the_fresh_one() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = four_alive();
    placed(&mut workloads, spec("web", 1), &nodes, clock.at(0));
    let node = where_is(&workloads, "web/0").unwrap();
    let drain = OperatorAction::Drain { node: node.clone() };
    let confirmed = workloads.plan(&drain, Nodes::new(&nodes)).unwrap();
    // Meanwhile the planned target is cordoned.
    let target = confirmed.moves[0].to.clone().unwrap();
    workloads.execute(&OperatorAction::Cordon { node: target.clone() }, None, Nodes::new(&nodes)).unwrap();
    match workloads.execute(&drain, Some(&confirmed), Nodes::new(&nodes)) {
        Err(ActError::Changed(fresh)) => {
            assert_ne!(fresh.moves[0].to.as_deref(), Some(target.as_str()));
        }
        other => panic!("expected the fresh plan, got {other:?}"),
    }
    assert!(!workloads.is_draining(&node), "nothing was done");
}

#[test]
fn cordoned_nodes_receive_nothing() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = four_alive();
    for node in ["a", "b", "c"] {
        workloads.execute(&OperatorAction::Cordon { node: node.into() }, None, Nodes::new(&nodes)).unwrap();
    }
    let placed = placed(&mut workloads, spec("web", 2), &nodes, clock.at(0));
    assert_eq!(placed.len(), 1, "only one eligible node for two replicas");
    assert!(placed.values().all(|(node, _)| node == "d"));
    let states: Vec<String> = workloads.task_status()[0].instances.iter().map(|i| i.state.clone()).collect();
    assert!(states.contains(&"pending".to_string()), "{states:?}");
}

#[test]
fn regression_ten_thousand_replicas_on_two_nodes_wait_without_retrying_every_tick() {
    // Case 3: reconcile retried every pending instance every tick, each
    // placement scanning all instances: 41.6 CPU-seconds in 27 s.
    let mut workloads = workloads();
    let clock = Clock::new();
    let nodes = alive(&["a", "b"]);
    workloads.apply(vec![spec("big", ringwatch_shared::task::MAX_REPLICAS)]);
    let first = workloads.tick(clock.at(0), Nodes::new(&nodes));
    assert_eq!(assigned(&first).len(), 2);
    let waiting: Vec<String> = notes(&first).into_iter().filter(|note| note.contains("wait for a node")).collect();
    assert_eq!(waiting.len(), 1, "said once: {waiting:?}");
    assert!(waiting[0].starts_with("9998 instance(s) of \"big\""), "{waiting:?}");
    // Nothing changed: the next ticks try nothing and say nothing.
    assert!(!workloads.placement_due);
    for tick in 1..=20 {
        let effects = workloads.tick(clock.at(tick * 100), Nodes::new(&nodes));
        assert!(effects.outgoing.is_empty() && effects.notes.is_empty());
    }
    // A node joins: one more is placed, and the rest wait (said once more,
    // with the new count), then nothing again.
    let three = alive(&["a", "b", "c"]);
    workloads.node_changed(&name("c"), NodeState::Alive, None, clock.at(3_000), 3);
    let effects = workloads.tick(clock.at(3_000), Nodes::new(&three));
    assert_eq!(assigned(&effects).len(), 1);
    let waiting: Vec<String> = notes(&effects).into_iter().filter(|note| note.contains("wait for a node")).collect();
    assert!(waiting.len() == 1 && waiting[0].starts_with("9997 instance(s)"), "{waiting:?}");
    assert!(workloads.tick(clock.at(3_100), Nodes::new(&three)).notes.is_empty());
}

#[test]
fn scaling_down_stops_the_highest_indices() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let placed = placed(&mut workloads, spec("web", 3), &four_alive(), clock.at(0));
    let effects = workloads.apply(vec![spec("web", 1)]);
    let stops = stopped(&effects);
    assert_eq!(stops.len(), 2);
    assert!(stops.contains(&(placed["web/2"].0.clone(), "web/2".to_string(), placed["web/2"].1)));
    assert_eq!(workloads.task_status()[0].instances.len(), 1);
}

#[test]
fn a_restart_keeps_placements_cordons_and_the_epoch_counter() {
    let mut workloads = workloads();
    let clock = Clock::new();
    let mut image = Image::default();
    let nodes = four_alive();
    let placed = placed(&mut workloads, spec("web", 2), &nodes, clock.at(0));
    workloads.execute(&OperatorAction::Cordon { node: "d".into() }, None, Nodes::new(&nodes)).unwrap();
    let counter = workloads.last_epoch();
    let back = restarted(&mut workloads, &mut image);
    assert_eq!(back.last_epoch(), counter);
    assert!(back.is_cordoned("d"));
    for (instance, (node, _)) in &placed {
        assert_eq!(where_is(&back, instance).as_ref(), Some(node));
    }
}

#[test]
fn a_move_toward_a_node_that_had_left_is_undone_at_restart() {
    let clock = Clock::new();
    let web = spec("web", 1);
    let mut record = InstanceRecord::new(id("web/0"));
    record.source = Some(Placement { node: name("a"), epoch: 1 });
    record.placement = Some(Placement { node: name("b"), epoch: 2 });
    let records = WorkloadRecords {
        tasks: [(web.name.clone(), web)].into(),
        instances: [(id("web/0"), record)].into(),
        nodes: [(name("b"), NodeRecord::new(name("b"), NodeState::Left))].into(),
        cluster: None,
    };
    let mut workloads = Workloads::new(WorkloadConfig::default(), records, 1);
    let said = notes(&workloads.resume(clock.at(0)));
    assert!(said.iter().any(|note| note.starts_with("undoing the move of web/0 to \"b\"")), "{said:?}");
    assert_eq!(where_is(&workloads, "web/0").as_deref(), Some("a"));
    assert!(workloads.take_changes().iter().any(|change| matches!(change, Change::Instance(_))), "the undo is durable");
}

/// Found with the repair bench: the data ring was the task ring, over the
/// nodes that may receive work only, so a holder that turned `suspect` for
/// a moment fell off it, and the repair plan made every copy it held again
/// elsewhere at once — without waiting for a failure, let alone the repair
/// delay. The data ring keeps every known node; skipping the ones that take
/// no new copies gives the task ring's order.
#[test]
fn regression_a_suspect_holder_stays_on_the_data_ring_and_its_order_is_the_task_rings() {
    let mut workloads = workloads();
    let nodes = with_state(&alive(&["a", "b", "c", "d", "e"]), "c", NodeState::Suspect);
    let ring = workloads.data_ring(Nodes::new(&nodes));
    assert!(ring.nodes().any(|node| node == "c"), "the suspect holder is on the data ring");
    let task_ring = Ring::new(["a", "b", "d", "e"].map(|node| (node.to_string(), 1)));
    for i in 0..200 {
        let key = format!("object-{i}");
        assert_eq!(ring.replicas(&key, 3, |node| node != "c"), task_ring.replicas(&key, 3, |_| true), "{key}");
    }
    assert!(Arc::ptr_eq(&ring, &workloads.data_ring(Nodes::new(&nodes))), "kept while the nodes are the same");
    let recovered = alive(&["a", "b", "c", "d", "e"]);
    assert!(Arc::ptr_eq(&ring, &workloads.data_ring(Nodes::new(&recovered))), "a state change keeps it too");
}
