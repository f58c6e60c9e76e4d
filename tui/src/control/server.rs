//! The QUIC side of the control plane: accepts connections, tells joining
//! agents, agents and admin clients apart by their certificate, and runs
//! one task per connection inside a span naming the peer.
//!
//! Every peer input is untrusted: frames are size-limited and decoded
//! without panics, a peer that breaks the protocol is refused with a reason
//! and its connection closed, and nothing a peer sends can stall another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use quinn::{Connection, Endpoint, Incoming, RecvStream, SendStream};
use ringwatch_shared::codec::{self, CodecError, MAX_FRAME_LEN};
use ringwatch_shared::protocol::{
    AdminRequest, AdminResponse, AgentFrame, ConsoleFrame, Datagram, Refusal, RefusalKind, Welcome, close_code,
};
use ringwatch_shared::token::{fingerprint, to_hex};
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::control::join::handle_join;
use crate::control::{Shared, lock};

/// How long a new connection has to send its first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused peer has to read the refusal before the close.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);
/// Frames queued for one agent before the scheduler's sends are dropped
/// (the agent's next inventory repairs what was lost).
const OUTBOX_CAPACITY: usize = 1024;

/// Accepts connections until `shutdown`.
pub async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>, tracker: TaskTracker, shutdown: CancellationToken) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = shutdown.cancelled() => return,
        };
        let Some(incoming) = incoming else { return };
        tracker.spawn(handle_incoming(incoming, shared.clone()));
    }
}

/// Who is on the other end, by certificate.
enum Peer {
    /// No certificate: may only join.
    Joining,
    /// An agent with a certificate we issued.
    Agent {
        /// Its node name.
        name: String,
        /// SHA-256 of its public key.
        key_fingerprint: String,
    },
    /// A local admin tool.
    Admin,
}

async fn handle_incoming(incoming: Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(err) => {
            warn!(%remote, %err, "refused connection");
            return;
        }
    };
    let connection = match connecting.await {
        Ok(connection) => connection,
        Err(err) => {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            warn!(%remote, "refused connection: TLS handshake failed: {err}");
            return;
        }
    };
    match identify(&connection, &shared) {
        Ok(Peer::Joining) => handle_join(connection, shared).instrument(info_span!("join", %remote)).await,
        Ok(Peer::Agent { name, key_fingerprint }) => {
            let span = info_span!("agent", node = %name, %remote);
            serve_agent(connection, shared, name, key_fingerprint).instrument(span).await;
        }
        Ok(Peer::Admin) => serve_admin(connection, shared).instrument(info_span!("admin", %remote)).await,
        Err(refusal) => refuse(&connection, None, &refusal).await,
    }
}

fn identify(connection: &Connection, shared: &Shared) -> Result<Peer, Refusal> {
    let Some(identity) = connection.peer_identity() else {
        return Ok(Peer::Joining);
    };
    let unknown = |reason: &str| Refusal { kind: RefusalKind::UnknownCredential, reason: reason.to_string() };
    let certs = identity
        .downcast::<Vec<CertificateDer<'static>>>()
        .map_err(|_| unknown("the client certificate could not be read"))?;
    let cert = certs.first().ok_or_else(|| unknown("no client certificate was presented"))?;
    let cert_fingerprint = fingerprint(cert);
    if cert_fingerprint == shared.pki.admin_fingerprint {
        return Ok(Peer::Admin);
    }
    match shared.store.credential(&to_hex(&cert_fingerprint)) {
        Ok(Some(record)) if record.revoked => {
            Err(unknown(&format!("the credential of node \"{}\" was revoked", record.name)))
        }
        Ok(Some(record)) => Ok(Peer::Agent { name: record.name, key_fingerprint: record.key_fingerprint }),
        Ok(None) => Err(unknown(
            "this certificate was not issued by this console (or the console lost its state): re-join with a token and a fresh data dir",
        )),
        Err(err) => {
            warn!(%err, "cannot check a credential");
            Err(Refusal {
                kind: RefusalKind::Unavailable,
                reason: "the console cannot read its credential store".into(),
            })
        }
    }
}

/// Refuses a peer: logs why, sends the refusal on `send` if there is one,
/// and closes the connection with the refusal's code and reason, which a
/// peer of any version can read.
pub(crate) async fn refuse(connection: &Connection, send: Option<&mut SendStream>, refusal: &Refusal) {
    warn!(kind = ?refusal.kind, "refused peer: {}", refusal.reason);
    if let Some(send) = send
        && let Ok(frame) = codec::encode_frame(&ConsoleFrame::Refused(refusal.clone()))
        && send.write_all(&frame).await.is_ok()
    {
        let _ = send.finish();
        let _ = timeout(REFUSAL_GRACE, connection.closed()).await;
    }
    connection.close(refusal.kind.close_code().into(), refusal.reason.as_bytes());
}

