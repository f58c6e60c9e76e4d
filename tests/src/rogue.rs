//! Hand-written peers for the hostile-peer tests: clients that speak QUIC
//! (and, for some, the wire protocol) without being a `ringwatch-agent`, to
//! do what a real agent never would (ARCHITECTURE.md, "Nothing received is
//! trusted").
//!
//! - [`Rogue`]: a client holding a joined agent's own credentials (its data
//!   dir's `agent.key`, `agent.crt`, `ca.crt`): it says hello, keeps its
//!   node alive with heartbeats, sends whatever frames the test writes, and
//!   records every frame the console sends back.
//! - [`join_config`], [`wrong_alpn_config`], [`foreign_cert_config`]: the
//!   TLS configs of strangers — a joining agent without a certificate, a
//!   client of another protocol, a client certified by another cluster.
//! - [`Burst`]: many concurrent handshakes from one endpoint, each holding
//!   its connection open with a half-sent first frame.
//! - [`flood`]: many connection attempts, one after another in waves, each
//!   refused by the console.
//!
//! Every client runs on a tokio runtime of its own, so the (synchronous)
//! tests drive it with plain calls; dropping it closes its connections.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream};
use ringwatch_agent::credentials::Credentials;
use ringwatch_shared::codec::{self, FRAME_HEADER_LEN, MAX_FRAME_LEN};
use ringwatch_shared::names::InstanceId;
use ringwatch_shared::protocol::{
    AgentFrame, CONSOLE_SERVER_NAME, ConsoleFrame, Datagram, FromConsole, Heartbeat, Hello, InstanceReport,
    InstanceState, PROTOCOL_VERSION,
};
use ringwatch_shared::token::JoinToken;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::poll::{self, Step};

/// How often a [`Rogue`] sends a heartbeat: what its hello announces, and
/// what keeps its node `alive`.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long the console has to welcome a [`Rogue`], and how long one frame
/// may take to leave it: liveness bounds, never speed assertions.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often [`Rogue::wait_for_frame`] looks at what arrived.
const FRAME_POLL: Duration = Duration::from_millis(20);

/// A client with a joined agent's own certificate, written by hand: it says
/// hello like an agent, then sends what the test tells it to. Dropping it
/// closes its connection.
pub struct Rogue {
    /// The node name the console welcomed it as.
    node: String,
    /// Its connection.
    connection: Connection,
    /// The control stream's sending half.
    send: SendStream,
    /// What the console sent.
    received: Arc<Mutex<Received>>,
    /// The reader and the heartbeats.
    _tasks: Vec<AbortOnDropHandle<()>>,
    /// Its endpoint.
    _endpoint: Endpoint,
    /// Declared last: dropped after everything that runs on it.
    runtime: Runtime,
}

impl fmt::Debug for Rogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rogue").field("node", &self.node).finish_non_exhaustive()
    }
}

/// Frames from the console, and why its stream ended.
#[derive(Debug, Default)]
struct Received {
    frames: Vec<ConsoleFrame>,
    ended: Option<String>,
}

