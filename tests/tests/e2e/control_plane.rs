//! Regression tests for the cases of the control-plane issue (see
//! ARCHITECTURE.md, "Invariants", "Nothing received is trusted" and
//! "Identity"), each named after its case and run against the real
//! binaries: absurd durations in task files (case 2), a task far larger
//! than the fleet (case 3), a paused console and dead nodes (case 6), name
//! takeover (case 7), join token lifetime and revocation (case 8), a
//! damaged `state.redb` or `state.wal` (case 10), a garbled `console.addr` (case 11) and
//! key files others can read (case 13).

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use ringwatch_tests::console::{ADDR_FILE, Exited};
use ringwatch_tests::process::{Output, Signal};
use ringwatch_tests::status::{INSTANCE_PENDING, INSTANCE_RUNNING};
use ringwatch_tests::tasks::{self, EXIT_NO_CONSOLE, TaskDef};
use ringwatch_tests::{
    Agent, Console, EXIT_DEADLINE, Fleet, LIVENESS, NodeState, Sandbox, Status, console, instances, procfs,
};

use crate::{Cluster, start_agent};

use NodeState::{Alive, Failed};

/// `ringwatch join-token ARGS… --data-dir DIR`, which must run to
/// completion.
#[track_caller]
fn join_token_cmd(data_dir: &Path, args: &[&str]) -> Output {
    tasks::admin(data_dir, ["join-token"].iter().chain(args).copied()).unwrap_or_else(|err| panic!("{err:#}"))
}

/// `join-token ARGS…`, asserted successful.
#[track_caller]
fn join_token_ok(data_dir: &Path, args: &[&str]) -> Output {
    let output = join_token_cmd(data_dir, args);
    assert!(output.status.success(), "join-token {args:?} failed: {output}");
    output
}

/// The ids and revocation of every token, from `join-token --list --json`.
#[track_caller]
fn token_ids(data_dir: &Path) -> Vec<(String, bool)> {
    let output = join_token_ok(data_dir, &["--list", "--json"]);
    let tokens: Vec<serde_json::Value> = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|err| panic!("join-token --list --json is not a JSON array ({err}): {output}"));
    tokens
        .iter()
        .map(|token| {
            let id = token["id"].as_str().unwrap_or_else(|| panic!("a token without an id: {output}"));
            (id.to_owned(), token["revoked"].as_bool().unwrap_or_else(|| panic!("no revoked flag: {output}")))
        })
        .collect()
}

/// Issues a token and finds its id in the list (the only new one).
#[track_caller]
fn issue_token(data_dir: &Path) -> (String, String) {
    let before = token_ids(data_dir);
    let token = console::join_token(data_dir, None);
    let after = token_ids(data_dir);
    let new: Vec<&(String, bool)> = after.iter().filter(|entry| !before.contains(entry)).collect();
    assert_eq!(new.len(), 1, "one new token in the list: before {before:?}, after {after:?}");
    assert!(!new[0].1, "a new token is not revoked: {after:?}");
    assert!(token.contains(&new[0].0), "the listed id {} is part of the token {token}", new[0].0);
    (token, new[0].0.clone())
}

/// Asserts `id` is listed, in the table and the JSON, with its revocation.
#[track_caller]
fn assert_listed(data_dir: &Path, id: &str, revoked: bool) {
    let ids = token_ids(data_dir);
    assert!(ids.contains(&(id.to_owned(), revoked)), "token {id} should be listed with revoked={revoked}: {ids:?}");
    let table = join_token_ok(data_dir, &["--list"]);
    let line = table.stdout.lines().find(|line| line.contains(id));
    let line = line.unwrap_or_else(|| panic!("join-token --list should show {id}: {table}"));
    assert_eq!(line.contains("revoked"), revoked, "the line of {id} says whether it is revoked: {table}");
}

