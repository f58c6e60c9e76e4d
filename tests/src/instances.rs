//! Task instances seen from the host: the processes an agent started for
//! them, and what those processes wrote.
//!
//! The console's `status` says where it *believes* an instance runs; these
//! helpers check what really runs. An instance is a child process of its
//! agent, in a process group of its own, with its working directory at
//! `<agent data dir>/instances/<task>-<index>/` (DESIGN.md §6). So:
//!
//! - the processes of an agent's instances are exactly those whose working
//!   directory is under the agent's data dir ([`processes_under`]); killing
//!   them is what a dead host does to its work ([`kill_processes_under`]);
//! - an instance's own files are in its working directory ([`read_pid`]);
//! - a test task can record its life in one shared file: a [`LifeLog`]
//!   gives the command, and reads back every copy's start and stop with
//!   nanosecond wall-clock stamps, which is how "never fewer than N copies"
//!   and "no two copies at once" are checked.
//!
//! Instances outlive a SIGKILLed agent (their own process group), so a test
//! that starts tasks holds a [`Reaper`], which kills whatever still runs
//! under its directory when dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::poll::{self, Step};

/// How often files written by task processes are looked at.
const FILE_POLL: Duration = Duration::from_millis(50);

/// How long the [`Reaper`] keeps killing: a process may fork while it dies
/// (the `date` of a shell's exit trap).
const REAP_DEADLINE: Duration = Duration::from_secs(3);

/// The file a [`LifeLog`] task (and [`pid_file_command`]) writes its pid to,
/// in its working directory.
pub const PID_FILE: &str = "pid";

/// The directory an agent runs an instance in:
/// `<agent data dir>/instances/<task>-<index>/`.
///
/// # Panics
/// When `id` is not `task/index`.
#[track_caller]
pub fn instance_dir(agent_dir: &Path, id: &str) -> PathBuf {
    let Some((task, index)) = id.split_once('/') else {
        panic!("instance id {id:?} is not task/index");
    };
    agent_dir.join("instances").join(format!("{task}-{index}"))
}

/// The pid an instance wrote to `<dir>/pid`, once the file is complete (it
/// ends with a newline).
pub fn read_pid(dir: &Path) -> Option<u32> {
    let text = fs::read_to_string(dir.join(PID_FILE)).ok()?;
    if !text.ends_with('\n') {
        return None;
    }
    text.trim().parse().ok()
}

/// Waits up to `timeout` for `<dir>/pid` to name a live process.
///
/// # Panics
/// On timeout, with what was seen.
#[track_caller]
pub fn wait_for_pid(dir: &Path, timeout: Duration) -> u32 {
    let result = poll::until(timeout, FILE_POLL, || match read_pid(dir) {
        Some(pid) if is_alive(pid) => Step::Done(pid),
        Some(pid) => Step::Pending(format!("{} names pid {pid}, which is not running", dir.join(PID_FILE).display())),
        None => Step::Pending(format!("no complete {}", dir.join(PID_FILE).display())),
    });
    result.unwrap_or_else(|failure| panic!("waiting for a live pid in {}: {failure}", dir.display()))
}

/// Whether `pid` is a running (or stopped) process, not a zombie or gone.
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The command name may hold spaces and parentheses: the state is the
    // first field after the last ')'.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X" | "x"))
}

/// Every live process whose working directory is `dir` or below it.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let dir = canonical(dir);
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A deleted directory reads back as "PATH (deleted)": still ours.
            fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| cwd.starts_with(&dir) || cwd.to_string_lossy().starts_with(&*dir.to_string_lossy()))
        })
        .filter(|pid| is_alive(*pid))
        .collect();
    pids.sort_unstable();
    pids
}

