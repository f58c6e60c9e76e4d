//! Bench driver for the replicated data store (README.md, "Data"): one
//! console and `--agents` agents (default 4) on loopback, objects with 3
//! replicas at `quorum`, clients in this process speaking the admin
//! protocol as `ringwatch data` does (one connection per client).
//!
//! - `--mode small` (default): 4 KiB puts of new keys, puts over existing
//!   keys (overwrites), then gets, with 1 and 64 concurrent clients for
//!   `--seconds` each: ops/s, p50 and p99; the CPU each op cost the server
//!   (the console, or etcd's members), the agents together and this
//!   process's clients (from `/proc`, user + system: steadier than ops/s
//!   on shared cores); and the UDP datagrams the machine delivered per op
//!   (`/proc/net/snmp`; a receive that coalesced segments counts once).
//!   With the
//!   `etcd` feature, the same workload side by side against a local etcd
//!   (its default fsync durability), one member and then three (`etcd×3`:
//!   like ringwatch's three copies, each put durable on a quorum).
//! - `--mode large`: a 64 MiB object put and got back, MB/s, next to
//!   `dd` writing 64 MiB with fsync on the same disk and 64 MiB sent over
//!   a loopback TCP connection; `--rounds N` (default 1) times each, every
//!   round printed, then the medians (one round on shared cores varies).
//! - `--mode repair`: `--gib` GiB (default 1) of 64 MiB objects, then
//!   `kill -9` of a node holding copies: seconds until every object has its
//!   three copies again, and MB/s, at the default throttle. Heartbeats
//!   while the repair copies: `status --json` sampled every 100 ms, the
//!   surviving nodes' states (any `suspect`?), phi and time since their
//!   last heartbeat, next to the same figures sampled idle before the kill;
//!   and failure detection during the repair: an extra agent, `probe`,
//!   cordoned so it holds no data, is `kill -9`ed once the repair copies,
//!   and its kill → `failed` is set beside the victim's (no repair running).
//!   The copying is taken to run from 5.5 s after `failed` (the repair
//!   delay) until no object is under-replicated.
//!
//! Build first: `cargo build --release --workspace` (add `--features
//! ringwatch-tests/etcd` for the etcd column), then e.g.
//! `target/release/bench_data --mode small --seconds 10`. It runs the
//! `ringwatch` and `ringwatch-agent` beside it, or those `RINGWATCH_BIN`
//! and `RINGWATCH_AGENT_BIN` name (for A/B rounds between builds), and
//! prints which.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench driver fails by panicking

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwatch::control::admin::{AdminClient, Target};
use ringwatch_shared::codec;
use ringwatch_shared::data::wire::{CHUNK_LEN, DataChunk};
use ringwatch_shared::data::{Consistency, ObjectKey};
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, DataPut};
use ringwatch_shared::token::{fingerprint, to_hex};
use ringwatch_tests::procfs;
use ringwatch_tests::stats::quantile;
use ringwatch_tests::{Fleet, NodeState, Sandbox};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().position(|arg| arg == name).and_then(|i| args.get(i + 1)).cloned();
    let seconds: u64 = flag("--seconds").map_or(10, |value| value.parse().unwrap());
    let agents: usize = flag("--agents").map_or(4, |value| value.parse().unwrap());
    let gib: u64 = flag("--gib").map_or(1, |value| value.parse().unwrap());
    let rounds: usize = flag("--rounds").map_or(1, |value| value.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let sandbox = Sandbox::new("bench-data");
    // Beside this binary unless RINGWATCH_BIN / RINGWATCH_AGENT_BIN say
    // otherwise: said, so an A/B run cannot measure the wrong build.
    println!(
        "binaries: {} and {}",
        ringwatch_tests::bins::ringwatch().display(),
        ringwatch_tests::bins::ringwatch_agent().display()
    );
    let names: Vec<String> = (0..agents).map(|i| format!("n{i}")).collect();
    let mode = flag("--mode").unwrap_or_else(|| "small".into());
    let mut refs: Vec<&str> = names.iter().map(String::as_str).collect();
    if mode == "repair" {
        refs.push(PROBE);
    }
    let mut fleet = Fleet::start(&sandbox, &refs);
    if mode == "repair" {
        fleet.act(&["cordon", PROBE]);
    }
    let target = Target::Local(fleet.data_dir().to_path_buf());
    let meter = CpuMeter {
        servers: vec![fleet.console.proc().pid()],
        agents: names.iter().map(|name| fleet.agent(name).proc().pid()).collect(),
    };
    match mode.as_str() {
        "small" => runtime.block_on(small(&target, &meter, Duration::from_secs(seconds))),
        "large" => runtime.block_on(large(&target, &sandbox, rounds)),
        "repair" => repair(&runtime, &target, &mut fleet, gib),
        other => panic!("unknown --mode {other}: small, large or repair"),
    }
}

