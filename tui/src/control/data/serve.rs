//! Moving an object's bytes (README.md, "Data"): a client's admin stream on
//! one side, streams the console opens on its agents' connections on the
//! other. The owner plans and records; these handlers stream, chunk by
//! chunk, so no object is ever whole in the console's memory.
//!
//! - put: the owner hands out a version and the target nodes; every chunk
//!   the client sends goes to every target (a small object's bytes, read
//!   whole first, go through each target's copy lane, batched with other
//!   small puts' copies: `control::data::lane`); each target acknowledges once
//!   its copy is durable and its SHA-256 is the client's; with enough
//!   acknowledgements for the consistency the owner records the object (and
//!   only then does anyone see it), and the client is answered. With some
//!   but too few, it is recorded on those (they replaced what they held)
//!   and the client told it fell short; with none, the targets discard
//!   that version and the put leaves nothing.
//! - get: the holders of the current version the consistency needs confirm
//!   they hold it — the first by answering a get, whose bytes then go to
//!   the client once enough confirmed; else the bytes come from the next
//!   confirmed holder.
//! - rm: a tombstone at a new version goes to every reachable holder; with
//!   enough acknowledgements it is recorded.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{BoxFuture, join_all};
use futures_util::stream::FuturesUnordered;
use quinn::{RecvStream, SendStream};
use ringwatch_shared::codec::{self, MAX_FRAME_LEN};
use ringwatch_shared::data::wire::{DataChunk, DataFailure, DataOp, DataReply, DataRequest, SMALL_COPY_MAX, SmallCopy};
use ringwatch_shared::data::{Consistency, DataError, ObjectKey, ObjectMeta, ObjectStat, ReplicaStat, Version};
use ringwatch_shared::names::NodeName;
use ringwatch_shared::protocol::{AdminResponse, DataPut};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tracing::debug;

use crate::control::data::lane::CopyLane;
use crate::control::data::{AgentLink, DataAnswer, DataInput, Repaired};
use crate::control::owner::{Input, OwnerHandle};
use crate::control::records::StoredObject;

/// The largest object.
pub const MAX_OBJECT_SIZE: u64 = 1 << 30;
/// How long a put that has the acknowledgements its consistency needs
/// waits for the other targets' before it is recorded and answered (and a
/// read that has its confirmations, for the other holders').
const ACK_GRACE: Duration = Duration::from_millis(100);
/// How many times a read plans again when holders already hold a newer
/// version than the one recorded (a put being recorded).
const READ_ATTEMPTS: usize = 3;
/// The wait before planning again, times the attempt: about one commit of
/// the change log.
const NEWER_BACKOFF: Duration = Duration::from_millis(20);
/// How long an agent may take to open a stream or answer after the last
/// byte (an fsync of a large copy included).
const AGENT_ANSWER: Duration = Duration::from_secs(30);

/// Asks the owner.
async fn ask(owner: &OwnerHandle, request: DataInput) -> DataAnswer {
    let (reply, answer) = oneshot::channel();
    if owner.inputs.send(Input::Data { request, reply }).await.is_err() {
        return DataAnswer::Failed(DataError::Refused("the console is shutting down".into()));
    }
    answer.await.unwrap_or_else(|_| DataAnswer::Failed(DataError::Refused("the console is shutting down".into())))
}

/// A stream to one agent for one request.
pub(super) struct AgentStream {
    pub(super) node: NodeName,
    pub(super) send: SendStream,
    pub(super) recv: RecvStream,
}

/// Opens a stream on `link` and sends `request` on it.
pub(super) async fn open(link: &AgentLink, request: &DataRequest) -> Result<AgentStream, String> {
    let (node, connection) = link;
    let (mut send, recv) = timeout(AGENT_ANSWER, connection.open_bi())
        .await
        .map_err(|_| format!("\"{node}\" did not open a stream in time"))?
        .map_err(|err| format!("\"{node}\": {err}"))?;
    codec::write_frame(&mut send, request).await.map_err(|err| format!("\"{node}\": {err}"))?;
    Ok(AgentStream { node: node.clone(), send, recv })
}