/// SIGKILLs every process under `dir` (see [`processes_under`]) until none
/// is left or `deadline` passed; returns the pids killed. This is what a
/// host that dies does to the work it ran.
pub fn kill_processes_under(dir: &Path, deadline: Duration) -> Vec<u32> {
    let started = Instant::now();
    let mut killed = Vec::new();
    loop {
        let pids = processes_under(dir);
        if pids.is_empty() || started.elapsed() >= deadline {
            killed.sort_unstable();
            killed.dedup();
            return killed;
        }
        // One `kill` for all; it fails for pids that are already gone, which
        // is fine: the next look tells.
        let _ = Command::new("kill")
            .arg("-s")
            .arg("KILL")
            .args(pids.iter().map(u32::to_string))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        killed.extend(pids);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn canonical(dir: &Path) -> PathBuf {
    fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Kills every process under its directory when dropped: task instances
/// are not children of the test, and a SIGKILLed agent leaves them behind.
///
/// Drop it after the agents (declare it before them, or as a later struct
/// field), so no agent is left to start a replacement.
#[derive(Debug)]
pub struct Reaper {
    /// The tree whose processes are killed (a test's sandbox).
    dir: PathBuf,
}

impl Reaper {
    /// Reaps under `dir` on drop.
    pub fn new(dir: &Path) -> Self {
        Self { dir: canonical(dir) }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let left = kill_processes_under(&self.dir, REAP_DEADLINE);
        if !left.is_empty() {
            eprintln!("reaped {} task process(es) left under {}: {left:?}", left.len(), self.dir.display());
        }
    }
}

/// Quotes `text` for `sh`: inside single quotes, a quote is `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A task command that writes its pid to `pid` in its working directory,
/// then sleeps; no log. For benches and tests that need only the pid.
pub fn pid_file_command() -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("echo $$ > {PID_FILE}.tmp && mv {PID_FILE}.tmp {PID_FILE}; exec sleep 1000")]
}

/// Whether a [`LifeLog`] line records a start or a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeEvent {
    /// The process began.
    Start,
    /// The process got SIGTERM and is about to exit.
    Stop,
}

/// One line of a [`LifeLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifeLine {
    /// Start or stop.
    pub event: LifeEvent,
    /// Wall-clock time since the Unix epoch (`date +%s.%N`).
    pub at: Duration,
    /// `RINGWATCH_INSTANCE`: `task/index`.
    pub instance: String,
    /// The shell's pid (the instance's main process and process group).
    pub pid: u32,
    /// `RINGWATCH_EPOCH`.
    pub epoch: String,
    /// The working directory: tells which agent ran it.
    pub dir: PathBuf,
}

/// One copy of an instance: one process's life, from its start line to its
/// stop line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Life {
    /// `task/index`.
    pub instance: String,
    /// Its pid.
    pub pid: u32,
    /// Its epoch.
    pub epoch: String,
    /// Its working directory.
    pub dir: PathBuf,
    /// When it started (since the Unix epoch).
    pub started: Duration,
    /// When it was told to stop, if it was (a SIGKILL leaves no line).
    pub stopped: Option<Duration>,
}

impl Life {
    /// Whether it ran at wall-clock time `t` (start inclusive, stop
    /// exclusive).
    pub fn ran_at(&self, t: Duration) -> bool {
        self.started <= t && self.stopped.is_none_or(|stop| t < stop)
    }

    /// The agent data dir it ran under (`<agent dir>/instances/<task>-<i>`).
    pub fn agent_dir(&self) -> Option<&Path> {
        self.dir.parent()?.parent()
    }
}

impl fmt::Display for Life {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.agent_dir().and_then(Path::file_name).map_or_else(String::new, |n| n.to_string_lossy().into());
        write!(
            f,
            "{} pid {} epoch {} in {node}: {:.3}",
            self.instance,
            self.pid,
            self.epoch,
            self.started.as_secs_f64()
        )?;
        match self.stopped {
            Some(stop) => write!(f, "–{:.3}", stop.as_secs_f64()),
            None => f.write_str("–"),
        }
    }
}

/// A shared file every copy of a test task appends to: `start` when its
/// process begins, `stop` when it gets SIGTERM (how an agent stops an
/// instance), each with a nanosecond wall-clock stamp, the instance, the
/// pid, the epoch and the working directory:
///
/// `start 1732612345.123456789 web/0 4242 7 /tmp/…/agent-a/instances/web-0`
///
/// Appends of one short line are atomic, so copies on different agents can
/// share the file; all run on this host, so the stamps are comparable.
#[derive(Debug, Clone)]
pub struct LifeLog {
    /// The file, absolute (the tasks run elsewhere).
    path: PathBuf,
}

