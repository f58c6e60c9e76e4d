//! Task files: the desired state an operator applies (DESIGN §6).
//!
//! ```toml
//! [[task]]
//! name = "web"
//! command = ["python3", "-m", "http.server", "0"]
//! replicas = 2
//! placement = "ring"
//! restart = { mode = "delayed", delay = "1s", max_delay = "30s", max_restarts = 5, within = "60s" }
//! migrate = { mode = "gradual", max_parallel = 1, min_healthy = "5s" }
//! on_disconnect = { stop_after = "5s" }   # or "keep" (the default)
//! ```
//!
//! A bad file — unknown key, wrong type, `replicas = 0`, unknown mode,
//! duplicate name, empty command — is refused whole, with the line of the
//! problem and what is wrong.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The most instances one task may ask for: each runs on a distinct node,
/// and a typo of a few zeros must not make the console plan billions.
pub const MAX_REPLICAS: u32 = 10_000;

/// One task of the desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique name; instances are `name/0`, `name/1`, …
    pub name: String,
    /// Program and arguments, run without a shell.
    pub command: Vec<String>,
    /// How many instances, each on a distinct node.
    pub replicas: u32,
    /// How nodes are chosen.
    pub placement: Placement,
    /// Restarting a crashed instance, and re-placing a failed node's.
    pub restart: RestartPolicy,
    /// Moving instances off failed or drained nodes.
    pub migrate: MigratePolicy,
    /// What an agent does with the instance when the console is unreachable.
    pub on_disconnect: OnDisconnect,
}

/// Placement strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// The weighted consistent-hash ring (stable: a node's failure moves
    /// only its instances).
    #[default]
    Ring,
    /// Nodes in turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random, weighted by free capacity.
    Weighted,
    /// The node with the fewest instances per unit of weight.
    LeastLoaded,
}

/// Restart timing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// At once.
    #[default]
    Immediate,
    /// After `delay`, doubling per restart up to `max_delay`, with jitter.
    Delayed,
}

/// How an instance is restarted in place after a crash, and when a failed
/// node's instances are placed again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestartPolicy {
    /// Immediate or delayed.
    pub mode: RestartMode,
    /// First delay (delayed mode), and the wait before a failed node's
    /// instances move (cancelled if it returns in time).
    #[serde(with = "crate::duration::serde_text")]
    pub delay: Duration,
    /// Longest delay.
    #[serde(with = "crate::duration::serde_text")]
    pub max_delay: Duration,
    /// More restarts than this within `within` mark the instance failed and
    /// the console places it elsewhere.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in; a run this long resets the
    /// backoff.
    #[serde(with = "crate::duration::serde_text")]
    pub within: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            mode: RestartMode::Immediate,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_restarts: 5,
            within: Duration::from_secs(60),
        }
    }
}

/// Migration pace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrateMode {
    /// Everything at once.
    #[default]
    Full,
    /// `max_parallel` at a time, each batch healthy for `min_healthy` first.
    Gradual,
}

/// How instances move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigratePolicy {
    /// Full or gradual.
    pub mode: MigrateMode,
    /// Moves in flight at once (gradual).
    pub max_parallel: u32,
    /// How long a new instance must run before the next batch (gradual) or
    /// before the source stops (make-before-break).
    #[serde(with = "crate::duration::serde_text")]
    pub min_healthy: Duration,
}

impl Default for MigratePolicy {
    fn default() -> Self {
        Self { mode: MigrateMode::Full, max_parallel: 1, min_healthy: Duration::from_secs(5) }
    }
}

/// What an agent does with an instance while it cannot reach the console.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnDisconnect {
    /// Keep it running.
    #[default]
    Keep,
    /// Stop it once the console has been silent this long (fencing): then
    /// at most one instance runs even across a partition.
    StopAfter(#[serde(with = "crate::duration::serde_text")] Duration),
}

