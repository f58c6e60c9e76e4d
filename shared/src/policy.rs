//! Restarting a crashed instance in place (DESIGN §6, "Restart").
//!
//! A [`RestartTracker`] follows one instance's runs and decides, at each
//! exit, whether to restart it and after how long:
//!
//! - `immediate`: at once;
//! - `delayed`: after a [`Backoff`] delay starting at `delay` and doubling per
//!   restart up to `max_delay`, with equal jitter (each delay drawn from
//!   `[ceiling / 2, ceiling]`);
//! - more than `max_restarts` restarts within the sliding window `within`:
//!   give up, so the console places the instance elsewhere (escalation, as
//!   OTP supervisors do);
//! - a run that lasted at least `within` was stable: the backoff and the
//!   window start over.
//!
//! Like everything in this crate it never reads the clock: `now` is passed
//! in, and so is the random source of the jitter.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::backoff::Backoff;
use crate::task::{RestartMode, RestartPolicy};

/// What to do after an instance exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start it again after this delay (zero for `immediate`).
    RestartAfter(Duration),
    /// It crashed more often than the policy allows: mark it failed.
    GiveUp {
        /// Restarts already made within the window, i.e. `max_restarts`.
        restarts_in_window: u32,
    },
}

/// The restart history of one instance.
#[derive(Debug, Clone, Default)]
pub struct RestartTracker {
    /// When the current run started; `None` before the first start.
    started: Option<Instant>,
    /// When each restart still inside the window was decided, oldest first.
    window: VecDeque<Instant>,
    /// Delays of `delayed` mode; created on the first delayed restart so the
    /// policy may change between assignments.
    backoff: Option<Backoff>,
    /// Restarts over the tracker's whole life, manual ones included.
    total: u32,
}

impl RestartTracker {
    /// A tracker with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The instance started (or restarted) at `now`.
    pub fn on_start(&mut self, now: Instant) {
        self.started = Some(now);
    }

    /// The instance exited at `now`: restart it, or give up.
    ///
    /// A restart is counted (in the window and in [`restarts`](Self::restarts))
    /// when it is decided, at `now`.
    pub fn on_exit<R: Rng + ?Sized>(&mut self, now: Instant, policy: &RestartPolicy, rng: &mut R) -> RestartDecision {
        let ran = self.started.take().map(|started| now.saturating_duration_since(started));
        if ran.is_some_and(|ran| ran >= policy.within) {
            self.reset();
        }
        while self.window.front().is_some_and(|&restart| now.saturating_duration_since(restart) >= policy.within) {
            self.window.pop_front();
        }
        let in_window = u32::try_from(self.window.len()).unwrap_or(u32::MAX);
        if in_window >= policy.max_restarts {
            return RestartDecision::GiveUp { restarts_in_window: in_window };
        }
        self.window.push_back(now);
        self.total = self.total.saturating_add(1);
        let delay = match policy.mode {
            RestartMode::Immediate => Duration::ZERO,
            RestartMode::Delayed => {
                self.backoff.get_or_insert_with(|| Backoff::new(policy.delay, policy.max_delay)).next_delay(rng)
            }
        };
        RestartDecision::RestartAfter(delay)
    }

    /// An operator restarted the instance: it counts in
    /// [`restarts`](Self::restarts) but not against the crash window.
    pub fn on_manual_restart(&mut self) {
        self.total = self.total.saturating_add(1);
    }

    /// Forgets the window and the backoff (a stable run, or a fresh start
    /// after the instance was stopped or failed); the total stays.
    pub fn reset(&mut self) {
        self.window.clear();
        self.backoff = None;
    }

    /// Restarts so far, manual ones included.
    pub fn restarts(&self) -> u32 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn immediate(max_restarts: u32, within: Duration) -> RestartPolicy {
        RestartPolicy { mode: RestartMode::Immediate, max_restarts, within, ..RestartPolicy::default() }
    }

