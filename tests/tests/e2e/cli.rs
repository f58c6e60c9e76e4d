//! Admin commands on their own: no console, or a console being stopped.

use ringwatch_tests::{Console, Sandbox, console};

#[test]
fn status_without_a_console_exits_non_zero_and_says_no_console() {
    let sandbox = Sandbox::new("no-console");
    let data_dir = sandbox.dir("empty");
    for json in [true, false] {
        let mut args = vec!["status".into()];
        if json {
            args.push("--json".into());
        }
        args.extend(["--data-dir".into(), data_dir.clone().into_os_string()]);
        let output = console::ringwatch(args).unwrap();
        assert!(!output.status.success(), "status must fail: {output}");
        assert!(output.stderr.to_lowercase().contains("no console"), "stderr must say there is no console: {output}");
    }
}

#[test]
fn join_token_works_without_a_console_and_prints_one_line() {
    let sandbox = Sandbox::new("token-offline");
    // `join_token` asserts success and exactly one line.
    let token = console::join_token(&sandbox.dir("fresh"), None);
    assert!(!token.contains(char::is_whitespace), "token: {token:?}");
}

#[test]
fn serve_exits_0_on_sigterm() {
    let sandbox = Sandbox::new("serve-sigterm");
    let mut console = Console::start(&sandbox.dir("console"));
    let exit = console.terminate();
    assert!(exit.success(), "serve exits 0 on SIGTERM, got {exit}\n{}", console.log_tail());
}

/// `ringwatch status | head -1` once panicked ("failed printing to stdout:
/// Broken pipe"): a reader that goes away is not an error worth a panic.
#[test]
fn regression_output_into_a_closed_pipe_exits_quietly() {
    let sandbox = Sandbox::new("closed-pipe");
    let console = Console::start(&sandbox.dir("console"));
    for args in [&["status"][..], &["status", "--json"], &["join-token"]] {
        // A pipe whose reader is gone before the command writes: every
        // write fails with EPIPE, without any race against the reader.
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let output = std::process::Command::new(ringwatch_tests::bins::ringwatch())
            .args(args)
            .arg("--data-dir")
            .arg(console.data_dir())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("ringwatch runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?} panicked on a closed pipe: {stderr}");
        assert!(output.status.success(), "{args:?} exits 0 when its reader leaves: {:?} {stderr}", output.status);
    }
}

#[test]
fn join_token_without_a_console_of_a_group_refuses_rather_than_issue_a_token_the_group_never_sees() {
    let sandbox = Sandbox::new("token-offline-group");
    let data_dir = sandbox.dir("standalone");
    // Nothing listens on the store: the command must not need it to refuse.
    let output = console::ringwatch([
        "join-token".into(),
        "--store".into(),
        "etcd://127.0.0.1:9".into(),
        "--data-dir".into(),
        data_dir.clone().into_os_string(),
    ])
    .unwrap();
    assert!(!output.status.success(), "join-token must fail: {output}");
    assert!(output.stderr.contains("group"), "stderr must say why: {output}");
    assert!(output.stdout.trim().is_empty(), "no token may be printed: {output}");
}
