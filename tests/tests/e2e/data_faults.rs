//! The replicated data store (README.md, "Data") under faults, with real
//! agents: a node partitioned while puts, overwrites and removals go on,
//! then healed, converges; concurrent clients under a `kill -9` nemesis
//! never lose an acknowledged write nor read back in time
//! ([`ringwatch_tests::data_checker`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ringwatch_tests::data_checker::{self, Workload};

use super::data::wait_while_running;
use ringwatch_tests::fleet::RECONNECT;
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::process::Output;
use ringwatch_tests::{AgentSpec, Fleet, LIVENESS, NodeState, RelayMode, Sandbox};

/// How long one data command may run: a put to a replica whose link was
/// just cut waits for the link's idle timeout before it gives up on it.
const DATA_COMMAND: Duration = Duration::from_secs(60);

/// `ringwatch data ARGS… --data-dir DIR` against the fleet's console.
fn data(fleet: &Fleet, args: &[&str]) -> Output {
    let mut all = vec!["data"];
    all.extend_from_slice(args);
    all.push("--data-dir");
    let data_dir = fleet.data_dir().to_string_lossy().into_owned();
    all.push(&data_dir);
    ringwatch_tests::process::run(&ringwatch_tests::bins::ringwatch(), &all, DATA_COMMAND)
        .unwrap_or_else(|err| panic!("{err:#}"))
}

/// Runs a data command until it succeeds (a replica may be unreachable for
/// a moment while the console notices the partition).
#[track_caller]
fn until_done(sandbox: &Sandbox, fleet: &Fleet, args: &[&str]) -> Output {
    let output = poll::until(LIVENESS * 3, Duration::from_millis(500), || {
        let output = data(fleet, args);
        if output.status.success() {
            Step::Done(output)
        } else {
            sandbox.step(format!("retrying: {output}"));
            Step::Pending(output.to_string())
        }
    });
    output.unwrap_or_else(|failure| panic!("{args:?} never succeeded: {failure}"))
}

/// What the keys must hold: the bytes of the last acknowledged put, or
/// `None` once removed.
#[derive(Debug, Default)]
struct Model {
    keys: BTreeMap<String, Option<Vec<u8>>>,
    puts: usize,
}

impl Model {
    /// Puts new bytes under `key` (retrying until acknowledged).
    fn put(&mut self, sandbox: &Sandbox, fleet: &Fleet, dir: &Path, key: &str) {
        self.puts += 1;
        let bytes: Vec<u8> = format!("{key} put {}\n", self.puts).bytes().cycle().take(3000 + self.puts).collect();
        let file = dir.join(format!("put-{}", self.puts));
        std::fs::write(&file, &bytes).unwrap();
        until_done(sandbox, fleet, &["put", key, file.to_str().unwrap()]);
        self.keys.insert(key.to_owned(), Some(bytes));
    }

    /// Removes `key` (retrying until acknowledged).
    fn remove(&mut self, sandbox: &Sandbox, fleet: &Fleet, key: &str) {
        until_done(sandbox, fleet, &["rm", key]);
        self.keys.insert(key.to_owned(), None);
    }

    fn live(&self) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.keys.iter().filter_map(|(key, bytes)| bytes.as_ref().map(|bytes| (key, bytes)))
    }

    fn removed(&self) -> impl Iterator<Item = &String> {
        self.keys.iter().filter(|(_, bytes)| bytes.is_none()).map(|(key, _)| key)
    }
}

/// Waits until the console shows `node` in `state`.
fn wait_state(fleet: &mut Fleet, node: &str, state: NodeState, within: Duration) {
    fleet.console.wait_for_within(within, &format!("{node} {state}"), |status| {
        status.node(node).is_some_and(|n| n.state == state)
    });
}

