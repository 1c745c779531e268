//! A threshold breach, as the guard raises it and a trial records it.

use serde::{Deserialize, Serialize};

/// Which limit was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Vram,
    Ram,
    Temperature,
    Cpu,
    ProcessMemory,
    /// GPU memory used by the server's own processes, against `gpu_memory_budget_mb`.
    GpuMemoryBudget,
}

impl Metric {
    /// A memory threshold or budget (as opposed to temperature or CPU).
    pub fn is_memory(self) -> bool {
        match self {
            Metric::Vram | Metric::Ram | Metric::ProcessMemory | Metric::GpuMemoryBudget => true,
            Metric::Temperature | Metric::Cpu => false,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Metric::Vram => "vram",
            Metric::Ram => "ram",
            Metric::Temperature => "temperature",
            Metric::Cpu => "cpu",
            Metric::ProcessMemory => "process-memory",
            Metric::GpuMemoryBudget => "gpu-memory-budget",
        })
    }
}

/// A threshold breach: which metric, the value seen, the limit, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub metric: Metric,
    /// Value seen, in the metric's unit (bytes for memory, °C, percent).
    pub value: f64,
    /// The limit it crossed, same unit.
    pub limit: f64,
    /// Milliseconds since the sampler started.
    pub at_ms: u64,
    /// The GPU the server loaded on, as it saw it (a GPU-memory budget held at load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Box<DeviceFree>>,
}

/// A GPU device's memory as llama-server saw it when it loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceFree {
    /// `CUDA0`, `Vulkan0`, …
    pub name: String,
    pub free_mib: u64,
    pub total_mib: Option<u64>,
}

impl std::fmt::Display for DeviceFree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.total_mib {
            Some(total) => write!(
                f,
                "{}: {} MiB free of {total} MiB",
                self.name, self.free_mib
            ),
            None => write!(f, "{}: {} MiB free", self.name, self.free_mib),
        }
    }
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.metric {
            Metric::Vram | Metric::Ram | Metric::ProcessMemory | Metric::GpuMemoryBudget => write!(
                f,
                "{} reached {:.1} MiB, limit {:.1} MiB (at {} ms)",
                self.metric,
                self.value / 1048576.0,
                self.limit / 1048576.0,
                self.at_ms
            ),
            Metric::Temperature => write!(
                f,
                "temperature reached {:.0} °C, limit {:.0} °C (at {} ms)",
                self.value, self.limit, self.at_ms
            ),
            Metric::Cpu => write!(
                f,
                "cpu reached {:.0} %, limit {:.0} % (at {} ms)",
                self.value, self.limit, self.at_ms
            ),
        }
    }
}
