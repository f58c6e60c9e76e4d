//! The task supervisor: runs the instances the console assigns to this
//! agent as child processes, restarts them in place per their task's
//! [`RestartPolicy`](ringwatch_shared::task::RestartPolicy), stops them on
//! request or when the console has been silent too long (fencing), and
//! reports every state change as an [`InstanceReport`].
//!
//! Each instance is run by a task of its own (an actor) that owns its child
//! process; the [`Supervisor`] handle only records what is wanted (the
//! assignment, run or stop) and wakes the actor, so no call here blocks or
//! awaits a child. Each child runs in a process group of its own, in
//! `data_dir/instances/<task>-<index>/` (mode 0700), with `RINGWATCH_INSTANCE`
//! and `RINGWATCH_EPOCH` in its environment and its stdout and stderr in
//! size-capped, rotated `stdout.log` and `stderr.log` there. Stopping sends
//! SIGTERM to the group, then SIGKILL after the grace period; when the main
//! process exits on its own, whatever is left of its group is killed too, so
//! restarts never pile up stray processes.
//!
//! Reports go out with `try_send`: a full channel drops the report (counted
//! in [`Supervisor::dropped_reports`]) rather than delaying a stop; the
//! link's inventory after each welcome sets the console straight.
//!
//! # Layout
//! - `actor`: one instance's life: start, watch, restart, stop.
//! - `process`: spawning in a process group, signalling it, exit texts.
//! - `logs`: capped, rotated log files fed from the child's pipes.
//! - `allow`: the `--allow-exec` allowlist (deny by default) and its
//!   refusal message.
//! - [`error`](mod@error): why an instance could not start.

mod actor;
mod allow;
pub mod error;
mod logs;
mod process;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use ringwatch_shared::duration::format_duration;
use ringwatch_shared::names::InstanceId;
use ringwatch_shared::protocol::{Assignment, InstanceReport, InstanceState};
use ringwatch_shared::task::OnDisconnect;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

pub use allow::{ALLOW_ANY, AllowSource};
pub use error::SupervisorError;
pub use process::reap_orphans;

/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);
/// Default size at which a log file is rotated: 1 MiB.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 1 << 20;
/// Default number of rotated log files kept per stream.
pub const DEFAULT_LOG_KEEP: usize = 3;
/// Beyond the grace period, how long [`Supervisor::shutdown`] waits for the
/// stops to finish (killing, reaping, draining logs) before it kills what is
/// left.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);

/// How the supervisor runs instances.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The agent's data dir; instances live in
    /// `data_dir/instances/<task>-<index>/`.
    pub data_dir: PathBuf,
    /// Glob patterns `command[0]` must match (`*` does not cross `/`, but
    /// [`ALLOW_ANY`] alone allows every program); empty allows nothing, so
    /// an agent runs no task it was not told it may run.
    pub allow_exec: Vec<String>,
    /// How the operator changes `allow_exec`: a refusal says so.
    pub allow_source: AllowSource,
    /// Time between SIGTERM and SIGKILL when stopping an instance.
    pub stop_grace: Duration,
    /// A log file is rotated before it would exceed this size; 0 means no
    /// cap.
    pub log_max_bytes: u64,
    /// Rotated log files kept per stream (`stdout.log.1` …); 0 keeps none.
    pub log_keep: usize,
}

impl SupervisorConfig {
    /// The defaults, with instances under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            allow_exec: Vec::new(),
            allow_source: AllowSource::Flag,
            stop_grace: DEFAULT_STOP_GRACE,
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            log_keep: DEFAULT_LOG_KEEP,
        }
    }

    /// Checks the `--allow-exec` patterns, for a clear error at start-up. (A
    /// supervisor built with an invalid pattern treats it as a literal
    /// program name.)
    ///
    /// # Errors
    /// [`SupervisorError::BadPattern`] for the first invalid pattern.
    pub fn validate(&self) -> Result<(), SupervisorError> {
        allow::check(&self.allow_exec)
    }

    /// Whether `program` (a command's first word) may run under
    /// `allow_exec`.
    pub fn allows(&self, program: &str) -> bool {
        allow::AllowList::new(&self.allow_exec).allows(program)
    }

    /// The working directory of `instance`.
    pub fn instance_dir(&self, instance: &InstanceId) -> PathBuf {
        process::instance_dir(&self.data_dir, instance)
    }
}

