//! The floor `bench_scale` measures the console against: a quinn server with
//! the console's certificates, TLS settings, QUIC transport settings and
//! socket buffers, doing only what keeps a swarm agent connected — accept the
//! connection and its control stream, answer the first frame with a welcome,
//! then discard stream bytes, count datagrams and send each connection one
//! console beat a second. No detector, no table, no store, no events.
//!
//! `bare_quinn --data-dir CONSOLE_DIR [--listen 127.0.0.1:0]`
//!
//! It reads `ca.crt`, `console.crt` and `console.key` from a console's data
//! dir and requires client certificates issued by that CA: agents that
//! joined that console connect to it as they would to the console. It prints
//! `bare_quinn: listening on ADDR`, then every second a line of counters
//! (`connections=… datagrams=… datagrams_per_sec=… stream_bytes=…
//! handshakes_failed=…`) for the driver to check both runs saw the same load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Connection, Incoming, RecvStream};
use ringwatch::control::tls::server_transport;
use ringwatch_net::tls::provider;
use ringwatch_shared::codec::{self, MAX_FRAME_LEN};
use ringwatch_shared::names::NodeName;
use ringwatch_shared::protocol::{ALPN, AgentFrame, ConsoleFrame, Datagram, FromConsole, Welcome};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::time::MissedTickBehavior;
use tokio_util::task::AbortOnDropHandle;

/// The console's beat period (its default): agents reconnect after 3 s
/// without one.
const BEAT: Duration = Duration::from_secs(1);
/// How often the counters are printed.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// The node name in every welcome: agents only log it.
const NODE: &str = "bare-quinn";

/// What the server has seen, shared by every connection task.
#[derive(Debug, Default)]
struct Counters {
    /// Connections welcomed and not yet ended.
    connections: AtomicU64,
    /// Datagrams received, in total.
    datagrams: AtomicU64,
    /// Control stream bytes received after the first frame, in total.
    stream_bytes: AtomicU64,
    /// Handshakes that failed (bad or missing client certificates, time-outs).
    handshakes_failed: AtomicU64,
}

fn main() -> Result<()> {
    let (data_dir, listen) = parse_args()?;
    // The console runs on tokio's multi-threaded runtime with the default
    // number of workers; the floor must not get a cheaper scheduler.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(serve(&data_dir, listen))
}

fn parse_args() -> Result<(PathBuf, SocketAddr)> {
    let mut data_dir = None;
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("\"{arg}\" needs a value"));
        match arg.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--listen" => {
                let text = value()?;
                listen = text.parse().with_context(|| format!("--listen \"{text}\" is not IP:PORT"))?;
            }
            other => bail!("unknown argument \"{other}\"; usage: bare_quinn --data-dir CONSOLE_DIR [--listen IP:PORT]"),
        }
    }
    let data_dir = data_dir.ok_or_else(|| anyhow!("--data-dir CONSOLE_DIR is required (a console's data dir)"))?;
    Ok((data_dir, listen))
}

async fn serve(data_dir: &Path, listen: SocketAddr) -> Result<()> {
    let server = server_config(data_dir)?;
    let endpoint =
        ringwatch_net::endpoint(listen, Some(server)).with_context(|| format!("failed to listen on {listen}"))?;
    let addr = endpoint.local_addr().context("failed to read the bound address")?;
    println!("bare_quinn: listening on {addr}");
    let counters = Arc::new(Counters::default());
    let _reporter = AbortOnDropHandle::new(tokio::spawn(report(counters.clone())));
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(serve_connection(incoming, counters.clone()));
    }
    Ok(())
}

/// The console's server config (tui/src/control/tls.rs) with client
/// certificates required instead of optional: nobody joins here.
fn server_config(dir: &Path) -> Result<quinn::ServerConfig> {
    let ca = read_cert(&dir.join("ca.crt"))?;
    let console_cert = read_cert(&dir.join("console.crt"))?;
    let key_path = dir.join("console.key");
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read a PEM private key from \"{}\"", key_path.display()))?;
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).context("the CA certificate is unusable")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("failed to build the client certificate verifier")?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 is unavailable")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![console_cert, ca], key)
        .context("the console certificate or key is unusable")?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(crypto).context("quinn refused the TLS config")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(server_transport()));
    Ok(config)
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_file(path).with_context(|| {
        format!("cannot read a PEM certificate from \"{}\": is it a console's data dir?", path.display())
    })
}

async fn serve_connection(incoming: Incoming, counters: Arc<Counters>) {
    let Ok(connection) = incoming.await else {
        counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Ok((mut send, mut recv)) = connection.accept_bi().await else { return };
    let Ok(node) = NodeName::parse(NODE) else { return };
    // Whatever the first frame is (an agent's hello), it gets the welcome.
    let Ok(Some(_)) = codec::read_frame::<AgentFrame, _>(&mut recv, MAX_FRAME_LEN).await else { return };
    let welcome = ConsoleFrame::Welcome(Welcome { node, console_version: "bare-quinn".into(), renew_now: false });
    if codec::write_frame(&mut send, &FromConsole { term: 0, frame: welcome }).await.is_err() {
        return;
    }
    counters.connections.fetch_add(1, Ordering::Relaxed);
    let _drain = AbortOnDropHandle::new(tokio::spawn(discard(recv, counters.clone())));
    session(&connection, &counters).await;
    counters.connections.fetch_sub(1, Ordering::Relaxed);
    // `send` lives until here: dropping it would finish the stream, which
    // the agent takes for the console going away.
    drop(send);
}

/// Beats and counts datagrams until the connection ends.
async fn session(connection: &Connection, counters: &Counters) {
    let mut beat = tokio::time::interval(BEAT);
    beat.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = beat.tick() => {
                seq += 1;
                if let Ok(datagram) = codec::encode_datagram(&Datagram::ConsoleBeat { seq, term: 0 }) {
                    let _ = connection.send_datagram(datagram.into());
                }
            }
            datagram = connection.read_datagram() => match datagram {
                Ok(_) => {
                    counters.datagrams.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => return,
            },
        }
    }
}

/// Reads the control stream to its end and throws the bytes away.
async fn discard(mut recv: RecvStream, counters: Arc<Counters>) {
    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, true).await {
        counters.stream_bytes.fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
    }
}

async fn report(counters: Arc<Counters>) {
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last = (Instant::now(), 0u64);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let datagrams = counters.datagrams.load(Ordering::Relaxed);
        let seconds = now.duration_since(last.0).as_secs_f64();
        let rate = if seconds > 0.0 { datagrams.saturating_sub(last.1) as f64 / seconds } else { 0.0 };
        last = (now, datagrams);
        println!(
            "bare_quinn: connections={} datagrams={datagrams} datagrams_per_sec={rate:.0} stream_bytes={} handshakes_failed={}",
            counters.connections.load(Ordering::Relaxed),
            counters.stream_bytes.load(Ordering::Relaxed),
            counters.handshakes_failed.load(Ordering::Relaxed),
        );
    }
}
