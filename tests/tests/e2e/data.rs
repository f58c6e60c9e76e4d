//! The replicated data store (README.md, "Data") with real agents: objects
//! put, read back byte for byte, removed; a replica holder killed with
//! `kill -9` and every object still readable at quorum (500 of them, as
//! the issue says) and back to three copies.

use std::path::{Path, PathBuf};

use ringwatch_tests::{Fleet, LIVENESS, NodeState, Sandbox};

/// `ringwatch data ARGS… --data-dir DIR` against the fleet's console.
fn data(fleet: &Fleet, args: &[&str]) -> ringwatch_tests::process::Output {
    let mut all = vec!["data"];
    all.extend_from_slice(args);
    fleet.admin(&all)
}

/// A file of `len` bytes that differ from object to object.
fn payload(dir: &Path, name: &str, len: usize, seed: u8) -> (PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Stores a new payload of `len` bytes under `key` (`extra`: more `data
/// put` arguments) and returns its bytes; the put must succeed.
#[track_caller]
fn put_new(fleet: &Fleet, dir: &Path, key: &str, len: usize, seed: u8, extra: &[&str]) -> Vec<u8> {
    let (file, bytes) = payload(dir, &key.replace('/', "-"), len, seed);
    let mut args = vec!["put", key, file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let put = data(fleet, &args);
    assert!(put.status.success(), "put {key}: {put}");
    bytes
}

fn get(fleet: &Fleet, dir: &Path, key: &str, extra: &[&str]) -> (ringwatch_tests::process::Output, Option<Vec<u8>>) {
    let out = dir.join(format!("got-{}", key.replace('/', "_")));
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["get", key, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = data(fleet, &args);
    (output, std::fs::read(&out).ok())
}

/// Reads `key` back (`extra`: more `data get` arguments); the read must
/// succeed with exactly `bytes`.
#[track_caller]
fn read_back(fleet: &Fleet, dir: &Path, key: &str, extra: &[&str], bytes: &[u8]) {
    let (output, got) = get(fleet, dir, key, extra);
    assert!(output.status.success(), "get {key} {extra:?}: {output}");
    assert!(got.as_deref() == Some(bytes), "{key} {extra:?} does not read back byte for byte");
}

/// Polls `probe` every `every` until it finds what it waits for (`Ok`);
/// fails at once if `process` exits first ("`name` ended (status)
/// `then`"), and with the probe's last word (`Err`) if time runs out.
pub(crate) fn wait_while_running(
    process: &mut ringwatch_tests::Proc,
    name: &str,
    then: &str,
    every: std::time::Duration,
    mut probe: impl FnMut() -> Result<(), String>,
) {
    use ringwatch_tests::poll::{self, Step};
    poll::until(ringwatch_tests::LIVENESS, every, || match probe() {
        Ok(()) => Step::Done(()),
        Err(pending) => match process.try_exit() {
            Some(exit) => Step::Abort(format!("{name} ended ({exit}) {then}")),
            None => Step::Pending(pending),
        },
    })
    .unwrap_or_else(|failure| panic!("{failure}"));
}

/// Waits until the console shows `node` in `state`.
fn wait_state(fleet: &mut Fleet, node: &str, state: NodeState) {
    fleet.console.wait_for(&format!("{node} {state}"), |status| status.node(node).is_some_and(|n| n.state == state));
}

/// The files in an agent's `objects` dir whose names end with `suffix`
/// (`.obj`: copies, `.tmp`: copies being written).
pub(crate) fn stored_files(objects: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(objects)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// Every copy on disk in an agent's `objects` dir, read as the agent
/// reads it (packed copies and copy files: agent::objects), as
/// `key@term.counter`, with ` (tombstone)` for a removal's.
pub(crate) fn copies_on_disk(objects: &Path) -> Vec<String> {
    ringwatch_agent::objects::copies_on_disk(objects)
        .unwrap_or_default()
        .into_iter()
        .map(|meta| {
            let tombstone = if meta.tombstone { " (tombstone)" } else { "" };
            format!("{}@{}{tombstone}", meta.key, meta.version)
        })
        .collect()
}

/// The copies in an agent's `objects` dir that hold bytes, not a
/// tombstone.
fn copies_with_bytes(objects: &Path) -> Vec<String> {
    copies_on_disk(objects).into_iter().filter(|copy| !copy.ends_with(" (tombstone)")).collect()
}

#[test]
fn objects_are_put_read_back_byte_for_byte_and_removed() {
    let sandbox = Sandbox::new("data-put-get-rm");
    let fleet = Fleet::start(&sandbox, &["a", "b", "c", "d"]);
    let dir = sandbox.dir("files");
    let mut objects = Vec::new();
    for (i, len) in [0usize, 1, 1000, 300_000, 1_100_000].into_iter().enumerate() {
        let key = format!("objects/{i}");
        let bytes = put_new(&fleet, &dir, &key, len, i as u8, &[]);
        objects.push((key, bytes));
    }
    for (key, bytes) in &objects {
        read_back(&fleet, &dir, key, &[], bytes);
    }
    // Three replicas by default (a quorum put is answered once two have
    // the copy; the third is recorded when it answers).
    let stat = wait_copies(&fleet, "objects/3", 3, &[]);
    assert_eq!(stat["copies"].as_array().map(Vec::len), Some(3), "three replicas by default: {stat}");
    let listed = data(&fleet, &["ls", "objects/", "--json"]);
    assert!(listed.status.success() && listed.stdout.matches("objects/").count() >= objects.len(), "{listed}");

    let removed = data(&fleet, &["rm", "objects/2"]);
    assert!(removed.status.success(), "{removed}");
    let (gone, _) = get(&fleet, &dir, "objects/2", &[]);
    assert_eq!(gone.status.code(), Some(4), "a removed object is not found: {gone}");
    let (missing, _) = get(&fleet, &dir, "never-put", &[]);
    assert_eq!(missing.status.code(), Some(4), "{missing}");
}

/// `work(i)` for every `i` below `count`, on a few threads (each call is a
/// `ringwatch data` process mostly waiting on the console), in order.
fn in_parallel<T: Send>(count: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    const WORKERS: usize = 4;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            return mine;
                        }
                        mine.push((i, work(i)));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, result)| result).collect()
}

#[test]
fn after_kill_9_of_a_holder_every_object_stays_readable_and_gets_back_to_three_copies() {
    /// The figure.
    const OBJECTS: usize = 500;
    let sandbox = Sandbox::new("data-kill-holder");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c", "d"]);
    let dir = sandbox.dir("files");
    let objects: Vec<(String, Vec<u8>)> = in_parallel(OBJECTS, |i| {
        let key = format!("k{i}");
        let bytes = put_new(&fleet, &dir, &key, 1024 + i, i as u8, &[]);
        (key, bytes)
    });
    sandbox.step(format!("{OBJECTS} objects stored"));
    fleet.kill_host("b");
    wait_state(&mut fleet, "b", NodeState::Failed);
    in_parallel(OBJECTS, |i| read_back(&fleet, &dir, &objects[i].0, &["--consistency", "quorum"], &objects[i].1));
    sandbox.step("every object read back at quorum with b dead");
    // Re-replication: once b has been down for the repair delay, every
    // object it held is copied from a survivor to the next node on the ring.
    fleet.console.wait_for_within(LIVENESS * 3, "every object back to 3 live copies", |status| {
        let raw: serde_json::Value = serde_json::from_str(&status.raw).unwrap_or_default();
        raw["data"]["objects"] == OBJECTS && raw["data"]["under_replicated"] == 0 && raw["data"]["unavailable"] == 0
    });
    let listed = data(&fleet, &["ls", "--json"]);
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&listed.stdout).unwrap_or_else(|err| panic!("{err}: {listed}"));
    assert_eq!(listed.len(), OBJECTS);
    for object in &listed {
        assert_eq!(object["live_copies"], 3, "{object}");
    }
    in_parallel(OBJECTS, |i| read_back(&fleet, &dir, &objects[i].0, &["--consistency", "all"], &objects[i].1));
}

