//! A highly available group against a real etcd (README.md, "Running
//! several consoles"): three consoles, four agents, a task without fencing
//! and one with, broken the ways a group breaks — its leader killed or
//! paused past its lease, an agent dying during the takeover, etcd gone for
//! 10 s, consoles restarted one after another; and operator credentials
//! used through a standby.
//!
//! What the consoles say is checked through `status --json`; what runs is
//! checked on the task processes themselves: every copy records its start
//! and stop in one [`LifeLog`], so "nothing lost, never a duplicate" is a
//! statement about processes, not about the console's belief.
//!
//! Built only with the `etcd` feature (the consoles must be built with it
//! too): `cargo test -p ringwatch -p ringwatch-tests --features
//! ringwatch-tests/etcd -- ha_`.

use std::time::Duration;

use ringwatch_tests::fleet::RECONNECT;
use ringwatch_tests::group::{copies_by_instance, first_duplicate};
use ringwatch_tests::instances::{Life, describe_copies, wall_clock_now};
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::prometheus::sample;
use ringwatch_tests::{AgentSpec, ConsoleGroup, LIVENESS, LifeLog, NodeState, Sandbox, Status, TaskDef};

const CONSOLES: [&str; 3] = ["c1", "c2", "c3"];
const AGENTS: [&str; 4] = ["a", "b", "c", "d"];
const IMMEDIATE: &str = r#"{ mode = "immediate" }"#;
/// Longer than any takeover here, so a fenced instance that stops did so
/// because something went wrong.
const FENCED: &str = r#"{ stop_after = "20s" }"#;
/// The consoles' reconnect grace (the default).
const GRACE: Duration = Duration::from_secs(15);

fn agents() -> Vec<AgentSpec> {
    AGENTS.iter().map(|name| AgentSpec::new(name)).collect()
}

/// A task without fencing (3 replicas) and one with (2).
fn workload(life: &LifeLog) -> Vec<TaskDef> {
    vec![
        TaskDef::new("web", life.command()).replicas(3).set("restart", IMMEDIATE),
        TaskDef::new("fenced", life.command()).replicas(2).set("restart", IMMEDIATE).set("on_disconnect", FENCED),
    ]
}

/// Whether the leader's status shows every task of [`workload`] running
/// on distinct nodes.
fn workload_running(status: &Status) -> bool {
    status.running_on_distinct_nodes("web", 3).is_some() && status.running_on_distinct_nodes("fenced", 2).is_some()
}

/// Starts the group, applies [`workload`] through the leader and waits
/// until its five copies run; returns the group, the leader and the
/// copies.
fn start_with_workload(sandbox: &Sandbox) -> (ConsoleGroup, LifeLog, usize, Vec<Life>) {
    let mut group = ConsoleGroup::start(sandbox, &CONSOLES, &agents());
    let life = LifeLog::new(&sandbox.path().join("life.log"));
    let leader = group.wait_leader(LIVENESS);
    group.apply(leader, &workload(&life));
    let status = group.wait_on_leader(LIVENESS, "the workload running", workload_running);
    let copies = life.wait_for(LIVENESS, "five copies started", |copies| copies.len() == 5);
    sandbox.step(format!("{} leads; running: {}", group.name(leader), status.tasks_summary()));
    (group, life, leader, copies)
}

/// Fails unless the copies are exactly `before`, all still running: no
/// copy stopped, none started — nothing lost, nothing duplicated, nothing
/// even restarted.
#[track_caller]
fn assert_untouched(life: &LifeLog, before: &[Life], after_what: &str) {
    let now = life.copies();
    assert_eq!(
        now,
        before,
        "{after_what}: the copies changed:{}\nbefore:{}",
        describe_copies(&now),
        describe_copies(before)
    );
    let alive = life.alive();
    assert_eq!(alive.len(), before.len(), "{after_what}: copies died:{}", describe_copies(&alive));
}

