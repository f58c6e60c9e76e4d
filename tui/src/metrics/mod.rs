//! Prometheus metrics (README.md, "Metrics"; ARCHITECTURE.md, "Metrics"):
//! `--metrics-listen ADDR` serves `GET /metrics` in the OpenMetrics or the
//! classic Prometheus text format.
//!
//! Nothing here reaches into the control plane. A scrape reads two things,
//! neither of which waits for the owner task:
//! - the latest published [`ControlSnapshot`] (the view's `watch`, cloned
//!   out before encoding so the owner's next publication never waits for a
//!   scrape): nodes, their states and figures, tasks and instances, the
//!   headroom, the console's role and store;
//! - the [`Counters`] connection tasks and the owner add to as things
//!   happen: refusals, heartbeats lost, transitions, detection latency,
//!   failovers, moves, restarts, admin requests.
//!
//! Every label value is a node name, a task name or one of a fixed set of
//! words: the number of series is bounded by the fleet and its tasks.
//!
//! # Layout
//! - this module: the metric names ([`names`]) and their encoding
//!   ([`Metrics`]).
//! - [`http`]: the HTTP server behind `--metrics-listen`.

pub mod http;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use ringwatch_shared::status::{ConsoleRole, NodeState};
use tokio::sync::watch;

pub use self::http::{MetricsError, MetricsListener, MetricsServer};
use crate::control::ControlView;
use crate::control::owner::{ControlSnapshot, Counters};

