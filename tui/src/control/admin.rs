//! The client side of the admin channel. `ringwatch status` and friends
//! reach the console of a local data dir (address file, lock file) with the
//! admin certificate the console made there, or a remote console with an
//! operator credential (README.md, "Operating ringwatch").

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quinn::{Connection, Endpoint, RecvStream, SendStream};
use ringwatch_shared::codec::{self, MAX_ADMIN_FRAME_LEN};
use ringwatch_shared::data::wire::DataChunk;
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, CONSOLE_SERVER_NAME, close_code};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::control::{ADDRESS_FILE, LOCK_FILE};
use crate::remote::bundle::CredentialBundle;

/// How long an admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Which console to ask, and as whom.
#[derive(Debug, Clone)]
pub enum Target {
    /// The console running on this data dir, with its admin certificate.
    Local(PathBuf),
    /// Consoles elsewhere (tried in order), with an operator credential.
    Remote {
        /// `HOST:PORT` of each.
        consoles: Vec<String>,
        /// The credential.
        credential: Box<CredentialBundle>,
        /// The credential's file, for messages.
        path: PathBuf,
    },
}

impl Target {
    /// The same credential at `leader`, the address a standby named: where
    /// a request a standby would not carry out goes next. `None` for the
    /// local data dir's console, which names no other.
    pub fn at_leader(&self, leader: &str) -> Option<Self> {
        match self {
            Self::Remote { credential, path, .. } => Some(Self::Remote {
                consoles: vec![leader.to_string()],
                credential: credential.clone(),
                path: path.clone(),
            }),
            Self::Local(_) => None,
        }
    }

