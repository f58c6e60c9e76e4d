//! `ringwatch attach`: the terminal UI's handle on a console elsewhere.
//!
//! A task of its own holds a watch stream open: the console pushes a
//! snapshot whenever the cluster changes (at most four a second), each with
//! the events the UI has not seen. When the link fails the handle says so on
//! every snapshot it hands the UI — since when, why, and how old what it
//! shows is — and reconnects, trying each console address in turn. Commands
//! go on a connection of their own, so a busy watch never delays them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ringwatch_shared::plan::{OperatorAction, Plan};
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, WatchedSnapshot};
use ringwatch_shared::status::ClusterEvent;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use crate::control::admin::{self, AdminClient, AdminError, Target};
use crate::control::events::RECENT_EVENTS;
use crate::handle::{Command, CommandError, ConsoleHandle, Reply, Snapshot, act_outcome, plan_outcome};

/// A snapshot older than this while the link is up means the console (or
/// the path to it) is stalled: the UI says so.
const STALE_AFTER: Duration = Duration::from_secs(3);
/// The longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The state of the link.
#[derive(Debug, Clone)]
enum Link {
    /// Connecting for the first time.
    Connecting,
    /// Up: snapshots arrive.
    Up {
        /// When the last one did.
        last: Instant,
    },
    /// Down since `since`, for `reason`; reconnecting.
    Down {
        /// When it failed.
        since: Instant,
        /// Why.
        reason: String,
    },
}

/// What the watch task shares with the handle.
#[derive(Debug)]
struct Shared {
    /// The latest snapshot; its events are the newest the UI was sent.
    snapshot: Snapshot,
    /// The link now.
    link: Link,
    /// Where it is (or was last) connected.
    console: String,
}

/// A remote console, as the UI sees it.
#[derive(Debug)]
pub struct RemoteConsole {
    target: Target,
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<ClusterEvent>,
    _watch: AbortOnDropHandle<()>,
}

impl RemoteConsole {
    /// Starts watching `target`; the first snapshot arrives when the link
    /// is up (until then the UI shows an empty cluster, saying why).
    pub fn start(target: Target) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            snapshot: Snapshot::default(),
            link: Link::Connecting,
            console: String::new(),
        }));
        let events = broadcast::channel(1024).0;
        let watch = tokio::spawn(watch_loop(target.clone(), shared.clone(), events.clone()));
        Self { target, shared, events, _watch: AbortOnDropHandle::new(watch) }
    }

    async fn ask(target: Target, request: AdminRequest) -> Result<AdminResponse, String> {
        match admin::request(&target, &request).await {
            Ok(AdminResponse::NotLeader { leader }) => Err(match leader {
                Some(leader) => format!("this console is a standby: the leader is {leader}; attach to it to act"),
                None => "this console is a standby and no console leads now".into(),
            }),
            Ok(response) => Ok(response),
            Err(AdminError::Refused(reason)) => Err(reason),
            Err(err) => Err(err.to_string()),
        }
    }
}

impl ConsoleHandle for RemoteConsole {
    fn snapshot(&self) -> Snapshot {
        let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let mut snapshot = shared.snapshot.clone();
        snapshot.link_problem = link_problem(&shared.link, &shared.console, snapshot.at_unix_ms);
        snapshot
    }

    fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    fn command(&self, command: Command) -> Reply<Result<String, CommandError>> {
        let target = self.target.clone();
        Box::pin(async move {
            match command {
                Command::Demo { .. } => {
                    Err(CommandError::Refused("demo keys work in `ringwatch demo` only, not attached".into()))
                }
                Command::Act { action, confirmed } => {
                    act_outcome(Self::ask(target, AdminRequest::Act { action, dry_run: false, confirmed }).await?)
                }
            }
        })
    }

    fn plan(&self, action: &OperatorAction) -> Reply<Result<Plan, String>> {
        let target = self.target.clone();
        let action = action.clone();
        Box::pin(async move {
            plan_outcome(Self::ask(target, AdminRequest::Act { action, dry_run: true, confirmed: None }).await?)
        })
    }
}

/// What the UI must say about the link, if anything.
fn link_problem(link: &Link, console: &str, at_unix_ms: u64) -> Option<String> {
    let as_of = if at_unix_ms == 0 {
        "nothing received yet".to_string()
    } else {
        let time = std::time::UNIX_EPOCH + Duration::from_millis(at_unix_ms);
        format!("showing the cluster as of {}", humantime::format_rfc3339_seconds(time))
    };
    match link {
        Link::Connecting => Some(format!("connecting to the console…; {as_of}")),
        Link::Up { last } if last.elapsed() >= STALE_AFTER => {
            Some(format!("no update from the console at {console} for {}s; {as_of}", last.elapsed().as_secs()))
        }
        Link::Up { .. } => None,
        Link::Down { since, reason } => Some(format!(
            "link to the console lost {}s ago ({reason}); reconnecting; {as_of}",
            since.elapsed().as_secs()
        )),
    }
}

