//! The wasm side of the registration macros: wit-bindgen bindings for the five worlds,
//! adapters from the generated traits to [`ContextSearch`] / [`BatchScaler`] /
//! [`ConcurrencySearch`] / [`VariantSearch`] / [`OffloadSearch`], and the one conversion
//! between the WIT records and the plain types.
//!
//! Everything here is `#[doc(hidden)]` plumbing; authors only see the traits and macros.
//! The export macros are public (`pub_export_macro`), so the component's export section
//! is emitted in the crate that invokes `export_*!`, and only that world is exported.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Once;

pub use wit_bindgen;

use crate as plain;
use crate::strategy::{
    BatchScaler, ConcurrencySearch, ContextSearch, OffloadSearch, VariantSearch,
};

pub mod context {
    wit_bindgen::generate!({
        path: "wit",
        world: "ozone:strategy/context-strategy@0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_context_strategy",
        default_bindings_module: "::ozone_sdk::__export::context",
        runtime_path: "::ozone_sdk::__export::wit_bindgen::rt",
    });
}

pub mod batch {
    wit_bindgen::generate!({
        path: "wit",
        world: "ozone:strategy/batch-strategy@0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_batch_strategy",
        default_bindings_module: "::ozone_sdk::__export::batch",
        runtime_path: "::ozone_sdk::__export::wit_bindgen::rt",
        with: {
            "ozone:strategy/types@0.3.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.3.0": super::context::ozone::strategy::host,
        },
    });
}

pub mod concurrency {
    wit_bindgen::generate!({
        path: "wit",
        world: "ozone:strategy/concurrency-strategy@0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_concurrency_strategy",
        default_bindings_module: "::ozone_sdk::__export::concurrency",
        runtime_path: "::ozone_sdk::__export::wit_bindgen::rt",
        with: {
            "ozone:strategy/types@0.3.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.3.0": super::context::ozone::strategy::host,
        },
    });
}

pub mod variants {
    wit_bindgen::generate!({
        path: "wit",
        world: "ozone:strategy/variant-strategy@0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_variant_strategy",
        default_bindings_module: "::ozone_sdk::__export::variants",
        runtime_path: "::ozone_sdk::__export::wit_bindgen::rt",
        with: {
            "ozone:strategy/types@0.3.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.3.0": super::context::ozone::strategy::host,
        },
    });
}

pub mod offload {
    wit_bindgen::generate!({
        path: "wit",
        world: "ozone:strategy/offload-strategy@0.3.0",
        pub_export_macro: true,
        export_macro_name: "__export_offload_strategy",
        default_bindings_module: "::ozone_sdk::__export::offload",
        runtime_path: "::ozone_sdk::__export::wit_bindgen::rt",
        with: {
            "ozone:strategy/types@0.3.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.3.0": super::context::ozone::strategy::host,
        },
    });
}

use batch::exports::ozone::strategy::batch as batch_api;
use concurrency::exports::ozone::strategy::concurrency as concurrency_api;
use context::exports::ozone::strategy::context as context_api;
use context::ozone::strategy::{host, types as wit};
use offload::exports::ozone::strategy::offload as offload_api;
use variants::exports::ozone::strategy::variants as variant_api;

pub(crate) fn host_log(level: plain::LogLevel, message: &str) {
    let level = match level {
        plain::LogLevel::Trace => wit::LogLevel::Trace,
        plain::LogLevel::Debug => wit::LogLevel::Debug,
        plain::LogLevel::Info => wit::LogLevel::Info,
        plain::LogLevel::Warn => wit::LogLevel::Warn,
        plain::LogLevel::Error => wit::LogLevel::Error,
    };
    host::log(level, message);
}

/// A panic would otherwise die silently (stderr is not linked): send its message to the
/// host's log first, so the host can say why the plugin trapped.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            host_log(plain::LogLevel::Error, &format!("panicked{at}: {message}"));
        }));
    });
}

/// Export adapter for a [`ContextSearch`] type (used by `export_context_search!`).
pub struct ContextExport<T>(PhantomData<T>);
/// The resource behind one context search.
pub struct ContextResource<T>(RefCell<T>);