/// What an agent holds of one key on disk: the version its current copy
/// is of and its bytes files' versions.
#[derive(Debug, Default)]
struct OnDisk {
    /// `term.counter` and whether it is a tombstone, of the highest
    /// version on disk (the one the agent serves).
    meta: Option<(String, bool)>,
    /// `term-counter` of each copy holding bytes (not a tombstone).
    data: Vec<String>,
}

/// An agent's copies, by key, as the agent reads them
/// (agent::objects::copies_on_disk: its packed copies and every copy file,
/// older versions a removal has not reached yet included).
fn on_disk(objects: &Path) -> BTreeMap<String, OnDisk> {
    let mut by_key: BTreeMap<String, Vec<ringwatch_shared::data::ObjectMeta>> = BTreeMap::new();
    for meta in ringwatch_agent::objects::copies_on_disk(objects).unwrap_or_default() {
        by_key.entry(meta.key.to_string()).or_default().push(meta);
    }
    by_key
        .into_iter()
        .map(|(key, mut metas)| {
            metas.sort_by_key(|meta| meta.version);
            let data = metas
                .iter()
                .filter(|meta| !meta.tombstone)
                .map(|meta| format!("{}-{}", meta.version.term, meta.version.counter))
                .collect();
            let meta = metas.last().map(|meta| (meta.version.to_string(), meta.tombstone));
            (key, OnDisk { meta, data })
        })
        .collect()
}

/// `{"term": T, "counter": C}` as `T.C`.
fn version_text(version: &serde_json::Value) -> String {
    format!("{}.{}", version["term"], version["counter"])
}

