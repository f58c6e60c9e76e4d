//! Certificate lifetimes (README.md, "Certificates"): an agent certificate
//! issued for 30 s is renewed over the live link — the agent's credentials
//! change on disk, the console records the new certificate, the connection
//! and its heartbeats go on — and the agent's next connection uses it; an
//! expired certificate is refused with what to do; a revocation survives a
//! console restart.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use ringwatch_shared::token::{fingerprint, to_hex};
use ringwatch_tests::NodeState::{Alive, Left};
use ringwatch_tests::poll::{self, Step};
use ringwatch_tests::{Agent, Console, Fleet, LIVENESS, NodeState, Sandbox, tasks};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The shortest agent certificate lifetime the console accepts.
const SHORT_TTL: &str = "30s";
/// A 30 s certificate is renewed about 19 s after it was issued: a liveness
/// bound with a wide margin for a busy machine.
const RENEWAL: Duration = Duration::from_secs(90);

/// SHA-256 (hex) of the agent certificate stored in `agent_dir`, and the
/// certificate's and key's bytes.
#[track_caller]
fn stored_credentials(agent_dir: &Path) -> (String, Vec<u8>, Vec<u8>) {
    let cert = std::fs::read(agent_dir.join("agent.crt")).unwrap_or_else(|err| panic!("agent.crt: {err}"));
    let key = std::fs::read(agent_dir.join("agent.key")).unwrap_or_else(|err| panic!("agent.key: {err}"));
    let der = CertificateDer::from_pem_slice(&cert).unwrap_or_else(|err| panic!("agent.crt is no PEM: {err}"));
    (to_hex(&fingerprint(&der)), cert, key)
}

#[test]
fn an_agent_certificate_renews_over_the_live_link_and_the_next_connection_uses_it() {
    let sandbox = Sandbox::new("cert-renewal");
    let mut console = Console::start_with(&sandbox.dir("console"), &["--agent-cert-ttl", SHORT_TTL]);
    let token = console.join_token();
    let agent_dir = sandbox.dir("agent-a");
    let mut agent = Agent::start(console.addr(), &token, "a", &agent_dir, &[]);
    let status = console.wait_for_states(&[("a", Alive)]);
    let (first, first_cert, first_key) = stored_credentials(&agent_dir);
    let node = status.node("a").unwrap_or_else(|| panic!("no node a: {status}"));
    assert_eq!(node.cert_sha256.as_deref(), Some(first.as_str()), "status names the joined certificate: {status}");
    sandbox.step(format!("a joined with certificate {first}"));

    // Every status seen until the console records the renewal shows a alive:
    // never suspect, never failed.
    let renewed = poll::until(RENEWAL, Duration::from_millis(200), || {
        let status = match console.status_json() {
            Ok(status) => status,
            Err(err) => return Step::Pending(format!("status failed: {err:#}")),
        };
        let Some(node) = status.node("a") else { return Step::Abort(format!("node a vanished: {status}")) };
        if node.state != Alive {
            return Step::Abort(format!("a is {:?} during the renewal: {status}", node.state));
        }
        match &node.cert_sha256 {
            Some(sha) if *sha != first => Step::Done(sha.clone()),
            other => Step::Pending(format!("a's certificate is still {other:?}")),
        }
    })
    .unwrap_or_else(|failure| panic!("no renewal: {failure}\n{}\n{}", console.log_tail(), agent.log_tail()));
    sandbox.step(format!("the console recorded the renewed certificate {renewed}"));

    let stored = agent.wait_for_log(LIVENESS, "the agent to store its renewed certificate", |log| {
        log.contains("certificate renewed")
    });
    assert!(stored, "the agent should store the renewal\n{}", agent.log_tail());
    let (second, second_cert, second_key) = stored_credentials(&agent_dir);
    assert_ne!(second_cert, first_cert, "the credentials file changed");
    assert_ne!(second_key, first_key, "the renewal made a new key");
    assert!(second != first, "the stored certificate is a new one");
    assert!(!agent_dir.join("agent.next.key").exists(), "no renewal is left half done");

    // One connection all along, and not one heartbeat missed on it.
    assert_eq!(agent.log().matches("connected to the console at").count(), 1, "{}", agent.log_tail());
    assert_eq!(console.log().matches("agent connected").count(), 1, "{}", console.log_tail());
    for transition in ["alive → suspect", "alive → failed", "alive → unknown"] {
        assert!(!console.log().contains(transition), "a went {transition} during the renewal\n{}", console.log_tail());
    }
    let status = console.status();
    let node = status.node("a").unwrap_or_else(|| panic!("no node a: {status}"));
    assert_eq!((node.state.clone(), node.heartbeats_lost), (Alive, Some(0)), "{status}");
    let expires = node.cert_expires_unix.unwrap_or_else(|| panic!("no certificate expiry: {status}"));
    let now = UNIX_EPOCH.elapsed().map_or(0, |since| since.as_secs());
    assert!(expires > now && expires <= now + 30, "the renewed certificate lives 30 s: {expires} vs {now}");
    assert!(status.console.as_ref().and_then(|console| console.ca_expires_unix).is_some_and(|ca| ca > now));

    // The next connection presents the renewed certificate.
    agent.kill9();
    let (current, _, _) = stored_credentials(&agent_dir);
    let mut agent = Agent::start_stored(console.addr(), "a", &agent_dir, &[]);
    let connected = agent
        .wait_for_log(LIVENESS, "the restarted agent to connect", |log| log.contains("connected to the console at"));
    assert!(connected, "the restarted agent connects with its renewed certificate\n{}", agent.log_tail());
    let status = console.wait_for_states(&[("a", Alive)]);
    let node = status.node("a").unwrap_or_else(|| panic!("no node a: {status}"));
    let (now_stored, _, _) = stored_credentials(&agent_dir);
    assert!(
        [current.as_str(), now_stored.as_str()].contains(&node.cert_sha256.as_deref().unwrap_or_default()),
        "the console knows the certificate the agent holds: {status}"
    );
    sandbox.step(format!("a reconnected with its renewed certificate: {status}"));
}