/// A task file failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .line { Some(line) => format!("line {line}: {message}"), None => message.clone() })]
pub struct TaskFileError {
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Parses and validates a task file.
///
/// # Errors
/// The first problem, with its line.
pub fn parse_task_file(text: &str) -> Result<Vec<TaskSpec>, TaskFileError> {
    let file: RawFile = toml::from_str(text).map_err(|err| TaskFileError {
        line: err.span().map(|span| line_of(text, span.start)),
        message: err.message().to_string(),
    })?;
    let mut names = BTreeSet::new();
    let mut tasks = Vec::new();
    for raw in file.task {
        let at = |span: std::ops::Range<usize>| Some(line_of(text, span.start));
        let name = raw.name.get_ref().clone();
        if !valid_task_name(&name) {
            return Err(TaskFileError {
                line: at(raw.name.span()),
                message: format!(
                    "task name \"{name}\" is invalid: use 1–63 lowercase letters, digits, '.', '_' or '-'"
                ),
            });
        }
        if !names.insert(name.clone()) {
            return Err(TaskFileError {
                line: at(raw.name.span()),
                message: format!("duplicate task name \"{name}\""),
            });
        }
        if raw.command.get_ref().first().is_none_or(|program| program.trim().is_empty()) {
            return Err(TaskFileError {
                line: at(raw.command.span()),
                message: format!("task \"{name}\": command is empty"),
            });
        }
        let replicas = raw.replicas.as_ref().map_or(1, |replicas| *replicas.get_ref());
        if replicas == 0 || replicas > MAX_REPLICAS {
            return Err(TaskFileError {
                line: raw.replicas.as_ref().and_then(|replicas| at(replicas.span())),
                message: format!("task \"{name}\": replicas must be at least 1 and at most {MAX_REPLICAS}"),
            });
        }
        let on_disconnect = match raw.on_disconnect {
            None | Some(RawOnDisconnect::Keep(_)) => OnDisconnect::Keep,
            Some(RawOnDisconnect::StopAfter { stop_after }) => OnDisconnect::StopAfter(stop_after),
        };
        tasks.push(TaskSpec {
            name,
            command: raw.command.into_inner(),
            replicas,
            placement: raw.placement.unwrap_or_default(),
            restart: raw.restart.unwrap_or_default(),
            migrate: raw.migrate.unwrap_or_default(),
            on_disconnect,
        });
    }
    if tasks.is_empty() {
        return Err(TaskFileError { line: None, message: "no [[task]] in the file".into() });
    }
    Ok(tasks)
}

/// Checks a spec that did not come from [`parse_task_file`] (the admin
/// channel): the same rules, without lines.
///
/// # Errors
/// What is wrong.
pub fn validate(spec: &TaskSpec) -> Result<(), String> {
    if !valid_task_name(&spec.name) {
        return Err(format!("task name \"{}\" is invalid", spec.name));
    }
    if spec.command.first().is_none_or(|program| program.trim().is_empty()) {
        return Err(format!("task \"{}\": command is empty", spec.name));
    }
    if spec.replicas == 0 || spec.replicas > MAX_REPLICAS {
        return Err(format!("task \"{}\": replicas must be at least 1 and at most {MAX_REPLICAS}", spec.name));
    }
    Ok(())
}

/// Task names: 1–63 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn valid_task_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|first: char| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(1, |before| before.matches('\n').count() + 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    task: Vec<RawTask>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    name: Spanned<String>,
    command: Spanned<Vec<String>>,
    replicas: Option<Spanned<u32>>,
    placement: Option<Placement>,
    restart: Option<RestartPolicy>,
    migrate: Option<MigratePolicy>,
    on_disconnect: Option<RawOnDisconnect>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawOnDisconnect {
    Keep(KeepWord),
    StopAfter {
        #[serde(with = "crate::duration::serde_text")]
        stop_after: Duration,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeepWord {
    Keep,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
[[task]]
name = "web"
command = ["python3", "-m", "http.server", "0"]
replicas = 2
placement = "ring"
restart = { mode = "delayed", delay = "1s", max_delay = "30s", max_restarts = 5, within = "60s" }
migrate = { mode = "gradual", max_parallel = 1, min_healthy = "5s" }
on_disconnect = { stop_after = "5s" }

[[task]]
name = "batch"
command = ["sleep", "1000"]
on_disconnect = "keep"
"#;

    #[test]
    fn the_design_example_parses() {
        let tasks = parse_task_file(FULL).unwrap();
        assert_eq!(tasks.len(), 2);
        let web = &tasks[0];
        assert_eq!(web.replicas, 2);
        assert_eq!(web.restart.mode, RestartMode::Delayed);
        assert_eq!(web.migrate.mode, MigrateMode::Gradual);
        assert_eq!(web.on_disconnect, OnDisconnect::StopAfter(Duration::from_secs(5)));
        let batch = &tasks[1];
        assert_eq!((batch.replicas, batch.placement), (1, Placement::Ring));
        assert_eq!(batch.on_disconnect, OnDisconnect::Keep);
        assert_eq!(batch.restart, RestartPolicy::default());
    }

    fn error(text: &str) -> TaskFileError {
        parse_task_file(text).unwrap_err()
    }

    #[test]
    fn bad_files_name_their_line_and_problem() {
        let unknown = error("[[task]]\nname = \"a\"\ncommand = [\"x\"]\nreplicas_ = 2\n");
        assert_eq!(unknown.line, Some(4), "{unknown}");
        assert!(unknown.message.contains("replicas_"), "{unknown}");

        let wrong_type = error("[[task]]\nname = \"a\"\ncommand = \"x\"\n");
        assert_eq!(wrong_type.line, Some(3), "{wrong_type}");

        let zero = error("[[task]]\nname = \"a\"\ncommand = [\"x\"]\nreplicas = 0\n");
        assert_eq!((zero.line, zero.message.contains("at least 1")), (Some(4), true), "{zero}");

        let mode = error("[[task]]\nname = \"a\"\ncommand = [\"x\"]\nrestart = { mode = \"sometimes\" }\n");
        assert_eq!(mode.line, Some(4), "{mode}");
        assert!(mode.message.contains("sometimes"), "{mode}");

        let duplicate = error("[[task]]\nname = \"a\"\ncommand = [\"x\"]\n[[task]]\nname = \"a\"\ncommand = [\"y\"]\n");
        assert_eq!(duplicate.line, Some(5), "{duplicate}");
        assert!(duplicate.message.contains("duplicate"), "{duplicate}");

        let empty = error("[[task]]\nname = \"a\"\ncommand = []\n");
        assert_eq!((empty.line, empty.message.contains("empty")), (Some(3), true), "{empty}");

        let huge = error("[[task]]\nname = \"a\"\ncommand = [\"x\"]\nreplicas = 4000000000\n");
        assert_eq!(huge.line, Some(4), "{huge}");
        assert!(error("").message.contains("no [[task]]"));
        assert!(error("[[task]]\nname = \"Web\"\ncommand = [\"x\"]\n").message.contains("invalid"));
    }

    #[test]
    fn specs_from_elsewhere_are_checked_by_the_same_rules() {
        let mut spec = parse_task_file(FULL).unwrap().remove(0);
        assert_eq!(validate(&spec), Ok(()));
        spec.replicas = MAX_REPLICAS + 1;
        assert!(validate(&spec).unwrap_err().contains("at most"));
        spec.replicas = 1;
        spec.command.clear();
        assert!(validate(&spec).unwrap_err().contains("empty"));
    }

    #[test]
    fn specs_travel_through_the_codec() {
        let tasks = parse_task_file(FULL).unwrap();
        let frame = crate::codec::encode_frame(&tasks).unwrap();
        let (decoded, _): (Vec<TaskSpec>, usize) =
            crate::codec::decode_frame(&frame, crate::codec::MAX_FRAME_LEN).unwrap().unwrap();
        assert_eq!(decoded, tasks);
    }
}