/// Stores `bytes` under `key`; panics unless it is stored.
async fn put(client: &AdminClient, key: &str, bytes: &[u8]) {
    let request = AdminRequest::DataPut(DataPut {
        key: ObjectKey::parse(key).unwrap(),
        size: bytes.len() as u64,
        checksum: to_hex(&fingerprint(bytes)),
        replicas: None,
        consistency: Consistency::Quorum,
    });
    let (mut send, mut answer) = client.open_upload(&request).await.unwrap();
    for chunk in bytes.chunks(CHUNK_LEN) {
        codec::write_frame(&mut send, &DataChunk::Bytes(chunk.to_vec())).await.unwrap();
    }
    codec::write_frame(&mut send, &DataChunk::End).await.unwrap();
    let _ = send.finish();
    match answer.next().await.unwrap() {
        Some(AdminResponse::DataStored(_)) => {}
        other => panic!("put {key}: {other:?}"),
    }
}

/// Reads `key`; returns its length.
async fn get(client: &AdminClient, key: &str) -> usize {
    let request = AdminRequest::DataGet { key: ObjectKey::parse(key).unwrap(), consistency: Consistency::Quorum };
    let mut answer = client.open(&request).await.unwrap();
    match answer.next().await.unwrap() {
        Some(AdminResponse::DataObject(_)) => {}
        other => panic!("get {key}: {other:?}"),
    }
    let mut len = 0;
    while let Some(chunk) = answer.next_chunk().await.unwrap() {
        match chunk {
            DataChunk::Bytes(bytes) => len += bytes.len(),
            DataChunk::End => break,
        }
    }
    len
}

/// `clients` clients doing `op` for `duration`: ops/s and latencies.
async fn run_clients<F, Fut>(target: &Target, clients: usize, duration: Duration, op: F) -> (f64, Vec<Duration>)
where
    F: Fn(Arc<AdminClient>, usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = Vec::new();
    let started = Instant::now();
    for client_index in 0..clients {
        let client = Arc::new(AdminClient::connect(target).await.unwrap());
        let op = op.clone();
        tasks.push(tokio::spawn(timed(started, duration, move |n| op(client.clone(), client_index, n))));
    }
    gather(started, tasks).await
}

/// Runs `op` (given how many ran before it) back to back until `duration`
/// has passed since `started`; the latency of each.
async fn timed<Fut: std::future::Future<Output = ()>>(
    started: Instant,
    duration: Duration,
    mut op: impl FnMut(usize) -> Fut,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while started.elapsed() < duration {
        let at = Instant::now();
        op(latencies.len()).await;
        latencies.push(at.elapsed());
    }
    latencies
}

