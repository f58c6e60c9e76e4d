//! A highly available group for end-to-end tests (README.md, "Running
//! several consoles"): a real etcd, consoles `ringwatch serve --store
//! etcd://…` sharing one PKI (`pki export` on the first, `pki import` on the
//! others), and agents given every console (`--console A,B,C`).
//!
//! Each console keeps its data dir and its port across restarts, as an
//! operator's would, so the agents' list stays true. Everything is killed
//! on drop: the agents first, then every task process left in the sandbox
//! (a [`Reaper`]), then the consoles and etcd.
//!
//! Layout inside the sandbox: `etcd/`, `console-NAME/` (data dirs),
//! `agent-NAME/` (agent data dirs, instances under `instances/`), the
//! console config and whatever the test writes (task files, a life log).

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fleet::{AGENT_DIR_PREFIX, AgentSpec};
use crate::instances::{self, Life, Reaper};
use crate::poll::{self, Step};
use crate::process::{Output, Signal};
use crate::status::{NodeState, Status};
use crate::tasks::{self, TaskDef};
use crate::{Agent, Console, EtcdData, EtcdServer, LIVENESS, Sandbox, console, prometheus};

/// How often the consoles are asked who leads.
const LEADER_POLL: Duration = Duration::from_millis(100);

/// One console of the group: its name, dir and port outlive its process.
#[derive(Debug)]
struct Member {
    name: String,
    dir: PathBuf,
    listen: SocketAddr,
    console: Option<Console>,
    /// SIGSTOPped: it answers nothing, so nobody asks it.
    paused: bool,
}

/// Etcd, consoles and agents; all killed on drop.
#[derive(Debug)]
pub struct ConsoleGroup {
    /// The agents, in the order given (declared first: dropped first, so
    /// none restarts anything while the rest goes down).
    agents: Vec<Agent>,
    /// How each agent was started.
    specs: Vec<AgentSpec>,
    /// Kills the task processes left in the sandbox.
    _reaper: Reaper,
    /// The consoles.
    members: Vec<Member>,
    /// The group's store.
    pub etcd: EtcdServer,
    /// The join token every agent joined with.
    pub token: String,
    /// The sandbox root.
    root: PathBuf,
    /// Arguments every console gets.
    console_args: Vec<String>,
}

/// A UDP port nothing listens on right now (QUIC listens on UDP): bound
/// on 127.0.0.1:0, read, and released, so a console can keep it across
/// restarts.
///
/// # Panics
/// When no port can be bound.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot bind 127.0.0.1:0 to find a free port: {err}"))
}

impl ConsoleGroup {
    /// Starts etcd, the consoles named `consoles` (the first leads: it
    /// starts alone, and its PKI goes to the others) and one agent per
    /// spec, given every console; waits until every console agrees on the
    /// leader and every agent is alive there.
    ///
    /// # Panics
    /// When something does not come up, with its log.
    #[track_caller]
    pub fn start(sandbox: &Sandbox, consoles: &[&str], agents: &[AgentSpec]) -> Self {
        Self::start_with(sandbox, EtcdData::Memory, consoles, agents)
    }

    /// [`ConsoleGroup::start`] with etcd's data where `data` says.
    ///
    /// # Panics
    /// As [`ConsoleGroup::start`].
    #[track_caller]
    pub fn start_with(sandbox: &Sandbox, data: EtcdData, consoles: &[&str], agents: &[AgentSpec]) -> Self {
        assert!(!consoles.is_empty(), "a group needs a console");
        let reaper = Reaper::new(sandbox.path());
        let etcd = EtcdServer::start_in(&sandbox.dir("etcd"), data);
        sandbox.step(format!("etcd up on {}", etcd.endpoint()));
        let config = tasks::write_no_limits_config(sandbox.path());
        let console_args =
            ["--config", &config.to_string_lossy(), "--store", &etcd.url(), "--metrics-listen", "127.0.0.1:0"]
                .map(str::to_owned)
                .to_vec();
        let members = consoles
            .iter()
            .map(|name| Member {
                name: (*name).to_owned(),
                dir: sandbox.dir(&format!("console-{name}")),
                listen: SocketAddr::from(([127, 0, 0, 1], free_udp_port())),
                console: None,
                paused: false,
            })
            .collect();
        let mut group = Self {
            agents: Vec::new(),
            specs: Vec::new(),
            _reaper: reaper,
            members,
            etcd,
            token: String::new(),
            root: sandbox.path().to_path_buf(),
            console_args,
        };
        group.start_console(0);
        group.wait_leader(LIVENESS);
        let bundle = sandbox.path().join("cluster.pki");
        console::pki("export", &bundle, &group.members[0].dir);
        for index in 1..group.members.len() {
            console::pki("import", &bundle, &group.members[index].dir);
            group.start_console(index);
        }
        let leader = group.wait_leader(LIVENESS);
        sandbox.step(format!("consoles up: {}; {} leads", group.console_list(), group.members[leader].name));
        group.token = group.console(leader).join_token();
        for spec in agents {
            let agent = Agent::start(
                group.console_list(),
                &group.token,
                &spec.name,
                &group.agent_dir(&spec.name),
                &spec.agent_args(),
            );
            group.agents.push(agent);
            group.specs.push(spec.clone());
        }
        if !agents.is_empty() {
            let status = group.wait_all_alive(LIVENESS);
            sandbox.step(format!("all agents alive: {status}"));
        }
        group
    }

