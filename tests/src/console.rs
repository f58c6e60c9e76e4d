//! A headless console (`ringwatch serve`) and the admin commands run against
//! its data dir (`join-token`, `status`).

use std::ffi::OsString;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::poll::{self, PollFailure, Step};
use crate::process::{self, Output, Proc, Signal};
use crate::status::{NodeState, Status};
use crate::{COMMAND_TIMEOUT, EXIT_DEADLINE, LIVENESS, STARTUP, bins};

/// The file the console writes its bound `IP:PORT` to.
pub const ADDR_FILE: &str = "console.addr";
/// Our capture of the console's stdout and stderr, inside its data dir.
pub const LOG_FILE: &str = "e2e-console.log";

/// How often `console.addr` is looked for.
const ADDR_POLL: Duration = Duration::from_millis(25);
/// How often `status` is run while waiting for a state: each look starts a
/// process and an admin connection, so not too often on a 2-core machine.
const STATUS_POLL: Duration = Duration::from_millis(100);

/// A running `ringwatch serve` on `127.0.0.1:0`, killed when dropped.
#[derive(Debug)]
pub struct Console {
    /// The serve process.
    proc: Proc,
    /// Its data dir, where admin commands find it.
    data_dir: PathBuf,
    /// The address it bound (QUIC, so also its UDP port).
    addr: SocketAddr,
}

impl Console {
    /// Starts `ringwatch serve --data-dir DIR --listen 127.0.0.1:0` and waits
    /// until it has written `DIR/console.addr`.
    ///
    /// # Panics
    /// When it does not come up within [`STARTUP`], with its log tail.
    #[track_caller]
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// As [`Console::start`], with extra `serve` arguments.
    ///
    /// # Panics
    /// When it does not come up within [`STARTUP`], with its log tail.
    #[track_caller]
    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> Self {
        Self::start_listening(data_dir, "127.0.0.1:0", extra_args)
    }

    /// As [`Console::start_with`], listening on `listen` instead of port 0:
    /// a console restarted on its data dir comes back on the port its agents
    /// know (`--listen` may be given only once, so it is not an extra
    /// argument).
    ///
    /// # Panics
    /// When it does not come up within [`STARTUP`], with its log tail.
    #[track_caller]
    pub fn start_listening(data_dir: &Path, listen: &str, extra_args: &[&str]) -> Self {
        let mut proc = spawn_serve(data_dir, listen, extra_args);
        match wait_for_addr(&mut proc, &data_dir.join(ADDR_FILE)) {
            Ok(addr) => Self { proc, data_dir: data_dir.to_path_buf(), addr },
            Err(failure) => panic!("the console did not come up: {failure}\n{}", proc.log_tail()),
        }
    }

    /// As [`Console::start_with`] on a data dir the console may refuse (a
    /// damaged store, keys others can read): the console if it came up, or
    /// how it exited and what it said.
    ///
    /// # Panics
    /// When it neither comes up nor exits within [`STARTUP`].
    #[track_caller]
    pub fn try_start_with(data_dir: &Path, extra_args: &[&str]) -> Result<Self, Exited> {
        let mut proc = spawn_serve(data_dir, "127.0.0.1:0", extra_args);
        match wait_for_addr(&mut proc, &data_dir.join(ADDR_FILE)) {
            Ok(addr) => Ok(Self { proc, data_dir: data_dir.to_path_buf(), addr }),
            Err(failure) => match proc.try_exit() {
                Some(status) => Err(Exited { status, log: proc.log() }),
                None => panic!("the console neither came up nor exited: {failure}\n{}", proc.log_tail()),
            },
        }
    }

    /// The address agents connect to; also the console's UDP port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The `serve` process, for signals and exit checks.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// The last lines the console logged, framed for a failure message.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// Everything the console logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Whether the console process is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// A join token (default TTL).
    ///
    /// # Panics
    /// When `join-token` fails, with its output.
    #[track_caller]
    pub fn join_token(&self) -> String {
        join_token(&self.data_dir, None)
    }

    /// A join token valid for `ttl` (`1s`, `5m`).
    ///
    /// # Panics
    /// When `join-token` fails, with its output.
    #[track_caller]
    pub fn join_token_ttl(&self, ttl: &str) -> String {
        join_token(&self.data_dir, Some(ttl))
    }

    /// Runs `ringwatch status --json` and parses it.
    ///
    /// # Errors
    /// When the command fails or prints something that is not the
    /// documented document.
    pub fn status_json(&self) -> anyhow::Result<Status> {
        status_json(&self.data_dir)
    }

