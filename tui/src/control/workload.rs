//! Workloads: the desired tasks, where each instance is placed, and the
//! reconciliation that drives actual toward desired (DESIGN §5–6).
//!
//! Pure state: callers pass `now` and the nodes' view, and get back the
//! frames to send to agents and the events to log. The reconcile loop, the
//! server (agents' reports) and the admin channel (operator actions) feed it.
//!
//! Invariants kept here:
//! - the instances of a task run on distinct nodes;
//! - every placement has a fresh epoch, and reports from any other epoch
//!   are stale copies to stop (the far side of a partition, a node that came
//!   back after its work moved);
//! - a failed node's instances move only after the policy's delay, and — when
//!   fenced (`on_disconnect.stop_after = D`) — not before D plus a margin
//!   after the node's last heartbeat, so at most one copy runs;
//! - operator migrations and drains are make-before-break;
//! - automatic moves are rate-limited, and pause when a large share of the
//!   nodes fail at once (the console distrusts itself before the fleet).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use ringwatch_shared::placement::{self, Candidate, Headroom, PlacementInput};
use ringwatch_shared::plan::{Move, MoveKind, OperatorAction, Plan};
use ringwatch_shared::protocol::{Assignment, ConsoleFrame, InstanceReport, InstanceState};
use ringwatch_shared::ring::Ring;
use ringwatch_shared::status::{InstanceStatus, NodeState, NodeStatus, TaskStatus};
use ringwatch_shared::task::{MigrateMode, OnDisconnect, RestartMode, TaskSpec};
use serde::{Deserialize, Serialize};

/// Settings of the scheduler.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Bounded-load ε; `None` disables the bound.
    pub load_bound: Option<f64>,
    /// Automatic placements allowed per second (token bucket).
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
        }
    }
}

/// An instance's state as the console shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// The copy an operator migration replaces, kept running until the new one
/// is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Its node.
    pub node: String,
    /// Its epoch.
    pub epoch: u64,
}

/// One instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    /// Its task.
    pub task: String,
    /// Its index within the task.
    pub index: u32,
    /// Where it is placed; `None` while pending.
    pub node: Option<String>,
    /// The placement's epoch.
    pub epoch: u64,
    /// Its state.
    pub phase: Phase,
    /// Restarts in place reported by its agent.
    pub restarts: u32,
    /// The old copy of a make-before-break migration.
    pub source: Option<Source>,
    /// Nodes it gave up on (crash loop, refused command): avoided until it
    /// runs healthy somewhere, or its task's command changes. (A node that
    /// merely failed is not avoided: it is ineligible while failed and
    /// welcome again once back.)
    pub avoid: BTreeSet<String>,
    /// When the instance's node failed, the time it may move.
    #[serde(skip)]
    pub failover_due: Option<Instant>,
    /// Since when it has been running, for `min_healthy`.
    #[serde(skip)]
    pub running_since: Option<Instant>,
    /// The last thing its agent said.
    pub message: String,
    /// Re-placed (failover) and not yet healthy for `min_healthy`: counts
    /// against a gradual task's `max_parallel`.
    #[serde(default)]
    pub settling: bool,
}

/// What the scheduler asks the server to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The node whose agent receives it.
    pub node: String,
    /// The frame.
    pub frame: ConsoleFrame,
}

/// The result of a step: frames to send and events to log.
#[derive(Debug, Default)]
pub struct Effects {
    /// Frames for agents.
    pub outgoing: Vec<Outgoing>,
    /// `(node, sentence)` events.
    pub events: Vec<(Option<String>, String)>,
}

impl Effects {
    fn event(&mut self, node: Option<&str>, text: String) {
        self.events.push((node.map(str::to_string), text));
    }

    fn send(&mut self, node: &str, frame: ConsoleFrame) {
        self.outgoing.push(Outgoing { node: node.to_string(), frame });
    }
}

/// What persists across console restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PersistedWorkloads {
    /// Desired tasks.
    pub tasks: BTreeMap<String, TaskSpec>,
    /// Instances by id.
    pub instances: BTreeMap<String, Instance>,
    /// Cordoned nodes.
    pub cordoned: BTreeSet<String>,
    /// The next placement epoch.
    pub next_epoch: u64,
    /// Why automatic failover is paused, if it is.
    pub failover_paused: Option<String>,
}

/// The scheduler.
#[derive(Debug)]
pub struct Workloads {
    /// Settings.
    config: WorkloadConfig,
    /// Persistent state.
    state: PersistedWorkloads,
    /// Set when `state` changed and should be written.
    dirty: bool,
    /// Round-robin counter.
    round_robin: u64,
    /// Random source for random and weighted placement.
    rng: StdRng,
    /// Tokens for automatic placements.
    tokens: f64,
    /// When tokens were last added.
    last_refill: Option<Instant>,
    /// Recent node failures `(node, when)` of nodes still down, for the
    /// mass-failure guard.
    recent_failures: VecDeque<(String, Instant)>,
    /// The ring over the nodes that may receive work, rebuilt when they change.
    ring: Ring,
    /// The `(name, weight)` set the ring was built from.
    ring_members: Vec<(String, u32)>,
}

/// The id of instance `index` of `task`.
pub fn instance_id(task: &str, index: u32) -> String {
    format!("{task}/{index}")
}

impl Workloads {
    /// A scheduler resuming `state`.
    pub fn new(config: WorkloadConfig, state: PersistedWorkloads) -> Self {
        let tokens = config.move_burst;
        Self {
            config,
            state,
            dirty: false,
            round_robin: 0,
            rng: StdRng::from_os_rng(),
            tokens,
            last_refill: None,
            recent_failures: VecDeque::new(),
            ring: Ring::default(),
            ring_members: Vec::new(),
        }
    }

    /// The state to persist, if it changed since the last call.
    pub fn take_dirty(&mut self) -> Option<PersistedWorkloads> {
        std::mem::take(&mut self.dirty).then(|| self.state.clone())
    }

    /// Whether `node` is cordoned.
    pub fn is_cordoned(&self, node: &str) -> bool {
        self.state.cordoned.contains(node)
    }

    /// Why automatic failover is paused, if it is.
    pub fn failover_paused(&self) -> Option<&str> {
        self.state.failover_paused.as_deref()
    }

