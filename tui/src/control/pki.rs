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
//!
//! All consoles of a cluster share the CA and the token key (README.md,
//! "Sharing the PKI between consoles"): [`PkiBundle`] is what
//! `ringwatch pki export` writes and `ringwatch pki import` installs. Each
//! console keeps its own server certificate, naming
//! [`CONSOLE_SERVER_NAME`] — the name agents verify against the CA, so they
//! trust any console of their cluster — and the IP it listens on. A
//! console's or admin certificate that no longer fits (another listen
//! address, signed by another CA after a forced import, expired, not for
//! its key) is reissued when the PKI is loaded.
//!
//! # Lifetimes (README.md, "Certificates")
//!
//! | certificate        | valid for                     | renewed                                   |
//! |--------------------|-------------------------------|-------------------------------------------|
//! | CA                 | 20 years                      | never: operators are warned 90 days ahead |
//! | console, admin     | 1 year                        | by the console, with a third of it left   |
//! | agent              | `agent_cert_ttl` (30 days)    | by the agent over its link, at two thirds |
//!
//! Certificates start a little in the past (a day for the console's and
//! admin's, a tenth of the lifetime up to an hour for an agent's) so that a
//! host whose clock is slightly behind still accepts them.
//!
//! # The bundle file
//!
//! Text, mode 0600: the line [`BUNDLE_HEADER`], comment lines (`#`), then
//! three PEM sections in any order, each exactly once:
//!
//! | label                      | content                          |
//! |----------------------------|----------------------------------|
//! | `CERTIFICATE`              | the cluster CA certificate (DER) |
//! | `PRIVATE KEY`              | the CA's PKCS#8 private key      |
//! | `RINGWATCH JOIN TOKEN KEY` | the join-token HMAC key (raw)    |

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use ring::rand::{SecureRandom, SystemRandom};
use ringwatch_net::files::{self, PRIVATE, PUBLIC};
use ringwatch_net::pem::{self, to_pem};
use ringwatch_net::tls::provider;
use ringwatch_shared::lifetime::{DEFAULT_AGENT_CERT_TTL, Validity};
use ringwatch_shared::protocol::CONSOLE_SERVER_NAME;
use ringwatch_shared::token::{JoinToken, fingerprint, to_hex};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use tracing::info;
use x509_parser::extensions::GeneralName;

/// The cluster CA certificate.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The cluster CA's private key.
pub const CA_KEY_FILE: &str = "ca.key";
/// The console's server certificate.
pub const CONSOLE_CERT_FILE: &str = "console.crt";
/// Its private key.
pub const CONSOLE_KEY_FILE: &str = "console.key";
/// The admin client certificate.
pub const ADMIN_CERT_FILE: &str = "admin.crt";
/// Its private key.
pub const ADMIN_KEY_FILE: &str = "admin.key";
/// The join-token HMAC key.
pub const TOKEN_KEY_FILE: &str = "token.key";
/// Held while the PKI is made or changed.
const INIT_LOCK_FILE: &str = "init.lock";

/// The first line of a PKI bundle. The format number changes when the
/// sections do, so an older console refuses a newer bundle by name.
pub const BUNDLE_HEADER: &str = "# ringwatch PKI bundle, format 1";
/// The PEM label of the join-token key in a bundle.
const TOKEN_KEY_LABEL: &str = "RINGWATCH JOIN TOKEN KEY";
/// A join-token key is 32 random bytes; shorter ones are refused.
const TOKEN_KEY_LEN: usize = 32;

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
    /// A certificate does not parse.
    #[error("the certificate is unusable: {0}")]
    BadCertificate(String),
    /// The data dir has no cluster CA to export.
    #[error(
        "the data dir \"{0}\" holds no cluster CA: check --data-dir, or start the console once to make the cluster's PKI"
    )]
    NoCa(PathBuf),
    /// A file given as a PKI bundle is not one.
    #[error("\"{path}\" is not a usable ringwatch PKI bundle: {problem}")]
    BadBundle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The export file exists.
    #[error("\"{0}\" already exists: choose another file, or pass --force to replace it")]
    Exists(PathBuf),
    /// The data dir holds another cluster's CA.
    #[error(
        "the data dir \"{dir}\" already holds another cluster CA (SHA-256 {present}) than the bundle (SHA-256 {bundle}): importing it would orphan every agent that joined with the present CA; import into a fresh data dir, or pass --force to replace the CA (its agents must then join again)"
    )]
    OtherCa {
        /// The data dir.
        dir: PathBuf,
        /// SHA-256 of the CA certificate in the data dir.
        present: String,
        /// SHA-256 of the bundle's CA certificate.
        bundle: String,
    },
    /// The data dir holds the bundle's CA but another join-token key.
    #[error(
        "the data dir \"{0}\" holds the bundle's CA but another join-token key: importing the bundle would invalidate every join token issued there; pass --force to replace the key"
    )]
    OtherTokenKey(PathBuf),
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
    /// How long agent certificates are valid.
    agent_cert_ttl: Duration,
    /// The certificates renewed while the console runs: what it serves
    /// now, and every admin certificate it accepts.
    renewed: Mutex<Renewed>,
}

/// Certificates renewed while the console runs.
#[derive(Debug)]
struct Renewed {
    /// The server certificate served now.
    console_cert: CertificateDer<'static>,
    /// SHA-256 of the admin certificates accepted: the one loaded and any
    /// renewed since (a renewed one replaces `admin.crt`; one read before
    /// stays valid until it expires).
    admin_fingerprints: Vec<[u8; 32]>,
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
    /// When it expires, Unix seconds.
    pub expires_unix: u64,
}

impl ClusterPki {
    /// Loads the PKI from `dir`, making whatever is missing, for a command
    /// that does not listen (`join-token` with no console running): a
    /// console certificate that chains to the CA is kept whatever addresses
    /// it names; a missing or unfitting one is made naming only
    /// [`CONSOLE_SERVER_NAME`]. Concurrent callers (a starting console and
    /// `join-token`) are serialised by a lock file, so the CA is made
    /// exactly once.
    ///
    /// # Errors
    /// When files cannot be read or written, or exist but are corrupt.
    pub fn load_or_create(dir: &Path) -> Result<Self, PkiError> {
        Self::open(dir, None)
    }

