//! The UI's own state, built from [`Snapshot`]s: wire types become state
//! types here, at the edge, and views read nothing else.
//!
//! Nothing here reads the clock: the caller passes `now_ms` (milliseconds on
//! any monotonic scale), so tests are deterministic.
//!
//! Besides what the console says, the state holds what the operator is in
//! the middle of: a plan awaiting confirmation ([`PlanDialog`]), a list to
//! pick from ([`Picker`]) and the `:` command line.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use ratatui::layout::Rect;
use ringwatch_shared::metrics::MetricsSample;
use ringwatch_shared::placement::Headroom;
use ringwatch_shared::plan::{OperatorAction, Plan};
use ringwatch_shared::ring::stable_hash;
use ringwatch_shared::status::{
    ClusterEvent, ConsoleStatus, DataStatus, InstanceStatus, NodeState, NodeStatus, TaskStatus,
};

use crate::handle::Snapshot;
use crate::ui::format::contains_ignore_case;
use crate::ui::ring::{Bounds, RingCache, angle_of, ring_key, same_key};

/// Samples of history kept per node: six minutes at one a second.
pub const HISTORY_LEN: usize = 360;
/// At most one history sample per node this often.
pub const HISTORY_INTERVAL_MS: u64 = 1_000;
/// Events kept for the views; older ones are dropped.
pub const MAX_EVENTS: usize = 5_000;
/// How long a status-line message stays.
pub const MESSAGE_TTL_MS: u64 = 10_000;
/// Instance dots drawn at most on the ring (beyond, they are a solid band).
pub const MAX_DOTS: usize = 20_000;
/// The smallest terminal the views are laid out for.
pub const MIN_SIZE: (u16, u16) = (80, 24);

/// A top-level view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Cluster bar, ring, node table and event log (`1`).
    Overview,
    /// The node table, full screen and with every column (`2`).
    Nodes,
    /// The event log, full screen, filterable (`3`).
    Events,
    /// Tasks and their instances (`4`).
    Tasks,
    /// One node in depth (`Enter` on a node).
    Detail,
}

impl View {
    /// The views `Tab` and `1`–`4` switch between, in order.
    pub const TABS: [View; 4] = [View::Overview, View::Nodes, View::Events, View::Tasks];

    /// The name on its tab.
    pub fn title(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Nodes => "Nodes",
            Self::Events => "Events",
            Self::Tasks => "Tasks",
            Self::Detail => "Detail",
        }
    }
}

/// The order of the node table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// By name, A to Z.
    Name,
    /// Trouble first: failed, suspect, degraded, unknown, alive, left.
    State,
    /// Highest suspicion first.
    Phi,
    /// Busiest CPU first.
    Cpu,
    /// Fullest memory first.
    Memory,
}

impl SortKey {
    /// The next order `s` switches to.
    pub fn next(self) -> Self {
        match self {
            Self::Name => Self::State,
            Self::State => Self::Phi,
            Self::Phi => Self::Cpu,
            Self::Cpu => Self::Memory,
            Self::Memory => Self::Name,
        }
    }

    /// Its name in the table title.
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::State => "state",
            Self::Phi => "phi",
            Self::Cpu => "cpu",
            Self::Memory => "memory",
        }
    }
}

/// What the ring's arcs are coloured by (`a` switches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingColors {
    /// Each node's state, as everywhere else.
    State,
    /// Each node's share of the data store's bytes, against an even share
    /// (README.md, "Data").
    Data,
}

impl RingColors {
    /// The other one.
    pub fn toggled(self) -> Self {
        match self {
            Self::State => Self::Data,
            Self::Data => Self::State,
        }
    }

    /// What it colours by, in words.
    pub fn label(self) -> &'static str {
        match self {
            Self::State => "node state",
            Self::Data => "data share",
        }
    }
}

/// How urgent a state is, most urgent first (for sorting by state).
pub fn severity(state: NodeState) -> u8 {
    match state {
        NodeState::Failed => 0,
        NodeState::Suspect => 1,
        NodeState::Degraded => 2,
        NodeState::Unknown => 3,
        NodeState::Alive => 4,
        NodeState::Left => 5,
    }
}

/// Every state, in the order the cluster bar lists them.
pub const STATES: [NodeState; 6] =
    [NodeState::Alive, NodeState::Degraded, NodeState::Suspect, NodeState::Failed, NodeState::Unknown, NodeState::Left];

/// One node, as the views show it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// Its name.
    pub name: String,
    /// Its liveness.
    pub state: NodeState,
    /// Cordoned by an operator.
    pub cordoned: bool,
    /// Current suspicion.
    pub phi: f64,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms: u64,
    /// Total CPU use, percent.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub mem_used: u64,
    /// Memory installed, bytes.
    pub mem_total: u64,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Bytes received per second.
    pub rx: u64,
    /// Bytes sent per second.
    pub tx: u64,
    /// Ring weight.
    pub weight: u32,
    /// Heartbeats lost on the current connection.
    pub heartbeats_lost: u64,
    /// Its connection's round-trip time, ms, while connected.
    pub rtt_ms: Option<f64>,
    /// Data store objects it holds a current copy of, and their bytes.
    pub data: (u64, u64),
    /// Bytes its data quota still takes, once it reported.
    pub data_free: Option<u64>,
    /// Where its connection comes from; empty when disconnected.
    pub address: String,
    /// Why it is in its state.
    pub reason: String,
    /// Instances placed on it.
    pub instances: Vec<String>,
    /// Its share of the ring, 0..=1.
    pub share: f64,
    /// Its share of the data store's bytes (of every current copy), 0..=1.
    pub data_share: f64,
    /// Its index in the ring cache, if on the ring.
    pub ring_index: Option<usize>,
    /// Per-core, disk and uptime figures from its latest full sample.
    pub host: Option<HostDetail>,
}

