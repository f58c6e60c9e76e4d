//! The client side of the admin channel: `ringwatch status` and friends
//! find the running console through its data dir (address file, lock file)
//! and authenticate with the admin certificate the console made there.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringwatch_agent::credentials::Credentials;
use ringwatch_shared::codec::{self, MAX_FRAME_LEN};
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, CONSOLE_SERVER_NAME, close_code};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::control::{ADDRESS_FILE, LOCK_FILE};

/// How long an admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No console holds the data dir.
    #[error("no console is running with data dir \"{0}\" (start one with `ringwatch` or `ringwatch serve`)")]
    NotRunning(PathBuf),
    /// The console runs but did not answer.
    #[error("the console at {addr} did not answer: {reason}")]
    Unreachable {
        /// Where it should be.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The admin credentials in the data dir are unusable.
    #[error("cannot use the admin credentials in \"{dir}\": {reason}")]
    Credentials {
        /// The data dir.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The console answered with an error.
    #[error("the console refused the request: {0}")]
    Refused(String),
}

/// Sends `request` to the console running on `data_dir`.
///
/// # Errors
/// [`AdminError`] naming what is missing or failed.
pub async fn request(data_dir: &Path, request: &AdminRequest) -> Result<AdminResponse, AdminError> {
    let addr = running_console(data_dir)?;
    let credentials = admin_credentials(data_dir)?;
    let client = ringwatch_agent::tls::mutual_client(&credentials)
        .map_err(|err| AdminError::Credentials { dir: data_dir.to_path_buf(), reason: err.to_string() })?;
    let unreachable = |reason: String| AdminError::Unreachable { addr, reason };
    let endpoint = ringwatch_agent::client_endpoint(addr).map_err(|err| unreachable(err.to_string()))?;
    let exchange = async {
        let connection = endpoint
            .connect_with(client, addr, CONSOLE_SERVER_NAME)
            .map_err(|err| unreachable(err.to_string()))?
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|err| unreachable(err.to_string()))?;
        codec::write_frame(&mut send, request).await.map_err(|err| unreachable(err.to_string()))?;
        let _ = send.finish();
        let response = codec::read_frame::<AdminResponse, _>(&mut recv, MAX_FRAME_LEN)
            .await
            .map_err(|err| unreachable(err.to_string()))?
            .ok_or_else(|| unreachable("the console closed the stream without answering".into()))?;
        connection.close(close_code::NORMAL.into(), b"done");
        Ok(response)
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())))??;
    endpoint.wait_idle().await;
    match response {
        AdminResponse::Error(reason) => Err(AdminError::Refused(reason)),
        other => Ok(other),
    }
}

/// The address of the console holding `data_dir`'s lock.
///
/// # Errors
/// [`AdminError::NotRunning`] if no process holds the lock.
pub fn running_console(data_dir: &Path) -> Result<SocketAddr, AdminError> {
    let not_running = || AdminError::NotRunning(data_dir.to_path_buf());
    let lock = File::open(data_dir.join(LOCK_FILE)).map_err(|_| not_running())?;
    if lock.try_lock_shared().is_ok() {
        return Err(not_running());
    }
    let text = std::fs::read_to_string(data_dir.join(ADDRESS_FILE)).map_err(|_| not_running())?;
    let addr: SocketAddr = text.trim().parse().map_err(|_| not_running())?;
    Ok(crate::local::loopback(addr))
}

fn admin_credentials(dir: &Path) -> Result<Credentials, AdminError> {
    let broken = |reason: String| AdminError::Credentials { dir: dir.to_path_buf(), reason };
    let read_cert =
        |file: &str| CertificateDer::from_pem_file(dir.join(file)).map_err(|err| broken(format!("{file}: {err}")));
    let key_pem = std::fs::read_to_string(dir.join("admin.key")).map_err(|err| broken(format!("admin.key: {err}")))?;
    let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|err| broken(format!("admin.key: {err}")))?;
    Ok(Credentials {
        name: "admin".into(),
        ca: read_cert("ca.crt")?,
        cert: read_cert("admin.crt")?,
        key_pkcs8: key.serialize_der(),
    })
}
