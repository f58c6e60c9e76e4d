//! Bench driver: an idle agent's CPU and RSS over a window (default 60 s),
//! side by side with Prometheus node_exporter measured in the same run when
//! it is installed (`apt-get install prometheus-node-exporter`).
//!
//! `cargo build --release --workspace && target/release/bench_footprint [--seconds S]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ringwatch_tests::agent::Agent;
use ringwatch_tests::console::Console;
use ringwatch_tests::process::Proc;
use ringwatch_tests::procfs;
use ringwatch_tests::sandbox::Sandbox;
use ringwatch_tests::status::NodeState;

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

fn main() {
    let seconds: u64 = std::env::args().skip_while(|arg| arg != "--seconds").nth(1).map_or(60, |v| v.parse().unwrap());
    let sandbox = Sandbox::new("bench-footprint");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let mut agent = Agent::start(console.addr(), &token, "idle", &sandbox.dir("idle"), &[]);
    console.wait_for("the agent alive", |status| status.node("idle").is_some_and(|n| n.state == NodeState::Alive));
    let mut exporter = Path::new(NODE_EXPORTER).exists().then(|| {
        let mut command = Command::new(NODE_EXPORTER);
        command.arg("--web.listen-address=127.0.0.1:0");
        Proc::spawn("node_exporter", command, &sandbox.dir("exporter").join("log"))
    });
    // Let start-up work settle before the window opens.
    std::thread::sleep(Duration::from_secs(5));
    let agent_pid = agent.proc().pid();
    let exporter_pid = exporter.as_mut().map(|proc| proc.pid());
    let agent_start = procfs::read(agent_pid).unwrap();
    let exporter_start = exporter_pid.and_then(procfs::read);
    std::thread::sleep(Duration::from_secs(seconds));
    let agent_end = procfs::read(agent_pid).unwrap();
    println!("over {seconds} s idle (heartbeat 500ms, metrics 1s):");
    println!(
        "  ringwatch-agent: CPU {:.3}% of one core, RSS {:.1} MiB",
        procfs::cpu_percent(&agent_start, &agent_end),
        agent_end.rss_bytes as f64 / 1048576.0
    );
    match (exporter_pid, exporter_start) {
        (Some(pid), Some(start)) => {
            let end = procfs::read(pid).unwrap();
            println!(
                "  node_exporter (idle, not scraped): CPU {:.3}% of one core, RSS {:.1} MiB",
                procfs::cpu_percent(&start, &end),
                end.rss_bytes as f64 / 1048576.0
            );
        }
        _ => println!("  node_exporter: not installed at {NODE_EXPORTER}"),
    }
}