    /// Adds or replaces tasks (tasks not named are kept).
    pub fn apply(&mut self, specs: Vec<TaskSpec>) -> Effects {
        let mut effects = Effects::default();
        for spec in specs {
            let name = spec.name.clone();
            let previous = self.state.tasks.insert(name.clone(), spec.clone());
            let changed_run = previous.as_ref().is_some_and(|old| {
                old.command != spec.command || old.restart != spec.restart || old.on_disconnect != spec.on_disconnect
            });
            match &previous {
                None => effects.event(None, format!("task \"{name}\" added with {} replica(s)", spec.replicas)),
                Some(old) if old == &spec => continue,
                Some(_) => effects.event(None, format!("task \"{name}\" updated")),
            }
            if changed_run {
                // A new command deserves another chance on every node.
                for instance in self.state.instances.values_mut().filter(|instance| instance.task == name) {
                    instance.avoid.clear();
                }
            }
            for index in 0..spec.replicas {
                let id = instance_id(&name, index);
                match self.state.instances.get_mut(&id) {
                    None => {
                        self.state.instances.insert(id, new_instance(&name, index));
                    }
                    Some(instance) if changed_run => {
                        // Same node, new epoch: the agent replaces the old process.
                        if let Some(node) = instance.node.clone() {
                            self.state.next_epoch += 1;
                            instance.epoch = self.state.next_epoch;
                            instance.phase = Phase::Starting;
                            instance.running_since = None;
                            effects.send(&node, assign_frame(&id, &spec, instance.epoch));
                        }
                    }
                    Some(_) => {}
                }
            }
            let stale: Vec<String> = self
                .state
                .instances
                .iter()
                .filter(|(_, instance)| instance.task == name && instance.index >= spec.replicas)
                .map(|(id, _)| id.clone())
                .collect();
            for id in stale {
                self.retire(&id, "scaled down", &mut effects);
            }
        }
        self.dirty = true;
        effects
    }

    /// Removes a task and stops its instances.
    ///
    /// # Errors
    /// When there is no such task.
    pub fn remove(&mut self, name: &str) -> Result<Effects, String> {
        if self.state.tasks.remove(name).is_none() {
            return Err(format!("no task named \"{name}\""));
        }
        let mut effects = Effects::default();
        let ids: Vec<String> =
            self.state.instances.iter().filter(|(_, i)| i.task == name).map(|(id, _)| id.clone()).collect();
        for id in ids {
            self.retire(&id, "task removed", &mut effects);
        }
        effects.event(None, format!("task \"{name}\" removed"));
        self.dirty = true;
        Ok(effects)
    }

    /// Stops an instance wherever it runs and forgets it.
    fn retire(&mut self, id: &str, reason: &str, effects: &mut Effects) {
        if let Some(instance) = self.state.instances.remove(id) {
            for node in instance.node.iter().chain(instance.source.as_ref().map(|source| &source.node)) {
                effects.send(node, ConsoleFrame::Stop { instance: id.to_string(), reason: reason.to_string() });
            }
        }
    }

    /// A node changed state.
    pub fn node_changed(
        &mut self,
        node: &str,
        to: NodeState,
        last_heard: Option<Instant>,
        now: Instant,
        total_nodes: usize,
    ) -> Effects {
        let mut effects = Effects::default();
        match to {
            NodeState::Failed => {
                self.note_failure(node, now, total_nodes, &mut effects);
                for (id, instance) in &mut self.state.instances {
                    if instance.node.as_deref() != Some(node) {
                        continue;
                    }
                    let Some(spec) = self.state.tasks.get(&instance.task) else { continue };
                    let mut due = now;
                    if spec.restart.mode == RestartMode::Delayed {
                        due += spec.restart.delay;
                    }
                    if let OnDisconnect::StopAfter(stop_after) = spec.on_disconnect {
                        let fenced = last_heard.unwrap_or(now) + stop_after + self.config.fencing_margin;
                        due = due.max(fenced);
                    }
                    instance.failover_due = Some(due);
                    let wait = due.saturating_duration_since(now);
                    if !wait.is_zero() {
                        effects.event(
                            Some(node),
                            format!("{id} moves in {:.1}s unless \"{node}\" returns", wait.as_secs_f64()),
                        );
                    }
                }
                // A make-before-break source on the failed node is simply gone.
                for instance in self.state.instances.values_mut() {
                    if instance.source.as_ref().is_some_and(|source| source.node == node) {
                        instance.source = None;
                    }
                }
            }
            NodeState::Left => {
                // A node that left stopped its instances on the way out.
                for (id, instance) in &mut self.state.instances {
                    if instance.node.as_deref() == Some(node) {
                        instance.failover_due = Some(now);
                        instance.message = format!("node \"{node}\" left");
                        effects.event(Some(node), format!("{id} moves: its node left"));
                    }
                }
            }
            NodeState::Alive | NodeState::Degraded => {
                // Back: its failure no longer counts toward a mass failure.
                self.recent_failures.retain(|(failed, _)| failed != node);
                for (id, instance) in &mut self.state.instances {
                    if instance.node.as_deref() == Some(node) && instance.failover_due.take().is_some() {
                        effects.event(Some(node), format!("{id} stays: \"{node}\" returned in time"));
                    }
                }
            }
            NodeState::Suspect | NodeState::Unknown => {}
        }
        effects
    }

