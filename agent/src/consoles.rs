//! Which console to talk to: the `--console` list (addresses and DNS names,
//! resolved at each connection attempt) and the switching policy, a pure
//! state machine that, given how each attempt ended, says which console to
//! try next and how long to wait first (README.md, "Agent options").
//!
//! Several consoles share one store; one leads and the others stand by. A
//! standby answers an agent with `NotLeader`, naming the leader when it knows
//! one. The policy:
//!
//! - the console that last welcomed this agent (or granted its join) is
//!   tried first; then the others, round-robin through the resolved
//!   addresses, without waiting; a round that found no console ends in a
//!   capped, jittered backoff;
//! - a named leader is tried next, at once the first time; every further
//!   redirect before a welcome waits out the backoff, so standbys that point
//!   at each other (or at a leader that died) never make the agent loop
//!   faster than that; a leader that failed in this round is not followed
//!   again, and one tried in this round without failing (it may have been
//!   a standby then, and leads now) is followed once more at most: the
//!   round then goes on with the list;
//! - a standby that knows no leader costs a backoff, then the next console;
//! - a console that shuts down or goes silent is tried last in the next
//!   round.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use ringwatch_shared::backoff::Backoff;

/// How long one DNS name may take to resolve before the attempt moves on.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What is wrong with a `--console` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleAddrError {
    /// Nothing but commas and blanks.
    #[error("no console address given: pass --console HOST:PORT (several separated by commas, like \"a:7443,b:7443\")")]
    Empty,
    /// One entry is not `HOST:PORT`.
    #[error(
        "\"{entry}\" is not a console address: {problem} (expected HOST:PORT, like \"10.0.0.5:7443\", \"[fd00::5]:7443\" or \"console.example:7443\")"
    )]
    BadEntry {
        /// The entry as given.
        entry: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Why a console's DNS name gave no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The lookup failed.
    #[error("cannot resolve the console address \"{entry}\": {source}")]
    Lookup {
        /// The entry, `HOST:PORT`.
        entry: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The lookup succeeded with no address.
    #[error("the console address \"{entry}\" resolves to no address")]
    NoAddress {
        /// The entry, `HOST:PORT`.
        entry: String,
    },
    /// The lookup took too long.
    #[error("resolving the console address \"{entry}\" took longer than {}s", RESOLVE_TIMEOUT.as_secs())]
    TimedOut {
        /// The entry, `HOST:PORT`.
        entry: String,
    },
}

/// One console address: an IP address, or a DNS name resolved at each
/// connection attempt (it may name several consoles).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConsoleAddr {
    /// An IP address and port, used as is.
    Ip(SocketAddr),
    /// A DNS name and port.
    Name {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl ConsoleAddr {
    /// Every address this entry stands for now (a name is looked up; a name
    /// that does not resolve stands for none).
    ///
    /// # Errors
    /// When a DNS name does not resolve.
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, ResolveError> {
        let (host, port) = match self {
            Self::Ip(addr) => return Ok(vec![*addr]),
            Self::Name { host, port } => (host.as_str(), *port),
        };
        let entry = || self.to_string();
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() { Err(ResolveError::NoAddress { entry: entry() }) } else { Ok(addrs) }
            }
            Ok(Err(source)) => Err(ResolveError::Lookup { entry: entry(), source }),
            Err(_) => Err(ResolveError::TimedOut { entry: entry() }),
        }
    }
}

impl FromStr for ConsoleAddr {
    type Err = ConsoleAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let entry = text.trim();
        let bad = |problem| ConsoleAddrError::BadEntry { entry: entry.to_string(), problem };
        if let Ok(addr) = entry.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(bad("port 0 is not a port a console listens on"));
            }
            return Ok(Self::Ip(addr));
        }
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(bad("the port is missing"));
        };
        if host.contains(':') || host.starts_with('[') {
            return Err(bad("an IPv6 address goes in brackets, with the port after them"));
        }
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) {
            return Err(bad("a host name has only letters, digits, '-', '_' and '.'"));
        }
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port 0 is not a port a console listens on"));
        }
        Ok(Self::Name { host: host.to_string(), port })
    }
}

