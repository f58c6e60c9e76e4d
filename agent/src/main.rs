//! `ringwatch-agent`: the command line over the agent library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use ringwatch_agent::status::{self, StatusError};
use ringwatch_agent::swarm::SwarmConfig;
use ringwatch_agent::{Consoles, LinkConfig, SupervisorConfig};
use ringwatch_net::cli_docs::{self, Shell};
use ringwatch_shared::duration::parse_duration;
use ringwatch_shared::protocol::PROTOCOL_VERSION;
use ringwatch_shared::size::parse_size;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// The ringwatch agent: joins a console, reports this host's health, and
/// keeps the link alive.
///
/// First run: `ringwatch-agent --console HOST:7443 --token TOKEN` (the token
/// comes from `ringwatch join-token` on the console). Later runs need only
/// `--console`: the credentials are kept in the data dir. With several
/// consoles, `--console A:7443,B:7443,C:7443`: the agent finds the leader.
#[derive(Debug, Parser)]
#[command(name = "ringwatch-agent", version, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs N simulated agents in this process, each a real QUIC connection
    /// with synthetic metrics, for load tests.
    Swarm(SwarmArgs),
    /// Prints the running agent's own view: connection, console, certificate, instances.
    ///
    /// Asks the agent running on the data dir (through `agent.sock` there),
    /// never the console: whether it is connected, to which console and since
    /// when, its node name, its certificate's expiry and the instances it
    /// runs. Exits 3 when no agent runs on the data dir.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The running agent's data dir [default: the platform data dir + ringwatch-agent].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Prints the shell completion script for SHELL.
    ///
    /// For example `ringwatch-agent completions bash >
    /// /usr/share/bash-completion/completions/ringwatch-agent`.
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Writes one man page per command into DIR (for packagers).
    #[command(hide = true)]
    Man {
        /// Where to write `ringwatch-agent.1`, `ringwatch-agent-status.1`, …
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The consoles, HOST:PORT[,HOST:PORT…] (repeatable). The agent connects
    /// to any of them and follows the one that leads; a DNS name stands for
    /// every address it resolves to, looked up again at each connection.
    #[arg(long, value_name = "ADDRS", required = true)]
    console: Vec<String>,
    /// Join token from `ringwatch join-token`; needed on the first run only.
    #[arg(long, value_name = "TOKEN", env = "RINGWATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Node name to join under [default: the host name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Where credentials are kept [default: the platform data dir + ringwatch-agent].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Heartbeat period, like 500ms or 1s.
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Ring capacity weight [default: the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    weight: Option<u32>,
    /// Run only tasks whose program (the command's first word) matches one
    /// of these glob patterns, like `/opt/app/bin/*` or `sleep` (`*` does
    /// not cross `/`); others are refused and reported to the console.
    /// Without it the agent runs no task at all. `'*'` alone allows any
    /// program. An interpreter (`sh`, `python3`, …) runs whatever its
    /// arguments say: allowing one allows anything. Repeat for several.
    #[arg(long, value_name = "PATTERN", num_args = 1..)]
    allow_exec: Vec<String>,
    /// The most disk the data store's copies may take, in DATA_DIR/objects,
    /// like 10GiB, 500MB or a number of bytes [default: 10GiB]. A node
    /// whose copies reach it takes no new ones, and says so to the console.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    data_quota: Option<u64>,
    /// How long a stopping task has between SIGTERM and SIGKILL.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    stop_grace: Duration,
    /// Claim this protocol version (testing the console's refusal).
    #[arg(long, hide = true, default_value_t = PROTOCOL_VERSION)]
    protocol_version: u16,
    /// After connecting, send this many random bytes on a stream (testing
    /// the console's robustness).
    #[arg(long, hide = true, default_value_t = 0)]
    send_garbage: usize,
}

#[derive(Debug, Args)]
struct SwarmArgs {
    /// The consoles, HOST:PORT[,HOST:PORT…] (repeatable), as for the agent.
    #[arg(long, value_name = "ADDRS", required = true)]
    console: Vec<String>,
    /// Join token from `ringwatch join-token`.
    #[arg(long, value_name = "TOKEN", env = "RINGWATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How many agents to simulate.
    #[arg(long, value_name = "N", default_value_t = 100)]
    agents: usize,
    /// Where the agents keep credentials (one subdirectory each).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Agents are named PREFIX-0, PREFIX-1, …
    #[arg(long, value_name = "PREFIX", default_value = "swarm")]
    name_prefix: String,
    /// Heartbeat period of every agent.
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Extra pause between starting two agents (none by default:
    /// --concurrency already spreads the joins).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    stagger: Option<Duration>,
    /// At most this many agents joining or connecting at once while the
    /// swarm starts; the next starts when one is welcomed.
    #[arg(long, value_name = "N", default_value_t = ringwatch_agent::swarm::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Threads the swarm's agents run on (default: one per CPU). A real
    /// agent has a thread of its own; thousands of them on one thread made
    /// the swarm, not the console, what fell behind first.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

/// Exit code of `status` when no agent runs on the data dir (as `ringwatch
/// status` when no console runs).
const NOT_RUNNING: u8 = 3;

/// How long `status` waits for the agent's answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that only ask or print need no logging and no runtime.
    let daemon = match cli.command {
        Some(Command::Status { json, data_dir }) => return finish(agent_status(data_dir, json)),
        Some(Command::Completions { shell }) => return finish(print(&cli_docs::completions(Cli::command(), shell))),
        Some(Command::Man { dir }) => return finish(man_pages(&dir)),
        Some(Command::Swarm(args)) => Daemon::Swarm(args),
        None => Daemon::Agent(cli.run),
    };
    ringwatch_net::logging::log_to_stderr();
    match run(daemon) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!("{err:#}");
            eprintln!("ringwatch-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// What runs until a signal: one agent, or a swarm.
enum Daemon {
    /// `ringwatch-agent --console …`.
    Agent(RunArgs),
    /// `ringwatch-agent swarm …`.
    Swarm(SwarmArgs),
}

/// The exit code of a command that only asks or prints.
fn finish(result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): nothing left to say to anyone.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ringwatch-agent: error: {err:#}");
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

/// Writes `bytes` to stdout.
fn print(bytes: &[u8]) -> Result<ExitCode> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).context("failed to write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `ringwatch-agent status [--json]`: asks the agent on the data dir.
fn agent_status(data_dir: Option<PathBuf>, json: bool) -> Result<ExitCode> {
    let data_dir = data_dir.map_or_else(default_data_dir, Ok)?;
    match status::query(&data_dir, STATUS_TIMEOUT) {
        Ok(answer) if json => {
            let mut text = serde_json::to_string_pretty(&answer).context("failed to encode the status")?;
            text.push('\n');
            print(text.as_bytes())
        }
        Ok(answer) => print(status::render(&answer, std::time::SystemTime::now()).as_bytes()),
        Err(err @ StatusError::NotRunning { .. }) => {
            eprintln!("ringwatch-agent: {err}");
            Ok(ExitCode::from(NOT_RUNNING))
        }
        Err(err) => Err(err.into()),
    }
}

/// `ringwatch-agent man DIR`.
fn man_pages(dir: &std::path::Path) -> Result<ExitCode> {
    let written = cli_docs::man_pages(Cli::command(), dir)
        .with_context(|| format!("failed to write man pages to \"{}\"", dir.display()))?;
    let mut text = String::new();
    for path in written {
        text.push_str(&format!("{}\n", path.display()));
    }
    print(text.as_bytes())
}

fn run(daemon: Daemon) -> Result<()> {
    let runtime = match &daemon {
        // One thread: an agent sends a few small messages a second, and a
        // current-thread runtime keeps its footprint small.
        Daemon::Agent(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Daemon::Swarm(args) => {
            let threads = args.threads.map_or_else(
                || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
                usize::from,
            );
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
        }
    }
    .context("failed to start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(ringwatch_net::stop_on_signal(shutdown.clone()));
        match daemon {
            Daemon::Swarm(args) => run_swarm(args, shutdown).await,
            Daemon::Agent(args) => run_single(args, shutdown).await,
        }
    })
}

async fn run_single(args: RunArgs, shutdown: CancellationToken) -> Result<()> {
    let consoles = consoles(&args.console)?;
    let data_dir = args.data_dir.map_or_else(default_data_dir, Ok)?;
    let mut config = LinkConfig::new(consoles.clone(), data_dir);
    config.name = args.name;
    config.token = args.token;
    config.heartbeat = args.heartbeat;
    if let Some(weight) = args.weight {
        config.weight = weight;
    }
    if let Some(quota) = args.data_quota {
        config.data_quota = quota;
    }
    config.protocol_version = args.protocol_version;
    config.send_garbage = args.send_garbage;
    let mut tasks = SupervisorConfig::new(config.data_dir.clone());
    tasks.allow_exec = args.allow_exec;
    tasks.stop_grace = args.stop_grace;
    info!(consoles = %consoles, data_dir = %config.data_dir.display(), "ringwatch-agent starting");
    ringwatch_agent::run_agent(config, tasks, shutdown).await?;
    Ok(())
}

async fn run_swarm(args: SwarmArgs, shutdown: CancellationToken) -> Result<()> {
    let consoles = consoles(&args.console)?;
    let data_dir = args.data_dir.map_or_else(|| default_data_dir().map(|dir| dir.join("swarm")), Ok)?;
    let config = SwarmConfig {
        consoles,
        token: args.token,
        agents: args.agents,
        data_dir,
        name_prefix: args.name_prefix,
        heartbeat: args.heartbeat,
        stagger: args.stagger.unwrap_or(Duration::ZERO),
        concurrency: args.concurrency,
    };
    ringwatch_agent::swarm::run(config, shutdown).await?;
    Ok(())
}

/// The `--console` values as a list. Names are resolved at each connection,
/// not here: a console whose name does not resolve yet may later.
fn consoles(values: &[String]) -> Result<Consoles> {
    Consoles::parse_lists(values).context("bad --console")
}

fn default_data_dir() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|dir| dir.join("ringwatch-agent"))
        .context("no platform data dir (is $HOME set?): pass --data-dir")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let args = ["ringwatch-agent", "--console", "127.0.0.1:7443"].iter().chain(extra);
        Cli::try_parse_from(args).map(|cli| cli.run)
    }

    #[test]
    fn the_data_quota_reads_human_sizes_and_defaults_to_10_gib() {
        assert_eq!(run_args(&["--data-quota", "500MB"]).unwrap().data_quota, Some(500_000_000));
        assert_eq!(run_args(&["--data-quota", "2GiB"]).unwrap().data_quota, Some(2 << 30));
        assert_eq!(run_args(&["--data-quota", "4096"]).unwrap().data_quota, Some(4096));
        assert_eq!(run_args(&[]).unwrap().data_quota, None);
        let default = LinkConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 7443)), "/d".into());
        assert_eq!(default.data_quota, 10 << 30);
        assert_eq!(default.data_quota, ringwatch_agent::objects::DEFAULT_DATA_QUOTA);
    }

    #[test]
    fn a_zero_or_garbage_data_quota_is_refused_naming_the_value() {
        let err = run_args(&["--data-quota", "0"]).unwrap_err().to_string();
        assert!(err.contains("--data-quota") && err.contains("more than zero"), "{err}");
        let err = run_args(&["--data-quota", "lots"]).unwrap_err().to_string();
        assert!(err.contains("\"lots\" is not a size"), "{err}");
    }
}
