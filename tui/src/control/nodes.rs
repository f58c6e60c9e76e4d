//! The node table: every node the console knows, its connection, its
//! failure detector and the state the detector and its reports imply.
//!
//! Pure state: callers pass `now`, and every state change comes back as a
//! [`Transition`] for the event log. The server feeds it, the detection loop
//! calls [`NodeTable::evaluate`] on a tick, and views read
//! [`NodeTable::status`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringwatch_shared::detector::{DetectorConfig, PhiDetector, Verdict};
use ringwatch_shared::limits::{LimitWatch, ResourceLimits};
use ringwatch_shared::metrics::MetricsSample;
use ringwatch_shared::protocol::{Heartbeat, Hello, Refusal, RefusalKind};
use ringwatch_shared::status::{NodeState, NodeStatus};

/// A state change, for the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The node.
    pub node: String,
    /// Before.
    pub from: NodeState,
    /// After.
    pub to: NodeState,
    /// Why.
    pub reason: String,
}

/// Identifies one connection of one node, so that reports from a replaced
/// connection are ignored.
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
struct NodeRecord {
    /// Current state.
    state: NodeState,
    /// Why it is in that state.
    reason: String,
    /// The current connection, if any.
    link: Option<Link>,
    /// Heartbeat history; `None` until the node first says hello.
    detector: Option<PhiDetector>,
    /// When the node was last heard from (heartbeat or hello).
    last_heard: Option<Instant>,
    /// Last heartbeat sequence number on the current connection.
    last_seq: u64,
    /// Heartbeats missing from the sequence on the current connection.
    heartbeats_lost: u64,
    /// Ring weight from the hello.
    weight: u32,
    /// Latest full metrics sample.
    metrics: Option<MetricsSample>,
    /// CPU and memory per mille from the latest heartbeat.
    quick: Option<(u16, u16)>,
    /// Resource-limit tracking.
    limits: LimitWatch,
    /// Why the node is over its resource limits, if it is.
    over_limit: Option<String>,
    /// When the record was created, for the reconnect grace period.
    known_since: Instant,
}

impl NodeRecord {
    fn new(state: NodeState, reason: String, now: Instant) -> Self {
        Self {
            state,
            reason,
            link: None,
            detector: None,
            last_heard: None,
            last_seq: 0,
            heartbeats_lost: 0,
            weight: 1,
            metrics: None,
            quick: None,
            limits: LimitWatch::default(),
            over_limit: None,
            known_since: now,
        }
    }

    fn is_linked(&self, connection: ConnectionId) -> bool {
        self.link.as_ref().is_some_and(|link| link.id == connection)
    }

    /// The state a live node is in: alive, or degraded if over its limits.
    fn up_state(&self) -> NodeState {
        if self.over_limit.is_some() { NodeState::Degraded } else { NodeState::Alive }
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
    nodes: BTreeMap<String, NodeRecord>,
}

/// What the server should do after a node connected.
#[derive(Debug, PartialEq)]
pub struct Accepted {
    /// A previous connection of the same node with the same key, to close.
    pub replaced: Option<ConnectionId>,
    /// The state change, if any.
    pub transition: Option<Transition>,
}

impl NodeTable {
    /// An empty table.
    pub fn new(config: TableConfig) -> Self {
        Self { config, nodes: BTreeMap::new() }
    }

    /// Adds nodes remembered from before a console restart: `unknown` until
    /// they reconnect or the grace period ends; `left` ones stay `left`.
    pub fn remember(&mut self, nodes: impl IntoIterator<Item = (String, NodeState)>, now: Instant) {
        for (name, last_state) in nodes {
            let (state, reason) = if last_state == NodeState::Left {
                (NodeState::Left, "had left before the console restarted".to_string())
            } else {
                (NodeState::Unknown, "console restarted; waiting for the node to reconnect".to_string())
            };
            self.nodes.entry(name).or_insert_with(|| NodeRecord::new(state, reason, now));
        }
    }

    /// Whether `name` is connected with a key other than `key_fingerprint`.
    pub fn name_taken(&self, name: &str, key_fingerprint: &str) -> bool {
        self.nodes
            .get(name)
            .and_then(|record| record.link.as_ref())
            .is_some_and(|link| link.key_fingerprint != key_fingerprint)
    }

