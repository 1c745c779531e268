//! The single place the WIT contract becomes Rust on the host side
//! (`wasmtime::component::bindgen!`, one module per world, the shared interfaces
//! generated once), and the one conversion from the SDK's plain types — the host's types
//! at the plugin boundary — to the generated records.

use ozone_sdk as plain;

pub mod context {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "ozone:strategy/context-strategy@0.3.0",
    });
}

pub mod batch {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "ozone:strategy/batch-strategy@0.3.0",
        with: {
            "ozone:strategy/types@0.3.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.3.0": super::context::ozone::strategy::host,
        },
    });
}

pub mod concurrency {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "ozone:strategy/concurrency-strategy@0.3.0",
        with: {
            "ozone:strategy/types@0.3.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.3.0": super::context::ozone::strategy::host,
        },
    });
}

pub mod variants {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "ozone:strategy/variant-strategy@0.3.0",
        with: {
            "ozone:strategy/types@0.3.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.3.0": super::context::ozone::strategy::host,
        },
    });
}

pub mod offload {
    wasmtime::component::bindgen!({
        path: "../wit/v0.3.0",
        world: "ozone:strategy/offload-strategy@0.3.0",
        with: {
            "ozone:strategy/types@0.3.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.3.0": super::context::ozone::strategy::host,
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

fn cache_type(t: plain::CacheType) -> wit::CacheType {
    match t {
        plain::CacheType::F16 => wit::CacheType::F16,
        plain::CacheType::Q8_0 => wit::CacheType::Q80,
        plain::CacheType::Q4_0 => wit::CacheType::Q40,
    }
}

fn plain_cache_type(t: wit::CacheType) -> plain::CacheType {
    match t {
        wit::CacheType::F16 => plain::CacheType::F16,
        wit::CacheType::Q80 => plain::CacheType::Q8_0,
        wit::CacheType::Q40 => plain::CacheType::Q4_0,
    }
}

impl From<&plain::Variant> for wit::ServerVariant {
    fn from(v: &plain::Variant) -> Self {
        Self {
            cache_type_k: cache_type(v.cache_type_k),
            cache_type_v: cache_type(v.cache_type_v),
            flash_attn: match v.flash_attn {
                plain::FlashAttn::Off => wit::FlashAttn::Off,
                plain::FlashAttn::On => wit::FlashAttn::On,
                plain::FlashAttn::Auto => wit::FlashAttn::Auto,
            },
            threads: v.threads,
            gpu_layers: v.gpu_layers,
            cpu_moe_layers: v.cpu_moe_layers,
        }
    }
}

/// What a variant search proposes, back to the plain type.
impl From<wit::ServerVariant> for plain::Variant {
    fn from(v: wit::ServerVariant) -> Self {
        Self {
            cache_type_k: plain_cache_type(v.cache_type_k),
            cache_type_v: plain_cache_type(v.cache_type_v),
            flash_attn: match v.flash_attn {
                wit::FlashAttn::Off => plain::FlashAttn::Off,
                wit::FlashAttn::On => plain::FlashAttn::On,
                wit::FlashAttn::Auto => plain::FlashAttn::Auto,
            },
            threads: v.threads,
            gpu_layers: v.gpu_layers,
            cpu_moe_layers: v.cpu_moe_layers,
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
            layer_count: m.layer_count,
            kv_bytes_per_token: m.kv_bytes_per_token,
            layers: m
                .layers
                .iter()
                .map(|g| wit::LayerGroup {
                    kind: match g.kind {
                        plain::LayerKind::FullAttention => wit::LayerKind::FullAttention,
                        plain::LayerKind::SlidingWindow => wit::LayerKind::SlidingWindow,
                        plain::LayerKind::Recurrent => wit::LayerKind::Recurrent,
                    },
                    count: g.count,
                    kv_bytes_per_token: g.kv_bytes_per_token,
                    window: g.window,
                    state_bytes: g.state_bytes,
                })
                .collect(),
            experts: m.experts.map(|e| wit::Experts {
                count: e.count,
                used: e.used,
                layers: e.layers,
            }),
            weights_bytes: m.weights_bytes,
            server: (&m.variant).into(),
            bounds: wit::ContextBounds {
                min: m.bounds.min,
                max: m.bounds.max,
                granularity: m.bounds.granularity,
            },
            hint: m.hint,
        }
    }
}

impl From<&plain::ContextLimits> for wit::ContextLimits {
    fn from(l: &plain::ContextLimits) -> Self {
        let t = &l.timeout;
        Self {
            slo: (&l.slo).into(),
            timeout: wit::TimeoutRule {
                base_ms: t.base_ms,
                per_1k_tokens_ms: t.per_1k_tokens_ms,
                per_batch_ms: t.per_batch_ms,
                min_ms: t.min_ms,
                max_ms: t.max_ms,
            },
            timeout_margin: l.timeout_margin,
        }
    }
}

impl From<&plain::BatchProposal> for wit::BatchProposal {
    fn from(b: &plain::BatchProposal) -> Self {
        Self {
            batch: b.batch,
            ubatch: b.ubatch,
        }
    }
}

impl From<wit::BatchProposal> for plain::BatchProposal {
    fn from(b: wit::BatchProposal) -> Self {
        Self {
            batch: b.batch,
            ubatch: b.ubatch,
        }
    }
}

impl From<&plain::Offload> for wit::Offload {
    fn from(o: &plain::Offload) -> Self {
        Self {
            gpu_layers: o.gpu_layers,
            cpu_moe_layers: o.cpu_moe_layers,
        }
    }
}

impl From<wit::Offload> for plain::Offload {
    fn from(o: wit::Offload) -> Self {
        Self {
            gpu_layers: o.gpu_layers,
            cpu_moe_layers: o.cpu_moe_layers,
        }
    }
}

impl From<&plain::OffloadBounds> for wit::OffloadBounds {
    fn from(b: &plain::OffloadBounds) -> Self {
        Self {
            layers: b.layers,
            expert_layers: b.expert_layers,
            ctx: b.ctx,
            fit: b.fit.as_ref().map(Into::into),
        }
    }
}

impl From<&plain::VariantSpace> for wit::VariantSpace {
    fn from(s: &plain::VariantSpace) -> Self {
        Self {
            initial: (&s.initial).into(),
            candidates: s.candidates.iter().map(Into::into).collect(),
            max_variants: s.max_variants,
        }
    }
}

impl From<&plain::VariantOutcome> for wit::VariantOutcome {
    fn from(o: &plain::VariantOutcome) -> Self {
        Self {
            server: (&o.variant).into(),
            max_context: o.max_context,
            bound: o.bound.map(|b| match b {
                plain::BoundKind::Memory => wit::BoundKind::Memory,
                plain::BoundKind::Time => wit::BoundKind::Time,
                plain::BoundKind::Slo => wit::BoundKind::Slo,
                plain::BoundKind::Instability => wit::BoundKind::Instability,
                plain::BoundKind::TrainedContext => wit::BoundKind::TrainedContext,
                plain::BoundKind::ServerError => wit::BoundKind::ServerError,
            }),
            best_batch: o.best_batch.as_ref().map(Into::into),
            decode_tps: o.decode_tps,
            prefill_tps: o.prefill_tps,
            ttft_ms: o.ttft_ms,
            peak_process_memory_bytes: o.peak_process_memory_bytes,
            peak_server_gpu_memory_bytes: o.peak_server_gpu_memory_bytes,
            quality: o.quality.map(|q| wit::Quality {
                kld_mean: q.kld_mean,
                kld_stddev: q.kld_stddev,
                top1_agreement: q.top1_agreement,
                positions: q.positions,
            }),
            trials: o.trials,
        }
    }
}

impl From<&plain::BatchBounds> for wit::BatchBounds {
    fn from(b: &plain::BatchBounds) -> Self {
        Self {
            min: b.min,
            max: b.max,
            max_ubatch: b.max_ubatch,
            initial: (&b.initial).into(),
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
                server: (&o.config.variant).into(),
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
            latency: wit::Latency {
                ttft_p50_ms: o.latency.ttft_p50_ms,
                ttft_p95_ms: o.latency.ttft_p95_ms,
                ttft_p99_ms: o.latency.ttft_p99_ms,
                tpot_p50_ms: o.latency.tpot_p50_ms,
                tpot_p95_ms: o.latency.tpot_p95_ms,
                e2e_p95_ms: o.latency.e2e_p95_ms,
            },
            timeout_ms: o.timeout_ms,
            cv: o.cv,
            success_rate: o.success_rate,
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

impl From<&plain::ConcurrencyOutcome> for wit::ConcurrencyOutcome {
    fn from(o: &plain::ConcurrencyOutcome) -> Self {
        Self {
            trial: (&o.trial).into(),
            stream_decode_tps: o.stream_decode_tps,
            min_stream_decode_tps: o.min_stream_decode_tps,
            aggregate_decode_tps: o.aggregate_decode_tps,
        }
    }
}
