//! Operating ringwatch on a host (README.md, "Operating ringwatch"): the
//! systemd units pass `systemd-analyze verify` with the binaries under test,
//! both binaries print shell completions and write man pages from their own
//! command-line definitions, and `ringwatch-agent status` reports what the
//! running agent itself knows — connected or not, to which console, its
//! instances, its data store's copies and quota — and says clearly when no
//! agent runs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ringwatch_tests::agent_status::{self, NOT_RUNNING};
use ringwatch_tests::fleet::RECONNECT;
use ringwatch_tests::instances::pid_file_command;
use ringwatch_tests::tasks::TaskDef;
use ringwatch_tests::{AgentSpec, COMMAND_TIMEOUT, EXIT_DEADLINE, Fleet, LIVENESS, Sandbox, bins, process};

/// The repository's `dist/systemd/`.
fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/systemd")
}

/// `systemd-analyze`, if this machine has it.
fn systemd_analyze() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("systemd-analyze")).find(|candidate| candidate.is_file())
}

/// The units as shipped run `/usr/local/bin/NAME`; the copies verified run
/// the binaries under test (verify checks that ExecStart is executable).
#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze() else {
        eprintln!(
            "skipped: systemd-analyze is not installed (Debian package `systemd`), so the units cannot be verified"
        );
        return;
    };
    let sandbox = Sandbox::new("units");
    let dir = sandbox.dir("units");
    let mut units = Vec::new();
    for (name, binary) in [("ringwatch", bins::ringwatch()), ("ringwatch-agent", bins::ringwatch_agent())] {
        let unit = format!("{name}.service");
        let text = std::fs::read_to_string(units_dir().join(&unit)).unwrap();
        let installed = format!("ExecStart=/usr/local/bin/{name} ");
        assert!(text.contains(&installed), "{unit} runs {installed:?}");
        let copy = text.replace(&installed, &format!("ExecStart={} ", binary.display()));
        let path = dir.join(&unit);
        std::fs::write(&path, copy).unwrap();
        units.push(path);
    }
    let mut args = vec!["verify".into(), "--man=no".into()];
    args.extend(units.iter().map(|unit| unit.clone().into_os_string()));
    let output = process::run(&analyze, args, COMMAND_TIMEOUT).unwrap();
    // verify exits 0 on unknown keys and bad values ("…, ignoring"): any word
    // from it is a fault of the units.
    assert!(output.status.success() && output.stdout.trim().is_empty() && output.stderr.trim().is_empty(), "{output}");
}

/// `systemctl stop` must end in each daemon's own graceful exit (SIGTERM;
/// for the agent, SIGTERM to it alone, so it stops its tasks and says
/// goodbye), and a clean exit must not be restarted.
#[test]
fn the_systemd_units_stop_with_sigterm_and_restart_only_on_failure() {
    for (unit, own) in [
        ("ringwatch.service", &["ExecStart=/usr/local/bin/ringwatch serve ", "StateDirectory=ringwatch\n"][..]),
        (
            "ringwatch-agent.service",
            &["ExecStart=/usr/local/bin/ringwatch-agent ", "StateDirectory=ringwatch-agent\n", "KillMode=mixed\n"],
        ),
    ] {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for line in ["KillSignal=SIGTERM", "Restart=on-failure", "NoNewPrivileges=yes", "StateDirectoryMode=0700"] {
            assert!(lines.contains(&line), "{unit} lacks {line}");
        }
        for line in own {
            assert!(text.contains(line), "{unit} lacks {line:?}");
        }
        assert!(lines.iter().any(|line| line.starts_with("TimeoutStopSec=")), "{unit} sets TimeoutStopSec");
        assert!(lines.iter().any(|line| line.starts_with("User=")), "{unit} runs as a user of its own");
        assert!(lines.iter().any(|line| line.starts_with("EnvironmentFile=")), "{unit} reads /etc/ringwatch");
    }
}

