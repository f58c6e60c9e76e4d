//! Electing one leader among the consoles that share a prefix, the way
//! etcd's own election recipe does: each campaigner puts a key under
//! `leader/` attached to its lease; the key with the lowest create revision
//! leads, and that revision is the leader's term (it grows with every new
//! leadership, since every campaign creates a new key). A campaigner waits
//! for the key just ahead of its own to vanish.
//!
//! From the moment its lease is granted, a campaigner's keeper task renews
//! it every sixth of its TTL and steps down — reports the leadership lost,
//! and stops renewing — once it has gone two thirds of the TTL without a
//! confirmed renewal, while the lease still runs ([`Schedule`]): no other
//! console can lead before the lease expires, so two consoles never lead at
//! once. The writes the leader makes are conditioned on its election key
//! still having the term as its create revision ([`Fence`]), which fails
//! once the lease expired or was revoked, so a leader that did not notice
//! in time still changes nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, SortOrder, SortTarget,
    Txn, TxnOp, WatchOptions, WatchStream,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Etcd, REQUEST_TIMEOUT, reason};
use crate::control::store::StoreError;

/// The election's keys, under the prefix.
const ELECTION: &str = "leader/";

/// The pause before trying again after a failed renewal, or after a failed
/// watch of the election.
const RETRY: Duration = Duration::from_millis(100);

/// How long a standby following the election waits after a failure before
/// it looks again.
const FOLLOW_RETRY: Duration = Duration::from_millis(500);

/// What a console tells the others when it campaigns: who it is and where
/// agents and operators reach it. The value of its election key (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The console's name, for messages.
    pub name: String,
    /// Its address for agents and admin clients (`HOST:PORT`).
    pub address: String,
}

/// Who leads the group, as etcd says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// What the leader said about itself.
    pub info: LeaderInfo,
    /// Its term: the create revision of its election key.
    pub term: u64,
}

/// Why a leadership ended: a sentence for the log and the status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this console stopped leading (term {term}): {reason}")]
pub struct LostLeadership {
    /// The term that ended (0 when it ended before the console won).
    pub term: u64,
    /// Why.
    pub reason: String,
}

/// This console leads. Its lease is renewed in the background until the
/// leadership is lost, resigned ([`Etcd::resign`]), or every clone of this
/// value is dropped (the lease is then revoked, so another console takes
/// over at once).
#[derive(Debug, Clone)]
pub struct Leadership {
    /// Shared by the clones; dropping the last one stops the keeper.
    held: Arc<Held>,
}

/// A leadership's state, shared by the clones of [`Leadership`].
#[derive(Debug)]
struct Held {
    /// What the election key says.
    info: LeaderInfo,
    /// The election key and term, which every write compares.
    fence: Fence,
    /// The lease the election key is attached to.
    lease: i64,
    /// The TTL etcd granted.
    ttl: Duration,
    /// Set by the keeper when the leadership is lost.
    lost: watch::Receiver<Option<LostLeadership>>,
    /// Stops the keeper.
    stop: CancellationToken,
    /// Set by [`Etcd::resign`], which revokes the lease itself.
    resigned: Arc<AtomicBool>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What a write conditioned on the leadership compares: the election key's
/// create revision is still the term. It is not once the key is gone (the
/// lease expired or was revoked, the console resigned), and a new election
/// key is a new revision, so the condition can never hold again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fence {
    /// The full election key.
    key: String,
    /// Its create revision.
    term: i64,
}

impl Fence {
    /// The comparison a conditioned transaction makes.
    pub(super) fn compare(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.term)
    }

    /// The term, as the console counts it.
    pub(super) fn term(&self) -> u64 {
        u64::try_from(self.term).unwrap_or(0)
    }
}

impl Leadership {
    /// The term: a number that grows with every new leadership of the
    /// group. Agents ignore a console of a lower term than they have seen.
    pub fn term(&self) -> u64 {
        self.held.fence.term()
    }

    /// What this console's election key says.
    pub fn info(&self) -> &LeaderInfo {
        &self.held.info
    }

    /// The lease's TTL as etcd granted it.
    pub fn lease_ttl(&self) -> Duration {
        self.held.ttl
    }

