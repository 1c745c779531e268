//! Live GPU readings for the sampler, from the cheapest source found at start:
//! NVML, then AMD sysfs, then `nvidia-smi` / `rocm-smi` (spawned at most once a second,
//! the last reading repeated in between, because each spawn costs tens of ms).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;

use super::{amd_sysfs, nvidia_smi, nvml, rocm_smi, GpuInfo};

const SMI_PERIOD: Duration = Duration::from_secs(1);

pub enum GpuMonitor {
    None,
    Nvml(Box<Nvml>),
    AmdSysfs(Vec<PathBuf>),
    Smi {
        run: fn() -> Option<Vec<GpuInfo>>,
        last: Vec<GpuInfo>,
        at: Instant,
    },
}

impl GpuMonitor {
    pub fn detect(sysfs_root: &Path) -> Self {
        if let Some(nvml) = nvml::init() {
            if nvml.device_count().is_ok_and(|n| n > 0) {
                return GpuMonitor::Nvml(Box::new(nvml));
            }
        }
        let cards = amd_sysfs::cards(sysfs_root);
        if !cards.is_empty() {
            return GpuMonitor::AmdSysfs(cards);
        }
        let smis: [fn() -> Option<Vec<GpuInfo>>; 2] = [nvidia_smi::run, rocm_smi::run];
        for run in smis {
            if let Some(last) = run().filter(|g| !g.is_empty()) {
                return GpuMonitor::Smi {
                    run,
                    last,
                    at: Instant::now(),
                };
            }
        }
        GpuMonitor::None
    }

    pub fn read(&mut self) -> Vec<GpuInfo> {
        match self {
            GpuMonitor::None => Vec::new(),
            GpuMonitor::Nvml(nvml) => nvml::gpus(nvml, false),
            GpuMonitor::AmdSysfs(cards) => cards.iter().map(|c| amd_sysfs::read_card(c)).collect(),
            GpuMonitor::Smi { run, last, at } => {
                if at.elapsed() >= SMI_PERIOD {
                    // A failed run keeps nothing stale: the readings become absent.
                    *last = run().unwrap_or_default();
                    *at = Instant::now();
                }
                last.clone()
            }
        }
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