    /// A node said hello on `connection`.
    ///
    /// # Errors
    /// [`RefusalKind::NameInUse`] when another key holds the name.
    pub fn connect(
        &mut self,
        name: &str,
        connection: ConnectionId,
        key_fingerprint: &str,
        address: SocketAddr,
        hello: &Hello,
        now: Instant,
    ) -> Result<Accepted, Refusal> {
        if self.name_taken(name, key_fingerprint) {
            return Err(Refusal {
                kind: RefusalKind::NameInUse,
                reason: format!("node name \"{name}\" is already connected with another key"),
            });
        }
        let record = self
            .nodes
            .entry(name.to_string())
            .or_insert_with(|| NodeRecord::new(NodeState::Unknown, String::new(), now));
        let replaced = record
            .link
            .replace(Link { id: connection, key_fingerprint: key_fingerprint.to_string(), address })
            .map(|old| old.id);
        let interval = Duration::from_millis(u64::from(hello.heartbeat_interval_ms.max(1)));
        record.detector = Some(PhiDetector::new(self.config.detector.clone(), interval, now));
        record.last_heard = Some(now);
        record.last_seq = 0;
        record.heartbeats_lost = 0;
        record.weight = hello.weight.max(1);
        let from = record.state;
        let reason = match from {
            NodeState::Failed => format!("back: reconnected from {address}"),
            NodeState::Unknown if record.reason.is_empty() => format!("joined from {address}"),
            _ => format!("connected from {address}"),
        };
        let transition = set_state(name, record, record.up_state(), reason);
        Ok(Accepted { replaced: replaced.filter(|old| *old != connection), transition })
    }

    /// A heartbeat arrived on `connection` at `now`.
    pub fn heartbeat(&mut self, name: &str, connection: ConnectionId, beat: &Heartbeat, now: Instant) {
        let Some(record) = self.nodes.get_mut(name).filter(|record| record.is_linked(connection)) else {
            return;
        };
        if beat.seq <= record.last_seq {
            return; // duplicate or reordered: not a sign of life worth learning
        }
        record.heartbeats_lost += beat.seq - record.last_seq - 1;
        record.last_seq = beat.seq;
        record.last_heard = Some(now);
        record.quick = Some((beat.cpu_permille, beat.mem_permille));
        if let Some(detector) = record.detector.as_mut() {
            detector.heartbeat(now);
        }
    }

    /// A full metrics sample arrived on `connection`.
    pub fn metrics(&mut self, name: &str, connection: ConnectionId, sample: MetricsSample, now: Instant) {
        let limits = &self.config.limits;
        let Some(record) = self.nodes.get_mut(name).filter(|record| record.is_linked(connection)) else {
            return;
        };
        record.over_limit = record.limits.observe(limits, &sample, now);
        record.metrics = Some(sample);
    }

    /// The node said goodbye: `left` at once.
    pub fn goodbye(&mut self, name: &str, connection: ConnectionId, reason: &str) -> Option<Transition> {
        let record = self.nodes.get_mut(name).filter(|record| record.is_linked(connection))?;
        record.link = None;
        record.detector = None;
        set_state(name, record, NodeState::Left, format!("said goodbye ({reason})"))
    }

    /// The node's credentials were revoked: it is gone on purpose, like a
    /// goodbye, whatever connection it had.
    pub fn revoked(&mut self, name: &str) -> Option<Transition> {
        let record = self.nodes.get_mut(name)?;
        record.link = None;
        record.detector = None;
        set_state(name, record, NodeState::Left, "its credential was revoked".into())
    }

    /// `connection` ended. The state is left to the detector: a lost
    /// connection is a symptom, not a verdict.
    pub fn disconnected(&mut self, name: &str, connection: ConnectionId) {
        if let Some(record) = self.nodes.get_mut(name).filter(|record| record.is_linked(connection)) {
            record.link = None;
        }
    }

    /// Our own process was paused until `now`: no node is convicted for it.
    pub fn forgive_all(&mut self, now: Instant) {
        for record in self.nodes.values_mut() {
            if let Some(detector) = record.detector.as_mut() {
                detector.forgive(now);
            }
        }
    }

