//! What a plugin is told, built from the host's own records. The types are the SDK's
//! (`ozone_sdk`): the plain form of the WIT records, shared by host and plugins; this
//! file only constructs them.

use ozone_sdk::{
    BatchBounds, BatchProposal, ConcurrencyBounds, ConcurrencyOutcome, ContextBounds,
    ContextLimits, Experts, Failure, HardwareFacts, Headroom, LayerGroup, LayerKind, ModelFacts,
    SizeClass, Slo, SloMetric, Stage, Threshold, TimeoutRule, TrialConfig, TrialOutcome, Variant,
    Verdict,
};

use crate::backend::{self, layout, ModelMetadata};
use crate::guard::{memory_limit_bytes, Thresholds};
use crate::hardware::HardwareSnapshot;
use crate::record::{self, ConcurrencyFigures, FailureKind, Metric, SloVerdict, TrialRecord};

/// The machine as probed, with the byte levels the memory thresholds breach at.
pub fn hardware_facts(snapshot: &HardwareSnapshot, thresholds: &Thresholds) -> HardwareFacts {
    let gpu_total = snapshot.gpu_memory_total_bytes();
    let ram_total = snapshot.memory.total_bytes.map(|m| m.value);
    HardwareFacts {
        gpu_count: snapshot.gpus.len() as u32,
        gpu_memory_total_bytes: gpu_total,
        gpu_memory_free_bytes: snapshot.gpu_memory_free_bytes(),
        gpu_memory_limit_bytes: gpu_total.map(|t| {
            memory_limit_bytes(t, thresholds.max_vram_percent, thresholds.vram_reserve_mb)
        }),
        gpu_memory_budget_bytes: thresholds
            .gpu_memory_budget_mb
            .map(|mb| mb.saturating_mul(1 << 20)),
        ram_total_bytes: ram_total,
        ram_available_bytes: snapshot.memory.available_bytes.map(|m| m.value),
        ram_limit_bytes: ram_total
            .map(|t| memory_limit_bytes(t, thresholds.max_ram_percent, thresholds.ram_reserve_mb)),
        process_memory_budget_bytes: thresholds
            .process_memory_budget_mb
            .map(|mb| mb.saturating_mul(1 << 20)),
        unified_memory: snapshot.unified_memory(),
        logical_cores: snapshot.cpu.logical_cores.map(|m| m.value),
    }
}

/// The model as the backend describes it, at `variant` (its cache types set the KV
/// bytes); `trained_context` falls back to `bounds.max` when the model does not say.
pub fn model_facts(
    model: &ModelMetadata,
    bounds: ContextBounds,
    hint: Option<u32>,
    variant: &Variant,
) -> ModelFacts {
    let (ctk, ctv) = (variant.cache_type_k, variant.cache_type_v);
    ModelFacts {
        name: model.name.clone(),
        parameter_count: model.parameter_count,
        size_class: size_class(model.size_class),
        trained_context: model.trained_context.unwrap_or(bounds.max),
        layer_count: model.block_count,
        kv_bytes_per_token: model.kv_bytes_per_token(ctk, ctv),
        layers: model
            .layers
            .iter()
            .map(|g| LayerGroup {
                kind: match g.kind {
                    layout::LayerKind::FullAttention => LayerKind::FullAttention,
                    layout::LayerKind::SlidingWindow { .. } => LayerKind::SlidingWindow,
                    layout::LayerKind::Recurrent => LayerKind::Recurrent,
                },
                count: g.count,
                kv_bytes_per_token: g.kv_bytes_per_token(ctk, ctv),
                window: match g.kind {
                    layout::LayerKind::SlidingWindow { window } => Some(window),
                    _ => None,
                },
                state_bytes: g.state_bytes,
            })
            .collect(),
        experts: model.experts.map(|e| Experts {
            count: e.count,
            used: e.used,
            layers: e.layers,
        }),
        weights_bytes: model.weights_bytes,
        variant: *variant,
        bounds,
        hint,
    }
}

/// What bounds a context besides memory: the latency bounds of the user's objective
/// (`decode-min`, a floor on streams' throughput, is the concurrency search's alone),
/// the request timeout rule and the margin a time-bound context keeps from it.
pub fn context_limits(slo: &Slo, timeouts: TimeoutRule, timeout_margin: f64) -> ContextLimits {
    ContextLimits {
        slo: Slo {
            bounds: slo
                .bounds
                .iter()
                .filter(|b| b.metric != SloMetric::DecodeMin)
                .copied()
                .collect(),
        },
        timeout: timeouts,
        timeout_margin,
    }
}

/// The variant a logged trial ran.
pub fn variant_of(config: &record::TrialConfig) -> Variant {
    config.variant
}

/// Batch bounds `1..=max_batch` (`batch_adaptation.max_batch`), micro-batches up to
/// `max_ubatch`, starting at the batch the context search ran at (clamped into the
/// bounds) whole.
pub fn batch_bounds(max_batch: u32, max_ubatch: u32, initial: u32) -> BatchBounds {
    let max = max_batch.max(1);
    let max_ubatch = max_ubatch.max(1);
    BatchBounds {
        min: 1,
        max,
        max_ubatch,
        initial: BatchProposal::whole(initial.clamp(1, max), max_ubatch),
    }
}

