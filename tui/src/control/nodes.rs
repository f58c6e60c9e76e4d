//! The node table: every node the console knows, its connection, and the
//! state its heartbeats and reports imply. Owned by the owner task.
//!
//! Pure state: callers pass `now`, and every state change comes back as a
//! [`Transition`] for the event log and the scheduler. Heartbeats do not
//! come through here: each connection writes its node's [`Liveness`], and
//! [`NodeTable::evaluate`] reads them all on the detection tick.
//!
//! Two rules keep a console from lying to itself (ARCHITECTURE.md,
//! "Invariants"): a pause of the console's own process is forgiven only for
//! nodes that are connected — a dead node stays dead — and a node leaves
//! `failed` only on evidence of life (a new heartbeat, or a reconnection),
//! never because its silence was forgiven.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwatch_shared::detector::{DetectorConfig, Verdict};
use ringwatch_shared::limits::ResourceLimits;
use ringwatch_shared::metrics::MetricsSample;
use ringwatch_shared::names::NodeName;
use ringwatch_shared::protocol::{Hello, Refusal, RefusalKind};
use ringwatch_shared::status::{NodeState, NodeStatus};

use crate::control::liveness::{Liveness, Reading};
use crate::control::workload::NodeView;

/// A state change, for the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The node.
    pub node: NodeName,
    /// Before.
    pub from: NodeState,
    /// After.
    pub to: NodeState,
    /// Why.
    pub reason: String,
    /// When the node was last heard from, if ever in this process's life.
    pub last_heard: Option<Instant>,
}

/// Identifies one connection, so that reports from a replaced connection
/// are ignored.
pub type ConnectionId = usize;

/// The live connection of a node.
#[derive(Debug, Clone)]
struct Link {
    /// quinn's stable id of the connection.
    id: ConnectionId,
    /// SHA-256 of the key the node authenticated with.
    key_fingerprint: String,
    /// Where the connection comes from.
    address: SocketAddr,
}

/// Everything the console knows about one node.
#[derive(Debug)]
struct Node {
    /// Current state.
    state: NodeState,
    /// Why it is in that state.
    reason: String,
    /// The current connection, if any.
    link: Option<Link>,
    /// Its heartbeat state since its last hello; kept after a disconnect so
    /// that its silence keeps counting.
    liveness: Option<Arc<Liveness>>,
    /// The last reading of `liveness`, from the latest evaluation.
    reading: Option<Reading>,
    /// Heartbeats counted when it was found failed: only more of them bring
    /// it back.
    beats_at_failure: Option<u64>,
    /// Ring weight from the hello.
    weight: u32,
    /// When the record was made, for the reconnect grace period.
    known_since: Instant,
}

impl Node {
    fn new(state: NodeState, reason: String, now: Instant) -> Self {
        Self {
            state,
            reason,
            link: None,
            liveness: None,
            reading: None,
            beats_at_failure: None,
            weight: 1,
            known_since: now,
        }
    }

    fn is_linked(&self, connection: ConnectionId) -> bool {
        self.link.as_ref().is_some_and(|link| link.id == connection)
    }

    /// The state a live node is in: alive, or degraded if over its limits.
    fn up_state(&self) -> NodeState {
        if self.reading.as_ref().is_some_and(|reading| reading.over_limit.is_some()) {
            NodeState::Degraded
        } else {
            NodeState::Alive
        }
    }

    fn last_heard(&self) -> Option<Instant> {
        self.reading.as_ref().map(|reading| reading.last_heard)
    }
}

/// Settings of the node table.
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Failure-detector thresholds.
    pub detector: DetectorConfig,
    /// Resource limits that make a node degraded.
    pub limits: ResourceLimits,
    /// After a console start, how long known nodes have to reconnect before
    /// they are taken for failed.
    pub reconnect_grace: Duration,
}

/// All nodes, by name.
#[derive(Debug)]
pub struct NodeTable {
    /// Settings.
    config: TableConfig,
    /// The nodes, sorted by name.
    nodes: BTreeMap<NodeName, Node>,
}

