//! The control plane (ARCHITECTURE.md): one owner task holds the cluster's
//! state and decides; connection tasks speak QUIC to agents and admin
//! clients and hand it typed inputs; a writer thread makes its decisions
//! durable before they take effect. Views never reach in here: they read
//! published snapshots through [`ControlView`] and send requests.
//!
//! # Layout
//! - [`owner`]: the owner task, its inputs and its snapshots.
//! - [`nodes`]: the node table and its state machine (pure).
//! - [`liveness`]: a connected node's heartbeat state (the hot path).
//! - [`workload`]: tasks, placements and reconciliation (pure).
//! - [`registry`]: credentials and join tokens (pure).
//! - [`records`]: the durable records and the typed changes to them.
//! - [`store`]: where records live (redb by default) and the writer.
//! - [`events`]: the event log.
//! - [`tally`]: what is counted where it happens, for `/metrics`.
//! - [`server`]: accepting connections and serving agents and admin clients.
//! - [`admission`]: limits on peers not yet authenticated.
//! - [`join`]: admitting new agents by token.
//! - [`pki`]: CA and certificates.
//! - [`tls`]: the QUIC server config and transport limits.
//! - [`admin`]: the client side of the admin channel (`ringwatch status`).
//! - [`offline`]: what the command line does on a data dir no console holds
//!   (join tokens, importing a PKI).

pub mod admin;
pub mod admission;
pub mod backlog;
pub mod credentials;
pub mod data;
pub mod events;
#[cfg(feature = "etcd")]
pub mod group;
pub mod join;
pub mod liveness;
pub mod nodes;
pub mod offline;
pub mod operators;
pub mod owner;
pub mod pki;
pub mod records;
pub mod registry;
pub mod role;
pub mod server;
pub mod standby;
pub mod store;
pub mod tally;
pub mod tls;
pub mod workload;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwatch_net::files::{self, PUBLIC};
use ringwatch_shared::detector::DetectorConfig;
use ringwatch_shared::limits::ResourceLimits;
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, close_code};
use ringwatch_shared::status::{ClusterEvent, ConsoleRole, ConsoleStatus};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use self::admission::{Admission, MAX_PENDING_HANDSHAKES};
use self::data::catalog::Catalog;
use self::events::EventLog;
use self::nodes::{NodeTable, TableConfig};
use self::owner::{ControlSnapshot, Outlets, Owner, OwnerConfig, OwnerHandle, OwnerParts};
use self::pki::ClusterPki;
use self::registry::Registry;
use self::role::Role;
use self::server::ServerContext;
use self::store::redb::RedbStore;
use self::store::writer::Writer;
use self::store::{Loaded, StateStore, StoreError};
use self::workload::{WorkloadConfig, WorkloadRecords, Workloads};

/// The file the running console writes its address to.
pub const ADDRESS_FILE: &str = "console.addr";
/// The file a running console holds locked.
pub const LOCK_FILE: &str = "console.lock";
/// The embedded database.
pub const STATE_FILE: &str = "state.redb";
/// Events loaded from the store at start, for views.
pub(crate) const LOADED_EVENTS: usize = events::RECENT_EVENTS;

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
    /// How often nodes are judged and the scheduler reconciles.
    pub detection_tick: Duration,
    /// A gap between two ticks longer than this means our own process was
    /// paused: nobody is convicted for it.
    pub pause_threshold: Duration,
    /// Scheduler settings.
    pub workloads: WorkloadConfig,
    /// How often a snapshot is published while a view watches.
    pub publish_every: Duration,
    /// How often the console sends each agent a beat (fencing).
    pub console_beat: Duration,
    /// Seeds random placement on a new cluster; `None` draws one.
    pub placement_seed: Option<u64>,
    /// This console's name, in `status` and in a group's leader election.
    pub name: String,
    /// Where the records live.
    pub store: StoreChoice,
    /// The address this console gives agents and the other consoles of its
    /// group; by default the one it listens on (on loopback when that is
    /// unspecified).
    pub advertise: Option<SocketAddr>,
    /// How long the agent certificates it issues are valid (README.md,
    /// "Certificates").
    pub agent_cert_ttl: Duration,
    /// The data store's settings.
    pub data: data::DataConfig,
    /// The size of the embedded store's write-ahead file at which it is
    /// folded into the database (`[change_log] fold_at`).
    pub change_log_fold_at: u64,
}

