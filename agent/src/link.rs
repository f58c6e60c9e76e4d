//! The agent's link to the console: join once, then connect with mutual TLS,
//! say hello, send heartbeats as datagrams and metrics on the control
//! stream, and reconnect with capped, jittered backoff whenever the
//! connection is lost. Permanent refusals end the link with an error.
//!
//! With several consoles (`--console A,B,C`, or a DNS name with several
//! addresses) the link follows the leader: which console it tries, and when,
//! is [`crate::consoles`]' policy. A leader named by a standby may be an
//! address the operator never listed; it is verified like any console (its
//! certificate must chain to the cluster CA the agent holds, or the join
//! token pins), so a standby can send an agent only to a console of its own
//! cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, ConnectionError, Endpoint, RecvStream, SendStream};
use rand::SeedableRng;
use rand::rngs::StdRng;
use ringwatch_shared::codec::{self, CodecError, MAX_FRAME_LEN};
use ringwatch_shared::data::wire::{DataFailure, DataReply};
use ringwatch_shared::metrics::MetricsSample;
use ringwatch_shared::protocol::{
    AgentFrame, CONSOLE_SERVER_NAME, ConsoleFrame, Datagram, FromConsole, Heartbeat, Hello, InstanceReport,
    InstanceState, JoinRequest, PROTOCOL_VERSION, Refusal, RefusalKind, RenewRequest, close_code,
};
use ringwatch_shared::token::JoinToken;
use tokio::io::AsyncRead;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{MissedTickBehavior, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn};

use crate::consoles::{ConsoleAddr, Consoles, Outcome, Policy};
use crate::credentials::{self, Credentials};
use crate::endpoints::Endpoints;
use crate::error::AgentError;
use crate::silence::ConsoleSilence;
use crate::supervisor::Supervisor;

/// First reconnect delay ceiling.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// No reconnect delay exceeds this. Well under a console's reconnect grace
/// (15 s by default): after a console restart, a takeover or a store
/// outage, every agent tries again — and is back — before the grace ends
/// and its work would be failed over for want of a retry.
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Consecutive "name in use" refusals after which the agent gives up.
const NAME_IN_USE_ATTEMPTS: u32 = 6;
/// Consecutive failed TLS handshakes, while other consoles remain to be
/// tried, after which the agent gives up: one console of another cluster
/// (a wrong list entry, a standby naming a stranger) does not stop it, but
/// when every console refuses, its own credentials are at fault.
const HANDSHAKE_ATTEMPTS: u32 = 6;
/// A session that lasted this long was healthy: the next failure starts the
/// backoff over.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);
/// How long the console has to answer a hello or a join.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the console's silence is checked (`crate::silence`).
const CONSOLE_SILENCE_CHECK: Duration = Duration::from_millis(500);
/// How long a goodbye waits for the console to close the connection.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a handshake may take when another console could be tried
/// instead: an address where nothing answers would otherwise hold the agent
/// for QUIC's idle timeout. With a single console the agent waits that out,
/// as it has nowhere else to go.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first delay before a failed certificate renewal is tried again.
const RENEW_RETRY_BASE: Duration = Duration::from_secs(1);
/// No renewal retry waits longer: a third of a 30-day certificate's life
/// leaves room for hundreds of tries.
const RENEW_RETRY_CAP: Duration = Duration::from_secs(600);
/// A leader's address is `HOST:PORT`; a standby's answer longer than this
/// is not one, and is cut before it reaches a log.
const MAX_LEADER_LEN: usize = 300;

/// What one agent's link needs to know.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The consoles to try: addresses and DNS names, resolved at each
    /// connection attempt.
    pub consoles: Consoles,
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
    /// The most bytes of data store copies the agent keeps, in
    /// `data_dir/objects` (`--data-quota`; README.md, "Agent options").
    /// [`crate::run_agent`]'s agents serve data; the swarm's simulated
    /// agents hold none.
    pub data_quota: u64,
}