/// The config the console unit reads, as shipped, is one the console takes
/// (an unknown key would stop the service at start).
#[test]
fn the_shipped_console_config_is_accepted() {
    let sandbox = Sandbox::new("unit-config");
    let config = units_dir().join("ringwatch.toml");
    let args = [
        "status".into(),
        "--config".into(),
        config.into_os_string(),
        "--data-dir".into(),
        sandbox.dir("c").into_os_string(),
    ];
    let output = process::run(&bins::ringwatch(), args, COMMAND_TIMEOUT).unwrap();
    // Read and accepted: it gets as far as finding no console.
    assert_eq!(output.status.code(), Some(3), "{output}");
    assert!(output.stderr.contains("no console"), "{output}");
}

#[test]
fn both_binaries_print_completions_for_every_shell() {
    let binaries = [
        ("ringwatch", bins::ringwatch(), &["serve", "status", "join-token", "drain", "completions"][..]),
        ("ringwatch-agent", bins::ringwatch_agent(), &["swarm", "status", "completions", "allow-exec"]),
    ];
    for (name, binary, words) in binaries {
        for shell in ["bash", "zsh", "fish"] {
            let output = process::run(&binary, ["completions", shell], COMMAND_TIMEOUT).unwrap();
            assert!(output.status.success(), "{output}");
            assert!(output.stdout.contains(name), "{name} {shell}: names the program\n{output}");
            for word in words {
                assert!(output.stdout.contains(word), "{name} {shell}: completes {word:?}\n{output}");
            }
        }
        let output = process::run(&binary, ["completions", "tcsh"], COMMAND_TIMEOUT).unwrap();
        assert!(!output.status.success(), "an unknown shell is refused: {output}");
        assert!(output.stderr.contains("bash"), "the refusal names the shells: {output}");
    }
}

#[test]
fn both_binaries_write_one_man_page_per_command() {
    let sandbox = Sandbox::new("man");
    let expected = [
        (bins::ringwatch(), &["ringwatch", "ringwatch-serve", "ringwatch-status", "ringwatch-task-apply"][..]),
        (bins::ringwatch_agent(), &["ringwatch-agent", "ringwatch-agent-status", "ringwatch-agent-swarm"]),
    ];
    for (binary, pages) in expected {
        let dir = sandbox.path().join("man");
        let output = process::run(&binary, ["man".into(), dir.clone().into_os_string()], COMMAND_TIMEOUT).unwrap();
        assert!(output.status.success(), "{output}");
        for page in pages {
            let path = dir.join(format!("{page}.1"));
            assert!(output.stdout.contains(&path.display().to_string()), "lists {}: {output}", path.display());
            let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let title = text.lines().find(|line| line.starts_with(".TH ")).unwrap_or_default();
            assert!(title.starts_with(&format!(".TH {page} 1 ")), "{page}: title line {title:?}");
            for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION"] {
                assert!(text.contains(section), "{page} has {section}");
            }
        }
    }
    // The hidden `man` command documents nobody.
    assert!(!sandbox.path().join("man/ringwatch-man.1").exists());
    assert!(!sandbox.path().join("man/ringwatch-agent-man.1").exists());
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