/// Starts an agent with a fresh data dir (a fresh key) called `name` with
/// `token`, and asserts it is refused with a message mentioning one of
/// `phrases`.
#[track_caller]
fn assert_join_refused(sandbox: &Sandbox, console: &Console, token: &str, name: &str, dir: &str, phrases: &[&str]) {
    let mut agent = Agent::start(console.addr(), token, name, &sandbox.dir(dir), &[]);
    let exit = agent.wait_refused_exit();
    agent.assert_log_mentions(phrases);
    sandbox.step(format!("{name} ({dir}) refused ({exit})"));
}

/// Counts of a task's instances by state, for messages (the task of case
/// 3 has ten thousand).
fn instance_counts(status: &Status, task: &str) -> String {
    let Some(task) = status.task(task) else { return format!("no task {task}") };
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for instance in &task.instances {
        *counts.entry(instance.state.as_str()).or_default() += 1;
    }
    format!("{counts:?}")
}

// ---- case 2 ----

/// An absurd duration in a task file.
const ABSURD: &str = "10000000000000000000s";

#[test]
fn regression_case_2_absurd_durations_are_refused_and_the_longest_ones_keep_detection_running() {
    let sandbox = Sandbox::new("case2-durations");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);

    // The durations the detection loop and the restart path add to a clock.
    let absurd = [
        (
            "on_disconnect.stop_after",
            TaskDef::new("fenced", ["sh"]).set("on_disconnect", &format!("{{ stop_after = \"{ABSURD}\" }}")),
        ),
        (
            "restart.delay",
            TaskDef::new("delayed", ["sh"])
                .set("restart", &format!("{{ mode = \"delayed\", delay = \"{ABSURD}\", max_delay = \"{ABSURD}\" }}")),
        ),
    ];
    for (key, task) in absurd {
        let file = fleet.new_file("absurd", "toml");
        tasks::write_task_file(&file, &[task]);
        let output = fleet.admin(&["task", "apply", file.to_str().unwrap()]);
        assert!(!output.status.success(), "a task file with {key} = {ABSURD} must be refused: {output}");
        // Line 1 `[[task]]`, 2 the name, 3 the command, 4 the key.
        for phrase in ["line 4", key, "at most 7days", "nothing was changed"] {
            assert!(output.stderr.contains(phrase), "the refusal should say {phrase:?}: {output}");
        }
        sandbox.step(format!("{key} = {ABSURD} refused: {}", output.stderr.trim()));
    }
    assert!(fleet.task_list().is_empty(), "nothing was applied: {:?}", fleet.task_list());

    // The longest values allowed: every wait of the task is seven days.
    let week = "7d";
    let task = TaskDef::new("week", instances::pid_file_command())
        .set("on_disconnect", &format!("{{ stop_after = \"{week}\" }}"))
        .set(
            "restart",
            &format!("{{ mode = \"delayed\", delay = \"{week}\", max_delay = \"{week}\", within = \"{week}\" }}"),
        )
        .set("migrate", &format!("{{ mode = \"gradual\", min_healthy = \"{week}\" }}"));
    fleet.apply(&[task]);
    let (placed, _) = fleet.wait_running("week", 1);
    let host = placed["week/0"].clone();
    sandbox.step(format!("week/0 runs on {host}"));

    fleet.kill_host(&host);
    let status = fleet.console.wait_for_states(&[(host.as_str(), Failed)]);
    sandbox.step(format!("{host} killed and failed: {status}"));

    // Detection goes on: another node killed afterwards is failed too.
    let second = ["a", "b", "c"].into_iter().find(|name| *name != host).unwrap();
    fleet.agent(second).kill9();
    let status = fleet.console.wait_for_states(&[(host.as_str(), Failed), (second, Failed)]);
    sandbox.step(format!("{second} killed and failed too: {status}"));
    assert_eq!(status.node_of("week/0"), Some(host.as_str()), "week/0 waits seven days for {host}: {}", status.raw);
    assert!(fleet.console.is_running(), "the console must keep running\n{}", fleet.console.log_tail());
    assert!(!fleet.console.log().contains("panicked"), "nothing panicked\n{}", fleet.console.log_tail());
}

// ---- case 3 ----

