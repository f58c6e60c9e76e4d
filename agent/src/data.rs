//! Serving the console's data requests on the agent's copies (README.md,
//! "Data"): one stream per request, opened by the console on the agent's
//! connection (see `ringwatch_shared::data::wire`). The bytes stream
//! through in chunks between the network and the disk; file I/O — and
//! every wait for the store's lock — runs on the blocking pool, never on the async workers that carry
//! heartbeats. Each stream is served in a task of its own, at most
//! [`MAX_DATA_STREAMS`] at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ringwatch_shared::codec::{self, CodecError, MAX_FRAME_LEN};
use ringwatch_shared::data::wire::{
    CHUNK_LEN, DataChunk, DataFailure, DataOp, DataReply, DataRequest, SMALL_COPY_MAX, SmallCopy,
};
use ringwatch_shared::data::{ObjectKey, ObjectMeta};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::objects::{self, DataUsage, MAX_PACKED, ObjectStore, ObjectsError, StoredBytes};

/// At most this many data streams are served at once; a stream over the
/// bound waits for one to end. Enough to keep a disk and a link busy with
/// a console's parallel puts and repairs, few enough that their buffers
/// (a chunk each) stay small. The QUIC transport's own limit on streams a
/// peer may open bounds how many wait.
pub const MAX_DATA_STREAMS: usize = 64;

/// Puts of at most this many bytes (one chunk) are gathered in memory and
/// written in one go (see [`DataService::put_small`]); copies this small
/// are read whole in one go too.
const SMALL_PUT: u64 = CHUNK_LEN as u64;

/// The packer takes more jobs into one fdatasync until it holds this many
/// copies (a job is never split).
const PACK_BATCH: usize = 256;
/// Jobs waiting for the packer; more wait for room.
const PACK_QUEUE: usize = 64;

/// How long [`DataService::close`] waits for the streams still served.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// The agent's copies, shared by the streams serving them. Cheap to clone:
/// clones share the store.
#[derive(Debug, Clone)]
pub struct DataService {
    /// The copies.
    store: Arc<Mutex<ObjectStore>>,
    /// The highest console term seen on a data request.
    seen_term: Arc<AtomicU64>,
    /// Bounds the streams served at once ([`MAX_DATA_STREAMS`]).
    permits: Arc<Semaphore>,
    /// The streams' tasks, waited for when the agent stops.
    tasks: TaskTracker,
    /// The packer thread's queue ([`spawn_packer`]); `None` if it could
    /// not be started, and small puts go the way large ones do.
    packer: Option<mpsc::Sender<PackJob>>,
}

/// The answer to a copy the agent stopped before storing.
fn shutting_down() -> DataFailure {
    DataFailure::Other("the agent is shutting down".into())
}

/// Copies to pack — one, or a batch the console sent together — and who
/// waits for their outcomes, in the same order.
#[derive(Debug)]
struct PackJob {
    copies: Vec<(ObjectMeta, Vec<u8>)>,
    done: oneshot::Sender<Vec<Result<ObjectMeta, ObjectsError>>>,
}