    /// The lease's id, for messages and for operators (`etcdctl lease`).
    pub fn lease_id(&self) -> i64 {
        self.held.lease
    }

    /// Why the leadership ended, once it has.
    pub fn lost(&self) -> Option<LostLeadership> {
        self.held.lost.borrow().clone()
    }

    /// The condition of every write made under this leadership.
    pub(super) fn fence(&self) -> Fence {
        self.held.fence.clone()
    }
}

impl Etcd {
    /// Campaigns for the leadership and returns once this console leads.
    /// Its lease (of the configured TTL) is kept alive from the start, while
    /// it waits too; dropping the future gives up (the lease is revoked).
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when etcd fails or cannot be reached, or the
    /// lease could not be kept alive while waiting; the caller campaigns
    /// again (after a pause).
    pub async fn campaign(&self, info: &LeaderInfo) -> Result<Leadership, StoreError> {
        let value = serde_json::to_string(info)
            .map_err(|err| self.error(format!("cannot encode the election value: {err}")))?;
        // The lease runs from when etcd grants it, which is after this.
        let asked = Instant::now();
        let grant = self
            .request("granting a lease", self.client.lease_client().grant(self.options.lease_seconds(), None))
            .await?;
        let lease = grant.id();
        let ttl = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0));
        if ttl.is_zero() {
            return Err(self.error("etcd granted a lease of 0s"));
        }
        let (lost_tx, lost) = watch::channel(None);
        let (fence_tx, fence_rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let resigned = Arc::new(AtomicBool::new(false));
        let keeper = Keeper {
            etcd: self.clone(),
            lease,
            ttl,
            fence: fence_rx,
            lost: lost_tx,
            stop: stop.clone(),
            resigned: resigned.clone(),
        };
        tokio::spawn(keeper.run(asked));
        // Until the leadership exists, giving up (an error, a dropped
        // future) must stop the keeper, which then revokes the lease.
        let stop_guard = stop.drop_guard();

        let key = self.key(&format!("{ELECTION}{lease:016x}"));
        let created = self
            .request(
                "creating the election key",
                self.kv().txn(
                    Txn::new()
                        .when(vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then(vec![TxnOp::put(key.clone(), value, Some(PutOptions::new().with_lease(lease)))]),
                ),
            )
            .await?;
        let term = created.header().map_or(0, etcd_client::ResponseHeader::revision);
        if !created.succeeded() || term <= 0 {
            return Err(self.error(format!("the election key \"{key}\" already existed; campaign again")));
        }
        let fence = Fence { key, term };
        fence_tx.send_replace(Some(fence.clone()));
        let held = Arc::new(Held { info: info.clone(), fence, lease, ttl, lost, stop: stop_guard.disarm(), resigned });
        let leadership = Leadership { held };
        self.wait_for_predecessors(&leadership).await?;
        info!(term = leadership.term(), lease = format!("{lease:x}"), "this console leads the group in etcd");
        Ok(leadership)
    }

    /// Waits until no election key older than this console's is left.
    async fn wait_for_predecessors(&self, leadership: &Leadership) -> Result<(), StoreError> {
        let term = leadership.held.fence.term;
        let mut lost = leadership.held.lost.clone();
        loop {
            if let Some(lost) = leadership.lost() {
                return Err(self.error(format!("campaigning failed: {}", lost.reason)));
            }
            let ahead = self
                .request(
                    "reading the election",
                    self.kv().get(
                        self.key(ELECTION),
                        Some(
                            GetOptions::new()
                                .with_prefix()
                                .with_max_create_revision(term - 1)
                                .with_sort(SortTarget::Create, SortOrder::Descend)
                                .with_limit(1),
                        ),
                    ),
                )
                .await?;
            let Some(predecessor) = ahead.kvs().first() else {
                return Ok(());
            };
            let revision = ahead.header().map_or(0, etcd_client::ResponseHeader::revision);
            let predecessor = predecessor.key().to_vec();
            tokio::select! {
                waited = self.wait_deleted(predecessor, revision + 1) => {
                    if let Err(err) = waited {
                        warn!(%err, "watching the console ahead in the election failed; looking again");
                        sleep(RETRY).await;
                    }
                }
                changed = lost.changed() => {
                    if changed.is_err() {
                        return Err(self.error("campaigning failed: the lease keeper stopped"));
                    }
                }
            }
        }
    }

    /// Waits until `key` is deleted at or after `from`.
    async fn wait_deleted(&self, key: Vec<u8>, from: i64) -> Result<(), StoreError> {
        let mut stream = self
            .request(
                "watching the election",
                self.watcher().watch(key, Some(WatchOptions::new().with_start_revision(from))),
            )
            .await?;
        loop {
            match stream.message().await {
                Ok(Some(response)) if response.canceled() => {
                    return Err(self.error(format!("etcd cancelled a watch: {}", response.cancel_reason())));
                }
                Ok(Some(response)) => {
                    if response.events().iter().any(|event| event.event_type() == EventType::Delete) {
                        return Ok(());
                    }
                }
                Ok(None) => return Err(self.error("etcd ended a watch")),
                Err(err) => return Err(self.error(format!("a watch failed: {}", reason(&err)))),
            }
        }
    }

    /// Resolves when `leadership` is lost: no renewal was confirmed for
    /// two thirds of the lease's TTL (it steps down before the lease can
    /// expire), the lease expired or was revoked, its election key was
    /// deleted, or it was resigned. The lease is renewed in the background
    /// from the campaign on (every sixth of its TTL); this only waits.
    pub async fn hold(&self, leadership: &Leadership) -> LostLeadership {
        let mut lost = leadership.held.lost.clone();
        let outcome = lost.wait_for(Option::is_some).await.ok().and_then(|lost| lost.clone());
        outcome.unwrap_or_else(|| LostLeadership { term: leadership.term(), reason: "its lease keeper stopped".into() })
    }

    /// Gives the leadership up: stops renewing and revokes the lease, which
    /// deletes the election key, so another console takes over at once.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when the lease could not be revoked; it then
    /// expires within its TTL, and the others take over then.
    pub async fn resign(&self, leadership: &Leadership) -> Result<(), StoreError> {
        leadership.held.resigned.store(true, Ordering::Release);
        leadership.held.stop.cancel();
        let revoked = timeout(REQUEST_TIMEOUT, self.client.lease_client().revoke(leadership.held.lease)).await;
        match revoked {
            Ok(Ok(_)) => {}
            // Already gone: expired, or revoked by someone else.
            Ok(Err(etcd_client::Error::GRpcStatus(status))) if status.message().contains("lease not found") => {}
            Ok(Err(err)) => return Err(self.error(format!("revoking the leader's lease failed: {}", reason(&err)))),
            Err(_) => {
                return Err(self.error(format!("revoking the leader's lease got no answer within {REQUEST_TIMEOUT:?}")));
            }
        }
        info!(term = leadership.term(), "this console resigned the leadership");
        Ok(())
    }

    /// Who leads now, if anyone does.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] when etcd cannot be read;
    /// [`StoreError::EtcdData`] when the leader's key does not hold a
    /// [`LeaderInfo`].
    pub async fn leader(&self) -> Result<Option<Leader>, StoreError> {
        Ok(self.leader_at().await?.0)
    }

    /// Who leads, and the revision that answer is as of.
    async fn leader_at(&self) -> Result<(Option<Leader>, i64), StoreError> {
        let response = self
            .request(
                "reading who leads",
                self.kv().get(
                    self.key(ELECTION),
                    Some(
                        GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend).with_limit(1),
                    ),
                ),
            )
            .await?;
        let revision = response.header().map_or(0, etcd_client::ResponseHeader::revision);
        let Some(kv) = response.kvs().first() else {
            return Ok((None, revision));
        };
        let info: LeaderInfo = serde_json::from_slice(kv.value()).map_err(|err| {
            self.data_error(format!(
                "the election key \"{}\" does not hold a console's name and address: {err}",
                String::from_utf8_lossy(kv.key())
            ))
        })?;
        Ok((Some(Leader { info, term: u64::try_from(kv.create_revision()).unwrap_or(0) }), revision))
    }

    /// Who leads, kept current: the receiver changes whenever the
    /// leadership does. A task follows the election until every receiver is
    /// dropped; while etcd cannot be reached, the last answer stays.
    ///
    /// # Errors
    /// [`StoreError`] when the first answer cannot be read.
    pub async fn watch_leader(&self) -> Result<watch::Receiver<Option<Leader>>, StoreError> {
        let (leader, _) = self.leader_at().await?;
        let (tx, rx) = watch::channel(leader);
        let etcd = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    err = etcd.follow_leader(&tx) => {
                        warn!(%err, "following who leads the group failed; looking again");
                    }
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = sleep(FOLLOW_RETRY) => {}
                }
            }
        });
        Ok(rx)
    }

    /// Reads who leads, publishes it, waits for a change of the election,
    /// and again, until something fails.
    async fn follow_leader(&self, tx: &watch::Sender<Option<Leader>>) -> StoreError {
        loop {
            let (leader, revision) = match self.leader_at().await {
                Ok(answer) => answer,
                Err(err) => return err,
            };
            tx.send_if_modified(|current| {
                let changed = *current != leader;
                *current = leader;
                changed
            });
            let watched = self
                .request(
                    "watching the election",
                    self.watcher().watch(
                        self.key(ELECTION),
                        Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1)),
                    ),
                )
                .await;
            let mut stream = match watched {
                Ok(stream) => stream,
                Err(err) => return err,
            };
            loop {
                match stream.message().await {
                    Ok(Some(response)) if response.canceled() => {
                        return self.error(format!("etcd cancelled a watch: {}", response.cancel_reason()));
                    }
                    Ok(Some(response)) if response.events().is_empty() => {}
                    Ok(Some(_)) => break,
                    Ok(None) => return self.error("etcd ended a watch"),
                    Err(err) => return self.error(format!("a watch failed: {}", reason(&err))),
                }
            }
        }
    }
}

