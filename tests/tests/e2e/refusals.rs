//! Agents the console must turn away — and, each time, keep serving the
//! others: a healthy agent stays alive and `status` keeps working.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringwatch_shared::protocol::PROTOCOL_VERSION;
use ringwatch_tests::agent::mentions_any;
use ringwatch_tests::{Agent, Console, EXIT_DEADLINE, NodeState, Sandbox, console, poll};

use crate::{Cluster, start_agent};

/// After a refusal: the console still runs and answers `status`, every name
/// in `healthy` is alive, and `refused` is not shown alive.
fn assert_still_serving(sandbox: &Sandbox, cluster: &mut Cluster, healthy: &[&str], refused: &str) {
    assert!(cluster.console.is_running(), "the console died after refusing {refused}\n{}", cluster.console.log_tail());
    let expected: Vec<(&str, NodeState)> = healthy.iter().map(|name| (*name, NodeState::Alive)).collect();
    let status = cluster.console.wait_for_states(&expected);
    sandbox.step(format!("still serving: {status}"));
    if !healthy.contains(&refused) {
        assert!(!status.is(refused, &NodeState::Alive), "refused agent {refused} is shown alive: {status}");
    }
}

#[test]
fn a_token_of_another_cluster_is_refused() {
    let sandbox = Sandbox::new("foreign-token");
    let mut cluster = Cluster::start(&sandbox, &["healthy"]);
    // join-token initialises a data dir of its own: another cluster, whose
    // console does not even need to run.
    let foreign = console::join_token(&sandbox.dir("other-console"), None);
    assert_ne!(foreign, cluster.token, "two clusters gave the same token");

    let mut intruder = start_agent(&sandbox, &cluster.console, &foreign, "intruder", &[]);
    let exit = intruder.wait_refused_exit();
    sandbox.step(format!("intruder exited ({exit})"));
    // The token pins the other cluster's CA, so the agent should notice it
    // is talking to the wrong console (or the console rejects the token).
    intruder.assert_log_mentions(&[
        "another cluster",
        "cluster ca",
        "ca hash",
        "pin",
        "fingerprint",
        "certificate",
        "token",
        "trust",
    ]);
    assert_still_serving(&sandbox, &mut cluster, &["healthy"], "intruder");
}

#[test]
fn an_expired_token_is_refused() {
    let sandbox = Sandbox::new("expired-token");
    let mut cluster = Cluster::start(&sandbox, &["healthy"]);
    let token = cluster.console.join_token_ttl("1s");
    // Expiry is wall-clock by nature: the only time wait in the suite. The
    // token holds whole Unix seconds, so wait until the clock is 3 s past the
    // second it was made in (2–3 s): expired however the 1 s TTL was rounded.
    let made = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    poll::until_wall_clock(UNIX_EPOCH + Duration::from_secs(made + 3));
    sandbox.step("token expired");

    let mut late = start_agent(&sandbox, &cluster.console, &token, "late", &[]);
    let exit = late.wait_refused_exit();
    sandbox.step(format!("late exited ({exit})"));
    late.assert_log_mentions(&["expired"]);
    assert_still_serving(&sandbox, &mut cluster, &["healthy"], "late");
}