    /// As [`ClusterPki::load_or_create`], for a console listening on
    /// `listen`: its server certificate names exactly
    /// [`console_names`]`(listen)`, and is reissued when it names anything
    /// else (the console moved to another address).
    ///
    /// # Errors
    /// When files cannot be read or written, or exist but are corrupt.
    pub fn load_for_console(dir: &Path, listen: SocketAddr) -> Result<Self, PkiError> {
        Self::open(dir, Some(listen))
    }

    fn open(dir: &Path, listen: Option<SocketAddr>) -> Result<Self, PkiError> {
        files::create_private_dir(dir).map_err(io(dir))?;
        let lock = init_lock(dir)?;

        let ca_key_path = dir.join(CA_KEY_FILE);
        let ca_key = load_or_create_key(&ca_key_path)?;
        let ca = load_or_create_cert(&dir.join(CA_CERT_FILE), || {
            let mut params = CertificateParams::default();
            params.distinguished_name = common_name(&format!("ringwatch cluster CA {}", random_hex(4)));
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            valid_for(&mut params, CA_YEARS);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            Ok(params.self_signed(&ca_key)?.der().clone())
        })?;
        // A CA key that is not the certificate's would sign certificates
        // nobody can verify: stop here rather than hand those out.
        check_ca(&ca, &ca_key).map_err(|problem| {
            corrupt(
                &ca_key_path,
                &format!(
                    "{problem}; restore both from a backup, or import the cluster's PKI with `ringwatch pki import --force`"
                ),
            )
        })?;
        let issuer = Issuer::from_ca_cert_der(&ca, &ca_key)?;

        let names = listen.map(console_names);
        let console_cert = renew_console_cert(dir, &ca, &issuer, names.as_deref(), unix_now())?;
        let console_key = load_or_create_key(&dir.join(CONSOLE_KEY_FILE))?;
        let admin_cert = renew_admin_cert(dir, &ca, &issuer, unix_now())?;

        let token_path = dir.join(TOKEN_KEY_FILE);
        let token_key = match files::read_private(&token_path)? {
            Some(key) if key.len() >= TOKEN_KEY_LEN => key,
            Some(_) => return Err(corrupt(&token_path, "shorter than 32 bytes")),
            None => {
                let mut key = vec![0; TOKEN_KEY_LEN];
                SystemRandom::new().fill(&mut key).map_err(|_| corrupt(&token_path, "no system randomness"))?;
                files::write_atomic(&token_path, &key, PRIVATE).map_err(io(&token_path))?;
                key
            }
        };
        drop(lock);

        let admin_fingerprint = fingerprint(&admin_cert);
        Ok(Self {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
            renewed: Mutex::new(Renewed {
                console_cert: console_cert.clone(),
                admin_fingerprints: vec![admin_fingerprint],
            }),
            console_cert,
            console_key: console_key.serialize_der(),
            admin_fingerprint,
            token_key,
            agent_cert_ttl: DEFAULT_AGENT_CERT_TTL,
        })
    }

    /// Sets how long the agent certificates this PKI issues are valid
    /// (checked by the caller: [`ringwatch_shared::lifetime::check_agent_cert_ttl`]).
    pub fn set_agent_cert_ttl(&mut self, ttl: Duration) {
        self.agent_cert_ttl = ttl;
    }

    /// How long the agent certificates this PKI issues are valid.
    pub fn agent_cert_ttl(&self) -> Duration {
        self.agent_cert_ttl
    }

    /// When the cluster CA is valid.
    pub fn ca_validity(&self) -> Validity {
        ringwatch_net::cert::validity(&self.ca).unwrap_or(Validity { not_before_unix: 0, not_after_unix: 0 })
    }