impl<T: ContextSearch> context_api::Guest for ContextExport<T> {
    type ContextSearch = ContextResource<T>;
}

impl<T: ContextSearch> context_api::GuestContextSearch for ContextResource<T> {
    fn create(
        settings: String,
        hardware: wit::HardwareFacts,
        model: wit::ModelFacts,
        limits: wit::ContextLimits,
    ) -> Result<context_api::ContextSearch, String> {
        install_panic_hook();
        let search = T::new(&settings, &hardware.into(), &model.into(), &limits.into())?;
        Ok(context_api::ContextSearch::new(ContextResource(
            RefCell::new(search),
        )))
    }
    fn propose(&self) -> Option<u32> {
        self.0.borrow_mut().propose()
    }
    fn observe(&self, outcome: wit::TrialOutcome) {
        self.0.borrow_mut().observe(&outcome.into())
    }
    fn best(&self) -> Option<u32> {
        self.0.borrow().best()
    }
}

/// Export adapter for a [`BatchScaler`] type (used by `export_batch_scaler!`).
pub struct BatchExport<T>(PhantomData<T>);
/// The resource behind one batch scaler.
pub struct BatchResource<T>(RefCell<T>);

impl<T: BatchScaler> batch_api::Guest for BatchExport<T> {
    type BatchScaler = BatchResource<T>;
}

impl<T: BatchScaler> batch_api::GuestBatchScaler for BatchResource<T> {
    fn create(
        settings: String,
        hardware: wit::HardwareFacts,
        model: wit::ModelFacts,
        bounds: wit::BatchBounds,
    ) -> Result<batch_api::BatchScaler, String> {
        install_panic_hook();
        let scaler = T::new(&settings, &hardware.into(), &model.into(), &bounds.into())?;
        Ok(batch_api::BatchScaler::new(BatchResource(RefCell::new(
            scaler,
        ))))
    }
    fn propose(&self) -> Option<wit::BatchProposal> {
        self.0.borrow_mut().propose().map(Into::into)
    }
    fn observe(&self, outcome: wit::TrialOutcome) {
        self.0.borrow_mut().observe(&outcome.into())
    }
    fn best(&self) -> Option<wit::BatchProposal> {
        self.0.borrow().best().map(Into::into)
    }
}

/// Export adapter for a [`ConcurrencySearch`] type (used by `export_concurrency_search!`).
pub struct ConcurrencyExport<T>(PhantomData<T>);
/// The resource behind one concurrency search.
pub struct ConcurrencyResource<T>(RefCell<T>);

impl<T: ConcurrencySearch> concurrency_api::Guest for ConcurrencyExport<T> {
    type ConcurrencySearch = ConcurrencyResource<T>;
}

impl<T: ConcurrencySearch> concurrency_api::GuestConcurrencySearch for ConcurrencyResource<T> {
    fn create(
        settings: String,
        hardware: wit::HardwareFacts,
        model: wit::ModelFacts,
        bounds: wit::ConcurrencyBounds,
        slo: wit::Slo,
    ) -> Result<concurrency_api::ConcurrencySearch, String> {
        install_panic_hook();
        let search = T::new(
            &settings,
            &hardware.into(),
            &model.into(),
            &bounds.into(),
            &slo.into(),
        )?;
        Ok(concurrency_api::ConcurrencySearch::new(
            ConcurrencyResource(RefCell::new(search)),
        ))
    }
    fn propose(&self) -> Option<u32> {
        self.0.borrow_mut().propose()
    }
    fn observe(&self, outcome: wit::ConcurrencyOutcome) {
        self.0.borrow_mut().observe(&outcome.into())
    }
    fn best(&self) -> Option<u32> {
        self.0.borrow().best()
    }
}

/// Export adapter for a [`VariantSearch`] type (used by `export_variant_search!`).
pub struct VariantExport<T>(PhantomData<T>);
/// The resource behind one variant search.
pub struct VariantResource<T>(RefCell<T>);

impl<T: VariantSearch> variant_api::Guest for VariantExport<T> {
    type VariantSearch = VariantResource<T>;
}

