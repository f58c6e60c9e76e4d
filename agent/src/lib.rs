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
//! - [`credentials`]: the agent's key, certificate and CA in its data dir.
//! - [`tls`]: rustls/quinn client configs, including the CA-pinning verifier.
//! - [`swarm`]: many simulated agents in one process.
//! - [`files`]: atomic, private file writes.
//! - [`error`]: the library's error type.

pub mod collector;
pub mod credentials;
pub mod error;
pub mod files;
pub mod link;
pub mod supervisor;
pub mod swarm;
pub mod tls;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    let endpoint = client_endpoint(config.console)?;
    let mut workers =
        Workers { supervisor: supervisor.clone(), reports, last_word: Arc::new(Mutex::new(Instant::now())) };
    // Fencing runs whether or not a connection is up.
    let fencing = tokio::spawn(fence(supervisor.clone(), workers.last_word.clone(), sampler_stop.clone()));
    let result = link::run(&config, &endpoint, metrics, Some(&mut workers), &shutdown).await;
    supervisor.shutdown().await;
    sampler_stop.cancel();
    let _ = fencing.await;
    endpoint.wait_idle().await;
    result
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

/// The log filter both binaries use unless `RUST_LOG` says otherwise.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn,rustls=warn"))
}

/// Logs to stderr (colours only on a terminal): the headless binaries' log.
pub fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(log_filter())
        .init();
}

/// Cancels `shutdown` on SIGINT or SIGTERM: the one way both binaries stop.
pub async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}

/// A client-only QUIC endpoint on an ephemeral port of the console's
/// address family.
///
/// # Errors
/// When the socket cannot be bound.
pub fn client_endpoint(console: SocketAddr) -> Result<quinn::Endpoint, AgentError> {
    let bind: SocketAddr = match console {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let bind = if console.ip().is_loopback() { SocketAddr::new(console.ip(), 0) } else { bind };
    endpoint(bind, None).map_err(|err| AgentError::Setup(format!("failed to bind a UDP socket on {bind}: {err}")))
}

/// Socket buffer asked for in each direction. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max`; at the default 212 KiB a console with
/// thousands of agents drops heartbeats in bursts before reading them.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// A QUIC endpoint on `bind` with large socket buffers; a server when
/// `server` is given.
///
/// # Errors
/// When the socket cannot be made or bound.
pub fn endpoint(bind: SocketAddr, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if bind.is_ipv6() {
        // Same behaviour on every host, whatever its sysctl says.
        let _ = socket.set_only_v6(false);
    }
    // Best effort: a smaller buffer still works, only less well under load.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&bind.into())?;
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket.into(), runtime)
}