/// Reads an agent's answer.
pub(super) async fn reply(stream: &mut AgentStream) -> Result<DataReply, String> {
    let node = &stream.node;
    timeout(AGENT_ANSWER, codec::read_frame::<DataReply, _>(&mut stream.recv, MAX_FRAME_LEN))
        .await
        .map_err(|_| format!("\"{node}\" did not answer in time"))?
        .map_err(|err| format!("\"{node}\": {err}"))?
        .ok_or_else(|| format!("\"{node}\" closed the stream without answering"))
}

/// What a holder said when a read asked whether it holds the current
/// version.
enum Confirmation {
    /// It does.
    Holds,
    /// It answered, without it.
    Lacks,
    /// It holds a newer version.
    Newer,
    /// It did not answer.
    Unreachable,
}

/// The targets' acknowledgements of a put, each the node or why not, as
/// they come.
type Acknowledgements = FuturesUnordered<BoxFuture<'static, Result<NodeName, String>>>;

/// `ringwatch data put`: the client's bytes to every target — a small
/// object's read whole first and sent through the targets' copy lanes
/// (`control::data::lane`), a larger one's streamed chunk by chunk.
pub(crate) async fn put(owner: &OwnerHandle, put: DataPut, client: &mut RecvStream) -> AdminResponse {
    if put.size > MAX_OBJECT_SIZE {
        return failed(DataError::Refused(format!("objects are at most 1 GiB; this one is {} bytes", put.size)));
    }
    // Read before a version is handed out: a client that never sends its
    // bytes holds nothing up.
    let small = if put.size <= SMALL_COPY_MAX {
        match read_small(client, put.size).await {
            Ok(bytes) => Some(bytes),
            Err(err) => return failed(err),
        }
    } else {
        None
    };
    let plan = DataInput::PlanPut {
        key: put.key.clone(),
        replicas: put.replicas,
        consistency: put.consistency,
        size: put.size,
        checksum: put.checksum.clone(),
    };
    let (plan, lanes, term) = match ask(owner, plan).await {
        DataAnswer::Put { plan, lanes, term } => (plan, lanes, term),
        DataAnswer::Failed(err) => return failed(err),
        other => return failed(DataError::Refused(format!("unexpected answer {other:?}"))),
    };
    let meta = ObjectMeta {
        key: put.key.clone(),
        version: plan.version,
        size: put.size,
        checksum: put.checksum.clone(),
        tombstone: false,
    };
    let links: Vec<AgentLink> = lanes.iter().map(|lane| lane.link().clone()).collect();
    let delivered = match small {
        Some(bytes) => Ok((send_small(&lanes, term, &meta, bytes), Vec::new())),
        None => stream_large(put.size, &links, term, meta, client).await,
    };
    let (key, version) = (put.key.clone(), plan.version);
    let settled = match delivered {
        Ok((answers, failures)) => settle(owner, put, plan, answers, failures).await,
        Err(err) => Err(err),
    };
    match settled {
        Ok(response) => response,
        Err(err) => {
            // Nothing was acknowledged: a target that took it regardless
            // (its answer lost) discards it, so it never turns up later
            // as a copy nobody wrote.
            abandon(owner, &key, version, &links, term).await;
            failed(err)
        }
    }
}