#[test]
fn regression_case_3_a_ten_thousand_replica_task_on_two_nodes_waits_quietly() {
    let sandbox = Sandbox::new("case3-huge-task");
    let mut fleet = Fleet::start(&sandbox, &["a", "b"]);
    let replicas: usize = 10_000;

    fleet.apply(&[TaskDef::new("huge", instances::pid_file_command()).replicas(10_000)]);
    let status = fleet.console.wait_for("two instances of huge running, the rest pending", |s| {
        let Some(task) = s.task("huge") else { return false };
        let running: Vec<&str> =
            task.instances.iter().filter(|i| i.state == INSTANCE_RUNNING).filter_map(|i| i.node.as_deref()).collect();
        let pending = task.instances.iter().filter(|i| i.state == INSTANCE_PENDING).count();
        running.len() == 2 && running[0] != running[1] && pending == replicas - 2
    });
    sandbox.step(format!("placed: {}", instance_counts(&status, "huge")));

    // The event log says once that the rest wait; the count is checked
    // after a few more ticks have had the chance to repeat it.
    const WAITING: &str = "wait for a node";
    let said = fleet.console.proc().wait_for_log(LIVENESS, WAITING, |log| log.contains(WAITING));
    assert!(said, "the console should say the rest wait for a node\n{}", fleet.console.log_tail());
    let status = fleet.console.hold(Duration::from_secs(2), "status answers while the rest wait", |s| {
        match s.task("huge").map(|task| task.instances.iter().filter(|i| i.is_running()).count()) {
            Some(2) => Ok(()),
            other => Err(format!("2 instances should run, not {other:?}")),
        }
    });
    let log = fleet.console.log();
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(WAITING)).collect();
    assert_eq!(lines.len(), 1, "said once, not every tick: {lines:#?}");
    assert!(lines[0].contains("9998 instance(s) of \"huge\""), "it says how many wait: {}", lines[0]);
    sandbox.step(format!("said once: {}; status answers: {}", lines[0], instance_counts(&status, "huge")));
    if let Some(reading) = procfs::read(fleet.console.proc().pid()) {
        // Information only: the cost belongs to a bench.
        sandbox.step(format!("console CPU so far: {:.2}s", reading.cpu.as_secs_f64()));
    }

    fleet.kill_host("a");
    let status = fleet.console.wait_for_states(&[("a", Failed), ("b", Alive)]);
    sandbox.step(format!("a killed and failed: {status}"));
}

// ---- case 6 ----

/// Freezes the console for 2.5 s (SIGSTOP, SIGCONT), waits until it says
/// it was paused, and holds a few seconds: `dead` must stay failed
/// throughout, and nothing may bring it back to alive.
fn pause_console_and_hold(sandbox: &Sandbox, fleet: &mut Fleet, dead: &str) {
    const PAUSED: &str = "the console itself was paused";
    let before = fleet.console.log().len();
    fleet.console.proc().signal(Signal::Stop);
    // The pause is the subject: 2.5 s, more than the console's own pause
    // threshold and the silence that fails a node.
    std::thread::sleep(Duration::from_millis(2_500));
    fleet.console.proc().signal(Signal::Cont);
    let said = fleet.console.proc().wait_for_log(LIVENESS, PAUSED, |log| log[before.min(log.len())..].contains(PAUSED));
    assert!(said, "the console should say it was paused\n{}", fleet.console.log_tail());
    sandbox.step("console paused 2.5s, continued, and said so");

    fleet.console.hold(Duration::from_secs(3), &format!("{dead} stays failed"), |status| match status.state_of(dead) {
        Some(Failed) => Ok(()),
        other => Err(format!("{dead} is {other:?}, it is dead")),
    });
    let log = fleet.console.log();
    let node = format!("node \"{dead}\"");
    let revived: Vec<&str> =
        log[before..].lines().filter(|line| line.contains(&node) && line.contains("→ alive")).collect();
    assert!(revived.is_empty(), "nothing brought {dead} back: {revived:#?}\n{}", fleet.console.log_tail());
}

