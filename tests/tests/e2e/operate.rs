//! Operating a console from elsewhere (README.md, "Operating ringwatch"):
//! operator credentials with roles, admin commands and the terminal UI
//! against a console found by address, revocation, and the event stream.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ringwatch_tests::console::ringwatch;
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::process::Output;
use ringwatch_tests::{Fleet, Proc, Sandbox, Status, TaskDef, Tmux, bins};

use crate::tui::row;

/// How long a follower may take to print what it is waiting for: a debug
/// build's detection of a killed agent, and then some.
const FOLLOW: Duration = Duration::from_secs(60);

/// `ringwatch credential issue NAME --role ROLE -o FILE` on the console's
/// host (its data dir); the file.
fn issue(fleet: &Fleet, name: &str, role: &str, dir: &Path) -> PathBuf {
    let file = dir.join(format!("{name}.credential"));
    let output = fleet.admin(&["credential", "issue", name, "--role", role, "-o", file.to_str().unwrap()]);
    assert!(output.status.success(), "credential issue failed: {output}");
    file
}

/// `ringwatch --credential FILE ARGS…`, run from `cwd` with a data dir that
/// holds nothing: only the credential can reach the console.
fn remote(credential: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut all: Vec<OsString> =
        vec!["--credential".into(), credential.into(), "--data-dir".into(), cwd.join("nothing-here").into()];
    all.extend(args.iter().map(OsString::from));
    ringwatch(all).unwrap_or_else(|err| panic!("ringwatch {args:?}: {err:#}"))
}

/// `status --json` through a credential.
fn remote_status(credential: &Path, cwd: &Path) -> Status {
    let output = remote(credential, cwd, &["status", "--json"]);
    assert!(output.status.success(), "status with a credential failed: {output}");
    Status::parse(&output.stdout).unwrap_or_else(|err| panic!("status --json does not parse ({err}): {output}"))
}

#[test]
fn a_viewer_reads_everything_and_every_action_is_refused() {
    let sandbox = Sandbox::new("viewer-refused");
    let fleet = Fleet::start(&sandbox, &["a", "b"]);
    let elsewhere = sandbox.dir("laptop");
    let viewer = issue(&fleet, "carol", "viewer", &elsewhere);

    let status = remote_status(&viewer, &elsewhere);
    assert_eq!(status.nodes.len(), 2, "the viewer sees both nodes: {}", status.raw);
    let tasks = fleet.new_file("tasks", "toml");
    ringwatch_tests::tasks::write_task_file(&tasks, &[TaskDef::new("web", ["sh", "-c", "sleep 600"])]);
    let what_if = remote(&viewer, &elsewhere, &["what-if", "a"]);
    assert!(what_if.status.success(), "what-if only reads; a viewer may: {what_if}");

    let actions: [&[&str]; 8] = [
        &["cordon", "a"],
        &["drain", "a"],
        &["restart", "web"],
        &["task", "apply", tasks.to_str().unwrap()],
        &["task", "rm", "web"],
        &["join-token"],
        &["revoke", "b"],
        &["credential", "issue", "mallory", "--role", "admin", "-o", "/dev/null/x"],
    ];
    for action in actions {
        let output = remote(&viewer, &elsewhere, action);
        assert!(!output.status.success(), "a viewer's {action:?} must be refused: {output}");
        assert!(output.stderr.contains("is a viewer"), "the refusal says why: {action:?}: {output}");
    }
    let after = fleet.console.status();
    assert!(after.nodes.iter().all(|node| !node.cordoned), "nothing changed: {}", after.raw);
    assert!(after.tasks.is_empty(), "no task was applied: {}", after.raw);
    let listed = fleet.admin(&["credential", "list", "--json"]);
    assert!(!listed.stdout.contains("mallory"), "no credential was issued: {listed}");
}