impl LinkConfig {
    /// Defaults for everything but the consoles (one address converts) and
    /// the data dir.
    pub fn new(consoles: impl Into<Consoles>, data_dir: PathBuf) -> Self {
        Self {
            consoles: consoles.into(),
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
            data_quota: crate::objects::DEFAULT_DATA_QUOTA,
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
    /// What `ringwatch-agent status` says of the connection.
    pub link: crate::status::LinkState,
    /// Serves the streams the console opens for the data store.
    pub data: crate::data::DataService,
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
    /// The console is a standby; the leader it named, if any.
    NotLeader(Option<String>),
    /// The console is shutting down, or went silent: try another.
    ConsoleLeft(String),
}

impl From<AgentError> for LinkFailure {
    fn from(err: AgentError) -> Self {
        Self::Fatal(err)
    }
}

/// Runs the link until `shutdown` (after saying goodbye) or a permanent
/// refusal, connecting through `endpoints` to whichever console leads.
///
/// # Errors
/// When the console refuses the agent for good, the credentials are
/// unusable, or no socket can be bound.
pub async fn run(
    config: &LinkConfig,
    endpoints: &Endpoints,
    metrics: watch::Receiver<MetricsSample>,
    mut workers: Option<&mut Workers>,
    shutdown: &CancellationToken,
) -> Result<(), AgentError> {
    let mut policy = Policy::new(BACKOFF_BASE, BACKOFF_CAP, HEALTHY_SESSION);
    let mut rng = StdRng::from_os_rng();
    let mut name_in_use = 0;
    let mut handshakes_failed = 0;
    let terms = Arc::new(Terms::default());
    loop {
        let credentials = credentials_for(config)?;
        if credentials.is_none() && config.token.is_none() {
            return Err(AgentError::NotJoined(config.data_dir.clone()));
        }
        let console = tokio::select! {
            console = next_console(&config.consoles, &mut policy) => console,
            () = shutdown.cancelled() => return Ok(()),
        };
        let Some(console) = console else {
            let delay = policy.after(None, Outcome::Failed, &mut rng);
            warn!(consoles = %config.consoles, "no console address resolves; trying again in {}", human(delay));
            if sleep_or_shutdown(delay, shutdown).await {
                return Ok(());
            }
            continue;
        };
        // Give up on a silent address sooner when another console waits.
        let patience = policy.has_alternatives(console).then_some(HANDSHAKE_TIMEOUT);
        let started = Instant::now();
        let attempt = match endpoints.for_peer(console) {
            Ok(endpoint) => {
                let attempt = Attempt { config, endpoint: &endpoint, console, patience, terms: &terms, shutdown };
                match credentials {
                    Some(credentials) => attempt.session(&credentials, metrics.clone(), workers.as_deref_mut()).await,
                    None => attempt.join().await,
                }
            }
            // No socket of this address's family (a host without IPv6): another console may do.
            Err(err) if patience.is_some() => Err(LinkFailure::Retry(err.to_string())),
            Err(err) => return Err(err),
        };
        // Shut down while connecting: no session, no goodbye to say.
        if shutdown.is_cancelled() && !matches!(attempt, Err(LinkFailure::Fatal(_))) {
            return Ok(());
        }
        let (outcome, reason) = match attempt {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Joined) => {
                name_in_use = 0;
                handshakes_failed = 0;
                (Outcome::Joined, String::new())
            }
            Ok(SessionEnd::Lost { reason, move_on }) => {
                name_in_use = 0;
                handshakes_failed = 0;
                (Outcome::Lost { lasted: started.elapsed(), move_on }, reason)
            }
            Ok(SessionEnd::Deposed(leader)) => {
                handshakes_failed = 0;
                policy.welcomed(console);
                (Outcome::NotLeader(leader), String::new())
            }
            Err(LinkFailure::Fatal(AgentError::Handshake(reason)))
                if patience.is_some() && handshakes_failed + 1 < HANDSHAKE_ATTEMPTS =>
            {
                handshakes_failed += 1;
                (Outcome::Failed, format!("TLS handshake failed: {reason}"))
            }
            Err(LinkFailure::Fatal(err)) => return Err(err),
            Err(LinkFailure::NameInUse(reason)) => {
                name_in_use += 1;
                if name_in_use >= NAME_IN_USE_ATTEMPTS {
                    return Err(AgentError::Refused { kind: RefusalKind::NameInUse, reason });
                }
                (Outcome::Failed, format!("refused: {reason}"))
            }
            // A redirect says nothing of our name: the count goes on.
            Err(LinkFailure::NotLeader(leader)) => (Outcome::NotLeader(leader), String::new()),
            Err(LinkFailure::Retry(reason) | LinkFailure::ConsoleLeft(reason)) => {
                name_in_use = 0;
                (Outcome::Failed, reason)
            }
        };
        if let Some(workers) = workers.as_deref() {
            workers.link.ended(console, &reason);
        }
        let delay = policy.after(Some(console), outcome.clone(), &mut rng);
        log_switch(console, &outcome, &reason, delay);
        if sleep_or_shutdown(delay, shutdown).await {
            return Ok(());
        }
    }
}

/// Says which console the agent leaves, why, and what it does next.
fn log_switch(console: SocketAddr, outcome: &Outcome, reason: &str, delay: Duration) {
    let when = if delay.is_zero() { "at once".to_string() } else { format!("in {}", human(delay)) };
    match outcome {
        Outcome::Joined => {}
        Outcome::NotLeader(Some(leader)) => {
            info!(%console, "the console at {console} is a standby; the leader is {leader}: connecting to it {when}");
        }
        Outcome::NotLeader(None) => {
            warn!(%console, "the console at {console} is a standby and knows no leader yet; trying the next console {when}");
        }
        Outcome::Lost { .. } => {
            warn!(%console, "lost the console at {console}: {reason}; reconnecting {when}");
        }
        Outcome::Failed if delay.is_zero() => {
            warn!(%console, "no connection to the console at {console}: {reason}; trying the next console at once");
        }
        Outcome::Failed => {
            warn!(%console, "no connection to the console at {console}: {reason}; trying again {when}");
        }
    }
}

/// A delay for a log line, to the millisecond ("1s 250ms").
fn human(delay: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)))
}

