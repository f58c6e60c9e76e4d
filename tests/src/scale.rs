//! Pieces of the at-scale bench (`bench_scale`): the `ringwatch-agent swarm`
//! process, the `bare_quinn` floor server and its counters, and the kernel's
//! socket buffer ceilings.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::bins;
use crate::poll::{self, Step};
use crate::process::Proc;

/// How often `bare_quinn`'s log is read while waiting for it.
const LOG_POLL: Duration = Duration::from_millis(200);

/// A `ringwatch-agent swarm` process, killed when dropped.
#[derive(Debug)]
pub struct Swarm {
    /// The swarm process.
    proc: Proc,
}

impl Swarm {
    /// Starts `ringwatch-agent swarm --console ADDR --agents N --data-dir DIR
    /// [--token TOKEN] EXTRA…`, its output appended to `log`. Without a
    /// token its agents must already hold credentials in `data_dir` (from an
    /// earlier run).
    ///
    /// # Panics
    /// When the process cannot be started.
    #[track_caller]
    pub fn start(
        console: SocketAddr,
        token: Option<&str>,
        agents: usize,
        data_dir: &Path,
        log: &Path,
        extra: &[&str],
    ) -> Self {
        fs::create_dir_all(data_dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", data_dir.display()));
        let mut command = Command::new(bins::ringwatch_agent());
        command
            .arg("swarm")
            .args(["--console", &console.to_string(), "--agents", &agents.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        Self { proc: Proc::spawn("swarm", command, log) }
    }

    /// The swarm process.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// One line of `bare_quinn`'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BareQuinnReport {
    /// Connections welcomed and open.
    pub connections: u64,
    /// Datagrams received since it started.
    pub datagrams: u64,
    /// Datagrams received per second over the last report period.
    pub datagrams_per_sec: f64,
    /// Control stream bytes received after the first frames.
    pub stream_bytes: u64,
    /// Failed handshakes.
    pub handshakes_failed: u64,
}

impl BareQuinnReport {
    /// Parses a `bare_quinn: connections=… datagrams=…` line; `None` for
    /// any other line.
    pub fn parse(line: &str) -> Option<Self> {
        let fields = line.strip_prefix("bare_quinn: ")?;
        if !fields.starts_with("connections=") {
            return None;
        }
        let mut report = Self::default();
        for field in fields.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "connections" => report.connections = value.parse().ok()?,
                "datagrams" => report.datagrams = value.parse().ok()?,
                "datagrams_per_sec" => report.datagrams_per_sec = value.parse().ok()?,
                "stream_bytes" => report.stream_bytes = value.parse().ok()?,
                "handshakes_failed" => report.handshakes_failed = value.parse().ok()?,
                // Fields added later do not break older drivers.
                _ => {}
            }
        }
        Some(report)
    }
}

impl fmt::Display for BareQuinnReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, {} datagrams ({:.0}/s), {} stream bytes, {} failed handshakes",
            self.connections, self.datagrams, self.datagrams_per_sec, self.stream_bytes, self.handshakes_failed
        )
    }
}

/// A running `bare_quinn` on a console's PKI, killed when dropped.
#[derive(Debug)]
pub struct BareQuinn {
    /// The server process.
    proc: Proc,
    /// The address it bound.
    addr: SocketAddr,
}

impl BareQuinn {
    /// Starts `bare_quinn --data-dir CONSOLE_DIR --listen 127.0.0.1:0`,
    /// logging to `log_path`, and waits for the address it bound.
    ///
    /// # Panics
    /// When it does not come up within [`crate::STARTUP`], with its log.
    #[track_caller]
    pub fn start(console_dir: &Path, log_path: &Path) -> Self {
        let mut command = Command::new(bins::bare_quinn());
        command.arg("--data-dir").arg(console_dir).args(["--listen", "127.0.0.1:0"]);
        let mut proc = Proc::spawn("bare_quinn", command, log_path);
        let mut addr = None;
        let up = proc.wait_for_log(crate::STARTUP, "\"listening on\"", |log| {
            addr = log.lines().find_map(|line| line.strip_prefix("bare_quinn: listening on ")?.trim().parse().ok());
            addr.is_some()
        });
        match addr {
            Some(addr) if up => Self { proc, addr },
            _ => panic!("bare_quinn did not come up\n{}", proc.log_tail()),
        }
    }

    /// Where agents connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server process.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its latest counters, if it printed any yet.
    pub fn report(&self) -> Option<BareQuinnReport> {
        self.proc.log().lines().rev().find_map(BareQuinnReport::parse)
    }

    /// Waits until `pred` holds for its latest counters; returns them.
    ///
    /// # Panics
    /// On timeout or exit, with the last counters and the log tail.
    #[track_caller]
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&BareQuinnReport) -> bool,
    ) -> BareQuinnReport {
        let result = poll::until(timeout, LOG_POLL, || {
            if let Some(exit) = self.proc.try_exit() {
                return Step::Abort(format!("bare_quinn exited ({exit})"));
            }
            match self.report() {
                Some(report) if pred(&report) => Step::Done(report),
                Some(report) => Step::Pending(report.to_string()),
                None => Step::Pending("no counters yet".into()),
            }
        });
        match result {
            Ok(report) => report,
            Err(failure) => panic!("waiting for {what}: {failure}\n{}", self.proc.log_tail()),
        }
    }
}

