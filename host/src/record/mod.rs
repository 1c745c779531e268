//! The data of a trial, exactly as written to the JSONL log (one `TrialRecord` a line):
//! the configuration tried, its samples and statistics, the hardware peaks, the breach
//! and the failure, the verdict and its reason; and the limits a run found.
//!
//! A leaf: plain data that imports nothing else of the crate, so that every layer (the
//! backends that fail a trial, the guard that breaches one, the trial runner, the
//! reports that read the log) can share one vocabulary.

mod breach;
mod concurrency;
mod device_memory;
mod fit;
mod limits;
mod offload;
mod series;
mod stats;
mod verdict;

use serde::{Deserialize, Serialize};

pub use breach::{Breach, DeviceFree, Metric};
pub use concurrency::{latency_of, ConcurrencyFigures, Latency, SloMiss, SloVerdict};
pub use device_memory::{DeviceMemory, HostMemory, MemoryBreakdown, ServerGpuSource};
pub use fit::{FitBaseline, FitOffload, FitOffloadSource, FitSource};
pub use limits::{Bound, LimitBounds, Limits};
pub use offload::{placement, OffloadOutcome, OffloadStep};
pub use series::{Peaks, SamplePoint, SampleSeries};
pub use stats::{median, nearest_rank, Spread, Stats, MAD_TO_SIGMA, OUTLIER_Z};
pub use verdict::{NoiseFloor, Reason, SpreadCheck, Verdict};

/// KV cache element type (`-ctk`, `-ctv`) and flash attention (`-fa`): the plugin
/// contract's own, so the log, the plugins and the flags say the same `q8_0`.
pub use ozone_sdk::{
    CachePair, CacheType as KvCacheType, FlashAttn, Quality, Variant, VariantOutcome,
};

/// One configuration to try: the context, batch, micro-batch and streams, and the server
/// variant (cache types, flash attention, threads, offload) every flag of it comes from.
///
/// In the log its variant is flat beside the shape, each setting left out at its default
/// (`kv_cache_type` names the K cache: logs from before K and V could differ held one
/// type for both, and read as that), so a default configuration reads as it always did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "wire::TrialConfig", into = "wire::TrialConfig")]
pub struct TrialConfig {
    /// Context per slot, in tokens.
    pub ctx: u32,
    pub batch: u32,
    pub ubatch: u32,
    /// Simultaneous streams.
    pub concurrency: u32,
    pub variant: Variant,
}

impl TrialConfig {
    /// The K cache type (`-ctk`), the one figure of the variant most code asks about.
    pub fn cache_type_k(&self) -> KvCacheType {
        self.variant.cache_type_k
    }
}

mod wire {
    use serde::{Deserialize, Serialize};

    use super::{FlashAttn, KvCacheType, Variant};

    #[derive(Serialize, Deserialize)]
    pub struct TrialConfig {
        ctx: u32,
        batch: u32,
        ubatch: u32,
        concurrency: u32,
        #[serde(default)]
        kv_cache_type: KvCacheType,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_type_v: Option<KvCacheType>,
        #[serde(default, skip_serializing_if = "is_auto")]
        flash_attn: FlashAttn,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threads: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpu_layers: Option<u32>,
        #[serde(default, skip_serializing_if = "is_zero")]
        cpu_moe_layers: u32,
    }

    fn is_auto(fa: &FlashAttn) -> bool {
        *fa == FlashAttn::Auto
    }

    fn is_zero(n: &u32) -> bool {
        *n == 0
    }

    impl From<TrialConfig> for super::TrialConfig {
        fn from(w: TrialConfig) -> Self {
            Self {
                ctx: w.ctx,
                batch: w.batch,
                ubatch: w.ubatch,
                concurrency: w.concurrency,
                variant: Variant {
                    cache_type_k: w.kv_cache_type,
                    cache_type_v: w.cache_type_v.unwrap_or(w.kv_cache_type),
                    flash_attn: w.flash_attn,
                    threads: w.threads,
                    gpu_layers: w.gpu_layers,
                    cpu_moe_layers: w.cpu_moe_layers,
                },
            }
        }
    }

    impl From<super::TrialConfig> for TrialConfig {
        fn from(c: super::TrialConfig) -> Self {
            let v = c.variant;
            Self {
                ctx: c.ctx,
                batch: c.batch,
                ubatch: c.ubatch,
                concurrency: c.concurrency,
                kv_cache_type: v.cache_type_k,
                cache_type_v: (v.cache_type_v != v.cache_type_k).then_some(v.cache_type_v),
                flash_attn: v.flash_attn,
                threads: v.threads,
                gpu_layers: v.gpu_layers,
                cpu_moe_layers: v.cpu_moe_layers,
            }
        }
    }
}

impl std::fmt::Display for TrialConfig {
    /// `ctx 8192 batch 64 ubatch 64 x1 kv f16`, then what the variant sets besides.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = &self.variant;
        write!(
            f,
            "ctx {} batch {} ubatch {} x{} kv {}",
            self.ctx, self.batch, self.ubatch, self.concurrency, v.cache_type_k
        )?;
        if v.cache_type_v != v.cache_type_k {
            write!(f, "/{}", v.cache_type_v)?;
        }
        if v.flash_attn != FlashAttn::Auto {
            write!(f, " fa {}", v.flash_attn.name())?;
        }
        if let Some(t) = v.threads {
            write!(f, " t {t}")?;
        }
        if let Some(n) = v.gpu_layers {
            write!(f, " ngl {n}")?;
        }
        if v.cpu_moe_layers > 0 {
            write!(f, " cpu-moe {}", v.cpu_moe_layers)?;
        }
        Ok(())
    }
}

