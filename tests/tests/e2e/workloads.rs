//! Workloads (DESIGN.md §5–6): placement on distinct nodes, failover after
//! a crash, a delayed failover cancelled by the node's return, gradual
//! make-before-break drains, crash loops escalated to another node, fencing
//! across a partition, adoption after a console restart, refused task files
//! and allowlists.
//!
//! The console's `status` says where it believes instances run; every test
//! also checks what really ran: the test tasks record each copy's start and
//! stop in a [`LifeLog`], write their pid, and run in their agent's data
//! dir, so "never fewer than two copies", "never two copies at once" and
//! "no duplicate after a restart" are judged from the processes themselves.

use std::time::Duration;

use ringwatch_tests::fleet::RECONNECT;
use ringwatch_tests::instances::{self, Life, LifeLog, describe_copies, fewest_running, first_overlap};
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::status::{INSTANCE_FAILED, INSTANCE_PENDING};
use ringwatch_tests::tasks::{self, TaskDef};
use ringwatch_tests::{AgentSpec, Fleet, LIVENESS, NodeState, RelayMode, Sandbox, Status};

use NodeState::{Alive, Failed};

/// Four agents: a task with two replicas keeps two spare nodes, and one
/// node failing is a quarter of the fleet, well under the share (half)
/// that pauses automatic failover.
const FOUR: [&str; 4] = ["a", "b", "c", "d"];

/// Restart in place at once, and fail over at once.
const IMMEDIATE: &str = r#"{ mode = "immediate" }"#;

/// The life log of a test's tasks, at the top of its sandbox.
fn life_log(sandbox: &Sandbox) -> LifeLog {
    LifeLog::new(&sandbox.path().join("life.log"))
}

/// `Ok` while `id` is placed on `node`.
fn stays_on(status: &Status, id: &str, node: &str) -> Result<(), String> {
    match status.node_of(id) {
        Some(now) if now == node => Ok(()),
        now => Err(format!("{id} moved from {node} to {now:?}: {}", status.tasks_summary())),
    }
}

#[test]
fn two_replicas_over_four_agents_run_on_distinct_nodes() {
    let sandbox = Sandbox::new("replicas-distinct");
    let mut fleet = Fleet::start(&sandbox, &FOUR);
    let life = life_log(&sandbox);

    fleet.apply(&[TaskDef::new("web", life.command()).replicas(2)]);
    let (placed, status) = fleet.wait_running("web", 2);
    sandbox.step(format!("running: {}", status.tasks_summary()));

    for (id, node) in &placed {
        let listed = status.node(node).map(|n| n.instances.clone()).unwrap_or_default();
        assert!(listed.contains(id), "node {node} should list {id} among its instances, lists {listed:?}");
        let pid = fleet.wait_pid(node, id);
        sandbox.step(format!("{id} runs on {node} as pid {pid}"));
    }
    // One copy per instance, each on the node status names, each alive.
    let copies = life.wait_for(LIVENESS, "two copies started", |copies| copies.len() >= 2);
    assert_eq!(copies.len(), 2, "exactly one copy per instance: {}", describe_copies(&copies));
    for copy in &copies {
        let node = fleet.node_of_dir(&copy.dir);
        assert_eq!(node.as_ref(), placed.get(&copy.instance), "{copy} runs where status says");
        assert!(instances::is_alive(copy.pid), "{copy} should be running");
    }
}