impl Rogue {
    /// Connects to `console` with the credentials a real agent stored in
    /// `agent_dir` when it joined, says hello and waits for the welcome;
    /// heartbeats then go every [`HEARTBEAT`]. Sends nothing else (not even
    /// an inventory) until told.
    ///
    /// # Errors
    /// When the data dir holds no credentials, or the console does not
    /// welcome the client.
    pub fn connect(console: SocketAddr, agent_dir: &Path) -> anyhow::Result<Self> {
        let credentials = Credentials::load(agent_dir)?.ok_or_else(|| {
            anyhow::anyhow!("\"{}\" holds no credentials: let a real agent join with it first", agent_dir.display())
        })?;
        let client = credentials.client_config()?;
        let runtime = runtime()?;
        let (endpoint, connection, send, recv, node) = runtime.block_on(async {
            let endpoint = ringwatch_net::endpoint::client_endpoint(console)?;
            let connection = endpoint.connect_with(client, console, CONSOLE_SERVER_NAME)?.await?;
            let (mut send, mut recv) = connection.open_bi().await?;
            let hello = AgentFrame::Hello(Hello {
                agent_version: "rogue".into(),
                heartbeat_interval_ms: u32::try_from(HEARTBEAT.as_millis()).unwrap_or(u32::MAX),
                weight: 1,
            });
            codec::write_frame(&mut send, &hello).await?;
            let answer =
                tokio::time::timeout(ANSWER_TIMEOUT, codec::read_frame::<FromConsole, _>(&mut recv, MAX_FRAME_LEN))
                    .await
                    .map_err(|_| anyhow::anyhow!("the console did not answer the hello"))??
                    .map(|message| message.frame);
            let node = match answer {
                Some(ConsoleFrame::Welcome(welcome)) => welcome.node.to_string(),
                other => anyhow::bail!(
                    "the console answered the hello with {other:?} (connection: {:?})",
                    connection.close_reason()
                ),
            };
            anyhow::Ok((endpoint, connection, send, recv, node))
        })?;
        let received = Arc::new(Mutex::new(Received::default()));
        let tasks = vec![
            AbortOnDropHandle::new(runtime.spawn(read_frames(recv, received.clone()))),
            AbortOnDropHandle::new(runtime.spawn(heartbeats(connection.clone()))),
        ];
        Ok(Self { node, connection, send, received, _tasks: tasks, _endpoint: endpoint, runtime })
    }

    /// The node name the console welcomed it as.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Sends one frame on the control stream.
    ///
    /// # Errors
    /// When it cannot be encoded, or the stream fails or does not take it
    /// within a generous deadline.
    pub fn send(&mut self, frame: &AgentFrame) -> anyhow::Result<()> {
        let bytes = codec::encode_frame(frame)?;
        let write = self.send.write_all(&bytes);
        self.runtime
            .block_on(async { tokio::time::timeout(ANSWER_TIMEOUT, write).await })
            .map_err(|_| anyhow::anyhow!("the console did not take a frame of {} bytes", bytes.len()))??;
        Ok(())
    }

    /// Every frame the console sent so far.
    pub fn frames(&self) -> Vec<ConsoleFrame> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).frames.clone()
    }

    /// The `(instance, epoch)` of every stop the console sent so far.
    pub fn stops(&self) -> Vec<(String, u64)> {
        let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
        received
            .frames
            .iter()
            .filter_map(|frame| match frame {
                ConsoleFrame::Stop { instance, epoch, .. } => Some((instance.to_string(), *epoch)),
                _ => None,
            })
            .collect()
    }

    /// Waits up to `timeout` for a frame matching `pred`; returns it.
    ///
    /// # Panics
    /// On timeout, or when the console ends the stream first, with the
    /// frames seen.
    #[track_caller]
    pub fn wait_for_frame(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl FnMut(&ConsoleFrame) -> bool,
    ) -> ConsoleFrame {
        let mut found = self.wait_for_frames(timeout, what, 1, pred);
        found.swap_remove(0)
    }

    /// Waits up to `timeout` until at least `count` frames match `pred`;
    /// returns every match.
    ///
    /// # Panics
    /// On timeout, or when the console ends the stream first, with the
    /// frames seen.
    #[track_caller]
    pub fn wait_for_frames(
        &self,
        timeout: Duration,
        what: &str,
        count: usize,
        mut pred: impl FnMut(&ConsoleFrame) -> bool,
    ) -> Vec<ConsoleFrame> {
        let result = poll::until(timeout, FRAME_POLL, || {
            let received = self.received.lock().unwrap_or_else(PoisonError::into_inner);
            let found: Vec<ConsoleFrame> = received.frames.iter().filter(|frame| pred(frame)).cloned().collect();
            if found.len() >= count.max(1) {
                return Step::Done(found);
            }
            let seen = describe_frames(&received.frames);
            match &received.ended {
                Some(end) => Step::Abort(format!("the console ended the control stream ({end}); frames: {seen}")),
                None => Step::Pending(format!("frames: {seen}")),
            }
        });
        result.unwrap_or_else(|failure| panic!("{} waiting for {what}: {failure}", self.node))
    }

    /// Why the connection closed, if it did.
    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.connection.close_reason()
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.connection.close(0u32.into(), b"rogue done");
    }
}