#[test]
fn an_admin_credential_from_another_directory_drains_a_node() {
    let sandbox = Sandbox::new("admin-drains");
    let mut fleet = Fleet::start(&sandbox, &["a", "b"]);
    let elsewhere = sandbox.dir("laptop");
    let admin = issue(&fleet, "dave", "admin", &elsewhere);
    let tasks = fleet.new_file("tasks", "toml");
    ringwatch_tests::tasks::write_task_file(&tasks, &[TaskDef::new("web", ["sh", "-c", "sleep 600"])]);

    let applied = remote(&admin, &elsewhere, &["task", "apply", tasks.to_str().unwrap()]);
    assert!(applied.status.success(), "an admin applies tasks: {applied}");
    let (placed, _) = fleet.wait_running("web", 1);
    let drained = placed["web/0"].clone();
    let drain = remote(&admin, &elsewhere, &["drain", &drained]);
    assert!(drain.status.success(), "an admin drains: {drain}");
    let status = fleet.console.wait_for(&format!("web moved off {drained}"), |status| {
        status.running_on_distinct_nodes("web", 1).is_some_and(|placed| placed.values().all(|node| *node != drained))
    });
    assert!(status.node(&drained).is_some_and(|node| node.cordoned), "a drained node is cordoned: {}", status.raw);
    let events = fleet.admin(&["events", "--json", "--node", &drained]);
    assert!(events.stdout.contains("\"kind\":\"operator\""), "the drain is an operator event: {events}");
}

#[test]
fn a_revoked_credential_is_refused_at_once_on_its_open_connection_and_after_a_restart() {
    let sandbox = Sandbox::new("credential-revoked");
    let mut fleet = Fleet::start(&sandbox, &["a"]);
    let elsewhere = sandbox.dir("laptop");
    let viewer = issue(&fleet, "erin", "viewer", &elsewhere);
    let mut follower = follow_events(&sandbox, &viewer, "revoked-follower");
    follower.wait_for_log(FOLLOW, "the follower printing the log", |log| log.contains("\"kind\":\"credential\""));

    let revoked = fleet.admin(&["credential", "revoke", "erin"]);
    assert!(revoked.status.success(), "revoke: {revoked}");
    let exit = follower.wait_exit(FOLLOW);
    assert!(!exit.success(), "the follower's stream ends with the revocation: {}", follower.log_tail());
    assert!(follower.log().contains("was revoked"), "the follower is told why: {}", follower.log_tail());

    let refused = remote(&viewer, &elsewhere, &["status"]);
    assert!(!refused.status.success() && refused.stderr.contains("was revoked"), "{refused}");
    fleet.restart_console();
    let still = remote(&viewer, &elsewhere, &["status"]);
    assert!(!still.status.success() && still.stderr.contains("was revoked"), "a restart forgets nothing: {still}");
    let listed = fleet.admin(&["credential", "list"]);
    assert!(listed.stdout.lines().any(|line| line.contains("erin") && line.contains("revoked")), "{listed}");
}

#[test]
fn events_follow_json_prints_the_failed_event_of_a_killed_agent() {
    let sandbox = Sandbox::new("events-follow");
    let mut fleet = Fleet::start(&sandbox, &["a", "b"]);
    let elsewhere = sandbox.dir("laptop");
    let viewer = issue(&fleet, "frank", "viewer", &elsewhere);
    let mut follower = follow_events(&sandbox, &viewer, "failed-follower");
    follower.wait_for_log(FOLLOW, "the backlog", |log| log.contains("\"kind\":\"credential\""));

    fleet.kill_host("b");
    let failed = poll::until(FOLLOW, Duration::from_millis(100), || {
        let log = follower.log();
        let found = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|event| event["kind"] == "node-state" && event["node"] == "b" && event["to"] == "failed");
        match found {
            Some(event) => Step::Done(event),
            None => Step::Pending(ringwatch_tests::process::tail(&log, 10)),
        }
    })
    .unwrap_or_else(|failure| panic!("no failed event for b: {failure}"));
    for field in ["time", "node", "task", "kind", "from", "to", "message"] {
        assert!(failed.get(field).is_some(), "every event line has \"{field}\": {failed}");
    }
    assert!(failed["time"].as_str().is_some_and(|time| time.ends_with('Z')), "RFC 3339 UTC: {failed}");
}