/// Watches the life log for `duration`, failing as soon as a copy starts
/// or stops: for "nothing happens while …", which only a window shows.
#[track_caller]
fn hold_untouched(life: &LifeLog, before: &[Life], duration: Duration, during: &str) {
    let held = poll::until::<()>(duration, Duration::from_millis(100), || {
        let now = life.copies();
        if now == before { Step::Pending(describe_copies(&now)) } else { Step::Abort(describe_copies(&now)) }
    });
    match held {
        Err(failure) if failure.timed_out => {}
        Err(failure) => {
            panic!("a copy started or stopped {during}:{}\nbefore:{}", failure.last, describe_copies(before))
        }
        Ok(()) => unreachable!("the probe never finishes early"),
    }
}

/// The console's term in a status.
fn term(status: &Status) -> u64 {
    status.console.as_ref().map_or(0, |console| console.term)
}

#[test]
fn ha_kill_9_of_the_leader_under_load_loses_nothing_and_starts_no_duplicate() {
    let sandbox = Sandbox::new("ha-kill-leader");
    let (mut group, life, leader, before) = start_with_workload(&sandbox);
    let old_term = term(&group.console(leader).status());
    // Under load: a change the leader accepted (its answer means it is
    // durable) and is carrying out as it dies.
    group.apply(leader, &[TaskDef::new("late", life.command()).replicas(2).set("restart", IMMEDIATE)]);
    group.kill(leader);
    sandbox.step(format!("{} killed (-9) right after accepting a new task", group.name(leader)));

    let new = group.wait_leader_where(LIVENESS, "another console leading", |index| index != leader);
    let status = group.wait_on_leader(RECONNECT, "every agent back and every task running", |status| {
        AGENTS.iter().all(|name| status.is(name, &NodeState::Alive))
            && workload_running(status)
            && status.running_on_distinct_nodes("late", 2).is_some()
    });
    sandbox.step(format!("{} leads at term {}: {}", group.name(new), term(&status), status.tasks_summary()));
    assert!(term(&status) > old_term, "the new leadership has a higher term: {} vs {old_term}", term(&status));

    let copies = life.wait_for(LIVENESS, "both copies of late started", |copies| copies.len() == 7);
    assert_eq!(first_duplicate(&copies, &[]), None, "no instance ran twice at once");
    let by_instance = copies_by_instance(&copies);
    assert!(by_instance.values().all(|copies| copies.len() == 1), "one copy per instance:{}", describe_copies(&copies));
    let untouched: Vec<Life> = copies.iter().filter(|copy| !copy.instance.starts_with("late/")).cloned().collect();
    assert_eq!(untouched, before, "the takeover restarted nothing");
    assert_eq!(life.alive().len(), 7, "all seven copies run:{}", describe_copies(&life.alive()));
    let log = group.console_log(new);
    assert!(log.contains("leads the group (term"), "the new leader's event log says who leads\n{log}");
}