/// Sleeps for `delay`; says whether `shutdown` came first.
async fn sleep_or_shutdown(delay: Duration, shutdown: &CancellationToken) -> bool {
    if delay.is_zero() {
        return shutdown.is_cancelled();
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = shutdown.cancelled() => true,
    }
}

/// The console to try next: the leader a standby named (resolved now),
/// unless this round tried it already; else the policy's pick from the
/// list, resolved now (a DNS name may have changed).
async fn next_console(consoles: &Consoles, policy: &mut Policy) -> Option<SocketAddr> {
    if let Some(leader) = policy.take_leader() {
        match leader.parse::<ConsoleAddr>() {
            Ok(entry) => match entry.resolve().await {
                Ok(addrs) => {
                    if let Some(addr) = addrs.first() {
                        if policy.follow(*addr) {
                            return Some(*addr);
                        }
                        info!(%leader, "the leader {leader} was tried in this round already; trying the next console");
                    }
                }
                Err(problem) => warn!(%leader, "cannot follow the leader: {problem}"),
            },
            Err(err) => warn!("a standby named a leader this agent cannot use: {err}"),
        }
    }
    let (resolved, problems) = consoles.resolve().await;
    for problem in problems {
        warn!("{problem}");
    }
    policy.pick(&resolved)
}

/// How a session ended well, or at least usefully.
enum SessionEnd {
    /// Shut down on request, goodbye said.
    Shutdown,
    /// Joined: connect again with the new credentials.
    Joined,
    /// A welcomed session ended; connect again.
    Lost {
        /// Why, for the log.
        reason: String,
        /// The console shut down or went silent: try the others first.
        move_on: bool,
    },
    /// The console that welcomed us says it leads no more.
    Deposed(Option<String>),
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
    let validity = credentials.validity()?;
    if validity.expired(unix_now()) {
        let expired = ringwatch_net::cert::format_unix(validity.not_after_unix);
        if config.token.is_some() {
            // The token lets the node join again under its name, with its key.
            warn!(node = %credentials.name, "the agent's certificate expired at {expired}; joining again with --token");
            return Ok(None);
        }
        return Err(AgentError::CertificateExpired { dir: config.data_dir.clone(), expired });
    }
    Ok(Some(credentials))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// One attempt at one console.
struct Attempt<'a> {
    /// The agent's settings.
    config: &'a LinkConfig,
    /// The endpoint that reaches `console`.
    endpoint: &'a Endpoint,
    /// The console tried.
    console: SocketAddr,
    /// How long the handshake may take (`None`: QUIC's idle timeout).
    patience: Option<Duration>,
    /// The highest term seen, across attempts.
    terms: &'a Arc<Terms>,
    /// Stops the agent; waits for a handshake or an answer end with it.
    shutdown: &'a CancellationToken,
}