    /// Every console's address, as agents get them: `A,B,C`.
    pub fn console_list(&self) -> String {
        self.members.iter().map(|member| member.listen.to_string()).collect::<Vec<_>>().join(",")
    }

    /// How many consoles the group has (running or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has none (never: [`ConsoleGroup::start`] needs one).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The name of console `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.members[index].name
    }

    /// The address of console `index`.
    pub fn address(&self, index: usize) -> SocketAddr {
        self.members[index].listen
    }

    /// Console `index`, which must be running.
    ///
    /// # Panics
    /// When it is not.
    #[track_caller]
    pub fn console(&mut self, index: usize) -> &mut Console {
        let member = &mut self.members[index];
        member.console.as_mut().unwrap_or_else(|| panic!("console {} is not running", member.name))
    }

    /// Starts console `index` on its data dir and port.
    ///
    /// # Panics
    /// When it is running already or does not come up.
    #[track_caller]
    pub fn start_console(&mut self, index: usize) {
        let args: Vec<&str> = self.console_args.iter().map(String::as_str).collect();
        let member = &mut self.members[index];
        assert!(member.console.is_none(), "console {} is running already", member.name);
        let mut args = args;
        args.extend(["--name", member.name.as_str()]);
        member.console = Some(Console::start_listening(&member.dir, &member.listen.to_string(), &args));
    }

    /// `GET /metrics` of console `index` (every console of a group serves
    /// them, on a port of its own).
    ///
    /// # Panics
    /// When the console has not said where, or the scrape fails.
    #[track_caller]
    pub fn scrape(&self, index: usize) -> String {
        prometheus::scrape(prometheus::metrics_addr(&self.members[index].dir))
    }

    /// SIGKILL of console `index`: it vanishes without resigning.
    ///
    /// # Panics
    /// When it is not running.
    #[track_caller]
    pub fn kill(&mut self, index: usize) {
        let mut console = self.take(index);
        console.kill();
    }

    /// SIGTERM of console `index`, waiting for its exit: a leader resigns.
    ///
    /// # Panics
    /// When it is not running, or does not exit cleanly.
    #[track_caller]
    pub fn terminate(&mut self, index: usize) {
        let mut console = self.take(index);
        let exit = console.terminate();
        assert!(
            exit.success(),
            "console {} exits 0 on SIGTERM: {exit}\n{}",
            self.members[index].name,
            console.log_tail()
        );
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) of console `index`. A paused
    /// console is left out of [`ConsoleGroup::statuses`] (and so of the
    /// leader's election as the tests see it): it would answer nothing.
    ///
    /// # Panics
    /// When it is not running.
    #[track_caller]
    pub fn pause(&mut self, index: usize, paused: bool) {
        let signal = if paused { Signal::Stop } else { Signal::Cont };
        self.console(index).proc().signal(signal);
        self.members[index].paused = paused;
    }

    #[track_caller]
    fn take(&mut self, index: usize) -> Console {
        let member = &mut self.members[index];
        member.paused = false;
        member.console.take().unwrap_or_else(|| panic!("console {} is not running", member.name))
    }

    /// The indices of the running consoles that are not paused.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|index| self.members[*index].console.is_some() && !self.members[*index].paused)
            .collect()
    }

    /// `status --json` of every running console that is not paused: `(index, status)`, or
    /// why it failed.
    pub fn statuses(&self) -> Vec<(usize, Result<Status, String>)> {
        self.running()
            .into_iter()
            .map(|index| (index, console::status_json(&self.members[index].dir).map_err(|err| format!("{err:#}"))))
            .collect()
    }

    /// Waits until exactly one running console leads and every other
    /// running console names it as the leader, within `timeout`; returns
    /// the leader's index.
    ///
    /// # Panics
    /// On timeout, with what each console said.
    #[track_caller]
    pub fn wait_leader(&mut self, timeout: Duration) -> usize {
        self.wait_leader_where(timeout, "one leader all consoles agree on", |_| true)
    }

    /// As [`ConsoleGroup::wait_leader`], for a leader that `accept`s (by
    /// index): another console than the one that led, say.
    ///
    /// # Panics
    /// On timeout, with what each console said.
    #[track_caller]
    pub fn wait_leader_where(&mut self, timeout: Duration, what: &str, accept: impl Fn(usize) -> bool) -> usize {
        let found = poll::until(timeout, LEADER_POLL, || {
            let statuses = self.statuses();
            match agreed_leader(&statuses, |index| self.members[index].listen) {
                Some(leader) if accept(leader) => Step::Done(leader),
                _ => Step::Pending(describe_roles(&statuses, &self.members)),
            }
        });
        found.unwrap_or_else(|failure| panic!("waiting for {what}: {failure}\n{}", self.logs()))
    }

    /// Waits until the agreed leader sees every agent alive; returns its
    /// status.
    ///
    /// # Panics
    /// On timeout.
    #[track_caller]
    pub fn wait_all_alive(&mut self, timeout: Duration) -> Status {
        let names = self.agent_names();
        self.wait_on_leader(timeout, &format!("{} alive", names.join(", ")), |status| {
            names.iter().all(|name| status.is(name, &NodeState::Alive))
        })
    }

    /// Waits until the agreed leader's status satisfies `pred`; returns it.
    ///
    /// # Panics
    /// On timeout, with every console's log tail.
    #[track_caller]
    pub fn wait_on_leader(&mut self, timeout: Duration, what: &str, mut pred: impl FnMut(&Status) -> bool) -> Status {
        let found = poll::until(timeout, LEADER_POLL, || {
            let statuses = self.statuses();
            let Some(leader) = agreed_leader(&statuses, |index| self.members[index].listen) else {
                return Step::Pending(describe_roles(&statuses, &self.members));
            };
            match statuses.into_iter().find(|(index, _)| *index == leader) {
                Some((_, Ok(status))) if pred(&status) => Step::Done(status),
                Some((_, Ok(status))) => Step::Pending(format!("{status}")),
                _ => Step::Pending("the leader did not answer".into()),
            }
        });
        found.unwrap_or_else(|failure| panic!("waiting for {what}: {failure}\n{}", self.logs()))
    }

    /// Applies `tasks` through the console at `index` (the leader).
    ///
    /// # Panics
    /// When the apply fails.
    #[track_caller]
    pub fn apply(&self, index: usize, tasks: &[TaskDef]) -> Output {
        let file = self.new_file("tasks", "toml");
        tasks::write_task_file(&file, tasks);
        tasks::apply_file(&self.members[index].dir, &file, tasks.len())
    }

    /// `ringwatch ARGS… --data-dir <console index's dir>`, not checked.
    ///
    /// # Panics
    /// When the command cannot be run.
    #[track_caller]
    pub fn admin(&self, index: usize, args: &[&str]) -> Output {
        tasks::admin(&self.members[index].dir, args.iter().copied()).unwrap_or_else(|err| panic!("{err:#}"))
    }

    /// A file name in the sandbox that does not exist yet.
    pub fn new_file(&self, stem: &str, ext: &str) -> PathBuf {
        (1..)
            .map(|n| self.root.join(format!("{stem}-{n}.{ext}")))
            .find(|path| !path.exists())
            .unwrap_or_else(|| self.root.join(format!("{stem}.{ext}")))
    }

    /// The sandbox root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The agents' names.
    pub fn agent_names(&self) -> Vec<String> {
        self.specs.iter().map(|spec| spec.name.clone()).collect()
    }

    /// An agent's data dir.
    pub fn agent_dir(&self, name: &str) -> PathBuf {
        self.root.join(format!("{AGENT_DIR_PREFIX}{name}"))
    }

    /// The agent called `name`.
    ///
    /// # Panics
    /// When there is none.
    #[track_caller]
    pub fn agent(&mut self, name: &str) -> &mut Agent {
        self.agents.iter_mut().find(|a| a.name() == name).unwrap_or_else(|| panic!("no agent {name} in this group"))
    }

    /// Starts the agent called `name` again on its data dir, with its
    /// stored credentials, after [`ConsoleGroup::kill_host`].
    ///
    /// # Panics
    /// When there is no such agent.
    #[track_caller]
    pub fn restart_agent(&mut self, name: &str) {
        let index = self.agents.iter().position(|a| a.name() == name).unwrap_or_else(|| panic!("no agent {name}"));
        let args = self.specs[index].agent_args().into_iter().map(str::to_owned).collect::<Vec<_>>();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.agents[index] = Agent::start_stored(self.console_list(), name, &self.agent_dir(name), &args);
    }

    /// What a dead host does: SIGKILL of the agent and of every process of
    /// its instances. Returns the instances' pids.
    pub fn kill_host(&mut self, name: &str) -> Vec<u32> {
        self.agent(name).kill9();
        instances::kill_processes_under(&self.agent_dir(name), Duration::from_secs(5))
    }

    /// The node (agent name) a copy ran on.
    pub fn node_of(&self, copy: &Life) -> Option<String> {
        let dir = copy.agent_dir()?;
        let name = dir.file_name()?.to_str()?.strip_prefix(AGENT_DIR_PREFIX)?;
        self.specs.iter().any(|spec| spec.name == name).then(|| name.to_owned())
    }

    /// Every console's and agent's log tail, for failure messages.
    pub fn logs(&self) -> String {
        let consoles = self.members.iter().filter_map(|member| {
            member.console.as_ref().map(|console| format!("---- console {} ----\n{}", member.name, console.log_tail()))
        });
        let agents = self.agents.iter().map(|agent| format!("---- agent {} ----\n{}", agent.name(), agent.log_tail()));
        consoles
            .chain(agents)
            .chain([format!("---- etcd ----\n{}", self.etcd.log_tail())])
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything console `index` logged (it must be running).
    ///
    /// # Panics
    /// When it is not running.
    #[track_caller]
    pub fn console_log(&mut self, index: usize) -> String {
        self.console(index).log()
    }
}