/// Every metric name, for the dashboard, the alerts and the tests.
pub mod names {
    /// Nodes in each state (`state`).
    pub const NODES: &str = "ringwatch_nodes";
    /// 1 while a node (`node`) is alive or degraded, else 0: one series per
    /// known node, so `count(ringwatch_node_up)` is the number of nodes.
    pub const NODE_UP: &str = "ringwatch_node_up";
    /// 1 for a node's (`node`) current state (`state`), 0 for the others.
    pub const NODE_STATE: &str = "ringwatch_node_state";
    /// 1 while a node is cordoned.
    pub const NODE_CORDONED: &str = "ringwatch_node_cordoned";
    /// The failure detector's suspicion level of a node.
    pub const NODE_PHI: &str = "ringwatch_node_phi";
    /// Seconds since a node's last heartbeat.
    pub const NODE_LAST_HEARTBEAT_AGE: &str = "ringwatch_node_last_heartbeat_age_seconds";
    /// A node's total CPU use, 0–1.
    pub const NODE_CPU: &str = "ringwatch_node_cpu_ratio";
    /// A node's memory in use.
    pub const NODE_MEMORY_USED: &str = "ringwatch_node_memory_used_bytes";
    /// A node's memory installed.
    pub const NODE_MEMORY_TOTAL: &str = "ringwatch_node_memory_total_bytes";
    /// A node's load average over 1, 5 and 15 minutes.
    pub const NODE_LOAD: [&str; 3] = ["ringwatch_node_load1", "ringwatch_node_load5", "ringwatch_node_load15"];
    /// Bytes a node receives per second (all interfaces but loopback).
    pub const NODE_NET_RX: &str = "ringwatch_node_network_receive_bytes_per_second";
    /// Bytes a node sends per second (all interfaces but loopback).
    pub const NODE_NET_TX: &str = "ringwatch_node_network_transmit_bytes_per_second";
    /// Heartbeats lost on a node's current connection.
    pub const NODE_HEARTBEATS_LOST: &str = "ringwatch_node_heartbeats_lost";
    /// The round-trip time of a node's connection, as QUIC estimates it.
    pub const NODE_RTT: &str = "ringwatch_node_rtt_seconds";
    /// Instances placed on a node.
    pub const NODE_INSTANCES: &str = "ringwatch_node_instances";
    /// A task's desired instances.
    pub const TASK_REPLICAS: &str = "ringwatch_task_replicas";
    /// Instances of each task (`task`) in each state (`state`).
    pub const INSTANCES: &str = "ringwatch_instances";
    /// How many more node failures every task survives (absent without
    /// tasks; negative when a task has no instance up).
    pub const HEADROOM: &str = "ringwatch_headroom_failures_survived";
    /// 1 when, after losing any one node, every task could still place
    /// all its replicas.
    pub const HEADROOM_CAPACITY_OK: &str = "ringwatch_headroom_capacity_ok";
    /// 1 while automatic failover is paused.
    pub const FAILOVER_PAUSED: &str = "ringwatch_failover_paused";
    /// Data store objects (README.md, "Data").
    pub const DATA_OBJECTS: &str = "ringwatch_data_objects";
    /// Their bytes, one copy each.
    pub const DATA_BYTES: &str = "ringwatch_data_bytes";
    /// Objects with fewer live copies than their replica count.
    pub const DATA_UNDER_REPLICATED: &str = "ringwatch_data_under_replicated_objects";
    /// Objects with no live copy.
    pub const DATA_UNAVAILABLE: &str = "ringwatch_data_unavailable_objects";
    /// Each node's current copies, by node.
    pub const NODE_DATA_BYTES: &str = "ringwatch_node_data_bytes";
    /// 1 while this console leads (a single console always does).
    pub const CONSOLE_LEADER: &str = "ringwatch_console_leader";
    /// The term of the leadership this console holds or follows.
    pub const CONSOLE_TERM: &str = "ringwatch_console_term";
    /// 1 while the state store cannot be written.
    pub const STORE_FAILING: &str = "ringwatch_store_failing";
    /// When the snapshot a scrape read was taken.
    pub const SNAPSHOT_TIMESTAMP: &str = "ringwatch_snapshot_timestamp_seconds";
    /// Entries ever written to the event log (its last sequence number).
    pub const EVENTS: &str = "ringwatch_events";
    /// Connections refused at or after the handshake.
    pub const CONNECTIONS_REFUSED: &str = "ringwatch_connections_refused";
    /// Connections turned away while too many handshakes were in progress.
    pub const CONNECTIONS_SHED: &str = "ringwatch_connections_shed";
    /// Handshakes (and joins) in progress now, under the console's cap.
    pub const HANDSHAKES_IN_PROGRESS: &str = "ringwatch_handshakes_in_progress";
    /// Datagrams that did not decode.
    pub const MALFORMED_DATAGRAMS: &str = "ringwatch_malformed_datagrams";
    /// Heartbeats missing from the agents' sequences.
    pub const HEARTBEATS_LOST: &str = "ringwatch_heartbeats_lost";
    /// Node state transitions (`from`, `to`).
    pub const TRANSITIONS: &str = "ringwatch_node_transitions";
    /// From a node's last heartbeat to its conviction, seconds.
    pub const DETECTION_LATENCY: &str = "ringwatch_detection_latency_seconds";
    /// Instances that left their node on their own (`reason`).
    pub const FAILOVERS: &str = "ringwatch_failovers";
    /// Instances placed on another node (`kind`).
    pub const MOVES: &str = "ringwatch_placement_moves";
    /// Instance restarts in place.
    pub const RESTARTS: &str = "ringwatch_instance_restarts";
    /// Admin requests (`request`, `outcome`).
    pub const ADMIN_REQUESTS: &str = "ringwatch_admin_requests";
    /// Folds of the change log into the embedded database.
    pub const CHANGE_LOG_FOLDS: &str = "ringwatch_change_log_folds";
    /// Folds of the change log that failed.
    pub const CHANGE_LOG_FOLD_FAILURES: &str = "ringwatch_change_log_fold_failures";
    /// How long each fold took.
    pub const CHANGE_LOG_FOLD_DURATION: &str = "ringwatch_change_log_fold_duration_seconds";
    /// Bytes in the change log's open write-ahead file.
    pub const CHANGE_LOG_BYTES: &str = "ringwatch_change_log_bytes";
    /// Bytes waiting in the receive queue of the console's UDP socket
    /// at the owner's last tick (Linux; 0 elsewhere).
    pub const SOCKET_QUEUE: &str = "ringwatch_socket_receive_queue_bytes";
    /// Datagrams the kernel dropped at the console's socket for want of
    /// room (Linux).
    pub const SOCKET_DROPS: &str = "ringwatch_socket_receive_drops";
    /// Times the console fell behind reading its socket and did not
    /// convict connected nodes for the delay.
    pub const FELL_BEHIND: &str = "ringwatch_console_fell_behind";
    /// How long etcd took to confirm each renewal of the console's lease.
    pub const LEASE_RENEWAL_DURATION: &str = "ringwatch_etcd_lease_renewal_duration_seconds";
    /// Leaderships this console lost without resigning.
    pub const STEP_DOWNS: &str = "ringwatch_console_step_downs";
    /// The console's version (`version`).
    pub const BUILD: &str = "ringwatch_build";
}

