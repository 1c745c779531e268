//! Plain Rust mirrors of the WIT records (`wit/strategy.wit`): what a strategy reads.
//!
//! The WIT file documents every field; the short docs here repeat what matters when
//! writing a policy.

/// Severity of a log message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The machine and the memory limits of the host's safety thresholds. Bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HardwareFacts {
    pub gpu_count: u32,
    pub gpu_memory_total_bytes: Option<u64>,
    pub gpu_memory_free_bytes: Option<u64>,
    /// The level at which a trial breaches the VRAM threshold.
    pub gpu_memory_limit_bytes: Option<u64>,
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
pub enum SizeClass {
    Small,
    Medium,
    Large,
}

/// The contexts the host accepts: `min <= ctx <= max`, `ctx % granularity == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContextBounds {
    pub min: u32,
    pub max: u32,
    pub granularity: u32,
}

impl ContextBounds {
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

/// The model under test.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub parameter_count: Option<u64>,
    pub size_class: SizeClass,
    pub trained_context: u32,
    /// KV-cache bytes per token of context, when the layout is known.
    pub kv_bytes_per_token: Option<u64>,
    pub weights_bytes: Option<u64>,
    pub bounds: ContextBounds,
    /// A limit measured earlier for this machine and model (warm start).
    pub hint: Option<u32>,
}

/// The configuration a trial ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrialConfig {
    pub ctx: u32,
    pub batch: u32,
    pub ubatch: u32,
    pub concurrency: u32,
}

/// Which safety threshold a trial crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Threshold {
    Vram,
    Ram,
    Temperature,
    Cpu,
    ProcessMemory,
}

/// Why a trial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
                    Threshold::Vram | Threshold::Ram | Threshold::ProcessMemory
                )
        )
    }
}

/// The host's judgement of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Stable,
    Unstable,
    Failed,
}

/// Limit minus peak, per threshold; negative when crossed, `None` when not measured.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Headroom {
    pub gpu_memory_bytes: Option<i64>,
    pub ram_bytes: Option<i64>,
    /// Server memory budget minus the server's peak resident memory.
    pub process_memory_bytes: Option<i64>,
    pub temperature_c: Option<f64>,
    pub cpu_percent: Option<f64>,
}

/// What happened when the host ran one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub config: TrialConfig,
    pub verdict: Verdict,
    /// Present when `verdict` is `Failed`.
    pub failure: Option<Failure>,
    pub peak_gpu_memory_bytes: Option<u64>,
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
    /// Coefficient of variation of decode throughput.
    pub cv: Option<f64>,
    pub success_rate: f64,
}

impl Outcome {
    pub fn is_stable(&self) -> bool {
        self.verdict == Verdict::Stable
    }

    /// The throughput a batch policy optimises: prefill tokens/s when measured (batch
    /// size mostly changes prompt processing), else decode tokens/s.
    pub fn throughput(&self) -> Option<f64> {
        self.prefill_tps.or(self.decode_tps)
    }
}