#[test]
fn regression_case_6_a_console_pause_does_not_revive_a_dead_node_nor_cancel_its_failover() {
    let sandbox = Sandbox::new("case6-pause-dead");
    // Three nodes: one failing is under the share that pauses failover.
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    // The failed node's instance moves 3 s after its conviction unless the
    // node returns: the first pause falls inside that wait.
    fleet.apply(&[
        TaskDef::new("web", instances::pid_file_command()).set("restart", r#"{ mode = "delayed", delay = "3s" }"#)
    ]);
    let (placed, _) = fleet.wait_running("web", 1);
    let dead = placed["web/0"].clone();
    let others: Vec<String> = fleet.names().into_iter().filter(|name| *name != dead).collect();

    fleet.kill_host(&dead);
    let status = fleet.console.wait_for_states(&[(dead.as_str(), Failed)]);
    sandbox.step(format!("{dead}, host of web/0, killed and failed: {status}"));

    // Paused while the dead node's connection has not yet timed out.
    pause_console_and_hold(&sandbox, &mut fleet, &dead);
    // Its failover was not cancelled: web/0 runs on a live node.
    let status = fleet.console.wait_for("web/0 running on a live node, the dead one still failed", |s| {
        s.is(&dead, &Failed)
            && s.instance("web/0").is_some_and(|instance| {
                instance.is_running() && instance.node.as_ref().is_some_and(|node| others.contains(node))
            })
    });
    sandbox.step(format!("web/0 moved: {}; {status}", status.tasks_summary()));

    // Paused again once the console has seen the connection end: a dead
    // and disconnected node, as in the issue.
    let session = format!("node={dead}");
    let ended = fleet.console.proc().wait_for_log(LIVENESS, "the dead node's connection to end", |log| {
        log.lines().any(|line| line.contains(&session) && line.contains("agent connection ended"))
    });
    assert!(ended, "the console should see {dead}'s connection end\n{}", fleet.console.log_tail());
    sandbox.step(format!("{dead}'s connection ended"));
    pause_console_and_hold(&sandbox, &mut fleet, &dead);
    let status = fleet.console.status();
    assert_eq!(status.state_of(&dead), Some(&Failed), "{status}");
}

// ---- case 7 ----

#[test]
fn regression_case_7_a_dead_nodes_name_is_not_taken_over() {
    let sandbox = Sandbox::new("case7-takeover");
    let mut cluster = Cluster::start(&sandbox, &["a", "b"]);

    cluster.agent("a").kill9();
    cluster.console.wait_for_states(&[("a", Failed), ("b", Alive)]);
    sandbox.step("a killed and failed");

    // A fresh key under the dead node's name, with the still-valid token.
    let mut impostor = Agent::start(cluster.console.addr(), &cluster.token, "a", &sandbox.dir("agent-a-impostor"), &[]);
    let exit = impostor.wait_refused_exit();
    impostor.assert_log_mentions(&["ringwatch revoke a"]);
    sandbox.step(format!("the impostor was refused ({exit})"));

    // The real a comes back with its stored credentials.
    let real_dir = cluster.agent("a").data_dir().to_path_buf();
    *cluster.agent("a") = Agent::start_stored(cluster.console.addr(), "a", &real_dir, &[]);
    let status = cluster.console.wait_for_states(&[("a", Alive), ("b", Alive)]);
    sandbox.step(format!("the real a is back: {status}"));

    // Revoking frees the name: a fresh agent joins as a with a new token.
    let output = tasks::admin_ok(cluster.console.data_dir(), ["revoke", "a"]);
    sandbox.step(format!("revoke a: {}", output.stdout.trim()));
    cluster.agent("a").wait_refused_exit();
    cluster.agent("a").assert_log_mentions(&["revoked"]);
    let token = cluster.console.join_token();
    let mut successor = Agent::start(cluster.console.addr(), &token, "a", &sandbox.dir("agent-a-successor"), &[]);
    let status = cluster.console.wait_for_states(&[("a", Alive), ("b", Alive)]);
    sandbox.step(format!("a fresh agent joined as a: {status}"));
    assert!(successor.try_exit().is_none(), "the successor keeps running\n{}", successor.log_tail());
}

// ---- case 8 ----

#[test]
fn regression_case_8_a_join_token_lives_at_most_thirty_days() {
    let sandbox = Sandbox::new("case8-ttl");
    let offline = sandbox.dir("offline");
    let console = Console::start(&sandbox.dir("console"));
    for data_dir in [offline.as_path(), console.data_dir()] {
        for ttl in ["31d", "500000000000y"] {
            let output = join_token_cmd(data_dir, &["--ttl", ttl]);
            assert!(!output.status.success(), "--ttl {ttl} must be refused: {output}");
            assert!(output.stderr.contains("at most 30 days"), "the refusal names the limit: {output}");
            if ttl == "31d" {
                assert!(output.stderr.contains("not 31 days"), "the refusal repeats the value in days: {output}");
            }
            assert!(output.stdout.trim().is_empty(), "no token is printed: {output}");
        }
        join_token_ok(data_dir, &["--ttl", "30d"]);
    }
    assert_eq!(token_ids(&offline).len(), 1, "only the 30-day token was issued offline");
    assert_eq!(token_ids(console.data_dir()).len(), 1, "only the 30-day token was issued by the console");
}

/// Lists, revokes one and revokes all tokens of `data_dir`, with or without
/// a console running; returns (the revoked token, the one revoked by
/// `--revoke-all`).
#[track_caller]
fn list_and_revoke(sandbox: &Sandbox, data_dir: &Path) -> (String, String) {
    let (revoked, revoked_id) = issue_token(data_dir);
    let (later, later_id) = issue_token(data_dir);
    assert_listed(data_dir, &revoked_id, false);
    let output = join_token_ok(data_dir, &["--revoke", &revoked_id]);
    sandbox.step(format!("--revoke {revoked_id}: {}", output.stdout.trim()));
    assert_listed(data_dir, &revoked_id, true);
    assert_listed(data_dir, &later_id, false);
    let unknown = join_token_cmd(data_dir, &["--revoke", "0123456789abcdef"]);
    assert!(!unknown.status.success(), "revoking an unknown id fails: {unknown}");
    assert!(unknown.stderr.contains("join-token --list"), "it says where the ids are: {unknown}");

    let output = join_token_ok(data_dir, &["--revoke-all"]);
    sandbox.step(format!("--revoke-all: {}", output.stdout.trim()));
    assert!(token_ids(data_dir).iter().all(|(_, revoked)| *revoked), "all revoked: {:?}", token_ids(data_dir));
    (revoked, later)
}

#[test]
fn regression_case_8_join_tokens_are_listed_and_revoked_with_a_console_running() {
    let sandbox = Sandbox::new("case8-revoke-online");
    let mut cluster = Cluster::start(&sandbox, &["a"]);
    let data_dir = cluster.console.data_dir().to_path_buf();

    let (revoked, later) = list_and_revoke(&sandbox, &data_dir);
    let first = cluster.token.clone();
    for (token, dir) in [(&revoked, "agent-x"), (&later, "agent-y"), (&first, "agent-z")] {
        assert_join_refused(&sandbox, &cluster.console, token, dir.trim_start_matches("agent-"), dir, &["revoked"]);
    }
    let status = cluster.console.wait_for_states(&[("a", Alive)]);
    sandbox.step(format!("a, joined before, keeps its credentials: {status}"));
}

#[test]
fn regression_case_8_join_tokens_are_issued_listed_and_revoked_without_a_console() {
    let sandbox = Sandbox::new("case8-revoke-offline");
    let data_dir = sandbox.dir("console");

    let (revoked, later) = list_and_revoke(&sandbox, &data_dir);
    let (valid, valid_id) = issue_token(&data_dir);
    assert_listed(&data_dir, &valid_id, false);
    sandbox.step("issued, listed and revoked without a console");

    // The console started afterwards knows them all.
    let mut console = Console::start(&data_dir);
    assert_listed(&data_dir, &valid_id, false);
    for (token, dir) in [(&revoked, "agent-x"), (&later, "agent-y")] {
        assert_join_refused(&sandbox, &console, token, dir.trim_start_matches("agent-"), dir, &["revoked"]);
    }
    let _ok = start_agent(&sandbox, &console, &valid, "ok", &[]);
    let status = console.wait_for_states(&[("ok", Alive)]);
    sandbox.step(format!("the token issued offline joins: {status}"));
}

#[test]
fn regression_case_8_a_revoked_node_does_not_rejoin_with_its_token() {
    let sandbox = Sandbox::new("case8-revoked-node");
    let mut cluster = Cluster::start(&sandbox, &["a", "b"]);
    let data_dir = cluster.console.data_dir().to_path_buf();

    tasks::admin_ok(&data_dir, ["revoke", "a"]);
    cluster.agent("a").wait_refused_exit();
    sandbox.step("a revoked");

    // A fresh data dir, the same name, the same token.
    assert_join_refused(&sandbox, &cluster.console, &cluster.token, "a", "agent-a-again", &["token it used"]);
    // The token still serves others.
    let _c = start_agent(&sandbox, &cluster.console, &cluster.token, "c", &[]);
    let status = cluster.console.wait_for_states(&[("b", Alive), ("c", Alive)]);
    assert!(!status.is("a", &Alive), "a must not be back: {status}");
    sandbox.step(format!("the token still admits others: {status}"));
}

// ---- case 10 ----

/// Copies the files (not subdirectories) of `from` into a new `to`, modes
/// included.
#[track_caller]
fn copy_files(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::Permissions::from_mode(0o700)).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A console on `data_dir` and an agent "a" on `agent_dir` joined to it,
/// alive.
fn console_with_a_joined(data_dir: &Path, agent_dir: &Path) -> (Console, Agent) {
    let mut console = Console::start(data_dir);
    let token = console.join_token();
    let agent = Agent::start(console.addr(), &token, "a", agent_dir, &[]);
    console.wait_for_states(&[("a", Alive)]);
    (console, agent)
}

/// Asserts a console that refused to start exited 1 naming `file`, without
/// a panic.
#[track_caller]
fn assert_refused_naming(exited: &Exited, file: &Path) {
    assert_eq!(
        exited.status.code(),
        Some(1),
        "serve must exit 1 (never 101, a panic): {}\n{}",
        exited.status,
        exited.log
    );
    assert!(!exited.log.contains("panicked"), "serve must not panic:\n{}", exited.log);
    assert!(exited.log.contains(&file.display().to_string()), "the error names {}:\n{}", file.display(), exited.log);
}

#[test]
fn regression_case_10_a_zero_length_store_is_refused() {
    let sandbox = Sandbox::new("case10-empty-store");
    let data_dir = sandbox.dir("console");
    // A cluster that ran: credentials issued, then the store lost.
    let token = console::join_token(&data_dir, None);
    assert!(!token.is_empty());
    let state = data_dir.join("state.redb");
    fs::write(&state, b"").unwrap();

    match Console::try_start_with(&data_dir, &[]) {
        Ok(mut console) => panic!("serve started on an empty {}\n{}", state.display(), console.proc().log_tail()),
        Err(exited) => {
            assert_refused_naming(&exited, &state);
            sandbox.step(format!("refused: {}", exited.log.lines().last().unwrap_or_default()));
        }
    }
    assert_eq!(fs::metadata(&state).unwrap().len(), 0, "the file is left for the operator to judge");
}

#[test]
fn regression_case_10_random_bytes_in_the_store_never_panic_the_console() {
    let sandbox = Sandbox::new("case10-corrupt-store");
    let (pristine, agent_dir) = (sandbox.dir("console"), sandbox.dir("agent-a"));
    {
        let (mut console, mut agent) = console_with_a_joined(&pristine, &agent_dir);
        agent.term();
        agent.wait_exit(EXIT_DEADLINE);
        console.wait_for("a=left", |status| status.is("a", &NodeState::Left));
        let exit = console.terminate();
        assert!(exit.success(), "the console stops cleanly: {exit}\n{}", console.log_tail());
    }
    let len = fs::metadata(pristine.join("state.redb")).unwrap().len();
    sandbox.step(format!("a console ran, a joined; state.redb is {len} bytes"));

    // Every 4 KiB page, and a few offsets across page boundaries.
    let mut offsets: Vec<u64> = (0..len.saturating_sub(4096)).step_by(4096).collect();
    offsets.extend([100, len / 3 + 777, len.saturating_sub(4096 + 1000)]);
    let (mut refused, mut started) = (0, 0);
    for (trial, at) in offsets.into_iter().enumerate() {
        let dir = sandbox.path().join(format!("damaged-{trial}"));
        copy_files(&pristine, &dir);
        let state = dir.join("state.redb");
        let mut garbage = vec![0u8; 4096];
        rand::rngs::StdRng::seed_from_u64(trial as u64).fill_bytes(&mut garbage);
        let mut file = fs::OpenOptions::new().write(true).open(&state).unwrap();
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&garbage).unwrap();
        drop(file);

        match Console::try_start_with(&dir, &[]) {
            Err(exited) => {
                assert_refused_naming(&exited, &state);
                refused += 1;
                let why = exited.log.lines().rev().find(|line| line.contains("error")).unwrap_or_default().to_owned();
                sandbox.step(format!("4 KiB at {at}: refused: {why}"));
            }
            Ok(mut console) => {
                // The damage hit pages not in use: the credentials are intact.
                let mut agent = Agent::start_stored(console.addr(), "a", &agent_dir, &[]);
                console.wait_for_states(&[("a", Alive)]);
                // And the store takes writes: a token is handed out only
                // once its record is durable.
                console.join_token();
                agent.kill9();
                console.kill();
                assert!(!console.log().contains("panicked"), "no panic:\n{}", console.log());
                started += 1;
                sandbox.step(format!("4 KiB at {at}: started, a reconnected"));
            }
        }
    }
    sandbox.step(format!("{refused} refused, {started} started"));
}

