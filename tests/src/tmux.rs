//! A tmux server of a test's own, to see the terminal UI as a person does:
//! started with a command, read with `capture-pane`, driven with
//! `send-keys`.

use std::process::Command;
use std::time::Duration;

use crate::poll::{self, Step};

/// The screen may take a while: five agents join, and debug builds are slow.
const SCREEN: Duration = Duration::from_secs(60);

/// A tmux server of this test's own (its own socket), killed on drop so no
/// session outlives the test, also on failure.
#[derive(Debug)]
pub struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// Whether tmux is installed.
    pub fn available() -> bool {
        Command::new("tmux").arg("-V").output().is_ok_and(|output| output.status.success())
    }

    /// Starts a session of `width` × `height` running `command` (a shell
    /// command line).
    ///
    /// # Panics
    /// When tmux cannot start it.
    pub fn start(name: &str, width: u16, height: u16, command: &str) -> Self {
        let tmux = Self { socket: format!("rw-e2e-{name}-{}", std::process::id()), session: name.to_string() };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "new-session", "-d", "-s", &tmux.session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .unwrap_or_else(|err| panic!("tmux cannot run: {err}"));
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    /// Runs a tmux command on this server; its output.
    ///
    /// # Panics
    /// When tmux cannot be run.
    pub fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap_or_else(|err| panic!("tmux cannot run: {err}"));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Whether the pane is in the alternate screen (a full-screen UI).
    pub fn alternate_screen(&self) -> bool {
        self.tmux(&["display-message", "-p", "-t", &self.session, "#{alternate_on}"]).trim() == "1"
    }

    /// What the pane shows now.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    /// Types `keys` (tmux key names).
    pub fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", &self.session, keys]);
    }

    /// Polls the screen until `done` finds what it wants in it.
    ///
    /// # Panics
    /// When it never does within a minute.
    pub fn wait_for<T>(&self, what: &str, mut done: impl FnMut(&str) -> Option<T>) -> T {
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
