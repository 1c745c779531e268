//! Live GPU readings for the sampler. Per vendor, the cheapest source found at start:
//! NVIDIA through NVML, else `nvidia-smi`; AMD through sysfs, else `rocm-smi`.
//!
//! The smi tools cost tens of milliseconds per run and can hang on a GPU in a bad state,
//! so they run on their own poller thread once a second; a tick takes the latest
//! reading, and a reading older than [`SMI_STALE`] counts as absent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;

use super::{amd_sysfs, nvidia_smi, nvml, rocm_smi, GpuInfo};

const SMI_PERIOD: Duration = Duration::from_secs(1);
pub const SMI_STALE: Duration = Duration::from_secs(3);

type SmiRun = fn() -> Option<Vec<GpuInfo>>;
type Latest = Arc<Mutex<Option<(Instant, Vec<GpuInfo>)>>>;

enum GpuSource {
    Nvml(&'static Nvml),
    AmdSysfs(Vec<PathBuf>),
    Smi(SmiPoller),
}

impl GpuSource {
    fn read(&mut self, out: &mut Vec<GpuInfo>) {
        match self {
            GpuSource::Nvml(nvml) => out.extend(nvml::gpus(nvml, false)),
            GpuSource::AmdSysfs(cards) => out.extend(cards.iter().map(|c| amd_sysfs::read_card(c))),
            GpuSource::Smi(poller) => out.extend(poller.latest()),
        }
    }
}

/// Runs an smi tool once a second on its own thread. The thread ends within a period
/// of the poller being dropped (it is not joined: a hung tool must not block `stop`).
struct SmiPoller {
    latest: Latest,
    stop: Arc<AtomicBool>,
}

impl SmiPoller {
    /// Starts the poller thread. Its first run decides: a tool that is missing or reports
    /// no GPU ends the thread and the poller reads nothing. Nothing here waits for the
    /// tool, so a sampler's first tick is never delayed by it.
    fn start(run: SmiRun) -> Option<Self> {
        let latest: Latest = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_latest, thread_stop) = (Arc::clone(&latest), Arc::clone(&stop));
        let spawned = std::thread::Builder::new()
            .name("ozone-smi-poller".into())
            .spawn(move || {
                let Some(first) = run().filter(|g| !g.is_empty()) else {
                    return;
                };
                let mut gpus = first;
                loop {
                    if let Ok(mut latest) = thread_latest.lock() {
                        *latest = Some((Instant::now(), gpus));
                    }
                    std::thread::sleep(SMI_PERIOD);
                    if thread_stop.load(Ordering::Relaxed) {
                        break;
                    }
                    gpus = run().unwrap_or_default();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!("cannot start the GPU tool poller, no GPU readings: {error}");
            return None;
        }
        Some(Self { latest, stop })
    }

    fn latest(&self) -> Vec<GpuInfo> {
        match self.latest.lock().as_deref() {
            Ok(Some((at, gpus))) if at.elapsed() <= SMI_STALE => gpus.clone(),
            _ => Vec::new(),
        }
    }
}

impl Drop for SmiPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every GPU source found on this machine.
pub struct GpuMonitor {
    sources: Vec<GpuSource>,
}

impl GpuMonitor {
    pub fn detect(sysfs_root: &Path) -> Self {
        let mut sources = Vec::new();
        let nvidia = nvml::shared()
            .filter(|n| n.device_count().is_ok_and(|c| c > 0))
            .map(GpuSource::Nvml)
            .or_else(|| SmiPoller::start(nvidia_smi::run).map(GpuSource::Smi));
        sources.extend(nvidia);
        let cards = amd_sysfs::cards(sysfs_root);
        if cards.is_empty() {
            sources.extend(SmiPoller::start(rocm_smi::run).map(GpuSource::Smi));
        } else {
            sources.push(GpuSource::AmdSysfs(cards));
        }
        Self { sources }
    }