    /// The console's server certificate served now (renewed ones included).
    pub fn current_console_cert(&self) -> CertificateDer<'static> {
        self.renewed.lock().unwrap_or_else(PoisonError::into_inner).console_cert.clone()
    }

    /// Whether `cert_fingerprint` (SHA-256 of a client certificate) is an
    /// admin certificate of this console: the one loaded or one renewed
    /// since.
    pub fn is_admin(&self, cert_fingerprint: &[u8; 32]) -> bool {
        *cert_fingerprint == self.admin_fingerprint
            || self.renewed.lock().unwrap_or_else(PoisonError::into_inner).admin_fingerprints.contains(cert_fingerprint)
    }

    /// Renews the console's server certificate and the admin certificate
    /// in the data dir when less than a third of their life is left (or
    /// they no longer fit), for a console listening on `listen`. Returns
    /// the new server certificate, when there is one, for the running
    /// endpoint (`Endpoint::set_server_config`); a renewed admin
    /// certificate is accepted at once, and the old one until it expires.
    ///
    /// # Errors
    /// When files cannot be read or written, or the CA cannot sign.
    pub fn renew_due(
        &self,
        listen: Option<SocketAddr>,
        now_unix: u64,
    ) -> Result<Option<CertificateDer<'static>>, PkiError> {
        let lock = init_lock(&self.dir)?;
        let issuer = Issuer::from_ca_cert_der(&self.ca, &self.ca_key)?;
        let names = listen.map(console_names);
        let console_cert = renew_console_cert(&self.dir, &self.ca, &issuer, names.as_deref(), now_unix)?;
        let admin_cert = renew_admin_cert(&self.dir, &self.ca, &issuer, now_unix)?;
        drop(lock);
        let mut renewed = self.renewed.lock().unwrap_or_else(PoisonError::into_inner);
        let admin = fingerprint(&admin_cert);
        if !renewed.admin_fingerprints.contains(&admin) {
            info!(dir = %self.dir.display(), "renewed the admin certificate");
            renewed.admin_fingerprints.push(admin);
        }
        if console_cert == renewed.console_cert {
            return Ok(None);
        }
        info!(dir = %self.dir.display(), "renewed the console's server certificate");
        renewed.console_cert = console_cert.clone();
        Ok(Some(console_cert))
    }

    /// The console's private key in the form rustls takes.
    pub fn console_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.console_key.clone()))
    }

    /// SHA-256 of the CA certificate (hex): the cluster's identity, which
    /// join tokens pin.
    pub fn ca_fingerprint(&self) -> String {
        to_hex(&fingerprint(&self.ca))
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
        self.issue_agent_cert_at(name, csr_der, unix_now())
    }

    /// As [`ClusterPki::issue_agent_cert`], valid from `now_unix` (tests
    /// issue certificates in the past).
    ///
    /// # Errors
    /// As [`ClusterPki::issue_agent_cert`].
    pub fn issue_agent_cert_at(&self, name: &str, csr_der: &[u8], now_unix: u64) -> Result<IssuedCert, PkiError> {
        let request = parse_request(csr_der)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let ttl = self.agent_cert_ttl.as_secs();
        let expires_unix = valid_between(&mut params, now_unix, (ttl / 10).min(AGENT_BACKDATE_MAX), ttl);
        let issuer = Issuer::from_ca_cert_der(&self.ca, &self.ca_key)?;
        let cert = params.signed_by(&request.public_key, &issuer)?;
        Ok(IssuedCert {
            cert: cert.der().clone(),
            key_fingerprint: to_hex(&fingerprint(request.public_key.der_bytes())),
            expires_unix,
        })
    }

    /// Issues an operator's client certificate (README.md, "Operating
    /// ringwatch") named `name`, to the key in `csr_der`, valid from an hour
    /// ago (clock skew) for `ttl`. Returns it with its expiry, Unix seconds.
    ///
    /// # Errors
    /// [`PkiError::BadRequest`] for an unusable request, or a signing error.
    pub fn issue_operator_cert(
        &self,
        name: &str,
        csr_der: &[u8],
        ttl: Duration,
    ) -> Result<(CertificateDer<'static>, u64), PkiError> {
        let request = parse_request(csr_der)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(&format!("operator {name}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = unix_now();
        let expires_unix = now.saturating_add(ttl.as_secs());
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + Duration::from_secs(now.saturating_sub(3_600));
        params.not_after = epoch + Duration::from_secs(expires_unix);
        let issuer = Issuer::from_ca_cert_der(&self.ca, &self.ca_key)?;
        let cert = params.signed_by(&request.public_key, &issuer)?;
        Ok((cert.der().clone(), expires_unix))
    }

    /// Where the PKI lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The names a console listening on `listen` has in its server certificate,
/// sorted: [`CONSOLE_SERVER_NAME`], which agents and admin clients verify,
/// and the listen IP unless it is unspecified (`0.0.0.0`, `::`: no one
/// address names the console then).
pub fn console_names(listen: SocketAddr) -> Vec<String> {
    let mut names = vec![CONSOLE_SERVER_NAME.to_string()];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.sort();
    names
}

/// The subject alternative names of `cert`, sorted: DNS names as they are,
/// IP addresses in their usual text form, anything else as x509-parser
/// prints it.
///
/// # Errors
/// [`PkiError::BadCertificate`] when `cert` does not parse.
pub fn certificate_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, PkiError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|err| PkiError::BadCertificate(format!("not an X.509 certificate: {err}")))?;
    let extension = parsed
        .subject_alternative_name()
        .map_err(|err| PkiError::BadCertificate(format!("unreadable subject alternative names: {err}")))?;
    let mut names: Vec<String> =
        extension.map(|extension| extension.value.general_names.iter().map(name_text).collect()).unwrap_or_default();
    names.sort();
    Ok(names)
}

fn name_text(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => (*dns).to_string(),
        GeneralName::IPAddress(bytes) => {
            let ip = <[u8; 4]>::try_from(*bytes)
                .map(IpAddr::from)
                .or_else(|_| <[u8; 16]>::try_from(*bytes).map(IpAddr::from));
            ip.map_or_else(|_| format!("IP {}", to_hex(bytes)), |ip| ip.to_string())
        }
        other => other.to_string(),
    }
}

/// The secrets every console of a cluster shares: the CA certificate, the
/// CA's key and the join-token key (module docs, "The bundle file").
pub struct PkiBundle {
    /// The cluster CA certificate.
    ca: CertificateDer<'static>,
    /// Its private key.
    ca_key: KeyPair,
    /// The join-token HMAC key.
    token_key: Vec<u8>,
}

impl std::fmt::Debug for PkiBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PkiBundle").field("ca_sha256", &self.ca_fingerprint()).finish_non_exhaustive()
    }
}

/// How a data dir's PKI stands to a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirPki {
    /// No CA certificate: the bundle may be imported.
    NoCa,
    /// The bundle's CA and token key, every file present: nothing to do.
    Same,
    /// The bundle's CA, but the CA key or the token key is missing or
    /// unusable: importing completes the data dir.
    Incomplete,
    /// Another cluster's CA, with this SHA-256.
    OtherCa(String),
    /// The bundle's CA with another join-token key.
    OtherTokenKey,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The data dir already held the bundle's PKI; nothing was written.
    AlreadyPresent,
    /// The bundle's PKI was written into a data dir without one (or
    /// completed an incomplete one).
    Imported,
    /// `--force` replaced another CA (its SHA-256) with the bundle's.
    ReplacedCa(String),
    /// `--force` replaced the join-token key of the same CA.
    ReplacedTokenKey,
}

impl PkiBundle {
    /// The PKI of the data dir `dir`, without making anything: the key files
    /// are read as the console reads them (refused when group or others
    /// may read them).
    ///
    /// # Errors
    /// [`PkiError::NoCa`] when the data dir has no CA; a refused, missing
    /// or corrupt key file.
    pub fn from_data_dir(dir: &Path) -> Result<Self, PkiError> {
        let ca_path = dir.join(CA_CERT_FILE);
        // Checked first so that a mistyped --data-dir gets nothing written
        // into it, not even the lock file.
        if !ca_path.exists() {
            return Err(PkiError::NoCa(dir.to_path_buf()));
        }
        // Waits for a console making the PKI right now; a data dir we may
        // read but not write still exports.
        let lock = init_lock(dir).ok();
        let Some(ca_pem) = files::read_optional(&ca_path).map_err(io(&ca_path))? else {
            return Err(PkiError::NoCa(dir.to_path_buf()));
        };
        let ca = CertificateDer::from_pem_slice(&ca_pem).map_err(|err| corrupt(&ca_path, &err.to_string()))?;
        let key_path = dir.join(CA_KEY_FILE);
        let key_pem = files::read_private(&key_path)?.ok_or_else(|| corrupt(&key_path, "missing"))?;
        let ca_key = KeyPair::from_pem(&String::from_utf8_lossy(&key_pem))
            .map_err(|err| corrupt(&key_path, &err.to_string()))?;
        check_ca(&ca, &ca_key).map_err(|problem| corrupt(&key_path, &problem))?;
        let token_path = dir.join(TOKEN_KEY_FILE);
        let token_key = files::read_private(&token_path)?.ok_or_else(|| corrupt(&token_path, "missing"))?;
        if token_key.len() < TOKEN_KEY_LEN {
            return Err(corrupt(&token_path, "shorter than 32 bytes"));
        }
        drop(lock);
        Ok(Self { ca, ca_key, token_key })
    }

