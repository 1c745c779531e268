//! Shared by the plugin tests and the plugin bench: conversions from the SDK's simulated
//! outcomes to the host's types, and a driver loop.

#![allow(dead_code)]

use std::path::PathBuf;

use ozone::backend::SizeClass;
use ozone::plugin::{
    BatchScaler, ContextBounds, ContextSearch, HardwareFacts, Headroom, ModelInfo, Outcome,
    PluginError, PluginHost, PluginRef, SandboxLimits,
};
use ozone::record::{FailureKind, KvCacheType, Metric, TrialConfig, Verdict};

/// A host sharing one compiled-component cache across the test binaries, so each
/// component is compiled once (cranelift is slow in debug builds).
pub fn host() -> PluginHost {
    host_with(SandboxLimits::default())
}

pub fn host_with(limits: SandboxLimits) -> PluginHost {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    PluginHost::new(limits, Some(cache)).expect("engine")
}

/// A guest component built by host/build.rs (test guests and examples).
pub fn guest(file: &str) -> PluginRef {
    PluginRef::File(PathBuf::from(env!("OZONE_GUEST_DIR")).join(file))
}

pub fn hardware(h: &ozone_sdk::HardwareFacts) -> HardwareFacts {
    HardwareFacts {
        gpu_count: h.gpu_count,
        gpu_memory_total_bytes: h.gpu_memory_total_bytes,
        gpu_memory_free_bytes: h.gpu_memory_free_bytes,
        gpu_memory_limit_bytes: h.gpu_memory_limit_bytes,
        ram_total_bytes: h.ram_total_bytes,
        ram_available_bytes: h.ram_available_bytes,
        ram_limit_bytes: h.ram_limit_bytes,
        process_memory_budget_bytes: h.process_memory_budget_bytes,
        unified_memory: h.unified_memory,
        logical_cores: h.logical_cores,
    }
}

pub fn model(m: &ozone_sdk::ModelInfo) -> ModelInfo {
    ModelInfo {
        name: m.name.clone(),
        parameter_count: m.parameter_count,
        size_class: match m.size_class {
            ozone_sdk::SizeClass::Small => SizeClass::Small,
            ozone_sdk::SizeClass::Medium => SizeClass::Medium,
            ozone_sdk::SizeClass::Large => SizeClass::Large,
        },
        trained_context: m.trained_context,
        kv_bytes_per_token: m.kv_bytes_per_token,
        weights_bytes: m.weights_bytes,
        bounds: ContextBounds::new(m.bounds.min, m.bounds.max, m.bounds.granularity),
        hint: m.hint,
    }
}

pub fn outcome(o: &ozone_sdk::Outcome) -> Outcome {
    use ozone_sdk::{Failure, Threshold};
    Outcome {
        config: TrialConfig {
            ctx: o.config.ctx,
            batch: o.config.batch,
            ubatch: o.config.ubatch,
            concurrency: o.config.concurrency,
            kv_cache_type: KvCacheType::F16,
        },
        verdict: match o.verdict {
            ozone_sdk::Verdict::Stable => Verdict::Stable,
            ozone_sdk::Verdict::Unstable => Verdict::Unstable,
            ozone_sdk::Verdict::Failed => Verdict::Failed,
        },
        failure: o.failure.map(|f| match f {
            Failure::OutOfMemory => FailureKind::OutOfMemory,
            Failure::ThresholdBreach(t) => FailureKind::ThresholdBreach(match t {
                Threshold::Vram => Metric::Vram,
                Threshold::Ram => Metric::Ram,
                Threshold::Temperature => Metric::Temperature,
                Threshold::Cpu => Metric::Cpu,
                Threshold::ProcessMemory => Metric::ProcessMemory,
            }),
            Failure::Timeout => FailureKind::Timeout,
            Failure::ServerError => FailureKind::ServerError,
            Failure::BadOutput => FailureKind::BadOutput,
        }),
        peak_gpu_memory_bytes: o.peak_gpu_memory_bytes,
        peak_ram_bytes: o.peak_ram_bytes,
        peak_process_memory_bytes: o.peak_process_memory_bytes,
        headroom: Headroom {
            gpu_memory_bytes: o.headroom.gpu_memory_bytes,
            ram_bytes: o.headroom.ram_bytes,
            process_memory_bytes: o.headroom.process_memory_bytes,
            temperature_c: o.headroom.temperature_c,
            cpu_percent: o.headroom.cpu_percent,
        },
        prefill_tps: o.prefill_tps,
        decode_tps: o.decode_tps,
        ttft_ms: o.ttft_ms,
        cv: o.cv,
        success_rate: o.success_rate,
    }
}

/// What a plugin did when driven to the end.
#[derive(Debug, PartialEq)]
pub struct Run {
    pub proposals: Vec<u32>,
    pub best: Option<u32>,
}

/// Drives a context search through the component until it proposes nothing (≤ 64 trials).
pub fn drive_context(
    search: &mut ContextSearch,
    mut trial: impl FnMut(u32) -> ozone_sdk::Outcome,
) -> Result<Run, PluginError> {
    let mut proposals = Vec::new();
    while let Some(ctx) = search.propose()? {
        proposals.push(ctx);
        assert!(proposals.len() <= 64, "no end: {proposals:?}");
        search.observe(&outcome(&trial(ctx)))?;
    }
    Ok(Run {
        proposals,
        best: search.best()?,
    })
}

/// Drives a batch scaler through the component until it proposes nothing (≤ 64 trials).
pub fn drive_batch(
    scaler: &mut BatchScaler,
    mut trial: impl FnMut(u32) -> ozone_sdk::Outcome,
) -> Result<Run, PluginError> {
    let mut proposals = Vec::new();
    while let Some(batch) = scaler.propose()? {
        proposals.push(batch);
        assert!(proposals.len() <= 64, "no end: {proposals:?}");
        scaler.observe(&outcome(&trial(batch)))?;
    }
    Ok(Run {
        proposals,
        best: scaler.best()?,
    })
}
