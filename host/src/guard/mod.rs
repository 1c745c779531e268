//! Keeping a trial inside its limits: the 100 ms [`Sampler`] reads the hardware probes,
//! checks every point against the [`Thresholds`] and, on a breach, kills the server.
//!
//! A breach is raised as a [`Breach`](crate::record::Breach) event that a running trial
//! awaits so it can cancel within 200 ms. The exact rules (percent of total *or* reserve,
//! whichever is tighter; the CPU grace period; absent readings never breach) are in
//! [`Guard`]'s module, `guard/check.rs`; [`kill_tree`] is what the sampler does on a
//! breach when asked to.

use serde::{Deserialize, Serialize};

mod budget;
mod check;
mod error;
mod interrupt;
mod kill;
mod sampler;

pub use budget::{gpu_budget_problem, live_reading_note};
pub use check::{first_breach, memory_limit_bytes, Capacity, Guard};
pub use error::SamplerError;
pub use interrupt::{guarded, Guarded};
pub use kill::kill_tree;
pub use sampler::{Sampler, SamplerOptions, TickTimes};

/// Limits a trial must stay inside. Defaults are the product's documented defaults
/// (`hardware_monitoring.safety_thresholds` and `.resource_headroom`); this is their
/// one home, the configuration's defaults read them.
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
    /// Absolute budget for the GPU memory the inference server's processes use (all
    /// GPUs together), for a GPU shared with other work. `None`: no budget.
    pub gpu_memory_budget_mb: Option<u64>,
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
            gpu_memory_budget_mb: None,
            cpu_grace_ms: 5000,
        }
    }
}