/// Whether a log shows a TLS-level refusal of our client certificate.
fn mentions_certificate_refusal(log: &str) -> bool {
    const SPECIFIC: &[&str] = &[
        "handshake",
        "unknown ca",
        "unknownca",
        "bad certificate",
        "badcertificate",
        "certificate required",
        "certificaterequired",
        "unknown issuer",
        "unknownissuer",
        "crypto",
    ];
    const TOPIC: &[&str] = &["certificate", "tls", "credential"];
    const PROBLEM: &[&str] = &["error", "fail", "refus", "reject", "denied", "invalid", "unknown"];
    log.lines().any(|line| mentions_any(line, SPECIFIC) || (mentions_any(line, TOPIC) && mentions_any(line, PROBLEM)))
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_at_the_handshake() {
    let sandbox = Sandbox::new("foreign-cert");
    let mut cluster = Cluster::start(&sandbox, &["healthy"]);

    // Agent x joins console B and stores B's credentials.
    let x_dir = sandbox.dir("agent-x");
    {
        let mut other = Console::start(&sandbox.dir("other-console"));
        let token = other.join_token();
        let mut x = Agent::start(other.addr(), &token, "x", &x_dir, &[]);
        other.wait_for_states(&[("x", NodeState::Alive)]);
        x.term();
        let exit = x.wait_exit(EXIT_DEADLINE);
        assert!(exit.success(), "x should stop cleanly: {exit}\n{}", x.log_tail());
        sandbox.step("x joined console B and stopped");
    }
    for file in ["ca.crt", "agent.crt", "agent.key"] {
        assert!(
            x_dir.join(file).is_file(),
            "after joining, the agent data dir should hold {file}: {}",
            x_dir.display()
        );
    }

    // x now trusts console A but still presents B's certificate.
    let a_ca = cluster.console.data_dir().join("ca.crt");
    assert!(a_ca.is_file(), "console A has no {}", a_ca.display());
    fs::copy(&a_ca, x_dir.join("ca.crt")).expect("copy A's ca.crt over x's");

    let mut x = Agent::start_stored(cluster.console.addr(), "x", &x_dir, &[]);
    // Refused at the handshake: x may give up or keep retrying; either way
    // its log must say why.
    let mentioned = x.wait_for_log(EXIT_DEADLINE, "a certificate/handshake refusal", mentions_certificate_refusal);
    let exit = x.try_exit();
    sandbox.step(format!("x refused ({})", exit.map_or_else(|| "still running".to_owned(), |e| e.to_string())));
    assert!(
        mentioned,
        "x exited ({}) without a certificate/handshake message\n{}",
        exit.map_or_else(|| "still running".to_owned(), |e| e.to_string()),
        x.log_tail()
    );
    if let Some(exit) = exit {
        assert!(!exit.success(), "a refused agent must not exit 0\n{}", x.log_tail());
    }
    assert_still_serving(&sandbox, &mut cluster, &["healthy"], "x");
}

#[test]
fn a_second_agent_claiming_a_connected_name_is_refused() {
    let sandbox = Sandbox::new("name-taken");
    let mut cluster = Cluster::start(&sandbox, &["a", "healthy"]);

    // Its own fresh data dir means its own key: not the connected "a".
    let mut twin = Agent::start(cluster.console.addr(), &cluster.token, "a", &sandbox.dir("agent-a-twin"), &[]);
    let exit = twin.wait_refused_exit();
    sandbox.step(format!("twin exited ({exit})"));
    twin.assert_log_mentions(&["belongs to another agent"]);
    assert!(
        cluster.agent("a").try_exit().is_none(),
        "the original a must keep running\n{}",
        cluster.agent("a").log_tail()
    );
    assert_still_serving(&sandbox, &mut cluster, &["a", "healthy"], "a");
}

/// Whether a line (or up to three consecutive lines, for an error chain)
/// names both protocol versions: ours (999) and the console's (`console`).
fn names_both_versions(log: &str, console: u16) -> bool {
    let console = console.to_string();
    let console_v = format!("v{console}");
    let lines: Vec<&str> = log.lines().collect();
    (0..lines.len()).any(|start| {
        let window = lines[start..(start + 3).min(lines.len())].join(" ");
        // Loopback addresses would otherwise count as a "1".
        let window = window.replace("127.0.0.1", "");
        let has_one = window
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == console || word.eq_ignore_ascii_case(&console_v));
        window.contains("999") && has_one && mentions_any(&window, &["version", "mismatch", "support", "incompatible"])
    })
}

#[test]
fn a_protocol_version_mismatch_is_refused_naming_both_versions() {
    let sandbox = Sandbox::new("version-mismatch");
    let mut cluster = Cluster::start(&sandbox, &["healthy"]);

    let mut future = start_agent(&sandbox, &cluster.console, &cluster.token, "future", &["--protocol-version", "999"]);
    let exit = future.wait_refused_exit();
    sandbox.step(format!("future exited ({exit})"));
    assert!(
        names_both_versions(&future.log(), PROTOCOL_VERSION),
        "the refusal should name both versions (999 and {PROTOCOL_VERSION})\n{}",
        future.log_tail()
    );
    assert_still_serving(&sandbox, &mut cluster, &["healthy"], "future");
}

#[test]
fn version_message_detection() {
    assert!(names_both_versions("ERROR refused: protocol version 999 is not supported (console speaks 1)", 1));
    assert!(names_both_versions(
        "Error: console refused the connection\n\nCaused by:\n    version mismatch: agent v999, console v2",
        2
    ));
    assert!(!names_both_versions("INFO connecting to 127.0.0.1:4000 with protocol version 999", 1));
    assert!(!names_both_versions("version mismatch: agent v999, console v3", 2));
}

#[test]
fn a_revoked_node_is_disconnected_and_refused_when_it_returns() {
    let sandbox = Sandbox::new("revoke");
    let mut cluster = Cluster::start(&sandbox, &["a", "b"]);
    let data_dir = cluster.console.data_dir().to_path_buf();
    let output = console::ringwatch(["revoke", "a", "--data-dir", data_dir.to_str().unwrap()]).unwrap();
    assert!(output.status.success(), "revoke failed: {output}");
    sandbox.step("a revoked");

    // The live connection is closed with the refusal: the agent stops trying.
    let agent = cluster.agent("a");
    agent.wait_refused_exit();
    agent.assert_log_mentions(&["revoked"]);
    sandbox.step("a exited, refused");

    // Started again with its (revoked) stored credentials, it is refused at
    // its first frame.
    let mut again = Agent::start_stored(cluster.console.addr(), "a", &sandbox.dir("agent-a"), &[]);
    again.wait_refused_exit();
    again.assert_log_mentions(&["revoked"]);
    assert_still_serving(&sandbox, &mut cluster, &["b"], "a");
}