/// Which phase of a tune a trial belongs to, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Context,
    /// At a context where every layer on the GPU did not fit in GPU memory: the offload
    /// search (`-ngl`, `--n-cpu-moe`).
    Offload,
    Batch,
    Concurrency,
}

/// Why a trial (or a sample) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "metric")]
pub enum FailureKind {
    /// The server could not allocate (load failure with an out-of-memory signature).
    OutOfMemory,
    /// The guard saw a threshold crossed.
    ThresholdBreach(Metric),
    /// The server did not become healthy, or a request ran past its adaptive timeout.
    Timeout,
    /// Any other server failure: non-OOM load failure, HTTP 5xx, crash mid-trial.
    ServerError,
    /// Truncated prompt, invalid or empty output.
    BadOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialFailure {
    #[serde(flatten)]
    pub kind: FailureKind,
    /// One human line: what happened, with the figure that proves it.
    pub message: String,
    /// A server that cannot work on this machine at all (a [`FailureKind::ServerError`]
    /// with a named cause): no other configuration would fare better, so the run stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<ServerFault>,
}

impl TrialFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            fault: None,
        }
    }
}

/// Why a server cannot work here, whatever the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "cause")]
pub enum ServerFault {
    /// Killed by SIGILL: the build uses CPU instructions this machine lacks.
    IllegalInstruction,
    /// Killed by SIGBUS: a memory-mapped file (the model) shrank under it.
    BusError,
    /// The dynamic loader could not find a shared library the binary needs.
    MissingLibrary { library: String },
}

/// One request of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SampleRecord {
    /// 0-based index within the trial, in the order the requests finished.
    pub index: u32,
    /// The stream that sent it, in a concurrency trial (a closed loop of streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<u32>,
    pub ok: bool,
    /// Time to the first streamed token, measured at the client.
    pub ttft_ms: Option<f64>,
    /// Prompt tokens per second, from the server's counts and timings.
    pub prefill_tps: Option<f64>,
    /// Generated tokens per second, from the server's counts and the client's clock.
    pub decode_tps: Option<f64>,
    /// Prompt tokens the server processed (its own count).
    pub prompt_tokens: Option<u32>,
    /// Tokens the server generated (its own count).
    pub completion_tokens: Option<u32>,
    pub total_ms: Option<f64>,
    /// The server's own prompt-processing time for this request (llama-server
    /// `timings.prompt_ms`), to check the client's figures against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_prompt_ms: Option<f64>,
    /// The server's own generation time for this request (llama-server
    /// `timings.predicted_ms`: first generated token to the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_predicted_ms: Option<f64>,
    pub error: Option<String>,
    /// What kind of failure `error` was (absent in logs before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
}

impl SampleRecord {
    /// Time per output token after the first, ms: the decode span over
    /// (generated − 1), the inverse of `decode_tps`.
    pub fn tpot_ms(&self) -> Option<f64> {
        self.decode_tps.filter(|t| *t > 0.0).map(|t| 1000.0 / t)
    }
}

/// How much measurement a trial got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// One request that fills the context, and its decode, with the guard watching: does
    /// the configuration load, fit within the limits, and at what peak. Stable when that
    /// one request succeeded.
    Screen,
    /// The full statistical trial: `min_samples_per_config` requests, success rate and
    /// throughput variation. (Logs written before stages existed hold only these.)
    #[default]
    Verify,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Screen => "screen",
            Stage::Verify => "verify",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One trial, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// 1-based sequence number within the run.
    pub id: u32,
    pub phase: Phase,
    /// Screen or verify (logs written before stages existed: verify).
    #[serde(default)]
    pub stage: Stage,
    pub config: TrialConfig,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_ms: u64,
    /// Context the server actually granted (llama-server `/props`), when known.
    pub granted_ctx: Option<u32>,
    pub samples: Vec<SampleRecord>,
    pub ttft_ms: Option<Stats>,
    pub prefill_tps: Option<Stats>,
    pub decode_tps: Option<Stats>,
    pub success_rate: f64,
    /// Coefficient of variation of decode tokens/s (absent for a single sample).
    pub cv: Option<f64>,
    pub peaks: Peaks,
    pub breach: Option<Breach>,
    pub failure: Option<TrialFailure>,
    pub verdict: Verdict,
    /// Why: the rule that decided the verdict and its figures (absent in older logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Why the trial ended before all its samples ran, when its verdict was settled
    /// early ("stopped after sample 2 of 5: 1 failure makes 85 % unreachable").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// The server log's last lines, kept when the trial failed.
    pub server_log_tail: Vec<String>,
    /// The figures of a concurrency level: latency percentiles, per-stream and aggregate
    /// throughput, the objective's judgement. Absent for context and batch trials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyFigures>,
    /// llama.cpp's own account of the server's memory per device, printed when it
    /// stopped (absent in older logs, for other backends, and for a server that was
    /// killed or never came up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_breakdown: Option<MemoryBreakdown>,
}
