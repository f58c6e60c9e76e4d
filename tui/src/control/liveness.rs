//! A connected node's heartbeat and resource state: the hot path.
//!
//! Heartbeats (two a second per agent) and metrics samples (one a second)
//! are the bulk of what a console receives. Each connection task writes them
//! into its node's own [`Liveness`] — a mutex per node, never a global lock,
//! and never a message to the owner — and the owner's detection tick reads
//! every node's [`Reading`] (ARCHITECTURE.md, "The hot path").

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ringwatch_shared::detector::{DetectorConfig, PhiDetector, Verdict};
use ringwatch_shared::limits::{LimitWatch, ResourceLimits};
use ringwatch_shared::metrics::MetricsSample;
use ringwatch_shared::protocol::Heartbeat;

/// One connection's view of its node's health.
#[derive(Debug)]
pub struct Liveness {
    /// Held for a few arithmetic operations at a time, by the node's own
    /// connection task or by the owner's tick.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Heartbeat history.
    detector: PhiDetector,
    /// When the node was last heard from (hello or heartbeat).
    last_heard: Instant,
    /// Heartbeats counted on this connection: a node leaves `failed` only
    /// when this grows, never because our own pause was forgiven.
    beats: u64,
    /// Last heartbeat sequence number.
    last_seq: u64,
    /// Heartbeats missing from the sequence.
    heartbeats_lost: u64,
    /// CPU and memory per mille from the latest heartbeat.
    quick: Option<(u16, u16)>,
    /// The latest full sample (shared with snapshots without a copy).
    metrics: Option<Arc<MetricsSample>>,
    /// Resource-limit tracking.
    limits: LimitWatch,
    /// Why the node is over its limits, if it is.
    over_limit: Option<String>,
    /// The connection's round-trip time as QUIC last estimated it.
    rtt: Option<Duration>,
}

/// What the owner reads of a node at a tick.
#[derive(Debug, Clone)]
pub struct Reading {
    /// The detector's verdict.
    pub verdict: Verdict,
    /// The phi it rests on.
    pub phi: f64,
    /// Silence so far.
    pub silence: Duration,
    /// When the node was last heard from.
    pub last_heard: Instant,
    /// Heartbeats received on this connection.
    pub beats: u64,
    /// Heartbeats lost on this connection.
    pub heartbeats_lost: u64,
    /// CPU and memory per mille from the latest heartbeat.
    pub quick: Option<(u16, u16)>,
    /// Why the node is over its resource limits, if it is.
    pub over_limit: Option<String>,
    /// The connection's round-trip time at the last heartbeat.
    pub rtt: Option<Duration>,
}

impl Liveness {
    /// A node that said hello at `now`, announcing heartbeats every
    /// `interval`.
    pub fn new(config: DetectorConfig, interval: Duration, now: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                detector: PhiDetector::new(config, interval, now),
                last_heard: now,
                beats: 0,
                last_seq: 0,
                heartbeats_lost: 0,
                quick: None,
                metrics: None,
                limits: LimitWatch::default(),
                over_limit: None,
                rtt: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a handful of assignments: a panic elsewhere cannot
        // leave the state half-written in a way that matters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A heartbeat arrived at `now` on a connection whose round-trip time
    /// QUIC estimates at `rtt` (smoothed over its acknowledgements).
    /// Duplicates and reordered ones teach nothing and are ignored.
    /// Returns how many heartbeats its sequence number says were lost
    /// since the previous one.
    pub fn heartbeat(&self, beat: &Heartbeat, now: Instant, rtt: Duration) -> u64 {
        let mut state = self.lock();
        state.rtt = Some(rtt);
        if beat.seq <= state.last_seq {
            return 0;
        }
        let lost = beat.seq - state.last_seq - 1;
        state.heartbeats_lost = state.heartbeats_lost.saturating_add(lost);
        state.last_seq = beat.seq;
        state.last_heard = now;
        state.beats += 1;
        state.quick = Some((beat.cpu_permille.min(1000), beat.mem_permille.min(1000)));
        state.detector.heartbeat(now);
        lost
    }

    /// A full metrics sample arrived at `now`.
    pub fn metrics(&self, limits: &ResourceLimits, sample: MetricsSample, now: Instant) {
        let sample = sample.bounded();
        let mut state = self.lock();
        state.over_limit = state.limits.observe(limits, &sample, now);
        state.metrics = Some(Arc::new(sample));
    }

    /// Our own process was paused until `now`: the silence it caused says
    /// nothing about the node.
    pub fn forgive(&self, now: Instant) {
        self.lock().detector.forgive(now);
    }

    /// The node's health at `now`.
    pub fn read(&self, now: Instant) -> Reading {
        let state = self.lock();
        let (verdict, phi) = state.detector.verdict(now);
        Reading {
            verdict,
            phi,
            silence: state.detector.silence(now),
            last_heard: state.last_heard,
            beats: state.beats,
            heartbeats_lost: state.heartbeats_lost,
            quick: state.quick,
            over_limit: state.over_limit.clone(),
            rtt: state.rtt,
        }
    }

    /// The latest full sample, if one arrived.
    pub fn sample(&self) -> Option<Arc<MetricsSample>> {
        self.lock().metrics.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round-trip time for heartbeats in these tests.
    const RTT: Duration = Duration::from_millis(1);

    fn beat(seq: u64) -> Heartbeat {
        Heartbeat { seq, cpu_permille: 100, mem_permille: 200 }
    }

    #[test]
    fn gaps_count_as_lost_and_duplicates_teach_nothing() {
        let now = Instant::now();
        let liveness = Liveness::new(DetectorConfig::default(), Duration::from_millis(500), now);
        assert_eq!(liveness.heartbeat(&beat(1), now, RTT), 0);
        assert_eq!(liveness.heartbeat(&beat(4), now, RTT), 2);
        assert_eq!(liveness.heartbeat(&beat(3), now, RTT), 0);
        let reading = liveness.read(now);
        assert_eq!((reading.beats, reading.heartbeats_lost), (2, 2));
    }

    #[test]
    fn forgiving_does_not_count_as_a_heartbeat() {
        let now = Instant::now();
        let liveness = Liveness::new(DetectorConfig::default(), Duration::from_millis(500), now);
        let later = now + Duration::from_secs(30);
        assert_eq!(liveness.read(later).verdict, Verdict::Failed);
        liveness.forgive(later);
        let reading = liveness.read(later);
        assert_eq!(reading.verdict, Verdict::Alive);
        assert_eq!(reading.beats, 0, "a forgiven silence is not a sign of life");
    }
}
