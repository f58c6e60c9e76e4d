//! Support library for ringwatch's end-to-end tests and bench drivers: start
//! the real `ringwatch` and `ringwatch-agent` binaries on loopback, poke them
//! with signals and bad input, and read the cluster back through
//! `ringwatch status --json`.
//!
//! Everything here is black-box on purpose: processes, files in data dirs,
//! UDP. The only ringwatch code linked is the UDP relay the demo shares,
//! and, for the hand-written peers of [`rogue`] and [`standby`], the wire
//! protocol, an agent's stored credentials and the console's PKI and TLS
//! config, so the tests pin the command-line and JSON
//! contract of DESIGN.md §2 rather than internal types.
//!
//! `cargo test --workspace` builds the binaries first; they are found next
//! to the test executable, or through `RINGWATCH_BIN` and
//! `RINGWATCH_AGENT_BIN`.
//!
//! Helpers panic with a descriptive message (and the tail of the relevant
//! process log) instead of returning errors where a failure can only mean a
//! failed test; the few that a caller may want to retry return
//! `anyhow::Result`.
//!
//! # Layout
//! - [`bins`]: where the `ringwatch` and `ringwatch-agent` executables are.
//! - [`process`]: [`Proc`], a child process that is killed and reaped on
//!   drop, with its output in a log file; signals; one-shot commands with a
//!   timeout.
//! - [`sandbox`]: [`Sandbox`], the per-test temporary directory (kept when
//!   the test fails) and step logging.
//! - [`poll`]: deadline-bounded polling, the only way tests wait.
//! - [`status`]: the `ringwatch status --json` model.
//! - [`console`]: [`Console`], a headless `ringwatch serve`, and the admin
//!   commands run against its data dir.
//! - [`agent`]: [`Agent`], a `ringwatch-agent` process.
//! - [`agent_status`]: `ringwatch-agent status --json`, the agent's own view.
//! - [`prometheus`]: the console's `/metrics`: scrapes, `promtool`, and a
//!   real Prometheus on loopback that scrapes a console and answers queries.
//! - [`procfs`]: CPU time and RSS of a process, and the machine, for the
//!   bench drivers.
//! - [`scale`]: the at-scale bench's pieces: a `ringwatch-agent swarm`
//!   process, the `bare_quinn` floor server, the kernel's socket buffer
//!   ceilings.
//! - [`udp`]: [`UdpRelay`], a switchable pass/partition/jitter relay, and a
//!   random-datagram flood.
//! - [`tasks`]: task files, the no-limits console config, and the admin
//!   commands that change desired state (`task apply`, `drain`, `cordon`…).
//! - [`instances`]: the processes behind task instances: pid files,
//!   liveness, a [`LifeLog`] of every copy's start and stop, and the
//!   [`Reaper`] that kills what agents leave behind.
//! - [`fleet`]: [`Fleet`], a console with agents (optionally relayed) for
//!   workload tests and benches.
//! - [`data_checker`]: concurrent clients of the data store under a
//!   `kill -9` nemesis, and the checks of their history (no lost write, no
//!   read going back in time, no invented bytes).
//! - [`standby`]: [`FakeStandby`], a console that only ever says "I am a
//!   standby; the leader is X", on a real console's PKI.
//! - [`etcd`]: [`EtcdServer`], a real single-member etcd on loopback that a
//!   test can stop, restart and freeze (its data in memory for the tests,
//!   on disk for the benches: [`EtcdData`]), [`EtcdCluster`], several members
//!   (the benches' three-copy comparison), and [`TcpRelay`], a TCP relay
//!   that partitions one client from it (the highly available group's
//!   tests).
//! - [`rogue`]: hand-written peers — a client with a joined agent's stolen
//!   credentials, strangers without a certificate or with a foreign one,
//!   bursts and floods of handshakes.

pub mod agent;
pub mod agent_status;
pub mod bins;
pub mod console;
pub mod data_checker;
pub mod etcd;
pub mod fleet;
pub mod group;
pub mod instances;
pub mod poll;
pub mod process;
pub mod procfs;
pub mod prometheus;
pub mod rogue;
pub mod sandbox;
pub mod scale;
pub mod standby;
pub mod stats;
pub mod status;
pub mod tasks;
pub mod tmux;
pub mod udp;

pub use agent::Agent;
pub use console::Console;
pub use etcd::{EtcdCluster, EtcdData, EtcdServer, TcpRelay};
pub use fleet::{AgentSpec, Fleet};
pub use group::ConsoleGroup;
pub use instances::{LifeLog, Reaper};
pub use process::{Proc, Signal};
pub use sandbox::Sandbox;
pub use standby::FakeStandby;
pub use status::{ConsoleInfo, InstanceStatus, NodeState, NodeStatus, Status, TaskStatus};
pub use tasks::TaskDef;
pub use tmux::Tmux;
pub use udp::{RelayMode, UdpRelay, send_random_datagrams};

use std::time::Duration;

/// How long a test waits for something that should happen "soon" (a node
/// turning alive, failed, left): a liveness bound, not a speed assertion. The
/// detector flags a dead agent within about 2 s; the rest is slack for a
/// loaded 2-core CI machine.
pub const LIVENESS: Duration = Duration::from_secs(20);

/// How long a test waits for a process to exit (after SIGTERM, or after a
/// refusal the agent may retry a few times before giving up).
pub const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// How long a console gets to bind and write `console.addr`.
pub const STARTUP: Duration = Duration::from_secs(30);

/// How long a one-shot admin command (`status`, `join-token`) may run before
/// it is killed and the test fails: these must never hang a test run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);
