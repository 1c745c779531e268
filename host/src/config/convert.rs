//! What the rest of Ozone takes from the configuration: guard thresholds, trial settings,
//! plugin settings, sampler and learning switches.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{Config, LoadedConfig};
use crate::guard::Thresholds;
use crate::plugin::PluginRef;
use crate::trial::TrialSettings;

impl Config {
    /// `hardware_monitoring.safety_thresholds` + `.resource_headroom` + the `ozone:` budget.
    pub fn thresholds(&self) -> Thresholds {
        let st = &self.hardware_monitoring.safety_thresholds;
        let rh = &self.hardware_monitoring.resource_headroom;
        Thresholds {
            max_vram_percent: st.max_vram_percent,
            max_ram_percent: st.max_ram_percent,
            max_temperature_c: st.max_temperature_c,
            max_cpu_percent: st.max_cpu_percent,
            vram_reserve_mb: rh.vram_reserve_mb,
            ram_reserve_mb: rh.ram_reserve_mb,
            process_memory_budget_mb: self.ozone.process_memory_budget_mb,
            gpu_memory_budget_mb: self.ozone.gpu_memory_budget_mb,
            cpu_grace_ms: self.ozone.cpu_grace_ms,
        }
    }

    /// `testing.*` + the `ozone:` trial shape (fill ratio, n_predict, warm-up, health).
    pub fn trial_settings(&self) -> TrialSettings {
        let t = &self.testing;
        TrialSettings {
            samples: t.statistical_validation.min_samples_per_config,
            confidence_threshold: t.statistical_validation.confidence_threshold,
            variance_tolerance: t.statistical_validation.variance_tolerance,
            fill_ratio: self.ozone.fill_ratio,
            n_predict: self.ozone.n_predict,
            warmup: self.ozone.warmup,
            timeouts: t.adaptive_timeouts.clone(),
            concurrency_levels: t.concurrency_progression.levels.clone(),
            requests_per_stream: t.concurrency_progression.requests_per_stream,
            stabilization_delay_s: t.concurrency_progression.stabilization_delay,
            max_concurrent_timeouts: t.concurrency_progression.max_concurrent_timeouts,
            health_timeout_s: self.ozone.health_timeout_s,
        }
    }

    /// Settings JSON for the context plugin: the `search_strategy` keys (without
    /// `batch_adaptation`), `context_scaling_factor` and `min_context`, with
    /// `ozone.plugin_settings.<context plugin name>` merged over them (its keys win).
    pub fn context_plugin_settings_json(&self) -> String {
        let s = &self.search_strategy;
        let base = json!({
            "context_discovery": s.context_discovery,
            "initial_context_probe": s.initial_context_probe,
            "binary_search_factor": s.binary_search_factor,
            "max_binary_iterations": s.max_binary_iterations,
            "context_scaling_factor": self.hardware_monitoring.resource_headroom.context_scaling_factor,
            "min_context": self.ozone.min_context,
        });
        self.plugin_settings_json(&plugin_name(&self.ozone.context_strategy), base)
    }

    /// Settings JSON for the batch plugin: the `search_strategy.batch_adaptation` keys that
    /// are the plugin's (`enabled`, `scale_up_factor`; the initial and largest batch reach
    /// it as its batch bounds) with `ozone.plugin_settings.<batch plugin name>` merged over
    /// them.
    pub fn batch_plugin_settings_json(&self) -> String {
        let b = &self.search_strategy.batch_adaptation;
        let base = json!({
            "enabled": b.enabled,
            "scale_up_factor": b.scale_up_factor,
        });
        self.plugin_settings_json(&plugin_name(&self.ozone.batch_strategy), base)
    }

    /// Settings JSON for the concurrency plugin: `{"levels": concurrency_progression.levels}`
    /// with `ozone.plugin_settings.<concurrency plugin name>` merged over it.
    pub fn concurrency_plugin_settings_json(&self) -> String {
        let base = json!({ "levels": self.testing.concurrency_progression.levels });
        self.plugin_settings_json(&plugin_name(&self.ozone.concurrency_strategy), base)
    }