#[test]
fn ha_a_leader_paused_past_its_lease_finds_itself_deposed_and_changes_nothing() {
    let sandbox = Sandbox::new("ha-pause-leader");
    let (mut group, life, leader, before) = start_with_workload(&sandbox);
    group.pause(leader, true);
    sandbox.step(format!("{} paused (SIGSTOP)", group.name(leader)));
    let new = group.wait_leader_where(LIVENESS, "another console leading", |index| index != leader);
    let status = group.wait_on_leader(RECONNECT, "every agent at the new leader", |status| {
        AGENTS.iter().all(|name| status.is(name, &NodeState::Alive)) && workload_running(status)
    });
    sandbox.step(format!("{} leads at term {}", group.name(new), term(&status)));

    // The old leader wakes up believing it leads, with a cluster it has not
    // heard from for seconds: whatever it decides must go nowhere.
    group.pause(leader, false);
    let new_term = term(&status);
    let agreed = group.wait_leader(LIVENESS);
    if agreed != new {
        // Allowed (etcd answering a renewal too late deposes a leader),
        // and said, since it weakens what this run showed.
        let now = group.console(agreed).status();
        sandbox.step(format!("the leadership moved on meanwhile: {} leads at term {}", group.name(agreed), term(&now)));
    }
    let old = group.console(leader).status();
    let console = old.console.clone().expect("a console section");
    // It never leads again at the term it was paused with: it follows
    // whoever leads, and knows a term at least as new as the takeover's.
    assert!(console.term >= new_term, "the woken console knows the new term {new_term}: {console:?}");
    assert!(
        !console.leads() || console.term > new_term,
        "the woken console stands by, or leads only after a later election: {console:?}"
    );
    let log = group.console_log(leader);
    assert!(log.contains("stepping down"), "the deposed leader says it steps down\n{log}");
    // And counts it where an operator's alert sees it.
    let metrics = group.scrape(leader);
    let step_downs = sample(&metrics, "ringwatch_console_step_downs_total");
    assert!(step_downs.is_some_and(|n| n >= 1.0), "the woken console counts its step-down: {step_downs:?}");
    let renewals = sample(&metrics, "ringwatch_etcd_lease_renewal_duration_seconds_count");
    assert!(renewals.is_some_and(|n| n >= 1.0), "and the renewals it made: {renewals:?}");
    // A window in which a deposed leader acting on its stale view would
    // show: it has had time to judge the nodes it no longer hears from.
    hold_untouched(&life, &before, Duration::from_secs(5), "after the deposed leader woke");
    assert_untouched(&life, &before, "after the pause");
    let status = group.wait_on_leader(LIVENESS, "the cluster as it was", |status| {
        AGENTS.iter().all(|name| status.is(name, &NodeState::Alive)) && workload_running(status)
    });
    sandbox.step(format!("still: {}", status.tasks_summary()));
}

#[test]
fn ha_an_agent_killed_during_the_takeover_is_failed_over_once_the_grace_ends() {
    let sandbox = Sandbox::new("ha-kill-both");
    let mut group = ConsoleGroup::start(&sandbox, &CONSOLES, &agents());
    let life = LifeLog::new(&sandbox.path().join("life.log"));
    let leader = group.wait_leader(LIVENESS);
    group.apply(leader, &[TaskDef::new("web", life.command()).replicas(2).set("restart", IMMEDIATE)]);
    let status = group.wait_on_leader(LIVENESS, "web running", |s| s.running_on_distinct_nodes("web", 2).is_some());
    let placed = status.running_on_distinct_nodes("web", 2).unwrap_or_default();
    let victim = placed["web/0"].clone();
    life.wait_for(LIVENESS, "both copies started", |copies| copies.len() == 2);

    let killed_at = wall_clock_now();
    group.kill(leader);
    let killed = group.kill_host(&victim);
    sandbox.step(format!("{} and the host of web/0 ({victim}) killed at once", group.name(leader)));

    let new = group.wait_leader_where(LIVENESS, "another console leading", |index| index != leader);
    let status = group.wait_on_leader(GRACE + RECONNECT, "the dead host failed and web/0 elsewhere", |status| {
        status.is(&victim, &NodeState::Failed)
            && status.running_on_distinct_nodes("web", 2).is_some_and(|p| p.values().all(|node| *node != victim))
    });
    sandbox.step(format!("{} leads: {}", group.name(new), status.tasks_summary()));
    let copies = life.wait_for(LIVENESS, "a new copy of web/0", |copies| copies.len() == 3);
    assert_eq!(first_duplicate(&copies, &killed), None, "no instance ran twice at once");
    let replacement = copies.iter().find(|copy| copy.instance == "web/0" && !killed.contains(&copy.pid)).unwrap();
    assert_ne!(group.node_of(replacement).as_deref(), Some(victim.as_str()), "web/0 moved off the dead host");
    // The new leader waits its reconnect grace for nodes it has not heard
    // from before it fails any over: never sooner (a lower bound, which a
    // slow machine only makes later).
    assert!(
        replacement.started >= killed_at + GRACE,
        "web/0 was replaced {:?} after the kill, before the grace ({GRACE:?}) could end",
        replacement.started.saturating_sub(killed_at)
    );
    let alive = life.alive();
    assert_eq!(alive.len(), 2, "exactly two copies run:{}", describe_copies(&alive));
}

