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
pub mod swarm;
pub mod tls;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

pub use error::AgentError;
pub use link::LinkConfig;
use tokio_util::sync::CancellationToken;

/// Runs one agent — sampler and link — until `shutdown`, then says goodbye.
///
/// # Errors
/// When the console refuses the agent for good or its credentials are
/// unusable.
pub async fn run_agent(config: LinkConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let sampler_stop = shutdown.child_token();
    let metrics = collector::spawn(sampler_stop.clone()).map_err(AgentError::io("metrics thread"))?;
    let endpoint = client_endpoint(config.console)?;
    let result = link::run(&config, &endpoint, metrics, &shutdown).await;
    sampler_stop.cancel();
    endpoint.wait_idle().await;
    result
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
    quinn::Endpoint::client(bind).map_err(|err| AgentError::Setup(format!("failed to bind a UDP socket: {err}")))
}