/// Reads a small put's bytes whole from the client: exactly `size` of
/// them, then the end.
async fn read_small(client: &mut RecvStream, size: u64) -> Result<Vec<u8>, DataError> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    loop {
        match codec::read_frame::<DataChunk, _>(client, MAX_FRAME_LEN).await {
            Ok(Some(DataChunk::Bytes(chunk))) => {
                if bytes.len() as u64 + chunk.len() as u64 > size {
                    return Err(DataError::Refused(format!("more than the {size} bytes announced arrived")));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(Some(DataChunk::End)) if bytes.len() as u64 == size => return Ok(bytes),
            Ok(Some(DataChunk::End)) => {
                return Err(DataError::Refused(format!("{} bytes arrived, {size} were announced", bytes.len())));
            }
            Ok(None) => return Err(DataError::Refused("the upload ended before its last byte".into())),
            Err(err) => return Err(DataError::Refused(format!("the upload broke off: {err}"))),
        }
    }
}

/// Hands a small put's copy to each target's lane.
fn send_small(lanes: &[CopyLane], term: u64, meta: &ObjectMeta, bytes: Vec<u8>) -> Acknowledgements {
    let version = meta.version;
    lanes
        .iter()
        .map(|lane| {
            let node = lane.link().0.clone();
            let outcome = lane.send(term, SmallCopy { meta: meta.clone(), bytes: bytes.clone() });
            let acknowledged: BoxFuture<'static, Result<NodeName, String>> = Box::pin(async move {
                match outcome.await? {
                    held if held.version == version => Ok(node),
                    held => Err(format!("\"{node}\" holds version {} instead", held.version)),
                }
            });
            acknowledged
        })
        .collect()
}

/// Streams the client's bytes to the put's targets, chunk by chunk: the
/// targets' acknowledgements to come, and the targets lost on the way.
async fn stream_large(
    size: u64,
    links: &[AgentLink],
    term: u64,
    meta: ObjectMeta,
    client: &mut RecvStream,
) -> Result<(Acknowledgements, Vec<String>), DataError> {
    let version = meta.version;
    let request = DataRequest { term, op: DataOp::Put(meta) };
    let mut failures: Vec<String> = Vec::new();
    let mut streams = Vec::new();
    for opened in join_all(links.iter().map(|link| open(link, &request))).await {
        match opened {
            Ok(stream) => streams.push(stream),
            Err(why) => failures.push(why),
        }
    }
    // Every chunk to every target that is still with us.
    let mut received = 0u64;
    loop {
        let chunk = match codec::read_frame::<DataChunk, _>(client, MAX_FRAME_LEN).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Err(DataError::Refused("the upload ended before its last byte".into())),
            Err(err) => return Err(DataError::Refused(format!("the upload broke off: {err}"))),
        };
        let DataChunk::Bytes(bytes) = chunk else { break };
        received += bytes.len() as u64;
        if received > size {
            return Err(DataError::Refused(format!("more than the {size} bytes announced arrived")));
        }
        let frame = match codec::encode_frame(&DataChunk::Bytes(bytes)) {
            Ok(frame) => frame,
            Err(err) => return Err(DataError::Refused(format!("a chunk could not be encoded: {err}"))),
        };
        let written = join_all(streams.iter_mut().map(|stream| stream.send.write_all(&frame))).await;
        let mut kept = Vec::with_capacity(streams.len());
        for (stream, result) in streams.into_iter().zip(written) {
            match result {
                Ok(()) => kept.push(stream),
                Err(err) => failures.push(format!("\"{}\": {err}", stream.node)),
            }
        }
        streams = kept;
    }
    if received != size {
        return Err(DataError::Refused(format!("{received} bytes arrived, {size} were announced")));
    }
    let end = codec::encode_frame(&DataChunk::End).unwrap_or_default();
    let answers = streams
        .into_iter()
        .map(|stream| {
            let acknowledged: BoxFuture<'static, Result<NodeName, String>> =
                Box::pin(acknowledgement(stream, end.clone(), version));
            acknowledged
        })
        .collect();
    Ok((answers, failures))
}

