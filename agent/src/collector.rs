//! Samples the host with `sysinfo` on a thread of its own (its calls block
//! on /proc), publishing plain [`MetricsSample`]s through a watch channel.
//! Nothing here knows about the network.

use std::thread;
use std::time::{Duration, Instant};

use std::sync::Arc;

use ringwatch_shared::metrics::{DiskUsage, InstanceUsage, MetricsSample, to_permille};
use sysinfo::{Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the host is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often the lists of disks and network interfaces are re-read (mounts
/// and interfaces come and go, but rarely).
const RELIST_EVERY: Duration = Duration::from_secs(30);

/// Lists the instances to sample: `(task/index, pid)`.
pub type InstancePids = Arc<dyn Fn() -> Vec<(String, u32)> + Send + Sync>;

/// Starts the sampling thread; it stops when `shutdown` is cancelled or every
/// receiver is gone. With `instances`, each sample also carries the CPU and
/// memory of those processes.
///
/// # Errors
/// When the thread cannot be spawned.
pub fn spawn(
    shutdown: CancellationToken,
    instances: Option<InstancePids>,
) -> std::io::Result<watch::Receiver<MetricsSample>> {
    let (sender, receiver) = watch::channel(MetricsSample::default());
    thread::Builder::new().name("metrics".into()).spawn(move || sample_loop(&sender, &shutdown, instances))?;
    Ok(receiver)
}

fn sample_loop(sender: &watch::Sender<MetricsSample>, shutdown: &CancellationToken, instances: Option<InstancePids>) {
    let mut sampler = Sampler::new();
    sampler.instances = instances;
    // CPU use is a difference between two reads: prime the first one.
    thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    while !shutdown.is_cancelled() && !sender.is_closed() {
        let started = Instant::now();
        sender.send_replace(sampler.sample());
        thread::sleep(SAMPLE_EVERY.saturating_sub(started.elapsed()));
    }
}

/// The sysinfo handles and the state needed for rates.
struct Sampler {
    /// CPU and memory; `None` where sysinfo cannot read this platform.
    system: Option<System>,
    /// Mounted disks.
    disks: Option<Disks>,
    /// Network interfaces.
    networks: Option<Networks>,
    /// When the network counters were last read, for bytes per second.
    last_network_read: Instant,
    /// When the disk and interface lists were last re-read.
    last_relist: Instant,
    /// The instances whose processes are sampled.
    instances: Option<InstancePids>,
}

impl Sampler {
    fn new() -> Self {
        let mut system = System::new().ok();
        if let Some(system) = system.as_mut() {
            system.refresh_cpu_usage();
        }
        Self {
            system,
            disks: Disks::new_with_refreshed_list().ok(),
            networks: Networks::new_with_refreshed_list().ok(),
            last_network_read: Instant::now(),
            last_relist: Instant::now(),
            instances: None,
        }
    }

    fn sample(&mut self) -> MetricsSample {
        let mut sample = MetricsSample {
            uptime_secs: System::uptime().unwrap_or_default(),
            load_centi: System::load_average()
                .map(|load| [load.one, load.five, load.fifteen].map(hundredths))
                .unwrap_or_default(),
            ..MetricsSample::default()
        };
        let relist = self.last_relist.elapsed() >= RELIST_EVERY;
        if relist {
            self.last_relist = Instant::now();
        }
        if let Some(system) = self.system.as_mut() {
            system.refresh_cpu_usage();
            system.refresh_memory();
            sample.cpu_permille = to_permille(f64::from(system.global_cpu_usage()) / 100.0);
            sample.core_permille =
                system.cpus().iter().map(|cpu| to_permille(f64::from(cpu.usage()) / 100.0)).collect();
            sample.mem_total_bytes = system.total_memory();
            sample.mem_used_bytes = system.used_memory();
            sample.swap_total_bytes = system.total_swap();
            sample.swap_used_bytes = system.used_swap();
            if let Some(instances) = &self.instances {
                sample.instances = instance_usage(system, &instances());
            }
        }
        if let Some(disks) = self.disks.as_mut() {
            disks.refresh(relist);
            sample.disks = disks
                .iter()
                .filter(|disk| disk.total_space() > 0)
                .map(|disk| DiskUsage {
                    mount: disk.mount_point().to_string_lossy().into_owned(),
                    used_bytes: disk.total_space().saturating_sub(disk.available_space()),
                    total_bytes: disk.total_space(),
                })
                .collect();
        }
        if let Some(networks) = self.networks.as_mut() {
            networks.refresh(relist);
            let seconds = self.last_network_read.elapsed().as_secs_f64().max(0.001);
            self.last_network_read = Instant::now();
            let (rx, tx) = networks
                .iter()
                .filter(|(name, _)| name.to_str() != Some("lo"))
                .fold((0u64, 0u64), |(rx, tx), (_, data)| (rx + data.received(), tx + data.transmitted()));
            sample.net_rx_bytes_per_sec = per_second(rx, seconds);
            sample.net_tx_bytes_per_sec = per_second(tx, seconds);
        }
        sample
    }
}

/// CPU (per mille of one core) and RSS of each instance's process. CPU use
/// is a difference between two refreshes, so an instance's first sample
/// shows 0.
fn instance_usage(system: &mut System, instances: &[(String, u32)]) -> Vec<InstanceUsage> {
    let pids: Vec<Pid> = instances.iter().map(|(_, pid)| Pid::from_u32(*pid)).collect();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing().with_cpu().with_memory(),
    );
    instances
        .iter()
        .filter_map(|(instance, pid)| {
            let process = system.process(Pid::from_u32(*pid))?;
            Some(InstanceUsage {
                instance: instance.clone(),
                // Per mille of one core; a process on many cores exceeds 1000,
                // clamped to what the field holds.
                cpu_permille: u16::try_from((f64::from(process.cpu_usage()) * 10.0).round() as u64).unwrap_or(u16::MAX),
                rss_bytes: process.memory(),
            })
        })
        .collect()
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped first
fn hundredths(value: f64) -> u32 {
    (value.clamp(0.0, f64::from(u32::MAX) / 100.0) * 100.0).round() as u32
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)] // rates fit
fn per_second(bytes: u64, seconds: f64) -> u64 {
    (bytes as f64 / seconds).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_of_this_host_has_memory_and_cores() {
        let mut sampler = Sampler::new();
        thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let sample = sampler.sample();
        assert!(sample.mem_total_bytes > 0);
        assert!(sample.mem_used_bytes <= sample.mem_total_bytes);
        assert!(!sample.core_permille.is_empty());
        assert!(sample.cpu_permille <= 1000);
        assert!(sample.uptime_secs > 0);
    }

    #[test]
    fn instance_usage_reads_a_child_process() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut system = System::new().unwrap();
        let usage = instance_usage(&mut system, &[("web/0".into(), child.id())]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].instance, "web/0");
        assert!(usage[0].rss_bytes > 0);
    }

    #[test]
    fn hundredths_round_and_clamp() {
        assert_eq!(hundredths(1.234), 123);
        assert_eq!(hundredths(-1.0), 0);
    }
}