    /// Counts distinct nodes that failed within the window and are still
    /// down; pauses automatic failover when they are a large share.
    fn note_failure(&mut self, node: &str, now: Instant, total_nodes: usize, effects: &mut Effects) {
        self.recent_failures.retain(|(failed, _)| failed != node);
        self.recent_failures.push_back((node.to_string(), now));
        while self
            .recent_failures
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > self.config.mass_failure_window)
        {
            self.recent_failures.pop_front();
        }
        let failures = self.recent_failures.len();
        #[allow(clippy::cast_precision_loss)] // node counts
        let share = failures as f64 / total_nodes.max(1) as f64;
        if self.state.failover_paused.is_none() && failures >= 2 && share >= self.config.mass_failure_share {
            let reason = format!(
                "{failures} of {total_nodes} nodes failed within {}s: automatic failover is PAUSED (a console-side network fault must not become a mass migration); resume with `ringwatch resume` or `:resume`",
                self.config.mass_failure_window.as_secs()
            );
            effects.event(None, reason.clone());
            self.state.failover_paused = Some(reason);
            self.dirty = true;
        }
    }

    /// An agent reported one instance.
    pub fn report(&mut self, node: &str, report: &InstanceReport, now: Instant) -> Effects {
        let mut effects = Effects::default();
        let id = &report.instance;
        let Some(instance) = self.state.instances.get_mut(id) else {
            effects.send(
                node,
                ConsoleFrame::Stop { instance: id.clone(), reason: "no such instance in the desired state".into() },
            );
            return effects;
        };
        let current = instance.node.as_deref() == Some(node) && instance.epoch == report.epoch;
        let source = instance.source.as_ref().is_some_and(|source| source.node == node && source.epoch == report.epoch);
        if source {
            return effects; // the old copy of a migration: it runs until the new one is healthy
        }
        if !current {
            if instance.node.is_none() && instance.phase == Phase::Pending && report.state == InstanceState::Running {
                // Adoption: the console lost this placement (it crashed before
                // persisting it); the agent still runs it.
                instance.node = Some(node.to_string());
                instance.epoch = report.epoch;
                self.state.next_epoch = self.state.next_epoch.max(report.epoch);
                instance.phase = Phase::Running;
                instance.running_since = Some(now);
                self.dirty = true;
                effects.event(Some(node), format!("{id} adopted on \"{node}\""));
            } else if !matches!(report.state, InstanceState::Stopped | InstanceState::Stopping) {
                effects.send(
                    node,
                    ConsoleFrame::Stop {
                        instance: id.clone(),
                        reason: "stale copy: the instance runs elsewhere now".into(),
                    },
                );
                effects.event(Some(node), format!("stopping a stale copy of {id} on \"{node}\""));
            } else {
                effects.send(node, ConsoleFrame::Stop { instance: id.clone(), reason: "forget the stale copy".into() });
            }
            return effects;
        }
        let phase = Phase::from_report(report.state);
        if instance.phase != phase {
            if phase == Phase::Running {
                instance.running_since = Some(now);
            } else {
                instance.running_since = None;
            }
            if phase == Phase::Failed {
                effects
                    .event(Some(node), format!("{id} failed on \"{node}\": {}; placing it elsewhere", report.message));
                instance.avoid.insert(node.to_string());
                instance.node = None;
                instance.phase = Phase::Pending;
                effects.send(
                    node,
                    ConsoleFrame::Stop { instance: id.clone(), reason: "escalated: placed elsewhere".into() },
                );
                self.dirty = true;
                return effects;
            }
            if matches!(phase, Phase::Restarting) {
                effects
                    .event(Some(node), format!("{id} crashed on \"{node}\" ({}); restarting in place", report.message));
            }
            instance.phase = phase;
            self.dirty = true;
        }
        instance.restarts = report.restarts;
        instance.message.clone_from(&report.message);
        effects
    }

    /// An agent (re)connected and listed what it runs.
    pub fn inventory(&mut self, node: &str, reports: &[InstanceReport], now: Instant) -> Effects {
        let mut effects = Effects::default();
        let reported: BTreeSet<&str> = reports.iter().map(|report| report.instance.as_str()).collect();
        for report in reports {
            let step = self.report(node, report, now);
            effects.outgoing.extend(step.outgoing);
            effects.events.extend(step.events);
        }
        // What the console placed here but the agent does not run: assign again.
        for (id, instance) in &mut self.state.instances {
            if instance.node.as_deref() == Some(node)
                && !reported.contains(id.as_str())
                && let Some(spec) = self.state.tasks.get(&instance.task)
            {
                instance.phase = Phase::Starting;
                effects.send(node, assign_frame(id, spec, instance.epoch));
            }
        }
        effects
    }

    /// One reconcile step: failovers that are due, pending placements,
    /// migrations that finished.
    pub fn tick(&mut self, now: Instant, nodes: &[NodeStatus]) -> Effects {
        let mut effects = Effects::default();
        self.refill(now);
        self.rebuild_ring(nodes);
        let paused = self.state.failover_paused.is_some();
        let up: BTreeSet<&str> =
            nodes.iter().filter(|node| node.state.is_up()).map(|node| node.name.as_str()).collect();

        // Failovers that are due.
        if !paused {
            for (id, instance) in &mut self.state.instances {
                if instance.failover_due.is_some_and(|due| due <= now) {
                    instance.failover_due = None;
                    if let Some(node) = instance.node.take() {
                        if up.contains(node.as_str()) {
                            instance.node = Some(node);
                            continue;
                        }
                        effects.event(Some(&node), format!("{id} leaves \"{node}\""));
                        instance.phase = Phase::Pending;
                        self.dirty = true;
                    }
                }
            }
        }

        // Make-before-break: stop the source once the new copy is healthy.
        for (id, instance) in &mut self.state.instances {
            let Some(spec) = self.state.tasks.get(&instance.task) else { continue };
            let healthy = instance.phase == Phase::Running
                && instance
                    .running_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= spec.migrate.min_healthy);
            if healthy {
                instance.settling = false;
                instance.avoid.clear();
            }
            if healthy && let Some(source) = instance.source.take() {
                effects.send(&source.node, ConsoleFrame::Stop { instance: id.clone(), reason: "migrated".into() });
                effects.event(
                    Some(&source.node),
                    format!("{id} migrated to \"{}\"; old copy stopped", instance.node.clone().unwrap_or_default()),
                );
                self.dirty = true;
            }
        }

        // Pending instances.
        let pending: Vec<String> = self
            .state
            .instances
            .iter()
            .filter(|(_, instance)| instance.node.is_none() && instance.phase == Phase::Pending)
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            if self.tokens < 1.0 {
                break;
            }
            if !self.may_move(&id) {
                continue;
            }
            if let Some(node) = self.place(&id, nodes, None) {
                self.tokens -= 1.0;
                let spec = self.state.instances.get(&id).and_then(|i| self.state.tasks.get(&i.task)).cloned();
                if let (Some(instance), Some(spec)) = (self.state.instances.get_mut(&id), spec) {
                    // An instance placed before is moving: it settles first.
                    instance.settling = instance.epoch > 0;
                    self.state.next_epoch += 1;
                    instance.epoch = self.state.next_epoch;
                    instance.node = Some(node.clone());
                    instance.phase = Phase::Starting;
                    instance.running_since = None;
                    effects.send(&node, assign_frame(&id, &spec, instance.epoch));
                    effects.event(Some(&node), format!("{id} placed on \"{node}\""));
                    self.dirty = true;
                }
            }
        }
        effects
    }

    /// Whether a re-placement of `id` fits its task's pace: a gradual task
    /// moves `max_parallel` instances at a time, each batch healthy for
    /// `min_healthy` before the next.
    fn may_move(&self, id: &str) -> bool {
        let Some(instance) = self.state.instances.get(id) else { return false };
        let Some(spec) = self.state.tasks.get(&instance.task) else { return false };
        if instance.epoch == 0 || spec.migrate.mode == MigrateMode::Full {
            return true;
        }
        let moving = self
            .state
            .instances
            .values()
            .filter(|other| other.task == instance.task && (other.settling || other.source.is_some()))
            .count();
        moving < spec.migrate.max_parallel.max(1) as usize
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = self.last_refill.map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last_refill = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.config.moves_per_second).min(self.config.move_burst);
    }

    fn rebuild_ring(&mut self, nodes: &[NodeStatus]) {
        let members: Vec<(String, u32)> =
            nodes.iter().filter(|node| self.eligible(node)).map(|node| (node.name.clone(), node.weight)).collect();
        if members != self.ring_members {
            self.ring = Ring::new(members.iter().cloned());
            self.ring_members = members;
        }
    }

    /// Whether a node may receive new work.
    fn eligible(&self, node: &NodeStatus) -> bool {
        node.state == NodeState::Alive && !self.state.cordoned.contains(&node.name)
    }

    /// Chooses a node for `id` (not its siblings' nodes, not the ones it
    /// gave up on, not `also_exclude`).
    fn place(&mut self, id: &str, nodes: &[NodeStatus], also_exclude: Option<&str>) -> Option<String> {
        let instance = self.state.instances.get(id)?;
        let spec = self.state.tasks.get(&instance.task)?;
        let mut exclude: BTreeSet<String> = self
            .state
            .instances
            .iter()
            .filter(|(other, sibling)| *other != id && sibling.task == instance.task)
            .flat_map(|(_, sibling)| sibling.node.iter().chain(sibling.source.as_ref().map(|s| &s.node)).cloned())
            .collect();
        exclude.extend(instance.avoid.iter().cloned());
        exclude.extend(also_exclude.map(str::to_string));
        let loads = self.loads();
        let candidates: Vec<Candidate> = nodes
            .iter()
            .filter(|node| self.eligible(node))
            .map(|node| Candidate {
                name: node.name.clone(),
                weight: node.weight,
                load: loads.get(node.name.as_str()).copied().unwrap_or(0),
                free: (1.0 - node.cpu_percent / 100.0).clamp(0.0, 1.0),
            })
            .collect();
        let total = u32::try_from(self.state.instances.len()).unwrap_or(u32::MAX);
        let input = PlacementInput {
            instance: id,
            strategy: spec.placement,
            ring: &self.ring,
            candidates: &candidates,
            exclude: &exclude,
            load_bound: self.config.load_bound,
            total_instances: total,
        };
        // An instance that failed on every eligible node stays pending (its
        // message says so) rather than bouncing between them.
        placement::choose(&input, &mut self.round_robin, &mut self.rng)
    }

    /// Instances per node (placed copies and migration sources).
    fn loads(&self) -> BTreeMap<&str, u32> {
        let mut loads = BTreeMap::new();
        for instance in self.state.instances.values() {
            for node in instance.node.iter().chain(instance.source.as_ref().map(|s| &s.node)) {
                *loads.entry(node.as_str()).or_insert(0) += 1;
            }
        }
        loads
    }

    /// The plan of `action` over `nodes`, without doing it.
    ///
    /// # Errors
    /// When the action names an unknown task, instance or node, or cannot be
    /// done.
    pub fn plan(&mut self, action: &OperatorAction, nodes: &[NodeStatus]) -> Result<Plan, String> {
        let before = self.headroom(nodes, None);
        let known_node = |name: &str| {
            if nodes.iter().any(|node| node.name == name) { Ok(()) } else { Err(format!("no node named \"{name}\"")) }
        };
        self.rebuild_ring(nodes);
        let mut moves = Vec::new();
        let mut notes = Vec::new();
        let (text, lost) = match action {
            OperatorAction::Restart { target } => {
                let ids = self.matching(target)?;
                for id in ids {
                    let node = self.state.instances.get(&id).and_then(|i| i.node.clone());
                    if node.is_none() {
                        notes.push(format!("{id} is not placed; nothing to restart"));
                        continue;
                    }
                    moves.push(Move { instance: id, kind: MoveKind::Restart, from: node, to: None });
                }
                (format!("restart {target}"), None)
            }
            OperatorAction::Migrate { instance, to } => {
                known_node(to)?;
                let current =
                    self.state.instances.get(instance).ok_or_else(|| format!("no instance named \"{instance}\""))?;
                let from = current.node.clone();
                if from.as_deref() == Some(to.as_str()) {
                    return Err(format!("{instance} already runs on \"{to}\""));
                }
                let target =
                    nodes.iter().find(|node| node.name == *to).ok_or_else(|| format!("no node named \"{to}\""))?;
                if !self.eligible(target) {
                    return Err(format!(
                        "\"{to}\" cannot take work now ({}{})",
                        target.state,
                        if self.is_cordoned(to) { ", cordoned" } else { "" }
                    ));
                }
                let task = current.task.clone();
                if self.state.instances.iter().any(|(id, other)| {
                    id != instance && other.task == task && other.node.as_deref() == Some(to.as_str())
                }) {
                    return Err(format!("\"{to}\" already runs another instance of \"{task}\""));
                }
                moves.push(Move {
                    instance: instance.clone(),
                    kind: if from.is_some() { MoveKind::Migrate } else { MoveKind::Start },
                    from,
                    to: Some(to.clone()),
                });
                (format!("migrate {instance} to \"{to}\""), None)
            }
            OperatorAction::Drain { node } | OperatorAction::WhatIf { node } => {
                known_node(node)?;
                let ids: Vec<String> = self
                    .state
                    .instances
                    .iter()
                    .filter(|(_, instance)| instance.node.as_deref() == Some(node.as_str()))
                    .map(|(id, _)| id.clone())
                    .collect();
                let drain = matches!(action, OperatorAction::Drain { .. });
                let mut planned: BTreeMap<String, String> = BTreeMap::new();
                for id in &ids {
                    match self.place_hypothetically(id, nodes, node, &planned) {
                        Some(target) => {
                            planned.insert(id.clone(), target.clone());
                            moves.push(Move {
                                instance: id.clone(),
                                kind: if drain { MoveKind::Migrate } else { MoveKind::Start },
                                from: Some(node.clone()),
                                to: Some(target),
                            });
                        }
                        None => notes
                            .push(format!("{id} has nowhere to go: no eligible node without an instance of its task")),
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
                (text, Some(node.clone()))
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
                if self.state.failover_paused.is_none() {
                    notes.push("automatic failover is not paused".into());
                }
                ("resume automatic failover".to_string(), None)
            }
        };
        let after = match (&lost, action) {
            (Some(node), _) => self.headroom_with(nodes, Some(node), &moves),
            (None, OperatorAction::Cordon { node }) => self.headroom_with_cordon(nodes, node),
            _ => self.headroom_with(nodes, None, &moves),
        };
        Ok(Plan { action: text, moves, headroom_before: before, headroom_after: after, notes })
    }

    /// Where `id` would go if it left `leaving` after the `planned` moves
    /// (instance → target) had happened. Changes nothing: the pretended
    /// placements are put back before returning.
    fn place_hypothetically(
        &mut self,
        id: &str,
        nodes: &[NodeStatus],
        leaving: &str,
        planned: &BTreeMap<String, String>,
    ) -> Option<String> {
        let pretend = planned.iter().map(|(other, target)| (other.as_str(), Some(target.clone())));
        let mut saved = Vec::new();
        for (other, node) in pretend.chain(std::iter::once((id, None))) {
            if let Some(instance) = self.state.instances.get_mut(other) {
                saved.push((other.to_string(), std::mem::replace(&mut instance.node, node)));
            }
        }
        let chosen = self.place(id, nodes, Some(leaving));
        for (other, node) in saved {
            if let Some(instance) = self.state.instances.get_mut(&other) {
                instance.node = node;
            }
        }
        chosen
    }

    /// Carries out `action`; returns its plan and the effects.
    ///
    /// # Errors
    /// As [`Workloads::plan`]; what-if plans are never executed.
    pub fn execute(&mut self, action: &OperatorAction, nodes: &[NodeStatus]) -> Result<(Plan, Effects), String> {
        let plan = self.plan(action, nodes)?;
        let mut effects = Effects::default();
        match action {
            OperatorAction::WhatIf { .. } => return Err("a what-if plan is never executed".into()),
            OperatorAction::Cordon { node } => {
                if self.state.cordoned.insert(node.clone()) {
                    effects.event(Some(node), format!("cordoned \"{node}\": no new placements"));
                }
            }
            OperatorAction::Uncordon { node } => {
                if self.state.cordoned.remove(node) {
                    effects.event(Some(node), format!("uncordoned \"{node}\""));
                }
            }
            OperatorAction::Resume => {
                if self.state.failover_paused.take().is_some() {
                    self.recent_failures.clear();
                    effects.event(None, "automatic failover resumed by the operator".into());
                }
            }
            OperatorAction::Restart { .. } => {
                for step in &plan.moves {
                    if let Some(node) = &step.from {
                        effects.send(node, ConsoleFrame::Restart { instance: step.instance.clone() });
                        effects.event(Some(node), format!("operator restarts {} on \"{node}\"", step.instance));
                    }
                }
            }
            OperatorAction::Drain { node } => {
                self.state.cordoned.insert(node.clone());
                effects.event(
                    Some(node),
                    format!("draining \"{node}\": cordoned, {} instance(s) to move", plan.moves.len()),
                );
                self.start_migrations(&plan, &mut effects);
            }
            OperatorAction::Migrate { .. } => self.start_migrations(&plan, &mut effects),
        }
        self.dirty = true;
        Ok((plan, effects))
    }

    /// Starts the plan's migrations, make-before-break. Gradual tasks start
    /// `max_parallel` at a time; the rest wait in `queued_migrations`.
    fn start_migrations(&mut self, plan: &Plan, effects: &mut Effects) {
        let mut started_per_task: BTreeMap<String, u32> = BTreeMap::new();
        for step in &plan.moves {
            let (Some(to), Some(instance)) = (&step.to, self.state.instances.get(&step.instance)) else { continue };
            let Some(spec) = self.state.tasks.get(&instance.task).cloned() else { continue };
            let in_flight =
                self.state.instances.values().filter(|i| i.task == spec.name && i.source.is_some()).count() as u32;
            let started = started_per_task.entry(spec.name.clone()).or_insert(0);
            if spec.migrate.mode == MigrateMode::Gradual && in_flight + *started >= spec.migrate.max_parallel.max(1) {
                self.state
                    .instances
                    .entry(step.instance.clone())
                    .and_modify(|i| i.message = format!("queued to migrate to \"{to}\""));
                continue;
            }
            *started += 1;
            self.state.next_epoch += 1;
            let epoch = self.state.next_epoch;
            if let Some(instance) = self.state.instances.get_mut(&step.instance) {
                instance.message.clear();
                instance.source = instance.node.take().map(|node| Source { node, epoch: instance.epoch });
                instance.node = Some(to.clone());
                instance.epoch = epoch;
                instance.phase = Phase::Starting;
                instance.running_since = None;
                effects.send(to, assign_frame(&step.instance, &spec, epoch));
                effects.event(Some(to), format!("{} starting on \"{to}\" (make-before-break)", step.instance));
            }
        }
    }

    /// Continues drains: instances still on a cordoned node whose task has
    /// room for another migration move now. Call on each tick.
    pub fn continue_drains(&mut self, nodes: &[NodeStatus]) -> Effects {
        let mut effects = Effects::default();
        let cordoned: Vec<String> = self.state.cordoned.iter().cloned().collect();
        for node in cordoned {
            let waiting = self
                .state
                .instances
                .values()
                .any(|i| i.node.as_deref() == Some(node.as_str()) && i.message.starts_with("queued to migrate"));
            if !waiting {
                continue;
            }
            if let Ok(plan) = self.plan(&OperatorAction::Drain { node: node.clone() }, nodes) {
                self.start_migrations(&plan, &mut effects);
            }
        }
        effects
    }

    /// Instances matching `task` or `task/index`.
    fn matching(&self, target: &str) -> Result<Vec<String>, String> {
        if target.contains('/') {
            return if self.state.instances.contains_key(target) {
                Ok(vec![target.to_string()])
            } else {
                Err(format!("no instance named \"{target}\""))
            };
        }
        if !self.state.tasks.contains_key(target) {
            return Err(format!("no task named \"{target}\""));
        }
        Ok(self.state.instances.iter().filter(|(_, i)| i.task == target).map(|(id, _)| id.clone()).collect())
    }

    /// Headroom now.
    pub fn headroom(&self, nodes: &[NodeStatus], lost: Option<&str>) -> Headroom {
        self.headroom_with(nodes, lost, &[])
    }

    fn headroom_with(&self, nodes: &[NodeStatus], lost: Option<&str>, moves: &[Move]) -> Headroom {
        let up: BTreeSet<&str> = nodes
            .iter()
            .filter(|node| node.state.is_up() && Some(node.name.as_str()) != lost)
            .map(|node| node.name.as_str())
            .collect();
        let moved: BTreeMap<&str, &str> =
            moves.iter().filter_map(|step| step.to.as_deref().map(|to| (step.instance.as_str(), to))).collect();
        let mut hosts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, instance) in &self.state.instances {
            let node = moved.get(id.as_str()).copied().or(instance.node.as_deref());
            if let Some(node) = node.filter(|node| up.contains(node)) {
                hosts.entry(instance.task.clone()).or_default().insert(node.to_string());
            }
        }
        let replicas: BTreeMap<String, u32> =
            self.state.tasks.iter().map(|(name, spec)| (name.clone(), spec.replicas)).collect();
        let eligible = nodes.iter().filter(|node| self.eligible(node) && Some(node.name.as_str()) != lost).count();
        placement::headroom(&hosts, &replicas, eligible)
    }

    fn headroom_with_cordon(&self, nodes: &[NodeStatus], cordoned: &str) -> Headroom {
        let mut headroom = self.headroom(nodes, None);
        let eligible = nodes.iter().filter(|node| self.eligible(node) && node.name != cordoned).count();
        let widest = self.state.tasks.values().map(|spec| spec.replicas).max().unwrap_or(0) as usize;
        headroom.capacity_ok = eligible.saturating_sub(1) >= widest;
        headroom
    }

    /// The tasks section of `status`.
    pub fn task_status(&self) -> Vec<TaskStatus> {
        self.state
            .tasks
            .values()
            .map(|spec| TaskStatus {
                name: spec.name.clone(),
                replicas: spec.replicas,
                instances: self
                    .state
                    .instances
                    .iter()
                    .filter(|(_, instance)| instance.task == spec.name)
                    .map(|(id, instance)| InstanceStatus {
                        id: id.clone(),
                        node: instance.node.clone(),
                        state: instance.phase.as_str().to_string(),
                        restarts: instance.restarts,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Instance ids per node (placed copies).
    pub fn instances_by_node(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, instance) in &self.state.instances {
            if let Some(node) = &instance.node {
                by_node.entry(node.clone()).or_default().push(id.clone());
            }
        }
        by_node
    }

    /// The desired tasks.
    pub fn tasks(&self) -> Vec<TaskSpec> {
        self.state.tasks.values().cloned().collect()
    }

    /// Assignments for `node`, to send when its agent (re)connects and has
    /// not reported them yet.
    pub fn assignments_for(&self, node: &str) -> Vec<Assignment> {
        self.state
            .instances
            .iter()
            .filter(|(_, instance)| instance.node.as_deref() == Some(node))
            .filter_map(|(id, instance)| {
                self.state.tasks.get(&instance.task).map(|spec| Assignment {
                    instance: id.clone(),
                    spec: spec.clone(),
                    epoch: instance.epoch,
                })
            })
            .collect()
    }
}

fn new_instance(task: &str, index: u32) -> Instance {
    Instance {
        task: task.to_string(),
        index,
        node: None,
        epoch: 0,
        phase: Phase::Pending,
        restarts: 0,
        source: None,
        avoid: BTreeSet::new(),
        failover_due: None,
        running_since: None,
        message: String::new(),
        settling: false,
    }
}

fn assign_frame(id: &str, spec: &TaskSpec, epoch: u64) -> ConsoleFrame {
    ConsoleFrame::Assign(Assignment { instance: id.to_string(), spec: spec.clone(), epoch })
}

#[cfg(test)]
mod tests {
    use ringwatch_shared::task::{MigratePolicy, Placement, RestartPolicy};

    use super::*;

    fn spec(name: &str, replicas: u32) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            command: vec!["sleep".into(), "1000".into()],
            replicas,
            placement: Placement::Ring,
            restart: RestartPolicy::default(),
            migrate: MigratePolicy::default(),
            on_disconnect: OnDisconnect::Keep,
        }
    }

    fn node(name: &str, state: NodeState) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            state,
            cordoned: false,
            phi: 0.0,
            last_seen_ms: 0,
            cpu_percent: 10.0,
            mem_used_bytes: 0,
            mem_total_bytes: 0,
            load: [0.0; 3],
            net_rx_bytes_per_sec: 0,
            net_tx_bytes_per_sec: 0,
            weight: 1,
            heartbeats_lost: 0,
            address: String::new(),
            reason: String::new(),
            instances: Vec::new(),
        }
    }

    fn cluster(states: &[(&str, NodeState)]) -> Vec<NodeStatus> {
        states.iter().map(|(name, state)| node(name, *state)).collect()
    }

    fn four_alive() -> Vec<NodeStatus> {
        cluster(&[("a", NodeState::Alive), ("b", NodeState::Alive), ("c", NodeState::Alive), ("d", NodeState::Alive)])
    }

    fn assigned(effects: &Effects) -> Vec<(String, String, u64)> {
        effects
            .outgoing
            .iter()
            .filter_map(|out| match &out.frame {
                ConsoleFrame::Assign(assignment) => {
                    Some((out.node.clone(), assignment.instance.clone(), assignment.epoch))
                }
                _ => None,
            })
            .collect()
    }

    fn stopped(effects: &Effects) -> Vec<(String, String)> {
        effects
            .outgoing
            .iter()
            .filter_map(|out| match &out.frame {
                ConsoleFrame::Stop { instance, .. } => Some((out.node.clone(), instance.clone())),
                _ => None,
            })
            .collect()
    }

    fn running(instance: &str, epoch: u64) -> InstanceReport {
        InstanceReport {
            instance: instance.into(),
            epoch,
            state: InstanceState::Running,
            restarts: 0,
            pid: Some(1),
            last_exit: None,
            message: String::new(),
        }
    }

    /// Applies `task` and runs it: returns where each instance went.
    fn placed(
        workloads: &mut Workloads,
        task: TaskSpec,
        nodes: &[NodeStatus],
        now: Instant,
    ) -> BTreeMap<String, (String, u64)> {
        workloads.apply(vec![task]);
        let effects = workloads.tick(now, nodes);
        let mut placed = BTreeMap::new();
        for (node, id, epoch) in assigned(&effects) {
            workloads.report(&node, &running(&id, epoch), now);
            placed.insert(id, (node, epoch));
        }
        placed
    }

    fn where_is(workloads: &Workloads, id: &str) -> Option<String> {
        workloads.state.instances.get(id).and_then(|instance| instance.node.clone())
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
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let placed = placed(&mut workloads, spec("web", 3), &four_alive(), Instant::now());
        let nodes: BTreeSet<&String> = placed.values().map(|(node, _)| node).collect();
        assert_eq!((placed.len(), nodes.len()), (3, 3));
        let status = workloads.task_status();
        assert!(status[0].instances.iter().all(|instance| instance.state == "running"));
    }

    #[test]
    fn a_failed_nodes_instance_moves_at_once_to_a_distinct_live_node() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let nodes = four_alive();
        let placed = placed(&mut workloads, spec("web", 2), &nodes, now);
        let (victim, _) = placed["web/0"].clone();
        let sibling = placed["web/1"].0.clone();
        workloads.node_changed(&victim, NodeState::Failed, Some(now), now, 4);
        let mut after = nodes.clone();
        after.iter_mut().filter(|n| n.name == victim).for_each(|n| n.state = NodeState::Failed);
        let effects = workloads.tick(now, &after);
        let moved = assigned(&effects);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].1, "web/0");
        assert!(moved[0].0 != victim && moved[0].0 != sibling, "{moved:?}");
        assert!(moved[0].2 > placed["web/0"].1, "a new placement has a new epoch");
    }

    #[test]
    fn delayed_failover_is_cancelled_when_the_node_returns_in_time() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let mut task = spec("web", 1);
        task.restart.mode = RestartMode::Delayed;
        task.restart.delay = Duration::from_secs(10);
        let placed = placed(&mut workloads, task, &four_alive(), now);
        let (victim, _) = placed["web/0"].clone();
        workloads.node_changed(&victim, NodeState::Failed, Some(now), now, 4);
        assert!(assigned(&workloads.tick(now + Duration::from_secs(5), &four_alive())).is_empty());
        workloads.node_changed(&victim, NodeState::Alive, Some(now), now + Duration::from_secs(6), 4);
        assert!(assigned(&workloads.tick(now + Duration::from_secs(20), &four_alive())).is_empty());
        assert_eq!(where_is(&workloads, "web/0"), Some(victim));
    }

    #[test]
    fn a_fenced_instance_moves_only_after_stop_after_plus_the_margin() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let mut task = spec("web", 1);
        task.on_disconnect = OnDisconnect::StopAfter(Duration::from_secs(5));
        let placed = placed(&mut workloads, task, &four_alive(), now);
        let (victim, _) = placed["web/0"].clone();
        let last_heard = now;
        let failed_at = now + Duration::from_millis(1500);
        workloads.node_changed(&victim, NodeState::Failed, Some(last_heard), failed_at, 4);
        let mut nodes = four_alive();
        nodes.iter_mut().filter(|n| n.name == victim).for_each(|n| n.state = NodeState::Failed);
        assert!(assigned(&workloads.tick(last_heard + Duration::from_millis(5_900), &nodes)).is_empty());
        let moved = assigned(&workloads.tick(last_heard + Duration::from_millis(6_000), &nodes));
        assert_eq!(moved.len(), 1, "moves at last heartbeat + 5s + 1s margin");
    }

    #[test]
    fn an_escalated_crash_loop_goes_to_another_node() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let placed = placed(&mut workloads, spec("web", 1), &four_alive(), now);
        let (first, epoch) = placed["web/0"].clone();
        let mut failed = running("web/0", epoch);
        failed.state = InstanceState::Failed;
        failed.message = "6 restarts within 60s".into();
        let effects = workloads.report(&first, &failed, now);
        assert_eq!(stopped(&effects), vec![(first.clone(), "web/0".to_string())]);
        let moved = assigned(&workloads.tick(now, &four_alive()));
        assert_eq!(moved.len(), 1);
        assert_ne!(moved[0].0, first);
    }

    #[test]
    fn a_stale_copy_is_stopped_and_an_unknown_one_too() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let placed = placed(&mut workloads, spec("web", 1), &four_alive(), now);
        let (node, epoch) = placed["web/0"].clone();
        let other = if node == "a" { "b" } else { "a" };
        let effects = workloads.report(other, &running("web/0", epoch - 1), now);
        assert_eq!(stopped(&effects), vec![(other.to_string(), "web/0".to_string())]);
        let effects = workloads.report(other, &running("ghost/0", 1), now);
        assert_eq!(stopped(&effects), vec![(other.to_string(), "ghost/0".to_string())]);
        assert_eq!(where_is(&workloads, "web/0"), Some(node));
    }

    #[test]
    fn regression_an_instance_may_return_to_a_node_it_failed_over_from() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let nodes = cluster(&[("a", NodeState::Alive), ("b", NodeState::Alive)]);
        let placed = placed(&mut workloads, spec("web", 1), &nodes, now);
        let (first, _) = placed["web/0"].clone();
        let second = if first == "a" { "b" } else { "a" };
        let failed = |down: &str| {
            nodes
                .iter()
                .cloned()
                .map(|mut n| {
                    if n.name == down {
                        n.state = NodeState::Failed;
                    }
                    n
                })
                .collect::<Vec<_>>()
        };
        // First failure: web/0 moves to the other node and runs there.
        workloads.node_changed(&first, NodeState::Failed, Some(now), now, 2);
        let moved = assigned(&workloads.tick(now, &failed(&first)));
        assert_eq!(moved[0].0, second);
        workloads.report(second, &running("web/0", moved[0].2), now);
        // The first node comes back; later the second one fails.
        let later = now + Duration::from_secs(30);
        workloads.node_changed(&first, NodeState::Alive, Some(later), later, 2);
        workloads.node_changed(second, NodeState::Failed, Some(later), later, 2);
        let back = assigned(&workloads.tick(later, &failed(second)));
        assert_eq!(back.len(), 1, "web/0 goes back to the node it once left");
        assert_eq!(back[0].0, first);
    }

    #[test]
    fn regression_one_flapping_node_does_not_pause_failover() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        // a fails, comes back, fails again, comes back, fails again: one node.
        for step in 0..3u64 {
            let at = now + Duration::from_secs(step * 2);
            workloads.node_changed("a", NodeState::Failed, Some(at), at, 4);
            workloads.node_changed("a", NodeState::Alive, Some(at), at + Duration::from_secs(1), 4);
        }
        workloads.node_changed("b", NodeState::Failed, Some(now), now + Duration::from_secs(7), 4);
        assert!(workloads.failover_paused().is_none(), "only b is down now: 1 of 4");
    }

    #[test]
    fn half_the_nodes_failing_at_once_pauses_failover_until_resumed() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let placed = placed(&mut workloads, spec("web", 2), &four_alive(), now);
        let victims: Vec<String> = placed.values().map(|(node, _)| node.clone()).collect();
        let mut nodes = four_alive();
        for victim in &victims {
            workloads.node_changed(victim, NodeState::Failed, Some(now), now, 4);
            nodes.iter_mut().filter(|n| &n.name == victim).for_each(|n| n.state = NodeState::Failed);
        }
        assert!(workloads.failover_paused().is_some());
        assert!(assigned(&workloads.tick(now, &nodes)).is_empty(), "paused: nothing moves");
        workloads.execute(&OperatorAction::Resume, &nodes).unwrap();
        assert_eq!(assigned(&workloads.tick(now, &nodes)).len(), 2);
    }

    #[test]
    fn a_drain_cordons_and_is_make_before_break() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let nodes = cluster(&[
            ("a", NodeState::Alive),
            ("b", NodeState::Alive),
            ("c", NodeState::Alive),
            ("d", NodeState::Alive),
            ("e", NodeState::Alive),
        ]);
        let mut web = spec("web", 1);
        web.migrate =
            MigratePolicy { mode: MigrateMode::Gradual, max_parallel: 1, min_healthy: Duration::from_secs(5) };
        let mut db = web.clone();
        db.name = "db".into();
        // Put both tasks' instances on node "a" through operator migrations.
        placed(&mut workloads, web, &nodes, now);
        placed(&mut workloads, db, &nodes, now);
        for id in ["web/0", "db/0"] {
            if where_is(&workloads, id).as_deref() != Some("a") {
                let (_, effects) = workloads
                    .execute(&OperatorAction::Migrate { instance: id.into(), to: "a".into() }, &nodes)
                    .unwrap();
                let (node, instance, epoch) = assigned(&effects)[0].clone();
                workloads.report(&node, &running(&instance, epoch), now);
                workloads.tick(now + Duration::from_secs(5), &nodes);
            }
        }
        let later = now + Duration::from_secs(10);
        let (plan, effects) = workloads.execute(&OperatorAction::Drain { node: "a".into() }, &nodes).unwrap();
        assert_eq!(plan.moves.len(), 2);
        assert!(plan.moves.iter().all(|step| step.kind == MoveKind::Migrate));
        assert!(workloads.is_cordoned("a"));
        // Different tasks migrate in parallel; each keeps its old copy until healthy.
        let started = assigned(&effects);
        assert_eq!(started.len(), 2);
        assert!(stopped(&effects).is_empty(), "make-before-break: nothing stops yet");
        for (node, instance, epoch) in &started {
            workloads.report(node, &running(instance, *epoch), later);
        }
        assert!(stopped(&workloads.tick(later + Duration::from_secs(4), &nodes)).is_empty());
        let done = workloads.tick(later + Duration::from_secs(5), &nodes);
        assert_eq!(stopped(&done).len(), 2, "the old copies stop once the new ones are healthy");
        assert!(stopped(&done).iter().all(|(node, _)| node == "a"));
    }

    #[test]
    fn a_pending_instance_an_agent_still_runs_is_adopted() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        workloads.apply(vec![spec("web", 1)]);
        let effects = workloads.inventory("b", &[running("web/0", 7)], now);
        assert!(stopped(&effects).is_empty());
        assert_eq!(where_is(&workloads, "web/0"), Some("b".to_string()));
        assert!(assigned(&workloads.tick(now, &four_alive())).is_empty(), "no duplicate is started");
    }

    #[test]
    fn an_instance_missing_from_an_inventory_is_assigned_again() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let placed = placed(&mut workloads, spec("web", 1), &four_alive(), now);
        let (node, epoch) = placed["web/0"].clone();
        let again = assigned(&workloads.inventory(&node, &[], now));
        assert_eq!(again, vec![(node, "web/0".to_string(), epoch)]);
    }

    #[test]
    fn what_if_plans_the_moves_without_doing_them() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let nodes = four_alive();
        let placed = placed(&mut workloads, spec("web", 2), &nodes, now);
        let (victim, _) = placed["web/0"].clone();
        let plan = workloads.plan(&OperatorAction::WhatIf { node: victim.clone() }, &nodes).unwrap();
        assert_eq!(plan.moves.len(), 1);
        assert_ne!(plan.moves[0].to.as_deref(), Some(victim.as_str()));
        assert_eq!(plan.headroom_before.failures_survived, Some(1));
        assert_eq!(where_is(&workloads, "web/0"), Some(victim), "nothing moved");
        assert!(workloads.execute(&OperatorAction::WhatIf { node: "a".into() }, &nodes).is_err());
    }

    #[test]
    fn cordoned_nodes_receive_nothing() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let nodes = four_alive();
        for name in ["a", "b", "c"] {
            workloads.execute(&OperatorAction::Cordon { node: name.into() }, &nodes).unwrap();
        }
        let placed = placed(&mut workloads, spec("web", 2), &nodes, now);
        assert_eq!(placed.len(), 1, "only one eligible node for two replicas");
        assert!(placed.values().all(|(node, _)| node == "d"));
        let states: Vec<String> = workloads.task_status()[0].instances.iter().map(|i| i.state.clone()).collect();
        assert!(states.contains(&"pending".to_string()), "{states:?}");
    }

    #[test]
    fn scaling_down_stops_the_highest_indices() {
        let mut workloads = Workloads::new(WorkloadConfig::default(), PersistedWorkloads::default());
        let now = Instant::now();
        let placed = placed(&mut workloads, spec("web", 3), &four_alive(), now);
        let effects = workloads.apply(vec![spec("web", 1)]);
        let stops = stopped(&effects);
        assert_eq!(stops.len(), 2);
        assert!(stops.contains(&(placed["web/2"].0.clone(), "web/2".to_string())));
        assert_eq!(workloads.task_status()[0].instances.len(), 1);
    }
}