/// Takes the targets' acknowledgements (see `take_answers`) and records
/// the put once enough are in, then answers; the acknowledgements still
/// out are awaited in the background and recorded as they come. An error
/// when none acknowledged: the caller abandons the put.
async fn settle(
    owner: &OwnerHandle,
    put: DataPut,
    plan: crate::control::data::catalog::PutPlan,
    mut answers: Acknowledgements,
    mut failures: Vec<String>,
) -> Result<AdminResponse, DataError> {
    let version = plan.version;
    let mut acked = Vec::new();
    take_answers(&mut answers, |answer| {
        match answer {
            Ok(node) => acked.push(node),
            Err(why) => failures.push(why),
        }
        acked.len() >= plan.required
    })
    .await;
    let why = if failures.is_empty() { "no other node could take it".into() } else { failures.join("; ") };
    if acked.is_empty() {
        let err = DataError::NotEnough(format!(
            "\"{}\" was acknowledged by none of the {} replica(s) a {} put needs, so it was not stored (nothing is visible); {why}",
            put.key,
            plan.required,
            put.consistency.as_str(),
        ));
        return Err(err);
    }
    // Too few acknowledgements, but some: those replicas replaced the
    // version they held with this one, durably. Rolling it back would
    // leave the previous version on fewer copies than it was acknowledged
    // with; so the put is recorded on them — a later put still wins — and
    // repaired to its replica count, and the client is told it did not
    // meet its consistency (README.md, "Data").
    let shortfall = (acked.len() < plan.required).then(|| {
        debug!(key = %put.key, ?failures, "a put did not meet its consistency");
        DataError::NotEnough(format!(
            "\"{}\" was acknowledged by {} of the {} replica(s) a {} put needs ({}): it did not meet its consistency, but it is stored on those and will be copied to its other replicas; {why}",
            put.key,
            acked.len(),
            plan.required,
            put.consistency.as_str(),
            acked.iter().map(|node| format!("\"{node}\"")).collect::<Vec<_>>().join(", "),
        ))
    });
    let object = StoredObject {
        key: put.key,
        version: plan.version,
        size: put.size,
        checksum: put.checksum,
        replicas: plan.replicas,
        tombstone: false,
        holders: acked.into_iter().map(|node| (node, plan.version)).collect(),
    };
    let key = object.key.clone();
    let answer = ask(owner, DataInput::Stored(object)).await;
    if !answers.is_empty() {
        let owner = owner.clone();
        tokio::spawn(async move {
            while let Some(answer) = answers.next().await {
                if let Ok(node) = answer {
                    let late = Repaired::Holds { key: key.clone(), version, node };
                    let _ = ask(&owner, DataInput::Repaired(late)).await;
                }
            }
        });
    }
    Ok(match (answer, shortfall) {
        (DataAnswer::Stat(_), Some(shortfall)) => failed(shortfall),
        (DataAnswer::Stat(stat), None) => AdminResponse::DataStored(stat),
        (DataAnswer::Failed(err), _) => failed(err),
        (other, _) => failed(DataError::Refused(format!("unexpected answer {other:?}"))),
    })
}

/// Sends the end of a put's bytes on `stream` and reads the target's
/// acknowledgement of `version`.
async fn acknowledgement(mut stream: AgentStream, end: Vec<u8>, version: Version) -> Result<NodeName, String> {
    stream.send.write_all(&end).await.map_err(|err| format!("\"{}\": {err}", stream.node))?;
    let _ = stream.send.finish();
    match reply(&mut stream).await? {
        DataReply::Held(Some(held)) if held.version == version => Ok(stream.node),
        DataReply::Failed(failure) => Err(format!("\"{}\": {failure}", stream.node)),
        other => Err(format!("\"{}\" answered {other:?}", stream.node)),
    }
}

/// Ends a put or removal at `version` that no target acknowledged: each
/// target — one may have taken it with its answer lost — is asked to
/// discard exactly that version, and the owner ends its intent. A target
/// out of reach keeps its copy until anti-entropy finds that nothing
/// explains it.
async fn abandon(owner: &OwnerHandle, key: &ObjectKey, version: Version, targets: &[AgentLink], term: u64) {
    let request = DataRequest { term, op: DataOp::Discard { key: key.clone(), version } };
    let request = &request;
    join_all(targets.iter().map(|link| async move {
        let Ok(mut stream) = open(link, request).await else { return };
        let _ = stream.send.finish();
        if let Err(why) = reply(&mut stream).await {
            debug!(%key, %why, "a rolled-back copy was not discarded; anti-entropy will");
        }
    }))
    .await;
    let input = DataInput::Abandoned { key: key.clone(), version };
    let _ = ask(owner, input).await;
}

