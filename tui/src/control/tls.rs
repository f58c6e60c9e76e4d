//! The console's QUIC server config: its certificate chain, and client
//! certificates verified against the cluster CA but optional — a joining
//! agent has none yet and may only join.

use std::sync::Arc;

use quinn::crypto::rustls::QuicServerConfig;
use ringwatch_net::tls::{provider, transport};
use ringwatch_shared::protocol::ALPN;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

use crate::control::pki::ClusterPki;

/// The QUIC server config for `pki`.
///
/// # Errors
/// A sentence when rustls or quinn refuse the certificates.
pub fn server_config(pki: &ClusterPki) -> Result<quinn::ServerConfig, String> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).map_err(|err| format!("the CA certificate is unusable: {err}"))?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|err| format!("failed to build the client verifier: {err}"))?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| err.to_string())?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(vec![pki.console_cert.clone(), pki.ca.clone()], pki.console_key())
        .map_err(|err| format!("the console certificate is unusable: {err}"))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(crypto).map_err(|err| err.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}
