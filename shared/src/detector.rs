//! The phi-accrual failure detector (Hayashibara et al., 2004), per node.
//!
//! Instead of a yes/no timeout, the detector keeps a window of heartbeat
//! inter-arrival times and reports `phi = -log10(P(a heartbeat arrives later
//! than now))` under a normal distribution fitted to the window. A node is
//! suspect at phi ≥ 5 and failed at phi ≥ 8 by default; a hard ceiling on
//! silence catches the case where a noisy history makes phi too tolerant.
//!
//! The normal CDF uses the logistic approximation Akka uses
//! (`1 / (1 + e^(-y(1.5976 + 0.070566 y²)))`, error < 1.4e-4), evaluated in
//! log space so that phi never overflows to infinity.
//!
//! Time is passed in: nothing here reads the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Detector thresholds; the defaults suit 500 ms heartbeats on a LAN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// phi at or above which a node is suspect.
    pub suspect_phi: f64,
    /// phi at or above which a node is failed.
    pub failed_phi: f64,
    /// Silence after which a node is failed whatever phi says.
    #[serde(with = "crate::duration::serde_text")]
    pub max_silence: Duration,
    /// Floor of the standard deviation, so a perfectly regular history does
    /// not make one late heartbeat look like a death.
    #[serde(with = "crate::duration::serde_text")]
    pub min_std_dev: Duration,
    /// Extra delay added to the mean: a lost datagram or a short stall is
    /// expected, not evidence.
    #[serde(with = "crate::duration::serde_text")]
    pub acceptable_pause: Duration,
    /// How many inter-arrival times the window keeps.
    pub window: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            suspect_phi: 5.0,
            failed_phi: 8.0,
            max_silence: Duration::from_secs(5),
            min_std_dev: Duration::from_millis(150),
            acceptable_pause: Duration::from_millis(200),
            window: 100,
        }
    }
}

impl DetectorConfig {
    /// Checks that the thresholds make sense: a config file is input too.
    ///
    /// # Errors
    /// A sentence naming the key and its bounds.
    pub fn validate(&self) -> Result<(), String> {
        let phi_ok = |value: f64| value.is_finite() && value > 0.0 && value <= 1_000.0;
        if !phi_ok(self.suspect_phi) || !phi_ok(self.failed_phi) || self.suspect_phi >= self.failed_phi {
            return Err(format!(
                "detector: suspect_phi ({}) and failed_phi ({}) must be above 0, at most 1000, and suspect_phi below failed_phi",
                self.suspect_phi, self.failed_phi
            ));
        }
        let within = |key: &str, value: Duration, low: Duration, high: Duration| {
            if value < low || value > high {
                Err(format!("detector: {key} must be between {low:?} and {high:?}, not {value:?}"))
            } else {
                Ok(())
            }
        };
        within("max_silence", self.max_silence, Duration::from_millis(100), Duration::from_secs(3_600))?;
        within("min_std_dev", self.min_std_dev, Duration::from_millis(1), Duration::from_secs(60))?;
        within("acceptable_pause", self.acceptable_pause, Duration::ZERO, Duration::from_secs(60))?;
        if !(2..=10_000).contains(&self.window) {
            return Err(format!("detector: window must be between 2 and 10000, not {}", self.window));
        }
        Ok(())
    }
}

/// What the detector concludes about a node at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Heartbeats arrive as expected.
    Alive,
    /// Heartbeats are late enough to doubt the node.
    Suspect,
    /// Heartbeats are so late the node is taken for dead.
    Failed,
}

/// Heartbeat history of one node.
#[derive(Debug, Clone)]
pub struct PhiDetector {
    /// Thresholds.
    config: DetectorConfig,
    /// Recent inter-arrival times in milliseconds, oldest first.
    intervals: VecDeque<f64>,
    /// Running sum of `intervals`, for an O(1) mean.
    sum: f64,
    /// Running sum of squares of `intervals`, for an O(1) variance.
    sum_sq: f64,
    /// When the last heartbeat arrived (or the silence clock restarted).
    last_arrival: Instant,
    /// After our own process was paused the next interval measures the pause,
    /// not the node, so it is not learnt.
    skip_next_interval: bool,
}

impl PhiDetector {
    /// A detector for a node that announced heartbeats every
    /// `expected_interval`, first heard at `now`.
    ///
    /// The window starts with two samples around the expected interval
    /// (± a quarter), so a new node is judged sensibly from its first second.
    pub fn new(config: DetectorConfig, expected_interval: Duration, now: Instant) -> Self {
        let mean = millis(expected_interval);
        let spread = mean / 4.0;
        let mut detector = Self {
            config,
            intervals: VecDeque::new(),
            sum: 0.0,
            sum_sq: 0.0,
            last_arrival: now,
            skip_next_interval: false,
        };
        detector.learn(mean - spread);
        detector.learn(mean + spread);
        detector
    }

