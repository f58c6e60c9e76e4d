//! The copies of small puts bound for one agent, sent together
//! (ARCHITECTURE.md, "The data store"): each put hands its copy to the
//! target's lane, and the lane sends whatever has gathered as one
//! `DataOp::PutSmall` request — one stream, one frame each way and one
//! fdatasync on the agent for many puts — with one batch unanswered at a
//! time. While it is out, the next copies gather, so a busy
//! agent gets larger batches, never a longer queue of streams (group
//! commit, as the change log does it).
//!
//! An agent that stops keeping up holds at most [`MAX_QUEUED_BYTES`] of
//! copies; past that, its copies fail at once, as if it had refused them.
//!
//! A lane holds no task while idle: the first copy into an idle lane
//! starts one, which ends once nothing is queued or in flight. Ten
//! thousand agents' lanes cost a few words each.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use ringwatch_shared::data::ObjectMeta;
use ringwatch_shared::data::wire::{DataOp, DataReply, DataRequest, SMALL_BATCH_BYTES, SMALL_BATCH_COPIES, SmallCopy};
use tokio::sync::oneshot;

use crate::control::data::AgentLink;
use crate::control::data::serve::{open, reply};

/// The most bytes of copies one lane holds queued. An agent that stops
/// keeping up (a stalled disk) costs the console at most this much: further
/// copies for it fail at once, the puts count that replica as failed, and
/// repair makes the copies once it is back.
pub const MAX_QUEUED_BYTES: usize = 32 << 20;

/// What became of one copy: what the agent holds now, or why it did not
/// store it (a sentence naming the node).
pub type CopyOutcome = Result<ObjectMeta, String>;

/// One agent's lane. Cheap to clone: clones share it.
#[derive(Debug, Clone)]
pub struct CopyLane {
    inner: Arc<Lane>,
}

#[derive(Debug)]
struct Lane {
    link: AgentLink,
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    copies: VecDeque<Queued>,
    /// The bytes of the copies queued.
    bytes: usize,
    /// Whether the lane's task runs.
    draining: bool,
}

impl Queue {
    /// Queues `queued` unless the lane already holds [`MAX_QUEUED_BYTES`];
    /// gives it back when it does not fit.
    fn push(&mut self, queued: Queued) -> Result<(), Queued> {
        let len = queued.copy.bytes.len();
        if !self.copies.is_empty() && self.bytes + len > MAX_QUEUED_BYTES {
            return Err(queued);
        }
        self.bytes += len;
        self.copies.push_back(queued);
        Ok(())
    }

    /// The next batch: the oldest copies of one term, within the batch
    /// limits (the first always, however large).
    fn take(&mut self) -> Option<(u64, Vec<Queued>)> {
        let term = self.copies.front()?.term;
        let (mut batch, mut bytes) = (Vec::new(), 0);
        while let Some(next) = self.copies.front() {
            let len = next.copy.bytes.len();
            let full = batch.len() == SMALL_BATCH_COPIES || (!batch.is_empty() && bytes + len > SMALL_BATCH_BYTES);
            if next.term != term || full {
                break;
            }
            bytes += len;
            batch.extend(self.copies.pop_front());
        }
        self.bytes -= bytes;
        Some((term, batch))
    }
}

#[derive(Debug)]
struct Queued {
    term: u64,
    copy: SmallCopy,
    done: oneshot::Sender<CopyOutcome>,
}

impl CopyLane {
    /// The lane to the agent on `link`.
    pub fn new(link: AgentLink) -> Self {
        Self { inner: Arc::new(Lane { link, queue: Mutex::default() }) }
    }

    /// The agent's connection.
    pub fn link(&self) -> &AgentLink {
        &self.inner.link
    }

    /// Queues `copy` (stamped with the console's `term`) for the agent;
    /// resolves once the agent answered for it. Must be called within a
    /// tokio runtime.
    pub fn send(&self, term: u64, copy: SmallCopy) -> impl Future<Output = CopyOutcome> + use<> {
        let (done, outcome) = oneshot::channel();
        let node = self.inner.link.0.clone();
        let queued = {
            let mut queue = self.inner.lock();
            queue.push(Queued { term, copy, done }).map(|()| !std::mem::replace(&mut queue.draining, true))
        };
        match queued {
            Ok(true) => {
                tokio::spawn(drain(self.inner.clone()));
            }
            // The running task takes it with its next batch.
            Ok(false) => {}
            Err(refused) => {
                let why = format!(
                    "\"{node}\" is not keeping up: {MAX_QUEUED_BYTES} bytes of copies already wait for it, so this copy was not sent (repair makes it later)"
                );
                let _ = refused.done.send(Err(why));
            }
        }
        async move { outcome.await.unwrap_or_else(|_| Err(format!("\"{node}\": the console stopped before it answered"))) }
    }
}