impl NodeRow {
    fn from_status(status: NodeStatus, sample: Option<MetricsSample>) -> Self {
        Self {
            name: status.name,
            state: status.state,
            cordoned: status.cordoned,
            phi: status.phi,
            last_seen_ms: status.last_seen_ms,
            cpu_percent: status.cpu_percent,
            mem_used: status.mem_used_bytes,
            mem_total: status.mem_total_bytes,
            load: status.load,
            rx: status.net_rx_bytes_per_sec,
            tx: status.net_tx_bytes_per_sec,
            weight: status.weight,
            heartbeats_lost: status.heartbeats_lost,
            rtt_ms: status.rtt_ms,
            data: (status.data_objects, status.data_bytes),
            data_free: status.data_free_bytes,
            address: status.address,
            reason: status.reason,
            instances: status.instances,
            share: 0.0,
            data_share: 0.0,
            ring_index: None,
            host: sample.map(HostDetail::from),
        }
    }

    /// Memory in use, percent (0 when unknown).
    pub fn mem_percent(&self) -> f64 {
        percent(self.mem_used, self.mem_total)
    }
}

/// What only a full metrics sample says about a host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostDetail {
    /// Seconds since the host booted.
    pub uptime_secs: u64,
    /// Each core's use, percent.
    pub cores: Vec<f64>,
    /// Mounted disks.
    pub disks: Vec<Disk>,
    /// Swap in use, bytes.
    pub swap_used: u64,
    /// Swap configured, bytes.
    pub swap_total: u64,
    /// Resource use of each instance the node runs.
    pub instances: Vec<InstanceLoad>,
}

/// Resource use of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceLoad {
    /// `task/index`.
    pub id: String,
    /// CPU use, percent of one core.
    pub cpu_percent: f64,
    /// Resident memory, bytes.
    pub rss: u64,
}

impl From<MetricsSample> for HostDetail {
    fn from(sample: MetricsSample) -> Self {
        Self {
            uptime_secs: sample.uptime_secs,
            cores: sample.core_permille.iter().map(|&permille| f64::from(permille) / 10.0).collect(),
            disks: sample
                .disks
                .into_iter()
                .map(|disk| Disk { mount: disk.mount, used: disk.used_bytes, total: disk.total_bytes })
                .collect(),
            swap_used: sample.swap_used_bytes,
            swap_total: sample.swap_total_bytes,
            instances: sample
                .instances
                .into_iter()
                .map(|usage| InstanceLoad {
                    id: usage.instance,
                    cpu_percent: f64::from(usage.cpu_permille) / 10.0,
                    rss: usage.rss_bytes,
                })
                .collect(),
        }
    }
}

/// One mounted disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Disk {
    /// Mount point.
    pub mount: String,
    /// Bytes in use.
    pub used: u64,
    /// Size in bytes.
    pub total: u64,
}

impl Disk {
    /// Space in use, percent (0 when unknown).
    pub fn percent(&self) -> f64 {
        percent(self.used, self.total)
    }
}

/// One history sample of a node. `f32` halves the memory of 5,000 nodes'
/// six minutes and is precise enough for a chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryPoint {
    /// CPU use, percent.
    pub cpu: f32,
    /// Memory use, percent.
    pub mem: f32,
    /// Bytes received per second.
    pub rx: f32,
    /// Bytes sent per second.
    pub tx: f32,
}

/// A node's recent history, oldest first, at most [`HISTORY_LEN`] samples
/// taken [`HISTORY_INTERVAL_MS`] apart.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The samples.
    points: VecDeque<HistoryPoint>,
}

