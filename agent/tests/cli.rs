//! The `ringwatch-agent` command line: help, and bad input refused with a
//! clear message. (Building this test also makes cargo build the
//! `ringwatch-agent` binary the end-to-end suite drives.)

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail the test by panicking

use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringwatch-agent")).args(args).output().expect("ringwatch-agent runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_explains_joining() {
    let output = agent(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in ["--console", "--token", "--name", "--data-dir", "--heartbeat", "--weight", "swarm"] {
        assert!(help.contains(flag), "help lacks {flag}:\n{help}");
    }
}

#[test]
fn console_is_required() {
    let output = agent(&[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--console"), "{}", stderr(&output));
}

#[test]
fn no_credentials_and_no_token_says_how_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(&["--console", "127.0.0.1:9", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("join-token"), "{}", stderr(&output));
}

#[test]
fn a_malformed_token_is_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        agent(&["--console", "127.0.0.1:9", "--token", "nonsense", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("not a ringwatch join token"), "{}", stderr(&output));
}

#[test]
fn a_zero_heartbeat_is_refused() {
    let output = agent(&["--console", "127.0.0.1:9", "--heartbeat", "0s"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("longer than zero"), "{}", stderr(&output));
}

#[test]
fn a_bad_console_list_is_refused_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(&["--console", "127.0.0.1:7443,console.example", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("\"console.example\"") && err.contains("port is missing"), "{err}");
    let output = agent(&["swarm", "--console", ",", "--agents", "1", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no console address given"), "{}", stderr(&output));
}

#[test]
fn consoles_may_be_listed_and_repeated() {
    // The list is accepted (names are resolved only when connecting): what
    // stops this agent is that it has no credentials.
    let dir = tempfile::tempdir().unwrap();
    let output = agent(&[
        "--console",
        "127.0.0.1:9,[::1]:9",
        "--console",
        "nowhere.invalid:9",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("join-token"), "{}", stderr(&output));
}

#[test]
fn a_zero_or_garbage_data_quota_is_refused_naming_the_value() {
    let output = agent(&["--console", "127.0.0.1:9", "--data-quota", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("\"0\" must be more than zero bytes"), "{}", stderr(&output));
    let output = agent(&["--console", "127.0.0.1:9", "--data-quota", "10G"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("write 10GiB (powers of 1024) or 10GB"), "{}", stderr(&output));
}
