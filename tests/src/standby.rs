//! A fake standby console, until real standbys exist: a quinn server on a
//! console's own PKI (its certificate, its CA, client certificates optional
//! as for joins, the console's transport limits) that answers every hello
//! and every join with `NotLeader`, naming the leader it was given. Agents
//! verify it as they verify the console, so an agent's switching — which
//! console it tries, following "the leader is X" — can be tested against
//! the real console behind it (README.md, "Agent options").
//!
//! It runs on a tokio runtime of its own; dropping it closes the endpoint.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use quinn::{Endpoint, Incoming};
use ringwatch::control::pki::ClusterPki;
use ringwatch_shared::codec::{self, MAX_FRAME_LEN};
use ringwatch_shared::protocol::{AgentFrame, ConsoleFrame, FromConsole};
use tokio::runtime::Runtime;

/// How long the standby waits for an agent to read its answer and close.
const LINGER: Duration = Duration::from_secs(5);

/// A standby that sends every agent to `leader`. Dropping it closes it.
pub struct FakeStandby {
    /// Where it listens.
    addr: SocketAddr,
    /// Hellos and joins answered with `NotLeader`.
    answered: Arc<AtomicUsize>,
    /// Its endpoint, closed on drop.
    endpoint: Endpoint,
    /// Declared last: dropped after everything that runs on it.
    _runtime: Runtime,
}

impl fmt::Debug for FakeStandby {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeStandby").field("addr", &self.addr).field("answered", &self.answered()).finish()
    }
}

impl FakeStandby {
    /// Listens on `127.0.0.1:0` with the PKI in `console_dir` (a console's
    /// data dir) and answers `NotLeader { leader }`, stamped with term 0.
    ///
    /// # Errors
    /// When the PKI cannot be read or the socket bound.
    pub fn start(console_dir: &Path, leader: Option<SocketAddr>) -> anyhow::Result<Self> {
        let pki = ClusterPki::load_or_create(console_dir)
            .with_context(|| format!("cannot read the console's PKI in \"{}\"", console_dir.display()))?;
        let server = ringwatch::control::tls::server_config(&pki).map_err(|err| anyhow!(err))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("failed to start the standby's runtime")?;
        let endpoint = runtime.block_on(async { ringwatch_net::endpoint(([127, 0, 0, 1], 0).into(), Some(server)) })?;
        let addr = endpoint.local_addr()?;
        let answered = Arc::new(AtomicUsize::new(0));
        let leader = leader.map(|addr| addr.to_string());
        runtime.spawn(serve(endpoint.clone(), leader, answered.clone()));
        Ok(Self { addr, answered, endpoint, _runtime: runtime })
    }

    /// Where agents reach it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many hellos and joins it answered with `NotLeader`.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for FakeStandby {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"standby stopped");
    }
}

async fn serve(endpoint: Endpoint, leader: Option<String>, answered: Arc<AtomicUsize>) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(answer(incoming, leader.clone(), answered.clone()));
    }
}

/// Reads the first frame; a hello or a join gets `NotLeader`.
async fn answer(incoming: Incoming, leader: Option<String>, answered: Arc<AtomicUsize>) {
    let Ok(connection) = incoming.await else { return };
    let Ok((mut send, mut recv)) = connection.accept_bi().await else { return };
    let Ok(Some(AgentFrame::Hello(_) | AgentFrame::Join(_))) =
        codec::read_frame::<AgentFrame, _>(&mut recv, MAX_FRAME_LEN).await
    else {
        return;
    };
    let answer = FromConsole { term: 0, frame: ConsoleFrame::NotLeader { leader } };
    if codec::write_frame(&mut send, &answer).await.is_err() {
        return;
    }
    answered.fetch_add(1, Ordering::Relaxed);
    let _ = send.finish();
    // The agent closes once it has read the answer; closing first could
    // discard it in flight.
    let _ = tokio::time::timeout(LINGER, connection.closed()).await;
}
