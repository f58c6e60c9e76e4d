//! The terminal UI: ratatui views over [`Snapshot`]s of the console, read
//! through the [`ConsoleHandle`] boundary, with [`Command`]s sent back.
//!
//! The loop is one `tokio::select!` over terminal input, the console's event
//! notifications, a tick and a background ring build. Snapshots are cheap
//! synchronous calls, so the UI never waits on the network: events and ticks
//! mark the state stale (a fresh snapshot at most every [`MIN_SNAPSHOT`]),
//! input marks the screen dirty, and a frame is drawn at most every
//! [`MIN_FRAME`]. Rebuilding the ring for thousands of nodes takes a few
//! hundred milliseconds, so it runs on a blocking thread while the old ring
//! stays on screen.
//!
//! Operator actions are planned before they are done: a key asks for the
//! plan ([`keys::Action::Plan`]), the loop gets it from the console
//! ([`ConsoleHandle::plan`]) into a confirmation dialog, and only a confirmed
//! plan is sent as [`Command::Act`](crate::handle::Command::Act) — see
//! [`perform`].
//!
//! # Layout
//! - [`state`]: the app state built from snapshots (selection, sort,
//!   filter, history, the cached ring, the status line).
//! - [`keys`]: keys and mouse → state changes and [`keys::Action`]s; the
//!   `:` command line's parser.
//! - [`views`]: drawing, which only reads state.
//! - [`ring`]: the ring's geometry and drawing cache.
//! - [`theme`]: colours of node states and widgets.
//! - [`format`](mod@format): compact number formatting.
//!
//! [`Snapshot`]: crate::handle::Snapshot
//! [`Command`]: crate::handle::Command

pub mod format;
pub mod keys;
pub mod ring;
pub mod state;
pub mod theme;
pub mod views;

mod terminal;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::EventStream;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use ringwatch_shared::plan::OperatorAction;

use crate::handle::{Command, CommandError, ConsoleHandle};
use crate::ui::keys::Action;
use crate::ui::ring::RingCache;
use crate::ui::state::{App, MessageKind};
use crate::ui::terminal::TerminalGuard;

/// The shortest time between two frames: bursts of events or keys are
/// coalesced into one redraw.
pub const MIN_FRAME: Duration = Duration::from_millis(16);

/// The shortest time between two snapshots: a burst of events costs one
/// snapshot per this interval, however many events it has.
pub const MIN_SNAPSHOT: Duration = Duration::from_millis(100);

/// How the UI runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiOptions {
    /// Shown at the top left.
    pub title: String,
    /// How often a fresh snapshot is taken and drawn even without events
    /// (metrics and phi change continuously). History keeps one sample a
    /// second whatever this is.
    pub tick: Duration,
}

impl Default for UiOptions {
    fn default() -> Self {
        Self { title: "ringwatch".to_string(), tick: Duration::from_millis(250) }
    }
}

/// What the loop does after [`perform`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Carry on.
    Stay,
    /// Carry on with a fresh snapshot: the console was asked to change.
    Refresh,
    /// Leave the UI.
    Quit,
}

/// What an attached viewer is told when it tries to act.
pub const VIEWER_REFUSAL: &str =
    "refused: this is a viewer credential; it may look at everything and change nothing (ask an admin)";

/// Carries out what an input asked for, against the console: a plan goes
/// into the confirmation dialog (or its refusal into the status line), a
/// command's outcome into the status line. A read-only UI refuses actions
/// itself (what-if only reads).
pub async fn perform(app: &mut App, handle: &dyn ConsoleHandle, action: Action) -> Flow {
    match action {
        Action::None => Flow::Stay,
        Action::Quit => Flow::Quit,
        Action::Plan(action) if app.read_only && !matches!(action, OperatorAction::WhatIf { .. }) => {
            app.command_result(Err(VIEWER_REFUSAL.to_string()));
            Flow::Stay
        }
        Action::Command(Command::Act { .. }) if app.read_only => {
            app.command_result(Err(VIEWER_REFUSAL.to_string()));
            Flow::Stay
        }
        Action::Plan(action) => {
            let plan = handle.plan(&action).await;
            app.show_plan(action, plan);
            Flow::Stay
        }
        Action::Command(command) => {
            let action = match &command {
                Command::Act { action, .. } => Some(action.clone()),
                Command::Demo { .. } => None,
            };
            match (handle.command(command).await, action) {
                (Err(CommandError::PlanChanged(plan)), Some(action)) => app.plan_changed(action, *plan),
                (result, _) => app.command_result(result.map_err(|err| match err {
                    CommandError::Refused(reason) => reason,
                    CommandError::PlanChanged(plan) => format!("the plan changed: {}", plan.action),
                })),
            }
            Flow::Refresh
        }
    }
}

