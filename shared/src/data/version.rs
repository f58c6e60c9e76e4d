//! Object versions. The console that accepts a write stamps it; a later
//! write always gets a greater version, also across consoles of a group:
//! the version is the leader's term, then a counter that never goes back
//! within it. A new leader (a greater term) therefore outranks everything
//! its predecessors stamped, whatever their counters.

use serde::{Deserialize, Serialize};

/// A version: compared by term, then counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// The term of the console that stamped it (0 for a single console).
    pub term: u64,
    /// Increasing within the term.
    pub counter: u64,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.term, self.counter)
    }
}

/// The console's source of versions.
#[derive(Debug, Clone, Default)]
pub struct VersionClock {
    last: Version,
}

impl VersionClock {
    /// A clock for `term`, after every version it has seen (`seen`, e.g.
    /// the greatest version in the records).
    pub fn new(term: u64, seen: Version) -> Self {
        let last = if seen.term >= term { seen } else { Version { term, counter: 0 } };
        Self { last }
    }

    /// The next version: greater than every one given or seen before.
    pub fn stamp(&mut self) -> Version {
        self.last.counter = self.last.counter.saturating_add(1);
        self.last
    }

    /// Takes note of a version seen elsewhere (a replica's report), so that
    /// the next one is greater.
    pub fn observe(&mut self, seen: Version) {
        if seen > self.last {
            self.last = seen;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_only_grow_within_a_term_and_a_new_term_outranks_every_older_one() {
        let mut old = VersionClock::new(1, Version::default());
        let a = old.stamp();
        let b = old.stamp();
        assert!(b > a);
        for _ in 0..1000 {
            old.stamp();
        }
        let mut new = VersionClock::new(2, b);
        let c = new.stamp();
        assert!(c > old.stamp(), "term 2 counter 1 beats term 1 counter 1003");
        new.observe(Version { term: 2, counter: 50 });
        assert_eq!(new.stamp(), Version { term: 2, counter: 51 });
    }

    #[test]
    fn a_clock_never_goes_back_behind_what_the_records_hold() {
        let seen = Version { term: 3, counter: 9 };
        let mut clock = VersionClock::new(3, seen);
        assert_eq!(clock.stamp(), Version { term: 3, counter: 10 });
        let mut stale_term = VersionClock::new(2, seen);
        assert!(stale_term.stamp() > seen);
    }
}