/// The kernel's ceilings on socket buffers (`net.core.rmem_max` and
/// `wmem_max`), raised for a bench and restored on drop — also when the bench
/// panics. Every ringwatch endpoint asks for 8 MiB buffers; the kernel caps
/// the request at these values.
#[derive(Debug)]
pub struct SocketBufferCeiling {
    /// Each file and the value it held before, for those that were changed;
    /// shared with [`SocketBufferCeiling::restorer`].
    changed: Arc<Mutex<Vec<(PathBuf, u64)>>>,
}

/// The two sysctls, as files.
const CEILINGS: [&str; 2] = ["/proc/sys/net/core/rmem_max", "/proc/sys/net/core/wmem_max"];

impl SocketBufferCeiling {
    /// Raises both ceilings to at least `bytes` where they are lower (needs
    /// root). Returns the guard and one line per sysctl saying what was done.
    pub fn raise(bytes: u64) -> (Self, Vec<String>) {
        let mut changed = Vec::new();
        let mut said = Vec::new();
        for path in CEILINGS {
            let name = sysctl_name(path);
            let current = match read_u64(Path::new(path)) {
                Ok(current) => current,
                Err(err) => {
                    said.push(format!("{name}: cannot read it ({err}); left alone"));
                    continue;
                }
            };
            if current >= bytes {
                said.push(format!("{name} = {current}, already at least {bytes}; left alone"));
                continue;
            }
            match fs::write(path, bytes.to_string()) {
                Ok(()) => {
                    said.push(format!("{name}: raised from {current} to {bytes} for this run"));
                    changed.push((PathBuf::from(path), current));
                }
                Err(err) => said.push(format!("{name} = {current}: cannot raise it to {bytes} ({err}); left alone")),
            }
        }
        (Self { changed: Arc::new(Mutex::new(changed)) }, said)
    }

    /// A handle that puts the old values back, for [`on_signal`]: a
    /// `kill` does not unwind, so the guard's drop never runs.
    pub fn restorer(&self) -> impl FnOnce() + Send + 'static {
        let changed = self.changed.clone();
        move || {
            for line in restore_all(&changed) {
                eprintln!("{line}");
            }
        }
    }

    /// Puts the old values back; returns one line per sysctl restored.
    pub fn restore(&mut self) -> Vec<String> {
        restore_all(&self.changed)
    }
}

/// Writes back every changed ceiling, once: what is restored is taken out.
fn restore_all(changed: &Mutex<Vec<(PathBuf, u64)>>) -> Vec<String> {
    let taken = std::mem::take(&mut *changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    taken
        .into_iter()
        .map(|(path, old)| {
            let name = sysctl_name(&path.to_string_lossy());
            match fs::write(&path, old.to_string()) {
                Ok(()) => format!("{name}: restored to {old}"),
                Err(err) => format!("{name}: cannot restore it to {old} ({err}); run `sysctl -w {name}={old}`"),
            }
        })
        .collect()
}

impl Drop for SocketBufferCeiling {
    fn drop(&mut self) {
        for line in self.restore() {
            eprintln!("{line}");
        }
    }
}

/// When this process is asked to stop (SIGINT, SIGTERM, SIGHUP): runs
/// `cleanup` (what a drop would have undone), kills the processes it
/// started (console, swarm, bare quinn: a bench's children outlive a
/// killed driver otherwise), and exits with 128 + the signal's number, as
/// the shell reports it.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn on_signal(cleanup: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    use nix::sys::signal::Signal;
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let (mut interrupt, mut terminate, mut hangup) = {
        let _entered = runtime.enter();
        (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?, signal(SignalKind::hangup())?)
    };
    std::thread::spawn(move || {
        let received = runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => Signal::SIGINT,
                _ = terminate.recv() => Signal::SIGTERM,
                _ = hangup.recv() => Signal::SIGHUP,
            }
        });
        for child in crate::procfs::children(std::process::id()) {
            if let Ok(child) = i32::try_from(child) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL);
            }
        }
        cleanup();
        std::process::exit(128 + received as i32);
    });
    Ok(())
}

fn sysctl_name(path: &str) -> String {
    path.trim_start_matches("/proc/sys/").replace('/', ".")
}

fn read_u64(path: &Path) -> Result<u64, String> {
    let text = fs::read_to_string(path).map_err(|err| err.to_string())?;
    text.trim().parse().map_err(|err| format!("\"{}\" is not a number: {err}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_counters_line() {
        let line =
            "bare_quinn: connections=300 datagrams=18000 datagrams_per_sec=600 stream_bytes=123 handshakes_failed=0";
        let report = BareQuinnReport::parse(line).unwrap_or_default();
        assert_eq!(
            report,
            BareQuinnReport {
                connections: 300,
                datagrams: 18_000,
                datagrams_per_sec: 600.0,
                stream_bytes: 123,
                handshakes_failed: 0
            }
        );
    }

    #[test]
    fn other_lines_are_not_counters() {
        assert_eq!(BareQuinnReport::parse("bare_quinn: listening on 127.0.0.1:4000"), None);
        assert_eq!(BareQuinnReport::parse("connections=3"), None);
        assert_eq!(BareQuinnReport::parse("bare_quinn: connections=x"), None);
    }

    #[test]
    fn sysctl_names_read_like_sysctl() {
        assert_eq!(sysctl_name("/proc/sys/net/core/rmem_max"), "net.core.rmem_max");
    }
}