impl Attempt<'_> {
    async fn join(&self) -> Result<SessionEnd, LinkFailure> {
        let config = self.config;
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
        info!(console = %self.console, node = %name, "joining the cluster through the console at {}", self.console);
        let client = ringwatch_net::tls::join_client(token.ca_pin).map_err(|err| AgentError::Setup(err.to_string()))?;
        let connection = self.connect(client).await?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(classify)?;
        let request =
            AgentFrame::Join(JoinRequest { token: token_text.trim().to_string(), name: name.clone(), csr_der });
        send_frame(&mut send, &request, config.protocol_version).await?;
        let answer = self
            .until_shutdown(timeout(ANSWER_TIMEOUT, read_console_frame(&mut recv, self.terms)))
            .await?
            .map_err(|_| LinkFailure::Retry("the console did not answer the join request".into()))?;
        let grant = match answer {
            Ok(Some(ConsoleFrame::JoinGranted(grant))) => grant,
            Ok(Some(ConsoleFrame::Refused(refusal))) => return Err(refused(refusal)),
            Ok(Some(ConsoleFrame::NotLeader { leader })) => return Err(not_leader(leader)),
            Ok(Some(other)) => return Err(LinkFailure::Retry(format!("unexpected answer to a join: {other:?}"))),
            Ok(None) => return Err(closed_early(&connection).await),
            Err(err) => return Err(read_error(&connection, err).await),
        };
        if !token.pins(&grant.ca_der) {
            return Err(AgentError::Handshake("the console sent a CA that the token does not pin".into()).into());
        }
        Credentials::store_grant(&config.data_dir, &name, &grant.cert_der, &grant.ca_der)?;
        connection.close(close_code::NORMAL.into(), b"joined");
        info!(node = %name, data_dir = %config.data_dir.display(), "joined the cluster; credentials stored");
        Ok(SessionEnd::Joined)
    }

    /// Connects, says hello and, once welcomed, serves the session until it
    /// ends. Failures before the welcome are errors; a welcomed session that
    /// ends in a way worth retrying is [`SessionEnd::Lost`].
    async fn session(
        &self,
        credentials: &Credentials,
        metrics: watch::Receiver<MetricsSample>,
        mut workers: Option<&mut Workers>,
    ) -> Result<SessionEnd, LinkFailure> {
        let config = self.config;
        let connection = self.connect(credentials.client_config()?).await?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(classify)?;
        let hello = AgentFrame::Hello(Hello {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            heartbeat_interval_ms: u32::try_from(config.heartbeat.as_millis()).unwrap_or(u32::MAX),
            weight: config.weight,
        });
        send_frame(&mut send, &hello, config.protocol_version).await?;
        let answer = self
            .until_shutdown(timeout(ANSWER_TIMEOUT, read_console_frame(&mut recv, self.terms)))
            .await?
            .map_err(|_| LinkFailure::Retry("the console did not answer the hello".into()))?;
        let renew_now = match answer {
            Ok(Some(ConsoleFrame::Welcome(welcome))) => {
                info!(
                    node = %welcome.node,
                    console = %self.console,
                    console_version = %welcome.console_version,
                    term = self.terms.highest(),
                    "connected to the console at {}", self.console
                );
                if let Some(workers) = workers.as_deref() {
                    workers.supervisor.set_node_name(welcome.node.as_str());
                    workers.link.connected(self.console, welcome.node.as_str(), self.terms.highest());
                }
                if let Some(welcomed) = &config.welcomed {
                    welcomed.notify_one();
                }
                welcome.renew_now
            }
            Ok(Some(ConsoleFrame::Refused(refusal))) => return Err(refused(refusal)),
            Ok(Some(ConsoleFrame::NotLeader { leader })) => return Err(not_leader(leader)),
            Ok(Some(other)) => return Err(LinkFailure::Retry(format!("unexpected answer to a hello: {other:?}"))),
            Ok(None) => return Err(closed_early(&connection).await),
            Err(err) => return Err(read_error(&connection, err).await),
        };
        if let Some(workers) = workers.as_deref_mut() {
            workers.heard_console();
        }
        let welcomed = Welcomed { config, connection: &connection, terms: self.terms, credentials, renew_now };
        match welcomed.serve(send, recv, metrics, workers, self.shutdown).await {
            Ok(end) => Ok(end),
            Err(LinkFailure::Retry(reason) | LinkFailure::NameInUse(reason)) => {
                Ok(SessionEnd::Lost { reason, move_on: false })
            }
            Err(LinkFailure::ConsoleLeft(reason)) => Ok(SessionEnd::Lost { reason, move_on: true }),
            Err(LinkFailure::NotLeader(leader)) => Ok(SessionEnd::Deposed(leader)),
            Err(fatal @ LinkFailure::Fatal(_)) => Err(fatal),
        }
    }

    async fn connect(&self, client: quinn::ClientConfig) -> Result<Connection, LinkFailure> {
        let connecting = self
            .endpoint
            .connect_with(client, self.console, CONSOLE_SERVER_NAME)
            .map_err(|err| LinkFailure::Retry(format!("cannot connect to {}: {err}", self.console)))?;
        let connected = match self.patience {
            Some(patience) => self
                .until_shutdown(timeout(patience, connecting))
                .await?
                .map_err(|_| LinkFailure::Retry(format!("no QUIC handshake within {}s", patience.as_secs())))?,
            None => self.until_shutdown(connecting).await?,
        };
        connected.map_err(classify)
    }

    /// `future`'s output, unless the agent shuts down first.
    async fn until_shutdown<T>(&self, future: impl Future<Output = T>) -> Result<T, LinkFailure> {
        tokio::select! {
            output = future => Ok(output),
            () = self.shutdown.cancelled() => Err(LinkFailure::Retry("the agent is shutting down".into())),
        }
    }
}

