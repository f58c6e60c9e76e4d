//! The one writer of the change log: a thread that commits the owner's
//! batches in order (a commit waits for the disk, so it never runs on an
//! async worker) and publishes how far the log is durable.
//!
//! The owner keeps at most one batch in flight and gathers everything it
//! decides meanwhile into the next one, so a slow disk makes batches larger,
//! never a queue longer (group commit). A failing commit is retried with
//! capped backoff until it succeeds or the console stops; meanwhile
//! [`Progress::failing`] says why, and nothing waiting on durability takes
//! effect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info};

use super::{Batch, StateStore, StoreError};

/// How far the log is durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every batch up to this sequence number is durable.
    pub durable: u64,
    /// Why the batch in flight could not be written, while it cannot.
    pub failing: Option<String>,
}

/// First retry delay after a failed commit.
const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay.
const RETRY_CAP: Duration = Duration::from_secs(5);

/// The writer thread's handle.
#[derive(Debug)]
pub struct Writer {
    /// Batches to commit; closing it ends the thread once it is idle.
    batches: Option<mpsc::Sender<Batch>>,
    /// Set by [`Writer::finish`]: a failing commit is then given up instead
    /// of retried, so a console can stop with a broken store.
    closing: Arc<AtomicBool>,
    /// The thread.
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer on `store`; `start` is the sequence number already
    /// durable. Returns the handle and the progress watch.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(store: Box<dyn StateStore>, start: u64) -> std::io::Result<(Self, watch::Receiver<Progress>)> {
        let (batches_tx, batches) = mpsc::channel::<Batch>();
        let (progress_tx, progress) = watch::channel(Progress { durable: start, failing: None });
        let closing = Arc::new(AtomicBool::new(false));
        let closed = closing.clone();
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_batches(store, &batches, &progress_tx, &closed))?;
        Ok((Self { batches: Some(batches_tx), closing, thread: Some(thread) }, progress))
    }

    /// Hands `batch` to the writer.
    pub fn submit(&self, batch: Batch) {
        if let Some(batches) = &self.batches
            && batches.send(batch).is_err()
        {
            error!("the state writer has stopped; a batch of changes was not written");
        }
    }

    /// Lets the writer finish what it was given — trying each remaining
    /// batch once more if its store fails —, then waits for it.
    pub fn finish(mut self) {
        self.closing.store(true, Ordering::Release);
        self.batches.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the state writer panicked");
        }
    }
}

fn write_batches(
    mut store: Box<dyn StateStore>,
    batches: &mpsc::Receiver<Batch>,
    progress: &watch::Sender<Progress>,
    closing: &AtomicBool,
) {
    while let Ok(mut batch) = batches.recv() {
        // Whatever queued meanwhile goes into the same commit.
        while let Ok(later) = batches.try_recv() {
            batch.absorb(later);
        }
        let mut delay = RETRY_BASE;
        loop {
            match store.commit(&batch) {
                Ok(()) => {
                    if progress.borrow().failing.is_some() {
                        info!(store = %store.describe(), "the state store accepts writes again");
                    }
                    progress.send_replace(Progress { durable: batch.seq, failing: None });
                    break;
                }
                Err(err @ StoreError::NotLeader { .. }) => {
                    // A leadership that ended never writes again: nothing
                    // of what waits here may take effect.
                    error!(%err, lost = batch.changes.len(), "this console no longer leads; its pending changes are dropped");
                    progress.send_modify(|progress| progress.failing = Some(err.to_string()));
                    return;
                }
                Err(err) if closing.load(Ordering::Acquire) => {
                    error!(%err, lost = batch.changes.len(), "the console stopped before its state could be written");
                    progress.send_modify(|progress| progress.failing = Some(err.to_string()));
                    return;
                }
                Err(err) => {
                    error!(%err, retry_in = ?delay, "failed to write the console's state; retrying");
                    progress.send_modify(|progress| progress.failing = Some(err.to_string()));
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(RETRY_CAP);
                    // A console stopping with a broken disk gives up once
                    // its owner has left: nothing would wait for the result.
                    if progress.is_closed() {
                        error!(lost = batch.changes.len(), "the console stopped before its state could be written");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::control::records::{Change, ClusterRecord};
    use crate::control::store::{Loaded, StoreError};

    /// A store that records commits and can be told to fail.
    #[derive(Clone, Default)]
    struct Recorder {
        commits: Arc<Mutex<Vec<Batch>>>,
        fail: Arc<Mutex<u32>>,
    }

    impl StateStore for Recorder {
        fn load(&mut self, _: usize) -> Result<Loaded, StoreError> {
            Ok(Loaded::default())
        }

        fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(StoreError::Database { path: "test".into(), reason: "disk full".into() });
            }
            self.commits.lock().unwrap().push(batch.clone());
            Ok(())
        }

        fn describe(&self) -> String {
            "test".into()
        }
    }

    fn batch(seq: u64) -> Batch {
        Batch { seq, changes: vec![Change::Cluster(ClusterRecord::new(seq))], events: Vec::new() }
    }

    #[tokio::test]
    async fn batches_become_durable_in_order_and_failures_are_retried() {
        let store = Recorder::default();
        *store.fail.lock().unwrap() = 2;
        let (writer, mut progress) = Writer::start(Box::new(store.clone()), 0).unwrap();
        writer.submit(batch(1));
        writer.submit(batch(2));
        progress.wait_for(|progress| progress.durable == 2).await.unwrap();
        assert!(progress.borrow().failing.is_none());
        writer.finish();
        let commits = store.commits.lock().unwrap();
        let seeds: Vec<u64> = commits
            .iter()
            .flat_map(|batch| batch.changes.iter())
            .map(|change| match change {
                Change::Cluster(record) => record.placement_seed,
                _ => 0,
            })
            .collect();
        assert_eq!(seeds, vec![1, 2], "every change once, in order");
    }
}