    fn delayed(delay: Duration, max_delay: Duration, max_restarts: u32, within: Duration) -> RestartPolicy {
        RestartPolicy { mode: RestartMode::Delayed, delay, max_delay, max_restarts, within }
    }

    /// Always draws zero: every jittered delay is its band's floor, exactly.
    struct Zero;

    impl rand::RngCore for Zero {
        fn next_u32(&mut self) -> u32 {
            0
        }
        fn next_u64(&mut self) -> u64 {
            0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(0);
        }
    }

    /// Runs that start at each exit and exit at the given offsets from `base`.
    fn crash_at(
        tracker: &mut RestartTracker,
        base: Instant,
        offsets: &[Duration],
        policy: &RestartPolicy,
    ) -> Vec<RestartDecision> {
        offsets
            .iter()
            .map(|&offset| {
                let decision = tracker.on_exit(base + offset, policy, &mut Zero);
                tracker.on_start(base + offset);
                decision
            })
            .collect()
    }

    #[test]
    fn immediate_restarts_at_once_until_the_limit_then_gives_up() {
        let policy = immediate(3, secs(60));
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        let decisions = crash_at(&mut tracker, base, &[secs(1), secs(2), secs(3), secs(4)], &policy);
        assert_eq!(
            decisions,
            [
                RestartDecision::RestartAfter(Duration::ZERO),
                RestartDecision::RestartAfter(Duration::ZERO),
                RestartDecision::RestartAfter(Duration::ZERO),
                RestartDecision::GiveUp { restarts_in_window: 3 },
            ]
        );
        assert_eq!(tracker.restarts(), 3, "the refused restart is not counted");
    }

    #[test]
    fn zero_max_restarts_gives_up_on_the_first_exit() {
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        assert_eq!(
            tracker.on_exit(base + secs(1), &immediate(0, secs(60)), &mut Zero),
            RestartDecision::GiveUp { restarts_in_window: 0 }
        );
        assert_eq!(tracker.restarts(), 0);
    }

    #[test]
    fn the_window_slides_old_restarts_out() {
        // Two restarts allowed per 10 s. Restarts at 1 s and 2 s fill the
        // window; at 11 s the one at 1 s is exactly 10 s old and drops out.
        let policy = immediate(2, secs(10));
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        let decisions = crash_at(&mut tracker, base, &[secs(1), secs(2), secs(3)], &policy);
        assert_eq!(decisions[2], RestartDecision::GiveUp { restarts_in_window: 2 });

        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        let decisions = crash_at(&mut tracker, base, &[secs(1), secs(2), ms(10_999), secs(11), ms(11_500)], &policy);
        assert_eq!(
            decisions,
            [
                RestartDecision::RestartAfter(Duration::ZERO),
                RestartDecision::RestartAfter(Duration::ZERO),
                // 9.999 s after the first restart: still inside.
                RestartDecision::GiveUp { restarts_in_window: 2 },
                // 10 s after the first: it is out, one left (at 2 s).
                RestartDecision::RestartAfter(Duration::ZERO),
                // Window now holds 2 s and 11 s.
                RestartDecision::GiveUp { restarts_in_window: 2 },
            ]
        );
        assert_eq!(tracker.restarts(), 3);
    }

    #[test]
    fn delayed_doubles_from_delay_up_to_max_delay() {
        // Equal jitter with a zero draw gives each band's floor: half the
        // ceiling, the ceiling being 1 s, 2 s, 4 s, … capped at 30 s.
        let policy = delayed(secs(1), secs(30), 100, secs(3600));
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        let offsets: Vec<Duration> = (1..=8).map(secs).collect();
        let delays = crash_at(&mut tracker, base, &offsets, &policy);
        let expected = [500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000]
            .map(|millis| RestartDecision::RestartAfter(ms(millis)));
        assert_eq!(delays, expected);
    }

