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
//! duplicate name, empty command, a value out of bounds — is refused whole,
//! with the line of the problem and what is wrong.
//!
//! Every value is bounded (README.md, "Workloads"): a spec is turned into
//! plans, timers (`Instant + delay`, which panics on overflow) and child
//! processes, so an absurd value must be refused when it is read, not fail
//! later. [`validate`] holds the rules; [`parse_task_file`] applies the same
//! function, so a file and the admin channel cannot disagree. Durations
//! therefore decode without limits (`duration::serde_unbounded`) and are
//! checked afterwards, where the error can name the key and the limit.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::duration::format_duration;

/// The most instances one task may ask for: each runs on a distinct node,
/// and a typo of a few zeros must not make the console plan billions.
pub const MAX_REPLICAS: u32 = 10_000;

/// The longest duration in a task spec (`restart.delay`,
/// `restart.max_delay`, `restart.within`, `migrate.min_healthy`,
/// `on_disconnect.stop_after`): seven days. Longer means "never" in
/// practice, and every such wait is added to a clock.
pub const MAX_TASK_DURATION: Duration = Duration::from_secs(7 * 86_400);

/// The most restarts `restart.max_restarts` may allow: the agent remembers
/// each restart inside the window.
pub const MAX_RESTARTS: u32 = 10_000;

/// The most arguments of a command, the program included.
pub const MAX_COMMAND_ARGS: usize = 256;

/// The longest argument of a command, in bytes.
pub const MAX_ARG_LEN: usize = 4096;
/// The most bytes a whole command may hold: a task travels in one frame to
/// every agent that runs it.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;

/// One task of the desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Unique name; instances are `name/0`, `name/1`, …
    pub name: crate::names::TaskName,
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
    #[serde(with = "crate::duration::serde_unbounded")]
    pub delay: Duration,
    /// Longest delay.
    #[serde(with = "crate::duration::serde_unbounded")]
    pub max_delay: Duration,
    /// More restarts than this within `within` mark the instance failed and
    /// the console places it elsewhere.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in; a run this long resets the
    /// backoff.
    #[serde(with = "crate::duration::serde_unbounded")]
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
    /// before the source stops (make-before-break). Zero: at once.
    #[serde(with = "crate::duration::serde_unbounded")]
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
    StopAfter(#[serde(with = "crate::duration::serde_unbounded")] Duration),
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

/// A task spec breaks a rule; the message names the task, the field and the
/// limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecError {
    /// Which key of the task is wrong: a task file's error gives its line.
    pub field: SpecField,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// The keys of a `[[task]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecField {
    /// `name`.
    Name,
    /// `command`.
    Command,
    /// `replicas`.
    Replicas,
    /// `restart`.
    Restart,
    /// `migrate`.
    Migrate,
    /// `on_disconnect`.
    OnDisconnect,
}

/// Parses and validates a task file: the TOML, then [`validate`] on each
/// task, then unique names.
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
        let name_line = at(raw.name.span());
        let line_of_field = |field: SpecField| {
            match field {
                SpecField::Name => name_line,
                SpecField::Command => at(raw.command.span()),
                SpecField::Replicas => raw.replicas.as_ref().and_then(|value| at(value.span())),
                SpecField::Restart => raw.restart.as_ref().and_then(|value| at(value.span())),
                SpecField::Migrate => raw.migrate.as_ref().and_then(|value| at(value.span())),
                SpecField::OnDisconnect => raw.on_disconnect.as_ref().and_then(|value| at(value.span())),
            }
            // Keys left out take defaults, which pass; should one fail
            // anyway, the task's first line is the place to look.
            .or(name_line)
        };
        let name = crate::names::TaskName::parse(raw.name.get_ref())
            .map_err(|err| TaskFileError { line: name_line, message: err.to_string() })?;
        let spec = TaskSpec {
            name,
            command: raw.command.get_ref().clone(),
            replicas: raw.replicas.as_ref().map_or(1, |replicas| *replicas.get_ref()),
            placement: raw.placement.unwrap_or_default(),
            restart: raw.restart.as_ref().map(|restart| restart.get_ref().clone()).unwrap_or_default(),
            migrate: raw.migrate.as_ref().map(|migrate| migrate.get_ref().clone()).unwrap_or_default(),
            on_disconnect: match raw.on_disconnect.as_ref().map(Spanned::get_ref) {
                None | Some(RawOnDisconnect::Keep(_)) => OnDisconnect::Keep,
                Some(RawOnDisconnect::StopAfter { stop_after }) => OnDisconnect::StopAfter(*stop_after),
            },
        };
        validate(&spec).map_err(|err| TaskFileError { line: line_of_field(err.field), message: err.message })?;
        if !names.insert(spec.name.clone()) {
            return Err(TaskFileError { line: name_line, message: format!("duplicate task name \"{}\"", spec.name) });
        }
        tasks.push(spec);
    }
    if tasks.is_empty() {
        return Err(TaskFileError { line: None, message: "no [[task]] in the file".into() });
    }
    Ok(tasks)
}