/// Concurrency bounds `1..=max_concurrency`.
pub fn concurrency_bounds(max_concurrency: u32) -> ConcurrencyBounds {
    ConcurrencyBounds {
        min: 1,
        max: max_concurrency.max(1),
    }
}

/// The outcome of a logged trial; headroom is each threshold's limit (as in
/// [`hardware_facts`]) minus the trial's peak; `samples` the requests measured (fewer
/// than asked when the verdict was settled early).
pub fn trial_outcome(
    record: &TrialRecord,
    snapshot: &HardwareSnapshot,
    thresholds: &Thresholds,
    timeouts: &TimeoutRule,
) -> TrialOutcome {
    let hw = hardware_facts(snapshot, thresholds);
    let peaks = &record.peaks;
    let signed_gap = |limit: Option<u64>, peak: Option<u64>| {
        Some(i64::try_from(limit?).ok()? - i64::try_from(peak?).ok()?)
    };
    let c = &record.config;
    TrialOutcome {
        config: TrialConfig {
            ctx: c.ctx,
            batch: c.batch,
            ubatch: c.ubatch,
            concurrency: c.concurrency,
            variant: variant_of(c),
        },
        stage: stage(record.stage),
        samples: u32::try_from(record.samples.len()).unwrap_or(u32::MAX),
        verdict: verdict(record.verdict),
        failure: record.failure.as_ref().map(|f| failure(f.kind)),
        peak_gpu_memory_bytes: peaks.gpu_mem_used_bytes,
        peak_server_gpu_memory_bytes: peaks.server_gpu_mem_bytes,
        peak_ram_bytes: peaks.ram_used_bytes,
        peak_process_memory_bytes: peaks.process_rss_bytes,
        headroom: Headroom {
            gpu_memory_bytes: signed_gap(hw.gpu_memory_limit_bytes, peaks.gpu_mem_used_bytes),
            gpu_memory_budget_bytes: signed_gap(
                hw.gpu_memory_budget_bytes,
                peaks.server_gpu_mem_bytes,
            ),
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
        latency: record::latency_of(&record.samples),
        timeout_ms: timeouts.for_config(c.ctx, c.batch),
        cv: record.cv,
        success_rate: record.success_rate,
        slo_met: None,
        slo_missed: Vec::new(),
    }
}

/// The outcome of a concurrency level: the trial's outcome, its figures, and the
/// objective judged by the contract's one rule ([`ConcurrencyOutcome::judge`]: every
/// bound must hold; a figure not measured misses).
pub fn concurrency_outcome(
    record: &TrialRecord,
    figures: &ConcurrencyFigures,
    snapshot: &HardwareSnapshot,
    thresholds: &Thresholds,
    timeouts: &TimeoutRule,
    slo: &Slo,
) -> ConcurrencyOutcome {
    let streams = figures.stream_decode_tps.as_ref();
    let mut outcome = ConcurrencyOutcome {
        trial: TrialOutcome {
            latency: figures.latency,
            ..trial_outcome(record, snapshot, thresholds, timeouts)
        },
        stream_decode_tps: streams.map(|s| s.mean),
        min_stream_decode_tps: streams.map(|s| s.min),
        aggregate_decode_tps: figures.aggregate_decode_tps,
    };
    outcome.judge(slo);
    outcome
}

/// The judgement of an outcome, as the trial log records it (absent without an objective).
pub fn slo_verdict(outcome: &ConcurrencyOutcome) -> Option<SloVerdict> {
    let trial = &outcome.trial;
    trial.slo_met.map(|met| SloVerdict {
        met,
        missed: trial.slo_missed.clone(),
    })
}

fn size_class(class: backend::SizeClass) -> SizeClass {
    match class {
        backend::SizeClass::Small => SizeClass::Small,
        backend::SizeClass::Medium => SizeClass::Medium,
        backend::SizeClass::Large => SizeClass::Large,
    }
}

fn stage(stage: record::Stage) -> Stage {
    match stage {
        record::Stage::Screen => Stage::Screen,
        record::Stage::Verify => Stage::Verify,
    }
}

fn verdict(verdict: record::Verdict) -> Verdict {
    match verdict {
        record::Verdict::Stable => Verdict::Stable,
        record::Verdict::Unstable => Verdict::Unstable,
        record::Verdict::Failed => Verdict::Failed,
    }
}

fn failure(kind: FailureKind) -> Failure {
    match kind {
        FailureKind::OutOfMemory => Failure::OutOfMemory,
        FailureKind::ThresholdBreach(metric) => Failure::ThresholdBreach(threshold(metric)),
        FailureKind::Timeout => Failure::Timeout,
        FailureKind::ServerError => Failure::ServerError,
        FailureKind::BadOutput => Failure::BadOutput,
    }
}

fn threshold(metric: Metric) -> Threshold {
    match metric {
        Metric::Vram => Threshold::Vram,
        Metric::Ram => Threshold::Ram,
        Metric::Temperature => Threshold::Temperature,
        Metric::Cpu => Threshold::Cpu,
        Metric::ProcessMemory => Threshold::ProcessMemory,
        Metric::GpuMemoryBudget => Threshold::GpuMemoryBudget,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{GpuInfo, GpuVendor, Measured, MemoryInfo, Source};
    use crate::record::{Peaks, Phase, SampleRecord, TrialFailure};

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
            vulkan_drivers: Vec::new(),
        }
    }

    #[test]
    fn memory_limits_take_the_stricter_of_percent_and_reserve() {
        let hw = hardware_facts(&snapshot(), &Thresholds::default());
        // 24 GiB: 90 % = 21.6 GiB, minus the 4 GiB reserve = 20 GiB → 20 GiB.
        assert_eq!(hw.gpu_memory_limit_bytes, Some(20 * GIB));
        // 64 GiB: 85 % = 54.4 GiB, minus reserve = 60 GiB → 54.4 GiB.
        assert_eq!(hw.ram_limit_bytes, Some((64.0 * GIB as f64 * 0.85) as u64));
        assert_eq!(hw.gpu_memory_free_bytes, Some(23 * GIB));
        assert_eq!(hw.gpu_count, 1);
        assert_eq!(hw.gpu_memory_budget_bytes, None);
    }

    #[test]
    fn batch_bounds_start_inside_them() {
        assert_eq!(
            batch_bounds(256, 512, 32),
            BatchBounds {
                min: 1,
                max: 256,
                max_ubatch: 512,
                initial: BatchProposal {
                    batch: 32,
                    ubatch: 32
                }
            }
        );
        assert_eq!(batch_bounds(16, 512, 32).initial.batch, 16);
        assert_eq!(batch_bounds(256, 8, 32).initial.ubatch, 8);
        assert_eq!(batch_bounds(0, 0, 0), batch_bounds(1, 1, 1));
        assert_eq!(
            concurrency_bounds(64),
            ConcurrencyBounds { min: 1, max: 64 }
        );
    }

    #[test]
    fn outcome_headroom_is_limit_minus_peak() {
        let sample = SampleRecord {
            index: 0,
            ok: false,
            ttft_ms: None,
            prefill_tps: None,
            decode_tps: None,
            prompt_tokens: None,
            completion_tokens: None,
            total_ms: None,
            error: Some("killed".into()),
            ..SampleRecord::default()
        };
        let record = TrialRecord {
            id: 3,
            phase: Phase::Context,
            stage: record::Stage::Verify,
            config: record::TrialConfig {
                ctx: 65_536,
                batch: 512,
                ubatch: 512,
                concurrency: 1,
                variant: Default::default(),
            },
            started_at: chrono::Utc::now(),
            duration_ms: 1000,
            granted_ctx: Some(65_536),
            samples: vec![sample.clone(), SampleRecord { index: 1, ..sample }],
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
                kind: FailureKind::ThresholdBreach(Metric::Vram),
                message: "vram".into(),
                fault: None,
            }),
            verdict: record::Verdict::Failed,
            reason: None,
            stopped_early: None,
            server_log_tail: Vec::new(),
            concurrency: None,
            memory_breakdown: None,
        };
        let o = trial_outcome(
            &record,
            &snapshot(),
            &Thresholds::default(),
            &TimeoutRule::default(),
        );
        assert_eq!(o.headroom.gpu_memory_bytes, Some(-2 * GIB as i64));
        assert_eq!(o.headroom.temperature_c, Some(5.0));
        assert_eq!(o.headroom.cpu_percent, None);
        assert_eq!(o.failure, Some(Failure::ThresholdBreach(Threshold::Vram)));
        assert_eq!(o.verdict, Verdict::Failed);
        assert_eq!(o.peak_gpu_memory_bytes, Some(22 * GIB));
        assert_eq!((o.stage, o.samples), (Stage::Verify, 2));
        assert_eq!(o.config.ctx, 65_536);
        assert_eq!(o.headroom.gpu_memory_budget_bytes, None);
        assert_eq!(o.peak_server_gpu_memory_bytes, None);

        // Under a 16 GiB GPU budget the server itself held 17 GiB of the 22 in use.
        let budget = Thresholds {
            gpu_memory_budget_mb: Some(16 * 1024),
            ..Thresholds::default()
        };
        assert_eq!(
            hardware_facts(&snapshot(), &budget).gpu_memory_budget_bytes,
            Some(16 * GIB)
        );
        let mut over = record.clone();
        over.peaks.server_gpu_mem_bytes = Some(17 * GIB);
        over.failure = Some(TrialFailure {
            kind: FailureKind::ThresholdBreach(Metric::GpuMemoryBudget),
            message: "gpu-memory-budget".into(),
            fault: None,
        });
        let o = trial_outcome(&over, &snapshot(), &budget, &TimeoutRule::default());
        assert_eq!(o.peak_server_gpu_memory_bytes, Some(17 * GIB));
        assert_eq!(o.headroom.gpu_memory_budget_bytes, Some(-(GIB as i64)));
        assert_eq!(
            o.failure,
            Some(Failure::ThresholdBreach(Threshold::GpuMemoryBudget))
        );
    }
}
