//! What a run is set to do, from the configuration, the model and the command line: the
//! driver's [`Plan`], the plugins it drives, the thresholds its trials are held to.
//! `ozone tune` and the strategy lab derive them the same way.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::llama_server::LlamaServerSpec;
use crate::backend::ModelMetadata;
use crate::config::Config;
use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::plugin::{self, ContextBounds, PluginError, PluginHost, PluginRef};
use crate::record::{KvCacheType, TrialConfig};

use super::driver::{Plan, Plugins};
use super::presets::PresetName;

/// Every proposal is a multiple of this many tokens.
pub const CONTEXT_GRANULARITY: u32 = 256;
/// Used as the search's ceiling when the server does not say what the model was trained
/// for (OpenAI-compatible servers).
const UNKNOWN_TRAINED_CONTEXT: u32 = 131_072;

/// What the command line fixed for a run, kept in its log so `--resume` repeats it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParameters {
    pub kv_cache_type: KvCacheType,
    /// llama-server `-ngl`.
    pub gpu_layers: u32,
    /// llama-server `-fa`.
    pub flash_attn: String,
    /// llama-server `-t`.
    pub threads: Option<u32>,
    pub llama_server: Option<PathBuf>,
    pub ollama_url: Option<String>,
    pub base_url: Option<String>,
    pub skip_concurrency: bool,
    pub preset: PresetName,
    /// The warm-start hint the context plugin was given, so a resumed run replays the
    /// same proposals.
    pub hint: Option<u32>,
    /// Margin per device for llama.cpp's fit baseline (`-fitt`), MiB; `None`: its
    /// default (1024).
    #[serde(default)]
    pub fit_target_mb: Option<u64>,
}

/// Whether the model runs on the CPU: no GPU was seen, or no layer is offloaded.
pub fn cpu_inference(snapshot: &HardwareSnapshot, params: &RunParameters) -> bool {
    snapshot.gpus.is_empty() || params.gpu_layers == 0
}

/// The share of a request's timeout a published time-bound context may use: its
/// verification's slowest request within 80 % of the timeout (a fill that lands within
/// a few percent of a timeout is one the next busy minute pushes over it).
pub const TIMEOUT_MARGIN: f64 = 0.8;

impl RunParameters {
    /// The server variant the flags name: the cache type on both halves, flash
    /// attention, threads and offload as given.
    pub fn variant(&self) -> plugin::Variant {
        let t = match self.kv_cache_type {
            KvCacheType::F16 => plugin::CacheType::F16,
            KvCacheType::Q8_0 => plugin::CacheType::Q8_0,
            KvCacheType::Q4_0 => plugin::CacheType::Q4_0,
        };
        plugin::Variant {
            cache_type_k: t,
            cache_type_v: t,
            flash_attn: match self.flash_attn.as_str() {
                "on" => plugin::FlashAttn::On,
                "off" => plugin::FlashAttn::Off,
                _ => plugin::FlashAttn::Auto,
            },
            threads: self.threads,
            gpu_layers: (self.gpu_layers < 99).then_some(self.gpu_layers),
            cpu_moe_layers: 0,
        }
    }

    /// How llama-server runs `model` with `binary` under these parameters: the one
    /// place a run's server flags are turned into a spec (trials, the deploy script,
    /// `ozone report`).
    pub fn llama_spec(&self, binary: PathBuf, model: PathBuf) -> LlamaServerSpec {
        LlamaServerSpec {
            binary,
            model,
            gpu_layers: Some(self.gpu_layers),
            flash_attn: Some(self.flash_attn.clone()),
            threads: self.threads,
            extra_args: Vec::new(),
        }
    }
}

/// The CPU threshold guards GPU inference against a runaway host; when the model runs
/// on the CPU, saturating it is the work itself, so the threshold is raised to 100 %
/// (never crossed) in the run's effective configuration, and the user told.
pub fn set_aside_cpu_threshold(
    config: &mut Config,
    snapshot: &HardwareSnapshot,
    params: &RunParameters,
) -> Option<String> {
    let limit = &mut config.hardware_monitoring.safety_thresholds.max_cpu_percent;
    (cpu_inference(snapshot, params) && *limit < 100.0).then(|| {
        let note = format!(
            "max_cpu_percent {limit} not applied: inference runs on the CPU here, and saturating it is the work itself"
        );
        *limit = 100.0;
        note
    })
}

/// The thresholds trials of this run are held to (see [`set_aside_cpu_threshold`]).
pub fn effective_thresholds(
    config: &Config,
    snapshot: &HardwareSnapshot,
    params: &RunParameters,
    notes: &mut Vec<String>,
) -> Thresholds {
    let mut config = config.clone();
    notes.extend(set_aside_cpu_threshold(&mut config, snapshot, params));
    config.thresholds()
}

