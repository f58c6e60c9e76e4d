//! The owner: one task that owns the cluster's state — the node table, the
//! workloads, the credentials and tokens, the event log and the agents'
//! outboxes (ARCHITECTURE.md, "The owner loop").
//!
//! Everything else talks to it through [`Input`]s on one bounded channel —
//! connections (hellos, reports, goodbyes, joins), the admin channel, the
//! UI — and reads what it publishes ([`ControlSnapshot`] on a `watch`). Its
//! loop is one `select!` over inputs, a tick (detection, reconciliation,
//! publication) and the store writer's progress.
//!
//! Every decision that must survive a crash becomes a typed change in the
//! next batch of the change log. Whatever a decision makes visible outside
//! the console — a frame to an agent, an answer to an operator, a granted
//! join — waits in [`Held`] until the batch holding the decision is durable,
//! so a console killed at any instant never acted on something it forgot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwatch_net::pem::to_pem;
use ringwatch_shared::codec;
use ringwatch_shared::data::ObjectKey;
use ringwatch_shared::data::repair::{self, NodeRole, RepairStep};
use ringwatch_shared::metrics::MetricsSample;
use ringwatch_shared::names::{NodeName, TaskName};
use ringwatch_shared::protocol::{
    AdminRequest, AdminResponse, ConsoleFrame, FromConsole, Hello, InstanceReport, IssuedCredential, OperatorRole,
    Refusal, RefusalKind, close_code,
};
use ringwatch_shared::status::{ClusterEvent, ClusterStatus, ConsoleStatus, EventKind, NodeState};
use ringwatch_shared::token::{fingerprint, to_hex};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::control::backlog::{self, Backlog};
use crate::control::data::catalog::{Catalog, NodeInfo, QuotaUse, summary, waited_for};
use crate::control::data::lane::CopyLane;
use crate::control::data::scope::RepairScope;
use crate::control::data::{AgentLink, DataAnswer, DataInput, Repaired};
use crate::control::events::EventLog;
use crate::control::liveness::Liveness;
use crate::control::nodes::{ConnectionId, NodeTable, Transition};
use crate::control::operators::OperatorDirectory;
use crate::control::pki::{ClusterPki, unix_now};
use crate::control::records::OperatorRecord;
use crate::control::registry::{Registry, check_operator_ttl};
use crate::control::store::Batch;
use crate::control::store::writer::{Progress, Writer};
use crate::control::tally::Tallies;
use crate::control::workload::{ActError, Effects, NodeView, Nodes, Now, Workloads};

/// Inputs queued for the owner before senders wait: a burst of thousands of
/// reconnecting agents queues, it does not fail.
pub const INPUT_QUEUE: usize = 4096;

/// Counters of what was refused or dropped, for the operator. Written by
/// connection tasks without going through the owner.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams that did not decode.
    pub malformed_datagrams: AtomicU64,
    /// Connections refused at or after the handshake.
    pub refused: AtomicU64,
    /// Connections turned away (retry or refusal) because too many
    /// handshakes were in progress.
    pub shed: AtomicU64,
    /// Handshakes (and joins) in progress now: `control::admission` keeps
    /// it under its cap.
    pub handshakes_in_progress: AtomicUsize,
    /// What the rest of the control plane counts, for `/metrics`.
    pub tallies: Tallies,
}

