//! `ringwatch completions SHELL` and `ringwatch man DIR`: shell completions
//! and man pages from the command line's own clap definition (README.md,
//! "Completions and man pages"). A module of the `ringwatch` binary
//! (`main.rs`), not of the library: the definition lives there.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;
use ringwatch_net::cli_docs::{self, Shell};

use crate::Cli;

/// Prints the completion script for `shell`.
pub(crate) fn completions(shell: Shell) -> Result<ExitCode> {
    use std::io::Write as _;
    let script = cli_docs::completions(Cli::command(), shell);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script).and_then(|()| stdout.flush()).context("failed to write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the man pages into `dir` and prints their paths.
pub(crate) fn man_pages(dir: &Path) -> Result<ExitCode> {
    let written = cli_docs::man_pages(Cli::command(), dir)
        .with_context(|| format!("failed to write man pages to \"{}\"", dir.display()))?;
    for path in written {
        outln!("{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