#[test]
fn ha_etcd_stopped_for_10_s_then_restarted_decides_nothing_meanwhile_and_carries_on() {
    let sandbox = Sandbox::new("ha-etcd-outage");
    let (mut group, life, _, before) = start_with_workload(&sandbox);
    group.etcd.stop();
    let stopped = std::time::Instant::now();
    sandbox.step("etcd stopped");

    // Every console says so, and none leads.
    let said = poll::until(LIVENESS, Duration::from_millis(200), || {
        let statuses = group.statuses();
        let told = statuses.iter().all(|(_, status)| {
            status
                .as_ref()
                .ok()
                .and_then(|s| s.console.as_ref())
                .is_some_and(|c| !c.leads() && c.store_problem.is_some())
        });
        if told { Step::Done(()) } else { Step::Pending(format!("{statuses:?}")) }
    });
    assert!(said.is_ok(), "every console reports the store problem and none leads: {said:?}\n{}", group.logs());
    // No decision is taken: an operator's is refused.
    let file = group.new_file("tasks", "toml");
    ringwatch_tests::tasks::write_task_file(&file, &[TaskDef::new("late", life.command())]);
    let output = group.admin(0, &["task", "apply", &file.to_string_lossy()]);
    assert!(!output.status.success(), "a change while etcd is down must be refused: {output}");
    sandbox.step(format!("apply refused: {}", output.stderr.trim()));
    // The leader held its agents' sessions (for half the 15 s grace): five
    // seconds in, none has lost its console.
    hold_untouched(&life, &before, Duration::from_secs(5).saturating_sub(stopped.elapsed()), "while etcd was down");
    for name in AGENTS {
        let log = group.agent(name).log();
        assert!(!log.contains("lost the console"), "agent {name} stays connected through a short outage\n{log}");
    }
    // The rest of the 10 s: the work runs on, untouched.
    hold_untouched(&life, &before, Duration::from_secs(10).saturating_sub(stopped.elapsed()), "while etcd was down");

    group.etcd.restart();
    sandbox.step("etcd back");
    let leader = group.wait_leader(LIVENESS);
    let status = group.wait_on_leader(RECONNECT, "every agent back with its work", |status| {
        AGENTS.iter().all(|name| status.is(name, &NodeState::Alive)) && workload_running(status)
    });
    sandbox.step(format!("{} leads at term {}", group.name(leader), term(&status)));
    assert_untouched(&life, &before, "after the outage");
    // And decisions are taken again.
    group.apply(leader, &[TaskDef::new("late", life.command()).set("restart", IMMEDIATE)]);
    group.wait_on_leader(LIVENESS, "late running", |status| status.running_on_distinct_nodes("late", 1).is_some());
    life.wait_for(LIVENESS, "late started", |copies| copies.iter().any(|copy| copy.instance == "late/0"));
}

