//! A console and its agents for workload tests: [`Fleet`] starts a console
//! with [`NO_LIMITS_CONFIG`](crate::tasks::NO_LIMITS_CONFIG), joins agents
//! allowed to run the test tasks' programs ([`TASK_PROGRAMS`]; directly, or
//! each behind a [`UdpRelay`] to cut its link), waits until
//! all are alive, and on drop kills the agents and then every task process
//! they left (a [`Reaper`]).
//!
//! Layout inside the test's sandbox: `console/` (the console's data dir,
//! with `console.toml`), `agent-NAME/` (each agent's data dir; its
//! instances run in `agent-NAME/instances/<task>-<index>/`), and whatever
//! the test writes at the top (task files, a life log).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::instances::{self, Life, Reaper};
use crate::process::Output;
use crate::status::{NodeState, Status};
use crate::tasks::{self, TaskDef};
use crate::{Agent, Console, LIVENESS, Sandbox, UdpRelay};

/// The prefix of an agent's data dir in the sandbox: `agent-NAME`.
pub const AGENT_DIR_PREFIX: &str = "agent-";

/// How long agents get to come back after a console restart: their
/// reconnect backoff reaches 5 s, plus the handshake on a busy machine, with
/// a wide margin.
pub const RECONNECT: Duration = Duration::from_secs(40);

/// The programs the test tasks run (every [`LifeLog`](crate::instances::LifeLog)
/// command and [`pid_file_command`](crate::instances::pid_file_command) is a
/// `sh -c` script): what a fleet's agents allow unless told otherwise, since
/// an agent started without `--allow-exec` runs nothing.
pub const TASK_PROGRAMS: &[&str] = &["sh"];

/// How one agent of a [`Fleet`] is started.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// The node name.
    pub name: String,
    /// Its `--allow-exec` patterns, one flag each; empty passes none (the
    /// agent runs nothing). [`TASK_PROGRAMS`] by default.
    pub allow_exec: Vec<String>,
    /// Extra `ringwatch-agent` arguments.
    pub extra_args: Vec<String>,
    /// Connect through a [`UdpRelay`] of its own, which the test can switch
    /// to drop everything (a partition of this one link).
    pub relayed: bool,
}

impl AgentSpec {
    /// A plain agent called `name`, allowed to run [`TASK_PROGRAMS`].
    pub fn new(name: &str) -> Self {
        let allow_exec = TASK_PROGRAMS.iter().map(|program| (*program).to_owned()).collect();
        Self { name: name.to_owned(), allow_exec, extra_args: Vec::new(), relayed: false }
    }

    /// With these `--allow-exec` patterns instead of [`TASK_PROGRAMS`];
    /// none at all for an agent that runs nothing.
    #[must_use]
    pub fn allow_exec(mut self, patterns: &[&str]) -> Self {
        self.allow_exec = patterns.iter().map(|pattern| (*pattern).to_owned()).collect();
        self
    }

    /// The agent's arguments beyond those every test agent gets: one
    /// `--allow-exec PATTERN` per pattern, then the extra ones.
    pub fn agent_args(&self) -> Vec<&str> {
        let allow = self.allow_exec.iter().flat_map(|pattern| ["--allow-exec", pattern.as_str()]);
        allow.chain(self.extra_args.iter().map(String::as_str)).collect()
    }

    /// With extra arguments.
    #[must_use]
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Behind a relay of its own.
    #[must_use]
    pub fn relayed(mut self) -> Self {
        self.relayed = true;
        self
    }
}

/// A console and agents; everything is killed on drop (the agents first,
/// then their task processes).
#[derive(Debug)]
pub struct Fleet {
    /// The console (replaced by [`Fleet::restart_console`]).
    pub console: Console,
    /// The join token.
    pub token: String,
    /// The agents, in the order given.
    agents: Vec<Agent>,
    /// How each agent was started, in the same order.
    specs: Vec<AgentSpec>,
    /// The relays of relayed agents, by name.
    relays: Vec<(String, UdpRelay)>,
    /// The sandbox root: agent dirs and the test's files.
    root: PathBuf,
    /// The console config file.
    config: PathBuf,
    /// Declared last so it drops last, when no agent is left to start
    /// anything: kills the task processes left in the sandbox.
    _reaper: Reaper,
}

impl Fleet {
    /// A console and one plain agent per name, all alive.
    ///
    /// # Panics
    /// When a process does not come up.
    #[track_caller]
    pub fn start(sandbox: &Sandbox, names: &[&str]) -> Self {
        let specs: Vec<AgentSpec> = names.iter().map(|name| AgentSpec::new(name)).collect();
        Self::start_with(sandbox, &specs)
    }

