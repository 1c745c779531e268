//! Safety thresholds, reserves and breach detection.
//!
//! The sampler checks every sample against [`Thresholds`]; a breach is raised as a
//! [`Breach`] event that a running trial awaits so it can cancel within 200 ms.
//! The exact rules (percent of total *or* reserve, whichever is tighter; the CPU grace
//! period; absent readings never breach) are in [`Guard`]'s module, `guard/check.rs`;
//! [`kill_tree`] is what the sampler does on a breach when asked to.

use serde::{Deserialize, Serialize};

mod check;
mod kill;

pub use check::{first_breach, memory_limit_bytes, Capacity, Guard};
pub use kill::kill_tree;

/// Limits a trial must stay inside. Defaults are the product's documented defaults
/// (`hardware_monitoring.safety_thresholds` and `.resource_headroom`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    pub max_vram_percent: f64,
    pub max_ram_percent: f64,
    pub max_temperature_c: f64,
    pub max_cpu_percent: f64,
    pub vram_reserve_mb: u64,
    pub ram_reserve_mb: u64,
    /// Absolute budget for the resident memory of the inference server's process tree
    /// (useful on shared machines and in tests). `None`: no budget.
    pub process_memory_budget_mb: Option<u64>,
    /// A CPU reading above `max_cpu_percent` is a breach only once it has lasted this
    /// long; shorter spikes (prompt processing bursts) are tolerated.
    pub cpu_grace_ms: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_vram_percent: 90.0,
            max_ram_percent: 85.0,
            max_temperature_c: 85.0,
            max_cpu_percent: 90.0,
            vram_reserve_mb: 4096,
            ram_reserve_mb: 4096,
            process_memory_budget_mb: None,
            cpu_grace_ms: 5000,
        }
    }
}

/// Which limit was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    Vram,
    Ram,
    Temperature,
    Cpu,
    ProcessMemory,
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Metric::Vram => "vram",
            Metric::Ram => "ram",
            Metric::Temperature => "temperature",
            Metric::Cpu => "cpu",
            Metric::ProcessMemory => "process-memory",
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
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.metric {
            Metric::Vram | Metric::Ram | Metric::ProcessMemory => write!(
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