/// The change log's write-ahead file as a `kill -9` leaves it: a torn last
/// record (an append the crash cut short, never acknowledged) is dropped
/// and the console starts with everything before it; a damaged record with
/// more behind it is refused, naming the file, which is left as it was.
#[test]
fn regression_case_10_a_torn_write_ahead_log_is_cut_and_a_damaged_one_refused() {
    let sandbox = Sandbox::new("case10-wal");
    let (pristine, agent_dir) = (sandbox.dir("console"), sandbox.dir("agent-a"));
    {
        let (mut console, mut agent) = console_with_a_joined(&pristine, &agent_dir);
        // A few records after a's credential: tokens, each handed out only
        // once durable.
        for _ in 0..3 {
            console.join_token();
        }
        agent.kill9();
        console.kill();
    }
    let len = fs::metadata(pristine.join("state.wal")).unwrap().len();
    assert!(len > 0, "a killed console's latest changes wait in state.wal");
    sandbox.step(format!("a console ran and was killed; state.wal is {len} bytes"));

    let torn = sandbox.path().join("torn");
    copy_files(&pristine, &torn);
    fs::OpenOptions::new().write(true).open(torn.join("state.wal")).unwrap().set_len(len - 3).unwrap();
    let mut console = Console::try_start_with(&torn, &[])
        .unwrap_or_else(|exited| panic!("a torn last record must not stop the console:\n{}", exited.log));
    // a's credential, in a record before the torn one, is still good.
    let mut agent = Agent::start_stored(console.addr(), "a", &agent_dir, &[]);
    console.wait_for_states(&[("a", Alive)]);
    agent.kill9();
    console.kill();
    sandbox.step("torn: started, a reconnected with its credential");

    let damaged = sandbox.path().join("damaged");
    copy_files(&pristine, &damaged);
    let wal = damaged.join("state.wal");
    let mut bytes = fs::read(&wal).unwrap();
    bytes[20] ^= 0x20;
    fs::write(&wal, &bytes).unwrap();
    match Console::try_start_with(&damaged, &[]) {
        Ok(mut console) => panic!("started on a damaged {}\n{}", wal.display(), console.proc().log_tail()),
        Err(exited) => {
            assert_refused_naming(&exited, &wal);
            sandbox.step(format!("damaged: refused: {}", exited.log.lines().last().unwrap_or_default()));
        }
    }
    assert_eq!(fs::read(&wal).unwrap(), bytes, "the damaged file is left for the operator to judge");
}

