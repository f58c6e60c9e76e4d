//! A real etcd for the tests of a highly available group of consoles: the
//! `etcd` binary (Debian's `etcd-server`; `.ci/run` installs it) on
//! 127.0.0.1 with ports of its own and its own data dir, killed when the
//! test ends; and [`TcpRelay`], a switchable TCP relay that partitions one
//! console from etcd while the others still reach it.
//!
//! A missing `etcd` fails the test that needs it, saying how to install it:
//! the suite built with the `etcd` feature is meant to run against it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tempfile::TempDir;

use crate::STARTUP;
use crate::poll::{self, Step};
use crate::process::{Proc, Signal};

/// Set to the `etcd` binary to use instead of the one on `PATH`.
pub const ETCD_BIN_ENV: &str = "ETCD_BIN";

/// How many times a start is tried with fresh ports when etcd finds one
/// taken (ports are found free, released, then given to etcd: another
/// process may take one in between).
const START_ATTEMPTS: usize = 5;

/// How often a starting etcd is asked whether it is healthy.
const HEALTH_POLL: Duration = Duration::from_millis(50);

/// TLS for etcd's client port.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Its PEM server certificate (with `127.0.0.1` among its names).
    pub cert: PathBuf,
    /// Its PEM key.
    pub key: PathBuf,
    /// When set, etcd requires client certificates signed by this PEM CA.
    pub client_ca: Option<PathBuf>,
}

/// The ports one etcd listens on.
#[derive(Debug, Clone, Copy)]
struct Ports {
    /// Clients (gRPC).
    client: u16,
    /// Peers (unused by a single member, but it must listen somewhere).
    peer: u16,
    /// Plain-HTTP `/health`, also when clients speak TLS.
    metrics: u16,
}

impl Ports {
    fn free() -> Self {
        Self { client: free_port(), peer: free_port(), metrics: free_port() }
    }

    /// Where the other members reach this one.
    fn peer_url(self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }
}

/// A port nothing listens on right now: bound on 127.0.0.1:0, read, and
/// released.
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot bind 127.0.0.1:0 to find a free port: {err}"))
}

/// Where an etcd keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdData {
    /// In memory (a tmpfs, `/dev/shm`, where the machine has one), as
    /// etcd's own and Kubernetes' integration tests run it: etcd fsyncs
    /// its log and database on every commit, and on a disk that the
    /// tests' agents are filling its lease renewals wait behind those
    /// fsyncs for a second and more, long enough to depose a leader whose
    /// lease is 2 s. The tests are about what the consoles do, not about
    /// how fast this machine's disk is.
    Memory,
    /// On disk, under the test's directory: for the benchmarks, which
    /// compare against etcd as a team runs it.
    Disk,
}

/// An etcd member, killed (SIGKILL) when dropped: a single-member etcd,
/// or one member of an [`EtcdCluster`].
#[derive(Debug)]
pub struct EtcdServer {
    /// The process while it runs.
    proc: Option<Proc>,
    /// Its directory: `etcd.log`, and `data/` unless the data is in
    /// memory.
    dir: PathBuf,
    /// Its data directory, kept across restarts.
    data: PathBuf,
    /// The tmpfs directory holding `data` when it is in memory, removed
    /// when the server is dropped.
    _memory: Option<TempDir>,
    /// Its ports, kept across restarts (clients know them).
    ports: Ports,
    /// TLS on the client port.
    tls: Option<ServerTls>,
    /// Its member name.
    name: String,
    /// The cluster it starts in, as `--initial-cluster` says it:
    /// `name=peer-url` for every member, itself included.
    cluster: String,
}

