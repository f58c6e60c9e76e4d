//! The client side of the admin channel: `ringwatch status` and friends
//! find the running console through its data dir (address file, lock file)
//! and authenticate with the admin certificate the console made there.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringwatch_shared::codec::{self, MAX_ADMIN_FRAME_LEN};
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, CONSOLE_SERVER_NAME, close_code};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::control::{ADDRESS_FILE, LOCK_FILE};

/// How long an admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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
    let (ca, cert, key) = credentials;
    let client = ringwatch_net::tls::mutual_client(&ca, &cert, key)
        .map_err(|err| AdminError::Credentials { dir: data_dir.to_path_buf(), reason: err.to_string() })?;
    let unreachable = |reason: String| AdminError::Unreachable { addr, reason };
    let endpoint = ringwatch_net::client_endpoint(addr).map_err(|err| unreachable(err.to_string()))?;
    let exchange = async {
        let connection = endpoint
            .connect_with(client, addr, CONSOLE_SERVER_NAME)
            .map_err(|err| unreachable(err.to_string()))?
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|err| unreachable(err.to_string()))?;
        codec::write_frame(&mut send, request).await.map_err(|err| unreachable(err.to_string()))?;
        let _ = send.finish();
        let response = codec::read_frame::<AdminResponse, _>(&mut recv, MAX_ADMIN_FRAME_LEN)
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
