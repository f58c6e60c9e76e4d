//! The plain-HTTP server behind `--metrics-listen`: `GET /metrics`, and 404
//! for anything else.
//!
//! It is bound before the control plane starts, so a taken address is a
//! start-up error, not a console running without the metrics it was asked
//! for. A scrape encodes what is already published (see the parent
//! module): it never waits for the owner task. Connections are few
//! (Prometheus keeps one per target), bounded, and must send their request
//! headers within [`HEADER_TIMEOUT`], so a slow or hostile client costs a
//! task and a socket at most.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ringwatch_net::files::{self, PUBLIC};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Format, Metrics};

/// The file in the data dir the console writes its metrics address to
/// (`IP:PORT`), so that a scrape config or a test finds a port chosen with
/// `:0`.
pub const METRICS_ADDRESS_FILE: &str = "metrics.addr";
/// The path metrics are served on.
pub const METRICS_PATH: &str = "/metrics";
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 32;
/// How long a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why metrics cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error(
        "failed to serve metrics on \"{addr}\": {reason}; choose another address with --metrics-listen (or `metrics_listen` in the config file)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause (in the message, so not a `source` as well).
        reason: std::io::Error,
    },
    /// The address file could not be written.
    #[error("failed to write the metrics address to \"{path}\": {reason}")]
    AddressFile {
        /// The file.
        path: PathBuf,
        /// The cause (in the message, so not a `source` as well).
        reason: std::io::Error,
    },
}

/// A bound metrics address, not serving yet: bound first, so that a taken
/// address stops the console before anything else starts.
#[derive(Debug)]
pub struct MetricsListener {
    /// The socket.
    listener: TcpListener,
    /// What it is bound to (the port chosen for `:0`).
    local_addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr` (TCP).
    ///
    /// # Errors
    /// [`MetricsError::Bind`] naming the address and the flag to change.
    pub async fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let bind_error = |reason| MetricsError::Bind { addr, reason };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self { listener, local_addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `metrics` until `shutdown`, after writing the bound address
    /// to [`METRICS_ADDRESS_FILE`] in `data_dir` (removed when it stops).
    ///
    /// # Errors
    /// [`MetricsError::AddressFile`] when the address file cannot be
    /// written.
    pub fn serve(
        self,
        metrics: Metrics,
        data_dir: &Path,
        shutdown: CancellationToken,
    ) -> Result<MetricsServer, MetricsError> {
        let address_file = data_dir.join(METRICS_ADDRESS_FILE);
        files::write_atomic(&address_file, format!("{}\n", self.local_addr).as_bytes(), PUBLIC)
            .map_err(|reason| MetricsError::AddressFile { path: address_file.clone(), reason })?;
        let metrics = Arc::new(metrics);
        info!(listen = %self.local_addr, "serving metrics on http://{}{METRICS_PATH}", self.local_addr);
        let local_addr = self.local_addr;
        let task = tokio::spawn(accept_loop(self.listener, metrics, shutdown, address_file));
        Ok(MetricsServer { local_addr, task })
    }
}

/// The metrics server, running.
#[derive(Debug)]
pub struct MetricsServer {
    /// Where it listens.
    local_addr: SocketAddr,
    /// The accept loop; it ends on shutdown.
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until it has stopped (after the shutdown signal).
    pub async fn stopped(self) {
        if self.task.await.is_err() {
            warn!("the metrics server failed");
        }
    }
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken, address_file: PathBuf) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A free slot first: past the limit, connections wait in the
        // backlog instead of each costing a task.
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: the next accept
                    // may succeed; do not spin meanwhile.
                    warn!(%err, "failed to accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                served = connection => {
                    if let Err(err) = served {
                        debug!(%peer, %err, "metrics connection ended");
                    }
                }
            }
        });
    }
    let _ = std::fs::remove_file(&address_file);
    debug!("metrics server stopped");
}

/// The answer to one request.
fn respond(metrics: &Metrics, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != METRICS_PATH {
        return plain(StatusCode::NOT_FOUND, format!("not found: metrics are served on {METRICS_PATH}\n"));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, format!("{METRICS_PATH} answers GET only\n"));
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let accept = request.headers().get(ACCEPT).and_then(|value| value.to_str().ok());
    let format = Format::from_accept(accept);
    match metrics.encode(format) {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
            response
        }
        Err(err) => {
            warn!(%err, "failed to encode the metrics");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "failed to encode the metrics\n".to_string())
        }
    }
}

/// A short plain-text answer.
fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