#[test]
fn a_node_partitioned_during_puts_and_healed_converges() {
    let sandbox = Sandbox::new("data-partition-heal");
    let specs: Vec<AgentSpec> = ["a", "b", "c", "d"].iter().map(|name| AgentSpec::new(name).relayed()).collect();
    let mut fleet = Fleet::start_with(&sandbox, &specs);
    let dir = sandbox.dir("files");
    let mut model = Model::default();
    let key = |i: usize| format!("p/{i:02}");
    for i in 0..12 {
        model.put(&sandbox, &fleet, &dir, &key(i));
    }
    sandbox.step("12 objects stored; cutting d off");

    fleet.relay("d").set_mode(RelayMode::Drop);
    // Before the console notices: d is still a target.
    model.put(&sandbox, &fleet, &dir, &key(0));
    model.remove(&sandbox, &fleet, &key(1));
    model.put(&sandbox, &fleet, &dir, &key(12));
    wait_state(&mut fleet, "d", NodeState::Failed, LIVENESS);
    sandbox.step("d failed; more puts, overwrites and removals while it is cut off");
    for i in [2, 3, 4, 5, 12] {
        model.put(&sandbox, &fleet, &dir, &key(i));
    }
    for i in [6, 7] {
        model.remove(&sandbox, &fleet, &key(i));
    }
    for i in 13..17 {
        model.put(&sandbox, &fleet, &dir, &key(i));
    }
    model.put(&sandbox, &fleet, &dir, &key(3));

    fleet.relay("d").set_mode(RelayMode::Pass);
    wait_state(&mut fleet, "d", NodeState::Alive, RECONNECT);
    sandbox.step("d healed and alive");

    // Convergence: every object back to its replica count of current
    // copies, nothing under-replicated, and exactly the live keys listed.
    let live: Vec<&String> = model.live().map(|(key, _)| key).collect();
    let listing = poll::until(LIVENESS * 3, Duration::from_millis(300), || {
        let status = fleet.console.status();
        let raw: serde_json::Value = serde_json::from_str(&status.raw).unwrap_or_default();
        let listed = data(&fleet, &["ls", "p/", "--json"]);
        let objects: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap_or_default();
        let keys: Vec<&str> = objects.iter().filter_map(|object| object["key"].as_str()).collect();
        let settled = |object: &serde_json::Value| {
            let copies = object["copies"].as_array().cloned().unwrap_or_default();
            object["live_copies"] == object["replicas"] && copies.iter().all(|copy| copy["current"] == true)
        };
        if raw["data"]["under_replicated"] == 0
            && raw["data"]["unavailable"] == 0
            && keys == live
            && objects.iter().all(settled)
        {
            Step::Done(objects)
        } else {
            let unsettled: Vec<String> = objects
                .iter()
                .filter(|object| !settled(object))
                .map(|object| {
                    format!(
                        "{}: {} of {} {}",
                        object["key"], object["live_copies"], object["replicas"], object["copies"]
                    )
                })
                .collect();
            Step::Pending(format!("data {}; listed {keys:?}; unsettled {unsettled:?}", raw["data"]))
        }
    })
    .unwrap_or_else(|failure| panic!("the store did not converge after the heal: {failure}"));
    sandbox.step(format!("converged: {} objects", listing.len()));

    // Every key reads back with the last acknowledged bytes; every removed
    // key stays removed.
    for (key, bytes) in model.live() {
        for consistency in ["quorum", "all"] {
            let out = dir.join("got");
            let _ = std::fs::remove_file(&out);
            let got = data(&fleet, &["get", key, "-o", out.to_str().unwrap(), "--consistency", consistency]);
            assert!(got.status.success(), "{key} at {consistency}: {got}");
            assert!(std::fs::read(&out).unwrap() == *bytes, "{key} at {consistency}: not the last acknowledged bytes");
        }
    }
    for key in model.removed() {
        let got = data(&fleet, &["get", key, "--consistency", "one"]);
        assert_eq!(got.status.code(), Some(4), "{key} was removed: {got}");
    }

    // On d's disk: every key it is a replica of at the current version, with
    // that version's bytes only; no bytes of a removed key.
    let objects = fleet.agent_dir("d").join("objects");
    let replica_of: BTreeMap<String, String> = listing
        .iter()
        .filter(|object| object["copies"].as_array().is_some_and(|copies| copies.iter().any(|c| c["node"] == "d")))
        .map(|object| (object["key"].as_str().unwrap_or_default().to_owned(), version_text(&object["version"])))
        .collect();
    sandbox.step(format!("d is a replica of {replica_of:?}"));
    poll::until(LIVENESS, Duration::from_millis(200), || {
        let held = on_disk(&objects);
        let mut wrong = Vec::new();
        for (key, version) in &replica_of {
            let data_name = version.replace('.', "-");
            match held.get(key) {
                Some(OnDisk { meta: Some((at, false)), data }) if at == version && data == &[data_name] => {}
                other => wrong.push(format!("{key}: wants {version}, holds {other:?}")),
            }
        }
        for key in model.removed() {
            if held.get(key).is_some_and(|copy| !copy.data.is_empty()) {
                wrong.push(format!("{key} was removed, holds {:?}", held[key]));
            }
        }
        if wrong.is_empty() { Step::Done(()) } else { Step::Pending(wrong.join("; ")) }
    })
    .unwrap_or_else(|failure| panic!("d holds stale copies: {failure}"));
    let extra: Vec<String> = on_disk(&objects)
        .into_iter()
        .filter(|(key, copy)| !replica_of.contains_key(key) && !copy.data.is_empty())
        .map(|(key, copy)| format!("{key}: {copy:?}"))
        .collect();
    sandbox.step(format!("d's copies of keys it is no replica of: {extra:?}"));
}

/// Checks a checker run's history, writing it to `dir/history.txt` (kept
/// with the sandbox when the test fails, or with RINGWATCH_E2E_KEEP=1);
/// the run's summary.
#[track_caller]
fn assert_no_violations(sandbox: &Sandbox, dir: &std::path::Path, run: &data_checker::Run) -> String {
    std::fs::write(dir.join("history.txt"), run.history_text()).unwrap();
    let summary = run.summary();
    sandbox.step(&summary);
    println!("{summary}");
    let violations = run.violations();
    assert!(
        violations.is_empty(),
        "{} violation(s):\n{}\n\n{summary}\n\nhistory:\n{}",
        violations.len(),
        violations.iter().map(|v| format!("- {v}\n")).collect::<String>(),
        run.history_text()
    );
    summary
}

