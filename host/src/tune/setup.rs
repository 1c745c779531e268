//! A run's set-up: the one value `ozone tune`, `ozone lab record`, `--resume` and
//! `ozone report` start from. It is built once — from the command line and the
//! configuration, measured on this machine (`session::prepare`), or read back from the
//! `run_started` line of a log — and everything else about the run is derived from it
//! here: the driver's [`Plan`], the thresholds its trials are held to, the server they
//! start, the plugins that decide.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::llama_server::{LlamaServerSpec, ALL_LAYERS};
use crate::backend::{BackendKind, BackendSpec, ModelMetadata};
use crate::config::Config;
use crate::guard::{SamplerOptions, Thresholds};
use crate::hardware::HardwareSnapshot;
use crate::plugin::{
    self, BatchScaler, ContextBounds, ContextSearch, OffloadBounds, OffloadSearch, PluginError,
    PluginHost, PluginRef, VariantSearch, VariantSpace,
};
use crate::record::{FlashAttn, KvCacheType, TrialConfig, Variant};
use crate::trial::TrialRunner;

use super::driver::{Plan, Plugins};
use super::presets::PresetName;

/// Every proposal is a multiple of this many tokens.
pub const CONTEXT_GRANULARITY: u32 = 256;
/// The search's ceiling when the server does not say what the model was trained for
/// (OpenAI-compatible servers).
pub const UNKNOWN_TRAINED_CONTEXT: u32 = 131_072;

/// What the command line fixed for a run besides the configuration, kept in its log so
/// `--resume` repeats it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParameters {
    pub kv_cache_type: KvCacheType,
    /// llama-server `-ngl`.
    pub gpu_layers: u32,
    /// llama-server `-fa`.
    pub flash_attn: FlashAttn,
    /// llama-server `-t`.
    pub threads: Option<u32>,
    /// `--llama-server` as given (the binary the run resolved is the set-up's
    /// `server_binary`).
    pub llama_server: Option<PathBuf>,
    /// Ollama's address (resolved from `--ollama-url`, `OLLAMA_HOST` or the default).
    pub ollama_url: Option<String>,
    /// An OpenAI-compatible server's base URL.
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

impl Default for RunParameters {
    /// `ozone tune`'s defaults (and what a log from before parameters were logged ran).
    fn default() -> Self {
        Self {
            kv_cache_type: KvCacheType::F16,
            gpu_layers: 99,
            flash_attn: FlashAttn::Auto,
            threads: None,
            llama_server: None,
            ollama_url: None,
            base_url: None,
            skip_concurrency: false,
            preset: PresetName::Balanced,
            hint: None,
            fit_target_mb: None,
        }
    }
}

/// The share of a request's timeout a published time-bound context may use: its
/// verification's slowest request within 80 % of the timeout (a fill that lands within a
/// few percent of a timeout is one the next busy minute pushes over it).
pub const TIMEOUT_MARGIN: f64 = 0.8;

impl RunParameters {
    /// The server variant the flags name: the cache type on both halves, flash
    /// attention, threads and offload as given.
    pub fn variant(&self) -> Variant {
        Variant {
            cache_type_k: self.kv_cache_type,
            cache_type_v: self.kv_cache_type,
            flash_attn: self.flash_attn,
            threads: self.threads,
            gpu_layers: (self.gpu_layers != ALL_LAYERS).then_some(self.gpu_layers),
            cpu_moe_layers: 0,
        }
    }

    /// How llama-server runs `model` with `binary` under these parameters: the one
    /// place a run's server flags become a spec (trials, the deploy script, `ozone
    /// report`).
    pub fn llama_spec(&self, binary: PathBuf, model: PathBuf) -> LlamaServerSpec {
        LlamaServerSpec {
            binary,
            model,
            extra_args: Vec::new(),
        }
    }
}

/// A strategy plugin a run used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginUse {
    /// `context`, `batch` or `concurrency`.
    pub role: String,
    pub name: String,
    pub version: Option<String>,
    /// Embedded in `ozone` (as opposed to loaded from a file).
    pub builtin: bool,
}

