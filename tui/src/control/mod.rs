//! The control plane: QUIC server, node table, failure-detection loop,
//! event log and persistent store. Views never reach in here: they read
//! [`ControlView`] (status, samples) and the event log, and send commands.
//!
//! # Layout
//! - [`server`]: accepting connections and serving agents and admin clients.
//! - [`join`]: admitting new agents by token.
//! - [`nodes`]: the node table and its state machine (pure).
//! - [`events`]: the event log.
//! - [`store`]: the embedded database.
//! - [`pki`]: CA and certificates.
//! - [`tls`]: the QUIC server config.
//! - [`workload`]: tasks, placements and reconciliation (pure).
//! - [`admin`]: the client side of the admin channel (`ringwatch status`).

pub mod admin;
pub mod events;
pub mod join;
pub mod nodes;
pub mod pki;
pub mod server;
pub mod store;
pub mod tls;
pub mod workload;

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringwatch_net::files::{self, PUBLIC};
use ringwatch_shared::detector::DetectorConfig;
use ringwatch_shared::limits::ResourceLimits;
use ringwatch_shared::plan::{OperatorAction, Plan};
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, ConsoleFrame, close_code};
use ringwatch_shared::status::{ClusterEvent, ClusterStatus, NodeStatus};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use self::events::EventLog;
use self::nodes::{ConnectionId, NodeTable, TableConfig, Transition};
use self::pki::ClusterPki;
use self::store::Store;
use self::workload::{Effects, WorkloadConfig, Workloads};

/// The file the running console writes its address to.
pub const ADDRESS_FILE: &str = "console.addr";
/// The file a running console holds locked.
pub const LOCK_FILE: &str = "console.lock";
/// The embedded database.
pub const STATE_FILE: &str = "state.redb";

/// How the control plane runs.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Where the PKI, the state database and the address file live.
    pub data_dir: PathBuf,
    /// The UDP address to listen on.
    pub listen: SocketAddr,
    /// Failure-detector thresholds.
    pub detector: DetectorConfig,
    /// Resource limits that make a node degraded.
    pub limits: ResourceLimits,
    /// After a start, how long known nodes have to reconnect.
    pub reconnect_grace: Duration,
    /// How often nodes are judged.
    pub detection_tick: Duration,
    /// A gap between two ticks longer than this means our own process was
    /// paused: nobody is convicted for it.
    pub pause_threshold: Duration,
    /// Scheduler settings.
    pub workloads: WorkloadConfig,
    /// How often the scheduler reconciles.
    pub reconcile_tick: Duration,
    /// How often the console sends each agent a beat (fencing).
    pub console_beat: Duration,
}

impl ConsoleConfig {
    /// Defaults for everything but the data dir.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            detector: DetectorConfig::default(),
            limits: ResourceLimits::default(),
            reconnect_grace: Duration::from_secs(15),
            detection_tick: Duration::from_millis(100),
            pause_threshold: Duration::from_secs(1),
            workloads: WorkloadConfig::default(),
            reconcile_tick: Duration::from_millis(100),
            console_beat: Duration::from_secs(1),
        }
    }
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Another console runs on this data dir.
    #[error("another console is already running with data dir \"{0}\"")]
    AlreadyRunning(PathBuf),
    /// A file could not be read or written.
    #[error("failed to access \"{path}\": {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The PKI could not be loaded or made.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The QUIC endpoint could not be set up.
    #[error("failed to listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Counters of what was refused or dropped, for the operator.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams that did not decode.
    pub malformed_datagrams: AtomicU64,
    /// Connections refused at the handshake.
    pub refused: AtomicU64,
}

/// State shared by the control plane's tasks.
#[derive(Debug)]
pub struct Shared {
    /// Certificates and the token key.
    pub pki: ClusterPki,
    /// The database.
    pub store: Arc<Store>,
    /// Every node.
    pub table: Mutex<NodeTable>,
    /// Live agent connections, to close one replaced by a newer one.
    pub connections: Mutex<HashMap<ConnectionId, quinn::Connection>>,
    /// The event log.
    pub events: EventLog,
    /// What was refused or dropped.
    pub counters: Counters,
    /// Tasks and placements.
    pub workloads: Mutex<Workloads>,
    /// Each connected agent's queue of frames to send, by node name, with
    /// the id of the connection that owns it.
    pub outboxes: Mutex<HashMap<String, (ConnectionId, mpsc::Sender<ConsoleFrame>)>>,
    /// How often the console beats to agents.
    pub console_beat: Duration,
}