    /// Reads the bundle file `path`, refused — as a key file is — when group
    /// or others may read it.
    ///
    /// # Errors
    /// A refused or unreadable file, or one that is not a bundle.
    pub fn read(path: &Path) -> Result<Self, PkiError> {
        let text = files::read_private(path)?
            .ok_or_else(|| PkiError::Io { path: path.to_path_buf(), source: std::io::ErrorKind::NotFound.into() })?;
        Self::parse(&text).map_err(|problem| PkiError::BadBundle { path: path.to_path_buf(), problem })
    }

    /// Parses a bundle's text.
    ///
    /// # Errors
    /// What is wrong with it, as a sentence.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(text).map_err(|_| "it is not text".to_string())?;
        if text.lines().next().map(str::trim_end) != Some(BUNDLE_HEADER) {
            return Err(format!(
                "its first line is not \"{BUNDLE_HEADER}\" (make a bundle with `ringwatch pki export FILE`)"
            ));
        }
        let (mut ca, mut ca_key, mut token_key) = (None, None, None);
        for section in pem::sections(text).map_err(|err| err.to_string())? {
            let slot = match section.label.as_str() {
                "CERTIFICATE" => &mut ca,
                "PRIVATE KEY" => &mut ca_key,
                TOKEN_KEY_LABEL => &mut token_key,
                other => return Err(format!("it has an unexpected section \"{other}\"")),
            };
            if slot.replace(section.der).is_some() {
                return Err(format!("it has more than one \"{}\" section", section.label));
            }
        }
        let missing = |label: &str| format!("it has no \"{label}\" section");
        let ca = CertificateDer::from(ca.ok_or_else(|| missing("CERTIFICATE"))?);
        let ca_key = KeyPair::try_from(ca_key.ok_or_else(|| missing("PRIVATE KEY"))?.as_slice())
            .map_err(|err| format!("its private key is unusable: {err}"))?;
        let token_key = token_key.ok_or_else(|| missing(TOKEN_KEY_LABEL))?;
        if token_key.len() < TOKEN_KEY_LEN {
            return Err("its join-token key is shorter than 32 bytes".into());
        }
        check_ca(&ca, &ca_key)?;
        Ok(Self { ca, ca_key, token_key })
    }

    /// The bundle's text (module docs, "The bundle file").
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{BUNDLE_HEADER}\n\
             #\n\
             # The shared secrets of one ringwatch cluster: its CA certificate, the CA's\n\
             # private key and the key that signs join tokens. Whoever holds this file\n\
             # can admit agents to the cluster and pose as any of its consoles: keep it\n\
             # as secret as the CA key (mode 0600), and delete it once it is imported\n\
             # on another console host with `ringwatch pki import FILE`.\n\
             #\n\
             # cluster CA SHA-256: {}\n",
            self.ca_fingerprint()
        );
        text.push_str(&to_pem("CERTIFICATE", &self.ca));
        text.push_str(&to_pem("PRIVATE KEY", &self.ca_key.serialize_der()));
        text.push_str(&to_pem(TOKEN_KEY_LABEL, &self.token_key));
        text
    }

    /// Writes the bundle to `path`, mode 0600 from its first byte. An
    /// existing file is refused unless `force`, and is then replaced
    /// atomically.
    ///
    /// # Errors
    /// [`PkiError::Exists`], or any I/O error.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), PkiError> {
        let text = self.to_text();
        let written = if force {
            files::write_atomic(path, text.as_bytes(), PRIVATE)
        } else {
            files::write_new(path, text.as_bytes(), PRIVATE)
        };
        written.map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => PkiError::Exists(path.to_path_buf()),
            _ => PkiError::Io { path: path.to_path_buf(), source },
        })
    }

    /// SHA-256 of the CA certificate (hex).
    pub fn ca_fingerprint(&self) -> String {
        to_hex(&fingerprint(&self.ca))
    }

    /// The CA certificate.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// How the PKI in the data dir `dir` stands to this bundle.
    ///
    /// # Errors
    /// An unreadable or corrupt `ca.crt`, or a key file that group or
    /// others may read.
    pub fn compare(&self, dir: &Path) -> Result<DirPki, PkiError> {
        let ca_path = dir.join(CA_CERT_FILE);
        let Some(ca_pem) = files::read_optional(&ca_path).map_err(io(&ca_path))? else {
            return Ok(DirPki::NoCa);
        };
        let present = CertificateDer::from_pem_slice(&ca_pem).map_err(|err| corrupt(&ca_path, &err.to_string()))?;
        if present != self.ca {
            return Ok(DirPki::OtherCa(to_hex(&fingerprint(&present))));
        }
        // A CA key that is missing or not the certificate's is no cluster's
        // key: the import repairs it, it conflicts with nothing.
        let ca_key_fits = files::read_private(&dir.join(CA_KEY_FILE))?
            .and_then(|pem| KeyPair::from_pem(&String::from_utf8_lossy(&pem)).ok())
            .is_some_and(|key| check_ca(&self.ca, &key).is_ok());
        match files::read_private(&dir.join(TOKEN_KEY_FILE))? {
            Some(key) if key.len() >= TOKEN_KEY_LEN && key != self.token_key => Ok(DirPki::OtherTokenKey),
            Some(key) if key == self.token_key && ca_key_fits => Ok(DirPki::Same),
            _ => Ok(DirPki::Incomplete),
        }
    }

    /// Installs the bundle in the data dir `dir`: `ca.crt`, `ca.key` and
    /// `token.key`. The console makes its own server and admin certificates,
    /// signed by this CA, when it next loads the PKI. The caller holds the
    /// data dir's lock (no console runs on it).
    ///
    /// # Errors
    /// [`PkiError::OtherCa`] or [`PkiError::OtherTokenKey`] unless `force`;
    /// any I/O error.
    pub fn install(&self, dir: &Path, force: bool) -> Result<ImportOutcome, PkiError> {
        files::create_private_dir(dir).map_err(io(dir))?;
        let lock = init_lock(dir)?;
        let outcome = match self.compare(dir)? {
            DirPki::Same => return Ok(ImportOutcome::AlreadyPresent),
            DirPki::NoCa | DirPki::Incomplete => ImportOutcome::Imported,
            DirPki::OtherCa(present) if force => ImportOutcome::ReplacedCa(present),
            DirPki::OtherCa(present) => {
                return Err(PkiError::OtherCa { dir: dir.to_path_buf(), present, bundle: self.ca_fingerprint() });
            }
            DirPki::OtherTokenKey if force => ImportOutcome::ReplacedTokenKey,
            DirPki::OtherTokenKey => return Err(PkiError::OtherTokenKey(dir.to_path_buf())),
        };
        let write = |name: &str, bytes: &[u8], mode: u32| {
            let path = dir.join(name);
            files::write_atomic(&path, bytes, mode).map_err(io(&path))
        };
        write(TOKEN_KEY_FILE, &self.token_key, PRIVATE)?;
        write(CA_KEY_FILE, self.ca_key.serialize_pem().as_bytes(), PRIVATE)?;
        // The certificate last: a crash before it leaves the old CA whole,
        // or no CA; a crash after it, a CA whose key `open` checks.
        write(CA_CERT_FILE, to_pem("CERTIFICATE", &self.ca).as_bytes(), PUBLIC)?;
        drop(lock);
        info!(dir = %dir.display(), ca = %self.ca_fingerprint(), ?outcome, "imported the cluster's PKI");
        Ok(outcome)
    }
}

