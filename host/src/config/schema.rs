//! The typed configuration: the original `o3_ai_config.yaml` layout plus Ozone's own
//! `ozone:` section. Every field has the product's documented default, so a partial file
//! (or none) is complete after loading. Defaults of what the guard and the trial runner
//! use are theirs ([`Thresholds`], [`TrialSettings`]); the file only names them.

use std::collections::BTreeMap;

use ozone_sdk::Slo;
use serde::{Deserialize, Serialize};

use crate::guard::Thresholds;
use crate::plugin::SandboxLimits;
use crate::trial::{AdaptiveTimeouts, TrialSettings};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub search_strategy: SearchStrategy,
    pub preset_categories: PresetCategories,
    pub testing: Testing,
    pub hardware_monitoring: HardwareMonitoring,
    pub learning_system: LearningSystem,
    pub ozone: OzoneSettings,

    // Sections of the original layout that Ozone accepts but does not act on. They are
    // kept so an original file loads without warnings and shows up in `config show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objectives: Option<serde_yaml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai_guidance: Option<serde_yaml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_intelligence: Option<serde_yaml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fine_tuning: Option<serde_yaml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality_assurance: Option<serde_yaml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<serde_yaml::Value>,
}

impl Config {
    /// Makes the accepted-as-is sections representable in JSON (the log, `config show
    /// --json`): non-string keys become strings, YAML tags are dropped.
    pub(super) fn normalise_unused_sections(&mut self) {
        for section in [
            &mut self.objectives,
            &mut self.ai_guidance,
            &mut self.model_intelligence,
            &mut self.fine_tuning,
            &mut self.quality_assurance,
            &mut self.deployment,
            &mut self.hardware_monitoring.gpu_handling,
            &mut self.learning_system.prediction_model,
            &mut self.learning_system.auto_improvement,
        ] {
            if let Some(value) = section.take() {
                *section = Some(json_safe(value));
            }
        }
    }
}

fn json_safe(value: serde_yaml::Value) -> serde_yaml::Value {
    use serde_yaml::Value;
    match value {
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => "null".into(),
                        other => serde_yaml::to_string(&json_safe(other))
                            .unwrap_or_default()
                            .trim_end()
                            .to_string(),
                    };
                    (Value::String(key), json_safe(v))
                })
                .collect(),
        ),
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(json_safe).collect()),
        Value::Tagged(tagged) => json_safe(tagged.value),
        Value::Number(n) if n.as_f64().is_some_and(|f| !f.is_finite()) => Value::Null,
        other => other,
    }
}

/// Key paths of the original layout that are accepted as they are and not acted on.
/// Their content is never checked (no unknown-key warnings below them).
pub const UNUSED_SECTIONS: &[&str] = &[
    "objectives",
    "ai_guidance",
    "model_intelligence",
    "fine_tuning",
    "quality_assurance",
    "deployment",
    "learning_system.prediction_model",
    "learning_system.auto_improvement",
    "hardware_monitoring.gpu_handling",
];

/// Key paths whose content is free-form and handed on untouched (to the plugin host, to a
/// plugin by name).
pub const PASSTHROUGH_SECTIONS: &[&str] = &["ozone.plugin_settings"];