#[test]
fn an_all_read_without_every_replica_is_not_enough_and_names_the_holders() {
    let sandbox = Sandbox::new("data-not-enough");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    let dir = sandbox.dir("files");
    let mut objects = Vec::new();
    for i in 0..5 {
        let key = format!("k{i}");
        let bytes = put_new(&fleet, &dir, &key, 100, i as u8, &[]);
        objects.push((key, bytes));
    }
    // Three nodes, three replicas: b held every object, and no fourth node
    // can take its copies.
    fleet.kill_host("b");
    wait_state(&mut fleet, "b", NodeState::Failed);
    // With b gone, an `all` read of an object b held cannot be met: exit 5
    // naming the holders.
    let held_by_b = objects.iter().find(|(key, _)| {
        let stat = data(&fleet, &["stat", key, "--json"]);
        stat.stdout.contains("\"b\"")
    });
    if let Some((key, _)) = held_by_b {
        let (output, _) = get(&fleet, &dir, key, &["--consistency", "all"]);
        assert_eq!(output.status.code(), Some(5), "{output}");
        assert!(output.stderr.contains("\"b\""), "the message names the holders: {output}");
    }
}

#[test]
fn a_key_removed_while_a_replica_is_down_does_not_come_back_when_it_returns() {
    let sandbox = Sandbox::new("data-rm-while-down");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    let dir = sandbox.dir("files");
    put_new(&fleet, &dir, "k", 5000, 7, &[]);
    // Three nodes, three replicas: b holds a copy.
    fleet.kill_host("b");
    wait_state(&mut fleet, "b", NodeState::Failed);
    let removed = data(&fleet, &["rm", "k"]);
    assert!(removed.status.success(), "a quorum removal with b down: {removed}");

    fleet.restart_agent("b");
    wait_state(&mut fleet, "b", NodeState::Alive);
    let (gone, _) = get(&fleet, &dir, "k", &["--consistency", "one"]);
    assert_eq!(gone.status.code(), Some(4), "the removed key stays removed: {gone}");
    // The returning replica is sent the tombstone: its old bytes go.
    wait_holds(&fleet.agent_dir("b").join("objects"), false, "b kept the removed object's bytes");
}

