//! Range checks on a well-typed configuration. Each problem names the key paths it
//! involves, so the loader can point at the one written in the file.

use super::schema::Config;

/// Largest wasm stack a plugin may have: plugins run on host threads of 2 MiB.
const MAX_STACK_KB: u64 = 1024;

/// One out-of-range value: the keys involved (the first one present in the file is
/// reported) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub keys: Vec<&'static str>,
    pub message: String,
}

/// All range problems of `config`, in file order of their sections.
pub fn check(config: &Config) -> Vec<Problem> {
    let mut p = Checks::default();
    let s = &config.search_strategy;
    p.positive_u(
        "search_strategy.initial_context_probe",
        s.initial_context_probe.into(),
    );
    p.require(
        s.binary_search_factor > 1.0 && s.binary_search_factor.is_finite(),
        &["search_strategy.binary_search_factor"],
        format!("must be above 1.0, got {}", s.binary_search_factor),
    );
    p.positive_u(
        "search_strategy.max_binary_iterations",
        s.max_binary_iterations.into(),
    );
    let b = &s.batch_adaptation;
    p.positive_u(
        "search_strategy.batch_adaptation.max_batch",
        b.max_batch.into(),
    );
    p.positive_u(
        "search_strategy.batch_adaptation.max_ubatch",
        b.max_ubatch.into(),
    );
    for (key, value) in [
        (
            "search_strategy.batch_adaptation.initial_batch_large",
            b.initial_batch_large,
        ),
        (
            "search_strategy.batch_adaptation.initial_batch_medium",
            b.initial_batch_medium,
        ),
        (
            "search_strategy.batch_adaptation.initial_batch_small",
            b.initial_batch_small,
        ),
    ] {
        p.positive_u(key, value.into());
        p.require(
            value <= b.max_batch,
            &[key, "search_strategy.batch_adaptation.max_batch"],
            format!("{value} is above max_batch {}", b.max_batch),
        );
    }
    p.require(
        b.scale_up_factor > 1.0 && b.scale_up_factor.is_finite(),
        &["search_strategy.batch_adaptation.scale_up_factor"],
        format!("must be above 1.0, got {}", b.scale_up_factor),
    );

    let pc = &config.preset_categories;
    p.percent(
        "preset_categories.max_context.target_context_percentile",
        pc.max_context.target_context_percentile,
    );
    for (key, w) in [
        (
            "preset_categories.max_context.throughput_weight",
            pc.max_context.throughput_weight,
        ),
        (
            "preset_categories.max_context.ttft_weight",
            pc.max_context.ttft_weight,
        ),
        (
            "preset_categories.balanced.throughput_weight",
            pc.balanced.throughput_weight,
        ),
        (
            "preset_categories.balanced.ttft_weight",
            pc.balanced.ttft_weight,
        ),
        (
            "preset_categories.fast_response.throughput_weight",
            pc.fast_response.throughput_weight,
        ),
        (
            "preset_categories.fast_response.ttft_weight",
            pc.fast_response.ttft_weight,
        ),
    ] {
        p.ratio(key, w);
    }
    let [lo, hi] = pc.balanced.target_context_range;
    p.require(
        lo > 0 && lo <= hi,
        &["preset_categories.balanced.target_context_range"],
        format!("needs 0 < low <= high, got [{lo}, {hi}]"),
    );
    p.positive_u(
        "preset_categories.fast_response.target_context_min",
        pc.fast_response.target_context_min.into(),
    );

    let t = &config.testing;
    p.positive_u(
        "testing.statistical_validation.min_samples_per_config",
        t.statistical_validation.min_samples_per_config.into(),
    );
    p.ratio(
        "testing.statistical_validation.confidence_threshold",
        t.statistical_validation.confidence_threshold,
    );
    p.non_negative(
        "testing.statistical_validation.variance_tolerance",
        t.statistical_validation.variance_tolerance,
    );
    let levels = &t.concurrency_progression.levels;
    p.require(
        !levels.is_empty() && levels[0] >= 1 && levels.windows(2).all(|w| w[0] < w[1]),
        &["testing.concurrency_progression.levels"],
        format!("must be increasing levels of at least 1, got {levels:?}"),
    );
    p.non_negative(
        "testing.concurrency_progression.stabilization_delay",
        t.concurrency_progression.stabilization_delay,
    );
    p.positive_u(
        "testing.concurrency_progression.max_concurrency",
        t.concurrency_progression.max_concurrency.into(),
    );
    p.positive_u(
        "testing.concurrency_progression.requests_per_stream",
        t.concurrency_progression.requests_per_stream.into(),
    );
    let at = &t.adaptive_timeouts;
    for (key, v) in [
        ("testing.adaptive_timeouts.base_timeout", at.base_timeout),
        (
            "testing.adaptive_timeouts.context_multiplier",
            at.context_multiplier,
        ),
        (
            "testing.adaptive_timeouts.batch_multiplier",
            at.batch_multiplier,
        ),
    ] {
        p.non_negative(key, v);
    }
    p.positive_f("testing.adaptive_timeouts.min_timeout", at.min_timeout);
    p.require(
        at.min_timeout <= at.max_timeout,
        &[
            "testing.adaptive_timeouts.min_timeout",
            "testing.adaptive_timeouts.max_timeout",
        ],
        format!(
            "min_timeout {} is above max_timeout {}",
            at.min_timeout, at.max_timeout
        ),
    );

    let hm = &config.hardware_monitoring;
    p.positive_u(
        "hardware_monitoring.peak_detection.sampling_interval_ms",
        hm.peak_detection.sampling_interval_ms,
    );
    let st = &hm.safety_thresholds;
    p.percent(
        "hardware_monitoring.safety_thresholds.max_vram_percent",
        st.max_vram_percent,
    );
    p.percent(
        "hardware_monitoring.safety_thresholds.max_ram_percent",
        st.max_ram_percent,
    );
    p.percent(
        "hardware_monitoring.safety_thresholds.max_cpu_percent",
        st.max_cpu_percent,
    );
    p.require(
        st.max_temperature_c > 0.0 && st.max_temperature_c <= 150.0,
        &["hardware_monitoring.safety_thresholds.max_temperature_c"],
        format!("must be in (0, 150] °C, got {}", st.max_temperature_c),
    );
    p.positive_f(
        "hardware_monitoring.resource_headroom.context_scaling_factor",
        hm.resource_headroom.context_scaling_factor,
    );

    let oz = &config.ozone;
    for (key, name) in [
        ("ozone.context_strategy", &oz.context_strategy),
        ("ozone.batch_strategy", &oz.batch_strategy),
        ("ozone.concurrency_strategy", &oz.concurrency_strategy),
        ("ozone.variant_strategy", &oz.variant_strategy),
        ("ozone.offload_strategy", &oz.offload_strategy),
    ] {
        p.require(!name.trim().is_empty(), &[key], "must not be empty".into());
    }
    p.positive_u("ozone.min_context", oz.min_context.into());
    p.require(
        oz.max_kld >= 0.0 && oz.max_kld.is_finite(),
        &["ozone.max_kld"],
        format!(
            "must be a KL divergence of 0 or more (nats), got {}",
            oz.max_kld
        ),
    );
    p.require(
        oz.fill_ratio > 0.0 && oz.fill_ratio <= 1.0,
        &["ozone.fill_ratio"],
        format!("must be in (0, 1], got {}", oz.fill_ratio),
    );
    p.positive_u("ozone.n_predict", oz.n_predict.into());
    if let Some(budget) = oz.process_memory_budget_mb {
        p.positive_u("ozone.process_memory_budget_mb", budget);
    }
    if let Some(headroom) = oz.process_memory_headroom_mb {
        p.positive_u("ozone.process_memory_headroom_mb", headroom);
    }
    if let Some(budget) = oz.gpu_memory_budget_mb {
        p.positive_u("ozone.gpu_memory_budget_mb", budget);
    }
    p.positive_f("ozone.health_timeout_s", oz.health_timeout_s);
    let sb = &oz.sandbox;
    p.positive_u("ozone.sandbox.fuel_per_call", sb.fuel_per_call);
    p.positive_u("ozone.sandbox.memory_mb", sb.memory_mb);
    p.require(
        (1..=MAX_STACK_KB).contains(&sb.stack_kb),
        &["ozone.sandbox.stack_kb"],
        format!(
            "must be in 1..={MAX_STACK_KB} KiB (a plugin runs on a host thread's stack), got {}",
            sb.stack_kb
        ),
    );
    p.0
}

#[derive(Default)]
struct Checks(Vec<Problem>);

impl Checks {
    fn require(&mut self, ok: bool, keys: &[&'static str], message: String) {
        if !ok {
            self.0.push(Problem {
                keys: keys.to_vec(),
                message,
            });
        }
    }

    fn positive_u(&mut self, key: &'static str, v: u64) {
        self.require(v > 0, &[key], "must be at least 1, got 0".into());
    }

    fn positive_f(&mut self, key: &'static str, v: f64) {
        self.require(
            v > 0.0 && v.is_finite(),
            &[key],
            format!("must be above 0, got {v}"),
        );
    }

    fn non_negative(&mut self, key: &'static str, v: f64) {
        self.require(
            v >= 0.0 && v.is_finite(),
            &[key],
            format!("must not be negative, got {v}"),
        );
    }

    fn percent(&mut self, key: &'static str, v: f64) {
        self.require(
            v > 0.0 && v <= 100.0,
            &[key],
            format!("must be a percentage in (0, 100], got {v}"),
        );
    }

    fn ratio(&mut self, key: &'static str, v: f64) {
        self.require(
            (0.0..=1.0).contains(&v),
            &[key],
            format!("must be a ratio in [0, 1], got {v}"),
        );
    }
}