    /// What the target is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Local(dir) => format!("the console of data dir \"{}\"", dir.display()),
            Self::Remote { consoles, .. } => format!("the console at {}", consoles.join(", ")),
        }
    }
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No console holds the data dir.
    #[error("no console is running with data dir \"{0}\" (start one with `ringwatch` or `ringwatch serve`)")]
    NotRunning(PathBuf),
    /// A console holds the data dir's lock, but its address file is
    /// unusable.
    #[error(
        "a console is running with this data dir (it holds its lock), but its address file \"{path}\" is unusable: {problem}; restart that console to rewrite it"
    )]
    AddressFile {
        /// The address file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The console runs but did not answer.
    #[error("the console at {addr} did not answer: {reason}")]
    Unreachable {
        /// Where it should be.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The admin credentials in the data dir are unusable.
    #[error("cannot use the admin credentials in \"{dir}\": {reason}")]
    Credentials {
        /// The data dir, or the credential file.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The console refused the connection (a revoked or expired credential,
    /// one of another cluster).
    #[error("the console at {addr} refused the credential: {reason}")]
    Rejected {
        /// Where.
        addr: String,
        /// Its reason.
        reason: String,
    },
    /// The console answered with an error.
    #[error("the console refused the request: {0}")]
    Refused(String),
}

/// An open admin connection.
#[derive(Debug)]
pub struct AdminClient {
    endpoint: Endpoint,
    connection: Connection,
    /// Where it is connected.
    pub addr: String,
}

/// The answer frames of one request (events, snapshots).
#[derive(Debug)]
pub struct AnswerStream {
    /// The request's side, held until the answer is read; `None` when the
    /// caller writes on it (a put's bytes).
    held_send: Option<SendStream>,
    recv: RecvStream,
    addr: String,
}

impl AnswerStream {
    /// The next frame; `None` when the console ended the answer.
    ///
    /// # Errors
    /// [`AdminError::Unreachable`] when the link fails;
    /// [`AdminError::Rejected`] when the console closed it on purpose (a
    /// revocation).
    pub async fn next(&mut self) -> Result<Option<AdminResponse>, AdminError> {
        codec::read_frame::<AdminResponse, _>(&mut self.recv, MAX_ADMIN_FRAME_LEN)
            .await
            .map_err(|err| link_error(&self.addr, &err.to_string(), closed_reason(&err)))
    }

    /// The next piece of an object's bytes, after a get's
    /// [`AdminResponse::DataObject`]; `None` when the console ended the
    /// stream (before [`DataChunk::End`]: the bytes are incomplete).
    ///
    /// # Errors
    /// As [`Self::next`].
    pub async fn next_chunk(&mut self) -> Result<Option<DataChunk>, AdminError> {
        codec::read_frame::<DataChunk, _>(&mut self.recv, MAX_ADMIN_FRAME_LEN)
            .await
            .map_err(|err| link_error(&self.addr, &err.to_string(), closed_reason(&err)))
    }
}

/// The first pause before connecting again to a console that refused the
/// connection for want of room; it doubles each time.
const REFUSED_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The last pause before giving up on a console that keeps refusing
/// (3.1 s of pauses in all).
const REFUSED_RETRY_LAST: Duration = Duration::from_millis(1_600);

impl AdminClient {
    /// Connects to `target`: the first of its consoles that answers.
    ///
    /// # Errors
    /// [`AdminError`] naming what is missing or failed.
    pub async fn connect(target: &Target) -> Result<Self, AdminError> {
        match target {
            Target::Local(data_dir) => {
                let addr = running_console(data_dir)?;
                let (ca, cert, key) = admin_credentials(data_dir)?;
                let client = ringwatch_net::tls::mutual_client(&ca, &cert, key)
                    .map_err(|err| AdminError::Credentials { dir: data_dir.clone(), reason: err.to_string() })?;
                Self::connect_to(addr, addr.to_string(), client).await
            }
            Target::Remote { consoles, credential, path } => {
                let identity =
                    credential.identity().map_err(|reason| AdminError::Credentials { dir: path.clone(), reason })?;
                let client = ringwatch_net::tls::mutual_client(&identity.ca, &identity.cert, identity.key)
                    .map_err(|err| AdminError::Credentials { dir: path.clone(), reason: err.to_string() })?;
                let mut last = None;
                for console in consoles {
                    match resolve(console).await {
                        Ok(addr) => match Self::connect_to(addr, console.clone(), client.clone()).await {
                            Ok(connected) => return Ok(connected),
                            Err(err @ AdminError::Rejected { .. }) => return Err(err),
                            Err(err) => last = Some(err),
                        },
                        Err(err) => last = Some(err),
                    }
                }
                Err(last.unwrap_or_else(|| AdminError::Unreachable {
                    addr: "(none)".into(),
                    reason: "no console address: pass --console ADDR".into(),
                }))
            }
        }
    }

    async fn connect_to(addr: SocketAddr, name: String, mut client: quinn::ClientConfig) -> Result<Self, AdminError> {
        // Objects' bytes go this way: datagrams as large as the path carries.
        client.transport_config(std::sync::Arc::new(ringwatch_net::tls::bulk_transport()));
        let endpoint = ringwatch_net::client_endpoint(addr).map_err(|err| unreachable(&name, &err.to_string()))?;
        let mut backoff = REFUSED_RETRY_FIRST;
        loop {
            let connecting = endpoint
                .connect_with(client.clone(), addr, CONSOLE_SERVER_NAME)
                .map_err(|err| unreachable(&name, &err.to_string()))?;
            let connection = match tokio::time::timeout(REQUEST_TIMEOUT, connecting).await {
                Ok(Ok(connection)) => connection,
                // Turned away with too many handshakes in progress (a
                // fleet reconnecting at once, control::admission): busy,
                // not gone; a few tries more.
                Ok(Err(quinn::ConnectionError::ConnectionClosed(close)))
                    if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED
                        && backoff <= REFUSED_RETRY_LAST =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    continue;
                }
                Ok(Err(err)) => return Err(link_error(&name, &err.to_string(), connection_reason(&err))),
                Err(_) => {
                    return Err(unreachable(&name, &format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())));
                }
            };
            return Ok(Self { endpoint, connection, addr: name });
        }
    }

    /// Opens a stream and sends `request` on it.
    ///
    /// # Errors
    /// [`AdminError`] when the link fails.
    pub async fn open(&self, request: &AdminRequest) -> Result<AnswerStream, AdminError> {
        let (mut send, mut answer) = self.open_upload(request).await?;
        let _ = send.finish();
        answer.held_send = Some(send);
        Ok(answer)
    }

    /// Opens a stream, sends `request` on it and leaves the stream open for
    /// what follows it (a put's bytes): write frames on the returned
    /// [`SendStream`], finish it, then read the answer.
    ///
    /// # Errors
    /// [`AdminError`] when the link fails.
    pub async fn open_upload(&self, request: &AdminRequest) -> Result<(SendStream, AnswerStream), AdminError> {
        let (mut send, recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|err| link_error(&self.addr, &err.to_string(), connection_reason(&err)))?;
        codec::write_frame(&mut send, request)
            .await
            .map_err(|err| link_error(&self.addr, &err.to_string(), closed_reason(&err)))?;
        Ok((send, AnswerStream { held_send: None, recv, addr: self.addr.clone() }))
    }

    /// Sends `request` and waits (at most [`REQUEST_TIMEOUT`]) for its one
    /// answer; an error answer is [`AdminError::Refused`].
    ///
    /// # Errors
    /// [`AdminError`] naming what failed.
    pub async fn request(&self, request: &AdminRequest) -> Result<AdminResponse, AdminError> {
        let exchange = async {
            let mut answer = self.open(request).await?;
            answer
                .next()
                .await?
                .ok_or_else(|| unreachable(&self.addr, "the console closed the stream without answering"))
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(&self.addr, &format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))??;
        match response {
            AdminResponse::Error(reason) => Err(AdminError::Refused(reason)),
            other => Ok(other),
        }
    }

    /// Whether the link is up.
    pub fn is_open(&self) -> bool {
        self.connection.close_reason().is_none()
    }

    /// Closes the connection and waits until the console knows.
    pub async fn close(self) {
        self.connection.close(close_code::NORMAL.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

/// Sends `request` to `target` and waits for its one answer.
///
/// # Errors
/// [`AdminError`] naming what is missing or failed.
pub async fn request(target: &Target, request: &AdminRequest) -> Result<AdminResponse, AdminError> {
    let client = AdminClient::connect(target).await?;
    let response = client.request(request).await;
    client.close().await;
    response
}

/// The socket address of `HOST:PORT`.
async fn resolve(console: &str) -> Result<SocketAddr, AdminError> {
    let mut addrs = tokio::net::lookup_host(console)
        .await
        .map_err(|err| unreachable(console, &format!("not a reachable HOST:PORT ({err})")))?;
    addrs.next().ok_or_else(|| unreachable(console, "the name has no address"))
}

fn unreachable(addr: &str, reason: &str) -> AdminError {
    AdminError::Unreachable { addr: addr.to_string(), reason: reason.to_string() }
}

/// A failed link, or the console's refusal when it closed the connection
/// saying why.
fn link_error(addr: &str, error: &str, closed: Option<String>) -> AdminError {
    match closed {
        Some(reason) => AdminError::Rejected { addr: addr.to_string(), reason },
        None => unreachable(addr, error),
    }
}

/// The console's reason, when it closed the connection on purpose.
fn connection_reason(err: &quinn::ConnectionError) -> Option<String> {
    match err {
        quinn::ConnectionError::ApplicationClosed(close)
            if u64::from(close.error_code) != u64::from(close_code::NORMAL) =>
        {
            Some(String::from_utf8_lossy(&close.reason).into_owned())
        }
        _ => None,
    }
}

/// [`connection_reason`] for a frame read or write that failed.
fn closed_reason(err: &codec::CodecError) -> Option<String> {
    let codec::CodecError::Io(io) = err else { return None };
    let inner = io.get_ref()?;
    if let Some(read) = inner.downcast_ref::<quinn::ReadError>()
        && let quinn::ReadError::ConnectionLost(lost) = read
    {
        return connection_reason(lost);
    }
    if let Some(write) = inner.downcast_ref::<quinn::WriteError>()
        && let quinn::WriteError::ConnectionLost(lost) = write
    {
        return connection_reason(lost);
    }
    None
}

/// The address of the console holding `data_dir`'s lock.
///
/// # Errors
/// [`AdminError::NotRunning`] if no process holds the lock;
/// [`AdminError::AddressFile`] if one does but its address file is missing
/// or garbled.
pub fn running_console(data_dir: &Path) -> Result<SocketAddr, AdminError> {
    let not_running = || AdminError::NotRunning(data_dir.to_path_buf());
    let lock = File::open(data_dir.join(LOCK_FILE)).map_err(|_| not_running())?;
    if lock.try_lock_shared().is_ok() {
        return Err(not_running());
    }
    let path = data_dir.join(ADDRESS_FILE);
    let garbled = |problem: String| AdminError::AddressFile { path: path.clone(), problem };
    let text = std::fs::read_to_string(&path).map_err(|err| garbled(err.to_string()))?;
    let addr: SocketAddr = text
        .trim()
        .parse()
        .map_err(|_| garbled(format!("it holds \"{}\", not IP:PORT", text.trim().escape_debug())))?;
    Ok(crate::local::loopback(addr))
}

/// The CA, the admin certificate and its key, from the data dir.
fn admin_credentials(
    dir: &Path,
) -> Result<(CertificateDer<'static>, CertificateDer<'static>, PrivateKeyDer<'static>), AdminError> {
    let broken = |reason: String| AdminError::Credentials { dir: dir.to_path_buf(), reason };
    let read_cert =
        |file: &str| CertificateDer::from_pem_file(dir.join(file)).map_err(|err| broken(format!("{file}: {err}")));
    let key_pem = ringwatch_net::files::read_private(&dir.join("admin.key"))
        .map_err(|err| broken(err.to_string()))?
        .ok_or_else(|| broken("admin.key is missing".into()))?;
    let key = rcgen::KeyPair::from_pem(&String::from_utf8_lossy(&key_pem))
        .map_err(|err| broken(format!("admin.key: {err}")))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((read_cert("ca.crt")?, read_cert("admin.crt")?, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::pki::ClusterPki;

    #[tokio::test]
    async fn a_console_refusing_for_want_of_room_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_for_console(dir.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let server = ringwatch_net::endpoint(
            "127.0.0.1:0".parse().unwrap(),
            Some(crate::control::tls::server_config(&pki).unwrap()),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        // Turns the first two connections away, as admission does with too
        // many handshakes in progress, then accepts one.
        let accepting = tokio::spawn(async move {
            for _ in 0..2 {
                server.accept().await.unwrap().refuse();
            }
            let connection = server.accept().await.unwrap().await.unwrap();
            (server, connection)
        });
        let (ca, cert, key) = admin_credentials(dir.path()).unwrap();
        let client = ringwatch_net::tls::mutual_client(&ca, &cert, key).unwrap();
        let connected = AdminClient::connect_to(addr, addr.to_string(), client).await;
        assert!(connected.is_ok(), "{:?}", connected.err());
        let (_server, accepted) = accepting.await.unwrap();
        assert!(accepted.close_reason().is_none());
    }
}
