//! The QUIC side of the control plane: accepts connections (through
//! [`Admission`]), tells joining agents, agents and admin clients apart by
//! their certificate, and runs each connection in tasks of its own inside a
//! span naming the peer.
//!
//! Every peer input is untrusted: frames are size-limited (small until the
//! peer is known) and decoded without panics, a peer that breaks the
//! protocol is refused with a reason and its connection closed, and nothing
//! a peer sends can stall another. Heartbeats and metrics go straight into
//! the node's [`Liveness`]; everything else becomes an [`Input`] for the
//! owner.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, Endpoint, Incoming, RecvStream, SendStream};
use ringwatch_shared::bounds::{cap_in_place, cap_message};
use ringwatch_shared::codec::{self, CodecError, MAX_FIRST_FRAME_LEN, MAX_FRAME_LEN};
use ringwatch_shared::limits::ResourceLimits;
use ringwatch_shared::names::NodeName;
use ringwatch_shared::protocol::{
    AdminRequest, AdminResponse, AgentFrame, ConsoleFrame, Datagram, EventQuery, FromConsole, InstanceReport,
    OperatorRole, Refusal, RefusalKind, WatchedSnapshot, Welcome, close_code,
};
use ringwatch_shared::status::ClusterEvent;
use ringwatch_shared::token::{fingerprint, to_hex};
use rustls::pki_types::CertificateDer;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::{Instrument, debug, info, info_span};

use crate::control::admission::Admission;
use crate::control::data::{DataInput, serve};
use crate::control::join::handle_join;
use crate::control::liveness::Liveness;
use crate::control::nodes::ConnectionId;
use crate::control::operators::{Operator, Verdict};
use crate::control::owner::{Counters, Input, Outlets, OwnerHandle, SessionEvent};
use crate::control::pki::ClusterPki;
use crate::control::registry::viewer_refusal;
use crate::control::role::Role;
use crate::control::tally;
use crate::control::tls;

/// How long a new connection has to send its first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refused peer has to read the refusal before the close.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);
/// Frames queued for one agent; beyond it the owner closes the connection
/// (the agent reconnects and its inventory repairs what was missed).
const OUTBOX_CAPACITY: usize = 256;

/// What every connection task needs.
#[derive(Debug)]
pub struct ServerContext {
    /// This console's role: who answers (ARCHITECTURE.md, "Several
    /// consoles").
    pub role: watch::Receiver<Role>,
    /// Snapshots and events for watchers and event followers, and the
    /// operator credentials.
    pub outlets: Outlets,
    /// Refusals and drops, counted without the owner.
    pub counters: Arc<Counters>,
    /// Certificates (read-only).
    pub pki: Arc<ClusterPki>,
    /// Handshakes in progress and refusal logs.
    pub admission: Arc<Admission>,
    /// How often the console beats to each agent.
    pub console_beat: Duration,
}

impl ServerContext {
    /// `frame`, stamped with the term of this console's role now, encoded.
    pub(crate) fn encode(&self, frame: ConsoleFrame) -> Result<Vec<u8>, CodecError> {
        encode(self.role.borrow().term(), frame)
    }
}

/// `frame`, stamped with `term`, encoded.
fn encode(term: u64, frame: ConsoleFrame) -> Result<Vec<u8>, CodecError> {
    codec::encode_frame(&FromConsole { term, frame })
}

/// Accepts connections until `shutdown`.
pub async fn accept_loop(
    endpoint: Endpoint,
    context: Arc<ServerContext>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.cancelled() => return,
        };
        let Some(incoming) = incoming else { return };
        tracker.spawn(handle_incoming(incoming, context.clone()));
    }
}

/// Who is on the other end, by certificate.
enum Peer {
    /// No certificate: may only join.
    Joining,
    /// A client certificate other than the admin's: an agent, if the
    /// owner knows it.
    Agent {
        /// SHA-256 (hex) of the certificate.
        cert_fingerprint: String,
    },
    /// A local admin tool.
    Admin,
    /// Someone holding an operator credential.
    Operator(Operator),
}

