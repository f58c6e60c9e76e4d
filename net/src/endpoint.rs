//! QUIC endpoints with large socket buffers, for agents, admin clients and
//! the console alike.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Socket buffer asked for in each direction. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max`; at the default 212 KiB a console with
/// thousands of agents drops heartbeats in bursts before reading them.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

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
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket.into(), runtime)
}
