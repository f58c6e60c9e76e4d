//! Hostile input must not disturb the console: random datagrams on its UDP
//! port, and random bytes on an authenticated stream.

use std::time::Duration;

use ringwatch_tests::{NodeState, Sandbox, Status, send_random_datagrams};

use crate::{Cluster, start_agent};

/// How long to watch for damage after the hostile input: the detector
/// convicts within about 2 s, so a lost heartbeat stream would show.
const AFTERMATH: Duration = Duration::from_secs(3);

/// Every name is listed and neither failed nor left (suspect is tolerated:
/// a flood may delay a heartbeat or two).
fn none_failed(status: &Status, names: &[&str]) -> Result<(), String> {
    for name in names {
        match status.state_of(name) {
            Some(NodeState::Alive | NodeState::Suspect) => {}
            Some(state) => return Err(format!("{name} is {state}")),
            None => return Err(format!("{name} is not listed")),
        }
    }
    Ok(())
}

fn all_alive<'a>(names: &[&'a str]) -> Vec<(&'a str, NodeState)> {
    names.iter().map(|name| (*name, NodeState::Alive)).collect()
}

#[test]
fn ten_thousand_random_datagrams_leave_the_console_serving_and_agents_alive() {
    let sandbox = Sandbox::new("datagram-flood");
    let names = ["a", "b", "c"];
    let mut cluster = Cluster::start(&sandbox, &names);

    let bytes = send_random_datagrams(cluster.console.addr(), 10_000).expect("send the flood");
    sandbox.step(format!("sent 10000 datagrams ({bytes} bytes)"));

    cluster.console.hold(AFTERMATH, "no agent failed after the flood", |status| none_failed(status, &names));
    let status = cluster.console.wait_for_states(&all_alive(&names));
    sandbox.step(format!("after the flood: {status}"));
    assert!(cluster.console.is_running(), "the console died\n{}", cluster.console.log_tail());
    for name in names {
        let agent = cluster.agent(name);
        assert!(agent.try_exit().is_none(), "agent {name} exited\n{}", agent.log_tail());
    }
}

#[test]
fn random_bytes_on_an_authenticated_stream_leave_the_others_alive() {
    let sandbox = Sandbox::new("stream-garbage");
    let names = ["a", "b"];
    let mut cluster = Cluster::start(&sandbox, &names);

    // A real, authenticated agent that sends random bytes on a new stream
    // right after its hello.
    let mut garbage = start_agent(&sandbox, &cluster.console, &cluster.token, "garbage", &["--send-garbage", "100000"]);
    // Once the console lists it, its hello is through and the garbage is on
    // its way (or it gave up, which is also fine).
    let status = cluster.console.wait_for("the garbage agent listed", |status| {
        status.node("garbage").is_some() || garbage.try_exit().is_some()
    });
    sandbox.step(format!("garbage agent seen: {status}"));

    cluster.console.hold(AFTERMATH, "the normal agents stay alive", |status| none_failed(status, &names));
    let status = cluster.console.wait_for_states(&all_alive(&names));
    sandbox.step(format!("after the garbage: {status}"));
    assert!(cluster.console.is_running(), "the console died\n{}", cluster.console.log_tail());
}