#[test]
fn ha_a_console_restart_and_a_rolling_restart_of_all_three_never_duplicate_or_lose_a_task() {
    let sandbox = Sandbox::new("ha-rolling");
    let (mut group, life, leader, before) = start_with_workload(&sandbox);
    let settled = |group: &mut ConsoleGroup, what: &str| {
        let leader = group.wait_leader(LIVENESS);
        group.wait_on_leader(RECONNECT, what, |status| {
            AGENTS.iter().all(|name| status.is(name, &NodeState::Alive)) && workload_running(status)
        });
        leader
    };

    // The leader's host restarts: killed, then started on its data dir.
    group.kill(leader);
    settled(&mut group, "a new leader with every agent after the kill");
    group.start_console(leader);
    let now = settled(&mut group, "the restarted console back in the group");
    assert_ne!(now, leader, "the restarted console stands by");
    sandbox.step(format!("{} restarted; {} leads", group.name(leader), group.name(now)));
    assert_untouched(&life, &before, "after a console restart");

    // A rolling restart: one console after the other, stopped (a leader
    // resigns) and started again.
    for index in 0..group.len() {
        let name = group.name(index).to_owned();
        group.terminate(index);
        settled(&mut group, &format!("the group without {name}"));
        group.start_console(index);
        let leads = settled(&mut group, &format!("{name} back"));
        sandbox.step(format!("{name} restarted; {} leads", group.name(leads)));
        assert_untouched(&life, &before, &format!("after restarting {name}"));
    }
}

#[test]
fn ha_a_standby_serves_status_and_refuses_changes_naming_the_leader() {
    let sandbox = Sandbox::new("ha-standby");
    let mut group = ConsoleGroup::start(&sandbox, &CONSOLES, &agents()[..1]);
    let leader = group.wait_leader(LIVENESS);
    let standby = (0..group.len()).find(|index| *index != leader).unwrap();
    let leader_address = group.address(leader).to_string();
    // Read-only from the store: the agent the leader serves, as it records it.
    let status = group
        .console(standby)
        .wait_for(&format!("{} known on the standby", AGENTS[0]), |status| status.node(AGENTS[0]).is_some());
    let console = status.console.clone().expect("a console section");
    assert!(!console.leads());
    assert_eq!(console.leader.as_deref(), Some(leader_address.as_str()));
    let file = group.new_file("tasks", "toml");
    ringwatch_tests::tasks::write_task_file(&file, &[TaskDef::new("web", ["sleep", "1000"])]);
    let path = file.to_string_lossy().into_owned();
    for args in [&["join-token"][..], &["task", "apply", &path], &["cordon", AGENTS[0]]] {
        let output = group.admin(standby, args);
        assert!(!output.status.success(), "{args:?} on a standby must fail: {output}");
        assert!(output.stderr.contains(&leader_address), "{args:?}: the refusal names the leader: {output}");
    }
}

#[test]
fn ha_an_operator_credential_works_through_any_console_of_the_group() {
    let sandbox = Sandbox::new("ha-operator");
    let mut group = ConsoleGroup::start(&sandbox, &CONSOLES, &agents()[..1]);
    let leader = group.wait_leader(LIVENESS);
    let standby = (0..group.len()).find(|index| *index != leader).unwrap();
    let standby_address = group.address(standby).to_string();
    let elsewhere = sandbox.dir("laptop");
    let issue = |name: &str, role: &str| {
        let file = elsewhere.join(name);
        let output = group.admin(leader, &["credential", "issue", name, "--role", role, "-o", file.to_str().unwrap()]);
        assert!(output.status.success(), "credential issue: {output}");
        file
    };
    let (admin, viewer) = (issue("ops", "admin"), issue("watcher", "viewer"));
    let at_standby = |credential: &std::path::Path, args: &[&str]| {
        let mut all = vec!["--credential", credential.to_str().unwrap(), "--console", standby_address.as_str()];
        all.extend_from_slice(args);
        ringwatch_tests::console::ringwatch(all).unwrap()
    };

    // The standby learns the credentials from the store; it reads for both.
    poll::until(LIVENESS, Duration::from_millis(100), || {
        let output = at_standby(&viewer, &["status", "--json"]);
        if output.status.success() { Step::Done(()) } else { Step::Pending(output.to_string()) }
    })
    .unwrap_or_else(|failure| panic!("the standby never accepted the viewer: {failure}"));
    // An action sent to the standby is carried out by the leader it names.
    let cordoned = at_standby(&admin, &["cordon", AGENTS[0]]);
    assert!(cordoned.status.success(), "an admin's cordon through a standby reaches the leader: {cordoned}");
    group.wait_on_leader(LIVENESS, "the node cordoned", |status| status.node(AGENTS[0]).is_some_and(|n| n.cordoned));
    let refused = at_standby(&viewer, &["uncordon", AGENTS[0]]);
    assert!(!refused.status.success() && refused.stderr.contains("is a viewer"), "{refused}");

    // A revocation at the leader reaches the standby through the store.
    let revoked = group.admin(leader, &["credential", "revoke", "watcher"]);
    assert!(revoked.status.success(), "{revoked}");
    poll::until(LIVENESS, Duration::from_millis(100), || {
        let output = at_standby(&viewer, &["status"]);
        if output.stderr.contains("was revoked") { Step::Done(()) } else { Step::Pending(output.to_string()) }
    })
    .unwrap_or_else(|failure| panic!("the standby kept accepting a revoked credential: {failure}"));
}

