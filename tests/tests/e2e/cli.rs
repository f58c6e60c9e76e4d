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
