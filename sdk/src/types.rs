//! Plain Rust forms of the WIT records (`wit/strategy.wit`, `ozone:strategy@0.3.0`):
//! what a strategy reads, and what the host builds at its side of the plugin boundary.
//! The model's facts are in `model.rs`, the variants in `variant.rs`, offload in
//! `offload.rs`, objectives and concurrency in `concurrency.rs`.
//!
//! The WIT file documents every field; the short docs here repeat what matters when
//! writing a policy. Natively (never in the wasm build) they derive serde, with the
//! field names of the WIT in snake case.

#[cfg(not(target_arch = "wasm32"))]
use serde::{Deserialize, Serialize};

use crate::concurrency::{Latency, SloMiss};
use crate::variant::Variant;

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The machine and the memory limits of the host's safety thresholds. Bytes; `None`
/// where the host could not read a value (never a guessed 0).
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct HardwareFacts {
    pub gpu_count: u32,
    pub gpu_memory_total_bytes: Option<u64>,
    pub gpu_memory_free_bytes: Option<u64>,
    /// The level at which a trial breaches the VRAM threshold.
    pub gpu_memory_limit_bytes: Option<u64>,
    /// The user's absolute budget for the GPU memory of the inference server's processes.
    pub gpu_memory_budget_bytes: Option<u64>,
    pub ram_total_bytes: Option<u64>,
    pub ram_available_bytes: Option<u64>,
    /// The level at which a trial breaches the RAM threshold.
    pub ram_limit_bytes: Option<u64>,
    /// The user's absolute budget for the inference server's resident memory.
    pub process_memory_budget_bytes: Option<u64>,
    pub unified_memory: bool,
    pub logical_cores: Option<u32>,
}

/// Parameter-count class: large ≥ 20e9, medium ≥ 3e9, small otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum SizeClass {
    Small,
    Medium,
    Large,
}

/// The contexts the host accepts: `min <= ctx <= max`, `ctx % granularity == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct ContextBounds {
    pub min: u32,
    pub max: u32,
    pub granularity: u32,
}

impl ContextBounds {
    /// Bounds from a minimum, the largest context and a granularity: `max` is aligned
    /// down and `min` up to the granularity, and `min` never exceeds `max`.
    pub fn new(min: u32, max: u32, granularity: u32) -> Self {
        let g = granularity.max(1);
        let max = (max / g * g).max(g);
        let min = min.div_ceil(g).saturating_mul(g).clamp(g, max);
        Self {
            min,
            max,
            granularity: g,
        }
    }

    /// `value` rounded down to the granularity and clamped into `[min, max]`.
    pub fn fit(&self, value: u64) -> u32 {
        let g = u64::from(self.granularity.max(1));
        let aligned = value / g * g;
        aligned.clamp(u64::from(self.min), u64::from(self.max)) as u32
    }

    /// Whether the host would accept `ctx` as a proposal.
    pub fn accepts(&self, ctx: u32) -> bool {
        ctx >= self.min && ctx <= self.max && ctx.is_multiple_of(self.granularity.max(1))
    }
}

/// A logical batch (`-b`) with its physical micro-batch (`-ub`, at most the batch).
/// Prefill speed and the compute buffers' memory follow the micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct BatchProposal {
    pub batch: u32,
    pub ubatch: u32,
}

impl BatchProposal {
    /// A batch whose micro-batch is the batch itself, capped at `max_ubatch`.
    pub fn whole(batch: u32, max_ubatch: u32) -> Self {
        Self {
            batch,
            ubatch: batch.min(max_ubatch).max(1),
        }
    }
}

impl std::fmt::Display for BatchProposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.batch, self.ubatch)
    }
}

/// The batches the host accepts from a batch scaler: `min <= batch <= max`, and
/// `1 <= ubatch <= min(batch, max_ubatch)`. `initial` is what the context search ran
/// at (already measured there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct BatchBounds {
    pub min: u32,
    pub max: u32,
    pub max_ubatch: u32,
    pub initial: BatchProposal,
}

impl BatchBounds {
    /// Whether the host would accept `proposal`.
    pub fn accepts(&self, proposal: BatchProposal) -> bool {
        (self.min..=self.max).contains(&proposal.batch)
            && (1..=proposal.batch.min(self.max_ubatch)).contains(&proposal.ubatch)
    }

    /// `value` clamped into `[min, max]`.
    pub fn clamp(&self, value: u32) -> u32 {
        value.clamp(self.min, self.max.max(self.min))
    }

    /// The batch `batch` (clamped) with its micro-batch as large as allowed.
    pub fn whole(&self, batch: u32) -> BatchProposal {
        BatchProposal::whole(self.clamp(batch), self.max_ubatch)
    }
}

/// The stream counts the host accepts from a concurrency search: `min <= n <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct ConcurrencyBounds {
    pub min: u32,
    pub max: u32,
}

impl ConcurrencyBounds {
    /// Whether the host would accept `concurrency` as a proposal.
    pub fn accepts(&self, concurrency: u32) -> bool {
        (self.min..=self.max).contains(&concurrency)
    }
}

/// The configuration a trial ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct TrialConfig {
    pub ctx: u32,
    pub batch: u32,
    pub ubatch: u32,
    pub concurrency: u32,
    /// Cache types, flash attention, threads, offload.
    pub variant: Variant,
}

impl TrialConfig {
    /// The batch and micro-batch of this configuration.
    pub fn batch_proposal(&self) -> BatchProposal {
        BatchProposal {
            batch: self.batch,
            ubatch: self.ubatch,
        }
    }
}