/// `ringwatch data get`: confirms the holders the consistency needs, then
/// streams the bytes from one of them to `client`.
pub(crate) async fn get(owner: &OwnerHandle, key: ObjectKey, consistency: Consistency, client: &mut SendStream) {
    let mut attempt = 0;
    let (current, term, confirmed, fetched) = loop {
        attempt += 1;
        let (reach, links, term) = match ask(owner, DataInput::PlanRead { key: key.clone(), consistency }).await {
            DataAnswer::Reach { reach, links, term, .. } => (reach, links, term),
            DataAnswer::Failed(err) => return write(client, &failed(err)).await,
            other => return write(client, &failed(DataError::Refused(format!("unexpected answer {other:?}")))).await,
        };
        let current = reach.object.version;
        let (confirmed, newer, fetched) = confirm(owner, &key, (current, reach.required), term, links).await;
        if confirmed.len() >= reach.required {
            break (current, term, confirmed, fetched);
        }
        // Holders already hold a newer version: a put is being recorded;
        // plan again rather than fail.
        if newer && attempt < READ_ATTEMPTS {
            tokio::time::sleep(NEWER_BACKOFF * u32::try_from(attempt).unwrap_or(1)).await;
            continue;
        }
        let err = DataError::NotEnough(format!(
            "\"{key}\" needs {} replica(s) holding version {current} for a {} read; {} confirmed it",
            reach.required,
            consistency.as_str(),
            confirmed.len()
        ));
        return write(client, &failed(err)).await;
    };
    if let Some((stream, meta)) = fetched {
        return relay(stream, meta, client).await;
    }
    // The first holder could not send it: the other confirmed ones.
    let request = DataRequest { term, op: DataOp::Get(key.clone()) };
    for link in &confirmed {
        let Ok(mut stream) = open(link, &request).await else { continue };
        let _ = stream.send.finish();
        let meta = match reply(&mut stream).await {
            Ok(DataReply::Object(meta)) if meta.version == current => meta,
            _ => continue,
        };
        return relay(stream, meta, client).await;
    }
    let err = DataError::NotEnough(format!("no holder of \"{key}\" could send it"));
    write(client, &failed(err)).await;
}

/// Asks `links`, the recorded holders of `key` at `current`, whether they
/// hold it: returns those that do, whether any holds a newer version, and
/// the first holder's answer to a get when it holds `current` — the first
/// is asked for the bytes straight away rather than to confirm, so a read
/// costs one round trip to the holders, not two (the bytes go to the
/// client only once enough confirmed). One that answers without it is
/// read-repaired: the owner forgets it as a holder of `current`, and the
/// repair task copies the object again.
async fn confirm(
    owner: &OwnerHandle,
    key: &ObjectKey,
    (current, required): (Version, usize),
    term: u64,
    links: Vec<AgentLink>,
) -> (Vec<AgentLink>, bool, Option<(AgentStream, ObjectMeta)>) {
    let stat = DataRequest { term, op: DataOp::Stat(key.clone()) };
    let get = DataRequest { term, op: DataOp::Get(key.clone()) };
    let (stat, get) = (&stat, &get);
    let mut answers: FuturesUnordered<_> = links
        .into_iter()
        .enumerate()
        .map(|(index, link)| async move {
            if index == 0 {
                let (fetched, confirmation) = fetch(&link, get, stat, current).await;
                return (link, confirmation, fetched);
            }
            let confirmation = ask_stat(&link, stat, current).await;
            (link, confirmation, None)
        })
        .collect();
    let mut confirmed = Vec::new();
    let mut newer = false;
    let mut first = None;
    let mut lacking = Vec::new();
    take_answers(&mut answers, |(link, confirmation, fetched)| {
        match confirmation {
            Confirmation::Holds => {
                confirmed.push(link);
                first = first.take().or(fetched);
            }
            Confirmation::Lacks => lacking.push(link.0),
            Confirmation::Newer => newer = true,
            Confirmation::Unreachable => {}
        }
        confirmed.len() >= required
    })
    .await;
    for node in lacking {
        debug!(%key, %node, "read repair: a recorded copy is missing");
        let lost = Repaired::Dropped { key: key.clone(), node, version: current };
        let _ = ask(owner, DataInput::Repaired(lost)).await;
    }
    (confirmed, newer, first)
}

