//! The hardware snapshot: what `ozone probe` prints and what plugins are told.
//!
//! Field names are part of `ozone probe --json`'s stable output.

use serde::{Deserialize, Serialize};

/// Where a reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Nvml,
    NvidiaSmi,
    Sysfs,
    RocmSmi,
    Sysinfo,
    Procfs,
}

/// A value together with the source that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Measured<T> {
    pub fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuVendor {
    Nvidia,
    Amd,
    Intel,
    Apple,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CpuInfo {
    pub model: Option<Measured<String>>,
    pub physical_cores: Option<Measured<u32>>,
    pub logical_cores: Option<Measured<u32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MemoryInfo {
    pub total_bytes: Option<Measured<u64>>,
    pub available_bytes: Option<Measured<u64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Position among the GPUs of this vendor (NVML index, DRM card number).
    pub index: u32,
    pub vendor: GpuVendor,
    pub name: Option<Measured<String>>,
    pub driver: Option<Measured<String>>,
    pub vram_total_bytes: Option<Measured<u64>>,
    pub vram_used_bytes: Option<Measured<u64>>,
    /// AMD only: graphics translation table (system RAM mapped for the GPU).
    pub gtt_total_bytes: Option<Measured<u64>>,
    pub gtt_used_bytes: Option<Measured<u64>>,
    /// The GPU shares system memory (AMD APUs such as Strix Halo, Apple Silicon).
    pub unified_memory: bool,
    pub temperature_c: Option<Measured<f64>>,
    pub utilization_percent: Option<Measured<f64>>,
}

impl GpuInfo {
    /// Memory a model can live in: VRAM, plus GTT on a unified-memory APU.
    pub fn usable_total_bytes(&self) -> Option<u64> {
        let vram = self.vram_total_bytes.map(|m| m.value);
        if self.unified_memory {
            let gtt = self.gtt_total_bytes.map(|m| m.value);
            match (vram, gtt) {
                (None, None) => None,
                (v, g) => Some(v.unwrap_or(0) + g.unwrap_or(0)),
            }
        } else {
            vram
        }
    }

    /// Used counterpart of [`GpuInfo::usable_total_bytes`].
    pub fn usable_used_bytes(&self) -> Option<u64> {
        let vram = self.vram_used_bytes.map(|m| m.value);
        if self.unified_memory {
            let gtt = self.gtt_used_bytes.map(|m| m.value);
            match (vram, gtt) {
                (None, None) => None,
                (v, g) => Some(v.unwrap_or(0) + g.unwrap_or(0)),
            }
        } else {
            vram
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HardwareSnapshot {
    /// RFC 3339 time of the probe.
    pub taken_at: chrono::DateTime<chrono::Utc>,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    pub gpus: Vec<GpuInfo>,
    /// The Vulkan drivers the loader would open: a Vulkan build of llama-server loads
    /// every one at start, GPU or not (see `hardware::vulkan`).
    #[serde(default)]
    pub vulkan_drivers: Vec<super::VulkanDriver>,
}

impl HardwareSnapshot {
    /// Sum of usable GPU memory over all GPUs; `None` without GPUs or readings.
    pub fn gpu_memory_total_bytes(&self) -> Option<u64> {
        sum_known(self.gpus.iter().map(GpuInfo::usable_total_bytes))
    }

    /// Free GPU memory (total minus used) over all GPUs with both readings.
    pub fn gpu_memory_free_bytes(&self) -> Option<u64> {
        sum_known(self.gpus.iter().map(|g| {
            Some(
                g.usable_total_bytes()?
                    .saturating_sub(g.usable_used_bytes()?),
            )
        }))
    }

    pub fn unified_memory(&self) -> bool {
        self.gpus.iter().any(|g| g.unified_memory)
    }

    /// Identifies the machine for warm starts: stable across reboots and load, changes
    /// when CPU, RAM size or GPUs change.
    pub fn fingerprint(&self) -> String {
        let gib = |b: Option<u64>| b.map(|b| (b + (1 << 29)) >> 30).unwrap_or(0);
        let mut parts = vec![
            self.cpu
                .model
                .as_ref()
                .map(|m| m.value.clone())
                .unwrap_or_default(),
            format!("{}c", self.cpu.logical_cores.map(|m| m.value).unwrap_or(0)),
            format!("{}GiB", gib(self.memory.total_bytes.map(|m| m.value))),
        ];
        for gpu in &self.gpus {
            let name = gpu.name.as_ref().map(|m| m.value.as_str()).unwrap_or("?");
            parts.push(format!("{name}:{}GiB", gib(gpu.usable_total_bytes())));
        }
        parts.join("|")
    }
}

fn sum_known(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values
        .flatten()
        .fold(None, |acc, v| Some(acc.unwrap_or(0) + v))
}