/// A session the console welcomed.
struct Welcomed<'a> {
    /// The agent's settings.
    config: &'a LinkConfig,
    /// The connection.
    connection: &'a Connection,
    /// The highest term seen.
    terms: &'a Arc<Terms>,
    /// The credentials it connected with: their certificate is renewed
    /// over it (README.md, "Certificates").
    credentials: &'a Credentials,
    /// The console asked for a renewal at once.
    renew_now: bool,
}

impl Welcomed<'_> {
    /// Sends the inventory, then heartbeats, metrics and reports, and
    /// carries out the console's frames, until the session ends.
    async fn serve(
        &self,
        mut send: SendStream,
        recv: RecvStream,
        mut metrics: watch::Receiver<MetricsSample>,
        mut workers: Option<&mut Workers>,
        shutdown: &CancellationToken,
    ) -> Result<SessionEnd, LinkFailure> {
        let (config, connection, terms) = (self.config, self.connection, self.terms);
        if let Some(workers) = workers.as_deref_mut() {
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
        let mut silence = ConsoleSilence::new(tokio::time::Instant::now());
        let mut silence_check = tokio::time::interval(CONSOLE_SILENCE_CHECK);
        silence_check.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut renewal = Renewal::new(self.credentials.validity()?);
        if self.renew_now {
            info!("the console asks for a renewal now: the certificate outlives its agent certificate lifetime");
            renewal.next = Some(tokio::time::Instant::now());
        }
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
                    say_goodbye(connection, &mut send, "agent shutting down").await;
                    return Ok(SessionEnd::Shutdown);
                }
                Some(report) = next_report => {
                    send_frame(&mut send, &AgentFrame::Instance(report), config.protocol_version).await?;
                }
                () = renewal.wait() => {
                    let dir = config.data_dir.clone();
                    let name = self.credentials.name.clone();
                    let request = tokio::task::spawn_blocking(move || {
                        let key = credentials::next_key(&dir)?;
                        credentials::signing_request(&name, &key)
                    })
                    .await
                    .map_err(|err| AgentError::Setup(err.to_string()))
                    .and_then(|request| request);
                    match request {
                        Ok(csr_der) => {
                            info!("two thirds of the certificate's life have passed; asking the console to renew it");
                            send_frame(&mut send, &AgentFrame::Renew(RenewRequest { csr_der }), config.protocol_version)
                                .await?;
                            renewal.asked();
                        }
                        Err(err) => renewal.failed(&format!("no certificate request could be made: {err}")),
                    }
                }
                _ = silence_check.tick() => {
                    let acks = connection.stats().frame_rx.acks;
                    if let Some(silent) = silence.gone(acks, tokio::time::Instant::now()) {
                        connection.close(close_code::NORMAL.into(), b"the console went silent");
                        return Err(LinkFailure::ConsoleLeft(format!(
                            "the console has been silent for {}s",
                            silent.as_secs()
                        )));
                    }
                }
                datagram = connection.read_datagram() => match datagram {
                    Ok(bytes) => {
                        if let Ok(Datagram::ConsoleBeat { term, .. }) = codec::decode_datagram::<Datagram>(&bytes)
                            && terms.admit(term)
                        {
                            silence.heard(tokio::time::Instant::now());
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
                    Some(Ok(ConsoleFrame::Renewed { cert_der })) => {
                        silence.heard(tokio::time::Instant::now());
                        let dir = config.data_dir.clone();
                        let validity = ringwatch_net::cert::validity(&cert_der);
                        let stored = tokio::task::spawn_blocking(move || credentials::store_renewal(&dir, &cert_der))
                            .await
                            .map_err(|err| AgentError::Setup(err.to_string()))
                            .and_then(|stored| stored);
                        match (stored, validity) {
                            (Ok(()), Ok(validity)) => {
                                info!(
                                    "certificate renewed; it expires {}; the next connection uses it",
                                    ringwatch_net::cert::format_unix(validity.not_after_unix)
                                );
                                renewal = Renewal::new(validity);
                            }
                            (Err(err), _) => renewal.failed(&format!("the renewed certificate could not be stored: {err}")),
                            (_, Err(err)) => renewal.failed(&format!("the renewed certificate is unusable: {err}")),
                        }
                    }
                    Some(Ok(ConsoleFrame::RenewalRefused { reason })) => {
                        silence.heard(tokio::time::Instant::now());
                        renewal.failed(&format!("the console refused: {reason}"));
                    }
                    Some(Ok(frame)) => {
                        silence.heard(tokio::time::Instant::now());
                        if let Some(report) = carry_out(frame, workers.as_deref()) {
                            send_frame(&mut send, &AgentFrame::Instance(report), config.protocol_version).await?;
                        }
                    }
                    Some(Err(err)) => return Err(read_error(connection, err).await),
                    None => return Err(closed_early(connection).await),
                },
                // The console opens a stream per data request (README.md, "Data");
                // each is served in a task of its own, off this loop.
                stream = connection.accept_bi() => match stream {
                    Ok((send, recv)) => match workers.as_deref() {
                        Some(workers) => workers.data.spawn(recv, send),
                        None => {
                            tokio::spawn(refuse_data(send));
                        }
                    },
                    Err(err) => return Err(classify(err)),
                },
                err = connection.closed() => return Err(classify(err)),
            }
        }
    }
}