    /// A console and one agent per spec, all alive.
    ///
    /// # Panics
    /// When a process or relay does not come up.
    #[track_caller]
    pub fn start_with(sandbox: &Sandbox, specs: &[AgentSpec]) -> Self {
        let reaper = Reaper::new(sandbox.path());
        let console_dir = sandbox.dir("console");
        let config = tasks::write_no_limits_config(sandbox.path());
        let config_arg = config.to_string_lossy().into_owned();
        let console = Console::start_with(&console_dir, &["--config", &config_arg]);
        sandbox.step(format!("console up on {}", console.addr()));
        let token = console.join_token();
        let mut fleet = Self {
            console,
            token,
            agents: Vec::new(),
            specs: Vec::new(),
            relays: Vec::new(),
            root: sandbox.path().to_path_buf(),
            config,
            _reaper: reaper,
        };
        for spec in specs {
            let target = if spec.relayed {
                let relay = UdpRelay::start(fleet.console.addr())
                    .unwrap_or_else(|err| panic!("cannot start a relay for {}: {err}", spec.name));
                let addr = relay.addr();
                fleet.relays.push((spec.name.clone(), relay));
                addr
            } else {
                fleet.console.addr()
            };
            let agent = fleet.spawn_agent(spec, target);
            fleet.agents.push(agent);
            fleet.specs.push(spec.clone());
        }
        if !specs.is_empty() {
            let status = fleet.wait_all_alive(LIVENESS);
            sandbox.step(format!("all alive: {status}"));
        }
        fleet
    }

    fn spawn_agent(&self, spec: &AgentSpec, console: SocketAddr) -> Agent {
        Agent::start(console, &self.token, &spec.name, &self.agent_dir(&spec.name), &spec.agent_args())
    }

    /// The console's data dir (where admin commands find it).
    pub fn data_dir(&self) -> &Path {
        self.console.data_dir()
    }

    /// The sandbox root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The node names, in the order given.
    pub fn names(&self) -> Vec<String> {
        self.specs.iter().map(|spec| spec.name.clone()).collect()
    }

    /// The agent called `name`.
    ///
    /// # Panics
    /// When there is none.
    #[track_caller]
    pub fn agent(&mut self, name: &str) -> &mut Agent {
        self.agents.iter_mut().find(|a| a.name() == name).unwrap_or_else(|| panic!("no agent {name} in this fleet"))
    }

    /// The data dir of agent `name`.
    pub fn agent_dir(&self, name: &str) -> PathBuf {
        self.root.join(format!("{AGENT_DIR_PREFIX}{name}"))
    }

    /// The working directory of instance `id` on node `name`.
    pub fn instance_dir(&self, name: &str, id: &str) -> PathBuf {
        instances::instance_dir(&self.agent_dir(name), id)
    }

    /// The node whose data dir holds `path` (an instance's working
    /// directory, as a [`LifeLog`](crate::instances::LifeLog) records it:
    /// the shell's `$PWD`, which may be the canonical form of the path).
    pub fn node_of_dir(&self, path: &Path) -> Option<String> {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.names().into_iter().find(|name| {
            let dir = self.agent_dir(name);
            let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
            path.starts_with(dir)
        })
    }

    /// The relay in front of agent `name`.
    ///
    /// # Panics
    /// When that agent was not started relayed.
    #[track_caller]
    pub fn relay(&self, name: &str) -> &UdpRelay {
        self.relays
            .iter()
            .find(|(relayed, _)| relayed == name)
            .map(|(_, relay)| relay)
            .unwrap_or_else(|| panic!("agent {name} has no relay"))
    }

    /// Whether `copy` ran on node `name`.
    pub fn ran_on(&self, copy: &Life, name: &str) -> bool {
        self.node_of_dir(&copy.dir).is_some_and(|node| node == name)
    }

    /// Waits until every agent of the fleet is `alive`.
    ///
    /// # Panics
    /// On timeout, with the last status.
    #[track_caller]
    pub fn wait_all_alive(&mut self, timeout: Duration) -> Status {
        let names = self.names();
        self.console.wait_for_within(timeout, &format!("{} alive", names.join(", ")), |status| {
            names.iter().all(|name| status.is(name, &NodeState::Alive))
        })
    }

    /// Writes `tasks` to a new file in the sandbox and applies it
    /// (`ringwatch task apply FILE`), asserting `applied N task(s)`.
    ///
    /// # Panics
    /// When the command fails.
    #[track_caller]
    pub fn apply(&self, tasks: &[TaskDef]) -> Output {
        let file = self.new_file("tasks", "toml");
        tasks::write_task_file(&file, tasks);
        tasks::apply_file(self.data_dir(), &file, tasks.len())
    }

    /// A path `root/STEM-N.EXT` that does not exist yet.
    pub fn new_file(&self, stem: &str, ext: &str) -> PathBuf {
        (1..)
            .map(|n| self.root.join(format!("{stem}-{n}.{ext}")))
            .find(|path| !path.exists())
            .unwrap_or_else(|| self.root.join(format!("{stem}.{ext}")))
    }