impl fmt::Display for ConsoleAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(addr) => write!(f, "{addr}"),
            Self::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// The consoles an agent may talk to, in the order given: never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consoles(Vec<ConsoleAddr>);

impl Consoles {
    /// Parses `--console` values, each a comma-separated list of `HOST:PORT`
    /// (the flag may be given several times). Blank entries are skipped; an
    /// entry given twice counts once.
    ///
    /// # Errors
    /// When an entry is not `HOST:PORT`, or no entry is given.
    pub fn parse_lists<S: AsRef<str>>(lists: impl IntoIterator<Item = S>) -> Result<Self, ConsoleAddrError> {
        let mut entries: Vec<ConsoleAddr> = Vec::new();
        for list in lists {
            for entry in list.as_ref().split(',').filter(|entry| !entry.trim().is_empty()) {
                let entry: ConsoleAddr = entry.parse()?;
                if !entries.contains(&entry) {
                    entries.push(entry);
                }
            }
        }
        if entries.is_empty() { Err(ConsoleAddrError::Empty) } else { Ok(Self(entries)) }
    }

    /// The entries, in the order given.
    pub fn entries(&self) -> &[ConsoleAddr] {
        &self.0
    }

    /// Every address the entries stand for now, in order, each once, and
    /// why each name that did not resolve did not.
    pub async fn resolve(&self) -> (Vec<SocketAddr>, Vec<ResolveError>) {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        let mut problems = Vec::new();
        for entry in &self.0 {
            match entry.resolve().await {
                Ok(resolved) => {
                    for addr in resolved {
                        if !addrs.contains(&addr) {
                            addrs.push(addr);
                        }
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        (addrs, problems)
    }
}

impl FromStr for Consoles {
    type Err = ConsoleAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse_lists([text])
    }
}

impl From<SocketAddr> for Consoles {
    fn from(addr: SocketAddr) -> Self {
        Self(vec![ConsoleAddr::Ip(addr)])
    }
}

impl fmt::Display for Consoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, entry) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{entry}")?;
        }
        Ok(())
    }
}

/// How an attempt on one console ended, as far as choosing the next goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No session: the console could not be reached, did not answer,
    /// refused for now, or closed.
    Failed,
    /// A standby answered, naming the leader when it knows one.
    NotLeader(Option<String>),
    /// The console granted our join: connect to it again, with the
    /// credentials.
    Joined,
    /// A session this console welcomed ended, after `lasted`; `move_on` when
    /// the console said it shuts down or went silent.
    Lost {
        /// How long the attempt lasted, connection included.
        lasted: Duration,
        /// Try the other consoles before this one.
        move_on: bool,
    },
}

/// The switching policy: pure, no clock and no I/O (time and randomness
/// are arguments), so every path is tested without a network.
#[derive(Debug)]
pub(crate) struct Policy {
    /// Delays between rounds and between redirects.
    backoff: Backoff,
    /// A welcomed session that lasted this long was healthy: the backoff
    /// starts over.
    healthy: Duration,
    /// The console that last welcomed us, or granted our join: tried first.
    preferred: Option<SocketAddr>,
    /// The addresses of this round, in the order they are tried: the
    /// preferred one, then the resolved list from where it stands.
    candidates: Vec<SocketAddr>,
    /// The addresses tried in this round.
    tried: Vec<SocketAddr>,
    /// Those of them that failed (no answer, refused, gone).
    failed: Vec<SocketAddr>,
    /// Those of them followed a second time, when a standby named them.
    refollowed: Vec<SocketAddr>,
    /// A leader a standby named, to try next.
    leader: Option<String>,
    /// Redirects followed since the last welcome: only the first is free.
    redirects: u32,
}