impl Shared {
    /// Logs a node's state change and lets the scheduler react to it.
    pub fn emit(&self, transition: Transition) {
        let now = Instant::now();
        let (last_heard, total) = {
            let table = lock(&self.table);
            (table.last_heard(&transition.node), table.len())
        };
        let effects = lock(&self.workloads).node_changed(&transition.node, transition.to, last_heard, now, total);
        self.events.emit(Some(&transition.node), Some((transition.from, transition.to)), transition.reason);
        self.dispatch(effects);
    }

    /// Sends the scheduler's frames and logs its events. A frame for an
    /// agent that is not connected is dropped: the agent's inventory at its
    /// next connection brings it up to date.
    pub fn dispatch(&self, effects: Effects) {
        if !effects.outgoing.is_empty() {
            let outboxes = lock(&self.outboxes);
            for outgoing in effects.outgoing {
                if let Some((_, outbox)) = outboxes.get(&outgoing.node)
                    && outbox.try_send(outgoing.frame).is_err()
                {
                    warn!(node = %outgoing.node, "agent outbox full or closed; the frame waits for its next inventory");
                }
            }
        }
        for (node, text) in effects.events {
            self.events.emit(node.as_deref(), None, text);
        }
    }

    /// Every node's status, with its instances and cordon.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let mut nodes = lock(&self.table).status(Instant::now());
        let workloads = lock(&self.workloads);
        let mut by_node = workloads.instances_by_node();
        for node in &mut nodes {
            node.cordoned = workloads.is_cordoned(&node.name);
            node.instances = by_node.remove(&node.name).unwrap_or_default();
        }
        nodes
    }

    /// The cluster now.
    pub fn status(&self) -> ClusterStatus {
        let nodes = self.nodes();
        let workloads = lock(&self.workloads);
        ClusterStatus {
            tasks: workloads.task_status(),
            headroom: workloads.headroom(&nodes, None),
            failover_paused: workloads.failover_paused().map(str::to_string),
            nodes,
        }
    }

    /// The plan of `action`, carried out unless `dry_run`.
    ///
    /// # Errors
    /// A sentence when the action cannot be planned or done.
    pub fn act(&self, action: &OperatorAction, dry_run: bool) -> Result<Plan, String> {
        let nodes = self.nodes();
        let mut workloads = lock(&self.workloads);
        if dry_run || matches!(action, OperatorAction::WhatIf { .. }) {
            return workloads.plan(action, &nodes);
        }
        let (plan, effects) = workloads.execute(action, &nodes)?;
        let state = workloads.take_dirty();
        drop(workloads);
        if let Some(state) = state
            && let Err(err) = self.store.save_workloads(&state)
        {
            warn!(%err, "failed to persist the desired state");
        }
        self.dispatch(effects);
        Ok(plan)
    }

    /// Changes the desired tasks with `change`, durably before answering
    /// (an applied task is never lost), then sends the resulting frames.
    fn change_tasks(
        &self,
        change: impl FnOnce(&mut Workloads) -> Result<Effects, String>,
        done: String,
    ) -> AdminResponse {
        let mut workloads = lock(&self.workloads);
        let effects = match change(&mut workloads) {
            Ok(effects) => effects,
            Err(err) => return AdminResponse::Error(err),
        };
        let state = workloads.take_dirty();
        drop(workloads);
        if let Some(state) = state
            && let Err(err) = self.store.save_workloads(&state)
        {
            return AdminResponse::Error(format!("failed to persist the tasks: {err}"));
        }
        self.dispatch(effects);
        AdminResponse::Done(done)
    }

    /// Revokes node `name`'s credentials and closes its connection with the
    /// refusal, so the agent stops trying and says why.
    fn revoke(&self, name: &str) -> AdminResponse {
        let revoked = match self.store.revoke(name) {
            Ok(0) => return AdminResponse::Error(format!("no credential of node \"{name}\" to revoke")),
            Ok(count) => count,
            Err(err) => return AdminResponse::Error(format!("failed to revoke: {err}")),
        };
        let live = lock(&self.outboxes).get(name).map(|(id, _)| *id);
        if let Some(connection) = live.and_then(|id| lock(&self.connections).get(&id).cloned()) {
            let reason = format!("the credential of node \"{name}\" was revoked");
            connection.close(
                ringwatch_shared::protocol::RefusalKind::UnknownCredential.close_code().into(),
                reason.as_bytes(),
            );
        }
        self.events.emit(Some(name), None, format!("{revoked} credential(s) revoked: it must join again"));
        let transition = lock(&self.table).revoked(name);
        if let Some(transition) = transition {
            self.emit(transition);
        }
        AdminResponse::Done(format!("revoked {revoked} credential(s) of node \"{name}\""))
    }

    /// Answers an admin request.
    pub fn admin(&self, request: AdminRequest) -> AdminResponse {
        match request {
            AdminRequest::Status => AdminResponse::Status(self.status()),
            AdminRequest::ListTasks => AdminResponse::Tasks(lock(&self.workloads).tasks()),
            AdminRequest::ApplyTasks(specs) => {
                if let Some(err) = specs.iter().find_map(|spec| ringwatch_shared::task::validate(spec).err()) {
                    return AdminResponse::Error(format!("{err}; nothing was changed"));
                }
                let count = specs.len();
                self.change_tasks(|workloads| Ok(workloads.apply(specs)), format!("applied {count} task(s)"))
            }
            AdminRequest::RemoveTask(name) => {
                let done = format!("removed task \"{name}\"");
                self.change_tasks(|workloads| workloads.remove(&name), done)
            }
            AdminRequest::Revoke(name) => self.revoke(&name),
            AdminRequest::Act { action, dry_run } => match self.act(&action, dry_run) {
                Ok(plan) => {
                    AdminResponse::Plan { plan, executed: !dry_run && !matches!(action, OperatorAction::WhatIf { .. }) }
                }
                Err(err) => AdminResponse::Error(err),
            },
        }
    }
}

