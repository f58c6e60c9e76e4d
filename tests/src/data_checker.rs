//! A checker of the data store's promises under faults (README.md, "Data"):
//! several clients put and get a small set of keys at quorum through the
//! real `ringwatch data` command line while a nemesis `kill -9`s and
//! restarts agents one at a time; every operation goes into a history,
//! which [`check`] judges:
//!
//! - **no lost or stale write**: a read that started after a put was
//!   acknowledged returns that put's version or a newer one, never an
//!   older one nor "not found"; the final reads, made once every agent is
//!   back, succeed;
//! - **no going back**: a client's successive quorum reads of a key never
//!   return a lower version than one it read before (nor lower than a put
//!   it had acknowledged before: its own puts are among those of the rule
//!   above);
//! - **no invented bytes**: a read returns the bytes of a put of that key,
//!   and, at a version a put reported as its own, that put's bytes.
//!
//! Every payload names its put on its first line (key, client, sequence
//! number), so a read's bytes tell which put wrote them. The version of a
//! put comes from `data put --json` (the object as stored: a put overtaken
//! by a concurrent newer one reports the newer version and its checksum),
//! the version of a read from `data get -o FILE --json`.
//!
//! The run is bounded by a number of operations, not by time: each client
//! makes its share, and the nemesis paces its kills and restarts by the
//! operations completed in between.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ringwatch_shared::data::Version;
use serde::Deserialize;

use crate::fleet::Fleet;
use crate::poll::{self, Step};
use crate::{LIVENESS, bins, process};

/// The client id of the reads made at the end, once every agent is back.
pub const FINAL: usize = usize::MAX;

/// Which put wrote some bytes: the client and its operation number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    /// The client.
    pub client: usize,
    /// The client's operation number.
    pub seq: usize,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}#{}", self.client, self.seq)
    }
}

/// The bytes the put `tag` writes to `key`: a first line naming them (and
/// their length, so a cut copy is not a shorter payload), then filler that
/// depends on the tag, `len` bytes in all (at least the first line).
pub fn payload(key: &str, tag: Tag, len: usize) -> Vec<u8> {
    let mut bytes = format!("{key} {} {} {len}\n", tag.client, tag.seq).into_bytes();
    let seed = (tag.client as u64).wrapping_mul(1_000_003).wrapping_add(tag.seq as u64);
    let mut state = seed | 1;
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push(b'a' + (state % 26) as u8);
    }
    bytes
}

/// The put whose bytes `bytes` are, if they are exactly the [`payload`] of
/// a put of `key`.
pub fn tag_of(key: &str, bytes: &[u8]) -> Option<Tag> {
    let line_end = bytes.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..line_end]).ok()?;
    let rest = line.strip_prefix(key)?.strip_prefix(' ')?;
    let mut fields = rest.split(' ');
    let tag = Tag { client: fields.next()?.parse().ok()?, seq: fields.next()?.parse().ok()? };
    let len: usize = fields.next()?.parse().ok()?;
    (fields.next().is_none() && payload(key, tag, len) == bytes).then_some(tag)
}

/// The SHA-256 of `bytes`, lowercase hex (as the store's checksums).
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// What an operation asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A quorum put of the payload named by the tag.
    Put(Tag),
    /// A quorum get.
    Get,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A put acknowledged: the version the console reported as stored, and
    /// whether that version holds this put's own bytes (a put overtaken by
    /// a concurrent newer one reports the newer).
    Stored {
        /// The version reported.
        version: Version,
        /// Whether it is this put's own.
        own: bool,
    },
    /// A get returned bytes: their version, and the put they are from
    /// (`None`: no put's).
    Read {
        /// The version reported.
        version: Version,
        /// The put whose payload the bytes are.
        tag: Option<Tag>,
    },
    /// Exit 4: no such key.
    NotFound,
    /// Anything else (exit code and message, or a timeout): a failed put may
    /// or may not have been stored.
    Failed(String),
    /// Exit 0 with output the checker cannot read.
    Garbled(String),
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client ([`FINAL`] for the reads at the end).
    pub client: usize,
    /// The key.
    pub key: String,
    /// What it asked.
    pub call: Call,
    /// When it started, since the run began.
    pub start: Duration,
    /// When it ended.
    pub end: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