async fn read_frames(mut recv: RecvStream, received: Arc<Mutex<Received>>) {
    let end = loop {
        match codec::read_frame::<FromConsole, _>(&mut recv, MAX_FRAME_LEN).await {
            Ok(Some(message)) => received.lock().unwrap_or_else(PoisonError::into_inner).frames.push(message.frame),
            Ok(None) => break "the console finished the stream".to_owned(),
            Err(err) => break err.to_string(),
        }
    };
    received.lock().unwrap_or_else(PoisonError::into_inner).ended = Some(end);
}

async fn heartbeats(connection: Connection) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for seq in 1.. {
        tick.tick().await;
        let beat = Datagram::Heartbeat(Heartbeat { seq, cpu_permille: 0, mem_permille: 0 });
        let Ok(datagram) = codec::encode_datagram(&beat) else { return };
        if connection.send_datagram(datagram.into()).is_err() {
            return;
        }
    }
}

/// One frame from the console, shortly: `stop web/0 @3`.
pub fn describe_frame(frame: &ConsoleFrame) -> String {
    match frame {
        ConsoleFrame::Welcome(welcome) => format!("welcome {}", welcome.node),
        ConsoleFrame::JoinGranted(_) => "join granted".to_owned(),
        ConsoleFrame::Refused(refusal) => format!("refused ({:?}: {})", refusal.kind, refusal.reason),
        ConsoleFrame::Assign(assignment) => format!("assign {} @{}", assignment.instance, assignment.epoch),
        ConsoleFrame::Stop { instance, epoch, reason } => format!("stop {instance} @{epoch} ({reason})"),
        ConsoleFrame::Restart { instance, epoch } => format!("restart {instance} @{epoch}"),
        ConsoleFrame::NotLeader { leader } => format!("not the leader (leader: {leader:?})"),
        ConsoleFrame::Renewed { .. } => "certificate renewed".to_owned(),
        ConsoleFrame::RenewalRefused { reason } => format!("renewal refused ({reason})"),
    }
}

fn describe_frames(frames: &[ConsoleFrame]) -> String {
    if frames.is_empty() {
        return "none".to_owned();
    }
    frames.iter().map(describe_frame).collect::<Vec<_>>().join(", ")
}

/// A report of instance `id` (`task/index`) as an agent would send it.
///
/// # Panics
/// When `id` is not an instance id.
#[track_caller]
pub fn report(id: &str, epoch: u64, state: InstanceState, restarts: u32, message: String) -> InstanceReport {
    let instance = InstanceId::parse(id).unwrap_or_else(|err| panic!("{id:?} is not an instance id: {err}"));
    let pid = matches!(state, InstanceState::Running).then_some(1);
    InstanceReport { instance, epoch, state, restarts, pid, last_exit: None, message }
}

/// The bytes of a frame header announcing `len` payload bytes of the
/// current protocol version: what a peer sends before a frame it never
/// finishes, or one larger than the console takes.
pub fn frame_header(len: u32) -> [u8; FRAME_HEADER_LEN] {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&len.to_be_bytes());
    header[4..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    header
}

/// A runtime for a client: two workers, timers and I/O.
fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

/// The TLS config of an agent joining with `token`: no client certificate,
/// the console checked against the CA the token pins.
///
/// # Errors
/// When the token does not parse.
pub fn join_config(token: &str) -> anyhow::Result<quinn::ClientConfig> {
    let token: JoinToken = token.parse()?;
    Ok(ringwatch_net::tls::join_client(token.ca_pin)?)
}

