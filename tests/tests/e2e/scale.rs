//! The at-scale bench's pieces at small scale: the swarm's bounded start-up
//! and the `bare_quinn` floor server keeping joined agents connected.

use ringwatch_tests::scale::{BareQuinn, Swarm};
use ringwatch_tests::{Console, LIVENESS, NodeState, Sandbox};

const AGENTS: usize = 12;

fn all_alive(console: &mut Console, agents: usize) {
    console.wait_for_within(LIVENESS * 2, &format!("{agents} swarm agents alive"), |status| {
        status.nodes.iter().filter(|node| node.state == NodeState::Alive).count() == agents
    });
}

/// A start-up slot is given back when the console welcomes the agent: with
/// fewer slots than agents every agent still comes up.
#[test]
fn a_swarm_with_fewer_start_up_slots_than_agents_brings_them_all_up() {
    let sandbox = Sandbox::new("swarm-slots");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let mut swarm = Swarm::start(
        console.addr(),
        Some(&token),
        AGENTS,
        &sandbox.dir("swarm"),
        &sandbox.path().join("swarm.log"),
        &["--concurrency", "2"],
    );
    all_alive(&mut console, AGENTS);
    sandbox.step("every swarm agent alive");
    let said = swarm.proc().wait_for_log(LIVENESS, "the end of the start-up", |log| {
        log.contains("swarm started: every agent was welcomed once")
    });
    assert!(said, "the swarm exited during its start-up\n{}", swarm.proc().log_tail());
}

/// `bare_quinn` takes agents joined to a console on that console's PKI, and
/// its beats keep them connected past the agents' 3 s silence limit.
#[test]
fn bare_quinn_keeps_a_swarm_joined_elsewhere_connected() {
    let sandbox = Sandbox::new("bare-quinn");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let mut swarm = Swarm::start(
        console.addr(),
        Some(&token),
        AGENTS,
        &sandbox.dir("swarm"),
        &sandbox.path().join("swarm.log"),
        &[],
    );
    all_alive(&mut console, AGENTS);
    swarm.proc().kill();
    console.kill();
    sandbox.step("swarm joined; swarm and console killed");

    let mut bare = BareQuinn::start(&sandbox.dir("console"), &sandbox.dir("bare-quinn").join("log"));
    let mut swarm =
        Swarm::start(bare.addr(), None, AGENTS, &sandbox.dir("swarm"), &sandbox.path().join("swarm.log"), &[]);
    let report = bare.wait_for(LIVENESS, "every agent connected", |report| report.connections == AGENTS as u64);
    sandbox.step(format!("connected: {report}"));
    // 12 agents send 2 heartbeats a second each: 24 × 6 datagrams take 6 s,
    // longer than the 4 s after which an agent without beats reconnects.
    let target = report.datagrams + AGENTS as u64 * 2 * 6;
    let report = bare.wait_for(LIVENESS, "6 s of heartbeats", |report| report.datagrams >= target);
    sandbox.step(format!("after 6 s of heartbeats: {report}"));
    assert_eq!(report.connections, AGENTS as u64, "{report}\n{}", swarm.proc().log_tail());
    assert!(report.stream_bytes > 0, "metrics frames were read: {report}");
    assert_eq!(report.handshakes_failed, 0, "{report}");
    let log = swarm.proc().log();
    assert!(!log.contains("silent"), "an agent found bare_quinn silent\n{}", swarm.proc().log_tail());
    assert!(
        log.matches("connected to the console").count() == AGENTS,
        "each agent connected exactly once\n{}",
        swarm.proc().log_tail()
    );
}
