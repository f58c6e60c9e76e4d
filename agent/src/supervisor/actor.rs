//! One instance's life, in a task of its own: start the process, wait for
//! it to exit or for a new wish, restart it per its policy, stop it.
//!
//! The actor is the only one to touch the child, so a stop never races a
//! restart. It reads what is wanted from a `watch` channel (the handle's
//! commands coalesce there) and publishes each state change.

use std::io;
use std::process::ExitStatus;
use std::sync::Arc;

use nix::sys::signal::Signal;
use rand::SeedableRng;
use rand::rngs::StdRng;
use ringwatch_shared::names::InstanceId;
use ringwatch_shared::policy::{RestartDecision, RestartTracker};
use ringwatch_shared::protocol::{Assignment, InstanceReport, InstanceState};
use tokio::sync::watch;
use tracing::{info, warn};

use super::process::{self, Spawned};
use super::{Desired, Goal, Shared, rounded};

/// Where the instance's process is.
enum Phase {
    /// Never started yet.
    Fresh,
    /// Running (boxed: the other phases are a few bytes).
    Running(Box<Spawned>),
    /// Exited; it starts again at this instant.
    Restarting(tokio::time::Instant),
    /// Stopped on request (or fenced).
    Stopped,
    /// Gave up, or could not start.
    Failed,
}

/// What woke the actor.
enum Event {
    /// The supervisor was dropped.
    Cancelled,
    /// The desired state changed (`false`: its sender is gone).
    Changed(bool),
    /// The process exited.
    Exited(io::Result<ExitStatus>),
    /// A restart delay ran out.
    RestartDue,
}

/// Runs one instance.
pub(super) struct Actor {
    /// Reports, and the entry to remove when forgotten.
    shared: Arc<Shared>,
    /// `task/index`, the key of the entry.
    instance: InstanceId,
    /// What is wanted of the instance.
    desired: watch::Receiver<Desired>,
    /// The assignment being run (its epoch goes into every report).
    assignment: Assignment,
    /// Restarts and the crash window of the current epoch.
    tracker: RestartTracker,
    /// Jitter for delayed restarts.
    rng: StdRng,
    /// Where the process is.
    phase: Phase,
    /// The last `start_seq` acted on.
    seen_start: u64,
    /// The last `restart_seq` acted on.
    seen_restart: u64,
    /// The last exit, reported until the next one.
    last_exit: Option<String>,
}

impl Actor {
    pub(super) fn new(shared: Arc<Shared>, instance: InstanceId, desired: watch::Receiver<Desired>) -> Self {
        let assignment = desired.borrow().assignment.clone();
        Self {
            shared,
            instance,
            desired,
            assignment,
            tracker: RestartTracker::new(),
            rng: StdRng::from_os_rng(),
            phase: Phase::Fresh,
            seen_start: 0,
            seen_restart: 0,
            last_exit: None,
        }
    }

    /// Reconciles towards the desired state until the instance is forgotten
    /// or the supervisor dropped.
    pub(super) async fn run(mut self) {
        loop {
            let desired = self.desired.borrow_and_update().clone();
            match desired.goal {
                Goal::Forget(reason) => {
                    self.halt(reason).await;
                    if self.try_forget() {
                        return;
                    }
                    continue;
                }
                Goal::Stop(message) => {
                    if !matches!(self.phase, Phase::Stopped | Phase::Failed) {
                        self.halt(message).await;
                    }
                }
                Goal::Run => self.reconcile_run(&desired).await,
            }
            match self.next_event().await {
                Event::Cancelled | Event::Changed(false) => {
                    self.abandon();
                    return;
                }
                Event::Changed(true) => {}
                Event::Exited(status) => self.on_exit(status).await,
                Event::RestartDue => self.start().await,
            }
        }
    }

    async fn reconcile_run(&mut self, desired: &Desired) {
        if desired.start_seq != self.seen_start {
            self.seen_start = desired.start_seq;
            // A start subsumes a restart asked for before it.
            self.seen_restart = desired.restart_seq;
            if desired.assignment.epoch != self.assignment.epoch {
                let message = format!("replaced by epoch {}", desired.assignment.epoch);
                if self.stop_child(&message).await {
                    self.publish(InstanceState::Stopped, None, message);
                }
                self.phase = Phase::Fresh;
                self.assignment = desired.assignment.clone();
                self.tracker = RestartTracker::new();
                self.last_exit = None;
            }
            match self.phase {
                Phase::Running(_) | Phase::Restarting(_) => {}
                Phase::Fresh => self.start().await,
                Phase::Stopped | Phase::Failed => {
                    self.tracker.reset();
                    self.start().await;
                }
            }
        } else if desired.restart_seq != self.seen_restart {
            self.seen_restart = desired.restart_seq;
            self.stop_child("restarting on request").await;
            if matches!(self.phase, Phase::Stopped | Phase::Failed) {
                self.tracker.reset();
            }
            self.tracker.on_manual_restart();
            self.start().await;
        }
    }