impl Lane {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch ([`Queue::take`]).
    fn take(&self) -> Option<(u64, Vec<Queued>)> {
        self.lock().take()
    }

    /// Ends the lane's task if nothing is queued; otherwise it goes on.
    fn stop_if_idle(&self) -> bool {
        let mut queue = self.lock();
        if queue.copies.is_empty() {
            queue.draining = false;
        }
        !queue.draining
    }
}

/// How many times a lane lets the runtime's other tasks run before it
/// takes a batch, while each turn brings it more copies ([`drain`]).
const LINGER_YIELDS: usize = 8;
/// The queue at which a lane stops waiting for more copies.
const LINGER_FULL: usize = 64;

/// The lane's task: sends batches, one at a time, until nothing is
/// queued. One at a time: measured against two (BENCHMARKS.md, "The data
/// store"), a second batch in flight halves the batches — each costing the
/// agent a stream, a wake-up and an fdatasync — more than it gains by
/// overlapping the network with the disk.
///
/// Before it takes a batch, the lane yields to the runtime's other tasks
/// for as long as each turn brings it more copies (at most
/// [`LINGER_YIELDS`] turns, until [`LINGER_FULL`] wait): puts answered
/// together by the owner reach their lanes one task after another, and a
/// lane that took the first alone would send a batch of one and make the
/// others wait for its round trip. Alone, a put waits for one empty turn —
/// no timer, no measurable latency (BENCHMARKS.md, "Small puts, fourth
/// pass": 64-client puts up by a fifth).
async fn drain(lane: Arc<Lane>) {
    loop {
        linger(|| lane.lock().copies.len()).await;
        if let Some((term, batch)) = lane.take() {
            send_batch(&lane.link, term, batch).await;
        } else if lane.stop_if_idle() {
            return;
        }
    }
}

/// Yields to the runtime's other tasks while each turn adds to what
/// `queued` counts ([`drain`]).
async fn linger(queued: impl Fn() -> usize) {
    let mut before = queued();
    for _ in 0..LINGER_YIELDS {
        if before >= LINGER_FULL {
            return;
        }
        tokio::task::yield_now().await;
        let now = queued();
        if now == before {
            return;
        }
        before = now;
    }
}