impl EtcdServer {
    /// Starts etcd with its data in memory ([`EtcdData::Memory`]) and its
    /// output in `dir/etcd.log`, and waits until it is healthy.
    ///
    /// # Panics
    /// When `etcd` is not installed or does not become healthy, with its
    /// log.
    #[track_caller]
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, EtcdData::Memory, None)
    }

    /// [`EtcdServer::start`] with the data where `data` says (in
    /// `dir/data` on disk).
    ///
    /// # Panics
    /// As [`EtcdServer::start`].
    #[track_caller]
    pub fn start_in(dir: &Path, data: EtcdData) -> Self {
        Self::start_with(dir, data, None)
    }

    /// [`EtcdServer::start`] with TLS on the client port.
    ///
    /// # Panics
    /// As [`EtcdServer::start`].
    #[track_caller]
    pub fn start_tls(dir: &Path, tls: ServerTls) -> Self {
        Self::start_with(dir, EtcdData::Memory, Some(tls))
    }

    #[track_caller]
    fn start_with(dir: &Path, data: EtcdData, tls: Option<ServerTls>) -> Self {
        let mut members = start_members(&[dir.to_path_buf()], data, tls.as_ref());
        members.pop().unwrap_or_else(|| panic!("a cluster of one started without its member"))
    }

    /// Its client address, `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.ports.client)
    }

    /// Its process id while it runs (for a bench's CPU figures).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Its client address as a socket address (for a [`TcpRelay`]).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.client))
    }

    /// The store address a console takes: `etcd://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoint())
    }

    /// Its Prometheus metrics (`/metrics` on the plain-HTTP metrics port).
    ///
    /// # Errors
    /// When etcd does not answer.
    pub fn metrics(&self) -> std::io::Result<String> {
        http_get(self.ports.metrics, "/metrics")
    }

    /// Kills etcd (SIGKILL); its data stays for [`EtcdServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Starts etcd again on the same ports and data, and waits until it is
    /// healthy.
    ///
    /// # Panics
    /// When it does not come back (a port was taken meanwhile, say).
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        match self.launch() {
            Ok(()) => {}
            Err(Launch::PortTaken(log)) => panic!("etcd could not restart: one of its ports was taken\n{log}"),
            Err(Launch::Failed(message)) => panic!("{message}"),
        }
    }

    /// Freezes etcd (SIGSTOP): it holds its connections and answers
    /// nothing, as a stalled or partitioned server.
    ///
    /// # Panics
    /// When it is not running.
    #[track_caller]
    pub fn freeze(&mut self) {
        self.running().signal(Signal::Stop);
    }

    /// Lets a frozen etcd run again (SIGCONT).
    ///
    /// # Panics
    /// When it is not running.
    #[track_caller]
    pub fn thaw(&mut self) {
        self.running().signal(Signal::Cont);
    }

    /// The last lines of its log, framed for a failure message.
    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map_or_else(|| "(etcd is not running)".to_string(), Proc::log_tail)
    }

    #[track_caller]
    fn running(&mut self) -> &mut Proc {
        self.proc.as_mut().unwrap_or_else(|| panic!("etcd is not running"))
    }

    fn launch(&mut self) -> Result<(), Launch> {
        self.spawn();
        self.await_healthy()
    }

    /// Starts the process, not waiting for it.
    fn spawn(&mut self) {
        let Ports { client, metrics, .. } = self.ports;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = self.ports.peer_url();
        let mut command = Command::new(etcd_binary());
        command
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", self.cluster))
            .arg("--initial-cluster-state=new")
            .arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            .arg("--logger=zap");
        if let Some(tls) = &self.tls {
            command.arg(format!("--cert-file={}", tls.cert.display())).arg(format!("--key-file={}", tls.key.display()));
            if let Some(ca) = &tls.client_ca {
                command.arg("--client-cert-auth").arg(format!("--trusted-ca-file={}", ca.display()));
            }
        }
        self.proc = Some(Proc::spawn(format!("etcd {}", self.name), command, &self.dir.join("etcd.log")));
    }

    /// Waits until the process just spawned says it is healthy (a member
    /// of a cluster: once a quorum of members runs).
    fn await_healthy(&mut self) -> Result<(), Launch> {
        let metrics = self.ports.metrics;
        let Some(mut proc) = self.proc.take() else {
            return Err(Launch::Failed("etcd was not started".into()));
        };
        let healthy = poll::until(STARTUP, HEALTH_POLL, || {
            if !proc.is_running() {
                return Step::Abort("it exited".into());
            }
            match health(metrics) {
                Ok(true) => Step::Done(()),
                Ok(false) => Step::Pending("not healthy yet".into()),
                Err(err) => Step::Pending(err.to_string()),
            }
        });
        match healthy {
            Ok(()) => {
                self.proc = Some(proc);
                Ok(())
            }
            Err(failure) => {
                proc.kill();
                let log = proc.log_tail();
                if proc.log().contains("address already in use") {
                    Err(Launch::PortTaken(log))
                } else {
                    Err(Launch::Failed(format!("etcd did not become healthy: {failure}\n{log}")))
                }
            }
        }
    }
}

