//! The QUIC endpoints an agent (or a swarm of them) reaches its consoles
//! through: one per bind address, made when a console first needs it.
//!
//! One endpoint cannot reach every console: a socket bound to loopback
//! reaches only loopback, an IPv4 socket only IPv4. With a list of consoles,
//! DNS names and leaders named by standbys, the addresses are known only
//! when the agent connects (README.md, "Agent options").

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use quinn::Endpoint;

use crate::error::AgentError;

/// Client endpoints by bind address; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Made so far, by the address each is bound to
    /// ([`ringwatch_net::client_bind`]); a handful at most.
    made: Arc<Mutex<Vec<(SocketAddr, Endpoint)>>>,
}

impl Endpoints {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The endpoint that reaches `peer`, made on first use.
    ///
    /// # Errors
    /// When a socket cannot be bound.
    pub fn for_peer(&self, peer: SocketAddr) -> Result<Endpoint, AgentError> {
        let bind = ringwatch_net::client_bind(peer);
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, endpoint)) = made.iter().find(|(bound, _)| *bound == bind) {
            return Ok(endpoint.clone());
        }
        let endpoint = ringwatch_net::client_endpoint(peer).map_err(|err| AgentError::Setup(err.to_string()))?;
        made.push((bind, endpoint.clone()));
        Ok(endpoint)
    }

    /// Waits until every connection of every endpoint has closed cleanly
    /// (a goodbye's close reaching the console).
    pub async fn wait_idle(&self) {
        let made: Vec<Endpoint> =
            self.made.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(_, e)| e.clone()).collect();
        for endpoint in made {
            endpoint.wait_idle().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn peers_on_the_same_bind_address_share_an_endpoint() {
        let endpoints = Endpoints::new();
        let a = endpoints.for_peer(SocketAddr::from(([127, 0, 0, 1], 7443))).unwrap();
        let b = endpoints.for_peer(SocketAddr::from(([127, 0, 0, 1], 7444))).unwrap();
        assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
        assert!(a.local_addr().unwrap().ip().is_loopback());
        assert_eq!(endpoints.made.lock().unwrap().len(), 1);
    }
}
