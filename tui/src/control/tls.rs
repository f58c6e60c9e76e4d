//! The console's QUIC server config: its certificate chain, client
//! certificates verified against the cluster CA but optional — a joining
//! agent has none yet and may only join — and the transport limits every
//! connection starts with, before anyone knows who is on the other end
//! (ARCHITECTURE.md, "Nothing received is trusted").

use std::sync::Arc;

use quinn::VarInt;
use quinn::crypto::rustls::QuicServerConfig;
use ringwatch_net::tls::provider;
use ringwatch_shared::protocol::ALPN;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

use crate::control::admission::MAX_PENDING_HANDSHAKES;
use crate::control::pki::ClusterPki;

/// Flow-control window of one stream: large enough that an object's bytes
/// (README.md, "Data") stream at disk speed on loopback and LAN. What an
/// unknown peer can make the console buffer is bounded by the smaller
/// [`CONNECTION_WINDOW`] all its streams share.
const STREAM_WINDOW: u32 = 4 << 20;
/// Flow-control window of a whole connection while its peer is unknown:
/// nobody makes the console buffer more than this before a certificate
/// says who they are.
const CONNECTION_WINDOW: u32 = 128 * 1024;
/// Flow-control window of a connection once its peer is known (an
/// admitted agent, the admin, an operator; see [`widen_known_peer`]): a
/// few streams' worth, so uploads, reads and repair copies are not paced
/// by the window. Authenticated agents only send on the control stream
/// (read as it arrives) and on data streams the console opened, so this
/// is buffered only while the console waits on the other end of a copy.
const KNOWN_PEER_WINDOW: u32 = 16 << 20;
/// Datagrams buffered per connection before the oldest are dropped: a few
/// seconds of heartbeats.
const DATAGRAM_BUFFER: usize = 16 * 1024;
/// Bytes the console may queue toward one peer (a large `status` to an
/// admin client); only what is queued costs memory.
const SEND_WINDOW: u64 = 8 << 20;
/// Bytes of early packets buffered per connection attempt, and for all of
/// them, before the application has looked at them.
const INCOMING_BUFFER: u64 = 64 * 1024;
/// See [`INCOMING_BUFFER`].
const INCOMING_BUFFER_TOTAL: u64 = 16 << 20;

/// The transport every connection gets: one bidirectional stream (the
/// control stream, or one admin request at a time until
/// [`widen_admin`]), no unidirectional
/// stream, a small connection window until [`widen_known_peer`].
/// The console sends datagrams of at most Ethernet's size: only admin
/// clients send it larger ones (ARCHITECTURE.md, "Datagrams").
pub fn server_transport() -> quinn::TransportConfig {
    let mut transport = ringwatch_net::tls::transport();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(SEND_WINDOW)
        .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER);
    transport
}

/// Raises the flow-control window of a connection whose peer is now known
/// (an agent the owner admitted, the admin, an operator) from
/// [`CONNECTION_WINDOW`] to [`KNOWN_PEER_WINDOW`].
pub(crate) fn widen_known_peer(connection: &quinn::Connection) {
    connection.set_receive_window(VarInt::from_u32(KNOWN_PEER_WINDOW));
}

/// Requests an admin or operator connection may have open at once. With
/// one, each request's stream is granted only once the previous one is
/// closed — a packet, and a wait, per request —; with a few dozen, credit
/// runs ahead of a client's requests (1-client puts and gets 15–40 %
/// faster, BENCHMARKS.md "Small puts, fourth pass"). Their buffering is
/// still bounded by the connection's window.
const ADMIN_STREAMS: u32 = 64;

/// [`widen_known_peer`] for an admin or operator connection, which also
/// may have [`ADMIN_STREAMS`] requests open at once.
pub(crate) fn widen_admin(connection: &quinn::Connection) {
    widen_known_peer(connection);
    connection.set_max_concurrent_bi_streams(VarInt::from_u32(ADMIN_STREAMS));
}

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
        .with_single_cert(vec![pki.current_console_cert(), pki.ca.clone()], pki.console_key())
        .map_err(|err| format!("the console certificate is unusable: {err}"))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(crypto).map_err(|err| err.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config
        .transport_config(Arc::new(server_transport()))
        .max_incoming(MAX_PENDING_HANDSHAKES * 2)
        .incoming_buffer_size(INCOMING_BUFFER)
        .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use ringwatch_net::endpoint::{MAX_UDP_PAYLOAD, client_endpoint, endpoint};
    use ringwatch_shared::protocol::CONSOLE_SERVER_NAME;

    use super::*;

    /// Bytes sent each way: enough for path-MTU discovery to finish and
    /// for many full segmentation-offload batches.
    const TRANSFER: usize = 16 << 20;

    /// A bulk transfer each way between the console's endpoint and an
    /// admin client's, on loopback: path-MTU discovery raises the client's
    /// datagrams above Ethernet's 1,452 bytes (the console's stay at it),
    /// and the datagrams arrive. With a bound whose offload batches
    /// overflow a UDP payload (8,952), the kernel refused every full batch
    /// and quinn dropped it unsent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn regression_large_datagrams_on_loopback_lose_no_offload_batch() {
        let dir = tempfile::tempdir().unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let pki = ClusterPki::load_for_console(&dir.path().join("pki"), loopback).unwrap();
        let server = endpoint(loopback, Some(server_config(&pki).unwrap())).unwrap();
        let address = server.local_addr().unwrap();
        let client = client_endpoint(address).unwrap();
        let mut client_config =
            ringwatch_net::tls::join_client(pki.join_token(Duration::from_secs(60)).ca_pin).unwrap();
        client_config.transport_config(Arc::new(ringwatch_net::tls::bulk_transport()));

        let echo = tokio::spawn(async move {
            let connection = server.accept().await.unwrap().await.unwrap();
            widen_known_peer(&connection);
            let (mut send, mut recv) = connection.accept_bi().await.unwrap();
            let received = recv.read_to_end(TRANSFER).await.unwrap();
            send.write_all(&received).await.unwrap();
            send.finish().unwrap();
            send.stopped().await.unwrap();
            connection.stats()
        });
        let connection = client.connect_with(client_config, address, CONSOLE_SERVER_NAME).unwrap().await.unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        let bytes: Vec<u8> = (0..TRANSFER).map(|at| (at % 251) as u8).collect();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        let echoed = recv.read_to_end(TRANSFER).await.unwrap();
        assert!(echoed == bytes, "the echo differs from what was sent");
        let server_side = echo.await.unwrap();
        let client_side = connection.stats();

        assert!(
            client_side.path.current_mtu > 1452 && client_side.path.current_mtu <= MAX_UDP_PAYLOAD,
            "the client's path MTU is {}: discovery did not go past Ethernet's on loopback: {:?}",
            client_side.path.current_mtu,
            client_side.path
        );
        assert!(
            server_side.path.current_mtu <= 1452,
            "the console sends at most Ethernet's size: {:?}",
            server_side.path
        );
        for (side, stats) in [("client", client_side), ("console", server_side)] {
            let path = stats.path;
            // The bug's mark: batches vanished until quinn took the path
            // for a black hole and fell back to 1,200 bytes (111 of 14,030
            // datagrams lost). A loaded machine may still drop the odd
            // datagram from a full socket buffer, hence not exactly zero.
            assert_eq!(path.black_holes_detected, 0, "the {side} saw a black hole on loopback: {path:?}");
            assert!(
                path.lost_packets * 1000 <= path.sent_packets,
                "the {side} lost {} of {} datagrams on loopback: {path:?}",
                path.lost_packets,
                path.sent_packets
            );
        }
    }
}