/// Individual keys that are read and shown but that Ozone does not act on, with why.
pub const INFORMATIONAL_KEYS: &[(&str, &str)] = &[
    (
        "preset_categories.max_context.target_context_percentile",
        "max_context is the largest stable context; stability is the success-rate rule",
    ),
    (
        "hardware_monitoring.peak_detection.enabled",
        "the guard always samples: thresholds cannot be switched off",
    ),
    (
        "hardware_monitoring.peak_detection.track_vram_peak",
        "every readable metric is always tracked",
    ),
    (
        "hardware_monitoring.peak_detection.track_ram_peak",
        "every readable metric is always tracked",
    ),
    (
        "hardware_monitoring.peak_detection.track_temperature",
        "every readable metric is always tracked",
    ),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchStrategy {
    /// Name of the original search policy (`binary_search`); handed to the context plugin.
    pub context_discovery: String,
    pub initial_context_probe: u32,
    pub binary_search_factor: f64,
    pub max_binary_iterations: u32,
    pub batch_adaptation: BatchAdaptation,
}

impl Default for SearchStrategy {
    fn default() -> Self {
        Self {
            context_discovery: "binary_search".into(),
            initial_context_probe: 65536,
            binary_search_factor: 1.3,
            max_binary_iterations: 7,
            batch_adaptation: BatchAdaptation::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchAdaptation {
    /// `false` skips the batch phase (the initial batch for the size class is used).
    pub enabled: bool,
    pub initial_batch_large: u32,
    pub initial_batch_medium: u32,
    pub initial_batch_small: u32,
    pub scale_up_factor: f64,
    pub max_batch: u32,
    /// The largest micro-batch (`-ub`) a batch scaler may propose.
    pub max_ubatch: u32,
}

impl Default for BatchAdaptation {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_batch_large: 16,
            initial_batch_medium: 32,
            initial_batch_small: 64,
            scale_up_factor: 2.0,
            max_batch: 256,
            max_ubatch: 512,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PresetCategories {
    pub max_context: MaxContextCategory,
    pub balanced: BalancedCategory,
    pub fast_response: FastResponseCategory,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaxContextCategory {
    pub target_context_percentile: f64,
    pub throughput_weight: f64,
    pub ttft_weight: f64,
    pub description: String,
}

impl Default for MaxContextCategory {
    fn default() -> Self {
        Self {
            target_context_percentile: 95.0,
            throughput_weight: 0.3,
            ttft_weight: 0.2,
            description: "The longest context held stably".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BalancedCategory {
    /// `[low, high]` contexts preferred for this preset.
    pub target_context_range: [u32; 2],
    pub throughput_weight: f64,
    pub ttft_weight: f64,
    pub description: String,
}

impl Default for BalancedCategory {
    fn default() -> Self {
        Self {
            target_context_range: [8192, 12288],
            throughput_weight: 0.6,
            ttft_weight: 0.4,
            description: "A useful context at good speed".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FastResponseCategory {
    pub target_context_min: u32,
    pub throughput_weight: f64,
    pub ttft_weight: f64,
    pub description: String,
}

impl Default for FastResponseCategory {
    fn default() -> Self {
        Self {
            target_context_min: 4096,
            throughput_weight: 0.8,
            ttft_weight: 0.7,
            description: "Short prompts answered quickly".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Testing {
    pub statistical_validation: StatisticalValidation,
    pub concurrency_progression: ConcurrencyProgression,
    pub adaptive_timeouts: AdaptiveTimeouts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatisticalValidation {
    pub min_samples_per_config: u32,
    pub confidence_threshold: f64,
    pub variance_tolerance: f64,
}

impl Default for StatisticalValidation {
    fn default() -> Self {
        let t = TrialSettings::default();
        Self {
            min_samples_per_config: t.samples,
            confidence_threshold: t.confidence_threshold,
            variance_tolerance: t.variance_tolerance,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConcurrencyProgression {
    /// The concurrency plugin's ladder (its `levels` setting) when there is no objective.
    pub levels: Vec<u32>,
    /// Seconds between levels.
    pub stabilization_delay: f64,
    pub max_concurrent_timeouts: u32,
    /// Most simultaneous streams the concurrency plugin may propose.
    pub max_concurrency: u32,
    /// Measured requests each stream of a level sends in its closed loop.
    pub requests_per_stream: u32,
}

/// `max_concurrency` when the file does not set it.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;

impl Default for ConcurrencyProgression {
    fn default() -> Self {
        let t = TrialSettings::default();
        Self {
            levels: t.concurrency_levels,
            stabilization_delay: t.stabilization_delay_s,
            max_concurrent_timeouts: t.max_concurrent_timeouts,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            requests_per_stream: t.requests_per_stream,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HardwareMonitoring {
    pub peak_detection: PeakDetection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_handling: Option<serde_yaml::Value>,
    pub safety_thresholds: SafetyThresholds,
    pub resource_headroom: ResourceHeadroom,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeakDetection {
    pub enabled: bool,
    pub sampling_interval_ms: u64,
    pub track_vram_peak: bool,
    pub track_ram_peak: bool,
    pub track_temperature: bool,
}

impl Default for PeakDetection {
    fn default() -> Self {
        Self {
            enabled: true,
            sampling_interval_ms: 100,
            track_vram_peak: true,
            track_ram_peak: true,
            track_temperature: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SafetyThresholds {
    pub max_vram_percent: f64,
    pub max_ram_percent: f64,
    pub max_temperature_c: f64,
    pub max_cpu_percent: f64,
}

impl Default for SafetyThresholds {
    fn default() -> Self {
        let t = Thresholds::default();
        Self {
            max_vram_percent: t.max_vram_percent,
            max_ram_percent: t.max_ram_percent,
            max_temperature_c: t.max_temperature_c,
            max_cpu_percent: t.max_cpu_percent,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceHeadroom {
    pub vram_reserve_mb: u64,
    pub ram_reserve_mb: u64,
    /// Multiplies the context a plugin may propose; handed to the context plugin.
    pub context_scaling_factor: f64,
}

impl Default for ResourceHeadroom {
    fn default() -> Self {
        let t = Thresholds::default();
        Self {
            vram_reserve_mb: t.vram_reserve_mb,
            ram_reserve_mb: t.ram_reserve_mb,
            context_scaling_factor: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LearningSystem {
    pub configuration_learning: ConfigurationLearning,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_model: Option<serde_yaml::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_improvement: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigurationLearning {
    pub enabled: bool,
    pub hardware_profiles: HardwareProfiles,
}

impl Default for ConfigurationLearning {
    fn default() -> Self {
        Self {
            enabled: true,
            hardware_profiles: HardwareProfiles::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HardwareProfiles {
    /// Remember the limits found (warm-start store).
    pub store_results: bool,
    /// Hand a remembered limit to the context plugin as a hint.
    pub reuse_learned_configs: bool,
    /// A remembered result older than this is not reused; 0 = never expires.
    pub update_frequency_days: u32,
}

impl Default for HardwareProfiles {
    fn default() -> Self {
        Self {
            store_results: true,
            reuse_learned_configs: true,
            update_frequency_days: 7,
        }
    }
}

/// Ozone's own section: which plugins run, how trials are shaped, sandbox limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OzoneSettings {
    /// Context plugin: a built-in name (`binary-search`) or a path to a `.wasm` component.
    pub context_strategy: String,
    /// Batch plugin: a built-in name (`batch-scaler`) or a path to a `.wasm` component.
    pub batch_strategy: String,
    /// Concurrency plugin: a built-in name (`concurrency-ladder`) or a path to a `.wasm`
    /// component.
    pub concurrency_strategy: String,
    /// Variant plugin: which of `kv_cache_types` to measure, in which order, and when to
    /// stop: a built-in name (`variant-frontier`) or a path to a `.wasm` component.
    pub variant_strategy: String,
    /// Offload plugin: at a context where every layer on the GPU does not fit in GPU
    /// memory, how many layers (and which MoE experts) stay on the GPU: a built-in name
    /// (`offload-bisect`) or a path to a `.wasm` component.
    pub offload_strategy: String,
    /// The KV cache types to measure, each its own context search (`f16`, `q8_0`,
    /// `q4_0`, or K/V such as `q8_0/q4_0`); empty: only `--kv-cache-type`'s.
    pub kv_cache_types: Vec<crate::record::CachePair>,
    /// The quality gate: the largest mean KL divergence from the f16 cache (nats) a
    /// preset's quantized cache may cost. A quantized cache whose cost was not measured
    /// is never a preset.
    pub max_kld: f64,
    /// Service-level objective of the concurrency phase, written as `--slo` takes it
    /// (`ttft-p95=2000ms,tpot-p95=100ms,decode-min=10`); empty: none, the stability
    /// rule decides.
    #[serde(with = "super::slo::as_text")]
    pub slo: Slo,
    /// Smallest context worth proposing, in tokens.
    pub min_context: u32,
    /// Share of the context the prompt fills (0 < r ≤ 1).
    pub fill_ratio: f64,
    /// Tokens generated per sample.
    pub n_predict: u32,
    /// Absolute budget for the inference server's resident memory, MiB.
    pub process_memory_budget_mb: Option<u64>,
    /// A server-memory budget this many MiB above the server's own footprint at the
    /// smallest context, measured on this machine before the search (one screen): the
    /// same limit on any machine, whatever the build or its GPU drivers take. Applies
    /// only while `process_memory_budget_mb` is unset; a run's log holds both (the
    /// budget it derived).
    pub process_memory_headroom_mb: Option<u64>,
    /// Absolute budget for the GPU memory the inference server's processes use, MiB.
    pub gpu_memory_budget_mb: Option<u64>,
    /// How long CPU may stay above `max_cpu_percent` before it counts as a breach.
    pub cpu_grace_ms: u64,
    /// One unmeasured request before the samples of each trial.
    pub warmup: bool,
    /// Screen context proposals (one full fill each) and verify only the search's
    /// answer with a full statistical trial; `false` verifies every context proposal.
    pub screen_trials: bool,
    /// How long a server may take to load and answer `/health`, seconds.
    pub health_timeout_s: f64,
    /// What one plugin instance may spend: fuel per call, memory, stack.
    pub sandbox: SandboxLimits,
    /// Per-plugin settings by plugin name, merged over the original-layout keys.
    pub plugin_settings: BTreeMap<String, serde_json::Value>,
}

impl Default for OzoneSettings {
    fn default() -> Self {
        let (thresholds, trials) = (Thresholds::default(), TrialSettings::default());
        Self {
            context_strategy: "binary-search".into(),
            batch_strategy: "batch-scaler".into(),
            concurrency_strategy: "concurrency-ladder".into(),
            variant_strategy: "variant-frontier".into(),
            offload_strategy: "offload-bisect".into(),
            kv_cache_types: Vec::new(),
            max_kld: crate::trial::quality::DEFAULT_MAX_KLD,
            slo: Slo::default(),
            min_context: 2048,
            fill_ratio: trials.fill_ratio,
            n_predict: trials.n_predict,
            process_memory_budget_mb: thresholds.process_memory_budget_mb,
            process_memory_headroom_mb: None,
            gpu_memory_budget_mb: thresholds.gpu_memory_budget_mb,
            cpu_grace_ms: thresholds.cpu_grace_ms,
            warmup: trials.warmup,
            screen_trials: true,
            health_timeout_s: trials.health_timeout_s,
            sandbox: SandboxLimits::default(),
            plugin_settings: BTreeMap::new(),
        }
    }
}