// ---- case 11 ----

#[test]
fn regression_case_11_a_garbled_address_file_is_reported_not_taken_for_no_console() {
    let sandbox = Sandbox::new("case11-garbled-addr");
    let console = Console::start(&sandbox.dir("console"));
    let data_dir = console.data_dir().to_path_buf();
    let addr_file = data_dir.join(ADDR_FILE);

    for (what, content) in [
        ("text", b"not an address\n".to_vec()),
        ("a half-written address", b"127.0.0.1:\n".to_vec()),
        ("an empty file", Vec::new()),
        ("invalid UTF-8", vec![0xff, 0xfe, 0x00, 0x80]),
        ("no file at all", Vec::new()),
    ] {
        if what == "no file at all" {
            fs::remove_file(&addr_file).unwrap();
        } else {
            fs::write(&addr_file, &content).unwrap();
        }
        for json in [false, true] {
            let mut args = vec!["status"];
            if json {
                args.push("--json");
            }
            let output = tasks::admin(&data_dir, args).unwrap();
            assert!(!output.status.success(), "status must fail with {what} in console.addr: {output}");
            assert_ne!(output.status.code(), Some(EXIT_NO_CONSOLE), "a console runs: {output}");
            assert!(!output.stderr.contains("no console is running"), "a console runs: {output}");
            for phrase in ["address file", "unusable", &addr_file.display().to_string()] {
                assert!(output.stderr.contains(phrase), "with {what}, status should say {phrase:?}: {output}");
            }
        }
        sandbox.step(format!("{what}: reported"));
    }
}

