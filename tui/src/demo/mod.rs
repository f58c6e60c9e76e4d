//! `ringwatch demo`: local agents behind UDP relays, so an operator can crash,
//! partition or stall a node from the keyboard and watch the console react.
//!
//! Each demo agent runs in-process through the agent crate's public API and
//! reaches the console through its own [`relay::UdpRelay`]:
//! - crash: the relay drops everything (no goodbye escapes) and the agent's
//!   task is aborted, as `kill -9` would;
//! - partition: the relay drops both directions until healed;
//! - stall: the agent stops sending (a hung process) but stays connected;
//! - heal: undoes the fault; a crashed agent is started again.
//!
//! On first start it applies [`SAMPLE_TASKS`], so there is work to move.

pub mod relay;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringwatch_agent::{LinkConfig, SupervisorConfig};
use ringwatch_shared::protocol::{AdminRequest, AdminResponse};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

use self::relay::{RelayMode, UdpRelay};
use crate::control::ControlPlane;
use crate::handle::DemoAction;
use crate::local::loopback;

/// The demo's sample tasks: a little of each placement strategy and policy,
/// so a crashed node visibly moves work. Every command is a shell loop that
/// any Linux host can run.
pub const SAMPLE_TASKS: &str = r#"
[[task]]
name = "web"
command = ["sh", "-c", "while true; do sleep 1; done"]
replicas = 3
placement = "ring"
restart = { mode = "immediate" }

[[task]]
name = "cache"
command = ["sh", "-c", "while true; do sleep 1; done"]
replicas = 2
placement = "least-loaded"
restart = { mode = "delayed", delay = "3s" }

[[task]]
name = "batch"
command = ["sh", "-c", "while true; do sleep 1; done"]
replicas = 1
placement = "round-robin"
migrate = { mode = "gradual", max_parallel = 1, min_healthy = "2s" }
on_disconnect = { stop_after = "4s" }
"#;

/// The programs the demo's agents may run: exactly what [`SAMPLE_TASKS`]
/// use. Agents deny by default (README.md, "Agent options"); the demo's
/// need no more than this.
pub const DEMO_ALLOW_EXEC: &[&str] = &["sh"];

/// How long the demo's join token lives: its agents join at start and after
/// a heal.
const DEMO_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// One demo agent.
#[derive(Debug)]
struct DemoAgent {
    /// Its path to the console.
    relay: UdpRelay,
    /// Set while stalled.
    stalled: Arc<AtomicBool>,
    /// The running agent; `None` while crashed.
    task: Option<JoinHandle<()>>,
    /// Stops it gracefully (goodbye) at demo shutdown.
    stop: CancellationToken,
    /// What is wrong with it now, for the status line.
    fault: Option<DemoAction>,
}

/// The demo's agents.
#[derive(Debug)]
pub struct DemoFleet {
    /// The console's address.
    console: SocketAddr,
    /// Join token for (re)starting agents.
    token: String,
    /// Agents' data dirs live under here.
    data_dir: PathBuf,
    /// Stops every agent.
    shutdown: CancellationToken,
    /// By node name.
    agents: Mutex<BTreeMap<String, DemoAgent>>,
}

impl DemoFleet {
    /// Starts `count` agents named `node-1` … `node-<count>` against `control`,
    /// their credentials under `data_dir`.
    ///
    /// # Errors
    /// When a relay socket cannot be bound or the console issues no token.
    pub async fn start(
        control: &ControlPlane,
        count: usize,
        data_dir: PathBuf,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let token = control.join_token(DEMO_TOKEN_TTL).await.map_err(std::io::Error::other)?;
        let fleet = Self {
            console: loopback(control.local_addr()),
            token,
            data_dir,
            shutdown,
            agents: Mutex::new(BTreeMap::new()),
        };
        for index in 1..=count {
            let name = format!("node-{index}");
            let agent = fleet.launch(&name)?;
            lock(&fleet.agents).insert(name, agent);
        }
        let view = control.view();
        let has_tasks =
            matches!(view.request(AdminRequest::ListTasks).await, AdminResponse::Tasks(tasks) if !tasks.is_empty());
        if !has_tasks {
            match ringwatch_shared::task::parse_task_file(SAMPLE_TASKS) {
                Ok(tasks) => {
                    view.request(AdminRequest::ApplyTasks(tasks)).await;
                }
                Err(err) => error!("the demo's sample tasks do not parse: {err}"),
            }
        }
        Ok(fleet)
    }

