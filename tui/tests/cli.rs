//! The `ringwatch` command line: help, and bad input refused with a clear
//! message before anything starts. (Building this test also makes cargo
//! build the `ringwatch` binary the end-to-end suite drives.)

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail the test by panicking

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn ringwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringwatch")).args(args).output().expect("ringwatch runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_every_command() {
    let output = ringwatch(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "join-token", "status", "pki", "--data-dir", "--listen", "--config"] {
        assert!(help.contains(command), "help lacks {command}:\n{help}");
    }
}

#[test]
fn a_bad_duration_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = ringwatch(&["join-token", "--ttl", "soon", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("\"soon\" is not a duration"), "{}", stderr(&output));
}

#[test]
fn a_broken_config_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ringwatch.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n[detector]\nfailed_phi = \"high\"\n").unwrap();
    let output =
        ringwatch(&["status", "--config", config.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("line 3") && message.contains("ringwatch.toml"), "{message}");
}

#[test]
fn join_token_prints_one_token_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = ringwatch(&["join-token", "--ttl", "1h", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.starts_with("rwt2."), "{stdout}");
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `ringwatch ARGS… --data-dir DIR`.
fn in_dir(dir: &Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--data-dir", dir.to_str().unwrap()]);
    ringwatch(&all)
}

/// A data dir with a PKI of its own (`join-token` makes it).
fn cluster_dir(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    let output = in_dir(&dir, &["join-token"]);
    assert!(output.status.success(), "{}", stderr(&output));
    dir
}

#[test]
fn pki_export_then_import_gives_another_data_dir_the_same_ca() {
    let root = tempfile::tempdir().unwrap();
    let first = cluster_dir(root.path(), "first");
    let second = root.path().join("second");
    let file = root.path().join("cluster.pki");
    let file_arg = file.to_str().unwrap();

    let output = in_dir(&first, &["pki", "export", file_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("as secret as the CA key"), "{}", stdout(&output));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let output = in_dir(&second, &["pki", "import", file_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("imported"), "{}", stdout(&output));
    assert_eq!(std::fs::read(second.join("ca.crt")).unwrap(), std::fs::read(first.join("ca.crt")).unwrap());
    assert_eq!(std::fs::read(second.join("token.key")).unwrap(), std::fs::read(first.join("token.key")).unwrap());

    let output = in_dir(&second, &["pki", "import", file_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("already holds this PKI"), "{}", stdout(&output));
    // The imported data dir works: it issues tokens of the shared CA.
    assert!(in_dir(&second, &["join-token"]).status.success());
}

#[test]
fn pki_export_refuses_an_existing_file_and_a_data_dir_without_a_ca() {
    let root = tempfile::tempdir().unwrap();
    let first = cluster_dir(root.path(), "first");
    let file = root.path().join("cluster.pki");
    std::fs::write(&file, "precious").unwrap();
    let file_arg = file.to_str().unwrap();

    let output = in_dir(&first, &["pki", "export", file_arg]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("already exists") && stderr(&output).contains("--force"), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
    let output = in_dir(&first, &["pki", "export", file_arg, "--force"]);
    assert!(output.status.success(), "{}", stderr(&output));

    let empty = root.path().join("empty");
    let output = in_dir(&empty, &["pki", "export", root.path().join("other.pki").to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("holds no cluster CA"), "{}", stderr(&output));
    assert!(!empty.join("ca.crt").exists(), "export makes no PKI");
}

#[test]
fn pki_import_refuses_another_ca_a_loose_bundle_and_a_running_console() {
    let root = tempfile::tempdir().unwrap();
    let first = cluster_dir(root.path(), "first");
    let second = cluster_dir(root.path(), "second");
    let file = root.path().join("cluster.pki");
    let file_arg = file.to_str().unwrap();
    assert!(in_dir(&first, &["pki", "export", file_arg]).status.success());
    let second_ca = std::fs::read(second.join("ca.crt")).unwrap();

    let output = in_dir(&second, &["pki", "import", file_arg]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("another cluster CA") && message.contains("orphan every agent"), "{message}");
    assert_eq!(std::fs::read(second.join("ca.crt")).unwrap(), second_ca, "nothing was written");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = in_dir(&second, &["pki", "import", file_arg, "--force"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains(&format!("chmod 600 {file_arg}")), "{}", stderr(&output));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A console holds the data dir's lock while it runs.
    let lock =
        std::fs::File::options().create(true).truncate(false).write(true).open(second.join("console.lock")).unwrap();
    lock.lock().unwrap();
    let output = in_dir(&second, &["pki", "import", file_arg, "--force"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("a console is running") && stderr(&output).contains("stop it"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(second.join("ca.crt")).unwrap(), second_ca, "nothing was written");
    drop(lock);

    let output = in_dir(&second, &["pki", "import", file_arg, "--force"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("must join again"), "{}", stdout(&output));
    assert_eq!(std::fs::read(second.join("ca.crt")).unwrap(), std::fs::read(first.join("ca.crt")).unwrap());
}

/// The exit code of a finished command.
fn code(output: &Output) -> Option<i32> {
    output.status.code()
}

#[test]
fn data_help_names_every_command_and_the_exit_codes() {
    let output = ringwatch(&["data", "--help"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let help = stdout(&output);
    for command in ["put", "get", "rm", "ls", "stat", "Exit codes", "no such key", "replicas"] {
        assert!(help.contains(command), "data help lacks {command}:\n{help}");
    }
    let help = stdout(&ringwatch(&["data", "get", "--help"]));
    assert!(help.contains("checksum can only be checked at the end"), "get --help explains stdout: {help}");
}

#[test]
fn data_refuses_a_bad_key_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.bin");
    std::fs::write(&file, b"bytes").unwrap();
    let long = "k".repeat(1025);
    let cases: [(&[&str], &str); 4] = [
        (&["data", "put", "", file.to_str().unwrap()], "a key cannot be empty"),
        (&["data", "put", "a\nb", file.to_str().unwrap()], "control characters"),
        (&["data", "get", &long], "at most 1024 bytes"),
        (&["data", "stat", "a\u{7}b"], "control characters"),
    ];
    for (args, why) in cases {
        // No console runs on this data dir: the key is refused before anyone is asked.
        let output = in_dir(dir.path(), args);
        let message = stderr(&output);
        assert_eq!(code(&output), Some(2), "{args:?}: {message}");
        assert!(message.contains(why) && message.contains("nothing was sent"), "{args:?}: {message}");
        assert!(!message.contains("no console"), "{args:?}: {message}");
    }
}

#[test]
fn data_put_of_a_missing_file_or_a_directory_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.bin");
    let output = in_dir(dir.path(), &["data", "put", "k", missing.to_str().unwrap()]);
    let message = stderr(&output);
    assert_eq!(code(&output), Some(1), "{message}");
    assert!(message.contains("missing.bin\" does not exist") && message.contains("nothing was sent"), "{message}");
    assert!(!message.contains("no console"), "the file is checked first: {message}");

    let output = in_dir(dir.path(), &["data", "put", "k", dir.path().to_str().unwrap()]);
    assert_eq!(code(&output), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("is a directory"), "{}", stderr(&output));
}

#[test]
fn data_commands_without_a_console_exit_3_and_get_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("object.bin");
    std::fs::write(&file, b"bytes").unwrap();
    let out = dir.path().join("out").join("copy.bin");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let commands: [&[&str]; 8] = [
        &["data", "put", "k", file.to_str().unwrap()],
        &["data", "put", "k", file.to_str().unwrap(), "--replicas", "2", "--consistency", "all"],
        &["data", "get", "k", "-o", out.to_str().unwrap()],
        &["data", "get", "k", "-o", "-"],
        &["data", "rm", "k"],
        &["data", "ls"],
        &["data", "ls", "photos/", "--json"],
        &["data", "stat", "k", "--json"],
    ];
    for args in commands {
        let output = in_dir(&dir.path().join("console"), args);
        assert_eq!(code(&output), Some(3), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("no console is running"), "{args:?}: {}", stderr(&output));
        assert!(stdout(&output).is_empty(), "{args:?}: {}", stdout(&output));
    }
    assert_eq!(std::fs::read_dir(dir.path().join("out")).unwrap().count(), 0, "no FILE, no temporary file");
}

#[test]
fn data_put_reads_standard_input_when_no_file_is_given() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["data", "put", "k"][..], &["data", "put", "k", "-"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringwatch"))
            .args(args)
            .args(["--data-dir", dir.path().join("console").to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&vec![7u8; 600 * 1024]).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        // Spooled whole, then the console is looked for.
        assert_eq!(code(&output), Some(3), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("no console is running"), "{}", stderr(&output));
    }
}

#[test]
fn data_put_refuses_more_than_seven_replicas_and_an_unknown_consistency() {
    let dir = tempfile::tempdir().unwrap();
    let output = in_dir(dir.path(), &["data", "put", "k", "-", "--replicas", "8"]);
    assert_eq!(code(&output), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--replicas"), "{}", stderr(&output));
    let output = in_dir(dir.path(), &["data", "get", "k", "--consistency", "most"]);
    assert_eq!(code(&output), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("quorum"), "the possible values are named: {}", stderr(&output));
}

#[test]
fn data_get_json_needs_a_file_for_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // No console runs on this data dir: refused before anyone is asked.
    let output = in_dir(dir.path(), &["data", "get", "k", "--json"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--output <FILE>"), "{}", stderr(&output));
    let output = in_dir(dir.path(), &["data", "get", "k", "-o", "-", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("needs -o FILE"), "{}", stderr(&output));
}
