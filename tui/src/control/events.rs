//! The event log: numbered, time-stamped events, logged as one line each,
//! kept in memory for views, broadcast to watchers and persisted in batches
//! by a writer thread (a slow disk never stalls the control plane).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use ringwatch_shared::status::{ClusterEvent, NodeState};
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use crate::control::lock;
use crate::control::store::Store;

/// Events kept in memory for views.
const RECENT_EVENTS: usize = 2_000;
/// Events waiting to be written before new ones are dropped (and counted).
const PERSIST_QUEUE: usize = 16_384;

/// The log.
#[derive(Debug)]
pub struct EventLog {
    /// The next event's number.
    next_seq: AtomicU64,
    /// The newest events, oldest first.
    recent: Mutex<VecDeque<ClusterEvent>>,
    /// Watchers (the UI) subscribe here.
    notify: broadcast::Sender<ClusterEvent>,
    /// The writer thread's queue; `None` once closed for shutdown.
    persist: Mutex<Option<mpsc::Sender<ClusterEvent>>>,
    /// Events the writer could not keep up with.
    dropped: AtomicU64,
}

impl EventLog {
    /// A log continuing after `last_seq`, persisting into `store` on a
    /// thread of its own; returns the thread to join at shutdown.
    ///
    /// # Errors
    /// When the writer thread cannot be spawned.
    pub fn start(store: Arc<Store>, recent: Vec<ClusterEvent>) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (persist_tx, mut persist_rx) = mpsc::channel::<ClusterEvent>(PERSIST_QUEUE);
        let writer = std::thread::Builder::new().name("event-writer".into()).spawn(move || {
            let mut batch = Vec::new();
            while persist_rx.blocking_recv_many(&mut batch, 512) > 0 {
                if let Err(err) = store.record(&batch) {
                    warn!(%err, lost = batch.len(), "failed to persist events");
                }
                batch.clear();
            }
        })?;
        let next_seq = recent.last().map_or(1, |event| event.seq + 1);
        let log = Self {
            next_seq: AtomicU64::new(next_seq),
            recent: Mutex::new(recent.into_iter().collect()),
            notify: broadcast::channel(1024).0,
            persist: Mutex::new(Some(persist_tx)),
            dropped: AtomicU64::new(0),
        };
        Ok((log, writer))
    }

    /// Records an event.
    pub fn emit(&self, node: Option<&str>, change: Option<(NodeState, NodeState)>, reason: String) {
        let event = ClusterEvent {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX)),
            node: node.map(str::to_string),
            change,
            reason,
        };
        info!(target: "ringwatch::event", "{event}");
        {
            let mut recent = lock(&self.recent);
            if recent.len() >= RECENT_EVENTS {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        if let Some(persist) = lock(&self.persist).as_ref()
            && persist.try_send(event.clone()).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.notify.send(event);
    }

    /// The newest `limit` events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<ClusterEvent> {
        let recent = lock(&self.recent);
        recent.iter().skip(recent.len().saturating_sub(limit)).cloned().collect()
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.notify.subscribe()
    }

    /// Events not persisted because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops accepting events for persistence; the writer thread drains its
    /// queue and ends.
    pub fn close(&self) {
        lock(&self.persist).take();
    }
}