/// A client that trusts the console's CA (`ca_pem`, the console data dir's
/// `ca.crt`) but asks for another application protocol: the console's TLS
/// refuses it at the first flight.
///
/// # Errors
/// When the CA file cannot be read or rustls refuses the config.
pub fn wrong_alpn_config(ca_pem: &Path) -> anyhow::Result<quinn::ClientConfig> {
    let ca = CertificateDer::from_pem_file(ca_pem)
        .map_err(|err| anyhow::anyhow!("cannot read the CA \"{}\": {err}", ca_pem.display()))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(ringwatch_net::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![b"not-ringwatch/0".to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(crypto)?));
    config.transport_config(Arc::new(ringwatch_net::tls::transport()));
    Ok(config)
}

/// A client that trusts the console's CA (`ca_pem`) and presents the admin
/// certificate of another cluster (`other_dir`, a console data dir with
/// `admin.crt` and `admin.key`): the console's TLS refuses it at the
/// client's certificate.
///
/// # Errors
/// When a file cannot be read or rustls refuses the config.
pub fn foreign_cert_config(ca_pem: &Path, other_dir: &Path) -> anyhow::Result<quinn::ClientConfig> {
    let pem_error =
        |path: &Path, err: rustls::pki_types::pem::Error| anyhow::anyhow!("cannot read \"{}\": {err}", path.display());
    let ca = CertificateDer::from_pem_file(ca_pem).map_err(|err| pem_error(ca_pem, err))?;
    let cert_path = other_dir.join("admin.crt");
    let cert = CertificateDer::from_pem_file(&cert_path).map_err(|err| pem_error(&cert_path, err))?;
    let key_path = other_dir.join("admin.key");
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|err| pem_error(&key_path, err))?;
    Ok(ringwatch_net::tls::mutual_client(&ca, &cert, key)?)
}

/// How the connection attempts of a [`Burst`] or a [`flood`] ended.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    /// The handshake completed.
    pub connected: usize,
    /// Turned away before any TLS (a QUIC refusal).
    pub refused: usize,
    /// Closed by the console during or right after the handshake (a TLS
    /// alert, an application close).
    pub closed: usize,
    /// Anything else (a timeout…).
    pub other: usize,
    /// One example of each kind of failure seen, for messages.
    pub examples: Vec<String>,
}

impl Outcomes {
    /// Attempts that ended, one way or another.
    pub fn settled(&self) -> usize {
        self.connected + self.refused + self.closed + self.other
    }

    fn record_error(&mut self, err: &ConnectionError) {
        match err {
            // What quinn's `Incoming::refuse` sends.
            ConnectionError::ConnectionClosed(close)
                if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                self.refused += 1;
            }
            ConnectionError::ConnectionClosed(_) | ConnectionError::ApplicationClosed(_) => self.closed += 1,
            _ => self.other += 1,
        }
        self.example(err.to_string());
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 8 && !self.examples.contains(&text) {
            self.examples.push(text);
        }
    }
}

impl fmt::Display for Outcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connected, {} refused, {} closed, {} other",
            self.connected, self.refused, self.closed, self.other
        )?;
        if !self.examples.is_empty() {
            write!(f, " (e.g. {})", self.examples.join("; "))?;
        }
        Ok(())
    }
}

/// Many concurrent handshakes from one endpoint. Each connection that
/// completes opens the control stream and sends the header of a first
/// frame and half its payload — the most a stranger can make the console
/// hold — then waits until the console closes it or the burst is released.
pub struct Burst {
    /// How they ended so far.
    outcomes: Arc<Mutex<Outcomes>>,
    /// Connections holding their half-sent first frame: now, and the most
    /// at once.
    holding: Arc<Holding>,
    /// Ends every held connection.
    release: CancellationToken,
    /// The attempts.
    tasks: JoinSet<()>,
    /// Their endpoint.
    endpoint: Endpoint,
    /// Declared last: dropped after everything that runs on it.
    runtime: Runtime,
}

impl fmt::Debug for Burst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Burst").field("outcomes", &self.outcomes()).finish_non_exhaustive()
    }
}

