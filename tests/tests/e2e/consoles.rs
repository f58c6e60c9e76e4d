//! An agent given several consoles (`--console A,B`): it moves past one
//! where nothing answers, follows a standby's "the leader is X", and moves
//! past a standby that knows no leader (README.md, "Agent options"). Real
//! standbys do not exist yet: [`FakeStandby`] answers every hello and join
//! with `NotLeader` on the console's own PKI.

use std::net::UdpSocket;

use ringwatch_tests::{Agent, Console, EXIT_DEADLINE, FakeStandby, NodeState, Sandbox};

use NodeState::{Alive, Left};

/// Stops `agent` with SIGTERM and waits until the console shows it `left`,
/// so that the next `alive` comes from a new connection.
fn say_goodbye(console: &mut Console, agent: &mut Agent) {
    agent.term();
    let exit = agent.wait_exit(EXIT_DEADLINE);
    assert!(exit.success(), "a graceful stop exits 0, got {exit}\n{}", agent.log_tail());
    console.wait_for_states(&[(agent.name(), Left)]);
}

#[test]
fn an_agent_listing_a_dead_console_first_joins_and_stays_through_the_live_one() {
    let sandbox = Sandbox::new("consoles_dead_first");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    // Bound and never read: a console address where nothing answers.
    let dead_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = dead_socket.local_addr().unwrap();
    let live = console.addr();
    let consoles = format!("{dead},{live}");
    let dir = sandbox.dir("agent-multi");

    let mut agent = Agent::start(&consoles, &token, "multi", &dir, &[]);
    let status = console.wait_for_states(&[("multi", Alive)]);
    sandbox.step(format!("joined through {live} after {dead}: {status}"));
    agent.assert_log_mentions(&[&format!("no connection to the console at {dead}")]);
    agent.assert_log_mentions(&[&format!("connected to the console at {live}")]);

    // With stored credentials (a hello, not a join) the same list works,
    // and the agent's session lives on: it says goodbye to the live console.
    say_goodbye(&mut console, &mut agent);
    let mut agent = Agent::start_stored(&consoles, "multi", &dir, &[]);
    let status = console.wait_for_states(&[("multi", Alive)]);
    sandbox.step(format!("back through {live}: {status}"));
    agent.assert_log_mentions(&[&format!("connected to the console at {live}")]);
    say_goodbye(&mut console, &mut agent);
}

#[test]
fn an_agent_given_only_a_standby_follows_it_to_the_leader() {
    let sandbox = Sandbox::new("consoles_follow_leader");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let live = console.addr();
    let standby = FakeStandby::start(console.data_dir(), Some(live)).unwrap();
    let dir = sandbox.dir("agent-follower");

    // A join is redirected like a hello.
    let mut agent = Agent::start(standby.addr(), &token, "follower", &dir, &[]);
    let status = console.wait_for_states(&[("follower", Alive)]);
    sandbox.step(format!("joined through the standby at {}: {status}", standby.addr()));
    assert!(standby.answered() >= 1, "{standby:?}");
    agent.assert_log_mentions(&[&format!("the console at {} is a standby; the leader is {live}", standby.addr())]);
    agent.assert_log_mentions(&[&format!("connected to the console at {live}")]);

    say_goodbye(&mut console, &mut agent);
    let answered = standby.answered();
    let agent = Agent::start_stored(standby.addr(), "follower", &dir, &[]);
    let status = console.wait_for_states(&[("follower", Alive)]);
    sandbox.step(format!("hello redirected too: {status}"));
    assert!(standby.answered() > answered, "the hello went to the standby first: {standby:?}");
    agent.assert_log_mentions(&[&format!("connected to the console at {live}")]);
}

#[test]
fn a_standby_that_knows_no_leader_sends_the_agent_to_the_next_console() {
    let sandbox = Sandbox::new("consoles_no_leader");
    let mut console = Console::start(&sandbox.dir("console"));
    let token = console.join_token();
    let live = console.addr();
    let standby = FakeStandby::start(console.data_dir(), None).unwrap();

    let agent = Agent::start(format!("{},{live}", standby.addr()), &token, "next", &sandbox.dir("agent-next"), &[]);
    let status = console.wait_for_states(&[("next", Alive)]);
    sandbox.step(format!("joined through {live}: {status}"));
    assert!(standby.answered() >= 1, "{standby:?}");
    agent.assert_log_mentions(&[&format!("the console at {} is a standby and knows no leader yet", standby.addr())]);
}