#[test]
fn a_read_that_finds_a_recorded_copy_missing_repairs_it() {
    let sandbox = Sandbox::new("data-read-repair");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    let dir = sandbox.dir("files");
    let bytes = put_new(&fleet, &dir, "k", 70_000, 3, &[]);
    // b loses its copy (a replaced disk): stopped, its objects gone, back.
    lose_copies_while_down(&mut fleet, "b");
    // The read is served by a or c, and notices b's copy is missing.
    read_back(&fleet, &dir, "k", &["--consistency", "one"], &bytes);
    // The repair copies it to b again.
    let stat = ringwatch_tests::poll::until(ringwatch_tests::LIVENESS, std::time::Duration::from_millis(200), || {
        let stat = data(&fleet, &["stat", "k", "--json"]);
        let value: serde_json::Value = serde_json::from_str(&stat.stdout).unwrap_or_default();
        let b_current = value["copies"]
            .as_array()
            .is_some_and(|copies| copies.iter().any(|copy| copy["node"] == "b" && copy["current"] == true));
        let b_has_bytes = !copies_with_bytes(&fleet.agent_dir("b").join("objects")).is_empty();
        if value["live_copies"] == 3 && b_current && b_has_bytes {
            ringwatch_tests::poll::Step::Done(value)
        } else {
            ringwatch_tests::poll::Step::Pending(stat.stdout)
        }
    })
    .unwrap_or_else(|failure| panic!("b's lost copy was not made again: {failure}"));
    sandbox.step(format!("repaired: {stat}"));
}