    #[test]
    fn delayed_delays_stay_in_the_jitter_band_and_under_the_cap() {
        let policy = delayed(ms(100), secs(2), u32::MAX, secs(3600));
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        let mut rng = StdRng::seed_from_u64(11);
        let mut ceiling = ms(100);
        for step in 1..=50u64 {
            tracker.on_start(base + ms(step * 10 - 5));
            let RestartDecision::RestartAfter(delay) = tracker.on_exit(base + ms(step * 10), &policy, &mut rng) else {
                panic!("gave up at step {step}");
            };
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "step {step}: {delay:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(secs(2));
        }
    }

    #[test]
    fn a_stable_run_resets_the_backoff_and_the_count() {
        // Two restarts per 10 s, 1 s doubling. Crashes at 1 s and 2 s use up
        // the window and grow the delay; the run from 2 s to 12 s lasted the
        // whole window, so the exit at 12 s starts over.
        let policy = delayed(secs(1), secs(30), 2, secs(10));
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        let decisions = crash_at(&mut tracker, base, &[secs(1), secs(2), secs(12), ms(12_500), secs(13)], &policy);
        assert_eq!(
            decisions,
            [
                RestartDecision::RestartAfter(ms(500)),
                RestartDecision::RestartAfter(ms(1_000)),
                RestartDecision::RestartAfter(ms(500)),
                RestartDecision::RestartAfter(ms(1_000)),
                RestartDecision::GiveUp { restarts_in_window: 2 },
            ]
        );
        assert_eq!(tracker.restarts(), 4, "the total survives the reset");
    }

    #[test]
    fn a_run_just_short_of_the_window_is_not_stable() {
        let policy = delayed(secs(1), secs(30), 5, secs(10));
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        // Ran 1 s, then 9.999 s: the backoff keeps growing.
        let decisions = crash_at(&mut tracker, base, &[secs(1), ms(10_999)], &policy);
        assert_eq!(decisions, [RestartDecision::RestartAfter(ms(500)), RestartDecision::RestartAfter(ms(1_000))]);
    }

    #[test]
    fn manual_restarts_count_but_never_cause_a_give_up() {
        let policy = immediate(1, secs(60));
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        for _ in 0..5 {
            tracker.on_manual_restart();
        }
        assert_eq!(tracker.on_exit(base + secs(1), &policy, &mut Zero), RestartDecision::RestartAfter(Duration::ZERO));
        assert_eq!(tracker.restarts(), 6);
    }

    #[test]
    fn reset_clears_the_window_but_keeps_the_total() {
        let policy = immediate(1, secs(60));
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        let decisions = crash_at(&mut tracker, base, &[secs(1), secs(2)], &policy);
        assert_eq!(decisions[1], RestartDecision::GiveUp { restarts_in_window: 1 });
        tracker.reset();
        tracker.on_start(base + secs(3));
        assert_eq!(tracker.on_exit(base + secs(4), &policy, &mut Zero), RestartDecision::RestartAfter(Duration::ZERO));
        assert_eq!(tracker.restarts(), 2);
    }

    #[test]
    fn an_exit_without_a_start_and_time_going_backwards_do_not_panic() {
        let policy = delayed(Duration::ZERO, Duration::ZERO, 2, Duration::ZERO);
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        // No start; a zero window keeps nothing, so it never gives up.
        for _ in 0..10 {
            assert_eq!(tracker.on_exit(base, &policy, &mut Zero), RestartDecision::RestartAfter(Duration::ZERO));
        }
        let policy = immediate(3, secs(10));
        tracker.on_start(base + secs(5));
        assert!(matches!(tracker.on_exit(base, &policy, &mut Zero), RestartDecision::RestartAfter(_)));
    }

    #[test]
    fn the_default_policy_allows_five_restarts_a_minute() {
        let policy = RestartPolicy::default();
        let base = Instant::now();
        let mut tracker = RestartTracker::new();
        tracker.on_start(base);
        let offsets: Vec<Duration> = (1..=6).map(secs).collect();
        let decisions = crash_at(&mut tracker, base, &offsets, &policy);
        assert_eq!(decisions[4], RestartDecision::RestartAfter(Duration::ZERO));
        assert_eq!(decisions[5], RestartDecision::GiveUp { restarts_in_window: 5 });
    }
}