/// When the agent renews its certificate over a welcomed session
/// (README.md, "Certificates"): at two thirds of its life, and after a
/// failure again with doubling delays.
#[derive(Debug)]
struct Renewal {
    /// When to ask next (`None` while an answer is awaited).
    next: Option<tokio::time::Instant>,
    /// The delay after the next failure.
    retry: Duration,
    /// Since when an answer is awaited.
    asked_at: Option<tokio::time::Instant>,
}

impl Renewal {
    /// The schedule of a certificate valid as `validity`.
    fn new(validity: ringwatch_shared::lifetime::Validity) -> Self {
        let next = tokio::time::Instant::now() + validity.until_renewal(unix_now());
        Self { next: Some(next), retry: RENEW_RETRY_BASE, asked_at: None }
    }

    /// Waits until it is time to ask, or an answer is overdue (then
    /// counts a failure and waits for the retry).
    async fn wait(&mut self) {
        loop {
            match (self.next, self.asked_at) {
                (Some(next), _) => {
                    tokio::time::sleep_until(next).await;
                    return;
                }
                (None, Some(asked)) => {
                    tokio::time::sleep_until(asked + ANSWER_TIMEOUT).await;
                    self.failed("the console did not answer the renewal request");
                }
                (None, None) => std::future::pending::<()>().await,
            }
        }
    }

