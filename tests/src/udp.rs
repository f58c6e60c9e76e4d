//! UDP fault injection on loopback: the relay (shared with `ringwatch demo`,
//! which puts one in front of each of its agents) that can pass, partition
//! or jitter one agent's traffic to the console, and a flood of random
//! datagrams.
//!
//! QUIC runs over UDP, so putting a [`UdpRelay`] between an agent and the
//! console (the agent's `--console` is the relay's address) lets a test cut
//! or slow exactly that link while everything else stays healthy.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use rand::Rng;
pub use ringwatch::demo::relay::{RelayMode, RelayStats, UdpRelay};

/// Sends `count` datagrams of random length (1..=1400) and random content to
/// `target` from a fresh loopback socket; returns the bytes sent. Loopback
/// does not pace UDP, so this is as fast as the sender can go.
///
/// # Errors
/// When the socket cannot be bound or a send fails.
pub fn send_random_datagrams(target: SocketAddr, count: usize) -> io::Result<u64> {
    let local: SocketAddr =
        if target.is_ipv6() { (Ipv6Addr::LOCALHOST, 0).into() } else { (Ipv4Addr::LOCALHOST, 0).into() };
    let socket = UdpSocket::bind(local)?;
    let mut rng = rand::rng();
    let mut buf = [0u8; 1400];
    let mut total = 0u64;
    for _ in 0..count {
        let len = rng.random_range(1..=buf.len());
        rng.fill(&mut buf[..len]);
        socket.send_to(&buf[..len], target)?;
        total += len as u64;
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn random_datagrams_have_random_lengths() {
        let target = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Absence can only be observed by waiting: a short quiet period ends the read.
        target.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        send_random_datagrams(target.local_addr().unwrap(), 50).unwrap();
        let mut buf = [0u8; 2048];
        let mut lengths = Vec::new();
        while let Ok(len) = target.recv(&mut buf) {
            lengths.push(len);
        }
        assert!(lengths.len() >= 40, "loopback lost too many: {lengths:?}");
        assert!(lengths.iter().all(|len| (1..=1400).contains(len)));
        lengths.dedup();
        assert!(lengths.len() > 1, "lengths vary");
    }
}