/// Where a console keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded database in the data dir: one console.
    Embedded,
    /// A group of consoles on etcd.
    Group(GroupStore),
}

/// How a console of a group reaches its etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStore {
    /// `etcd://HOST:PORT[,HOST:PORT…]`.
    pub url: String,
    /// Every key of the group starts with it.
    pub prefix: String,
    /// TLS: the CA of etcd's certificate.
    pub ca: Option<PathBuf>,
    /// TLS: a client certificate, when etcd checks clients.
    pub cert: Option<PathBuf>,
    /// TLS: its key.
    pub key: Option<PathBuf>,
    /// The leader's lease.
    pub lease_ttl: Duration,
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
            publish_every: Duration::from_millis(250),
            console_beat: Duration::from_secs(1),
            placement_seed: None,
            name: crate::local::local_node_name(),
            store: StoreChoice::Embedded,
            advertise: None,
            agent_cert_ttl: ringwatch_shared::lifetime::DEFAULT_AGENT_CERT_TTL,
            data: data::DataConfig::default(),
            change_log_fold_at: store::redb::DEFAULT_FOLD_AT,
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
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The group's store is misconfigured or unavailable.
    #[error("{0}")]
    Group(String),
    /// The QUIC endpoint could not be set up.
    #[error("failed to listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// What may be read of a running control plane, cheaply cloned: it follows
/// the console's role, so a view keeps working when leadership moves.
#[derive(Debug, Clone)]
pub struct ControlView {
    /// Who answers now.
    role: watch::Receiver<Role>,
    /// What readers subscribe to.
    outlets: Outlets,
    /// The bound address.
    listen: SocketAddr,
}

impl ControlView {
    /// A receiver of published snapshots. While one exists, whoever answers
    /// publishes one per `publish_every`.
    pub fn snapshots(&self) -> watch::Receiver<Arc<ControlSnapshot>> {
        self.outlets.snapshots.subscribe()
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.outlets.events.subscribe()
    }

    /// Sends an operator's request and waits for the answer (once what it
    /// changed is durable).
    pub async fn request(&self, request: AdminRequest) -> AdminResponse {
        let role = self.role.borrow().clone();
        role.answer(request).await
    }

    /// A snapshot at most a tick old.
    pub async fn fresh_snapshot(&self) -> Option<Arc<ControlSnapshot>> {
        let role = self.role.borrow().clone();
        role.snapshot().await
    }

    /// Where the console listens.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// What connection tasks and the owner count, for `/metrics`.
    pub fn counters(&self) -> Arc<owner::Counters> {
        self.outlets.counters.clone()
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// This console's role, read by every connection.
    role: watch::Sender<Role>,
    /// What readers subscribe to.
    outlets: Outlets,
    /// The bound address.
    local_addr: SocketAddr,
    /// The QUIC endpoint.
    endpoint: quinn::Endpoint,
    /// Connection and accept tasks.
    tracker: TaskTracker,
    /// Cancelled to stop.
    shutdown: CancellationToken,
    /// What leads, and how it stops: the owner of a single console.
    leadership: Option<Running>,
    /// Held locked while the console runs.
    _lock: File,
    /// The data dir.
    data_dir: PathBuf,
}

/// An owner task running.
#[derive(Debug)]
pub(crate) struct Running {
    /// Cancelled to stop it, after the connections.
    stop: CancellationToken,
    /// The task, joined so that the last batch is written.
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the owner and waits until it has written what it could.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        if self.task.await.is_err() {
            warn!("the owner task failed");
        }
    }
}

/// How often the console checks its own certificates and the CA's expiry.
const CERTIFICATE_CHECK: Duration = Duration::from_secs(86_400 / 4);