#[test]
fn a_console_killed_mid_put_leaves_the_object_whole_or_absent_never_partial() {
    let sandbox = Sandbox::new("data-console-killed-mid-put");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    let dir = sandbox.dir("files");
    let (file, bytes) = payload(&dir, "big", 96 << 20, 11);
    let mut command = std::process::Command::new(ringwatch_tests::bins::ringwatch());
    command.args(["data", "put", "big"]).arg(&file).arg("--data-dir").arg(fleet.data_dir());
    let mut put = ringwatch_tests::Proc::spawn("put", command, &sandbox.path().join("put.log"));
    // Mid-put: an agent is writing its copy.
    let writing = |fleet: &Fleet| {
        ["a", "b", "c"].iter().any(|node| !stored_files(&fleet.agent_dir(node).join("objects"), ".tmp").is_empty())
    };
    let every = std::time::Duration::from_millis(20);
    wait_while_running(&mut put, "the put", "before any copy was being written", every, || {
        if writing(&fleet) { Ok(()) } else { Err("no copy being written yet".into()) }
    });
    fleet.restart_console();
    let exit = put.wait_exit(ringwatch_tests::LIVENESS);
    sandbox.step(format!("the put ended: {exit}"));

    // Whole or absent, never partial.
    let (output, got) = get(&fleet, &dir, "big", &[]);
    match output.status.code() {
        Some(4) => {
            assert!(!exit.success(), "a put that said it stored the object must be readable: {output}");
            let listed = data(&fleet, &["ls", "--json"]);
            assert!(!listed.stdout.contains("big"), "nothing partial is listed: {listed}");
        }
        Some(0) => assert!(got.as_ref() == Some(&bytes), "a stored object reads back whole"),
        _ => panic!("neither whole nor absent: {output}"),
    }
    // The agents drop the copies they were writing.
    ringwatch_tests::poll::until(ringwatch_tests::LIVENESS, std::time::Duration::from_millis(100), || {
        if writing(&fleet) {
            ringwatch_tests::poll::Step::Pending("a temporary copy is left".into())
        } else {
            ringwatch_tests::poll::Step::Done(())
        }
    })
    .unwrap_or_else(|failure| panic!("{failure}"));
    // And the key can be stored again.
    let (small, small_bytes) = payload(&dir, "small", 1000, 5);
    let again = data(&fleet, &["put", "big", small.to_str().unwrap()]);
    assert!(again.status.success(), "{again}");
    read_back(&fleet, &dir, "big", &[], &small_bytes);
}

/// Waits until the node whose objects dir is `objects` holds copies with
/// bytes (`holds`) or none (`!holds`); `what` names the failure.
fn wait_holds(objects: &Path, holds: bool, what: &str) {
    ringwatch_tests::poll::until(ringwatch_tests::LIVENESS, std::time::Duration::from_millis(200), || {
        let copies = copies_with_bytes(objects);
        if copies.is_empty() == holds {
            ringwatch_tests::poll::Step::Pending(format!("holds {copies:?}"))
        } else {
            ringwatch_tests::poll::Step::Done(())
        }
    })
    .unwrap_or_else(|failure| panic!("{what}: {failure}"));
}

/// `node` loses every copy while it is down (a replaced disk), then
/// comes back.
fn lose_copies_while_down(fleet: &mut Fleet, node: &str) {
    fleet.kill_host(node);
    std::fs::remove_dir_all(fleet.agent_dir(node).join("objects")).unwrap();
    fleet.restart_agent(node);
    wait_state(fleet, node, NodeState::Alive);
}