/// Renews a lease in the background and says when the leadership is lost.
struct Keeper {
    /// The connection.
    etcd: Etcd,
    /// The lease.
    lease: i64,
    /// Its TTL, as granted.
    ttl: Duration,
    /// The election key and term, once the key exists.
    fence: watch::Receiver<Option<Fence>>,
    /// Where the loss is reported.
    lost: watch::Sender<Option<LostLeadership>>,
    /// Set when the leadership is resigned or dropped.
    stop: CancellationToken,
    /// Whether [`Etcd::resign`] revokes the lease (else the keeper does).
    resigned: Arc<AtomicBool>,
}

/// When a keeper renews its lease and when it gives the leadership up, in
/// the proportions of Kubernetes' leader election (a 15 s lease, a 10 s
/// renew deadline, a try every 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    /// From one confirmed renewal (counted from when it was sent) to the
    /// next request.
    renew_every: Duration,
    /// From the last confirmed renewal to stepping down: before the lease
    /// can expire, with a third of it to spare for a stall between a
    /// check and an act, or a clock that runs slow. Writes are fenced
    /// besides, so the margin is for what the console believes and shows,
    /// not for the store's safety.
    step_down_after: Duration,
}

impl Schedule {
    fn for_ttl(ttl: Duration) -> Self {
        Self { renew_every: ttl / 6, step_down_after: ttl * 2 / 3 }
    }

