//! Resource limits: a node over them is `degraded`. It keeps its work but
//! receives no new placements (DESIGN §4).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::MetricsSample;

/// Thresholds, in percent; CPU must stay high for `cpu_for` to count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// CPU use that counts as overloaded, when sustained.
    pub cpu_percent: f64,
    /// How long CPU use must stay at or above `cpu_percent`.
    #[serde(with = "crate::duration::serde_text")]
    pub cpu_for: Duration,
    /// Memory use that counts as overloaded.
    pub mem_percent: f64,
    /// Disk use, of any disk, that counts as overloaded.
    pub disk_percent: f64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self { cpu_percent: 95.0, cpu_for: Duration::from_secs(30), mem_percent: 95.0, disk_percent: 95.0 }
    }
}

impl ResourceLimits {
    /// Checks that the limits make sense.
    ///
    /// # Errors
    /// A sentence naming the key and its bounds.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in
            [("cpu_percent", self.cpu_percent), ("mem_percent", self.mem_percent), ("disk_percent", self.disk_percent)]
        {
            // Above 100 can never be reached: a way to switch a limit off.
            if !value.is_finite() || value <= 0.0 || value > 1_000.0 {
                return Err(format!("limits: {key} must be above 0 (a value above 100 switches it off), not {value}"));
            }
        }
        if self.cpu_for > Duration::from_secs(86_400) {
            return Err(format!("limits: cpu_for must be at most 1 day, not {:?}", self.cpu_for));
        }
        Ok(())
    }
}

/// Tracks one node's samples against the limits.
#[derive(Debug, Clone, Default)]
pub struct LimitWatch {
    /// When CPU use last rose to the limit and stayed there.
    cpu_high_since: Option<Instant>,
}

impl LimitWatch {
    /// Feeds a sample taken at `now`; returns why the node is over its
    /// limits, or `None` when it is within them.
    pub fn observe(&mut self, limits: &ResourceLimits, sample: &MetricsSample, now: Instant) -> Option<String> {
        if sample.cpu_percent() >= limits.cpu_percent {
            let since = *self.cpu_high_since.get_or_insert(now);
            let held = now.saturating_duration_since(since);
            if held >= limits.cpu_for {
                return Some(format!(
                    "CPU {:.0}% ≥ {:.0}% for {}s",
                    sample.cpu_percent(),
                    limits.cpu_percent,
                    held.as_secs()
                ));
            }
        } else {
            self.cpu_high_since = None;
        }
        if sample.mem_percent() >= limits.mem_percent {
            return Some(format!("memory {:.0}% ≥ {:.0}%", sample.mem_percent(), limits.mem_percent));
        }
        sample
            .disks
            .iter()
            .find(|disk| disk.used_percent() >= limits.disk_percent)
            .map(|disk| format!("disk \"{}\" {:.0}% ≥ {:.0}%", disk.mount, disk.used_percent(), limits.disk_percent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::DiskUsage;

    fn sample(cpu_permille: u16, mem_used: u64, disk_used: u64) -> MetricsSample {
        MetricsSample {
            cpu_permille,
            mem_used_bytes: mem_used,
            mem_total_bytes: 100,
            disks: vec![DiskUsage { mount: "/".into(), used_bytes: disk_used, total_bytes: 100 }],
            ..MetricsSample::default()
        }
    }

    #[test]
    fn cpu_must_stay_high_for_the_whole_period() {
        let limits = ResourceLimits::default();
        let mut watch = LimitWatch::default();
        let start = Instant::now();
        assert_eq!(watch.observe(&limits, &sample(990, 10, 10), start), None);
        assert_eq!(watch.observe(&limits, &sample(990, 10, 10), start + Duration::from_secs(29)), None);
        let reason = watch.observe(&limits, &sample(990, 10, 10), start + Duration::from_secs(30));
        assert!(reason.unwrap().starts_with("CPU 99%"));
        // A dip resets the clock.
        assert_eq!(watch.observe(&limits, &sample(100, 10, 10), start + Duration::from_secs(31)), None);
        assert_eq!(watch.observe(&limits, &sample(990, 10, 10), start + Duration::from_secs(32)), None);
    }

    #[test]
    fn memory_and_disk_count_at_once() {
        let limits = ResourceLimits::default();
        let mut watch = LimitWatch::default();
        let now = Instant::now();
        assert!(watch.observe(&limits, &sample(0, 96, 10), now).unwrap().starts_with("memory 96%"));
        assert!(watch.observe(&limits, &sample(0, 10, 95), now).unwrap().starts_with("disk \"/\" 95%"));
    }
}