/// What may be read of a running control plane, cheaply cloned.
#[derive(Debug, Clone)]
pub struct ControlView {
    /// Shared state.
    shared: Arc<Shared>,
    /// The bound address.
    listen: SocketAddr,
}

impl ControlView {
    /// The cluster now.
    pub fn status(&self) -> ClusterStatus {
        self.shared.status()
    }

    /// The latest full metrics sample of each node.
    pub fn samples(&self) -> std::collections::BTreeMap<String, ringwatch_shared::metrics::MetricsSample> {
        lock(&self.shared.table).samples()
    }

    /// The newest `limit` events, oldest first.
    pub fn recent_events(&self, limit: usize) -> Vec<ClusterEvent> {
        self.shared.events.recent(limit)
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.shared.events.subscribe()
    }

    /// Events not persisted because the writer fell behind.
    pub fn dropped_events(&self) -> u64 {
        self.shared.events.dropped()
    }

    /// The plan of `action`, carried out unless `dry_run`.
    ///
    /// # Errors
    /// A sentence when the action cannot be planned or done.
    pub fn act(&self, action: &OperatorAction, dry_run: bool) -> Result<Plan, String> {
        self.shared.act(action, dry_run)
    }

    /// Answers an admin request (the same as the admin channel does).
    pub fn admin(&self, request: AdminRequest) -> AdminResponse {
        self.shared.admin(request)
    }

    /// Headroom in words, and why failover is paused, if it is.
    pub fn headroom(&self) -> (ringwatch_shared::placement::Headroom, Option<String>) {
        let nodes = self.shared.nodes();
        let workloads = lock(&self.shared.workloads);
        (workloads.headroom(&nodes, None), workloads.failover_paused().map(str::to_string))
    }

    /// Where the console listens.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Locks a mutex; a panic elsewhere while holding it leaves the data usable
/// (every update here is a single assignment), so poisoning is ignored.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// Shared state.
    shared: Arc<Shared>,
    /// The bound address.
    local_addr: SocketAddr,
    /// The QUIC endpoint.
    endpoint: quinn::Endpoint,
    /// Connection and loop tasks.
    tracker: TaskTracker,
    /// Cancelled to stop.
    shutdown: CancellationToken,
    /// The event writer thread.
    writer: Option<JoinHandle<()>>,
    /// Held locked while the console runs.
    _lock: File,
    /// The data dir.
    data_dir: PathBuf,
}