    /// Settings JSON for the variant plugin: `ozone.plugin_settings.<variant plugin name>`.
    pub fn variant_plugin_settings_json(&self) -> String {
        self.plugin_settings_json(&plugin_name(&self.ozone.variant_strategy), json!({}))
    }

    /// Settings JSON for the offload plugin: `ozone.plugin_settings.<offload plugin name>`.
    pub fn offload_plugin_settings_json(&self) -> String {
        self.plugin_settings_json(&plugin_name(&self.ozone.offload_strategy), json!({}))
    }

    /// `base` with `ozone.plugin_settings.<name>` merged over it (top-level keys replace).
    pub fn plugin_settings_json(&self, name: &str, base: Value) -> String {
        let mut merged = match base {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        match self.ozone.plugin_settings.get(name) {
            Some(Value::Object(own)) => merged.extend(own.clone()),
            Some(other) => {
                merged.insert("value".into(), other.clone());
            }
            None => {}
        }
        Value::Object(merged).to_string()
    }

    /// `hardware_monitoring.peak_detection.sampling_interval_ms`.
    pub fn sampling_interval(&self) -> Duration {
        Duration::from_millis(self.hardware_monitoring.peak_detection.sampling_interval_ms)
    }

    /// Whether a remembered limit is handed to the context plugin as a hint.
    pub fn reuse_learned_configs(&self) -> bool {
        let cl = &self.learning_system.configuration_learning;
        cl.enabled && cl.hardware_profiles.reuse_learned_configs
    }

    /// Whether the limits found are remembered for the next run.
    pub fn store_learned_results(&self) -> bool {
        let cl = &self.learning_system.configuration_learning;
        cl.enabled && cl.hardware_profiles.store_results
    }

    /// How old a remembered result may be to be reused; `None`: no limit.
    pub fn learned_max_age(&self) -> Option<chrono::Duration> {
        let days = self
            .learning_system
            .configuration_learning
            .hardware_profiles
            .update_frequency_days;
        (days > 0).then(|| chrono::Duration::days(i64::from(days)))
    }

    /// `search_strategy.batch_adaptation.enabled`: whether the batch phase runs.
    pub fn batch_adaptation_enabled(&self) -> bool {
        self.search_strategy.batch_adaptation.enabled
    }

    /// The batch to start from for a model size class.
    pub fn initial_batch(&self, class: crate::backend::SizeClass) -> u32 {
        let b = &self.search_strategy.batch_adaptation;
        match class {
            crate::backend::SizeClass::Large => b.initial_batch_large,
            crate::backend::SizeClass::Medium => b.initial_batch_medium,
            crate::backend::SizeClass::Small => b.initial_batch_small,
        }
    }
}

/// The name a plugin's settings are filed under: a built-in name as it is, the file stem
/// for a path to a component (`./my-search.wasm` → `my-search`). Which is which is
/// [`PluginRef`]'s rule.
pub fn plugin_name(strategy: &str) -> String {
    match PluginRef::from_str(strategy) {
        Ok(PluginRef::File(path)) => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| strategy.to_string()),
        _ => strategy.to_string(),
    }
}

impl LoadedConfig {
    /// Shorthand for `self.config.thresholds()`.
    pub fn thresholds(&self) -> Thresholds {
        self.config.thresholds()
    }

    /// Shorthand for `self.config.trial_settings()`.
    pub fn trial_settings(&self) -> TrialSettings {
        self.config.trial_settings()
    }

    pub fn context_plugin_settings_json(&self) -> String {
        self.config.context_plugin_settings_json()
    }

    pub fn batch_plugin_settings_json(&self) -> String {
        self.config.batch_plugin_settings_json()
    }
}
