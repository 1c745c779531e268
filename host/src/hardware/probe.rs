//! One hardware snapshot: CPU and RAM from sysinfo (RAM from `/proc/meminfo` where it
//! exists, the same figures the sampler and guard use), GPUs from NVML → `nvidia-smi`
//! and AMD sysfs → `rocm-smi`, each source skipped cleanly when absent.

use std::path::PathBuf;

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use super::{
    amd_sysfs, meminfo, nvidia_smi, nvml, rocm_smi, CpuInfo, GpuInfo, HardwareSnapshot, Measured,
    MemoryInfo, Source,
};

/// Where to look.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Where sysfs is mounted (`/sys`); tests point it at a fixture tree.
    pub sysfs_root: PathBuf,
    /// Where procfs is mounted (`/proc`).
    pub proc_root: PathBuf,
    /// Try `nvidia-smi` / `rocm-smi` when NVML / sysfs find nothing.
    pub use_smi_fallbacks: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            sysfs_root: PathBuf::from("/sys"),
            proc_root: PathBuf::from("/proc"),
            use_smi_fallbacks: true,
        }
    }
}

/// Probes the machine. Never fails: what cannot be read is absent.
pub fn probe(opts: &ProbeOptions) -> HardwareSnapshot {
    let system = System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    HardwareSnapshot {
        taken_at: chrono::Utc::now(),
        hostname: System::host_name(),
        os: System::long_os_version(),
        cpu: cpu_info(&system),
        memory: memory_info(opts, &system),
        gpus: gpus(opts),
        vulkan_drivers: super::vulkan_drivers(),
    }
}

fn cpu_info(system: &System) -> CpuInfo {
    let model = system
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_owned())
        .filter(|b| !b.is_empty());
    // Every logical CPU of the machine (as `nproc --all` counts), not only those this
    // process's affinity allows: the figure a server's thread count is chosen from.
    let logical = u32::try_from(system.cpus().len()).ok().filter(|&n| n > 0);
    CpuInfo {
        model: model.map(|m| Measured::new(m, Source::Sysinfo)),
        physical_cores: System::physical_core_count()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| Measured::new(n, Source::Sysinfo)),
        logical_cores: logical.map(|n| Measured::new(n, Source::Sysinfo)),
    }
}

fn memory_info(opts: &ProbeOptions, system: &System) -> MemoryInfo {
    if let Some(m) = meminfo::read(&opts.proc_root) {
        return MemoryInfo {
            total_bytes: Some(Measured::new(m.total_bytes, Source::Procfs)),
            available_bytes: Some(Measured::new(m.available_bytes, Source::Procfs)),
        };
    }
    // sysinfo reports 0 for what it could not read: absent, not 0.
    let known = |v: u64| (v > 0).then(|| Measured::new(v, Source::Sysinfo));
    MemoryInfo {
        total_bytes: known(system.total_memory()),
        available_bytes: known(system.available_memory()),
    }
}

fn gpus(opts: &ProbeOptions) -> Vec<GpuInfo> {
    let mut gpus = match nvml::shared() {
        Some(nvml) => nvml::gpus(nvml, true),
        None if opts.use_smi_fallbacks => nvidia_smi::run().unwrap_or_default(),
        None => Vec::new(),
    };
    let amd: Vec<GpuInfo> = amd_sysfs::cards(&opts.sysfs_root)
        .iter()
        .map(|card| amd_sysfs::read_card(card))
        .collect();
    if !amd.is_empty() {
        gpus.extend(amd);
    } else if opts.use_smi_fallbacks {
        gpus.extend(rocm_smi::run().unwrap_or_default());
    }
    gpus
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn probe_of_an_apu_fixture_reports_unified_memory() {
        let opts = ProbeOptions {
            sysfs_root: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/hardware/sysfs/apu-strix-halo"),
            use_smi_fallbacks: false,
            ..ProbeOptions::default()
        };
        let snapshot = probe(&opts);
        let amd: Vec<_> = snapshot
            .gpus
            .iter()
            .filter(|g| g.vendor == super::super::GpuVendor::Amd)
            .collect();
        assert_eq!(amd.len(), 1);
        assert!(snapshot.unified_memory());
        assert!(snapshot.cpu.logical_cores.is_some_and(|c| c.value > 0));
    }
}