impl PluginUse {
    /// The plugins `config` names, one per role.
    pub fn of(config: &Config) -> Vec<PluginUse> {
        [
            ("context", &config.ozone.context_strategy),
            ("batch", &config.ozone.batch_strategy),
            ("concurrency", &config.ozone.concurrency_strategy),
        ]
        .into_iter()
        .map(|(role, name)| PluginUse {
            role: role.into(),
            name: name.clone(),
            version: Some(plugin::API_VERSION.to_string()),
            builtin: matches!(PluginRef::from_str(name), Ok(PluginRef::Builtin(_))),
        })
        .collect()
    }
}

/// A run's set-up, as its log's `run_started` line records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSetup {
    pub log_version: u32,
    pub ozone_version: String,
    /// The model as given: a `.gguf` path (absolute) or an Ollama tag.
    pub model_source: String,
    pub model: ModelMetadata,
    pub hardware: HardwareSnapshot,
    /// The effective configuration: the file, the flags over it, and what this machine
    /// changed (the CPU threshold set aside for CPU inference, a headroom resolved to a
    /// budget).
    pub config: Config,
    pub plugins: Vec<PluginUse>,
    /// `llama-server`, `ollama` or `openai`.
    pub backend: BackendKind,
    /// Versions of what the run used, by name (`llama-server`, …).
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// What the command line fixed (server flags, preset, warm-start hint). Absent in
    /// logs written before `--resume` existed.
    #[serde(default)]
    pub parameters: Option<RunParameters>,
    /// The llama-server binary the trials ran, resolved from `--llama-server`,
    /// `LLAMA_SERVER` or `PATH`: the deploy script runs it, and `ozone report` writes
    /// that script again from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_binary: Option<PathBuf>,
    pub started_at: DateTime<Utc>,
}

impl RunSetup {
    /// The parameters the run was given (the defaults for a log from before they were
    /// logged).
    pub fn params(&self) -> RunParameters {
        self.parameters.clone().unwrap_or_default()
    }

    /// What the driver is to do.
    pub fn plan(&self) -> Plan {
        plan(&self.config, &self.model, &self.params())
    }

    /// The thresholds the run's trials are held to.
    pub fn thresholds(&self) -> Thresholds {
        thresholds(&self.config, &self.hardware, &self.params())
    }

    /// The server the trials start (or talk to). The API key is never logged: a resumed
    /// run is given it again.
    pub fn backend_spec(&self, api_key: Option<String>) -> BackendSpec {
        backend_spec(
            self.backend,
            &self.model_source,
            self.server_binary.clone(),
            &self.params(),
            api_key,
        )
    }

    /// The trial runner for this run's server, settings and thresholds.
    pub fn runner(&self, api_key: Option<String>) -> TrialRunner {
        TrialRunner::new(
            self.backend_spec(api_key),
            self.config.trial_settings(),
            sampler(&self.config, self.thresholds()),
        )
    }

    /// The run's context, batch and concurrency plugins, loaded with what they are told
    /// about the machine, the model, their bounds and the objective.
    pub fn load_plugins(&self, plugins: &PluginHost) -> Result<Plugins, PluginError> {
        load_plugins(
            plugins,
            &self.config,
            &self.hardware,
            &self.thresholds(),
            &self.model,
            &self.params(),
        )
    }
}

/// The server a run of `backend` on `model_source` talks to, under `params`: the one
/// place a run's flags become a [`BackendSpec`].
pub fn backend_spec(
    backend: BackendKind,
    model_source: &str,
    server_binary: Option<PathBuf>,
    params: &RunParameters,
    api_key: Option<String>,
) -> BackendSpec {
    match backend {
        BackendKind::LlamaServer => BackendSpec::LlamaServer(params.llama_spec(
            server_binary.unwrap_or_default(),
            PathBuf::from(model_source),
        )),
        BackendKind::Ollama => BackendSpec::Ollama {
            base_url: params.ollama_url.clone().unwrap_or_default(),
            model: model_source.to_string(),
        },
        BackendKind::OpenAi => BackendSpec::OpenAi {
            base_url: params.base_url.clone().unwrap_or_default(),
            model: model_source.to_string(),
            api_key,
        },
    }
}

