//! Bench driver: the console at scale, as a ratio to a bare quinn server
//! carrying the same connections and datagram rate in the same run.
//!
//! Phase 1 starts a real console (`ringwatch serve`) and a `ringwatch-agent
//! swarm` of N agents, times how long until all N are `alive`, then watches
//! S seconds: console CPU and RSS, swarm CPU, and the `failed` and `suspect`
//! events in the console log (no agent is harmed, so every `failed` is
//! false). Phase 2 stops both, starts `bare_quinn` (accept, welcome, count
//! datagrams, beat once a second; nothing else) on the console's PKI, and
//! starts the same swarm on the same data dir: its agents already hold
//! credentials, so they connect with mutual TLS without joining. Once
//! `bare_quinn` counts N connections it is watched for the same S seconds.
//! The ratio of the two CPU figures is the console's cost over the floor of
//! QUIC itself on this machine.
//!
//! ```sh
//! cargo build --release -p ringwatch -p ringwatch-agent -p ringwatch-tests --bins
//! target/release/bench_scale --agents 1000 --seconds 300 [--concurrency N] [--swarm-dir DIR]
//! ```
//!
//! The console's data dir and every log are in a sandbox under `$TMPDIR`. The
//! swarm's credentials (three files per agent) go under `--swarm-dir`, by
//! default `/dev/shm` when it exists: a real fleet writes them on as many
//! disks as it has agents, while one process creating 30,000 files on one
//! ext4 disk made the swarm, not the console, the bottleneck of joining.
//!
//! As root it raises `net.core.rmem_max`/`wmem_max` to 16 MiB for the run
//! (every endpoint asks for 8 MiB buffers) and restores them at the end,
//! also after a panic, or when it is stopped by a signal (SIGINT, SIGTERM,
//! SIGHUP): then it also kills the processes it started and removes the
//! swarm's credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringwatch_tests::console::Console;
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::procfs::{self, Reading, UdpCounters};
use ringwatch_tests::sandbox::Sandbox;
use ringwatch_tests::scale::{self, BareQuinn, BareQuinnReport, SocketBufferCeiling, Swarm};
use ringwatch_tests::status::NodeState;

/// The socket buffer ceiling asked of the kernel for the run.
const BUFFER_CEILING: u64 = 16 << 20;
/// How long the swarm may take to be all up before the bench gives up: a
/// liveness bound, far above the 60 s goal at 10,000 agents.
const UP_DEADLINE: Duration = Duration::from_secs(900);
/// How often `status` is polled while the swarm joins: "joined in" is
/// known to this much.
const JOIN_POLL: Duration = Duration::from_millis(500);
/// How often RSS is sampled (for the peak) and the processes checked.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How often a progress line is printed during a window.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);
/// The swarm's heartbeat period (the agent's default): the expected
/// datagram rate is N / this.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// Goals of the issue, stated at 10,000 agents.
const GOAL_JOINED: Duration = Duration::from_secs(60);
const GOAL_SUSPECT: usize = 10;
const GOAL_RATIO: f64 = 1.5;
const GOAL_BYTES_PER_AGENT: f64 = 64_000.0;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1));
    let agents: usize = flag("--agents").map_or(1_000, |v| v.parse().expect("--agents N"));
    let seconds: u64 = flag("--seconds").map_or(300, |v| v.parse().expect("--seconds S"));
    let mut swarm_args = vec!["--heartbeat".to_owned(), "500ms".to_owned()];
    if let Some(concurrency) = flag("--concurrency") {
        swarm_args.extend(["--concurrency".to_owned(), concurrency.clone()]);
    }
    let swarm_args: Vec<&str> = swarm_args.iter().map(String::as_str).collect();
    let window = Duration::from_secs(seconds);
    let swarm_parent = flag("--swarm-dir").map_or_else(
        || if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() },
        PathBuf::from,
    );

    println!("bench_scale: {agents} agents, {seconds} s windows, on {}", procfs::machine());
    // Declared before the sandbox and the processes: dropped (restored) last.
    let (mut ceiling, said) = SocketBufferCeiling::raise(BUFFER_CEILING);
    for line in said {
        println!("  {line}");
    }
    let sandbox = Sandbox::new("bench-scale");
    // Removed at the end, also after a panic: the logs stay in the sandbox.
    let swarm_dir = tempfile::Builder::new()
        .prefix("ringwatch-bench-scale-swarm-")
        .tempdir_in(&swarm_parent)
        .unwrap_or_else(|err| panic!("cannot make the swarm's dir in {}: {err}", swarm_parent.display()));
    let (restore, swarm_creds) = (ceiling.restorer(), swarm_dir.path().to_path_buf());
    scale::on_signal(move || {
        restore();
        // The credentials of 10,000 agents on tmpfs take memory until removed;
        // the sandbox and its logs stay.
        let _ = std::fs::remove_dir_all(&swarm_creds);
    })
    .expect("signal handlers");
    println!("  console data dir and logs: {}", sandbox.path().display());
    println!("  swarm credentials: {}", swarm_dir.path().display());
    let swarm = SwarmDirs { data: swarm_dir.path().to_path_buf(), log: sandbox.path().join("swarm.log") };

    let console = console_phase(&sandbox, &swarm, agents, window, &swarm_args);
    let bare = bare_phase(&sandbox, &swarm, agents, window, &swarm_args);
    for line in ceiling.restore() {
        println!("  {line}");
    }
    report(agents, seconds, &console, &bare);
}

