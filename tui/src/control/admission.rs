//! Peers not yet authenticated get little (ARCHITECTURE.md, "Nothing
//! received is trusted"): a cap on handshakes in progress — beyond it a
//! stateless retry (which a forged source address cannot answer) or a
//! refusal — and refusal logs that cannot flood the log. The transport
//! limits every connection starts with (one stream, small windows) are in
//! [`crate::control::tls`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quinn::Incoming;
use tracing::warn;

use crate::control::owner::Counters;

/// Handshakes (and joins) in progress beyond which new ones are turned
/// away.
pub const MAX_PENDING_HANDSHAKES: usize = 512;
/// Refusal lines logged per window; the rest are counted.
const LOG_BURST: u32 = 10;
/// The window of [`LOG_BURST`].
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Counts handshakes in progress and rations refusal logs.
#[derive(Debug)]
pub struct Admission {
    /// Handshakes and joins not finished: the console's counters hold it,
    /// so `/metrics` shows it.
    counters: Arc<Counters>,
    /// The cap.
    max: usize,
    /// Refusal logs.
    log: LogBudget,
}

/// A handshake in progress; dropping it frees its place.
#[derive(Debug)]
pub struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_progress().fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// At most `max` handshakes at once, counted in `counters`.
    pub fn new(max: usize, counters: Arc<Counters>) -> Arc<Self> {
        Arc::new(Self { counters, max, log: LogBudget::new(LOG_BURST, LOG_WINDOW) })
    }

    fn in_progress(&self) -> &AtomicUsize {
        &self.counters.handshakes_in_progress
    }

    /// Admits `incoming` if there is room — the slot is held until the
    /// peer is authenticated; otherwise asks an unvalidated address to retry
    /// (stateless: it costs the console no state), refuses a validated one,
    /// and returns `None`.
    pub fn admit(self: &Arc<Self>, incoming: Incoming) -> Option<(Incoming, Slot)> {
        let taken = self.in_progress().fetch_add(1, Ordering::AcqRel);
        if taken < self.max {
            return Some((incoming, Slot(self.clone())));
        }
        self.in_progress().fetch_sub(1, Ordering::AcqRel);
        let remote = incoming.remote_address();
        if !incoming.remote_address_validated() && incoming.may_retry() {
            let _ = incoming.retry();
        } else {
            incoming.refuse();
        }
        self.refused(format_args!("turned away a connection from {remote}: {} handshakes in progress", self.max));
        None
    }

    /// Logs a refusal, unless the window's budget is spent.
    pub fn refused(&self, line: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.log.take() {
            if suppressed > 0 {
                warn!(suppressed, "refusals not logged in the last {}s", LOG_WINDOW.as_secs());
            }
            warn!("{line}");
        }
    }
}

/// At most `burst` lines per `window`; the rest are counted and reported
/// with the next line logged.
#[derive(Debug)]
pub struct LogBudget {
    burst: u32,
    window: Duration,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    started: Instant,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// A budget of `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        Self { burst, window, state: Mutex::new(BudgetState { started: Instant::now(), used: 0, suppressed: 0 }) }
    }

    /// `Some(lines suppressed since the last one logged)` if a line may be
    /// logged now; `None` if this one must be suppressed.
    pub fn take(&self) -> Option<u64> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(state.started) >= self.window {
            state.started = now;
            state.used = 0;
        }
        if state.used < self.burst {
            state.used += 1;
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_a_flood_of_refusals_logs_a_burst_then_a_count() {
        // Case 12: 10,000 forged Initial packets made 625 WARN lines.
        let budget = LogBudget::new(10, Duration::from_secs(10));
        let start = Instant::now();
        let logged = (0..10_000).filter(|_| budget.take_at(start).is_some()).count();
        assert_eq!(logged, 10);
        // The next window logs again and reports what it held back.
        assert_eq!(budget.take_at(start + Duration::from_secs(10)), Some(9_990));
        assert_eq!(budget.take_at(start + Duration::from_secs(10)), Some(0));
    }
}