    /// Runs `ringwatch status --json` and parses it.
    ///
    /// # Panics
    /// When that fails, with the console log tail.
    #[track_caller]
    pub fn status(&self) -> Status {
        match self.status_json() {
            Ok(status) => status,
            Err(err) => panic!("status failed: {err:#}\n{}", self.log_tail()),
        }
    }

    /// Polls `status` until `pred` holds, for up to [`LIVENESS`]; returns the
    /// status that satisfied it. `pred` sees every status in order, so it may
    /// also record what it saw on the way.
    ///
    /// # Panics
    /// On timeout or console exit, with the last status seen and the console
    /// log tail.
    #[track_caller]
    pub fn wait_for(&mut self, what: &str, pred: impl FnMut(&Status) -> bool) -> Status {
        self.wait_for_within(LIVENESS, what, pred)
    }

    /// As [`Console::wait_for`], with another deadline.
    ///
    /// # Panics
    /// On timeout or console exit, with the last status seen and the console
    /// log tail.
    #[track_caller]
    pub fn wait_for_within(&mut self, timeout: Duration, what: &str, mut pred: impl FnMut(&Status) -> bool) -> Status {
        let data_dir = self.data_dir.clone();
        let proc = &mut self.proc;
        let result = poll::until(timeout, STATUS_POLL, || {
            if let Some(exit) = proc.try_exit() {
                return Step::Abort(format!("the console exited ({exit})"));
            }
            match status_json(&data_dir) {
                Ok(status) if pred(&status) => Step::Done(status),
                Ok(status) => Step::Pending(describe_status(&status)),
                Err(err) => Step::Pending(format!("status failed: {err:#}")),
            }
        });
        match result {
            Ok(status) => status,
            Err(failure) => panic!("waiting for {what}: {failure}\n{}", self.proc.log_tail()),
        }
    }

    /// Waits until every `(name, state)` pair holds at once.
    ///
    /// # Panics
    /// As [`Console::wait_for`].
    #[track_caller]
    pub fn wait_for_states(&mut self, expected: &[(&str, NodeState)]) -> Status {
        let what = expected.iter().map(|(name, state)| format!("{name}={state}")).collect::<Vec<_>>().join(", ");
        self.wait_for(&what, |status| status.all(expected))
    }

    /// Watches `status` for `duration` and fails as soon as `invariant`
    /// returns an error: for "nothing bad happens" assertions, which can
    /// only be observed over a window. A failing `status` command also
    /// fails. Returns the last status.
    ///
    /// # Panics
    /// When the invariant breaks, `status` fails or the console exits.
    #[track_caller]
    pub fn hold(
        &mut self,
        duration: Duration,
        what: &str,
        mut invariant: impl FnMut(&Status) -> Result<(), String>,
    ) -> Status {
        let data_dir = self.data_dir.clone();
        let proc = &mut self.proc;
        let mut last = None;
        let result = poll::until::<()>(duration, STATUS_POLL, || {
            if let Some(exit) = proc.try_exit() {
                return Step::Abort(format!("the console exited ({exit})"));
            }
            match status_json(&data_dir) {
                Ok(status) => {
                    let verdict = invariant(&status);
                    let seen = describe_status(&status);
                    last = Some(status);
                    match verdict {
                        Ok(()) => Step::Pending(seen),
                        Err(why) => Step::Abort(format!("{why}; status: {seen}")),
                    }
                }
                Err(err) => Step::Abort(format!("status failed: {err:#}")),
            }
        });
        match (result, last) {
            (Err(failure), Some(last)) if failure.timed_out => last,
            (Err(failure), _) => panic!("{what} did not hold: {}\n{}", failure.last, self.proc.log_tail()),
            // The probe never returns `Done`.
            (Ok(()), _) => unreachable!("hold's probe never finishes early"),
        }
    }

    /// SIGKILL: the console vanishes without a word.
    pub fn kill(&mut self) -> ExitStatus {
        self.proc.kill()
    }

    /// SIGTERM, then waits for the exit.
    ///
    /// # Panics
    /// When it does not exit within [`EXIT_DEADLINE`].
    #[track_caller]
    pub fn terminate(&mut self) -> ExitStatus {
        self.proc.signal(Signal::Term);
        self.proc.wait_exit(EXIT_DEADLINE)
    }
}

/// A console that exited instead of coming up (see
/// [`Console::try_start_with`]).
#[derive(Debug)]
pub struct Exited {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it logged (its error message is on stderr, in here).
    pub log: String,
}