/// Where the swarm keeps its credentials and where its output goes.
struct SwarmDirs {
    data: PathBuf,
    log: PathBuf,
}

/// What phase 1 measured.
struct ConsoleRun {
    joined_in: Duration,
    /// Events while the swarm joined.
    join_failed: usize,
    join_suspect: usize,
    /// Events during the window.
    failed: usize,
    suspect: usize,
    alive_at_end: usize,
    heartbeats_lost: u64,
    window: Window,
}

/// What phase 2 measured.
struct BareRun {
    connected_in: Duration,
    start: BareQuinnReport,
    end: BareQuinnReport,
    window: Window,
}

/// Figures of one measured window.
struct Window {
    /// The server's RSS before the swarm started.
    idle_rss: u64,
    server_start: Reading,
    server_end: Reading,
    peak_rss: u64,
    swarm_start: Reading,
    swarm_end: Reading,
    udp_start: UdpCounters,
    udp_end: UdpCounters,
}

impl Window {
    fn server_cpu(&self) -> f64 {
        procfs::cpu_percent(&self.server_start, &self.server_end)
    }

    fn swarm_cpu(&self) -> f64 {
        procfs::cpu_percent(&self.swarm_start, &self.swarm_end)
    }

    fn seconds(&self) -> f64 {
        self.server_end.at.saturating_duration_since(self.server_start.at).as_secs_f64()
    }

    /// RSS the server grew by with the swarm connected, per agent, bytes.
    fn rss_per_agent(&self, agents: usize) -> f64 {
        self.server_end.rss_bytes.saturating_sub(self.idle_rss) as f64 / agents.max(1) as f64
    }

    fn udp_in_per_sec(&self) -> f64 {
        self.udp_end.in_datagrams.saturating_sub(self.udp_start.in_datagrams) as f64 / self.seconds().max(1e-9)
    }

    fn udp_drops(&self) -> u64 {
        self.udp_end.rcvbuf_errors.saturating_sub(self.udp_start.rcvbuf_errors)
    }
}