    fn launch(&self, name: &str) -> std::io::Result<DemoAgent> {
        let relay = UdpRelay::start(self.console)?;
        let stalled = Arc::new(AtomicBool::new(false));
        let stop = self.shutdown.child_token();
        let mut config = LinkConfig::new(relay.addr(), self.data_dir.join(name));
        let mut tasks = SupervisorConfig::new(self.data_dir.join(name));
        tasks.allow_exec = DEMO_ALLOW_EXEC.iter().map(|pattern| (*pattern).to_string()).collect();
        config.name = Some(name.to_string());
        config.token = Some(self.token.clone());
        config.weight = 1 + u32::try_from(name.len() % 3).unwrap_or(0);
        config.stalled = Some(stalled.clone());
        let agent_stop = stop.clone();
        let agent_name = name.to_string();
        let task = tokio::spawn(async move {
            if let Err(err) = ringwatch_agent::run_agent(config, tasks, agent_stop).await {
                error!(agent = %agent_name, "demo agent stopped: {err}");
            }
        });
        Ok(DemoAgent { relay, stalled, task: Some(task), stop, fault: None })
    }

    /// The demo's node names.
    pub fn names(&self) -> Vec<String> {
        lock(&self.agents).keys().cloned().collect()
    }

    /// Injects `action` into `node`; returns a sentence for the status line.
    ///
    /// # Errors
    /// When `node` is not a demo agent or the action does not apply.
    pub fn act(&self, node: &str, action: DemoAction) -> Result<String, String> {
        let mut agents = lock(&self.agents);
        let agent = agents.get_mut(node).ok_or_else(|| format!("\"{node}\" is not one of the demo's agents"))?;
        match action {
            DemoAction::Crash => {
                let Some(task) = agent.task.take() else {
                    return Err(format!("{node} is already crashed; h heals it"));
                };
                agent.relay.set_mode(RelayMode::Drop);
                task.abort();
                agent.fault = Some(DemoAction::Crash);
                Ok(format!("crashed {node}: no goodbye, its traffic stopped"))
            }
            DemoAction::Partition => {
                agent.relay.set_mode(RelayMode::Drop);
                agent.fault = Some(DemoAction::Partition);
                Ok(format!("partitioned {node}: its traffic is dropped both ways"))
            }
            DemoAction::Stall => {
                agent.stalled.store(true, Ordering::Relaxed);
                agent.fault = Some(DemoAction::Stall);
                Ok(format!("stalled {node}: it stays connected but sends nothing"))
            }
            DemoAction::Heal => {
                let was = agent.fault.take();
                if agent.task.is_none() {
                    let restarted = self.launch(node).map_err(|err| format!("cannot restart {node}: {err}"))?;
                    *agent = restarted;
                } else {
                    agent.relay.set_mode(RelayMode::Pass);
                    agent.stalled.store(false, Ordering::Relaxed);
                }
                Ok(match was {
                    Some(DemoAction::Crash) => format!("restarted {node}"),
                    Some(_) => format!("healed {node}"),
                    None => format!("{node} had nothing to heal"),
                })
            }
        }
    }

    /// Stops every agent gracefully (each says goodbye) and waits for them.
    pub async fn stop(&self) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut agents = lock(&self.agents);
            agents
                .values_mut()
                .filter_map(|agent| {
                    agent.stop.cancel();
                    agent.task.take()
                })
                .collect()
        };
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Locks a mutex; every update under it is a single assignment, so a panic
/// elsewhere leaves the data usable and poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_tasks_parse() {
        let tasks = ringwatch_shared::task::parse_task_file(SAMPLE_TASKS).unwrap();
        assert_eq!(tasks.len(), 3);
    }

    #[test]
    fn the_demo_agents_allow_exactly_the_sample_tasks_programs() {
        let allow_exec = DEMO_ALLOW_EXEC.iter().map(|pattern| (*pattern).to_string()).collect();
        let config = SupervisorConfig { allow_exec, ..SupervisorConfig::new("/x".into()) };
        let tasks = ringwatch_shared::task::parse_task_file(SAMPLE_TASKS).unwrap();
        let mut programs: Vec<&str> = tasks.iter().map(|task| task.command[0].as_str()).collect();
        programs.dedup();
        assert_eq!(programs, DEMO_ALLOW_EXEC, "the allowlist is what the samples use, no more");
        assert!(programs.iter().all(|program| config.allows(program)));
        assert!(!config.allows("python3") && !config.allows("/bin/sh"));
    }
}