/// How much measurement a trial got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum Stage {
    /// One full-context request: does it load, fit, at what peak. Figures rest on one
    /// sample.
    Screen,
    /// The full statistical trial (success rate, throughput variation).
    Verify,
}

/// Which safety threshold a trial crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum Threshold {
    Vram,
    Ram,
    Temperature,
    Cpu,
    /// The absolute budget for the server's resident memory.
    ProcessMemory,
    /// The absolute budget for the server's GPU memory.
    GpuMemoryBudget,
}

impl std::fmt::Display for Threshold {
    /// The WIT name: `vram`, `process-memory`, `gpu-memory-budget`, …
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Threshold::Vram => "vram",
            Threshold::Ram => "ram",
            Threshold::Temperature => "temperature",
            Threshold::Cpu => "cpu",
            Threshold::ProcessMemory => "process-memory",
            Threshold::GpuMemoryBudget => "gpu-memory-budget",
        })
    }
}

/// Why a trial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum Failure {
    OutOfMemory,
    ThresholdBreach(Threshold),
    Timeout,
    ServerError,
    BadOutput,
}

impl Failure {
    /// Out of memory, or a memory threshold crossed: a bigger config needs more memory.
    pub fn is_memory(&self) -> bool {
        matches!(
            self,
            Failure::OutOfMemory
                | Failure::ThresholdBreach(
                    Threshold::Vram
                        | Threshold::Ram
                        | Threshold::ProcessMemory
                        | Threshold::GpuMemoryBudget
                )
        )
    }
}

/// The host's judgement of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum Verdict {
    Stable,
    Unstable,
    Failed,
}

/// Limit minus peak, per threshold; negative when crossed, `None` when not measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct Headroom {
    pub gpu_memory_bytes: Option<i64>,
    /// GPU memory budget minus the server's peak GPU memory.
    pub gpu_memory_budget_bytes: Option<i64>,
    pub ram_bytes: Option<i64>,
    /// Server memory budget minus the server's peak resident memory.
    pub process_memory_bytes: Option<i64>,
    pub temperature_c: Option<f64>,
    pub cpu_percent: Option<f64>,
}

/// What happened when the host ran one configuration.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct TrialOutcome {
    pub config: TrialConfig,
    /// Screen (one full fill) or verify (the statistical trial).
    pub stage: Stage,
    /// Requests measured: the figures rest on this many samples.
    pub samples: u32,
    pub verdict: Verdict,
    /// Present when `verdict` is `Failed`.
    pub failure: Option<Failure>,
    /// Whole machine.
    pub peak_gpu_memory_bytes: Option<u64>,
    /// The inference server's own processes, where the GPU reports it per process.
    pub peak_server_gpu_memory_bytes: Option<u64>,
    pub peak_ram_bytes: Option<u64>,
    /// Highest resident memory of the inference server's processes.
    pub peak_process_memory_bytes: Option<u64>,
    pub headroom: Headroom,
    /// Mean prompt-processing throughput, tokens/s.
    pub prefill_tps: Option<f64>,
    /// Mean decode throughput, tokens/s.
    pub decode_tps: Option<f64>,
    /// Mean time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Latency percentiles over the successful samples.
    pub latency: Latency,
    /// The per-request timeout the trial ran under, ms.
    pub timeout_ms: f64,
    /// Coefficient of variation of decode throughput; `None` on fewer than two samples.
    pub cv: Option<f64>,
    pub success_rate: f64,
    /// Whether the objective the trial was judged against held; `None` without one.
    pub slo_met: Option<bool>,
    /// The bounds that missed.
    pub slo_missed: Vec<SloMiss>,
}

impl TrialOutcome {
    pub fn is_stable(&self) -> bool {
        self.verdict == Verdict::Stable
    }

    /// The throughput a batch policy optimises: prefill tokens/s when measured (batch
    /// size mostly changes prompt processing), else decode tokens/s.
    pub fn throughput(&self) -> Option<f64> {
        self.prefill_tps.or(self.decode_tps)
    }
}

/// The request timeout by the host's adaptive rule: for context `c` and batch `b`,
/// `clamp(base + per_1k_tokens × c / 1000 + per_batch × b, min, max)`, ms.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct TimeoutRule {
    pub base_ms: f64,
    pub per_1k_tokens_ms: f64,
    pub per_batch_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl TimeoutRule {
    /// The timeout of a request at context `ctx` and batch `batch`, ms.
    pub fn for_config(&self, ctx: u32, batch: u32) -> f64 {
        let raw = self.base_ms
            + self.per_1k_tokens_ms * f64::from(ctx) / 1000.0
            + self.per_batch_ms * f64::from(batch);
        raw.clamp(self.min_ms, self.max_ms.max(self.min_ms))
    }
}

impl Default for TimeoutRule {
    /// The seed's adaptive timeouts: 60 s + 0.5 s per 1k tokens + 0.2 s per batch unit,
    /// clamped to 30..300 s.
    fn default() -> Self {
        Self {
            base_ms: 60_000.0,
            per_1k_tokens_ms: 500.0,
            per_batch_ms: 200.0,
            min_ms: 30_000.0,
            max_ms: 300_000.0,
        }
    }
}

/// What bounds a context besides memory: the objective one request must meet, the
/// request timeout, and the share of it a time-bound context may use.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct ContextLimits {
    pub slo: crate::concurrency::Slo,
    pub timeout: TimeoutRule,
    pub timeout_margin: f64,
}

impl Default for ContextLimits {
    fn default() -> Self {
        Self {
            slo: Default::default(),
            timeout: TimeoutRule::default(),
            timeout_margin: 0.8,
        }
    }
}
