//! `ringwatch data`: the replicated data store's command line (README.md,
//! "Data"). Every command is an admin request like `status`: to the console
//! of the local data dir, or with `--credential` to one elsewhere (a viewer
//! may `get`, `ls` and `stat`; the console refuses its `put` and `rm`).
//!
//! Bytes are never held whole in memory: a put hashes its FILE (or spools
//! standard input to a private temporary file while hashing it), then
//! streams it in [`CHUNK_LEN`] frames; a get streams the chunks it receives
//! to standard output or to a temporary file beside `-o FILE`, which is
//! renamed over FILE only once the size and SHA-256 match the object's.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{IsTerminal as _, Read, Seek as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use ring::digest::{Context as Sha256, SHA256};
use ringwatch::control::admin::{AdminClient, AdminError, AnswerStream, Target};
use ringwatch::report::{columns, human_bytes};
use ringwatch_shared::codec;
use ringwatch_shared::data::wire::{CHUNK_LEN, DataChunk};
use ringwatch_shared::data::{Consistency, DataError, ObjectKey, ObjectMeta, ObjectStat};
use ringwatch_shared::protocol::{AdminRequest, AdminResponse, DataPut};
use ringwatch_shared::token::to_hex;
use serde::Serialize;
use tokio::io::AsyncWrite;

use crate::{NOT_RUNNING, ask, standby_refusal};

/// Exit code when the key does not exist ([`DataError::NotFound`]).
pub(crate) const NOT_FOUND: u8 = 4;
/// Exit code when too few replicas are live for the consistency asked
/// ([`DataError::NotEnough`]).
pub(crate) const NOT_ENOUGH: u8 = 5;
/// Exit code of a get interrupted by Ctrl-C (128 + SIGINT, as a shell
/// reports it).
const INTERRUPTED: u8 = 130;
/// The largest object (README.md, "Data"): refused before anything is sent.
pub(crate) const MAX_OBJECT_SIZE: u64 = 1 << 30;

/// What `data --help` says after the commands.
pub(crate) const EXIT_CODES: &str = "Exit codes: 0 done; 1 refused or failed (a missing FILE, a viewer's put or rm, \
bytes that did not match); 2 a bad command line (an invalid KEY); 3 no console runs or answers; 4 no such key; \
5 not enough live replicas for the consistency asked (the message names the nodes that hold the object and \
their states).";