impl Burst {
    /// Starts `count` handshakes with `console` at once, all with `config`.
    ///
    /// # Errors
    /// When the runtime or the endpoint cannot be made.
    pub fn start(console: SocketAddr, config: &quinn::ClientConfig, count: usize) -> anyhow::Result<Self> {
        let runtime = runtime()?;
        let endpoint = runtime.block_on(async { ringwatch_net::endpoint::client_endpoint(console) })?;
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let holding = Arc::new(Holding::default());
        let release = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for _ in 0..count {
            let attempt =
                hold_one(endpoint.clone(), config.clone(), console, outcomes.clone(), holding.clone(), release.clone());
            tasks.spawn_on(attempt, runtime.handle());
        }
        Ok(Self { outcomes, holding, release, tasks, endpoint, runtime })
    }

    /// How the attempts ended so far.
    pub fn outcomes(&self) -> Outcomes {
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Connections holding a half-sent first frame now.
    pub fn holding(&self) -> usize {
        self.holding.connections.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Connections holding a half-sent first frame on which the console
    /// has sent nothing for `silence` (looked at again now). Past the
    /// console's idle timeout it keeps nothing of them; the client side
    /// ends only at its own, which QUIC stretches to three probe timeouts
    /// of a round trip estimated during an overloaded handshake — seconds
    /// each on a loaded machine.
    pub fn abandoned(&self, silence: Duration) -> usize {
        let mut connections = self.holding.connections.lock().unwrap_or_else(PoisonError::into_inner);
        connections.values_mut().map(Held::silence).filter(|quiet| *quiet >= silence).count()
    }

    /// The first few connections holding now, for a failure message: how
    /// long, and what QUIC says of each.
    pub fn describe_holding(&self) -> String {
        let mut connections = self.holding.connections.lock().unwrap_or_else(PoisonError::into_inner);
        connections
            .values_mut()
            .take(5)
            .map(|held| {
                let silence = held.silence();
                let stats = held.connection.stats();
                format!(
                    "\n  held {:.1?}, the console silent for {silence:.1?}: rtt {:?}, {} datagrams received, {} sent",
                    held.since.elapsed(),
                    held.connection.rtt(),
                    stats.udp_rx.datagrams,
                    stats.udp_tx.datagrams,
                )
            })
            .collect()
    }

    /// The most connections that held a half-sent first frame at once.
    pub fn peak_holding(&self) -> usize {
        self.holding.peak.load(Ordering::Acquire)
    }

    /// Attempts over: turned away, or connected and then closed (by the
    /// console, or by [`Burst::release`]).
    pub fn finished(&self) -> usize {
        self.holding.finished.load(Ordering::Acquire)
    }

    /// Closes every connection and waits (briefly) for the closes to leave.
    pub fn release(mut self) {
        self.release.cancel();
        self.endpoint.close(0u32.into(), b"burst over");
        let tasks = &mut self.tasks;
        let endpoint = &self.endpoint;
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while tasks.join_next().await.is_some() {}
                endpoint.wait_idle().await;
            })
            .await;
        });
    }
}

/// Connections of a [`Burst`] holding a half-sent first frame, and the
/// attempts that are over.
#[derive(Debug, Default)]
struct Holding {
    /// The most in `connections` at once.
    peak: AtomicUsize,
    finished: AtomicUsize,
    /// The connections holding now, by stable id.
    connections: Mutex<BTreeMap<usize, Held>>,
}

/// A connection holding its half-sent first frame.
#[derive(Debug)]
struct Held {
    connection: Connection,
    /// Since when it holds.
    since: Instant,
    /// Datagrams received from the console, at the last look.
    received: u64,
    /// When that count last changed (or the first look).
    heard: Instant,
}

impl Held {
    /// Looks at the connection again: how long the console has been silent
    /// on it.
    fn silence(&mut self) -> Duration {
        let received = self.connection.stats().udp_rx.datagrams;
        if received != self.received {
            self.received = received;
            self.heard = Instant::now();
        }
        self.heard.elapsed()
    }
}