/// Checks one spec: every rule of a task file except unique names (see
/// [`validate_all`]). [`parse_task_file`] calls it for each task, and the
/// console calls it on specs from the admin channel.
///
/// # Errors
/// The first broken rule, naming the task, the field and the limit.
pub fn validate(spec: &TaskSpec) -> Result<(), SpecError> {
    let fail = |field: SpecField, message: String| Err(SpecError { field, message });
    let task = &spec.name;
    if let Some(problem) = command_problem(&spec.command) {
        return fail(SpecField::Command, format!("task \"{task}\": {problem}"));
    }
    if spec.replicas == 0 || spec.replicas > MAX_REPLICAS {
        return fail(
            SpecField::Replicas,
            format!("task \"{task}\": replicas must be at least 1 and at most {MAX_REPLICAS}, not {}", spec.replicas),
        );
    }

    let restart = &spec.restart;
    for (key, value) in [("delay", restart.delay), ("max_delay", restart.max_delay), ("within", restart.within)] {
        if let Some(problem) = duration_problem(value, false) {
            return fail(SpecField::Restart, format!("task \"{task}\": restart.{key} {problem}"));
        }
    }
    if restart.max_delay < restart.delay {
        return fail(
            SpecField::Restart,
            format!(
                "task \"{task}\": restart.max_delay ({}) is shorter than restart.delay ({}); raise max_delay or lower delay",
                format_duration(restart.max_delay),
                format_duration(restart.delay),
            ),
        );
    }
    if restart.max_restarts > MAX_RESTARTS {
        return fail(
            SpecField::Restart,
            format!(
                "task \"{task}\": restart.max_restarts must be at most {MAX_RESTARTS}, not {}",
                restart.max_restarts
            ),
        );
    }

    let migrate = &spec.migrate;
    if migrate.max_parallel == 0 || migrate.max_parallel > MAX_REPLICAS {
        return fail(
            SpecField::Migrate,
            format!(
                "task \"{task}\": migrate.max_parallel must be at least 1 and at most {MAX_REPLICAS}, not {}",
                migrate.max_parallel
            ),
        );
    }
    if let Some(problem) = duration_problem(migrate.min_healthy, true) {
        return fail(SpecField::Migrate, format!("task \"{task}\": migrate.min_healthy {problem}"));
    }

    if let OnDisconnect::StopAfter(stop_after) = spec.on_disconnect
        && let Some(problem) = duration_problem(stop_after, false)
    {
        return fail(SpecField::OnDisconnect, format!("task \"{task}\": on_disconnect.stop_after {problem}"));
    }
    Ok(())
}

/// [`validate`] on each spec of a batch, and unique names in it: what
/// [`parse_task_file`] checks of a whole file.
///
/// # Errors
/// The first broken rule.
pub fn validate_all(specs: &[TaskSpec]) -> Result<(), SpecError> {
    let mut names = BTreeSet::new();
    for spec in specs {
        validate(spec)?;
        if !names.insert(spec.name.as_str()) {
            return Err(SpecError {
                field: SpecField::Name,
                message: format!("duplicate task name \"{}\"", spec.name),
            });
        }
    }
    Ok(())
}