    async fn next_event(&mut self) -> Event {
        let restart_at = match self.phase {
            Phase::Restarting(at) => Some(at),
            _ => None,
        };
        let child = async {
            match &mut self.phase {
                Phase::Running(spawned) => spawned.child.wait().await,
                _ => std::future::pending().await,
            }
        };
        let restart_due = async {
            match restart_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.shared.cancel.cancelled() => Event::Cancelled,
            changed = self.desired.changed() => Event::Changed(changed.is_ok()),
            status = child => Event::Exited(status),
            () = restart_due => Event::RestartDue,
        }
    }

    /// Starts the process: `Starting`, then `Running` or `Failed`.
    async fn start(&mut self) {
        self.publish(InstanceState::Starting, None, "starting".into());
        match process::spawn(&self.shared.config, &self.shared.allow, self.shared.node_name(), &self.assignment).await {
            Ok(spawned) => {
                let pid = spawned.pid;
                self.tracker.on_start(std::time::Instant::now());
                self.phase = Phase::Running(Box::new(spawned));
                self.publish(InstanceState::Running, Some(pid), format!("running as pid {pid}"));
            }
            Err(err) => {
                self.phase = Phase::Failed;
                self.publish(InstanceState::Failed, None, err.to_string());
            }
        }
    }

    /// The process exited on its own: restart it after the policy's delay,
    /// or give up.
    async fn on_exit(&mut self, status: io::Result<ExitStatus>) {
        let Phase::Running(mut spawned) = std::mem::replace(&mut self.phase, Phase::Stopped) else {
            return;
        };
        // Whatever the main process left behind in its group goes with it.
        process::signal_group(spawned.pid, Signal::SIGKILL);
        spawned.drain_logs().await;
        let exit = process::describe_exit(&status);
        self.last_exit = Some(exit.clone());
        let policy = &self.assignment.spec.restart;
        match self.tracker.on_exit(std::time::Instant::now(), policy, &mut self.rng) {
            RestartDecision::RestartAfter(delay) => {
                let at = ringwatch_shared::bounds::instant_after(std::time::Instant::now(), delay);
                self.phase = Phase::Restarting(tokio::time::Instant::from_std(at));
                self.publish(InstanceState::Restarting, None, format!("{exit}; restarting in {}", rounded(delay)));
            }
            RestartDecision::GiveUp { restarts_in_window } => {
                let within = rounded(policy.within);
                self.phase = Phase::Failed;
                self.publish(
                    InstanceState::Failed,
                    None,
                    format!("{exit}; gave up after {restarts_in_window} restarts within {within}"),
                );
            }
        }
    }

    /// Stops the process if one runs (reporting `Stopping`); `true` if one
    /// did. The phase becomes `Stopped` then, and stays as it was otherwise.
    async fn stop_child(&mut self, message: &str) -> bool {
        if !matches!(self.phase, Phase::Running(_)) {
            return false;
        }
        let Phase::Running(mut spawned) = std::mem::replace(&mut self.phase, Phase::Stopped) else {
            return false;
        };
        self.publish(InstanceState::Stopping, Some(spawned.pid), message.to_string());
        let status = process::terminate(&mut spawned, self.shared.config.stop_grace).await;
        spawned.drain_logs().await;
        self.last_exit = Some(process::describe_exit(&status));
        true
    }

    /// Stops whatever runs or is scheduled and reports `Stopped`.
    async fn halt(&mut self, message: String) {
        self.stop_child(&message).await;
        self.phase = Phase::Stopped;
        self.publish(InstanceState::Stopped, None, message);
    }

    /// Removes the instance's entry unless a new wish arrived meanwhile.
    /// Wishes change only under the lock, so none can be lost in between.
    fn try_forget(&mut self) -> bool {
        let mut instances = self.shared.lock();
        if self.desired.has_changed().unwrap_or(false) {
            return false;
        }
        instances.remove(&self.instance);
        true
    }

    /// The supervisor is gone: kill the group without waiting (its `Drop`
    /// did too; tokio reaps the process).
    fn abandon(&mut self) {
        if let Phase::Running(spawned) = &mut self.phase {
            process::signal_group(spawned.pid, Signal::SIGKILL);
            let _ = spawned.child.start_kill();
        }
    }

    fn publish(&self, state: InstanceState, pid: Option<u32>, message: String) {
        let report = InstanceReport {
            instance: self.instance.clone(),
            epoch: self.assignment.epoch,
            state,
            restarts: self.tracker.restarts(),
            pid,
            last_exit: self.last_exit.clone(),
            message,
        };
        match state {
            InstanceState::Failed => {
                warn!(instance = %report.instance, epoch = report.epoch, message = %report.message, "instance failed");
            }
            _ => info!(
                instance = %report.instance,
                epoch = report.epoch,
                state = state.as_str(),
                restarts = report.restarts,
                message = %report.message,
                "instance state"
            ),
        }
        self.shared.publish(report);
    }
}
