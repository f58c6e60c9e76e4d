//! `ringwatch`: the console. With no command it runs the control plane with
//! an embedded local agent; `serve` runs it headless; the other commands
//! talk to a running console through its data dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use ringwatch::config::ConfigFile;
use ringwatch::control::admin::{self, AdminError};
use ringwatch::control::pki::ClusterPki;
use ringwatch::control::{ConsoleConfig, ControlPlane};
use ringwatch::local;
use ringwatch_shared::duration::parse_duration;
use ringwatch_shared::protocol::{AdminRequest, AdminResponse};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// ringwatch keeps work running on a fleet of hosts when hosts fail.
///
/// Run with no command for a live one-node cluster: the console with an
/// embedded local agent, certificates made on first run. Join more hosts
/// with `ringwatch join-token` and `ringwatch-agent --console ADDR --token TOKEN`.
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
    /// TOML config file (detector thresholds, resource limits, grace period).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the control plane without a terminal UI; logs every event; stops
    /// cleanly on SIGINT or SIGTERM.
    Serve,
    /// Prints one line: a token agents use to join (it pins the cluster CA).
    /// Any number of agents may use it until it expires.
    JoinToken {
        /// How long the token stays valid, like 1h or 7d.
        #[arg(long, value_name = "DUR", default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Prints the nodes (and tasks) of the running console.
    Status {
        /// Print the JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ringwatch: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let config = console_config(&cli.common)?;
    runtime.block_on(async {
        match cli.command {
            None => {
                init_logging();
                run_console(config, true).await
            }
            Some(Command::Serve) => {
                init_logging();
                run_console(config, false).await
            }
            Some(Command::JoinToken { ttl }) => {
                let pki = ClusterPki::load_or_create(&config.data_dir)
                    .with_context(|| format!("failed to load the cluster CA in \"{}\"", config.data_dir.display()))?;
                println!("{}", pki.join_token(ttl));
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Status { json }) => status(&config, json).await,
        }
    })
}

fn console_config(common: &CommonArgs) -> Result<ConsoleConfig> {
    let file = common.config.as_deref().map(ConfigFile::load).transpose()?;
    let data_dir = match common.data_dir.clone().or_else(|| file.as_ref().and_then(|file| file.data_dir.clone())) {
        Some(dir) => dir,
        None => dirs::data_dir()
            .map(|dir| dir.join("ringwatch"))
            .context("no platform data dir (is $HOME set?): pass --data-dir")?,
    };
    let mut config = ConsoleConfig::new(data_dir);
    if let Some(file) = file {
        file.apply(&mut config);
    }
    if let Some(listen) = common.listen {
        config.listen = listen;
    }
    Ok(config)
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn,rustls=warn")),
        )
        .init();
}

async fn run_console(config: ConsoleConfig, with_local_agent: bool) -> Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let control = ControlPlane::start(config.clone(), shutdown.clone()).await.context("failed to start the console")?;
    let agent = with_local_agent.then(|| {
        local::spawn_local_agent(
            &control,
            &local::local_node_name(),
            &config.data_dir.join("local-agent"),
            shutdown.child_token(),
        )
    });
    tokio::spawn(stop_on_signal(shutdown.clone()));
    control.run_until_stopped().await;
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(config: &ConsoleConfig, json: bool) -> Result<ExitCode> {
    let response = match admin::request(&config.data_dir, &AdminRequest::Status).await {
        Ok(response) => response,
        Err(err @ AdminError::NotRunning(_)) => {
            eprintln!("ringwatch: {err}");
            return Ok(ExitCode::from(3));
        }
        Err(err) => return Err(err.into()),
    };
    let AdminResponse::Status(status) = response else {
        anyhow::bail!("the console sent an unexpected answer");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status).context("failed to encode the status")?);
    } else {
        print!("{}", ringwatch::report::status_table(&status));
    }
    Ok(ExitCode::SUCCESS)
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut terminate) = signal(SignalKind::terminate()) else {
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
        _ = terminate.recv() => info!("SIGTERM: shutting down"),
    }
    shutdown.cancel();
}