#[test]
fn concurrent_clients_under_kill_9_never_lose_a_write_nor_read_back_in_time() {
    let sandbox = Sandbox::new("data-checker");
    let names = ["a", "b", "c", "d", "e"];
    let mut fleet = Fleet::start(&sandbox, &names);
    let workload = Workload { clients: 3, ops_per_client: 30, keys: 4, ..Workload::default() };
    let dir = sandbox.dir("checker");
    let run = data_checker::run(&mut fleet, &dir, &names, &workload);
    let summary = assert_no_violations(&sandbox, &dir, &run);
    // The run exercised what it checks.
    let kills = run.faults.iter().filter(|fault| fault.what.starts_with("kill")).count();
    let acked = run.history.iter().filter(|op| matches!(op.outcome, data_checker::Outcome::Stored { .. })).count();
    let read = run.history.iter().filter(|op| matches!(op.outcome, data_checker::Outcome::Read { .. })).count();
    assert!(kills >= 2 && acked >= 10 && read >= 10, "too little happened: {summary}");
}

/// The console itself killed (`kill -9`) and restarted while clients put
/// and get: puts of new keys (whose intent is no record) and overwrites
/// (whose intent is) are cut short in every phase. Every acknowledged
/// write stays readable at its version or a newer one, no read goes back
/// in time, and no version handed out before a crash is handed out again
/// after it (the checker sees two writes under one version as a read of
/// the wrong bytes).
#[test]
fn concurrent_clients_across_console_kill_9_never_lose_a_write_nor_read_back_in_time() {
    let sandbox = Sandbox::new("data-checker-console");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c", "d"]);
    checked_across_console_kills(&sandbox, &mut fleet);
}

/// The same nemesis with the console's change log folded into its
/// database in the background every few commits (`[change_log] fold_at`
/// at its smallest): wherever a `kill -9` finds the folds — a write-ahead
/// file just renamed, being folded, removed (the run's faults say when a
/// fold was under way) — the console starts again with every acknowledged
/// write.
#[test]
fn a_console_whose_change_log_folds_every_few_commits_loses_no_acknowledged_write_to_kill_9() {
    let sandbox = Sandbox::new("data-checker-fold");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c", "d"]);
    fleet.configure("[change_log]\nfold_at = \"4KiB\"\n");
    // A rename makes a new `state.wal`: its birth time tells.
    let wal = fleet.data_dir().join("state.wal");
    let born = || std::fs::metadata(&wal).and_then(|metadata| metadata.created()).ok();
    let first = born();
    let summary = checked_across_console_kills(&sandbox, &mut fleet);
    match (first, born()) {
        (Some(first), Some(last)) => assert!(last > first, "state.wal was never renamed to be folded: {summary}"),
        _ => sandbox.step("this file system gives no birth times: whether state.wal was renamed is not checked"),
    }
}

/// Runs the checker's clients against `fleet` while its console is killed
/// and restarted, asserts nothing it saw went wrong and that enough
/// happened; returns the run's summary.
#[track_caller]
fn checked_across_console_kills(sandbox: &Sandbox, fleet: &mut Fleet) -> String {
    // Many keys: most puts are a key's first.
    let workload = Workload { clients: 4, ops_per_client: 60, keys: 60, ops_between_faults: 40, ..Workload::default() };
    let dir = sandbox.dir("checker");
    let run = data_checker::run(fleet, &dir, &[data_checker::CONSOLE], &workload);
    let summary = assert_no_violations(sandbox, &dir, &run);
    // Operations fail fast while the console is down, so on a loaded
    // machine the clients may finish before a second restart.
    let restarts = run.faults.len();
    let acked = run.history.iter().filter(|op| matches!(op.outcome, data_checker::Outcome::Stored { .. })).count();
    assert!(restarts >= 1 && acked >= 10, "too little happened: {summary}");
    summary
}

