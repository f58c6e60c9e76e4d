//! Capped exponential backoff with jitter, for reconnecting to the console.
//!
//! Each delay is drawn uniformly from `[ceiling / 2, ceiling]` where the
//! ceiling doubles per attempt up to `cap` ("equal jitter"): agents that lost
//! the console together do not come back in lockstep, and no delay ever
//! exceeds the cap (tokio-console once used `max` where `min` was meant).

use std::time::Duration;

use rand::Rng;

/// Reconnect delay state for one peer.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first ceiling.
    base: Duration,
    /// No delay is ever longer than this.
    cap: Duration,
    /// Failed attempts since the last [`Backoff::reset`].
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap`
    /// (`cap` is raised to `base` if smaller).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap: cap.max(base), attempt: 0 }
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.cap, |grown| grown.min(self.cap))
    }

    /// Draws the next delay and counts the attempt.
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let ceiling = self.ceiling();
        let floor = ceiling / 2;
        self.attempt = self.attempt.saturating_add(1);
        let span = ceiling.saturating_sub(floor);
        let jitter_nanos = rng.random_range(0..=u64::try_from(span.as_nanos()).unwrap_or(u64::MAX));
        floor + Duration::from_nanos(jitter_nanos)
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn ceiling_doubles_until_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut rng = StdRng::seed_from_u64(7);
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay(&mut rng);
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn delays_never_exceed_the_cap_even_after_many_attempts() {
        let cap = Duration::from_secs(30);
        let mut backoff = Backoff::new(Duration::from_millis(250), cap);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..10_000 {
            let delay = backoff.next_delay(&mut rng);
            assert!(delay <= cap, "{delay:?} exceeds the cap");
        }
        assert_eq!(backoff.attempts(), 10_000);
    }

    #[test]
    fn delays_grow_and_stay_within_the_jitter_band() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(3);
        let mut previous_ceiling = Duration::ZERO;
        for _ in 0..8 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay(&mut rng);
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?} outside band of {ceiling:?}");
            assert!(ceiling > previous_ceiling);
            previous_ceiling = ceiling;
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..5 {
            backoff.next_delay(&mut rng);
        }
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn cap_below_base_is_raised_to_base() {
        let backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(), Duration::from_secs(2));
    }
}