/// Sends one batch and hands each copy's outcome to whoever waits for it.
async fn send_batch(link: &AgentLink, term: u64, batch: Vec<Queued>) {
    let (copies, dones): (Vec<SmallCopy>, Vec<_>) = batch.into_iter().map(|queued| (queued.copy, queued.done)).unzip();
    let count = copies.len();
    let node = &link.0;
    let answer = async {
        let mut stream = open(link, &DataRequest { term, op: DataOp::PutSmall(copies) }).await?;
        let _ = stream.send.finish();
        reply(&mut stream).await
    }
    .await;
    let outcomes: Vec<CopyOutcome> = match answer {
        Ok(DataReply::HeldEach(outcomes)) if outcomes.len() == count => {
            outcomes.into_iter().map(|outcome| outcome.map_err(|failure| format!("\"{node}\": {failure}"))).collect()
        }
        Ok(DataReply::Failed(failure)) => vec![Err(format!("\"{node}\": {failure}")); count],
        Ok(DataReply::HeldEach(outcomes)) => {
            vec![Err(format!("\"{node}\" answered for {} of a batch of {count} copies", outcomes.len())); count]
        }
        Ok(_) => vec![Err(format!("\"{node}\" answered a batch of {count} copies with another kind of answer")); count],
        Err(why) => vec![Err(why); count],
    };
    for (done, outcome) in dones.into_iter().zip(outcomes) {
        let _ = done.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use ringwatch_shared::data::wire::SMALL_COPY_MAX;
    use ringwatch_shared::data::{ObjectKey, Version};

    use super::*;

    fn queued(term: u64, len: usize) -> Queued {
        let meta = ObjectMeta {
            key: ObjectKey::parse("k").unwrap(),
            version: Version { term, counter: 1 },
            size: len as u64,
            checksum: String::new(),
            tombstone: false,
        };
        Queued { term, copy: SmallCopy { meta, bytes: vec![0; len] }, done: oneshot::channel().0 }
    }

    fn sizes(batch: &[Queued]) -> Vec<usize> {
        batch.iter().map(|queued| queued.copy.bytes.len()).collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lane_lingers_while_tasks_woken_with_it_add_copies_and_not_alone() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let queued = Arc::new(AtomicUsize::new(1));
        // Puts the owner answered together: each adds its copy once it
        // runs, some a turn later than others.
        for turns in [0, 0, 1, 1, 2] {
            let queued = queued.clone();
            tokio::spawn(async move {
                for _ in 0..turns {
                    tokio::task::yield_now().await;
                }
                queued.fetch_add(1, Ordering::SeqCst);
            });
        }
        linger(|| queued.load(Ordering::SeqCst)).await;
        assert_eq!(queued.load(Ordering::SeqCst), 6, "every copy on its way went into the batch");
        // Alone: one empty turn, and the batch goes.
        let looks = AtomicUsize::new(0);
        linger(|| {
            looks.fetch_add(1, Ordering::SeqCst);
            1
        })
        .await;
        assert_eq!(looks.load(Ordering::SeqCst), 2, "looked once before and once after one turn");
        // A full queue goes at once.
        let looks = AtomicUsize::new(0);
        linger(|| {
            looks.fetch_add(1, Ordering::SeqCst);
            LINGER_FULL
        })
        .await;
        assert_eq!(looks.load(Ordering::SeqCst), 1, "a full queue waits for nothing");
    }

    #[test]
    fn a_batch_takes_the_oldest_copies_of_one_term_within_its_limits() {
        let mut queue = Queue::default();
        assert!(queue.take().is_none());
        let largest = usize::try_from(SMALL_COPY_MAX).unwrap();
        let fitting = SMALL_BATCH_BYTES / largest;
        for _ in 0..=fitting {
            queue.push(queued(1, largest)).unwrap();
        }
        queue.push(queued(2, 10)).unwrap();
        queue.push(queued(1, 10)).unwrap();
        let (term, batch) = queue.take().unwrap();
        assert_eq!((term, batch.len()), (1, fitting), "the bytes limit");
        let (term, batch) = queue.take().unwrap();
        assert_eq!((term, sizes(&batch)), (1, vec![largest]), "a term's copies only");
        let (term, batch) = queue.take().unwrap();
        assert_eq!((term, sizes(&batch)), (2, vec![10]));
        let (term, batch) = queue.take().unwrap();
        assert_eq!((term, sizes(&batch)), (1, vec![10]));
        assert!(queue.take().is_none());
        for _ in 0..SMALL_BATCH_COPIES + 3 {
            queue.push(queued(1, 0)).unwrap();
        }
        assert_eq!(queue.take().unwrap().1.len(), SMALL_BATCH_COPIES, "the count limit");
        assert_eq!(queue.take().unwrap().1.len(), 3);
        assert_eq!(queue.bytes, 0);
    }

    #[test]
    fn a_lane_holds_at_most_its_queue_limit_and_takes_a_copy_again_once_it_drains() {
        let mut queue = Queue::default();
        let largest = usize::try_from(SMALL_COPY_MAX).unwrap();
        let fitting = MAX_QUEUED_BYTES / largest;
        for _ in 0..fitting {
            assert!(queue.push(queued(1, largest)).is_ok());
        }
        assert!(queue.push(queued(1, largest)).is_err(), "over the limit");
        assert!(queue.push(queued(1, 0)).is_ok(), "an empty copy still fits");
        let (_, batch) = queue.take().unwrap();
        assert_eq!(queue.bytes, (fitting - batch.len()) * largest);
        assert!(queue.push(queued(1, largest)).is_ok(), "room again once a batch is taken");
        // An empty lane takes any copy, however large.
        let mut empty = Queue::default();
        assert!(empty.push(queued(1, MAX_QUEUED_BYTES + 1)).is_ok());
    }
}
