//! The agent's identity in its data dir: a private key that never leaves the
//! host, the client certificate the console issued for it, the cluster CA,
//! and the node name.
//!
//! | file        | content                                  | mode |
//! |-------------|------------------------------------------|------|
//! | `agent.key` | PKCS#8 private key (PEM)                 | 0600 |
//! | `agent.crt` | client certificate from the console (PEM) | 0644 |
//! | `ca.crt`    | cluster CA certificate (PEM)             | 0644 |
//! | `agent.name`| the node name                            | 0644 |
//!
//! A renewal (README.md, "Certificates") makes a new key, `agent.next.key`
//! (0600), before it asks the console; the renewed certificate arrives as
//! `agent.next.crt`, and both are renamed over `agent.key` and `agent.crt`
//! — each rename atomic, the directory fsynced. A crash between the two
//! renames leaves a key and a certificate that do not match, with the
//! certificate still in `agent.next.crt`: loading finishes the renewal.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use ringwatch_net::files::{self, PRIVATE, PUBLIC};
use ringwatch_net::pem::to_pem;
use ringwatch_shared::lifetime::Validity;

use crate::error::AgentError;

const KEY_FILE: &str = "agent.key";
const CERT_FILE: &str = "agent.crt";
const CA_FILE: &str = "ca.crt";
const NAME_FILE: &str = "agent.name";
const NEXT_KEY_FILE: &str = "agent.next.key";
const NEXT_CERT_FILE: &str = "agent.next.crt";

/// Everything an agent needs for a mutually authenticated connection.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The node name its certificate was issued for.
    pub name: String,
    /// The cluster CA certificate.
    pub ca: CertificateDer<'static>,
    /// The agent's client certificate.
    pub cert: CertificateDer<'static>,
    /// The agent's private key (PKCS#8 DER).
    pub key_pkcs8: Vec<u8>,
}

impl Credentials {
    /// Loads the credentials from `dir`, or `None` if the agent never joined.
    ///
    /// # Errors
    /// When the files exist but cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<Option<Self>, AgentError> {
        finish_renewal(dir)?;
        let Some(cert_pem) = read(dir, CERT_FILE)? else {
            return Ok(None);
        };
        let broken = |problem: String| AgentError::Credentials { dir: dir.to_path_buf(), problem };
        let cert = CertificateDer::from_pem_slice(&cert_pem)
            .map_err(|err| broken(format!("{CERT_FILE} is not a PEM certificate ({err})")))?;
        let ca_pem =
            read(dir, CA_FILE)?.ok_or_else(|| broken(format!("{CERT_FILE} exists but {CA_FILE} is missing")))?;
        let ca = CertificateDer::from_pem_slice(&ca_pem)
            .map_err(|err| broken(format!("{CA_FILE} is not a PEM certificate ({err})")))?;
        let key = load_key(dir)?.ok_or_else(|| broken(format!("{CERT_FILE} exists but {KEY_FILE} is missing")))?;
        let name = read(dir, NAME_FILE)?.ok_or_else(|| broken(format!("{NAME_FILE} is missing")))?;
        let name = String::from_utf8_lossy(&name).trim().to_string();
        Ok(Some(Self { name, ca, cert, key_pkcs8: key.serialize_der() }))
    }

    /// Stores the certificate, CA and name granted by a join (the key was
    /// stored before joining).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn store_grant(dir: &Path, name: &str, cert_der: &[u8], ca_der: &[u8]) -> Result<(), AgentError> {
        write(dir, CA_FILE, to_pem("CERTIFICATE", ca_der).as_bytes(), PUBLIC)?;
        write(dir, NAME_FILE, format!("{name}\n").as_bytes(), PUBLIC)?;
        // The certificate last: its presence marks a completed join.
        write(dir, CERT_FILE, to_pem("CERTIFICATE", cert_der).as_bytes(), PUBLIC)
    }

    /// When the certificate is valid.
    ///
    /// # Errors
    /// When the certificate does not parse.
    pub fn validity(&self) -> Result<Validity, AgentError> {
        ringwatch_net::cert::validity(&self.cert)
            .map_err(|problem| AgentError::Config(format!("the agent's certificate is unusable: {problem}")))
    }

    /// The private key in the form rustls takes.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }

    /// The mutual-TLS client config these credentials make.
    ///
    /// # Errors
    /// When the certificate or key is unusable.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, AgentError> {
        ringwatch_net::tls::mutual_client(&self.ca, &self.cert, self.private_key())
            .map_err(|err| AgentError::Setup(err.to_string()))
    }
}