#[test]
fn a_killed_hosts_instance_runs_again_on_another_live_node_apart_from_its_sibling() {
    let sandbox = Sandbox::new("failover-kill9");
    let mut fleet = Fleet::start(&sandbox, &FOUR);
    let life = life_log(&sandbox);

    fleet.apply(&[TaskDef::new("web", life.command()).replicas(2).set("restart", IMMEDIATE)]);
    let (placed, _) = fleet.wait_running("web", 2);
    let (victim, sibling) = (placed["web/0"].clone(), placed["web/1"].clone());
    let old_pid = fleet.wait_pid(&victim, "web/0");
    sandbox.step(format!("web/0 on {victim} (pid {old_pid}), web/1 on {sibling}"));

    let killed = fleet.kill_host(&victim);
    sandbox.step(format!("killed agent {victim} and its task processes {killed:?}"));
    assert!(killed.contains(&old_pid), "web/0's process {old_pid} should have been among {killed:?}");

    let status = fleet.console.wait_for("web/0 running on another live node, apart from web/1", |s| {
        let Some(instance) = s.instance("web/0") else { return false };
        let Some(node) = instance.node.as_deref() else { return false };
        instance.is_running()
            && node != victim
            && s.node_of("web/1") == Some(sibling.as_str())
            && node != sibling
            && s.is(node, &Alive)
    });
    let new_node = status.node_of("web/0").unwrap_or_default().to_owned();
    sandbox.step(format!("failed over: {}", status.tasks_summary()));
    assert_eq!(status.state_of(&victim), Some(&Failed), "the killed host is failed: {status}");

    let pid = fleet.wait_pid(&new_node, "web/0");
    assert!(!instances::is_alive(old_pid));
    let copies = life.wait_for(LIVENESS, "the new copy of web/0", |copies| {
        copies.iter().any(|copy| copy.pid == pid && copy.instance == "web/0")
    });
    assert_eq!(copies.len(), 3, "web/0 twice (old, new), web/1 once: {}", describe_copies(&copies));
    assert_eq!(fleet.node_of_dir(&copies[2].dir).as_deref(), Some(new_node.as_str()), "{}", describe_copies(&copies));
}