/// Keeps a watch stream open, reconnecting with backoff when it fails.
async fn watch_loop(target: Target, shared: Arc<Mutex<Shared>>, events: broadcast::Sender<ClusterEvent>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let failure = match watch_once(&target, &shared, &events, &mut backoff).await {
            Ok(()) => "the console ended the stream (it is stopping)".to_string(),
            Err(err) => err.to_string(),
        };
        {
            let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
            if !matches!(state.link, Link::Down { .. }) {
                warn!(%failure, "the link to the console failed; reconnecting");
                state.link = Link::Down { since: Instant::now(), reason: failure };
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's watch: until it fails.
async fn watch_once(
    target: &Target,
    shared: &Mutex<Shared>,
    events: &broadcast::Sender<ClusterEvent>,
    backoff: &mut Duration,
) -> Result<(), AdminError> {
    let client = AdminClient::connect(target).await?;
    let mut stream = client.open(&AdminRequest::Watch).await?;
    let mut first = true;
    while let Some(frame) = stream.next().await? {
        match frame {
            AdminResponse::Snapshot(watched) => {
                if first {
                    info!(console = %client.addr, "attached");
                    *backoff = Duration::from_millis(250);
                }
                let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                state.console.clone_from(&client.addr);
                state.link = Link::Up { last: Instant::now() };
                take(&mut state.snapshot, *watched, first, events);
                first = false;
            }
            AdminResponse::Error(reason) => return Err(AdminError::Refused(reason)),
            AdminResponse::NotLeader { .. } | AdminResponse::EventsMissed(_) => {}
            other => warn!(?other, "an unexpected frame on the watch stream"),
        }
    }
    Ok(())
}

/// Folds a pushed snapshot into the one the UI reads. The first of a
/// connection carries every event the console keeps: it replaces the list.
fn take(snapshot: &mut Snapshot, watched: WatchedSnapshot, first: bool, events: &broadcast::Sender<ClusterEvent>) {
    let WatchedSnapshot { status, samples, new_events, at_unix_ms, read_only } = watched;
    let last_seq = snapshot.events.last().map_or(0, |event| event.seq);
    let mut kept: VecDeque<ClusterEvent> =
        if first { VecDeque::new() } else { std::mem::take(&mut snapshot.events).into() };
    for event in new_events {
        if event.seq > last_seq || first {
            let _ = events.send(event.clone());
        }
        kept.push_back(event);
    }
    while kept.len() > RECENT_EVENTS {
        kept.pop_front();
    }
    snapshot.status = status;
    snapshot.samples = samples;
    snapshot.events = kept.into();
    snapshot.at_unix_ms = at_unix_ms;
    snapshot.read_only = read_only;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> ClusterEvent {
        ClusterEvent { seq, reason: format!("e{seq}"), ..ClusterEvent::default() }
    }

    #[test]
    fn pushed_events_append_and_a_new_connection_replaces_them() {
        let (events, mut heard) = broadcast::channel(16);
        let mut snapshot = Snapshot::default();
        let push = |new_events: Vec<ClusterEvent>| WatchedSnapshot { new_events, ..WatchedSnapshot::default() };
        take(&mut snapshot, push(vec![event(1), event(2)]), true, &events);
        take(&mut snapshot, push(vec![event(3)]), false, &events);
        assert_eq!(snapshot.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        take(&mut snapshot, push(vec![event(2), event(3), event(4)]), true, &events);
        assert_eq!(snapshot.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        let mut told = Vec::new();
        while let Ok(event) = heard.try_recv() {
            told.push(event.seq);
        }
        assert_eq!(told, vec![1, 2, 3, 2, 3, 4], "a reconnection announces its backlog (the UI redraws)");
    }

    #[test]
    fn the_link_state_is_said_until_snapshots_flow_again() {
        assert!(link_problem(&Link::Connecting, "c", 0).unwrap().contains("nothing received yet"));
        let down = Link::Down { since: Instant::now(), reason: "timed out".into() };
        let said = link_problem(&down, "c", 1_700_000_000_000).unwrap();
        assert!(said.contains("timed out") && said.contains("2023-11-14T22:13:20Z"), "{said}");
        assert_eq!(link_problem(&Link::Up { last: Instant::now() }, "c", 1), None);
    }
}
