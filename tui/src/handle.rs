//! The one narrow boundary between the UI and the control plane: the UI
//! reads [`Snapshot`]s and sends [`Command`]s through [`ConsoleHandle`],
//! never touching control-plane internals, so the same UI can later attach
//! to a remote console over the admin channel.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use ringwatch_shared::metrics::MetricsSample;
use ringwatch_shared::plan::{OperatorAction, Plan};
use ringwatch_shared::protocol::AdminResponse;
use ringwatch_shared::status::{ClusterEvent, ClusterStatus};
use tokio::sync::broadcast;

/// Everything a view may show, as of one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Nodes (and, later, tasks), as `ringwatch status` reports them.
    pub status: ClusterStatus,
    /// The latest full metrics sample of each node that sent one, by name
    /// (per-core CPU, disks, network).
    pub samples: BTreeMap<String, MetricsSample>,
    /// The newest events, oldest first.
    pub events: Vec<ClusterEvent>,
    /// Events the console could not persist because its writer fell behind.
    pub dropped_events: u64,
    /// Where the console listens.
    pub listen: Option<SocketAddr>,
    /// Whether demo commands are available (the `ringwatch demo` console).
    pub demo: bool,
    /// When the snapshot was taken, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Why what this shows may be out of date (an attached console whose
    /// link is down or stalled): said on every view until it is live again.
    pub link_problem: Option<String>,
    /// The operator may only read (an attached viewer credential): actions
    /// are refused before they reach the console.
    pub read_only: bool,
}

/// A fault the demo can inject into one of its local agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoAction {
    /// Kill the agent abruptly: no goodbye, its traffic stops.
    Crash,
    /// Drop the agent's traffic both ways until healed.
    Partition,
    /// The agent stops sending heartbeats but stays connected.
    Stall,
    /// Undo a partition or stall; restart a crashed agent.
    Heal,
}

/// Something the operator asks the console to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Inject a demo fault into `node`.
    Demo {
        /// The node.
        node: String,
        /// The fault.
        action: DemoAction,
    },
    /// Carry out an operator action. With `confirmed` — the plan the
    /// operator saw and confirmed — only if the action still plans the same
    /// moves.
    Act {
        /// The action.
        action: OperatorAction,
        /// The plan the operator confirmed.
        confirmed: Option<Plan>,
    },
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandError {
    /// It cannot be done; the sentence says why.
    Refused(String),
    /// The cluster changed since the confirmed plan was made; this is the
    /// plan now, to confirm again. Nothing was done. Boxed: a plan is
    /// large beside a refusal.
    PlanChanged(Box<Plan>),
}

impl From<String> for CommandError {
    fn from(reason: String) -> Self {
        Self::Refused(reason)
    }
}

/// What the UI is told of an action's answer: the status-line text, a
/// refusal, or the changed plan to confirm again.
///
/// # Errors
/// [`CommandError`] for a refusal or a changed plan.
pub fn act_outcome(response: AdminResponse) -> Result<String, CommandError> {
    match response {
        AdminResponse::Plan { plan, .. } => Ok(format!("{}: under way ({} move(s))", plan.action, plan.moves.len())),
        AdminResponse::PlanChanged(plan) => Err(CommandError::PlanChanged(Box::new(plan))),
        AdminResponse::Error(err) => Err(CommandError::Refused(err)),
        other => Err(CommandError::Refused(format!("unexpected answer: {other:?}"))),
    }
}

/// The plan in a dry run's answer.
///
/// # Errors
/// The refusal, as the dialog shows it.
pub fn plan_outcome(response: AdminResponse) -> Result<Plan, String> {
    match response {
        AdminResponse::Plan { plan, .. } => Ok(plan),
        AdminResponse::Error(err) => Err(err),
        other => Err(format!("unexpected answer: {other:?}")),
    }
}

/// An answer that arrives later (the console may be in another task, or
/// another process).
pub type Reply<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The console as the UI sees it.
pub trait ConsoleHandle: Send + Sync + 'static {
    /// The current state. Cheap enough to call on every redraw tick.
    fn snapshot(&self) -> Snapshot;

    /// Wakes on every new event (the UI redraws on change, not only on a
    /// tick). Lagging receivers just redraw.
    fn subscribe(&self) -> broadcast::Receiver<ClusterEvent>;

    /// Carries out `command`; the `Ok` text or the error goes to the status
    /// line, a changed plan back into the dialog.
    fn command(&self, command: Command) -> Reply<Result<String, CommandError>>;

    /// The plan of `action`, for the confirmation dialog (nothing is done).
    fn plan(&self, action: &OperatorAction) -> Reply<Result<Plan, String>>;
}