impl History {
    fn push(&mut self, point: HistoryPoint) {
        if self.points.len() >= HISTORY_LEN {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// The samples, oldest first.
    pub fn points(&self) -> impl ExactSizeIterator<Item = &HistoryPoint> + DoubleEndedIterator {
        self.points.iter()
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there are none yet.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// One event of the log, as the views show it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Its number in the log.
    pub seq: u64,
    /// When, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The node concerned, if one is.
    pub node: Option<String>,
    /// The state change, if it is one.
    pub change: Option<(NodeState, NodeState)>,
    /// Why, in a sentence.
    pub reason: String,
    /// The whole event as one line, which the filter searches.
    pub text: String,
}

impl From<ClusterEvent> for EventRow {
    fn from(event: ClusterEvent) -> Self {
        let text = event.to_string();
        Self {
            seq: event.seq,
            at_unix_ms: event.at_unix_ms,
            node: event.node,
            change: event.change,
            reason: event.reason,
            text,
        }
    }
}

impl EventRow {
    /// Whether the filter `needle` matches its node or its text.
    pub fn matches(&self, needle: &str) -> bool {
        contains_ignore_case(&self.text, needle)
            || self.node.as_deref().is_some_and(|node| contains_ignore_case(node, needle))
    }
}

/// One task, as the tasks view shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// Its name.
    pub name: String,
    /// Instances wanted.
    pub replicas: u32,
    /// Its instances.
    pub instances: Vec<InstanceRow>,
    /// How many of them run.
    pub running: usize,
    /// Restarts of all its instances.
    pub restarts: u32,
}

impl From<TaskStatus> for TaskRow {
    fn from(task: TaskStatus) -> Self {
        let instances: Vec<InstanceRow> = task.instances.into_iter().map(InstanceRow::from).collect();
        Self {
            name: task.name,
            replicas: task.replicas,
            running: instances.iter().filter(|instance| instance.state == "running").count(),
            restarts: instances.iter().map(|instance| instance.restarts).sum(),
            instances,
        }
    }
}

impl TaskRow {
    /// Whether the filter `needle` matches its name, an instance or a node
    /// it runs on.
    pub fn matches(&self, needle: &str) -> bool {
        contains_ignore_case(&self.name, needle)
            || self.instances.iter().any(|instance| {
                contains_ignore_case(&instance.id, needle)
                    || instance.node.as_deref().is_some_and(|node| contains_ignore_case(node, needle))
            })
    }
}

/// One instance of a task, as the views show it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    /// `task/index`.
    pub id: String,
    /// The node it is placed on, if any.
    pub node: Option<String>,
    /// `pending`, `starting`, `running`, `restarting`, `stopping`,
    /// `stopped` or `failed`.
    pub state: String,
    /// Restarts so far.
    pub restarts: u32,
    /// The state of its node, when the node is known: an instance "running"
    /// on a failed node is not running.
    pub node_state: Option<NodeState>,
}

impl From<InstanceStatus> for InstanceRow {
    fn from(instance: InstanceStatus) -> Self {
        Self {
            id: instance.id,
            node: instance.node,
            state: instance.state,
            restarts: instance.restarts,
            node_state: None,
        }
    }
}

/// The task of an instance id: what comes before its last `/`.
pub fn task_of(instance: &str) -> &str {
    instance.rsplit_once('/').map_or(instance, |(task, _)| task)
}

/// A row of the tasks view: a task, or one of its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskItem {
    /// The task, as an index into the app's tasks.
    pub task: usize,
    /// The instance, as an index into the task's instances; `None` for the
    /// task's own row.
    pub instance: Option<usize>,
}

/// What the tasks view has selected, by name, so new snapshots keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskPick {
    /// A task's own row.
    Task(String),
    /// An instance, by id.
    Instance(String),
}

/// A plan on screen: confirmed with Enter, or only read (what-if).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDialog {
    /// The action the plan is for, sent as is when confirmed.
    pub action: OperatorAction,
    /// The console's plan.
    pub plan: Plan,
    /// How many lines of moves and notes are scrolled past.
    pub scroll: usize,
}

impl PlanDialog {
    /// Whether the plan is only shown, never carried out (what-if).
    pub fn read_only(&self) -> bool {
        matches!(self.action, OperatorAction::WhatIf { .. })
    }
}

/// What a pick leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickStep {
    /// The picked instance is restarted (its plan is shown).
    Restart,
    /// The picked instance is migrated: a target is picked next.
    MigrateInstance,
    /// `instance` migrates to the picked node (its plan is shown).
    MigrateTarget {
        /// `task/index`.
        instance: String,
    },
}

/// What a picker row says beside its name.
#[derive(Debug, Clone, PartialEq)]
pub enum PickFacts {
    /// An instance: its state and node.
    Instance {
        /// Its state.
        state: String,
        /// Its node.
        node: Option<String>,
    },
    /// A node: its state, load and CPU.
    Node {
        /// Its liveness.
        state: NodeState,
        /// Instances placed on it.
        instances: usize,
        /// CPU use, percent.
        cpu_percent: f64,
    },
}

/// One row of a picker.
#[derive(Debug, Clone, PartialEq)]
pub struct PickItem {
    /// What is picked: an instance id or a node name.
    pub value: String,
    /// Shown beside it.
    pub facts: PickFacts,
}

/// A list to pick one item from, narrowed by typing.
#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    /// What the pick leads to.
    pub step: PickStep,
    /// The question, in the popup's title.
    pub title: String,
    /// Every item, in display order.
    pub items: Vec<PickItem>,
    /// What was typed: items containing it stay.
    pub query: String,
    /// The highlighted position among the matching items.
    pub cursor: usize,
}

impl Picker {
    /// A picker over `items` with the first one highlighted.
    pub fn new(step: PickStep, title: impl Into<String>, items: Vec<PickItem>) -> Self {
        Self { step, title: title.into(), items, query: String::new(), cursor: 0 }
    }

    /// The items the query lets through, in order.
    pub fn matching(&self) -> impl Iterator<Item = &PickItem> {
        self.items.iter().filter(|item| contains_ignore_case(&item.value, &self.query))
    }

    /// The highlighted item.
    pub fn current(&self) -> Option<&PickItem> {
        self.matching().nth(self.cursor)
    }
}

/// What a status-line message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Information or a hint.
    Info,
    /// A command that succeeded.
    Ok,
    /// A command that failed or was refused.
    Error,
}

