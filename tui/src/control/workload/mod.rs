//! Workloads: the desired tasks, where each instance is placed, and the
//! reconciliation that drives actual toward desired (DESIGN §5–6,
//! ARCHITECTURE.md "The scheduler").
//!
//! Pure state, owned by the owner task: callers pass the time ([`Now`]) and
//! a narrow view of the nodes ([`NodeView`]), and get back [`Effects`] —
//! frames for agents and sentences for the event log. Every change to a
//! durable record marks it, and [`Workloads::take_changes`] hands the marked
//! records to the change log; nothing here does I/O.
//!
//! Invariants kept here (ARCHITECTURE.md, "Invariants"):
//! - the instances of a task run on distinct nodes;
//! - every placement has a fresh epoch no higher than the cluster's
//!   counter, and a copy an agent reports is tolerated only if it matches a
//!   placement (node and epoch) the console made: anything else is stopped;
//! - a failed node's instances move only after the policy's delay, and — when
//!   fenced (`on_disconnect.stop_after = D`) — not before D plus a margin
//!   after the node's last heartbeat, so at most one copy runs;
//! - operator migrations and drains are make-before-break, and every step of
//!   them is a durable record, so a console restarted half-way resumes them;
//! - automatic moves are rate-limited, and pause when a large share of the
//!   nodes fail at once (the console distrusts itself before the fleet);
//! - a pending instance that cannot be placed waits for a change instead of
//!   being retried every tick, and says so once.
//!
//! # Layout
//! - [`placement`](self::placement): choosing nodes over a snapshot of
//!   candidates.
//! - `plan`: operator actions, planned (pure) and executed.
//! - `reports`: what agents report, checked against the placements.

mod placement;
mod plan;
mod recent_failures;
mod reports;
#[cfg(test)]
mod tally_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use ringwatch_shared::bounds::{cap_message, instant_after};
use ringwatch_shared::names::{InstanceId, NodeName, TaskName};
use ringwatch_shared::placement::Headroom;
use ringwatch_shared::protocol::{Assignment, ConsoleFrame, InstanceState};
use ringwatch_shared::ring::Ring;
use ringwatch_shared::status::{EventKind, InstanceStatus, NodeState, TaskStatus};
use ringwatch_shared::task::{MigrateMode, OnDisconnect, RestartMode, TaskSpec};

use self::placement::Candidates;
pub use self::plan::ActError;
use self::recent_failures::RecentFailures;
use crate::control::records::{Change, ClusterRecord, InstanceRecord, NodeRecord, Placement};
use crate::control::tally::{FailoverReason, MoveKind, Tally};

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Bounded-load ε; `None` disables the bound.
    pub load_bound: Option<f64>,
    /// Automatic moves (failovers) allowed per second (token bucket).
    pub moves_per_second: f64,
    /// Burst of the token bucket.
    pub move_burst: f64,
    /// Added to a fenced task's `stop_after` before its replacement starts.
    pub fencing_margin: Duration,
    /// Share of the nodes whose failure within `mass_failure_window` pauses
    /// automatic failover.
    pub mass_failure_share: f64,
    /// See `mass_failure_share`.
    pub mass_failure_window: Duration,
    /// Most placements one reconcile step makes: a 10,000-replica task is
    /// placed over several ticks instead of stalling the owner in one.
    pub max_placements_per_tick: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            load_bound: Some(0.25),
            moves_per_second: 20.0,
            move_burst: 50.0,
            fencing_margin: Duration::from_secs(1),
            mass_failure_share: 0.5,
            mass_failure_window: Duration::from_secs(10),
            max_placements_per_tick: 500,
        }
    }
}

/// The time, both ways: monotonic for durations this process measures,
/// wall-clock for deadlines that must survive a restart.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic.
    pub at: Instant,
    /// Wall clock, milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl Now {
    /// The time now, read from the clocks (the owner's edge; tests build
    /// their own).
    pub fn read() -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        Self { at: Instant::now(), unix_ms }
    }

    /// `wait` from now, on the wall clock.
    pub fn wall_after(self, wait: Duration) -> u64 {
        self.unix_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
    }

    /// The wall-clock time of `instant` (past or future).
    pub fn wall_of(self, instant: Instant) -> u64 {
        if instant >= self.at {
            self.wall_after(instant - self.at)
        } else {
            self.unix_ms.saturating_sub(u64::try_from((self.at - instant).as_millis()).unwrap_or(u64::MAX))
        }
    }

    /// How long until the wall-clock time `unix_ms` (zero if past).
    pub fn until(self, unix_ms: u64) -> Duration {
        Duration::from_millis(unix_ms.saturating_sub(self.unix_ms))
    }
}

/// What the scheduler needs to know of a node: nothing of the status
/// document, only what placement decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    /// Its name.
    pub name: NodeName,
    /// Its state.
    pub state: NodeState,
    /// Ring weight.
    pub weight: u32,
    /// Free CPU, 0.0–1.0, for the `weighted` strategy.
    pub cpu_free: f64,
}

/// Node views sorted by name, looked up without allocating.
#[derive(Debug, Clone, Copy)]
pub struct Nodes<'a>(&'a [NodeView]);

impl<'a> Nodes<'a> {
    /// `views` must be sorted by name (the node table's order).
    pub fn new(views: &'a [NodeView]) -> Self {
        debug_assert!(views.windows(2).all(|pair| pair[0].name < pair[1].name));
        Self(views)
    }