/// Takes the lock that serialises making and changing the PKI in `dir`.
fn init_lock(dir: &Path) -> Result<File, PkiError> {
    let lock_path = dir.join(INIT_LOCK_FILE);
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    Ok(lock)
}

/// Whether `ca` is a CA certificate for `key`.
fn check_ca(ca: &CertificateDer<'_>, key: &KeyPair) -> Result<(), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(ca.as_ref())
        .map_err(|err| format!("the CA certificate does not parse: {err}"))?;
    if !parsed.is_ca() {
        return Err("the CA certificate is not a CA's".into());
    }
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err("the CA key is not the key of the CA certificate".into());
    }
    Ok(())
}

/// Whether `cert` is the certificate of `key`.
fn check_key(cert: &CertificateDer<'_>, key: &KeyPair) -> Result<(), String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|err| format!("it does not parse: {err}"))?;
    if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err("it is not for the key beside it".into());
    }
    Ok(())
}

/// Whether `cert` serves as the console's certificate: for `key`, valid
/// now, chaining to `ca` for [`CONSOLE_SERVER_NAME`] — exactly what agents
/// check — and, when `names` are given, naming exactly those.
fn console_cert_fits(
    cert: &CertificateDer<'static>,
    ca: &CertificateDer<'static>,
    key: &KeyPair,
    names: Option<&[String]>,
    now_unix: u64,
) -> Result<(), String> {
    check_key(cert, key)?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(|err| format!("the CA certificate is unusable: {err}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|err| err.to_string())?;
    let server_name = ServerName::try_from(CONSOLE_SERVER_NAME).map_err(|err| err.to_string())?;
    verifier
        .verify_server_cert(cert, &[], &server_name, &[], unix_time(now_unix))
        .map_err(|err| format!("agents would refuse it: {err}"))?;
    if let Some(names) = names {
        let present = certificate_names(cert).map_err(|err| err.to_string())?;
        if present != names {
            return Err(format!("it names {present:?}, the console now needs {names:?}"));
        }
    }
    Ok(())
}

/// Whether `cert` serves as the admin certificate: for `key`, valid now,
/// chaining to `ca` for client use.
fn admin_cert_fits(
    cert: &CertificateDer<'static>,
    ca: &CertificateDer<'static>,
    key: &KeyPair,
    now_unix: u64,
) -> Result<(), String> {
    check_key(cert, key)?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(|err| format!("the CA certificate is unusable: {err}"))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|err| err.to_string())?;
    verifier
        .verify_client_cert(cert, &[], unix_time(now_unix))
        .map_err(|err| format!("the console would refuse it: {err}"))?;
    Ok(())
}

/// The console's server certificate in `dir`, reissued (same key) when it
/// does not fit `ca` and `names`, or less than a third of its life is left
/// at `now_unix`.
fn renew_console_cert(
    dir: &Path,
    ca: &CertificateDer<'static>,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    names: Option<&[String]>,
    now_unix: u64,
) -> Result<CertificateDer<'static>, PkiError> {
    let console_key = load_or_create_key(&dir.join(CONSOLE_KEY_FILE))?;
    keep_or_issue(
        &dir.join(CONSOLE_CERT_FILE),
        |cert| console_cert_fits(cert, ca, &console_key, names, now_unix).and_then(|()| not_due(cert, now_unix)),
        || {
            let wanted = names.map_or_else(|| vec![CONSOLE_SERVER_NAME.to_string()], <[String]>::to_vec);
            let mut params = CertificateParams::new(wanted)?;
            params.distinguished_name = common_name("ringwatch console");
            valid_between(&mut params, now_unix, CONSOLE_BACKDATE, CONSOLE_TTL);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            Ok(params.signed_by(&console_key, issuer)?.der().clone())
        },
    )
}

/// The admin certificate in `dir`, reissued (same key) when it does not
/// fit `ca`, or less than a third of its life is left at `now_unix`.
fn renew_admin_cert(
    dir: &Path,
    ca: &CertificateDer<'static>,
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    now_unix: u64,
) -> Result<CertificateDer<'static>, PkiError> {
    let admin_key = load_or_create_key(&dir.join(ADMIN_KEY_FILE))?;
    keep_or_issue(
        &dir.join(ADMIN_CERT_FILE),
        |cert| admin_cert_fits(cert, ca, &admin_key, now_unix).and_then(|()| not_due(cert, now_unix)),
        || {
            let mut params = CertificateParams::default();
            params.distinguished_name = common_name("ringwatch admin");
            valid_between(&mut params, now_unix, CONSOLE_BACKDATE, CONSOLE_TTL);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            Ok(params.signed_by(&admin_key, issuer)?.der().clone())
        },
    )
}

/// `now_unix` as rustls takes it.
fn unix_time(now_unix: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(now_unix))
}

/// Refuses a certificate with less than a third of its life left.
fn not_due(cert: &CertificateDer<'_>, now_unix: u64) -> Result<(), String> {
    let validity = ringwatch_net::cert::validity(cert)?;
    if validity.renewal_due(now_unix) {
        return Err(format!(
            "less than a third of its life is left (it expires {})",
            ringwatch_net::cert::format_unix(validity.not_after_unix)
        ));
    }
    Ok(())
}