#[test]
fn agent_status_says_connected_and_its_instances_then_disconnected_when_the_console_dies() {
    let sandbox = Sandbox::new("agent-status");
    let mut fleet = Fleet::start(&sandbox, &["a"]);
    let console = fleet.console.addr().to_string();
    let dir = fleet.agent_dir("a");
    fleet.apply(&[TaskDef::new("web", pid_file_command())]);
    fleet.wait_running("web", 1);
    let pid = fleet.wait_pid("a", "web/0");

    let status = agent_status::wait_for(&dir, LIVENESS, "connected, web/0 running", |status| {
        status.connected && status.instance("web/0").is_some_and(|instance| instance.state == "running")
    });
    sandbox.step(format!("agent status: {status:?}"));
    assert_eq!(status.node.as_deref(), Some("a"));
    assert_eq!(status.console.as_deref(), Some(console.as_str()));
    assert_eq!(status.consoles, console);
    assert_eq!(status.pid, fleet.agent("a").proc().pid());
    assert_eq!(status.instance("web/0").and_then(|instance| instance.pid), Some(pid));
    assert!(status.since_unix <= unix_now() && status.since_unix + 600 > unix_now(), "{status:?}");
    assert!(status.certificate_expires_unix.is_some_and(|expires| expires > unix_now()), "{status:?}");
    assert_eq!((status.data_objects, status.data_bytes, status.data_quota), (0, 0, 10 << 30), "the default quota");
    let text = agent_status::run(&dir, false).unwrap();
    assert!(text.status.success(), "{text}");
    for words in ["agent \"a\"", &format!("connected to the console at {console} since"), "web/0", "running"] {
        assert!(text.stdout.contains(words), "says {words:?}: {text}");
    }

    fleet.console.kill();
    sandbox.step("console killed");
    let status = agent_status::wait_for(&dir, RECONNECT, "not connected", |status| !status.connected);
    assert_eq!(status.console.as_deref(), Some(console.as_str()), "names the console it lost");
    assert!(status.last_error.is_some(), "says why: {status:?}");
    // The instance keeps running (its task keeps it through a disconnection).
    assert!(status.instance("web/0").is_some_and(|instance| instance.state == "running"), "{status:?}");
    let text = agent_status::run(&dir, false).unwrap();
    assert!(text.status.success(), "{text}");
    assert!(text.stdout.contains("not connected since"), "{text}");
    assert!(text.stdout.contains(&format!("last console: {console}")), "{text}");

    fleet.agent("a").term();
    fleet.agent("a").wait_exit(EXIT_DEADLINE);
    let output = agent_status::run(&dir, false).unwrap();
    assert_eq!(output.status.code(), Some(NOT_RUNNING), "{output}");
    assert!(output.stderr.contains("no agent is running"), "{output}");
}

#[test]
fn agent_status_without_an_agent_says_so_and_exits_3() {
    let sandbox = Sandbox::new("agent-status-none");
    for dir in [sandbox.dir("empty"), sandbox.path().join("missing")] {
        for json in [false, true] {
            let output = agent_status::run(&dir, json).unwrap();
            assert_eq!(output.status.code(), Some(NOT_RUNNING), "{output}");
            assert!(output.stderr.contains("no agent is running on the data dir"), "{output}");
            assert!(output.stdout.is_empty(), "{output}");
        }
    }
}

/// A status file could outlive its agent; the socket a killed agent leaves
/// answers nobody, and the next agent on the data dir replaces it.
#[test]
fn regression_agent_status_after_kill_9_says_not_running_until_the_agent_is_back() {
    let sandbox = Sandbox::new("agent-status-kill9");
    let mut fleet = Fleet::start(&sandbox, &["a"]);
    let dir = fleet.agent_dir("a");
    agent_status::wait_for(&dir, LIVENESS, "connected", |status| status.connected);
    fleet.agent("a").kill9();
    assert!(dir.join("agent.sock").exists(), "kill -9 leaves the socket file behind");
    let output = agent_status::run(&dir, true).unwrap();
    assert_eq!(output.status.code(), Some(NOT_RUNNING), "{output}");

    fleet.restart_agent("a");
    let status = agent_status::wait_for(&dir, RECONNECT, "connected again", |status| status.connected);
    assert_eq!(status.pid, fleet.agent("a").proc().pid());
}

#[test]
fn agent_status_shows_the_data_store_in_its_own_directory_with_the_quota_given() {
    let sandbox = Sandbox::new("agent-data-quota");
    let fleet = Fleet::start_with(&sandbox, &[AgentSpec::new("a").args(&["--data-quota", "500MB"])]);
    let dir = fleet.agent_dir("a");
    let status = agent_status::wait_for(&dir, LIVENESS, "connected", |status| status.connected);
    assert_eq!((status.data_objects, status.data_bytes, status.data_quota), (0, 0, 500_000_000), "{status:?}");
    assert!(dir.join("objects").is_dir(), "the copies live in DATA_DIR/objects");
    let text = agent_status::run(&dir, false).unwrap();
    assert!(text.stdout.contains("data: 0 copies, 0 B of the 476.8 MiB quota (0%)"), "{text}");
}