/// Runs the UI on this terminal until the operator quits (`q`, `Ctrl-C`)
/// or input ends. The terminal is restored however it ends, panics
/// included.
///
/// # Errors
/// When stdout is not a terminal, or reading input or drawing fails.
pub async fn run(handle: Arc<dyn ConsoleHandle>, options: UiOptions) -> Result<()> {
    let mut guard = TerminalGuard::enter()?;
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut app = App::new(options.title);
    app.defer_ring_builds();
    app.apply_snapshot(handle.snapshot(), now_ms());
    // At most one ring build at a time, off the async workers.
    let mut ring_job: Option<JoinHandle<RingCache>> = None;

    let mut input = EventStream::new();
    let mut notifications = handle.subscribe();
    let mut listening = true;
    let mut tick = tokio::time::interval(options.tick.max(MIN_FRAME));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // `stale`: the console changed since the last snapshot; `dirty`: the
    // screen no longer shows the state.
    let (mut stale, mut dirty) = (false, true);
    let mut last_snapshot = Instant::now();
    let mut last_frame: Option<Instant> = None;

    loop {
        if stale && last_snapshot.elapsed() >= MIN_SNAPSHOT {
            app.apply_snapshot(handle.snapshot(), now_ms());
            last_snapshot = Instant::now();
            stale = false;
            dirty = true;
        }
        if dirty && last_frame.is_none_or(|at| at.elapsed() >= MIN_FRAME) {
            let mut hits = None;
            guard
                .terminal
                .draw(|frame| hits = Some(views::draw(frame, &app)))
                .context("failed to draw the terminal UI")?;
            if let Some(hits) = hits {
                app.remember(hits);
            }
            dirty = false;
            last_frame = Some(Instant::now());
        }
        if ring_job.is_none()
            && let Some(key) = app.take_ring_request()
        {
            ring_job = Some(tokio::task::spawn_blocking(move || RingCache::build(key)));
        }
        let next_frame = last_frame.map_or_else(Instant::now, |at| at + MIN_FRAME);
        let next_snapshot = last_snapshot + MIN_SNAPSHOT;
        let ring_built = async {
            match ring_job.as_mut() {
                Some(job) => job.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            built = ring_built => {
                ring_job = None;
                match built {
                    Ok(ring) => app.install_ring(ring),
                    Err(err) => app.set_message(format!("failed to build the ring: {err}"), MessageKind::Error),
                }
                dirty = true;
            }
            event = input.next() => match event {
                Some(Ok(event)) => {
                    dirty = true;
                    let action = keys::handle_event(&mut app, &event);
                    match perform(&mut app, handle.as_ref(), action).await {
                        Flow::Stay => {}
                        Flow::Refresh => stale = true,
                        Flow::Quit => break,
                    }
                }
                Some(Err(err)) => return Err(err).context("failed to read terminal input"),
                None => break,
            },
            note = notifications.recv(), if listening => match note {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    // Drain a burst now: one snapshot covers all of it.
                    while notifications.try_recv().is_ok() {}
                    stale = true;
                }
                Err(RecvError::Closed) => listening = false,
            },
            _ = tick.tick() => stale = true,
            () = tokio::time::sleep_until(next_frame.into()), if dirty => {}
            () = tokio::time::sleep_until(next_snapshot.into()), if stale => {}
        }
    }
    drop(guard);
    Ok(())
}
