//! The terminal in TUI mode (raw, alternate screen, mouse capture) behind a
//! guard that puts it back on drop, on error and on panic.

use std::io::{self, Stdout};
use std::panic::{self, PanicHookInfo};
use std::sync::Arc;

use anyhow::{Context, Result};
use crossterm::cursor::Show;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// A panic hook, shareable so the guard can put the previous one back.
type Hook = Arc<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The terminal in TUI mode. Dropping it restores the terminal and the
/// panic hook that was installed before.
pub(crate) struct TerminalGuard {
    /// The ratatui terminal drawing to stdout.
    pub(crate) terminal: Terminal<CrosstermBackend<Stdout>>,
    /// The panic hook to reinstate on drop.
    previous_hook: Hook,
}

impl TerminalGuard {
    /// Switches the terminal to TUI mode and installs a panic hook that
    /// restores it before the previous hook prints the panic (otherwise the
    /// message would be lost in the alternate screen).
    ///
    /// # Errors
    /// When stdout is not a terminal or refuses the mode switch; the terminal
    /// is restored before returning.
    pub(crate) fn enter() -> Result<Self> {
        let previous_hook: Hook = Arc::from(panic::take_hook());
        let chained = Arc::clone(&previous_hook);
        panic::set_hook(Box::new(move |info| {
            restore();
            chained(info);
        }));
        let guard_hook = Arc::clone(&previous_hook);
        let result = (|| -> Result<Terminal<CrosstermBackend<Stdout>>> {
            enable_raw_mode().context("failed to put the terminal in raw mode (is stdout a terminal?)")?;
            // Cleared with a plain escape: `Terminal::clear` asks the terminal
            // for the cursor position, which not every terminal answers.
            execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture, Clear(ClearType::All))
                .context("failed to switch to the alternate screen")?;
            Terminal::new(CrosstermBackend::new(io::stdout())).context("failed to set up the terminal")
        })();
        match result {
            Ok(terminal) => Ok(Self { terminal, previous_hook: guard_hook }),
            Err(err) => {
                restore();
                reinstate(guard_hook);
                Err(err)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
        // The hook cannot be changed while unwinding (std panics, which
        // aborts); ours stays, harmless, for the rest of that panic.
        if !std::thread::panicking() {
            reinstate(Arc::clone(&self.previous_hook));
        }
    }
}

/// Puts the terminal back: cooked mode, main screen, no mouse capture,
/// visible cursor. Best effort: there is nowhere to report a failure.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), DisableMouseCapture, LeaveAlternateScreen, Show);
}

fn reinstate(hook: Hook) {
    // Drops ours (it restored the terminal, which is no longer needed).
    let _ours = panic::take_hook();
    panic::set_hook(Box::new(move |info| hook(info)));
}
