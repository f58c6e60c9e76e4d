//! The agent's link to the console: join once, then connect with mutual TLS,
//! say hello, send heartbeats as datagrams and metrics on the control
//! stream, and reconnect with capped, jittered backoff whenever the
//! connection is lost. Permanent refusals end the link with an error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream};
use rand::SeedableRng;
use rand::rngs::StdRng;
use ringwatch_shared::backoff::Backoff;
use ringwatch_shared::codec::{self, CodecError, MAX_FRAME_LEN};
use ringwatch_shared::metrics::MetricsSample;
use ringwatch_shared::protocol::{
    AgentFrame, CONSOLE_SERVER_NAME, ConsoleFrame, Datagram, FromConsole, Heartbeat, Hello, InstanceReport,
    InstanceState, JoinRequest, PROTOCOL_VERSION, Refusal, RefusalKind, close_code,
};
use ringwatch_shared::token::JoinToken;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::credentials::{self, Credentials};
use crate::error::AgentError;
use crate::supervisor::Supervisor;

/// First reconnect delay ceiling.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// No reconnect delay exceeds this.
const BACKOFF_CAP: Duration = Duration::from_secs(15);
/// Consecutive "name in use" refusals after which the agent gives up.
const NAME_IN_USE_ATTEMPTS: u32 = 6;
/// A session that lasted this long was healthy: the next failure starts the
/// backoff over.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);
/// How long the console has to answer a hello or a join.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence of the console (no beat, no frame) after which the agent drops
/// the connection and reconnects. The console beats every second.
const CONSOLE_SILENCE: Duration = Duration::from_secs(4);
/// How often that silence is checked.
const CONSOLE_SILENCE_CHECK: Duration = Duration::from_millis(500);
/// How long a goodbye waits for the console to close the connection.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one agent's link needs to know.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The console's address.
    pub console: SocketAddr,
    /// Where the agent keeps its credentials.
    pub data_dir: PathBuf,
    /// The name to join under; `None` keeps the stored one (or the host name
    /// on a first join).
    pub name: Option<String>,
    /// The join token, needed only until the agent has credentials.
    pub token: Option<String>,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Ring weight announced in the hello.
    pub weight: u32,
    /// Full metrics samples go at this period.
    pub metrics_every: Duration,
    /// The protocol version claimed in frame headers; tests set another to
    /// see the console refuse it.
    pub protocol_version: u16,
    /// After the hello, send this many random bytes on the control stream;
    /// tests use it to show the console survives garbage.
    pub send_garbage: usize,
    /// While set, the agent sends nothing, as a hung process would (the
    /// demo's "stall"); the connection stays open.
    pub stalled: Option<Arc<AtomicBool>>,
    /// Notified each time the console welcomes this link; the swarm holds a
    /// start-up slot until then, to bound how many of its agents join or
    /// connect at once.
    pub welcomed: Option<Arc<Notify>>,
}

impl LinkConfig {
    /// Defaults for everything but the console and the data dir.
    pub fn new(console: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            console,
            data_dir,
            name: None,
            token: None,
            heartbeat: Duration::from_millis(500),
            weight: default_weight(),
            metrics_every: Duration::from_secs(1),
            protocol_version: PROTOCOL_VERSION,
            send_garbage: 0,
            stalled: None,
            welcomed: None,
        }
    }
}

/// The default ring weight: the number of CPUs.
pub fn default_weight() -> u32 {
    std::thread::available_parallelism().map_or(1, |count| u32::try_from(count.get()).unwrap_or(u32::MAX))
}

/// The agent's task side, living across connections: the supervisor, its
/// reports waiting to be sent, and when the console last said anything (for
/// fencing).
pub struct Workers {
    /// Runs the instances.
    pub supervisor: Supervisor,
    /// State changes of instances, forwarded to the console.
    pub reports: mpsc::Receiver<InstanceReport>,
    /// When the console was last heard from (frame or beat).
    pub last_word: Arc<Mutex<Instant>>,
}