async fn handle_incoming(incoming: Incoming, context: Arc<ServerContext>) {
    let remote = incoming.remote_address();
    let (incoming, slot) = match context.admission.admit(incoming) {
        Some(admitted) => admitted,
        None => {
            context.counters.shed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(err) => {
            context.admission.refused(format_args!("refused a connection from {remote}: {err}"));
            return;
        }
    };
    let connection = match connecting.await {
        Ok(connection) => connection,
        Err(err) => {
            context.counters.refused.fetch_add(1, Ordering::Relaxed);
            context.admission.refused(format_args!("refused a connection from {remote}: TLS handshake failed: {err}"));
            return;
        }
    };
    let role = context.role.borrow().clone();
    match (identify(&connection, &context), role) {
        (Ok(Peer::Admin), _) => {
            drop(slot);
            tls::widen_admin(&connection);
            serve_admin(connection, context, None).instrument(info_span!("admin", %remote)).await;
        }
        (Ok(Peer::Operator(operator)), _) => {
            drop(slot);
            let span = info_span!("operator", %remote, name = %operator.name, role = %operator.role);
            tls::widen_admin(&connection);
            context.outlets.operators.opened(&operator, &connection);
            serve_admin(connection.clone(), context.clone(), Some(operator.clone())).instrument(span).await;
            context.outlets.operators.closed(&operator, &connection);
        }
        (Ok(Peer::Joining), Role::Leader { owner, term }) => {
            handle_join(connection, context, owner, term, slot).instrument(info_span!("join", %remote)).await;
        }
        (Ok(Peer::Agent { cert_fingerprint }), Role::Leader { owner, term }) => {
            drop(slot);
            let leader = Leader { owner, term };
            serve_agent(connection, context, leader, cert_fingerprint).instrument(info_span!("agent", %remote)).await;
        }
        (Ok(Peer::Joining | Peer::Agent { .. }), standby @ Role::Standby { .. }) => {
            redirect(&connection, &standby).instrument(info_span!("redirect", %remote)).await;
        }
        (Err(refusal), _) => refuse(&connection, None, &refusal, &context).await,
    }
}

/// A standby answers an agent's first frame with where the leader is, and
/// closes: the agent goes there (ARCHITECTURE.md, "Several consoles").
async fn redirect(connection: &Connection, role: &Role) {
    let Ok((mut send, _, _)) = first_frame(connection).await else {
        connection.close(close_code::NORMAL.into(), b"not the leader");
        return;
    };
    let leader = role.leader_address();
    debug!(?leader, "an agent asked a standby; pointing it at the leader");
    if let Ok(frame) = encode(role.term(), ConsoleFrame::NotLeader { leader }) {
        let _ = send.write_all(&frame).await;
        let _ = send.finish();
        let _ = timeout(REFUSAL_GRACE, connection.closed()).await;
    }
    connection.close(close_code::NORMAL.into(), b"not the leader");
}

/// The leadership a connection was accepted under.
#[derive(Debug, Clone)]
pub(crate) struct Leader {
    /// The owner that decides.
    pub(crate) owner: OwnerHandle,
    /// Its term.
    pub(crate) term: u64,
}

fn identify(connection: &Connection, context: &ServerContext) -> Result<Peer, Refusal> {
    let pki = &context.pki;
    let Some(identity) = connection.peer_identity() else {
        return Ok(Peer::Joining);
    };
    let unknown = |reason: &str| Refusal { kind: RefusalKind::UnknownCredential, reason: reason.to_string() };
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| unknown("the client certificate could not be read"))?;
    let cert = certs.first().ok_or_else(|| unknown("no client certificate was presented"))?;
    let cert_fingerprint = fingerprint(cert);
    if pki.is_admin(&cert_fingerprint) {
        return Ok(Peer::Admin);
    }
    let cert_fingerprint = to_hex(&cert_fingerprint);
    match context.outlets.operators.check(&cert_fingerprint) {
        Verdict::Valid(operator) => Ok(Peer::Operator(operator)),
        Verdict::Refused(reason) => Err(Refusal { kind: RefusalKind::UnknownCredential, reason }),
        Verdict::Unknown => Ok(Peer::Agent { cert_fingerprint }),
    }
}