/// The agent's key pair: loaded if a previous run made one, otherwise made
/// and stored (mode 0600) before it is used, so a re-join keeps the key.
///
/// # Errors
/// When the key cannot be read, parsed, made or stored.
pub fn load_or_create_key(dir: &Path) -> Result<KeyPair, AgentError> {
    if let Some(key) = load_key(dir)? {
        return Ok(key);
    }
    files::create_private_dir(dir).map_err(AgentError::io(dir))?;
    let key = KeyPair::generate().map_err(|err| AgentError::Setup(format!("failed to generate a key: {err}")))?;
    write(dir, KEY_FILE, key.serialize_pem().as_bytes(), PRIVATE)?;
    Ok(key)
}

/// A certificate signing request for `name` with `key`.
///
/// # Errors
/// When rcgen cannot build the request.
pub fn signing_request(name: &str, key: &KeyPair) -> Result<Vec<u8>, AgentError> {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    let csr = params
        .serialize_request(key)
        .map_err(|err| AgentError::Setup(format!("failed to build a certificate request: {err}")))?;
    Ok(csr.der().to_vec())
}

/// The key a renewal asks a certificate for: the pending one of an
/// unfinished renewal (so that a renewal the console granted but whose
/// answer was lost can be asked again for the same key), else a new one,
/// stored (mode 0600) before it is used.
///
/// # Errors
/// When the key cannot be read, made or stored.
pub fn next_key(dir: &Path) -> Result<KeyPair, AgentError> {
    let path = dir.join(NEXT_KEY_FILE);
    if let Some(pem) = files::read_private(&path)
        .map_err(|err| AgentError::Credentials { dir: dir.to_path_buf(), problem: err.to_string() })?
        && let Ok(key) = KeyPair::from_pem(&String::from_utf8_lossy(&pem))
    {
        return Ok(key);
    }
    let key = KeyPair::generate().map_err(|err| AgentError::Setup(format!("failed to generate a key: {err}")))?;
    write(dir, NEXT_KEY_FILE, key.serialize_pem().as_bytes(), PRIVATE)?;
    Ok(key)
}

/// Stores a renewed certificate for the pending key of [`next_key`]: the
/// certificate beside it first, then each renamed over the current one
/// (module docs). The running connection goes on with the old
/// certificate; the next one uses the new.
///
/// # Errors
/// When there is no pending key, the certificate is not for it, or a file
/// cannot be written.
pub fn store_renewal(dir: &Path, cert_der: &[u8]) -> Result<(), AgentError> {
    let broken = |problem: String| AgentError::Credentials { dir: dir.to_path_buf(), problem };
    let pem = files::read_private(&dir.join(NEXT_KEY_FILE))
        .map_err(|err| broken(err.to_string()))?
        .ok_or_else(|| broken(format!("a renewed certificate arrived but {NEXT_KEY_FILE} is missing")))?;
    let key = KeyPair::from_pem(&String::from_utf8_lossy(&pem))
        .map_err(|err| broken(format!("{NEXT_KEY_FILE} is not a PEM private key ({err})")))?;
    if !cert_is_for(cert_der, &key) {
        return Err(broken(format!("the renewed certificate is not for the key in {NEXT_KEY_FILE}")));
    }
    write(dir, NEXT_CERT_FILE, to_pem("CERTIFICATE", cert_der).as_bytes(), PUBLIC)?;
    finish_renewal(dir)
}

/// Finishes a renewal whose certificate is stored (`agent.next.crt`):
/// renames the pending key, then the certificate, over the current ones. A
/// pending certificate that is for neither key is dropped.
fn finish_renewal(dir: &Path) -> Result<(), AgentError> {
    let Some(pem) = read(dir, NEXT_CERT_FILE)? else {
        return Ok(());
    };
    let next_cert = dir.join(NEXT_CERT_FILE);
    let Ok(cert) = CertificateDer::from_pem_slice(&pem) else {
        return std::fs::remove_file(&next_cert).map_err(AgentError::io(next_cert));
    };
    if read(dir, NEXT_KEY_FILE)?.is_some() {
        rename(dir, NEXT_KEY_FILE, KEY_FILE)?;
    }
    match load_key(dir)? {
        Some(key) if cert_is_for(&cert, &key) => rename(dir, NEXT_CERT_FILE, CERT_FILE),
        _ => std::fs::remove_file(&next_cert).map_err(AgentError::io(next_cert)),
    }
}

/// Whether `cert_der` certifies `key`.
fn cert_is_for(cert_der: &[u8], key: &KeyPair) -> bool {
    x509_parser::parse_x509_certificate(cert_der)
        .is_ok_and(|(_, parsed)| parsed.public_key().raw == key.subject_public_key_info().as_slice())
}