/// The instance states `status` uses; anything else counts as `other`.
const INSTANCE_STATES: [&str; 7] = ["pending", "starting", "running", "restarting", "stopping", "stopped", "failed"];

/// Every node state, in a stable order.
const NODE_STATES: [NodeState; 6] =
    [NodeState::Unknown, NodeState::Alive, NodeState::Degraded, NodeState::Suspect, NodeState::Failed, NodeState::Left];

/// The metrics of one console, encoded on each scrape.
#[derive(Debug)]
pub struct Metrics {
    /// The counters' metrics and the snapshot's collector.
    registry: Registry,
}

/// The wire formats a scrape may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first).
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 (what `curl` and
    /// `promtool check metrics` read).
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// it, else the classic text.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Text,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

impl Metrics {
    /// The metrics of the console `view` reads. Holding them keeps a
    /// snapshot receiver, so the console publishes one every
    /// `publish_every` as it does for a terminal UI.
    pub fn new(view: &ControlView) -> Self {
        Self::from_parts(view.snapshots(), view.counters())
    }

    /// The metrics of a snapshot channel and counters (for tests).
    pub fn from_parts(snapshots: watch::Receiver<Arc<ControlSnapshot>>, counters: Arc<Counters>) -> Self {
        let mut registry = Registry::default();
        let tallies = &counters.tallies;
        registry.register(
            names::HEARTBEATS_LOST,
            "Heartbeats missing from the agents' sequences",
            tallies.heartbeats_lost.clone(),
        );
        registry.register(names::TRANSITIONS, "Node state transitions", tallies.transitions.clone());
        registry.register(
            names::DETECTION_LATENCY,
            "Time from a node's last heartbeat to its conviction (failed)",
            tallies.detection_latency.clone(),
        );
        registry.register(
            names::FAILOVERS,
            "Instances that left their node without an operator asking, by reason",
            tallies.failovers.clone(),
        );
        registry.register(names::MOVES, "Instances placed on another node, by kind", tallies.moves.clone());
        registry.register(names::RESTARTS, "Instance restarts in place the agents reported", tallies.restarts.clone());
        registry.register(
            names::ADMIN_REQUESTS,
            "Requests over the admin channel, by request and outcome",
            tallies.admin_requests.clone(),
        );
        let change_log = &tallies.change_log;
        registry.register(
            names::CHANGE_LOG_FOLDS,
            "Folds of the change log (state.wal) into the embedded database",
            change_log.folds.clone(),
        );
        registry.register(
            names::CHANGE_LOG_FOLD_FAILURES,
            "Folds of the change log that failed; their batches are folded with the next",
            change_log.failed_folds.clone(),
        );
        registry.register(
            names::CHANGE_LOG_FOLD_DURATION,
            "How long each fold of the change log took",
            change_log.fold_seconds.clone(),
        );
        registry.register(
            names::CHANGE_LOG_BYTES,
            "Bytes in the change log's open write-ahead file, folded past [change_log] fold_at",
            change_log.open_bytes.clone(),
        );
        let socket = &tallies.socket;
        registry.register(
            names::SOCKET_QUEUE,
            "Bytes waiting in the receive queue of the console's UDP socket at the last tick",
            socket.queued_bytes.clone(),
        );
        registry.register(
            names::SOCKET_DROPS,
            "Datagrams the kernel dropped at the console's UDP socket for want of buffer room",
            socket.drops.clone(),
        );
        registry.register(
            names::FELL_BEHIND,
            "Times the console fell behind reading its socket and did not convict connected nodes for the delay",
            socket.fell_behind.clone(),
        );
        let lease = &tallies.lease;
        registry.register(
            names::LEASE_RENEWAL_DURATION,
            "How long etcd took to confirm each renewal of this console's lease (a console in a group)",
            lease.renewal_seconds.clone(),
        );
        registry.register(
            names::STEP_DOWNS,
            "Leaderships this console lost without resigning: a renewal unconfirmed too long, its lease or election key gone",
            lease.step_downs.clone(),
        );
        registry.register(names::BUILD, "The console's version", Info::new([("version", env!("CARGO_PKG_VERSION"))]));
        registry.register_collector(Box::new(SnapshotCollector { snapshots, counters }));
        Self { registry }
    }

    /// The exposition, in `format`.
    ///
    /// # Errors
    /// Only if formatting into a `String` fails, which it does not.
    pub fn encode(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &self.registry)?,
            Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?,
        }
        Ok(text)
    }
}

