//! When an agent takes its console for gone (README.md, "The agent").
//!
//! The console beats every second. Three seconds without a beat or a
//! frame, and nothing else from it either, mean it is gone — killed, or
//! its host is, or the path is cut — and the agent tries another console
//! at once rather than wait for QUIC's idle timeout. But a console that is
//! only behind — its machine saturated, its socket's queue seconds long
//! (BENCHMARKS.md, "The console at scale") — still acknowledges the
//! agent's heartbeats, late: the beats are on their way. Thousands of
//! agents leaving such a console at once, each with a new handshake, is
//! what would keep it behind. So while the console's acknowledgements
//! still arrive, the agent waits longer for its beats, up to
//! [`SILENCE_WHILE_ACKED`].

use std::time::Duration;

use tokio::time::Instant;

/// Silence after which a console that acknowledges nothing either is
/// taken for gone. The console beats every second, so two beats may be
/// lost; short enough that, with the default 2 s etcd lease, agents find a
/// new leader within 5 s of the old one dying (ARCHITECTURE.md, "Several
/// consoles").
pub const CONSOLE_SILENCE: Duration = Duration::from_secs(3);
/// Silence after which a console is taken for gone even though its QUIC
/// stack still acknowledges the agent's packets: it runs, but does not
/// beat (stuck, or far behind).
pub const SILENCE_WHILE_ACKED: Duration = Duration::from_secs(10);

/// What the agent last heard from its console.
#[derive(Debug)]
pub struct ConsoleSilence {
    /// The last beat or frame.
    heard: Instant,
    /// ACK frames received from the console so far, at the last check.
    acks: u64,
    /// When that count last grew.
    acked: Instant,
}

impl ConsoleSilence {
    /// A console just connected, at `now`.
    pub fn new(now: Instant) -> Self {
        Self { heard: now, acks: 0, acked: now }
    }

    /// A beat or a frame arrived at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.heard = now;
    }

    /// Given the ACK frames received on the connection so far (quinn's
    /// `frame_rx.acks`), whether the console is gone at `now`: its
    /// silence, if so.
    pub fn gone(&mut self, acks: u64, now: Instant) -> Option<Duration> {
        if acks > self.acks {
            self.acks = acks;
            self.acked = now;
        }
        let silence = now.saturating_duration_since(self.heard);
        let unacked = now.saturating_duration_since(self.acked);
        let gone = silence >= SILENCE_WHILE_ACKED || (silence >= CONSOLE_SILENCE && unacked >= CONSOLE_SILENCE);
        gone.then_some(silence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(at: Instant, secs: f64) -> Instant {
        at + Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_console_that_acknowledges_nothing_is_gone_after_three_seconds() {
        let start = Instant::now();
        let mut silence = ConsoleSilence::new(start);
        assert_eq!(silence.gone(5, secs(start, 0.5)), None);
        silence.heard(secs(start, 1.0));
        assert_eq!(silence.gone(5, secs(start, 3.5)), None, "2.5 s of silence");
        assert_eq!(silence.gone(5, secs(start, 4.0)), Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_console_still_acknowledging_gets_ten_seconds_to_beat_again() {
        let start = Instant::now();
        let mut silence = ConsoleSilence::new(start);
        // No beat after the start, but ACKs keep coming until 8 s.
        for (tick, acks) in (1..=16).zip(1..) {
            let now = secs(start, f64::from(tick) * 0.5);
            assert_eq!(silence.gone(acks, now), None, "at {tick} half-seconds");
        }
        // The ACKs stop at 8 s: gone 3 s later, at 11 s — or at 10 s of
        // silence, whichever comes first.
        assert_eq!(silence.gone(16, secs(start, 9.5)), None);
        assert_eq!(silence.gone(16, secs(start, 10.0)), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_stuck_console_is_left_after_ten_seconds_even_if_it_acknowledges() {
        let start = Instant::now();
        let mut silence = ConsoleSilence::new(start);
        let mut acks = 0;
        let mut left = None;
        for tick in 1..=40 {
            acks += 1;
            if let Some(after) = silence.gone(acks, secs(start, f64::from(tick) * 0.5)) {
                left = Some((tick, after));
                break;
            }
        }
        assert_eq!(left, Some((20, Duration::from_secs(10))));
    }
}