/// What the server should do after a node connected.
#[derive(Debug)]
pub struct Accepted {
    /// A previous connection of the same node with the same key, to close.
    pub replaced: Option<ConnectionId>,
    /// The state change, if any.
    pub transition: Option<Transition>,
    /// Where the connection writes heartbeats and samples.
    pub liveness: Arc<Liveness>,
}

impl NodeTable {
    /// An empty table.
    pub fn new(config: TableConfig) -> Self {
        Self { config, nodes: BTreeMap::new() }
    }

    /// The resource limits connections check samples against.
    pub fn limits(&self) -> &ResourceLimits {
        &self.config.limits
    }

    /// Adds nodes remembered from before a console restart: `unknown` until
    /// they reconnect or the grace period ends; `left` ones stay `left`.
    pub fn remember(&mut self, nodes: impl IntoIterator<Item = (NodeName, NodeState)>, now: Instant) {
        for (name, last_state) in nodes {
            let (state, reason) = if last_state == NodeState::Left {
                (NodeState::Left, "had left before the console restarted".to_string())
            } else {
                (NodeState::Unknown, "console restarted; waiting for the node to reconnect".to_string())
            };
            self.nodes.entry(name).or_insert_with(|| Node::new(state, reason, now));
        }
    }

    /// A node said hello on `connection`.
    ///
    /// # Errors
    /// [`RefusalKind::NameInUse`] when another key is connected under the
    /// name.
    pub fn connect(
        &mut self,
        name: &NodeName,
        connection: ConnectionId,
        key_fingerprint: &str,
        address: SocketAddr,
        hello: &Hello,
        now: Instant,
    ) -> Result<Accepted, Refusal> {
        if self
            .nodes
            .get(name)
            .and_then(|node| node.link.as_ref())
            .is_some_and(|link| link.key_fingerprint != key_fingerprint)
        {
            return Err(Refusal {
                kind: RefusalKind::NameInUse,
                reason: format!("node name \"{name}\" is already connected with another key"),
            });
        }
        let node = self.nodes.entry(name.clone()).or_insert_with(|| Node::new(NodeState::Unknown, String::new(), now));
        let replaced = node
            .link
            .replace(Link { id: connection, key_fingerprint: key_fingerprint.to_string(), address })
            .map(|old| old.id);
        let interval = Duration::from_millis(u64::from(hello.heartbeat_interval_ms.clamp(1, 60_000)));
        let liveness = Arc::new(Liveness::new(self.config.detector.clone(), interval, now));
        node.reading = Some(liveness.read(now));
        node.liveness = Some(liveness.clone());
        node.beats_at_failure = None;
        node.weight = hello.weight.clamp(1, 10_000);
        let reason = match node.state {
            NodeState::Failed => format!("back: reconnected from {address}"),
            NodeState::Unknown if node.reason.is_empty() => format!("joined from {address}"),
            _ => format!("connected from {address}"),
        };
        let to = node.up_state();
        let transition = set_state(name, node, to, reason);
        Ok(Accepted { replaced: replaced.filter(|old| *old != connection), transition, liveness })
    }

    /// The node's agent was granted a renewed certificate for
    /// `key_fingerprint` over its live link: its next connection, with that
    /// key, replaces the live one rather than being refused as another
    /// agent's (README.md, "Certificates").
    pub fn renewed_key(&mut self, name: &NodeName, key_fingerprint: &str) {
        if let Some(link) = self.nodes.get_mut(name).and_then(|node| node.link.as_mut()) {
            link.key_fingerprint = key_fingerprint.to_string();
        }
    }

    /// The node said goodbye: `left` at once.
    pub fn goodbye(&mut self, name: &NodeName, connection: ConnectionId, reason: &str) -> Option<Transition> {
        let node = self.nodes.get_mut(name).filter(|node| node.is_linked(connection))?;
        node.link = None;
        node.liveness = None;
        set_state(name, node, NodeState::Left, format!("said goodbye ({reason})"))
    }