/// The sampler of a run's trials: the configured interval, the run's thresholds, a
/// breach kills the server.
pub fn sampler(config: &Config, thresholds: Thresholds) -> SamplerOptions {
    SamplerOptions {
        interval: config.sampling_interval(),
        thresholds: Some(thresholds),
        kill_on_breach: true,
        ..SamplerOptions::default()
    }
}

/// Whether the model runs on the CPU: no GPU was seen, or no layer is offloaded.
pub fn cpu_inference(snapshot: &HardwareSnapshot, params: &RunParameters) -> bool {
    snapshot.gpus.is_empty() || params.gpu_layers == 0
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

/// The thresholds trials of a run with `config` are held to on `snapshot` (the CPU
/// threshold set aside for CPU inference, as [`set_aside_cpu_threshold`] does).
pub fn thresholds(
    config: &Config,
    snapshot: &HardwareSnapshot,
    params: &RunParameters,
) -> Thresholds {
    let mut config = config.clone();
    set_aside_cpu_threshold(&mut config, snapshot, params);
    config.thresholds()
}

/// The run's plugins (see [`RunSetup::load_plugins`]).
pub fn load_plugins(
    plugins: &PluginHost,
    config: &Config,
    snapshot: &HardwareSnapshot,
    thresholds: &Thresholds,
    model: &ModelMetadata,
    params: &RunParameters,
) -> Result<Plugins, PluginError> {
    let variant = params.variant();
    let (context, batch) = load_context_and_batch(
        plugins,
        config,
        snapshot,
        thresholds,
        model,
        &variant,
        params.hint,
    )?;
    let trained = model.trained_context.unwrap_or(UNKNOWN_TRAINED_CONTEXT);
    let facts = plugin::model_facts(
        model,
        context_bounds(config, trained),
        params.hint,
        &variant,
    );
    let hardware = plugin::hardware_facts(snapshot, thresholds);
    let concurrency_bounds =
        plugin::concurrency_bounds(config.testing.concurrency_progression.max_concurrency);
    Ok(Plugins {
        context,
        batch,
        concurrency: plugins.load_concurrency(
            &PluginRef::from_str(&config.ozone.concurrency_strategy)?,
            &config.concurrency_plugin_settings_json(),
            &hardware,
            &facts,
            &concurrency_bounds,
            &config.ozone.slo,
        )?,
    })
}

/// The context and batch plugins for one variant: their model facts at its cache
/// types, the context plugin told `hint`.
pub fn load_context_and_batch(
    plugins: &PluginHost,
    config: &Config,
    snapshot: &HardwareSnapshot,
    thresholds: &Thresholds,
    model: &ModelMetadata,
    variant: &Variant,
    hint: Option<u32>,
) -> Result<(ContextSearch, BatchScaler), PluginError> {
    let trained = model.trained_context.unwrap_or(UNKNOWN_TRAINED_CONTEXT);
    let bounds = context_bounds(config, trained);
    let facts = plugin::model_facts(model, bounds, hint, variant);
    let hardware = plugin::hardware_facts(snapshot, thresholds);
    // The batch phase starts where the context search ran; the host config is the one
    // home of both numbers.
    let adaptation = &config.search_strategy.batch_adaptation;
    let batch_bounds = plugin::batch_bounds(
        adaptation.max_batch,
        adaptation.max_ubatch,
        config.initial_batch(model.size_class),
    );
    let limits = plugin::context_limits(
        &config.ozone.slo,
        config.trial_settings().timeouts.rule(),
        TIMEOUT_MARGIN,
    );
    Ok((
        plugins.load_context(
            &PluginRef::from_str(&config.ozone.context_strategy)?,
            &config.context_plugin_settings_json(),
            &hardware,
            &facts,
            &limits,
        )?,
        plugins.load_batch(
            &PluginRef::from_str(&config.ozone.batch_strategy)?,
            &config.batch_plugin_settings_json(),
            &hardware,
            &facts,
            &batch_bounds,
        )?,
    ))
}

/// The variants a run measures: the flags' own first, then each of
/// `ozone.kv_cache_types` at the flags' flash attention and threads (flash attention on
/// for a quantized V cache), each once.
pub fn variant_space(config: &Config, params: &RunParameters) -> VariantSpace {
    let initial = params.variant();
    let mut candidates = vec![initial];
    for caches in &config.ozone.kv_cache_types {
        let v = initial.with_caches(*caches);
        if v.is_possible() && !candidates.contains(&v) {
            candidates.push(v);
        }
    }
    VariantSpace {
        initial,
        max_variants: candidates.len() as u32,
        candidates,
    }
}

/// Whether a run measures its variants one by one, each with its quality cost: a
/// llama-server run (Ozone sets its cache) asked for more than one cache type, or for a
/// quantized one (whose cost must be measured before it can be a preset).
pub fn measures_variants(setup: &RunSetup) -> bool {
    let space = variant_space(&setup.config, &setup.params());
    setup.backend == BackendKind::LlamaServer
        && (space.candidates.len() > 1 || space.initial.is_quantized())
}

/// The layers a run's offload search moves (blocks plus the output layer) and the layers
/// with MoE experts: a llama-server run whose `-ngl` Ozone chooses (not set by the user)
/// on a model whose block count is known; `None` otherwise (no offload phase).
pub fn offload_layers(setup: &RunSetup) -> Option<(u32, u32)> {
    let params = setup.params();
    if setup.backend != BackendKind::LlamaServer || params.gpu_layers != ALL_LAYERS {
        return None;
    }
    let blocks = setup.model.block_count?;
    let experts = setup.model.experts.map_or(0, |e| e.layers.min(blocks));
    Some((blocks + 1, experts))
}

/// What a run's variant and offload plugins are told: the machine and the model, at the
/// variant the flags name.
fn run_facts(setup: &RunSetup) -> (plugin::HardwareFacts, plugin::ModelFacts) {
    let params = setup.params();
    let trained = setup
        .model
        .trained_context
        .unwrap_or(UNKNOWN_TRAINED_CONTEXT);
    let facts = plugin::model_facts(
        &setup.model,
        context_bounds(&setup.config, trained),
        params.hint,
        &params.variant(),
    );
    let hardware = plugin::hardware_facts(&setup.hardware, &setup.thresholds());
    (hardware, facts)
}

/// The offload plugin of a run, its proposals held to `bounds`.
pub fn load_offload_search(
    plugins: &PluginHost,
    setup: &RunSetup,
    bounds: &OffloadBounds,
) -> Result<OffloadSearch, PluginError> {
    let config = &setup.config;
    let (hardware, facts) = run_facts(setup);
    plugins.load_offload(
        &PluginRef::from_str(&config.ozone.offload_strategy)?,
        &config.offload_plugin_settings_json(),
        &hardware,
        &facts,
        bounds,
    )
}

/// The variant plugin of a run.
pub fn load_variant_search(
    plugins: &PluginHost,
    setup: &RunSetup,
) -> Result<VariantSearch, PluginError> {
    let config = &setup.config;
    let (hardware, facts) = run_facts(setup);
    plugins.load_variant(
        &PluginRef::from_str(&config.ozone.variant_strategy)?,
        &config.variant_plugin_settings_json(),
        &hardware,
        &facts,
        &variant_space(config, &setup.params()),
    )
}

/// The contexts a context plugin may propose.
fn context_bounds(config: &Config, trained: u32) -> ContextBounds {
    ContextBounds::new(config.ozone.min_context, trained, CONTEXT_GRANULARITY)
}

/// What the driver is to do for `model`: the variant, the context range, the batch
/// start and ceiling, the phases, the objective.
pub fn plan(config: &Config, model: &ModelMetadata, params: &RunParameters) -> Plan {
    let settings = config.trial_settings();
    let initial_batch = config.initial_batch(model.size_class);
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
    let trained = model.trained_context.unwrap_or(UNKNOWN_TRAINED_CONTEXT);
    let bounds = context_bounds(config, trained);
    Plan {
        variant: params.variant(),
        min_context: bounds.min,
        max_context: bounds.max,
        initial_batch,
        batch_scaling: config.batch_adaptation_enabled(),
        max_batch,
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

/// The shape of a run's first context trial (the plan's reference configuration: the
/// smallest context at the batch the search starts from).
pub fn first_trial(config: &Config, model: &ModelMetadata, params: &RunParameters) -> TrialConfig {
    plan(config, model, params).reference()
}