/// Found by the data checker (a quorum read right after an acknowledged put
/// found one holder of its version instead of two): two puts of one key
/// overlap, the one stamped first (a large object) commits its copies
/// after the one stamped later (a small one) was acknowledged. Each
/// replica must keep the newer version; the acknowledged put must stay
/// readable.
#[test]
fn regression_an_older_put_committing_after_a_newer_one_does_not_replace_it() {
    let sandbox = Sandbox::new("data-older-put-commits-last");
    let fleet = Fleet::start(&sandbox, &["a", "b", "c"]);
    let dir = sandbox.dir("files");
    let big = dir.join("big");
    let big_bytes: Vec<u8> = (0..48u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &big_bytes).unwrap();
    drop(big_bytes);
    let mut command = std::process::Command::new(ringwatch_tests::bins::ringwatch());
    command.args(["data", "put", "k", "--json"]).arg(&big).arg("--data-dir").arg(fleet.data_dir());
    let mut older = ringwatch_tests::Proc::spawn("older put", command, &sandbox.path().join("older-put.log"));
    // Every replica is writing the older version's copy.
    let every = Duration::from_millis(10);
    wait_while_running(&mut older, "the older put", "before every replica was writing it", every, || {
        let writing: Vec<bool> = ["a", "b", "c"]
            .iter()
            .map(|node| !super::data::stored_files(&fleet.agent_dir(node).join("objects"), ".tmp").is_empty())
            .collect();
        if writing.iter().all(|w| *w) { Ok(()) } else { Err(format!("writing on a, b, c: {writing:?}")) }
    });
    // The newer put: stamped after the older one, acknowledged before it.
    let small = dir.join("small");
    std::fs::write(&small, b"the newer bytes").unwrap();
    let newer = data(&fleet, &["put", "k", small.to_str().unwrap(), "--json", "--consistency", "all"]);
    assert!(newer.status.success(), "{newer}");
    assert!(older.try_exit().is_none(), "the older put ended before the newer one was acknowledged: make it larger");
    let newer: serde_json::Value = serde_json::from_str(&newer.stdout).unwrap();
    sandbox.step(format!("newer put acknowledged at {}", version_text(&newer["version"])));
    let exit = older.wait_exit(LIVENESS * 3);
    sandbox.step(format!("older put ended: {exit}"));

    // The acknowledged newer version is what every replica holds and what
    // a quorum read returns.
    let out = dir.join("got");
    let got = data(&fleet, &["get", "k", "-o", out.to_str().unwrap(), "--json"]);
    assert!(got.status.success(), "the acknowledged newer put must stay readable: {got}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the newer bytes");
    for node in ["a", "b", "c"] {
        let held = on_disk(&fleet.agent_dir(node).join("objects"));
        let copy = held.get("k").and_then(|copy| copy.meta.clone());
        assert_eq!(
            copy,
            Some((version_text(&newer["version"]), false)),
            "{node} must keep the newer version: {:?}",
            held.get("k")
        );
    }
}