/// Something for the owner to handle.
#[derive(Debug)]
pub enum Input {
    /// An agent with a certificate said hello.
    Hello {
        /// SHA-256 (hex) of its certificate.
        cert_fingerprint: String,
        /// What it said.
        hello: Hello,
        /// Where it connects from.
        address: SocketAddr,
        /// The connection, to close it if it is replaced or revoked.
        connection: quinn::Connection,
        /// Where frames for it go, encoded.
        outbox: mpsc::Sender<Bytes>,
        /// The answer.
        reply: oneshot::Sender<Result<Admitted, Refusal>>,
    },
    /// Something from a welcomed agent's session.
    Session {
        /// Its node.
        node: NodeName,
        /// The connection it came on.
        connection: ConnectionId,
        /// What happened.
        event: SessionEvent,
    },
    /// An agent without a certificate asks to join; its certificate is
    /// signed, and is handed out only if this succeeds.
    Join {
        /// What to check and record.
        request: JoinCheck,
        /// The answer, once the credential is durable.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// An operator's request (admin channel or UI).
    Admin {
        /// The request.
        request: AdminRequest,
        /// The answer, once what it changed is durable.
        reply: oneshot::Sender<AdminResponse>,
    },
    /// A snapshot now (for `status`), answered at once.
    Snapshot {
        /// The answer.
        reply: oneshot::Sender<Arc<ControlSnapshot>>,
    },
    /// Something about the data store (README.md, "Data").
    Data {
        /// The question.
        request: DataInput,
        /// The answer; one that hands out a version waits until it is
        /// durable.
        reply: oneshot::Sender<DataAnswer>,
    },
}

/// What a session reports.
#[derive(Debug)]
pub enum SessionEvent {
    /// Every instance the agent runs (after each welcome).
    Inventory(Vec<InstanceReport>),
    /// One instance changed state.
    Instance(InstanceReport),
    /// The agent leaves on purpose.
    Goodbye(String),
    /// The agent asks for a renewed certificate: a signing request (DER)
    /// for its new key (README.md, "Certificates").
    Renew(Vec<u8>),
    /// The connection ended.
    Ended,
}

/// A join to check and record.
#[derive(Debug)]
pub struct JoinCheck {
    /// The name asked for.
    pub name: NodeName,
    /// SHA-256 (hex) of the agent's public key.
    pub key_fingerprint: String,
    /// The id of the token it proved.
    pub token_id: String,
    /// SHA-256 (hex) of the certificate signed for it.
    pub cert_fingerprint: String,
    /// When that certificate expires, Unix seconds.
    pub expires_unix: u64,
    /// Where it connects from, for the event log.
    pub address: SocketAddr,
}

/// A welcomed agent.
#[derive(Debug)]
pub struct Admitted {
    /// Its node name.
    pub node: NodeName,
    /// Where its heartbeats and samples go.
    pub liveness: Arc<Liveness>,
    /// The limits its samples are checked against.
    pub limits: ringwatch_shared::limits::ResourceLimits,
    /// Its certificate outlives the agent certificate lifetime: it is asked
    /// to renew at once (README.md, "Certificates").
    pub renew_now: bool,
}

/// What the owner publishes for readers: the status document, every
/// node's latest sample, the newest events.
#[derive(Debug, Clone, Default)]
pub struct ControlSnapshot {
    /// The status document.
    pub status: ClusterStatus,
    /// The latest full sample of each node.
    pub samples: BTreeMap<String, Arc<MetricsSample>>,
    /// The newest events, oldest first.
    pub events: Arc<[ClusterEvent]>,
    /// Why the state store cannot be written, while it cannot: no decision
    /// takes effect meanwhile.
    pub store_failing: Option<String>,
    /// When it was taken, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// Settings of the owner's loop.
#[derive(Debug, Clone)]
pub struct OwnerConfig {
    /// How often nodes are judged and the scheduler reconciles.
    pub tick: Duration,
    /// A gap between two ticks this long means our own process was paused.
    pub pause_threshold: Duration,
    /// How often a snapshot is published while someone watches.
    pub publish_every: Duration,
    /// Who this console is, for `status` (its role is leader, its term
    /// the one stamped on every frame to agents: 0 for a single console).
    pub console: ConsoleStatus,
    /// The data store's settings.
    pub data: crate::control::data::DataConfig,
}

/// An agent's session, as the owner reaches it.
#[derive(Debug)]
struct Session {
    /// Its node.
    node: NodeName,
    /// The connection.
    connection: quinn::Connection,
    /// Frames for it, encoded (a queue of small handles: ten thousand
    /// agents' queues cost little).
    outbox: mpsc::Sender<Bytes>,
    /// SHA-256 (hex) of the certificate it connected with: the credential
    /// a renewal on this connection renews.
    cert_fingerprint: String,
    /// Where small puts' copies for it gather.
    lane: CopyLane,
}

/// The nodes as the data store sees them ([`Owner::data_view`]).
#[derive(Debug)]
struct DataView {
    nodes: BTreeMap<NodeName, NodeInfo>,
    /// The data ring over them.
    ring: Arc<ringwatch_shared::ring::Ring>,
}

/// Something waiting until the change log is durable up to `seq`.
#[derive(Debug)]
enum Held {
    /// A frame for an agent.
    Frame { seq: u64, node: NodeName, frame: ConsoleFrame },
    /// An operator's answer.
    Admin { seq: u64, reply: oneshot::Sender<AdminResponse>, response: AdminResponse },
    /// A join's answer.
    Join { seq: u64, reply: oneshot::Sender<Result<(), Refusal>> },
    /// A data store answer.
    Data { seq: u64, reply: oneshot::Sender<DataAnswer>, answer: DataAnswer },
}

impl Held {
    fn seq(&self) -> u64 {
        match self {
            Self::Frame { seq, .. } | Self::Admin { seq, .. } | Self::Join { seq, .. } | Self::Data { seq, .. } => *seq,
        }
    }
}

/// The owner's state.
pub struct Owner {
    /// Settings.
    config: OwnerConfig,
    /// Certificates and the token key.
    pki: Arc<ClusterPki>,
    /// Every node.
    table: NodeTable,
    /// Tasks and placements.
    workloads: Workloads,
    /// The data store's objects.
    catalog: Catalog,
    /// Since when each failed or departed node has been down: its copies
    /// are re-replicated only after the data repair delay (`[data] repair_delay`).
    down_since: HashMap<NodeName, Instant>,
    /// Whether repairs were under way at the last plan (for the events).
    repairing: bool,
    /// What the last repair plan looked at.
    repair_scope: RepairScope,
    /// The objects last found without a live copy.
    unavailable: BTreeSet<ObjectKey>,
    /// How fast repairs copy, as the repair task last said.
    repair_rate: u64,
    /// Credentials and tokens.
    registry: Registry,
    /// The event log.
    events: EventLog,
    /// Welcomed agents' sessions by connection.
    sessions: HashMap<ConnectionId, Session>,
    /// The change log's writer.
    writer: Writer,
    /// How far the change log is durable.
    progress: watch::Receiver<Progress>,
    /// The batch being gathered.
    pending: Batch,
    /// The sequence number the gathered batch will have.
    next_seq: u64,
    /// The last batch handed to the writer.
    submitted: u64,
    /// The last batch known durable.
    durable: u64,
    /// The nodes as the data store sees them, while nothing changed them.
    data_view: Option<Arc<DataView>>,
    /// The batch holding the newest reservation of data versions: no
    /// answer carrying a version goes out before it is durable.
    versions_reserved_in: u64,
    /// Effects waiting for durability, in the order they were decided.
    held: VecDeque<Held>,
    /// Where snapshots are published.
    snapshots: Arc<watch::Sender<Arc<ControlSnapshot>>>,
    /// Operator credentials, for the connection handlers.
    operators: Arc<OperatorDirectory>,
    /// The latest snapshot built, and when.
    latest: Option<(Instant, Arc<ControlSnapshot>)>,
    /// When the last tick ran, to notice our own pauses.
    last_tick: Instant,
    /// The console's own socket's receive queue, tick by tick.
    backlog: Backlog,
    /// Where transitions and the scheduler's counts go, for `/metrics`.
    counters: Arc<Counters>,
}

/// What readers subscribe to, kept by the console across leaderships: each
/// owner — and a standby's view of the store — publishes into the same
/// channels, so a view keeps watching whoever answers.
#[derive(Debug, Clone)]
pub struct Outlets {
    /// Where snapshots are published: subscribing makes the publisher
    /// publish (it builds none while nobody watches).
    pub snapshots: Arc<watch::Sender<Arc<ControlSnapshot>>>,
    /// Events as they happen.
    pub events: broadcast::Sender<ClusterEvent>,
    /// Refusals and drops, counted by connection tasks.
    pub counters: Arc<Counters>,
    /// The operator credentials admin connections are checked against,
    /// kept by whoever holds the records.
    pub operators: Arc<OperatorDirectory>,
    /// The console's QUIC socket, whose receive queue the owner watches
    /// (`control::backlog`); `None` in tests without one.
    pub socket: Option<SocketAddr>,
}

impl Outlets {
    /// Fresh channels.
    pub fn new() -> Self {
        Self {
            snapshots: Arc::new(watch::Sender::new(Arc::new(ControlSnapshot::default()))),
            events: broadcast::channel(1024).0,
            counters: Arc::new(Counters::default()),
            operators: Arc::new(OperatorDirectory::default()),
            socket: None,
        }
    }
}

impl Default for Outlets {
    fn default() -> Self {
        Self::new()
    }
}

/// The owner's inputs, for the rest of the console.
#[derive(Debug, Clone)]
pub struct OwnerHandle {
    /// Inputs.
    pub inputs: mpsc::Sender<Input>,
}

impl OwnerHandle {
    /// Sends `request` to the owner and waits for the answer.
    pub async fn request(&self, request: AdminRequest) -> AdminResponse {
        let (reply, answer) = oneshot::channel();
        if self.inputs.send(Input::Admin { request, reply }).await.is_err() {
            return AdminResponse::Error("the console is shutting down".into());
        }
        answer.await.unwrap_or_else(|_| AdminResponse::Error("the console is shutting down".into()))
    }

