//! The agent's side of the data store over a real QUIC connection
//! (README.md, "Data"): a hand-written console — the agent's own PKI, a
//! welcome, console beats — opens data streams on the connection of an
//! agent run by `run_agent`, as the real console does, and checks what
//! comes back: puts and gets with the same bytes, the quota, many streams
//! at once, a broken stream dropped without harm, heartbeats flowing while
//! a put is under way, the figures of `ringwatch-agent status`, and the
//! copies kept across a restart on the same data dir.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail the test by panicking

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use ring::digest::{SHA256, digest};
use ringwatch_agent::credentials::{self, Credentials};
use ringwatch_agent::objects::{DEFAULT_DATA_QUOTA, OBJECTS_DIR};
use ringwatch_agent::{LinkConfig, SupervisorConfig, status};
use ringwatch_shared::codec::{self, MAX_FRAME_LEN};
use ringwatch_shared::data::wire::{CHUNK_LEN, DataChunk, DataFailure, DataOp, DataReply, DataRequest};
use ringwatch_shared::data::{ObjectKey, ObjectMeta, Version};
use ringwatch_shared::names::NodeName;
use ringwatch_shared::protocol::{
    ALPN, AgentFrame, CONSOLE_SERVER_NAME, ConsoleFrame, Datagram, FromConsole, Welcome, close_code,
};
use ringwatch_shared::token::to_hex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long any one awaited event may take before the test fails: an
/// upper bound for a hung test, not a speed requirement.
const DEADLINE: Duration = Duration::from_secs(30);

/// The console's term on every frame and request.
const TERM: u64 = 1;

/// The node name the fake console gives the agent.
const NODE: &str = "data-1";

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future).await.unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// A console that welcomes agents and beats, on a CA of its own whose
/// agent certificate it writes into the agent's data dir.
struct FakeConsole {
    endpoint: Endpoint,
    /// The node name its agent's certificate and welcome give.
    node: String,
}

impl FakeConsole {
    /// Listens on 127.0.0.1:0 and gives the agent on `agent_dir`
    /// credentials signed by its CA.
    fn start(agent_dir: &Path) -> Self {
        Self::start_for(agent_dir, NODE)
    }

    /// As [`FakeConsole::start`], for an agent named `node`.
    fn start_for(agent_dir: &Path, node: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name.push(DnType::CommonName, "test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_der(ca.der(), &ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut server_params = CertificateParams::new(vec![CONSOLE_SERVER_NAME.to_string()]).unwrap();
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

        let agent_key = credentials::load_or_create_key(agent_dir).unwrap();
        let csr = credentials::signing_request(node, &agent_key).unwrap();
        let request = CertificateSigningRequestParams::from_der(&csr.into()).unwrap();
        let mut agent_params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node);
        agent_params.distinguished_name = name;
        agent_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        agent_params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let agent_cert = agent_params.signed_by(&request.public_key, &issuer).unwrap();
        Credentials::store_grant(agent_dir, node, agent_cert.der(), ca.der()).unwrap();

        let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
        let mut crypto = rustls::ServerConfig::builder_with_provider(ringwatch_net::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server_cert.der().clone(), ca.der().clone()], key)
            .unwrap();
        crypto.alpn_protocols = vec![ALPN.to_vec()];
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(crypto).unwrap()));
        server.transport_config(Arc::new(ringwatch_net::tls::transport()));
        let endpoint = ringwatch_net::endpoint(([127, 0, 0, 1], 0).into(), Some(server)).unwrap();
        Self { endpoint, node: node.to_string() }
    }

    fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }

    /// Waits for an agent's hello and welcomes it.
    async fn welcome(&self) -> Session {
        let incoming = within("an agent connects", self.endpoint.accept()).await.unwrap();
        let connection = within("the handshake", incoming.into_future()).await.unwrap();
        let (mut send, mut recv) = within("the control stream", connection.accept_bi()).await.unwrap();
        let hello = within("the hello", codec::read_frame::<AgentFrame, _>(&mut recv, MAX_FRAME_LEN)).await;
        assert!(matches!(hello, Ok(Some(AgentFrame::Hello(_)))), "{hello:?}");
        let welcome = ConsoleFrame::Welcome(Welcome {
            node: NodeName::parse(&self.node).unwrap(),
            console_version: "fake".into(),
            renew_now: false,
        });
        codec::write_frame(&mut send, &FromConsole { term: TERM, frame: welcome }).await.unwrap();
        let heartbeats = Arc::new(AtomicU64::new(0));
        let tasks = vec![
            tokio::spawn(beat(connection.clone())),
            tokio::spawn(listen(connection.clone(), heartbeats.clone())),
            tokio::spawn(read_control(connection.clone(), recv)),
        ];
        Session { connection, _control: send, heartbeats, tasks }
    }
}