    /// The node's credentials were revoked: it is gone on purpose, like a
    /// goodbye, whatever connection it had.
    pub fn revoked(&mut self, name: &NodeName) -> Option<Transition> {
        let node = self.nodes.get_mut(name)?;
        node.link = None;
        node.liveness = None;
        set_state(name, node, NodeState::Left, "its credential was revoked".into())
    }

    /// `connection` ended. The state is left to the detector: a lost
    /// connection is a symptom, not a verdict. Returns whether it was the
    /// node's current connection.
    pub fn disconnected(&mut self, name: &NodeName, connection: ConnectionId) -> bool {
        match self.nodes.get_mut(name).filter(|node| node.is_linked(connection)) {
            Some(node) => {
                node.link = None;
                true
            }
            None => false,
        }
    }

    /// The connection id of `name`, if it is connected.
    pub fn connection(&self, name: &str) -> Option<ConnectionId> {
        self.nodes.get(name).and_then(|node| node.link.as_ref()).map(|link| link.id)
    }

    /// Our own process was paused until `now`: no connected node is
    /// convicted for it. A node that is not connected is not forgiven: its
    /// silence is its own.
    pub fn forgive_connected(&mut self, now: Instant) {
        for node in self.nodes.values_mut().filter(|node| node.link.is_some()) {
            if let Some(liveness) = &node.liveness {
                liveness.forgive(now);
            }
        }
    }

    /// Judges every node at `now`; returns the state changes.
    pub fn evaluate(&mut self, now: Instant) -> Vec<Transition> {
        let grace = self.config.reconnect_grace;
        let mut transitions = Vec::new();
        for (name, node) in &mut self.nodes {
            let next = match (&node.liveness, node.state) {
                (_, NodeState::Left) => None,
                (None, NodeState::Unknown) if now.saturating_duration_since(node.known_since) >= grace => Some((
                    NodeState::Failed,
                    format!("did not reconnect within {}s of the console starting", grace.as_secs()),
                )),
                (None, _) => None,
                (Some(liveness), state) => {
                    let reading = liveness.read(now);
                    let (phi, silence) = (reading.phi, reading.silence.as_secs_f64());
                    let revived =
                        node.link.is_some() && node.beats_at_failure.is_none_or(|before| reading.beats > before);
                    let over_limit = reading.over_limit.clone();
                    let verdict = reading.verdict;
                    if verdict == Verdict::Failed && state != NodeState::Failed {
                        node.beats_at_failure = Some(reading.beats);
                    }
                    node.reading = Some(reading);
                    match verdict {
                        Verdict::Failed if state != NodeState::Failed => {
                            Some((NodeState::Failed, format!("phi {phi:.1}, silent for {silence:.1}s")))
                        }
                        Verdict::Suspect if state.is_up() => {
                            Some((NodeState::Suspect, format!("phi {phi:.1}, silent for {silence:.1}s")))
                        }
                        Verdict::Alive if state == NodeState::Suspect => {
                            Some((node.up_state(), format!("heartbeats resumed (phi {phi:.1})")))
                        }
                        Verdict::Alive if state == NodeState::Failed && revived => {
                            Some((node.up_state(), format!("heartbeats resumed (phi {phi:.1})")))
                        }
                        Verdict::Alive if state.is_up() && state != node.up_state() => Some((
                            node.up_state(),
                            over_limit.unwrap_or_else(|| "back within its resource limits".into()),
                        )),
                        _ => None,
                    }
                }
            };
            if let Some((to, reason)) = next
                && let Some(transition) = set_state(name, node, to, reason)
            {
                transitions.push(transition);
            }
        }
        transitions
    }

    /// How many nodes the table holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The state of `name`, if known.
    pub fn state(&self, name: &str) -> Option<NodeState> {
        self.nodes.get(name).map(|node| node.state)
    }