/// A cluster of etcd members on 127.0.0.1, each in a directory of its own
/// and killed when dropped: what a team runs when its data must survive a
/// member's loss, and so the like-for-like comparison for a store that
/// keeps three copies (`bench_data`).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// Starts `size` members under `dir` (`dir/m0`, `dir/m1`, ...), their
    /// data on disk, and waits until every one is healthy.
    ///
    /// # Panics
    /// When `etcd` is not installed or the cluster does not become
    /// healthy, with the logs.
    #[track_caller]
    pub fn start(dir: &Path, size: usize) -> Self {
        let dirs: Vec<PathBuf> = (0..size).map(|index| member_dir(dir, index)).collect();
        Self { members: start_members(&dirs, EtcdData::Disk, None) }
    }

    /// The members' client addresses, `127.0.0.1:PORT` each.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    /// The process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(EtcdServer::pid).collect()
    }
}

/// Starts one member of a new cluster in each of `dirs` and waits until
/// every one is healthy, trying fresh ports when etcd finds one taken.
///
/// # Panics
/// When `etcd` is not installed or the members do not become healthy,
/// with the log.
#[track_caller]
fn start_members(dirs: &[PathBuf], data: EtcdData, tls: Option<&ServerTls>) -> Vec<EtcdServer> {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let ports: Vec<Ports> = dirs.iter().map(|_| Ports::free()).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(index, ports)| format!("m{index}={}", ports.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<EtcdServer> = dirs
            .iter()
            .zip(ports)
            .enumerate()
            .map(|(index, (dir, ports))| {
                let (data, memory) = data_dir(dir, data);
                EtcdServer {
                    proc: None,
                    dir: dir.clone(),
                    data,
                    _memory: memory,
                    ports,
                    tls: tls.cloned(),
                    name: format!("m{index}"),
                    cluster: cluster.clone(),
                }
            })
            .collect();
        // All at once: a member of a new cluster is healthy only once a
        // quorum of the others runs.
        for member in &mut members {
            member.spawn();
        }
        match members.iter_mut().try_for_each(EtcdServer::await_healthy) {
            Ok(()) => return members,
            Err(Launch::PortTaken(log)) => last = log,
            Err(Launch::Failed(message)) => panic!("{message}"),
        }
    }
    panic!("etcd found its ports taken {START_ATTEMPTS} times; last attempt:\n{last}")
}

/// Where a member in `dir` keeps its data: `dir/data`, or a new directory
/// on the tmpfs (kept alive by the returned guard) for [`EtcdData::Memory`]
/// where the machine has one.
#[track_caller]
fn data_dir(dir: &Path, data: EtcdData) -> (PathBuf, Option<TempDir>) {
    let tmpfs = Path::new("/dev/shm");
    if data == EtcdData::Disk || !tmpfs.is_dir() {
        return (dir.join("data"), None);
    }
    let memory = tempfile::Builder::new()
        .prefix("ringwatch-test-etcd-")
        .tempdir_in(tmpfs)
        .unwrap_or_else(|err| panic!("cannot make a directory for etcd's data in {}: {err}", tmpfs.display()));
    (memory.path().join("data"), Some(memory))
}

/// `dir/m<index>`, made if missing.
#[track_caller]
fn member_dir(dir: &Path, index: usize) -> PathBuf {
    let member = dir.join(format!("m{index}"));
    std::fs::create_dir_all(&member).unwrap_or_else(|err| panic!("cannot make {}: {err}", member.display()));
    member
}

/// Why a start failed.
enum Launch {
    /// A port was taken: try others.
    PortTaken(String),
    /// Anything else: the message.
    Failed(String),
}

/// The `etcd` binary: [`ETCD_BIN_ENV`], or `etcd` on `PATH`.
///
/// # Panics
/// When there is none, saying how to install it.
#[track_caller]
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(ETCD_BIN_ENV) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "etcd is not installed: there is no `etcd` on PATH and {ETCD_BIN_ENV} is not set; install it with `apt-get install etcd-server` (.ci/run does) to run the etcd tests"
            )
        })
}

