//! End-to-end tests of ringwatch: the real `ringwatch` and `ringwatch-agent`
//! binaries on loopback, driven like an operator would.
//!
//! Build the binaries first (`cargo build --workspace`), then
//! `cargo test -p ringwatch-tests --test e2e`.
//!
//! Every test has its own [`Sandbox`](ringwatch_tests::Sandbox) with the
//! console's and each agent's data dir, binds only `127.0.0.1:0`, and waits
//! through deadlines, never sleeps, so the tests can run in parallel.
//!
//! # Layout
//! - `membership`: joining, crash (`kill -9`), goodbye (SIGTERM), stall
//!   (SIGSTOP/SIGCONT).
//! - `refusals`: the console turns bad agents away and keeps serving the
//!   others.
//! - `hostile_input`: random datagrams and random stream bytes.
//! - `hostile_peers`: a joined agent's credentials in a hand-written client
//!   (adoption, epochs, huge messages), strangers without a certificate
//!   (streams, windows, a burst of handshakes), a flood of refused
//!   connections.
//! - `cli`: the admin commands without a console.
//! - `data_cli`: `ringwatch data` against a console that refuses data
//!   requests (every command says why; a viewer's put and rm refused).
//! - `certs`: certificate lifetimes — an agent's renewed over its live
//!   link, an expired one refused, a revocation kept across a restart.
//! - `consoles`: an agent given several consoles moves past a dead one and
//!   follows a (fake) standby to the leader.
//! - `etcd` (feature `etcd`): the highly available group's store against a
//!   real etcd — elections, conditioned writes, stepping down, large
//!   batches, standbys following the records, TLS.
//! - `ha` (feature `etcd`): three consoles on a real etcd and four agents —
//!   the leader killed or paused past its lease, an agent dying during the
//!   takeover, etcd down for 10 s, rolling restarts — checked against the
//!   task processes: nothing lost, never a duplicate.
//! - `data`: the replicated data store with real agents: put, get byte for
//!   byte, rm, stat, ls; after `kill -9` of a holder every object stays
//!   readable and gets back to three copies; a removal made while a replica
//!   was down stays; a lost copy is repaired on read; a console killed
//!   mid-put leaves the object whole or absent; `what-if` counts the
//!   objects a node's failure would leave below quorum or unavailable.
//! - `data_faults`: the data store under faults — a node partitioned while
//!   puts, overwrites and removals go on, then healed, converges; the data
//!   checker's clients under a `kill -9` nemesis lose no acknowledged write
//!   and never read back in time.
//! - `control_plane`: regressions of the control-plane issue, one test per
//!   case: bounded task durations, huge tasks, console pauses, name
//!   takeover, join tokens, damaged stores and address files, key modes.
//! - `operate`: operator credentials — a viewer refused every action, an
//!   admin draining from elsewhere, revocation (also of an open follower,
//!   and across a restart), `events --follow --json`, `attach` in tmux.
//! - `ops`: operating it on a host — the systemd units verified, shell
//!   completions and man pages of both binaries, `ringwatch-agent status`.
//! - `metrics`: `/metrics` passes `promtool check metrics`, a real
//!   Prometheus scrapes a console and counts its nodes, the example alerts
//!   load and fire, a taken address stops the console, the demo serves
//!   metrics.
//! - `tui`: `ringwatch demo` in tmux: a crash shows, `q` restores the terminal.
//! - `pki`: two consoles sharing one cluster's PKI through `pki export` and
//!   `pki import`: an agent verifies either, tokens verify on both.
//! - `scale`: the at-scale bench's swarm start-up and `bare_quinn` floor
//!   server, at small scale.
//! - `workloads`: tasks — placement, failover, delayed failover, drains,
//!   crash loops, fencing, adoption after a console restart, bad task files
//!   and allowlists — checked against the task processes themselves.

// Test code: a failed unwrap is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod certs;
mod cli;
mod consoles;
mod control_plane;
mod data;
mod data_cli;
mod data_faults;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod ha;
mod hostile_input;
mod hostile_peers;
mod membership;
mod metrics;
mod operate;
mod ops;
mod pki;
mod refusals;
mod scale;
mod tui;
mod workloads;

use ringwatch_tests::{Agent, Console, NodeState, Sandbox};

/// A console and agents joined with one token, all alive.
struct Cluster {
    console: Console,
    token: String,
    agents: Vec<Agent>,
}

impl Cluster {
    /// Starts a console in `sandbox/console` and one agent per name (data
    /// dir `sandbox/agent-NAME`), and waits until all are alive.
    fn start(sandbox: &Sandbox, names: &[&str]) -> Self {
        Self::start_with(sandbox, names, &[])
    }

    /// As [`Cluster::start`], with extra `serve` arguments for the console.
    fn start_with(sandbox: &Sandbox, names: &[&str], console_args: &[&str]) -> Self {
        let mut console = Console::start_with(&sandbox.dir("console"), console_args);
        sandbox.step(format!("console up on {}", console.addr()));
        let token = console.join_token();
        let agents = names.iter().map(|name| start_agent(sandbox, &console, &token, name, &[])).collect();
        let expected: Vec<(&str, NodeState)> = names.iter().map(|name| (*name, NodeState::Alive)).collect();
        let status = console.wait_for_states(&expected);
        sandbox.step(format!("all alive: {status}"));
        Self { console, token, agents }
    }

    fn agent(&mut self, name: &str) -> &mut Agent {
        self.agents.iter_mut().find(|a| a.name() == name).unwrap_or_else(|| panic!("no agent {name} in this cluster"))
    }
}

/// Starts an agent called `name` joining `console` with `token`, data dir
/// `sandbox/agent-NAME`.
fn start_agent(sandbox: &Sandbox, console: &Console, token: &str, name: &str, extra_args: &[&str]) -> Agent {
    Agent::start(console.addr(), token, name, &sandbox.dir(&format!("agent-{name}")), extra_args)
}