#[test]
fn a_host_that_returns_within_the_failover_delay_keeps_its_instance() {
    let sandbox = Sandbox::new("failover-delay-cancelled");
    let mut fleet = Fleet::start(&sandbox, &FOUR);
    let life = life_log(&sandbox);
    // The delay both for restarts in place and before a failed node's
    // instances move (cancelled if the node returns in time).
    let delay = Duration::from_secs(10);

    fleet.apply(&[TaskDef::new("web", life.command()).set("restart", r#"{ mode = "delayed", delay = "10s" }"#)]);
    let (placed, _) = fleet.wait_running("web", 1);
    let host = placed["web/0"].clone();
    let pid = fleet.wait_pid(&host, "web/0");
    sandbox.step(format!("web/0 on {host} (pid {pid})"));

    fleet.agent(&host).stop();
    let status = fleet.console.wait_for_states(&[(host.as_str(), Failed)]);
    sandbox.step(format!("{host} stopped and convicted: {status}"));
    fleet.agent(&host).cont();
    sandbox.step(format!("{host} continued"));

    // Time is the subject here: the move was due `delay` after the
    // conviction, so watch beyond that.
    fleet
        .console
        .hold(delay + Duration::from_secs(3), "web/0 stays on its returning host", |s| stays_on(s, "web/0", &host));
    let status = fleet.console.wait_for_within(RECONNECT, &format!("{host} alive with web/0 running"), |s| {
        s.is(&host, &Alive) && s.instance("web/0").is_some_and(|i| i.is_running() && i.node.as_deref() == Some(&host))
    });
    sandbox.step(format!("back: {status}; {}", status.tasks_summary()));

    assert_eq!(instances::read_pid(&fleet.instance_dir(&host, "web/0")), Some(pid), "the same process, not a restart");
    assert!(instances::is_alive(pid), "web/0's process {pid} should still run");
    let copies = life.copies();
    assert_eq!(copies.len(), 1, "nothing started a second copy: {}", describe_copies(&copies));
    assert_eq!(copies[0].stopped, None, "the copy was never stopped: {}", describe_copies(&copies));
}

#[test]
fn a_gradual_drain_never_runs_fewer_than_the_replicas() {
    let sandbox = Sandbox::new("drain-make-before-break");
    let mut fleet = Fleet::start(&sandbox, &FOUR);
    let life = life_log(&sandbox);
    let min_healthy = Duration::from_secs(2);

    fleet.apply(&[TaskDef::new("web", life.command())
        .replicas(2)
        .set("restart", IMMEDIATE)
        .set("migrate", r#"{ mode = "gradual", max_parallel = 1, min_healthy = "2s" }"#)]);
    let (placed, _) = fleet.wait_running("web", 2);
    let drained = placed["web/0"].clone();
    let before = life.wait_for(LIVENESS, "both copies started", |copies| copies.len() >= 2);
    // From here on, two copies run; the drain must never break that.
    let steady = before.iter().map(|copy| copy.started).max().unwrap_or_default();
    sandbox.step(format!("running: {placed:?}; draining {drained}"));

    let output = fleet.act(&["drain", &drained]);
    sandbox.step(format!("drain: {}", output.stdout.trim()));

    let status = fleet.console.wait_for(&format!("{drained} hosts nothing, web runs elsewhere"), |s| {
        s.node(&drained).is_some_and(|n| n.instances.is_empty())
            && s.running_on_distinct_nodes("web", 2).is_some_and(|p| p.values().all(|node| *node != drained))
    });
    sandbox.step(format!("drained: {}", status.tasks_summary()));
    assert!(status.node(&drained).is_some_and(|n| n.cordoned), "a drained node is cordoned: {}", status.raw);

    // The old copy stops only once the new one has been healthy.
    let on_drained = |copy: &Life| fleet.ran_on(copy, &drained);
    let copies = life.wait_for(LIVENESS, "the drained copy's stop", |copies| {
        copies.len() >= 3 && copies.iter().filter(|c| on_drained(c)).all(|c| c.stopped.is_some())
    });
    sandbox.step(format!("copies: {}", describe_copies(&copies)));
    assert_eq!(copies.len(), 3, "one new copy, for web/0 only: {}", describe_copies(&copies));

    let (fewest, at) = fewest_running(&copies, steady);
    assert!(
        fewest >= 2,
        "only {fewest} copy(ies) ran at {:.3}: the drain broke before it made{}",
        at.as_secs_f64(),
        describe_copies(&copies)
    );
    let old = copies.iter().find(|c| on_drained(c)).expect("the drained copy");
    let new = copies.iter().find(|c| c.instance == "web/0" && !on_drained(c)).expect("the new copy of web/0");
    let old_stop = old.stopped.unwrap_or_default();
    assert!(new.started < old_stop, "make-before-break: {new} must start before {old} stops");
    // The console waits `min_healthy` after the new copy reports running;
    // a little slack for the time the script takes to log its start.
    let overlap = old_stop.saturating_sub(new.started);
    assert!(
        overlap + Duration::from_millis(500) >= min_healthy,
        "the old copy stopped {overlap:?} after the new one started, before min_healthy ({min_healthy:?})"
    );

    let drained_dir = fleet.agent_dir(&drained);
    let quiet = poll::until(LIVENESS, Duration::from_millis(100), || match instances::processes_under(&drained_dir) {
        left if left.is_empty() => Step::Done(()),
        left => Step::Pending(format!("still running on {drained}: {left:?}")),
    });
    assert!(quiet.is_ok(), "nothing should run on the drained node: {quiet:?}");
    let status = fleet.console.status();
    assert!(status.node(&drained).is_some_and(|n| n.cordoned), "the drained node stays cordoned: {}", status.raw);
}

#[test]
fn a_crash_loop_is_restarted_with_backoff_then_failed_and_placed_elsewhere() {
    let sandbox = Sandbox::new("crash-loop");
    let mut fleet = Fleet::start(&sandbox, &FOUR);
    let life = life_log(&sandbox);
    // Backoff 500 ms, 1 s, 2 s (each jittered down to half): slow enough
    // for `status` polls to see the restart count climb.
    let max_restarts: u32 = 3;
    let first_delay = Duration::from_millis(500);

    fleet.apply(&[TaskDef::new("crash", life.command_running("exit 3")).set(
        "restart",
        r#"{ mode = "delayed", delay = "500ms", max_delay = "2s", max_restarts = 3, within = "60s" }"#,
    )]);

    let mut first: Option<String> = None;
    let mut restarts_seen: Vec<u64> = Vec::new();
    let status = fleet.console.wait_for_within(LIVENESS * 2, "crash/0 placed on a second node", |s| {
        let Some(instance) = s.instance("crash/0") else { return false };
        let Some(node) = instance.node.as_deref() else { return false };
        match &first {
            None => {
                first = Some(node.to_owned());
                restarts_seen.push(instance.restarts.unwrap_or(0));
                false
            }
            Some(first) if first == node => {
                restarts_seen.push(instance.restarts.unwrap_or(0));
                false
            }
            Some(_) => true,
        }
    });
    let first = first.unwrap_or_default();
    let second = status.node_of("crash/0").unwrap_or_default().to_owned();
    sandbox.step(format!("crash/0 left {first} (restarts seen there: {restarts_seen:?}) for {second}"));

    restarts_seen.dedup();
    assert!(restarts_seen.is_sorted(), "restarts only grow: {restarts_seen:?}");
    assert!(restarts_seen.len() >= 2, "status should show the restart count growing on {first}: {restarts_seen:?}");
    assert!(
        restarts_seen.last().is_some_and(|&last| last <= u64::from(max_restarts)),
        "at most {max_restarts} restarts before giving up: {restarts_seen:?}"
    );
    let log = fleet.console.log();
    assert!(
        log.lines().any(|line| line.contains(&format!("crash/0 failed on \"{first}\""))),
        "the console should log that crash/0 failed on {first}\n{}",
        fleet.console.log_tail()
    );

    // From the processes: 1 + max_restarts runs on the first node, each
    // restart at least half its backoff step later (equal jitter).
    let runs: Vec<Duration> =
        life.copies().iter().filter(|copy| fleet.ran_on(copy, &first)).map(|copy| copy.started).collect();
    assert_eq!(runs.len(), max_restarts as usize + 1, "runs on {first}: {}", life.describe());
    for (step, pair) in runs.windows(2).enumerate() {
        let gap = pair[1].saturating_sub(pair[0]);
        let floor = first_delay * 2u32.pow(u32::try_from(step).unwrap_or(0)) / 2;
        assert!(
            gap >= floor,
            "restart {} came {gap:?} after the previous run, before its backoff floor {floor:?}",
            step + 1
        );
    }
}

#[test]
fn a_fenced_instance_never_runs_twice_across_a_partition() {
    let sandbox = Sandbox::new("fencing-partition");
    // Every agent behind a relay, so whichever hosts the instance can be cut off.
    let specs: Vec<AgentSpec> = FOUR.iter().map(|name| AgentSpec::new(name).relayed()).collect();
    let mut fleet = Fleet::start_with(&sandbox, &specs);
    let life = life_log(&sandbox);

    fleet.apply(&[TaskDef::new("web", life.command())
        .set("restart", IMMEDIATE)
        .set("on_disconnect", r#"{ stop_after = "3s" }"#)]);
    let (placed, _) = fleet.wait_running("web", 1);
    let host = placed["web/0"].clone();
    let old_pid = fleet.wait_pid(&host, "web/0");
    sandbox.step(format!("web/0 on {host} (pid {old_pid})"));

    fleet.relay(&host).set_mode(RelayMode::Drop);
    sandbox.step(format!("{host} partitioned"));
    let status = fleet.console.wait_for("web/0 running on another node", |s| {
        s.instance("web/0").is_some_and(|i| i.is_running() && i.node.as_deref().is_some_and(|n| n != host))
    });
    let new_node = status.node_of("web/0").unwrap_or_default().to_owned();
    sandbox.step(format!("moved: {}", status.tasks_summary()));
    let copies = life.wait_for(LIVENESS, "the fenced copy's stop and the new copy's start", |copies| {
        copies.len() >= 2 && copies.iter().filter(|c| fleet.ran_on(c, &host)).all(|c| c.stopped.is_some())
    });
    sandbox.step(format!("copies: {}", describe_copies(&copies)));

    fleet.relay(&host).set_mode(RelayMode::Pass);
    sandbox.step(format!("{host} healed"));
    let status = fleet.console.wait_for_within(RECONNECT, &format!("{host} alive again"), |s| s.is(&host, &Alive));
    sandbox.step(format!("back: {status}"));
    // The stale copy stays stopped: the console placed web/0 elsewhere.
    let host_dir = fleet.agent_dir(&host);
    fleet.console.hold(Duration::from_secs(3), "one copy of web/0, on the new node", |s| {
        stays_on(s, "web/0", &new_node)?;
        let alive = life.alive();
        if alive.len() != 1 {
            return Err(format!("{} copies alive: {}", alive.len(), describe_copies(&alive)));
        }
        match instances::processes_under(&host_dir) {
            left if left.is_empty() => Ok(()),
            left => Err(format!("processes run again on the healed {host}: {left:?}")),
        }
    });

    let copies = life.copies_of("web/0");
    assert_eq!(copies.len(), 2, "the fenced copy and its replacement only: {}", describe_copies(&copies));
    if let Some((earlier, later)) = first_overlap(&copies) {
        panic!("two copies of web/0 ran at once: {earlier} and {later}{}", describe_copies(&copies));
    }
    assert!(!instances::is_alive(old_pid), "the fenced copy (pid {old_pid}) must be gone");
}

#[test]
fn a_console_restart_adopts_the_running_instances_without_duplicates() {
    let sandbox = Sandbox::new("console-restart-adopts");
    let mut fleet = Fleet::start(&sandbox, &FOUR);
    let life = life_log(&sandbox);

    fleet.apply(&[TaskDef::new("web", life.command()).replicas(2).set("restart", IMMEDIATE)]);
    let (placed, _) = fleet.wait_running("web", 2);
    let pids: Vec<(String, u32)> = placed.iter().map(|(id, node)| (id.clone(), fleet.wait_pid(node, id))).collect();
    let tasks_before = fleet.task_list();
    let copies_before = life.wait_for(LIVENESS, "both copies started", |copies| copies.len() >= 2);
    sandbox.step(format!("running: {placed:?}, pids {pids:?}"));

    fleet.restart_console();
    sandbox.step(format!("console killed and restarted on {}", fleet.console.addr()));
    let names = fleet.names();
    let status = fleet.console.wait_for_within(RECONNECT, "every agent back, web where it was", |s| {
        names.iter().all(|name| s.is(name, &Alive)) && s.running_on_distinct_nodes("web", 2).as_ref() == Some(&placed)
    });
    sandbox.step(format!("adopted: {status}; {}", status.tasks_summary()));
    fleet.console.hold(Duration::from_secs(3), "web stays where it was", |s| {
        placed.iter().try_for_each(|(id, node)| stays_on(s, id, node))
    });

    assert_eq!(fleet.task_list(), tasks_before, "the desired state survives the restart");
    for (id, pid) in &pids {
        let node = &placed[id];
        assert_eq!(instances::read_pid(&fleet.instance_dir(node, id)), Some(*pid), "{id} on {node}: same process");
        assert!(instances::is_alive(*pid), "{id}'s process {pid} should still run");
    }
    let copies = life.copies();
    assert_eq!(copies, copies_before, "no copy started or stopped: {}", describe_copies(&copies));
    for name in &names {
        let expected = pids.iter().filter(|(id, _)| &placed[id] == name).count();
        let running = life.alive().iter().filter(|copy| fleet.node_of_dir(&copy.dir).as_ref() == Some(name)).count();
        assert_eq!(running, expected, "copies alive on {name}: {}", describe_copies(&life.alive()));
    }
}

/// The 1-based line of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines().position(|line| line.starts_with(prefix)).map(|i| i + 1).expect("the line is in the file")
}

#[test]
fn a_bad_task_file_changes_nothing_and_names_its_line() {
    let sandbox = Sandbox::new("bad-task-file");
    let fleet = Fleet::start(&sandbox, &[]);
    let web = TaskDef::new("web", ["sleep", "1000"]).replicas(1);
    fleet.apply(std::slice::from_ref(&web));
    let before = fleet.task_list();
    assert_eq!(before.len(), 1, "one task applied: {before:?}");

    // Each bad file also holds a valid change to "web": refused whole.
    let zero = tasks::task_file(&[web.clone().replicas(3), TaskDef::new("db", ["sleep", "1000"]).replicas(0)]);
    let unknown = tasks::task_file(&[web.clone().replicas(3).set("replica", "2")]);
    let cases = [
        ("replicas = 0", zero.clone(), line_of(&zero, "replicas = 0"), "replicas"),
        ("an unknown key", unknown.clone(), line_of(&unknown, "replica = "), "replica"),
    ];
    for (what, text, line, names) in cases {
        let file = fleet.new_file("bad", "toml");
        std::fs::write(&file, &text).expect("write the task file");
        let output = fleet.admin(&["task", "apply", &file.to_string_lossy()]);
        sandbox.step(format!("{what}: {}", output.stderr.trim()));
        assert!(!output.status.success(), "a file with {what} must be refused: {output}");
        assert_ne!(output.status.code(), Some(tasks::EXIT_NO_CONSOLE), "the console runs: {output}");
        let expected = format!("\"{}\" line {line}:", file.display());
        assert!(output.stderr.contains(&expected), "stderr should name the file and line ({expected}): {output}");
        assert!(output.stderr.contains(names), "stderr should say what is wrong ({names}): {output}");
        assert!(output.stderr.contains("nothing was changed"), "stderr should say nothing changed: {output}");
        assert_eq!(fleet.task_list(), before, "a file with {what} changed the desired state");
    }
}

#[test]
fn a_command_refused_by_an_allowlist_is_reported_and_placed_elsewhere() {
    let sandbox = Sandbox::new("allow-exec-refusal");
    let specs = [AgentSpec::new("a").allow_exec(&["/nonexistent/*"]), AgentSpec::new("b")];
    let mut fleet = Fleet::start_with(&sandbox, &specs);
    let life = life_log(&sandbox);

    // With b cordoned, only a may take the instance.
    fleet.act(&["cordon", "b"]);
    let status = fleet.console.wait_for("b cordoned", |s| s.node("b").is_some_and(|n| n.cordoned));
    sandbox.step(format!("cordoned b: {status}"));
    fleet.apply(&[TaskDef::new("web", life.command()).set("restart", IMMEDIATE)]);

    let refused = fleet.console.proc().wait_for_log(LIVENESS, "web/0 failed on a", |log| {
        log.lines().any(|line| line.contains("web/0 failed on \"a\""))
    });
    assert!(refused, "the console exited\n{}", fleet.console.log_tail());
    let log = fleet.console.log();
    let line = log.lines().find(|line| line.contains("web/0 failed on \"a\"")).unwrap_or_default();
    assert!(line.contains("allow"), "the failure should say the allowlist refused the command: {line}");
    // Refused on a, b cordoned: nowhere to go, and nothing ran.
    let status = fleet.console.wait_for("web/0 waiting for a node", |s| {
        s.instance("web/0").is_some_and(|i| {
            (i.state == INSTANCE_PENDING || i.state == INSTANCE_FAILED) && i.node.as_deref() != Some("b")
        })
    });
    sandbox.step(format!("refused on a: {}", status.tasks_summary()));
    assert!(life.copies().is_empty(), "the refused command must not run: {}", life.describe());
    assert!(instances::processes_under(&fleet.agent_dir("a")).is_empty(), "nothing runs on a");

    fleet.act(&["uncordon", "b"]);
    let (placed, status) = fleet.wait_running("web", 1);
    sandbox.step(format!("after uncordon: {}", status.tasks_summary()));
    assert_eq!(placed["web/0"], "b", "web/0 should run on b: {}", status.tasks_summary());
    let pid = fleet.wait_pid("b", "web/0");
    assert!(life.copies().iter().all(|copy| copy.pid == pid), "only b's copy ran: {}", life.describe());
}

#[test]
fn regression_an_agent_without_allow_exec_runs_nothing() {
    let sandbox = Sandbox::new("no-allow-exec");
    let mut fleet = Fleet::start_with(&sandbox, &[AgentSpec::new("a").allow_exec(&[])]);
    let life = life_log(&sandbox);
    fleet.agent("a").assert_log_mentions(&["this agent runs no tasks: start it with --allow-exec PATTERN"]);

    fleet.apply(&[TaskDef::new("web", life.command()).set("restart", IMMEDIATE)]);
    let refused = fleet.console.proc().wait_for_log(LIVENESS, "web/0 failed on a", |log| {
        log.lines().any(|line| line.contains("web/0 failed on \"a\""))
    });
    assert!(refused, "the console exited\n{}", fleet.console.log_tail());
    let log = fleet.console.log();
    let line = log.lines().find(|line| line.contains("web/0 failed on \"a\"")).unwrap_or_default();
    sandbox.step(format!("refused: {line}"));
    let advice = "program \"sh\" is not allowed on node \"a\": restart its agent with --allow-exec sh";
    assert!(line.contains(advice), "the event should name the flag that allows it ({advice}): {line}");

    // Nowhere else to go: the instance waits, and nothing ever ran.
    let status = fleet.console.wait_for("web/0 pending or failed", |s| {
        s.instance("web/0").is_some_and(|i| i.state == INSTANCE_PENDING || i.state == INSTANCE_FAILED)
    });
    sandbox.step(format!("after the refusal: {}", status.tasks_summary()));
    assert!(life.copies().is_empty(), "a refused command must not run: {}", life.describe());
    assert!(instances::processes_under(&fleet.agent_dir("a")).is_empty(), "nothing runs on a");
    assert!(!fleet.instance_dir("a", "web/0").exists(), "a refused instance leaves no directory");
}

#[test]
fn regression_duplicate_after_console_crash_during_a_drain() {
    // Case 1: a console killed during a drain's make-before-break forgot
    // that the old copy was to stop once the new one was healthy; after the
    // restart three copies of a 2-replica task ran, the drained node's
    // untracked. The move is a durable record now: the restarted console
    // matches both copies, and stops the old one on time.
    let sandbox = Sandbox::new("duplicate-after-console-crash");
    let mut fleet = Fleet::start(&sandbox, &FOUR);
    let life = life_log(&sandbox);
    fleet.apply(&[TaskDef::new("web", life.command())
        .replicas(2)
        .set("restart", IMMEDIATE)
        .set("migrate", r#"{ mode = "full", min_healthy = "10s" }"#)]);
    let (placed, _) = fleet.wait_running("web", 2);
    let drained = placed["web/0"].clone();
    life.wait_for(LIVENESS, "both copies started", |copies| copies.len() >= 2);
    sandbox.step(format!("running: {placed:?}; draining {drained}"));

    let output = fleet.act(&["drain", &drained]);
    sandbox.step(format!("drain: {}", output.stdout.trim()));
    // The new copy of web/0 runs beside the old one: the console now waits
    // min_healthy (10 s) before it stops the old one. Kill it in between.
    let drained_dir = fleet.agent_dir(&drained);
    let on_drained = |copy: &Life| copy.dir.starts_with(&drained_dir);
    let copies = life.wait_for(LIVENESS, "the new copy of web/0 started beside the old one", |copies| {
        copies.iter().any(|c| c.instance == "web/0" && !on_drained(c))
            && copies.iter().filter(|c| c.stopped.is_none()).count() == 3
    });
    sandbox.step(format!("mid-move: {}", describe_copies(&copies)));
    fleet.restart_console();
    sandbox.step(format!("console killed and restarted on {}", fleet.console.addr()));

    let names = fleet.names();
    let status = fleet.console.wait_for_within(RECONNECT + LIVENESS, "the move finished after the restart", |s| {
        names.iter().all(|name| s.is(name, &Alive))
            && s.node(&drained).is_some_and(|n| n.instances.is_empty())
            && s.running_on_distinct_nodes("web", 2).is_some_and(|p| p.values().all(|node| *node != drained))
    });
    sandbox.step(format!("after the restart: {}", status.tasks_summary()));
    let copies = life.wait_for(LIVENESS, "the old copy on the drained node stopped", |copies| {
        copies.iter().filter(|c| on_drained(c)).all(|c| c.stopped.is_some())
    });
    sandbox.step(format!("copies: {}", describe_copies(&copies)));
    let quiet = poll::until(LIVENESS, Duration::from_millis(100), || match instances::processes_under(&drained_dir) {
        left if left.is_empty() => Step::Done(()),
        left => Step::Pending(format!("still running on {drained}: {left:?}")),
    });
    assert!(quiet.is_ok(), "nothing may run on the drained node: {quiet:?}");
    assert_eq!(life.alive().len(), 2, "exactly the 2 replicas run: {}", describe_copies(&life.alive()));
    assert_eq!(copies.len(), 3, "one new copy, for web/0 only: {}", describe_copies(&copies));
    let log = fleet.console.log();
    assert!(log.contains("resuming the move of web/0"), "the restarted console says it resumes the move");
}