/// Found while reading the data checker's history (quorum reads failing
/// with "0 confirmed" although no fault was near): a put that fails its
/// consistency must never leave the previous, acknowledged version on fewer
/// replicas than it was acknowledged with. The replicas that took the new
/// version dropped the old one, so rolling the new one back (as the first
/// fix did) left the old version on one replica alone. Now the put is
/// either refused before anything moves, or recorded on the replicas that
/// took it and repaired (README.md, "Data"); a quorum read succeeds either
/// way. Here one replica has no room for the new version (over its data
/// quota), so an `all` put cannot be met.
#[test]
fn regression_a_put_that_fails_its_consistency_never_leaves_the_acknowledged_version_short_of_replicas() {
    let sandbox = Sandbox::new("data-failed-put-keeps-previous");
    let specs = [AgentSpec::new("a"), AgentSpec::new("b"), AgentSpec::new("c").args(&["--data-quota", "10000"])];
    let fleet = Fleet::start_with(&sandbox, &specs);
    let dir = sandbox.dir("files");
    let small = dir.join("small");
    std::fs::write(&small, b"the acknowledged bytes").unwrap();
    let stored = data(&fleet, &["put", "k", small.to_str().unwrap(), "--json", "--consistency", "all"]);
    assert!(stored.status.success(), "{stored}");
    let stored: serde_json::Value = serde_json::from_str(&stored.stdout).unwrap();
    assert_eq!(stored["live_copies"], 3, "{stored}");
    let version = version_text(&stored["version"]);

    let big = dir.join("big");
    std::fs::write(&big, vec![7u8; 50_000]).unwrap();
    let refused = data(&fleet, &["put", "k", big.to_str().unwrap(), "--consistency", "all"]);
    assert_eq!(refused.status.code(), Some(5), "c has no room, so an `all` put cannot be met: {refused}");
    sandbox.step(format!("the `all` put failed: {}", refused.stderr.trim()));

    let out = dir.join("got");
    let got = data(&fleet, &["get", "k", "-o", out.to_str().unwrap(), "--json"]);
    assert!(got.status.success(), "the object stays readable at quorum: {got}");
    let stat = data(&fleet, &["stat", "k", "--json"]);
    let stat: serde_json::Value = serde_json::from_str(&stat.stdout).unwrap();
    if std::fs::read(&out).unwrap() == b"the acknowledged bytes" {
        // Refused before anything moved: every replica keeps it.
        assert_eq!(stat["live_copies"], 3, "every replica still holds {version}: {stat}");
        for node in ["a", "b", "c"] {
            let held = on_disk(&fleet.agent_dir(node).join("objects"));
            let copy = held.get("k").and_then(|copy| copy.meta.clone());
            assert_eq!(copy, Some((version.clone(), false)), "{node} must still hold {version}: {:?}", held.get("k"));
        }
    } else {
        // Taken by a and b before c refused: recorded there, readable at
        // quorum, and said so.
        assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 50_000]);
        assert!(refused.stderr.contains("it is stored on those"), "{refused}");
        assert!(stat["live_copies"].as_u64().unwrap_or(0) >= 2, "{stat}");
    }
}

