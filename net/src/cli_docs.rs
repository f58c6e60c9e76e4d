//! Shell completions and man pages made from a binary's own clap definition,
//! so they can never disagree with the flags the binary accepts (README.md,
//! "Completions and man pages"). Both `ringwatch` and `ringwatch-agent` print
//! them the same way: `completions SHELL` to stdout, `man DIR` into a folder.

use std::io;
use std::path::{Path, PathBuf};

/// The shells completions are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU bash (`source <(ringwatch completions bash)`).
    Bash,
    /// zsh (a `_ringwatch` file on `$fpath`).
    Zsh,
    /// fish (a file in `~/.config/fish/completions/`).
    Fish,
}

impl Shell {
    /// Every shell, for tests and docs.
    pub const ALL: [Self; 3] = [Self::Bash, Self::Zsh, Self::Fish];

    fn generator(self) -> clap_complete::Shell {
        match self {
            Self::Bash => clap_complete::Shell::Bash,
            Self::Zsh => clap_complete::Shell::Zsh,
            Self::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// The completion script of `command` for `shell`.
///
/// Made in memory rather than written straight to stdout: clap_complete's
/// writers panic on a write error, and a closed pipe (`… | head`) is no
/// reason to panic.
pub fn completions(mut command: clap::Command, shell: Shell) -> Vec<u8> {
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell.generator(), &mut command, name, &mut script);
    script
}

/// Writes one man page (section 1) per command and visible subcommand of
/// `command` into `dir` (created if needed): `ringwatch.1`,
/// `ringwatch-serve.1`, `ringwatch-task-apply.1`, … Hidden subcommands get
/// none. Returns the files written, the top-level page last.
///
/// # Errors
/// When `dir` cannot be created or a page cannot be written.
pub fn man_pages(command: clap::Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // As clap_mangen's own `generate_to`: no `help` pseudo-subcommand pages,
    // and a built command so that subcommands carry their full names.
    let mut command = command.disable_help_subcommand(true);
    command.build();
    // Every page names the program and its version in its footer, not
    // only the top-level one (subcommands carry no version of their own).
    let source = format!("{} {}", command.get_name(), command.get_version().unwrap_or_default());
    let mut written = Vec::new();
    write_pages(command, &source, dir, &mut written)?;
    Ok(written)
}

fn write_pages(command: clap::Command, source: &str, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned() {
        write_pages(sub, source, dir, written)?;
    }
    written.push(clap_mangen::Man::new(command).source(source).generate_to(dir)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> clap::Command {
        clap::Command::new("demo")
            .version("1.0")
            .about("A demo")
            .subcommand(clap::Command::new("serve").about("Serves"))
            .subcommand(
                clap::Command::new("task").about("Tasks").subcommand(clap::Command::new("apply").about("Applies")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn completions_name_the_subcommands_in_every_shell() {
        for shell in Shell::ALL {
            let script = String::from_utf8(completions(example(), shell)).unwrap();
            assert!(script.contains("serve") && script.contains("apply"), "{shell:?}: {script}");
        }
    }

    #[test]
    fn one_man_page_per_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let written = man_pages(example(), dir.path()).unwrap();
        let mut names: Vec<String> =
            written.iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names.last().map(String::as_str), Some("demo.1"));
        names.sort();
        assert_eq!(names, ["demo-serve.1", "demo-task-apply.1", "demo-task.1", "demo.1"]);
        let page = std::fs::read_to_string(dir.path().join("demo-task-apply.1")).unwrap();
        assert!(
            page.lines().any(|line| line.starts_with(".TH demo-task-apply 1 ") && line.contains("demo 1.0")),
            "{page}"
        );
        assert!(page.contains(".SH NAME\ndemo\\-task\\-apply \\- Applies"), "{page}");
    }
}
