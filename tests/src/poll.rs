//! Deadline-bounded polling: the only way the tests wait.
//!
//! What the tests wait for (a file written by another process, a state in
//! `status`, a process exit) can only be observed by looking again, so every
//! wait is a loop with a short interval and an overall deadline that is a
//! liveness bound, never a speed assertion.

use std::fmt;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// One look at the thing being waited for.
#[derive(Debug)]
pub enum Step<T> {
    /// It happened; stop waiting.
    Done(T),
    /// Not yet; the text describes what was seen, for the timeout message.
    Pending(String),
    /// It can no longer happen (the process died); stop waiting.
    Abort(String),
}

/// Why a wait ended without [`Step::Done`].
#[derive(Debug, Clone)]
pub struct PollFailure {
    /// `true` when the deadline passed, `false` when the probe aborted.
    pub timed_out: bool,
    /// How long the wait lasted.
    pub elapsed: Duration,
    /// The last [`Step::Pending`] or the [`Step::Abort`] text.
    pub last: String,
}

impl fmt::Display for PollFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.timed_out {
            write!(f, "timed out after {:.1?}", self.elapsed)?;
        } else {
            write!(f, "aborted after {:.1?}", self.elapsed)?;
        }
        if !self.last.is_empty() {
            write!(f, "; last seen: {}", self.last)?;
        }
        Ok(())
    }
}

impl std::error::Error for PollFailure {}

/// Calls `probe` every `interval` until it returns [`Step::Done`] or
/// [`Step::Abort`], or `timeout` has passed. The probe always runs at least
/// once, and once more after the deadline if the last look was early.
///
/// # Errors
/// On abort or timeout, with the last thing the probe saw.
pub fn until<T>(timeout: Duration, interval: Duration, mut probe: impl FnMut() -> Step<T>) -> Result<T, PollFailure> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let looked_at = Instant::now();
        match probe() {
            Step::Done(value) => return Ok(value),
            Step::Abort(last) => {
                return Err(PollFailure { timed_out: false, elapsed: started.elapsed(), last });
            }
            Step::Pending(last) => {
                if looked_at >= deadline {
                    return Err(PollFailure { timed_out: true, elapsed: started.elapsed(), last });
                }
            }
        }
        let now = Instant::now();
        thread::sleep(interval.min(deadline.saturating_duration_since(now)));
    }
}

/// Blocks until the wall clock reaches `when`. Only for things that are
/// wall-clock by nature (a token's expiry); everything else uses [`until`].
pub fn until_wall_clock(when: SystemTime) {
    // Re-read every 50 ms rather than sleeping the difference: the wall clock
    // may be stepped while we wait.
    while SystemTime::now() < when {
        let left = when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_done() {
        let mut n = 0;
        let got = until(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            if n == 3 { Step::Done(n) } else { Step::Pending(format!("n={n}")) }
        });
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn times_out_with_the_last_sight() {
        let err = until::<()>(Duration::from_millis(30), Duration::from_millis(5), || Step::Pending("nothing".into()))
            .unwrap_err();
        assert!(err.timed_out);
        assert!(err.to_string().contains("last seen: nothing"), "{err}");
    }

    #[test]
    fn abort_stops_at_once() {
        let err =
            until::<()>(Duration::from_secs(60), Duration::from_millis(5), || Step::Abort("gone".into())).unwrap_err();
        assert!(!err.timed_out);
        assert!(err.elapsed < Duration::from_secs(5));
    }
}