    /// Records a heartbeat that arrived at `now`.
    pub fn heartbeat(&mut self, now: Instant) {
        let interval = now.saturating_duration_since(self.last_arrival);
        self.last_arrival = now;
        if std::mem::take(&mut self.skip_next_interval) {
            return;
        }
        self.learn(millis(interval));
    }

    /// Forgets the silence up to `now`: our own process was paused, so the
    /// gap says nothing about the node.
    pub fn forgive(&mut self, now: Instant) {
        self.last_arrival = self.last_arrival.max(now);
        self.skip_next_interval = true;
    }

    /// How long the node has been silent at `now`.
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_arrival)
    }

    /// The suspicion level at `now`.
    pub fn phi(&self, now: Instant) -> f64 {
        let count = self.intervals.len() as f64;
        let mean = self.sum / count;
        let variance = (self.sum_sq / count - mean * mean).max(0.0);
        let std_dev = variance.sqrt().max(millis(self.config.min_std_dev));
        phi(millis(self.silence(now)), mean + millis(self.config.acceptable_pause), std_dev)
    }

    /// The verdict at `now`, with the phi it rests on.
    pub fn verdict(&self, now: Instant) -> (Verdict, f64) {
        let phi = self.phi(now);
        let verdict = if phi >= self.config.failed_phi || self.silence(now) >= self.config.max_silence {
            Verdict::Failed
        } else if phi >= self.config.suspect_phi {
            Verdict::Suspect
        } else {
            Verdict::Alive
        };
        (verdict, phi)
    }

    /// The mean inter-arrival time the window holds.
    pub fn mean_interval(&self) -> Duration {
        Duration::from_secs_f64(self.sum / self.intervals.len() as f64 / 1000.0)
    }

    fn learn(&mut self, interval_ms: f64) {
        if self.intervals.len() >= self.config.window.max(2)
            && let Some(oldest) = self.intervals.pop_front()
        {
            self.sum -= oldest;
            self.sum_sq -= oldest * oldest;
        }
        self.intervals.push_back(interval_ms);
        self.sum += interval_ms;
        self.sum_sq += interval_ms * interval_ms;
    }
}