/// `ringwatch data …`.
#[derive(Debug, Subcommand)]
pub(crate) enum DataCommand {
    /// Stores FILE (or standard input: `-` or no FILE) under KEY, on
    /// --replicas nodes; prints the version and the replicas that
    /// acknowledged it. A later put of the same key replaces it.
    ///
    /// The SHA-256 and size are computed before anything is sent (standard
    /// input is first copied to a private temporary file in $TMPDIR); every
    /// replica checks them before it acknowledges.
    #[command(after_help = EXIT_CODES)]
    Put {
        /// The key: UTF-8, 1 byte to 1 KiB, no control characters.
        #[arg(value_parser = parse_key)]
        key: ObjectKey,
        /// The bytes to store, up to 1 GiB; `-` or none: standard input.
        #[arg(value_name = "FILE | -")]
        file: Option<PathBuf>,
        /// How many copies to keep, on distinct nodes [default: the
        /// cluster's: `[data] replicas` in the console's config file, else 3].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=7))]
        replicas: Option<u8>,
        #[command(flatten)]
        consistency: ConsistencyArgs,
        /// Print the stored object as JSON (as `data stat --json`: its
        /// version, size, SHA-256 and the replicas that acknowledged it).
        #[arg(long)]
        json: bool,
    },
    /// Writes the bytes of KEY to standard output, or to FILE with -o.
    ///
    /// With -o, the bytes go to a temporary file beside FILE, which replaces
    /// FILE only once their size and SHA-256 match the object's and they are
    /// on disk: FILE is never left half written. To standard output the bytes
    /// stream as they arrive, so their checksum can only be checked at the
    /// end: if it does not match, `get` says so and exits 1 — discard what it
    /// wrote.
    #[command(after_help = EXIT_CODES)]
    Get {
        /// The key.
        #[arg(value_parser = parse_key)]
        key: ObjectKey,
        /// Write to FILE (replaced atomically) instead of standard output
        /// (`-`).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        consistency: ConsistencyArgs,
        /// Once FILE is written, print what was read as JSON: key,
        /// version, size and SHA-256 (needs -o FILE: standard output
        /// carries the bytes otherwise).
        #[arg(long, requires = "output")]
        json: bool,
    },
    /// Removes KEY from every replica; replicas that are down remove it when
    /// they return.
    #[command(after_help = EXIT_CODES)]
    Rm {
        /// The key.
        #[arg(value_parser = parse_key)]
        key: ObjectKey,
        #[command(flatten)]
        consistency: ConsistencyArgs,
    },
    /// Lists the objects whose keys start with PREFIX (all without one):
    /// key, size, version, live copies of the wanted replicas, SHA-256.
    #[command(after_help = EXIT_CODES)]
    Ls {
        /// Only keys starting with this.
        #[arg(value_name = "PREFIX")]
        prefix: Option<String>,
        /// Print JSON: one object per key, as `data stat --json`.
        #[arg(long)]
        json: bool,
    },
    /// Shows one object: size, version, SHA-256, each replica's node, its
    /// state and version, and how many of the wanted replicas are live.
    #[command(after_help = EXIT_CODES)]
    Stat {
        /// The key.
        #[arg(value_parser = parse_key)]
        key: ObjectKey,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--consistency`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct ConsistencyArgs {
    /// How many replicas must answer: one, quorum (a majority), or all.
    #[arg(long, value_enum, value_name = "LEVEL", default_value = "quorum")]
    consistency: ConsistencyArg,
}

/// A consistency level on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ConsistencyArg {
    /// One replica: available while any replica is.
    One,
    /// A majority of the replicas: a read sees every write acknowledged
    /// at quorum before it.
    Quorum,
    /// Every replica.
    All,
}

impl From<ConsistencyArgs> for Consistency {
    fn from(args: ConsistencyArgs) -> Self {
        match args.consistency {
            ConsistencyArg::One => Self::One,
            ConsistencyArg::Quorum => Self::Quorum,
            ConsistencyArg::All => Self::All,
        }
    }
}

/// Checks a key on the command line, before anything is sent.
fn parse_key(text: &str) -> Result<ObjectKey, String> {
    ObjectKey::parse(text).map_err(|err| format!("{err}; nothing was sent"))
}

/// Runs `ringwatch data …`.
pub(crate) async fn data(target: &Target, command: DataCommand) -> Result<ExitCode> {
    match command {
        DataCommand::Put { key, file, replicas, consistency, json } => {
            put(target, key, file.as_deref(), replicas, consistency.into(), json).await
        }
        DataCommand::Get { key, output, consistency, json } => {
            let to_file = output.as_deref().is_some_and(|path| path != Path::new("-"));
            if json && !to_file {
                anyhow::bail!("data get --json needs -o FILE: standard output carries the bytes otherwise");
            }
            let getting = get(target, key, output.as_deref(), consistency.into(), json);
            // Interrupted, the temporary file beside FILE goes with the
            // dropped future: nothing is left behind.
            tokio::select! {
                code = getting => code,
                _ = tokio::signal::ctrl_c(), if to_file => {
                    eprintln!("ringwatch: interrupted; nothing was written");
                    Ok(ExitCode::from(INTERRUPTED))
                }
            }
        }
        DataCommand::Rm { key, consistency } => {
            let request = AdminRequest::DataRemove { key, consistency: consistency.into() };
            // Not `ask`: its few seconds are for answers from the console's
            // records, and a removal waits for replicas to apply it.
            match exchange(target, &request).await? {
                Ok(AdminResponse::DataStored(stat)) => {
                    outln!("{}", removed_line(&stat));
                    Ok(ExitCode::SUCCESS)
                }
                Ok(other) => unexpected_or_failed(other),
                Err(code) => Ok(code),
            }
        }
        DataCommand::Ls { prefix, json } => {
            let request = AdminRequest::DataList(prefix.clone().unwrap_or_default());
            let objects = match ask(target, &request).await? {
                Ok(AdminResponse::DataListing(objects)) => objects,
                Ok(other) => return unexpected_or_failed(other),
                Err(code) => return Ok(code),
            };
            if json {
                let objects: Vec<StatJson<'_>> = objects.iter().map(StatJson::from).collect();
                outln!("{}", serde_json::to_string_pretty(&objects).context("failed to encode the listing")?);
            } else {
                out!("{}", listing_table(&objects, prefix.as_deref()));
            }
            Ok(ExitCode::SUCCESS)
        }
        DataCommand::Stat { key, json } => {
            let stat = match ask(target, &AdminRequest::DataStat(key)).await? {
                Ok(AdminResponse::DataStat(stat)) => stat,
                Ok(other) => return unexpected_or_failed(other),
                Err(code) => return Ok(code),
            };
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&StatJson::from(&stat)).context("failed to encode the object")?
                );
            } else {
                out!("{}", stat_text(&stat));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The exit code of a failed data request.
pub(crate) fn exit_code(err: &DataError) -> u8 {
    match err {
        DataError::NotFound(_) => NOT_FOUND,
        DataError::NotEnough(_) => NOT_ENOUGH,
        DataError::Refused(_) => 1,
    }
}

/// Says why a data request failed; its exit code.
fn failed(err: &DataError) -> ExitCode {
    eprintln!("ringwatch: error: {err}");
    ExitCode::from(exit_code(err))
}

/// A failure, or an answer no data request gets.
fn unexpected_or_failed(response: AdminResponse) -> Result<ExitCode> {
    match response {
        AdminResponse::DataFailed(err) => Ok(failed(&err)),
        AdminResponse::Error(reason) => anyhow::bail!("{reason}"),
        _ => anyhow::bail!("the console sent an unexpected answer"),
    }
}

/// Connects to `target`; `Err(code)` when no console runs or answers (the
/// message is printed), as [`ask`] does.
async fn connect(target: &Target) -> Result<Result<AdminClient, ExitCode>> {
    match AdminClient::connect(target).await {
        Ok(client) => Ok(Ok(client)),
        Err(err @ (AdminError::NotRunning(_) | AdminError::Unreachable { .. })) => {
            eprintln!("ringwatch: {err}");
            Ok(Err(ExitCode::from(NOT_RUNNING)))
        }
        Err(err) => Err(err.into()),
    }
}

/// Sends `request` and waits for its one answer, as long as the link
/// lives (a dead console is noticed by the link's idle timeout); a remote
/// standby's answer is followed once to the leader it names. `Err(code)`
/// when no console runs or answers (the message is printed).
async fn exchange(target: &Target, request: &AdminRequest) -> Result<Result<AdminResponse, ExitCode>> {
    let mut console = Following::new(target);
    loop {
        let client = match connect(&console.target).await? {
            Ok(client) => client,
            Err(code) => return Ok(Err(code)),
        };
        let response = match client.open(request).await {
            Ok(mut answer) => answer_of(&mut answer).await,
            Err(err) => Err(err.into()),
        };
        client.close().await;
        match response? {
            AdminResponse::NotLeader { leader } => console.follow(leader)?,
            response => return Ok(Ok(response)),
        }
    }
}

/// A data request's console, followed once from a standby to the leader it
/// names (a put, get or rm is not carried out by a standby).
struct Following {
    target: Target,
    followed: bool,
}

impl Following {
    fn new(target: &Target) -> Self {
        Self { target: target.clone(), followed: false }
    }

    /// Goes to the leader a standby named, once; else the standby's refusal.
    fn follow(&mut self, leader: Option<String>) -> Result<()> {
        match leader.as_deref().and_then(|leader| self.target.at_leader(leader)) {
            Some(next) if !self.followed => {
                self.target = next;
                self.followed = true;
                Ok(())
            }
            _ => Err(standby_refusal(&self.target, leader)),
        }
    }
}

/// The size and SHA-256 (hex) of some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digest {
    /// How many bytes.
    pub(crate) size: u64,
    /// Their SHA-256, lowercase hex (as [`ObjectMeta::checksum`]).
    pub(crate) checksum: String,
}

/// Why bytes could not be copied and hashed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    /// More than the limit.
    #[error("more than {} bytes (objects are at most {})", .0, human_bytes(*.0))]
    TooLarge(u64),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Copies `reader` into `sink` a chunk at a time, hashing what passes;
/// refuses more than `limit` bytes (stopping as soon as it sees one more).
///
/// # Errors
/// [`CopyError::TooLarge`] past `limit`; [`CopyError::Io`] when reading
/// or writing fails.
pub(crate) fn copy_hashed(reader: &mut impl Read, sink: &mut impl Write, limit: u64) -> Result<Digest, CopyError> {
    let mut hasher = Sha256::new(&SHA256);
    let mut size = 0u64;
    let mut buf = vec![0; CHUNK_LEN];
    loop {
        let read = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err.into()),
        };
        size = size.saturating_add(read as u64);
        if size > limit {
            return Err(CopyError::TooLarge(limit));
        }
        hasher.update(&buf[..read]);
        sink.write_all(&buf[..read])?;
    }
    sink.flush()?;
    Ok(Digest { size, checksum: to_hex(hasher.finish().as_ref()) })
}

/// The bytes of a put: an open file (FILE, or standard input spooled to an
/// unnamed temporary file), and what they hash to.
#[derive(Debug)]
pub(crate) struct Source {
    /// Read from the start for each upload (again after a standby's
    /// redirect).
    file: File,
    /// Where the bytes come from, for messages.
    name: String,
    /// What they hash to.
    digest: Digest,
}

impl Source {
    /// Opens and hashes FILE, or spools standard input (`None` or `-`).
    /// Nothing is sent yet, so a missing file or an oversized object
    /// changes nothing.
    ///
    /// # Errors
    /// A sentence naming the file and what is wrong with it.
    pub(crate) fn open(file: Option<&Path>) -> Result<Self> {
        match file {
            Some(path) if path != Path::new("-") => Self::file(path),
            _ => {
                let stdin = std::io::stdin();
                // A terminal would wait for typing the bytes: surely a FILE was forgotten.
                if file.is_none() && stdin.is_terminal() {
                    anyhow::bail!(
                        "data put reads the bytes from standard input, which is a terminal: pass FILE, or `-` to type them; nothing was sent"
                    );
                }
                Self::spool(&mut stdin.lock())
            }
        }
    }

    /// FILE, hashed from its open handle; streamed later from the same one.
    fn file(path: &Path) -> Result<Self> {
        let name = format!("\"{}\"", path.display());
        let mut file = File::open(path).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => {
                anyhow::anyhow!(
                    "{name} does not exist: pass an existing FILE, or `-` for standard input; nothing was sent"
                )
            }
            _ => anyhow::anyhow!("cannot read {name}: {err}; nothing was sent"),
        })?;
        if file.metadata().with_context(|| format!("cannot read {name}"))?.is_dir() {
            anyhow::bail!("{name} is a directory: pass a file; nothing was sent");
        }
        let digest = copy_hashed(&mut file, &mut std::io::sink(), MAX_OBJECT_SIZE)
            .map_err(|err| anyhow::anyhow!("cannot store {name}: {err}; nothing was sent"))?;
        Ok(Self { file, name, digest })
    }

    /// Copies `input` to a private temporary file (unnamed: removed by the
    /// system whatever happens), hashing it on the way.
    ///
    /// # Errors
    /// When the temporary file cannot be written, or the input is too large.
    pub(crate) fn spool(input: &mut impl Read) -> Result<Self> {
        let name = "standard input".to_string();
        let mut file = tempfile::tempfile().context(
            "failed to create a temporary file for standard input (set TMPDIR to a writable directory); nothing was sent",
        )?;
        let digest = {
            let mut writer = std::io::BufWriter::new(&mut file);
            copy_hashed(input, &mut writer, MAX_OBJECT_SIZE)
                .map_err(|err| anyhow::anyhow!("cannot store {name}: {err}; nothing was sent"))?
        };
        Ok(Self { file, name, digest })
    }

    /// What the bytes hash to.
    pub(crate) fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// Why an upload stopped before its answer.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    /// The source changed since it was hashed: sending it would be refused.
    #[error("{0} changed while it was being sent: put it again once it is complete")]
    Changed(String),
    /// Reading the source failed.
    #[error("failed to read {0}: {1}")]
    Read(String, std::io::Error),
    /// The stream failed.
    #[error("failed to send the bytes to {0}: {1}")]
    Link(String, codec::CodecError),
}

/// Sends the bytes of `source` as chunk frames, then the end, checking they
/// are still what was hashed.
async fn send_bytes(
    send: &mut (impl AsyncWrite + Unpin),
    source: &mut Source,
    console: &str,
) -> Result<(), UploadError> {
    let name = source.name.clone();
    source.file.rewind().map_err(|err| UploadError::Read(name.clone(), err))?;
    let mut hasher = Sha256::new(&SHA256);
    let mut sent = 0u64;
    loop {
        let mut chunk = vec![0; CHUNK_LEN];
        let read = read_full(&mut source.file, &mut chunk).map_err(|err| UploadError::Read(name.clone(), err))?;
        if read == 0 {
            break;
        }
        chunk.truncate(read);
        sent += read as u64;
        if sent > source.digest.size {
            return Err(UploadError::Changed(name));
        }
        hasher.update(&chunk);
        codec::write_frame(send, &DataChunk::Bytes(chunk))
            .await
            .map_err(|err| UploadError::Link(console.to_string(), err))?;
    }
    if sent != source.digest.size || to_hex(hasher.finish().as_ref()) != source.digest.checksum {
        return Err(UploadError::Changed(name));
    }
    codec::write_frame(send, &DataChunk::End).await.map_err(|err| UploadError::Link(console.to_string(), err))
}

/// Reads until `buf` is full or the input ends; how many bytes.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Sends a put and its bytes; the console's answer. The answer is read
/// while the bytes go out: a console that refuses at once (a viewer, a
/// standby, a size no node can take) answers before reading them, and
/// that answer says more than the write error that follows.
async fn upload(client: &AdminClient, request: &AdminRequest, source: &mut Source) -> Result<AdminResponse> {
    let (mut send, mut answer) = client.open_upload(request).await?;
    let reading = answer_of(&mut answer);
    tokio::pin!(reading);
    let sent = {
        let sending = send_bytes(&mut send, source, &client.addr);
        tokio::pin!(sending);
        tokio::select! {
            response = &mut reading => Err(response),
            sent = &mut sending => Ok(sent),
        }
    };
    match sent {
        // Answered before every byte was sent: the rest is unwanted.
        Err(response) => {
            let _ = send.reset(quinn::VarInt::from_u32(0));
            response
        }
        Ok(Ok(())) => {
            let _ = send.finish();
            reading.await
        }
        Ok(Err(err @ UploadError::Link(..))) => match reading.await {
            // The console stopped reading because it answered.
            Ok(response) => Ok(response),
            Err(_) => Err(err.into()),
        },
        Ok(Err(err)) => {
            // The console sees a reset, never an object of the wrong bytes.
            let _ = send.reset(quinn::VarInt::from_u32(0));
            Err(err.into())
        }
    }
}

/// The one answer on `answer`.
async fn answer_of(answer: &mut AnswerStream) -> Result<AdminResponse> {
    answer.next().await?.context("the console closed the stream without answering")
}

/// `ringwatch data put`.
async fn put(
    target: &Target,
    key: ObjectKey,
    file: Option<&Path>,
    replicas: Option<u8>,
    consistency: Consistency,
    json: bool,
) -> Result<ExitCode> {
    let mut source = Source::open(file)?;
    let digest = source.digest().clone();
    let request = AdminRequest::DataPut(DataPut {
        key,
        size: digest.size,
        checksum: digest.checksum.clone(),
        replicas,
        consistency,
    });
    let mut console = Following::new(target);
    loop {
        let client = match connect(&console.target).await? {
            Ok(client) => client,
            Err(code) => return Ok(code),
        };
        let response = upload(&client, &request, &mut source).await;
        client.close().await;
        match response? {
            AdminResponse::DataStored(stat) if json => {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&StatJson::from(&stat)).context("failed to encode the object")?
                );
                return Ok(ExitCode::SUCCESS);
            }
            AdminResponse::DataStored(stat) => {
                outln!("{}", stored_line(&stat));
                return Ok(ExitCode::SUCCESS);
            }
            AdminResponse::NotLeader { leader } => console.follow(leader)?,
            other => return unexpected_or_failed(other),
        }
    }
}

/// Checks bytes as they arrive against the object's size and SHA-256.
pub(crate) struct Verifier {
    /// What the bytes must be.
    expected: Digest,
    /// Bytes seen so far.
    seen: u64,
    hasher: Sha256,
}

/// Bytes that are not the object's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Mismatch {
    /// More bytes than its size.
    #[error("more than the object's {0} bytes arrived")]
    TooLong(u64),
    /// Fewer bytes than its size.
    #[error("{seen} of the object's {size} bytes arrived")]
    TooShort {
        /// Bytes received.
        seen: u64,
        /// The object's size.
        size: u64,
    },
    /// The right size, other bytes.
    #[error("their SHA-256 is {got}, the object's is {expected}")]
    Checksum {
        /// What arrived hashes to this.
        got: String,
        /// The object's.
        expected: String,
    },
}

impl Verifier {
    /// A verifier of `meta`'s bytes.
    pub(crate) fn new(meta: &ObjectMeta) -> Self {
        Self {
            expected: Digest { size: meta.size, checksum: meta.checksum.clone() },
            seen: 0,
            hasher: Sha256::new(&SHA256),
        }
    }

    /// Takes the next bytes.
    ///
    /// # Errors
    /// [`Mismatch::TooLong`] once more bytes than the size arrived.
    pub(crate) fn update(&mut self, bytes: &[u8]) -> Result<(), Mismatch> {
        self.seen = self.seen.saturating_add(bytes.len() as u64);
        if self.seen > self.expected.size {
            return Err(Mismatch::TooLong(self.expected.size));
        }
        self.hasher.update(bytes);
        Ok(())
    }

    /// Checks the whole.
    ///
    /// # Errors
    /// [`Mismatch`] saying how the bytes differ.
    pub(crate) fn finish(self) -> Result<(), Mismatch> {
        if self.seen != self.expected.size {
            return Err(Mismatch::TooShort { seen: self.seen, size: self.expected.size });
        }
        let got = to_hex(self.hasher.finish().as_ref());
        if got != self.expected.checksum {
            return Err(Mismatch::Checksum { got, expected: self.expected.checksum });
        }
        Ok(())
    }
}

/// A file written under a temporary name beside its place and renamed over
/// it once complete and durable; dropped before [`Self::commit`], it
/// leaves nothing behind (and FILE as it was).
#[derive(Debug)]
pub(crate) struct AtomicFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `target`: a temporary file in its directory (a rename
    /// is atomic only within one file system).
    ///
    /// # Errors
    /// When `target` is a directory, or its directory cannot be written.
    pub(crate) fn create(target: &Path) -> Result<Self> {
        if target.is_dir() {
            anyhow::bail!("\"{}\" is a directory: pass a file name to -o", target.display());
        }
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = target.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            // As a file created by any other command: the umask decides.
            std::fs::Permissions::from_mode(0o666)
        };
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".ringwatch-part");
        #[cfg(unix)]
        builder.permissions(mode);
        let temp = builder
            .tempfile_in(dir)
            .with_context(|| format!("cannot write \"{}\" (in \"{}\")", target.display(), dir.display()))?;
        Ok(Self { temp, target: target.to_path_buf() })
    }

    /// Makes the bytes durable, then puts them at the target (replacing
    /// what was there), then makes the rename durable.
    ///
    /// # Errors
    /// When syncing or renaming fails; the target is then unchanged.
    pub(crate) fn commit(self) -> Result<()> {
        let target = self.target;
        self.temp.as_file().sync_all().with_context(|| format!("failed to write \"{}\" to disk", target.display()))?;
        self.temp
            .persist(&target)
            .map_err(|err| anyhow::anyhow!("failed to rename into \"{}\": {}", target.display(), err.error))?;
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        // The rename is durable once the directory is; the bytes are there either way.
        if let Err(err) = File::open(dir).and_then(|dir| dir.sync_all()) {
            tracing::warn!(dir = %dir.display(), %err, "failed to sync the directory");
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.flush()
    }
}

/// Where a get's bytes go.
enum Sink {
    /// Streamed out as they arrive.
    Stdout,
    /// Kept only once verified.
    File(AtomicFile),
}

/// How receiving a get's bytes ended.
#[derive(Debug, thiserror::Error)]
enum ReceiveError {
    /// The bytes are not the object's.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// The link failed or the console stopped before the end.
    #[error(transparent)]
    Link(#[from] AdminError),
    /// The console ended the stream without the end mark.
    #[error("the console stopped sending before the end")]
    Cut,
    /// Writing them failed.
    #[error(transparent)]
    Write(std::io::Error),
}

/// Where a get's chunks come from: the answer stream (a fake in tests).
trait Chunks {
    /// The next chunk; `None` when the stream ended.
    async fn next_chunk(&mut self) -> Result<Option<DataChunk>, AdminError>;
}

impl Chunks for AnswerStream {
    async fn next_chunk(&mut self) -> Result<Option<DataChunk>, AdminError> {
        AnswerStream::next_chunk(self).await
    }
}

/// Receives the chunks of `meta`'s object into `out`, verifying them; stops
/// at the first byte too many.
async fn receive(answer: &mut impl Chunks, meta: &ObjectMeta, out: &mut impl Write) -> Result<(), ReceiveError> {
    let mut verifier = Verifier::new(meta);
    loop {
        match answer.next_chunk().await? {
            Some(DataChunk::Bytes(bytes)) => {
                verifier.update(&bytes)?;
                out.write_all(&bytes).map_err(ReceiveError::Write)?;
            }
            Some(DataChunk::End) => break,
            None => return Err(ReceiveError::Cut),
        }
    }
    out.flush().map_err(ReceiveError::Write)?;
    verifier.finish()?;
    Ok(())
}

/// `ringwatch data get`.
async fn get(
    target: &Target,
    key: ObjectKey,
    output: Option<&Path>,
    consistency: Consistency,
    json: bool,
) -> Result<ExitCode> {
    // Before asking: a FILE that cannot be written is refused at once.
    let mut sink = match output {
        Some(path) if path != Path::new("-") => Sink::File(AtomicFile::create(path)?),
        _ => Sink::Stdout,
    };
    let request = AdminRequest::DataGet { key: key.clone(), consistency };
    let mut console = Following::new(target);
    loop {
        let client = match connect(&console.target).await? {
            Ok(client) => client,
            Err(code) => return Ok(code),
        };
        let mut answer = client.open(&request).await?;
        let meta = match answer_of(&mut answer).await? {
            AdminResponse::DataObject(meta) => meta,
            AdminResponse::NotLeader { leader } => {
                client.close().await;
                console.follow(leader)?;
                continue;
            }
            other => {
                client.close().await;
                return unexpected_or_failed(other);
            }
        };
        if meta.tombstone {
            client.close().await;
            return Ok(failed(&DataError::NotFound(format!("\"{key}\" was removed (version {})", meta.version))));
        }
        let received = match &mut sink {
            Sink::Stdout => receive(&mut answer, &meta, &mut std::io::stdout().lock()).await,
            Sink::File(file) => receive(&mut answer, &meta, file).await,
        };
        drop(answer);
        client.close().await;
        return match (received, sink) {
            (Ok(()), Sink::File(file)) => {
                file.commit()?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&meta).context("failed to encode the object")?);
                }
                Ok(ExitCode::SUCCESS)
            }
            (Ok(()), Sink::Stdout) => Ok(ExitCode::SUCCESS),
            // A closed pipe (`| head`) is not a failure: main exits quietly.
            (Err(ReceiveError::Write(err)), Sink::Stdout) => Err(anyhow::Error::new(err)),
            (Err(err), Sink::Stdout) => anyhow::bail!(
                "the bytes of \"{key}\" written to standard output are not the object's: {err}; discard them"
            ),
            (Err(ReceiveError::Write(err)), Sink::File(file)) => {
                anyhow::bail!("failed to write \"{}\": {err}; it was left as it was", file.target.display())
            }
            (Err(err), Sink::File(file)) => anyhow::bail!(
                "the bytes of \"{key}\" did not arrive intact: {err}; \"{}\" was left as it was",
                file.target.display()
            ),
        };
    }
}

/// An object with its live copies, as `--json` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct StatJson<'a> {
    #[serde(flatten)]
    stat: &'a ObjectStat,
    /// Copies of the current version on nodes whose copies count.
    live_copies: usize,
}

impl<'a> From<&'a ObjectStat> for StatJson<'a> {
    fn from(stat: &'a ObjectStat) -> Self {
        Self { stat, live_copies: stat.live_copies() }
    }
}

/// The nodes holding a live copy, for a one-line summary.
fn live_nodes(stat: &ObjectStat) -> String {
    let nodes: Vec<&str> = stat.copies.iter().filter(|copy| copy.current).map(|copy| copy.node.as_str()).collect();
    if nodes.is_empty() { String::new() } else { format!(" ({})", nodes.join(", ")) }
}

/// What `data put` prints.
pub(crate) fn stored_line(stat: &ObjectStat) -> String {
    format!(
        "stored \"{}\" at version {}: {} bytes, acknowledged by {} of {} replicas{}",
        stat.key,
        stat.version,
        stat.size,
        stat.live_copies(),
        stat.replicas,
        live_nodes(stat)
    )
}

/// What `data rm` prints.
pub(crate) fn removed_line(stat: &ObjectStat) -> String {
    format!(
        "removed \"{}\" at version {}: applied by {} of {} replicas{}",
        stat.key,
        stat.version,
        stat.live_copies(),
        stat.replicas,
        live_nodes(stat)
    )
}

/// `live/wanted`.
fn copies_cell(stat: &ObjectStat) -> String {
    format!("{}/{}", stat.live_copies(), stat.replicas)
}

/// What `data ls` prints.
pub(crate) fn listing_table(objects: &[ObjectStat], prefix: Option<&str>) -> String {
    if objects.is_empty() {
        return match prefix {
            Some(prefix) if !prefix.is_empty() => format!("no object's key starts with \"{prefix}\"\n"),
            _ => "no objects\n".to_string(),
        };
    }
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|stat| {
            vec![
                stat.key.to_string(),
                human_bytes(stat.size),
                stat.version.to_string(),
                copies_cell(stat),
                stat.checksum.chars().take(16).collect(),
            ]
        })
        .collect();
    columns(&["KEY", "SIZE", "VERSION", "COPIES", "SHA-256"], &rows)
}

/// What `data stat` prints.
pub(crate) fn stat_text(stat: &ObjectStat) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "key       {}", stat.key);
    let _ = writeln!(out, "version   {}", stat.version);
    let _ = writeln!(out, "size      {} ({} bytes)", human_bytes(stat.size), stat.size);
    let _ = writeln!(out, "sha-256   {}", stat.checksum);
    let _ = writeln!(out, "replicas  {} of {} live", stat.live_copies(), stat.replicas);
    let rows: Vec<Vec<String>> = stat
        .copies
        .iter()
        .map(|copy| {
            let copy_state = if copy.current {
                "live"
            } else if copy.version < stat.version {
                "stale"
            } else {
                "not counted"
            };
            vec![copy.node.clone(), copy.state.to_string(), copy.version.to_string(), copy_state.to_string()]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&columns(&["NODE", "STATE", "VERSION", "COPY"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_shared::data::{ReplicaStat, Version};
    use ringwatch_shared::status::NodeState;

    fn sha256(bytes: &[u8]) -> String {
        to_hex(ring::digest::digest(&SHA256, bytes).as_ref())
    }

    fn meta(bytes: &[u8]) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::parse("k").unwrap(),
            version: Version { term: 1, counter: 7 },
            size: bytes.len() as u64,
            checksum: sha256(bytes),
            tombstone: false,
        }
    }

    fn copy(node: &str, state: NodeState, counter: u64, current: bool) -> ReplicaStat {
        ReplicaStat { node: node.into(), state, version: Version { term: 1, counter }, current }
    }

    fn stat() -> ObjectStat {
        ObjectStat {
            key: ObjectKey::parse("photos/été.jpg").unwrap(),
            version: Version { term: 1, counter: 7 },
            size: 1536,
            checksum: sha256(b"x"),
            replicas: 3,
            copies: vec![
                copy("n1", NodeState::Alive, 7, true),
                copy("n2", NodeState::Failed, 7, false),
                copy("n3", NodeState::Alive, 5, false),
            ],
        }
    }

    #[test]
    fn data_errors_map_to_their_exit_codes() {
        assert_eq!(exit_code(&DataError::NotFound("no object \"k\"".into())), 4);
        assert_eq!(exit_code(&DataError::NotEnough("1 of 2: n2 failed".into())), 5);
        assert_eq!(exit_code(&DataError::Refused("too large".into())), 1);
        assert_ne!(NOT_FOUND, NOT_RUNNING);
        assert_ne!(NOT_ENOUGH, NOT_RUNNING);
    }

    #[test]
    fn a_bad_key_is_refused_saying_nothing_was_sent() {
        assert!(parse_key("").unwrap_err().contains("cannot be empty; nothing was sent"));
        assert!(parse_key("a\tb").unwrap_err().contains("control characters"));
        assert!(parse_key(&"k".repeat(1025)).unwrap_err().contains("at most 1024 bytes"));
        assert_eq!(parse_key("a/b").unwrap().as_str(), "a/b");
    }

    #[test]
    fn copying_hashes_and_counts_every_byte_across_chunks() {
        let bytes: Vec<u8> = (0..CHUNK_LEN * 2 + 17).map(|i| (i % 251) as u8).collect();
        let mut copied = Vec::new();
        let digest = copy_hashed(&mut bytes.as_slice(), &mut copied, MAX_OBJECT_SIZE).unwrap();
        assert_eq!(digest, Digest { size: bytes.len() as u64, checksum: sha256(&bytes) });
        assert_eq!(copied, bytes);
        let empty = copy_hashed(&mut [].as_slice(), &mut std::io::sink(), MAX_OBJECT_SIZE).unwrap();
        assert_eq!(empty, Digest { size: 0, checksum: sha256(b"") });
    }

    #[test]
    fn copying_stops_past_the_limit() {
        let bytes = vec![1u8; 100];
        let err = copy_hashed(&mut bytes.as_slice(), &mut std::io::sink(), 99).unwrap_err();
        assert!(matches!(err, CopyError::TooLarge(99)), "{err}");
        assert!(copy_hashed(&mut bytes.as_slice(), &mut std::io::sink(), 100).is_ok());
    }

    #[test]
    fn standard_input_is_spooled_to_a_file_that_reads_back_the_same_bytes() {
        let bytes: Vec<u8> = (0..CHUNK_LEN + 5).map(|i| (i % 7) as u8).collect();
        let mut source = Source::spool(&mut bytes.as_slice()).unwrap();
        assert_eq!(source.digest(), &Digest { size: bytes.len() as u64, checksum: sha256(&bytes) });
        assert_eq!(source.name, "standard input");
        // Read back from the start, as an upload (and a redirected one) does.
        for _ in 0..2 {
            source.file.rewind().unwrap();
            let mut back = Vec::new();
            source.file.read_to_end(&mut back).unwrap();
            assert_eq!(back, bytes);
        }
    }

    #[test]
    fn a_file_source_is_hashed_and_a_missing_one_or_a_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.bin");
        std::fs::write(&path, b"hello").unwrap();
        let source = Source::open(Some(&path)).unwrap();
        assert_eq!(source.digest(), &Digest { size: 5, checksum: sha256(b"hello") });

        let missing = dir.path().join("missing.bin");
        let err = Source::open(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("missing.bin\" does not exist") && err.contains("nothing was sent"), "{err}");
        let err = Source::open(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }

    #[test]
    fn the_verifier_accepts_the_objects_bytes_in_any_chunking() {
        let bytes = b"the quick brown fox";
        let mut verifier = Verifier::new(&meta(bytes));
        for piece in bytes.chunks(4) {
            verifier.update(piece).unwrap();
        }
        assert_eq!(verifier.finish(), Ok(()));
        assert_eq!(Verifier::new(&meta(b"")).finish(), Ok(()));
    }

    #[test]
    fn the_verifier_refuses_short_long_and_different_bytes() {
        let bytes = b"abcdef";
        let mut short = Verifier::new(&meta(bytes));
        short.update(b"abc").unwrap();
        assert_eq!(short.finish(), Err(Mismatch::TooShort { seen: 3, size: 6 }));

        let mut long = Verifier::new(&meta(bytes));
        long.update(b"abcdef").unwrap();
        assert_eq!(long.update(b"g"), Err(Mismatch::TooLong(6)));

        let mut other = Verifier::new(&meta(bytes));
        other.update(b"abcdeX").unwrap();
        let err = other.finish().unwrap_err();
        assert!(matches!(&err, Mismatch::Checksum { expected, .. } if *expected == sha256(bytes)), "{err}");
    }

    #[test]
    fn an_atomic_file_appears_only_on_commit_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        std::fs::write(&path, b"old").unwrap();

        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"new bytes").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"old", "nothing changes before the commit");
        file.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new bytes");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.bin")], "no temporary file is left");
        // Not the temporary file's private mode: as any new file, by the umask.
        use std::os::unix::fs::PermissionsExt as _;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
    }

    #[test]
    fn an_atomic_file_dropped_before_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let mut file = AtomicFile::create(&path).unwrap();
        file.write_all(b"half").unwrap();
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no FILE and no temporary file");

        let err = AtomicFile::create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = AtomicFile::create(&dir.path().join("no/such/dir/out.bin")).unwrap_err().to_string();
        assert!(err.contains("cannot write"), "{err}");
    }

    #[test]
    fn stat_shows_every_copy_its_state_and_the_live_count() {
        insta::assert_snapshot!(stat_text(&stat()), @r"
        key       photos/été.jpg
        version   1.7
        size      1.5K (1536 bytes)
        sha-256   2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881
        replicas  1 of 3 live

        NODE  STATE   VERSION  COPY
        n1    alive   1.7      live
        n2    failed  1.7      not counted
        n3    alive   1.5      stale
        ");
    }

    #[test]
    fn the_listing_is_a_table_or_says_it_is_empty() {
        let mut other = stat();
        other.key = ObjectKey::parse("b").unwrap();
        other.size = 3;
        other.copies = vec![copy("n1", NodeState::Alive, 7, true), copy("n2", NodeState::Alive, 7, true)];
        other.replicas = 2;
        insta::assert_snapshot!(listing_table(&[stat(), other], None), @r"
        KEY             SIZE  VERSION  COPIES  SHA-256
        photos/été.jpg  1.5K  1.7      1/3     2d711642b726b044
        b               3B    1.7      2/2     2d711642b726b044
        ");
        assert_eq!(listing_table(&[], None), "no objects\n");
        assert_eq!(listing_table(&[], Some("logs/")), "no object's key starts with \"logs/\"\n");
    }

    #[test]
    fn json_adds_the_live_copies_to_the_stat() {
        let value = serde_json::to_value(StatJson::from(&stat())).unwrap();
        assert_eq!(value["live_copies"], 1);
        assert_eq!(value["key"], "photos/été.jpg");
        assert_eq!(value["size"], 1536);
        assert_eq!(value["copies"][1]["state"], "failed");
        assert_eq!(value["copies"][1]["current"], false);
    }

    #[test]
    fn put_and_rm_print_one_line_with_the_acknowledging_replicas() {
        assert_eq!(
            stored_line(&stat()),
            "stored \"photos/été.jpg\" at version 1.7: 1536 bytes, acknowledged by 1 of 3 replicas (n1)"
        );
        assert_eq!(removed_line(&stat()), "removed \"photos/été.jpg\" at version 1.7: applied by 1 of 3 replicas (n1)");
    }

    /// Decodes the frames a put wrote.
    fn frames(mut wire: &[u8]) -> Vec<DataChunk> {
        let mut chunks = Vec::new();
        while let Some((chunk, used)) = codec::decode_frame::<DataChunk>(wire, codec::MAX_FRAME_LEN).unwrap() {
            chunks.push(chunk);
            wire = &wire[used..];
        }
        assert!(wire.is_empty(), "{} bytes left over", wire.len());
        chunks
    }

    #[tokio::test]
    async fn a_put_sends_its_bytes_in_chunks_of_at_most_chunk_len_then_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.bin");
        let bytes: Vec<u8> = (0..CHUNK_LEN * 2 + 5).map(|i| (i % 13) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut source = Source::open(Some(&path)).unwrap();
        // Twice: a standby's redirect sends the same bytes again from the start.
        for _ in 0..2 {
            let mut wire = Vec::new();
            send_bytes(&mut wire, &mut source, "console").await.unwrap();
            let chunks = frames(&wire);
            assert_eq!(chunks.len(), 4, "three chunks and the end");
            assert_eq!(chunks.last(), Some(&DataChunk::End));
            let mut sent = Vec::new();
            for chunk in &chunks[..3] {
                let DataChunk::Bytes(piece) = chunk else { panic!("{chunk:?}") };
                assert!(piece.len() <= CHUNK_LEN);
                sent.extend_from_slice(piece);
            }
            assert_eq!(sent, bytes);
        }
        let mut empty = Source::spool(&mut [].as_slice()).unwrap();
        let mut wire = Vec::new();
        send_bytes(&mut wire, &mut empty, "console").await.unwrap();
        assert_eq!(frames(&wire), vec![DataChunk::End], "an empty object is just the end");
    }

    #[tokio::test]
    async fn a_file_that_changed_since_it_was_hashed_is_not_sent_to_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.bin");
        std::fs::write(&path, b"first version").unwrap();
        let mut source = Source::open(Some(&path)).unwrap();
        for changed in [&b"other version"[..], b"a longer version than hashed", b"short"] {
            std::fs::write(&path, changed).unwrap();
            let mut wire = Vec::new();
            let err = send_bytes(&mut wire, &mut source, "console").await.unwrap_err();
            assert!(matches!(err, UploadError::Changed(_)), "{err}");
            assert!(err.to_string().contains("changed while it was being sent"), "{err}");
            assert!(!frames(&wire).contains(&DataChunk::End), "the console never sees a complete object");
        }
    }

    /// Chunks a test hands to `receive`.
    struct Fake(std::collections::VecDeque<DataChunk>);

    impl Chunks for Fake {
        async fn next_chunk(&mut self) -> Result<Option<DataChunk>, AdminError> {
            Ok(self.0.pop_front())
        }
    }

    fn fake(pieces: &[&[u8]], end: bool) -> Fake {
        let mut chunks: std::collections::VecDeque<DataChunk> =
            pieces.iter().map(|piece| DataChunk::Bytes(piece.to_vec())).collect();
        if end {
            chunks.push_back(DataChunk::End);
        }
        Fake(chunks)
    }

    #[tokio::test]
    async fn a_get_receives_and_verifies_the_objects_chunks() {
        let meta = meta(b"hello world");
        let mut out = Vec::new();
        receive(&mut fake(&[b"hello", b" ", b"world"], true), &meta, &mut out).await.unwrap();
        assert_eq!(out, b"hello world");
    }

    #[tokio::test]
    async fn a_get_refuses_a_cut_a_long_and_a_corrupt_stream() {
        let meta = meta(b"hello world");
        let err = receive(&mut fake(&[b"hello"], false), &meta, &mut Vec::new()).await.unwrap_err();
        assert!(matches!(err, ReceiveError::Cut), "{err}");

        let mut out = Vec::new();
        let err = receive(&mut fake(&[b"hello world", b"!!"], true), &meta, &mut out).await.unwrap_err();
        assert!(matches!(err, ReceiveError::Mismatch(Mismatch::TooLong(11))), "{err}");
        assert_eq!(out, b"hello world", "nothing past the size is written");

        let err = receive(&mut fake(&[b"hello", b"World"], true), &meta, &mut Vec::new()).await.unwrap_err();
        assert!(matches!(err, ReceiveError::Mismatch(Mismatch::TooShort { seen: 10, size: 11 })), "{err}");
        let err = receive(&mut fake(&[b"hello", b" World"], true), &meta, &mut Vec::new()).await.unwrap_err();
        assert!(matches!(err, ReceiveError::Mismatch(Mismatch::Checksum { .. })), "{err}");
    }
}