#[test]
fn a_certificate_outliving_a_shortened_lifetime_is_renewed_at_once() {
    let sandbox = Sandbox::new("cert-shortened");
    let console_dir = sandbox.dir("console");
    let mut console = Console::start(&console_dir);
    let token = console.join_token();
    let agent_dir = sandbox.dir("agent-a");
    let mut agent = Agent::start(console.addr(), &token, "a", &agent_dir, &[]);
    let status = console.wait_for_states(&[("a", Alive)]);
    let (first, _, _) = stored_credentials(&agent_dir);
    let thirty_days = status.node("a").and_then(|node| node.cert_expires_unix).unwrap_or_else(|| panic!("{status}"));
    sandbox.step("a joined with a 30-day certificate");

    let addr = console.addr();
    console.kill();
    let mut console = Console::start_listening(&console_dir, &addr.to_string(), &["--agent-cert-ttl", SHORT_TTL]);
    sandbox.step("the console restarted with --agent-cert-ttl 30s");
    let status = console.wait_for_within(RENEWAL, "a renewed under the shorter lifetime", |status| {
        status.node("a").is_some_and(|node| {
            node.state == Alive && node.cert_expires_unix.is_some_and(|expires| expires + 60 < thirty_days)
        })
    });
    let stored = agent.wait_for_log(LIVENESS, "the agent to store its renewed certificate", |log| {
        log.contains("certificate renewed")
    });
    assert!(stored, "{}", agent.log_tail());
    agent.assert_log_mentions(&["the console asks for a renewal now"]);
    assert_ne!(stored_credentials(&agent_dir).0, first, "{status}");
}

#[test]
fn regression_an_expired_agent_certificate_is_refused_saying_to_join_again() {
    let sandbox = Sandbox::new("cert-expired");
    let mut console = Console::start_with(&sandbox.dir("console"), &["--agent-cert-ttl", SHORT_TTL]);
    let token = console.join_token();
    let agent_dir = sandbox.dir("agent-a");
    let mut agent = Agent::start(console.addr(), &token, "a", &agent_dir, &[]);
    let status = console.wait_for_states(&[("a", Alive)]);
    let expires = status.node("a").and_then(|node| node.cert_expires_unix).unwrap_or_else(|| panic!("{status}"));
    agent.kill9();
    sandbox.step("a joined and was killed before it could renew");

    // Wall-clock by nature: the certificate must have expired.
    poll::until_wall_clock(UNIX_EPOCH + Duration::from_secs(expires + 2));
    let mut agent = Agent::start_stored(console.addr(), "a", &agent_dir, &[]);
    agent.wait_refused_exit();
    agent.assert_log_mentions(&["expired"]);
    agent.assert_log_mentions(&["join again with a token"]);
    sandbox.step("the expired certificate was refused, saying what to do");

    // With a token it joins again under its name, with its key.
    let token = console.join_token();
    let mut agent = Agent::start(console.addr(), &token, "a", &agent_dir, &[]);
    console.wait_for_states(&[("a", Alive)]);
    assert!(agent.try_exit().is_none(), "{}", agent.log_tail());
}

#[test]
fn a_revoked_agent_stays_refused_after_a_console_restart() {
    let sandbox = Sandbox::new("revoke-restart");
    let mut fleet = Fleet::start(&sandbox, &["a", "b"]);
    let output = tasks::admin_ok(fleet.console.data_dir(), ["revoke", "a"]);
    sandbox.step(format!("revoke a: {}", output.stdout.trim()));
    fleet.agent("a").wait_refused_exit();

    fleet.restart_console();
    sandbox.step("console restarted");
    let mut again = Agent::start_stored(fleet.console.addr(), "a", &fleet.agent_dir("a"), &[]);
    again.wait_refused_exit();
    again.assert_log_mentions(&["revoked"]);
    let status = fleet.console.wait_for_states(&[("a", Left), ("b", NodeState::Alive)]);
    sandbox.step(format!("a is still refused after the restart: {status}"));
}