impl Policy {
    /// A policy whose backoff starts at `base` and never exceeds `cap`; a
    /// session that lasts `healthy` resets it.
    pub(crate) fn new(base: Duration, cap: Duration, healthy: Duration) -> Self {
        Self {
            backoff: Backoff::new(base, cap),
            healthy,
            preferred: None,
            candidates: Vec::new(),
            tried: Vec::new(),
            failed: Vec::new(),
            refollowed: Vec::new(),
            leader: None,
            redirects: 0,
        }
    }

    /// The leader a standby named, to resolve and try next (once).
    pub(crate) fn take_leader(&mut self) -> Option<String> {
        self.leader.take()
    }

    /// Whether to try the named leader at `addr` now: not when it failed
    /// in this round, nor a third time, so redirects that bounce between
    /// consoles never starve the rest of the list. A second time is right:
    /// an election may have made a standby of a moment ago the leader.
    pub(crate) fn follow(&mut self, addr: SocketAddr) -> bool {
        if !self.tried.contains(&addr) {
            self.tried.push(addr);
            return true;
        }
        if self.failed.contains(&addr) || self.refollowed.contains(&addr) {
            return false;
        }
        self.refollowed.push(addr);
        true
    }

    /// Forgets this round's attempts.
    fn new_round(&mut self) {
        self.tried.clear();
        self.failed.clear();
        self.refollowed.clear();
    }

    /// The next console to try, given the list as resolved now: the
    /// preferred one, then round-robin from it through `resolved`, skipping
    /// those this round tried; when every one was tried, a new round starts.
    /// `None` when there is nothing to try at all.
    pub(crate) fn pick(&mut self, resolved: &[SocketAddr]) -> Option<SocketAddr> {
        self.candidates = rotation(self.preferred, resolved);
        let next = match self.candidates.iter().find(|addr| !self.tried.contains(addr)) {
            Some(addr) => *addr,
            None => {
                self.new_round();
                *self.candidates.first()?
            }
        };
        self.tried.push(next);
        Some(next)
    }

    /// Whether the round has another console than `addr` to try: worth
    /// giving up on a silent one sooner.
    pub(crate) fn has_alternatives(&self, addr: SocketAddr) -> bool {
        self.candidates.iter().chain(&self.tried).any(|other| *other != addr)
    }

    /// A console at `addr` welcomed us: it is the one to come back to, and
    /// the next redirect is free again.
    pub(crate) fn welcomed(&mut self, addr: SocketAddr) {
        self.preferred = Some(addr);
        self.redirects = 0;
        self.leader = None;
    }

    /// How long to wait before the next attempt, after the attempt at
    /// `addr` (`None`: nothing resolved) ended in `outcome`.
    pub(crate) fn after<R: Rng + ?Sized>(
        &mut self,
        addr: Option<SocketAddr>,
        outcome: Outcome,
        rng: &mut R,
    ) -> Duration {
        match outcome {
            Outcome::Joined => {
                if let Some(addr) = addr {
                    self.welcomed(addr);
                }
                self.backoff.reset();
                self.new_round();
                Duration::ZERO
            }
            Outcome::Lost { lasted, move_on } => {
                if let Some(addr) = addr {
                    self.welcomed(addr);
                }
                if lasted >= self.healthy {
                    self.backoff.reset();
                }
                self.new_round();
                // It shut down, went silent or was deposed: as good as
                // failed for this round, even when a standby that has not
                // noticed yet still names it as the leader.
                if move_on && let Some(addr) = addr {
                    self.tried.push(addr);
                    self.failed.push(addr);
                }
                // Every agent of a console lost it at once: the jitter keeps
                // them from coming back in lockstep.
                self.backoff.next_delay(rng)
            }
            // A standby that still names the console this round found dead
            // (it has not seen the lease lapse yet) knows no leader either.
            Outcome::NotLeader(Some(leader)) if self.failed_in_round(&leader) => {
                self.end_round_if_done();
                self.backoff.next_delay(rng)
            }
            Outcome::NotLeader(Some(leader)) => {
                self.leader = Some(leader);
                self.redirects = self.redirects.saturating_add(1);
                if self.redirects == 1 { Duration::ZERO } else { self.backoff.next_delay(rng) }
            }
            Outcome::NotLeader(None) => {
                self.end_round_if_done();
                self.backoff.next_delay(rng)
            }
            Outcome::Failed => {
                if let Some(addr) = addr {
                    self.failed.push(addr);
                }
                if self.end_round_if_done() { self.backoff.next_delay(rng) } else { Duration::ZERO }
            }
        }
    }