/// Starts the packer: a thread that takes the packed copies waiting,
/// begins them, makes them durable with one fdatasync and makes them
/// current. A batch of copies from the console is one job: one hand-off to
/// the thread and one answer back, and never split between two
/// fdatasyncs; jobs waiting together are packed together. That, instead of
/// a blocking-pool thread per copy each waiting for its share of an
/// fdatasync, is what keeps the agent's CPU per copy low (BENCHMARKS.md,
/// "The data store"). It ends when the service (every clone) is dropped.
fn spawn_packer(store: Arc<Mutex<ObjectStore>>) -> Option<mpsc::Sender<PackJob>> {
    let (send, mut recv) = mpsc::channel::<PackJob>(PACK_QUEUE);
    let spawned = std::thread::Builder::new().name("data-packer".into()).spawn(move || {
        while let Some(first) = recv.blocking_recv() {
            let mut copies = first.copies.len();
            let mut jobs = vec![first];
            while copies < PACK_BATCH {
                match recv.try_recv() {
                    Ok(job) => {
                        copies += job.copies.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            pack_batch(&store, jobs);
        }
    });
    match spawned {
        Ok(_) => Some(send),
        Err(err) => {
            warn!(%err, "failed to start the data packer; small copies are written one by one");
            None
        }
    }
}

/// What became of one copy of a packed batch before its fdatasync.
enum Begun {
    /// It is being packed: its outcome is the next of the batch's.
    Packing,
    /// It could not be begun.
    Failed(ObjectsError),
}

/// One batch of the packer: begun under the store's lock, made durable
/// without it, made current under it; each job answered once, with every
/// copy's outcome.
fn pack_batch(store: &Mutex<ObjectStore>, jobs: Vec<PackJob>) {
    let lock = || store.lock().unwrap_or_else(PoisonError::into_inner);
    let mut copies = Vec::new();
    let mut answers = Vec::with_capacity(jobs.len());
    {
        let store = lock();
        for job in jobs {
            let begun: Vec<Begun> = job
                .copies
                .into_iter()
                .map(|(meta, bytes)| match store.begin(meta).and_then(|mut copy| copy.write(&bytes).map(|()| copy)) {
                    Ok(copy) => {
                        copies.push(copy);
                        Begun::Packing
                    }
                    Err(err) => Begun::Failed(err),
                })
                .collect();
            answers.push((job.done, begun));
        }
    }
    let persisted = objects::persist_together(copies);
    let mut installed = {
        let mut store = lock();
        persisted.into_iter().map(|result| result.and_then(|durable| store.install(durable))).collect::<Vec<_>>()
    }
    .into_iter();
    for (done, begun) in answers {
        let outcomes = begun
            .into_iter()
            .map(|copy| match copy {
                Begun::Packing => installed.next().unwrap_or_else(|| {
                    Err(ObjectsError::Io {
                        path: std::path::PathBuf::new(),
                        source: std::io::Error::other("the packer lost a copy's outcome"),
                    })
                }),
                Begun::Failed(err) => Err(err),
            })
            .collect();
        let _ = done.send(outcomes);
    }
}

impl DataService {
    /// Serves `store`.
    pub fn new(store: ObjectStore) -> Self {
        let store = Arc::new(Mutex::new(store));
        Self {
            packer: spawn_packer(store.clone()),
            store,
            seen_term: Arc::new(AtomicU64::new(0)),
            permits: Arc::new(Semaphore::new(MAX_DATA_STREAMS)),
            tasks: TaskTracker::new(),
        }
    }

    /// Serves one stream the console opened, in a task of its own once
    /// fewer than [`MAX_DATA_STREAMS`] are served, then finishes it. A
    /// stream that breaks is dropped (the console sees it end early and
    /// retries or reads elsewhere). Must be called within a tokio runtime.
    pub fn spawn<R, W>(&self, mut recv: R, mut send: W)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let service = self.clone();
        self.tasks.spawn(async move {
            let Ok(_permit) = service.permits.clone().acquire_owned().await else { return };
            let served = match service.serve(&mut recv, &mut send).await {
                Ok(()) => send.shutdown().await.map_err(CodecError::Io),
                Err(err) => Err(err),
            };
            if let Err(err) = served {
                debug!(%err, "a data stream broke; dropped it");
            }
        });
    }

    /// Waits (a few seconds at most) for the streams still served: the
    /// connection is closed by then, so they end at their next read or
    /// write; a commit under way finishes.
    pub async fn close(&self) {
        self.tasks.close();
        if tokio::time::timeout(CLOSE_PATIENCE, self.tasks.wait()).await.is_err() {
            warn!(streams = self.tasks.len(), "data streams still running at shutdown; leaving them");
        }
    }

    /// Live copies, bytes held and the quota. Takes the store's lock, which
    /// a removal holds across its fsync: call it off the async workers.
    pub fn usage(&self) -> DataUsage {
        self.lock().usage()
    }

    /// Serves one request stream: reads the request (and a put's bytes),
    /// answers. An error is the stream's (it broke); refusals are answers.
    ///
    /// # Errors
    /// When the stream cannot be read or written.
    pub async fn serve<R, W>(&self, recv: &mut R, send: &mut W) -> Result<(), CodecError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Some(request) = codec::read_frame::<DataRequest, _>(recv, MAX_FRAME_LEN).await? else {
            return Ok(());
        };
        let seen = self.seen_term.fetch_max(request.term, Ordering::Relaxed);
        if request.term < seen {
            return codec::write_frame(send, &DataReply::Failed(DataFailure::Deposed { seen })).await;
        }
        match request.op {
            DataOp::Put(meta) => {
                let reply = match self.put(meta, recv).await? {
                    Ok(meta) => DataReply::Held(Some(meta)),
                    Err(failure) => DataReply::Failed(failure),
                };
                codec::write_frame(send, &reply).await
            }
            DataOp::PutSmall(copies) => {
                let reply = DataReply::HeldEach(self.put_batch(copies).await);
                codec::write_frame(send, &reply).await
            }
            DataOp::Get(key) => self.get(&key, send).await,
            DataOp::Stat(key) => {
                let held = self.with_store(move |store| Ok(store.get(&key).cloned())).await;
                codec::write_frame(send, &answer(held.map(DataReply::Held))).await
            }
            DataOp::Remove { key, version } => {
                let store = self.store.clone();
                let removed = blocking(move || {
                    let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
                    store.remove(&key, version).map(|()| store.get(&key).cloned())
                })
                .await;
                codec::write_frame(send, &answer(removed.map(DataReply::Held))).await
            }
            DataOp::Forget(key) => {
                let store = self.store.clone();
                let forgotten = blocking(move || {
                    let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
                    store.forget(&key).map(|_| DataReply::Held(None))
                })
                .await;
                codec::write_frame(send, &answer(forgotten)).await
            }
            DataOp::Discard { key, version } => {
                let kept = self.with_store(move |store| store.discard(&key, version)).await;
                codec::write_frame(send, &answer(kept.map(DataReply::Held))).await
            }
            DataOp::Usage => {
                let usage = self.with_store(|store| Ok(store.usage())).await;
                let reply = usage.map(|usage| DataReply::Usage {
                    objects: usage.objects,
                    used: usage.bytes,
                    quota: usage.quota,
                });
                codec::write_frame(send, &answer(reply)).await
            }
            DataOp::Digests => {
                let leaves = self.with_store(|store| Ok(store.digests().leaves().to_vec())).await;
                codec::write_frame(send, &answer(leaves.map(DataReply::Digests))).await
            }
            DataOp::List(ranges) => {
                let listed = self
                    .with_store(move |store| {
                        let mut listed: Vec<ObjectMeta> = store
                            .entries()
                            .filter(|meta| ranges.contains(&ringwatch_shared::data::digest::range_of(&meta.key)))
                            .cloned()
                            .collect();
                        // By key, as the console's catalog holds them.
                        listed.sort_unstable_by(|a, b| a.key.cmp(&b.key));
                        Ok(listed)
                    })
                    .await;
                codec::write_frame(send, &answer(listed.map(DataReply::Listed))).await
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ObjectStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on the store on the blocking pool: waiting for the lock
    /// (held across a removal's fsync) must not stall the async workers.
    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut ObjectStore) -> Result<T, ObjectsError> + Send + 'static,
    ) -> Result<T, ObjectsError> {
        let store = self.store.clone();
        blocking(move || work(&mut store.lock().unwrap_or_else(PoisonError::into_inner))).await
    }

    /// Receives a put's bytes into a pending copy and commits it. The outer
    /// error is the stream's; the inner one the answer.
    async fn put<R: AsyncRead + Unpin>(
        &self,
        meta: ObjectMeta,
        recv: &mut R,
    ) -> Result<Result<ObjectMeta, DataFailure>, CodecError> {
        if meta.size <= SMALL_PUT {
            return self.put_small(meta, recv).await;
        }
        let begun = self.with_store(move |store| store.begin(meta)).await;
        let mut copy = match begun {
            Ok(copy) => Some(copy),
            Err(err) => {
                // Drain what the console sends, so the answer is read.
                drain(recv).await?;
                return Ok(Err(failure(err)));
            }
        };
        let mut failed = None;
        loop {
            let chunk = codec::read_frame::<DataChunk, _>(recv, MAX_FRAME_LEN).await?;
            match chunk {
                Some(DataChunk::Bytes(bytes)) => {
                    let Some(pending) = copy.take() else { continue };
                    match blocking(move || {
                        let mut pending = pending;
                        pending.write(&bytes).map(|()| pending)
                    })
                    .await
                    {
                        Ok(pending) => copy = Some(pending),
                        Err(err) => failed = Some(failure(err)),
                    }
                }
                Some(DataChunk::End) => break,
                None => return Err(CodecError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            }
        }
        if let Some(failure) = failed {
            return Ok(Err(failure));
        }
        let Some(pending) = copy else {
            return Ok(Err(DataFailure::Other("the copy was abandoned".into())));
        };
        let store = self.store.clone();
        // The fsyncs without the lock, so copies of other objects are made
        // durable alongside (and share directory fsyncs); only making the
        // copy current takes it.
        let committed = blocking(move || {
            let durable = pending.persist()?;
            store.lock().unwrap_or_else(PoisonError::into_inner).install(durable)
        })
        .await;
        Ok(committed.map_err(failure))
    }

    /// A put of at most [`SMALL_PUT`] bytes: its chunks gathered (as much
    /// as one chunk of a large put holds), then begun, written, made
    /// durable and current in one trip to the blocking pool instead of one
    /// per step — each trip is a thread hand-off, which small puts are
    /// made of.
    async fn put_small<R: AsyncRead + Unpin>(
        &self,
        meta: ObjectMeta,
        recv: &mut R,
    ) -> Result<Result<ObjectMeta, DataFailure>, CodecError> {
        let mut bytes = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        let mut too_many = false;
        loop {
            match codec::read_frame::<DataChunk, _>(recv, MAX_FRAME_LEN).await? {
                Some(DataChunk::Bytes(chunk)) => {
                    if bytes.len() as u64 + chunk.len() as u64 > meta.size {
                        too_many = true;
                    } else {
                        bytes.extend_from_slice(&chunk);
                    }
                }
                Some(DataChunk::End) => break,
                None => return Err(CodecError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            }
        }
        if too_many {
            let problem = format!("more than the {} bytes announced", meta.size);
            return Ok(Err(failure(ObjectsError::Mismatch { key: meta.key, problem })));
        }
        Ok(self.store_small(meta, bytes).await)
    }

    /// Stores a small copy: packed if it fits a pack, otherwise on its own.
    async fn store_small(&self, meta: ObjectMeta, bytes: Vec<u8>) -> Result<ObjectMeta, DataFailure> {
        if meta.size > MAX_PACKED {
            return self.put_alone(meta, bytes).await;
        }
        self.pack(vec![(meta, bytes)]).await.pop().unwrap_or_else(|| Err(shutting_down()))
    }

    /// Stores a batch of small copies (see [`DataOp::PutSmall`]), packed
    /// together. The outcome of each, in order.
    async fn put_batch(&self, copies: Vec<SmallCopy>) -> Vec<Result<ObjectMeta, DataFailure>> {
        // Each copy: refused here, or the next of the packer's outcomes.
        let mut checked: Vec<Option<DataFailure>> = Vec::with_capacity(copies.len());
        let mut packing = Vec::with_capacity(copies.len());
        for SmallCopy { meta, bytes } in copies {
            let problem = if bytes.len() as u64 == meta.size {
                (meta.size > SMALL_COPY_MAX.min(MAX_PACKED))
                    .then(|| format!("{} bytes is too large for a batch of small copies", meta.size))
            } else {
                Some(format!("{} bytes arrived, {} were announced", bytes.len(), meta.size))
            };
            match problem {
                Some(problem) => checked.push(Some(failure(ObjectsError::Mismatch { key: meta.key, problem }))),
                None => {
                    checked.push(None);
                    packing.push((meta, bytes));
                }
            }
        }
        let mut packed = self.pack(packing).await.into_iter();
        checked
            .into_iter()
            .map(|refused| match refused {
                Some(refused) => Err(refused),
                None => packed.next().unwrap_or_else(|| Err(shutting_down())),
            })
            .collect()
    }

    /// Packs `copies` (each at most [`MAX_PACKED`] bytes) as one job for
    /// the packer, so they share its write and its fdatasync; each on its
    /// own when there is no packer. The outcome of each, in order.
    async fn pack(&self, copies: Vec<(ObjectMeta, Vec<u8>)>) -> Vec<Result<ObjectMeta, DataFailure>> {
        let Some(packer) = self.packer.as_ref().filter(|_| !copies.is_empty()) else {
            let mut each = Vec::with_capacity(copies.len());
            for (meta, bytes) in copies {
                each.push(self.put_alone(meta, bytes).await);
            }
            return each;
        };
        let (done, outcome) = oneshot::channel();
        match packer.send(PackJob { copies, done }).await {
            Ok(()) => outcome.await.unwrap_or_default().into_iter().map(|done| done.map_err(failure)).collect(),
            // The packer stopped: every copy is answered as cut short.
            Err(_) => Vec::new(),
        }
    }

    /// Stores a small copy on its own: begun, written, made durable and
    /// current in one trip to the blocking pool.
    async fn put_alone(&self, meta: ObjectMeta, bytes: Vec<u8>) -> Result<ObjectMeta, DataFailure> {
        let store = self.store.clone();
        blocking(move || {
            let mut copy = store.lock().unwrap_or_else(PoisonError::into_inner).begin(meta)?;
            copy.write(&bytes)?;
            // The fsyncs without the lock, as for large puts.
            let durable = copy.persist()?;
            store.lock().unwrap_or_else(PoisonError::into_inner).install(durable)
        })
        .await
        .map_err(failure)
    }

    /// Sends the current copy of `key`: its metadata, then its bytes.
    async fn get<W: AsyncWrite + Unpin>(&self, key: &ObjectKey, send: &mut W) -> Result<(), CodecError> {
        let wanted = key.clone();
        let store = self.store.clone();
        // A small copy is read whole in the trip that opens it (after the
        // lock is let go), not in one more trip per read.
        let opened = blocking(move || {
            let (meta, stored) = store.lock().unwrap_or_else(PoisonError::into_inner).read(&wanted)?;
            let mut file = match stored {
                StoredBytes::Packed(bytes) => return Ok((meta, None, Some(bytes))),
                StoredBytes::File(file) => file,
            };
            let mut small = None;
            if meta.size <= SMALL_PUT {
                let mut bytes = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
                std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, meta.size), &mut bytes)
                    .map_err(|source| ObjectsError::Io { path: Default::default(), source })?;
                small = Some(bytes);
            }
            Ok((meta, Some(file), small))
        })
        .await;
        let (meta, file, small) = match opened {
            Ok(opened) => opened,
            Err(err) => return codec::write_frame(send, &DataReply::Failed(failure(err))).await,
        };
        codec::write_frame(send, &DataReply::Object(meta.clone())).await?;
        if let Some(bytes) = small {
            // Short if the file shrank (a damaged disk): as below.
            if !bytes.is_empty() {
                codec::write_frame(send, &DataChunk::Bytes(bytes)).await?;
            }
            return codec::write_frame(send, &DataChunk::End).await;
        }
        let Some(file) = file else { return codec::write_frame(send, &DataChunk::End).await };
        let mut file = tokio::fs::File::from_std(file);
        let mut left = meta.size;
        let mut buf = vec![0; CHUNK_LEN];
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK_LEN as u64)).unwrap_or(CHUNK_LEN);
            let read = file.read(&mut buf[..want]).await?;
            if read == 0 {
                // The file shrank under us (a damaged disk): the console sees
                // a short object and its checksum fail, and reads elsewhere.
                break;
            }
            codec::write_frame(send, &DataChunk::Bytes(buf[..read].to_vec())).await?;
            left -= read as u64;
        }
        codec::write_frame(send, &DataChunk::End).await
    }
}

