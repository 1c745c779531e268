//! Plain host-side mirrors of the WIT records, built from the host's own types.

use crate::backend::{ModelMetadata, SizeClass};
use crate::guard::{memory_limit_bytes, Thresholds};
use crate::hardware::HardwareSnapshot;
use crate::record::{FailureKind, KvCacheType, TrialConfig, TrialRecord, Verdict};

/// What a plugin is told about the machine (WIT `hardware-facts`). Bytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HardwareFacts {
    pub gpu_count: u32,
    pub gpu_memory_total_bytes: Option<u64>,
    pub gpu_memory_free_bytes: Option<u64>,
    /// min(total × max_vram_percent, total − vram_reserve).
    pub gpu_memory_limit_bytes: Option<u64>,
    pub ram_total_bytes: Option<u64>,
    pub ram_available_bytes: Option<u64>,
    /// min(total × max_ram_percent, total − ram_reserve).
    pub ram_limit_bytes: Option<u64>,
    /// `process_memory_budget_mb` in bytes, when set.
    pub process_memory_budget_bytes: Option<u64>,
    pub unified_memory: bool,
    pub logical_cores: Option<u32>,
}

impl HardwareFacts {
    pub fn from_snapshot(snapshot: &HardwareSnapshot, thresholds: &Thresholds) -> Self {
        let gpu_total = snapshot.gpu_memory_total_bytes();
        let ram_total = snapshot.memory.total_bytes.map(|m| m.value);
        Self {
            gpu_count: snapshot.gpus.len() as u32,
            gpu_memory_total_bytes: gpu_total,
            gpu_memory_free_bytes: snapshot.gpu_memory_free_bytes(),
            gpu_memory_limit_bytes: gpu_total.map(|t| {
                memory_limit_bytes(t, thresholds.max_vram_percent, thresholds.vram_reserve_mb)
            }),
            ram_total_bytes: ram_total,
            ram_available_bytes: snapshot.memory.available_bytes.map(|m| m.value),
            ram_limit_bytes: ram_total.map(|t| {
                memory_limit_bytes(t, thresholds.max_ram_percent, thresholds.ram_reserve_mb)
            }),
            process_memory_budget_bytes: thresholds.process_memory_budget_mb.map(|mb| mb << 20),
            unified_memory: snapshot.unified_memory(),
            logical_cores: snapshot.cpu.logical_cores.map(|m| m.value),
        }
    }
}

/// The contexts the host accepts from a context search (WIT `context-bounds`):
/// `min <= ctx <= max`, `ctx % granularity == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContextBounds {
    pub min: u32,
    pub max: u32,
    pub granularity: u32,
}

impl ContextBounds {
    pub const DEFAULT_MIN: u32 = 2048;
    pub const DEFAULT_GRANULARITY: u32 = 256;

    /// Bounds from a minimum, the trained context and a granularity: `max` is aligned
    /// down and `min` up to the granularity, and `min` never exceeds `max`.
    pub fn new(min: u32, trained_context: u32, granularity: u32) -> Self {
        let g = granularity.max(1);
        let max = (trained_context / g * g).max(g);
        let min = min.div_ceil(g).saturating_mul(g).clamp(g, max);
        Self {
            min,
            max,
            granularity: g,
        }
    }

    /// Default bounds (2048, steps of 256) for a model's trained context.
    pub fn for_trained(trained_context: u32) -> Self {
        Self::new(
            Self::DEFAULT_MIN,
            trained_context,
            Self::DEFAULT_GRANULARITY,
        )
    }

    pub fn accepts(&self, ctx: u32) -> bool {
        ctx >= self.min && ctx <= self.max && ctx % self.granularity == 0
    }
}