impl Op {
    /// The version a successful put or get reported.
    pub fn version(&self) -> Option<Version> {
        match self.outcome {
            Outcome::Stored { version, .. } | Outcome::Read { version, .. } => Some(version),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:.3}s..{:.3}s] ", self.start.as_secs_f64(), self.end.as_secs_f64())?;
        if self.client == FINAL {
            write!(f, "final ")?;
        } else {
            write!(f, "client {} ", self.client)?;
        }
        match self.call {
            Call::Put(tag) => write!(f, "put {} ({tag})", self.key)?,
            Call::Get => write!(f, "get {}", self.key)?,
        }
        match &self.outcome {
            Outcome::Stored { version, own: true } => write!(f, " -> stored at {version}"),
            Outcome::Stored { version, own: false } => write!(f, " -> stored, overtaken by {version}"),
            Outcome::Read { version, tag: Some(tag) } => write!(f, " -> {version} ({tag})"),
            Outcome::Read { version, tag: None } => write!(f, " -> {version} (bytes of no put)"),
            Outcome::NotFound => write!(f, " -> not found"),
            Outcome::Failed(why) => write!(f, " -> failed: {why}"),
            Outcome::Garbled(why) => write!(f, " -> unreadable answer: {why}"),
        }
    }
}

/// A broken promise, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A read that started after `put` was acknowledged returned an older
    /// version, or "not found".
    StaleRead {
        /// The newest put acknowledged before the read started.
        put: Op,
        /// The read.
        read: Op,
    },
    /// A final read, once every agent was back, failed or found nothing
    /// although `put` (the newest acknowledged, if any) had been stored.
    LostWrite {
        /// The newest acknowledged put of the key.
        put: Option<Op>,
        /// The final read.
        read: Op,
    },
    /// A client's read returned a lower version than one it read before.
    WentBack {
        /// The client's earlier read.
        earlier: Op,
        /// The read.
        read: Op,
    },
    /// A read returned bytes no put of the key wrote.
    UnknownBytes {
        /// The read.
        read: Op,
    },
    /// A read at a version returned other bytes than the put that wrote
    /// that version (or than another read of the same version).
    WrongBytes {
        /// The put (or read) that tells whose bytes that version holds.
        writer: Op,
        /// The read.
        read: Op,
    },
    /// An operation reported success with output the checker cannot read.
    Garbled {
        /// The operation.
        op: Op,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StaleRead { put, read } => {
                write!(f, "stale read: {read}\n    although acknowledged before it started: {put}")
            }
            Self::LostWrite { put: Some(put), read } => {
                write!(f, "lost write: {read}\n    although acknowledged: {put}")
            }
            Self::LostWrite { put: None, read } => write!(f, "unavailable at the end: {read}"),
            Self::WentBack { earlier, read } => {
                write!(f, "read went back in time: {read}\n    after the same client's {earlier}")
            }
            Self::UnknownBytes { read } => write!(f, "bytes no put wrote: {read}"),
            Self::WrongBytes { writer, read } => {
                write!(f, "wrong bytes for the version: {read}\n    but that version is {writer}")
            }
            Self::Garbled { op } => write!(f, "unreadable answer: {op}"),
        }
    }
}

