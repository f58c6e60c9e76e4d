//! The event log: numbered, time-stamped events, owned by the owner task.
//! Each event is logged as one line, kept in memory for views, broadcast to
//! watchers, and handed to the change log, which persists it with the batch
//! it belongs to.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ringwatch_shared::bounds::cap_message;
use ringwatch_shared::status::{ClusterEvent, EventKind, NodeState};
use tokio::sync::broadcast;
use tracing::info;

/// Events kept in memory for views.
pub const RECENT_EVENTS: usize = 2_000;
/// Longest event text kept: sentences of our own, quoting at most a capped
/// agent message and a few names.
const MAX_EVENT_LEN: usize = 1_024;

/// The log.
#[derive(Debug)]
pub struct EventLog {
    /// The next event's number.
    next_seq: u64,
    /// The newest events, oldest first.
    recent: VecDeque<ClusterEvent>,
    /// `recent` as last handed to readers; rebuilt after a new event.
    shared: Option<Arc<[ClusterEvent]>>,
    /// Watchers (the UI, event followers) subscribe here.
    notify: broadcast::Sender<ClusterEvent>,
    /// Events not yet handed to the change log.
    unpersisted: Vec<ClusterEvent>,
}

impl EventLog {
    /// A log continuing after the `recent` events a store kept, announcing
    /// each new event on `notify`.
    pub fn new(recent: Vec<ClusterEvent>, notify: broadcast::Sender<ClusterEvent>) -> Self {
        let next_seq = recent.last().map_or(1, |event| event.seq + 1);
        let skip = recent.len().saturating_sub(RECENT_EVENTS);
        Self {
            next_seq,
            recent: recent.into_iter().skip(skip).collect(),
            shared: None,
            notify,
            unpersisted: Vec::new(),
        }
    }

    /// Records an event of `kind` about `node` and `task` (either may be
    /// `None`); `change` is a node's state change.
    pub fn emit(
        &mut self,
        kind: EventKind,
        node: Option<&str>,
        task: Option<&str>,
        change: Option<(NodeState, NodeState)>,
        reason: &str,
    ) {
        let reason = if reason.len() > MAX_EVENT_LEN { cap_message(reason) } else { reason.to_string() };
        let event = ClusterEvent {
            seq: self.next_seq,
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
            node: node.map(str::to_string),
            change,
            reason,
            kind,
            task: task.map(str::to_string),
        };
        self.next_seq += 1;
        info!(target: "ringwatch::event", "{event}");
        if self.recent.len() >= RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(event.clone());
        self.shared = None;
        self.unpersisted.push(event.clone());
        let _ = self.notify.send(event);
    }

    /// Events to persist with the next batch.
    pub fn take_unpersisted(&mut self) -> Vec<ClusterEvent> {
        std::mem::take(&mut self.unpersisted)
    }

    /// The newest events, oldest first, shared with readers.
    pub fn recent(&mut self) -> Arc<[ClusterEvent]> {
        self.shared.get_or_insert_with(|| self.recent.iter().cloned().collect()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_after_the_stored_ones_and_handed_to_the_store_once() {
        let stored = ClusterEvent { seq: 41, reason: "old".into(), ..ClusterEvent::default() };
        let mut log = EventLog::new(vec![stored], broadcast::channel(4).0);
        log.emit(EventKind::Membership, Some("a"), None, None, "new");
        let recent = log.recent();
        assert_eq!(recent.iter().map(|event| event.seq).collect::<Vec<_>>(), vec![41, 42]);
        assert_eq!(log.take_unpersisted().len(), 1);
        assert!(log.take_unpersisted().is_empty());
    }

    #[test]
    fn a_huge_reason_is_capped() {
        let mut log = EventLog::new(Vec::new(), broadcast::channel(4).0);
        log.emit(EventKind::Console, None, None, None, &"x".repeat(1 << 20));
        assert!(log.recent()[0].reason.len() <= MAX_EVENT_LEN);
    }
}
