//! The cluster's PKI in the console's data dir: the CA, the console's server
//! certificate, the admin client certificate and the join-token key, all made
//! on first start (rcgen) and signed by the CA.
//!
//! | file          | content                                 | mode |
//! |---------------|-----------------------------------------|------|
//! | `ca.crt`      | cluster CA certificate                  | 0644 |
//! | `ca.key`      | cluster CA private key                  | 0600 |
//! | `console.crt` | the console's server certificate        | 0644 |
//! | `console.key` | its private key                         | 0600 |
//! | `admin.crt`   | client certificate of local admin tools | 0644 |
//! | `admin.key`   | its private key                         | 0600 |
//! | `token.key`   | HMAC key that signs join tokens         | 0600 |

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use ring::rand::{SecureRandom, SystemRandom};
use ringwatch_net::files::{self, PRIVATE, PUBLIC};
use ringwatch_net::pem::to_pem;
use ringwatch_shared::protocol::CONSOLE_SERVER_NAME;
use ringwatch_shared::token::{JoinToken, fingerprint, to_hex};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why the PKI could not be loaded, made or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("failed to access \"{path}\": {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file exists but is not what it should be.
    #[error("\"{path}\" is unusable: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A key file is unreadable or open to group or others.
    #[error(transparent)]
    PrivateFile(#[from] files::PrivateFileError),
    /// rcgen refused to make or sign a certificate.
    #[error("failed to make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A certificate request from an agent is unusable.
    #[error("the certificate request is invalid: {0}")]
    BadRequest(String),
}

/// The loaded PKI.
pub struct ClusterPki {
    /// The data dir the files live in.
    dir: PathBuf,
    /// CA certificate.
    pub ca: CertificateDer<'static>,
    /// CA key, to sign agents' certificates.
    ca_key: KeyPair,
    /// The console's server certificate.
    pub console_cert: CertificateDer<'static>,
    /// Its key (PKCS#8 DER).
    console_key: Vec<u8>,
    /// SHA-256 of the admin certificate: the one credential with admin rights.
    pub admin_fingerprint: [u8; 32],
    /// The join-token HMAC key.
    token_key: Vec<u8>,
}

impl std::fmt::Debug for ClusterPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterPki").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// A certificate issued to a joining agent.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    /// SHA-256 of the agent's public key: the identity a name is bound to.
    pub key_fingerprint: String,
}

impl ClusterPki {
    /// Loads the PKI from `dir`, making whatever is missing. Concurrent
    /// callers (a starting console and `join-token`) are serialised by a
    /// lock file, so the CA is made exactly once.
    ///
    /// # Errors
    /// When files cannot be read or written, or exist but are corrupt.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        files::create_private_dir(dir).map_err(io(dir))?;
        let lock_path = dir.join("init.lock");
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;

        let ca_key = load_or_create_key(&dir.join("ca.key"))?;
        let ca = load_or_create_cert(&dir.join("ca.crt"), || {
            let mut params = CertificateParams::default();
            params.distinguished_name = common_name(&format!("ringwatch cluster CA {}", random_hex(4)));
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            valid_for(&mut params, CA_YEARS);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            Ok(params.self_signed(&ca_key)?.der().clone())
        })?;
        let issuer = Issuer::from_ca_cert_der(&ca, &ca_key)?;

        let console_key = load_or_create_key(&dir.join("console.key"))?;
        let console_cert = load_or_create_cert(&dir.join("console.crt"), || {
            let mut params = CertificateParams::new(vec![CONSOLE_SERVER_NAME.to_string()])?;
            params.distinguished_name = common_name("ringwatch console");
            valid_for(&mut params, CONSOLE_YEARS);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            Ok(params.signed_by(&console_key, &issuer)?.der().clone())
        })?;

        let admin_key = load_or_create_key(&dir.join("admin.key"))?;
        let admin_cert = load_or_create_cert(&dir.join("admin.crt"), || {
            let mut params = CertificateParams::default();
            params.distinguished_name = common_name("ringwatch admin");
            valid_for(&mut params, CONSOLE_YEARS);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            Ok(params.signed_by(&admin_key, &issuer)?.der().clone())
        })?;

        let token_path = dir.join("token.key");
        let token_key = match files::read_private(&token_path)? {
            Some(key) if key.len() >= 32 => key,
            Some(_) => return Err(corrupt(&token_path, "shorter than 32 bytes")),
            None => {
                let mut key = vec![0; 32];
                SystemRandom::new().fill(&mut key).map_err(|_| corrupt(&token_path, "no system randomness"))?;
                files::write_atomic(&token_path, &key, PRIVATE).map_err(io(&token_path))?;
                key
            }
        };
        drop(lock);