/// The run's context, batch and concurrency plugins, loaded with what they are told
/// about the machine, the model, their bounds and the objective.
pub fn load_plugins(
    plugins: &PluginHost,
    config: &Config,
    snapshot: &HardwareSnapshot,
    thresholds: &Thresholds,
    facts: &ModelMetadata,
    params: &RunParameters,
) -> Result<Plugins, PluginError> {
    let trained = facts.trained_context.unwrap_or(UNKNOWN_TRAINED_CONTEXT);
    let bounds = context_bounds(config, trained);
    let variant = params.variant();
    let model = plugin::model_facts(facts, bounds, params.hint, &variant);
    let hardware = plugin::hardware_facts(snapshot, thresholds);
    // The batch phase starts where the context search ran; the host config is the one
    // home of both numbers.
    let adaptation = &config.search_strategy.batch_adaptation;
    let batch_bounds = plugin::batch_bounds(
        adaptation.max_batch,
        adaptation.max_ubatch,
        config.initial_batch(facts.size_class),
    );
    let concurrency_bounds =
        plugin::concurrency_bounds(config.testing.concurrency_progression.max_concurrency);
    Ok(Plugins {
        context: plugins.load_context(
            &PluginRef::from_str(&config.ozone.context_strategy)?,
            &config.context_plugin_settings_json(),
            &hardware,
            &model,
            &plugin::context_limits(
                &config.ozone.slo,
                config.trial_settings().timeouts.rule(),
                TIMEOUT_MARGIN,
            ),
        )?,
        batch: plugins.load_batch(
            &PluginRef::from_str(&config.ozone.batch_strategy)?,
            &config.batch_plugin_settings_json(),
            &hardware,
            &model,
            &batch_bounds,
        )?,
        concurrency: plugins.load_concurrency(
            &PluginRef::from_str(&config.ozone.concurrency_strategy)?,
            &config.concurrency_plugin_settings_json(),
            &hardware,
            &model,
            &concurrency_bounds,
            &config.ozone.slo,
        )?,
    })
}

/// The shape of a run's first context trial: the smallest context the search may
/// propose, at the batch it starts from.
pub fn first_trial(config: &Config, facts: &ModelMetadata, params: &RunParameters) -> TrialConfig {
    let trained = facts.trained_context.unwrap_or(UNKNOWN_TRAINED_CONTEXT);
    super::driver::trial_config(
        context_bounds(config, trained).min,
        config.initial_batch(facts.size_class),
        1,
        params.kv_cache_type,
    )
}

/// The contexts a context plugin may propose.
fn context_bounds(config: &Config, trained: u32) -> ContextBounds {
    ContextBounds::new(config.ozone.min_context, trained, CONTEXT_GRANULARITY)
}

/// What the driver is to do for a model: batch start, phases, the objective.
pub fn plan(config: &Config, facts: &ModelMetadata, params: &RunParameters) -> Plan {
    let settings = config.trial_settings();
    let initial_batch = config.initial_batch(facts.size_class);
    let max_batch = config.search_strategy.batch_adaptation.max_batch.max(1);
    let doublings = |from: u32, to: u32| {
        (f64::from(to.max(1)) / f64::from(from.max(1)))
            .log2()
            .ceil()
            .max(0.0) as usize
    };
    let progression = &config.testing.concurrency_progression;
    let slo = config.ozone.slo.clone();
    // Without an objective the ladder's levels; with one, doubling to the cap and about
    // as many bisection steps.
    let estimated_concurrency_trials = if slo.is_empty() {
        progression.levels.len()
    } else {
        2 * doublings(1, progression.max_concurrency) + 1
    };
    let trained = facts.trained_context.unwrap_or(UNKNOWN_TRAINED_CONTEXT);
    Plan {
        initial_batch,
        batch_scaling: config.batch_adaptation_enabled(),
        max_batch,
        max_context: context_bounds(config, trained).max,
        kv_cache_type: params.kv_cache_type,
        screen_trials: config.ozone.screen_trials,
        concurrency: !params.skip_concurrency,
        slo,
        stabilization_delay: Duration::from_secs_f64(settings.stabilization_delay_s.max(0.0)),
        timeouts: settings.timeouts.clone(),
        estimated_context_trials: config.search_strategy.max_binary_iterations as usize + 1,
        estimated_batch_trials: doublings(initial_batch, max_batch) + 1,
        estimated_concurrency_trials,
    }
}
