//! The wasm side of the registration macros: wit-bindgen bindings for the three worlds,
//! adapters from the generated traits to [`ContextSearch`] / [`BatchScaler`] /
//! [`ConcurrencySearch`], and the one conversion from the WIT records to the plain types.
//!
//! Everything here is `#[doc(hidden)]` plumbing; authors only see the traits and macros.
//! The export macros are public (`pub_export_macro`), so the component's export section
//! is emitted in the crate that invokes `export_*!`, and only that world is exported.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Once;

pub use wit_bindgen;

use crate::concurrency as plain_c;
use crate::strategy::{BatchScaler, ConcurrencySearch, ContextSearch};
use crate::types::{self as plain};

pub mod context {
    wit_bindgen::generate!({
        path: "wit",
        world: "ozone:strategy/context-strategy@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_context_strategy",
        default_bindings_module: "::ozone_sdk::__export::context",
        runtime_path: "::ozone_sdk::__export::wit_bindgen::rt",
    });
}

pub mod batch {
    wit_bindgen::generate!({
        path: "wit",
        world: "ozone:strategy/batch-strategy@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_batch_strategy",
        default_bindings_module: "::ozone_sdk::__export::batch",
        runtime_path: "::ozone_sdk::__export::wit_bindgen::rt",
        with: {
            "ozone:strategy/types@0.2.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.2.0": super::context::ozone::strategy::host,
        },
    });
}

pub mod concurrency {
    wit_bindgen::generate!({
        path: "wit",
        world: "ozone:strategy/concurrency-strategy@0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_concurrency_strategy",
        default_bindings_module: "::ozone_sdk::__export::concurrency",
        runtime_path: "::ozone_sdk::__export::wit_bindgen::rt",
        with: {
            "ozone:strategy/types@0.2.0": super::context::ozone::strategy::types,
            "ozone:strategy/host@0.2.0": super::context::ozone::strategy::host,
        },
    });
}

use batch::exports::ozone::strategy::batch as batch_api;
use concurrency::exports::ozone::strategy::concurrency as concurrency_api;
use context::exports::ozone::strategy::context as context_api;
use context::ozone::strategy::{host, types as wit};

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
    ) -> Result<context_api::ContextSearch, String> {
        install_panic_hook();
        let search = T::new(&settings, &hardware.into(), &model.into())?;
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

// The conversions WIT → plain: a plugin only receives records.

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
            kv_bytes_per_token: m.kv_bytes_per_token,
            weights_bytes: m.weights_bytes,
            bounds: plain::ContextBounds {
                min: m.bounds.min,
                max: m.bounds.max,
                granularity: m.bounds.granularity,
            },
            hint: m.hint,
        }
    }
}

impl From<wit::BatchBounds> for plain::BatchBounds {
    fn from(b: wit::BatchBounds) -> Self {
        Self {
            min: b.min,
            max: b.max,
            initial: b.initial,
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

fn slo_metric(m: wit::SloMetric) -> plain_c::SloMetric {
    match m {
        wit::SloMetric::TtftP50 => plain_c::SloMetric::TtftP50,
        wit::SloMetric::TtftP95 => plain_c::SloMetric::TtftP95,
        wit::SloMetric::TtftP99 => plain_c::SloMetric::TtftP99,
        wit::SloMetric::TpotP50 => plain_c::SloMetric::TpotP50,
        wit::SloMetric::TpotP95 => plain_c::SloMetric::TpotP95,
        wit::SloMetric::E2eP95 => plain_c::SloMetric::E2eP95,
        wit::SloMetric::DecodeMin => plain_c::SloMetric::DecodeMin,
    }
}

impl From<wit::Slo> for plain_c::Slo {
    fn from(s: wit::Slo) -> Self {
        Self {
            bounds: s
                .bounds
                .into_iter()
                .map(|b| plain_c::SloBound {
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
        Self {
            config: plain::TrialConfig {
                ctx: o.config.ctx,
                batch: o.config.batch,
                ubatch: o.config.ubatch,
                concurrency: o.config.concurrency,
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
            cv: o.cv,
            success_rate: o.success_rate,
        }
    }
}

impl From<wit::ConcurrencyOutcome> for plain_c::ConcurrencyOutcome {
    fn from(o: wit::ConcurrencyOutcome) -> Self {
        let l = o.latency;
        Self {
            trial: o.trial.into(),
            latency: plain_c::Latency {
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
                .into_iter()
                .map(|m| plain_c::SloMiss {
                    metric: slo_metric(m.metric),
                    bound: m.bound,
                    measured: m.measured,
                })
                .collect(),
        }
    }
}
