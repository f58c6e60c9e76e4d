//! The ringwatch agent: samples its host, keeps a mutually authenticated
//! QUIC link to the console (heartbeats as datagrams, metrics on a control
//! stream), and reconnects with capped, jittered backoff.
//!
//! The library lets tests, the demo and the console's embedded agent run
//! agents in-process; the binary is a thin command line over [`run_agent`]
//! and [`swarm::run`]. Nothing here knows the console's internals: the two
//! meet only in the wire protocol of `ringwatch-shared`.
//!
//! # Layout
//! - [`collector`]: host sampling on a thread of its own.
//! - [`supervisor`]: assigned instances as child processes: restart, stop, fencing.
//! - [`link`]: join, connect, heartbeat, reconnect.
//! - [`consoles`]: the `--console` list and which console to try next
//!   (following the leader among several).
//! - [`endpoints`]: the QUIC endpoints that reach the consoles.
//! - [`credentials`]: the agent's key, certificate and CA in its data dir.
//! - [`objects`]: the agent's copies of the data store's objects.
//! - [`data`]: serving the console's data requests on those copies.
//! - [`swarm`]: many simulated agents in one process.
//! - [`status`]: the agent's own view on a Unix socket in its data dir
//!   (`ringwatch-agent status`).
//! - [`error`]: the library's error type.
//!
//! Endpoints, TLS configs and durable files come from `ringwatch-net`.

pub mod collector;
pub mod consoles;
pub mod credentials;
pub mod data;
pub mod endpoints;
pub mod error;
pub mod link;
pub mod objects;
pub mod silence;
pub mod status;
pub mod supervisor;
pub mod swarm;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use consoles::{ConsoleAddr, ConsoleAddrError, Consoles, ResolveError};
pub use endpoints::Endpoints;
pub use error::AgentError;
pub use link::LinkConfig;
use link::Workers;
pub use supervisor::{ALLOW_ANY, AllowSource, Supervisor, SupervisorConfig};
use tokio_util::sync::CancellationToken;

/// Runs one agent — sampler and link — until `shutdown`, then says goodbye.
///
/// # Errors
/// When the console refuses the agent for good or its credentials are
/// unusable.
pub async fn run_agent(
    config: LinkConfig,
    tasks: SupervisorConfig,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    tasks.validate().map_err(|err| AgentError::Config(err.to_string()))?;
    if tasks.allow_exec.is_empty() {
        warn_runs_nothing(&tasks.allow_source);
    }
    if config.data_quota == 0 {
        return Err(AgentError::Config("the data quota must be more than zero bytes".into()));
    }
    let data = open_data(&config.data_dir, config.data_quota).await?;
    let orphans = supervisor::reap_orphans(&tasks.data_dir);
    if !orphans.is_empty() {
        tracing::warn!(?orphans, "killed instance processes left by a previous run of this agent");
    }
    let (reports_tx, reports) = tokio::sync::mpsc::channel(REPORT_QUEUE);
    let supervisor = Supervisor::new(tasks, reports_tx);
    let sampler_stop = shutdown.child_token();
    let pids = supervisor.clone();
    let metrics = collector::spawn(sampler_stop.clone(), Some(Arc::new(move || pids.pids())))
        .map_err(AgentError::io("metrics thread"))?;
    let endpoints = Endpoints::new();
    let link_state = status::LinkState::new();
    let status_server = status::StatusServer::start(status::StatusSource {
        data_dir: config.data_dir.clone(),
        consoles: config.consoles.to_string(),
        link: link_state.clone(),
        supervisor: supervisor.clone(),
        data: data.clone(),
    });
    let mut workers = Workers {
        supervisor: supervisor.clone(),
        reports,
        last_word: Arc::new(Mutex::new(Instant::now())),
        link: link_state,
        data: data.clone(),
    };
    // Fencing runs whether or not a connection is up.
    let fencing = tokio::spawn(fence(supervisor.clone(), workers.last_word.clone(), sampler_stop.clone()));
    // The supervisor and fencing live here, across sessions and consoles:
    // nothing the link does between consoles stops an instance.
    let result = link::run(&config, &endpoints, metrics, Some(&mut workers), &shutdown).await;
    supervisor.shutdown().await;
    sampler_stop.cancel();
    let _ = fencing.await;
    data.close().await;
    endpoints.wait_idle().await;
    if let Some(server) = status_server {
        server.stop().await;
    }
    result
}

/// Opens the agent's copies in `data_dir/objects` (README.md, "Agent
/// options"), on the blocking pool: opening reads every copy's metadata.
async fn open_data(data_dir: &std::path::Path, quota: u64) -> Result<data::DataService, AgentError> {
    let dir = objects::objects_dir(data_dir);
    let store = tokio::task::spawn_blocking(move || objects::ObjectStore::open(&dir, quota))
        .await
        .map_err(|err| AgentError::Setup(format!("failed to open the data store: {err}")))??;
    let usage = store.usage();
    if usage.bytes > usage.quota {
        tracing::warn!(
            "the data store holds {} bytes, more than its {}-byte quota (--data-quota): it takes no new copies \
             while it does; raise --data-quota to take more",
            usage.bytes,
            usage.quota
        );
    }
    tracing::info!(objects = usage.objects, bytes = usage.bytes, quota = usage.quota, "data store opened");
    Ok(data::DataService::new(store))
}

/// Says loudly that an agent with an empty allowlist will refuse every task
/// (deny by default, README.md "Agent options"), and how to change that.
fn warn_runs_nothing(source: &AllowSource) {
    match source {
        AllowSource::Flag => tracing::warn!(
            "this agent runs no tasks: start it with --allow-exec PATTERN (repeatable; the programs it may run, \
             like `--allow-exec /opt/app/bin/*`; `--allow-exec '*'` allows any program)"
        ),
        AllowSource::Config(list) => {
            tracing::warn!(
                "this agent runs no tasks: add the programs it may run to {list} (\"*\" allows any program)"
            );
        }
    }
}

/// Reports queued while the console is away (the inventory sent on
/// reconnection supersedes them).
const REPORT_QUEUE: usize = 1024;
/// How often fencing looks at the console's silence.
const FENCE_CHECK: Duration = Duration::from_millis(100);

/// Stops fenced instances once the console has been silent long enough.
async fn fence(supervisor: Supervisor, last_word: Arc<Mutex<Instant>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(FENCE_CHECK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let silence = last_word.lock().unwrap_or_else(PoisonError::into_inner).elapsed();
        supervisor.console_silent_for(silence);
    }
}

/// A client-only QUIC endpoint for reaching `console` (one address;
/// [`Endpoints`] serves a list).
///
/// # Errors
/// When the socket cannot be bound.
pub fn client_endpoint(console: SocketAddr) -> Result<quinn::Endpoint, AgentError> {
    ringwatch_net::client_endpoint(console).map_err(|err| AgentError::Setup(err.to_string()))
}