impl Workers {
    fn heard_console(&self) {
        *self.last_word.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }
}

/// How a connection attempt or session ended, when it did not end in a
/// clean shutdown.
#[derive(Debug)]
enum LinkFailure {
    /// Trying again cannot help.
    Fatal(AgentError),
    /// The console may be back later.
    Retry(String),
    /// Another connection holds our name; often our own previous one, not
    /// yet timed out, so it is retried a few times.
    NameInUse(String),
}

impl From<AgentError> for LinkFailure {
    fn from(err: AgentError) -> Self {
        Self::Fatal(err)
    }
}

/// Runs the link until `shutdown` (after saying goodbye) or a permanent
/// refusal.
///
/// # Errors
/// When the console refuses the agent for good, or the credentials are
/// unusable.
pub async fn run(
    config: &LinkConfig,
    endpoint: &Endpoint,
    metrics: watch::Receiver<MetricsSample>,
    mut workers: Option<&mut Workers>,
    shutdown: &CancellationToken,
) -> Result<(), AgentError> {
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
    let mut rng = StdRng::from_os_rng();
    let mut name_in_use = 0;
    let terms = Arc::new(Terms::default());
    loop {
        let started = Instant::now();
        let attempt = match credentials_for(config)? {
            Some(credentials) => {
                session(config, endpoint, &credentials, metrics.clone(), workers.as_deref_mut(), &terms, shutdown).await
            }
            None => join(config, endpoint, &terms).await,
        };
        let reason = match attempt {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Joined) => {
                backoff.reset();
                continue;
            }
            Err(LinkFailure::Fatal(err)) => return Err(err),
            Err(LinkFailure::NameInUse(reason)) => {
                name_in_use += 1;
                if name_in_use >= NAME_IN_USE_ATTEMPTS {
                    return Err(AgentError::Refused { kind: RefusalKind::NameInUse, reason });
                }
                format!("refused: {reason}")
            }
            Err(LinkFailure::Retry(reason)) => {
                name_in_use = 0;
                reason
            }
        };
        if started.elapsed() >= HEALTHY_SESSION {
            backoff.reset();
        }
        let delay = backoff.next_delay(&mut rng);
        warn!(console = %config.console, %reason, retry_in = ?delay, "no connection to the console");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// How a session ended well.
enum SessionEnd {
    /// Shut down on request, goodbye said.
    Shutdown,
    /// Joined: connect again with the new credentials.
    Joined,
}

fn credentials_for(config: &LinkConfig) -> Result<Option<Credentials>, AgentError> {
    let Some(credentials) = Credentials::load(&config.data_dir)? else {
        return Ok(None);
    };
    if let Some(name) = &config.name
        && *name != credentials.name
    {
        return Err(AgentError::Config(format!(
            "the data dir \"{}\" belongs to node \"{}\", not \"{name}\": use another --data-dir for another node",
            config.data_dir.display(),
            credentials.name
        )));
    }
    Ok(Some(credentials))
}

async fn join(config: &LinkConfig, endpoint: &Endpoint, terms: &Terms) -> Result<SessionEnd, LinkFailure> {
    let token_text = config.token.as_deref().ok_or_else(|| AgentError::NotJoined(config.data_dir.clone()))?;
    let token: JoinToken = token_text
        .parse()
        .map_err(|err| AgentError::Refused { kind: RefusalKind::BadToken, reason: format!("--token: {err}") })?;
    let name = match &config.name {
        Some(name) => name.clone(),
        None => credentials::stored_name(&config.data_dir)?.unwrap_or_else(host_name),
    };
    let key = credentials::load_or_create_key(&config.data_dir)?;
    let csr_der = credentials::signing_request(&name, &key)?;
    info!(console = %config.console, node = %name, "joining the cluster");
    let connection = connect(
        endpoint,
        ringwatch_net::tls::join_client(token.ca_pin).map_err(|err| AgentError::Setup(err.to_string()))?,
        config.console,
    )
    .await?;
    let (mut send, mut recv) = connection.open_bi().await.map_err(classify)?;
    let request = AgentFrame::Join(JoinRequest { token: token_text.trim().to_string(), name: name.clone(), csr_der });
    send_frame(&mut send, &request, config.protocol_version).await?;
    let answer = timeout(ANSWER_TIMEOUT, read_console_frame(&mut recv, terms))
        .await
        .map_err(|_| LinkFailure::Retry("the console did not answer the join request".into()))?;
    let grant = match answer {
        Ok(Some(ConsoleFrame::JoinGranted(grant))) => grant,
        Ok(Some(ConsoleFrame::Refused(refusal))) => return Err(refused(refusal)),
        Ok(Some(ConsoleFrame::NotLeader { leader })) => return Err(not_leader(leader)),
        Ok(Some(other)) => return Err(LinkFailure::Retry(format!("unexpected answer to a join: {other:?}"))),
        Ok(None) => return Err(closed_early(&connection).await),
        Err(err) => return Err(frame_error(&connection, err).await),
    };
    if !token.pins(&grant.ca_der) {
        return Err(AgentError::Handshake("the console sent a CA that the token does not pin".into()).into());
    }
    Credentials::store_grant(&config.data_dir, &name, &grant.cert_der, &grant.ca_der)?;
    connection.close(close_code::NORMAL.into(), b"joined");
    info!(node = %name, data_dir = %config.data_dir.display(), "joined the cluster; credentials stored");
    Ok(SessionEnd::Joined)
}

async fn session(
    config: &LinkConfig,
    endpoint: &Endpoint,
    credentials: &Credentials,
    mut metrics: watch::Receiver<MetricsSample>,
    mut workers: Option<&mut Workers>,
    terms: &Arc<Terms>,
    shutdown: &CancellationToken,
) -> Result<SessionEnd, LinkFailure> {
    let connection = connect(endpoint, credentials.client_config()?, config.console).await?;
    let (mut send, mut recv) = connection.open_bi().await.map_err(classify)?;
    let hello = AgentFrame::Hello(Hello {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        heartbeat_interval_ms: u32::try_from(config.heartbeat.as_millis()).unwrap_or(u32::MAX),
        weight: config.weight,
    });
    send_frame(&mut send, &hello, config.protocol_version).await?;
    let answer = timeout(ANSWER_TIMEOUT, read_console_frame(&mut recv, terms))
        .await
        .map_err(|_| LinkFailure::Retry("the console did not answer the hello".into()))?;
    match answer {
        Ok(Some(ConsoleFrame::Welcome(welcome))) => {
            info!(node = %welcome.node, console = %config.console, console_version = %welcome.console_version, "connected to the console");
            if let Some(workers) = workers.as_deref() {
                workers.supervisor.set_node_name(welcome.node.as_str());
            }
            if let Some(welcomed) = &config.welcomed {
                welcomed.notify_one();
            }
        }
        Ok(Some(ConsoleFrame::Refused(refusal))) => return Err(refused(refusal)),
        Ok(Some(ConsoleFrame::NotLeader { leader })) => return Err(not_leader(leader)),
        Ok(Some(other)) => return Err(LinkFailure::Retry(format!("unexpected answer to a hello: {other:?}"))),
        Ok(None) => return Err(closed_early(&connection).await),
        Err(err) => return Err(frame_error(&connection, err).await),
    }
    if let Some(workers) = workers.as_deref_mut() {
        workers.heard_console();
        // The inventory supersedes whatever reports queued while away.
        while workers.reports.try_recv().is_ok() {}
        let inventory = AgentFrame::Inventory(workers.supervisor.inventory());
        send_frame(&mut send, &inventory, config.protocol_version).await?;
    } else {
        send_frame(&mut send, &AgentFrame::Inventory(Vec::new()), config.protocol_version).await?;
    }
    if config.send_garbage > 0 {
        send_garbage(&mut send, config.send_garbage).await;
    }
    let stalled = || config.stalled.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed));

    let (frames_tx, mut frames_rx) = mpsc::channel(16);
    // Reading is not cancel-safe inside select!, so a task of its own reads.
    let _reader = AbortOnDropHandle::new(tokio::spawn(read_console_frames(recv, terms.clone(), frames_tx)));
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut metrics_tick = tokio::time::interval(config.metrics_every);
    metrics_tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seq = 0u64;
    // The console beats every second: long silence means it is gone (killed,
    // or its host is), and reconnecting beats waiting out QUIC's idle timeout.
    let mut last_heard = Instant::now();
    let mut silence_check = tokio::time::interval(CONSOLE_SILENCE_CHECK);
    silence_check.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let next_report = async {
            match workers.as_deref_mut() {
                Some(workers) => workers.reports.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {
                // Instances stop before the goodbye: the console moves them at
                // once, and two copies never overlap.
                if let Some(workers) = workers.as_deref() {
                    workers.supervisor.shutdown().await;
                }
                say_goodbye(&connection, &mut send, "agent shutting down").await;
                return Ok(SessionEnd::Shutdown);
            }
            Some(report) = next_report => {
                send_frame(&mut send, &AgentFrame::Instance(report), config.protocol_version).await?;
            }
            _ = silence_check.tick() => {
                if last_heard.elapsed() >= CONSOLE_SILENCE {
                    connection.close(close_code::NORMAL.into(), b"the console went silent");
                    return Err(LinkFailure::Retry(format!(
                        "the console has been silent for {}s",
                        last_heard.elapsed().as_secs()
                    )));
                }
            }
            datagram = connection.read_datagram() => match datagram {
                Ok(bytes) => {
                    if let Ok(Datagram::ConsoleBeat { term, .. }) = codec::decode_datagram::<Datagram>(&bytes)
                        && terms.admit(term)
                    {
                        last_heard = Instant::now();
                        if let Some(workers) = workers.as_deref() {
                            workers.heard_console();
                        }
                    }
                }
                Err(err) => return Err(classify(err)),
            },
            _ = heartbeat.tick() => {
                if stalled() {
                    continue;
                }
                seq += 1;
                let sample = metrics.borrow_and_update();
                let beat = Datagram::Heartbeat(Heartbeat {
                    seq,
                    cpu_permille: sample.cpu_permille,
                    mem_permille: ringwatch_shared::metrics::to_permille(sample.mem_percent() / 100.0),
                });
                drop(sample);
                let datagram = codec::encode_datagram(&beat).map_err(|err| LinkFailure::Retry(err.to_string()))?;
                if let Err(err) = connection.send_datagram(Bytes::from(datagram)) {
                    return Err(LinkFailure::Retry(format!("failed to send a heartbeat: {err}")));
                }
            }
            _ = metrics_tick.tick() => {
                if stalled() {
                    continue;
                }
                let sample = metrics.borrow().clone();
                send_frame(&mut send, &AgentFrame::Metrics(sample), config.protocol_version).await?;
            }
            frame = frames_rx.recv() => match frame {
                Some(Ok(ConsoleFrame::Refused(refusal))) => return Err(refused(refusal)),
                Some(Ok(ConsoleFrame::NotLeader { leader })) => return Err(not_leader(leader)),
                Some(Ok(frame)) => {
                    last_heard = Instant::now();
                    if let Some(report) = carry_out(frame, workers.as_deref()) {
                        send_frame(&mut send, &AgentFrame::Instance(report), config.protocol_version).await?;
                    }
                }
                Some(Err(err)) => return Err(frame_error(&connection, err).await),
                None => return Err(closed_early(&connection).await),
            },
            err = connection.closed() => return Err(classify(err)),
        }
    }
}

