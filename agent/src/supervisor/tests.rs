//! The supervisor against real processes (`sh`, `sleep`, `true`, `false`).
//! Nothing sleeps in place of synchronisation: tests await the reports
//! channel, and poll `/proc` only to see a process vanish, with a deadline.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use ringwatch_shared::names::TaskName;
use ringwatch_shared::protocol::{Assignment, InstanceReport, InstanceState};
use ringwatch_shared::task::{MigratePolicy, OnDisconnect, Placement, RestartMode, RestartPolicy, TaskSpec};
use tokio::sync::mpsc;

use super::*;

/// Long enough for a loaded CI machine, short enough to fail a test.
const PATIENCE: Duration = Duration::from_secs(20);

struct Fixture {
    supervisor: Supervisor,
    reports: mpsc::Receiver<InstanceReport>,
    dir: tempfile::TempDir,
}

fn fixture_with(adjust: impl FnOnce(&mut SupervisorConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SupervisorConfig::new(dir.path().to_path_buf());
    config.stop_grace = Duration::from_secs(5);
    // These tests run sh, sleep, true and false; the allowlist tests set
    // their own.
    config.allow_exec = vec![ALLOW_ANY.into()];
    adjust(&mut config);
    let (sender, reports) = mpsc::channel(1024);
    Fixture { supervisor: Supervisor::new(config, sender), reports, dir }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

fn spec(name: &str, command: &[&str]) -> TaskSpec {
    TaskSpec {
        name: TaskName::parse(name).unwrap(),
        command: command.iter().map(|part| (*part).to_string()).collect(),
        replicas: 1,
        placement: Placement::Ring,
        restart: RestartPolicy::default(),
        migrate: MigratePolicy::default(),
        on_disconnect: OnDisconnect::Keep,
    }
}

fn assignment(spec: &TaskSpec, index: u32, epoch: u64) -> Assignment {
    Assignment { instance: id(&format!("{}/{index}", spec.name)), spec: spec.clone(), epoch }
}

fn id(text: &str) -> InstanceId {
    InstanceId::parse(text).unwrap()
}

impl Fixture {
    async fn next(&mut self) -> InstanceReport {
        match tokio::time::timeout(PATIENCE, self.reports.recv()).await {
            Ok(Some(report)) => report,
            Ok(None) => panic!("the reports channel closed"),
            Err(_) => panic!("no report within {PATIENCE:?}; inventory: {:#?}", self.supervisor.inventory()),
        }
    }

    /// The next report, which must be of `instance` in `state`.
    async fn expect(&mut self, instance: &str, state: InstanceState) -> InstanceReport {
        let report = self.next().await;
        assert_eq!((report.instance.to_string().as_str(), report.state), (instance, state), "{report:#?}");
        report
    }

    /// Reports of `instance` until one in `state`; others are skipped.
    async fn until(&mut self, instance: &str, state: InstanceState) -> Vec<InstanceReport> {
        let mut seen = Vec::new();
        loop {
            let report = self.next().await;
            if report.instance.to_string() != instance {
                continue;
            }
            let done = report.state == state;
            seen.push(report);
            if done {
                return seen;
            }
        }
    }

    fn instance_dir(&self, instance: &str) -> std::path::PathBuf {
        self.supervisor.config().instance_dir(&id(instance))
    }
}

fn states(reports: &[InstanceReport]) -> Vec<InstanceState> {
    reports.iter().map(|report| report.state).collect()
}

/// Whether any live (non-zombie) process is in process group `pgid`. Zombies
/// count as gone: the machine's init may be slow to reap orphans.
fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.filter_map(Result::ok).any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // pid (comm) state ppid pgrp …; comm may hold spaces or parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|field| field.parse::<u32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

async fn assert_group_gone(pgid: u32) {
    let deadline = Instant::now() + PATIENCE;
    while group_alive(pgid) {
        assert!(Instant::now() < deadline, "process group {pgid} still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `path` contains `needle` (the child said it is ready).
async fn wait_for_text(path: &Path, needle: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if std::fs::read_to_string(path).is_ok_and(|text| text.contains(needle)) {
            return;
        }
        assert!(Instant::now() < deadline, "{} never contained {needle:?}", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_forgotten(supervisor: &Supervisor, instance: &str) {
    let deadline = Instant::now() + PATIENCE;
    while supervisor.inventory().iter().any(|report| report.instance.to_string() == instance) {
        assert!(Instant::now() < deadline, "{instance} is still known");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_running_instance_is_stopped_with_its_process_group() {
    let mut fx = fixture();
    fx.supervisor.assign(assignment(&spec("sleeper", &["sleep", "1000"]), 0, 1));
    let starting = fx.expect("sleeper/0", InstanceState::Starting).await;
    assert_eq!((starting.epoch, starting.pid), (1, None));
    let running = fx.expect("sleeper/0", InstanceState::Running).await;
    let pid = running.pid.expect("a running instance has a pid");
    assert!(group_alive(pid));
    assert_eq!(fx.supervisor.pids(), [("sleeper/0".to_string(), pid)]);
    assert_eq!(fx.supervisor.inventory(), std::slice::from_ref(&running));

    fx.supervisor.stop(&id("sleeper/0"), 1, "task removed");
    let stopping = fx.expect("sleeper/0", InstanceState::Stopping).await;
    assert_eq!((stopping.pid, stopping.message.as_str()), (Some(pid), "task removed"));
    let stopped = fx.expect("sleeper/0", InstanceState::Stopped).await;
    assert_eq!(stopped.pid, None);
    assert_eq!(stopped.last_exit.as_deref(), Some("killed by signal 15"));
    assert_group_gone(pid).await;
    assert_forgotten(&fx.supervisor, "sleeper/0").await;
    assert!(fx.supervisor.pids().is_empty());
}

#[tokio::test]
async fn a_crash_loop_restarts_immediately_then_fails_with_the_count() {
    let mut fx = fixture();
    let mut crasher = spec("crasher", &["false"]);
    crasher.restart = RestartPolicy { mode: RestartMode::Immediate, max_restarts: 3, ..RestartPolicy::default() };
    fx.supervisor.assign(assignment(&crasher, 0, 7));
    let reports = fx.until("crasher/0", InstanceState::Failed).await;
    use InstanceState::{Failed, Restarting, Running, Starting};
    assert_eq!(
        states(&reports),
        [
            Starting, Running, Restarting, Starting, Running, Restarting, Starting, Running, Restarting, Starting,
            Running, Failed
        ]
    );
    let restarts: Vec<u32> = reports.iter().filter(|report| report.state == Restarting).map(|r| r.restarts).collect();
    assert_eq!(restarts, [1, 2, 3]);
    let failed = reports.last().unwrap();
    assert_eq!((failed.restarts, failed.epoch, failed.pid), (3, 7, None));
    assert_eq!(failed.last_exit.as_deref(), Some("exit code 1"));
    assert_eq!(failed.message, "exit code 1; gave up after 3 restarts within 1m");
    assert!(reports.iter().filter(|report| report.state == Restarting).all(|r| r.message.contains("restarting in 0s")));
    // A failed instance stays known, with nothing running.
    assert_eq!(fx.supervisor.inventory()[0].state, Failed);
    assert!(fx.supervisor.pids().is_empty());
}

#[tokio::test]
async fn delayed_restarts_wait_in_restarting_before_starting() {
    let mut fx = fixture();
    let mut crasher = spec("slow", &["sh", "-c", "exit 3"]);
    crasher.restart = RestartPolicy {
        mode: RestartMode::Delayed,
        delay: Duration::from_millis(40),
        max_delay: Duration::from_millis(100),
        max_restarts: 3,
        within: Duration::from_secs(60),
    };
    fx.supervisor.assign(assignment(&crasher, 2, 1));
    let reports = fx.until("slow/2", InstanceState::Failed).await;
    let restarting: Vec<&InstanceReport> =
        reports.iter().filter(|report| report.state == InstanceState::Restarting).collect();
    assert_eq!(restarting.len(), 3);
    for (index, report) in reports.iter().enumerate().skip(1) {
        if report.state == InstanceState::Starting {
            assert_eq!(reports[index - 1].state, InstanceState::Restarting, "{reports:#?}");
        }
    }
    assert!(restarting.iter().all(|report| report.last_exit.as_deref() == Some("exit code 3")));
    assert!(reports.last().unwrap().message.ends_with("gave up after 3 restarts within 1m"));
}

#[tokio::test]
async fn the_allowlist_refuses_other_programs_with_a_clear_message() {
    let mut fx = fixture_with(|config| config.allow_exec = vec!["/usr/bin/*".into(), "sleep".into()]);
    fx.supervisor.assign(assignment(&spec("sneaky", &["false"]), 0, 1));
    fx.expect("sneaky/0", InstanceState::Starting).await;
    let failed = fx.expect("sneaky/0", InstanceState::Failed).await;
    assert_eq!(
        failed.message,
        "program \"false\" is not allowed on this node: restart its agent with --allow-exec false \
         (or a glob matching it)"
    );
    assert!(!fx.instance_dir("sneaky/0").exists(), "a refused instance leaves nothing behind");

    fx.supervisor.assign(assignment(&spec("fine", &["/usr/bin/true"]), 0, 1));
    fx.expect("fine/0", InstanceState::Starting).await;
    fx.expect("fine/0", InstanceState::Running).await;
}

#[tokio::test]
async fn an_empty_allowlist_refuses_every_program_naming_the_flag_and_the_node() {
    let mut fx = fixture_with(|config| config.allow_exec.clear());
    assert!(fx.supervisor.config().allow_exec.is_empty(), "deny by default: the config starts empty");
    fx.supervisor.set_node_name("x");
    for (task, program) in [("py", "python3"), ("shell", "sh"), ("abs", "/bin/sh"), ("sleeper", "sleep")] {
        fx.supervisor.assign(assignment(&spec(task, &[program, "-c", "true"]), 0, 1));
        let instance = format!("{task}/0");
        fx.expect(&instance, InstanceState::Starting).await;
        let failed = fx.expect(&instance, InstanceState::Failed).await;
        assert_eq!(
            failed.message,
            format!(
                "program \"{program}\" is not allowed on node \"x\": restart its agent with --allow-exec {program} \
                 (or a glob matching it)"
            )
        );
        assert_eq!((failed.pid, failed.restarts), (None, 0));
        assert!(!fx.instance_dir(&instance).exists(), "a refused instance leaves nothing behind");
    }
    assert!(fx.supervisor.pids().is_empty(), "nothing runs");
    assert!(fx.supervisor.inventory().iter().all(|report| report.state == InstanceState::Failed));
}

#[tokio::test]
async fn a_refusal_from_a_config_list_says_where_to_add_the_program() {
    let mut fx = fixture_with(|config| {
        config.allow_exec = vec!["/opt/app/bin/*".into()];
        config.allow_source = AllowSource::Config("local_agent_allow_exec in the console's config file".into());
    });
    fx.supervisor.set_node_name("laptop");
    fx.supervisor.assign(assignment(&spec("py", &["python3", "-c", "print(1)"]), 0, 1));
    fx.expect("py/0", InstanceState::Starting).await;
    let failed = fx.expect("py/0", InstanceState::Failed).await;
    assert_eq!(
        failed.message,
        "program \"python3\" is not allowed on node \"laptop\": add \"python3\" (or a glob matching it) to \
         local_agent_allow_exec in the console's config file"
    );
}

#[tokio::test]
async fn the_allow_any_pattern_runs_programs_named_by_path_too() {
    let mut fx = fixture_with(|config| config.allow_exec = vec![ALLOW_ANY.into()]);
    for (task, program) in [("bare", "sleep"), ("path", "/bin/sleep")] {
        fx.supervisor.assign(assignment(&spec(task, &[program, "1000"]), 0, 1));
        fx.until(&format!("{task}/0"), InstanceState::Running).await;
    }
    assert_eq!(fx.supervisor.pids().len(), 2);
}

#[tokio::test]
async fn a_missing_program_fails_with_the_os_error() {
    let mut fx = fixture();
    fx.supervisor.assign(assignment(&spec("ghost", &["/nonexistent/ringwatch-no-such-program"]), 0, 1));
    fx.expect("ghost/0", InstanceState::Starting).await;
    let failed = fx.expect("ghost/0", InstanceState::Failed).await;
    assert!(failed.message.starts_with("failed to start \"/nonexistent/ringwatch-no-such-program\""), "{failed:?}");
    assert!(failed.message.contains("No such file or directory"), "{failed:?}");

    let mut bad = spec("bad", &["true"]);
    bad.command.clear();
    fx.supervisor.assign(assignment(&bad, 0, 1));
    fx.expect("bad/0", InstanceState::Starting).await;
    assert!(fx.expect("bad/0", InstanceState::Failed).await.message.contains("empty"));

    // A path in an instance id cannot even be decoded.
    assert!(InstanceId::parse("../../etc/0").is_err());
}

#[tokio::test]
async fn output_goes_to_capped_rotated_logs_in_a_private_directory() {
    let mut fx = fixture_with(|config| {
        config.log_max_bytes = 1000;
        config.log_keep = 2;
    });
    let script = "echo \"$RINGWATCH_INSTANCE $RINGWATCH_EPOCH $PWD\" >&2; yes | head -c 3500";
    let mut writer = spec("writer", &["sh", "-c", script]);
    writer.restart.max_restarts = 0;
    fx.supervisor.assign(assignment(&writer, 3, 42));
    let failed = fx.until("writer/3", InstanceState::Failed).await;
    assert_eq!(failed.last().unwrap().last_exit.as_deref(), Some("exit code 0"));

    let dir = fx.instance_dir("writer/3");
    assert_eq!(dir, fx.dir.path().join("instances").join("writer-3"));
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let size = |name: &str| std::fs::metadata(dir.join(name)).ok().map(|meta| meta.len());
    // 3500 bytes: 1000 dropped with the oldest file, 2000 rotated, 500 current.
    assert_eq!(
        [size("stdout.log"), size("stdout.log.1"), size("stdout.log.2"), size("stdout.log.3")],
        [Some(500), Some(1000), Some(1000), None]
    );
    let current = std::fs::read_to_string(dir.join("stdout.log")).unwrap();
    assert_eq!(current, "y\n".repeat(250));
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert_eq!(stderr.trim(), format!("writer/3 42 {}", dir.canonicalize().unwrap().display()));
    assert_eq!(std::fs::metadata(dir.join("stdout.log")).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn fencing_stops_only_instances_that_ask_for_it_soon_enough() {
    let mut fx = fixture();
    let mut soon = spec("soon", &["sleep", "1000"]);
    soon.on_disconnect = OnDisconnect::StopAfter(Duration::from_secs(5));
    let mut later = spec("later", &["sleep", "1000"]);
    later.on_disconnect = OnDisconnect::StopAfter(Duration::from_secs(30));
    let keep = spec("keep", &["sleep", "1000"]);
    for task in [&soon, &later, &keep] {
        fx.supervisor.assign(assignment(task, 0, 1));
        fx.until(&format!("{}/0", task.name), InstanceState::Running).await;
    }
    let soon_pid = fx.supervisor.pids().into_iter().find(|(name, _)| name == "soon/0").unwrap().1;

    fx.supervisor.console_silent_for(Duration::from_secs(4));
    fx.supervisor.console_silent_for(Duration::from_secs(5));
    fx.supervisor.console_silent_for(Duration::from_secs(6));
    let stopping = fx.expect("soon/0", InstanceState::Stopping).await;
    assert_eq!(stopping.message, "fenced: no word from the console for 5s");
    let stopped = fx.expect("soon/0", InstanceState::Stopped).await;
    assert_eq!(stopped.message, "fenced: no word from the console for 5s");
    assert_group_gone(soon_pid).await;

    let inventory: Vec<(String, InstanceState)> =
        fx.supervisor.inventory().into_iter().map(|report| (report.instance.to_string(), report.state)).collect();
    assert_eq!(
        inventory,
        [
            ("keep/0".to_string(), InstanceState::Running),
            ("later/0".to_string(), InstanceState::Running),
            ("soon/0".to_string(), InstanceState::Stopped)
        ]
    );

    // The console is back and assigns it again (same epoch): it runs again.
    fx.supervisor.assign(assignment(&soon, 0, 1));
    fx.expect("soon/0", InstanceState::Starting).await;
    let running = fx.expect("soon/0", InstanceState::Running).await;
    assert_ne!(running.pid, Some(soon_pid));
}

#[tokio::test]
async fn assignments_are_idempotent_per_epoch_and_a_newer_epoch_replaces() {
    let mut fx = fixture();
    let sleeper = spec("idem", &["sleep", "1000"]);
    fx.supervisor.assign(assignment(&sleeper, 0, 1));
    fx.supervisor.assign(assignment(&sleeper, 0, 1));
    fx.expect("idem/0", InstanceState::Starting).await;
    let first = fx.expect("idem/0", InstanceState::Running).await.pid.unwrap();
    fx.supervisor.assign(assignment(&sleeper, 0, 1));
    assert_eq!(fx.supervisor.pids(), [("idem/0".to_string(), first)]);

    // Epoch 2 replaces the process; the old epoch's stop is reported as such.
    let mut newer = sleeper.clone();
    newer.command = vec!["sleep".into(), "999".into()];
    fx.supervisor.assign(assignment(&newer, 0, 2));
    let stopping = fx.expect("idem/0", InstanceState::Stopping).await;
    assert_eq!((stopping.epoch, stopping.pid), (1, Some(first)));
    let stopped = fx.expect("idem/0", InstanceState::Stopped).await;
    assert_eq!((stopped.epoch, stopped.message.as_str()), (1, "replaced by epoch 2"));
    assert_eq!(fx.expect("idem/0", InstanceState::Starting).await.epoch, 2);
    let running = fx.expect("idem/0", InstanceState::Running).await;
    assert_eq!((running.epoch, running.restarts), (2, 0));
    let second = running.pid.unwrap();
    assert_ne!(second, first);
    assert_group_gone(first).await;
    let cmdline = std::fs::read(format!("/proc/{second}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\0999\0");

    // A stale epoch changes nothing, neither an assignment nor a stop: the
    // next report is the stop's of the current epoch.
    fx.supervisor.assign(assignment(&sleeper, 0, 1));
    fx.supervisor.stop(&id("idem/0"), 1, "a stop meant for the old placement");
    fx.supervisor.stop(&id("idem/0"), 2, "done");
    let stopping = fx.expect("idem/0", InstanceState::Stopping).await;
    assert_eq!((stopping.epoch, stopping.pid), (2, Some(second)));
    fx.expect("idem/0", InstanceState::Stopped).await;
}

#[tokio::test]
async fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
    let grace = Duration::from_millis(300);
    let mut fx = fixture_with(|config| config.stop_grace = grace);
    let stubborn = spec("stubborn", &["sh", "-c", "trap '' TERM; echo ready; sleep 1000"]);
    fx.supervisor.assign(assignment(&stubborn, 0, 1));
    fx.expect("stubborn/0", InstanceState::Starting).await;
    let pid = fx.expect("stubborn/0", InstanceState::Running).await.pid.unwrap();
    // Only once the trap is set does SIGTERM mean anything.
    wait_for_text(&fx.instance_dir("stubborn/0").join("stdout.log"), "ready").await;

    let asked = Instant::now();
    fx.supervisor.stop(&id("stubborn/0"), 1, "removed");
    fx.expect("stubborn/0", InstanceState::Stopping).await;
    let stopped = fx.expect("stubborn/0", InstanceState::Stopped).await;
    assert!(asked.elapsed() >= grace, "killed before the grace period: {:?}", asked.elapsed());
    assert_eq!(stopped.last_exit.as_deref(), Some("killed by signal 9"));
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn restart_stops_and_starts_again_counting_a_restart() {
    let mut fx = fixture();
    fx.supervisor.assign(assignment(&spec("again", &["sleep", "1000"]), 0, 1));
    fx.expect("again/0", InstanceState::Starting).await;
    let first = fx.expect("again/0", InstanceState::Running).await.pid.unwrap();
    fx.supervisor.restart(&id("again/0"), 7);
    fx.supervisor.restart(&id("again/0"), 1);
    let stopping = fx.expect("again/0", InstanceState::Stopping).await;
    assert_eq!(stopping.message, "restarting on request");
    fx.expect("again/0", InstanceState::Starting).await;
    let running = fx.expect("again/0", InstanceState::Running).await;
    assert_eq!(running.restarts, 1);
    assert_ne!(running.pid, Some(first));
    assert_group_gone(first).await;
    fx.supervisor.restart(&id("nobody/0"), 1);
}

#[tokio::test]
async fn shutdown_stops_everything_and_refuses_new_work() {
    let mut fx = fixture();
    let mut pids = Vec::new();
    for name in ["one", "two"] {
        fx.supervisor.assign(assignment(&spec(name, &["sh", "-c", "sleep 1000 & sleep 1000"]), 0, 1));
        let running = fx.until(&format!("{name}/0"), InstanceState::Running).await;
        pids.push(running.last().unwrap().pid.unwrap());
    }
    fx.supervisor.shutdown().await;
    let mut stopped = Vec::new();
    while stopped.len() < 2 {
        let report = fx.next().await;
        if report.state == InstanceState::Stopped {
            assert_eq!(report.message, "the agent is shutting down");
            stopped.push(report.instance);
        }
    }
    stopped.sort();
    assert_eq!(stopped, [id("one/0"), id("two/0")]);
    for pid in pids {
        assert_group_gone(pid).await;
    }
    assert!(fx.supervisor.inventory().is_empty());
    fx.supervisor.assign(assignment(&spec("late", &["sleep", "1000"]), 0, 1));
    assert!(fx.supervisor.inventory().is_empty());
}

#[tokio::test]
async fn dropping_the_supervisor_kills_its_children() {
    let mut fx = fixture();
    fx.supervisor.assign(assignment(&spec("orphan", &["sh", "-c", "sleep 1000 & sleep 1000"]), 0, 1));
    let pid = fx.until("orphan/0", InstanceState::Running).await.last().unwrap().pid.unwrap();
    let clone = fx.supervisor.clone();
    drop(fx.supervisor);
    assert!(group_alive(pid), "a remaining clone keeps the children");
    drop(clone);
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn a_full_reports_channel_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, mut reports) = mpsc::channel(1);
    let config = SupervisorConfig { allow_exec: vec![ALLOW_ANY.into()], ..SupervisorConfig::new(dir.path().into()) };
    let supervisor = Supervisor::new(config, sender);
    let mut quick = spec("quick", &["true"]);
    quick.restart.max_restarts = 0;
    supervisor.assign(assignment(&quick, 0, 1));
    // Starting fills the channel; Running and Failed are dropped and counted,
    // yet the instance reaches Failed.
    let deadline = Instant::now() + PATIENCE;
    while supervisor.inventory().first().map(|report| report.state) != Some(InstanceState::Failed) {
        assert!(Instant::now() < deadline, "{:?}", supervisor.inventory());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(supervisor.dropped_reports(), 2);
    assert_eq!(reports.recv().await.unwrap().state, InstanceState::Starting);
}

#[test]
fn config_defaults_and_validation() {
    let config = SupervisorConfig::new("/data".into());
    assert_eq!(config.stop_grace, Duration::from_secs(5));
    assert_eq!((config.log_max_bytes, config.log_keep), (1 << 20, 3));
    assert!(config.validate().is_ok());
    assert!(config.allow_exec.is_empty() && !config.allows("sh"), "deny by default");
    assert_eq!(config.allow_source, AllowSource::Flag);
    let any = SupervisorConfig { allow_exec: vec![ALLOW_ANY.into()], ..config.clone() };
    assert!(any.allows("sh") && any.allows("/usr/bin/python3"));
    let some = SupervisorConfig { allow_exec: vec!["/usr/bin/*".into()], ..config.clone() };
    assert!(some.allows("/usr/bin/python3") && !some.allows("python3"));
    assert_eq!(config.instance_dir(&id("web/1")), std::path::PathBuf::from("/data/instances/web-1"));
    let bad = SupervisorConfig { allow_exec: vec!["[".into()], ..config };
    assert!(matches!(bad.validate(), Err(SupervisorError::BadPattern { .. })));
    assert_eq!(seconds(Duration::from_millis(2500)), "2.5s");
    assert_eq!(seconds(Duration::from_secs(5)), "5s");
}

#[test]
fn assign_outside_a_runtime_reports_failed_instead_of_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let (sender, mut reports) = mpsc::channel(4);
    let supervisor = Supervisor::new(SupervisorConfig::new(dir.path().to_path_buf()), sender);
    supervisor.assign(assignment(&spec("nort", &["true"]), 0, 1));
    assert_eq!(reports.try_recv().unwrap().state, InstanceState::Failed);
    assert!(supervisor.inventory().is_empty());
}

#[test]
fn a_restarted_agent_kills_what_a_killed_one_left() {
    let dir = tempfile::tempdir().unwrap();
    // The "killed agent": its runtime dies with it, without stopping anything.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pid = runtime.block_on(async {
        let (reports_tx, mut reports) = tokio::sync::mpsc::channel(64);
        let config = SupervisorConfig { allow_exec: vec!["sleep".into()], ..SupervisorConfig::new(dir.path().into()) };
        let supervisor = Supervisor::new(config, reports_tx);
        supervisor.assign(orphan_assignment());
        let pid = loop {
            let report = tokio::time::timeout(Duration::from_secs(20), reports.recv()).await.unwrap().unwrap();
            if report.state == InstanceState::Running {
                break report.pid.unwrap();
            }
        };
        // No drop: a killed agent runs no destructors.
        std::mem::forget(supervisor);
        pid
    });
    runtime.shutdown_background();
    assert!(process_alive(pid), "the orphan outlived its agent");
    let reaped = reap_orphans(dir.path());
    assert_eq!(reaped, vec!["orphan-0".to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!process_alive(pid), "the orphan is gone");
    assert!(reap_orphans(dir.path()).is_empty(), "nothing left the second time");
}

fn orphan_assignment() -> Assignment {
    Assignment {
        instance: id("orphan/0"),
        spec: ringwatch_shared::task::TaskSpec {
            name: TaskName::parse("orphan").unwrap(),
            command: vec!["sleep".into(), "1000".into()],
            replicas: 1,
            placement: ringwatch_shared::task::Placement::Ring,
            restart: ringwatch_shared::task::RestartPolicy::default(),
            migrate: ringwatch_shared::task::MigratePolicy::default(),
            on_disconnect: ringwatch_shared::task::OnDisconnect::Keep,
        },
        epoch: 1,
    }
}

/// Alive and not a zombie (PID 1 here may not reap orphans).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}