impl<T: VariantSearch> variant_api::GuestVariantSearch for VariantResource<T> {
    fn create(
        settings: String,
        hardware: wit::HardwareFacts,
        model: wit::ModelFacts,
        space: wit::VariantSpace,
    ) -> Result<variant_api::VariantSearch, String> {
        install_panic_hook();
        let search = T::new(&settings, &hardware.into(), &model.into(), &space.into())?;
        Ok(variant_api::VariantSearch::new(VariantResource(
            RefCell::new(search),
        )))
    }
    fn propose(&self) -> Option<wit::ServerVariant> {
        self.0.borrow_mut().propose().map(Into::into)
    }
    fn observe(&self, outcome: wit::VariantOutcome) {
        self.0.borrow_mut().observe(&outcome.into())
    }
}

/// Export adapter for an [`OffloadSearch`] type (used by `export_offload_search!`).
pub struct OffloadExport<T>(PhantomData<T>);
/// The resource behind one offload search.
pub struct OffloadResource<T>(RefCell<T>);

impl<T: OffloadSearch> offload_api::Guest for OffloadExport<T> {
    type OffloadSearch = OffloadResource<T>;
}

impl<T: OffloadSearch> offload_api::GuestOffloadSearch for OffloadResource<T> {
    fn create(
        settings: String,
        hardware: wit::HardwareFacts,
        model: wit::ModelFacts,
        bounds: wit::OffloadBounds,
    ) -> Result<offload_api::OffloadSearch, String> {
        install_panic_hook();
        let search = T::new(&settings, &hardware.into(), &model.into(), &bounds.into())?;
        Ok(offload_api::OffloadSearch::new(OffloadResource(
            RefCell::new(search),
        )))
    }
    fn propose(&self) -> Option<wit::Offload> {
        self.0.borrow_mut().propose().map(Into::into)
    }
    fn observe(&self, outcome: wit::TrialOutcome) {
        self.0.borrow_mut().observe(&outcome.into())
    }
    fn best(&self) -> Option<wit::Offload> {
        self.0.borrow().best().map(Into::into)
    }
}

// The conversions WIT → plain (what a plugin receives) and plain → WIT (what it
// proposes).