/// The leader every answering console agrees on: exactly one says it leads,
/// and each other names its address as the leader.
fn agreed_leader(statuses: &[(usize, Result<Status, String>)], address: impl Fn(usize) -> SocketAddr) -> Option<usize> {
    let mut leaders = statuses.iter().filter_map(|(index, status)| {
        let console = status.as_ref().ok()?.console.as_ref()?;
        console.leads().then_some(*index)
    });
    let leader = leaders.next()?;
    if leaders.next().is_some() {
        return None;
    }
    let leader_address = address(leader).to_string();
    statuses
        .iter()
        .all(|(index, status)| {
            *index == leader
                || status
                    .as_ref()
                    .ok()
                    .and_then(|s| s.console.as_ref())
                    .is_some_and(|c| !c.leads() && c.leader.as_deref() == Some(leader_address.as_str()))
        })
        .then_some(leader)
}

fn describe_roles(statuses: &[(usize, Result<Status, String>)], members: &[Member]) -> String {
    statuses
        .iter()
        .map(|(index, status)| {
            let name = &members[*index].name;
            match status.as_ref().map(|s| s.console.clone()) {
                Ok(Some(c)) => format!(
                    "{name}: {} term {} leader {:?}{}",
                    c.role,
                    c.term,
                    c.leader,
                    c.store_problem.map(|p| format!(" (store: {p})")).unwrap_or_default()
                ),
                Ok(None) => format!("{name}: no console section"),
                Err(err) => format!("{name}: status failed: {err}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The copies of each instance, by instance id.
pub fn copies_by_instance(copies: &[Life]) -> BTreeMap<String, Vec<Life>> {
    let mut by_instance: BTreeMap<String, Vec<Life>> = BTreeMap::new();
    for copy in copies {
        by_instance.entry(copy.instance.clone()).or_default().push(copy.clone());
    }
    by_instance
}

/// The first instance of which two copies ran at once, leaving out the
/// copies whose pids are in `killed` (SIGKILLed with their host: they
/// leave no stop line, and their replacement rightly overlaps nothing
/// alive).
pub fn first_duplicate(copies: &[Life], killed: &[u32]) -> Option<String> {
    let counted: Vec<Life> = copies.iter().filter(|copy| !killed.contains(&copy.pid)).cloned().collect();
    copies_by_instance(&counted).into_iter().find_map(|(instance, copies)| {
        instances::first_overlap(&copies).map(|(a, b)| format!("{instance}: {a} and {b} ran at once"))
    })
}