/// The latencies the clients' tasks measured, sorted, and the ops/s they
/// make together since `started`.
async fn gather(started: Instant, tasks: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> (f64, Vec<Duration>) {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    #[allow(clippy::cast_precision_loss)]
    let rate = all.len() as f64 / elapsed;
    (rate, all)
}

fn report(what: &str, clients: usize, rate: f64, latencies: &[Duration], cpu: CpuPerOp) {
    println!(
        "{what:>24} {clients:>3} client(s): {rate:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ops)  \
         cpu/op: server {:>3.0} µs, agents {:>3.0} µs, clients {:>3.0} µs; UDP datagrams/op {:.1}",
        quantile(latencies, 0.5).as_secs_f64() * 1000.0,
        quantile(latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.len(),
        cpu.servers,
        cpu.agents,
        cpu.clients,
        cpu.datagrams,
    );
}

/// The processes whose CPU a phase of the small workload is charged to:
/// the servers (the console, or etcd's members) and ringwatch's agents.
struct CpuMeter {
    servers: Vec<u32>,
    agents: Vec<u32>,
}

/// CPU time so far of the servers, the agents and this process, and the
/// UDP datagrams the machine delivered.
#[derive(Clone, Copy)]
struct CpuTotals {
    servers: Duration,
    agents: Duration,
    clients: Duration,
    datagrams: u64,
}

/// CPU per operation, microseconds, and UDP datagrams per operation (0
/// over TCP: etcd).
struct CpuPerOp {
    servers: f64,
    agents: f64,
    clients: f64,
    datagrams: f64,
}

impl CpuMeter {
    fn totals(&self) -> CpuTotals {
        let cpu = |pids: &[u32]| pids.iter().filter_map(|pid| procfs::read(*pid)).map(|reading| reading.cpu).sum();
        CpuTotals {
            servers: cpu(&self.servers),
            agents: cpu(&self.agents),
            clients: cpu(&[std::process::id()]),
            datagrams: procfs::udp_counters().map_or(0, |udp| udp.in_datagrams),
        }
    }

    /// CPU per op since `start`, over `ops` operations.
    fn per_op(&self, start: CpuTotals, ops: usize) -> CpuPerOp {
        let end = self.totals();
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let (ops, datagrams) = (ops.max(1) as f64, end.datagrams.saturating_sub(start.datagrams) as f64);
        let micros = |from: Duration, to: Duration| to.saturating_sub(from).as_secs_f64() * 1e6 / ops;
        CpuPerOp {
            servers: micros(start.servers, end.servers),
            agents: micros(start.agents, end.agents),
            clients: micros(start.clients, end.clients),
            datagrams: datagrams / ops,
        }
    }
}

/// The keys each client overwrites, of those it stored: every client
/// stores far more than this in its put round.
const OVERWRITTEN_KEYS: usize = 100;

async fn small(target: &Target, meter: &CpuMeter, duration: Duration) {
    let value = Arc::new(vec![0x5a; 4096]);
    for clients in [1, 64] {
        let bytes = value.clone();
        let cpu = meter.totals();
        let (rate, latencies) = run_clients(target, clients, duration, move |client, c, n| {
            let bytes = bytes.clone();
            async move { put(&client, &format!("small/{c}/{n}"), &bytes).await }
        })
        .await;
        report("ringwatch put 4 KiB", clients, rate, &latencies, meter.per_op(cpu, latencies.len()));
        // Puts over existing keys: each writes its intent first.
        let bytes = value.clone();
        let cpu = meter.totals();
        let (rate, latencies) = run_clients(target, clients, duration, move |client, c, n| {
            let bytes = bytes.clone();
            async move { put(&client, &format!("small/{c}/{}", n % OVERWRITTEN_KEYS), &bytes).await }
        })
        .await;
        report("ringwatch overwrite 4 KiB", clients, rate, &latencies, meter.per_op(cpu, latencies.len()));
        let cpu = meter.totals();
        let (rate, latencies) = run_clients(target, clients, duration, move |client, c, n| async move {
            // The first key this client stored in the put round.
            let _ = n;
            assert_eq!(get(&client, &format!("small/{c}/0")).await, 4096);
        })
        .await;
        report("ringwatch get 4 KiB", clients, rate, &latencies, meter.per_op(cpu, latencies.len()));
    }
    #[cfg(feature = "etcd")]
    etcd_small(duration).await;
}

#[cfg(feature = "etcd")]
async fn etcd_small(duration: Duration) {
    let sandbox = Sandbox::new("bench-data-etcd");
    {
        let server = ringwatch_tests::EtcdServer::start_in(&sandbox.dir("etcd"), ringwatch_tests::EtcdData::Disk);
        let meter = CpuMeter { servers: server.pid().into_iter().collect(), agents: Vec::new() };
        etcd_workload("etcd", &[server.endpoint()], &meter, duration).await;
    }
    // The like-for-like comparison for three copies: three members, every
    // put durable on a quorum of them before it is answered.
    let cluster = ringwatch_tests::EtcdCluster::start(&sandbox.dir("etcd-cluster"), 3);
    let meter = CpuMeter { servers: cluster.pids(), agents: Vec::new() };
    etcd_workload("etcd×3", &cluster.endpoints(), &meter, duration).await;
}

/// The small-object workload against etcd at `endpoints`, reported as
/// `label`: each client connects to all of them, as etcd's clients do.
#[cfg(feature = "etcd")]
async fn etcd_workload(label: &str, endpoints: &[String], meter: &CpuMeter, duration: Duration) {
    let value = vec![0x5a; 4096];
    for clients in [1, 64] {
        let mut tasks = Vec::new();
        let cpu = meter.totals();
        let started = Instant::now();
        for c in 0..clients {
            let kv = etcd_client::Client::connect(endpoints, None).await.unwrap().kv_client();
            let value = value.clone();
            tasks.push(tokio::spawn(timed(started, duration, move |n| {
                let (mut kv, value) = (kv.clone(), value.clone());
                async move {
                    kv.put(format!("small/{c}/{n}"), value, None).await.unwrap();
                }
            })));
        }
        let (rate, all) = gather(started, tasks).await;
        report(&format!("{label} put 4 KiB"), clients, rate, &all, meter.per_op(cpu, all.len()));
        let mut tasks = Vec::new();
        let cpu = meter.totals();
        let started = Instant::now();
        for c in 0..clients {
            let kv = etcd_client::Client::connect(endpoints, None).await.unwrap().kv_client();
            tasks.push(tokio::spawn(timed(started, duration, move |_| {
                let mut kv = kv.clone();
                async move {
                    kv.get(format!("small/{c}/0"), None).await.unwrap();
                }
            })));
        }
        let (rate, all) = gather(started, tasks).await;
        report(&format!("{label} get 4 KiB"), clients, rate, &all, meter.per_op(cpu, all.len()));
    }
}

async fn large(target: &Target, sandbox: &Sandbox, rounds: usize) {
    const MB: f64 = 67.108_864;
    let bytes: Vec<u8> = (0..64usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let client = AdminClient::connect(target).await.unwrap();
    let (mut puts, mut gets, mut dds, mut loopbacks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds.max(1) {
        let key = format!("large/64MiB-{round}");
        let at = Instant::now();
        put(&client, &key, &bytes).await;
        puts.push(MB / at.elapsed().as_secs_f64());
        let at = Instant::now();
        assert_eq!(get(&client, &key).await, bytes.len());
        gets.push(MB / at.elapsed().as_secs_f64());
        let file = sandbox.path().join("dd.out");
        let at = Instant::now();
        let dd = std::process::Command::new("dd")
            .args(["if=/dev/zero", &format!("of={}", file.display()), "bs=1M", "count=64", "conv=fsync"])
            .output()
            .unwrap();
        assert!(dd.status.success());
        dds.push(MB / at.elapsed().as_secs_f64());
        std::fs::remove_file(&file).unwrap();
        loopbacks.push(MB / loopback_tcp(&bytes));
        let last = |figures: &Vec<f64>| figures.last().copied().unwrap_or_default();
        println!(
            "round {}: ringwatch put 64 MiB (3 replicas) {:.0} MB/s, get {:.0} MB/s; dd with fsync {:.0} MB/s; TCP over loopback {:.0} MB/s",
            round + 1,
            last(&puts),
            last(&gets),
            last(&dds),
            last(&loopbacks),
        );
    }
    let median = |figures: &mut Vec<f64>| {
        figures.sort_by(f64::total_cmp);
        figures[figures.len() / 2]
    };
    println!("ringwatch put 64 MiB (3 replicas): {:.0} MB/s", median(&mut puts));
    println!("ringwatch get 64 MiB: {:.0} MB/s", median(&mut gets));
    println!("dd 64 MiB with fsync: {:.0} MB/s", median(&mut dds));
    println!("TCP over loopback, 64 MiB: {:.0} MB/s", median(&mut loopbacks));
}

/// Seconds to send `bytes` over a loopback TCP connection to a reader in
/// another thread: the floor of what the network costs on this host (one
/// copy each way, no encryption).
fn loopback_tcp(bytes: &[u8]) -> f64 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let len = bytes.len();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = vec![0; 1 << 20];
        let mut got = 0;
        while got < len {
            let read = stream.read(&mut buf).unwrap();
            assert!(read > 0, "the loopback connection closed early");
            got += read;
        }
    });
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let at = Instant::now();
    stream.write_all(bytes).unwrap();
    reader.join().unwrap();
    at.elapsed().as_secs_f64()
}

fn repair(runtime: &tokio::runtime::Runtime, target: &Target, fleet: &mut Fleet, gib: u64) {
    let objects = gib * 16;
    let bytes: Vec<u8> = (0..64usize << 20).map(|i| (i * 13 % 251) as u8).collect();
    runtime.block_on(async {
        let client = AdminClient::connect(target).await.unwrap();
        for i in 0..objects {
            put(&client, &format!("repair/{i}"), &bytes).await;
        }
    });
    let status = fleet.console.status();
    let victim = status
        .nodes
        .iter()
        .filter(|node| node.name != PROBE)
        .max_by_key(|node| node.name.clone())
        .unwrap()
        .name
        .clone();
    let raw: serde_json::Value = serde_json::from_str(&status.raw).unwrap();
    let held = raw["nodes"].as_array().unwrap().iter().find(|n| n["name"] == victim.as_str()).unwrap()["data_bytes"]
        .as_u64()
        .unwrap();
    println!("{objects} objects of 64 MiB stored; {victim} holds {:.0} MiB", held as f64 / 1_048_576.0);
    let survivors: Vec<String> =
        status.nodes.iter().map(|node| node.name.clone()).filter(|name| *name != victim && name != PROBE).collect();
    // Idle: the same sampling for a few seconds before the kill.
    let mut idle = Heartbeats::default();
    let idle_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < idle_until {
        if let Ok(status) = fleet.console.status_json() {
            idle.sample(&status, &survivors);
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let killed = Instant::now();
    fleet.kill_host(&victim);
    let mut failed = None;
    let mut repaired = None;
    let mut during = Heartbeats::default();
    let mut probe_killed: Option<Instant> = None;
    let mut probe_failed = None;
    let mut repair_seen = false;
    let mut seen_under = false;
    let mut failed_at: Option<Instant> = None;
    let mut while_copying = Heartbeats::default();
    while repaired.is_none() || (probe_killed.is_some() && probe_failed.is_none()) {
        assert!(killed.elapsed() < Duration::from_secs(1800), "no repair within 30 minutes");
        let Ok(status) = fleet.console.status_json() else {
            std::thread::sleep(SAMPLE_EVERY);
            continue;
        };
        let raw: serde_json::Value = serde_json::from_str(&status.raw).unwrap_or_default();
        if failed.is_none() && status.node(&victim).is_some_and(|node| node.state == NodeState::Failed) {
            failed = Some(killed.elapsed());
            failed_at = Some(Instant::now());
        }
        // A failed node's copies still count for the repair delay; the
        // repair is under way once they no longer do and until every
        // object has its copies again. (`repair_bytes_per_sec` is only
        // reported when a repair round ends.)
        let under = raw["data"]["under_replicated"].as_u64().unwrap_or(0);
        if under > 0 {
            seen_under = true;
        }
        let copying = under > 0
            && repaired.is_none()
            && failed_at.is_some_and(|at: Instant| at.elapsed() >= REPAIR_DELAY + Duration::from_millis(500));
        if failed.is_some() && repaired.is_none() {
            during.sample(&status, &survivors);
            if copying {
                repair_seen = true;
                while_copying.sample(&status, &survivors);
            }
        }
        if copying && probe_killed.is_none() {
            fleet.kill_host(PROBE);
            probe_killed = Some(Instant::now());
        }
        if let Some(at) = probe_killed
            && probe_failed.is_none()
            && status.node(PROBE).is_some_and(|node| node.state == NodeState::Failed)
        {
            probe_failed = Some((at.elapsed(), repaired.is_none()));
        }
        if failed.is_some()
            && seen_under
            && repaired.is_none()
            && raw["data"]["under_replicated"] == 0
            && raw["data"]["unavailable"] == 0
        {
            repaired = Some(killed.elapsed());
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let failed = failed.unwrap_or_default();
    let repaired = repaired.unwrap_or_default();
    for line in fleet.console.log().lines().filter(|line| line.contains("repair")) {
        println!("console: {line}");
    }
    let copying = repaired.saturating_sub(failed).as_secs_f64();
    println!(
        "kill -9 → failed {:.1} s; → every object back to 3 copies {:.1} s ({:.1} s after the failure, incl. the 5 s repair delay); {:.0} MB/s over the copy",
        failed.as_secs_f64(),
        repaired.as_secs_f64(),
        copying,
        held as f64 / 1e6 / (copying - 5.0).max(0.001)
    );
    println!("heartbeats of the {} surviving node(s), status sampled every {SAMPLE_EVERY:?}:", survivors.len());
    println!("  idle, 5 s before the kill:  {idle}");
    println!("  from `failed` to repaired:  {during}");
    println!("  of which while copying:     {while_copying}");
    if !repair_seen {
        println!("  (no sample saw the repair copying: it finished between samples)");
    }
    match probe_failed {
        Some((detected, during_repair)) => println!(
            "failure detection: victim kill -9 → failed {:.2} s (idle); probe kill -9 → failed {:.2} s ({})",
            failed.as_secs_f64(),
            detected.as_secs_f64(),
            if during_repair { "while the repair copied" } else { "the repair ended first" }
        ),
        None => println!("failure detection during the repair: not measured (the probe was not killed)"),
    }
}

/// The extra agent of `--mode repair`: cordoned, so it holds no data; killed
/// while the repair copies, to time failure detection under repair load.
const PROBE: &str = "probe";
/// The console's repair delay (README.md, "Data"): a failed node's copies
/// count for this long after `failed`; the copying starts after it.
const REPAIR_DELAY: Duration = Duration::from_secs(5);
/// How often `--mode repair` samples `status`.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// What the sampled `status` documents said of the surviving nodes'
/// heartbeats.
#[derive(Debug, Default)]
struct Heartbeats {
    samples: u64,
    /// Samples in which some survivor was not `alive`, and the states seen.
    not_alive: u64,
    states: std::collections::BTreeSet<String>,
    max_phi: f64,
    phis: Vec<f64>,
    max_last_seen_ms: u64,
}

impl Heartbeats {
    fn sample(&mut self, status: &ringwatch_tests::status::Status, survivors: &[String]) {
        self.samples += 1;
        let mut all_alive = true;
        for name in survivors {
            let Some(node) = status.node(name) else { continue };
            if node.state != NodeState::Alive {
                all_alive = false;
                self.states.insert(format!("{name} {:?}", node.state));
            }
            if let Some(phi) = node.phi {
                self.max_phi = self.max_phi.max(phi);
                self.phis.push(phi);
            }
            self.max_last_seen_ms = self.max_last_seen_ms.max(node.last_seen_ms.unwrap_or(0));
        }
        if !all_alive {
            self.not_alive += 1;
        }
    }
}

impl std::fmt::Display for Heartbeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut phis = self.phis.clone();
        phis.sort_by(f64::total_cmp);
        let p99 = phis.get((phis.len() * 99 / 100).min(phis.len().saturating_sub(1))).copied().unwrap_or(0.0);
        write!(
            f,
            "{} samples, {} with a survivor not alive{}; phi max {:.2}, p99 {:.2}; longest since a heartbeat {} ms",
            self.samples,
            self.not_alive,
            if self.states.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.states.iter().cloned().collect::<Vec<_>>().join(", "))
            },
            self.max_phi,
            p99,
            self.max_last_seen_ms
        )
    }
}