/// Carries out a command of the console; returns a report to send at once
/// when there is no supervisor to do it (a simulated agent).
fn carry_out(frame: ConsoleFrame, workers: Option<&Workers>) -> Option<InstanceReport> {
    let Some(workers) = workers else {
        return match frame {
            ConsoleFrame::Assign(assignment) => Some(InstanceReport {
                instance: assignment.instance,
                epoch: assignment.epoch,
                state: InstanceState::Failed,
                restarts: 0,
                pid: None,
                last_exit: None,
                message: "this simulated agent runs no tasks".into(),
            }),
            _ => None,
        };
    };
    workers.heard_console();
    match frame {
        ConsoleFrame::Assign(assignment) => {
            info!(instance = %assignment.instance, epoch = assignment.epoch, "assigned");
            workers.supervisor.assign(assignment);
        }
        ConsoleFrame::Stop { instance, epoch, reason } => {
            info!(%instance, epoch, %reason, "asked to stop");
            workers.supervisor.stop(&instance, epoch, &reason);
        }
        ConsoleFrame::Restart { instance, epoch } => {
            info!(%instance, epoch, "asked to restart");
            workers.supervisor.restart(&instance, epoch);
        }
        other => debug!(?other, "frame from the console"),
    }
    None
}

/// The highest console term this agent has seen: frames of a lower term
/// come from a leader that was deposed (and may not know it yet), and are
/// ignored (ARCHITECTURE.md, "High availability").
#[derive(Debug, Default)]
struct Terms(std::sync::atomic::AtomicU64);

