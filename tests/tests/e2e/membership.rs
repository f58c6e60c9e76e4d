//! Joining and the three ways an agent goes away: crash, goodbye, stall.

use std::time::Duration;

use ringwatch_tests::{EXIT_DEADLINE, LIVENESS, NodeState, Sandbox};

use crate::Cluster;

use NodeState::{Alive, Failed, Left};

#[test]
fn three_agents_join_and_a_kill_9_is_failed_while_the_others_stay_alive() {
    let sandbox = Sandbox::new("kill9");
    let mut cluster = Cluster::start(&sandbox, &["a", "b", "c"]);

    let exit = cluster.agent("b").kill9();
    sandbox.step(format!("b killed ({exit})"));
    let status = cluster.console.wait_for_states(&[("b", Failed), ("a", Alive), ("c", Alive)]);
    sandbox.step(format!("detected: {status}"));
}

#[test]
fn sigterm_says_goodbye_node_left_and_the_agent_exits_0() {
    let sandbox = Sandbox::new("sigterm");
    let mut cluster = Cluster::start(&sandbox, &["a", "b"]);

    let agent = cluster.agent("a");
    agent.term();
    let exit = agent.wait_exit(EXIT_DEADLINE);
    assert!(exit.success(), "a graceful stop exits 0, got {exit}\n{}", agent.log_tail());
    sandbox.step("a exited 0");

    // A goodbye is `left` at once: no failure on the way there.
    let mut seen_failed = None;
    let status = cluster.console.wait_for("a=left, b=alive", |status| {
        if status.is("a", &Failed) {
            seen_failed = Some(status.to_string());
        }
        status.all(&[("a", Left), ("b", Alive)])
    });
    sandbox.step(format!("left: {status}"));
    assert_eq!(seen_failed, None, "a said goodbye but was shown failed");
}

#[test]
fn sigstop_is_failed_and_sigcont_brings_it_back_alive() {
    let sandbox = Sandbox::new("sigstop");
    let mut cluster = Cluster::start(&sandbox, &["a", "b"]);

    cluster.agent("a").stop();
    sandbox.step("a stopped");
    let status = cluster.console.wait_for_states(&[("a", Failed), ("b", Alive)]);
    sandbox.step(format!("detected: {status}"));

    cluster.agent("a").cont();
    sandbox.step("a continued");
    // After a long stall the agent may find its connection timed out and
    // reconnect with its stored credentials (with backoff): more slack.
    let status = cluster.console.wait_for_within(LIVENESS + Duration::from_secs(10), "a=alive, b=alive", |status| {
        status.all(&[("a", Alive), ("b", Alive)])
    });
    sandbox.step(format!("back: {status}"));
    assert!(
        cluster.agent("a").try_exit().is_none(),
        "a resumed process must keep running\n{}",
        cluster.agent("a").log_tail()
    );
}

/// The console distrusts itself first: when its own process was frozen, the
/// silence of that gap convicts nobody.
#[test]
fn a_frozen_console_convicts_nobody_for_its_own_gap() {
    let sandbox = Sandbox::new("console-pause");
    let mut cluster = Cluster::start(&sandbox, &["a", "b"]);

    cluster.console.proc().signal(ringwatch_tests::Signal::Stop);
    sandbox.step("console stopped");
    // The pause itself is the subject: 3 s is twice the silence that fails a
    // node, well under the connections' 10 s idle timeout.
    std::thread::sleep(Duration::from_secs(3));
    cluster.console.proc().signal(ringwatch_tests::Signal::Cont);
    sandbox.step("console continued");

    cluster.console.hold(Duration::from_secs(3), "a and b never failed", |status| {
        for name in ["a", "b"] {
            if status.node(name).is_some_and(|node| node.state == Failed) {
                return Err(format!("{name} was convicted for the console's own pause"));
            }
        }
        Ok(())
    });
    let log = cluster.console.log();
    assert!(log.contains("the console itself was paused"), "the event log says why nobody failed");
    assert!(!log.contains("→ failed"), "no node failed:\n{}", cluster.console.log_tail());
}