/// Runs the instances assigned to this agent. Cheap to clone: clones share
/// the instances. When the last clone is dropped, every remaining process
/// group is killed (SIGKILL, best effort); call [`Supervisor::shutdown`]
/// first for a graceful stop.
#[derive(Clone)]
pub struct Supervisor {
    /// The last clone's drop kills the children.
    handle: Arc<Handle>,
}

/// Owns the children's lifetime: its `Drop` kills what is left.
struct Handle {
    /// Shared with the actors, which outlive no `Handle`.
    shared: Arc<Shared>,
}

/// What the handle and the actors share.
struct Shared {
    /// As given to [`Supervisor::new`].
    config: SupervisorConfig,
    /// `config.allow_exec`, compiled.
    allow: allow::AllowList,
    /// This agent's node name as the console knows it, for refusal
    /// messages; set on each welcome.
    node: Mutex<Option<String>>,
    /// Where every state change goes.
    reports: mpsc::Sender<InstanceReport>,
    /// Every known instance by `task/index`. Held only briefly, never
    /// across an await; the desired state is changed only under it, which
    /// lets an actor forget its instance without losing a late command.
    instances: Mutex<BTreeMap<InstanceId, Entry>>,
    /// Reports lost to a full channel.
    dropped_reports: AtomicU64,
    /// Set by [`Supervisor::shutdown`]: assignments are refused from then on.
    closed: AtomicBool,
    /// Cancelled when the last handle drops: actors end at once.
    cancel: CancellationToken,
    /// The actors, so that shutdown can wait for their stops.
    actors: TaskTracker,
}

/// One known instance.
struct Entry {
    /// What the console wants; the actor watches it.
    desired: watch::Sender<Desired>,
    /// The last state the actor reported (for inventory, pids and Drop).
    report: InstanceReport,
}

/// What is wanted of an instance. The actor reconciles towards it; changes
/// coalesce, so only the latest wish counts.
#[derive(Debug, Clone)]
struct Desired {
    /// The newest assignment (highest epoch).
    assignment: Assignment,
    /// Run, stop, or stop and forget.
    goal: Goal,
    /// Bumped when the instance must be (re)started: first assignment, a
    /// newer epoch, or the same epoch again after it stopped or failed.
    start_seq: u64,
    /// Bumped by each [`Supervisor::restart`].
    restart_seq: u64,
}

/// What should happen to an instance's process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Goal {
    /// Keep it running, restarting it per its policy.
    Run,
    /// Stop it and keep knowing it (fencing); the text is the report
    /// message.
    Stop(String),
    /// Stop it and forget it; the text is the reason.
    Forget(String),
}

impl Supervisor {
    /// A supervisor with no instances that sends every state change on
    /// `reports`.
    pub fn new(config: SupervisorConfig, reports: mpsc::Sender<InstanceReport>) -> Self {
        let allow = allow::AllowList::new(&config.allow_exec);
        let shared = Arc::new(Shared {
            config,
            allow,
            node: Mutex::new(None),
            reports,
            instances: Mutex::new(BTreeMap::new()),
            dropped_reports: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            actors: TaskTracker::new(),
        });
        Self { handle: Arc::new(Handle { shared }) }
    }