    /// A snapshot of now (at most a tick old).
    pub async fn fresh_snapshot(&self) -> Option<Arc<ControlSnapshot>> {
        let (reply, answer) = oneshot::channel();
        self.inputs.send(Input::Snapshot { reply }).await.ok()?;
        answer.await.ok()
    }
}

/// What the owner starts from.
pub struct OwnerParts {
    /// Settings.
    pub config: OwnerConfig,
    /// Certificates.
    pub pki: Arc<ClusterPki>,
    /// Nodes remembered from the store.
    pub table: NodeTable,
    /// The scheduler over the stored records.
    pub workloads: Workloads,
    /// The data store's catalog over the stored records.
    pub catalog: Catalog,
    /// Credentials and tokens from the store.
    pub registry: Registry,
    /// The event log, continuing the stored one.
    pub events: EventLog,
    /// The store's writer and its progress.
    pub writer: (Writer, watch::Receiver<Progress>),
    /// Where it publishes.
    pub outlets: Outlets,
}

impl Owner {
    /// The owner over `parts`, and the handle to reach it.
    pub fn new(parts: OwnerParts) -> (Self, OwnerHandle, mpsc::Receiver<Input>) {
        let (inputs_tx, inputs) = mpsc::channel(INPUT_QUEUE);
        let (writer, progress) = parts.writer;
        let durable = progress.borrow().durable;
        let handle = OwnerHandle { inputs: inputs_tx };
        let owner = Self {
            config: parts.config,
            pki: parts.pki,
            table: parts.table,
            workloads: parts.workloads,
            catalog: parts.catalog,
            down_since: HashMap::new(),
            repairing: false,
            repair_scope: RepairScope::default(),
            unavailable: BTreeSet::new(),
            repair_rate: 0,
            registry: parts.registry,
            events: parts.events,
            sessions: HashMap::new(),
            writer,
            progress,
            pending: Batch::default(),
            next_seq: durable + 1,
            submitted: durable,
            durable,
            versions_reserved_in: 0,
            data_view: None,
            held: VecDeque::new(),
            snapshots: parts.outlets.snapshots,
            operators: parts.outlets.operators,
            latest: None,
            last_tick: Instant::now(),
            backlog: Backlog::new(parts.outlets.socket),
            counters: parts.outlets.counters,
        };
        (owner, handle, inputs)
    }

    /// Logs an event now (start-up messages).
    pub fn event(&mut self, text: &str) {
        self.events.emit(EventKind::Console, None, None, None, text);
    }

    /// Says what the records hold that is still under way.
    pub fn resume(&mut self) {
        let effects = self.workloads.resume(Now::read());
        self.commit(effects);
    }