fn console_phase(
    sandbox: &Sandbox,
    dirs: &SwarmDirs,
    agents: usize,
    window: Duration,
    swarm_args: &[&str],
) -> ConsoleRun {
    println!("phase 1: console");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let idle_rss = procfs::read(console.proc().pid()).expect("the console is running").rss_bytes;
    let mut swarm = Swarm::start(console.addr(), Some(&token), agents, &dirs.data, &dirs.log, swarm_args);
    let started = Instant::now();
    // Not `Console::wait_for_within`: it polls every 100 ms and keeps a
    // text of every status, which at 10,000 nodes would take a good part of
    // a core from the console being timed. Here a poll costs one `status
    // --json` and a count.
    let joined = poll::until(UP_DEADLINE, JOIN_POLL, || {
        if let Some(exit) = console.proc().try_exit() {
            return Step::Abort(format!("the console exited ({exit})"));
        }
        match console.status_json() {
            Ok(status) => match status.nodes.iter().filter(|node| node.state == NodeState::Alive).count() {
                alive if alive == agents => Step::Done(()),
                alive => Step::Pending(format!("{alive} of {agents} alive")),
            },
            Err(err) => Step::Pending(format!("status failed: {err:#}")),
        }
    });
    if let Err(failure) = joined {
        panic!("waiting for every swarm agent alive: {failure}\n{}", console.log_tail());
    }
    let joined_in = started.elapsed();
    println!("  {agents} agents alive after {:.1} s", joined_in.as_secs_f64());
    let log = console.log();
    let (join_failed, join_suspect) = (events(&log, "→ failed"), events(&log, "→ suspect"));

    let pid = console.proc().pid();
    let window = watch(window, idle_rss, pid, &mut swarm, "console", || {
        assert!(console.is_running(), "the console exited\n{}", console.log_tail());
    });
    let log = console.log();
    let status = console.status();
    let run = ConsoleRun {
        joined_in,
        join_failed,
        join_suspect,
        failed: events(&log, "→ failed") - join_failed,
        suspect: events(&log, "→ suspect") - join_suspect,
        alive_at_end: status.nodes.iter().filter(|node| node.state == NodeState::Alive).count(),
        heartbeats_lost: status.nodes.iter().filter_map(|node| node.heartbeats_lost).sum(),
        window,
    };
    swarm.proc().kill();
    console.kill();
    run
}

fn bare_phase(sandbox: &Sandbox, dirs: &SwarmDirs, agents: usize, window: Duration, swarm_args: &[&str]) -> BareRun {
    println!("phase 2: bare quinn");
    let mut bare = BareQuinn::start(&sandbox.dir("console"), &sandbox.dir("bare-quinn").join("log"));
    let idle_rss = procfs::read(bare.pid()).expect("bare_quinn is running").rss_bytes;
    // No token: the agents connect with the credentials phase 1 gave them.
    let mut swarm = Swarm::start(bare.addr(), None, agents, &dirs.data, &dirs.log, swarm_args);
    let started = Instant::now();
    bare.wait_for(UP_DEADLINE, "every swarm agent connected", |report| report.connections == agents as u64);
    let connected_in = started.elapsed();
    println!("  {agents} agents connected after {:.1} s", connected_in.as_secs_f64());
    let start = bare.report().expect("counters were just read");
    let pid = bare.pid();
    let window = watch(window, idle_rss, pid, &mut swarm, "bare_quinn", || {
        assert!(bare.proc().is_running(), "bare_quinn exited\n{}", bare.proc().log_tail());
    });
    let end = bare.report().expect("bare_quinn reports every second");
    swarm.proc().kill();
    bare.proc().kill();
    BareRun { connected_in, start, end, window }
}

/// Watches `pid` (the server) and the swarm for `duration`; `check_server`
/// runs at every sample and panics if the server died.
fn watch(
    duration: Duration,
    idle_rss: u64,
    pid: u32,
    swarm: &mut Swarm,
    server: &str,
    mut check_server: impl FnMut(),
) -> Window {
    let server_start = procfs::read(pid).expect("the server is running");
    let swarm_start = procfs::read(swarm.pid()).expect("the swarm is running");
    let udp_start = procfs::udp_counters().unwrap_or_default();
    let mut peak_rss = server_start.rss_bytes;
    let mut progress = Instant::now();
    let began = Instant::now();
    while began.elapsed() < duration {
        std::thread::sleep(SAMPLE_EVERY.min(duration.saturating_sub(began.elapsed())));
        let now = procfs::read(pid).unwrap_or(server_start);
        check_server();
        assert!(swarm.proc().is_running(), "the swarm exited\n{}", swarm.proc().log_tail());
        peak_rss = peak_rss.max(now.rss_bytes);
        if progress.elapsed() >= PROGRESS_EVERY {
            progress = Instant::now();
            println!(
                "  {:>4.0} s: {server} CPU {:.1} % so far, RSS {:.1} MiB",
                began.elapsed().as_secs_f64(),
                procfs::cpu_percent(&server_start, &now),
                mib(now.rss_bytes)
            );
        }
    }
    Window {
        idle_rss,
        server_start,
        server_end: procfs::read(pid).expect("the server is running"),
        peak_rss,
        swarm_start,
        swarm_end: procfs::read(swarm.pid()).expect("the swarm is running"),
        udp_start,
        udp_end: procfs::udp_counters().unwrap_or_default(),
    }
}