    /// `ringwatch ARGS…` against this console; the caller judges it.
    ///
    /// # Panics
    /// When the command cannot be run or hangs.
    #[track_caller]
    pub fn admin(&self, args: &[&str]) -> Output {
        tasks::admin(self.data_dir(), args.iter().copied()).unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// An operator action, asserted carried out (see [`tasks::act`]).
    ///
    /// # Panics
    /// When it fails.
    #[track_caller]
    pub fn act(&self, args: &[&str]) -> Output {
        tasks::act(self.data_dir(), args)
    }

    /// `task list --json`.
    ///
    /// # Panics
    /// When it fails.
    #[track_caller]
    pub fn task_list(&self) -> Vec<serde_json::Value> {
        tasks::task_list(self.data_dir())
    }

    /// Waits until `task` has `replicas` instances running on distinct nodes;
    /// returns where each runs, by id, and the status.
    ///
    /// # Panics
    /// On timeout.
    #[track_caller]
    pub fn wait_running(&mut self, task: &str, replicas: usize) -> (BTreeMap<String, String>, Status) {
        let status = self.console.wait_for(&format!("{task}: {replicas} instance(s) running on distinct nodes"), |s| {
            s.running_on_distinct_nodes(task, replicas).is_some()
        });
        let placed = status.running_on_distinct_nodes(task, replicas).unwrap_or_default();
        (placed, status)
    }

    /// Waits for the pid file of instance `id` on node `name` to name a live
    /// process that runs in that agent's instance dir.
    ///
    /// # Panics
    /// On timeout.
    #[track_caller]
    pub fn wait_pid(&self, name: &str, id: &str) -> u32 {
        let dir = self.instance_dir(name, id);
        let pid = instances::wait_for_pid(&dir, LIVENESS);
        let under = instances::processes_under(&dir);
        assert!(under.contains(&pid), "pid {pid} of {id} does not run in {} (there: {under:?})", dir.display());
        pid
    }

    /// A host dies: SIGKILL to agent `name` and to every task process it
    /// ran (they live in process groups of their own, so they would outlive
    /// the agent; a dead host loses them). Returns the task pids killed.
    pub fn kill_host(&mut self, name: &str) -> Vec<u32> {
        self.agent(name).kill9();
        instances::kill_processes_under(&self.agent_dir(name), Duration::from_secs(5))
    }

    /// Starts agent `name` again with its stored credentials (after a kill
    /// or an exit), through its relay if it had one.
    ///
    /// # Panics
    /// When there is no such agent.
    #[track_caller]
    pub fn restart_agent(&mut self, name: &str) {
        let index = self
            .specs
            .iter()
            .position(|spec| spec.name == name)
            .unwrap_or_else(|| panic!("no agent {name} in this fleet"));
        let spec = self.specs[index].clone();
        let target = if spec.relayed { self.relay(name).addr() } else { self.console.addr() };
        self.agents[index].kill9();
        self.agents[index] = Agent::start_stored(target, name, &self.agent_dir(name), &spec.agent_args());
    }

    /// kill -9 of the console, then a new `serve` on the same data dir and
    /// port (agents reconnect to the address they know). Relays keep
    /// pointing at it.
    ///
    /// # Panics
    /// When the new console does not come up.
    #[track_caller]
    pub fn restart_console(&mut self) {
        self.restart_console_after(|| {});
    }

    /// Adds `toml` to the console's config file and restarts the console
    /// on it.
    ///
    /// # Panics
    /// When the file cannot be written or the console does not come up.
    #[track_caller]
    pub fn configure(&mut self, toml: &str) {
        self.configure_keys("", toml);
    }

    /// [`Fleet::configure`] with top-level `keys` too, which go before the
    /// file's tables (TOML puts a key after a table header in that table).
    ///
    /// # Panics
    /// As [`Fleet::configure`].
    #[track_caller]
    pub fn configure_keys(&mut self, keys: &str, tables: &str) {
        let text = std::fs::read_to_string(&self.config)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", self.config.display()));
        std::fs::write(&self.config, format!("{keys}{text}{tables}"))
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", self.config.display()));
        self.restart_console();
        self.wait_all_alive(LIVENESS * 2);
    }

    /// [`Fleet::restart_console`], running `while_down` between the kill
    /// and the new start.
    ///
    /// # Panics
    /// When the new console does not come up.
    #[track_caller]
    pub fn restart_console_after(&mut self, while_down: impl FnOnce()) {
        let addr = self.console.addr();
        let data_dir = self.data_dir().to_path_buf();
        self.console.kill();
        while_down();
        let config = self.config.to_string_lossy().into_owned();
        self.console = Console::start_listening(&data_dir, &addr.to_string(), &["--config", &config]);
        assert_eq!(self.console.addr(), addr, "the restarted console must listen where its agents look");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_allow_the_task_programs_unless_told_otherwise() {
        assert_eq!(AgentSpec::new("a").agent_args(), ["--allow-exec", "sh"]);
        let custom = AgentSpec::new("a").allow_exec(&["/opt/*", "sleep"]).args(&["--stop-grace", "1s"]);
        assert_eq!(custom.agent_args(), ["--allow-exec", "/opt/*", "--allow-exec", "sleep", "--stop-grace", "1s"]);
        assert!(AgentSpec::new("a").allow_exec(&[]).agent_args().is_empty());
    }
}