/// What is wrong with a command, if anything.
fn command_problem(command: &[String]) -> Option<String> {
    if command.first().is_none_or(|program| program.trim().is_empty()) {
        return Some("command is empty; give the program and its arguments, like [\"sleep\", \"60\"]".into());
    }
    if command.len() > MAX_COMMAND_ARGS {
        return Some(format!(
            "command has {} arguments; at most {MAX_COMMAND_ARGS} are allowed (the program included)",
            command.len()
        ));
    }
    for (position, argument) in command.iter().enumerate() {
        if argument.len() > MAX_ARG_LEN {
            return Some(format!(
                "command argument {position} is {} bytes long; at most {MAX_ARG_LEN} are allowed",
                argument.len()
            ));
        }
        if argument.contains('\0') {
            // A NUL cannot be passed to exec: the argument would be cut
            // (or the spawn fail) on the agent, far from the operator.
            return Some(format!("command argument {position} contains a NUL byte, which a program cannot receive"));
        }
    }
    let total: usize = command.iter().map(String::len).sum();
    if total > MAX_COMMAND_LEN {
        return Some(format!("command holds {total} bytes in all; at most {MAX_COMMAND_LEN} are allowed"));
    }
    None
}

/// What is wrong with a duration of a spec, if anything.
fn duration_problem(value: Duration, zero_allowed: bool) -> Option<String> {
    if value.is_zero() && !zero_allowed {
        Some("must be longer than zero".into())
    } else if value > MAX_TASK_DURATION {
        Some(format!("is {}; it must be at most {}", format_duration(value), format_duration(MAX_TASK_DURATION)))
    } else {
        None
    }
}

