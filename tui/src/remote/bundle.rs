//! The credential file `ringwatch credential issue` writes (README.md,
//! "Operating ringwatch"): everything an operator elsewhere needs to reach
//! the console — its addresses, the CA that signs it (and the CA's SHA-256,
//! to compare by eye), a client certificate with its role, and the key. One
//! TOML file, mode 0600: it is as secret as the key in it.

use std::path::{Path, PathBuf};

use ringwatch_net::files::{self, PrivateFileError};
use ringwatch_net::pem::to_pem;
use ringwatch_shared::protocol::OperatorRole;
use ringwatch_shared::token::{fingerprint, to_hex};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// File mode of a credential: the owner's only.
const PRIVATE: u32 = 0o600;

/// A credential file's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialBundle {
    /// The credential's name.
    pub name: String,
    /// What it may do.
    pub role: OperatorRole,
    /// The consoles to try, in order (`HOST:PORT`).
    pub consoles: Vec<String>,
    /// SHA-256 (hex) of the CA certificate.
    pub ca_sha256: String,
    /// When the certificate expires, Unix seconds.
    pub expires_unix: u64,
    /// The cluster CA certificate (PEM).
    pub ca: String,
    /// The client certificate (PEM).
    pub certificate: String,
    /// The client key (PEM, PKCS#8).
    pub key: String,
}

/// Why a credential file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Reading or writing failed.
    #[error("cannot use the credential file \"{path}\": {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The file is readable by others.
    #[error(transparent)]
    Private(#[from] PrivateFileError),
    /// It does not parse, or its parts do not fit together.
    #[error("\"{path}\" is not a usable ringwatch credential: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The parts a TLS client needs.
#[derive(Debug)]
pub struct ClientIdentity {
    /// The CA to trust.
    pub ca: CertificateDer<'static>,
    /// The client certificate.
    pub cert: CertificateDer<'static>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
}

impl CredentialBundle {
    /// Reads and checks the credential in `path` (refused when group or
    /// others may read it).
    ///
    /// # Errors
    /// [`BundleError`] naming the file and what is wrong.
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let bytes = files::read_private(path)?.ok_or_else(|| BundleError::File {
            path: path.to_path_buf(),
            reason: "it does not exist (make one with `ringwatch credential issue NAME --role viewer -o FILE`)".into(),
        })?;
        let invalid = |reason: String| BundleError::Invalid { path: path.to_path_buf(), reason };
        let text = String::from_utf8(bytes).map_err(|_| invalid("it is not text".into()))?;
        let bundle: Self = toml::from_str(&text).map_err(|err| invalid(err.to_string()))?;
        bundle.identity().map_err(invalid)?;
        Ok(bundle)
    }

    /// Writes the credential to `path` (mode 0600), refusing to replace a
    /// file unless `force`.
    ///
    /// # Errors
    /// [`BundleError::File`] when the file exists or cannot be written.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), BundleError> {
        let failed = |reason: String| BundleError::File { path: path.to_path_buf(), reason };
        let body = toml::to_string(self).map_err(|err| failed(err.to_string()))?;
        let text = format!(
            "# ringwatch operator credential \"{}\" ({}). Keep it secret: it holds a private key.\n\
             # Use it with `ringwatch --credential {} status` or `ringwatch attach --credential {}`.\n{body}",
            self.name,
            self.role,
            path.display(),
            path.display(),
        );
        let written = if force {
            files::write_atomic(path, text.as_bytes(), PRIVATE)
        } else {
            files::write_new(path, text.as_bytes(), PRIVATE)
        };
        written.map_err(|err| {
            if err.kind() == std::io::ErrorKind::AlreadyExists {
                failed("it exists; pass --force to replace it".into())
            } else {
                failed(err.to_string())
            }
        })
    }

    /// The CA, certificate and key, checked: the CA is the one pinned, the
    /// key parses.
    ///
    /// # Errors
    /// A sentence saying which part is wrong.
    pub fn identity(&self) -> Result<ClientIdentity, String> {
        let ca = CertificateDer::from_pem_slice(self.ca.as_bytes())
            .map_err(|err| format!("its CA certificate is not PEM: {err}"))?;
        if to_hex(&fingerprint(&ca)) != self.ca_sha256.to_ascii_lowercase() {
            return Err("its CA certificate is not the one its ca_sha256 names (was the file edited?)".into());
        }
        let cert = CertificateDer::from_pem_slice(self.certificate.as_bytes())
            .map_err(|err| format!("its certificate is not PEM: {err}"))?;
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes())
            .map_err(|err| format!("its key is not a PEM private key: {err}"))?;
        Ok(ClientIdentity { ca, cert, key })
    }

    /// A bundle of the parts the console signed and the key made here.
    pub fn new(
        name: &str,
        role: OperatorRole,
        consoles: Vec<String>,
        ca_pem: String,
        certificate_pem: String,
        key_pem: String,
        expires_unix: u64,
    ) -> Result<Self, String> {
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|err| format!("the console sent an unusable CA certificate: {err}"))?;
        Ok(Self {
            name: name.to_string(),
            role,
            consoles,
            ca_sha256: to_hex(&fingerprint(&ca)),
            expires_unix,
            ca: to_pem("CERTIFICATE", &ca),
            certificate: certificate_pem,
            key: key_pem,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn bundle() -> CredentialBundle {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&key).unwrap();
        CredentialBundle::new(
            "alice",
            OperatorRole::Viewer,
            vec!["127.0.0.1:7443".into()],
            ca.pem(),
            cert.pem(),
            key.serialize_pem(),
            2_000_000_000,
        )
        .unwrap()
    }

    #[test]
    fn a_written_credential_reads_back_private_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.cred");
        let written = bundle();
        written.write(&path, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(CredentialBundle::read(&path).unwrap(), written);
        let again = written.write(&path, false).unwrap_err().to_string();
        assert!(again.contains("--force"), "{again}");
        written.write(&path, true).unwrap();
    }

    #[test]
    fn a_credential_others_may_read_an_edited_ca_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let mut edited = bundle();
        edited.write(&path, false).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(CredentialBundle::read(&path), Err(BundleError::Private(_))));
        edited.ca_sha256 = "00".repeat(32);
        edited.write(&path, true).unwrap();
        let err = CredentialBundle::read(&path).unwrap_err().to_string();
        assert!(err.contains("ca_sha256"), "{err}");
        std::fs::write(&path, "name = 3").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(CredentialBundle::read(&path), Err(BundleError::Invalid { .. })));
        let missing = CredentialBundle::read(&dir.path().join("none")).unwrap_err().to_string();
        assert!(missing.contains("credential issue"), "{missing}");
    }
}
