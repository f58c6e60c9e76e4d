//! Anti-entropy (README.md, "Data"; ARCHITECTURE.md, "The data store"): a
//! task beside the owner of a leading console compares what each agent
//! holds with what the catalog records it holds, and brings the record in
//! line — when a node (re)connects, and on a slow timer for every node.
//!
//! One check of a node: its quota use; then its per-range digests against
//! the digests of the catalog's record of it (kept up to date holder by
//! holder, so this costs a 4 KiB answer and no scan); only for the ranges
//! that differ, the metadata it holds there. The owner reconciles: a copy
//! the node lost stops counting, a copy it has that the record missed (an
//! acknowledgement lost in a crash) or an older one counts for what it is,
//! and a copy nothing explains — a failed put's, a collected tombstone's, a
//! forgotten object's — is discarded here. The repair task then does the
//! rest: stale copies on replicas are updated, extra ones dropped once
//! enough current copies exist elsewhere, never the last one.
//!
//! The same task resolves the puts and removals a previous console left
//! under way (see `records::DataIntent`): a target holding the version
//! makes it recorded, whole; once every target answered without it, it is
//! dropped.

use std::collections::HashMap;
use std::time::Duration;

use quinn::Connection;
use ringwatch_shared::data::digest::Digests;
use ringwatch_shared::data::wire::{DataOp, DataReply, DataRequest};
use ringwatch_shared::names::NodeName;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::control::data::catalog::QuotaUse;
use crate::control::data::repair::{ask, exchange_within};
use crate::control::data::{DataAnswer, DataInput};
use crate::control::owner::OwnerHandle;
use crate::control::records::DataIntent;

/// How often the task looks for nodes to check.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// How often every connected node is checked, even when nothing happened:
/// the slow timer that catches what no event announces (a disk that lost
/// files, a discard that did not arrive).
pub const CHECK_EVERY: Duration = Duration::from_secs(60);
/// How long a node may take to answer one of a check's requests (none of
/// them touches the disk): the checks run one node at a time, so a node
/// that stalls (stopped, overloaded) must not hold up every other's.
const CHECK_ANSWER: Duration = Duration::from_secs(5);

/// Checks that may run back to back before [`Pacer`] spaces them: a few
/// nodes reconnecting are checked at once.
const CHECK_BURST: f64 = 50.0;
/// The slowest pace checks are spaced at, checks a second.
const MIN_CHECK_RATE: f64 = 10.0;

/// Spaces the checks of a large fleet over half of [`CHECK_EVERY`] rather
/// than running them back to back: at 10,000 nodes a pass of one request
/// and answer each, as fast as the round trips allowed, is tens of
/// thousands of datagrams on the console's socket within seconds
/// (BENCHMARKS.md, "The console at scale", where bursts of dropped
/// heartbeats at that size are not yet fully explained). A token bucket:
/// [`CHECK_BURST`] checks at once, then `2 × nodes / CHECK_EVERY` a
/// second, at least [`MIN_CHECK_RATE`].
#[derive(Debug)]
struct Pacer {
    tokens: f64,
    at: Instant,
}

impl Pacer {
    fn new(now: Instant) -> Self {
        Self { tokens: CHECK_BURST, at: now }
    }

    /// How long to wait, from `now`, before the next check of a fleet of
    /// `nodes`; takes the check's token.
    fn next(&mut self, nodes: usize, now: Instant) -> Duration {
        #[allow(clippy::cast_precision_loss)] // a node count, far below 2^52
        let rate = (2.0 * nodes as f64 / CHECK_EVERY.as_secs_f64()).max(MIN_CHECK_RATE);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate).min(CHECK_BURST) - 1.0;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / rate) }
    }
}

/// One request of a check, one answer.
async fn exchange(connection: &Connection, request: DataRequest) -> Result<DataReply, String> {
    exchange_within(connection, request, CHECK_ANSWER).await
}

/// Runs anti-entropy until `stop`.
pub async fn run(owner: OwnerHandle, stop: CancellationToken) {
    // Each node's connection at its last check, and when that was.
    let mut checked: HashMap<NodeName, (usize, Instant)> = HashMap::new();
    let mut pacer = Pacer::new(Instant::now());
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
        let Some(DataAnswer::Peers { peers, inherited, term }) = ask(&owner, DataInput::Peers).await else {
            return;
        };
        let links: HashMap<&NodeName, &Connection> =
            peers.iter().map(|(node, connection)| (node, connection)).collect();
        for intent in inherited {
            if let Some(holding) = resolve(&intent, &links, term).await {
                info!(key = %intent.key, version = %intent.version, holders = holding.len(), "resolved an operation a previous console left under way");
                if ask(&owner, DataInput::Resolved { version: intent.version, holding }).await.is_none() {
                    return;
                }
            }
        }
        let now = Instant::now();
        checked.retain(|node, _| links.contains_key(node));
        for (node, connection) in &peers {
            let due = checked.get(node).is_none_or(|(id, at)| {
                *id != connection.stable_id() || now.saturating_duration_since(*at) >= CHECK_EVERY
            });
            if !due || stop.is_cancelled() {
                continue;
            }
            let wait = pacer.next(peers.len(), Instant::now());
            if !wait.is_zero() {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            match check(&owner, node, connection, term).await {
                Ok(()) => {
                    checked.insert(node.clone(), (connection.stable_id(), Instant::now()));
                }
                Err(Gone) => return,
            }
        }
    }
}