/// Judges a history (any order; operations of one client must not
/// overlap). Returns every violation found, at most one per read.
pub fn check(history: &[Op]) -> Vec<Violation> {
    let mut violations = Vec::new();
    // Puts issued per key (whatever their outcome), and for each version a
    // put reported as its own, that put.
    let mut issued: BTreeMap<&str, BTreeSet<Tag>> = BTreeMap::new();
    let mut writers: BTreeMap<(&str, Version), &Op> = BTreeMap::new();
    for op in history {
        if let Call::Put(tag) = op.call {
            issued.entry(&op.key).or_default().insert(tag);
            if let Outcome::Stored { version, own: true } = op.outcome {
                writers.entry((&op.key, version)).or_insert(op);
            }
        }
        if let Outcome::Garbled(_) = op.outcome {
            violations.push(Violation::Garbled { op: op.clone() });
        }
    }
    let mut reads: Vec<&Op> = history.iter().filter(|op| op.call == Call::Get).collect();
    reads.sort_by_key(|op| (op.start, op.end));
    let acked: Vec<&Op> = history.iter().filter(|op| matches!(op.outcome, Outcome::Stored { .. })).collect();
    // The first read seen at each version, for reads at versions no put
    // reported as its own.
    let mut seen: BTreeMap<(&str, Version), &Op> = BTreeMap::new();
    // Each client's newest read of each key.
    let mut newest_read: BTreeMap<(usize, &str), &Op> = BTreeMap::new();
    for read in reads {
        let key = read.key.as_str();
        let before =
            acked.iter().filter(|put| put.key == key && put.end < read.start).max_by_key(|put| put.version()).copied();
        let bad_bytes = match read.outcome {
            Outcome::Read { version, tag } => {
                let known = tag.is_some_and(|tag| issued.get(key).is_some_and(|tags| tags.contains(&tag)));
                let writer = writers.get(&(key, version)).or_else(|| seen.get(&(key, version))).copied();
                let other = writer.filter(|writer| tag_at(writer) != tag);
                seen.entry((key, version)).or_insert(read);
                if !known {
                    Some(Violation::UnknownBytes { read: read.clone() })
                } else {
                    other.map(|writer| Violation::WrongBytes { writer: writer.clone(), read: read.clone() })
                }
            }
            _ => None,
        };
        let stale = match (&read.outcome, before) {
            (Outcome::Read { version, .. }, Some(put)) if Some(*version) < put.version() => {
                Some(Violation::StaleRead { put: put.clone(), read: read.clone() })
            }
            (Outcome::NotFound, Some(put)) if read.client != FINAL => {
                Some(Violation::StaleRead { put: put.clone(), read: read.clone() })
            }
            (Outcome::NotFound, Some(put)) => Some(Violation::LostWrite { put: Some(put.clone()), read: read.clone() }),
            (Outcome::Failed(_), put) if read.client == FINAL => {
                Some(Violation::LostWrite { put: put.cloned(), read: read.clone() })
            }
            _ => None,
        };
        let went_back = if read.client == FINAL {
            None
        } else {
            let earlier = newest_read.get(&(read.client, key)).copied();
            let back = match (earlier.and_then(Op::version), &read.outcome) {
                (Some(was), Outcome::Read { version, .. }) => *version < was,
                (Some(_), Outcome::NotFound) => true,
                _ => false,
            };
            if matches!(read.outcome, Outcome::Read { .. }) {
                newest_read.insert((read.client, key), read);
            }
            earlier.filter(|_| back).map(|earlier| Violation::WentBack { earlier: earlier.clone(), read: read.clone() })
        };
        // One violation per read: the most telling.
        if let Some(violation) = bad_bytes.or(stale).or(went_back) {
            violations.push(violation);
        }
    }
    violations
}

/// The tag of the bytes an operation wrote or read.
fn tag_at(op: &Op) -> Option<Tag> {
    match (op.call, &op.outcome) {
        (Call::Put(tag), _) => Some(tag),
        (Call::Get, Outcome::Read { tag, .. }) => *tag,
        _ => None,
    }
}

/// What the clients do.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Concurrent clients.
    pub clients: usize,
    /// Operations each client makes.
    pub ops_per_client: usize,
    /// Keys they share: `checked/0` … .
    pub keys: usize,
    /// One operation in this many is a put (the rest are gets).
    pub put_one_in: usize,
    /// The size of each put's payload.
    pub payload_len: usize,
    /// Operations completed (by all clients together) between two faults.
    pub ops_between_faults: usize,
    /// How long one command may take before it counts as failed.
    pub op_timeout: Duration,
    /// Seeds the clients' choice of keys and operations.
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            clients: 3,
            ops_per_client: 40,
            keys: 4,
            put_one_in: 2,
            payload_len: 2000,
            ops_between_faults: 8,
            op_timeout: Duration::from_secs(60),
            seed: 0x5eed,
        }
    }
}