/// Refuses a peer: logs why (within the log budget), sends the refusal on
/// `send` if there is one, and closes the connection with the refusal's
/// code and reason, which a peer of any version can read.
pub(crate) async fn refuse(
    connection: &Connection,
    send: Option<&mut SendStream>,
    refusal: &Refusal,
    context: &ServerContext,
) {
    context.counters.refused.fetch_add(1, Ordering::Relaxed);
    context.admission.refused(format_args!(
        "refused {} ({:?}): {}",
        connection.remote_address(),
        refusal.kind,
        refusal.reason
    ));
    if let Some(send) = send
        && let Ok(frame) = context.encode(ConsoleFrame::Refused(refusal.clone()))
        && send.write_all(&frame).await.is_ok()
    {
        let _ = send.finish();
        let _ = timeout(REFUSAL_GRACE, connection.closed()).await;
    }
    connection.close(refusal.kind.close_code().into(), refusal.reason.as_bytes());
}

/// Reads the first frame of a connection's control stream (small, and
/// soon), mapping what can go wrong to a refusal.
pub(crate) async fn first_frame(
    connection: &Connection,
) -> Result<(SendStream, RecvStream, AgentFrame), (Option<SendStream>, Refusal)> {
    let violation = |reason: String| Refusal { kind: RefusalKind::ProtocolViolation, reason };
    let deadline = tokio::time::Instant::now() + FIRST_FRAME_TIMEOUT;
    let (send, mut recv) = match tokio::time::timeout_at(deadline, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(err)) => return Err((None, violation(format!("connection ended before its first frame: {err}")))),
        Err(_) => return Err((None, violation("no control stream within 5s".into()))),
    };
    let read = codec::read_frame::<AgentFrame, _>(&mut recv, MAX_FIRST_FRAME_LEN);
    let frame = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return Err((Some(send), violation("the control stream ended before its first frame".into()))),
        Ok(Err(err)) => return Err((Some(send), frame_refusal(&err))),
        Err(_) => return Err((Some(send), violation("no first frame within 5s".into()))),
    };
    Ok((send, recv, frame))
}

/// The refusal for a frame that does not decode.
pub(crate) fn frame_refusal(err: &CodecError) -> Refusal {
    match err {
        CodecError::VersionMismatch { theirs, ours } => Refusal {
            kind: RefusalKind::VersionMismatch,
            reason: format!("protocol version mismatch: the console speaks v{ours}, the agent speaks v{theirs}"),
        },
        other => Refusal { kind: RefusalKind::ProtocolViolation, reason: format!("bad frame: {other}") },
    }
}

async fn serve_agent(connection: Connection, context: Arc<ServerContext>, leader: Leader, cert_fingerprint: String) {
    let (mut send, recv, hello) = match first_frame(&connection).await {
        Ok((send, recv, AgentFrame::Hello(hello))) => (send, recv, hello),
        Ok((mut send, _, other)) => {
            let refusal = Refusal {
                kind: RefusalKind::ProtocolViolation,
                reason: format!("expected a hello, got {}", frame_name(&other)),
            };
            refuse(&connection, Some(&mut send), &refusal, &context).await;
            return;
        }
        Err((mut send, refusal)) => {
            refuse(&connection, send.as_mut(), &refusal, &context).await;
            return;
        }
    };
    let (outbox_tx, outbox) = mpsc::channel(OUTBOX_CAPACITY);
    let (reply, answer) = oneshot::channel();
    let hello_input = Input::Hello {
        cert_fingerprint,
        hello: hello.clone(),
        address: connection.remote_address(),
        connection: connection.clone(),
        outbox: outbox_tx,
        reply,
    };
    if leader.owner.inputs.send(hello_input).await.is_err() {
        connection.close(close_code::SHUTDOWN.into(), b"console shutting down");
        return;
    }
    let admitted = match answer.await {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(refusal)) => {
            refuse(&connection, Some(&mut send), &refusal, &context).await;
            return;
        }
        Err(_) => {
            connection.close(close_code::SHUTDOWN.into(), b"console shutting down");
            return;
        }
    };
    tls::widen_known_peer(&connection);
    let node = admitted.node.clone();
    let id = connection.stable_id();
    let span = info_span!("session", node = %node);
    async {
        let welcome = ConsoleFrame::Welcome(Welcome {
            node: node.clone(),
            console_version: env!("CARGO_PKG_VERSION").to_string(),
            renew_now: admitted.renew_now,
        });
        let written = match encode(leader.term, welcome) {
            Ok(frame) => send.write_all(&frame).await.map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match written {
            Err(err) => debug!(%err, "failed to welcome the agent"),
            Ok(()) => {
                info!(weight = hello.weight, agent_version = %cap_message(&hello.agent_version), "agent connected");
                let session = Session {
                    connection: &connection,
                    context: &context,
                    leader: &leader,
                    node: &node,
                    id,
                    liveness: admitted.liveness,
                    limits: admitted.limits,
                };
                let end = session.run(send, recv, outbox).await;
                info!("agent connection ended: {end}");
            }
        }
        let ended = Input::Session { node: node.clone(), connection: id, event: SessionEvent::Ended };
        let _ = leader.owner.inputs.send(ended).await;
    }
    .instrument(span)
    .await;
}