    /// Whether `leader` (as a standby named it) is an address that failed
    /// in this round.
    fn failed_in_round(&self, leader: &str) -> bool {
        leader.parse::<SocketAddr>().is_ok_and(|addr| self.failed.contains(&addr))
    }

    /// Starts a new round when this one tried every candidate; says whether
    /// it did.
    fn end_round_if_done(&mut self) -> bool {
        let done = self.candidates.iter().all(|addr| self.tried.contains(addr));
        if done {
            self.new_round();
        }
        done
    }
}

/// `preferred` first, then `resolved` starting after it (or from the
/// beginning when it is not in the list), each address once.
fn rotation(preferred: Option<SocketAddr>, resolved: &[SocketAddr]) -> Vec<SocketAddr> {
    let start = preferred.and_then(|p| resolved.iter().position(|addr| *addr == p)).map_or(0, |index| index + 1);
    let mut order: Vec<SocketAddr> = preferred.into_iter().collect();
    for addr in resolved[start..].iter().chain(&resolved[..start]) {
        if !order.contains(addr) {
            order.push(*addr);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const BASE: Duration = Duration::from_millis(250);
    const CAP: Duration = Duration::from_secs(15);
    const HEALTHY: Duration = Duration::from_secs(10);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn policy() -> Policy {
        Policy::new(BASE, CAP, HEALTHY)
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(11)
    }

    /// What the link does: a named leader first, when the round did not try
    /// it yet, else the list.
    fn next(policy: &mut Policy, list: &[SocketAddr]) -> Option<SocketAddr> {
        if let Some(leader) = policy.take_leader() {
            let leader: SocketAddr = leader.parse().unwrap();
            if policy.follow(leader) {
                return Some(leader);
            }
        }
        policy.pick(list)
    }

    #[test]
    fn a_single_address_parses_as_before() {
        let consoles: Consoles = "127.0.0.1:7443".parse().unwrap();
        assert_eq!(consoles.entries(), [ConsoleAddr::Ip(addr(7443))]);
        assert_eq!(consoles, Consoles::from(addr(7443)));
        assert_eq!(consoles.to_string(), "127.0.0.1:7443");
    }

    #[test]
    fn lists_parse_in_order_with_names_ipv6_and_blanks() {
        let consoles =
            Consoles::parse_lists(["10.0.0.1:7443, console.example:7443,", "[fd00::5]:7444", "10.0.0.1:7443"]).unwrap();
        assert_eq!(
            consoles.entries(),
            [
                ConsoleAddr::Ip("10.0.0.1:7443".parse().unwrap()),
                ConsoleAddr::Name { host: "console.example".into(), port: 7443 },
                ConsoleAddr::Ip("[fd00::5]:7444".parse().unwrap()),
            ]
        );
        assert_eq!(consoles.to_string(), "10.0.0.1:7443,console.example:7443,[fd00::5]:7444");
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        for (text, problem) in [
            ("console.example", "port is missing"),
            ("console.example:http", "not a number"),
            ("console.example:0", "port 0"),
            ("127.0.0.1:0", "port 0"),
            (":7443", "host is missing"),
            ("fd00::5:7443", "brackets"),
            ("bad host:7443", "letters, digits"),
        ] {
            let err = Consoles::parse_lists([text]).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(&format!("\"{text}\"")), "{message}");
            assert!(message.contains(problem), "{text}: {message}");
        }
        assert_eq!(Consoles::parse_lists([" , "]), Err(ConsoleAddrError::Empty));
        assert_eq!(Consoles::parse_lists(Vec::<String>::new()), Err(ConsoleAddrError::Empty));
    }

    #[tokio::test]
    async fn names_resolve_to_every_address_and_failures_are_named() {
        let consoles = Consoles::parse_lists(["127.0.0.1:7443,localhost:7444,127.0.0.1:7443"]).unwrap();
        let (addrs, problems) = consoles.resolve().await;
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(addrs[0], addr(7443));
        assert!(addrs[1..].iter().all(|a| a.port() == 7444 && a.ip().is_loopback()), "{addrs:?}");
        assert!(addrs.len() >= 2);

        // `.invalid` never resolves (RFC 6761).
        let consoles = Consoles::parse_lists(["nowhere.invalid:7443,127.0.0.1:7443"]).unwrap();
        let (addrs, problems) = consoles.resolve().await;
        assert_eq!(addrs, [addr(7443)]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().contains("\"nowhere.invalid:7443\""), "{problems:?}");
    }

    #[test]
    fn a_round_tries_every_address_before_backing_off() {
        let list = [addr(1), addr(2), addr(3)];
        let mut policy = policy();
        let mut rng = rng();
        let mut order = Vec::new();
        let mut delays = Vec::new();
        for _ in 0..6 {
            let next = next(&mut policy, &list).unwrap();
            order.push(next.port());
            delays.push(policy.after(Some(next), Outcome::Failed, &mut rng));
        }
        assert_eq!(order, [1, 2, 3, 1, 2, 3]);
        assert_eq!(delays[0], Duration::ZERO);
        assert_eq!(delays[1], Duration::ZERO);
        assert!(delays[2] >= BASE / 2 && delays[2] <= BASE, "{delays:?}");
        assert_eq!(delays[3], Duration::ZERO);
        assert!(delays[5] >= BASE && delays[5] <= BASE * 2, "the backoff grows per round: {delays:?}");
    }

    #[test]
    fn the_console_that_welcomed_us_is_tried_first_then_the_others_round_robin() {
        let list = [addr(1), addr(2), addr(3)];
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
        policy.after(Some(addr(1)), Outcome::Failed, &mut rng);
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
        policy.welcomed(addr(2));
        let delay = policy.after(Some(addr(2)), Outcome::Lost { lasted: HEALTHY, move_on: false }, &mut rng);
        assert!(delay >= BASE / 2 && delay <= BASE, "a healthy session starts the backoff over: {delay:?}");
        let mut order = Vec::new();
        for _ in 0..3 {
            let next = next(&mut policy, &list).unwrap();
            order.push(next.port());
            policy.after(Some(next), Outcome::Failed, &mut rng);
        }
        assert_eq!(order, [2, 3, 1]);
    }

    #[test]
    fn a_console_that_shuts_down_or_goes_silent_is_tried_last() {
        let list = [addr(1), addr(2)];
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
        policy.welcomed(addr(1));
        policy.after(Some(addr(1)), Outcome::Lost { lasted: HEALTHY, move_on: true }, &mut rng);
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
        // The lost console counted as tried: the round is over.
        assert!(policy.after(Some(addr(2)), Outcome::Failed, &mut rng) > Duration::ZERO);
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
    }

    #[test]
    fn regression_a_standby_that_still_names_the_silent_leader_is_not_followed_back_to_it() {
        // After a kill -9 of the leader, an agent left it for its silence
        // and asked a standby before the standby had seen the lease lapse;
        // "the leader is <the dead one>" sent it back there, to wait out a
        // 5 s handshake: takeovers of 7.6 s instead of 3.
        let list = [addr(1), addr(2), addr(3)];
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
        policy.welcomed(addr(1));
        policy.after(Some(addr(1)), Outcome::Lost { lasted: HEALTHY, move_on: true }, &mut rng);
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
        let delay = policy.after(Some(addr(2)), Outcome::NotLeader(Some(addr(1).to_string())), &mut rng);
        assert!(delay <= BASE * 2, "a stale answer costs the next backoff step, as \"no leader yet\" does: {delay:?}");
        assert_eq!(next(&mut policy, &list), Some(addr(3)), "not back to the console just left");
        // It was no redirect: the first real one is still followed at once.
        let delay = policy.after(Some(addr(3)), Outcome::NotLeader(Some(addr(2).to_string())), &mut rng);
        assert_eq!(delay, Duration::ZERO);
        assert_eq!(next(&mut policy, &list), Some(addr(2)), "the new leader, a standby a moment ago");
    }

    #[test]
    fn a_single_console_is_retried_with_backoff_as_before() {
        let list = [addr(1)];
        let mut policy = policy();
        let mut rng = rng();
        let mut delays = Vec::new();
        for _ in 0..10 {
            assert_eq!(next(&mut policy, &list), Some(addr(1)));
            delays.push(policy.after(Some(addr(1)), Outcome::Failed, &mut rng));
        }
        assert!(delays.iter().all(|delay| *delay > Duration::ZERO && *delay <= CAP), "{delays:?}");
        assert!(delays[9] >= CAP / 2, "{delays:?}");
        // Shut down, then back: after the backoff, the same console.
        policy.welcomed(addr(1));
        let delay = policy.after(Some(addr(1)), Outcome::Lost { lasted: HEALTHY, move_on: true }, &mut rng);
        assert!(delay <= BASE, "{delay:?}");
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
    }

    #[test]
    fn a_redirect_is_followed_at_once_and_the_leader_kept() {
        let list = [addr(1), addr(2)];
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
        let delay = policy.after(Some(addr(1)), Outcome::NotLeader(Some(addr(9).to_string())), &mut rng);
        assert_eq!(delay, Duration::ZERO);
        assert_eq!(next(&mut policy, &list), Some(addr(9)), "the leader, even off the list");
        policy.welcomed(addr(9));
        policy.after(Some(addr(9)), Outcome::Lost { lasted: HEALTHY, move_on: false }, &mut rng);
        assert_eq!(next(&mut policy, &list), Some(addr(9)), "the leader that welcomed us comes first");
        // A new leader elsewhere: the first redirect after a welcome is free again.
        assert_eq!(
            policy.after(Some(addr(9)), Outcome::NotLeader(Some(addr(2).to_string())), &mut rng),
            Duration::ZERO
        );
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
    }

    #[test]
    fn a_join_is_followed_by_a_connection_to_the_same_console_at_once() {
        let list = [addr(1), addr(2)];
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
        policy.after(Some(addr(1)), Outcome::Failed, &mut rng);
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
        assert_eq!(policy.after(Some(addr(2)), Outcome::Joined, &mut rng), Duration::ZERO);
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
    }

    #[test]
    fn bouncing_redirects_never_loop_faster_than_the_backoff() {
        // Two standbys name each other, forever; the real leader is third.
        let list = [addr(1), addr(2), addr(3)];
        let mut policy = policy();
        let mut rng = rng();
        let mut free = 0;
        let mut visited = Vec::new();
        let mut delays = Vec::new();
        for _ in 0..40 {
            let at = next(&mut policy, &list).unwrap();
            visited.push(at.port());
            let outcome = match at.port() {
                1 => Outcome::NotLeader(Some(addr(2).to_string())),
                2 => Outcome::NotLeader(Some(addr(1).to_string())),
                _ => Outcome::Failed,
            };
            let delay = policy.after(Some(at), outcome, &mut rng);
            if delay.is_zero() && at.port() != 3 {
                free += 1;
            }
            delays.push(delay);
        }
        assert_eq!(free, 1, "only the first redirect is free: {delays:?}");
        assert!(visited.contains(&3), "the rest of the list is not starved: {visited:?}");
        assert!(delays.iter().all(|delay| *delay <= CAP));
        assert!(delays[30..].iter().filter(|d| !d.is_zero()).all(|d| *d >= CAP / 2), "{delays:?}");
    }

    #[test]
    fn regression_a_standby_of_a_moment_ago_that_now_leads_is_followed() {
        // After an etcd outage, agents asked every console (none knew a
        // leader), then the third named the first, which had been elected
        // meanwhile; the agent would not follow a console "tried in this
        // round already" and went on round the list (here to a fourth
        // console), for 11 s more.
        let list = [addr(1), addr(2), addr(3), addr(4)];
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
        policy.after(Some(addr(1)), Outcome::NotLeader(None), &mut rng);
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
        policy.after(Some(addr(2)), Outcome::NotLeader(None), &mut rng);
        assert_eq!(next(&mut policy, &list), Some(addr(3)));
        assert_eq!(
            policy.after(Some(addr(3)), Outcome::NotLeader(Some(addr(1).to_string())), &mut rng),
            Duration::ZERO
        );
        assert_eq!(next(&mut policy, &list), Some(addr(1)), "the new leader, asked a moment ago as a standby");
    }

    #[test]
    fn a_leader_that_failed_in_this_round_is_not_followed_again_in_it() {
        let list = [addr(1), addr(2), addr(3)];
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
        assert_eq!(policy.after(Some(addr(1)), Outcome::Failed, &mut rng), Duration::ZERO);
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
        policy.after(Some(addr(2)), Outcome::NotLeader(Some(addr(1).to_string())), &mut rng);
        assert_eq!(next(&mut policy, &list), Some(addr(3)), "the dead leader waits for the next round");
    }

    #[test]
    fn a_redirect_to_a_dead_leader_backs_off() {
        // One standby that names a leader that died.
        let list = [addr(1)];
        let mut policy = policy();
        let mut rng = rng();
        let mut total = Duration::ZERO;
        for round in 0..20 {
            assert_eq!(next(&mut policy, &list), Some(addr(1)));
            total += policy.after(Some(addr(1)), Outcome::NotLeader(Some(addr(9).to_string())), &mut rng);
            assert_eq!(next(&mut policy, &list), Some(addr(9)));
            let delay = policy.after(Some(addr(9)), Outcome::Failed, &mut rng);
            assert!(delay > Duration::ZERO, "round {round}");
            total += delay;
        }
        assert!(total >= CAP * 10, "40 attempts took only {total:?} of waiting");
    }

    #[test]
    fn a_standby_that_knows_no_leader_costs_a_backoff_then_the_next() {
        let list = [addr(1), addr(2)];
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &list), Some(addr(1)));
        let delay = policy.after(Some(addr(1)), Outcome::NotLeader(None), &mut rng);
        assert!(delay >= BASE / 2, "{delay:?}");
        assert_eq!(next(&mut policy, &list), Some(addr(2)));
        assert!(policy.after(Some(addr(2)), Outcome::NotLeader(None), &mut rng) > Duration::ZERO);
        assert_eq!(next(&mut policy, &list), Some(addr(1)), "a new round");
    }

    #[test]
    fn nothing_resolved_backs_off() {
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &[]), None);
        let delay = policy.after(None, Outcome::Failed, &mut rng);
        assert!(delay >= BASE / 2, "{delay:?}");
    }

    #[test]
    fn a_list_that_changes_between_attempts_is_followed() {
        let mut policy = policy();
        let mut rng = rng();
        assert_eq!(next(&mut policy, &[addr(1), addr(2)]), Some(addr(1)));
        assert_eq!(policy.after(Some(addr(1)), Outcome::Failed, &mut rng), Duration::ZERO);
        // The name now resolves elsewhere.
        assert_eq!(next(&mut policy, &[addr(3)]), Some(addr(3)));
        assert!(policy.after(Some(addr(3)), Outcome::Failed, &mut rng) > Duration::ZERO);
    }

    #[test]
    fn alternatives_exist_only_with_another_address() {
        let mut policy = policy();
        assert_eq!(policy.pick(&[addr(1)]), Some(addr(1)));
        assert!(!policy.has_alternatives(addr(1)));
        assert_eq!(policy.pick(&[addr(1), addr(2)]), Some(addr(2)));
        assert!(policy.has_alternatives(addr(2)));
    }
}