impl Terms {
    /// Whether a console of `term` may be listened to; remembers it.
    fn admit(&self, term: u64) -> bool {
        let highest = self.0.fetch_max(term, Ordering::AcqRel);
        term >= highest
    }

    fn highest(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Reads one stamped frame; a frame of a lower term than the agent has seen
/// ends the connection.
async fn read_console_frame(recv: &mut RecvStream, terms: &Terms) -> Result<Option<ConsoleFrame>, CodecError> {
    let Some(message) = codec::read_frame::<FromConsole, _>(recv, MAX_FRAME_LEN).await? else {
        return Ok(None);
    };
    if terms.admit(message.term) {
        Ok(Some(message.frame))
    } else {
        Err(CodecError::Io(std::io::Error::other(format!(
            "a console of term {} spoke after term {}: it was deposed",
            message.term,
            terms.highest()
        ))))
    }
}

async fn read_console_frames(
    mut recv: RecvStream,
    terms: Arc<Terms>,
    frames: mpsc::Sender<Result<ConsoleFrame, CodecError>>,
) {
    loop {
        match read_console_frame(&mut recv, &terms).await {
            Ok(Some(frame)) => {
                if frames.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(err) => {
                let _ = frames.send(Err(err)).await;
                return;
            }
        }
    }
}

async fn connect(
    endpoint: &Endpoint,
    client: quinn::ClientConfig,
    console: SocketAddr,
) -> Result<Connection, LinkFailure> {
    let connecting = endpoint
        .connect_with(client, console, CONSOLE_SERVER_NAME)
        .map_err(|err| LinkFailure::Retry(format!("cannot connect to {console}: {err}")))?;
    connecting.await.map_err(classify)
}

async fn send_frame(send: &mut SendStream, frame: &AgentFrame, version: u16) -> Result<(), LinkFailure> {
    let bytes = codec::encode_frame_as(frame, version).map_err(|err| LinkFailure::Retry(err.to_string()))?;
    match send.write_all(&bytes).await {
        Ok(()) => Ok(()),
        Err(quinn::WriteError::ConnectionLost(err)) => Err(classify(err)),
        Err(err) => Err(LinkFailure::Retry(format!("control stream failed: {err}"))),
    }
}

async fn say_goodbye(connection: &Connection, send: &mut SendStream, reason: &str) {
    let goodbye = AgentFrame::Goodbye { reason: reason.to_string() };
    if let Ok(bytes) = codec::encode_frame(&goodbye)
        && send.write_all(&bytes).await.is_ok()
    {
        let _ = send.finish();
        // The console closes the connection once it has read the goodbye;
        // closing first could discard the frame still in flight.
        let _ = timeout(GOODBYE_TIMEOUT, connection.closed()).await;
    }
    connection.close(close_code::GOODBYE.into(), b"goodbye");
    info!("said goodbye to the console");
}

async fn send_garbage(send: &mut SendStream, len: usize) {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    match send.write_all(&bytes).await {
        Ok(()) => warn!(bytes = len, "sent garbage on the control stream (--send-garbage)"),
        Err(err) => warn!(%err, "could not send garbage"),
    }
}

/// A standby answered: the leader is elsewhere.
fn not_leader(leader: Option<String>) -> LinkFailure {
    LinkFailure::Retry(match leader {
        Some(leader) => format!("this console is a standby; the leader is {leader}"),
        None => "this console is a standby and knows no leader yet".into(),
    })
}

fn refused(refusal: Refusal) -> LinkFailure {
    if refusal.kind == RefusalKind::NameInUse {
        LinkFailure::NameInUse(refusal.reason)
    } else if refusal.kind.is_retryable() {
        LinkFailure::Retry(format!("refused for now: {}", refusal.reason))
    } else {
        LinkFailure::Fatal(AgentError::Refused { kind: refusal.kind, reason: refusal.reason })
    }
}

/// The stream ended without an answer: the reason is in the connection's
/// close, which may take a moment to arrive.
async fn closed_early(connection: &Connection) -> LinkFailure {
    let err = timeout(Duration::from_secs(2), connection.closed()).await.unwrap_or(ConnectionError::TimedOut);
    classify(err)
}

async fn frame_error(connection: &Connection, err: CodecError) -> LinkFailure {
    match err {
        CodecError::VersionMismatch { theirs, ours } => LinkFailure::Fatal(AgentError::Refused {
            kind: RefusalKind::VersionMismatch,
            reason: format!("protocol version mismatch: the console speaks v{theirs}, this agent speaks v{ours}"),
        }),
        CodecError::Io(_) | CodecError::Truncated => closed_early(connection).await,
        other => LinkFailure::Retry(format!("bad frame from the console: {other}")),
    }
}

/// Sorts a connection error into fatal (refused, wrong certificates) and
/// worth retrying (timeouts, resets, a console shutting down).
fn classify(err: ConnectionError) -> LinkFailure {
    match err {
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            match RefusalKind::from_close_code(close.error_code.into_inner()) {
                Some(kind) => refused(Refusal { kind, reason }),
                None => LinkFailure::Retry(format!("the console closed the connection ({reason})")),
            }
        }
        ConnectionError::TransportError(error) if is_crypto(u64::from(error.code)) => {
            LinkFailure::Fatal(AgentError::Handshake(error.reason))
        }
        ConnectionError::ConnectionClosed(close) if is_crypto(u64::from(close.error_code)) => {
            LinkFailure::Fatal(AgentError::Handshake(format!(
                "the console rejected this agent's certificate ({close}); if it belongs to another cluster, re-join with a token and a fresh --data-dir"
            )))
        }
        ConnectionError::VersionMismatch => {
            LinkFailure::Fatal(AgentError::Handshake("the console speaks another QUIC version".into()))
        }
        ConnectionError::TimedOut => LinkFailure::Retry("the console did not answer (timed out)".into()),
        other => LinkFailure::Retry(other.to_string()),
    }
}

/// QUIC carries TLS alerts as transport error codes 0x100–0x1ff.
fn is_crypto(code: u64) -> bool {
    (0x100..=0x1ff).contains(&code)
}

fn host_name() -> String {
    let name = gethostname::gethostname().to_string_lossy().to_lowercase();
    if name.is_empty() { "agent".to_string() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_codes_are_the_tls_alert_range() {
        assert!(is_crypto(0x100 + 42));
        assert!(!is_crypto(0x0a));
        assert!(!is_crypto(0x200));
    }

    #[test]
    fn refusals_sort_into_fatal_and_retryable() {
        let name_in_use = refused(Refusal { kind: RefusalKind::NameInUse, reason: "x".into() });
        assert!(matches!(name_in_use, LinkFailure::NameInUse(_)));
        let expired = refused(Refusal { kind: RefusalKind::TokenExpired, reason: "x".into() });
        assert!(matches!(expired, LinkFailure::Fatal(AgentError::Refused { .. })));
    }
}