    /// Runs `assignment`. Idempotent per instance and epoch: an instance
    /// already starting, running or restarting under the same epoch is left
    /// alone, while one that stopped (fenced) or failed is started again. A
    /// newer epoch replaces the running process with the new spec; an older
    /// one is ignored as stale. A program refused by the allowlist is
    /// reported `Failed`. Must be called within a tokio runtime; ignored
    /// after [`shutdown`](Self::shutdown).
    pub fn assign(&self, assignment: Assignment) {
        let shared = &self.handle.shared;
        if shared.closed.load(Ordering::Acquire) {
            warn!(instance = %assignment.instance, "assignment ignored: the supervisor is shutting down");
            return;
        }
        let mut instances = shared.lock();
        if let Some(entry) = instances.get_mut(&assignment.instance) {
            let active = is_active(entry.report.state);
            entry.desired.send_if_modified(|desired| apply_assignment(desired, assignment, active));
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(instances);
            error!(instance = %assignment.instance, "assignment ignored: no tokio runtime to run it on");
            shared.send(InstanceReport {
                instance: assignment.instance.clone(),
                epoch: assignment.epoch,
                state: InstanceState::Failed,
                restarts: 0,
                pid: None,
                last_exit: None,
                message: "the agent could not start it (no async runtime)".into(),
            });
            return;
        };
        let instance = assignment.instance.clone();
        let report = InstanceReport {
            instance: instance.clone(),
            epoch: assignment.epoch,
            state: InstanceState::Starting,
            restarts: 0,
            pid: None,
            last_exit: None,
            message: "assigned".into(),
        };
        let (desired, watcher) = watch::channel(Desired { assignment, goal: Goal::Run, start_seq: 1, restart_seq: 0 });
        instances.insert(instance.clone(), Entry { desired, report });
        drop(instances);
        let actor = actor::Actor::new(Arc::clone(shared), instance, watcher);
        shared.actors.spawn_on(actor.run(), &runtime);
    }

    /// Stops `instance` — SIGTERM to its process group, SIGKILL after the
    /// grace period — reporting `Stopping` then `Stopped` with `reason` as
    /// the message, then forgets it. Unknown instances are ignored.
    pub fn stop(&self, instance: &InstanceId, epoch: u64, reason: &str) {
        let instances = self.handle.shared.lock();
        let Some(entry) = instances.get(instance) else {
            debug!(%instance, "stop of an unknown instance ignored");
            return;
        };
        entry.desired.send_if_modified(|desired| {
            if matches!(desired.goal, Goal::Forget(_)) {
                return false;
            }
            if desired.assignment.epoch > epoch {
                debug!(%instance, epoch, current = desired.assignment.epoch, "stop of an older placement ignored");
                return false;
            }
            desired.goal = Goal::Forget(reason.to_string());
            true
        });
    }

    /// Restarts `instance` in place: stops its process (if running) and
    /// starts it again. It counts as a restart but never toward giving up;
    /// a stopped or failed instance is started afresh. Unknown instances and
    /// instances being stopped for good are ignored.
    pub fn restart(&self, instance: &InstanceId, epoch: u64) {
        let instances = self.handle.shared.lock();
        let Some(entry) = instances.get(instance) else {
            debug!(%instance, "restart of an unknown instance ignored");
            return;
        };
        entry.desired.send_if_modified(|desired| {
            if matches!(desired.goal, Goal::Forget(_)) || desired.assignment.epoch != epoch {
                return false;
            }
            desired.goal = Goal::Run;
            desired.restart_seq += 1;
            true
        });
    }

    /// Every instance the supervisor knows, as last reported.
    pub fn inventory(&self) -> Vec<InstanceReport> {
        self.handle.shared.lock().values().map(|entry| entry.report.clone()).collect()
    }