    /// How long etcd may take to answer a renewal sent on time without
    /// costing the leadership: a second of a 2 s lease. (Half a TTL for the
    /// check, a renewal every third, left a third of a second: an etcd
    /// that fsyncs on a busy disk stalls longer, and every stall cost a
    /// takeover and every agent's reconnection.)
    fn tolerated_stall(self) -> Duration {
        self.step_down_after - self.renew_every
    }
}

/// What the watch of this console's election key saw.
enum KeyEvent {
    /// The key was deleted.
    Deleted,
    /// The key changed (a put) or nothing did; the revision to resume from.
    Seen(Option<i64>),
    /// The history the watch started from was compacted: look again.
    Compacted,
    /// The watch broke (etcd restarted, the connection failed).
    Broken,
}

impl Keeper {
    /// Keeps the lease until the leadership is lost or stopped, reports the
    /// end, and revokes the lease unless a resignation does.
    async fn run(self, granted: Instant) {
        let outcome = self.keep(granted).await;
        let term = self.fence.borrow().as_ref().map_or(0, Fence::term);
        let reason = match outcome {
            Some(reason) => {
                warn!(term, %reason, "this console steps down");
                // A campaigner (term 0) losing its lease led nothing.
                if term != 0 {
                    self.etcd.tallies.step_downs.inc();
                }
                reason
            }
            None => "it resigned, or gave the leadership up".to_string(),
        };
        self.lost.send_replace(Some(LostLeadership { term, reason }));
        if !self.resigned.load(Ordering::Acquire) {
            // Best effort: the others take over now rather than when the
            // lease expires. A console that lost etcd cannot revoke it.
            let revoked = timeout(REQUEST_TIMEOUT, self.etcd.client.lease_client().revoke(self.lease)).await;
            if let Ok(Ok(_)) = revoked {
                info!(term, "revoked the lease of the ended leadership");
            }
        }
    }