// ---- case 13 ----

/// Runs `ringwatch serve` on `data_dir` expecting a refusal: the console
/// must exit, not come up.
#[track_caller]
fn serve_refused(data_dir: &Path) -> Exited {
    match Console::try_start_with(data_dir, &[]) {
        Ok(mut console) => panic!("serve started\n{}", console.proc().log_tail()),
        Err(exited) => exited,
    }
}

#[test]
fn regression_case_13_key_files_others_can_read_are_refused() {
    let sandbox = Sandbox::new("case13-key-modes");
    let data_dir = sandbox.dir("console");
    console::join_token(&data_dir, None);

    for key in ["ca.key", "token.key", "console.key", "admin.key"] {
        let path: PathBuf = data_dir.join(key);
        let chmod = format!("chmod 600 {}", path.display());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

        let exited = serve_refused(&data_dir);
        assert_eq!(exited.status.code(), Some(1), "serve exits 1 with {key} at 0644:\n{}", exited.log);
        assert!(exited.log.contains(&chmod), "serve should say `{chmod}`:\n{}", exited.log);
        let output = join_token_cmd(&data_dir, &[]);
        assert_eq!(output.status.code(), Some(1), "join-token exits 1 with {key} at 0644: {output}");
        assert!(output.stderr.contains(&chmod), "join-token should say `{chmod}`: {output}");
        assert!(output.stdout.trim().is_empty(), "no token is printed: {output}");
        sandbox.step(format!("{key} at 0644: serve and join-token refused"));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    // With a console running, the admin commands read admin.key themselves.
    let console = Console::start(&data_dir);
    let admin_key = data_dir.join("admin.key");
    fs::set_permissions(&admin_key, fs::Permissions::from_mode(0o640)).unwrap();
    let output = join_token_cmd(&data_dir, &[]);
    assert_eq!(output.status.code(), Some(1), "join-token exits 1 with admin.key at 0640: {output}");
    assert!(output.stderr.contains(&format!("chmod 600 {}", admin_key.display())), "{output}");
    fs::set_permissions(&admin_key, fs::Permissions::from_mode(0o600)).unwrap();
    join_token_ok(console.data_dir(), &[]);
    sandbox.step("admin.key at 0640 refused by the admin client while the console runs");
}