    /// Reads AMD cards from sysfs only (fixture trees).
    #[cfg(test)]
    pub fn amd_sysfs_only(sysfs_root: &Path) -> Self {
        Self {
            sources: vec![GpuSource::AmdSysfs(amd_sysfs::cards(sysfs_root))],
        }
    }

    pub fn read(&mut self) -> Vec<GpuInfo> {
        let mut gpus = Vec::new();
        for source in &mut self.sources {
            source.read(&mut gpus);
        }
        gpus
    }
}

/// Totals over all GPUs: usable memory used and total, and the hottest temperature.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuTotals {
    pub used_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
    pub hottest_c: Option<f64>,
}

pub fn totals(gpus: &[GpuInfo]) -> GpuTotals {
    let sum = |f: fn(&GpuInfo) -> Option<u64>| {
        gpus.iter()
            .filter_map(f)
            .fold(None, |acc: Option<u64>, v| Some(acc.unwrap_or(0) + v))
    };
    GpuTotals {
        used_bytes: sum(GpuInfo::usable_used_bytes),
        total_bytes: sum(GpuInfo::usable_total_bytes),
        hottest_c: gpus
            .iter()
            .filter_map(|g| g.temperature_c.map(|t| t.value))
            .fold(None, |acc: Option<f64>, t| {
                Some(acc.map_or(t, |a| a.max(t)))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hardware/sysfs")
            .join(name)
    }

    #[test]
    fn apu_totals_count_vram_and_gtt() {
        let mut monitor = GpuMonitor::amd_sysfs_only(&fixture("apu-strix-halo"));
        let t = totals(&monitor.read());
        assert_eq!(t.used_bytes, Some(201_326_592 + 20_401_094_656));
        assert_eq!(t.total_bytes, Some((512 << 20) + (64 << 30)));
        assert_eq!(t.hottest_c, Some(38.25));
    }

    #[test]
    fn discrete_card_totals_are_vram_only() {
        let mut monitor = GpuMonitor::amd_sysfs_only(&fixture("discrete-rx7900xtx"));
        let t = totals(&monitor.read());
        assert_eq!(t.used_bytes, Some(1_365_958_656));
        assert_eq!(t.total_bytes, Some(25_753_026_560));
    }

    fn two_gpus_from_the_csv_fixture() -> Option<Vec<GpuInfo>> {
        Some(nvidia_smi::parse(include_str!(
            "../../tests/fixtures/hardware/nvidia-smi/two-gpus.csv"
        )))
    }

    fn wait_for_reading(poller: &SmiPoller) -> Vec<GpuInfo> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let gpus = poller.latest();
            if !gpus.is_empty() {
                return gpus;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Vec::new()
    }

    #[test]
    fn smi_poller_serves_its_latest_reading_until_stale() {
        let poller = SmiPoller::start(two_gpus_from_the_csv_fixture).expect("thread starts");
        let gpus = wait_for_reading(&poller);
        assert_eq!(gpus.len(), 2);
        assert_eq!(totals(&gpus).used_bytes, Some((1 << 20) + (20145 << 20)));
        // A reading older than SMI_STALE (a hung tool) is absent, not repeated forever.
        if let Some(old) = Instant::now().checked_sub(SMI_STALE * 2) {
            if let Some(latest) = poller.latest.lock().expect("unpoisoned").as_mut() {
                latest.0 = old;
            }
            assert!(poller.latest().is_empty());
        }
    }

    #[test]
    fn smi_poller_without_a_gpu_reads_nothing() {
        for run in [(|| Some(Vec::new())) as SmiRun, || None] {
            let poller = SmiPoller::start(run).expect("thread starts");
            std::thread::sleep(Duration::from_millis(50));
            assert!(poller.latest().is_empty());
            assert!(poller.latest.lock().expect("unpoisoned").is_none());
        }
    }

    #[test]
    fn no_gpus_no_readings() {
        assert_eq!(totals(&[]), GpuTotals::default());
    }
}