    /// Renews until stopped (`None`) or lost (`Some(why)`).
    async fn keep(&self, granted: Instant) -> Option<String> {
        let schedule = Schedule::for_ttl(self.ttl);
        let Schedule { renew_every, step_down_after } = schedule;
        // Answers slower than this are worth an operator's attention: half
        // of what would cost the leadership. Said once per slow spell.
        let slow_answer = schedule.tolerated_stall() / 2;
        let mut slow_spell = false;
        let mut confirmed = granted;
        let mut next = granted + renew_every;
        let mut renewal: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
        let mut key_watch: Option<WatchStream> = None;
        // The revision the key's watch resumes from; 0: read the key first.
        let mut watch_from = 0;
        let mut failure: Option<String> = None;
        loop {
            let deadline = confirmed + step_down_after;
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = sleep_until(next.min(deadline)) => {}
                event = next_key_event(&mut key_watch) => {
                    match event {
                        KeyEvent::Deleted => return Some(self.key_gone()),
                        KeyEvent::Seen(revision) => {
                            if let Some(revision) = revision {
                                watch_from = revision + 1;
                            }
                        }
                        KeyEvent::Compacted => {
                            key_watch = None;
                            watch_from = 0;
                        }
                        KeyEvent::Broken => key_watch = None,
                    }
                    continue;
                }
            }
            let started = Instant::now();
            if started >= deadline {
                return Some(self.unrenewed(started - confirmed, failure.as_deref()));
            }
            match timeout_at(deadline, self.renew(&mut renewal)).await {
                Err(_) => {
                    return Some(self.unrenewed(Instant::now() - confirmed, failure.as_deref().or(Some("no answer"))));
                }
                Ok(Ok(true)) => {
                    let took = started.elapsed();
                    self.etcd.tallies.renewal_seconds.observe(took.as_secs_f64());
                    let slow = took > slow_answer;
                    if slow && !slow_spell {
                        warn!(
                            took = format!("{took:.1?}"),
                            "etcd is slow to confirm this console's lease renewals; one {:.1?} late costs the \
                             leadership (is etcd's disk busy?)",
                            schedule.tolerated_stall()
                        );
                    }
                    slow_spell = slow;
                    confirmed = started;
                    next = started + renew_every;
                    failure = None;
                }
                Ok(Ok(false)) => return Some("its etcd lease expired or was revoked".into()),
                Ok(Err(err)) => {
                    if failure.is_none() {
                        warn!(err, "renewing the leader's lease failed; trying again until it would be unsafe");
                    }
                    renewal = None;
                    failure = Some(err);
                    next = Instant::now() + RETRY;
                    continue;
                }
            }
            let fence = self.fence.borrow().clone();
            if key_watch.is_none()
                && let Some(fence) = fence
            {
                match timeout_at(deadline, self.watch_key(&fence, &mut watch_from)).await {
                    Ok(Ok(Some(stream))) => key_watch = Some(stream),
                    Ok(Ok(None)) => return Some(self.key_gone()),
                    // Tried again after the next renewal.
                    Ok(Err(_)) | Err(_) => {}
                }
            }
        }
    }

    /// Renews the lease once: `Ok(true)` when etcd confirmed it,
    /// `Ok(false)` when the lease is gone, `Err` when the request failed.
    async fn renew(&self, renewal: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>) -> Result<bool, String> {
        if let Some((keeper, stream)) = renewal {
            keeper.keep_alive().await.map_err(|err| reason(&err))?;
            return match stream.message().await {
                Ok(Some(response)) => Ok(response.ttl() > 0),
                Ok(None) => Err("etcd closed the renewal stream".into()),
                Err(err) => Err(reason(&err)),
            };
        }
        // Opening the stream renews once and checks the answer.
        match self.etcd.client.lease_client().keep_alive(self.lease).await {
            Ok(opened) => {
                *renewal = Some(opened);
                Ok(true)
            }
            Err(etcd_client::Error::LeaseKeepAliveError(message)) if message.contains("not found") => Ok(false),
            Err(err) => Err(reason(&err)),
        }
    }

    /// Watches the election key from `watch_from` (after checking it still
    /// exists with its term when `watch_from` is 0). `Ok(None)`: the key
    /// is gone.
    async fn watch_key(&self, fence: &Fence, watch_from: &mut i64) -> Result<Option<WatchStream>, StoreError> {
        if *watch_from == 0 {
            let current =
                self.etcd.request("reading the election key", self.etcd.kv().get(fence.key.as_str(), None)).await?;
            if current.kvs().first().is_none_or(|kv| kv.create_revision() != fence.term) {
                return Ok(None);
            }
            *watch_from = current.header().map_or(0, etcd_client::ResponseHeader::revision) + 1;
        }
        let stream = self
            .etcd
            .request(
                "watching the election key",
                self.etcd
                    .watcher()
                    .watch(fence.key.as_str(), Some(WatchOptions::new().with_start_revision(*watch_from))),
            )
            .await?;
        Ok(Some(stream))
    }

    fn key_gone(&self) -> String {
        let key = self.fence.borrow().as_ref().map(|fence| fence.key.clone()).unwrap_or_default();
        format!("its election key \"{key}\" was deleted")
    }

    fn unrenewed(&self, since: Duration, failure: Option<&str>) -> String {
        format!(
            "etcd has not confirmed a renewal of its lease for {since:.1?}{}; it steps down before the lease ({:?}) can expire, so that no other console leads beside it",
            failure.map(|failure| format!(" ({failure})")).unwrap_or_default(),
            self.ttl
        )
    }
}