/// Renews the console's server and admin certificates when a third of
/// their life is left, swapping the server certificate into the running
/// endpoint (connections stay), and warns — at start, then daily — when
/// the CA expires within 90 days (README.md, "Certificates").
async fn renew_certificates(
    pki: Arc<ClusterPki>,
    endpoint: quinn::Endpoint,
    listen: SocketAddr,
    shutdown: CancellationToken,
) {
    let mut check = tokio::time::interval(CERTIFICATE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warning: Option<u64> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = check.tick() => {}
        }
        let now = pki::unix_now();
        let ca = pki.ca_validity();
        if ca.expires_within(ringwatch_shared::lifetime::CA_WARNING, now)
            && last_warning.is_none_or(|at| now.saturating_sub(at) >= 86_400)
        {
            warn!("{}", pki::ca_expiry_warning(ca.not_after_unix, now));
            last_warning = Some(now);
        }
        let renewing = pki.clone();
        let renewed = tokio::task::spawn_blocking(move || renewing.renew_due(Some(listen), now)).await;
        match renewed {
            Ok(Ok(Some(_))) => match tls::server_config(&pki) {
                Ok(config) => {
                    endpoint.set_server_config(Some(config));
                    info!("the console now serves its renewed certificate; open connections stay");
                }
                Err(reason) => warn!("the renewed server certificate is unusable: {reason}"),
            },
            Ok(Ok(None)) => {}
            Ok(Err(err)) => warn!("failed to renew the console's certificates: {err}; trying again in 6h"),
            Err(err) => warn!("the certificate renewal task failed: {err}"),
        }
    }
}

/// Takes the data dir's lock, or says who holds it.
///
/// # Errors
/// [`ConsoleError::AlreadyRunning`] when another process holds it.
pub fn lock_data_dir(dir: &Path) -> Result<File, ConsoleError> {
    files::create_private_dir(dir).map_err(io(dir))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock_file =
        File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
    if lock_file.try_lock().is_err() {
        return Err(ConsoleError::AlreadyRunning(dir.to_path_buf()));
    }
    Ok(lock_file)
}

/// What an owner is built from: the console's settings, its PKI, the
/// records a store loaded, the store to write them back to, and who this
/// console is.
pub(crate) struct OwnerStart<'a> {
    pub(crate) config: &'a ConsoleConfig,
    pub(crate) pki: Arc<ClusterPki>,
    pub(crate) loaded: Loaded,
    pub(crate) store: Box<dyn StateStore>,
    pub(crate) console: ConsoleStatus,
    pub(crate) outlets: Outlets,
}

/// Builds an owner over loaded records and starts it: nodes are `unknown`
/// for the reconnect grace, pending steps are resumed, and the event log
/// says so. Returns its handle and the running task.
pub(crate) fn start_owner(start: OwnerStart<'_>, opening: &str) -> Result<(OwnerHandle, Running), ConsoleError> {
    let OwnerStart { config, pki, loaded, store, console, outlets } = start;
    let image = loaded.image;
    let registry = Registry::from_image(&image);
    outlets.operators.replace(image.operators.values());
    let seed = config.placement_seed.unwrap_or_else(rand::random);
    let workloads = Workloads::new(
        config.workloads.clone(),
        WorkloadRecords { tasks: image.tasks, instances: image.instances, nodes: image.nodes, cluster: image.cluster },
        seed,
    );
    let mut table = NodeTable::new(TableConfig {
        detector: config.detector.clone(),
        limits: config.limits.clone(),
        reconnect_grace: config.reconnect_grace,
    });
    table.remember(workloads.node_records().map(|node| (node.name.clone(), node.last_state)), Instant::now());
    let known = table.len();
    let catalog = Catalog::new(image.objects, image.intents, console.term, image.data_clock)
        .with_default_replicas(config.data.replicas);
    let writer = Writer::start(store, 0).map_err(io(&config.data_dir))?;
    let events = EventLog::new(loaded.events, outlets.events.clone());
    let (mut owner, handle, inputs) = Owner::new(OwnerParts {
        config: OwnerConfig {
            tick: config.detection_tick,
            pause_threshold: config.pause_threshold,
            publish_every: config.publish_every,
            console,
            data: config.data,
        },
        pki,
        table,
        workloads,
        catalog,
        registry,
        events,
        writer,
        outlets,
    });
    owner.event(&format!("{opening}; {known} known node(s)"));
    owner.resume();
    let stop = CancellationToken::new();
    let task = tokio::spawn(owner.run(inputs, stop.clone()));
    tokio::spawn(data::repair::run(handle.clone(), stop.clone(), config.data.repair_rate));
    tokio::spawn(data::entropy::run(handle.clone(), stop.clone()));
    Ok((handle, Running { stop, task }))
}