/// The status-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    /// What it says.
    pub text: String,
    /// How to colour it.
    pub kind: MessageKind,
    /// When it was set (`now_ms` scale), to expire it.
    pub since_ms: u64,
}

/// Where the last frame drew what the mouse can click, so a click can be
/// mapped back to a row, a node on the ring or a tab.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hits {
    /// Each tab's cells.
    pub tabs: Vec<(Rect, View)>,
    /// The node table's body.
    pub table: Option<TableHit>,
    /// The ring's canvas.
    pub ring: Option<RingHit>,
    /// The event list's body, and how many events it shows.
    pub events: Option<(Rect, usize)>,
    /// The tasks table's body.
    pub tasks: Option<TableHit>,
    /// A picker's list: its rows, and the first matching item drawn.
    pub picker: Option<TableHit>,
    /// Lines of the help that fit, and how many there are: scrolling stops
    /// at the end.
    pub help_lines: Option<(usize, usize)>,
    /// Lines of moves and notes the plan dialog shows, and how many there
    /// are.
    pub dialog_lines: Option<(usize, usize)>,
}

/// The node table as last drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableHit {
    /// The cells of its data rows (header excluded).
    pub rows: Rect,
    /// The position (in the table's order) of its first drawn row.
    pub offset: usize,
}

/// The ring canvas as last drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingHit {
    /// The canvas cells (inside its border).
    pub area: Rect,
    /// Its canvas bounds.
    pub bounds: Bounds,
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    /// Shown in the header.
    pub(crate) title: String,
    /// The view on screen.
    pub(crate) view: View,
    /// Where `Esc` from the detail view returns.
    pub(crate) back: View,
    /// Whether the help overlay is open.
    pub(crate) help: bool,
    /// How many lines of the help are scrolled past (it may not fit 80×24).
    pub(crate) help_scroll: usize,
    /// The node table's order.
    pub(crate) sort: SortKey,
    /// Whether that order is reversed (`S`).
    pub(crate) reversed: bool,
    /// The filter on node names and event text.
    pub(crate) filter: String,
    /// Whether keys are typing into the filter.
    pub(crate) filter_editing: bool,
    /// Every node of the latest snapshot, in its order.
    pub(crate) nodes: Vec<NodeRow>,
    /// The nodes the filter lets through, as indices into `nodes`, sorted.
    pub(crate) order: Vec<usize>,
    /// The selected node's name: kept by name, so re-sorting and new
    /// snapshots do not move the selection to another node.
    pub(crate) selected: Option<String>,
    /// The selected node's position in `order`.
    pub(crate) cursor: usize,
    /// The first table row drawn last time (scrolling keeps it stable).
    pub(crate) table_offset: usize,
    /// Per-node history, by name.
    pub(crate) history: HashMap<String, History>,
    /// When history was last sampled.
    pub(crate) last_history_ms: Option<u64>,
    /// The ring and its drawing cache.
    pub(crate) ring: RingCache,
    /// How many times the ring was built (it should be rare).
    pub(crate) ring_builds: u64,
    /// Whether ring builds are left to the caller ([`App::take_ring_request`])
    /// instead of done inline: building a ring of thousands of nodes takes
    /// long enough to stall the UI, so the loop builds it on a blocking
    /// thread while the old one stays on screen.
    pub(crate) defer_ring: bool,
    /// The ring the latest snapshot calls for, when it is not the one
    /// cached, and whether the caller already took the request.
    pub(crate) ring_request: Option<(Vec<(String, u32)>, bool)>,
    /// The state of each ring node, by ring index.
    pub(crate) ring_states: Vec<NodeState>,
    /// What the ring's arcs are coloured by.
    pub(crate) ring_colors: RingColors,
    /// Each ring node's share of the data against an even share (1.0 is
    /// even), by ring index; `None` for a node holding nothing.
    pub(crate) ring_data: Vec<Option<f64>>,
    /// Instances as dots on the ring: the angle of their key's hash and the
    /// state of the node running them.
    pub(crate) instance_dots: Vec<(f64, NodeState)>,
    /// The angles of the selected node's instances, highlighted on the ring.
    pub(crate) selected_dots: Vec<f64>,
    /// The selected node's arcs `(start, sweep)`, recomputed when the
    /// selection or the ring changes.
    pub(crate) selected_arcs: Vec<(f64, f64)>,
    /// The newest events, oldest first.
    pub(crate) events: VecDeque<EventRow>,
    /// The newest event's number.
    pub(crate) last_seq: u64,
    /// Events that happened between two snapshots but were not in either
    /// (a burst longer than a snapshot carries).
    pub(crate) events_missed: u64,
    /// Events the console could not persist.
    pub(crate) dropped_events: u64,
    /// How many matching events the event view is scrolled back from the
    /// newest (0 follows the log).
    pub(crate) event_scroll: usize,
    /// Tasks of the desired state.
    pub(crate) tasks: Vec<TaskRow>,
    /// The rows of the tasks view the filter lets through: each task, then
    /// its instances.
    pub(crate) task_items: Vec<TaskItem>,
    /// The tasks view's selection, by name.
    pub(crate) task_selected: Option<TaskPick>,
    /// The selected row's position in `task_items`.
    pub(crate) task_cursor: usize,
    /// The first tasks row drawn last time.
    pub(crate) task_offset: usize,
    /// Nodes per state, in [`STATES`] order.
    pub(crate) counts: [usize; 6],
    /// Cordoned nodes.
    pub(crate) cordoned: usize,
    /// Instances of all tasks.
    pub(crate) instances: usize,
    /// Further node failures every task survives, as the console computes
    /// it.
    pub(crate) headroom: Headroom,
    /// The data store's figures.
    pub(crate) data: DataStatus,
    /// Why automatic failover is paused, if it is: shown loudly on every
    /// view until resumed.
    pub(crate) failover_paused: Option<String>,
    /// The console answering: leader or standby, its store's health.
    pub(crate) console: ConsoleStatus,
    /// A plan awaiting confirmation (or, for what-if, reading).
    pub(crate) dialog: Option<PlanDialog>,
    /// A list to pick an instance or a node from, for `r` and `m`.
    pub(crate) picker: Option<Picker>,
    /// The `:` command line being typed, without the colon.
    pub(crate) command_line: Option<String>,
    /// Whether demo commands are available.
    pub(crate) demo: bool,
    /// Why what is shown may be out of date (an attached console's link).
    pub(crate) link_problem: Option<String>,
    /// Actions are refused here: an attached viewer.
    pub(crate) read_only: bool,
    /// Where the console listens.
    pub(crate) listen: Option<SocketAddr>,
    /// The status-line message.
    pub(crate) message: Option<StatusMessage>,
    /// The latest `now_ms` seen.
    pub(crate) now_ms: u64,
    /// Clickable areas of the last frame.
    pub(crate) hits: Hits,
}

