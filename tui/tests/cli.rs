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