impl LifeLog {
    /// A log at `path` (made absolute; created by the first copy).
    ///
    /// # Panics
    /// When the current directory cannot be read for a relative path.
    #[track_caller]
    pub fn new(path: &Path) -> Self {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_else(|err| panic!("no current directory: {err}")).join(path)
        };
        Self { path }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A task command that records its start, writes its pid file, then
    /// sleeps until SIGTERM, which it records as its stop before exiting 0.
    pub fn command(&self) -> Vec<String> {
        self.command_running("sleep 1000 & wait; exit 0")
    }

    /// A task command that records its start and pid, then runs `body`
    /// (shell text); a SIGTERM is recorded as a stop and ends it. `body`
    /// may exit at once (a crash loop) or wait; a background child should
    /// be the last one started (`$!`), the exit trap kills it.
    pub fn command_running(&self, body: &str) -> Vec<String> {
        let log = shell_quote(&self.path.to_string_lossy());
        let script = format!(
            "log={log}\n\
             rec() {{ echo \"$1 $(date +%s.%N) $RINGWATCH_INSTANCE $$ ${{RINGWATCH_EPOCH:-?}} $PWD\" >> \"$log\"; }}\n\
             trap 'rec stop; kill $! 2>/dev/null; exit 0' TERM\n\
             rec start\n\
             echo $$ > {PID_FILE}.tmp && mv {PID_FILE}.tmp {PID_FILE}\n\
             {body}\n"
        );
        vec!["sh".into(), "-c".into(), script]
    }

    /// Every complete line so far, in file order. Lines that do not parse
    /// (half-written, foreign) are skipped.
    pub fn lines(&self) -> Vec<LifeLine> {
        let text = fs::read_to_string(&self.path).unwrap_or_default();
        // Only newline-terminated lines are complete.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().filter_map(parse_line).collect()
    }

    /// Every copy (start line), with its stop if recorded, ordered by start.
    pub fn copies(&self) -> Vec<Life> {
        copies_of(&self.lines())
    }

    /// The copies of one instance, ordered by start.
    pub fn copies_of(&self, instance: &str) -> Vec<Life> {
        self.copies().into_iter().filter(|copy| copy.instance == instance).collect()
    }

    /// The copies whose process is alive now.
    pub fn alive(&self) -> Vec<Life> {
        self.copies().into_iter().filter(|copy| is_alive(copy.pid)).collect()
    }

    /// Polls the log until `pred` holds on its copies; returns them.
    ///
    /// # Panics
    /// On timeout, with the copies seen.
    #[track_caller]
    pub fn wait_for(&self, timeout: Duration, what: &str, mut pred: impl FnMut(&[Life]) -> bool) -> Vec<Life> {
        let result = poll::until(timeout, FILE_POLL, || {
            let copies = self.copies();
            if pred(&copies) { Step::Done(copies) } else { Step::Pending(describe_copies(&copies)) }
        });
        result.unwrap_or_else(|failure| panic!("waiting for {what} in {}: {failure}", self.path.display()))
    }

    /// The copies, one per line, for messages.
    pub fn describe(&self) -> String {
        describe_copies(&self.copies())
    }
}

/// Copies, one per line, for messages.
pub fn describe_copies(copies: &[Life]) -> String {
    if copies.is_empty() {
        return "no copies".to_owned();
    }
    copies.iter().map(|copy| format!("\n  {copy}")).collect()
}

fn parse_line(line: &str) -> Option<LifeLine> {
    let mut fields = line.splitn(6, ' ');
    let event = match fields.next()? {
        "start" => LifeEvent::Start,
        "stop" => LifeEvent::Stop,
        _ => return None,
    };
    let at = parse_stamp(fields.next()?)?;
    let instance = fields.next()?.to_owned();
    let pid = fields.next()?.parse().ok()?;
    let epoch = fields.next()?.to_owned();
    let dir = PathBuf::from(fields.next()?);
    Some(LifeLine { event, at, instance, pid, epoch, dir })
}