/// Takes `answers` as they come, handing each to `take`, which says
/// whether enough are in: from then on the others get [`ACK_GRACE`] more —
/// healthy nodes answer within it, so records and read repair still hear
/// them — and a dead or stalled node not yet declared failed costs the
/// grace, not the transport's idle timeout. What is left in `answers` has
/// not answered.
async fn take_answers<F: std::future::Future>(
    answers: &mut FuturesUnordered<F>,
    mut take: impl FnMut(F::Output) -> bool,
) {
    let mut grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let answer = match grace.as_mut() {
            Some(grace) => tokio::select! {
                answer = answers.next() => answer,
                () = grace => None,
            },
            None => answers.next().await,
        };
        let Some(answer) = answer else { return };
        if take(answer) && grace.is_none() {
            grace = Some(Box::pin(tokio::time::sleep(ACK_GRACE)));
        }
    }
}

/// Asks `link` whether it holds `current`.
async fn ask_stat(link: &AgentLink, stat: &DataRequest, current: Version) -> Confirmation {
    let Ok(mut stream) = open(link, stat).await else { return Confirmation::Unreachable };
    let _ = stream.send.finish();
    match reply(&mut stream).await {
        Ok(DataReply::Held(Some(held))) if held.version == current && !held.tombstone => Confirmation::Holds,
        // A newer version, not recorded yet when this read was
        // planned: a put being recorded. Not lost.
        Ok(DataReply::Held(Some(held))) if held.version > current => Confirmation::Newer,
        // It answered, without the copy the console recorded: lost
        // (a replaced disk) or older.
        Ok(DataReply::Held(_)) => Confirmation::Lacks,
        _ => Confirmation::Unreachable,
    }
}

/// Asks `link` for the bytes of `current`: the stream positioned at the
/// bytes, with their metadata, when it holds them. A copy it cannot send
/// (none, or a tombstone) is told apart by a stat: a newer tombstone is a
/// removal being recorded, not a lost copy.
async fn fetch(
    link: &AgentLink,
    get: &DataRequest,
    stat: &DataRequest,
    current: Version,
) -> (Option<(AgentStream, ObjectMeta)>, Confirmation) {
    let Ok(mut stream) = open(link, get).await else { return (None, Confirmation::Unreachable) };
    let _ = stream.send.finish();
    match reply(&mut stream).await {
        Ok(DataReply::Object(meta)) if meta.version == current => (Some((stream, meta)), Confirmation::Holds),
        Ok(DataReply::Object(meta)) if meta.version > current => (None, Confirmation::Newer),
        Ok(DataReply::Object(_)) => (None, Confirmation::Lacks),
        Ok(DataReply::Failed(DataFailure::NotFound)) => (None, ask_stat(link, stat, current).await),
        _ => (None, Confirmation::Unreachable),
    }
}

/// Streams an object's metadata and bytes from an agent's stream to the
/// client. From the metadata on, the bytes follow or the stream breaks
/// (the client checks size and SHA-256).
async fn relay(mut stream: AgentStream, meta: ObjectMeta, client: &mut SendStream) {
    if write_frame(client, &AdminResponse::DataObject(meta)).await.is_err() {
        return;
    }
    loop {
        match codec::read_frame::<DataChunk, _>(&mut stream.recv, MAX_FRAME_LEN).await {
            Ok(Some(chunk)) => {
                let end = chunk == DataChunk::End;
                if codec::write_frame(client, &chunk).await.is_err() || end {
                    let _ = client.finish();
                    return;
                }
            }
            _ => {
                let _ = client.reset(quinn::VarInt::from_u32(1));
                return;
            }
        }
    }
}