/// The certificate in `path` if `fits` accepts it; otherwise a new one from
/// `make`, checked with `fits` too and stored.
fn keep_or_issue(
    path: &Path,
    fits: impl Fn(&CertificateDer<'static>) -> Result<(), String>,
    make: impl FnOnce() -> Result<CertificateDer<'static>, PkiError>,
) -> Result<CertificateDer<'static>, PkiError> {
    if let Some(pem) = files::read_optional(path).map_err(io(path))? {
        let verdict = CertificateDer::from_pem_slice(&pem)
            .map_err(|err| format!("it is not a PEM certificate ({err})"))
            .and_then(|cert| fits(&cert).map(|()| cert));
        match verdict {
            Ok(cert) => return Ok(cert),
            Err(why) => info!(path = %path.display(), %why, "reissuing the certificate"),
        }
    }
    let cert = make()?;
    fits(&cert).map_err(|problem| corrupt(path, &format!("the certificate just made does not fit: {problem}")))?;
    files::write_atomic(path, to_pem("CERTIFICATE", &cert).as_bytes(), PUBLIC).map_err(io(path))?;
    Ok(cert)
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
/// How long the console's and the admin certificates are valid: a year,
/// renewed by the console with four months left.
const CONSOLE_TTL: u64 = 365 * 86_400;
/// How far in the past the console's and admin certificates start: agents
/// on hosts whose clocks lag a little still accept them.
const CONSOLE_BACKDATE: u64 = 86_400;
/// At most this far in the past an agent's certificate starts (a tenth of
/// its lifetime when that is less): only consoles verify it, whose clocks
/// agree closely.
const AGENT_BACKDATE_MAX: u64 = 3_600;

/// Valid from `backdate` seconds before `now_unix` until `ttl` seconds
/// after it; returns the expiry, Unix seconds.
fn valid_between(params: &mut CertificateParams, now_unix: u64, backdate: u64, ttl: u64) -> u64 {
    let at = |unix: u64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix);
    let expires = now_unix.saturating_add(ttl);
    params.not_before = at(now_unix.saturating_sub(backdate));
    params.not_after = at(expires);
    expires
}

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