fn report(agents: usize, seconds: u64, console: &ConsoleRun, bare: &BareRun) {
    let (c, b) = (&console.window, &bare.window);
    let ratio = c.server_cpu() / b.server_cpu().max(1e-9);
    let per_agent = c.rss_per_agent(agents);
    let expected_rate = agents as f64 / HEARTBEAT.as_secs_f64();
    let bare_rate = bare.end.datagrams.saturating_sub(bare.start.datagrams) as f64 / b.seconds().max(1e-9);

    println!();
    println!("machine: {}", procfs::machine());
    println!(
        "both phases share this machine with the swarm process, which runs all {agents} agents: its CPU competes with the server's"
    );
    println!();
    println!(
        "| agents | joined in | false failed | suspect | console CPU | bare quinn CPU | ratio | console RSS (start / end / peak) | RSS per agent | bare quinn RSS per connection |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {agents} | {:.1} s | {} | {} | {:.1} % | {:.1} % | {ratio:.2}× | {:.1} / {:.1} / {:.1} MiB | {:.1} kB | {:.1} kB |",
        console.joined_in.as_secs_f64(),
        console.failed,
        console.suspect,
        c.server_cpu(),
        b.server_cpu(),
        mib(c.server_start.rss_bytes),
        mib(c.server_end.rss_bytes),
        mib(c.peak_rss),
        per_agent / 1000.0,
        b.rss_per_agent(agents) / 1000.0,
    );
    println!();
    println!(
        "CPU is % of one core over the {seconds} s window; kB = 1,000 bytes; RSS per agent = (RSS at the end - RSS before the swarm started) / N."
    );
    println!();
    println!("goals (stated at 10,000 agents):");
    let mark = |ok: bool| if ok { "✔" } else { "✘" };
    println!("  joined in ≤ {} s: {}", GOAL_JOINED.as_secs(), mark(console.joined_in <= GOAL_JOINED));
    println!("  0 false `failed` over the window: {}", mark(console.failed == 0));
    println!(
        "  ≤ {GOAL_SUSPECT} `suspect` over 300 s: {} ({} in {seconds} s)",
        mark(console.suspect as f64 * 300.0 / seconds.max(1) as f64 <= GOAL_SUSPECT as f64),
        console.suspect
    );
    println!("  console CPU ≤ {GOAL_RATIO}× bare quinn: {}", mark(ratio <= GOAL_RATIO));
    println!("  ≤ 64 kB per agent: {}", mark(per_agent <= GOAL_BYTES_PER_AGENT));
    println!();
    println!("details:");
    println!(
        "  console: idle RSS {:.1} MiB; while joining {} `failed` / {} `suspect`; {} of {agents} alive at the end; heartbeats lost (console's count) {}",
        mib(c.idle_rss),
        console.join_failed,
        console.join_suspect,
        console.alive_at_end,
        console.heartbeats_lost
    );
    println!(
        "  bare quinn: {agents} connected after {:.1} s; idle RSS {:.1} MiB, RSS start / end / peak {:.1} / {:.1} / {:.1} MiB; at the end {}",
        bare.connected_in.as_secs_f64(),
        mib(b.idle_rss),
        mib(b.server_start.rss_bytes),
        mib(b.server_end.rss_bytes),
        mib(b.peak_rss),
        bare.end
    );
    println!(
        "  load: bare quinn received {bare_rate:.0} datagrams/s (expected {expected_rate:.0}: {agents} agents, one heartbeat per {} ms)",
        HEARTBEAT.as_millis()
    );
    println!(
        "  kernel UDP (whole machine, both directions): console phase {:.0} datagrams/s in, {} receive-buffer drops; bare quinn phase {:.0} datagrams/s in, {} drops",
        c.udp_in_per_sec(),
        c.udp_drops(),
        b.udp_in_per_sec(),
        b.udp_drops()
    );
    println!("  swarm CPU: {:.1} % (console phase), {:.1} % (bare quinn phase)", c.swarm_cpu(), b.swarm_cpu());
}

fn events(log: &str, transition: &str) -> usize {
    log.lines().filter(|line| line.contains("ringwatch::event") && line.contains(transition)).count()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}