/// What a plugin is told about the model (WIT `model-facts`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub parameter_count: Option<u64>,
    pub size_class: SizeClass,
    pub trained_context: u32,
    /// KV bytes per token at the cache type being tuned (f16 from `from_facts`; set
    /// it again when tuning another `-ctk/-ctv`).
    pub kv_bytes_per_token: Option<u64>,
    pub weights_bytes: Option<u64>,
    pub bounds: ContextBounds,
    /// A limit measured earlier for this machine and model (warm start).
    pub hint: Option<u32>,
}

impl ModelInfo {
    /// `trained_context` falls back to `bounds.max` when the model does not say.
    pub fn from_facts(facts: &ModelMetadata, bounds: ContextBounds, hint: Option<u32>) -> Self {
        Self {
            name: facts.name.clone(),
            parameter_count: facts.parameter_count,
            size_class: facts.size_class,
            trained_context: facts.trained_context.unwrap_or(bounds.max),
            kv_bytes_per_token: facts.kv_bytes_per_token(KvCacheType::F16, KvCacheType::F16),
            weights_bytes: facts.weights_bytes,
            bounds,
            hint,
        }
    }
}

/// Limit minus peak per threshold (WIT `headroom`); negative when crossed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Headroom {
    pub gpu_memory_bytes: Option<i64>,
    pub ram_bytes: Option<i64>,
    pub process_memory_bytes: Option<i64>,
    pub temperature_c: Option<f64>,
    pub cpu_percent: Option<f64>,
}

/// What a plugin is told about a finished trial (WIT `trial-outcome`).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The kv cache type is not passed to plugins.
    pub config: TrialConfig,
    pub verdict: Verdict,
    pub failure: Option<FailureKind>,
    pub peak_gpu_memory_bytes: Option<u64>,
    pub peak_ram_bytes: Option<u64>,
    pub peak_process_memory_bytes: Option<u64>,
    pub headroom: Headroom,
    pub prefill_tps: Option<f64>,
    pub decode_tps: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub cv: Option<f64>,
    pub success_rate: f64,
}