    /// The node called `name`.
    pub fn get(self, name: &str) -> Option<&'a NodeView> {
        self.0.binary_search_by(|view| view.name.as_str().cmp(name)).ok().map(|at| &self.0[at])
    }

    /// Whether `name` is up.
    pub fn is_up(self, name: &str) -> bool {
        self.get(name).is_some_and(|view| view.state.is_up())
    }

    /// Every node.
    pub fn all(self) -> &'a [NodeView] {
        self.0
    }
}

/// An instance's state as the console shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a node.
    Pending,
    /// Assigned, not yet reported running.
    Starting,
    /// Running.
    Running,
    /// Crashed; its agent restarts it.
    Restarting,
    /// Being stopped.
    Stopping,
    /// Stopped (fenced, or on request).
    Stopped,
    /// Gave up on its node; about to be placed elsewhere.
    Failed,
}

impl Phase {
    /// The name `status` shows: an agent's own word for every reported
    /// state, `pending` for the one only the console knows.
    fn as_str(self) -> &'static str {
        self.reported().map_or("pending", InstanceState::as_str)
    }

    /// The agent-side state this phase mirrors; `None` for `Pending`.
    fn reported(self) -> Option<InstanceState> {
        match self {
            Self::Pending => None,
            Self::Starting => Some(InstanceState::Starting),
            Self::Running => Some(InstanceState::Running),
            Self::Restarting => Some(InstanceState::Restarting),
            Self::Stopping => Some(InstanceState::Stopping),
            Self::Stopped => Some(InstanceState::Stopped),
            Self::Failed => Some(InstanceState::Failed),
        }
    }

    fn from_report(state: InstanceState) -> Self {
        match state {
            InstanceState::Starting => Self::Starting,
            InstanceState::Running => Self::Running,
            InstanceState::Restarting => Self::Restarting,
            InstanceState::Stopping => Self::Stopping,
            InstanceState::Stopped => Self::Stopped,
            InstanceState::Failed => Self::Failed,
        }
    }
}

/// One instance: its durable record, and what only this process knows of
/// it (reset by a restart, relearnt from the agents' reports).
#[derive(Debug, Clone)]
struct Instance {
    /// What survives a restart.
    record: InstanceRecord,
    /// Its state as last reported.
    phase: Phase,
    /// Since when it has been running, for `min_healthy`.
    running_since: Option<Instant>,
    /// Restarts in place its agent reported.
    restarts: u32,
    /// The last thing its agent said (capped).
    message: String,
}

impl Instance {
    fn new(record: InstanceRecord) -> Self {
        let phase = if record.placement.is_some() { Phase::Starting } else { Phase::Pending };
        Self { record, phase, running_since: None, restarts: 0, message: String::new() }
    }

    /// Whether it has run healthy for `min_healthy` by `now`.
    fn healthy(&self, min_healthy: Duration, now: Instant) -> bool {
        self.phase == Phase::Running
            && self.running_since.is_some_and(|since| now.saturating_duration_since(since) >= min_healthy)
    }
}

/// What the scheduler asks the server to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The node whose agent receives it.
    pub node: NodeName,
    /// The frame.
    pub frame: ConsoleFrame,
}

/// A sentence for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// What it is about.
    pub kind: EventKind,
    /// The task concerned, if one is.
    pub task: Option<TaskName>,
    /// The node concerned, if one is.
    pub node: Option<NodeName>,
    /// What happened.
    pub text: String,
}

/// The result of a step: frames to send and events to log.
#[derive(Debug, Default)]
pub struct Effects {
    /// Frames for agents.
    pub outgoing: Vec<Outgoing>,
    /// Events.
    pub notes: Vec<Note>,
    /// What the step counted, for `/metrics`.
    pub tally: Tally,
}

impl Effects {
    fn note(&mut self, kind: EventKind, task: Option<&TaskName>, node: Option<&NodeName>, text: String) {
        self.notes.push(Note { kind, task: task.cloned(), node: node.cloned(), text });
    }

    fn send(&mut self, node: &NodeName, frame: ConsoleFrame) {
        self.outgoing.push(Outgoing { node: node.clone(), frame });
    }

    fn stop(&mut self, node: &NodeName, instance: &InstanceId, epoch: u64, reason: &str) {
        self.send(node, ConsoleFrame::Stop { instance: instance.clone(), epoch, reason: reason.to_string() });
    }

    /// Appends `other`.
    pub fn extend(&mut self, other: Self) {
        self.outgoing.extend(other.outgoing);
        self.notes.extend(other.notes);
        self.tally.add(&other.tally);
    }
}

/// Records changed since the last [`Workloads::take_changes`].
#[derive(Debug, Default)]
struct Dirty {
    tasks: BTreeSet<TaskName>,
    instances: BTreeSet<InstanceId>,
    nodes: BTreeSet<NodeName>,
    cluster: bool,
}

/// The durable records the scheduler starts from.
#[derive(Debug, Default)]
pub struct WorkloadRecords {
    /// Desired tasks.
    pub tasks: BTreeMap<TaskName, TaskSpec>,
    /// Instances.
    pub instances: BTreeMap<InstanceId, InstanceRecord>,
    /// Nodes.
    pub nodes: BTreeMap<NodeName, NodeRecord>,
    /// The cluster record, if one was stored.
    pub cluster: Option<ClusterRecord>,
}