/// The owner went away.
struct Gone;

/// Checks one node; a node that does not answer is checked again next time.
async fn check(owner: &OwnerHandle, node: &NodeName, connection: &Connection, term: u64) -> Result<(), Gone> {
    let request = |op| DataRequest { term, op };
    match exchange(connection, request(DataOp::Usage)).await {
        Ok(DataReply::Usage { used, quota, .. }) => {
            let usage = QuotaUse { used, quota };
            ask(owner, DataInput::Usage { node: node.clone(), usage }).await.ok_or(Gone)?;
        }
        // A node that serves no data (a simulated agent) or cannot say
        // now: nothing more to ask it until its next check.
        other => {
            debug!(%node, ?other, "no quota use from the node; its copies are checked next time");
            return Ok(());
        }
    }
    let Some(DataAnswer::Expected { digests: expected, asked_at }) =
        ask(owner, DataInput::Expected(node.clone())).await
    else {
        return Err(Gone);
    };
    let actual = match exchange(connection, request(DataOp::Digests)).await {
        Ok(DataReply::Digests(leaves)) => Digests::from_leaves(leaves),
        other => {
            debug!(%node, ?other, "no digests from the node; checked again later");
            return Ok(());
        }
    };
    let Some(actual) = actual else {
        debug!(%node, "the node's digests have the wrong shape; checked again later");
        return Ok(());
    };
    let ranges = expected.differing_ranges(&actual);
    if ranges.is_empty() {
        return Ok(());
    }
    let held = match exchange(connection, request(DataOp::List(ranges.clone()))).await {
        Ok(DataReply::Listed(held)) => held,
        other => {
            debug!(%node, ?other, "no listing from the node; checked again later");
            return Ok(());
        }
    };
    let differing = ranges.len();
    let input = DataInput::Reconcile { node: node.clone(), ranges, held, asked_at };
    let Some(DataAnswer::Discards(discards)) = ask(owner, input).await else {
        return Err(Gone);
    };
    info!(%node, ranges = differing, discards = discards.len(), "anti-entropy reconciled a node's copies");
    for (key, version) in discards {
        let op = DataOp::Discard { key: key.clone(), version };
        if let Err(why) = exchange(connection, request(op)).await {
            debug!(%node, %key, %why, "a copy nothing explains was not discarded; next check tries again");
        }
    }
    Ok(())
}

/// Asks the targets of an inherited operation whether they hold its
/// version: `Some(holders)` once it can be resolved — some target holds it,
/// or every target answered without it — `None` to wait. It is never
/// dropped while a target has not answered: if every target had taken the
/// put, they replaced the previous version with it, and dropping it would
/// lose the object.
async fn resolve(intent: &DataIntent, links: &HashMap<&NodeName, &Connection>, term: u64) -> Option<Vec<NodeName>> {
    let mut holding = Vec::new();
    let mut answered = 0;
    for target in &intent.targets {
        let Some(connection) = links.get(target) else { continue };
        let stat = DataRequest { term, op: DataOp::Stat(intent.key.clone()) };
        if let Ok(DataReply::Held(held)) = exchange(connection, stat).await {
            answered += 1;
            if held.is_some_and(|meta| meta.version == intent.version) {
                holding.push(target.clone());
            }
        }
    }
    (!holding.is_empty() || answered == intent.targets.len()).then_some(holding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_fleet_is_checked_at_once() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        for _ in 0..5 {
            assert_eq!(pacer.next(5, start), Duration::ZERO);
        }
    }

    #[test]
    fn a_large_fleets_checks_are_spread_over_half_the_check_period() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        let nodes = 10_000;
        // The burst goes at once; the rest waits its turn.
        let mut at = start;
        let mut checked = 0;
        while checked < nodes {
            at += pacer.next(nodes, at);
            checked += 1;
        }
        let pass = at.saturating_duration_since(start);
        assert!(pass <= CHECK_EVERY / 2, "a pass took {pass:?}");
        assert!(pass >= CHECK_EVERY / 2 - Duration::from_secs(1), "a pass took only {pass:?}");
    }
}