/// The next thing the election key's watch says; pending forever without
/// a watch.
async fn next_key_event(watch: &mut Option<WatchStream>) -> KeyEvent {
    let Some(stream) = watch else {
        return std::future::pending().await;
    };
    match stream.message().await {
        Ok(Some(response)) if response.canceled() => {
            if response.compact_revision() > 0 {
                KeyEvent::Compacted
            } else {
                KeyEvent::Broken
            }
        }
        Ok(Some(response)) => {
            if response.events().iter().any(|event| event.event_type() == EventType::Delete) {
                KeyEvent::Deleted
            } else {
                KeyEvent::Seen(
                    response.events().iter().filter_map(|event| event.kv()).map(|kv| kv.mod_revision()).max(),
                )
            }
        }
        Ok(None) | Err(_) => KeyEvent::Broken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keeper_steps_down_before_the_lease_can_expire_with_a_third_to_spare() {
        for ttl in [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(15), Duration::from_secs(60)] {
            let schedule = Schedule::for_ttl(ttl);
            assert!(schedule.step_down_after < ttl, "{ttl:?}: {schedule:?}");
            assert!(ttl - schedule.step_down_after >= ttl / 3, "{ttl:?}: {schedule:?}");
        }
    }

    #[test]
    fn regression_an_etcd_stall_of_a_third_of_a_second_deposed_the_leader() {
        // With the default 2 s lease the keeper renewed every 667 ms and
        // stepped down at 1 s: an answer 340 ms late cost the leadership,
        // as under the test suite's own disk load it did.
        let schedule = Schedule::for_ttl(Duration::from_secs(2));
        assert!(schedule.tolerated_stall() >= Duration::from_secs(1), "{schedule:?}");
        // A renewal that fails outright is tried again before it gives up.
        assert!(schedule.renew_every * 3 <= schedule.step_down_after, "{schedule:?}");
    }
}