impl Outcome {
    /// The outcome of a logged trial; headroom is each threshold's limit (as in
    /// [`HardwareFacts::from_snapshot`]) minus the trial's peak.
    pub fn from_record(
        record: &TrialRecord,
        snapshot: &HardwareSnapshot,
        thresholds: &Thresholds,
    ) -> Self {
        let hw = HardwareFacts::from_snapshot(snapshot, thresholds);
        let peaks = &record.peaks;
        let signed_gap = |limit: Option<u64>, peak: Option<u64>| {
            Some(i64::try_from(limit?).ok()? - i64::try_from(peak?).ok()?)
        };
        Self {
            config: record.config.clone(),
            verdict: record.verdict,
            failure: record.failure.as_ref().map(|f| f.kind),
            peak_gpu_memory_bytes: peaks.gpu_mem_used_bytes,
            peak_ram_bytes: peaks.ram_used_bytes,
            peak_process_memory_bytes: peaks.process_rss_bytes,
            headroom: Headroom {
                gpu_memory_bytes: signed_gap(hw.gpu_memory_limit_bytes, peaks.gpu_mem_used_bytes),
                ram_bytes: signed_gap(hw.ram_limit_bytes, peaks.ram_used_bytes),
                process_memory_bytes: signed_gap(
                    hw.process_memory_budget_bytes,
                    peaks.process_rss_bytes,
                ),
                temperature_c: peaks.gpu_temp_c.map(|t| thresholds.max_temperature_c - t),
                cpu_percent: peaks.cpu_percent.map(|c| thresholds.max_cpu_percent - c),
            },
            prefill_tps: record.prefill_tps.as_ref().map(|s| s.mean),
            decode_tps: record.decode_tps.as_ref().map(|s| s.mean),
            ttft_ms: record.ttft_ms.as_ref().map(|s| s.mean),
            cv: record.cv,
            success_rate: record.success_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{GpuInfo, GpuVendor, Measured, MemoryInfo, Source};
    use crate::record::{Peaks, Phase, TrialFailure};

    const GIB: u64 = 1 << 30;

    fn snapshot() -> HardwareSnapshot {
        HardwareSnapshot {
            taken_at: chrono::Utc::now(),
            hostname: None,
            os: None,
            cpu: Default::default(),
            memory: MemoryInfo {
                total_bytes: Some(Measured::new(64 * GIB, Source::Sysinfo)),
                available_bytes: Some(Measured::new(50 * GIB, Source::Sysinfo)),
            },
            gpus: vec![GpuInfo {
                index: 0,
                vendor: GpuVendor::Nvidia,
                name: None,
                driver: None,
                vram_total_bytes: Some(Measured::new(24 * GIB, Source::Nvml)),
                vram_used_bytes: Some(Measured::new(GIB, Source::Nvml)),
                gtt_total_bytes: None,
                gtt_used_bytes: None,
                unified_memory: false,
                temperature_c: None,
                utilization_percent: None,
            }],
        }
    }

    #[test]
    fn memory_limits_take_the_stricter_of_percent_and_reserve() {
        let hw = HardwareFacts::from_snapshot(&snapshot(), &Thresholds::default());
        // 24 GiB: 90 % = 21.6 GiB, minus the 4 GiB reserve = 20 GiB → 20 GiB.
        assert_eq!(hw.gpu_memory_limit_bytes, Some(20 * GIB));
        // 64 GiB: 85 % = 54.4 GiB, minus reserve = 60 GiB → 54.4 GiB.
        assert_eq!(hw.ram_limit_bytes, Some((64.0 * GIB as f64 * 0.85) as u64));
        assert_eq!(hw.gpu_memory_free_bytes, Some(23 * GIB));
        assert_eq!(hw.gpu_count, 1);
    }

    #[test]
    fn bounds_align_to_the_granularity() {
        let b = ContextBounds::new(2000, 40_000, 256);
        assert_eq!((b.min, b.max, b.granularity), (2048, 39_936, 256));
        assert!(b.accepts(2048) && b.accepts(39_936));
        assert!(!b.accepts(0) && !b.accepts(1792) && !b.accepts(40_192) && !b.accepts(4097));
        // A model trained below the minimum: min never exceeds max.
        let tiny = ContextBounds::for_trained(1024);
        assert_eq!((tiny.min, tiny.max), (1024, 1024));
    }

    #[test]
    fn outcome_headroom_is_limit_minus_peak() {
        let record = TrialRecord {
            id: 3,
            phase: Phase::Context,
            config: TrialConfig {
                ctx: 65_536,
                batch: 512,
                ubatch: 512,
                concurrency: 1,
                kv_cache_type: KvCacheType::F16,
            },
            started_at: chrono::Utc::now(),
            duration_ms: 1000,
            granted_ctx: Some(65_536),
            samples: Vec::new(),
            ttft_ms: None,
            prefill_tps: None,
            decode_tps: None,
            success_rate: 0.0,
            cv: None,
            peaks: Peaks {
                gpu_mem_used_bytes: Some(22 * GIB),
                ram_used_bytes: Some(10 * GIB),
                process_rss_bytes: None,
                server_gpu_mem_bytes: None,
                gpu_temp_c: Some(80.0),
                cpu_percent: None,
            },
            breach: None,
            failure: Some(TrialFailure {
                kind: FailureKind::ThresholdBreach(crate::record::Metric::Vram),
                message: "vram".into(),
            }),
            verdict: Verdict::Failed,
            server_log_tail: Vec::new(),
        };
        let o = Outcome::from_record(&record, &snapshot(), &Thresholds::default());
        assert_eq!(o.headroom.gpu_memory_bytes, Some(-2 * GIB as i64));
        assert_eq!(o.headroom.temperature_c, Some(5.0));
        assert_eq!(o.headroom.cpu_percent, None);
        assert_eq!(
            o.failure,
            Some(FailureKind::ThresholdBreach(crate::record::Metric::Vram))
        );
        assert_eq!(o.peak_gpu_memory_bytes, Some(22 * GIB));
    }
}