/// Reads and discards chunks up to the end of a put.
async fn drain<R: AsyncRead + Unpin>(recv: &mut R) -> Result<(), CodecError> {
    loop {
        match codec::read_frame::<DataChunk, _>(recv, MAX_FRAME_LEN).await? {
            Some(DataChunk::Bytes(_)) => {}
            Some(DataChunk::End) | None => return Ok(()),
        }
    }
}

/// Runs file I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ObjectsError> + Send + 'static,
) -> Result<T, ObjectsError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|err| {
        Err(ObjectsError::Io { path: Default::default(), source: std::io::Error::other(err.to_string()) })
    })
}

fn answer(result: Result<DataReply, ObjectsError>) -> DataReply {
    result.unwrap_or_else(|err| DataReply::Failed(failure(err)))
}

/// The wire's words for a store error.
fn failure(err: ObjectsError) -> DataFailure {
    match err {
        ObjectsError::NotFound(_) => DataFailure::NotFound,
        ObjectsError::Stale { held, .. } => DataFailure::Stale { held },
        ObjectsError::OverQuota { used, quota, .. } => DataFailure::OverQuota { used, quota },
        other => DataFailure::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use ring::digest::{SHA256, digest};
    use ringwatch_shared::data::Version;
    use ringwatch_shared::token::to_hex;

    use super::*;

    fn service() -> (DataService, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (DataService::new(ObjectStore::open(dir.path(), 1 << 30).unwrap()), dir)
    }

    /// One request through an in-memory pipe: what the console sends, and
    /// the frames it reads back.
    async fn exchange(service: &DataService, frames: Vec<Vec<u8>>) -> Vec<u8> {
        let (mut console, mut agent) = tokio::io::duplex(4 << 20);
        let (mut agent_recv, mut agent_send) = tokio::io::split(&mut agent);
        let sending = async {
            for frame in frames {
                tokio::io::AsyncWriteExt::write_all(&mut console, &frame).await.unwrap();
            }
            let mut answer = Vec::new();
            tokio::io::AsyncWriteExt::shutdown(&mut console).await.unwrap();
            console.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let serving = async {
            service.serve(&mut agent_recv, &mut agent_send).await.unwrap();
            tokio::io::AsyncWriteExt::shutdown(&mut agent_send).await.unwrap();
        };
        let (answer, ()) = tokio::join!(sending, serving);
        answer
    }

    /// A get of `key`: its reply and the bytes that followed.
    async fn get(service: &DataService, key: &str) -> (DataReply, Vec<u8>) {
        let request = DataRequest { term: 1, op: DataOp::Get(ObjectKey::parse(key).unwrap()) };
        replies(&exchange(service, vec![codec::encode_frame(&request).unwrap()]).await)
    }

    fn meta_of(term: u64, key: &str, counter: u64, bytes: &[u8]) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::parse(key).unwrap(),
            version: Version { term, counter },
            size: bytes.len() as u64,
            checksum: to_hex(digest(&SHA256, bytes).as_ref()),
            tombstone: false,
        }
    }

    fn put_frames(term: u64, key: &str, counter: u64, bytes: &[u8]) -> Vec<Vec<u8>> {
        let meta = meta_of(term, key, counter, bytes);
        let mut frames = vec![codec::encode_frame(&DataRequest { term, op: DataOp::Put(meta) }).unwrap()];
        frames.extend(
            bytes.chunks(CHUNK_LEN).map(|chunk| codec::encode_frame(&DataChunk::Bytes(chunk.to_vec())).unwrap()),
        );
        frames.push(codec::encode_frame(&DataChunk::End).unwrap());
        frames
    }

    fn replies(bytes: &[u8]) -> (DataReply, Vec<u8>) {
        let (reply, mut at) = codec::decode_frame::<DataReply>(bytes, MAX_FRAME_LEN).unwrap().unwrap();
        let mut body = Vec::new();
        while at < bytes.len() {
            let (chunk, used) = codec::decode_frame::<DataChunk>(&bytes[at..], MAX_FRAME_LEN).unwrap().unwrap();
            at += used;
            if let DataChunk::Bytes(piece) = chunk {
                body.extend(piece);
            }
        }
        (reply, body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_put_streams_in_and_a_get_streams_the_same_bytes_out() {
        let (service, _dir) = service();
        let bytes: Vec<u8> = (0..(CHUNK_LEN * 3 + 17)).map(|i| (i % 251) as u8).collect();
        let (reply, _) = replies(&exchange(&service, put_frames(1, "big", 1, &bytes)).await);
        assert!(matches!(reply, DataReply::Held(Some(ref meta)) if meta.size == bytes.len() as u64), "{reply:?}");
        let (reply, body) = get(&service, "big").await;
        assert!(matches!(reply, DataReply::Object(_)), "{reply:?}");
        assert_eq!(body, bytes);
    }

    /// A commit holds the store's lock across its fsync; a request that
    /// waited for the lock on an async worker stalled everything else on
    /// it — on the agent's one-thread runtime, its heartbeats.
    #[tokio::test(flavor = "current_thread")]
    async fn regression_a_request_waiting_for_the_store_lock_does_not_stall_the_runtime() {
        let (service, _dir) = service();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (ran_tx, ran_rx) = std::sync::mpsc::channel::<()>();
        let store = service.store.clone();
        // Stands for a commit in its fsync: holds the lock until the
        // runtime shows it still runs other tasks (or the deadline passes).
        let holder = std::thread::spawn(move || {
            let _guard = store.lock().unwrap();
            locked_tx.send(()).unwrap();
            ran_rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok()
        });
        locked_rx.recv().unwrap();
        let stat =
            codec::encode_frame(&DataRequest { term: 1, op: DataOp::Stat(ObjectKey::parse("k").unwrap()) }).unwrap();
        let served = service.clone();
        let request = tokio::spawn(async move { exchange(&served, vec![stat]).await });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        // Only runs if the request above is not blocking the thread.
        let _ = ran_tx.send(());
        let (reply, _) = replies(&request.await.unwrap());
        assert_eq!(reply, DataReply::Held(None));
        assert!(holder.join().unwrap(), "the runtime stalled while a request waited for the store's lock");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deposed_console_and_a_stale_version_are_refused() {
        let (service, _dir) = service();
        exchange(&service, put_frames(5, "k", 2, b"new")).await;
        let (reply, _) = replies(&exchange(&service, put_frames(4, "k", 9, b"old term")).await);
        assert_eq!(reply, DataReply::Failed(DataFailure::Deposed { seen: 5 }));
        let (reply, _) = replies(&exchange(&service, put_frames(5, "k", 1, b"older")).await);
        assert!(matches!(reply, DataReply::Failed(DataFailure::Stale { .. })), "{reply:?}");
        let stat =
            codec::encode_frame(&DataRequest { term: 5, op: DataOp::Stat(ObjectKey::parse("k").unwrap()) }).unwrap();
        let (reply, _) = replies(&exchange(&service, vec![stat]).await);
        assert!(matches!(reply, DataReply::Held(Some(ref meta)) if meta.version.counter == 2), "{reply:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_that_do_not_match_their_checksum_are_refused_and_nothing_is_stored() {
        let (service, _dir) = service();
        let mut frames = put_frames(1, "k", 1, b"abc");
        frames[1] = codec::encode_frame(&DataChunk::Bytes(b"abd".to_vec())).unwrap();
        let (reply, _) = replies(&exchange(&service, frames).await);
        assert!(
            matches!(reply, DataReply::Failed(DataFailure::Other(ref why)) if why.contains("SHA-256")),
            "{reply:?}"
        );
        assert_eq!(get(&service, "k").await.0, DataReply::Failed(DataFailure::NotFound));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_put_with_more_bytes_than_announced_is_refused_and_a_large_one_still_streams() {
        let (service, _dir) = service();
        let mut frames = put_frames(1, "small", 1, b"abc");
        frames.insert(2, codec::encode_frame(&DataChunk::Bytes(b"d".to_vec())).unwrap());
        let (reply, _) = replies(&exchange(&service, frames).await);
        assert!(
            matches!(reply, DataReply::Failed(DataFailure::Other(ref why)) if why.contains("more than")),
            "{reply:?}"
        );
        assert_eq!(get(&service, "small").await.0, DataReply::Failed(DataFailure::NotFound));
        // Exactly one chunk takes the small path, one byte more the large.
        for (key, len) in [("one-chunk", CHUNK_LEN), ("past-a-chunk", CHUNK_LEN + 1)] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
            let (reply, _) = replies(&exchange(&service, put_frames(1, key, 1, &bytes)).await);
            assert!(matches!(reply, DataReply::Held(Some(ref meta)) if meta.size == len as u64), "{reply:?}");
            assert_eq!(get(&service, key).await.1, bytes);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn regression_a_batch_of_small_copies_is_made_durable_by_one_fdatasync() {
        let (service, _dir) = service();
        for round in 1..=20 {
            let batch: Vec<SmallCopy> = (0..48)
                .map(|i| {
                    let bytes = format!("copy {i} of round {round}").into_bytes();
                    SmallCopy { meta: meta_of(1, &format!("r{round}/{i}"), 1, &bytes), bytes }
                })
                .collect();
            let before = service.lock().pack_syncs();
            let request = DataRequest { term: 1, op: DataOp::PutSmall(batch) };
            let (reply, _) = replies(&exchange(&service, vec![codec::encode_frame(&request).unwrap()]).await);
            let DataReply::HeldEach(outcomes) = reply else { panic!("{reply:?}") };
            assert!(outcomes.len() == 48 && outcomes.iter().all(Result::is_ok), "{outcomes:?}");
            assert_eq!(service.lock().pack_syncs() - before, 1, "round {round}: the batch was split");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_of_small_copies_is_answered_copy_by_copy_and_only_good_copies_are_stored() {
        let (service, _dir) = service();
        exchange(&service, put_frames(1, "newer", 5, b"held at 5")).await;
        let copy = |key: &str, counter: u64, bytes: &[u8]| SmallCopy {
            meta: meta_of(1, key, counter, bytes),
            bytes: bytes.to_vec(),
        };
        let mut short = copy("short", 1, b"abc");
        short.bytes.pop();
        let mut damaged = copy("damaged", 1, b"abc");
        damaged.bytes = b"abd".to_vec();
        let large = vec![3; usize::try_from(SMALL_COPY_MAX).unwrap() + 1];
        let batch = vec![
            copy("a", 1, b"first"),
            short,
            damaged,
            copy("newer", 2, b"stale"),
            copy("large", 1, &large),
            copy("b", 1, b""),
        ];
        let request = DataRequest { term: 1, op: DataOp::PutSmall(batch) };
        let (reply, _) = replies(&exchange(&service, vec![codec::encode_frame(&request).unwrap()]).await);
        let DataReply::HeldEach(outcomes) = reply else { panic!("{reply:?}") };
        assert_eq!(outcomes.len(), 6, "{outcomes:?}");
        assert!(matches!(&outcomes[0], Ok(meta) if meta.key.as_str() == "a"), "{outcomes:?}");
        assert!(matches!(&outcomes[1], Err(DataFailure::Other(why)) if why.contains("announced")), "{outcomes:?}");
        assert!(matches!(&outcomes[2], Err(DataFailure::Other(why)) if why.contains("SHA-256")), "{outcomes:?}");
        assert!(matches!(&outcomes[3], Err(DataFailure::Stale { .. })), "{outcomes:?}");
        assert!(matches!(&outcomes[4], Err(DataFailure::Other(why)) if why.contains("too large")), "{outcomes:?}");
        assert!(matches!(&outcomes[5], Ok(meta) if meta.size == 0), "{outcomes:?}");
        assert_eq!(get(&service, "a").await.1, b"first");
        assert_eq!(get(&service, "newer").await.1, b"held at 5");
        for key in ["short", "damaged", "large"] {
            assert_eq!(get(&service, key).await.0, DataReply::Failed(DataFailure::NotFound), "{key}");
        }
        // A deposed console's batch stores nothing.
        let (service, _dir) = self::service();
        exchange(&service, put_frames(3, "c", 1, b"term 3")).await;
        let request = DataRequest { term: 2, op: DataOp::PutSmall(vec![copy("d", 1, b"old term")]) };
        let (reply, _) = replies(&exchange(&service, vec![codec::encode_frame(&request).unwrap()]).await);
        assert_eq!(reply, DataReply::Failed(DataFailure::Deposed { seen: 3 }));
        assert_eq!(service.usage().objects, 1, "only \"c\" is held");
    }
}
