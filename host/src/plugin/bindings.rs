//! The single place the WIT contract becomes Rust on the host side
//! (`wasmtime::component::bindgen!`, one module per world, the shared interfaces
//! generated once), and the one conversion from the SDK's plain types — the host's types
//! at the plugin boundary — to the generated records.

use ozone_sdk as plain;

pub mod context {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "ozone:strategy/context-strategy@0.2.0",
    });
}

pub mod batch {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "ozone:strategy/batch-strategy@0.2.0",
        with: {
            "ozone:strategy/types@0.2.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.2.0": super::context::ozone::strategy::host,
        },
    });
}

pub mod concurrency {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "ozone:strategy/concurrency-strategy@0.2.0",
        with: {
            "ozone:strategy/types@0.2.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.2.0": super::context::ozone::strategy::host,
        },
    });
}

pub use context::ozone::strategy::host::Host as HostImports;
pub use context::ozone::strategy::types as wit;

impl From<&plain::HardwareFacts> for wit::HardwareFacts {
    fn from(h: &plain::HardwareFacts) -> Self {
        Self {
            gpu_count: h.gpu_count,
            gpu_memory_total_bytes: h.gpu_memory_total_bytes,
            gpu_memory_free_bytes: h.gpu_memory_free_bytes,
            gpu_memory_limit_bytes: h.gpu_memory_limit_bytes,
            gpu_memory_budget_bytes: h.gpu_memory_budget_bytes,
            ram_total_bytes: h.ram_total_bytes,
            ram_available_bytes: h.ram_available_bytes,
            ram_limit_bytes: h.ram_limit_bytes,
            process_memory_budget_bytes: h.process_memory_budget_bytes,
            unified_memory: h.unified_memory,
            logical_cores: h.logical_cores,
        }
    }
}

impl From<&plain::ModelFacts> for wit::ModelFacts {
    fn from(m: &plain::ModelFacts) -> Self {
        Self {
            name: m.name.clone(),
            parameter_count: m.parameter_count,
            size_class: match m.size_class {
                plain::SizeClass::Small => wit::SizeClass::Small,
                plain::SizeClass::Medium => wit::SizeClass::Medium,
                plain::SizeClass::Large => wit::SizeClass::Large,
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

impl From<&plain::BatchBounds> for wit::BatchBounds {
    fn from(b: &plain::BatchBounds) -> Self {
        Self {
            min: b.min,
            max: b.max,
            initial: b.initial,
        }
    }
}

impl From<&plain::ConcurrencyBounds> for wit::ConcurrencyBounds {
    fn from(b: &plain::ConcurrencyBounds) -> Self {
        Self {
            min: b.min,
            max: b.max,
        }
    }
}

fn slo_metric(m: plain::SloMetric) -> wit::SloMetric {
    match m {
        plain::SloMetric::TtftP50 => wit::SloMetric::TtftP50,
        plain::SloMetric::TtftP95 => wit::SloMetric::TtftP95,
        plain::SloMetric::TtftP99 => wit::SloMetric::TtftP99,
        plain::SloMetric::TpotP50 => wit::SloMetric::TpotP50,
        plain::SloMetric::TpotP95 => wit::SloMetric::TpotP95,
        plain::SloMetric::E2eP95 => wit::SloMetric::E2eP95,
        plain::SloMetric::DecodeMin => wit::SloMetric::DecodeMin,
    }
}

impl From<&plain::Slo> for wit::Slo {
    fn from(s: &plain::Slo) -> Self {
        Self {
            bounds: s
                .bounds
                .iter()
                .map(|b| wit::SloBound {
                    metric: slo_metric(b.metric),
                    value: b.value,
                })
                .collect(),
        }
    }
}

fn threshold(t: plain::Threshold) -> wit::Threshold {
    match t {
        plain::Threshold::Vram => wit::Threshold::Vram,
        plain::Threshold::Ram => wit::Threshold::Ram,
        plain::Threshold::Temperature => wit::Threshold::Temperature,
        plain::Threshold::Cpu => wit::Threshold::Cpu,
        plain::Threshold::ProcessMemory => wit::Threshold::ProcessMemory,
        plain::Threshold::GpuMemoryBudget => wit::Threshold::GpuMemoryBudget,
    }
}

impl From<&plain::TrialOutcome> for wit::TrialOutcome {
    fn from(o: &plain::TrialOutcome) -> Self {
        Self {
            config: wit::TrialConfig {
                ctx: o.config.ctx,
                batch: o.config.batch,
                ubatch: o.config.ubatch,
                concurrency: o.config.concurrency,
            },
            stage: match o.stage {
                plain::Stage::Screen => wit::Stage::Screen,
                plain::Stage::Verify => wit::Stage::Verify,
            },
            samples: o.samples,
            verdict: match o.verdict {
                plain::Verdict::Stable => wit::Verdict::Stable,
                plain::Verdict::Unstable => wit::Verdict::Unstable,
                plain::Verdict::Failed => wit::Verdict::Failed,
            },
            failure: o.failure.map(|f| match f {
                plain::Failure::OutOfMemory => wit::Failure::OutOfMemory,
                plain::Failure::ThresholdBreach(t) => wit::Failure::ThresholdBreach(threshold(t)),
                plain::Failure::Timeout => wit::Failure::Timeout,
                plain::Failure::ServerError => wit::Failure::ServerError,
                plain::Failure::BadOutput => wit::Failure::BadOutput,
            }),
            peak_gpu_memory_bytes: o.peak_gpu_memory_bytes,
            peak_server_gpu_memory_bytes: o.peak_server_gpu_memory_bytes,
            peak_ram_bytes: o.peak_ram_bytes,
            peak_process_memory_bytes: o.peak_process_memory_bytes,
            headroom: wit::Headroom {
                gpu_memory_bytes: o.headroom.gpu_memory_bytes,
                gpu_memory_budget_bytes: o.headroom.gpu_memory_budget_bytes,
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

impl From<&plain::ConcurrencyOutcome> for wit::ConcurrencyOutcome {
    fn from(o: &plain::ConcurrencyOutcome) -> Self {
        let l = &o.latency;
        Self {
            trial: (&o.trial).into(),
            latency: wit::Latency {
                ttft_p50_ms: l.ttft_p50_ms,
                ttft_p95_ms: l.ttft_p95_ms,
                ttft_p99_ms: l.ttft_p99_ms,
                tpot_p50_ms: l.tpot_p50_ms,
                tpot_p95_ms: l.tpot_p95_ms,
                e2e_p95_ms: l.e2e_p95_ms,
            },
            stream_decode_tps: o.stream_decode_tps,
            min_stream_decode_tps: o.min_stream_decode_tps,
            aggregate_decode_tps: o.aggregate_decode_tps,
            slo_met: o.slo_met,
            slo_missed: o
                .slo_missed
                .iter()
                .map(|m| wit::SloMiss {
                    metric: slo_metric(m.metric),
                    bound: m.bound,
                    measured: m.measured,
                })
                .collect(),
        }
    }
}