/// Reads the first frame of a connection's control stream, mapping what can
/// go wrong to a refusal.
pub(crate) async fn first_frame(
    connection: &Connection,
) -> Result<(SendStream, RecvStream, AgentFrame), (Option<SendStream>, Refusal)> {
    let violation = |reason: String| Refusal { kind: RefusalKind::ProtocolViolation, reason };
    let (send, mut recv) = match timeout(FIRST_FRAME_TIMEOUT, connection.accept_bi()).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(err)) => return Err((None, violation(format!("connection ended before its first frame: {err}")))),
        Err(_) => return Err((None, violation("no control stream within 10s".into()))),
    };
    let frame = match timeout(FIRST_FRAME_TIMEOUT, codec::read_frame::<AgentFrame, _>(&mut recv, MAX_FRAME_LEN)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return Err((Some(send), violation("the control stream ended before its first frame".into()))),
        Ok(Err(err)) => return Err((Some(send), frame_refusal(&err))),
        Err(_) => return Err((Some(send), violation("no first frame within 10s".into()))),
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

async fn serve_agent(connection: Connection, shared: Arc<Shared>, name: String, key_fingerprint: String) {
    let (mut send, recv, hello) = match first_frame(&connection).await {
        Ok((send, recv, AgentFrame::Hello(hello))) => (send, recv, hello),
        Ok((mut send, _, other)) => {
            let refusal = Refusal {
                kind: RefusalKind::ProtocolViolation,
                reason: format!("expected a hello, got {}", frame_name(&other)),
            };
            refuse(&connection, Some(&mut send), &refusal).await;
            return;
        }
        Err((mut send, refusal)) => {
            refuse(&connection, send.as_mut(), &refusal).await;
            return;
        }
    };
    let id = connection.stable_id();
    let remote: SocketAddr = connection.remote_address();
    let accepted = lock(&shared.table).connect(&name, id, &key_fingerprint, remote, &hello, Instant::now());
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(refusal) => {
            refuse(&connection, Some(&mut send), &refusal).await;
            return;
        }
    };
    let replaced = {
        let mut connections = lock(&shared.connections);
        connections.insert(id, connection.clone());
        accepted.replaced.and_then(|old| connections.remove(&old))
    };
    if let Some(old) = replaced {
        old.close(close_code::REPLACED.into(), b"replaced by a new connection of the same agent");
    }
    if let Some(transition) = accepted.transition {
        shared.emit(transition);
    }
    let welcome =
        ConsoleFrame::Welcome(Welcome { node: name.clone(), console_version: env!("CARGO_PKG_VERSION").to_string() });
    if let Err(err) = codec::write_frame(&mut send, &welcome).await {
        debug!(%err, "failed to welcome the agent");
    } else {
        info!(weight = hello.weight, agent_version = %hello.agent_version, "agent connected");
        let (outbox_tx, outbox) = mpsc::channel(OUTBOX_CAPACITY);
        lock(&shared.outboxes).insert(name.clone(), (id, outbox_tx));
        let end = agent_session(&connection, &shared, &name, send, recv, outbox).await;
        info!("agent connection ended: {end}");
    }
    lock(&shared.table).disconnected(&name, id);
    lock(&shared.connections).remove(&id);
    let mut outboxes = lock(&shared.outboxes);
    if outboxes.get(&name).is_some_and(|(owner, _)| *owner == id) {
        outboxes.remove(&name);
    }
}