#[test]
fn two_attached_uis_stay_live_refuse_a_viewers_actions_carry_out_an_admins_and_reconnect() {
    if !Tmux::available() {
        eprintln!("skipped: tmux is not installed (the TUI end-to-end test needs it)");
        return;
    }
    let sandbox = Sandbox::new("attach-viewer");
    let mut fleet = Fleet::start(&sandbox, &["a", "b"]);
    let elsewhere = sandbox.dir("laptop");
    let viewer = issue(&fleet, "grace", "viewer", &elsewhere);
    let admin = issue(&fleet, "heidi", "admin", &elsewhere);
    let attach = |name: &str, credential: &Path| {
        let command = format!(
            "cd {}; {} attach --credential {}; echo RINGWATCH-EXITED $?; sleep 60",
            elsewhere.display(),
            bins::ringwatch().display(),
            credential.display()
        );
        Tmux::start(name, 160, 48, &command)
    };
    let both_alive = |screen: &str| {
        row(screen, "a").is_some_and(|line| line.contains("alive"))
            && row(screen, "b").is_some_and(|line| line.contains("alive"))
    };
    let tmux = attach("attach-viewer", &viewer);
    let operator = attach("attach-admin", &admin);
    tmux.wait_for("both nodes alive, marked read-only", |screen| {
        (both_alive(screen) && screen.contains("read-only")).then_some(())
    });
    operator.wait_for("both nodes alive on the admin's screen", |screen| {
        (both_alive(screen) && !screen.contains("read-only")).then_some(())
    });
    sandbox.step("two UIs attached");

    tmux.keys("c");
    tmux.wait_for("the cordon refused", |screen| screen.contains("viewer credential").then_some(()));
    assert!(fleet.console.status().nodes.iter().all(|node| !node.cordoned), "nothing was cordoned");
    // The admin's UI acts: the plan, then `y`.
    operator.keys("c");
    operator.wait_for("the cordon's plan", |screen| screen.contains("cordon").then_some(()));
    operator.keys("y");
    fleet
        .console
        .wait_for("a node cordoned from the admin's UI", |status| status.nodes.iter().any(|node| node.cordoned));
    sandbox.step("cordoned from the admin's UI");

    fleet.kill_host("b");
    for screen in [&tmux, &operator] {
        screen.wait_for("b failed, pushed live", |screen| {
            row(screen, "b").is_some_and(|line| line.contains("failed")).then_some(())
        });
    }
    sandbox.step("the failure showed on both");

    // The console dies: said loudly. It comes back: the UI reconnects by
    // itself and is live again.
    fleet.restart_console_after(|| {
        tmux.wait_for("the lost link said loudly", |screen| screen.contains("NOT LIVE").then_some(()));
    });
    tmux.wait_for("live again after the console's restart", |screen| {
        (!screen.contains("NOT LIVE") && row(screen, "a").is_some()).then_some(())
    });
    sandbox.step("reconnected");
    tmux.keys("q");
    let exit = tmux.wait_for("the UI's exit", |screen| {
        screen.lines().find_map(|line| line.strip_prefix("RINGWATCH-EXITED ").map(|code| code.trim().to_string()))
    });
    assert_eq!(exit, "0");
}

/// `ringwatch events --follow --json` with `credential`, running.
fn follow_events(sandbox: &Sandbox, credential: &Path, label: &str) -> Proc {
    let mut command = Command::new(bins::ringwatch());
    command.arg("--credential").arg(credential).args(["events", "--follow", "--json"]);
    Proc::spawn(label, command, &sandbox.path().join(format!("{label}.log")))
}

/// An admin connection serves each request on a stream of its own: a watch
/// left open does not hold up the next request on the same connection. It
/// did while a connection could have one stream open at a time: the next
/// request waited for the watch to end.
#[test]
fn regression_a_watch_left_open_does_not_hold_up_the_next_request_on_its_connection() {
    use ringwatch::control::admin::{AdminClient, Target};
    use ringwatch_shared::protocol::{AdminRequest, AdminResponse};

    let sandbox = Sandbox::new("admin-streams");
    let fleet = Fleet::start(&sandbox, &["a"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = AdminClient::connect(&Target::Local(fleet.data_dir().to_path_buf())).await.unwrap();
        let mut watch = client.open(&AdminRequest::Watch).await.unwrap();
        let first = watch.next().await.unwrap();
        assert!(matches!(first, Some(AdminResponse::Snapshot(_))), "the watch is served: {first:?}");
        for _ in 0..3 {
            match client.request(&AdminRequest::Status).await {
                Ok(AdminResponse::Status(status)) => assert_eq!(status.nodes.len(), 1),
                other => panic!("a status beside an open watch: {other:?}"),
            }
        }
        let next = watch.next().await.unwrap();
        assert!(matches!(next, Some(AdminResponse::Snapshot(_))), "the watch goes on: {next:?}");
    });
}
