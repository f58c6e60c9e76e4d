//! Many simulated agents in one process, for load tests: each a real QUIC
//! connection with its own credentials speaking the real protocol, sharing
//! one UDP socket and one synthetic metrics stream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;
use ringwatch_shared::metrics::{DiskUsage, MetricsSample};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::error::AgentError;
use crate::link::{self, LinkConfig};

/// A swarm's settings.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// The console's address.
    pub console: SocketAddr,
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
    /// Delay between starting two agents, so joins do not arrive at once.
    pub stagger: Duration,
}

/// Runs the swarm until `shutdown`; each agent says goodbye.
///
/// # Errors
/// When the endpoint cannot be opened. Agents that fail are logged and the
/// rest go on.
pub async fn run(config: SwarmConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let endpoint = crate::client_endpoint(config.console)?;
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
    for index in 0..config.agents {
        if shutdown.is_cancelled() {
            break;
        }
        let name = format!("{}-{index}", config.name_prefix);
        let mut link_config = LinkConfig::new(config.console, config.data_dir.join(&name));
        link_config.name = Some(name.clone());
        link_config.token.clone_from(&config.token);
        link_config.heartbeat = config.heartbeat;
        link_config.weight = 1;
        let endpoint = endpoint.clone();
        let metrics = metrics_rx.clone();
        let shutdown = shutdown.clone();
        agents.spawn(async move {
            if let Err(err) = link::run(&link_config, &endpoint, metrics, None, &shutdown).await {
                error!(agent = %name, %err, "swarm agent stopped");
            }
        });
        tokio::time::sleep(config.stagger).await;
    }
    info!(agents = config.agents, "swarm started");
    while agents.join_next().await.is_some() {}
    endpoint.wait_idle().await;
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
