//! The replicated data store (README.md, "Data") with real agents: objects
//! put, read back byte for byte, removed; a replica holder killed with
//! `kill -9` and every object still readable at quorum.

use std::path::{Path, PathBuf};

use ringwatch_tests::{Fleet, Sandbox};

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

fn get(fleet: &Fleet, dir: &Path, key: &str, extra: &[&str]) -> (ringwatch_tests::process::Output, Option<Vec<u8>>) {
    let out = dir.join(format!("got-{}", key.replace('/', "_")));
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["get", key, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = data(fleet, &args);
    (output, std::fs::read(&out).ok())
}

#[test]
fn objects_are_put_read_back_byte_for_byte_and_removed() {
    let sandbox = Sandbox::new("data-put-get-rm");
    let fleet = Fleet::start(&sandbox, &["a", "b", "c", "d"]);
    let dir = sandbox.dir("files");
    let mut objects = Vec::new();
    for (i, len) in [0usize, 1, 1000, 300_000, 1_100_000].into_iter().enumerate() {
        let key = format!("objects/{i}");
        let (file, bytes) = payload(&dir, &format!("in-{i}"), len, i as u8);
        let put = data(&fleet, &["put", &key, file.to_str().unwrap()]);
        assert!(put.status.success(), "put {key}: {put}");
        objects.push((key, bytes));
    }
    for (key, bytes) in &objects {
        let (output, got) = get(&fleet, &dir, key, &[]);
        assert!(output.status.success(), "get {key}: {output}");
        assert_eq!(got.as_ref(), Some(bytes), "{key} reads back byte for byte");
    }
    let stat = data(&fleet, &["stat", "objects/3", "--json"]);
    assert!(stat.status.success(), "{stat}");
    let stat: serde_json::Value = serde_json::from_str(&stat.stdout).unwrap();
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

#[test]
fn every_object_stays_readable_at_quorum_after_kill_9_of_a_holder() {
    let sandbox = Sandbox::new("data-kill-holder");
    let mut fleet = Fleet::start(&sandbox, &["a", "b", "c", "d"]);
    let dir = sandbox.dir("files");
    let mut objects = Vec::new();
    for i in 0..20 {
        let key = format!("k{i}");
        let (file, bytes) = payload(&dir, &key, 4096 + i, i as u8);
        let put = data(&fleet, &["put", &key, file.to_str().unwrap()]);
        assert!(put.status.success(), "put {key}: {put}");
        objects.push((key, bytes));
    }
    fleet.kill_host("b");
    fleet.console.wait_for("b failed", |status| {
        status.node("b").is_some_and(|node| node.state == ringwatch_tests::NodeState::Failed)
    });
    for (key, bytes) in &objects {
        let (output, got) = get(&fleet, &dir, key, &["--consistency", "quorum"]);
        assert!(output.status.success(), "get {key} after b died: {output}");
        assert_eq!(got.as_ref(), Some(bytes), "{key}");
    }
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