    /// The pid of every running instance, for per-instance CPU and memory
    /// sampling.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.handle
            .shared
            .lock()
            .iter()
            .filter(|(_, entry)| entry.report.state == InstanceState::Running)
            .filter_map(|(instance, entry)| Some((instance.to_string(), entry.report.pid?)))
            .collect()
    }

    /// Fencing: the console has been silent for `silence`. Every instance
    /// whose task says `on_disconnect = { stop_after = D }` with
    /// `D <= silence` is stopped (reported `Stopped`, message `fenced: no
    /// word from the console for …`). It stays known, so the console can
    /// assign it again. Calling this repeatedly is harmless.
    pub fn console_silent_for(&self, silence: Duration) {
        let message = format!("fenced: no word from the console for {}", seconds(silence));
        let instances = self.handle.shared.lock();
        for entry in instances.values() {
            entry.desired.send_if_modified(|desired| {
                let fence =
                    matches!(desired.assignment.spec.on_disconnect, OnDisconnect::StopAfter(after) if after <= silence);
                if !fence || desired.goal != Goal::Run {
                    return false;
                }
                desired.goal = Goal::Stop(message.clone());
                true
            });
        }
    }

    /// Stops every instance gracefully (SIGTERM, SIGKILL after the grace
    /// period, all at once) and forgets them; waits at most the grace period
    /// plus a short margin, then kills whatever is left. Later assignments
    /// are ignored.
    pub async fn shutdown(&self) {
        let shared = &self.handle.shared;
        shared.closed.store(true, Ordering::Release);
        {
            let instances = shared.lock();
            for entry in instances.values() {
                entry.desired.send_if_modified(|desired| {
                    if matches!(desired.goal, Goal::Forget(_)) {
                        return false;
                    }
                    desired.goal = Goal::Forget("the agent is shutting down".into());
                    true
                });
            }
        }
        shared.actors.close();
        let limit = shared.config.stop_grace.saturating_add(SHUTDOWN_MARGIN);
        if tokio::time::timeout(limit, shared.actors.wait()).await.is_err() {
            warn!("instances did not stop in time; killing what is left");
            shared.kill_all();
        }
    }

    /// Records the node name the console knows this agent by (its welcome
    /// says it), so that a refused program names the node.
    pub fn set_node_name(&self, node: &str) {
        *self.handle.shared.node.lock().unwrap_or_else(PoisonError::into_inner) = Some(node.to_string());
    }

    /// Reports lost because the reports channel was full.
    pub fn dropped_reports(&self) -> u64 {
        self.handle.shared.dropped_reports.load(Ordering::Relaxed)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SupervisorConfig {
        &self.handle.shared.config
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Supervisor")
            .field("data_dir", &self.handle.shared.config.data_dir)
            .field("instances", &self.handle.shared.lock().len())
            .finish_non_exhaustive()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        self.shared.kill_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<InstanceId, Entry>> {
        self.instances.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node name, once the console has said it.
    fn node_name(&self) -> Option<String> {
        self.node.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records `report` as the instance's state and sends it.
    fn publish(&self, report: InstanceReport) {
        if let Some(entry) = self.lock().get_mut(&report.instance) {
            entry.report = report.clone();
        }
        self.send(report);
    }

    /// Sends without waiting: a full channel drops the report (counted).
    fn send(&self, report: InstanceReport) {
        match self.reports.try_send(report) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(report)) => {
                let dropped = self.dropped_reports.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(instance = %report.instance, state = report.state.as_str(), dropped, "reports channel full; report dropped");
            }
            Err(mpsc::error::TrySendError::Closed(report)) => {
                debug!(instance = %report.instance, state = report.state.as_str(), "no one reads reports; report dropped");
            }
        }
    }

    /// SIGKILLs every process group still recorded as alive (best effort).
    fn kill_all(&self) {
        for entry in self.lock().values() {
            if let Some(pid) = entry.report.pid {
                process::signal_group(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Whether an actor is busy with a process: an assignment of the same epoch
/// leaves such an instance alone.
fn is_active(state: InstanceState) -> bool {
    matches!(
        state,
        InstanceState::Starting | InstanceState::Running | InstanceState::Restarting | InstanceState::Stopping
    )
}

/// Applies an assignment to the desired state; `true` if anything changed.
fn apply_assignment(desired: &mut Desired, assignment: Assignment, active: bool) -> bool {
    match assignment.epoch.cmp(&desired.assignment.epoch) {
        std::cmp::Ordering::Less => {
            debug!(
                instance = %assignment.instance,
                stale = assignment.epoch,
                current = desired.assignment.epoch,
                "stale assignment ignored"
            );
            false
        }
        std::cmp::Ordering::Equal if desired.goal == Goal::Run && active => false,
        _ => {
            desired.assignment = assignment;
            desired.goal = Goal::Run;
            desired.start_seq += 1;
            true
        }
    }
}

/// `5s`, or `2.5s`: how long the console has been silent.
fn seconds(value: Duration) -> String {
    if value.subsec_millis() == 0 { format!("{}s", value.as_secs()) } else { format!("{:.1}s", value.as_secs_f64()) }
}

/// Durations in report messages, to the millisecond (`1s 250ms`).
fn rounded(value: Duration) -> String {
    format_duration(Duration::from_millis(u64::try_from(value.as_millis()).unwrap_or(u64::MAX)))
}