    /// Runs until `shutdown`, then writes what is left and stops the
    /// writer.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.last_tick = Instant::now();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = self.progress.changed() => {
                    if changed.is_err() {
                        warn!("the state writer stopped");
                        break;
                    }
                    self.durable = self.progress.borrow_and_update().durable;
                }
                _ = tick.tick() => self.tick(),
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
            }
            self.flush();
        }
        self.finish().await;
    }

    /// Hands the last batch to the writer and waits until it is written.
    async fn finish(mut self) {
        self.events.emit(EventKind::Console, None, None, None, "console shutting down");
        self.commit(Effects::default());
        if !self.pending.is_empty() {
            self.pending.seq = self.next_seq;
            self.writer.submit(std::mem::take(&mut self.pending));
        }
        let writer = self.writer;
        if tokio::task::spawn_blocking(move || writer.finish()).await.is_err() {
            warn!("the state writer did not finish cleanly");
        }
        // The sessions are not the owner's to close: a console that stops
        // has closed its endpoint already, and one that lost its store may
        // hold them open a while (role::Hold).
    }

    fn handle(&mut self, input: Input) {
        if !matches!(input, Input::Data { .. } | Input::Snapshot { .. }) {
            self.data_view = None;
        }
        match input {
            Input::Hello { cert_fingerprint, hello, address, connection, outbox, reply } => {
                let answer = self.hello(&cert_fingerprint, &hello, address, connection, outbox);
                let _ = reply.send(answer);
            }
            Input::Session { node, connection, event } => self.session(&node, connection, event),
            Input::Join { request, reply } => self.join(request, reply),
            Input::Admin { request, reply } => self.admin(request, reply),
            Input::Data { request, reply } => self.data(request, reply),
            Input::Snapshot { reply } => {
                let _ = reply.send(self.snapshot(Duration::from_millis(100)));
            }
        }
    }

    /// The detection tick: judge every node (forgiving our own pauses),
    /// reconcile, publish.
    fn tick(&mut self) {
        self.data_view = None;
        let now = Now::read();
        let gap = now.at.saturating_duration_since(self.last_tick);
        self.last_tick = now.at;
        let behind = self.backlog.poll(now.at);
        if let Some(reading) = self.backlog.last() {
            self.counters.tallies.socket.observe(reading, behind);
        }
        if gap >= self.config.pause_threshold {
            self.table.forgive_connected(now.at);
            self.events.emit(
                EventKind::Console,
                None,
                None,
                None,
                &format!(
                    "the console itself was paused for {:.1}s; no connected node is convicted for that gap",
                    gap.as_secs_f64()
                ),
            );
        } else if self.behind_own_socket(behind) {
            self.table.forgive_connected(now.at);
        } else {
            for transition in self.table.evaluate(now.at) {
                self.transition(transition, now);
            }
        }
        let views = self.table.views();
        let effects = self.workloads.tick(now, Nodes::new(&views));
        self.commit(effects);
        if self.snapshots.receiver_count() > 0 {
            let snapshot = self.snapshot(self.config.publish_every);
            self.snapshots.send_if_modified(|current| {
                if Arc::ptr_eq(current, &snapshot) {
                    false
                } else {
                    *current = snapshot;
                    true
                }
            });
        }
    }

    /// Whether connected nodes are forgiven this tick because the console
    /// is behind reading its own socket (`control::backlog`); says so when
    /// that starts and when forgiving stops.
    fn behind_own_socket(&mut self, verdict: backlog::Verdict) -> bool {
        let limit = backlog::MAX_FORGIVEN.as_secs();
        match verdict {
            backlog::Verdict::Judge => false,
            backlog::Verdict::StillBehind => true,
            backlog::Verdict::FellBehind(queue) => {
                let text = format!(
                    "the console fell behind reading its socket ({} bytes queued, {} datagrams dropped since it opened); connected nodes are not convicted for the delay, for at most {limit}s",
                    queue.queued_bytes, queue.drops
                );
                self.events.emit(EventKind::Console, None, None, None, &text);
                true
            }
            backlog::Verdict::GaveUp => {
                let text =
                    format!("the console has been behind reading its socket for {limit}s: nodes are judged again");
                self.events.emit(EventKind::Console, None, None, None, &text);
                false
            }
        }
    }

    /// A node changed state: log it, let the scheduler react.
    fn transition(&mut self, transition: Transition, now: Now) {
        let effects =
            self.workloads.node_changed(&transition.node, transition.to, transition.last_heard, now, self.table.len());
        self.events.emit(
            EventKind::NodeState,
            Some(transition.node.as_str()),
            None,
            Some((transition.from, transition.to)),
            &transition.reason,
        );
        match transition.to {
            NodeState::Failed | NodeState::Left => {
                self.down_since.entry(transition.node.clone()).or_insert(now.at);
            }
            NodeState::Alive => {
                self.down_since.remove(&transition.node);
            }
            _ => {}
        }
        let silence = transition.last_heard.map(|heard| now.at.saturating_duration_since(heard));
        self.counters.tallies.transition(transition.from, transition.to, silence);
        self.commit(effects);
    }

    fn hello(
        &mut self,
        cert_fingerprint: &str,
        hello: &Hello,
        address: SocketAddr,
        connection: quinn::Connection,
        outbox: mpsc::Sender<Bytes>,
    ) -> Result<Admitted, Refusal> {
        let now_unix = unix_now();
        let (node, key_fingerprint) = self.registry.identify(cert_fingerprint, now_unix)?;
        let ttl = self.pki.agent_cert_ttl();
        let renew_now = self.registry.outlives(cert_fingerprint, now_unix.saturating_add((ttl + ttl / 10).as_secs()));
        // Records a renewed certificate in use retired are removed with the
        // next batch; nothing waits for that.
        self.commit(Effects::default());
        let id = connection.stable_id();
        let now = Now::read();
        let accepted = self.table.connect(&node, id, &key_fingerprint, address, hello, now.at)?;
        if let Some(old) = accepted.replaced
            && let Some(session) = self.sessions.remove(&old)
        {
            session.connection.close(close_code::REPLACED.into(), b"replaced by a new connection of the same agent");
        }
        let cert_fingerprint = cert_fingerprint.to_string();
        let lane = CopyLane::new((node.clone(), connection.clone()));
        self.sessions.insert(id, Session { node: node.clone(), connection, outbox, cert_fingerprint, lane });
        if let Some(transition) = accepted.transition {
            self.transition(transition, now);
        }
        Ok(Admitted { node, liveness: accepted.liveness, limits: self.table.limits().clone(), renew_now })
    }

    fn session(&mut self, node: &NodeName, connection: ConnectionId, event: SessionEvent) {
        let current = self.table.connection(node.as_str()) == Some(connection);
        let now = Now::read();
        match event {
            SessionEvent::Ended => {
                self.sessions.remove(&connection);
                self.table.disconnected(node, connection);
            }
            _ if !current => {} // a replaced connection's last words
            SessionEvent::Inventory(reports) => {
                let effects = self.workloads.inventory(node, reports, now);
                self.commit(effects);
            }
            SessionEvent::Instance(report) => {
                let effects = self.workloads.report(node, report, now);
                self.commit(effects);
            }
            SessionEvent::Goodbye(reason) => {
                if let Some(transition) = self.table.goodbye(node, connection, &reason) {
                    self.transition(transition, now);
                }
            }
            SessionEvent::Renew(csr_der) => self.renew(node, connection, &csr_der),
        }
    }

    /// Renews the certificate of `node`'s agent over its live connection:
    /// signs the request, records the new credential and answers once it
    /// is durable (README.md, "Certificates"). A refusal changes nothing;
    /// the agent keeps its certificate and tries again later.
    fn renew(&mut self, node: &NodeName, connection: ConnectionId, csr_der: &[u8]) {
        let Some(cert_fingerprint) = self.sessions.get(&connection).map(|session| session.cert_fingerprint.clone())
        else {
            return;
        };
        let now_unix = unix_now();
        let min_interval = self.pki.agent_cert_ttl() / 10;
        let issued = self
            .registry
            .check_renewal(node, &cert_fingerprint, now_unix, min_interval)
            .and_then(|()| self.pki.issue_agent_cert(node.as_str(), csr_der).map_err(|err| err.to_string()));
        let issued = match issued {
            Ok(issued) => issued,
            Err(reason) => {
                warn!(%node, "refused to renew the certificate: {reason}");
                self.send(node, ConsoleFrame::RenewalRefused { reason });
                return;
            }
        };
        self.registry.record_renewal(node, &cert_fingerprint, &issued, now_unix);
        self.table.renewed_key(node, &issued.key_fingerprint);
        self.events.emit(
            EventKind::Credential,
            Some(node.as_str()),
            None,
            None,
            &format!(
                "certificate renewed; the new one expires {}",
                ringwatch_net::cert::format_unix(issued.expires_unix)
            ),
        );
        // The answer waits until the new credential is durable: a console
        // killed before would refuse the certificate it handed out.
        let seq = self.commit(Effects::default());
        self.held.push_back(Held::Frame {
            seq,
            node: node.clone(),
            frame: ConsoleFrame::Renewed { cert_der: issued.cert.to_vec() },
        });
    }

    fn join(&mut self, request: JoinCheck, reply: oneshot::Sender<Result<(), Refusal>>) {
        let now_unix = unix_now();
        if let Err(refusal) =
            self.registry.check_join(&request.name, &request.key_fingerprint, &request.token_id, now_unix)
        {
            let _ = reply.send(Err(refusal));
            return;
        }
        let JoinCheck { name, key_fingerprint, token_id, cert_fingerprint, expires_unix, address } = request;
        self.events.emit(
            EventKind::Membership,
            Some(name.as_str()),
            None,
            None,
            &format!("joined from {address} with token {token_id}"),
        );
        self.registry.record_join(cert_fingerprint, name, key_fingerprint, token_id, now_unix, expires_unix);
        let seq = self.commit(Effects::default());
        self.held.push_back(Held::Join { seq, reply });
    }

    /// Answers a connection handler about the data store. An answer that
    /// hands out a version or records a change waits until it is durable.
    fn data(&mut self, request: DataInput, reply: oneshot::Sender<DataAnswer>) {
        if matches!(request, DataInput::RepairPlan) && self.nothing_to_repair() {
            // Keys changed since the last plan are all gone: none to look at.
            let _ = self.catalog.take_changed();
            let term = self.config.console.term;
            let idle = DataAnswer::Repair { steps: Vec::new(), links: BTreeMap::new(), metas: BTreeMap::new(), term };
            let _ = reply.send(idle);
            return;
        }
        let term = self.config.console.term;
        // The view of every node is built (or reused) only for the
        // requests that read it: anti-entropy's, several a second at scale,
        // need none of it (BENCHMARKS.md, "The console at scale").
        let (answer, wait) = match request {
            DataInput::PlanPut { key, replicas, consistency, size, checksum } => {
                let view = self.data_view();
                match self.catalog.plan_put(&key, replicas, consistency, size, &checksum, &view.ring, &view.nodes) {
                    Ok(plan) => {
                        let lanes = self.lanes(&plan.targets);
                        // A put of a new key waits only for its version's
                        // reservation (below); one over a record, for its
                        // intent too.
                        let wait = plan.intent_recorded;
                        (DataAnswer::Put { plan, lanes, term }, wait)
                    }
                    Err(err) => (DataAnswer::Failed(err), false),
                }
            }
            DataInput::Stored(object) => {
                let key = object.key.clone();
                self.catalog.record_put(object);
                let view = self.data_view();
                let answer = match self.catalog.stat(&key, &view.nodes) {
                    Ok(stat) => DataAnswer::Stat(stat),
                    Err(err) => DataAnswer::Failed(err),
                };
                (answer, true)
            }
            DataInput::PlanRead { key, consistency } => {
                let view = self.data_view();
                match self.catalog.plan_read(&key, consistency, &view.nodes) {
                    Ok(reach) => {
                        let links = self.links(&reach.holders);
                        (DataAnswer::Reach { reach, links, version: None, term }, false)
                    }
                    Err(err) => (DataAnswer::Failed(err), false),
                }
            }
            DataInput::PlanRemove { key, consistency } => {
                let view = self.data_view();
                match self.catalog.plan_remove(&key, consistency, &view.nodes) {
                    Ok((version, reach)) => {
                        let links = self.links(&reach.holders);
                        (DataAnswer::Reach { reach, links, version: Some(version), term }, true)
                    }
                    Err(err) => (DataAnswer::Failed(err), false),
                }
            }
            DataInput::Removed { key, version, acked } => {
                self.catalog.record_remove(&key, version, &acked);
                self.events.emit(EventKind::Data, None, None, None, &format!("object \"{key}\" removed"));
                (DataAnswer::Removed, true)
            }
            DataInput::List(prefix) => {
                let view = self.data_view();
                (DataAnswer::Listing(self.catalog.list(&prefix, &view.nodes)), false)
            }
            DataInput::RepairPlan => {
                let view = self.data_view();
                (self.repair_plan(&view, term), false)
            }
            DataInput::Repaired(Repaired::Holds { key, version, node }) => {
                self.catalog.add_holder(&key, version, node);
                (DataAnswer::Noted, false)
            }
            DataInput::Repaired(Repaired::Dropped { key, node, version }) => {
                self.catalog.remove_holder(&key, &node, version);
                (DataAnswer::Noted, false)
            }
            DataInput::Repaired(Repaired::Forgotten { key, version }) => {
                self.catalog.forget(&key, version);
                (DataAnswer::Noted, false)
            }
            DataInput::Abandoned { key, version } => {
                self.catalog.abandon(&key, version);
                (DataAnswer::Noted, true)
            }
            DataInput::Peers => {
                (DataAnswer::Peers { peers: self.connected_links(), inherited: self.catalog.inherited(), term }, false)
            }
            DataInput::Expected(node) => {
                let (digests, asked_at) = self.catalog.expected(&node);
                (DataAnswer::Expected { digests, asked_at }, false)
            }
            DataInput::Reconcile { node, ranges, held, asked_at } => {
                let discards = self.catalog.reconcile(&node, &ranges, held, asked_at);
                (DataAnswer::Discards(discards), false)
            }
            DataInput::Usage { node, usage } => {
                let was_full = self.catalog.usage(&node).is_some_and(|before| before.free() == 0);
                let full = usage.free() == 0;
                if full != was_full {
                    let text = if full {
                        format!("its data quota is full ({} bytes): it takes no new copies", usage.quota)
                    } else {
                        format!("its data quota has room again ({} bytes free)", usage.free())
                    };
                    self.events.emit(EventKind::Data, Some(node.as_str()), None, None, &text);
                }
                self.catalog.set_usage(node, usage);
                (DataAnswer::Noted, false)
            }
            DataInput::Resolved { version, holding } => {
                self.catalog.resolve(version, &holding);
                (DataAnswer::Noted, true)
            }
            DataInput::RepairRate(rate) => {
                self.repair_rate = rate;
                (DataAnswer::Noted, false)
            }
            DataInput::Stat(key) => {
                let view = self.data_view();
                match self.catalog.stat(&key, &view.nodes) {
                    Ok(stat) => (DataAnswer::Stat(stat), false),
                    Err(err) => (DataAnswer::Failed(err), false),
                }
            }
        };
        let reserved = self.catalog.take_reserved();
        let mut seq = if wait || reserved { self.commit(Effects::default()) } else { 0 };
        if reserved {
            self.versions_reserved_in = seq;
        }
        if matches!(answer, DataAnswer::Put { .. } | DataAnswer::Reach { version: Some(_), .. }) {
            seq = seq.max(self.versions_reserved_in);
        }
        if !wait && seq <= self.durable {
            let _ = reply.send(answer);
            return;
        }
        self.held.push_back(Held::Data { seq, reply, answer });
    }

    /// Whether the repair task's next question can be answered "nothing"
    /// without a plan: the store holds no object (not even a removal's
    /// tombstone) and the last plan left nothing to report as finished or
    /// available again. Planning takes the data store's view of every
    /// node and its ring, which a fleet of thousands joining a console
    /// with an empty store — every second, a new ring of up to 640,000
    /// points — must not pay for (BENCHMARKS.md, "The console at scale").
    fn nothing_to_repair(&self) -> bool {
        self.catalog.is_empty() && !self.repairing && self.unavailable.is_empty()
    }

    /// What to repair now (README.md, "Data"). A node down for less than
    /// the data repair delay (`[data] repair_delay`) may come back with its copies: the objects it
    /// holds wait. Its copies count until then; after, they do not.
    fn repair_plan(&mut self, view: &DataView, term: u64) -> DataAnswer {
        let nodes = &view.nodes;
        let now = Instant::now();
        let waiting = waited_for(nodes, &self.down_since, now, self.config.data.repair_delay);
        let roles: BTreeMap<String, NodeRole> = nodes
            .iter()
            .map(|(name, info)| {
                // A node whose quota is full keeps its copies readable but
                // takes no new ones.
                let full = self.catalog.usage(name).is_some_and(|usage| usage.free() == 0);
                let up =
                    info.connected && matches!(info.state, NodeState::Alive | NodeState::Suspect | NodeState::Degraded);
                let role = if up && self.workloads.is_drained(name.as_str()) {
                    NodeRole::Leaving
                } else if info.eligible && info.connected && !full {
                    NodeRole::Eligible
                } else if up {
                    NodeRole::ReadOnly
                } else {
                    NodeRole::Down
                };
                (name.to_string(), role)
            })
            .collect();
        let ring = &view.ring;
        let changed = self.catalog.take_changed();
        let only = self.repair_scope.narrowed(&roles, &waiting, ring, changed, now);
        let (records, holders) = self
            .catalog
            .repair_inputs(only.as_ref(), |object| object.holders.keys().any(|node| waiting.contains(node)));
        let plan = repair::plan(&records, &holders, &roles, ring);
        self.repair_scope.planned(&plan);
        let copying = plan.steps.iter().any(|step| matches!(step, RepairStep::Copy { .. }));
        if copying != self.repairing {
            self.repairing = copying;
            let text = if copying {
                format!("repair started: {} object(s) under-replicated", plan.under_replicated)
            } else {
                "repair finished: every object has its replicas".to_string()
            };
            self.events.emit(EventKind::Data, None, None, None, &text);
        }
        self.note_unavailable(&plan.unavailable);
        let mut metas = BTreeMap::new();
        let mut wanted: HashSet<String> = HashSet::new();
        for step in &plan.steps {
            match step {
                RepairStep::Copy { key, from, to, .. } => {
                    if let Some(meta) = self.catalog.meta(key) {
                        metas.insert(key.clone(), meta);
                    }
                    wanted.insert(from.clone());
                    wanted.insert(to.clone());
                }
                RepairStep::Tombstone { to, .. } => {
                    wanted.insert(to.clone());
                }
                RepairStep::Drop { node, .. } => {
                    wanted.insert(node.clone());
                }
                RepairStep::Forget { holders, .. } => {
                    wanted.extend(holders.iter().cloned());
                }
            }
        }
        let named: Vec<NodeName> = wanted.iter().filter_map(|node| NodeName::parse(node).ok()).collect();
        let links = self.links(&named).into_iter().map(|(node, connection)| (node.to_string(), connection)).collect();
        DataAnswer::Repair { steps: plan.steps, links, metas, term }
    }

    /// Emits a `data` event for each object that has just become
    /// unavailable (no live current copy), and one when all are back;
    /// a burst is summed up in one event rather than one per object.
    fn note_unavailable(&mut self, now: &[ObjectKey]) {
        const NAMED: usize = 5;
        let now: BTreeSet<ObjectKey> = now.iter().cloned().collect();
        let new: Vec<&ObjectKey> = now.difference(&self.unavailable).collect();
        if !new.is_empty() {
            let mut names: Vec<String> = new.iter().take(NAMED).map(|key| format!("\"{key}\"")).collect();
            if new.len() > NAMED {
                names.push(format!("and {} more", new.len() - NAMED));
            }
            let text = format!("{} object(s) unavailable, no live copy: {}", new.len(), names.join(", "));
            self.events.emit(EventKind::Data, None, None, None, &text);
        } else if now.is_empty() && !self.unavailable.is_empty() {
            self.events.emit(EventKind::Data, None, None, None, "every object has a live copy again");
        }
        self.unavailable = now;
    }

    /// What `node` failing now would do to the data store, for a what-if
    /// plan; `None` while the store holds no objects.
    fn failure_impact(&self, node: &str, views: &[NodeView]) -> Option<ringwatch_shared::plan::DataImpact> {
        if self.catalog.is_empty() {
            return None;
        }
        let node = NodeName::parse(node).ok()?;
        Some(self.catalog.failure_impact(&node, &self.data_nodes(views)))
    }

    /// The nodes as the data store sees them: built once, then kept for
    /// the data requests that follow until a tick or any other input —
    /// the only things that change a node's state, connection, weight or
    /// cordon — drops it. Building it takes a look at every node, which a
    /// put must not pay for in a fleet of thousands.
    fn data_view(&mut self) -> Arc<DataView> {
        if let Some(view) = &self.data_view {
            return view.clone();
        }
        let views = self.table.views();
        let nodes = self.data_nodes(&views);
        let ring = self.workloads.data_ring(Nodes::new(&views));
        let view = Arc::new(DataView { nodes, ring });
        self.data_view = Some(view.clone());
        view
    }

    /// Every node as the data store sees it.
    fn data_nodes(&self, views: &[NodeView]) -> BTreeMap<NodeName, NodeInfo> {
        views
            .iter()
            .map(|view| {
                let name = view.name.as_str();
                let connected = self.table.connection(name).is_some();
                let eligible = view.state == NodeState::Alive
                    && !self.workloads.is_cordoned(name)
                    && !self.workloads.is_draining(name);
                (view.name.clone(), NodeInfo { state: view.state, connected, eligible })
            })
            .collect()
    }

    /// The session of `node`'s current connection.
    fn session_of(&self, node: &NodeName) -> Option<&Session> {
        self.sessions.get(&self.table.connection(node.as_str())?)
    }

    /// The connections of `nodes` that are connected, in order.
    fn links(&self, nodes: &[NodeName]) -> Vec<AgentLink> {
        nodes.iter().filter_map(|node| Some((node.clone(), self.session_of(node)?.connection.clone()))).collect()
    }

    /// The connection of every connected node, by name.
    fn connected_links(&self) -> Vec<AgentLink> {
        let mut links: Vec<AgentLink> = self
            .sessions
            .iter()
            .filter(|(id, session)| self.table.connection(session.node.as_str()) == Some(**id))
            .map(|(_, session)| (session.node.clone(), session.connection.clone()))
            .collect();
        links.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        links
    }

    /// The copy lanes of `nodes` that are connected, in order.
    fn lanes(&self, nodes: &[NodeName]) -> Vec<CopyLane> {
        nodes.iter().filter_map(|node| Some(self.session_of(node)?.lane.clone())).collect()
    }

    fn admin(&mut self, request: AdminRequest, reply: oneshot::Sender<AdminResponse>) {
        let reads_only = request.is_read_only()
            || matches!(
                &request,
                AdminRequest::Act { action: ringwatch_shared::plan::OperatorAction::WhatIf { .. }, .. }
            );
        let response = self.answer(request);
        if reads_only {
            // Nothing to make durable: a reader is answered even while the
            // store cannot be written.
            let _ = reply.send(response);
            return;
        }
        let seq = self.commit(Effects::default());
        self.held.push_back(Held::Admin { seq, reply, response });
    }

    /// Carries out an operator's request; what it changed is in the batch
    /// being gathered.
    fn answer(&mut self, request: AdminRequest) -> AdminResponse {
        let now = Now::read();
        match request {
            AdminRequest::Status => AdminResponse::Status(self.snapshot(Duration::from_millis(100)).status.clone()),
            AdminRequest::ListTasks => AdminResponse::Tasks(self.workloads.tasks()),
            AdminRequest::ApplyTasks(specs) => {
                if let Err(err) = ringwatch_shared::task::validate_all(&specs) {
                    return AdminResponse::Error(format!("{err}; nothing was changed"));
                }
                let count = specs.len();
                let effects = self.workloads.apply(specs);
                self.commit(effects);
                AdminResponse::Done(format!("applied {count} task(s)"))
            }
            AdminRequest::RemoveTask(name) => match self.workloads.remove(&name) {
                Ok(effects) => {
                    self.commit(effects);
                    AdminResponse::Done(format!("removed task \"{name}\""))
                }
                Err(err) => AdminResponse::Error(err),
            },
            AdminRequest::Revoke(name) => self.revoke(&name, now),
            AdminRequest::Act { action, dry_run, confirmed } => {
                let views = self.table.views();
                let nodes = Nodes::new(&views);
                if dry_run || matches!(action, ringwatch_shared::plan::OperatorAction::WhatIf { .. }) {
                    return match self.workloads.plan(&action, nodes) {
                        Ok(mut plan) => {
                            if let ringwatch_shared::plan::OperatorAction::WhatIf { node } = &action {
                                plan.data = self.failure_impact(node, &views).map(Box::new);
                            }
                            AdminResponse::Plan { plan, executed: false }
                        }
                        Err(err) => AdminResponse::Error(err),
                    };
                }
                match self.workloads.execute(&action, confirmed.as_ref(), nodes) {
                    Ok((plan, effects)) => {
                        self.commit(effects);
                        AdminResponse::Plan { plan, executed: true }
                    }
                    Err(ActError::Changed(plan)) => AdminResponse::PlanChanged(*plan),
                    Err(ActError::Refused(err)) => AdminResponse::Error(err),
                }
            }
            AdminRequest::IssueToken { ttl_secs } => {
                match self.registry.issue_token(&self.pki, Duration::from_secs(ttl_secs), unix_now()) {
                    Ok(token) => {
                        self.events.emit(
                            EventKind::Credential,
                            None,
                            None,
                            None,
                            &format!("join token {} issued", token.id),
                        );
                        AdminResponse::Token(token.text)
                    }
                    Err(err) => AdminResponse::Error(err),
                }
            }
            AdminRequest::ListTokens => AdminResponse::Tokens(self.registry.list_tokens()),
            AdminRequest::RevokeToken(id) => match self.registry.revoke_token(&id) {
                Ok(true) => {
                    self.events.emit(EventKind::Credential, None, None, None, &format!("join token {id} revoked"));
                    AdminResponse::Done(format!("revoked join token {id}"))
                }
                Ok(false) => AdminResponse::Done(format!("join token {id} was already revoked")),
                Err(err) => AdminResponse::Error(err),
            },
            AdminRequest::RevokeAllTokens => {
                let count = self.registry.revoke_all_tokens();
                self.events.emit(EventKind::Credential, None, None, None, &format!("{count} join token(s) revoked"));
                AdminResponse::Done(format!("revoked {count} join token(s)"))
            }
            AdminRequest::IssueCredential { name, role, ttl_secs, csr_der } => {
                self.issue_credential(&name, role, Duration::from_secs(ttl_secs), &csr_der)
            }
            AdminRequest::ListCredentials => AdminResponse::Credentials(self.registry.list_operators()),
            AdminRequest::RevokeCredential(name) => match self.registry.revoke_operator(&name) {
                Ok(revoked) => {
                    for record in &revoked {
                        self.operators.update(record);
                    }
                    self.events.emit(
                        EventKind::Credential,
                        None,
                        None,
                        None,
                        &format!("operator credential \"{name}\" revoked"),
                    );
                    AdminResponse::Done(format!(
                        "revoked the credential \"{name}\": it is refused from now on, and its open connections are closed"
                    ))
                }
                Err(err) => AdminResponse::Error(err),
            },
            AdminRequest::Events(_) | AdminRequest::Watch => {
                AdminResponse::Error("a stream is served by the connection, not the owner".into())
            }
            AdminRequest::DataPut(_)
            | AdminRequest::DataGet { .. }
            | AdminRequest::DataRemove { .. }
            | AdminRequest::DataList(_)
            | AdminRequest::DataStat(_) => {
                AdminResponse::Error("a data request is served by the connection, not the owner".into())
            }
        }
    }

    /// Signs and records an operator credential.
    fn issue_credential(&mut self, name: &str, role: OperatorRole, ttl: Duration, csr_der: &[u8]) -> AdminResponse {
        if let Err(err) = self.registry.check_operator_name(name).and_then(|()| check_operator_ttl(ttl)) {
            return AdminResponse::Error(err);
        }
        let (cert, expires_unix) = match self.pki.issue_operator_cert(name, csr_der, ttl) {
            Ok(issued) => issued,
            Err(err) => return AdminResponse::Error(format!("the credential could not be signed: {err}")),
        };
        let record = OperatorRecord {
            fingerprint: to_hex(&fingerprint(&cert)),
            name: name.to_string(),
            role,
            issued_unix: unix_now(),
            expires_unix,
            revoked: false,
        };
        self.operators.update(&record);
        self.registry.record_operator(record);
        self.events.emit(
            EventKind::Credential,
            None,
            None,
            None,
            &format!("operator credential \"{name}\" ({role}) issued"),
        );
        AdminResponse::Credential(IssuedCredential {
            certificate_pem: to_pem("CERTIFICATE", &cert),
            ca_pem: to_pem("CERTIFICATE", &self.pki.ca),
            consoles: vec![self.config.console.address.clone()],
            expires_unix,
        })
    }

    /// Revokes node `name`'s credentials and closes its connection with the
    /// refusal, so its agent stops trying and says why; the name is free.
    fn revoke(&mut self, name: &str, now: Now) -> AdminResponse {
        let revoked = self.registry.revoke_node(name);
        if revoked == 0 {
            return AdminResponse::Error(if self.registry.knows_node(name) {
                format!("the credentials of node \"{name}\" are already revoked")
            } else {
                format!("no credential of node \"{name}\" to revoke")
            });
        }
        let Ok(node) = NodeName::parse(name) else {
            return AdminResponse::Error(format!("\"{name}\" is not a node name"));
        };
        if let Some(id) = self.table.connection(name)
            && let Some(session) = self.sessions.remove(&id)
        {
            let reason = format!("the credential of node \"{name}\" was revoked");
            session.connection.close(RefusalKind::UnknownCredential.close_code().into(), reason.as_bytes());
        }
        self.events.emit(
            EventKind::Membership,
            Some(name),
            None,
            None,
            &format!("{revoked} credential(s) revoked: it must join again with a new token"),
        );
        if let Some(transition) = self.table.revoked(&node) {
            self.transition(transition, now);
        }
        AdminResponse::Done(format!("revoked {revoked} credential(s) of node \"{name}\"; the name is free"))
    }

    /// Gathers what a step changed into the pending batch and holds its
    /// frames until that batch is durable. Returns the sequence number an
    /// answer to this step must wait for.
    fn commit(&mut self, effects: Effects) -> u64 {
        let mut changes = self.workloads.take_changes();
        changes.extend(self.registry.take_changes());
        changes.extend(self.catalog.take_changes());
        self.pending.changes.extend(changes);
        self.counters.tallies.add(&effects.tally);
        for note in effects.notes {
            self.events.emit(
                note.kind,
                note.node.as_ref().map(NodeName::as_str),
                note.task.as_ref().map(TaskName::as_str),
                None,
                &note.text,
            );
        }
        self.pending.events.extend(self.events.take_unpersisted());
        let seq = if self.pending.changes.is_empty() { self.submitted } else { self.next_seq };
        for outgoing in effects.outgoing {
            self.held.push_back(Held::Frame { seq, node: outgoing.node, frame: outgoing.frame });
        }
        seq
    }

    /// Hands the gathered batch to the writer when it is idle, and releases
    /// whatever waited for durability, in order.
    fn flush(&mut self) {
        if self.submitted <= self.durable && !self.pending.is_empty() {
            self.pending.seq = self.next_seq;
            self.writer.submit(std::mem::take(&mut self.pending));
            self.submitted = self.next_seq;
            self.next_seq += 1;
        }
        while self.held.front().is_some_and(|held| held.seq() <= self.durable) {
            let Some(held) = self.held.pop_front() else { break };
            match held {
                Held::Frame { node, frame, .. } => self.send(&node, frame),
                Held::Admin { reply, response, .. } => {
                    let _ = reply.send(response);
                }
                Held::Join { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
                Held::Data { reply, answer, .. } => {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Sends a frame to a connected agent. One that is not connected gets
    /// it from its inventory when it reconnects; one whose outbox is full
    /// does not keep up, and its connection is closed so that it reconnects
    /// and starts over from its inventory.
    fn send(&mut self, node: &NodeName, frame: ConsoleFrame) {
        let Some(id) = self.table.connection(node.as_str()) else { return };
        let Some(session) = self.sessions.get(&id) else { return };
        let bytes = match codec::encode_frame(&FromConsole { term: self.config.console.term, frame }) {
            Ok(bytes) => Bytes::from(bytes),
            Err(err) => {
                warn!(node = %session.node, %err, "a frame for the agent could not be encoded; it is not sent");
                return;
            }
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = session.outbox.try_send(bytes) {
            warn!(node = %session.node, "the agent does not keep up with its frames; reconnecting it");
            session.connection.close(close_code::NORMAL.into(), b"too many frames waiting; reconnect");
        }
    }

    /// A snapshot no older than `fresh`.
    fn snapshot(&mut self, fresh: Duration) -> Arc<ControlSnapshot> {
        if let Some((at, snapshot)) = &self.latest
            && at.elapsed() < fresh
        {
            return snapshot.clone();
        }
        let now = Instant::now();
        let mut nodes = self.table.status(now);
        let mut by_node = self.workloads.instances_by_node();
        let certificates = self.registry.current_certificates();
        for node in &mut nodes {
            node.cordoned = self.workloads.is_cordoned(&node.name);
            node.instances = by_node.remove(node.name.as_str()).unwrap_or_default();
            if let Some((sha256, expires)) = certificates.get(node.name.as_str()) {
                node.cert_sha256 = Some((*sha256).to_string());
                node.cert_expires_unix = *expires;
            }
        }
        let views = self.table.views();
        // Snapshots are built every tick while watched: the node map is made
        // only when there are objects to count.
        let (mut data, held) = if self.catalog.is_empty() {
            summary(std::iter::empty(), |_| false)
        } else {
            self.catalog.summary(&self.data_nodes(&views))
        };
        data.repair_bytes_per_sec = self.repair_rate;
        for node in &mut nodes {
            let Ok(name) = NodeName::parse(&node.name) else { continue };
            if let Some((objects, bytes)) = held.get(&name) {
                node.data_objects = *objects;
                node.data_bytes = *bytes;
            }
            node.data_free_bytes = self.catalog.usage(&name).map(QuotaUse::free);
        }
        let status = ClusterStatus {
            data,
            tasks: self.workloads.task_status(),
            headroom: self.workloads.headroom(Nodes::new(&views), None),
            failover_paused: self.workloads.failover_paused().map(str::to_string),
            nodes,
            console: ConsoleStatus {
                store_problem: self.progress.borrow().failing.clone(),
                ..self.config.console.clone()
            },
        };
        let snapshot = Arc::new(ControlSnapshot {
            status,
            samples: self.table.samples(),
            events: self.events.recent(),
            store_failing: self.progress.borrow().failing.clone(),
            at_unix_ms: Now::read().unix_ms,
        });
        self.latest = Some((now, snapshot.clone()));
        snapshot
    }
}