/// phi for a silence of `elapsed_ms` under a normal distribution of
/// inter-arrival times with `mean_ms` and `std_dev_ms`.
///
/// `-log10(1 - F(elapsed))` with the logistic approximation of `F`; written as
/// `softplus(z) / ln 10` it is exact in floating point for any silence.
pub fn phi(elapsed_ms: f64, mean_ms: f64, std_dev_ms: f64) -> f64 {
    let y = (elapsed_ms - mean_ms) / std_dev_ms;
    let z = y * (1.5976 + 0.070566 * y * y);
    let softplus = z.max(0.0) + (-z.abs()).exp().ln_1p();
    softplus / std::f64::consts::LN_10
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() < 1e-3
    }

    // Hand-computed: y = (elapsed - mean) / sd; z = y (1.5976 + 0.070566 y²);
    // phi = log10(1 + e^z).
    #[test]
    fn nonsense_thresholds_are_refused() {
        assert_eq!(DetectorConfig::default().validate(), Ok(()));
        let swapped = DetectorConfig { suspect_phi: 9.0, failed_phi: 8.0, ..DetectorConfig::default() };
        assert!(swapped.validate().unwrap_err().contains("suspect_phi"));
        let nan = DetectorConfig { failed_phi: f64::NAN, ..DetectorConfig::default() };
        assert!(nan.validate().is_err());
        let flat = DetectorConfig { min_std_dev: Duration::ZERO, ..DetectorConfig::default() };
        assert!(flat.validate().unwrap_err().contains("min_std_dev"));
        let forever = DetectorConfig { max_silence: Duration::from_secs(u64::MAX), ..DetectorConfig::default() };
        assert!(forever.validate().unwrap_err().contains("max_silence"));
        let tiny = DetectorConfig { window: 0, ..DetectorConfig::default() };
        assert!(tiny.validate().is_err());
    }

    #[test]
    fn phi_matches_hand_computed_values() {
        // At the mean: y = 0, z = 0, phi = log10(2).
        assert!(close(phi(500.0, 500.0, 100.0), std::f64::consts::LOG10_2));
        // y = 1: z = 1.668166, phi = log10(1 + 5.302180) = 0.799508.
        assert!(close(phi(600.0, 500.0, 100.0), 0.799508), "{}", phi(600.0, 500.0, 100.0));
        // y = 2: z = 3.759728, phi = log10(1 + 42.94113) = 1.642828.
        assert!(close(phi(700.0, 500.0, 100.0), 1.642828), "{}", phi(700.0, 500.0, 100.0));
        // y = 5: z = 16.80875; phi = z / ln10 + log10(1 + e^-z) = 7.299947.
        assert!(close(phi(1000.0, 500.0, 100.0), 7.299947), "{}", phi(1000.0, 500.0, 100.0));
        // y = -1: z = -1.668166, phi = log10(1 + 0.188602) = 0.075033.
        assert!(close(phi(400.0, 500.0, 100.0), 0.075033), "{}", phi(400.0, 500.0, 100.0));
    }

    #[test]
    fn phi_stays_finite_for_any_silence() {
        let value = phi(1e9, 500.0, 1.0);
        assert!(value.is_finite() && value > 1e6);
        assert!(phi(0.0, 500.0, 1.0) >= 0.0);
    }

    #[test]
    fn phi_grows_with_silence() {
        let mut previous = -1.0;
        for elapsed in (0..5000).step_by(50) {
            let value = phi(f64::from(elapsed), 500.0, 100.0);
            assert!(value > previous);
            previous = value;
        }
    }

    fn regular(config: DetectorConfig, beats: u32) -> (PhiDetector, Instant) {
        let start = Instant::now();
        let every = Duration::from_millis(500);
        let mut detector = PhiDetector::new(config, every, start);
        let mut now = start;
        for _ in 0..beats {
            now += every;
            detector.heartbeat(now);
        }
        (detector, now)
    }

    #[test]
    fn regular_heartbeats_keep_a_node_alive() {
        let (detector, last) = regular(DetectorConfig::default(), 50);
        let (verdict, phi) = detector.verdict(last + Duration::from_millis(500));
        assert_eq!(verdict, Verdict::Alive);
        // mean 500 + pause 200, sd floored at 150: y = -4/3 at 500 ms.
        assert!(phi < 0.1, "{phi}");
    }

    #[test]
    fn default_thresholds_suspect_then_fail_a_silent_node() {
        // With a regular 500 ms history the effective mean is 700 ms and the
        // sd 150 ms: phi 5 is reached at y ≈ 4.12 (≈ 1318 ms) and phi 8 at
        // y ≈ 5.22 (≈ 1483 ms).
        let (detector, last) = regular(DetectorConfig::default(), 50);
        assert_eq!(detector.verdict(last + Duration::from_millis(1000)).0, Verdict::Alive);
        assert_eq!(detector.verdict(last + Duration::from_millis(1400)).0, Verdict::Suspect);
        assert_eq!(detector.verdict(last + Duration::from_millis(1500)).0, Verdict::Failed);
    }

    #[test]
    fn hard_ceiling_fails_a_node_whatever_phi_says() {
        let config = DetectorConfig {
            failed_phi: 1e9,
            suspect_phi: 1e9,
            max_silence: Duration::from_secs(2),
            ..DetectorConfig::default()
        };
        let (detector, last) = regular(config, 10);
        assert_eq!(detector.verdict(last + Duration::from_millis(1999)).0, Verdict::Alive);
        assert_eq!(detector.verdict(last + Duration::from_secs(2)).0, Verdict::Failed);
    }

    #[test]
    fn one_lost_heartbeat_is_not_a_suspicion() {
        let (detector, last) = regular(DetectorConfig::default(), 50);
        // The next heartbeat was lost; the one after is due at +1000 ms.
        assert_eq!(detector.verdict(last + Duration::from_millis(1050)).0, Verdict::Alive);
    }

    #[test]
    fn forgiving_our_own_pause_restarts_the_silence_clock_without_learning_it() {
        let (mut detector, last) = regular(DetectorConfig::default(), 50);
        let resumed = last + Duration::from_secs(30);
        assert_eq!(detector.verdict(resumed).0, Verdict::Failed);
        detector.forgive(resumed);
        assert_eq!(detector.verdict(resumed).0, Verdict::Alive);
        let mean_before = detector.mean_interval();
        detector.heartbeat(resumed + Duration::from_millis(5));
        assert_eq!(detector.mean_interval(), mean_before, "the pause must not be learnt");
    }

    #[test]
    fn window_forgets_old_intervals() {
        let config = DetectorConfig { window: 10, ..DetectorConfig::default() };
        let start = Instant::now();
        let mut detector = PhiDetector::new(config, Duration::from_secs(5), start);
        let mut now = start;
        for _ in 0..20 {
            now += Duration::from_millis(100);
            detector.heartbeat(now);
        }
        let mean = detector.mean_interval().as_secs_f64();
        assert!((mean - 0.1).abs() < 1e-9, "{mean}");
    }

    #[test]
    fn jitter_of_200ms_is_tolerated() {
        // Intervals alternate 300 ms / 700 ms: the worst case of ±200 ms.
        let start = Instant::now();
        let mut detector = PhiDetector::new(DetectorConfig::default(), Duration::from_millis(500), start);
        let mut now = start;
        for beat in 0..100 {
            now += Duration::from_millis(if beat % 2 == 0 { 300 } else { 700 });
            detector.heartbeat(now);
        }
        assert_eq!(detector.verdict(now + Duration::from_millis(700)).0, Verdict::Alive);
    }
}