impl From<wit::HardwareFacts> for plain::HardwareFacts {
    fn from(h: wit::HardwareFacts) -> Self {
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

fn cache_type(t: wit::CacheType) -> plain::CacheType {
    match t {
        wit::CacheType::F16 => plain::CacheType::F16,
        wit::CacheType::Q80 => plain::CacheType::Q8_0,
        wit::CacheType::Q40 => plain::CacheType::Q4_0,
    }
}

fn wit_cache_type(t: plain::CacheType) -> wit::CacheType {
    match t {
        plain::CacheType::F16 => wit::CacheType::F16,
        plain::CacheType::Q8_0 => wit::CacheType::Q80,
        plain::CacheType::Q4_0 => wit::CacheType::Q40,
    }
}

impl From<wit::ServerVariant> for plain::Variant {
    fn from(v: wit::ServerVariant) -> Self {
        Self {
            cache_type_k: cache_type(v.cache_type_k),
            cache_type_v: cache_type(v.cache_type_v),
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

impl From<plain::Variant> for wit::ServerVariant {
    fn from(v: plain::Variant) -> Self {
        Self {
            cache_type_k: wit_cache_type(v.cache_type_k),
            cache_type_v: wit_cache_type(v.cache_type_v),
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

impl From<wit::ModelFacts> for plain::ModelFacts {
    fn from(m: wit::ModelFacts) -> Self {
        Self {
            name: m.name,
            parameter_count: m.parameter_count,
            size_class: match m.size_class {
                wit::SizeClass::Small => plain::SizeClass::Small,
                wit::SizeClass::Medium => plain::SizeClass::Medium,
                wit::SizeClass::Large => plain::SizeClass::Large,
            },
            trained_context: m.trained_context,
            layer_count: m.layer_count,
            kv_bytes_per_token: m.kv_bytes_per_token,
            layers: m
                .layers
                .into_iter()
                .map(|g| plain::LayerGroup {
                    kind: match g.kind {
                        wit::LayerKind::FullAttention => plain::LayerKind::FullAttention,
                        wit::LayerKind::SlidingWindow => plain::LayerKind::SlidingWindow,
                        wit::LayerKind::Recurrent => plain::LayerKind::Recurrent,
                    },
                    count: g.count,
                    kv_bytes_per_token: g.kv_bytes_per_token,
                    window: g.window,
                    state_bytes: g.state_bytes,
                })
                .collect(),
            experts: m.experts.map(|e| plain::Experts {
                count: e.count,
                used: e.used,
                layers: e.layers,
            }),
            weights_bytes: m.weights_bytes,
            variant: m.server.into(),
            bounds: plain::ContextBounds {
                min: m.bounds.min,
                max: m.bounds.max,
                granularity: m.bounds.granularity,
            },
            hint: m.hint,
        }
    }
}

impl From<wit::ContextLimits> for plain::ContextLimits {
    fn from(l: wit::ContextLimits) -> Self {
        let t = l.timeout;
        Self {
            slo: l.slo.into(),
            timeout: plain::TimeoutRule {
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

impl From<wit::BatchProposal> for plain::BatchProposal {
    fn from(b: wit::BatchProposal) -> Self {
        Self {
            batch: b.batch,
            ubatch: b.ubatch,
        }
    }
}

impl From<plain::BatchProposal> for wit::BatchProposal {
    fn from(b: plain::BatchProposal) -> Self {
        Self {
            batch: b.batch,
            ubatch: b.ubatch,
        }
    }
}

impl From<wit::BatchBounds> for plain::BatchBounds {
    fn from(b: wit::BatchBounds) -> Self {
        Self {
            min: b.min,
            max: b.max,
            max_ubatch: b.max_ubatch,
            initial: b.initial.into(),
        }
    }
}

impl From<wit::ConcurrencyBounds> for plain::ConcurrencyBounds {
    fn from(b: wit::ConcurrencyBounds) -> Self {
        Self {
            min: b.min,
            max: b.max,
        }
    }
}

fn slo_metric(m: wit::SloMetric) -> plain::SloMetric {
    match m {
        wit::SloMetric::TtftP50 => plain::SloMetric::TtftP50,
        wit::SloMetric::TtftP95 => plain::SloMetric::TtftP95,
        wit::SloMetric::TtftP99 => plain::SloMetric::TtftP99,
        wit::SloMetric::TpotP50 => plain::SloMetric::TpotP50,
        wit::SloMetric::TpotP95 => plain::SloMetric::TpotP95,
        wit::SloMetric::E2eP95 => plain::SloMetric::E2eP95,
        wit::SloMetric::DecodeMin => plain::SloMetric::DecodeMin,
    }
}

impl From<wit::Slo> for plain::Slo {
    fn from(s: wit::Slo) -> Self {
        Self {
            bounds: s
                .bounds
                .into_iter()
                .map(|b| plain::SloBound {
                    metric: slo_metric(b.metric),
                    value: b.value,
                })
                .collect(),
        }
    }
}

impl From<wit::TrialOutcome> for plain::TrialOutcome {
    fn from(o: wit::TrialOutcome) -> Self {
        let threshold = |t: wit::Threshold| match t {
            wit::Threshold::Vram => plain::Threshold::Vram,
            wit::Threshold::Ram => plain::Threshold::Ram,
            wit::Threshold::Temperature => plain::Threshold::Temperature,
            wit::Threshold::Cpu => plain::Threshold::Cpu,
            wit::Threshold::ProcessMemory => plain::Threshold::ProcessMemory,
            wit::Threshold::GpuMemoryBudget => plain::Threshold::GpuMemoryBudget,
        };
        let l = o.latency;
        Self {
            config: plain::TrialConfig {
                ctx: o.config.ctx,
                batch: o.config.batch,
                ubatch: o.config.ubatch,
                concurrency: o.config.concurrency,
                variant: o.config.server.into(),
            },
            stage: match o.stage {
                wit::Stage::Screen => plain::Stage::Screen,
                wit::Stage::Verify => plain::Stage::Verify,
            },
            samples: o.samples,
            verdict: match o.verdict {
                wit::Verdict::Stable => plain::Verdict::Stable,
                wit::Verdict::Unstable => plain::Verdict::Unstable,
                wit::Verdict::Failed => plain::Verdict::Failed,
            },
            failure: o.failure.map(|f| match f {
                wit::Failure::OutOfMemory => plain::Failure::OutOfMemory,
                wit::Failure::ThresholdBreach(t) => plain::Failure::ThresholdBreach(threshold(t)),
                wit::Failure::Timeout => plain::Failure::Timeout,
                wit::Failure::ServerError => plain::Failure::ServerError,
                wit::Failure::BadOutput => plain::Failure::BadOutput,
            }),
            peak_gpu_memory_bytes: o.peak_gpu_memory_bytes,
            peak_server_gpu_memory_bytes: o.peak_server_gpu_memory_bytes,
            peak_ram_bytes: o.peak_ram_bytes,
            peak_process_memory_bytes: o.peak_process_memory_bytes,
            headroom: plain::Headroom {
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
            latency: plain::Latency {
                ttft_p50_ms: l.ttft_p50_ms,
                ttft_p95_ms: l.ttft_p95_ms,
                ttft_p99_ms: l.ttft_p99_ms,
                tpot_p50_ms: l.tpot_p50_ms,
                tpot_p95_ms: l.tpot_p95_ms,
                e2e_p95_ms: l.e2e_p95_ms,
            },
            timeout_ms: o.timeout_ms,
            cv: o.cv,
            success_rate: o.success_rate,
            slo_met: o.slo_met,
            slo_missed: o
                .slo_missed
                .into_iter()
                .map(|m| plain::SloMiss {
                    metric: slo_metric(m.metric),
                    bound: m.bound,
                    measured: m.measured,
                })
                .collect(),
        }
    }
}

impl From<wit::ConcurrencyOutcome> for plain::ConcurrencyOutcome {
    fn from(o: wit::ConcurrencyOutcome) -> Self {
        Self {
            trial: o.trial.into(),
            stream_decode_tps: o.stream_decode_tps,
            min_stream_decode_tps: o.min_stream_decode_tps,
            aggregate_decode_tps: o.aggregate_decode_tps,
        }
    }
}

impl From<wit::VariantSpace> for plain::VariantSpace {
    fn from(s: wit::VariantSpace) -> Self {
        Self {
            initial: s.initial.into(),
            candidates: s.candidates.into_iter().map(Into::into).collect(),
            max_variants: s.max_variants,
        }
    }
}

impl From<wit::VariantOutcome> for plain::VariantOutcome {
    fn from(o: wit::VariantOutcome) -> Self {
        Self {
            variant: o.server.into(),
            max_context: o.max_context,
            bound: o.bound.map(|b| match b {
                wit::BoundKind::Memory => plain::BoundKind::Memory,
                wit::BoundKind::Time => plain::BoundKind::Time,
                wit::BoundKind::Slo => plain::BoundKind::Slo,
                wit::BoundKind::Instability => plain::BoundKind::Instability,
                wit::BoundKind::TrainedContext => plain::BoundKind::TrainedContext,
                wit::BoundKind::ServerError => plain::BoundKind::ServerError,
            }),
            best_batch: o.best_batch.map(Into::into),
            decode_tps: o.decode_tps,
            prefill_tps: o.prefill_tps,
            ttft_ms: o.ttft_ms,
            peak_process_memory_bytes: o.peak_process_memory_bytes,
            peak_server_gpu_memory_bytes: o.peak_server_gpu_memory_bytes,
            quality: o.quality.map(|q| plain::Quality {
                kld_mean: q.kld_mean,
                kld_stddev: q.kld_stddev,
                top1_agreement: q.top1_agreement,
                positions: q.positions,
            }),
            trials: o.trials,
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

impl From<plain::Offload> for wit::Offload {
    fn from(o: plain::Offload) -> Self {
        Self {
            gpu_layers: o.gpu_layers,
            cpu_moe_layers: o.cpu_moe_layers,
        }
    }
}

impl From<wit::OffloadBounds> for plain::OffloadBounds {
    fn from(b: wit::OffloadBounds) -> Self {
        Self {
            layers: b.layers,
            expert_layers: b.expert_layers,
            ctx: b.ctx,
            fit: b.fit.map(Into::into),
        }
    }
}
