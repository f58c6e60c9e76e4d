//! Carrying out the repair plan (README.md, "Data"): a task beside the
//! owner of a leading console asks it what to repair every
//! [`REPAIR_EVERY`], copies each missing copy from a live holder to its new
//! node through the console (agents keep only outbound connections), sends
//! tombstones to holders of older versions, drops extra copies once enough
//! exist (exactly the version the plan saw: a newer one that arrived
//! meanwhile stays), collects tombstones every holder applied, and tells
//! the owner each step it finished. Copies are throttled to `[data]
//! repair_rate` (default [`REPAIR_BYTES_PER_SEC`]) so repair never starves
//! heartbeats or the cluster's own traffic.

use std::time::Duration;

use quinn::Connection;
use ringwatch_shared::codec::{self, MAX_FRAME_LEN};
use ringwatch_shared::data::repair::RepairStep;
use ringwatch_shared::data::wire::{DataChunk, DataOp, DataReply, DataRequest};
use ringwatch_shared::data::{ObjectKey, ObjectMeta, Version};
use ringwatch_shared::names::NodeName;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::control::data::{DataAnswer, DataInput, Repaired};
use crate::control::owner::{Input, OwnerHandle};

/// How often the plan is asked for.
pub const REPAIR_EVERY: Duration = Duration::from_secs(1);
/// The copy throttle by default: bytes per second across all repairs
/// (`[data] repair_rate`).
pub const REPAIR_BYTES_PER_SEC: u64 = 64 << 20;
/// How long an agent may take to answer a repair step.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs repairs until `stop`, copying at most `rate` bytes per second.
pub async fn run(owner: OwnerHandle, stop: CancellationToken, rate: u64) {
    let mut throttle = Throttle::new(rate.max(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REPAIR_EVERY) => {}
        }
        let Some(DataAnswer::Repair { steps, links, metas, term }) = ask(&owner, DataInput::RepairPlan).await else {
            return;
        };
        let started = Instant::now();
        let mut copied = 0u64;
        for step in steps {
            if stop.is_cancelled() {
                return;
            }
            let outcome = match &step {
                RepairStep::Copy { key, from, to, .. } => match (links.get(from), links.get(to), metas.get(key)) {
                    (Some(source), Some(target), Some(meta)) => {
                        copy(source, target, meta, term, &mut throttle).await.and_then(|bytes| {
                            copied += bytes;
                            Ok(Repaired::Holds { key: key.clone(), version: meta.version, node: node(to)? })
                        })
                    }
                    _ => Err(format!("no connection to \"{from}\" or \"{to}\" now")),
                },
                RepairStep::Tombstone { key, version, to } => match links.get(to) {
                    Some(target) => {
                        let op = DataOp::Remove { key: key.clone(), version: *version };
                        exchange(target, DataRequest { term, op }).await.and_then(|reply| match reply {
                            DataReply::Held(_) => {
                                Ok(Repaired::Holds { key: key.clone(), version: *version, node: node(to)? })
                            }
                            other => Err(format!("\"{to}\" answered {other:?}")),
                        })
                    }
                    None => Err(format!("no connection to \"{to}\" now")),
                },
                RepairStep::Drop { key, node: holder, version } => match links.get(holder) {
                    Some(target) => discard(target, key, *version, term).await.and_then(|()| {
                        Ok(Repaired::Dropped { key: key.clone(), node: node(holder)?, version: *version })
                    }),
                    None => Err(format!("no connection to \"{holder}\" now")),
                },
                // A tombstone every holder applied: the connected holders
                // drop it, then the record goes. A holder out of reach
                // keeps its tombstone until anti-entropy finds that nothing
                // explains it any more.
                RepairStep::Forget { key, version, holders } => {
                    let mut dropped = Ok(());
                    for target in holders.iter().filter_map(|holder| links.get(holder)) {
                        dropped = dropped.and(discard(target, key, *version, term).await);
                    }
                    dropped.map(|()| Repaired::Forgotten { key: key.clone(), version: *version })
                }
            };
            match outcome {
                Ok(done) => {
                    if ask(&owner, DataInput::Repaired(done)).await.is_none() {
                        return;
                    }
                }
                Err(why) => debug!(?step, %why, "a repair step failed; the next plan tries again"),
            }
        }
        let seconds = started.elapsed().as_secs_f64().max(REPAIR_EVERY.as_secs_f64());
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
        let rate = (copied as f64 / seconds) as u64;
        if copied > 0 {
            info!(bytes = copied, rate, "repair copied");
        }
        if ask(&owner, DataInput::RepairRate(rate)).await.is_none() {
            return;
        }
    }
}

/// A node the plan names (always a known, valid name).
fn node(name: &str) -> Result<NodeName, String> {
    NodeName::parse(name).map_err(|err| format!("\"{name}\": {err}"))
}

/// Asks the owner; `None` when it is gone.
pub(crate) async fn ask(owner: &OwnerHandle, request: DataInput) -> Option<DataAnswer> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    owner.inputs.send(Input::Data { request, reply }).await.ok()?;
    answer.await.ok()
}

/// One request, one answer.
pub(crate) async fn exchange(connection: &Connection, request: DataRequest) -> Result<DataReply, String> {
    exchange_within(connection, request, STEP_TIMEOUT).await
}