/// Waits until `key` has `copies` live current copies and every node in
/// `on` holds one, as `data stat` says; returns the stat.
fn wait_copies(fleet: &Fleet, key: &str, copies: u64, on: &[&str]) -> serde_json::Value {
    ringwatch_tests::poll::until(ringwatch_tests::LIVENESS, std::time::Duration::from_millis(200), || {
        let stat = data(fleet, &["stat", key, "--json"]);
        let value: serde_json::Value = serde_json::from_str(&stat.stdout).unwrap_or_default();
        let current = |node: &str| {
            value["copies"]
                .as_array()
                .is_some_and(|list| list.iter().any(|copy| copy["node"] == node && copy["current"] == true))
        };
        if value["live_copies"] == copies && on.iter().all(|node| current(node)) {
            ringwatch_tests::poll::Step::Done(value)
        } else {
            ringwatch_tests::poll::Step::Pending(stat.stdout)
        }
    })
    .unwrap_or_else(|failure| panic!("{key} did not get {copies} copies on {on:?}: {failure}"))
}

#[test]
fn a_copy_lost_behind_an_agents_back_is_found_by_anti_entropy_without_any_read() {
    let sandbox = Sandbox::new("data-anti-entropy-lost");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    let dir = sandbox.dir("files");
    put_new(&fleet, &dir, "k", 20_000, 9, &[]);
    // b's disk loses the copy while b is down; nobody reads the key.
    lose_copies_while_down(&mut fleet, "b");
    // Anti-entropy on b's return finds the copy missing; repair makes it
    // again, on b (the ring's replica).
    wait_holds(&fleet.agent_dir("b").join("objects"), true, "b's lost copy was not made again");
    wait_copies(&fleet, "k", 3, &["b"]);
}

