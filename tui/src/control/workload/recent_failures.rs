//! The nodes that failed within the mass-failure guard's window and are
//! still down (README.md, "Failover"): how many there are is what the guard
//! compares with the fleet.
//!
//! A node that comes back leaves the set at once, found by name rather
//! than by a scan of every recent failure: when thousands fail together
//! (a console-side stall, a partition) and come back, a scan per node
//! would cost the owner the square of their number (BENCHMARKS.md, "The
//! console at scale").

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ringwatch_shared::names::NodeName;

/// Failures still down and within the window.
#[derive(Debug, Default)]
pub(super) struct RecentFailures {
    /// When each node in the set failed (its latest failure).
    failed_at: HashMap<NodeName, Instant>,
    /// Every failure in the order it happened, to expire them; an entry
    /// whose node came back or failed again since is stale and skipped.
    order: VecDeque<(NodeName, Instant)>,
}

impl RecentFailures {
    /// Records that `node` failed at `now`, forgets failures older than
    /// `window` before `now`; returns how many remain.
    pub(super) fn record(&mut self, node: &NodeName, now: Instant, window: Duration) -> usize {
        self.failed_at.insert(node.clone(), now);
        self.order.push_back((node.clone(), now));
        while let Some((name, at)) = self.order.front() {
            if now.saturating_duration_since(*at) <= window {
                break;
            }
            if self.failed_at.get(name) == Some(at) {
                self.failed_at.remove(name);
            }
            self.order.pop_front();
        }
        self.failed_at.len()
    }

    /// `node` is back: its failure no longer counts.
    pub(super) fn forget(&mut self, node: &NodeName) {
        self.failed_at.remove(node);
    }

    /// Forgets every failure.
    pub(super) fn clear(&mut self) {
        self.failed_at.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window of these tests.
    const WINDOW: Duration = Duration::from_secs(10);

    fn node(name: &str) -> NodeName {
        NodeName::parse(name).unwrap()
    }

    /// A clock: the instant `secs` after a fixed start.
    fn clock() -> impl Fn(u64) -> Instant {
        let start = Instant::now();
        move |secs| start + Duration::from_secs(secs)
    }

    #[test]
    fn failures_expire_after_the_window_and_a_node_back_stops_counting() {
        let (window, at) = (WINDOW, clock());
        let mut recent = RecentFailures::default();
        assert_eq!(recent.record(&node("a"), at(0), window), 1);
        assert_eq!(recent.record(&node("b"), at(1), window), 2);
        assert_eq!(recent.record(&node("a"), at(2), window), 2, "a node failing again counts once");
        recent.forget(&node("b"));
        assert_eq!(recent.record(&node("c"), at(3), window), 2);
        // At 11 s, a's first failure (0 s) is past the window, its second
        // (2 s) is not.
        assert_eq!(recent.record(&node("d"), at(11), window), 3);
        // At 12.5 s, a's second failure is past too.
        assert_eq!(recent.record(&node("e"), at(12) + Duration::from_millis(500), window), 3);
        recent.clear();
        assert_eq!(recent.record(&node("a"), at(13), window), 1);
    }

    #[test]
    fn a_node_back_and_failed_again_is_kept_by_its_latest_failure() {
        let (window, at) = (WINDOW, clock());
        let mut recent = RecentFailures::default();
        recent.record(&node("a"), at(0), window);
        recent.forget(&node("a"));
        recent.record(&node("a"), at(5), window);
        // Its stale entry from 0 s expires at 11 s without taking the 5 s one.
        assert_eq!(recent.record(&node("b"), at(11), window), 2);
        assert_eq!(recent.record(&node("c"), at(16), window), 2, "a's failure at 5 s expired");
    }
}