    /// A request was sent.
    fn asked(&mut self) {
        self.next = None;
        self.asked_at = Some(tokio::time::Instant::now());
    }

    /// The renewal failed: try again after the next delay.
    fn failed(&mut self, why: &str) {
        warn!("certificate renewal failed: {why}; trying again in {}", human(self.retry));
        self.next = Some(tokio::time::Instant::now() + self.retry);
        self.asked_at = None;
        self.retry = (self.retry * 2).min(RENEW_RETRY_CAP);
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
/// ignored (ARCHITECTURE.md, "Several consoles").
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

/// Why no frame could be read from a console.
#[derive(Debug)]
enum ReadError {
    /// The stream broke or carried a bad frame.
    Codec(CodecError),
    /// The console's term is lower than one the agent has seen: it was
    /// deposed, and may not know it yet.
    Deposed {
        /// Its term.
        term: u64,
        /// The highest term seen.
        highest: u64,
    },
}

/// Reads one stamped frame; a frame of a lower term than the agent has seen
/// is not one to act on.
async fn read_console_frame<R: AsyncRead + Unpin>(
    recv: &mut R,
    terms: &Terms,
) -> Result<Option<ConsoleFrame>, ReadError> {
    let Some(message) = codec::read_frame::<FromConsole, _>(recv, MAX_FRAME_LEN).await.map_err(ReadError::Codec)?
    else {
        return Ok(None);
    };
    if terms.admit(message.term) {
        Ok(Some(message.frame))
    } else {
        Err(ReadError::Deposed { term: message.term, highest: terms.highest() })
    }
}

async fn read_console_frames(
    mut recv: RecvStream,
    terms: Arc<Terms>,
    frames: mpsc::Sender<Result<ConsoleFrame, ReadError>>,
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

/// A simulated agent holds no data: it answers a data request so (the
/// request itself is not read; dropping the stream's receiving side stops
/// the console's sending).
async fn refuse_data(mut send: SendStream) {
    let refusal = DataReply::Failed(DataFailure::Other("this simulated agent holds no data".into()));
    if codec::write_frame(&mut send, &refusal).await.is_ok() {
        let _ = send.finish();
    }
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

/// A standby answered: the leader is elsewhere. An overlong answer is cut:
/// it is no address, and the policy will find it unusable.
fn not_leader(leader: Option<String>) -> LinkFailure {
    LinkFailure::NotLeader(leader.map(|mut leader| {
        if leader.len() > MAX_LEADER_LEN {
            let mut end = MAX_LEADER_LEN;
            while !leader.is_char_boundary(end) {
                end -= 1;
            }
            leader.truncate(end);
        }
        leader
    }))
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

async fn read_error(connection: &Connection, err: ReadError) -> LinkFailure {
    let err = match err {
        ReadError::Codec(err) => err,
        ReadError::Deposed { term, highest } => {
            connection.close(close_code::NORMAL.into(), b"deposed");
            return LinkFailure::ConsoleLeft(format!(
                "the console is of term {term}, but a console of term {highest} spoke since: it was deposed"
            ));
        }
    };
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
            let code = close.error_code.into_inner();
            match RefusalKind::from_close_code(code) {
                Some(kind) => refused(Refusal { kind, reason }),
                None if code == u64::from(close_code::SHUTDOWN) => {
                    LinkFailure::ConsoleLeft(format!("the console is shutting down ({reason})"))
                }
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

    #[tokio::test]
    async fn regression_renewal_retries_double_up_to_the_cap_and_a_renewal_starts_over() {
        let validity = ringwatch_shared::lifetime::Validity { not_before_unix: 0, not_after_unix: u64::MAX / 2 };
        let mut renewal = Renewal::new(validity);
        assert!(renewal.next.is_some_and(|next| next > tokio::time::Instant::now() + Duration::from_secs(86_400)));
        renewal.asked();
        assert!(renewal.next.is_none(), "no second request while one is awaited");
        let mut delays = Vec::new();
        for _ in 0..12 {
            delays.push(renewal.retry);
            renewal.failed("test");
            assert!(renewal.next.is_some() && renewal.asked_at.is_none());
        }
        assert_eq!(delays[..4], [1, 2, 4, 8].map(Duration::from_secs));
        assert_eq!(delays[11], RENEW_RETRY_CAP, "capped, not grown past it: {delays:?}");
        let due = ringwatch_shared::lifetime::Validity { not_before_unix: 0, not_after_unix: 3 };
        assert_eq!(Renewal::new(due).retry, RENEW_RETRY_BASE, "a new certificate starts the backoff over");
    }

    #[test]
    fn crypto_codes_are_the_tls_alert_range() {
        assert!(is_crypto(0x100 + 42));
        assert!(!is_crypto(0x0a));
        assert!(!is_crypto(0x200));
    }

    fn stamped(term: u64) -> Vec<u8> {
        let welcome = ConsoleFrame::Welcome(ringwatch_shared::protocol::Welcome {
            node: ringwatch_shared::names::NodeName::parse("a").unwrap(),
            console_version: "test".into(),
            renew_now: false,
        });
        codec::encode_frame(&FromConsole { term, frame: welcome }).unwrap()
    }

    #[tokio::test]
    async fn a_console_of_a_lower_term_than_seen_is_dropped() {
        let terms = Terms::default();
        // A console of term 5 welcomes us.
        let mut first: &[u8] = &stamped(5);
        assert!(matches!(read_console_frame(&mut first, &terms).await, Ok(Some(ConsoleFrame::Welcome(_)))));
        // Another connection, to a console of term 3: deposed, not listened to.
        let mut second: &[u8] = &stamped(3);
        let err = read_console_frame(&mut second, &terms).await.unwrap_err();
        assert!(matches!(err, ReadError::Deposed { term: 3, highest: 5 }), "{err:?}");
        // Term 5 again, and a newer term, are listened to.
        let mut again: &[u8] = &stamped(5);
        assert!(matches!(read_console_frame(&mut again, &terms).await, Ok(Some(_))));
        let mut newer: &[u8] = &stamped(6);
        assert!(matches!(read_console_frame(&mut newer, &terms).await, Ok(Some(_))));
        assert_eq!(terms.highest(), 6);
        // Beats go through the same gate.
        assert!(!terms.admit(5));
        assert!(terms.admit(6));
    }

    #[test]
    fn a_console_shutting_down_sends_the_agent_elsewhere() {
        let close = |code: u32| {
            ConnectionError::ApplicationClosed(quinn::ApplicationClose {
                error_code: code.into(),
                reason: Bytes::from_static(b"bye"),
            })
        };
        assert!(matches!(classify(close(close_code::SHUTDOWN)), LinkFailure::ConsoleLeft(_)));
        assert!(matches!(classify(close(close_code::REPLACED)), LinkFailure::Retry(_)));
    }

    #[test]
    fn a_standbys_overlong_answer_is_cut() {
        let LinkFailure::NotLeader(Some(leader)) = not_leader(Some("é".repeat(MAX_LEADER_LEN))) else {
            panic!("a redirect");
        };
        assert!(leader.len() <= MAX_LEADER_LEN);
        assert!(matches!(not_leader(None), LinkFailure::NotLeader(None)));
    }

    #[test]
    fn refusals_sort_into_fatal_and_retryable() {
        let name_in_use = refused(Refusal { kind: RefusalKind::NameInUse, reason: "x".into() });
        assert!(matches!(name_in_use, LinkFailure::NameInUse(_)));
        let expired = refused(Refusal { kind: RefusalKind::TokenExpired, reason: "x".into() });
        assert!(matches!(expired, LinkFailure::Fatal(AgentError::Refused { .. })));
    }
}