/// A welcomed agent's connection.
struct Session<'a> {
    connection: &'a Connection,
    context: &'a Arc<ServerContext>,
    leader: &'a Leader,
    node: &'a NodeName,
    id: ConnectionId,
    liveness: Arc<Liveness>,
    limits: ResourceLimits,
}

impl Session<'_> {
    /// Runs until the connection ends; returns why it did.
    async fn run(&self, mut send: SendStream, recv: RecvStream, mut outbox: mpsc::Receiver<Bytes>) -> String {
        // Reading frames is not cancel-safe inside select!: a task of its
        // own reads, and hands what it read to the liveness or the owner.
        let reader = tokio::spawn(read_agent_frames(
            recv,
            self.leader.clone(),
            self.context.role.clone(),
            self.node.clone(),
            self.id,
            self.liveness.clone(),
            self.limits.clone(),
        ));
        let mut reader = AbortOnDropHandle::new(reader);
        let mut beat = tokio::time::interval(self.context.console_beat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut beat_seq = 0u64;
        let mut role = self.context.role.clone();
        // Set while the leadership is lost but the session is held open
        // (role::Hold): beats only, until then.
        let mut held_until: Option<tokio::time::Instant> = None;
        let mut outbox_open = true;
        loop {
            tokio::select! {
                changed = role.changed() => {
                    // A console that stops leading says nothing more: no
                    // frame, no beat (its agents' fenced instances stop on
                    // time, and the next leader takes over cleanly) — unless
                    // it holds its sessions through a store outage.
                    let now = if changed.is_ok() { Some(role.borrow_and_update().clone()) } else { None };
                    match now {
                        Some(now) if now.leads_at(self.leader.term) => held_until = None,
                        Some(now) if now.holds_sessions_of(self.leader.term).is_some() => {
                            if held_until.is_none() {
                                debug!("the store is out of reach: holding the session, deciding nothing");
                            }
                            held_until = now.holds_sessions_of(self.leader.term);
                        }
                        _ => {
                            self.connection.close(close_code::SHUTDOWN.into(), b"this console no longer leads");
                            return "this console no longer leads".into();
                        }
                    }
                }
                () = sleep_until_or_never(held_until) => {
                    self.connection.close(close_code::SHUTDOWN.into(), b"this console lost its store");
                    return "this console lost its store and no longer leads".into();
                }
                _ = beat.tick() => {
                    beat_seq += 1;
                    let beat = Datagram::ConsoleBeat { seq: beat_seq, term: self.leader.term };
                    if let Ok(datagram) = codec::encode_datagram(&beat) {
                        let _ = self.connection.send_datagram(datagram.into());
                    }
                }
                frame = outbox.recv(), if outbox_open => {
                    let Some(frame) = frame else {
                        // The owner of a lost leadership is gone; a held
                        // session only beats.
                        if self.context.role.borrow().holds_sessions_of(self.leader.term).is_some() {
                            outbox_open = false;
                            continue;
                        }
                        return "replaced by a newer connection".into();
                    };
                    if let Err(err) = send.write_all(&frame).await {
                        return format!("failed to send to the agent: {err}");
                    }
                }
                datagram = self.connection.read_datagram() => match datagram {
                    Ok(bytes) => match codec::decode_datagram::<Datagram>(&bytes) {
                        Ok(Datagram::Heartbeat(beat)) => {
                            let lost = self.liveness.heartbeat(&beat, Instant::now(), self.connection.rtt());
                            self.context.counters.tallies.heartbeats_lost.inc_by(lost);
                        }
                        Ok(Datagram::ConsoleBeat { .. }) | Err(_) => {
                            self.context.counters.malformed_datagrams.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    Err(err) => return err.to_string(),
                },
                end = &mut reader => {
                    return match end {
                        Ok(ReaderEnd::Goodbye) => {
                            // The agent waits for this close before it exits.
                            self.connection.close(close_code::GOODBYE.into(), b"goodbye");
                            "goodbye".into()
                        }
                        Ok(ReaderEnd::Closed(reason)) => reason,
                        Ok(ReaderEnd::Refused(refusal)) => {
                            refuse(self.connection, Some(&mut send), &refusal, self.context).await;
                            refusal.reason
                        }
                        Err(err) => format!("the reader failed: {err}"),
                    };
                }
            }
        }
    }
}

/// How an agent's control stream ended.
enum ReaderEnd {
    /// The agent said goodbye (the owner knows).
    Goodbye,
    /// Closed (stream end, connection gone): why.
    Closed(String),
    /// The agent broke the protocol.
    Refused(Refusal),
}

async fn read_agent_frames(
    mut recv: RecvStream,
    leader: Leader,
    role: watch::Receiver<Role>,
    node: NodeName,
    connection: ConnectionId,
    liveness: Arc<Liveness>,
    limits: ResourceLimits,
) -> ReaderEnd {
    loop {
        let event = match codec::read_frame::<AgentFrame, _>(&mut recv, MAX_FRAME_LEN).await {
            Ok(Some(AgentFrame::Metrics(sample))) => {
                liveness.metrics(&limits, sample, Instant::now());
                continue;
            }
            // Messages are cut here, before they queue for the owner: what
            // waits in its inputs is bounded too.
            Ok(Some(AgentFrame::Inventory(mut reports))) => {
                reports.iter_mut().for_each(cap_report);
                SessionEvent::Inventory(reports)
            }
            Ok(Some(AgentFrame::Instance(mut report))) => {
                cap_report(&mut report);
                SessionEvent::Instance(report)
            }
            Ok(Some(AgentFrame::Goodbye { reason })) => SessionEvent::Goodbye(cap_message(&reason)),
            Ok(Some(AgentFrame::Renew(request))) => SessionEvent::Renew(request.csr_der),
            Ok(Some(other)) => {
                return ReaderEnd::Refused(Refusal {
                    kind: RefusalKind::ProtocolViolation,
                    reason: format!("unexpected {} in a session", frame_name(&other)),
                });
            }
            Ok(None) => return ReaderEnd::Closed("the agent closed its control stream".into()),
            Err(CodecError::Io(err)) => return ReaderEnd::Closed(err.to_string()),
            Err(err) => return ReaderEnd::Refused(frame_refusal(&err)),
        };
        let goodbye = matches!(event, SessionEvent::Goodbye(_));
        let input = Input::Session { node: node.clone(), connection, event };
        // A held session (role::Hold) has no owner to tell: what the agent
        // reports now, it reports again to the next leader.
        if leader.owner.inputs.send(input).await.is_err() && role.borrow().holds_sessions_of(leader.term).is_none() {
            return ReaderEnd::Closed("the console is shutting down".into());
        }
        if goodbye {
            return ReaderEnd::Goodbye;
        }
    }
}

/// Serves an admin connection: each request on a stream of its own, so a
/// follower or a watcher does not hold up the next request. `operator` is
/// `None` for the console's own admin tool.
async fn serve_admin(connection: Connection, context: Arc<ServerContext>, operator: Option<Operator>) {
    let streams = TaskTracker::new();
    loop {
        let (send, recv) = match connection.accept_bi().await {
            Ok(streams) => streams,
            Err(err) => {
                debug!(%err, "admin connection ended");
                break;
            }
        };
        streams.spawn(serve_admin_stream(send, recv, context.clone(), operator.clone()).in_current_span());
    }
    streams.close();
    streams.wait().await;
}

/// Events per frame of an event log's backlog.
const EVENTS_PER_FRAME: usize = 500;
/// The shortest gap between two snapshots pushed to a watcher.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// The longest: a watcher that hears nothing for several of these knows
/// the link is stalled (see `remote::console`).
const WATCH_KEEPALIVE: Duration = Duration::from_secs(1);

async fn serve_admin_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    context: Arc<ServerContext>,
    operator: Option<Operator>,
) {
    let request = match codec::read_frame::<AdminRequest, _>(&mut recv, MAX_FRAME_LEN).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(err) => {
            write_answer(&mut send, &AdminResponse::Error(frame_refusal(&err).reason)).await;
            return;
        }
    };
    let name = tally::request_name(&request);
    let tallies = &context.counters.tallies;
    let viewer = operator.as_ref().filter(|operator| operator.role == OperatorRole::Viewer);
    if let Some(viewer) = viewer
        && !request.is_read_only()
    {
        info!(request = name, "refused a viewer's request");
        let refusal = AdminResponse::Error(viewer_refusal(&viewer.name));
        tallies.admin_request(name, &refusal);
        write_answer(&mut send, &refusal).await;
        return;
    }
    if let Some(operator) = &operator
        && !request.is_read_only()
    {
        info!(request = name, operator = %operator.name, "an operator's request");
    }
    match request {
        AdminRequest::Events(query) => {
            tallies.admin_request(name, &AdminResponse::Events(Vec::new()));
            serve_events(&mut send, query, &context).await;
        }
        AdminRequest::Watch => {
            tallies.admin_request(name, &AdminResponse::Events(Vec::new()));
            serve_watch(&mut send, &context, viewer.is_some()).await;
        }
        data @ (AdminRequest::DataPut(_)
        | AdminRequest::DataGet { .. }
        | AdminRequest::DataRemove { .. }
        | AdminRequest::DataList(_)
        | AdminRequest::DataStat(_)) => {
            let role = context.role.borrow().clone();
            let Role::Leader { owner, .. } = role else {
                let response = AdminResponse::NotLeader { leader: role.leader_address() };
                tallies.admin_request(name, &response);
                write_answer(&mut send, &response).await;
                return;
            };
            let response = match data {
                AdminRequest::DataPut(put) => serve::put(&owner, put, &mut recv).await,
                AdminRequest::DataGet { key, consistency } => {
                    tallies.admin_request(name, &AdminResponse::Events(Vec::new()));
                    serve::get(&owner, key, consistency, &mut send).await;
                    return;
                }
                AdminRequest::DataRemove { key, consistency } => serve::remove(&owner, key, consistency).await,
                AdminRequest::DataList(prefix) => serve::catalog(&owner, DataInput::List(prefix)).await,
                AdminRequest::DataStat(key) => serve::catalog(&owner, DataInput::Stat(key)).await,
                _ => AdminResponse::Error("not a data request".into()),
            };
            tallies.admin_request(name, &response);
            write_answer(&mut send, &response).await;
        }
        request => {
            let role = context.role.borrow().clone();
            let response = role.answer(request).await;
            tallies.admin_request(name, &response);
            write_answer(&mut send, &response).await;
        }
    }
}