/// A welcomed agent's connection, as the console holds it.
struct Session {
    connection: Connection,
    /// The console's side of the control stream, open while the session is.
    _control: SendStream,
    /// Heartbeats received.
    heartbeats: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Session {
    /// Waits until `more` heartbeats arrived after those counted now.
    async fn heartbeats_go_on(&self, more: u64) {
        let from = self.heartbeats.load(Ordering::Relaxed);
        within("heartbeats", async {
            while self.heartbeats.load(Ordering::Relaxed) < from + more {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// One data request: the request, a put's bytes, the answer and a
    /// get's bytes.
    async fn request(&self, op: DataOp, bytes: Option<&[u8]>) -> (DataReply, Vec<u8>) {
        request(&self.connection, op, bytes).await
    }
}

async fn request(connection: &Connection, op: DataOp, bytes: Option<&[u8]>) -> (DataReply, Vec<u8>) {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send_request(&mut send, op, bytes).await;
    within("the answer", read_answer(&mut recv)).await
}

async fn send_request(send: &mut SendStream, op: DataOp, bytes: Option<&[u8]>) {
    codec::write_frame(send, &DataRequest { term: TERM, op }).await.unwrap();
    if let Some(bytes) = bytes {
        for chunk in bytes.chunks(CHUNK_LEN) {
            codec::write_frame(send, &DataChunk::Bytes(chunk.to_vec())).await.unwrap();
        }
        codec::write_frame(send, &DataChunk::End).await.unwrap();
    }
    send.finish().unwrap();
}

async fn read_answer(recv: &mut RecvStream) -> (DataReply, Vec<u8>) {
    let reply = codec::read_frame::<DataReply, _>(recv, MAX_FRAME_LEN).await.unwrap().expect("an answer");
    let mut body = Vec::new();
    if matches!(reply, DataReply::Object(_)) {
        loop {
            match codec::read_frame::<DataChunk, _>(recv, MAX_FRAME_LEN).await.unwrap() {
                Some(DataChunk::Bytes(piece)) => body.extend(piece),
                Some(DataChunk::End) => break,
                None => panic!("the bytes ended without End"),
            }
        }
    }
    (reply, body)
}

/// The console's beats: an agent that hears none leaves after 3 s.
async fn beat(connection: Connection) {
    let mut seq = 0;
    loop {
        seq += 1;
        let beat = codec::encode_datagram(&Datagram::ConsoleBeat { seq, term: TERM }).unwrap();
        if connection.send_datagram(beat.into()).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Counts the agent's heartbeats.
async fn listen(connection: Connection, heartbeats: Arc<AtomicU64>) {
    while let Ok(bytes) = connection.read_datagram().await {
        if let Ok(Datagram::Heartbeat(_)) = codec::decode_datagram::<Datagram>(&bytes) {
            heartbeats.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads the agent's control frames; closes the connection on its goodbye,
/// as the console does.
async fn read_control(connection: Connection, mut recv: RecvStream) {
    while let Ok(Some(frame)) = codec::read_frame::<AgentFrame, _>(&mut recv, MAX_FRAME_LEN).await {
        if let AgentFrame::Goodbye { .. } = frame {
            connection.close(close_code::GOODBYE.into(), b"goodbye");
            return;
        }
    }
}

fn meta(key: &str, counter: u64, bytes: &[u8]) -> ObjectMeta {
    ObjectMeta {
        key: ObjectKey::parse(key).unwrap(),
        version: Version { term: TERM, counter },
        size: bytes.len() as u64,
        checksum: to_hex(digest(&SHA256, bytes).as_ref()),
        tombstone: false,
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// An agent run in-process on `dir`, stopped by `stop`.
struct Agent {
    stop: CancellationToken,
    task: JoinHandle<Result<(), ringwatch_agent::AgentError>>,
}

impl Agent {
    fn start(console: SocketAddr, dir: &Path, quota: u64) -> Self {
        let mut config = LinkConfig::new(console, dir.to_path_buf());
        config.data_quota = quota;
        let stop = CancellationToken::new();
        let task =
            tokio::spawn(ringwatch_agent::run_agent(config, SupervisorConfig::new(dir.to_path_buf()), stop.clone()));
        Self { stop, task }
    }

    async fn stop(mut self) {
        self.stop.cancel();
        within("the agent stops", &mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn agent_status(dir: &Path) -> status::AgentStatus {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || status::query(&dir, DEADLINE)).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_puts_and_gets_over_the_agents_connection_and_a_restarted_agent_keeps_its_copies() {
    let dir = tempfile::tempdir().unwrap();
    let console = FakeConsole::start(dir.path());
    let quota = 1 << 20;
    let agent = Agent::start(console.addr(), dir.path(), quota);
    let session = console.welcome().await;

    // A put of several chunks, and a get of the same bytes.
    let big = bytes(CHUNK_LEN * 2 + 1_000, 1);
    let (reply, _) = session.request(DataOp::Put(meta("photos/big", 1, &big)), Some(&big)).await;
    assert_eq!(reply, DataReply::Held(Some(meta("photos/big", 1, &big))));
    let (reply, body) = session.request(DataOp::Get(ObjectKey::parse("photos/big").unwrap()), None).await;
    assert_eq!(reply, DataReply::Object(meta("photos/big", 1, &big)));
    assert!(body == big, "the bytes read back differ from those put");

    // Over the quota: refused, with the figures.
    let more = bytes(CHUNK_LEN * 2, 2);
    let (reply, _) = session.request(DataOp::Put(meta("photos/more", 1, &more)), Some(&more)).await;
    assert_eq!(reply, DataReply::Failed(DataFailure::OverQuota { used: big.len() as u64, quota }));

    // More streams at once than are served at once: the rest wait, none fails.
    let many = ringwatch_agent::data::MAX_DATA_STREAMS + 16;
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..many {
        let connection = session.connection.clone();
        puts.spawn(async move {
            let small = bytes(100, i as u8);
            request(&connection, DataOp::Put(meta(&format!("small/{i}"), 1, &small)), Some(&small)).await.0
        });
    }
    for reply in puts.join_all().await {
        assert!(matches!(reply, DataReply::Held(Some(ref held)) if held.size == 100), "{reply:?}");
    }

    // A stream that breaks mid-put is dropped; the session goes on.
    let half = bytes(CHUNK_LEN * 2, 3);
    let (mut send, mut recv) = session.connection.open_bi().await.unwrap();
    codec::write_frame(&mut send, &DataRequest { term: TERM, op: DataOp::Put(meta("broken", 1, &half)) })
        .await
        .unwrap();
    codec::write_frame(&mut send, &DataChunk::Bytes(half[..CHUNK_LEN].to_vec())).await.unwrap();
    // Heartbeats go on while the put waits for the rest of its bytes.
    session.heartbeats_go_on(3).await;
    send.write_all(b"garbage, not a frame").await.unwrap();
    send.finish().unwrap();
    let answer = within("the broken stream ends", recv.read_to_end(1 << 20)).await.unwrap();
    assert!(answer.is_empty(), "a broken stream gets no answer");
    let (reply, _) = session.request(DataOp::Stat(ObjectKey::parse("broken").unwrap()), None).await;
    assert_eq!(reply, DataReply::Held(None), "nothing of the broken put is held");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(OBJECTS_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "the broken put's temporary file is removed: {leftovers:?}");
    session.heartbeats_go_on(2).await;

    // `ringwatch-agent status` counts the copies.
    let held = big.len() as u64 + 100 * many as u64;
    let shown = agent_status(dir.path()).await;
    assert_eq!((shown.data_objects, shown.data_bytes, shown.data_quota), (1 + many as u64, held, quota));

    // Restarted on the same data dir, the agent serves the same copies.
    agent.stop().await;
    drop(session);
    assert!(dir.path().join(OBJECTS_DIR).is_dir());
    let agent = Agent::start(console.addr(), dir.path(), DEFAULT_DATA_QUOTA);
    let session = console.welcome().await;
    let (reply, body) = session.request(DataOp::Get(ObjectKey::parse("photos/big").unwrap()), None).await;
    assert_eq!(reply, DataReply::Object(meta("photos/big", 1, &big)));
    assert!(body == big, "the bytes read back after the restart differ from those put");
    let shown = agent_status(dir.path()).await;
    assert_eq!((shown.data_objects, shown.data_bytes, shown.data_quota), (1 + many as u64, held, DEFAULT_DATA_QUOTA));
    agent.stop().await;
}

#[tokio::test]
async fn an_in_process_agent_with_a_zero_data_quota_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LinkConfig::new(SocketAddr::from(([127, 0, 0, 1], 9)), dir.path().to_path_buf());
    config.data_quota = 0;
    let result =
        ringwatch_agent::run_agent(config, SupervisorConfig::new(dir.path().to_path_buf()), CancellationToken::new());
    let err = within("the refusal", result).await.unwrap_err();
    assert!(err.to_string().contains("data quota must be more than zero"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_agent_of_the_swarm_refuses_data_requests_saying_why() {
    let root = tempfile::tempdir().unwrap();
    let console = FakeConsole::start_for(&root.path().join("swarm-0"), "swarm-0");
    let config = ringwatch_agent::swarm::SwarmConfig {
        consoles: console.addr().into(),
        token: None,
        agents: 1,
        data_dir: root.path().to_path_buf(),
        name_prefix: "swarm".into(),
        heartbeat: Duration::from_millis(500),
        stagger: Duration::ZERO,
        concurrency: 1,
    };
    let stop = CancellationToken::new();
    let swarm = tokio::spawn(ringwatch_agent::swarm::run(config, stop.clone()));
    let session = console.welcome().await;
    let (reply, _) = session.request(DataOp::Stat(ObjectKey::parse("k").unwrap()), None).await;
    assert_eq!(reply, DataReply::Failed(DataFailure::Other("this simulated agent holds no data".into())));
    assert!(!root.path().join("swarm-0").join(OBJECTS_DIR).exists(), "no store is made for it");
    stop.cancel();
    within("the swarm stops", swarm).await.unwrap().unwrap();
}