#[test]
fn an_extra_copy_is_dropped_once_enough_exist_elsewhere_and_a_removed_key_leaves_no_trace() {
    let sandbox = Sandbox::new("data-anti-entropy-extra");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    let dir = sandbox.dir("files");
    let bytes = put_new(&fleet, &dir, "single", 30_000, 4, &["--replicas", "1"]);
    let stat = wait_copies(&fleet, "single", 1, &[]);
    let holder = stat["copies"][0]["node"].as_str().unwrap().to_string();
    let other = ["a", "b", "c"].into_iter().find(|node| *node != holder).unwrap();
    // A copy of it turns up on another node (restored from a backup, say):
    // anti-entropy counts it, and as one copy is all the object wants and
    // the ring's replica holds it, the extra one is dropped — never the
    // last.
    fleet.kill_host(other);
    let from = fleet.agent_dir(&holder).join("objects");
    let to = fleet.agent_dir(other).join("objects");
    std::fs::create_dir_all(&to).unwrap();
    for name in stored_files(&from, "") {
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
    fleet.restart_agent(other);
    wait_state(&mut fleet, other, NodeState::Alive);
    wait_holds(&to, false, "the extra copy was not dropped");
    read_back(&fleet, &dir, "single", &[], &bytes);
    assert!(!copies_with_bytes(&from).is_empty(), "the last copy is never dropped");

    // Removed at `all`: once every replica applied the tombstone, it is
    // collected — no agent keeps a copy of the key, the console no record.
    let removed = data(&fleet, &["rm", "single", "--consistency", "all"]);
    assert!(removed.status.success(), "{removed}");
    ringwatch_tests::poll::until(ringwatch_tests::LIVENESS, std::time::Duration::from_millis(200), || {
        let left: Vec<String> =
            ["a", "b", "c"].iter().flat_map(|node| copies_on_disk(&fleet.agent_dir(node).join("objects"))).collect();
        if left.is_empty() {
            ringwatch_tests::poll::Step::Done(())
        } else {
            ringwatch_tests::poll::Step::Pending(format!("copies left: {left:?}"))
        }
    })
    .unwrap_or_else(|failure| panic!("the tombstone was not collected: {failure}"));
    let (gone, _) = get(&fleet, &dir, "single", &[]);
    assert_eq!(gone.status.code(), Some(4), "{gone}");
}

#[test]
fn a_node_whose_quota_is_full_takes_no_copy_and_a_put_no_node_has_room_for_is_refused() {
    let sandbox = Sandbox::new("data-quota");
    let specs = [
        ringwatch_tests::fleet::AgentSpec::new("a").args(&["--data-quota", "1MiB"]),
        ringwatch_tests::fleet::AgentSpec::new("b").args(&["--data-quota", "1MiB"]),
        ringwatch_tests::fleet::AgentSpec::new("c").args(&["--data-quota", "1MiB"]),
        ringwatch_tests::fleet::AgentSpec::new("tiny").args(&["--data-quota", "10KiB"]),
    ];
    let mut fleet = Fleet::start_with(&sandbox, &specs);
    // The console learns each node's free quota and says it.
    let status = fleet.console.wait_for("every node's free quota", |status| {
        let raw: serde_json::Value = serde_json::from_str(&status.raw).unwrap_or_default();
        raw["nodes"].as_array().is_some_and(|nodes| {
            nodes.len() == 4 && nodes.iter().all(|node| node["data_free_bytes"].as_u64().is_some())
        })
    });
    sandbox.step(format!("free quotas known: {}", status.raw));
    let dir = sandbox.dir("files");
    // 100 KB fits a, b and c but not tiny: an `all` put of 3 replicas
    // lands on the three that have room, whatever the ring would say.
    let (file, bytes) = payload(&dir, "mid", 100_000, 2);
    for i in 0..4 {
        let key = format!("mid{i}");
        let put = data(&fleet, &["put", &key, file.to_str().unwrap(), "--consistency", "all"]);
        assert!(put.status.success(), "{put}");
        let stat = wait_copies(&fleet, &key, 3, &["a", "b", "c"]);
        assert!(!stat.to_string().contains("\"tiny\""), "tiny has no room: {stat}");
    }
    assert!(copies_with_bytes(&fleet.agent_dir("tiny").join("objects")).is_empty());
    read_back(&fleet, &dir, "mid0", &[], &bytes);
    // 2 MB fits nowhere: refused before any byte moves, and says why.
    let (big, _) = payload(&dir, "big", 2_000_000, 3);
    let refused = data(&fleet, &["put", "big", big.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{refused}");
    assert!(refused.stderr.contains("larger than every node's free data quota"), "{refused}");
    let listed = data(&fleet, &["ls", "--json"]);
    assert!(!listed.stdout.contains("\"big\""), "nothing is stored: {listed}");
}

#[test]
fn a_drained_nodes_copies_move_to_the_other_nodes_before_they_are_dropped() {
    let sandbox = Sandbox::new("data-drain");
    let fleet = Fleet::start(&sandbox, &["a", "b", "c", "d"]);
    let dir = sandbox.dir("files");
    let mut objects = Vec::new();
    for i in 0..12 {
        let key = format!("d{i}");
        let bytes = put_new(&fleet, &dir, &key, 10_000 + i, i as u8, &[]);
        objects.push((key, bytes));
    }
    let b_objects = fleet.agent_dir("b").join("objects");
    assert!(!copies_with_bytes(&b_objects).is_empty(), "b holds copies before the drain");
    let drain = fleet.act(&["drain", "b"]);
    assert!(drain.status.success(), "{drain}");
    // Its copies are made on the other nodes first, then dropped from it.
    wait_holds(&b_objects, false, "the drained node kept its copies");
    for (key, bytes) in &objects {
        let stat = wait_copies(&fleet, key, 3, &[]);
        assert!(!stat.to_string().contains("\"node\":\"b\""), "{key}: {stat}");
        read_back(&fleet, &dir, key, &["--consistency", "all"], bytes);
    }
}

#[test]
fn what_if_names_the_objects_a_nodes_failure_would_leave_below_quorum_or_unavailable() {
    let sandbox = Sandbox::new("data-what-if");
    let fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    let dir = sandbox.dir("files");
    // One, two and three replicas: losing a holder leaves a one-copy
    // object with nothing, a two-copy object below its quorum of 2, and a
    // three-copy object with a quorum.
    let mut keys = Vec::new();
    for replicas in ["1", "2", "3"] {
        for i in 0..6 {
            let key = format!("r{replicas}/{i}");
            let (file, _) = payload(&dir, &key.replace('/', "-"), 1000 + i, i as u8);
            // At `all`: every replica is recorded before the figures are read.
            let put =
                data(&fleet, &["put", &key, file.to_str().unwrap(), "--replicas", replicas, "--consistency", "all"]);
            assert!(put.status.success(), "put {key}: {put}");
            keys.push((key, replicas.parse::<u8>().unwrap(), 1000 + i as u64));
        }
    }
    // Who holds what, as `stat` says; then what each node's failure would
    // do, counted by hand.
    let holders: Vec<Vec<String>> = keys
        .iter()
        .map(|(key, _, _)| {
            let stat = data(&fleet, &["stat", key, "--json"]);
            assert!(stat.status.success(), "{stat}");
            let stat: serde_json::Value = serde_json::from_str(&stat.stdout).unwrap();
            let copies = stat["copies"].as_array().unwrap();
            copies.iter().map(|copy| copy["node"].as_str().unwrap().to_string()).collect()
        })
        .collect();
    let expected = |node: &str| {
        let (mut objects, mut bytes, mut below, mut lost, mut lost_bytes) = (0, 0, 0, 0, 0);
        for ((_, replicas, size), holders) in keys.iter().zip(&holders) {
            if !holders.iter().any(|holder| holder == node) {
                continue;
            }
            objects += 1;
            bytes += size;
            let left = holders.len() - 1;
            if left == 0 {
                lost += 1;
                lost_bytes += size;
            } else if left < usize::from(*replicas) / 2 + 1 {
                below += 1;
            }
        }
        (objects, bytes, below, lost, lost_bytes)
    };
    // The node whose failure hurts most: the keys are fixed and the hash
    // pinned, so this is the same node every run.
    let node = ["a", "b", "c"].into_iter().max_by_key(|node| (expected(node).3, expected(node).2)).unwrap();
    let (objects, bytes, below, lost, lost_bytes) = expected(node);
    assert!(below > 0 && lost > 0, "the fixture exercises both counts: {node} {:?}", expected(node));

    let json = fleet.admin(&["what-if", node, "--json"]);
    assert!(json.status.success(), "{json}");
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let data_figures = &plan["data"];
    assert_eq!(data_figures["objects"], objects, "{json}");
    assert_eq!(data_figures["bytes"], bytes, "{json}");
    assert_eq!(data_figures["below_quorum"], below, "{json}");
    assert_eq!(data_figures["unavailable"], lost, "{json}");
    assert_eq!(data_figures["bytes_unavailable"], lost_bytes, "{json}");

    let text = fleet.admin(&["what-if", node]);
    assert!(text.status.success(), "{text}");
    let plural = |count: u64| if count == 1 { "object" } else { "objects" };
    for line in [
        format!("  data: the node holds {objects} {}", plural(objects)),
        format!("  data: {below} {} would drop below quorum", plural(below)),
        format!("  data: {lost} {} would become unavailable", plural(lost)),
    ] {
        assert!(text.stdout.contains(&line), "{line:?} missing: {text}");
    }
    assert!(text.stdout.contains("dry run: nothing was changed"), "{text}");
}

#[test]
fn the_config_files_data_table_sets_the_replicas_of_a_put_that_names_none() {
    let sandbox = Sandbox::new("data-config");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    // The fleet's console reads this file; restarted, it takes the table.
    let config = sandbox.path().join("console.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[data]\nreplicas = 2\nrepair_delay = \"2s\"\nrepair_rate = \"8MiB\"\n");
    std::fs::write(&config, text).unwrap();
    fleet.restart_console();
    fleet.wait_all_alive(ringwatch_tests::LIVENESS);
    let dir = sandbox.dir("files");
    put_new(&fleet, &dir, "k", 1000, 1, &["--consistency", "all"]);
    let stat = wait_copies(&fleet, "k", 2, &[]);
    assert_eq!(stat["replicas"], 2, "{stat}");
    let status = fleet.console.status();
    let raw: serde_json::Value = serde_json::from_str(&status.raw).unwrap();
    assert_eq!(raw["data"]["replicas"], 2, "{}", status.raw);
}
