//! `ringwatch data` against a console with no agent to hold anything: every
//! command reaches it and is answered with its exit code — a put is not
//! enough (5, its bytes never read), a get, rm or stat of a key never stored
//! is not found (4), a listing is empty (0) — nothing is left behind, and a
//! viewer's put and rm are refused for the role before that.

use std::ffi::OsString;
use std::path::Path;

use ringwatch_tests::console::ringwatch;
use ringwatch_tests::process::Output;
use ringwatch_tests::{Console, Sandbox};

/// `ringwatch ARGS…` with the given leading arguments.
fn run(leading: &[OsString], args: &[&str]) -> Output {
    let mut all = leading.to_vec();
    all.extend(args.iter().map(OsString::from));
    ringwatch(all).unwrap_or_else(|err| panic!("ringwatch {args:?}: {err:#}"))
}

/// A file of `len` bytes, several chunks long when `len` is large.
fn object_file(dir: &Path, len: usize) -> String {
    let path = dir.join("object.bin");
    std::fs::write(&path, (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn data_commands_without_agents_say_what_is_missing_with_their_exit_codes() {
    let sandbox = Sandbox::new("data-not-served");
    let console = Console::start(&sandbox.dir("console"));
    let files = sandbox.dir("files");
    // Four chunks and a bit: the console answers before it reads them.
    let object = object_file(&files, 4 * 256 * 1024 + 3);
    let copy = files.join("copy.bin");
    let local = ["--data-dir".into(), console.data_dir().as_os_str().to_owned()];
    let commands: [&[&str]; 10] = [
        &["data", "put", "photos/a.jpg", &object],
        &["data", "put", "photos/a.jpg", &object, "--replicas", "5", "--consistency", "all"],
        &["data", "put", "photos/empty", "-"],
        &["data", "get", "photos/a.jpg"],
        &["data", "get", "photos/a.jpg", "-o", copy.to_str().unwrap(), "--consistency", "one"],
        &["data", "rm", "photos/a.jpg"],
        &["data", "ls"],
        &["data", "ls", "photos/", "--json"],
        &["data", "stat", "photos/a.jpg"],
        &["data", "stat", "photos/a.jpg", "--json"],
    ];
    for (index, args) in commands.into_iter().enumerate() {
        let output = run(&local, args);
        sandbox.step(format!("{args:?}: {:?}", output.status));
        assert!(!output.stderr.contains("panicked"), "{args:?}: {output}");
        let expected = match index {
            0..=2 => 5,
            6 | 7 => 0,
            _ => 4,
        };
        assert_eq!(output.status.code(), Some(expected), "{args:?} must exit {expected}: {output}");
        if expected == 5 {
            assert!(output.stderr.contains("can take a copy"), "{args:?} says why: {output}");
        }
        if expected != 0 {
            assert!(output.stdout.is_empty(), "{args:?} prints nothing on stdout: {output}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(&files).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(left, vec![OsString::from("object.bin")], "get -o left no file and no temporary file");
    // The console is still there for the next one.
    let output = run(&local, &["status"]);
    assert!(output.status.success(), "{output}\n{}", console.log_tail());
}

#[test]
fn a_viewer_may_read_the_data_store_but_not_put_or_remove() {
    let sandbox = Sandbox::new("data-viewer");
    let console = Console::start(&sandbox.dir("console"));
    let elsewhere = sandbox.dir("laptop");
    let credential = elsewhere.join("carol.credential");
    let issued = run(
        &["--data-dir".into(), console.data_dir().as_os_str().to_owned()],
        &["credential", "issue", "carol", "--role", "viewer", "-o", credential.to_str().unwrap()],
    );
    assert!(issued.status.success(), "{issued}");
    let object = object_file(&elsewhere, 1000);
    let viewer =
        ["--credential".into(), credential.into_os_string(), "--data-dir".into(), elsewhere.join("nothing").into()];

    for args in [&["data", "put", "k", &object][..], &["data", "rm", "k"]] {
        let output = run(&viewer, args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output}");
        assert!(output.stderr.contains("is a viewer"), "the refusal names the role: {args:?}: {output}");
    }
    // Readers pass the role check: nothing was stored.
    for args in [&["data", "get", "k"][..], &["data", "stat", "k"]] {
        let output = run(&viewer, args);
        assert_eq!(output.status.code(), Some(4), "{args:?}: {output}");
    }
    let listed = run(&viewer, &["data", "ls"]);
    assert!(listed.status.success(), "{listed}");
}
