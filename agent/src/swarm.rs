//! Many simulated agents in one process, for load tests: each a real QUIC
//! connection with its own credentials speaking the real protocol, sharing
//! one UDP socket and one synthetic metrics stream.
//!
//! Start-up is paced by the console, not by a clock: at most
//! [`SwarmConfig::concurrency`] agents are joining or connecting at once, and
//! the next one starts as soon as one is welcomed. A fixed pause between
//! agents either wastes time (a fast console) or piles joins onto a slow one
//! until they time out and retry; a bound on the agents in flight does
//! neither.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use ringwatch_shared::metrics::{DiskUsage, MetricsSample};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::consoles::Consoles;
use crate::endpoints::Endpoints;
use crate::error::AgentError;
use crate::link::{self, LinkConfig};

/// A swarm's settings.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// The consoles every agent may talk to (README.md, "Agent options").
    pub consoles: Consoles,
    /// Join token for agents without credentials.
    pub token: Option<String>,
    /// How many agents.
    pub agents: usize,
    /// Each agent keeps its credentials in `data_dir/<name>`.
    pub data_dir: PathBuf,
    /// Agents are named `<prefix>-<index>`.
    pub name_prefix: String,
    /// Heartbeat period of every agent.
    pub heartbeat: Duration,
    /// Extra delay between starting two agents (none by default: the
    /// concurrency bound already spreads the joins).
    pub stagger: Duration,
    /// At most this many agents joining or connecting at once during
    /// start-up; an agent's slot frees when the console welcomes it (or its
    /// link ends). Zero counts as one.
    pub concurrency: usize,
}

/// Upper bound of [`SwarmConfig::concurrency`], far above any useful value;
/// it keeps the semaphore within its limits whatever the command line says.
const MAX_CONCURRENCY: usize = 1 << 20;

/// How many simulated agents share one UDP socket. One socket for 10,000
/// agents is one endpoint task reading 50,000 datagrams a second: any
/// pause of the thread it runs on overflows the socket's buffer and drops
/// the consoles' beats to a burst of agents at once, which then take the
/// console for silent — a fault of the load generator, not of the console
/// it measures (BENCHMARKS.md, "The console at scale"). Real agents have a
/// socket each.
const AGENTS_PER_SOCKET: usize = 1_000;

/// Default of [`SwarmConfig::concurrency`]: enough joins in flight to keep a
/// console busy (signing a certificate, storing it, two handshakes per
/// agent) without a burst of thousands of handshakes at once.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// Runs the swarm until `shutdown`; each agent says goodbye.
///
/// # Errors
/// None of its own: an agent that fails (a refusal, a socket that cannot be
/// bound) is logged and the rest go on.
pub async fn run(config: SwarmConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    // Agents share sockets, [`AGENTS_PER_SOCKET`] to a set of endpoints.
    let mut sockets: Vec<Endpoints> = Vec::new();
    let (metrics_tx, metrics_rx) = watch::channel(synthetic_sample(&mut rand::rng()));
    let mut agents = JoinSet::new();
    let synthetic_shutdown = shutdown.clone();
    agents.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => { metrics_tx.send_replace(synthetic_sample(&mut rand::rng())); }
                () = synthetic_shutdown.cancelled() => return,
            }
        }
    });
    let width = config.concurrency.clamp(1, MAX_CONCURRENCY);
    let slots = Arc::new(Semaphore::new(width));
    let started = Instant::now();
    for index in 0..config.agents {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let name = format!("{}-{index}", config.name_prefix);
        let mut link_config = LinkConfig::new(config.consoles.clone(), config.data_dir.join(&name));
        link_config.name = Some(name.clone());
        link_config.token.clone_from(&config.token);
        link_config.heartbeat = config.heartbeat;
        link_config.weight = 1;
        let welcomed = Arc::new(Notify::new());
        link_config.welcomed = Some(welcomed.clone());
        let endpoints = match sockets.last() {
            Some(shared) if index % AGENTS_PER_SOCKET != 0 => shared.clone(),
            _ => {
                let fresh = Endpoints::new();
                sockets.push(fresh.clone());
                fresh
            }
        };
        let metrics = metrics_rx.clone();
        let shutdown = shutdown.clone();
        agents.spawn(async move {
            let link = link::run(&link_config, &endpoints, metrics, None, &shutdown);
            tokio::pin!(link);
            let result = tokio::select! {
                result = &mut link => result,
                () = welcomed.notified() => {
                    drop(slot);
                    link.await
                }
            };
            if let Err(err) = result {
                error!(agent = %name, %err, "swarm agent stopped");
            }
        });
        if !config.stagger.is_zero() {
            tokio::time::sleep(config.stagger).await;
        }
    }
    // Every agent has been started; once the last slots are back, every
    // agent has been welcomed once (or stopped, with an error logged).
    let all = u32::try_from(width).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => {
            info!(agents = config.agents, elapsed = ?started.elapsed(), "swarm started: every agent was welcomed once");
        }
        () = shutdown.cancelled() => {}
    }
    while agents.join_next().await.is_some() {}
    for endpoints in &sockets {
        endpoints.wait_idle().await;
    }
    Ok(())
}

fn synthetic_sample(rng: &mut impl Rng) -> MetricsSample {
    let total = 8u64 << 30;
    MetricsSample {
        uptime_secs: 3_600,
        cpu_permille: rng.random_range(50..400),
        core_permille: (0..4).map(|_| rng.random_range(0..1000)).collect(),
        load_centi: [rng.random_range(0..400), 150, 120],
        mem_used_bytes: rng.random_range(total / 4..total / 2),
        mem_total_bytes: total,
        swap_used_bytes: 0,
        swap_total_bytes: 0,
        disks: vec![DiskUsage { mount: "/".into(), used_bytes: 40 << 30, total_bytes: 100 << 30 }],
        net_rx_bytes_per_sec: rng.random_range(0..1_000_000),
        net_tx_bytes_per_sec: rng.random_range(0..1_000_000),
        instances: Vec::new(),
    }
}