impl App {
    /// An empty state; the header shows `title`.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            view: View::Overview,
            back: View::Overview,
            help: false,
            help_scroll: 0,
            sort: SortKey::Name,
            reversed: false,
            filter: String::new(),
            filter_editing: false,
            nodes: Vec::new(),
            order: Vec::new(),
            selected: None,
            cursor: 0,
            table_offset: 0,
            history: HashMap::new(),
            last_history_ms: None,
            ring: RingCache::default(),
            ring_builds: 0,
            defer_ring: false,
            ring_request: None,
            ring_states: Vec::new(),
            ring_colors: RingColors::State,
            ring_data: Vec::new(),
            instance_dots: Vec::new(),
            selected_dots: Vec::new(),
            selected_arcs: Vec::new(),
            events: VecDeque::new(),
            last_seq: 0,
            events_missed: 0,
            dropped_events: 0,
            event_scroll: 0,
            tasks: Vec::new(),
            task_items: Vec::new(),
            task_selected: None,
            task_cursor: 0,
            task_offset: 0,
            counts: [0; 6],
            cordoned: 0,
            instances: 0,
            headroom: Headroom::default(),
            data: DataStatus::default(),
            failover_paused: None,
            console: ConsoleStatus::default(),
            dialog: None,
            picker: None,
            command_line: None,
            demo: false,
            link_problem: None,
            read_only: false,
            listen: None,
            message: None,
            now_ms: 0,
            hits: Hits::default(),
        }
    }

    /// Takes in a snapshot taken at `now_ms`.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let Snapshot {
            status,
            mut samples,
            events,
            dropped_events,
            listen,
            demo,
            at_unix_ms: _,
            link_problem,
            read_only,
        } = snapshot;
        self.demo = demo;
        self.link_problem = link_problem;
        self.read_only = read_only;
        self.listen = listen;
        self.dropped_events = dropped_events;

        self.nodes = status
            .nodes
            .into_iter()
            .map(|node| {
                let sample = samples.remove(&node.name);
                NodeRow::from_status(node, sample)
            })
            .collect();
        self.refresh_ring();
        self.counts = [0; 6];
        self.cordoned = 0;
        for node in &self.nodes {
            if let Some(slot) = STATES.iter().position(|&state| state == node.state) {
                self.counts[slot] += 1;
            }
            self.cordoned += usize::from(node.cordoned);
        }
        self.headroom = status.headroom;
        self.data = status.data;
        self.failover_paused = status.failover_paused;
        self.console = status.console;
        self.tasks = status.tasks.into_iter().map(TaskRow::from).collect();
        self.refresh_tasks();
        self.record_history();
        self.ingest_events(events);
        self.refresh_order();
        self.refresh_task_items();
        if self.message.as_ref().is_some_and(|message| self.now_ms.saturating_sub(message.since_ms) >= MESSAGE_TTL_MS) {
            self.message = None;
        }
    }

    /// Remembers where the last frame drew clickable things.
    pub fn remember(&mut self, hits: Hits) {
        if let Some(table) = hits.table {
            self.table_offset = table.offset;
        }
        if let Some(table) = hits.tasks {
            self.task_offset = table.offset;
        }
        self.hits = hits;
    }

    /// Shows the console's plan for `action` in the confirmation dialog, or
    /// why there is none in the status line.
    pub fn show_plan(&mut self, action: OperatorAction, plan: Result<Plan, String>) {
        match plan {
            Ok(plan) => self.dialog = Some(PlanDialog { action, plan, scroll: 0 }),
            Err(err) => self.set_message(format!("cannot {}: {err}", action_words(&action)), MessageKind::Error),
        }
    }

    /// The cluster changed between the plan the operator confirmed and its
    /// execution: nothing was done; the new plan goes back into the dialog.
    pub fn plan_changed(&mut self, action: OperatorAction, plan: Plan) {
        self.dialog = Some(PlanDialog { action, plan, scroll: 0 });
        self.set_message("the cluster changed since this plan was made: confirm the new plan", MessageKind::Info);
    }

    /// Shows a command's outcome in the status line.
    pub fn command_result(&mut self, result: Result<String, String>) {
        match result {
            Ok(text) => self.set_message(text, MessageKind::Ok),
            Err(text) => self.set_message(text, MessageKind::Error),
        }
    }

    /// Puts `text` in the status line.
    pub fn set_message(&mut self, text: impl Into<String>, kind: MessageKind) {
        self.message = Some(StatusMessage { text: text.into(), kind, since_ms: self.now_ms });
    }

    /// The view on screen.
    pub fn view(&self) -> View {
        self.view
    }

    /// The selected node's name.
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The selected node.
    pub fn selected_node(&self) -> Option<&NodeRow> {
        let name = self.selected.as_deref()?;
        self.nodes.iter().find(|node| node.name == name)
    }

    /// The node at position `position` of the table's order.
    pub fn node_at(&self, position: usize) -> Option<&NodeRow> {
        self.order.get(position).and_then(|&index| self.nodes.get(index))
    }

    /// The history of `name`.
    pub fn history(&self, name: &str) -> Option<&History> {
        self.history.get(name)
    }

    /// The events the filter lets through, newest first.
    pub fn filtered_events(&self) -> impl Iterator<Item = &EventRow> {
        self.events.iter().rev().filter(|event| event.matches(&self.filter))
    }

    /// Moves the selection to position `position` of the table's order
    /// (clamped).
    pub(crate) fn select_position(&mut self, position: usize) {
        if self.order.is_empty() {
            self.cursor = 0;
            self.set_selected(None);
            return;
        }
        self.cursor = position.min(self.order.len() - 1);
        let name = self.node_at(self.cursor).map(|node| node.name.clone());
        self.set_selected(name);
    }

    /// Moves the selection by `delta` rows.
    pub(crate) fn move_selection(&mut self, delta: isize) {
        let position = self.cursor.saturating_add_signed(delta);
        self.select_position(position);
    }

    /// Selects `name` if the table shows it; says why not otherwise.
    pub(crate) fn select_name(&mut self, name: &str) -> bool {
        match self.order.iter().position(|&index| self.nodes[index].name == name) {
            Some(position) => {
                self.select_position(position);
                true
            }
            None => false,
        }
    }

    /// Re-filters and re-sorts the table, keeping the selected node.
    pub(crate) fn refresh_order(&mut self) {
        let nodes = &self.nodes;
        let filter = self.filter.as_str();
        self.order.clear();
        self.order.extend((0..nodes.len()).filter(|&index| contains_ignore_case(&nodes[index].name, filter)));
        let sort = self.sort;
        let reversed = self.reversed;
        self.order.sort_by(|&a, &b| {
            let (a, b) = (&nodes[a], &nodes[b]);
            let primary = match sort {
                SortKey::Name => std::cmp::Ordering::Equal,
                SortKey::State => severity(a.state).cmp(&severity(b.state)),
                SortKey::Phi => b.phi.total_cmp(&a.phi),
                SortKey::Cpu => b.cpu_percent.total_cmp(&a.cpu_percent),
                SortKey::Memory => b.mem_percent().total_cmp(&a.mem_percent()),
            };
            let ordering = primary.then_with(|| a.name.cmp(&b.name));
            if reversed { ordering.reverse() } else { ordering }
        });
        let position = self
            .selected
            .as_deref()
            .and_then(|name| self.order.iter().position(|&index| self.nodes[index].name == name));
        match position {
            Some(position) => self.cursor = position,
            None => self.select_position(self.cursor),
        }
    }

    fn set_selected(&mut self, name: Option<String>) {
        if self.selected != name {
            self.selected = name;
            self.selected_arcs = match &self.selected {
                Some(name) => self.ring.arcs_of(name),
                None => Vec::new(),
            };
            self.map_selected_dots();
        }
    }

    /// The angles of the selected node's instances.
    fn map_selected_dots(&mut self) {
        self.selected_dots.clear();
        if let Some(node) = self.selected_node() {
            let dots: Vec<f64> = node.instances.iter().map(|id| angle_of(stable_hash(id.as_bytes()))).collect();
            self.selected_dots = dots;
        }
    }

    fn refresh_ring(&mut self) {
        let key = ring_key(self.nodes.iter().map(|node| (node.name.as_str(), node.weight)));
        if self.ring.is_built_from(&key) {
            self.ring_request = None;
        } else if self.defer_ring {
            let requested = self.ring_request.as_ref().is_some_and(|(wanted, _)| same_key(&key, wanted));
            if !requested {
                let owned = key.iter().map(|&(name, weight)| (name.to_string(), weight)).collect();
                self.ring_request = Some((owned, false));
            }
        } else {
            let owned = key.iter().map(|&(name, weight)| (name.to_string(), weight)).collect();
            self.ring = RingCache::build(owned);
            self.ring_builds += 1;
            self.selected_arcs = self.selected.as_deref().map(|name| self.ring.arcs_of(name)).unwrap_or_default();
        }
        self.map_ring();
    }

    /// Builds rings on the caller's request ([`App::take_ring_request`])
    /// rather than inline.
    pub fn defer_ring_builds(&mut self) {
        self.defer_ring = true;
    }

    /// The `(name, weight)` pairs of a ring to build, once per change, when
    /// builds are deferred. Hand the result of [`RingCache::build`] to
    /// [`App::install_ring`].
    pub fn take_ring_request(&mut self) -> Option<Vec<(String, u32)>> {
        match &mut self.ring_request {
            Some((key, taken)) if !*taken => {
                *taken = true;
                Some(key.clone())
            }
            _ => None,
        }
    }

    /// Puts a ring built on request in place.
    pub fn install_ring(&mut self, ring: RingCache) {
        if self.ring_request.as_ref().is_some_and(|(wanted, _)| wanted.as_slice() == ring.key()) {
            self.ring_request = None;
        }
        self.ring = ring;
        self.ring_builds += 1;
        self.selected_arcs = self.selected.as_deref().map(|name| self.ring.arcs_of(name)).unwrap_or_default();
        self.map_ring();
    }

    /// Maps nodes onto the cached ring: indices, shares, colours, dots.
    fn map_ring(&mut self) {
        self.ring_states.clear();
        // Nodes the ring has but the snapshot no longer does (while a new
        // ring is being built) show as unknown.
        self.ring_states.resize(self.ring.len(), NodeState::Unknown);
        self.ring_data.clear();
        self.ring_data.resize(self.ring.len(), None);
        let (total, even) = data_totals(&self.nodes);
        for node in &mut self.nodes {
            node.ring_index = self.ring.index_of(&node.name);
            node.share = 0.0;
            node.data_share = data_share(node.data, total);
            if let Some(index) = node.ring_index {
                node.share = self.ring.share(index);
                self.ring_states[index] = node.state;
                if node.data.0 > 0 {
                    self.ring_data[index] = Some(node.data_share / even);
                }
            }
        }
        self.instance_dots.clear();
        for node in &self.nodes {
            for id in node.instances.iter().take(MAX_DOTS.saturating_sub(self.instance_dots.len())) {
                self.instance_dots.push((angle_of(stable_hash(id.as_bytes())), node.state));
            }
        }
        self.map_selected_dots();
    }

    /// Counts instances and notes the state of each instance's node.
    fn refresh_tasks(&mut self) {
        self.instances = self.tasks.iter().map(|task| task.instances.len()).sum();
        if self.tasks.is_empty() {
            return;
        }
        let states: HashMap<&str, NodeState> = self.nodes.iter().map(|node| (node.name.as_str(), node.state)).collect();
        for task in &mut self.tasks {
            for instance in &mut task.instances {
                instance.node_state = instance.node.as_deref().and_then(|node| states.get(node).copied());
            }
        }
    }

    /// Re-filters the tasks view's rows, keeping the selected one.
    pub(crate) fn refresh_task_items(&mut self) {
        self.task_items.clear();
        for (index, task) in self.tasks.iter().enumerate() {
            if !task.matches(&self.filter) {
                continue;
            }
            self.task_items.push(TaskItem { task: index, instance: None });
            self.task_items
                .extend((0..task.instances.len()).map(|instance| TaskItem { task: index, instance: Some(instance) }));
        }
        let position = self
            .task_selected
            .as_ref()
            .and_then(|pick| self.task_items.iter().position(|&item| self.is_task_pick(item, pick)));
        match position {
            Some(position) => self.task_cursor = position,
            None => self.select_task_position(self.task_cursor),
        }
    }

    /// The task (and instance) of a tasks view row.
    pub fn task_item(&self, item: TaskItem) -> Option<(&TaskRow, Option<&InstanceRow>)> {
        let task = self.tasks.get(item.task)?;
        match item.instance {
            Some(index) => task.instances.get(index).map(|instance| (task, Some(instance))),
            None => Some((task, None)),
        }
    }

    /// The tasks view's selected row.
    pub fn selected_task_item(&self) -> Option<(&TaskRow, Option<&InstanceRow>)> {
        self.task_items.get(self.task_cursor).and_then(|&item| self.task_item(item))
    }

    fn is_task_pick(&self, item: TaskItem, pick: &TaskPick) -> bool {
        match (self.task_item(item), pick) {
            (Some((_, Some(instance))), TaskPick::Instance(id)) => instance.id == *id,
            (Some((task, None)), TaskPick::Task(name)) => task.name == *name,
            _ => false,
        }
    }

    fn task_pick(&self, item: TaskItem) -> Option<TaskPick> {
        self.task_item(item).map(|(task, instance)| match instance {
            Some(instance) => TaskPick::Instance(instance.id.clone()),
            None => TaskPick::Task(task.name.clone()),
        })
    }

    /// Moves the tasks view's selection to row `position` (clamped).
    pub(crate) fn select_task_position(&mut self, position: usize) {
        if self.task_items.is_empty() {
            self.task_cursor = 0;
            self.task_selected = None;
            return;
        }
        self.task_cursor = position.min(self.task_items.len() - 1);
        self.task_selected = self.task_pick(self.task_items[self.task_cursor]);
    }

    /// Moves the tasks view's selection by `delta` rows.
    pub(crate) fn move_task_selection(&mut self, delta: isize) {
        self.select_task_position(self.task_cursor.saturating_add_signed(delta));
    }

    /// An instance by id.
    pub fn instance(&self, id: &str) -> Option<&InstanceRow> {
        let task = self.tasks.iter().find(|task| task.name == task_of(id))?;
        task.instances.iter().find(|instance| instance.id == id)
    }

    /// The instances placed on node `name`, as picker rows.
    pub fn instances_on(&self, name: &str) -> Vec<PickItem> {
        let Some(node) = self.nodes.iter().find(|node| node.name == name) else {
            return Vec::new();
        };
        node.instances
            .iter()
            .map(|id| {
                let state = self.instance(id).map_or_else(|| "unknown".to_string(), |instance| instance.state.clone());
                PickItem { value: id.clone(), facts: PickFacts::Instance { state, node: Some(node.name.clone()) } }
            })
            .collect()
    }

    /// The nodes `instance` may migrate to: alive, not cordoned, and not
    /// running it or another instance of its task. Least loaded first.
    pub fn migration_targets(&self, instance: &str) -> Vec<PickItem> {
        let taken: HashSet<&str> = self
            .tasks
            .iter()
            .filter(|task| task.name == task_of(instance))
            .flat_map(|task| task.instances.iter().filter_map(|sibling| sibling.node.as_deref()))
            .collect();
        let mut targets: Vec<&NodeRow> = self
            .nodes
            .iter()
            .filter(|node| node.state == NodeState::Alive && !node.cordoned && !taken.contains(node.name.as_str()))
            .collect();
        targets.sort_by(|a, b| a.instances.len().cmp(&b.instances.len()).then_with(|| a.name.cmp(&b.name)));
        targets
            .into_iter()
            .map(|node| PickItem {
                value: node.name.clone(),
                facts: PickFacts::Node {
                    state: node.state,
                    instances: node.instances.len(),
                    cpu_percent: node.cpu_percent,
                },
            })
            .collect()
    }

    fn record_history(&mut self) {
        if self.last_history_ms.is_some_and(|last| self.now_ms < last + HISTORY_INTERVAL_MS) {
            return;
        }
        self.last_history_ms = Some(self.now_ms);
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // chart values
        for node in &self.nodes {
            let point = HistoryPoint {
                cpu: node.cpu_percent as f32,
                mem: node.mem_percent() as f32,
                rx: node.rx as f32,
                tx: node.tx as f32,
            };
            match self.history.get_mut(&node.name) {
                Some(history) => history.push(point),
                None => {
                    let mut history = History::default();
                    history.push(point);
                    self.history.insert(node.name.clone(), history);
                }
            }
        }
        if self.history.len() > self.nodes.len() {
            let names: HashSet<&str> = self.nodes.iter().map(|node| node.name.as_str()).collect();
            self.history.retain(|name, _| names.contains(name.as_str()));
        }
    }

    fn ingest_events(&mut self, events: Vec<ClusterEvent>) {
        if events.last().is_some_and(|newest| newest.seq < self.last_seq) {
            // The log started over (a new console): start over too.
            self.events.clear();
            self.last_seq = 0;
            self.event_scroll = 0;
        }
        let mut new_matching = 0;
        for event in events {
            if event.seq <= self.last_seq {
                continue;
            }
            if self.last_seq > 0 && event.seq > self.last_seq + 1 {
                self.events_missed += event.seq - self.last_seq - 1;
            }
            self.last_seq = event.seq;
            let row = EventRow::from(event);
            if row.matches(&self.filter) {
                new_matching += 1;
            }
            if self.events.len() >= MAX_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(row);
        }
        if self.event_scroll > 0 {
            // Scrolled back: keep the same events on screen.
            self.event_scroll += new_matching;
        }
    }
}

