//! Agents run inside the console's process through the agent crate's public
//! API: the embedded local agent of a bare `ringwatch`, and the demo's.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ringwatch_agent::{AllowSource, LinkConfig, SupervisorConfig};
use ringwatch_shared::plan::{OperatorAction, Plan};
use ringwatch_shared::protocol::AdminRequest;
use ringwatch_shared::status::ClusterEvent;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::control::owner::ControlSnapshot;
use crate::control::{ControlPlane, ControlView};
use crate::demo::DemoFleet;
use crate::handle::{Command, CommandError, ConsoleHandle, Reply, Snapshot, act_outcome, plan_outcome};

/// How long the token handed to in-process agents lives: they join at once.
const LOCAL_TOKEN_TTL: Duration = Duration::from_secs(600);

/// Where the embedded local agent's allowlist is set, as its refusals and
/// warnings name it.
pub const LOCAL_ALLOW_SOURCE: &str = "local_agent_allow_exec in the console's config file";

/// The embedded local agent's allowlist when the config file sets none: any
/// program. Unlike a standalone agent (which denies by default, README.md
/// "Agent options"), this agent runs as the operator's own user on the
/// operator's own machine, at the operator's own console, so allowing
/// everything gives no one a power they lack; a bare `ringwatch` is meant
/// to run tasks with no set-up. `local_agent_allow_exec` restricts it.
pub fn default_allow_exec() -> Vec<String> {
    vec![ringwatch_agent::ALLOW_ANY.to_string()]
}

/// Starts an agent named `name` in this process, joined to `control`, with
/// its credentials under `data_dir`, allowed to run the programs that match
/// `allow_exec` (usually [`default_allow_exec`]). It stops (saying goodbye)
/// on `shutdown`. A join token is issued (and recorded) only if the agent
/// has not joined before.
///
/// # Errors
/// When the console refuses to issue the token.
pub async fn spawn_local_agent(
    control: &ControlPlane,
    name: &str,
    data_dir: &Path,
    allow_exec: Vec<String>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, String> {
    let mut config = LinkConfig::new(loopback(control.local_addr()), data_dir.to_path_buf());
    let mut tasks = SupervisorConfig::new(data_dir.to_path_buf());
    tasks.allow_exec = allow_exec;
    tasks.allow_source = AllowSource::Config(LOCAL_ALLOW_SOURCE.to_string());
    config.name = Some(name.to_string());
    config.token = token_unless_joined(control, data_dir, LOCAL_TOKEN_TTL).await?;
    let name = name.to_string();
    Ok(tokio::spawn(async move {
        if let Err(err) = ringwatch_agent::run_agent(config, tasks, shutdown).await {
            error!(agent = %name, "local agent stopped: {err}");
        }
    }))
}

/// A join token for an in-process agent whose data dir is `data_dir`, or
/// `None` when it holds credentials already.
///
/// # Errors
/// When the console refuses to issue the token.
pub async fn token_unless_joined(
    control: &ControlPlane,
    data_dir: &Path,
    ttl: Duration,
) -> Result<Option<String>, String> {
    if matches!(ringwatch_agent::credentials::Credentials::load(data_dir), Ok(Some(_))) {
        return Ok(None);
    }
    control.join_token(ttl).await.map(Some)
}

/// The console of this process, as the UI sees it.
#[derive(Debug, Clone)]
pub struct LocalConsole {
    /// The control plane's read side.
    view: ControlView,
    /// Its snapshots (while this exists, the owner publishes them).
    snapshots: watch::Receiver<Arc<ControlSnapshot>>,
    /// The demo's agents, when running `ringwatch demo`.
    demo: Option<Arc<DemoFleet>>,
}

impl LocalConsole {
    /// A handle on `view`, with demo commands if `demo` is given.
    pub fn new(view: ControlView, demo: Option<Arc<DemoFleet>>) -> Self {
        Self { snapshots: view.snapshots(), view, demo }
    }
}

impl ConsoleHandle for LocalConsole {
    fn snapshot(&self) -> Snapshot {
        let published = self.snapshots.borrow().clone();
        Snapshot {
            status: published.status.clone(),
            samples: published.samples.iter().map(|(name, sample)| (name.clone(), (**sample).clone())).collect(),
            events: published.events.to_vec(),
            dropped_events: 0,
            listen: Some(self.view.listen()),
            demo: self.demo.is_some(),
            at_unix_ms: published.at_unix_ms,
            link_problem: None,
            read_only: false,
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.view.subscribe()
    }

    fn command(&self, command: Command) -> Reply<Result<String, CommandError>> {
        match command {
            Command::Demo { node, action } => {
                let outcome = match &self.demo {
                    Some(demo) => demo.act(&node, action).map_err(CommandError::Refused),
                    None => Err(CommandError::Refused("demo keys work in `ringwatch demo` only".into())),
                };
                Box::pin(std::future::ready(outcome))
            }
            Command::Act { action, confirmed } => {
                let view = self.view.clone();
                Box::pin(async move {
                    act_outcome(view.request(AdminRequest::Act { action, dry_run: false, confirmed }).await)
                })
            }
        }
    }

    fn plan(&self, action: &OperatorAction) -> Reply<Result<Plan, String>> {
        let view = self.view.clone();
        let action = action.clone();
        Box::pin(async move {
            plan_outcome(view.request(AdminRequest::Act { action, dry_run: true, confirmed: None }).await)
        })
    }
}

/// The address to reach a console bound to `addr` from this host.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip: std::net::IpAddr =
            if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

/// A node name for the local agent: the host name, made valid.
pub fn local_node_name() -> String {
    let host = gethostname_lossy();
    let cleaned: String = host
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .take(63)
        .collect();
    let trimmed = cleaned.trim_start_matches(['.', '_', '-']);
    if trimmed.is_empty() { "local".to_string() } else { trimmed.to_string() }
}

fn gethostname_lossy() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|name| name.trim().to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        assert_eq!(loopback("0.0.0.0:7443".parse().unwrap()), "127.0.0.1:7443".parse().unwrap());
        assert_eq!(loopback("10.0.0.1:7443".parse().unwrap()), "10.0.0.1:7443".parse().unwrap());
    }

    #[test]
    fn the_local_agent_runs_any_program_by_default() {
        let tasks = SupervisorConfig { allow_exec: default_allow_exec(), ..SupervisorConfig::new("/x".into()) };
        for program in ["sh", "python3", "/usr/bin/env", "./bin/app"] {
            assert!(tasks.allows(program), "{program}");
        }
    }

    #[test]
    fn the_local_name_is_a_valid_node_name() {
        let name = local_node_name();
        assert!(!name.is_empty() && name.len() <= 63);
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c)));
    }
}
