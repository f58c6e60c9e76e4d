//! Consoles of one cluster sharing its PKI (`ringwatch pki export` on one
//! console host, `ringwatch pki import` on another): agents verify either
//! console through the CA they hold, and either console verifies the join
//! tokens of the other.

use ringwatch_tests::agent::mentions_any;
use ringwatch_tests::console::pki;
use ringwatch_tests::{Agent, Console, EXIT_DEADLINE, NodeState, Sandbox};

#[test]
fn an_agent_verifies_every_console_sharing_the_pki_and_tokens_verify_on_both() {
    let sandbox = Sandbox::new("shared-pki");
    let mut first = Console::start(&sandbox.dir("console-1"));
    let token = first.join_token();
    let agent_dir = sandbox.dir("agent-a");
    let mut a = Agent::start(first.addr(), &token, "a", &agent_dir, &[]);
    first.wait_for_states(&[("a", NodeState::Alive)]);
    a.term();
    let exit = a.wait_exit(EXIT_DEADLINE);
    assert!(exit.success(), "a should stop cleanly: {exit}\n{}", a.log_tail());
    sandbox.step("a joined the first console and stopped");

    // Exported while the first console runs; imported into a fresh data dir.
    let bundle = sandbox.path().join("cluster.pki");
    pki("export", &bundle, first.data_dir());
    let second_dir = sandbox.dir("console-2");
    pki("import", &bundle, &second_dir);
    assert_eq!(
        std::fs::read(second_dir.join("ca.crt")).unwrap(),
        std::fs::read(first.data_dir().join("ca.crt")).unwrap(),
        "the consoles share the CA"
    );
    let mut second = Console::start(&second_dir);
    sandbox.step(format!("second console up on {} with the shared CA", second.addr()));

    // a's stored credentials against the second console: a verifies the
    // console through its CA and is turned away by the console, whose store
    // has no record of a — not by TLS.
    let mut stray = Agent::start_stored(second.addr(), "a", &agent_dir, &[]);
    let exit = stray.wait_refused_exit();
    sandbox.step(format!("a refused by the second console ({exit})"));
    stray.assert_log_mentions(&["not issued by this console"]);
    let log = stray.log();
    assert!(
        !mentions_any(&log, &["unknownissuer", "unknown issuer", "invalid peer certificate", "badsignature"]),
        "a must verify the second console's certificate\n{}",
        stray.log_tail()
    );

    // A token of the second console: it admits an agent there, and the first
    // console verifies its signature (shared token key) but has no record of
    // its id.
    let second_token = second.join_token();
    let _b = Agent::start(second.addr(), &second_token, "b", &sandbox.dir("agent-b"), &[]);
    second.wait_for_states(&[("b", NodeState::Alive)]);
    sandbox.step("b joined the second console with its token");
    let mut c = Agent::start(first.addr(), &second_token, "c", &sandbox.dir("agent-c"), &[]);
    c.wait_refused_exit();
    c.assert_log_mentions(&["is not one this console issued"]);
    assert!(
        !mentions_any(&c.log(), &["does not verify", "another cluster"]),
        "the first console verifies the second's token\n{}",
        c.log_tail()
    );
}