/// `ringwatch data rm`: a tombstone to every reachable holder.
pub(crate) async fn remove(owner: &OwnerHandle, key: ObjectKey, consistency: Consistency) -> AdminResponse {
    let (reach, links, version, term) = match ask(owner, DataInput::PlanRemove { key: key.clone(), consistency }).await
    {
        DataAnswer::Reach { reach, links, version: Some(version), term } => (reach, links, version, term),
        DataAnswer::Failed(err) => return failed(err),
        other => return failed(DataError::Refused(format!("unexpected answer {other:?}"))),
    };
    let request = DataRequest { term, op: DataOp::Remove { key: key.clone(), version } };
    let request = &request;
    let answers = join_all(links.iter().map(|link| async move {
        let mut stream = open(link, request).await?;
        let _ = stream.send.finish();
        match reply(&mut stream).await? {
            DataReply::Held(Some(held)) if held.tombstone && held.version == version => Ok(stream.node),
            DataReply::Failed(failure) => Err(format!("\"{}\": {failure}", stream.node)),
            other => Err(format!("\"{}\" answered {other:?}", stream.node)),
        }
    }))
    .await;
    let (acked, failures): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
    let acked: Vec<NodeName> = acked.into_iter().flatten().collect();
    let failures: Vec<String> = failures.into_iter().filter_map(Result::err).collect();
    if acked.is_empty() {
        abandon(owner, &key, version, &links, term).await;
        return failed(DataError::NotEnough(format!(
            "the removal of \"{key}\" reached none of the {} replica(s) a {} removal needs; it is not recorded and the object stays: {}",
            reach.required,
            consistency.as_str(),
            failures.join("; ")
        )));
    }
    // Applied by too few, but by some: as with a put, those replicas
    // dropped the bytes, so the removal is recorded and sent to the other
    // holders, and the client told it did not meet its consistency.
    let shortfall = (acked.len() < reach.required).then(|| {
        DataError::NotEnough(format!(
            "the removal of \"{key}\" reached {} of the {} replica(s) a {} removal needs: it did not meet its consistency, but the key is removed and the other holders will be sent the removal: {}",
            acked.len(),
            reach.required,
            consistency.as_str(),
            failures.join("; ")
        ))
    });
    let stat = ObjectStat {
        key: key.clone(),
        version,
        size: 0,
        checksum: String::new(),
        replicas: reach.object.replicas,
        copies: acked
            .iter()
            .map(|node| ReplicaStat {
                node: node.to_string(),
                state: ringwatch_shared::status::NodeState::Alive,
                version,
                current: true,
            })
            .collect(),
    };
    match (ask(owner, DataInput::Removed { key, version, acked }).await, shortfall) {
        (DataAnswer::Removed, Some(shortfall)) => failed(shortfall),
        (DataAnswer::Removed, None) => AdminResponse::DataStored(stat),
        (DataAnswer::Failed(err), _) => failed(err),
        (other, _) => failed(DataError::Refused(format!("unexpected answer {other:?}"))),
    }
}

/// `ringwatch data ls` and `stat`: the owner's catalog.
pub(crate) async fn catalog(owner: &OwnerHandle, request: DataInput) -> AdminResponse {
    match ask(owner, request).await {
        DataAnswer::Listing(list) => AdminResponse::DataListing(list),
        DataAnswer::Stat(stat) => AdminResponse::DataStat(stat),
        DataAnswer::Failed(err) => failed(err),
        other => failed(DataError::Refused(format!("unexpected answer {other:?}"))),
    }
}

fn failed(err: DataError) -> AdminResponse {
    AdminResponse::DataFailed(err)
}

async fn write_frame(send: &mut SendStream, response: &AdminResponse) -> Result<(), ()> {
    let frame = codec::encode_admin_frame(response).map_err(|_| ())?;
    send.write_all(&frame).await.map_err(|_| ())
}

async fn write(send: &mut SendStream, response: &AdminResponse) {
    if write_frame(send, response).await.is_ok() {
        let _ = send.finish();
    }
}