/// What a scrape reads of the latest snapshot, and the counters of the
/// connection tasks.
#[derive(Debug)]
struct SnapshotCollector {
    /// The console's published snapshots.
    snapshots: watch::Receiver<Arc<ControlSnapshot>>,
    /// Refusals and drops.
    counters: Arc<Counters>,
}

/// One gauge family: a descriptor and `(labels, value)` samples.
fn gauge<L, V, I>(encoder: &mut DescriptorEncoder, name: &str, help: &str, samples: I) -> Result<(), std::fmt::Error>
where
    L: EncodeLabelSet,
    V: EncodeGaugeValue + Finite,
    I: IntoIterator<Item = (L, V)>,
{
    // Sentences, as the registry writes the help of the counters.
    let mut metric = encoder.encode_descriptor(name, &format!("{help}."), None, MetricType::Gauge)?;
    for (labels, value) in samples {
        // A value the format cannot carry (a NaN phi) is left out rather
        // than breaking the whole scrape.
        if value.is_finite() {
            metric.encode_family(&labels)?.encode_gauge(&value)?;
        }
    }
    Ok(())
}

/// One unlabelled counter read from an atomic.
fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, &format!("{help}."), None, counter.metric_type())?)
}

/// Gauge values that may be NaN or infinite.
trait Finite {
    fn is_finite(&self) -> bool;
}

impl Finite for f64 {
    fn is_finite(&self) -> bool {
        f64::is_finite(*self)
    }
}

impl Finite for i64 {
    fn is_finite(&self) -> bool {
        true
    }
}

/// No labels.
type Unlabelled = [(&'static str, &'static str); 0];

/// A gauge of 0 or 1.
fn flag(on: bool) -> i64 {
    i64::from(on)
}