/// Found by the data checker (a quorum read concurrent with puts of its key
/// failed with "0 confirmed", and the next read said "no node holds it"
/// although the put had been acknowledged): a quorum read planned at the
/// recorded version finds the replicas already holding a newer put's copy
/// (durable, not yet recorded), takes them for replicas that lost their
/// copy, and tells the console to forget them — after that put was
/// recorded. The console must not forget holders of the version it
/// records now.
///
/// The interleaving is made with SIGSTOP: `n` (a target of the new put,
/// not a holder of the old version) holds the put back after `h1` and `h2`
/// have its copy; `h3` (a holder of the old version, cordoned so the new
/// put goes to `n`) holds the read back until the put is recorded.
#[test]
fn regression_a_read_overtaken_by_a_put_does_not_forget_the_puts_holders() {
    let sandbox = Sandbox::new("data-read-overtaken-by-put");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c", "d"]);
    let dir = sandbox.dir("files");
    let old = dir.join("old");
    std::fs::write(&old, b"the old bytes").unwrap();
    let stored = until_done(&sandbox, &fleet, &["put", "k", old.to_str().unwrap(), "--json", "--consistency", "all"]);
    let stored: serde_json::Value = serde_json::from_str(&stored.stdout).unwrap();
    let old_version = version_text(&stored["version"]);
    let holders: Vec<String> =
        stored["copies"].as_array().unwrap().iter().map(|copy| copy["node"].as_str().unwrap().to_owned()).collect();
    assert_eq!(holders.len(), 3, "{stored}");
    let n = ["a", "b", "c", "d"].into_iter().find(|node| !holders.iter().any(|h| h == node)).unwrap().to_owned();
    let (h1, h2, h3) = (holders[0].clone(), holders[1].clone(), holders[2].clone());
    sandbox.step(format!("{old_version} on {holders:?}; cordoning {h3}, so the new put goes to {h1}, {h2} and {n}"));
    let cordoned = fleet.admin(&["cordon", &h3]);
    assert!(cordoned.status.success(), "{cordoned}");

    // The new put: h1 and h2 make their copies durable; n, frozen, holds
    // the put (and its record) back.
    fleet.agent(&n).stop();
    let new = dir.join("new");
    std::fs::write(&new, b"the new bytes").unwrap();
    let mut command = std::process::Command::new(ringwatch_tests::bins::ringwatch());
    // At `all`, so the put waits for n (a quorum put is answered once
    // two targets and a short grace have passed).
    command
        .args(["data", "put", "k", "--json", "--consistency", "all"])
        .arg(&new)
        .arg("--data-dir")
        .arg(fleet.data_dir());
    let mut put = ringwatch_tests::Proc::spawn("new put", command, &sandbox.path().join("new-put.log"));
    wait_while_running(&mut put, "the new put", "while n was frozen", Duration::from_millis(20), || {
        let held: Vec<Option<(String, bool)>> = [&h1, &h2]
            .iter()
            .map(|node| on_disk(&fleet.agent_dir(node).join("objects")).remove("k").and_then(|copy| copy.meta))
            .collect();
        if held.iter().all(|meta| meta.as_ref().is_some_and(|(version, _)| *version != old_version)) {
            Ok(())
        } else {
            Err(format!("{h1} and {h2} hold {held:?}"))
        }
    });
    sandbox.step(format!("{h1} and {h2} hold the new copy; the put waits for {n}"));

    // The read: planned at the old version; h1 and h2 answer with the new
    // one, h3, frozen, holds the read back.
    fleet.agent(&h3).stop();
    let got = dir.join("got");
    let mut command = std::process::Command::new(ringwatch_tests::bins::ringwatch());
    command.args(["data", "get", "k", "-o"]).arg(&got).arg("--data-dir").arg(fleet.data_dir());
    let mut read = ringwatch_tests::Proc::spawn("read", command, &sandbox.path().join("read.log"));
    // By the time the console notices h3 is silent, the read has long
    // asked h1, h2 and h3.
    fleet.console.wait_for(&format!("{h3} silent"), |status| !status.is(&h3, &NodeState::Alive));

    fleet.agent(&n).cont();
    let exit = put.wait_exit(LIVENESS * 2);
    assert!(exit.success(), "the new put: {exit}");
    let new_put = data(&fleet, &["stat", "k", "--json"]);
    let new_put: serde_json::Value = serde_json::from_str(&new_put.stdout).unwrap();
    let new_version = version_text(&new_put["version"]);
    sandbox.step(format!("the new put is recorded at {new_version}: {}", new_put["copies"]));
    fleet.agent(&h3).cont();
    let exit = read.wait_exit(LIVENESS * 2);
    sandbox.step(format!("the read ended: {exit}"));

    // h1, h2 and n hold the recorded version: the console still says so.
    let stat = data(&fleet, &["stat", "k", "--json"]);
    let stat: serde_json::Value = serde_json::from_str(&stat.stdout).unwrap();
    let listed: Vec<&str> = stat["copies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|copy| version_text(&copy["version"]) == new_version)
        .filter_map(|copy| copy["node"].as_str())
        .collect();
    for node in [&h1, &h2, &n] {
        assert!(listed.contains(&node.as_str()), "{node} holds {new_version}, the console lists {listed:?}: {stat}");
    }
}