/// `1732612345.123456789` → a duration since the Unix epoch.
fn parse_stamp(text: &str) -> Option<Duration> {
    let (secs, nanos) = text.split_once('.')?;
    if nanos.len() != 9 {
        return None;
    }
    Some(Duration::new(secs.parse().ok()?, nanos.parse().ok()?))
}

fn copies_of(lines: &[LifeLine]) -> Vec<Life> {
    // A pid is reused only after its process is gone; a start line after a
    // stop of the same pid is a new copy.
    let mut open: BTreeMap<u32, usize> = BTreeMap::new();
    let mut copies: Vec<Life> = Vec::new();
    for line in lines {
        match line.event {
            LifeEvent::Start => {
                open.insert(line.pid, copies.len());
                copies.push(Life {
                    instance: line.instance.clone(),
                    pid: line.pid,
                    epoch: line.epoch.clone(),
                    dir: line.dir.clone(),
                    started: line.at,
                    stopped: None,
                });
            }
            LifeEvent::Stop => {
                if let Some(index) = open.remove(&line.pid) {
                    copies[index].stopped = Some(line.at);
                }
            }
        }
    }
    copies.sort_by_key(|copy| copy.started);
    copies
}

/// The fewest of `copies` running at any moment from `from` on (wall clock,
/// since the Unix epoch), judged at every start and stop; with the moment it
/// happened.
pub fn fewest_running(copies: &[Life], from: Duration) -> (usize, Duration) {
    let mut moments: Vec<Duration> = copies
        .iter()
        .flat_map(|copy| std::iter::once(copy.started).chain(copy.stopped))
        .filter(|t| *t >= from)
        .collect();
    moments.push(from);
    moments.sort_unstable();
    moments
        .into_iter()
        .map(|t| (copies.iter().filter(|copy| copy.ran_at(t)).count(), t))
        .min_by_key(|(count, _)| *count)
        .unwrap_or((0, from))
}

/// The first pair of copies whose runs overlap (the later one started
/// before the earlier one's stop, or the earlier one never stopped), if any.
pub fn first_overlap(copies: &[Life]) -> Option<(&Life, &Life)> {
    let mut sorted: Vec<&Life> = copies.iter().collect();
    sorted.sort_by_key(|copy| copy.started);
    sorted.windows(2).find_map(|pair| {
        let (earlier, later) = (pair[0], pair[1]);
        earlier.stopped.is_none_or(|stop| later.started < stop).then_some((earlier, later))
    })
}