/// Starts `ringwatch serve --data-dir DIR --listen LISTEN EXTRA…`.
#[track_caller]
fn spawn_serve(data_dir: &Path, listen: &str, extra_args: &[&str]) -> Proc {
    fs::create_dir_all(data_dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", data_dir.display()));
    // Files left by an earlier run in this dir would point at dead ports
    // (a console killed with -9 leaves them): only those this process
    // writes count.
    let _ = fs::remove_file(data_dir.join(ADDR_FILE));
    let _ = fs::remove_file(data_dir.join(crate::prometheus::METRICS_ADDR_FILE));
    let mut command = Command::new(bins::ringwatch());
    command.arg("serve").arg("--data-dir").arg(data_dir).args(["--listen", listen]).args(extra_args);
    // Every agent of a test runs on this one host: the host's CPU, memory
    // and disk are not the nodes' health. Without a config of the test's
    // own, resource limits are off, so a busy or nearly full machine never
    // turns a test's nodes `degraded`.
    if !extra_args.contains(&"--config") {
        let config = crate::tasks::write_no_limits_config(data_dir);
        command.arg("--config").arg(config);
    }
    Proc::spawn("console", command, &data_dir.join(LOG_FILE))
}

/// Waits for the console to write its address; fails when it exits first
/// or does not write it within [`STARTUP`].
fn wait_for_addr(proc: &mut Proc, addr_file: &Path) -> Result<SocketAddr, PollFailure> {
    // Parsed twice in a row with the same text, so a half-written file
    // ("127.0.0.1:4" of "127.0.0.1:41234") is not taken for the address.
    let mut previous: Option<String> = None;
    poll::until(STARTUP, ADDR_POLL, || {
        if let Some(exit) = proc.try_exit() {
            return Step::Abort(format!("the console exited ({exit}) before writing {}", addr_file.display()));
        }
        let text = fs::read_to_string(addr_file).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            previous = None;
            return Step::Pending(format!("no {} yet", addr_file.display()));
        }
        if previous.as_deref() == Some(text) {
            return match text.parse::<SocketAddr>() {
                Ok(addr) => Step::Done(addr),
                Err(err) => Step::Abort(format!("{} holds {text:?}, not IP:PORT ({err})", addr_file.display())),
            };
        }
        previous = Some(text.to_owned());
        Step::Pending(format!("{} holds {text:?}", addr_file.display()))
    })
}

fn describe_status(status: &Status) -> String {
    format!("{status}\n---- status --json ----\n{}", status.raw)
}

/// Runs `ringwatch ARGS…` to completion (killed after [`COMMAND_TIMEOUT`]).
///
/// # Errors
/// When it cannot be started or hangs.
pub fn ringwatch<I, S>(args: I) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    process::run(&bins::ringwatch(), args, COMMAND_TIMEOUT)
}

/// `ringwatch pki ACTION FILE --data-dir DIR` (`export`, `import`), which
/// must succeed; its standard output.
///
/// # Panics
/// When the command fails.
#[track_caller]
pub fn pki(action: &str, file: &Path, data_dir: &Path) -> String {
    let output =
        ringwatch(["pki".as_ref(), action.as_ref(), file.as_os_str(), "--data-dir".as_ref(), data_dir.as_os_str()])
            .unwrap_or_else(|err| panic!("pki {action}: {err:#}"));
    assert!(output.status.success(), "pki {action} failed: {output}");
    output.stdout
}

/// `ringwatch join-token --data-dir DIR [--ttl TTL]`: the token, checked to
/// be one line. Works with or without a console running on that dir.
///
/// # Panics
/// When the command fails or prints anything but one line.
#[track_caller]
pub fn join_token(data_dir: &Path, ttl: Option<&str>) -> String {
    let mut args: Vec<OsString> = vec!["join-token".into(), "--data-dir".into(), data_dir.into()];
    if let Some(ttl) = ttl {
        args.extend(["--ttl".into(), ttl.into()]);
    }
    let output = match ringwatch(args) {
        Ok(output) => output,
        Err(err) => panic!("join-token: {err:#}"),
    };
    if !output.status.success() {
        panic!("join-token failed: {output}");
    }
    let token = output.stdout.trim();
    if token.is_empty() || token.lines().count() != 1 {
        panic!("join-token must print exactly one line: {output}");
    }
    token.to_owned()
}

/// `ringwatch status --json --data-dir DIR`, parsed.
///
/// # Errors
/// When the command fails or its output is not the documented document.
pub fn status_json(data_dir: &Path) -> anyhow::Result<Status> {
    let output = ringwatch([OsString::from("status"), "--json".into(), "--data-dir".into(), data_dir.into()])?;
    if !output.status.success() {
        anyhow::bail!("{output}");
    }
    Status::parse(&output.stdout).map_err(|err| anyhow::anyhow!("cannot parse status --json ({err}): {output}"))
}