/// The scheduler.
#[derive(Debug)]
pub struct Workloads {
    /// Settings.
    config: WorkloadConfig,
    /// Desired tasks.
    tasks: BTreeMap<TaskName, TaskSpec>,
    /// Every instance of every task.
    instances: BTreeMap<InstanceId, Instance>,
    /// Cordons, drains and last states.
    nodes: BTreeMap<NodeName, NodeRecord>,
    /// Counters and the failover pause.
    cluster: ClusterRecord,
    /// What changed since the change log last took it.
    dirty: Dirty,
    /// Bumped on every change a status reader could see.
    version: u64,
    /// Tokens for automatic moves.
    tokens: f64,
    /// When tokens were last added.
    last_refill: Option<Instant>,
    /// Recent failures `(node, when)` of nodes still down, for the
    /// mass-failure guard.
    recent_failures: RecentFailures,
    /// The ring over the nodes that may receive work (shared with the
    /// candidates of a step).
    ring: Arc<Ring>,
    /// The `(name, weight)` set the ring was built from.
    ring_members: Vec<(NodeName, u32)>,
    /// When the ring was last rebuilt.
    ring_built_at: Option<Instant>,
    /// The data store's ring: over every known node (see
    /// [`Workloads::data_ring`]), and the `(name, weight)` set it was
    /// built from.
    data_ring: Arc<Ring>,
    data_ring_members: Vec<(NodeName, u32)>,
    /// Something changed that may let a pending instance be placed: the
    /// reconcile step tries only then (or when it ran out of budget).
    placement_due: bool,
    /// Tasks whose waiting instances were reported, so the event log says
    /// it once per episode.
    blocked_said: BTreeSet<TaskName>,
    /// Stops already sent for copies the console did not place, so a
    /// chatty agent cannot make it repeat itself (cleared when the agent
    /// reconnects).
    stops_sent: BTreeSet<(NodeName, InstanceId, u64)>,
}

/// The shortest time between two rebuilds of the placement ring.
const RING_REFRESH: Duration = Duration::from_secs(1);

/// Most remembered stops of unplaced copies; beyond it the memory resets
/// (a stop sent twice is harmless, unbounded memory is not).
const MAX_STOPS_REMEMBERED: usize = 10_000;

impl Workloads {
    /// A scheduler resuming `records`; a new cluster's random placements
    /// start from `seed`.
    pub fn new(config: WorkloadConfig, records: WorkloadRecords, seed: u64) -> Self {
        let WorkloadRecords { tasks, instances, nodes, cluster } = records;
        let mut dirty = Dirty::default();
        let mut cluster = cluster.unwrap_or_else(|| {
            dirty.cluster = true;
            ClusterRecord::new(seed)
        });
        // The counter is at least every epoch handed out, whatever a damaged
        // or hand-edited store says.
        let highest = instances
            .values()
            .flat_map(|record| record.placement.iter().chain(&record.source))
            .map(|placement| placement.epoch)
            .max()
            .unwrap_or(0);
        if highest > cluster.last_epoch {
            cluster.last_epoch = highest;
            dirty.cluster = true;
        }
        let tokens = config.move_burst;
        let mut workloads = Self {
            config,
            tasks,
            instances: instances.into_iter().map(|(id, record)| (id, Instance::new(record))).collect(),
            nodes,
            cluster,
            dirty,
            version: 1,
            tokens,
            last_refill: None,
            recent_failures: RecentFailures::default(),
            ring: Arc::new(Ring::default()),
            ring_members: Vec::new(),
            ring_built_at: None,
            data_ring: Arc::new(Ring::default()),
            data_ring_members: Vec::new(),
            placement_due: true,
            blocked_said: BTreeSet::new(),
            stops_sent: BTreeSet::new(),
        };
        workloads.reconcile_records();
        workloads
    }

    /// Makes the instances match the tasks after a load: every index of
    /// every task exists, and nothing exists without its task.
    fn reconcile_records(&mut self) {
        let orphans: Vec<InstanceId> =
            self.instances.keys().filter(|id| !self.tasks.contains_key(id.task())).cloned().collect();
        for id in orphans {
            self.instances.remove(&id);
            self.dirty.instances.insert(id);
        }
        for spec in self.tasks.values() {
            for index in 0..spec.replicas {
                if let Ok(id) = InstanceId::new(spec.name.clone(), index)
                    && !self.instances.contains_key(&id)
                {
                    self.instances.insert(id.clone(), Instance::new(InstanceRecord::new(id.clone())));
                    self.dirty.instances.insert(id);
                }
            }
        }
    }

    /// Takes up the pending steps found in the records at start, and says
    /// in the event log what becomes of each: a move is resumed (its old
    /// copy stops once the new one is healthy) or, when its target node had
    /// left, undone; a delayed failover keeps its deadline; a drain goes on;
    /// a pause stays in force.
    pub fn resume(&mut self, now: Now) -> Effects {
        let mut effects = Effects::default();
        let left = |node: &NodeName| self.nodes.get(node).is_some_and(|record| record.last_state == NodeState::Left);
        let undo: Vec<InstanceId> = self
            .instances
            .iter()
            .filter(|(_, instance)| instance.record.source.is_some() && instance.record.node().is_some_and(&left))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &undo {
            let Some(instance) = self.instances.get_mut(id) else { continue };
            let target = instance.record.placement.take().map(|placement| placement.node);
            instance.record.placement = instance.record.source.take();
            let (Some(target), Some(kept)) = (target, instance.record.node().cloned()) else { continue };
            effects.note(
                EventKind::Failover,
                Some(id.task()),
                Some(&target),
                format!("undoing the move of {id} to \"{target}\": it had left; {id} stays on \"{kept}\""),
            );
        }
        for id in undo {
            self.touch(&id);
        }
        for (id, instance) in &self.instances {
            let record = &instance.record;
            if let (Some(source), Some(target)) = (&record.source, &record.placement) {
                let min_healthy = self.tasks.get(id.task()).map_or(Duration::ZERO, |spec| spec.migrate.min_healthy);
                effects.note(EventKind::Instance, Some(id.task()),
                    Some(&target.node),
                    format!(
                        "resuming the move of {id} from \"{}\" to \"{}\": the old copy stops once the new one has run {}",
                        source.node,
                        target.node,
                        ringwatch_shared::duration::format_duration(min_healthy)
                    ),
                );
            }
            if let (Some(due), Some(placement)) = (record.failover_due_unix_ms, &record.placement) {
                effects.note(
                    EventKind::Failover,
                    Some(id.task()),
                    Some(&placement.node),
                    format!(
                        "resuming the delayed failover of {id}: it moves in {:.1}s unless \"{}\" returns",
                        now.until(due).as_secs_f64(),
                        placement.node
                    ),
                );
            }
        }
        for node in self.nodes.values().filter(|node| node.draining) {
            let left = self.instances.values().filter(|instance| instance.record.touches(node.name.as_str())).count();
            effects.note(
                EventKind::Operator,
                None,
                Some(&node.name),
                format!("resuming the drain of \"{}\": {left} instance(s) still to move", node.name),
            );
        }
        if let Some(reason) = &self.cluster.failover_paused {
            effects.note(EventKind::Failover, None, None, format!("automatic failover is still paused: {reason}"));
        }
        effects
    }