async fn hold_one(
    endpoint: Endpoint,
    config: quinn::ClientConfig,
    console: SocketAddr,
    outcomes: Arc<Mutex<Outcomes>>,
    holding: Arc<Holding>,
    release: CancellationToken,
) {
    hold(&endpoint, config, console, &outcomes, &holding, &release).await;
    holding.finished.fetch_add(1, Ordering::AcqRel);
}

async fn hold(
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
    console: SocketAddr,
    outcomes: &Mutex<Outcomes>,
    holding: &Holding,
    release: &CancellationToken,
) {
    let connection = match attempt(endpoint, config, console).await {
        Ok(connection) => connection,
        Err(failure) => {
            failure.record(outcomes);
            return;
        }
    };
    outcomes.lock().unwrap_or_else(PoisonError::into_inner).connected += 1;
    if let Ok((mut send, _recv)) = connection.open_bi().await {
        let limit = codec::MAX_FIRST_FRAME_LEN;
        let header = frame_header(u32::try_from(limit).unwrap_or(u32::MAX));
        if send.write_all(&header).await.is_ok() && send.write_all(&vec![0u8; limit / 2]).await.is_ok() {
            let held = Held {
                connection: connection.clone(),
                since: Instant::now(),
                received: connection.stats().udp_rx.datagrams,
                heard: Instant::now(),
            };
            {
                let mut connections = holding.connections.lock().unwrap_or_else(PoisonError::into_inner);
                connections.insert(connection.stable_id(), held);
                holding.peak.fetch_max(connections.len(), Ordering::AcqRel);
            }
            tokio::select! {
                () = release.cancelled() => {}
                _ = connection.closed() => {}
            }
            holding.connections.lock().unwrap_or_else(PoisonError::into_inner).remove(&connection.stable_id());
        }
    }
    connection.close(0u32.into(), b"done");
}

/// Why an attempt did not connect.
enum Failure {
    /// Quinn refused to start it (no more connection ids, a bad address).
    Start(String),
    /// The connection ended.
    Ended(ConnectionError),
}

impl Failure {
    fn record(self, outcomes: &Mutex<Outcomes>) {
        let mut outcomes = outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        match self {
            Self::Ended(err) => outcomes.record_error(&err),
            Self::Start(err) => {
                outcomes.other += 1;
                outcomes.example(err);
            }
        }
    }
}

async fn attempt(endpoint: &Endpoint, config: quinn::ClientConfig, console: SocketAddr) -> Result<Connection, Failure> {
    let connecting =
        endpoint.connect_with(config, console, CONSOLE_SERVER_NAME).map_err(|err| Failure::Start(err.to_string()))?;
    connecting.await.map_err(Failure::Ended)
}

/// How long a [`flood`] attempt whose handshake completed waits for the
/// console to close it before it counts as let in.
const REFUSAL_WAIT: Duration = Duration::from_secs(5);