impl ControlPlane {
    /// Starts the control plane: takes the data dir's lock, loads or makes
    /// the PKI (reissuing the console's certificate for this listen
    /// address), opens and loads the store, binds the endpoint, writes the
    /// address file and starts the owner.
    ///
    /// # Errors
    /// [`ConsoleError`] explaining what is in the way.
    pub async fn start(config: ConsoleConfig, shutdown: CancellationToken) -> Result<Self, ConsoleError> {
        let dir = config.data_dir.clone();
        let lock_file = lock_data_dir(&dir)?;
        let mut pki = ClusterPki::load_for_console(&dir, config.listen)?;
        pki.set_agent_cert_ttl(config.agent_cert_ttl);
        let pki = Arc::new(pki);
        let server_config =
            tls::server_config(&pki).map_err(|reason| ConsoleError::Listen { addr: config.listen, reason })?;
        let endpoint = ringwatch_net::endpoint(config.listen, Some(server_config))
            .map_err(|err| ConsoleError::Listen { addr: config.listen, reason: err.to_string() })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|err| ConsoleError::Listen { addr: config.listen, reason: err.to_string() })?;
        let advertised = config.advertise.unwrap_or_else(|| crate::local::loopback(local_addr));
        let outlets = Outlets { socket: Some(local_addr), ..Outlets::new() };
        let (role, leadership) = match &config.store {
            StoreChoice::Embedded => Self::start_single(&config, &pki, &outlets, advertised).await?,
            StoreChoice::Group(group) => {
                Self::start_group(&config, group, &pki, &outlets, advertised, shutdown.child_token()).await?
            }
        };
        let address_path = dir.join(ADDRESS_FILE);
        files::write_atomic(&address_path, format!("{local_addr}\n").as_bytes(), PUBLIC).map_err(io(&address_path))?;
        let tracker = TaskTracker::new();
        let pki_for_renewal = pki.clone();
        let context = Arc::new(ServerContext {
            role: role.subscribe(),
            outlets: outlets.clone(),
            counters: outlets.counters.clone(),
            pki,
            admission: Admission::new(MAX_PENDING_HANDSHAKES, outlets.counters.clone()),
            console_beat: config.console_beat,
        });
        tracker.spawn(server::accept_loop(endpoint.clone(), context, tracker.clone(), shutdown.clone()));
        tracker.spawn(renew_certificates(pki_for_renewal, endpoint.clone(), config.listen, shutdown.clone()));
        info!(listen = %local_addr, data_dir = %dir.display(), "control plane started");
        Ok(Self {
            role,
            outlets,
            local_addr,
            endpoint,
            tracker,
            shutdown,
            leadership: Some(leadership),
            _lock: lock_file,
            data_dir: dir,
        })
    }

    /// A single console: the embedded database, and it leads itself, at
    /// term 0, for its whole life.
    async fn start_single(
        config: &ConsoleConfig,
        pki: &Arc<ClusterPki>,
        outlets: &Outlets,
        address: SocketAddr,
    ) -> Result<(watch::Sender<Role>, Running), ConsoleError> {
        let path = config.data_dir.join(STATE_FILE);
        let fold_at = config.change_log_fold_at;
        let tallies = outlets.counters.tallies.change_log.clone();
        let (store, loaded) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let mut store = RedbStore::open(&path)?.folding_at(fold_at).reporting_to(tallies);
            let loaded = store.load(LOADED_EVENTS)?;
            Ok((store, loaded))
        })
        .await
        .map_err(|err| ConsoleError::Io {
            path: config.data_dir.join(STATE_FILE),
            source: std::io::Error::other(err),
        })??;
        let console = ConsoleStatus {
            name: config.name.clone(),
            address: address.to_string(),
            role: ConsoleRole::Leader,
            term: 0,
            leader: Some(address.to_string()),
            store_problem: None,
            ca_expires_unix: pki.ca_validity().not_after_unix,
        };
        let (owner, running) = start_owner(
            OwnerStart { config, pki: pki.clone(), loaded, store: Box::new(store), console, outlets: outlets.clone() },
            &format!("console listening on {address}"),
        )?;
        Ok((watch::Sender::new(Role::Leader { owner, term: 0 }), running))
    }

    /// A console of a group on etcd: it stands by until it wins the
    /// leadership (ARCHITECTURE.md, "Several consoles").
    #[cfg(feature = "etcd")]
    async fn start_group(
        config: &ConsoleConfig,
        group: &GroupStore,
        pki: &Arc<ClusterPki>,
        outlets: &Outlets,
        address: SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<(watch::Sender<Role>, Running), ConsoleError> {
        use self::store::etcd::{Etcd, EtcdOptions, EtcdTls, LeaderInfo};
        let mut options = EtcdOptions::from_url(&group.url).map_err(|err| ConsoleError::Group(err.to_string()))?;
        options.prefix.clone_from(&group.prefix);
        options.lease_ttl = group.lease_ttl;
        options.tls = group.ca.clone().map(|ca| EtcdTls { ca, cert: group.cert.clone(), key: group.key.clone() });
        let options = options.validated().map_err(|err| ConsoleError::Group(err.to_string()))?;
        let etcd = Etcd::connect(options).await?.reporting_to(outlets.counters.tallies.lease.clone());
        let role = watch::Sender::new(Role::Standby {
            leader: None,
            snapshots: outlets.snapshots.subscribe(),
            hold: None,
            term: 0,
        });
        let member = group::Group {
            etcd,
            config: config.clone(),
            pki: pki.clone(),
            outlets: outlets.clone(),
            role: role.clone(),
            info: LeaderInfo { name: config.name.clone(), address: address.to_string() },
        };
        let stop = shutdown.clone();
        let task = tokio::spawn(member.run(shutdown));
        Ok((role, Running { stop, task }))
    }

    /// Without the `etcd` feature there is no group to join.
    #[cfg(not(feature = "etcd"))]
    async fn start_group(
        _config: &ConsoleConfig,
        group: &GroupStore,
        _pki: &Arc<ClusterPki>,
        _outlets: &Outlets,
        _address: SocketAddr,
        _shutdown: CancellationToken,
    ) -> Result<(watch::Sender<Role>, Running), ConsoleError> {
        Err(ConsoleError::Group(format!(
            "--store {} needs a ringwatch built with the etcd feature (cargo build --release -p ringwatch --features etcd; it needs protoc)",
            group.url
        )))
    }

    /// The address agents connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A view for the UI.
    pub fn view(&self) -> ControlView {
        ControlView { role: self.role.subscribe(), outlets: self.outlets.clone(), listen: self.local_addr }
    }

    /// A recorded join token valid for `ttl` (for in-process agents).
    ///
    /// # Errors
    /// The console's refusal, as a sentence.
    pub async fn join_token(&self, ttl: Duration) -> Result<String, String> {
        match self.view().request(AdminRequest::IssueToken { ttl_secs: ttl.as_secs().max(1) }).await {
            AdminResponse::Token(token) => Ok(token),
            AdminResponse::Error(err) => Err(err),
            other => Err(format!("unexpected answer to a token request: {other:?}")),
        }
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Waits for the shutdown signal, then stops: closes every connection
    /// with a reason, waits for the tasks, and writes the last changes.
    pub async fn run_until_stopped(mut self) {
        self.shutdown.cancelled().await;
        self.stop().await;
    }

    async fn stop(&mut self) {
        self.endpoint.close(close_code::SHUTDOWN.into(), b"console shutting down");
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await.is_err() {
            warn!("some connections did not end within 5s");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        if let Some(running) = self.leadership.take() {
            running.stop().await;
        }
        let _ = std::fs::remove_file(self.data_dir.join(ADDRESS_FILE));
        info!("control plane stopped");
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConsoleError {
    let path = path.to_path_buf();
    move |source| ConsoleError::Io { path, source }
}