    /// The changed records, in a stable order, for the change log.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut changes = Vec::new();
        for name in dirty.tasks {
            changes.push(match self.tasks.get(&name) {
                Some(spec) => Change::Task(spec.clone()),
                None => Change::TaskRemoved(name),
            });
        }
        for id in dirty.instances {
            changes.push(match self.instances.get(&id) {
                Some(instance) => Change::Instance(instance.record.clone()),
                None => Change::InstanceRemoved(id),
            });
        }
        for name in dirty.nodes {
            if let Some(record) = self.nodes.get(&name) {
                changes.push(Change::Node(record.clone()));
            }
        }
        if dirty.cluster {
            changes.push(Change::Cluster(self.cluster.clone()));
        }
        changes
    }

    /// Bumped whenever anything `status` shows changed.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn changed(&mut self) {
        self.version += 1;
    }

    fn touch(&mut self, id: &InstanceId) {
        self.dirty.instances.insert(id.clone());
        self.version += 1;
    }

    fn touch_cluster(&mut self) {
        self.dirty.cluster = true;
        self.version += 1;
    }

    fn node_record(&mut self, name: &NodeName) -> &mut NodeRecord {
        self.dirty.nodes.insert(name.clone());
        self.version += 1;
        self.nodes.entry(name.clone()).or_insert_with(|| NodeRecord::new(name.clone(), NodeState::Unknown))
    }

    /// A fresh epoch for a new placement.
    fn next_epoch(&mut self) -> u64 {
        self.cluster.last_epoch = self.cluster.last_epoch.saturating_add(1);
        self.touch_cluster();
        self.cluster.last_epoch
    }

    /// Whether `node` is cordoned.
    pub fn is_cordoned(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|record| record.cordoned)
    }

    /// Whether `node` is being drained.
    pub fn is_draining(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|record| record.draining)
    }

    /// Whether `node` was drained and not uncordoned since (being drained
    /// included): the data store moves its copies off.
    pub fn is_drained(&self, node: &str) -> bool {
        // `drained` is set with `draining`; a record written before it
        // existed has only `draining`.
        self.nodes.get(node).is_some_and(|record| record.draining || record.drained)
    }

    /// Why automatic failover is paused, if it is.
    pub fn failover_paused(&self) -> Option<&str> {
        self.cluster.failover_paused.as_deref()
    }

    /// The highest epoch handed out.
    pub fn last_epoch(&self) -> u64 {
        self.cluster.last_epoch
    }

    /// Every node the records know, with its last recorded state.
    pub fn node_records(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// Adds or replaces tasks (tasks not named are kept). The specs must
    /// have been validated.
    pub fn apply(&mut self, specs: Vec<TaskSpec>) -> Effects {
        let mut effects = Effects::default();
        for spec in specs {
            let name = spec.name.clone();
            let previous = self.tasks.insert(name.clone(), spec.clone());
            match &previous {
                None => effects.note(
                    EventKind::Task,
                    Some(&name),
                    None,
                    format!("task \"{name}\" added with {} replica(s)", spec.replicas),
                ),
                Some(old) if old == &spec => continue,
                Some(_) => effects.note(EventKind::Task, Some(&name), None, format!("task \"{name}\" updated")),
            }
            self.dirty.tasks.insert(name.clone());
            self.changed();
            self.placement_due = true;
            self.blocked_said.remove(&name);
            let changed_run = previous.as_ref().is_some_and(|old| {
                old.command != spec.command || old.restart != spec.restart || old.on_disconnect != spec.on_disconnect
            });
            let ids: Vec<InstanceId> =
                (0..spec.replicas).filter_map(|index| InstanceId::new(name.clone(), index).ok()).collect();
            for id in ids {
                if !self.instances.contains_key(&id) {
                    self.instances.insert(id.clone(), Instance::new(InstanceRecord::new(id.clone())));
                    self.touch(&id);
                    continue;
                }
                if !changed_run {
                    continue;
                }
                // A new command deserves another chance on every node; a
                // placed instance is replaced in place under a new epoch.
                let placed = self.instances.get(&id).and_then(|instance| instance.record.placement.clone());
                let epoch = if placed.is_some() { Some(self.next_epoch()) } else { None };
                if let Some(instance) = self.instances.get_mut(&id) {
                    instance.record.avoid.clear();
                    if let (Some(placement), Some(epoch)) = (instance.record.placement.as_mut(), epoch) {
                        placement.epoch = epoch;
                        instance.phase = Phase::Starting;
                        instance.running_since = None;
                        effects.send(&placement.node, assign_frame(&id, &spec, epoch));
                    }
                }
                self.touch(&id);
            }
            let surplus: Vec<InstanceId> =
                self.instances.keys().filter(|id| *id.task() == name && id.index() >= spec.replicas).cloned().collect();
            for id in surplus {
                self.retire(&id, "scaled down", &mut effects);
            }
        }
        effects
    }

    /// Removes a task and stops its instances.
    ///
    /// # Errors
    /// When there is no such task.
    pub fn remove(&mut self, name: &str) -> Result<Effects, String> {
        let Some(spec) = self.tasks.remove(name) else {
            return Err(format!("no task named \"{name}\""));
        };
        let mut effects = Effects::default();
        let ids: Vec<InstanceId> = self.instances.keys().filter(|id| *id.task() == spec.name).cloned().collect();
        for id in ids {
            self.retire(&id, "task removed", &mut effects);
        }
        self.dirty.tasks.insert(spec.name.clone());
        self.blocked_said.remove(&spec.name);
        self.changed();
        self.placement_due = true;
        effects.note(EventKind::Task, Some(&spec.name), None, format!("task \"{name}\" removed"));
        Ok(effects)
    }

    /// Stops an instance wherever it runs and forgets it.
    fn retire(&mut self, id: &InstanceId, reason: &str, effects: &mut Effects) {
        if let Some(instance) = self.instances.remove(id) {
            for copy in instance.record.placement.iter().chain(&instance.record.source) {
                effects.stop(&copy.node, id, copy.epoch, reason);
            }
            self.touch(id);
        }
    }

    /// A node changed state. `last_heard` is when it was last heard from,
    /// if it ever was in this process's life.
    pub fn node_changed(
        &mut self,
        node: &NodeName,
        to: NodeState,
        last_heard: Option<Instant>,
        now: Now,
        total_nodes: usize,
    ) -> Effects {
        let mut effects = Effects::default();
        let record = self.node_record(node);
        // `unknown` is what a restart makes of every node: it says nothing
        // about where the node was, so it is not recorded.
        if to != NodeState::Unknown {
            record.last_state = to;
        }
        self.placement_due = true;
        match to {
            NodeState::Failed | NodeState::Left => {
                if to == NodeState::Failed {
                    self.note_failure(node, now.at, total_nodes, &mut effects);
                }
                self.lose_node(node, to, last_heard, now, &mut effects);
            }
            NodeState::Alive | NodeState::Degraded => {
                // Back: its failure no longer counts toward a mass failure,
                // and its instances stay.
                self.recent_failures.forget(node);
                let staying: Vec<InstanceId> = self
                    .instances
                    .iter()
                    .filter(|(_, instance)| {
                        instance.record.failover_due_unix_ms.is_some() && instance.record.node() == Some(node)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in staying {
                    if let Some(instance) = self.instances.get_mut(&id) {
                        instance.record.failover_due_unix_ms = None;
                    }
                    self.touch(&id);
                    effects.note(
                        EventKind::Failover,
                        Some(id.task()),
                        Some(node),
                        format!("{id} stays: \"{node}\" returned in time"),
                    );
                }
            }
            NodeState::Suspect | NodeState::Unknown => {}
        }
        effects
    }

    /// `node` failed or left: its instances move (now, or when their
    /// policy allows), the old copies of moves it held are gone, and moves
    /// toward it are abandoned.
    fn lose_node(
        &mut self,
        node: &NodeName,
        to: NodeState,
        last_heard: Option<Instant>,
        now: Now,
        effects: &mut Effects,
    ) {
        let affected: Vec<InstanceId> = self
            .instances
            .iter()
            .filter(|(_, instance)| instance.record.touches(node.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in affected {
            let Some(spec) = self.tasks.get(id.task()).cloned() else { continue };
            let Some(instance) = self.instances.get_mut(&id) else { continue };
            let record = &mut instance.record;
            if record.source.as_ref().is_some_and(|source| source.node == *node) {
                // A make-before-break source is simply gone.
                record.source = None;
            }
            if record.node() == Some(node) {
                if let Some(source) = record.source.take() {
                    // The move toward this node is abandoned: the old copy
                    // still runs where it was.
                    effects.note(
                        EventKind::Failover,
                        Some(id.task()),
                        Some(node),
                        format!("the move of {id} to \"{node}\" is abandoned: {id} stays on \"{}\"", source.node),
                    );
                    record.placement = Some(source);
                    instance.phase = Phase::Running;
                    instance.running_since = Some(now.at);
                } else if record.failover_due_unix_ms.is_none() {
                    let due = if to == NodeState::Left {
                        // It stopped its instances on the way out.
                        now.at
                    } else {
                        failover_due(&spec, last_heard, now.at, self.config.fencing_margin)
                    };
                    record.failover_due_unix_ms = Some(now.wall_of(due));
                    let wait = due.saturating_duration_since(now.at);
                    if to == NodeState::Left {
                        effects.note(
                            EventKind::Failover,
                            Some(id.task()),
                            Some(node),
                            format!("{id} moves: \"{node}\" left"),
                        );
                    } else if !wait.is_zero() {
                        effects.note(
                            EventKind::Failover,
                            Some(id.task()),
                            Some(node),
                            format!("{id} moves in {:.1}s unless \"{node}\" returns", wait.as_secs_f64()),
                        );
                    }
                }
            }
            self.touch(&id);
        }
    }

    /// Counts distinct nodes that failed within the window and are still
    /// down; pauses automatic failover when they are a large share.
    fn note_failure(&mut self, node: &NodeName, now: Instant, total_nodes: usize, effects: &mut Effects) {
        let failures = self.recent_failures.record(node, now, self.config.mass_failure_window);
        #[allow(clippy::cast_precision_loss)] // node counts
        let share = failures as f64 / total_nodes.max(1) as f64;
        if self.cluster.failover_paused.is_none() && failures >= 2 && share >= self.config.mass_failure_share {
            let reason = format!(
                "{failures} of {total_nodes} nodes failed within {}s: automatic failover is PAUSED (a console-side network fault must not become a mass migration); resume with `ringwatch resume` or `:resume`",
                self.config.mass_failure_window.as_secs()
            );
            effects.note(EventKind::Failover, None, None, reason.clone());
            self.cluster.failover_paused = Some(reason);
            self.touch_cluster();
        }
    }

    /// One reconcile step: failovers that are due, moves that finished,
    /// drains that can go on, pending placements.
    pub fn tick(&mut self, now: Now, nodes: Nodes<'_>) -> Effects {
        let mut effects = Effects::default();
        self.refill(now.at);
        if self.cluster.failover_paused.is_none() {
            self.due_failovers(now, nodes, &mut effects);
        }
        self.finish_moves(now.at, &mut effects);
        self.continue_drains(nodes, &mut effects);
        if self.placement_due {
            self.place_pending(nodes, now.at, &mut effects);
        }
        effects
    }

    /// Instances whose failover is due leave their node (unless it is back).
    fn due_failovers(&mut self, now: Now, nodes: Nodes<'_>, effects: &mut Effects) {
        let due: Vec<InstanceId> = self
            .instances
            .iter()
            .filter(|(_, instance)| instance.record.failover_due_unix_ms.is_some_and(|due| due <= now.unix_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(instance) = self.instances.get_mut(&id) else { continue };
            instance.record.failover_due_unix_ms = None;
            if let Some(placement) = instance.record.placement.take() {
                if nodes.is_up(placement.node.as_str()) {
                    instance.record.placement = Some(placement);
                } else {
                    effects.note(
                        EventKind::Failover,
                        Some(id.task()),
                        Some(&placement.node),
                        format!("{id} leaves \"{}\"", placement.node),
                    );
                    let left = nodes.get(placement.node.as_str()).is_some_and(|view| view.state == NodeState::Left);
                    effects.tally.failover(if left { FailoverReason::NodeLeft } else { FailoverReason::NodeFailed });
                    instance.phase = Phase::Pending;
                    instance.running_since = None;
                    self.placement_due = true;
                }
            }
            self.touch(&id);
        }
    }

    /// Make-before-break: once a new copy has run `min_healthy`, the old one
    /// stops; a moved instance stops counting against its task's pace, and
    /// one healthy anywhere forgets the nodes it gave up on.
    fn finish_moves(&mut self, now: Instant, effects: &mut Effects) {
        let mut finished = Vec::new();
        for (id, instance) in &self.instances {
            let record = &instance.record;
            if record.source.is_none() && !record.settling && record.avoid.is_empty() {
                continue;
            }
            let Some(spec) = self.tasks.get(id.task()) else { continue };
            if instance.healthy(spec.migrate.min_healthy, now) {
                finished.push(id.clone());
            }
        }
        for id in finished {
            let Some(instance) = self.instances.get_mut(&id) else { continue };
            instance.record.settling = false;
            instance.record.avoid.clear();
            if let Some(source) = instance.record.source.take() {
                effects.stop(&source.node, &id, source.epoch, "migrated");
                let to = instance.record.node().map(ToString::to_string).unwrap_or_default();
                effects.note(
                    EventKind::Instance,
                    Some(id.task()),
                    Some(&source.node),
                    format!("{id} moved to \"{to}\"; the old copy is stopped"),
                );
            }
            self.placement_due = true;
            self.touch(&id);
        }
    }

    /// Drains go on at their tasks' pace; a drain whose node holds nothing
    /// any more is finished.
    fn continue_drains(&mut self, nodes: Nodes<'_>, effects: &mut Effects) {
        let draining: Vec<NodeName> =
            self.nodes.values().filter(|record| record.draining).map(|record| record.name.clone()).collect();
        for node in draining {
            if !self.instances.values().any(|instance| instance.record.touches(node.as_str())) {
                self.node_record(&node).draining = false;
                effects.note(
                    EventKind::Operator,
                    None,
                    Some(&node),
                    format!("drain of \"{node}\" finished: it runs nothing"),
                );
                continue;
            }
            let queued = self
                .instances
                .values()
                .any(|instance| instance.record.node() == Some(&node) && instance.record.source.is_none());
            if queued
                && let Ok(plan) =
                    self.plan(&ringwatch_shared::plan::OperatorAction::Drain { node: node.to_string() }, nodes)
            {
                self.start_moves(&plan, effects);
            }
        }
    }

    /// Places pending instances, task by task. A task with no eligible node
    /// free of its instances is skipped whole (and says so once): the work
    /// is what can be placed, never pending × nodes.
    fn place_pending(&mut self, nodes: Nodes<'_>, now: Instant, effects: &mut Effects) {
        self.placement_due = false;
        let mut pending: BTreeMap<TaskName, Vec<InstanceId>> = BTreeMap::new();
        for (id, instance) in &self.instances {
            if instance.record.placement.is_none() {
                pending.entry(id.task().clone()).or_default().push(id.clone());
            }
        }
        if pending.is_empty() {
            return;
        }
        let mut moving: BTreeMap<TaskName, usize> = BTreeMap::new();
        for (id, instance) in &self.instances {
            if instance.record.settling || instance.record.source.is_some() {
                *moving.entry(id.task().clone()).or_default() += 1;
            }
        }
        self.refresh_ring(nodes, now);
        let mut candidates = self.candidates(nodes, self.ring.clone());
        let mut budget = self.config.max_placements_per_tick;
        for (task, ids) in pending {
            let Some(spec) = self.tasks.get(&task).cloned() else { continue };
            if !candidates.has_room(&task) {
                self.say_blocked(&task, ids.len(), effects);
                continue;
            }
            let mut unplaced = 0;
            for id in ids {
                if budget == 0 {
                    self.placement_due = true;
                    break;
                }
                let Some(instance) = self.instances.get(&id) else { continue };
                let is_move = instance.record.placed_before;
                if is_move {
                    if self.tokens < 1.0 {
                        // Rate-limited: the next tick has more tokens.
                        self.placement_due = true;
                        break;
                    }
                    let in_flight = moving.get(&task).copied().unwrap_or(0);
                    if spec.migrate.mode == MigrateMode::Gradual
                        && in_flight >= spec.migrate.max_parallel.max(1) as usize
                    {
                        // Paced: a move that becomes healthy makes room.
                        continue;
                    }
                }
                let Some(node) = candidates.choose(&id, spec.placement, &instance.record.avoid, None) else {
                    unplaced += 1;
                    continue;
                };
                budget -= 1;
                if is_move {
                    self.tokens -= 1.0;
                    *moving.entry(task.clone()).or_default() += 1;
                }
                candidates.take(&task, &node);
                self.assign(&id, &spec, node, is_move, effects);
            }
            if unplaced > 0 {
                self.say_blocked(&task, unplaced, effects);
            }
        }
        self.cluster.round_robin = candidates.round_robin;
        self.advance_seed();
    }

    /// Places `id` on `node` under a fresh epoch and sends the assignment.
    fn assign(&mut self, id: &InstanceId, spec: &TaskSpec, node: NodeName, is_move: bool, effects: &mut Effects) {
        let epoch = self.next_epoch();
        self.blocked_said.remove(id.task());
        let Some(instance) = self.instances.get_mut(id) else { return };
        instance.record.placement = Some(Placement { node: node.clone(), epoch });
        instance.record.placed_before = true;
        instance.record.settling = is_move;
        instance.record.reported = None;
        instance.phase = Phase::Starting;
        instance.running_since = None;
        instance.message.clear();
        effects.send(&node, assign_frame(id, spec, epoch));
        if is_move {
            effects.tally.moved(MoveKind::Replace);
        }
        effects.note(EventKind::Instance, Some(id.task()), Some(&node), format!("{id} placed on \"{node}\""));
        self.touch(id);
    }

    fn say_blocked(&mut self, task: &TaskName, waiting: usize, effects: &mut Effects) {
        if self.blocked_said.insert(task.clone()) {
            effects.note(EventKind::Instance, Some(task),
                None,
                format!(
                    "{waiting} instance(s) of \"{task}\" wait for a node: every node that may take work already runs one of its instances (or it gave up there); they are placed when a node joins or frees up"
                ),
            );
        }
    }

    /// The random source for this step, drawn from the cluster's seed.
    fn rng(&self) -> StdRng {
        StdRng::seed_from_u64(self.cluster.placement_seed)
    }

    /// Moves the seed on after choices were made with it.
    fn advance_seed(&mut self) {
        let next = rand::Rng::random::<u64>(&mut self.rng());
        if next != self.cluster.placement_seed {
            self.cluster.placement_seed = next;
            self.dirty.cluster = true;
        }
    }

    fn candidates(&self, nodes: Nodes<'_>, ring: Arc<Ring>) -> Candidates {
        Candidates::new(
            ring,
            nodes.all(),
            |node| self.eligible(node),
            self.instances.values().map(|instance| &instance.record),
            self.config.load_bound,
            self.cluster.round_robin,
            self.rng(),
        )
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = self.last_refill.map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last_refill = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.config.moves_per_second).min(self.config.move_burst);
        if self.tokens >= 1.0 && self.instances.values().any(|i| i.record.placement.is_none() && i.record.placed_before)
        {
            // A move that waited for tokens can go now.
            self.placement_due = true;
        }
    }

    /// Whether the cached ring is over exactly `nodes`' eligible members.
    fn ring_is_current(&self, nodes: Nodes<'_>) -> bool {
        let eligible = nodes.all().iter().filter(|node| self.eligible(node));
        eligible
            .map(|node| (&node.name, node.weight))
            .eq(self.ring_members.iter().map(|(name, weight)| (name, *weight)))
    }

    /// The ring over `nodes`' eligible members.
    fn build_ring(&self, nodes: Nodes<'_>) -> (Vec<(NodeName, u32)>, Ring) {
        let members: Vec<(NodeName, u32)> = nodes
            .all()
            .iter()
            .filter(|node| self.eligible(node))
            .map(|node| (node.name.clone(), node.weight))
            .collect();
        let ring = Ring::new(members.iter().map(|(name, weight)| (name.to_string(), *weight)));
        (members, ring)
    }

    /// Brings the cached ring up to date — at most once per
    /// [`RING_REFRESH`]: ten thousand nodes make hundreds of thousands of
    /// points, and a joining fleet changes the members every tick. A stale
    /// ring only makes a placement less ideal: candidates are still checked
    /// one by one.
    fn refresh_ring(&mut self, nodes: Nodes<'_>, now: Instant) {
        if self.ring_is_current(nodes)
            || self.ring_built_at.is_some_and(|at| now.saturating_duration_since(at) < RING_REFRESH)
        {
            return;
        }
        let (members, ring) = self.build_ring(nodes);
        self.ring_members = members;
        self.ring = Arc::new(ring);
        self.ring_built_at = Some(now);
    }

    /// The ring for a plan: the cached one when current, otherwise one
    /// built for the plan alone (a plan changes nothing, not even a cache).
    fn ring_for(&self, nodes: Nodes<'_>) -> Arc<Ring> {
        if self.ring_is_current(nodes) { self.ring.clone() } else { Arc::new(self.build_ring(nodes).1) }
    }

    /// The data store's ring (README.md, "Data"): the ring tasks are placed
    /// on, with every known node on it, not only those that may receive
    /// work. A node's points do not depend on the others', so walking it
    /// and skipping the nodes that take no new copies — as every plan
    /// does — gives the order of the task ring; but a holder that may not
    /// take new copies (suspect, degraded, cordoned, full) keeps its place
    /// in the order of its objects, so its copies stay where they are
    /// rather than being made again elsewhere the moment it falters.
    /// Rebuilt only when a node joins, goes or changes weight.
    pub fn data_ring(&mut self, nodes: Nodes<'_>) -> Arc<Ring> {
        let current = nodes
            .all()
            .iter()
            .map(|node| (&node.name, node.weight))
            .eq(self.data_ring_members.iter().map(|(name, weight)| (name, *weight)));
        if !current {
            self.data_ring_members = nodes.all().iter().map(|node| (node.name.clone(), node.weight)).collect();
            self.data_ring =
                Arc::new(Ring::new(self.data_ring_members.iter().map(|(name, weight)| (name.to_string(), *weight))));
        }
        self.data_ring.clone()
    }

    /// Whether a node may receive new work.
    fn eligible(&self, node: &NodeView) -> bool {
        node.state == NodeState::Alive && !self.is_cordoned(node.name.as_str())
    }

    /// Headroom with `lost` gone.
    pub fn headroom(&self, nodes: Nodes<'_>, lost: Option<&str>) -> Headroom {
        self.headroom_with(nodes, lost, &[])
    }

    fn headroom_with(&self, nodes: Nodes<'_>, lost: Option<&str>, moves: &[ringwatch_shared::plan::Move]) -> Headroom {
        let moved: BTreeMap<&str, &str> =
            moves.iter().filter_map(|step| step.to.as_deref().map(|to| (step.instance.as_str(), to))).collect();
        let mut hosts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, instance) in &self.instances {
            let key = id.to_string();
            let node = moved.get(key.as_str()).copied().or(instance.record.node().map(NodeName::as_str));
            if let Some(node) = node.filter(|node| Some(*node) != lost && nodes.is_up(node)) {
                hosts.entry(id.task().to_string()).or_default().insert(node.to_string());
            }
        }
        let replicas: BTreeMap<String, u32> =
            self.tasks.iter().map(|(name, spec)| (name.to_string(), spec.replicas)).collect();
        let eligible =
            nodes.all().iter().filter(|node| self.eligible(node) && Some(node.name.as_str()) != lost).count();
        ringwatch_shared::placement::headroom(&hosts, &replicas, eligible)
    }

    /// The tasks section of `status`.
    pub fn task_status(&self) -> Vec<TaskStatus> {
        let mut by_task: BTreeMap<&TaskName, Vec<InstanceStatus>> = BTreeMap::new();
        for (id, instance) in &self.instances {
            by_task.entry(id.task()).or_default().push(InstanceStatus {
                id: id.to_string(),
                node: instance.record.node().map(ToString::to_string),
                state: instance.phase.as_str().to_string(),
                restarts: instance.restarts,
            });
        }
        self.tasks
            .values()
            .map(|spec| TaskStatus {
                name: spec.name.to_string(),
                replicas: spec.replicas,
                instances: by_task.remove(&spec.name).unwrap_or_default(),
            })
            .collect()
    }

    /// Instance ids per node (placed copies).
    pub fn instances_by_node(&self) -> BTreeMap<NodeName, Vec<String>> {
        let mut by_node: BTreeMap<NodeName, Vec<String>> = BTreeMap::new();
        for (id, instance) in &self.instances {
            if let Some(node) = instance.record.node() {
                by_node.entry(node.clone()).or_default().push(id.to_string());
            }
        }
        by_node
    }

    /// The desired tasks.
    pub fn tasks(&self) -> Vec<TaskSpec> {
        self.tasks.values().cloned().collect()
    }
}

/// When a failed node's instance may move: at once or after the restart
/// policy's delay, and never before a fenced copy has stopped itself
/// (`stop_after` plus a margin after the node was last heard). The
/// arithmetic saturates: no spec can make it overflow.
fn failover_due(spec: &TaskSpec, last_heard: Option<Instant>, now: Instant, margin: Duration) -> Instant {
    let mut due = now;
    if spec.restart.mode == RestartMode::Delayed {
        due = instant_after(now, spec.restart.delay);
    }
    if let OnDisconnect::StopAfter(stop_after) = spec.on_disconnect {
        let fenced = instant_after(last_heard.unwrap_or(now), stop_after.saturating_add(margin));
        due = due.max(fenced);
    }
    due
}

fn assign_frame(id: &InstanceId, spec: &TaskSpec, epoch: u64) -> ConsoleFrame {
    ConsoleFrame::Assign(Assignment { instance: id.clone(), spec: spec.clone(), epoch })
}

/// An agent's message, as the console keeps it.
fn capped(message: &str) -> String {
    cap_message(message)
}