/// Renames `from` over `to` in `dir` and fsyncs the directory.
fn rename(dir: &Path, from: &str, to: &str) -> Result<(), AgentError> {
    let target = dir.join(to);
    std::fs::rename(dir.join(from), &target).map_err(AgentError::io(&target))?;
    std::fs::File::open(dir).and_then(|dir| dir.sync_all()).map_err(AgentError::io(dir))
}

/// The name stored by a previous join, if any.
///
/// # Errors
/// When the file exists but cannot be read.
pub fn stored_name(dir: &Path) -> Result<Option<String>, AgentError> {
    Ok(read(dir, NAME_FILE)?.map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string()))
}

fn load_key(dir: &Path) -> Result<Option<KeyPair>, AgentError> {
    let path = dir.join(KEY_FILE);
    let pem = files::read_private(&path)
        .map_err(|err| AgentError::Credentials { dir: dir.to_path_buf(), problem: err.to_string() })?;
    let Some(pem) = pem else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&pem);
    KeyPair::from_pem(&text).map(Some).map_err(|err| AgentError::Credentials {
        dir: dir.to_path_buf(),
        problem: format!("{KEY_FILE} is not a PEM private key ({err})"),
    })
}

fn read(dir: &Path, file: &str) -> Result<Option<Vec<u8>>, AgentError> {
    let path: PathBuf = dir.join(file);
    files::read_optional(&path).map_err(AgentError::io(path))
}

fn write(dir: &Path, file: &str, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    let path = dir.join(file);
    files::write_atomic(&path, bytes, mode).map_err(AgentError::io(path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(dir.path()).unwrap();
        let second = load_or_create_key(dir.path()).unwrap();
        assert_eq!(first.public_key_raw(), second.public_key_raw());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn no_certificate_means_not_joined() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Credentials::load(dir.path()).unwrap().is_none());
    }

    /// A certificate for `key`, signed by a throwaway CA.
    fn cert_for(key: &KeyPair) -> Vec<u8> {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        CertificateParams::default().signed_by(key, &issuer).unwrap().der().to_vec()
    }

    fn joined(dir: &Path) -> KeyPair {
        let key = load_or_create_key(dir).unwrap();
        Credentials::store_grant(dir, "a", &cert_for(&key), &cert_for(&key)).unwrap();
        key
    }

    #[test]
    fn a_renewal_replaces_key_and_certificate_and_a_retry_keeps_the_pending_key() {
        let dir = tempfile::tempdir().unwrap();
        let old = joined(dir.path());
        let next = next_key(dir.path()).unwrap();
        assert_eq!(
            next_key(dir.path()).unwrap().public_key_raw(),
            next.public_key_raw(),
            "a retry asks for the same key"
        );
        assert_ne!(next.public_key_raw(), old.public_key_raw());

        let err = store_renewal(dir.path(), &cert_for(&old)).unwrap_err();
        assert!(err.to_string().contains("not for the key"), "{err}");
        let renewed = cert_for(&next);
        store_renewal(dir.path(), &renewed).unwrap();
        let loaded = Credentials::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.cert.as_ref(), renewed.as_slice());
        assert_eq!(loaded.key_pkcs8, next.serialize_der());
        assert!(!dir.path().join(NEXT_KEY_FILE).exists() && !dir.path().join(NEXT_CERT_FILE).exists());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the renewed key is private");
    }

    #[test]
    fn regression_a_crash_between_the_renames_is_finished_on_load() {
        let dir = tempfile::tempdir().unwrap();
        joined(dir.path());
        let next = next_key(dir.path()).unwrap();
        let renewed = cert_for(&next);
        // The certificate is stored beside the key and the key renamed; the
        // process dies before the certificate's rename.
        write(dir.path(), NEXT_CERT_FILE, to_pem("CERTIFICATE", &renewed).as_bytes(), PUBLIC).unwrap();
        rename(dir.path(), NEXT_KEY_FILE, KEY_FILE).unwrap();
        let loaded = Credentials::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.cert.as_ref(), renewed.as_slice(), "the renewal was finished");
        assert_eq!(loaded.key_pkcs8, next.serialize_der());
    }

    #[test]
    fn a_pending_key_without_a_certificate_leaves_the_credentials_alone() {
        let dir = tempfile::tempdir().unwrap();
        let old = joined(dir.path());
        next_key(dir.path()).unwrap();
        let loaded = Credentials::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.key_pkcs8, old.serialize_der(), "the console never answered: the old pair stays");
    }
}