/// Writes one answer and ends the stream.
async fn write_answer(send: &mut SendStream, response: &AdminResponse) {
    if write_frame(send, response).await.is_ok() {
        let _ = send.finish();
    }
}

/// Writes one frame of a (possibly longer) answer.
async fn write_frame(send: &mut SendStream, response: &AdminResponse) -> Result<(), ()> {
    let frame = codec::encode_admin_frame(response)
        .or_else(|err| codec::encode_frame(&AdminResponse::Error(format!("the answer could not be sent: {err}"))))
        .map_err(|_| ())?;
    send.write_all(&frame).await.map_err(|_| ())
}

/// `ringwatch events`: the log the console keeps, then (with `follow`)
/// every new event. Subscribing before reading the log, and skipping what
/// the log already held, loses nothing in between and sends nothing twice.
async fn serve_events(send: &mut SendStream, query: EventQuery, context: &ServerContext) {
    let mut live = context.outlets.events.subscribe();
    let role = context.role.borrow().clone();
    let Some(snapshot) = role.snapshot().await else {
        write_answer(send, &AdminResponse::Error("the console is shutting down".into())).await;
        return;
    };
    let mut last_seq = snapshot.events.last().map_or(0, |event| event.seq);
    let backlog: Vec<ClusterEvent> = snapshot.events.iter().filter(|event| query.matches(event)).cloned().collect();
    for chunk in backlog.chunks(EVENTS_PER_FRAME) {
        if write_frame(send, &AdminResponse::Events(chunk.to_vec())).await.is_err() {
            return;
        }
    }
    if backlog.is_empty() && write_frame(send, &AdminResponse::Events(Vec::new())).await.is_err() {
        return;
    }
    if !query.follow {
        let _ = send.finish();
        return;
    }
    loop {
        let received = tokio::select! {
            received = live.recv() => received,
            _ = send.stopped() => return,
        };
        let frame = match received {
            Ok(event) if event.seq <= last_seq => continue,
            Ok(event) => {
                last_seq = event.seq;
                if !query.matches(&event) {
                    continue;
                }
                AdminResponse::Events(vec![event])
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => AdminResponse::EventsMissed(missed),
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if write_frame(send, &frame).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// `ringwatch attach`: a snapshot now, then one whenever the cluster
/// changes, at most one per [`WATCH_INTERVAL`]; events travel once each.
async fn serve_watch(send: &mut SendStream, context: &ServerContext, read_only: bool) {
    // While this receiver exists, whoever answers publishes snapshots.
    let mut snapshots = context.outlets.snapshots.subscribe();
    let role = context.role.borrow().clone();
    let mut snapshot = match role.snapshot().await {
        Some(snapshot) => snapshot,
        None => snapshots.borrow_and_update().clone(),
    };
    let mut last_seq = 0;
    loop {
        let watched = WatchedSnapshot {
            status: snapshot.status.clone(),
            samples: snapshot.samples.iter().map(|(name, sample)| (name.clone(), (**sample).clone())).collect(),
            new_events: snapshot.events.iter().filter(|event| event.seq > last_seq).cloned().collect(),
            at_unix_ms: snapshot.at_unix_ms,
            read_only,
        };
        last_seq = snapshot.events.last().map_or(last_seq, |event| event.seq.max(last_seq));
        if write_frame(send, &AdminResponse::Snapshot(Box::new(watched))).await.is_err() {
            return;
        }
        let next = tokio::time::Instant::now() + WATCH_INTERVAL;
        // A console whose cluster is quiet (a standby publishes only on
        // change) still sends the snapshot again now and then: the watcher
        // tells a quiet cluster from a dead link by it.
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(WATCH_KEEPALIVE) => {}
            _ = send.stopped() => return,
        }
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            _ = send.stopped() => return,
        }
        snapshot = snapshots.borrow_and_update().clone();
    }
    let _ = send.finish();
}

/// Cuts the free text of an agent's report to what the console keeps.
fn cap_report(report: &mut InstanceReport) {
    cap_in_place(&mut report.message);
    if let Some(exit) = report.last_exit.as_mut() {
        cap_in_place(exit);
    }
}

pub(crate) fn frame_name(frame: &AgentFrame) -> &'static str {
    match frame {
        AgentFrame::Hello(_) => "a hello",
        AgentFrame::Join(_) => "a join request",
        AgentFrame::Metrics(_) => "a metrics sample",
        AgentFrame::Inventory(_) => "an inventory",
        AgentFrame::Instance(_) => "an instance report",
        AgentFrame::Goodbye { .. } => "a goodbye",
        AgentFrame::Renew(_) => "a certificate renewal",
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
