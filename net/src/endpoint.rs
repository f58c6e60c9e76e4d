//! QUIC endpoints with large socket buffers that accept large datagrams,
//! for agents, admin clients and the console alike.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Socket buffer asked for in each direction. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max`; at the default 212 KiB a console with
/// thousands of agents drops heartbeats in bursts before reading them.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// The largest UDP payload an endpoint accepts, and an admin client sends
/// once path-MTU discovery has found that the path carries it
/// ([`crate::tls::bulk_transport`]; the console and agents send at most
/// Ethernet's size, ARCHITECTURE.md "Datagrams"): discovery starts at
/// 1,200 bytes and probes upward, so an Ethernet path settles near 1,452
/// while loopback and jumbo-frame networks reach this bound. There a 4 KiB
/// put reaches the console in one datagram instead of three
/// (BENCHMARKS.md, "Small puts, sixth pass").
///
/// Not higher: quinn hands the kernel up to [`GSO_SEGMENTS`] datagrams as
/// one segmentation-offload batch, which must fit a single UDP payload
/// (65,507 bytes). A larger batch fails with `EMSGSIZE`, which quinn takes
/// for a lost MTU probe and drops without a word: at 8,952 (a 9,000-byte
/// jumbo frame) large puts ran at half the speed of 1,452.
pub const MAX_UDP_PAYLOAD: u16 = 6_400;

/// Datagrams quinn 0.11 puts in one segmentation-offload batch (its
/// private `MAX_TRANSMIT_SEGMENTS`); see [`MAX_UDP_PAYLOAD`].
pub const GSO_SEGMENTS: usize = 10;

/// The largest payload of one UDP datagram over IPv4.
const UDP_PAYLOAD_LIMIT: usize = 65_507;

const _: () = assert!(
    MAX_UDP_PAYLOAD as usize * GSO_SEGMENTS <= UDP_PAYLOAD_LIMIT,
    "a full segmentation-offload batch must fit one UDP payload"
);

/// A client-only QUIC endpoint on an ephemeral port of `peer`'s address
/// family (on loopback when `peer` is on loopback).
///
/// # Errors
/// When the socket cannot be bound.
pub fn client_endpoint(peer: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let bind = client_bind(peer);
    endpoint(bind, None)
        .map_err(|err| std::io::Error::new(err.kind(), format!("failed to bind a UDP socket on {bind}: {err}")))
}

/// Where [`client_endpoint`] binds to reach `peer`: an ephemeral port of
/// its address family, on loopback when `peer` is on loopback. Peers with the
/// same bind address can share one endpoint.
pub fn client_bind(peer: SocketAddr) -> SocketAddr {
    match peer {
        _ if peer.ip().is_loopback() => SocketAddr::new(peer.ip(), 0),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// A QUIC endpoint on `bind` with large socket buffers; a server when
/// `server` is given.
///
/// # Errors
/// When the socket cannot be made or bound.
pub fn endpoint(bind: SocketAddr, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    if bind.is_ipv6() {
        // Same behaviour on every host, whatever its sysctl says.
        let _ = socket.set_only_v6(false);
    }
    // Best effort: a smaller buffer still works, only less well under load.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&bind.into())?;
    let runtime = quinn::default_runtime().ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    let mut config = quinn::EndpointConfig::default();
    config.max_udp_payload_size(MAX_UDP_PAYLOAD).map_err(|err| std::io::Error::other(err.to_string()))?;
    quinn::Endpoint::new(config, server, socket.into(), runtime)
}