/// What data shares are shares of: every node's current copies' bytes, or
/// (when all objects are empty) its objects; and the even share, one over
/// the nodes that are up or hold data.
fn data_totals(nodes: &[NodeRow]) -> ((u64, u64), f64) {
    let objects = nodes.iter().map(|node| node.data.0).sum();
    let bytes = nodes.iter().map(|node| node.data.1).sum();
    let sharing = nodes.iter().filter(|node| node.state.is_up() || node.data.0 > 0).count().max(1);
    #[allow(clippy::cast_precision_loss)] // a display ratio
    let even = 1.0 / sharing as f64;
    ((objects, bytes), even)
}

/// A node's share of `total` (objects, bytes), 0..=1: by bytes, or by
/// objects when no object has any.
fn data_share(held: (u64, u64), total: (u64, u64)) -> f64 {
    if total.1 > 0 { percent(held.1, total.1) / 100.0 } else { percent(held.0, total.0) / 100.0 }
}

/// An action in a few words, for the status line: `drain "a"`.
pub fn action_words(action: &OperatorAction) -> String {
    match action {
        OperatorAction::Restart { target } => format!("restart {target}"),
        OperatorAction::Migrate { instance, to } => format!("migrate {instance} to \"{to}\""),
        OperatorAction::Drain { node } => format!("drain \"{node}\""),
        OperatorAction::Cordon { node } => format!("cordon \"{node}\""),
        OperatorAction::Uncordon { node } => format!("uncordon \"{node}\""),
        OperatorAction::Resume => "resume failover".to_string(),
        OperatorAction::WhatIf { node } => format!("plan a failure of \"{node}\""),
    }
}

#[allow(clippy::cast_precision_loss)] // percentages need no 53-bit precision
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}