impl Workload {
    /// The name of key `index`.
    pub fn key(index: usize) -> String {
        format!("checked/{index}")
    }
}

/// A fault the nemesis injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When, since the run began.
    pub at: Duration,
    /// What (`kill -9 b`, `restart b`).
    pub what: String,
}

/// A finished run: the history and the faults.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Every operation, the final reads included, in the order they ended.
    pub history: Vec<Op>,
    /// The faults, in order.
    pub faults: Vec<Fault>,
}

impl Run {
    /// The violations in the history ([`check`]).
    pub fn violations(&self) -> Vec<Violation> {
        check(&self.history)
    }

    /// A few lines: operations by kind and outcome, faults, and each key's
    /// final version.
    pub fn summary(&self) -> String {
        let count = |pred: &dyn Fn(&Op) -> bool| self.history.iter().filter(|op| pred(op)).count();
        let puts = |op: &Op| matches!(op.call, Call::Put(_));
        let gets = |op: &Op| op.call == Call::Get && op.client != FINAL;
        let mut out = format!(
            "{} operations: {} puts ({} acknowledged, {} overtaken, {} failed), {} gets ({} read, {} not found, {} failed)",
            count(&|op| op.client != FINAL),
            count(&puts),
            count(&|op| puts(op) && matches!(op.outcome, Outcome::Stored { .. })),
            count(&|op| puts(op) && matches!(op.outcome, Outcome::Stored { own: false, .. })),
            count(&|op| puts(op) && matches!(op.outcome, Outcome::Failed(_))),
            count(&gets),
            count(&|op| gets(op) && matches!(op.outcome, Outcome::Read { .. })),
            count(&|op| gets(op) && op.outcome == Outcome::NotFound),
            count(&|op| gets(op) && matches!(op.outcome, Outcome::Failed(_))),
        );
        let faults: Vec<&str> = self.faults.iter().map(|fault| fault.what.as_str()).collect();
        out.push_str(&format!("\nfaults ({}): {}", faults.len(), faults.join(", ")));
        for op in self.history.iter().filter(|op| op.client == FINAL) {
            out.push_str(&format!("\n{op}"));
        }
        out
    }

    /// The history, one operation or fault a line, in the order they
    /// started.
    pub fn history_text(&self) -> String {
        let ops = self.history.iter().map(|op| (op.start, op.to_string()));
        let faults =
            self.faults.iter().map(|fault| (fault.at, format!("[{:.3}s] {}", fault.at.as_secs_f64(), fault.what)));
        let mut lines: Vec<(Duration, String)> = ops.chain(faults).collect();
        lines.sort_by_key(|(at, _)| *at);
        lines.into_iter().map(|(_, line)| line + "\n").collect()
    }
}

/// A tiny deterministic generator (xorshift64): the clients' choices are
/// reproducible from the workload's seed.
#[derive(Debug, Clone)]
struct Choices(u64);

