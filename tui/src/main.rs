//! `ringwatch`: the console. With no command it runs the control plane with
//! an embedded local agent; `serve` runs it headless; the other commands
//! talk to a running console through its data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ringwatch::config::ConfigFile;
use ringwatch::control::admin::{self, AdminError, Target};
use ringwatch::control::offline;
use ringwatch::control::pki::{ImportOutcome, PkiBundle, unix_now};
use ringwatch::control::{ConsoleConfig, ControlPlane, GroupStore, StoreChoice};
use ringwatch::demo::DemoFleet;
use ringwatch::handle::ConsoleHandle;
use ringwatch::local::{self, LocalConsole};
use ringwatch::metrics::{Metrics, MetricsListener, MetricsServer};
use ringwatch::ui::UiOptions;
use ringwatch_shared::duration::{parse_duration, parse_unbounded};
use ringwatch_shared::plan::OperatorAction;
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, EventQuery, OperatorRole};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Writes to standard output. Unlike `print!`, a closed pipe
/// (`ringwatch status | head -1`) is an error the command returns rather
/// than a panic; `main` then exits quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `out!` with a newline.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod data_cli;
mod docs;
mod operate;

/// ringwatch keeps work running on a fleet of hosts when hosts fail.
///
/// Run with no command for a live one-node cluster in the terminal UI: the
/// console with an embedded local agent, certificates made on first run.
/// Join more hosts with `ringwatch join-token` and
/// `ringwatch-agent --console ADDR --token TOKEN`; `ringwatch demo` shows
/// failover with five local agents.
#[derive(Debug, Parser)]
#[command(name = "ringwatch", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Args, Clone)]
struct CommonArgs {
    /// Where the console keeps its CA, state and address file
    /// [default: the platform data dir + ringwatch].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// UDP address to listen on [default: 127.0.0.1:7443].
    #[arg(long, value_name = "ADDR", global = true)]
    listen: Option<SocketAddr>,
    /// TOML config file (detector thresholds, resource limits, grace period,
    /// what the embedded local agent may run, the data store's settings).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics (TCP), in `serve`,
    /// the terminal UI and `demo` [default: `metrics_listen` of the config
    /// file; unset, none].
    #[arg(long, value_name = "ADDR", global = true)]
    metrics_listen: Option<SocketAddr>,
    /// How long the agent certificates the console issues are valid, 30s to
    /// 365d; agents renew theirs at two thirds of it [default: 30d, or
    /// `agent_cert_ttl` in the config file].
    #[arg(long, value_name = "DUR", value_parser = parse_agent_cert_ttl, global = true)]
    agent_cert_ttl: Option<Duration>,
    #[command(flatten)]
    group: GroupArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Talk to a console elsewhere (README.md, "Operating ringwatch").
#[derive(Debug, Args, Clone)]
struct RemoteArgs {
    /// The console to ask, HOST:PORT[,HOST:PORT…] (tried in order), instead
    /// of the console of the local data dir; needs --credential [default:
    /// the addresses in the credential file].
    #[arg(long, value_name = "ADDR", value_delimiter = ',', env = "RINGWATCH_CONSOLE", global = true)]
    console: Vec<String>,
    /// An operator credential file from `ringwatch credential issue`: ask
    /// the console at --console (or the addresses in the file) as that
    /// credential's role.
    #[arg(long, value_name = "FILE", env = "RINGWATCH_CREDENTIAL", global = true)]
    credential: Option<PathBuf>,
}

/// A console of a highly available group (README.md, "Running several
/// consoles"); needs a ringwatch built with the `etcd` feature.
#[derive(Debug, Args, Clone)]
struct GroupArgs {
    /// Keep the records in etcd and join the group of consoles sharing it:
    /// etcd://HOST:PORT[,HOST:PORT…]. One console leads; the others stand
    /// by and take over when it dies [default: the embedded database].
    #[arg(long, value_name = "URL", global = true)]
    store: Option<String>,
    /// Every key of the group starts with this prefix.
    #[arg(long, value_name = "PREFIX", default_value = "/ringwatch/", global = true)]
    etcd_prefix: String,
    /// TLS to etcd: the CA of its server certificate (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    etcd_ca: Option<PathBuf>,
    /// TLS to etcd: a client certificate (PEM), when etcd checks clients.
    #[arg(long, value_name = "FILE", global = true, requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// TLS to etcd: the client certificate's key (PEM).
    #[arg(long, value_name = "FILE", global = true, requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// The leader's etcd lease: a leader that cannot renew it for half this
    /// long steps down; a standby takes over once it lapses.
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = parse_duration, global = true)]
    lease_ttl: Duration,
    /// This console's name in the group [default: the host name].
    #[arg(long, value_name = "NAME", global = true)]
    name: Option<String>,
    /// The address agents and other consoles reach this console on
    /// [default: the listen address; loopback when it is unspecified].
    #[arg(long, value_name = "ADDR", global = true)]
    advertise: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the control plane without a terminal UI; logs every event; stops
    /// cleanly on SIGINT or SIGTERM.
    Serve,
    /// The console with N local agents and keys to crash, partition, stall
    /// and heal a node: watch a node die and its work move. Uses its own
    /// data dir (the platform data dir + ringwatch-demo) and any free port
    /// unless --data-dir or --listen say otherwise.
    Demo {
        /// How many local agents.
        #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=200))]
        nodes: u16,
    },
    /// Prints one line: a new token agents use to join (it pins the cluster
    /// CA). Any number of agents may use it until it expires or is revoked.
    /// With --list or --revoke, manages the tokens issued so far. Works
    /// whether or not the console runs.
    JoinToken {
        /// How long the new token stays valid, like 1h or 7d (at most 30d).
        #[arg(long, value_name = "DUR", default_value = "24h", value_parser = parse_token_ttl)]
        ttl: Duration,
        /// Lists every token: its id, when it was issued and expires, whether
        /// it was revoked, and the nodes that joined with it.
        #[arg(long, conflicts_with_all = ["revoke", "revoke_all"])]
        list: bool,
        /// Revokes the token with this id (from --list): no agent joins with
        /// it any more; agents that joined with it keep their credentials.
        #[arg(long, value_name = "ID", conflicts_with = "revoke_all")]
        revoke: Option<String>,
        /// Revokes every token.
        #[arg(long)]
        revoke_all: bool,
        /// With --list: print JSON.
        #[arg(long, requires = "list")]
        json: bool,
    },
    /// Prints the nodes (and tasks) of the running console.
    Status {
        /// Print the JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Desired state: add, remove and list tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Restarts a task's instances (TASK) or one instance (TASK/INDEX) in place.
    Restart {
        /// `task` or `task/index`.
        target: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Moves one instance to NODE, make-before-break: the new copy starts and
    /// runs `min_healthy` before the old one stops.
    Migrate {
        /// `task/index`.
        instance: String,
        /// The target node.
        #[arg(long, value_name = "NODE")]
        to: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Cordons NODE and moves all its instances away, make-before-break.
    Drain {
        /// The node.
        node: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// NODE keeps its work but receives nothing new.
    Cordon {
        /// The node.
        node: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// NODE receives work again.
    Uncordon {
        /// The node.
        node: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Prints the plan if NODE failed now (nothing is done): the moves, and
    /// the data store's objects that would drop below quorum or become
    /// unavailable.
    WhatIf {
        /// The node.
        node: String,
        /// Print the plan as JSON (its `data` holds the data figures).
        #[arg(long)]
        json: bool,
    },
    /// Revokes every credential issued to NODE and disconnects it; its agent
    /// must join again with a token.
    Revoke {
        /// The node.
        node: String,
    },
    /// Resumes automatic failover after the console paused it (a large share
    /// of the nodes failed at once).
    Resume {
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Shares the cluster's PKI (CA and join-token key) between the consoles
    /// of one cluster: `export` on a console host, `import` on another.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Operator credentials: client certificates with a role (admin or
    /// viewer) for using a console from elsewhere.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// The terminal UI of a console elsewhere, with an operator credential:
    /// live from snapshots the console pushes; a viewer sees everything and
    /// can do nothing.
    Attach {
        /// The console, HOST:PORT[,HOST:PORT…] (tried in order) [default:
        /// --console, or the addresses in the credential file].
        #[arg(value_name = "ADDR", value_delimiter = ',')]
        addresses: Vec<String>,
    },
    /// The event log, oldest first; with --follow, then every event as it
    /// happens (until interrupted).
    Events {
        /// Keep printing new events as they happen.
        #[arg(long, short = 'f')]
        follow: bool,
        /// One JSON object per line: time, kind, node, task, from, to,
        /// message (and seq).
        #[arg(long)]
        json: bool,
        /// Only events of the last DUR, like 10m or 2h.
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        since: Option<Duration>,
        /// Only events about this node.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Only events about this task.
        #[arg(long, value_name = "TASK")]
        task: Option<String>,
    },
    /// The replicated data store: put, get, remove, list and inspect
    /// objects kept on several nodes of the ring.
    #[command(subcommand, after_help = data_cli::EXIT_CODES)]
    Data(data_cli::DataCommand),
    /// Prints the shell completion script for SHELL.
    ///
    /// For example `ringwatch completions bash >
    /// /usr/share/bash-completion/completions/ringwatch`.
    Completions {
        /// The shell.
        shell: ringwatch_net::cli_docs::Shell,
    },
    /// Writes one man page per command into DIR (for packagers).
    #[command(hide = true)]
    Man {
        /// Where to write `ringwatch.1`, `ringwatch-serve.1`, …
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Issues an operator credential and writes it to FILE (mode 0600): a
    /// client certificate with its key, the CA, and the console addresses.
    /// Give FILE to the operator; `credential revoke NAME` takes it back.
    Issue {
        /// Its name (letters, digits, `.`, `_`, `-`), unique among
        /// unrevoked credentials.
        name: String,
        /// admin: everything; viewer: read everything, change nothing.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// How long it is valid, like 12h or 30d (at most 366d).
        #[arg(long, value_name = "DUR", default_value = "30d", value_parser = parse_unbounded)]
        ttl: Duration,
        /// Where to write it.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// The console addresses the file names, HOST:PORT[,…] [default:
        /// the addresses used to reach the console, then the one it
        /// advertises].
        #[arg(long, value_name = "ADDR", value_delimiter = ',')]
        address: Vec<String>,
    },
    /// Lists every operator credential: name, role, expiry, revoked.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revokes the credential NAME: refused from now on, its open
    /// connections (attached UIs, event followers) closed at once.
    Revoke {
        /// Its name.
        name: String,
    },
}

/// A credential's role on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    /// Everything the console's own admin may do.
    Admin,
    /// Read everything, change nothing.
    Viewer,
}

impl From<RoleArg> for OperatorRole {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Self::Admin,
            RoleArg::Viewer => Self::Viewer,
        }
    }
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Writes the cluster CA certificate, the CA's private key and the
    /// join-token key to FILE (mode 0600). FILE is as secret as the CA key:
    /// delete it once imported. Works whether or not the console runs.
    Export {
        /// The bundle file to write.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Installs the PKI of FILE (from `pki export`) in the data dir; the
    /// console then makes its own server certificate, signed by that CA, on
    /// start. A data dir that already holds another CA is refused.
    Import {
        /// The bundle file (refused when group or others may read it).
        file: PathBuf,
        /// Replace another CA or join-token key in the data dir: the agents
        /// and join tokens of the old one stop working. Never while a
        /// console runs on the data dir.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Adds or replaces the tasks of a TOML task file (others are kept). A
    /// bad file is refused whole, with its line.
    Apply {
        /// The task file.
        file: PathBuf,
    },
    /// Removes a task and stops its instances.
    Rm {
        /// The task's name.
        name: String,
    },
    /// Lists the desired tasks.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args, Clone, Copy)]
struct PlanArgs {
    /// Print the plan only; change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader went away (`| head`): nothing left to say to anyone.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ringwatch: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `err` comes from writing to a pipe whose reader is gone.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let demo = matches!(cli.command, Some(Command::Demo { .. }));
    let Settings { console: config, local_agent_allow_exec, metrics_listen } = settings(&cli.common, demo)?;
    let target = &target(&cli.common, &config, &cli.command)?;
    runtime.block_on(async {
        match cli.command {
            None => run_ui(config, None, local_agent_allow_exec, metrics_listen).await,
            Some(Command::Demo { nodes }) => run_ui(config, Some(usize::from(nodes)), Vec::new(), metrics_listen).await,
            Some(Command::Serve) => {
                ringwatch_net::logging::log_to_stderr();
                run_console(config, metrics_listen).await
            }
            Some(Command::JoinToken { ttl, list, revoke, revoke_all, json }) => {
                let request = if list {
                    AdminRequest::ListTokens
                } else if let Some(id) = revoke {
                    AdminRequest::RevokeToken(id)
                } else if revoke_all {
                    AdminRequest::RevokeAllTokens
                } else {
                    AdminRequest::IssueToken { ttl_secs: ttl.as_secs() }
                };
                join_token(&config, target, request, json).await
            }
            Some(Command::Status { json }) => status(target, json).await,
            Some(Command::Task(command)) => task(target, command).await,
            Some(Command::Restart { target: restarted, plan }) => {
                act(target, OperatorAction::Restart { target: restarted }, plan.dry_run).await
            }
            Some(Command::Migrate { instance, to, plan }) => {
                act(target, OperatorAction::Migrate { instance, to }, plan.dry_run).await
            }
            Some(Command::Drain { node, plan }) => act(target, OperatorAction::Drain { node }, plan.dry_run).await,
            Some(Command::Cordon { node, plan }) => act(target, OperatorAction::Cordon { node }, plan.dry_run).await,
            Some(Command::Uncordon { node, plan }) => {
                act(target, OperatorAction::Uncordon { node }, plan.dry_run).await
            }
            Some(Command::WhatIf { node, json: false }) => act(target, OperatorAction::WhatIf { node }, true).await,
            Some(Command::WhatIf { node, json: true }) => what_if_json(target, node).await,
            Some(Command::Revoke { node }) => done(target, &AdminRequest::Revoke(node)).await,
            Some(Command::Resume { plan }) => act(target, OperatorAction::Resume, plan.dry_run).await,
            Some(Command::Pki(command)) => pki(&config.data_dir, command),
            Some(Command::Credential(command)) => operate::credential(target, command).await,
            Some(Command::Attach { .. }) if cli.common.metrics_listen.is_some() => anyhow::bail!(
                "--metrics-listen serves the metrics of a console this process runs; attach runs none: scrape the console's own --metrics-listen"
            ),
            Some(Command::Attach { .. }) => operate::attach(target.clone()).await,
            Some(Command::Events { follow, json, since, node, task }) => {
                let since_unix_ms = since.map(|since| unix_now().saturating_sub(since.as_secs()).saturating_mul(1000));
                operate::events(target, EventQuery { since_unix_ms, follow, node, task }, json).await
            }
            Some(Command::Data(command)) => data_cli::data(target, command).await,
            Some(Command::Completions { shell }) => docs::completions(shell),
            Some(Command::Man { dir }) => docs::man_pages(&dir),
        }
    })
}

/// What the config file and flags set: the console's settings and the
/// embedded local agent's allowlist (which is no business of the control
/// plane).
struct Settings {
    /// The control plane's settings.
    console: ConsoleConfig,
    /// `local_agent_allow_exec`, or [`local::default_allow_exec`].
    local_agent_allow_exec: Vec<String>,
    /// `--metrics-listen`, or `metrics_listen` of the file.
    metrics_listen: Option<SocketAddr>,
}

/// The settings: defaults, then the config file, then flags. The demo
/// defaults to a data dir of its own and any free port, so it never
/// disturbs a real console.
fn settings(common: &CommonArgs, demo: bool) -> Result<Settings> {
    let mut file = common.config.as_deref().map(ConfigFile::load).transpose()?;
    let local_agent_allow_exec =
        file.as_mut().and_then(|file| file.local_agent_allow_exec.take()).unwrap_or_else(local::default_allow_exec);
    let metrics_listen = common.metrics_listen.or_else(|| file.as_ref().and_then(|file| file.metrics_listen));
    let data_dir = match common.data_dir.clone().or_else(|| file.as_ref().and_then(|file| file.data_dir.clone())) {
        Some(dir) => dir,
        None => dirs::data_dir()
            .map(|dir| dir.join(if demo { "ringwatch-demo" } else { "ringwatch" }))
            .context("no platform data dir (is $HOME set?): pass --data-dir")?,
    };
    let mut config = ConsoleConfig::new(data_dir);
    if demo {
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    }
    if let Some(file) = file {
        file.apply(&mut config);
    }
    if let Some(listen) = common.listen {
        config.listen = listen;
    }
    if let Some(ttl) = common.agent_cert_ttl {
        config.agent_cert_ttl = ttl;
    }
    let group = &common.group;
    if let Some(url) = &group.store {
        if group.etcd_ca.is_none() && (group.etcd_cert.is_some() || group.etcd_key.is_some()) {
            anyhow::bail!("--etcd-cert and --etcd-key need --etcd-ca (the CA of etcd's server certificate)");
        }
        config.store = StoreChoice::Group(GroupStore {
            url: url.clone(),
            prefix: group.etcd_prefix.clone(),
            ca: group.etcd_ca.clone(),
            cert: group.etcd_cert.clone(),
            key: group.etcd_key.clone(),
            lease_ttl: group.lease_ttl,
        });
    }
    if let Some(name) = &group.name {
        config.name.clone_from(name);
    }
    config.advertise = group.advertise;
    Ok(Settings { console: config, local_agent_allow_exec, metrics_listen })
}

/// Logs to `console.log` in the data dir: the terminal belongs to the UI.
fn init_file_logging(data_dir: &std::path::Path) -> Result<PathBuf> {
    ringwatch_net::logging::log_to_file(data_dir, "console.log").map_err(|err| anyhow::anyhow!(err))
}

/// The terminal UI over a control plane of this process, with the embedded
/// local agent (`demo_nodes = None`, running what `local_allow_exec`
/// allows) or the demo's agents.
async fn run_ui(
    config: ConsoleConfig,
    demo_nodes: Option<usize>,
    local_allow_exec: Vec<String>,
    metrics_listen: Option<SocketAddr>,
) -> Result<ExitCode> {
    let log = init_file_logging(&config.data_dir)?;
    let shutdown = CancellationToken::new();
    let metrics = bind_metrics(metrics_listen).await?;
    let control = ControlPlane::start(config.clone(), shutdown.clone()).await.context("failed to start the console")?;
    let metrics = serve_metrics(metrics, &control, shutdown.clone())?;
    // Agents stop first (saying goodbye) while the console still listens.
    let agents_stop = CancellationToken::new();
    let (demo, local_agent, title) = match demo_nodes {
        Some(count) => {
            let fleet = DemoFleet::start(&control, count, config.data_dir.join("demo-agents"), agents_stop.clone())
                .await
                .context("failed to start the demo's agents")?;
            (Some(Arc::new(fleet)), None, format!("ringwatch demo · {count} nodes"))
        }
        None => {
            let agent = local::spawn_local_agent(
                &control,
                &local::local_node_name(),
                &config.data_dir.join("local-agent"),
                local_allow_exec,
                agents_stop.clone(),
            )
            .await
            .map_err(|err| anyhow::anyhow!("failed to start the local agent: {err}"))?;
            (None, Some(agent), "ringwatch".to_string())
        }
    };
    info!(log = %log.display(), listen = %control.local_addr(), "console with terminal UI");
    let handle: Arc<dyn ConsoleHandle> = Arc::new(LocalConsole::new(control.view(), demo.clone()));
    tokio::spawn(ringwatch_net::stop_on_signal(shutdown.clone()));
    let options = UiOptions { title, ..UiOptions::default() };
    let outcome = tokio::select! {
        outcome = ringwatch::ui::run(handle, options) => outcome,
        () = shutdown.cancelled() => Ok(()),
    };
    agents_stop.cancel();
    let agents = async {
        if let Some(demo) = &demo {
            demo.stop().await;
        }
        if let Some(agent) = local_agent {
            let _ = agent.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), agents).await.is_err() {
        tracing::warn!("local agents did not stop within 5s");
    }
    shutdown.cancel();
    control.run_until_stopped().await;
    if let Some(metrics) = metrics {
        metrics.stopped().await;
    }
    outcome.context("the terminal UI failed")?;
    Ok(ExitCode::SUCCESS)
}

async fn run_console(config: ConsoleConfig, metrics_listen: Option<SocketAddr>) -> Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let metrics = bind_metrics(metrics_listen).await?;
    let control = ControlPlane::start(config.clone(), shutdown.clone()).await.context("failed to start the console")?;
    let metrics = serve_metrics(metrics, &control, shutdown.clone())?;
    tokio::spawn(ringwatch_net::stop_on_signal(shutdown.clone()));
    control.run_until_stopped().await;
    if let Some(metrics) = metrics {
        metrics.stopped().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Binds `--metrics-listen` before the console starts, so that a taken
/// address stops it with a clear error.
async fn bind_metrics(listen: Option<SocketAddr>) -> Result<Option<MetricsListener>> {
    match listen {
        Some(addr) => Ok(Some(MetricsListener::bind(addr).await?)),
        None => Ok(None),
    }
}

/// Serves the control plane's metrics on the bound address, if any.
fn serve_metrics(
    listener: Option<MetricsListener>,
    control: &ControlPlane,
    shutdown: CancellationToken,
) -> Result<Option<MetricsServer>> {
    let Some(listener) = listener else { return Ok(None) };
    let metrics = Metrics::new(&control.view());
    Ok(Some(listener.serve(metrics, control.data_dir(), shutdown)?))
}

/// Exit code when no console runs on the data dir, or none answers.
const NOT_RUNNING: u8 = 3;

/// Which console the admin commands ask: the one of the data dir, or with
/// --credential the one at --console (or the credential's addresses).
fn target(common: &CommonArgs, config: &ConsoleConfig, command: &Option<Command>) -> Result<Target> {
    let remote = &common.remote;
    // These run a console or work on files: they ask none.
    if matches!(
        command,
        None | Some(
            Command::Serve | Command::Demo { .. } | Command::Pki(_) | Command::Completions { .. } | Command::Man { .. }
        )
    ) {
        return Ok(Target::Local(config.data_dir.clone()));
    }
    let mut consoles = remote.console.clone();
    if let Some(Command::Attach { addresses }) = command
        && !addresses.is_empty()
    {
        consoles.clone_from(addresses);
    }
    let Some(path) = &remote.credential else {
        if matches!(command, Some(Command::Attach { .. })) {
            anyhow::bail!(
                "attach needs an operator credential: --credential FILE (or RINGWATCH_CREDENTIAL), made with `ringwatch credential issue NAME --role viewer -o FILE` on the console's host"
            );
        }
        // An address alone cannot be used: the console knows no one by it.
        if !consoles.is_empty() {
            anyhow::bail!(
                "--console (or RINGWATCH_CONSOLE) needs --credential FILE (or RINGWATCH_CREDENTIAL): an operator credential from `ringwatch credential issue`"
            );
        }
        return Ok(Target::Local(config.data_dir.clone()));
    };
    let credential = ringwatch::remote::bundle::CredentialBundle::read(path)?;
    if consoles.is_empty() {
        consoles.clone_from(&credential.consoles);
    }
    if consoles.is_empty() {
        anyhow::bail!("the credential \"{}\" names no console: pass --console HOST:PORT", path.display());
    }
    Ok(Target::Remote { consoles, credential: Box::new(credential), path: path.clone() })
}

/// What a standby's refusal tells the operator.
fn standby_refusal(target: &Target, leader: Option<String>) -> anyhow::Error {
    let (console, hint) = match target {
        Target::Local(_) => ("the console of this data dir", "run the command on its host"),
        Target::Remote { .. } => ("the console asked", "pass --console with its address"),
    };
    anyhow::anyhow!(
        "{console} is a standby of its group and changes nothing; {}",
        match leader {
            Some(leader) => format!("the leader is {leader}: {hint}"),
            None => "no console leads the group now (is etcd reachable?)".to_string(),
        }
    )
}

/// Sends `request`; `Err(code)` when no console runs or answers (the
/// message is printed). A remote standby's answer is followed once to the
/// leader it names.
async fn ask(target: &Target, request: &AdminRequest) -> Result<Result<AdminResponse, ExitCode>> {
    let mut answer = admin::request(target, request).await;
    if let Ok(AdminResponse::NotLeader { leader: Some(leader) }) = &answer
        && let Some(at_leader) = target.at_leader(leader)
    {
        answer = admin::request(&at_leader, request).await;
    }
    match answer {
        Ok(AdminResponse::NotLeader { leader }) => Err(standby_refusal(target, leader)),
        Ok(response) => Ok(Ok(response)),
        Err(err @ (AdminError::NotRunning(_) | AdminError::Unreachable { .. })) => {
            eprintln!("ringwatch: {err}");
            Ok(Err(ExitCode::from(NOT_RUNNING)))
        }
        Err(AdminError::Refused(reason)) => anyhow::bail!("{reason}"),
        Err(err) => Err(err.into()),
    }
}

async fn task(target: &Target, command: TaskCommand) -> Result<ExitCode> {
    let request = match command {
        TaskCommand::Apply { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("failed to read the task file \"{}\"", file.display()))?;
            let specs = ringwatch_shared::task::parse_task_file(&text)
                .map_err(|err| anyhow::anyhow!("\"{}\" {err}; nothing was changed", file.display()))?;
            AdminRequest::ApplyTasks(specs)
        }
        TaskCommand::Rm { name } => AdminRequest::RemoveTask(name),
        TaskCommand::List { json } => {
            let response = match ask(target, &AdminRequest::ListTasks).await? {
                Ok(response) => response,
                Err(code) => return Ok(code),
            };
            let AdminResponse::Tasks(tasks) = response else { anyhow::bail!("the console sent an unexpected answer") };
            if json {
                outln!("{}", serde_json::to_string_pretty(&tasks).context("failed to encode the tasks")?);
            } else {
                out!("{}", ringwatch::report::task_table(&tasks));
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    done(target, &request).await
}

/// A join token's lifetime: a duration of at most 30 days. Read without
/// the general ten-year bound first, so that any longer value is refused
/// with the 30-day limit, not with "use at most 9years 11months…".
fn parse_agent_cert_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_unbounded(text)?;
    ringwatch_shared::lifetime::check_agent_cert_ttl(ttl)?;
    Ok(ttl)
}

fn parse_token_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_unbounded(text)?;
    ringwatch::control::registry::check_ttl(ttl)?;
    Ok(ttl)
}

/// Issues, lists or revokes join tokens: through the running console, or
/// straight in the data dir when none runs.
async fn join_token(config: &ConsoleConfig, target: &Target, request: AdminRequest, json: bool) -> Result<ExitCode> {
    if let Target::Remote { .. } = target {
        let response = match ask(target, &request).await? {
            Ok(response) => response,
            Err(code) => return Ok(code),
        };
        return print_token_answer(target, response, json);
    }
    let response = match admin::request(target, &request).await {
        Ok(response) => response,
        Err(AdminError::NotRunning(_)) if matches!(config.store, StoreChoice::Group(_)) => anyhow::bail!(
            "no console runs on the data dir \"{}\": the tokens of a group live in its store, so ask a \
             running console of the group (`ringwatch join-token --data-dir DIR` on its host)",
            config.data_dir.display()
        ),
        Err(AdminError::NotRunning(_)) => offline_tokens(config, request)?,
        Err(AdminError::Refused(reason)) => anyhow::bail!("{reason}"),
        Err(err) => return Err(err.into()),
    };
    print_token_answer(target, response, json)
}

/// Prints what `join-token` got back.
fn print_token_answer(target: &Target, response: AdminResponse, json: bool) -> Result<ExitCode> {
    match response {
        AdminResponse::Token(token) => outln!("{token}"),
        AdminResponse::Done(text) => outln!("{text}"),
        AdminResponse::Tokens(tokens) if json => {
            outln!("{}", serde_json::to_string_pretty(&tokens).context("failed to encode the tokens")?);
        }
        AdminResponse::Tokens(tokens) => out!("{}", ringwatch::report::token_table(&tokens, unix_now())),
        AdminResponse::NotLeader { leader } => return Err(standby_refusal(target, leader)),
        AdminResponse::Error(err) => anyhow::bail!("{err}"),
        _ => anyhow::bail!("the console sent an unexpected answer"),
    }
    Ok(ExitCode::SUCCESS)
}

/// [`join_token`] on a data dir no console holds.
fn offline_tokens(config: &ConsoleConfig, request: AdminRequest) -> Result<AdminResponse> {
    let dir = &config.data_dir;
    let response = offline::with_registry(
        dir,
        |registry, pki| match request {
            AdminRequest::IssueToken { ttl_secs } => {
                match registry.issue_token(pki, Duration::from_secs(ttl_secs), unix_now()) {
                    Ok(token) => AdminResponse::Token(token.text),
                    Err(err) => AdminResponse::Error(err),
                }
            }
            AdminRequest::ListTokens => AdminResponse::Tokens(registry.list_tokens()),
            AdminRequest::RevokeToken(id) => match registry.revoke_token(&id) {
                Ok(true) => AdminResponse::Done(format!("revoked join token {id}")),
                Ok(false) => AdminResponse::Done(format!("join token {id} was already revoked")),
                Err(err) => AdminResponse::Error(err),
            },
            AdminRequest::RevokeAllTokens => {
                AdminResponse::Done(format!("revoked {} join token(s)", registry.revoke_all_tokens()))
            }
            _ => AdminResponse::Error("not a token request".into()),
        },
        |response| match response {
            AdminResponse::Token(_) => Some("a join token was issued while no console ran".into()),
            AdminResponse::Done(text) => Some(text.clone()),
            _ => None,
        },
    )
    .with_context(|| format!("failed to use the data dir \"{}\"", dir.display()))?;
    Ok(response)
}

/// `ringwatch pki export|import`: straight on the data dir's files.
fn pki(data_dir: &Path, command: PkiCommand) -> Result<ExitCode> {
    match command {
        PkiCommand::Export { file, force } => {
            let bundle = PkiBundle::from_data_dir(data_dir).context("failed to export the PKI")?;
            bundle.write(&file, force).context("failed to export the PKI")?;
            outln!(
                "wrote the PKI of the cluster with CA SHA-256 {} to \"{}\"; it is as secret as the CA key: delete it once imported with `ringwatch pki import`",
                bundle.ca_fingerprint(),
                file.display()
            );
        }
        PkiCommand::Import { file, force } => {
            let outcome = offline::import_pki(data_dir, &file, force).context("failed to import the PKI")?;
            let dir = data_dir.display();
            match outcome {
                ImportOutcome::AlreadyPresent => {
                    outln!("the data dir \"{dir}\" already holds this PKI; nothing changed")
                }
                ImportOutcome::Imported => outln!(
                    "imported the cluster's PKI into \"{dir}\": the console there makes its own certificate on start"
                ),
                ImportOutcome::ReplacedCa(previous) => outln!(
                    "replaced the CA (SHA-256 {previous}) of \"{dir}\": agents that joined with it must join again with a new token"
                ),
                ImportOutcome::ReplacedTokenKey => {
                    outln!("replaced the join-token key of \"{dir}\": the join tokens issued there no longer work")
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends a request answered by a sentence, and prints it.
async fn done(target: &Target, request: &AdminRequest) -> Result<ExitCode> {
    match ask(target, request).await? {
        Ok(AdminResponse::Done(text)) => {
            outln!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => anyhow::bail!("the console sent an unexpected answer"),
        Err(code) => Ok(code),
    }
}

async fn act(target: &Target, action: OperatorAction, dry_run: bool) -> Result<ExitCode> {
    match ask(target, &AdminRequest::Act { action, dry_run, confirmed: None }).await? {
        Ok(AdminResponse::Plan { plan, executed }) => {
            outln!("{plan}");
            outln!("{}", if executed { "done: the plan is under way" } else { "dry run: nothing was changed" });
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => anyhow::bail!("the console sent an unexpected answer"),
        Err(code) => Ok(code),
    }
}

/// `what-if NODE --json`: the plan as one JSON object.
async fn what_if_json(target: &Target, node: String) -> Result<ExitCode> {
    let request = AdminRequest::Act { action: OperatorAction::WhatIf { node }, dry_run: true, confirmed: None };
    match ask(target, &request).await? {
        Ok(AdminResponse::Plan { plan, .. }) => {
            outln!("{}", serde_json::to_string_pretty(&plan).context("failed to encode the plan")?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => anyhow::bail!("the console sent an unexpected answer"),
        Err(code) => Ok(code),
    }
}

async fn status(target: &Target, json: bool) -> Result<ExitCode> {
    let response = match ask(target, &AdminRequest::Status).await? {
        Ok(response) => response,
        Err(code) => return Ok(code),
    };
    let AdminResponse::Status(status) = response else {
        anyhow::bail!("the console sent an unexpected answer");
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&status).context("failed to encode the status")?);
    } else {
        out!("{}", ringwatch::report::console_line(&status.console));
        out!("{}", ringwatch::report::status_table(&status));
        if !status.tasks.is_empty() {
            outln!();
            out!("{}", ringwatch::report::instance_table(&status));
        }
        out!("{}", ringwatch::report::ca_line(&status.console, ringwatch::control::pki::unix_now()));
    }
    Ok(ExitCode::SUCCESS)
}
