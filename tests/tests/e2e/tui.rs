//! The terminal UI as a person sees it: `ringwatch demo` in tmux, read with
//! `capture-pane`, driven with `send-keys`.

use ringwatch_tests::bins;
use ringwatch_tests::{Sandbox, Tmux};

/// The row of `node` in the node table: the line naming it with a state.
pub(crate) fn row<'a>(screen: &'a str, node: &str) -> Option<&'a str> {
    screen.lines().find(|line| {
        line.split_whitespace().any(|word| word == node)
            && ["alive", "failed", "suspect", "left"].iter().any(|state| line.contains(state))
    })
}

#[test]
fn demo_shows_a_crashed_node_failed_and_quits_restoring_the_terminal() {
    if !Tmux::available() {
        eprintln!("skipped: tmux is not installed (the TUI end-to-end test needs it)");
        return;
    }
    let sandbox = Sandbox::new("tui-demo");
    let data_dir = sandbox.dir("demo");
    let command = format!(
        "{} demo --data-dir {}; echo RINGWATCH-EXITED $?; sleep 60",
        bins::ringwatch().display(),
        data_dir.display()
    );
    let tmux = Tmux::start("demo", 160, 48, &command);

    tmux.wait_for("five alive nodes", |screen| {
        (1..=5).all(|n| row(screen, &format!("node-{n}")).is_some_and(|line| line.contains("alive"))).then_some(())
    });
    sandbox.step("five alive nodes on screen");

    tmux.keys("x");
    let crashed = tmux.wait_for("the crash acknowledged in the status line", |screen| {
        screen.lines().find_map(|line| {
            let start = line.find("crashed node-")? + "crashed ".len();
            line[start..].split(|c: char| c == ':' || c.is_whitespace()).next().map(str::to_string)
        })
    });
    sandbox.step(format!("crashed {crashed}"));
    tmux.wait_for("the crashed node flagged failed", |screen| {
        row(screen, &crashed).is_some_and(|line| line.contains("failed")).then_some(())
    });
    sandbox.step(format!("{crashed} shows failed"));

    tmux.keys("q");
    let exit = tmux.wait_for("the console exit", |screen| {
        screen.lines().find_map(|line| line.strip_prefix("RINGWATCH-EXITED ").map(|code| code.trim().to_string()))
    });
    assert_eq!(exit, "0", "the console exits 0 on q");
    assert!(!tmux.alternate_screen(), "the alternate screen was left: the terminal is restored");
    assert!(!tmux.screen().contains("ring "), "the UI is gone from the screen");
}