impl Choices {
    fn new(seed: u64, client: usize) -> Self {
        Self((seed ^ (client as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// `data put --json`'s answer, as far as the checker reads it.
#[derive(Debug, Deserialize)]
struct StoredJson {
    version: Version,
    checksum: String,
}

/// `data get --json`'s answer.
#[derive(Debug, Deserialize)]
struct ReadJson {
    version: Version,
}

/// One client's view of the cluster: the console's data dir and its own
/// files.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client id.
    pub id: usize,
    /// Where admin commands find the console.
    pub data_dir: PathBuf,
    /// The client's own files (payloads, read bytes).
    pub dir: PathBuf,
    /// How long one command may take.
    pub timeout: Duration,
    /// Payload size.
    pub payload_len: usize,
}

impl Client {
    /// `ringwatch data ARGS… --data-dir DIR`: the output, or why it did not
    /// finish.
    fn data(&self, args: &[&str]) -> Result<process::Output, String> {
        let mut all = vec!["data"];
        all.extend_from_slice(args);
        all.push("--data-dir");
        let data_dir = self.data_dir.to_string_lossy();
        all.push(&data_dir);
        process::run(&bins::ringwatch(), &all, self.timeout).map_err(|err| format!("{err:#}"))
    }

    /// Puts the payload of put `seq` under `key` at quorum.
    pub fn put(&self, started: Instant, key: &str, seq: usize) -> Op {
        let tag = Tag { client: self.id, seq };
        let bytes = payload(key, tag, self.payload_len);
        let file = self.dir.join(format!("put-{seq}"));
        let start = started.elapsed();
        let outcome = match std::fs::write(&file, &bytes) {
            Err(err) => Outcome::Failed(format!("cannot write {}: {err}", file.display())),
            Ok(()) => match self.data(&["put", key, &file.to_string_lossy(), "--consistency", "quorum", "--json"]) {
                Ok(output) if output.status.success() => match serde_json::from_str::<StoredJson>(&output.stdout) {
                    Ok(stored) => {
                        Outcome::Stored { version: stored.version, own: stored.checksum == sha256_hex(&bytes) }
                    }
                    Err(err) => Outcome::Garbled(format!("{err}: {output}")),
                },
                Ok(output) => Outcome::Failed(failure(&output)),
                Err(why) => Outcome::Failed(why),
            },
        };
        let _ = std::fs::remove_file(&file);
        Op { client: self.id, key: key.to_owned(), call: Call::Put(tag), start, end: started.elapsed(), outcome }
    }

    /// Gets `key` at quorum.
    pub fn get(&self, started: Instant, key: &str) -> Op {
        let file = self.dir.join("got");
        let _ = std::fs::remove_file(&file);
        let start = started.elapsed();
        let outcome = match self.data(&["get", key, "-o", &file.to_string_lossy(), "--consistency", "quorum", "--json"])
        {
            Ok(output) if output.status.success() => {
                match (serde_json::from_str::<ReadJson>(&output.stdout), std::fs::read(&file)) {
                    (Ok(read), Ok(bytes)) => Outcome::Read { version: read.version, tag: tag_of(key, &bytes) },
                    (Err(err), _) => Outcome::Garbled(format!("{err}: {output}")),
                    (_, Err(err)) => Outcome::Garbled(format!("no bytes in {}: {err}: {output}", file.display())),
                }
            }
            Ok(output) if output.status.code() == Some(4) => Outcome::NotFound,
            Ok(output) => Outcome::Failed(failure(&output)),
            Err(why) => Outcome::Failed(why),
        };
        Op { client: self.id, key: key.to_owned(), call: Call::Get, start, end: started.elapsed(), outcome }
    }
}

/// A failed command, in one line: its exit and the last line it wrote.
fn failure(output: &process::Output) -> String {
    let last = output.stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("");
    format!("{}: {last}", output.status)
}

/// The victim that stands for the console: [`run`] kills it (`kill -9`)
/// and starts it again on the same data dir and port at once.
pub const CONSOLE: &str = "console";

/// Runs `workload` against `fleet` while the nemesis kills (`kill -9`) and
/// restarts the agents named in `victims`, one at a time and one after the
/// other (each restarted once the console has declared it failed; the
/// console, [`CONSOLE`], at once), every
/// [`Workload::ops_between_faults`] operations; then waits until all agents
/// are alive, and reads each key
/// at quorum (retrying while not enough replicas answer). Files go under
/// `dir`.
///
/// # Panics
/// When the clients stop making progress or an agent does not come back.
#[track_caller]
pub fn run(fleet: &mut Fleet, dir: &Path, victims: &[&str], workload: &Workload) -> Run {
    let started = Instant::now();
    let history = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let clients: Vec<Client> = (0..workload.clients)
        .map(|id| {
            let dir = dir.join(format!("client-{id}"));
            std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
            Client {
                id,
                data_dir: fleet.data_dir().to_path_buf(),
                dir,
                timeout: workload.op_timeout,
                payload_len: workload.payload_len,
            }
        })
        .collect();
    let mut faults = Vec::new();
    thread::scope(|scope| {
        for client in &clients {
            let (history, done, finished) = (&history, &done, &finished);
            scope.spawn(move || {
                let mut choices = Choices::new(workload.seed, client.id);
                for seq in 0..workload.ops_per_client {
                    let key = Workload::key(choices.below(workload.keys));
                    let op = if choices.below(workload.put_one_in) == 0 {
                        client.put(started, &key, seq)
                    } else {
                        client.get(started, &key)
                    };
                    history.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(op);
                    done.fetch_add(1, Ordering::SeqCst);
                }
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        // The nemesis: kill one victim, wait until the console has declared
        // it failed (puts then go elsewhere), bring it back, let some
        // operations run with everyone up, next victim. Restarting it as
        // soon as it is failed keeps the run short: the operations that
        // were waiting on its dead connection end when the new one
        // replaces it, rather than at the connection's idle timeout.
        let all_finished = || finished.load(Ordering::SeqCst) == workload.clients;
        let wait_ops = |count: usize| {
            let target = done.load(Ordering::SeqCst) + count;
            let progress = || {
                if done.load(Ordering::SeqCst) >= target || all_finished() {
                    Step::Done(())
                } else {
                    Step::Pending(format!("{} of {target} operations done", done.load(Ordering::SeqCst)))
                }
            };
            // Every command ends within the op timeout, so operations keep completing.
            poll::until(workload.op_timeout * 2, Duration::from_millis(20), progress)
                .unwrap_or_else(|failure| panic!("the clients stopped making progress: {failure}"));
        };
        let mut next = 0;
        while !all_finished() && !victims.is_empty() {
            let victim = victims[next % victims.len()];
            next += 1;
            if victim == CONSOLE {
                // Operations fail fast while no console runs: the faults
                // are spaced by operations with every agent connected.
                wait_ops(workload.ops_between_faults);
                if all_finished() {
                    break;
                }
                // Whether the kill caught a fold of the change log under
                // way (its file is there only then).
                let folding_file = fleet.data_dir().join("state.wal.folding");
                let mut folding = false;
                fleet.restart_console_after(|| folding = folding_file.exists());
                let what = if folding {
                    "kill -9 console (a fold of its change log under way), restart console"
                } else {
                    "kill -9 console, restart console"
                };
                faults.push(Fault { at: started.elapsed(), what: what.into() });
                fleet.wait_all_alive(LIVENESS * 2);
                continue;
            }
            fleet.agent(victim).kill9();
            faults.push(Fault { at: started.elapsed(), what: format!("kill -9 {victim}") });
            fleet.console.wait_for_within(LIVENESS, &format!("{victim} failed"), |status| {
                status.is(victim, &crate::NodeState::Failed)
            });
            fleet.restart_agent(victim);
            faults.push(Fault { at: started.elapsed(), what: format!("restart {victim}") });
            fleet.console.wait_for_within(LIVENESS * 2, &format!("{victim} alive again"), |status| {
                status.is(victim, &crate::NodeState::Alive)
            });
            if !all_finished() {
                wait_ops(workload.ops_between_faults);
            }
        }
    });
    fleet.wait_all_alive(LIVENESS * 2);
    let mut history = history.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    // The final reads: every agent is back with its copies.
    let verifier = Client { id: FINAL, ..clients.first().cloned().unwrap_or_else(|| panic!("no clients")) };
    for index in 0..workload.keys {
        let key = Workload::key(index);
        let mut last = None;
        let _ = poll::until(LIVENESS, Duration::from_millis(200), || {
            let op = verifier.get(started, &key);
            let settled = matches!(op.outcome, Outcome::Read { .. } | Outcome::NotFound | Outcome::Garbled(_));
            let seen = op.to_string();
            last = Some(op);
            if settled { Step::Done(()) } else { Step::Pending(seen) }
        });
        history.extend(last);
    }
    Run { history, faults }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const fn v(counter: u64) -> Version {
        Version { term: 0, counter }
    }

    fn at(start: u64, end: u64) -> (Duration, Duration) {
        (Duration::from_millis(start), Duration::from_millis(end))
    }

    fn put(client: usize, seq: usize, key: &str, span: (u64, u64), outcome: Outcome) -> Op {
        let (start, end) = at(span.0, span.1);
        Op { client, key: key.into(), call: Call::Put(Tag { client, seq }), start, end, outcome }
    }

    fn stored(version: u64) -> Outcome {
        Outcome::Stored { version: v(version), own: true }
    }

    fn get(client: usize, key: &str, span: (u64, u64), outcome: Outcome) -> Op {
        let (start, end) = at(span.0, span.1);
        Op { client, key: key.into(), call: Call::Get, start, end, outcome }
    }

    fn read(version: u64, client: usize, seq: usize) -> Outcome {
        Outcome::Read { version: v(version), tag: Some(Tag { client, seq }) }
    }

    /// Two clients writing and reading one key, everything in order; a
    /// concurrent read may see the older or the newer version.
    fn correct() -> Vec<Op> {
        vec![
            put(0, 0, "k", (0, 10), stored(1)),
            get(1, "k", (11, 20), read(1, 0, 0)),
            put(1, 1, "k", (21, 30), stored(2)),
            // Concurrent with the put of version 3: either is fine.
            get(0, "k", (31, 40), read(2, 1, 1)),
            put(1, 2, "k", (32, 45), stored(3)),
            get(0, "k", (41, 50), read(3, 1, 2)),
            // A failed put may or may not have been stored.
            put(0, 3, "k", (51, 60), Outcome::Failed("exit status: 5".into())),
            get(1, "k", (61, 70), read(4, 0, 3)),
            get(0, "j", (71, 80), Outcome::NotFound),
            get(1, "j", (71, 80), Outcome::Failed("exit status: 5".into())),
            // An overtaken put reports the version that overtook it.
            put(0, 4, "k", (81, 95), Outcome::Stored { version: v(6), own: false }),
            put(1, 5, "k", (82, 90), stored(6)),
            get(FINAL, "k", (100, 110), read(6, 1, 5)),
            get(FINAL, "j", (100, 110), Outcome::NotFound),
        ]
    }

    #[test]
    fn a_correct_history_passes() {
        let violations = check(&correct());
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn a_stale_read_is_caught() {
        let mut history = correct();
        // Read after the put of version 3 was acknowledged, at version 2.
        history.push(get(1, "k", (46, 49), read(2, 1, 1)));
        let violations = check(&history);
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert!(
            matches!(&violations[0], Violation::StaleRead { put, read } if put.version() == Some(v(3)) && read.version() == Some(v(2))),
            "{}",
            violations[0]
        );
        assert!(violations[0].to_string().starts_with("stale read:"), "{}", violations[0]);
    }

    #[test]
    fn a_read_of_not_found_after_an_acknowledged_put_is_stale() {
        let history = vec![put(0, 0, "k", (0, 10), stored(1)), get(1, "k", (11, 20), Outcome::NotFound)];
        assert!(matches!(check(&history)[..], [Violation::StaleRead { .. }]));
    }

    #[test]
    fn a_lost_write_is_caught() {
        // The final read finds an older version than the last acknowledged put…
        let mut history = correct();
        let last = history.iter().position(|op| op.client == FINAL && op.key == "k").unwrap();
        history[last].outcome = read(3, 1, 2);
        let violations = check(&history);
        assert!(matches!(violations[..], [Violation::StaleRead { .. }]), "{violations:#?}");
        // …or nothing at all…
        history[last].outcome = Outcome::NotFound;
        let violations = check(&history);
        assert!(matches!(&violations[..], [Violation::LostWrite { put: Some(_), .. }]), "{violations:#?}");
        assert!(violations[0].to_string().starts_with("lost write:"), "{}", violations[0]);
        // …or cannot be made once every agent is back.
        history[last].outcome = Outcome::Failed("exit status: 5".into());
        assert!(matches!(check(&history)[..], [Violation::LostWrite { put: Some(_), .. }]));
    }

    #[test]
    fn a_client_read_going_back_in_time_is_caught() {
        // Version 2 was never acknowledged before the second read started
        // (the put is still running), but the client had read it already.
        let history = vec![
            put(0, 0, "k", (0, 10), stored(1)),
            put(0, 1, "k", (11, 100), stored(2)),
            get(1, "k", (20, 30), read(2, 0, 1)),
            get(1, "k", (31, 40), read(1, 0, 0)),
        ];
        let violations = check(&history);
        assert!(
            matches!(&violations[..], [Violation::WentBack { earlier, read }] if earlier.version() == Some(v(2)) && read.version() == Some(v(1))),
            "{violations:#?}"
        );
        // Another client may still read the older version then.
        let history = vec![
            put(0, 0, "k", (0, 10), stored(1)),
            put(0, 1, "k", (11, 100), stored(2)),
            get(1, "k", (20, 30), read(2, 0, 1)),
            get(2, "k", (31, 40), read(1, 0, 0)),
        ];
        assert!(check(&history).is_empty());
    }

    #[test]
    fn bytes_no_put_wrote_or_another_puts_bytes_are_caught() {
        let history = vec![put(0, 0, "k", (0, 10), stored(1)), get(1, "k", (11, 20), read(1, 7, 7))];
        assert!(matches!(check(&history)[..], [Violation::UnknownBytes { .. }]));
        let history = vec![
            put(0, 0, "k", (0, 10), Outcome::Stored { version: v(1), own: true }),
            get(1, "k", (11, 20), Outcome::Read { version: v(1), tag: None }),
        ];
        assert!(matches!(check(&history)[..], [Violation::UnknownBytes { .. }]));
        // Both puts were issued, but version 1 is the first one's.
        let history = vec![
            put(0, 0, "k", (0, 10), stored(1)),
            put(0, 1, "k", (11, 20), Outcome::Failed("timed out".into())),
            get(1, "k", (21, 30), read(1, 0, 1)),
        ];
        assert!(matches!(check(&history)[..], [Violation::WrongBytes { .. }]));
        // A version no put reported as its own: two reads must agree.
        let history = vec![
            put(0, 0, "k", (0, 10), Outcome::Failed("timed out".into())),
            put(0, 1, "k", (11, 20), Outcome::Failed("timed out".into())),
            get(1, "k", (21, 30), read(5, 0, 0)),
            get(1, "k", (31, 40), read(5, 0, 1)),
        ];
        assert!(matches!(check(&history)[..], [Violation::WrongBytes { .. }]));
    }

    #[test]
    fn payloads_name_their_put_and_nothing_else_passes_for_one() {
        let tag = Tag { client: 2, seq: 17 };
        let bytes = payload("checked/1", tag, 500);
        assert_eq!(bytes.len(), 500);
        assert_eq!(tag_of("checked/1", &bytes), Some(tag));
        assert_eq!(tag_of("checked/2", &bytes), None, "another key's bytes");
        let mut changed = bytes.clone();
        changed[400] ^= 1;
        assert_eq!(tag_of("checked/1", &changed), None, "a flipped byte");
        assert_eq!(tag_of("checked/1", &bytes[..499]), None, "a short read");
        assert_ne!(payload("checked/1", Tag { client: 2, seq: 18 }, 500), bytes);
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn the_summary_counts_outcomes() {
        let run = Run { history: correct(), faults: vec![Fault { at: Duration::ZERO, what: "kill -9 b".into() }] };
        let summary = run.summary();
        assert!(
            summary.starts_with("12 operations: 6 puts (5 acknowledged, 1 overtaken, 1 failed), 6 gets"),
            "{summary}"
        );
        assert!(summary.contains("kill -9 b"), "{summary}");
        assert_eq!(run.history_text().lines().count(), 15);
    }
}