/// Now, as a duration since the Unix epoch (the [`LifeLog`] clock).
pub fn wall_clock_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn at(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn copy(pid: u32, start: f64, stop: Option<f64>) -> Life {
        Life {
            instance: "web/0".into(),
            pid,
            epoch: "1".into(),
            dir: "/s/agent-a/instances/web-0".into(),
            started: at(start),
            stopped: stop.map(at),
        }
    }

    #[test]
    fn lines_pair_into_copies() {
        let lines: Vec<LifeLine> = [
            "start 100.000000001 web/0 10 1 /s/agent-a/instances/web-0",
            "start 100.5 web/1 11 2 /s/agent-b/instances/web-1",
            "garbage",
            "start 101.000000000 web/1 12 2 /s/agent c/instances/web-1",
            "stop 102.000000000 web/0 10 1 /s/agent-a/instances/web-0",
        ]
        .into_iter()
        .filter_map(parse_line)
        .collect();
        // "100.5" is not a `date +%s.%N` stamp: skipped with the garbage.
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].dir, Path::new("/s/agent c/instances/web-1"), "spaces survive in the last field");
        let copies = copies_of(&lines);
        assert_eq!(copies.len(), 2);
        assert_eq!((copies[0].pid, copies[0].stopped), (10, Some(Duration::new(102, 0))));
        assert_eq!(copies[0].started, Duration::new(100, 1));
        assert_eq!(copies[0].agent_dir(), Some(Path::new("/s/agent-a")));
        assert_eq!(copies[1].stopped, None);
    }

    #[test]
    fn a_half_written_line_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = LifeLog::new(&dir.path().join("life.log"));
        fs::write(log.path(), "start 1.000000000 web/0 5 1 /x/instances/web-0\nstart 2.0000").unwrap();
        assert_eq!(log.copies().len(), 1);
    }

    #[test]
    fn make_before_break_keeps_the_count() {
        // web/0 moves: the new copy (3) starts before the old one (1) stops.
        let copies = [copy(1, 0.0, Some(10.0)), copy(2, 0.5, None), copy(3, 5.0, None)];
        assert_eq!(fewest_running(&copies, at(0.5)).0, 2);
        // Break-before-make: one copy alone between 10 and 11.
        let copies = [copy(1, 0.0, Some(10.0)), copy(2, 0.5, None), copy(3, 11.0, None)];
        assert_eq!(fewest_running(&copies, at(0.5)), (1, at(10.0)));
    }

    #[test]
    fn overlaps_are_found() {
        assert_eq!(first_overlap(&[copy(1, 0.0, Some(4.0)), copy(2, 5.0, None)]), None);
        let copies = [copy(2, 3.0, None), copy(1, 0.0, Some(4.0))];
        let (a, b) = first_overlap(&copies).unwrap();
        assert_eq!((a.pid, b.pid), (1, 2));
        assert!(first_overlap(&[copy(1, 0.0, None), copy(2, 5.0, None)]).is_some(), "never stopped");
    }

    #[test]
    fn the_recording_command_records_start_pid_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let log = LifeLog::new(&dir.path().join("it's a life.log"));
        let work = dir.path().join("agent-a/instances/web-0");
        fs::create_dir_all(&work).unwrap();
        let command = log.command();
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .current_dir(&work)
            .env("RINGWATCH_INSTANCE", "web/0")
            .env("RINGWATCH_EPOCH", "7")
            .spawn()
            .unwrap();
        let pid = wait_for_pid(&work, Duration::from_secs(10));
        assert_eq!(pid, child.id());
        let both = poll::until(Duration::from_secs(5), FILE_POLL, || match processes_under(dir.path()).len() {
            2 => Step::Done(()),
            n => Step::Pending(format!("{n} process(es)")),
        });
        assert!(both.is_ok(), "the shell and its sleep run under the dir: {both:?}");
        crate::process::send_signal(pid, crate::Signal::Term).unwrap();
        child.wait().unwrap();
        let copies = log.wait_for(Duration::from_secs(10), "a stop", |c| c.iter().all(|c| c.stopped.is_some()));
        assert_eq!(copies.len(), 1);
        assert_eq!((copies[0].instance.as_str(), copies[0].pid, copies[0].epoch.as_str()), ("web/0", pid, "7"));
        assert!(copies[0].started <= copies[0].stopped.unwrap());
        assert_eq!(canonical(&copies[0].dir), canonical(&work));
        // The trap killed the sleep too.
        let left = poll::until(Duration::from_secs(5), FILE_POLL, || {
            let left = processes_under(dir.path());
            if left.is_empty() { Step::Done(()) } else { Step::Pending(format!("{left:?}")) }
        });
        assert!(left.is_ok(), "{left:?}");
    }

    #[test]
    fn the_reaper_kills_what_runs_under_its_dir() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("agent-a/instances/job-0");
        fs::create_dir_all(&work).unwrap();
        let command = pid_file_command();
        let mut child = Command::new(&command[0]).args(&command[1..]).current_dir(&work).spawn().unwrap();
        let pid = wait_for_pid(&work, Duration::from_secs(10));
        drop(Reaper::new(dir.path()));
        child.wait().unwrap();
        assert!(!is_alive(pid));
        assert!(processes_under(dir.path()).is_empty());
    }

    #[test]
    fn quoting_survives_quotes() {
        let out = Command::new("sh").args(["-c", &format!("printf %s {}", shell_quote("a 'b' $c"))]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a 'b' $c");
    }
}