    /// When `name` was last heard from.
    pub fn last_heard(&self, name: &str) -> Option<Instant> {
        self.nodes.get(name).and_then(Node::last_heard)
    }

    /// What the scheduler sees of every node, sorted by name.
    pub fn views(&self) -> Vec<NodeView> {
        self.nodes
            .iter()
            .map(|(name, node)| NodeView {
                name: name.clone(),
                state: node.state,
                weight: node.weight,
                cpu_free: node
                    .reading
                    .as_ref()
                    .and_then(|reading| reading.quick)
                    .map_or(1.0, |(cpu, _)| 1.0 - f64::from(cpu) / 1000.0),
            })
            .collect()
    }

    /// The latest full sample of every node that sent one.
    pub fn samples(&self) -> BTreeMap<String, Arc<MetricsSample>> {
        self.nodes
            .iter()
            .filter_map(|(name, node)| {
                node.liveness.as_ref().and_then(|liveness| liveness.sample()).map(|sample| (name.to_string(), sample))
            })
            .collect()
    }

    /// Every node's status at `now`, sorted by name, from the latest
    /// evaluation.
    pub fn status(&self, now: Instant) -> Vec<NodeStatus> {
        self.nodes
            .iter()
            .map(|(name, node)| {
                let reading = node.reading.as_ref();
                let sample = node.liveness.as_ref().and_then(|liveness| liveness.sample());
                let metrics = sample.as_deref();
                let (cpu_permille, mem_permille) = reading.and_then(|reading| reading.quick).unwrap_or_default();
                let mem_total = metrics.map_or(0, |sample| sample.mem_total_bytes);
                NodeStatus {
                    name: name.to_string(),
                    state: node.state,
                    cordoned: false,
                    phi: reading.map_or(0.0, |reading| round2(reading.phi)),
                    last_seen_ms: node.last_heard().map_or(0, |heard| {
                        u64::try_from(now.saturating_duration_since(heard).as_millis()).unwrap_or(u64::MAX)
                    }),
                    cpu_percent: f64::from(cpu_permille) / 10.0,
                    mem_used_bytes: if reading.is_some_and(|reading| reading.quick.is_some()) {
                        mem_total / 1000 * u64::from(mem_permille)
                    } else {
                        metrics.map_or(0, |sample| sample.mem_used_bytes)
                    },
                    mem_total_bytes: mem_total,
                    load: metrics.map_or([0.0; 3], MetricsSample::load),
                    net_rx_bytes_per_sec: metrics.map_or(0, |sample| sample.net_rx_bytes_per_sec),
                    net_tx_bytes_per_sec: metrics.map_or(0, |sample| sample.net_tx_bytes_per_sec),
                    weight: node.weight,
                    heartbeats_lost: reading.map_or(0, |reading| reading.heartbeats_lost),
                    address: node.link.as_ref().map(|link| link.address.to_string()).unwrap_or_default(),
                    reason: node.reason.clone(),
                    instances: Vec::new(),
                    cert_sha256: None,
                    cert_expires_unix: None,
                    data_objects: 0,
                    data_bytes: 0,
                    data_free_bytes: None,
                    rtt_ms: node
                        .link
                        .as_ref()
                        .and(reading)
                        .and_then(|reading| reading.rtt)
                        .map(|rtt| round2(rtt.as_secs_f64() * 1000.0)),
                }
            })
            .collect()
    }
}