/// Task names: 1–63 of `a-z 0-9 . _ -`, starting with a letter or digit
/// (the rule of [`crate::names`]).
pub fn valid_task_name(name: &str) -> bool {
    crate::names::is_valid_name(name)
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
    restart: Option<Spanned<RestartPolicy>>,
    migrate: Option<Spanned<MigratePolicy>>,
    on_disconnect: Option<Spanned<RawOnDisconnect>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawOnDisconnect {
    Keep(KeepWord),
    StopAfter {
        #[serde(with = "crate::duration::serde_unbounded")]
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
        assert!(validate(&spec).unwrap_err().message.contains("at most"));
        spec.replicas = 1;
        spec.command.clear();
        assert!(validate(&spec).unwrap_err().message.contains("empty"));
    }

    const EIGHT_DAYS: Duration = Duration::from_secs(8 * 86_400);

    /// A valid one-task file with `extra` lines appended to the task.
    fn task_with(extra: &str) -> String {
        format!("[[task]]\nname = \"a\"\ncommand = [\"x\"]\n{extra}\n")
    }

    fn valid_spec() -> TaskSpec {
        parse_task_file(FULL).unwrap().remove(0)
    }

    #[test]
    fn regression_a_stop_after_of_ten_quintillion_seconds_is_refused() {
        let err = error(&task_with("on_disconnect = { stop_after = \"10000000000000000000s\" }"));
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("on_disconnect.stop_after") && err.message.contains("at most 7days"), "{err}");

        let mut spec = valid_spec();
        spec.on_disconnect = OnDisconnect::StopAfter(Duration::from_secs(10_000_000_000_000_000_000));
        let err = validate(&spec).unwrap_err();
        assert_eq!(err.field, SpecField::OnDisconnect);
        assert!(err.message.contains("on_disconnect.stop_after"), "{err}");
    }

    #[test]
    fn regression_a_restart_delay_of_ten_quintillion_seconds_is_refused() {
        let err = error(&task_with(
            "restart = { mode = \"delayed\", delay = \"10000000000000000000s\", max_delay = \"10000000000000000000s\" }",
        ));
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("restart.delay") && err.message.contains("at most 7days"), "{err}");

        let mut spec = valid_spec();
        spec.restart.delay = Duration::from_secs(10_000_000_000_000_000_000);
        spec.restart.max_delay = spec.restart.delay;
        let err = validate(&spec).unwrap_err();
        assert_eq!(err.field, SpecField::Restart);
        assert!(err.message.contains("restart.delay"), "{err}");
    }

    #[test]
    fn every_task_duration_is_at_most_seven_days() {
        let week = "restart = { delay = \"7d\", max_delay = \"7d\", within = \"7d\" }\nmigrate = { min_healthy = \"7d\" }\non_disconnect = { stop_after = \"7d\" }";
        let spec = parse_task_file(&task_with(week)).unwrap().remove(0);
        assert_eq!(spec.restart.within, MAX_TASK_DURATION);
        for (line, key) in [
            ("restart = { delay = \"7d 1s\", max_delay = \"8d\" }", "restart.delay"),
            ("restart = { max_delay = \"8d\" }", "restart.max_delay"),
            ("restart = { within = \"8d\" }", "restart.within"),
            ("migrate = { min_healthy = \"8d\" }", "migrate.min_healthy"),
            ("on_disconnect = { stop_after = \"8d\" }", "on_disconnect.stop_after"),
        ] {
            let err = error(&task_with(line));
            assert_eq!(err.line, Some(4), "{err}");
            assert!(err.message.contains(key) && err.message.contains("at most 7days"), "{key}: {err}");
        }

        type Change = fn(&mut TaskSpec);
        let checks: [(Change, SpecField); 5] = [
            (|spec| (spec.restart.delay, spec.restart.max_delay) = (EIGHT_DAYS, EIGHT_DAYS), SpecField::Restart),
            (|spec| spec.restart.max_delay = EIGHT_DAYS, SpecField::Restart),
            (|spec| spec.restart.within = EIGHT_DAYS, SpecField::Restart),
            (|spec| spec.migrate.min_healthy = EIGHT_DAYS, SpecField::Migrate),
            (|spec| spec.on_disconnect = OnDisconnect::StopAfter(EIGHT_DAYS), SpecField::OnDisconnect),
        ];
        for (change, field) in checks {
            let mut spec = valid_spec();
            change(&mut spec);
            let err = validate(&spec).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(&format_duration(EIGHT_DAYS)), "{err}");
        }
    }

    #[test]
    fn zero_is_refused_except_for_min_healthy() {
        let spec =
            parse_task_file(&task_with("migrate = { mode = \"gradual\", min_healthy = \"0s\" }")).unwrap().remove(0);
        assert_eq!(spec.migrate.min_healthy, Duration::ZERO);
        assert_eq!(validate(&spec), Ok(()));
        for line in [
            "restart = { delay = \"0s\" }",
            "restart = { within = \"0ms\" }",
            "on_disconnect = { stop_after = \"0s\" }",
        ] {
            let err = error(&task_with(line));
            assert_eq!(err.line, Some(4), "{err}");
            assert!(err.message.contains("longer than zero"), "{err}");
        }
        let mut spec = valid_spec();
        spec.on_disconnect = OnDisconnect::StopAfter(Duration::ZERO);
        assert_eq!(validate(&spec).unwrap_err().field, SpecField::OnDisconnect);
    }

    #[test]
    fn max_delay_is_at_least_delay() {
        let err = error(&task_with("restart = { mode = \"delayed\", delay = \"10s\", max_delay = \"5s\" }"));
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("restart.max_delay (5s) is shorter than restart.delay (10s)"), "{err}");
        // Against the default max_delay (30s), reported at the table.
        let err = error(&task_with("restart = { delay = \"1m\" }"));
        assert_eq!(err.line, Some(4), "{err}");
        assert!(parse_task_file(&task_with("restart = { delay = \"1m\", max_delay = \"1m\" }")).is_ok());
    }

    #[test]
    fn counts_are_bounded() {
        for (line, text) in [
            ("restart = { max_restarts = 10001 }", "max_restarts must be at most 10000"),
            ("migrate = { max_parallel = 0 }", "max_parallel must be at least 1"),
            ("migrate = { max_parallel = 10001 }", "max_parallel must be at least 1 and at most 10000"),
        ] {
            let err = error(&task_with(line));
            assert_eq!(err.line, Some(4), "{err}");
            assert!(err.message.contains(text), "{err}");
        }
        let spec =
            parse_task_file(&task_with("restart = { max_restarts = 10000 }\nmigrate = { max_parallel = 10000 }"))
                .unwrap();
        assert_eq!((spec[0].restart.max_restarts, spec[0].migrate.max_parallel), (MAX_RESTARTS, MAX_REPLICAS));
        assert!(parse_task_file(&task_with("restart = { max_restarts = 0 }")).is_ok(), "give up at the first crash");
    }

    #[test]
    fn commands_are_bounded() {
        let many = format!("[{}]", vec!["\"x\""; MAX_COMMAND_ARGS + 1].join(", "));
        let err = error(&format!("[[task]]\nname = \"a\"\ncommand = {many}\n"));
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("257 arguments; at most 256"), "{err}");
        let enough = format!("[{}]", vec!["\"x\""; MAX_COMMAND_ARGS].join(", "));
        assert!(parse_task_file(&format!("[[task]]\nname = \"a\"\ncommand = {enough}\n")).is_ok());

        let long = "y".repeat(MAX_ARG_LEN + 1);
        let err = error(&format!("[[task]]\nname = \"a\"\ncommand = [\"x\", \"{long}\"]\n"));
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("argument 1 is 4097 bytes long; at most 4096"), "{err}");
        assert!(err.message.len() < 200, "the argument is not echoed");

        let wide = format!("[{}]", vec![format!("\"{}\"", "z".repeat(MAX_ARG_LEN)); 17].join(", "));
        let err = error(&format!("[[task]]\nname = \"a\"\ncommand = {wide}\n"));
        assert!(err.message.contains("at most 65536 are allowed"), "{err}");

        let err = error("[[task]]\nname = \"a\"\ncommand = [\"x\", \"a\\u0000b\"]\n");
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("argument 1 contains a NUL byte"), "{err}");

        let mut spec = valid_spec();
        spec.command = vec!["x".into(); MAX_COMMAND_ARGS + 1];
        assert_eq!(validate(&spec).unwrap_err().field, SpecField::Command);
        spec.command = vec!["x\0".into()];
        assert_eq!(validate(&spec).unwrap_err().field, SpecField::Command);
        spec.command = vec!["x".into(), "y".repeat(MAX_ARG_LEN + 1)];
        assert_eq!(validate(&spec).unwrap_err().field, SpecField::Command);
    }

    #[test]
    fn subtables_on_their_own_lines_are_checked_too() {
        let text = "[[task]]\nname = \"a\"\ncommand = [\"x\"]\n\n[task.restart]\nmode = \"delayed\"\ndelay = \"8d\"\nmax_delay = \"8d\"\n";
        let err = error(text);
        assert!(err.message.contains("restart.delay"), "{err}");
        assert!(matches!(err.line, Some(5..=7)), "{err}");
    }

    #[test]
    fn batches_over_the_admin_channel_are_checked_like_files() {
        let specs = parse_task_file(FULL).unwrap();
        assert_eq!(validate_all(&specs), Ok(()));
        let twice = [specs[0].clone(), specs[0].clone()];
        let err = validate_all(&twice).unwrap_err();
        assert_eq!((err.field, err.message.as_str()), (SpecField::Name, "duplicate task name \"web\""));
        // A bad name cannot even be decoded: the admin channel refuses it
        // before validation.
        let mut json = serde_json::to_value(&specs[1]).unwrap();
        json["name"] = "Batch".into();
        let err = serde_json::from_value::<TaskSpec>(json).unwrap_err().to_string();
        assert!(err.contains("task name \"Batch\" is invalid: use 1–63"), "{err}");
    }

    #[test]
    fn invalid_names_are_reported_with_the_rule() {
        let err = error("[[task]]\nname = \"Web\"\ncommand = [\"x\"]\n");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("\"Web\"") && err.message.contains("lowercase"), "{err}");
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