    /// Judges every node at `now`; returns the state changes.
    pub fn evaluate(&mut self, now: Instant) -> Vec<Transition> {
        let grace = self.config.reconnect_grace;
        let mut transitions = Vec::new();
        for (name, record) in &mut self.nodes {
            let next = match (&record.detector, record.state) {
                (_, NodeState::Left) => None,
                (None, NodeState::Unknown) if now.saturating_duration_since(record.known_since) >= grace => Some((
                    NodeState::Failed,
                    format!("did not reconnect within {}s of the console starting", grace.as_secs()),
                )),
                (None, _) => None,
                (Some(detector), state) => {
                    let (verdict, phi) = detector.verdict(now);
                    let silence = detector.silence(now).as_secs_f64();
                    match verdict {
                        Verdict::Failed if state != NodeState::Failed => {
                            Some((NodeState::Failed, format!("phi {phi:.1}, silent for {silence:.1}s")))
                        }
                        Verdict::Suspect if state.is_up() => {
                            Some((NodeState::Suspect, format!("phi {phi:.1}, silent for {silence:.1}s")))
                        }
                        Verdict::Alive if state == NodeState::Suspect || state == NodeState::Failed => {
                            Some((record.up_state(), format!("heartbeats resumed (phi {phi:.1})")))
                        }
                        Verdict::Alive if state.is_up() && state != record.up_state() => Some((
                            record.up_state(),
                            record.over_limit.clone().unwrap_or_else(|| "back within its resource limits".into()),
                        )),
                        _ => None,
                    }
                }
            };
            if let Some((to, reason)) = next
                && let Some(transition) = set_state(name, record, to, reason)
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
        self.nodes.get(name).map(|record| record.state)
    }

    /// When `name` was last heard from.
    pub fn last_heard(&self, name: &str) -> Option<Instant> {
        self.nodes.get(name).and_then(|record| record.last_heard)
    }

    /// The latest full sample of every node that sent one.
    pub fn samples(&self) -> BTreeMap<String, MetricsSample> {
        self.nodes
            .iter()
            .filter_map(|(name, record)| record.metrics.clone().map(|sample| (name.clone(), sample)))
            .collect()
    }

    /// Every node's status at `now`, sorted by name.
    pub fn status(&self, now: Instant) -> Vec<NodeStatus> {
        self.nodes
            .iter()
            .map(|(name, record)| {
                let metrics = record.metrics.as_ref();
                let (cpu_permille, mem_permille) = record.quick.unwrap_or_default();
                let mem_total = metrics.map_or(0, |sample| sample.mem_total_bytes);
                NodeStatus {
                    name: name.clone(),
                    state: record.state,
                    cordoned: false,
                    phi: record.detector.as_ref().map_or(0.0, |detector| round2(detector.phi(now))),
                    last_seen_ms: record.last_heard.map_or(0, |heard| {
                        u64::try_from(now.saturating_duration_since(heard).as_millis()).unwrap_or(u64::MAX)
                    }),
                    cpu_percent: f64::from(cpu_permille) / 10.0,
                    mem_used_bytes: if record.quick.is_some() {
                        mem_total * u64::from(mem_permille) / 1000
                    } else {
                        metrics.map_or(0, |sample| sample.mem_used_bytes)
                    },
                    mem_total_bytes: mem_total,
                    load: metrics.map_or([0.0; 3], MetricsSample::load),
                    net_rx_bytes_per_sec: metrics.map_or(0, |sample| sample.net_rx_bytes_per_sec),
                    net_tx_bytes_per_sec: metrics.map_or(0, |sample| sample.net_tx_bytes_per_sec),
                    weight: record.weight,
                    heartbeats_lost: record.heartbeats_lost,
                    address: record.link.as_ref().map(|link| link.address.to_string()).unwrap_or_default(),
                    reason: record.reason.clone(),
                    instances: Vec::new(),
                }
            })
            .collect()
    }
}

fn set_state(name: &str, record: &mut NodeRecord, to: NodeState, reason: String) -> Option<Transition> {
    let from = record.state;
    record.reason.clone_from(&reason);
    if from == to {
        return None;
    }
    record.state = to;
    Some(Transition { node: name.to_string(), from, to, reason })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> NodeTable {
        NodeTable::new(TableConfig {
            detector: DetectorConfig::default(),
            limits: ResourceLimits::default(),
            reconnect_grace: Duration::from_secs(10),
        })
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

    /// Connects `a` and feeds it regular heartbeats for 10 s.
    fn alive_node(table: &mut NodeTable, start: Instant) -> Instant {
        let accepted = table.connect("a", 1, "key", addr(), &hello(), start).unwrap();
        assert_eq!(accepted.transition.unwrap().to, NodeState::Alive);
        let mut now = start;
        for seq in 1..=20 {
            now = start + Duration::from_millis(500 * seq);
            table.heartbeat("a", 1, &beat(seq), now);
        }
        now
    }

    #[test]
    fn silence_makes_a_node_suspect_then_failed_and_heartbeats_bring_it_back() {
        let mut table = table();
        let start = Instant::now();
        let last = alive_node(&mut table, start);
        assert!(table.evaluate(last + Duration::from_millis(500)).is_empty());
        let suspect = table.evaluate(last + Duration::from_millis(1400));
        assert_eq!(suspect[0].to, NodeState::Suspect);
        let failed = table.evaluate(last + Duration::from_millis(1600));
        assert_eq!((failed[0].from, failed[0].to), (NodeState::Suspect, NodeState::Failed));
        assert!(failed[0].reason.starts_with("phi "), "{}", failed[0].reason);
        // Still failed: no repeated transition.
        assert!(table.evaluate(last + Duration::from_secs(3)).is_empty());
        // It comes back (SIGCONT): heartbeats resume on the same connection.
        let back = last + Duration::from_secs(4);
        table.heartbeat("a", 1, &beat(21), back);
        let returned = table.evaluate(back);
        assert_eq!((returned[0].from, returned[0].to), (NodeState::Failed, NodeState::Alive));
    }

    #[test]
    fn a_failed_node_that_reconnects_is_alive_and_the_reason_says_back() {
        let mut table = table();
        let start = Instant::now();
        let last = alive_node(&mut table, start);
        table.evaluate(last + Duration::from_secs(6));
        assert_eq!(table.state("a"), Some(NodeState::Failed));
        let accepted = table.connect("a", 2, "key", addr(), &hello(), last + Duration::from_secs(7)).unwrap();
        let transition = accepted.transition.unwrap();
        assert_eq!(transition.to, NodeState::Alive);
        assert!(transition.reason.starts_with("back"), "{}", transition.reason);
        assert_eq!(accepted.replaced, Some(1));
    }

    #[test]
    fn goodbye_is_left_at_once_and_never_failed_later() {
        let mut table = table();
        let start = Instant::now();
        let last = alive_node(&mut table, start);
        let left = table.goodbye("a", 1, "SIGTERM").unwrap();
        assert_eq!(left.to, NodeState::Left);
        assert!(table.evaluate(last + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn another_key_cannot_take_a_connected_name() {
        let mut table = table();
        let now = Instant::now();
        table.connect("a", 1, "key-1", addr(), &hello(), now).unwrap();
        let refusal = table.connect("a", 2, "key-2", addr(), &hello(), now).unwrap_err();
        assert_eq!(refusal.kind, RefusalKind::NameInUse);
        // Once the first connection is gone, the name is free again.
        table.disconnected("a", 1);
        assert!(table.connect("a", 2, "key-2", addr(), &hello(), now).is_ok());
    }

    #[test]
    fn reports_from_a_replaced_connection_are_ignored() {
        let mut table = table();
        let now = Instant::now();
        table.connect("a", 1, "key", addr(), &hello(), now).unwrap();
        table.connect("a", 2, "key", addr(), &hello(), now).unwrap();
        assert!(table.goodbye("a", 1, "old connection").is_none());
        assert_eq!(table.state("a"), Some(NodeState::Alive));
    }

    #[test]
    fn forgiving_a_console_pause_convicts_nobody() {
        let mut table = table();
        let start = Instant::now();
        let last = alive_node(&mut table, start);
        let resumed = last + Duration::from_secs(20);
        table.forgive_all(resumed);
        assert!(table.evaluate(resumed).is_empty());
        assert_eq!(table.state("a"), Some(NodeState::Alive));
    }

    #[test]
    fn remembered_nodes_wait_out_the_grace_period_then_fail() {
        let mut table = table();
        let start = Instant::now();
        table.remember([("a".to_string(), NodeState::Alive), ("b".to_string(), NodeState::Left)], start);
        assert_eq!(table.state("a"), Some(NodeState::Unknown));
        assert!(table.evaluate(start + Duration::from_secs(9)).is_empty());
        let failed = table.evaluate(start + Duration::from_secs(10));
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].node.as_str(), failed[0].to), ("a", NodeState::Failed));
        assert_eq!(table.state("b"), Some(NodeState::Left));
    }

    #[test]
    fn heartbeat_gaps_count_as_lost() {
        let mut table = table();
        let now = Instant::now();
        table.connect("a", 1, "key", addr(), &hello(), now).unwrap();
        table.heartbeat("a", 1, &beat(1), now);
        table.heartbeat("a", 1, &beat(4), now);
        table.heartbeat("a", 1, &beat(3), now);
        assert_eq!(table.status(now)[0].heartbeats_lost, 2);
    }

    #[test]
    fn a_node_over_its_memory_limit_is_degraded_then_recovers() {
        let mut table = table();
        let start = Instant::now();
        let last = alive_node(&mut table, start);
        let full = MetricsSample { mem_used_bytes: 99, mem_total_bytes: 100, ..MetricsSample::default() };
        table.metrics("a", 1, full, last);
        let degraded = table.evaluate(last);
        assert_eq!(degraded[0].to, NodeState::Degraded);
        assert!(degraded[0].reason.starts_with("memory 99%"));
        let fine = MetricsSample { mem_used_bytes: 10, mem_total_bytes: 100, ..MetricsSample::default() };
        table.metrics("a", 1, fine, last);
        assert_eq!(table.evaluate(last)[0].to, NodeState::Alive);
    }
}