/// The warning about a CA that expires at `expires_unix`, seen at
/// `now_unix`: what `status` and the console's log say within 90 days of
/// it, and what to do.
pub fn ca_expiry_warning(expires_unix: u64, now_unix: u64) -> String {
    let when = ringwatch_net::cert::format_unix(expires_unix);
    if expires_unix < now_unix {
        format!(
            "the cluster CA expired at {when}: no agent can connect; make a new cluster PKI and join every agent again (README.md, \"Certificates\")"
        )
    } else {
        format!(
            "the cluster CA expires at {when}, in {} days: plan its replacement — a new cluster PKI, then every agent joins again (README.md, \"Certificates\")",
            (expires_unix - now_unix) / 86_400
        )
    }
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

    fn listen(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 7443)
    }

    /// Exports the PKI of `dir` to a fresh bundle file in `scratch`.
    fn export(dir: &Path, scratch: &Path) -> PathBuf {
        let file = scratch.join("cluster.pki");
        PkiBundle::from_data_dir(dir).unwrap().write(&file, false).unwrap();
        file
    }

    /// Whether a client verifying `server_name` against `ca` (as agents
    /// verify the console) accepts `cert`.
    fn verifies(ca: &CertificateDer<'static>, cert: &CertificateDer<'static>, server_name: &str) -> bool {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap();
        let name = ServerName::try_from(server_name.to_string()).unwrap();
        verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now()).is_ok()
    }

    #[test]
    fn export_then_import_shares_the_ca_and_token_key_between_consoles() {
        let (first_dir, second_dir, scratch) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = ClusterPki::load_for_console(first_dir.path(), listen("127.0.0.1")).unwrap();
        let file = export(first_dir.path(), scratch.path());
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with(BUNDLE_HEADER), "{text}");
        assert!(text.contains(&first.ca_fingerprint()), "the header names the CA: {text}");

        let bundle = PkiBundle::read(&file).unwrap();
        assert_eq!(bundle.compare(second_dir.path()).unwrap(), DirPki::NoCa);
        assert_eq!(bundle.install(second_dir.path(), false).unwrap(), ImportOutcome::Imported);
        for key in [CA_KEY_FILE, TOKEN_KEY_FILE] {
            let mode = std::fs::metadata(second_dir.path().join(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let second = ClusterPki::load_for_console(second_dir.path(), listen("127.0.0.2")).unwrap();
        assert_eq!(second.ca, first.ca);
        assert_eq!(second.token_key, first.token_key);
        assert_ne!(second.console_cert, first.console_cert, "each console has its own certificate");
        assert_ne!(second.admin_fingerprint, first.admin_fingerprint, "and its own admin credential");

        // A token either console issues verifies on the other.
        assert_eq!(second.verify_token(&first.join_token(Duration::from_secs(60))), Ok(()));
        assert_eq!(first.verify_token(&second.join_token(Duration::from_secs(60))), Ok(()));

        // Importing again changes nothing.
        assert_eq!(bundle.compare(second_dir.path()).unwrap(), DirPki::Same);
        assert_eq!(bundle.install(second_dir.path(), false).unwrap(), ImportOutcome::AlreadyPresent);
    }

    #[test]
    fn console_certificates_of_both_consoles_chain_to_the_ca_and_name_their_listen_addresses() {
        let (first_dir, second_dir, scratch) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = ClusterPki::load_for_console(first_dir.path(), listen("127.0.0.1")).unwrap();
        let file = export(first_dir.path(), scratch.path());
        PkiBundle::read(&file).unwrap().install(second_dir.path(), false).unwrap();
        let second = ClusterPki::load_for_console(second_dir.path(), listen("::1")).unwrap();

        assert_eq!(certificate_names(&first.console_cert).unwrap(), vec!["127.0.0.1", CONSOLE_SERVER_NAME]);
        assert_eq!(certificate_names(&second.console_cert).unwrap(), vec!["::1", CONSOLE_SERVER_NAME]);
        for (pki, ip) in [(&first, "127.0.0.1"), (&second, "::1")] {
            // Agents verify the console's name against the CA they hold.
            assert!(verifies(&first.ca, &pki.console_cert, CONSOLE_SERVER_NAME));
            assert!(verifies(&first.ca, &pki.console_cert, ip));
        }
        assert!(!verifies(&first.ca, &first.console_cert, "::1"), "a console names only its own address");
        let stranger = tempfile::tempdir().unwrap();
        let other = ClusterPki::load_or_create(stranger.path()).unwrap();
        assert!(!verifies(&other.ca, &second.console_cert, CONSOLE_SERVER_NAME), "another cluster's CA refuses it");
    }

    #[test]
    fn the_console_certificate_is_reissued_when_the_console_listens_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let here = ClusterPki::load_for_console(dir.path(), listen("127.0.0.1")).unwrap();
        let again = ClusterPki::load_for_console(dir.path(), SocketAddr::from(([127, 0, 0, 1], 9000))).unwrap();
        assert_eq!(again.console_cert, here.console_cert, "the port is not in the certificate");

        let moved = ClusterPki::load_for_console(dir.path(), listen("10.1.2.3")).unwrap();
        assert_eq!(certificate_names(&moved.console_cert).unwrap(), vec!["10.1.2.3", CONSOLE_SERVER_NAME]);
        assert!(verifies(&here.ca, &moved.console_cert, CONSOLE_SERVER_NAME));
        assert_eq!(moved.console_key, here.console_key, "the key stays");
        assert_eq!(moved.admin_fingerprint, here.admin_fingerprint, "the admin credential stays");

        // Commands that do not listen keep whatever the console made.
        let offline = ClusterPki::load_or_create(dir.path()).unwrap();
        assert_eq!(offline.console_cert, moved.console_cert);

        let everywhere = ClusterPki::load_for_console(dir.path(), listen("0.0.0.0")).unwrap();
        assert_eq!(certificate_names(&everywhere.console_cert).unwrap(), vec![CONSOLE_SERVER_NAME]);
    }

    #[test]
    fn importing_another_ca_is_refused_and_forced_reissues_the_console_and_admin_certificates() {
        let (first_dir, second_dir, scratch) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = ClusterPki::load_for_console(first_dir.path(), listen("127.0.0.1")).unwrap();
        let before = ClusterPki::load_for_console(second_dir.path(), listen("127.0.0.2")).unwrap();
        let bundle = PkiBundle::read(&export(first_dir.path(), scratch.path())).unwrap();

        assert_eq!(bundle.compare(second_dir.path()).unwrap(), DirPki::OtherCa(before.ca_fingerprint()));
        let err = bundle.install(second_dir.path(), false).unwrap_err();
        assert!(matches!(err, PkiError::OtherCa { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&before.ca_fingerprint()) && message.contains(&first.ca_fingerprint()), "{message}");
        assert!(message.contains("orphan every agent") && message.contains("--force"), "{message}");
        let untouched = ClusterPki::load_for_console(second_dir.path(), listen("127.0.0.2")).unwrap();
        assert_eq!(untouched.ca, before.ca, "a refused import writes nothing");

        assert_eq!(
            bundle.install(second_dir.path(), true).unwrap(),
            ImportOutcome::ReplacedCa(before.ca_fingerprint())
        );
        let after = ClusterPki::load_for_console(second_dir.path(), listen("127.0.0.2")).unwrap();
        assert_eq!(after.ca, first.ca);
        assert!(verifies(&first.ca, &after.console_cert, CONSOLE_SERVER_NAME), "reissued by the imported CA");
        assert_ne!(after.admin_fingerprint, before.admin_fingerprint, "the admin certificate was reissued");
        let admin_cert =
            CertificateDer::from_pem_slice(&std::fs::read(second_dir.path().join(ADMIN_CERT_FILE)).unwrap()).unwrap();
        let admin_key =
            KeyPair::from_pem(&std::fs::read_to_string(second_dir.path().join(ADMIN_KEY_FILE)).unwrap()).unwrap();
        assert_eq!(admin_cert_fits(&admin_cert, &first.ca, &admin_key, unix_now()), Ok(()));
    }

    #[test]
    fn another_token_key_of_the_same_ca_is_refused_unless_forced() {
        let (first_dir, second_dir, scratch) =
            (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        ClusterPki::load_or_create(first_dir.path()).unwrap();
        let bundle = PkiBundle::read(&export(first_dir.path(), scratch.path())).unwrap();
        bundle.install(second_dir.path(), false).unwrap();
        files::write_atomic(&second_dir.path().join(TOKEN_KEY_FILE), &[7; 32], PRIVATE).unwrap();

        assert_eq!(bundle.compare(second_dir.path()).unwrap(), DirPki::OtherTokenKey);
        let err = bundle.install(second_dir.path(), false).unwrap_err();
        assert!(matches!(err, PkiError::OtherTokenKey(_)), "{err}");
        assert_eq!(bundle.install(second_dir.path(), true).unwrap(), ImportOutcome::ReplacedTokenKey);
        assert_eq!(bundle.compare(second_dir.path()).unwrap(), DirPki::Same);
    }

    #[test]
    fn a_bundle_readable_by_group_or_others_is_refused() {
        let (dir, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        ClusterPki::load_or_create(dir.path()).unwrap();
        let file = export(dir.path(), scratch.path());
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = PkiBundle::read(&file).unwrap_err();
            assert!(err.to_string().contains(&format!("chmod 600 {}", file.display())), "{err}");
        }
    }

    #[test]
    fn export_refuses_an_existing_file_unless_forced() {
        let (dir, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        ClusterPki::load_or_create(dir.path()).unwrap();
        let file = scratch.path().join("cluster.pki");
        std::fs::write(&file, "precious").unwrap();
        let bundle = PkiBundle::from_data_dir(dir.path()).unwrap();
        let err = bundle.write(&file, false).unwrap_err();
        assert!(matches!(err, PkiError::Exists(_)), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");

        bundle.write(&file, true).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(PkiBundle::read(&file).unwrap().ca(), bundle.ca());
    }

    #[test]
    fn a_data_dir_without_a_ca_has_nothing_to_export() {
        let dir = tempfile::tempdir().unwrap();
        let err = PkiBundle::from_data_dir(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, PkiError::NoCa(_)), "{err}");
        let err = PkiBundle::from_data_dir(dir.path()).unwrap_err();
        assert!(matches!(err, PkiError::NoCa(_)), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "exporting writes nothing into the data dir: {left:?}");
    }

    #[test]
    fn export_reads_key_files_as_the_console_does() {
        let (dir, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        ClusterPki::load_or_create(dir.path()).unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = PkiBundle::from_data_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains(&format!("chmod 600 {}", key.display())), "{err}");
        assert!(!scratch.path().join("cluster.pki").exists());
    }

    #[test]
    fn texts_that_are_not_bundles_are_refused_saying_why() {
        let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        ClusterPki::load_or_create(dir.path()).unwrap();
        ClusterPki::load_or_create(other_dir.path()).unwrap();
        let good = PkiBundle::from_data_dir(dir.path()).unwrap();
        let other = PkiBundle::from_data_dir(other_dir.path()).unwrap();
        let text = good.to_text();
        assert!(PkiBundle::parse(text.as_bytes()).is_ok());

        let ca_pem = to_pem("CERTIFICATE", &good.ca);
        let cases = [
            (text.replacen(BUNDLE_HEADER, "# some file", 1), "first line"),
            (text.replacen(&ca_pem, "", 1), "no \"CERTIFICATE\" section"),
            (format!("{text}{ca_pem}"), "more than one \"CERTIFICATE\""),
            (format!("{text}{}", to_pem("EXTRA", b"x")), "unexpected section \"EXTRA\""),
            (text.replacen(&ca_pem, &to_pem("CERTIFICATE", &other.ca), 1), "not the key of the CA certificate"),
            (
                text.replacen(&to_pem(TOKEN_KEY_LABEL, &good.token_key), &to_pem(TOKEN_KEY_LABEL, &[1; 8]), 1),
                "shorter than 32 bytes",
            ),
        ];
        for (bad, why) in cases {
            let err = PkiBundle::parse(bad.as_bytes()).map(|_| ()).unwrap_err();
            assert!(err.contains(why), "expected {why:?} in {err:?}");
        }
    }

    #[test]
    fn a_ca_key_that_is_not_the_certificates_is_refused_on_load() {
        let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        ClusterPki::load_or_create(dir.path()).unwrap();
        ClusterPki::load_or_create(other_dir.path()).unwrap();
        std::fs::copy(other_dir.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
        let err = ClusterPki::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not the key of the CA certificate"), "{err}");
        assert!(err.to_string().contains("pki import --force"), "{err}");
    }

    #[test]
    fn agent_certificates_live_the_configured_lifetime_and_renew_at_two_thirds() {
        let dir = tempfile::tempdir().unwrap();
        let mut pki = ClusterPki::load_or_create(dir.path()).unwrap();
        let key = KeyPair::generate().unwrap();
        let csr = ringwatch_agent::credentials::signing_request("node-a", &key).unwrap();
        let now = 1_795_883_482;

        let default = pki.issue_agent_cert_at("node-a", &csr, now).unwrap();
        let validity = ringwatch_net::cert::validity(&default.cert).unwrap();
        assert_eq!(validity.not_after_unix, now + 30 * 86_400);
        assert_eq!(default.expires_unix, validity.not_after_unix);
        assert_eq!(validity.not_before_unix, now - 3_600, "an hour back at most");
        assert!(!validity.renewal_due(now + 19 * 86_400));
        assert!(validity.renewal_due(now + 20 * 86_400));

        pki.set_agent_cert_ttl(Duration::from_secs(30));
        let short = pki.issue_agent_cert_at("node-a", &csr, now).unwrap();
        let validity = ringwatch_net::cert::validity(&short.cert).unwrap();
        assert_eq!((validity.not_before_unix, validity.not_after_unix), (now - 3, now + 30));
        assert_eq!(validity.renew_at_unix(), now + 19, "two thirds of 33 s from 3 s before issue");
    }

    #[test]
    fn console_and_admin_certificates_last_a_year_and_renew_with_a_third_left() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ClusterPki::load_for_console(dir.path(), listen("127.0.0.1")).unwrap();
        let now = unix_now();
        let validity = ringwatch_net::cert::validity(&pki.console_cert).unwrap();
        assert_eq!(validity.not_after_unix - validity.not_before_unix, 366 * 86_400, "a year, from a day back");
        let ca = pki.ca_validity();
        assert!(ca.not_after_unix > now + 19 * 365 * 86_400, "the CA lives 20 years");

        assert_eq!(pki.renew_due(Some(listen("127.0.0.1")), now).unwrap(), None, "nothing is due yet");
        let admin_before = std::fs::read(dir.path().join(ADMIN_CERT_FILE)).unwrap();
        let later = validity.renew_at_unix() + 60;
        let renewed = pki.renew_due(Some(listen("127.0.0.1")), later).unwrap().expect("the server certificate is due");
        assert_ne!(renewed, pki.console_cert);
        assert_eq!(pki.current_console_cert(), renewed, "what the endpoint serves from now on");
        let console_key =
            KeyPair::from_pem(&std::fs::read_to_string(dir.path().join(CONSOLE_KEY_FILE)).unwrap()).unwrap();
        let names = console_names(listen("127.0.0.1"));
        assert_eq!(console_cert_fits(&renewed, &pki.ca, &console_key, Some(&names), later), Ok(()), "agents accept it");
        assert_eq!(certificate_names(&renewed).unwrap(), vec!["127.0.0.1", CONSOLE_SERVER_NAME]);
        assert!(ringwatch_net::cert::validity(&renewed).unwrap().not_after_unix >= later + 364 * 86_400);

        let admin_after = std::fs::read(dir.path().join(ADMIN_CERT_FILE)).unwrap();
        assert_ne!(admin_after, admin_before, "the admin certificate was renewed in the data dir");
        let new_admin = fingerprint(&CertificateDer::from_pem_slice(&admin_after).unwrap());
        assert!(pki.is_admin(&new_admin), "the renewed admin certificate is accepted at once");
        assert!(pki.is_admin(&pki.admin_fingerprint), "and the old one until it expires");
        assert!(!pki.is_admin(&[0; 32]));
        assert_eq!(pki.renew_due(Some(listen("127.0.0.1")), later).unwrap(), None, "renewed once");
    }

    #[test]
    fn the_ca_warning_says_when_and_what_to_do() {
        let now = 1_795_883_482;
        let warning = ca_expiry_warning(now + 30 * 86_400, now);
        assert!(warning.contains("in 30 days") && warning.contains("joins again"), "{warning}");
        assert!(ca_expiry_warning(now - 1, now).contains("expired at"));
    }
}
