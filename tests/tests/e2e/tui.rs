//! The terminal UI as a person sees it: `ringwatch demo` in tmux, read with
//! `capture-pane`, driven with `send-keys`.

use std::process::Command;
use std::time::Duration;

use ringwatch_tests::Sandbox;
use ringwatch_tests::bins;
use ringwatch_tests::poll::{self, Step};

/// The screen may take a while: five agents join, and debug builds are slow.
const SCREEN: Duration = Duration::from_secs(60);

/// A tmux server of this test's own (its own socket), killed on drop so no
/// session outlives the test, also on failure.
struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux").arg("-V").output().is_ok_and(|output| output.status.success())
    }

    fn start(name: &str, width: u16, height: u16, command: &str) -> Self {
        let tmux = Self { socket: format!("rw-e2e-{name}-{}", std::process::id()), session: name.to_string() };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "new-session", "-d", "-s", &tmux.session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux").args(["-L", &self.socket]).args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", &self.session, keys]);
    }

    /// Polls the screen until `done` finds what it wants in it.
    fn wait_for<T>(&self, what: &str, mut done: impl FnMut(&str) -> Option<T>) -> T {
        poll::until(SCREEN, Duration::from_millis(200), || {
            let screen = self.screen();
            match done(&screen) {
                Some(value) => Step::Done(value),
                None => Step::Pending(screen),
            }
        })
        .unwrap_or_else(|failure| panic!("the screen never showed {what}: {failure}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).output();
    }
}

/// The row of `node` in the node table: the line naming it with a state.
fn row<'a>(screen: &'a str, node: &str) -> Option<&'a str> {
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
    let alternate = tmux.tmux(&["display-message", "-p", "-t", &tmux.session, "#{alternate_on}"]);
    assert_eq!(alternate.trim(), "0", "the alternate screen was left: the terminal is restored");
    assert!(!tmux.screen().contains("ring "), "the UI is gone from the screen");
}
