//! The single place the WIT contract becomes Rust on the host side (`wasmtime::component::bindgen!`),
//! and the conversions from the host's plain facts to the generated records.

use crate::backend::SizeClass;
use crate::record::{FailureKind, Metric, Verdict};

use super::facts::{HardwareFacts, ModelInfo, Outcome};

pub mod context {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ozone:strategy/context-strategy@0.1.0",
    });
}

pub mod batch {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "ozone:strategy/batch-strategy@0.1.0",
        with: {
            "ozone:strategy/types@0.1.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.1.0": super::context::ozone::strategy::host,
        },
    });
}

pub use context::ozone::strategy::host::Host as HostImports;
pub use context::ozone::strategy::types as wit;

impl From<&HardwareFacts> for wit::HardwareFacts {
    fn from(h: &HardwareFacts) -> Self {
        Self {
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
}

impl From<&ModelInfo> for wit::ModelFacts {
    fn from(m: &ModelInfo) -> Self {
        Self {
            name: m.name.clone(),
            parameter_count: m.parameter_count,
            size_class: match m.size_class {
                SizeClass::Small => wit::SizeClass::Small,
                SizeClass::Medium => wit::SizeClass::Medium,
                SizeClass::Large => wit::SizeClass::Large,
            },
            trained_context: m.trained_context,
            kv_bytes_per_token: m.kv_bytes_per_token,
            weights_bytes: m.weights_bytes,
            bounds: wit::ContextBounds {
                min: m.bounds.min,
                max: m.bounds.max,
                granularity: m.bounds.granularity,
            },
            hint: m.hint,
        }
    }
}

fn threshold(metric: Metric) -> wit::Threshold {
    match metric {
        Metric::Vram => wit::Threshold::Vram,
        Metric::Ram => wit::Threshold::Ram,
        Metric::Temperature => wit::Threshold::Temperature,
        Metric::Cpu => wit::Threshold::Cpu,
        Metric::ProcessMemory => wit::Threshold::ProcessMemory,
        // 0.1.0 has no GPU-budget threshold: the nearest it knows (0.2.0 names it).
        Metric::GpuMemoryBudget => wit::Threshold::Vram,
    }
}

impl From<&Outcome> for wit::TrialOutcome {
    fn from(o: &Outcome) -> Self {
        Self {
            config: wit::TrialConfig {
                ctx: o.config.ctx,
                batch: o.config.batch,
                ubatch: o.config.ubatch,
                concurrency: o.config.concurrency,
            },
            verdict: match o.verdict {
                Verdict::Stable => wit::Verdict::Stable,
                Verdict::Unstable => wit::Verdict::Unstable,
                Verdict::Failed => wit::Verdict::Failed,
            },
            failure: o.failure.map(|kind| match kind {
                FailureKind::OutOfMemory => wit::Failure::OutOfMemory,
                FailureKind::ThresholdBreach(m) => wit::Failure::ThresholdBreach(threshold(m)),
                FailureKind::Timeout => wit::Failure::Timeout,
                FailureKind::ServerError => wit::Failure::ServerError,
                FailureKind::BadOutput => wit::Failure::BadOutput,
            }),
            peak_gpu_memory_bytes: o.peak_gpu_memory_bytes,
            peak_ram_bytes: o.peak_ram_bytes,
            peak_process_memory_bytes: o.peak_process_memory_bytes,
            headroom: wit::Headroom {
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
}