/// One request, one answer, within `patience`.
pub(crate) async fn exchange_within(
    connection: &Connection,
    request: DataRequest,
    patience: Duration,
) -> Result<DataReply, String> {
    let exchange = async {
        let (mut send, mut recv) = connection.open_bi().await.map_err(|err| err.to_string())?;
        codec::write_frame(&mut send, &request).await.map_err(|err| err.to_string())?;
        let _ = send.finish();
        codec::read_frame::<DataReply, _>(&mut recv, MAX_FRAME_LEN)
            .await
            .map_err(|err| err.to_string())?
            .ok_or_else(|| "the stream ended without an answer".to_string())
    };
    timeout(patience, exchange).await.map_err(|_| "no answer in time".to_string())?
}

/// Asks `target` to discard its copy of `key` at `version`.
async fn discard(target: &Connection, key: &ObjectKey, version: Version, term: u64) -> Result<(), String> {
    match exchange(target, DataRequest { term, op: DataOp::Discard { key: key.clone(), version } }).await? {
        DataReply::Held(held) if held.as_ref().is_none_or(|meta| meta.version != version) => Ok(()),
        other => Err(format!("the discard was answered {other:?}")),
    }
}

/// Copies `meta`'s object from `source` to `target`, chunk by chunk through
/// this console; returns the bytes copied once the target acknowledged a
/// durable, checksummed copy.
async fn copy(
    source: &Connection,
    target: &Connection,
    meta: &ObjectMeta,
    term: u64,
    throttle: &mut Throttle,
) -> Result<u64, String> {
    let (mut get_send, mut get_recv) = source.open_bi().await.map_err(|err| err.to_string())?;
    codec::write_frame(&mut get_send, &DataRequest { term, op: DataOp::Get(meta.key.clone()) })
        .await
        .map_err(|err| err.to_string())?;
    let _ = get_send.finish();
    let first = timeout(STEP_TIMEOUT, codec::read_frame::<DataReply, _>(&mut get_recv, MAX_FRAME_LEN))
        .await
        .map_err(|_| "the source did not answer in time".to_string())?
        .map_err(|err| err.to_string())?;
    match first {
        Some(DataReply::Object(held)) if held.version == meta.version && held.checksum == meta.checksum => {}
        other => return Err(format!("the source does not hold this version: {other:?}")),
    }
    let (mut put_send, mut put_recv) = target.open_bi().await.map_err(|err| err.to_string())?;
    codec::write_frame(&mut put_send, &DataRequest { term, op: DataOp::Put(meta.clone()) })
        .await
        .map_err(|err| err.to_string())?;
    let mut copied = 0u64;
    loop {
        let chunk = timeout(STEP_TIMEOUT, codec::read_frame::<DataChunk, _>(&mut get_recv, MAX_FRAME_LEN))
            .await
            .map_err(|_| "the source stalled".to_string())?
            .map_err(|err| err.to_string())?
            .ok_or_else(|| "the source's stream ended early".to_string())?;
        let end = chunk == DataChunk::End;
        if let DataChunk::Bytes(bytes) = &chunk {
            copied += bytes.len() as u64;
            throttle.take(bytes.len() as u64).await;
        }
        codec::write_frame(&mut put_send, &chunk).await.map_err(|err| err.to_string())?;
        if end {
            break;
        }
    }
    let _ = put_send.finish();
    let answer = timeout(STEP_TIMEOUT, codec::read_frame::<DataReply, _>(&mut put_recv, MAX_FRAME_LEN))
        .await
        .map_err(|_| "the target did not acknowledge in time".to_string())?
        .map_err(|err| err.to_string())?;
    match answer {
        Some(DataReply::Held(Some(held))) if held.version == meta.version => Ok(copied),
        other => Err(format!("the target answered {other:?}")),
    }
}

/// A token bucket over bytes.
struct Throttle {
    rate: u64,
    available: f64,
    last: Instant,
}

impl Throttle {
    fn new(rate: u64) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let available = rate as f64;
        Self { rate, available, last: Instant::now() }
    }

    /// Waits until `bytes` may go.
    async fn take(&mut self, bytes: u64) {
        let wait = self.debit(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `bytes` at `now`: how long to wait before they go. Credit
    /// accrues at `rate` per second, at most one second's worth.
    fn debit(&mut self, bytes: u64, now: Instant) -> Duration {
        #[allow(clippy::cast_precision_loss)]
        let (rate, bytes) = (self.rate as f64, bytes as f64);
        self.available = (self.available + now.saturating_duration_since(self.last).as_secs_f64() * rate).min(rate);
        self.last = now;
        self.available -= bytes;
        if self.available < 0.0 { Duration::from_secs_f64(-self.available / rate) } else { Duration::ZERO }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_holds_copies_to_its_rate_after_a_one_second_burst() {
        let start = Instant::now();
        let mut throttle = Throttle::new(1 << 20);
        throttle.last = start;
        // 5 MiB in 256 KiB chunks at 1 MiB/s, each sent once its wait is
        // over: 1 s of burst, then 4 s.
        let mut now = start;
        for _ in 0..20 {
            now += throttle.debit(256 << 10, now);
        }
        let elapsed = now - start;
        assert!(elapsed >= Duration::from_millis(3_990) && elapsed <= Duration::from_millis(4_010), "{elapsed:?}");
    }
}