/// Whether etcd's `/health` on `port` says it is healthy.
fn health(port: u16) -> std::io::Result<bool> {
    Ok(http_get(port, "/health")?.contains("\"health\":\"true\""))
}

/// `GET path` on 127.0.0.1:`port` over HTTP/1.0: the whole answer.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// A TCP relay on 127.0.0.1 in front of one address, which a test can cut:
/// put it between one console and etcd to partition that console alone.
#[derive(Debug)]
pub struct TcpRelay {
    /// Where clients connect.
    addr: SocketAddr,
    /// Shared with the relay's threads.
    shared: Arc<RelayShared>,
    /// The accepting thread.
    accept: Option<JoinHandle<()>>,
}

/// The relay's switches.
#[derive(Debug, Default)]
struct RelayShared {
    /// Nothing passes either way while set.
    partitioned: AtomicBool,
    /// Bumped by [`TcpRelay::heal`]: connections of an older generation
    /// are closed.
    generation: AtomicU64,
    /// Ends every thread.
    stop: AtomicBool,
}

/// How long a relay thread blocks before it looks at the switches again.
const RELAY_POLL: Duration = Duration::from_millis(20);

impl TcpRelay {
    /// Starts relaying connections to `target`.
    ///
    /// # Panics
    /// When 127.0.0.1:0 cannot be bound.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|err| panic!("cannot bind the relay: {err}"));
        let addr = listener.local_addr().unwrap_or_else(|err| panic!("the relay has no address: {err}"));
        listener.set_nonblocking(true).unwrap_or_else(|err| panic!("cannot make the relay non-blocking: {err}"));
        let shared = Arc::new(RelayShared::default());
        let accepting = shared.clone();
        let accept = thread::spawn(move || accept_loop(&listener, target, &accepting));
        Self { addr, shared, accept: Some(accept) }
    }

    /// Where clients connect, `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Cuts the link: connections stay open but nothing passes, and new
    /// ones are accepted and hang, as behind a partition.
    pub fn partition(&self) {
        self.shared.partitioned.store(true, Ordering::SeqCst);
    }

    /// Mends the link: the connections the partition held are closed (their
    /// clients connect again) and traffic passes.
    pub fn heal(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.partitioned.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, shared: &Arc<RelayShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let generation = shared.generation.load(Ordering::SeqCst);
                let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
                    continue;
                };
                let (Ok(client_in), Ok(upstream_in)) = (client.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                for (from, to) in [(client_in, upstream), (upstream_in, client)] {
                    let shared = shared.clone();
                    thread::spawn(move || pump(from, to, &shared, generation));
                }
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => thread::sleep(RELAY_POLL),
            Err(_) => thread::sleep(RELAY_POLL),
        }
    }
}

/// Copies `from` to `to` while the relay passes traffic; closes both when
/// the relay stops or heals a partition this connection lived through.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &RelayShared, generation: u64) {
    let _ = from.set_nonblocking(false);
    let _ = from.set_read_timeout(Some(RELAY_POLL));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if shared.stop.load(Ordering::SeqCst) || shared.generation.load(Ordering::SeqCst) != generation {
            break;
        }
        if shared.partitioned.load(Ordering::SeqCst) {
            thread::sleep(RELAY_POLL);
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Read while the partition began: held back, then dropped
                // with the connection when the partition heals.
                while shared.partitioned.load(Ordering::SeqCst) && !shared.stop.load(Ordering::SeqCst) {
                    thread::sleep(RELAY_POLL);
                }
                if shared.generation.load(Ordering::SeqCst) != generation || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_passes_then_partitions_then_heals() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        thread::spawn(move || {
            for stream in echo.incoming() {
                let Ok(mut stream) = stream else { return };
                thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let relay = TcpRelay::start(target);
        let mut client = TcpStream::connect(relay.addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 5];
        client.write_all(b"hello").unwrap();
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");

        relay.partition();
        // Absence can only be observed by waiting: a short read timeout.
        client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        client.write_all(b"lost?").unwrap();
        assert!(client.read(&mut buf).is_err(), "nothing passes a partition");

        relay.heal();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The connection the partition held is closed…
        assert!(matches!(client.read(&mut buf), Ok(0) | Err(_)));
        // …and a new one passes.
        let mut again = TcpStream::connect(relay.addr).unwrap();
        again.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        again.write_all(b"again").unwrap();
        again.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"again");
    }
}