/// Makes `count` connection attempts to `console`, `wave` at a time, each
/// with the next of `configs` in turn, and returns how they ended. Meant
/// for attempts the console refuses: one whose handshake completes counts
/// as [`Outcomes::connected`] only if the console does not close it within
/// a few seconds.
///
/// # Errors
/// When the runtime or the endpoint cannot be made, or `configs` is empty.
pub fn flood(
    console: SocketAddr,
    configs: &[quinn::ClientConfig],
    count: usize,
    wave: usize,
) -> anyhow::Result<Outcomes> {
    anyhow::ensure!(!configs.is_empty(), "a flood needs at least one client config");
    let runtime = runtime()?;
    runtime.block_on(async {
        let endpoint = ringwatch_net::endpoint::client_endpoint(console)?;
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let permits = Arc::new(Semaphore::new(wave.max(1)));
        let mut tasks = JoinSet::new();
        for n in 0..count {
            let permit = permits.clone().acquire_owned().await?;
            let config = configs[n % configs.len()].clone();
            let endpoint = endpoint.clone();
            let outcomes = outcomes.clone();
            tasks.spawn(async move {
                match attempt(&endpoint, config, console).await {
                    // In TLS 1.3 the client finishes first: a console that
                    // refuses the client's certificate closes right after.
                    Ok(connection) => match tokio::time::timeout(REFUSAL_WAIT, connection.closed()).await {
                        Ok(err) => Failure::Ended(err).record(&outcomes),
                        Err(_) => {
                            outcomes.lock().unwrap_or_else(PoisonError::into_inner).connected += 1;
                            connection.close(0u32.into(), b"flood");
                        }
                    },
                    Err(failure) => failure.record(&outcomes),
                }
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
        endpoint.close(0u32.into(), b"flood over");
        let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
        let outcomes = outcomes.lock().unwrap_or_else(PoisonError::into_inner).clone();
        anyhow::Ok(outcomes)
    })
}

/// The size of a forged Initial: clients must pad Initials to 1,200 bytes.
const INITIAL_LEN: usize = 1_200;

/// Sends `count` forged QUIC Initial packets to `target` from a fresh
/// loopback socket: a well-formed long header (QUIC v1, Initial, random
/// 8-byte connection ids, no token) over random bytes that no key
/// decrypts, padded to 1,200 bytes as a real client's first packet is.
/// Returns the bytes sent.
///
/// # Errors
/// When the socket cannot be bound or a send fails.
pub fn send_forged_initials(target: SocketAddr, count: usize) -> std::io::Result<u64> {
    use rand::Rng;
    let local: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (std::net::Ipv4Addr::LOCALHOST, 0).into()
    };
    let socket = std::net::UdpSocket::bind(local)?;
    let mut rng = rand::rng();
    let mut total = 0u64;
    for _ in 0..count {
        let mut packet = Vec::with_capacity(INITIAL_LEN);
        // Long header, fixed bit, Initial, 4-byte packet number; version 1.
        packet.push(0xc3);
        packet.extend_from_slice(&1u32.to_be_bytes());
        for _ in 0..2 {
            packet.push(8);
            packet.extend_from_slice(&rng.random::<[u8; 8]>());
        }
        // No token; then the rest of the datagram as the payload length (a
        // two-byte varint).
        packet.push(0);
        let rest = u16::try_from(INITIAL_LEN - packet.len() - 2).unwrap_or(0);
        packet.extend_from_slice(&(0x4000 | rest).to_be_bytes());
        packet.resize(INITIAL_LEN, 0);
        let start = INITIAL_LEN - usize::from(rest);
        rng.fill(&mut packet[start..]);
        socket.send_to(&packet, target)?;
        total += packet.len() as u64;
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ringwatch_shared::codec::{CodecError, MAX_FIRST_FRAME_LEN};

    #[test]
    fn an_oversized_header_is_refused_by_the_codec() {
        let len = u32::try_from(MAX_FIRST_FRAME_LEN + 1).unwrap();
        let mut frame = frame_header(len).to_vec();
        frame.resize(FRAME_HEADER_LEN + MAX_FIRST_FRAME_LEN + 1, 0xa5);
        let err = codec::decode_frame::<AgentFrame>(&frame, MAX_FIRST_FRAME_LEN).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn forged_initials_look_like_a_clients_first_packet() {
        let target = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Absence can only be observed by waiting: a short quiet period ends the read.
        target.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        send_forged_initials(target.local_addr().unwrap(), 3).unwrap();
        let mut buf = [0u8; 2048];
        let len = target.recv(&mut buf).unwrap();
        let packet = &buf[..len];
        assert_eq!(len, INITIAL_LEN);
        assert_eq!(packet[0], 0xc3, "long header, Initial");
        assert_eq!(packet[1..5], 1u32.to_be_bytes(), "QUIC v1");
        assert_eq!((packet[5], packet[14], packet[23]), (8, 8, 0), "two 8-byte ids, no token");
        let rest = u16::from_be_bytes([packet[24], packet[25]]) & 0x3fff;
        assert_eq!(usize::from(rest), len - 26, "the length covers the rest of the datagram");
    }
}
