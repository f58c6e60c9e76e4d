//! The `ringwatch` command line: help, and bad input refused with a clear
//! message before anything starts. (Building this test also makes cargo
//! build the `ringwatch` binary the end-to-end suite drives.)

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail the test by panicking

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
    for command in ["serve", "join-token", "status", "--data-dir", "--listen", "--config"] {
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