/// Runs a welcomed agent's session; returns why it ended.
async fn agent_session(
    connection: &Connection,
    shared: &Shared,
    name: &str,
    mut send: SendStream,
    recv: RecvStream,
    mut outbox: mpsc::Receiver<ConsoleFrame>,
) -> String {
    let id = connection.stable_id();
    let (frames_tx, mut frames) = mpsc::channel(16);
    // Reading frames is not cancel-safe inside select!: a task of its own reads.
    let _reader = AbortOnDropHandle::new(tokio::spawn(read_agent_frames(recv, frames_tx)));
    let mut beat = tokio::time::interval(shared.console_beat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut beat_seq = 0u64;
    loop {
        tokio::select! {
            _ = beat.tick() => {
                beat_seq += 1;
                if let Ok(datagram) = codec::encode_datagram(&Datagram::ConsoleBeat { seq: beat_seq }) {
                    let _ = connection.send_datagram(datagram.into());
                }
            }
            frame = outbox.recv() => {
                let Some(frame) = frame else { return "replaced by a newer connection".into() };
                if let Err(err) = codec::write_frame(&mut send, &frame).await {
                    return format!("failed to send to the agent: {err}");
                }
            }
            datagram = connection.read_datagram() => match datagram {
                Ok(bytes) => match codec::decode_datagram::<Datagram>(&bytes) {
                    Ok(Datagram::Heartbeat(beat)) => lock(&shared.table).heartbeat(name, id, &beat, Instant::now()),
                    Ok(Datagram::ConsoleBeat { .. }) => {
                        shared.counters.malformed_datagrams.fetch_add(1, Ordering::Relaxed);
                        debug!("ignored a console beat sent by an agent");
                    }
                    Err(err) => {
                        shared.counters.malformed_datagrams.fetch_add(1, Ordering::Relaxed);
                        debug!(%err, "ignored a malformed datagram");
                    }
                },
                Err(err) => return format!("{err}"),
            },
            frame = frames.recv() => match frame {
                Some(Ok(AgentFrame::Metrics(sample))) => lock(&shared.table).metrics(name, id, sample, Instant::now()),
                Some(Ok(AgentFrame::Inventory(reports))) => {
                    let effects = lock(&shared.workloads).inventory(name, &reports, Instant::now());
                    shared.dispatch(effects);
                }
                Some(Ok(AgentFrame::Instance(report))) => {
                    let effects = lock(&shared.workloads).report(name, &report, Instant::now());
                    shared.dispatch(effects);
                }
                Some(Ok(AgentFrame::Goodbye { reason })) => {
                    let transition = lock(&shared.table).goodbye(name, id, &reason);
                    if let Some(transition) = transition {
                        shared.emit(transition);
                    }
                    connection.close(close_code::GOODBYE.into(), b"goodbye");
                    return format!("goodbye ({reason})");
                }
                Some(Ok(other)) => {
                    let refusal = Refusal {
                        kind: RefusalKind::ProtocolViolation,
                        reason: format!("unexpected {} in a session", frame_name(&other)),
                    };
                    refuse(connection, None, &refusal).await;
                    return refusal.reason;
                }
                Some(Err(err)) => {
                    let refusal = frame_refusal(&err);
                    refuse(connection, None, &refusal).await;
                    return refusal.reason;
                }
                None => return "the agent closed its control stream".into(),
            },
            stream = connection.accept_bi() => return unexpected_stream(connection, stream.map(drop)).await,
            stream = connection.accept_uni() => return unexpected_stream(connection, stream.map(drop)).await,
        }
    }
}

/// An agent opened a stream of its own: only the control stream is allowed.
async fn unexpected_stream(connection: &Connection, stream: Result<(), quinn::ConnectionError>) -> String {
    if let Err(err) = stream {
        return err.to_string();
    }
    let refusal =
        Refusal { kind: RefusalKind::ProtocolViolation, reason: "the agent opened an unexpected stream".into() };
    refuse(connection, None, &refusal).await;
    refusal.reason
}

async fn read_agent_frames(mut recv: RecvStream, frames: mpsc::Sender<Result<AgentFrame, CodecError>>) {
    loop {
        let frame = codec::read_frame::<AgentFrame, _>(&mut recv, MAX_FRAME_LEN).await;
        let last = !matches!(frame, Ok(Some(_)));
        let Some(frame) = frame.transpose() else { return };
        if frames.send(frame).await.is_err() || last {
            return;
        }
    }
}

async fn serve_admin(connection: Connection, shared: Arc<Shared>) {
    loop {
        let (mut send, mut recv) = match connection.accept_bi().await {
            Ok(streams) => streams,
            Err(err) => {
                debug!(%err, "admin connection ended");
                return;
            }
        };
        let response = match codec::read_frame::<AdminRequest, _>(&mut recv, MAX_FRAME_LEN).await {
            Ok(Some(request)) => {
                // Requests may commit to the database: off the async workers.
                let shared = shared.clone();
                tokio::task::spawn_blocking(move || shared.admin(request))
                    .await
                    .unwrap_or_else(|err| AdminResponse::Error(format!("the request failed: {err}")))
            }
            Ok(None) => continue,
            Err(err) => AdminResponse::Error(frame_refusal(&err).reason),
        };
        if codec::write_frame(&mut send, &response).await.is_ok() {
            let _ = send.finish();
        }
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
    }
}