fn set_state(name: &NodeName, node: &mut Node, to: NodeState, reason: String) -> Option<Transition> {
    let from = node.state;
    node.reason.clone_from(&reason);
    if from == to {
        return None;
    }
    node.state = to;
    Some(Transition { node: name.clone(), from, to, reason, last_heard: node.last_heard() })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use ringwatch_shared::protocol::Heartbeat;

    use super::*;

    /// A round-trip time for heartbeats in these tests.
    const RTT: Duration = Duration::from_millis(1);

    fn table() -> NodeTable {
        NodeTable::new(TableConfig {
            detector: DetectorConfig::default(),
            limits: ResourceLimits::default(),
            reconnect_grace: Duration::from_secs(10),
        })
    }

    fn name(text: &str) -> NodeName {
        NodeName::parse(text).unwrap()
    }

    fn hello() -> Hello {
        Hello { agent_version: "test".into(), heartbeat_interval_ms: 500, weight: 2 }
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    fn beat(seq: u64) -> Heartbeat {
        Heartbeat { seq, cpu_permille: 100, mem_permille: 200 }
    }

    /// Connects `a` and feeds it regular heartbeats for 10 s; returns the
    /// time of the last one and its liveness.
    fn alive_node(table: &mut NodeTable, start: Instant) -> (Instant, Arc<Liveness>) {
        let accepted = table.connect(&name("a"), 1, "key", addr(), &hello(), start).unwrap();
        assert_eq!(accepted.transition.unwrap().to, NodeState::Alive);
        let mut now = start;
        for seq in 1..=20 {
            now = start + Duration::from_millis(500 * seq);
            accepted.liveness.heartbeat(&beat(seq), now, RTT);
        }
        (now, accepted.liveness)
    }

    #[test]
    fn silence_makes_a_node_suspect_then_failed_and_heartbeats_bring_it_back() {
        let mut table = table();
        let start = Instant::now();
        let (last, liveness) = alive_node(&mut table, start);
        assert!(table.evaluate(last + Duration::from_millis(500)).is_empty());
        let suspect = table.evaluate(last + Duration::from_millis(1400));
        assert_eq!(suspect[0].to, NodeState::Suspect);
        let failed = table.evaluate(last + Duration::from_millis(1600));
        assert_eq!((failed[0].from, failed[0].to), (NodeState::Suspect, NodeState::Failed));
        assert!(failed[0].reason.starts_with("phi "), "{}", failed[0].reason);
        assert_eq!(failed[0].last_heard, Some(last));
        assert!(table.evaluate(last + Duration::from_secs(3)).is_empty(), "no repeated transition");
        // It comes back (SIGCONT): heartbeats resume on the same connection.
        let back = last + Duration::from_secs(4);
        liveness.heartbeat(&beat(21), back, RTT);
        let returned = table.evaluate(back);
        assert_eq!((returned[0].from, returned[0].to), (NodeState::Failed, NodeState::Alive));
    }

    #[test]
    fn a_failed_node_that_reconnects_is_alive_and_the_reason_says_back() {
        let mut table = table();
        let start = Instant::now();
        let (last, _) = alive_node(&mut table, start);
        table.evaluate(last + Duration::from_secs(6));
        assert_eq!(table.state("a"), Some(NodeState::Failed));
        let accepted = table.connect(&name("a"), 2, "key", addr(), &hello(), last + Duration::from_secs(7)).unwrap();
        let transition = accepted.transition.unwrap();
        assert_eq!(transition.to, NodeState::Alive);
        assert!(transition.reason.starts_with("back"), "{}", transition.reason);
        assert_eq!(accepted.replaced, Some(1));
    }

    #[test]
    fn goodbye_is_left_at_once_and_never_failed_later() {
        let mut table = table();
        let start = Instant::now();
        let (last, _) = alive_node(&mut table, start);
        let left = table.goodbye(&name("a"), 1, "SIGTERM").unwrap();
        assert_eq!(left.to, NodeState::Left);
        assert!(table.evaluate(last + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn another_key_cannot_take_a_connected_name() {
        let mut table = table();
        let now = Instant::now();
        table.connect(&name("a"), 1, "key-1", addr(), &hello(), now).unwrap();
        let refusal = table.connect(&name("a"), 2, "key-2", addr(), &hello(), now).unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::NameInUse);
        table.disconnected(&name("a"), 1);
        assert!(table.connect(&name("a"), 2, "key-2", addr(), &hello(), now).is_ok());
    }

    #[test]
    fn reports_from_a_replaced_connection_are_ignored() {
        let mut table = table();
        let now = Instant::now();
        table.connect(&name("a"), 1, "key", addr(), &hello(), now).unwrap();
        table.connect(&name("a"), 2, "key", addr(), &hello(), now).unwrap();
        assert!(table.goodbye(&name("a"), 1, "old connection").is_none());
        assert!(!table.disconnected(&name("a"), 1));
        assert_eq!(table.state("a"), Some(NodeState::Alive));
    }

    #[test]
    fn forgiving_a_console_pause_convicts_no_connected_node() {
        let mut table = table();
        let start = Instant::now();
        let (last, _) = alive_node(&mut table, start);
        let resumed = last + Duration::from_secs(20);
        table.forgive_connected(resumed);
        assert!(table.evaluate(resumed).is_empty());
        assert_eq!(table.state("a"), Some(NodeState::Alive));
    }

    #[test]
    fn regression_a_console_pause_does_not_revive_a_dead_node() {
        // Case 6: after SIGSTOP of the console, a node dead for a minute
        // went failed → alive ("heartbeats resumed") and failed again.
        let mut table = table();
        let start = Instant::now();
        let (last, _) = alive_node(&mut table, start);
        table.disconnected(&name("a"), 1);
        let later = last + Duration::from_secs(60);
        assert_eq!(table.evaluate(later)[0].to, NodeState::Failed);
        table.forgive_connected(later);
        assert!(table.evaluate(later).is_empty(), "a disconnected dead node is not forgiven");
        assert_eq!(table.state("a"), Some(NodeState::Failed));
    }

    #[test]
    fn regression_a_failed_node_leaves_failed_only_on_a_real_heartbeat() {
        // Still connected (a stalled agent), found failed, then the console
        // pauses and forgives it: no heartbeat came, so it stays failed.
        let mut table = table();
        let start = Instant::now();
        let (last, liveness) = alive_node(&mut table, start);
        let dead = last + Duration::from_secs(10);
        assert_eq!(table.evaluate(dead)[0].to, NodeState::Failed);
        table.forgive_connected(dead + Duration::from_secs(2));
        assert!(table.evaluate(dead + Duration::from_secs(2)).is_empty());
        assert_eq!(table.state("a"), Some(NodeState::Failed));
        liveness.heartbeat(&beat(21), dead + Duration::from_secs(3), RTT);
        assert_eq!(table.evaluate(dead + Duration::from_secs(3))[0].to, NodeState::Alive);
    }

    #[test]
    fn remembered_nodes_wait_out_the_grace_period_then_fail() {
        let mut table = table();
        let start = Instant::now();
        table.remember([(name("a"), NodeState::Alive), (name("b"), NodeState::Left)], start);
        assert_eq!(table.state("a"), Some(NodeState::Unknown));
        assert!(table.evaluate(start + Duration::from_secs(9)).is_empty());
        let failed = table.evaluate(start + Duration::from_secs(10));
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].node.as_str(), failed[0].to), ("a", NodeState::Failed));
        assert_eq!(table.state("b"), Some(NodeState::Left));
    }

    #[test]
    fn a_node_over_its_memory_limit_is_degraded_then_recovers() {
        let mut table = table();
        let start = Instant::now();
        let (last, liveness) = alive_node(&mut table, start);
        let limits = ResourceLimits::default();
        let full = MetricsSample { mem_used_bytes: 99, mem_total_bytes: 100, ..MetricsSample::default() };
        liveness.metrics(&limits, full, last);
        let degraded = table.evaluate(last);
        assert_eq!(degraded[0].to, NodeState::Degraded);
        assert!(degraded[0].reason.starts_with("memory 99%"));
        let fine = MetricsSample { mem_used_bytes: 10, mem_total_bytes: 100, ..MetricsSample::default() };
        liveness.metrics(&limits, fine, last);
        assert_eq!(table.evaluate(last)[0].to, NodeState::Alive);
    }
}
