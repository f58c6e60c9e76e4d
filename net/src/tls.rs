//! TLS and QUIC client set-up shared by agents and admin clients: a verifier
//! that trusts a console only through the CA pinned in a join token, the
//! mutual-TLS client config used once a client holds a certificate, and the
//! QUIC transport settings both ends use.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use ringwatch_shared::protocol::ALPN;
use ringwatch_shared::token::fingerprint;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

/// Why a TLS or QUIC configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("failed to set up TLS: {0}")]
pub struct TlsError(String);

/// How long a silent connection lives. Heartbeats keep a healthy one busy;
/// this only bounds how long a dead console holds a connection open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crypto provider every ringwatch TLS config uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client config for joining: no client certificate; the console must chain
/// to the CA whose SHA-256 is `ca_pin`.
///
/// # Errors
/// When rustls or quinn refuse the configuration.
pub fn join_client(ca_pin: [u8; 32]) -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let crypto = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier { pin: ca_pin, provider }))
        .with_no_client_auth();
    finish(crypto)
}

/// Client config for a client with a certificate (an agent that joined, an
/// admin tool): verifies the console against the cluster CA `ca` and
/// presents `cert` with its `key`.
///
/// # Errors
/// When the certificate or key is unusable.
pub fn mutual_client(
    ca: &CertificateDer<'static>,
    cert: &CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(setup)?;
    let crypto = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(setup)?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert.clone()], key)
        .map_err(setup)?;
    finish(crypto)
}

/// QUIC transport settings both ends use.
pub fn transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into().unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::MAX))));
    // Heartbeats keep the path busy; a keep-alive covers agents configured
    // with slow heartbeats.
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    transport
}

/// [`transport`] for a client that sends the console objects' bytes (an
/// admin client: `ringwatch data put`): path-MTU discovery probes up to
/// what the endpoints accept, [`crate::endpoint::MAX_UDP_PAYLOAD`].
/// Agents and the console keep Ethernet's bound: at 10,000 agents, large
/// datagrams on their connections cost the console more memory per agent
/// than its goal allows (ARCHITECTURE.md, "Datagrams").
pub fn bulk_transport() -> quinn::TransportConfig {
    let mut transport = transport();
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(crate::endpoint::MAX_UDP_PAYLOAD);
    transport.mtu_discovery_config(Some(mtu));
    transport
}

fn finish(mut crypto: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(crypto).map_err(setup)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

fn setup(err: impl std::fmt::Display) -> TlsError {
    TlsError(err.to_string())
}

/// The console presented a chain without the pinned CA.
#[derive(Debug)]
struct ForeignCa;

impl std::fmt::Display for ForeignCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the console's CA does not match the CA pinned in the join token: the token belongs to another cluster",
        )
    }
}

impl std::error::Error for ForeignCa {}

/// Trusts a server whose chain includes the CA with the pinned hash, and
/// verifies the chain against that CA as an ordinary root.
#[derive(Debug)]
struct PinnedCaVerifier {
    /// SHA-256 of the cluster CA certificate, from the join token.
    pin: [u8; 32],
    /// Signature algorithms.
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.iter().find(|cert| fingerprint(cert) == self.pin).ok_or_else(|| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(ForeignCa))))
        })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|err| rustls::Error::General(err.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
