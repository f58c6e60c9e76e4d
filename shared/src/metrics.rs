//! The resource sample an agent reports about its host.
//!
//! Fractions travel as per-mille integers and loads as hundredths: they are
//! exact, compact under postcard's varints, and precise enough for a console.

use serde::{Deserialize, Serialize};

/// One full sample of a host's resource use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSample {
    /// Seconds since the host booted.
    pub uptime_secs: u64,
    /// Total CPU use over all cores, 0..=1000 per mille.
    pub cpu_permille: u16,
    /// CPU use of each core, 0..=1000 per mille.
    pub core_permille: Vec<u16>,
    /// Load averages over 1, 5 and 15 minutes, times 100.
    pub load_centi: [u32; 3],
    /// Memory in use, in bytes.
    pub mem_used_bytes: u64,
    /// Memory installed, in bytes.
    pub mem_total_bytes: u64,
    /// Swap in use, in bytes.
    pub swap_used_bytes: u64,
    /// Swap configured, in bytes.
    pub swap_total_bytes: u64,
    /// Every mounted disk the agent watches.
    pub disks: Vec<DiskUsage>,
    /// Bytes received per second over all interfaces but loopback.
    pub net_rx_bytes_per_sec: u64,
    /// Bytes sent per second over all interfaces but loopback.
    pub net_tx_bytes_per_sec: u64,
    /// Resource use of each instance the agent runs.
    pub instances: Vec<InstanceUsage>,
}

/// Resource use of one instance (its process).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceUsage {
    /// `task/index`.
    pub instance: String,
    /// CPU use, per mille of one core.
    pub cpu_permille: u16,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// Space used on one mounted file system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Where it is mounted, e.g. `/`.
    pub mount: String,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Size in bytes.
    pub total_bytes: u64,
}

/// Most cores a sample may list.
pub const MAX_CORES: usize = 1024;
/// Most disks a sample may list.
pub const MAX_DISKS: usize = 64;
/// Most instances a sample may list.
pub const MAX_INSTANCES: usize = 4096;
/// Longest mount point or instance id kept.
pub const MAX_LABEL_LEN: usize = 256;

impl MetricsSample {
    /// The sample cut to what a console keeps: a bounded number of cores,
    /// disks and instances, bounded labels, fractions within range. An
    /// agent's sample is input, and input is never trusted to be small.
    #[must_use]
    pub fn bounded(mut self) -> Self {
        self.cpu_permille = self.cpu_permille.min(1000);
        self.core_permille.truncate(MAX_CORES);
        for core in &mut self.core_permille {
            *core = (*core).min(1000);
        }
        self.disks.truncate(MAX_DISKS);
        for disk in &mut self.disks {
            truncate_label(&mut disk.mount);
        }
        self.instances.truncate(MAX_INSTANCES);
        for instance in &mut self.instances {
            truncate_label(&mut instance.instance);
        }
        self
    }

    /// Total CPU use in percent.
    pub fn cpu_percent(&self) -> f64 {
        f64::from(self.cpu_permille) / 10.0
    }

    /// Memory in use, in percent of installed memory (0 when unknown).
    pub fn mem_percent(&self) -> f64 {
        percent(self.mem_used_bytes, self.mem_total_bytes)
    }

    /// Load averages as plain numbers.
    pub fn load(&self) -> [f64; 3] {
        self.load_centi.map(|centi| f64::from(centi) / 100.0)
    }
}

fn truncate_label(label: &mut String) {
    if label.len() > MAX_LABEL_LEN {
        let mut cut = MAX_LABEL_LEN;
        while !label.is_char_boundary(cut) {
            cut -= 1;
        }
        label.truncate(cut);
    }
}

impl DiskUsage {
    /// Space in use, in percent of the disk's size (0 when unknown).
    pub fn used_percent(&self) -> f64 {
        percent(self.used_bytes, self.total_bytes)
    }
}

/// Converts a fraction in `0.0..=1.0` (clamped) to per mille.
pub fn to_permille(fraction: f64) -> u16 {
    if fraction.is_nan() {
        return 0;
    }
    // Clamped to 0..=1000 first, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let permille = (fraction.clamp(0.0, 1.0) * 1000.0).round() as u16;
    permille
}

#[allow(clippy::cast_precision_loss)] // percentages need no 53-bit precision
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permille_is_clamped_and_rounded() {
        assert_eq!(to_permille(0.5), 500);
        assert_eq!(to_permille(0.12345), 123);
        assert_eq!(to_permille(1.7), 1000);
        assert_eq!(to_permille(-1.0), 0);
        assert_eq!(to_permille(f64::NAN), 0);
    }

    #[test]
    fn percentages_survive_unknown_totals() {
        let sample = MetricsSample::default();
        assert_eq!(sample.mem_percent(), 0.0);
        let disk = DiskUsage { mount: "/".into(), used_bytes: 50, total_bytes: 200 };
        assert_eq!(disk.used_percent(), 25.0);
    }
}