        Ok(Self {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
            console_cert,
            console_key: console_key.serialize_der(),
            admin_fingerprint: fingerprint(&admin_cert),
            token_key,
        })
    }

    /// The console's private key in the form rustls takes.
    pub fn console_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.console_key.clone()))
    }

    /// A join token with a fresh random id, valid for `ttl` from now.
    /// Record it (see `registry`) before handing it out: the console
    /// refuses ids it has no record of.
    pub fn join_token(&self, ttl: Duration) -> JoinToken {
        let mut id = [0u8; 8];
        // The system's randomness does not fail on a working host; a zero id
        // would still be a valid, recorded, revocable token.
        let _ = SystemRandom::new().fill(&mut id);
        JoinToken::issue(&self.ca, &self.token_key, id, unix_now().saturating_add(ttl.as_secs()))
    }

    /// Verifies a join token now.
    ///
    /// # Errors
    /// The token's [`ringwatch_shared::token::TokenError`].
    pub fn verify_token(&self, token: &JoinToken) -> Result<(), ringwatch_shared::token::TokenError> {
        token.verify(&self.ca, &self.token_key, unix_now())
    }

    /// The SHA-256 of the public key in a CSR, without issuing anything.
    ///
    /// # Errors
    /// [`PkiError::BadRequest`] when the CSR does not parse or verify.
    pub fn request_key_fingerprint(csr_der: &[u8]) -> Result<String, PkiError> {
        Ok(to_hex(&fingerprint(parse_request(csr_der)?.public_key.der_bytes())))
    }

    /// Issues a client certificate for node `name` to the key in `csr_der`.
    /// Only the key is taken from the request: the name and usage are ours.
    ///
    /// # Errors
    /// [`PkiError::BadRequest`] for an unusable request, or a signing error.
    pub fn issue_agent_cert(&self, name: &str, csr_der: &[u8]) -> Result<IssuedCert, PkiError> {
        let request = parse_request(csr_der)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        valid_for(&mut params, AGENT_YEARS);
        let issuer = Issuer::from_ca_cert_der(&self.ca, &self.ca_key)?;
        let cert = params.signed_by(&request.public_key, &issuer)?;
        Ok(IssuedCert {
            cert: cert.der().clone(),
            key_fingerprint: to_hex(&fingerprint(request.public_key.der_bytes())),
        })
    }

    /// Where the PKI lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn parse_request(csr_der: &[u8]) -> Result<CertificateSigningRequestParams, PkiError> {
    CertificateSigningRequestParams::from_der(&csr_der.into()).map_err(|err| PkiError::BadRequest(err.to_string()))
}

fn load_or_create_key(path: &Path) -> Result<KeyPair, PkiError> {
    if let Some(pem) = files::read_private(path)? {
        return KeyPair::from_pem(&String::from_utf8_lossy(&pem)).map_err(|err| corrupt(path, &err.to_string()));
    }
    let key = KeyPair::generate()?;
    files::write_atomic(path, key.serialize_pem().as_bytes(), PRIVATE).map_err(io(path))?;
    Ok(key)
}

fn load_or_create_cert(
    path: &Path,
    make: impl FnOnce() -> Result<CertificateDer<'static>, PkiError>,
) -> Result<CertificateDer<'static>, PkiError> {
    if let Some(pem) = files::read_optional(path).map_err(io(path))? {
        return CertificateDer::from_pem_slice(&pem).map_err(|err| corrupt(path, &err.to_string()));
    }
    let cert = make()?;
    files::write_atomic(path, to_pem("CERTIFICATE", &cert).as_bytes(), PUBLIC).map_err(io(path))?;
    Ok(cert)
}

/// Years the cluster CA is valid.
const CA_YEARS: i32 = 20;
/// Years the console's and the admin certificates are valid.
const CONSOLE_YEARS: i32 = 10;
/// Years an agent's certificate is valid; after that it joins again.
const AGENT_YEARS: i32 = 5;

/// Valid from the start of last year (clock skew between hosts never makes a
/// new certificate "not yet valid") for `years` years.
fn valid_for(params: &mut CertificateParams, years: i32) {
    // Whole years since 1970 are close enough for a validity window that
    // starts a year early.
    let year = 1970 + i32::try_from(unix_now() / 31_556_952).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0; bytes];
    let _ = SystemRandom::new().fill(&mut buf);
    to_hex(&buf)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError {
    let path = path.to_path_buf();
    move |source| PkiError::Io { path, source }
}

fn corrupt(path: &Path, problem: &str) -> PkiError {
    PkiError::Corrupt { path: path.to_path_buf(), problem: problem.to_string() }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn first_start_makes_the_pki_with_private_keys_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterPki::load_or_create(dir.path()).unwrap();
        for key in ["ca.key", "console.key", "admin.key", "token.key"] {
            let mode = std::fs::metadata(dir.path().join(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let second = ClusterPki::load_or_create(dir.path()).unwrap();
        assert_eq!(first.ca, second.ca);
        assert_eq!(first.admin_fingerprint, second.admin_fingerprint);
    }

    #[test]
    fn tokens_verify_here_and_not_in_another_cluster() {
        let here = tempfile::tempdir().unwrap();
        let there = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(here.path()).unwrap();
        let other = ClusterPki::load_or_create(there.path()).unwrap();
        let token = pki.join_token(Duration::from_secs(60));
        assert_eq!(pki.verify_token(&token), Ok(()));
        assert!(other.verify_token(&token).is_err());
    }

    #[test]
    fn an_agent_certificate_binds_the_requested_key_to_our_name() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_or_create(dir.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = ringwatch_agent::credentials::signing_request("node-a", &key).unwrap();
        let issued = pki.issue_agent_cert("node-a", &csr).unwrap();
        assert_eq!(issued.key_fingerprint, to_hex(&fingerprint(key.public_key_raw())));
        assert_eq!(ClusterPki::request_key_fingerprint(&csr).unwrap(), issued.key_fingerprint);
        assert!(pki.issue_agent_cert("node-a", b"garbage").is_err());
    }

    #[test]
    fn regression_ca_and_token_keys_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        ClusterPki::load_or_create(dir.path()).unwrap();
        for key in ["ca.key", "token.key"] {
            let path = dir.path().join(key);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = ClusterPki::load_or_create(dir.path()).unwrap_err();
            assert!(err.to_string().contains(&format!("chmod 600 {}", path.display())), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(ClusterPki::load_or_create(dir.path()).is_ok());
    }
}