/// `data put KEY FILE --json` through console `index`: the version
/// (term, counter) it was stored at.
#[track_caller]
fn put_object(group: &ConsoleGroup, index: usize, key: &str, bytes: &[u8]) -> (u64, u64) {
    let file = group.new_file("object", "bin");
    std::fs::write(&file, bytes).unwrap();
    let out = group.admin(index, &["data", "put", key, file.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{out}");
    let stored: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let version = &stored["version"];
    (version["term"].as_u64().unwrap(), version["counter"].as_u64().unwrap())
}

/// Objects stored through a leader — new keys, which record no intent,
/// and overwrites, which do — are whole under the next leader at the
/// versions they were acknowledged with, and every version the next
/// leader stamps is greater than any its predecessor handed out.
#[test]
fn ha_objects_outlive_a_kill_9_of_the_leader_and_versions_only_grow() {
    let sandbox = Sandbox::new("ha-data");
    let mut group = ConsoleGroup::start(&sandbox, &CONSOLES, &agents());
    let leader = group.wait_leader(LIVENESS);
    group.wait_all_alive(LIVENESS);
    let payload = |key: &str, round: u8| -> Vec<u8> { key.bytes().chain([round; 3000]).collect() };
    let keys: Vec<String> = (0..12).map(|n| format!("ha/{n}")).collect();
    let mut stored = std::collections::BTreeMap::new();
    for key in &keys {
        stored.insert(key.clone(), (put_object(&group, leader, key, &payload(key, 1)), payload(key, 1)));
    }
    for key in keys.iter().take(4) {
        stored.insert(key.clone(), (put_object(&group, leader, key, &payload(key, 2)), payload(key, 2)));
    }
    let handed_out = stored.values().map(|(version, _)| *version).max().unwrap();
    group.kill(leader);
    sandbox.step(format!("{} killed (-9) after {} puts", group.name(leader), keys.len() + 4));

    let new = group.wait_leader_where(LIVENESS, "another console leading", |index| index != leader);
    group.wait_all_alive(RECONNECT);
    for (key, (version, bytes)) in &stored {
        let out = group.admin(new, &["data", "stat", key, "--json"]);
        assert!(out.status.success(), "{key}: {out}");
        let stat: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let at = (stat["version"]["term"].as_u64().unwrap(), stat["version"]["counter"].as_u64().unwrap());
        assert_eq!(at, *version, "{key} is at the version its put was acknowledged with: {stat}");
        let file = group.new_file("read", "bin");
        let out = group.admin(new, &["data", "get", key, "-o", file.to_str().unwrap()]);
        assert!(out.status.success(), "{key}: {out}");
        assert_eq!(&std::fs::read(&file).unwrap(), bytes, "{key} reads back whole");
    }
    let overwrite = put_object(&group, new, &keys[0], b"after the takeover");
    let fresh = put_object(&group, new, "ha/new", b"a new key after the takeover");
    for version in [overwrite, fresh] {
        assert!(
            version > handed_out,
            "{version:?} must be greater than every version handed out before, {handed_out:?}"
        );
    }
}