impl ControlPlane {
    /// Starts the control plane: takes the data dir's lock, loads or makes
    /// the PKI, opens the store, binds the endpoint and writes the address
    /// file.
    ///
    /// # Errors
    /// [`ConsoleError`] explaining what is in the way.
    pub async fn start(config: ConsoleConfig, shutdown: CancellationToken) -> Result<Self, ConsoleError> {
        let dir = &config.data_dir;
        files::create_private_dir(dir).map_err(io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file =
            File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        if lock_file.try_lock().is_err() {
            return Err(ConsoleError::AlreadyRunning(dir.clone()));
        }
        let pki = ClusterPki::load_or_create(dir)?;
        let store = Arc::new(Store::open(&dir.join(STATE_FILE))?);
        let mut table = NodeTable::new(TableConfig {
            detector: config.detector.clone(),
            limits: config.limits.clone(),
            reconnect_grace: config.reconnect_grace,
        });
        table.remember(store.nodes()?, Instant::now());
        let recent = store.recent_events(1_000)?;
        let workloads = Workloads::new(config.workloads.clone(), store.workloads()?);
        let (events, writer) = EventLog::start(store.clone(), recent).map_err(io(dir))?;

        let server_config =
            tls::server_config(&pki).map_err(|reason| ConsoleError::Listen { addr: config.listen, reason })?;
        let endpoint = ringwatch_net::endpoint(config.listen, Some(server_config))
            .map_err(|err| ConsoleError::Listen { addr: config.listen, reason: err.to_string() })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|err| ConsoleError::Listen { addr: config.listen, reason: err.to_string() })?;
        let address_path = dir.join(ADDRESS_FILE);
        files::write_atomic(&address_path, format!("{local_addr}\n").as_bytes(), PUBLIC).map_err(io(&address_path))?;

        let known = table.len();
        let shared = Arc::new(Shared {
            pki,
            store,
            table: Mutex::new(table),
            connections: Mutex::new(HashMap::new()),
            events,
            counters: Counters::default(),
            workloads: Mutex::new(workloads),
            outboxes: Mutex::new(HashMap::new()),
            console_beat: config.console_beat,
        });
        shared.events.emit(None, None, format!("console listening on {local_addr}; {known} known node(s)"));
        let tracker = TaskTracker::new();
        tracker.spawn(server::accept_loop(endpoint.clone(), shared.clone(), tracker.clone(), shutdown.clone()));
        tracker.spawn(detection_loop(shared.clone(), config.clone(), shutdown.clone()));
        tracker.spawn(reconcile_loop(shared.clone(), config.reconcile_tick, shutdown.clone()));
        info!(listen = %local_addr, data_dir = %dir.display(), "control plane started");
        Ok(Self {
            shared,
            local_addr,
            endpoint,
            tracker,
            shutdown,
            writer: Some(writer),
            _lock: lock_file,
            data_dir: dir.clone(),
        })
    }

    /// The address agents connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A read-only view for the UI and the admin channel.
    pub fn view(&self) -> ControlView {
        ControlView { shared: self.shared.clone(), listen: self.local_addr }
    }

    /// A join token valid for `ttl`.
    pub fn join_token(&self, ttl: Duration) -> String {
        self.shared.pki.join_token(ttl).to_string()
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Waits for the shutdown signal, then stops: closes every connection
    /// with a reason, waits for the tasks, and flushes the event log.
    pub async fn run_until_stopped(mut self) {
        self.shutdown.cancelled().await;
        self.stop().await;
    }

    async fn stop(&mut self) {
        self.shared.events.emit(None, None, "console shutting down".into());
        self.endpoint.close(close_code::SHUTDOWN.into(), b"console shutting down");
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await.is_err() {
            warn!("some connections did not end within 5s");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.shared.events.close();
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        let _ = std::fs::remove_file(self.data_dir.join(ADDRESS_FILE));
        info!("control plane stopped");
    }
}

/// Judges every node each tick; a late tick means our own process was
/// paused, and the silence it caused is forgiven.
async fn detection_loop(shared: Arc<Shared>, config: ConsoleConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(config.detection_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        let gap = now.saturating_duration_since(last);
        last = now;
        if gap >= config.pause_threshold {
            lock(&shared.table).forgive_all(now);
            shared.events.emit(
                None,
                None,
                format!(
                    "the console itself was paused for {:.1}s; no node is convicted for that gap",
                    gap.as_secs_f64()
                ),
            );
            continue;
        }
        let transitions = lock(&shared.table).evaluate(now);
        for transition in transitions {
            shared.emit(transition);
        }
    }
}

/// Drives actual placement toward desired: due failovers, pending
/// instances, finished migrations; persists the scheduler's state when it
/// changed (off the async workers: redb commits fsync).
async fn reconcile_loop(shared: Arc<Shared>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let nodes = shared.nodes();
        let now = Instant::now();
        let (effects, drains, state) = {
            let mut workloads = lock(&shared.workloads);
            let effects = workloads.tick(now, &nodes);
            let drains = workloads.continue_drains(&nodes);
            (effects, drains, workloads.take_dirty())
        };
        if let Some(state) = state {
            let store = shared.store.clone();
            match tokio::task::spawn_blocking(move || store.save_workloads(&state)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => warn!(%err, "failed to persist the desired state"),
                Err(err) => warn!(%err, "the persisting task failed"),
            }
        }
        shared.dispatch(effects);
        shared.dispatch(drains);
    }
    // Whatever changed last is written before the console stops.
    let state = lock(&shared.workloads).take_dirty();
    if let Some(state) = state
        && let Err(err) = shared.store.save_workloads(&state)
    {
        warn!(%err, "failed to persist the desired state at shutdown");
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConsoleError {
    let path = path.to_path_buf();
    move |source| ConsoleError::Io { path, source }
}