/// Counts and byte sizes as gauge values (beyond `i64::MAX` only by a bug).
fn int(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Cloned out at once: the owner's next publication must never wait
        // for a scrape's encoding.
        let snapshot = self.snapshots.borrow().clone();
        let status = &snapshot.status;
        let nodes = &status.nodes;
        let by_node = |value: fn(&ringwatch_shared::status::NodeStatus) -> f64| {
            nodes.iter().map(move |node| ([("node", node.name.as_str())], value(node)))
        };
        let by_node_int = |value: fn(&ringwatch_shared::status::NodeStatus) -> i64| {
            nodes.iter().map(move |node| ([("node", node.name.as_str())], value(node)))
        };

        gauge(
            &mut encoder,
            names::NODES,
            "Nodes in each state",
            NODE_STATES.iter().map(|state| {
                ([("state", state.as_str())], int(nodes.iter().filter(|node| node.state == *state).count()))
            }),
        )?;
        gauge(
            &mut encoder,
            names::NODE_UP,
            "1 while the node is alive or degraded, else 0",
            by_node_int(|node| flag(node.state.is_up())),
        )?;
        gauge(
            &mut encoder,
            names::NODE_STATE,
            "1 for the node's current state, 0 for the others",
            nodes.iter().flat_map(|node| {
                NODE_STATES.iter().map(move |state| {
                    ([("node", node.name.as_str()), ("state", state.as_str())], flag(node.state == *state))
                })
            }),
        )?;
        gauge(
            &mut encoder,
            names::NODE_CORDONED,
            "1 while the node is cordoned",
            by_node_int(|node| flag(node.cordoned)),
        )?;
        gauge(
            &mut encoder,
            names::NODE_PHI,
            "The failure detector's suspicion level (phi) of the node",
            by_node(|node| node.phi),
        )?;
        #[allow(clippy::cast_precision_loss)] // milliseconds
        gauge(
            &mut encoder,
            names::NODE_LAST_HEARTBEAT_AGE,
            "Seconds since the node's last heartbeat",
            by_node(|node| node.last_seen_ms as f64 / 1000.0),
        )?;
        gauge(
            &mut encoder,
            names::NODE_CPU,
            "Total CPU use of the node, 0 to 1",
            by_node(|node| node.cpu_percent / 100.0),
        )?;
        gauge(
            &mut encoder,
            names::NODE_MEMORY_USED,
            "Memory in use on the node",
            by_node_int(|node| int(node.mem_used_bytes)),
        )?;
        gauge(
            &mut encoder,
            names::NODE_MEMORY_TOTAL,
            "Memory installed on the node",
            by_node_int(|node| int(node.mem_total_bytes)),
        )?;
        let load_help = [
            "Load average of the node over 1 minute",
            "Load average of the node over 5 minutes",
            "Load average of the node over 15 minutes",
        ];
        for (period, (name, help)) in names::NODE_LOAD.iter().zip(load_help).enumerate() {
            gauge(
                &mut encoder,
                name,
                help,
                nodes.iter().map(|node| ([("node", node.name.as_str())], node.load[period])),
            )?;
        }
        gauge(
            &mut encoder,
            names::NODE_NET_RX,
            "Bytes the node receives per second (all interfaces but loopback)",
            by_node_int(|node| int(node.net_rx_bytes_per_sec)),
        )?;
        gauge(
            &mut encoder,
            names::NODE_NET_TX,
            "Bytes the node sends per second (all interfaces but loopback)",
            by_node_int(|node| int(node.net_tx_bytes_per_sec)),
        )?;
        gauge(
            &mut encoder,
            names::NODE_HEARTBEATS_LOST,
            "Heartbeats lost on the node's current connection",
            by_node_int(|node| int(node.heartbeats_lost)),
        )?;
        gauge(
            &mut encoder,
            names::NODE_RTT,
            "Round-trip time of the node's connection as QUIC estimates it (connected nodes only)",
            nodes.iter().filter_map(|node| Some(([("node", node.name.as_str())], node.rtt_ms? / 1000.0))),
        )?;
        gauge(
            &mut encoder,
            names::NODE_INSTANCES,
            "Instances placed on the node",
            by_node_int(|node| int(node.instances.len())),
        )?;

        let tasks = &status.tasks;
        gauge(
            &mut encoder,
            names::TASK_REPLICAS,
            "Instances the task wants",
            tasks.iter().map(|task| ([("task", task.name.as_str())], i64::from(task.replicas))),
        )?;
        gauge(
            &mut encoder,
            names::INSTANCES,
            "Instances of each task in each state",
            tasks.iter().flat_map(|task| {
                let other = task.instances.iter().filter(|i| !INSTANCE_STATES.contains(&i.state.as_str())).count();
                INSTANCE_STATES
                    .iter()
                    .map(move |state| (*state, int(task.instances.iter().filter(|i| i.state == *state).count())))
                    .chain((other > 0).then_some(("other", int(other))))
                    .map(move |(state, count)| ([("task", task.name.as_str()), ("state", state)], count))
            }),
        )?;

        gauge(
            &mut encoder,
            names::HEADROOM,
            "How many more node failures every task survives (absent without tasks)",
            status.headroom.failures_survived.map(|survived| (Unlabelled::default(), survived)),
        )?;
        gauge(
            &mut encoder,
            names::HEADROOM_CAPACITY_OK,
            "1 when, after losing any one node, every task could still place all its replicas",
            [(Unlabelled::default(), flag(status.headroom.capacity_ok))],
        )?;
        gauge(
            &mut encoder,
            names::FAILOVER_PAUSED,
            "1 while automatic failover is paused (resume with `ringwatch resume`)",
            [(Unlabelled::default(), flag(status.failover_paused.is_some()))],
        )?;
        let data = &status.data;
        gauge(&mut encoder, names::DATA_OBJECTS, "Data store objects", [(Unlabelled::default(), int(data.objects))])?;
        gauge(
            &mut encoder,
            names::DATA_BYTES,
            "Bytes of the data store's objects, one copy each",
            [(Unlabelled::default(), int(data.bytes))],
        )?;
        gauge(
            &mut encoder,
            names::DATA_UNDER_REPLICATED,
            "Data store objects with fewer live copies than their replica count",
            [(Unlabelled::default(), int(data.under_replicated))],
        )?;
        gauge(
            &mut encoder,
            names::DATA_UNAVAILABLE,
            "Data store objects with no live copy",
            [(Unlabelled::default(), int(data.unavailable))],
        )?;
        gauge(
            &mut encoder,
            names::NODE_DATA_BYTES,
            "Bytes of the data store's current copies on each node",
            status.nodes.iter().map(|node| ([("node", node.name.as_str())], int(node.data_bytes))),
        )?;
        gauge(
            &mut encoder,
            names::CONSOLE_LEADER,
            "1 while this console leads its group (a single console always does)",
            [(Unlabelled::default(), flag(status.console.role == ConsoleRole::Leader))],
        )?;
        gauge(
            &mut encoder,
            names::CONSOLE_TERM,
            "The term of the leadership this console holds or follows",
            [(Unlabelled::default(), int(status.console.term))],
        )?;
        gauge(
            &mut encoder,
            names::STORE_FAILING,
            "1 while the state store cannot be written (no decision takes effect)",
            [(Unlabelled::default(), flag(snapshot.store_failing.is_some() || status.console.store_problem.is_some()))],
        )?;
        #[allow(clippy::cast_precision_loss)] // milliseconds since 1970 fit a double's mantissa
        gauge(
            &mut encoder,
            names::SNAPSHOT_TIMESTAMP,
            "When the snapshot these figures come from was taken (0 before the first)",
            [(Unlabelled::default(), snapshot.at_unix_ms as f64 / 1000.0)],
        )?;

        counter(
            &mut encoder,
            names::EVENTS,
            "Entries written to the event log (its last sequence number)",
            snapshot.events.last().map_or(0, |event| event.seq),
        )?;
        let counters = &self.counters;
        counter(
            &mut encoder,
            names::CONNECTIONS_REFUSED,
            "Connections refused at or after the handshake",
            counters.refused.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            names::CONNECTIONS_SHED,
            "Connections turned away while too many handshakes were in progress",
            counters.shed.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut encoder,
            names::HANDSHAKES_IN_PROGRESS,
            "Handshakes and joins in progress now; at their cap, new connections are turned away",
            [(Unlabelled::default(), int(counters.handshakes_in_progress.load(Ordering::Relaxed)))],
        )?;
        counter(
            &mut encoder,
            names::MALFORMED_DATAGRAMS,
            "Datagrams that did not decode",
            counters.malformed_datagrams.load(Ordering::Relaxed),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
