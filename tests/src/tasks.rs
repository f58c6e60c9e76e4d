//! Desired state from the command line: task files, the console config the
//! workload tests need, and the admin commands that change tasks and
//! placements (`task apply|rm|list`, `restart`, `migrate`, `drain`,
//! `cordon`, `uncordon`, `what-if`, `resume`), run against a console's data
//! dir as an operator would (DESIGN.md §2, §6).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::console;
use crate::process::Output;

/// What `ringwatch task apply` prints on success, before the count.
pub const APPLIED: &str = "applied";
/// The last line of an operator action that was carried out.
pub const PLAN_UNDER_WAY: &str = "done: the plan is under way";
/// The exit code of an admin command when no console runs on the data dir.
pub const EXIT_NO_CONSOLE: i32 = 3;

/// A console config for tests that place tasks: no resource limits. Every
/// agent of a test runs on the same busy host, and a node whose host CPU is
/// at 95 % for 30 s becomes `degraded` and receives no new work, which would
/// make placement depend on the machine's load.
pub const NO_LIMITS_CONFIG: &str = "\
[limits]
cpu_percent = 101.0
mem_percent = 101.0
disk_percent = 101.0
";

/// Writes [`NO_LIMITS_CONFIG`] to `dir/console.toml` and returns its path.
///
/// # Panics
/// When the file cannot be written.
#[track_caller]
pub fn write_no_limits_config(dir: &Path) -> PathBuf {
    let path = dir.join("console.toml");
    fs::write(&path, NO_LIMITS_CONFIG).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    path
}

/// One `[[task]]` of a task file, built in code and printed as TOML.
///
/// Policies are given as the TOML text of their inline table, exactly as an
/// operator writes them, so a test shows the file it applies:
///
/// ```
/// # use ringwatch_tests::tasks::TaskDef;
/// let web = TaskDef::new("web", ["sleep", "1000"])
///     .replicas(2)
///     .set("restart", r#"{ mode = "delayed", delay = "10s" }"#);
/// assert!(web.to_toml().contains("replicas = 2\n"));
/// ```
#[derive(Debug, Clone)]
pub struct TaskDef {
    /// The task name.
    name: String,
    /// Program and arguments.
    command: Vec<String>,
    /// Instance count; `None` leaves the key out (the default, 1).
    replicas: Option<u32>,
    /// Other keys, as `key = value` TOML text, in order.
    keys: Vec<(String, String)>,
}

impl TaskDef {
    /// A task running `command` (no shell: `command[0]` is the program).
    pub fn new<I, S>(name: &str, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.to_owned(),
            command: command.into_iter().map(Into::into).collect(),
            replicas: None,
            keys: Vec::new(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `replicas = n`.
    #[must_use]
    pub fn replicas(mut self, replicas: u32) -> Self {
        self.replicas = Some(replicas);
        self
    }

    /// Another key, with its value as TOML text (`"ring"`, `{ mode = … }`).
    #[must_use]
    pub fn set(mut self, key: &str, toml_value: &str) -> Self {
        self.keys.push((key.to_owned(), toml_value.to_owned()));
        self
    }

    /// The `[[task]]` table.
    pub fn to_toml(&self) -> String {
        let mut text = format!("[[task]]\nname = {}\ncommand = [", toml_string(&self.name));
        text.push_str(&self.command.iter().map(|arg| toml_string(arg)).collect::<Vec<_>>().join(", "));
        text.push_str("]\n");
        if let Some(replicas) = self.replicas {
            text.push_str(&format!("replicas = {replicas}\n"));
        }
        for (key, value) in &self.keys {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text
    }
}

/// A TOML basic string. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`)
/// are all valid in TOML basic strings.
pub fn toml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

/// A task file of `tasks`.
pub fn task_file(tasks: &[TaskDef]) -> String {
    tasks.iter().map(TaskDef::to_toml).collect::<Vec<_>>().join("\n")
}

/// Writes `tasks` to `path`.
///
/// # Panics
/// When the file cannot be written.
#[track_caller]
pub fn write_task_file(path: &Path, tasks: &[TaskDef]) {
    fs::write(path, task_file(tasks)).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

/// Runs `ringwatch ARGS… --data-dir DIR` against the console of `data_dir`;
/// the caller judges the outcome.
///
/// # Errors
/// When the command cannot be started or hangs.
pub fn admin<I, S>(data_dir: &Path, args: I) -> anyhow::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let mut all: Vec<OsString> = args.into_iter().map(Into::into).collect();
    all.extend(["--data-dir".into(), data_dir.into()]);
    console::ringwatch(all)
}

/// As [`admin`], asserting success.
///
/// # Panics
/// When the command fails or hangs, with its output.
#[track_caller]
pub fn admin_ok<I, S>(data_dir: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    match admin(data_dir, args) {
        Ok(output) if output.status.success() => output,
        Ok(output) => panic!("admin command failed: {output}"),
        Err(err) => panic!("admin command: {err:#}"),
    }
}

/// `ringwatch task apply FILE`, asserting success and `applied N task(s)`.
///
/// # Panics
/// When it fails or says something else.
#[track_caller]
pub fn apply_file(data_dir: &Path, file: &Path, count: usize) -> Output {
    let output = admin_ok(data_dir, [OsString::from("task"), "apply".into(), file.into()]);
    let expected = format!("{APPLIED} {count} task(s)");
    assert!(output.stdout.contains(&expected), "task apply should print {expected:?}: {output}");
    output
}

/// An operator action (`drain b`, `cordon a`, `migrate web/0 --to c`…)
/// carried out: asserts success and [`PLAN_UNDER_WAY`].
///
/// # Panics
/// When it fails or does not say the plan is under way.
#[track_caller]
pub fn act(data_dir: &Path, args: &[&str]) -> Output {
    let output = admin_ok(data_dir, args.iter().copied());
    assert!(
        output.stdout.contains(PLAN_UNDER_WAY),
        "`{}` should end with {PLAN_UNDER_WAY:?}: {output}",
        args.join(" ")
    );
    output
}

/// `ringwatch task list --json`: the desired tasks as JSON values (compared
/// whole, so any change shows).
///
/// # Panics
/// When the command fails or does not print a JSON array.
#[track_caller]
pub fn task_list(data_dir: &Path) -> Vec<serde_json::Value> {
    let output = admin_ok(data_dir, ["task", "list", "--json"]);
    match serde_json::from_str(&output.stdout) {
        Ok(serde_json::Value::Array(tasks)) => tasks,
        Ok(other) => panic!("task list --json should print an array, not {other}: {output}"),
        Err(err) => panic!("task list --json is not JSON ({err}): {output}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_task_def_prints_the_file_an_operator_would_write() {
        let web = TaskDef::new("web", ["sh", "-c", "echo \"$$\" > pid\nexec sleep 1000"])
            .replicas(2)
            .set("restart", r#"{ mode = "immediate" }"#);
        let job = TaskDef::new("job", ["true"]);
        assert_eq!(
            task_file(&[web, job]),
            "[[task]]\nname = \"web\"\ncommand = [\"sh\", \"-c\", \"echo \\\"$$\\\" > pid\\nexec sleep 1000\"]\n\
             replicas = 2\nrestart = { mode = \"immediate\" }\n\n[[task]]\nname = \"job\"\ncommand = [\"true\"]\n"
        );
    }

    #[test]
    fn control_characters_stay_valid_toml() {
        assert_eq!(toml_string("a\tb\u{1}"), r#""a\tb\u0001""#);
    }
}
