//! Flags more than one command takes, defined once (`#[command(flatten)]`): how
//! llama-server runs, the memory limits, the configuration file and the flags that set
//! its keys — with the one table from a flag to its configuration key ([`overrides`]).

use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::{PossibleValue, TypedValueParser};
use serde_json::Value;

use super::{CliError, Exit, ResultExt};
use crate::config::{self, LoadedConfig, Provenance};
use crate::plugin::PluginRef;
use crate::record::{FlashAttn, KvCacheType};
use crate::tune::presets::PresetName;

/// How llama-server runs for every trial.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerFlags {
    /// llama-server binary (else $LLAMA_SERVER, else `llama-server` on PATH).
    #[arg(long, value_name = "PATH")]
    pub llama_server: Option<PathBuf>,
    /// KV cache type for every trial (llama-server -ctk/-ctv).
    #[arg(long, value_name = "TYPE", value_parser = named::<KvCacheType>(&KvCacheType::ALL.map(KvCacheType::name)), default_value_t = KvCacheType::F16)]
    pub kv_cache_type: KvCacheType,
    /// Flash attention (llama-server -fa).
    #[arg(long, value_name = "MODE", value_parser = named::<FlashAttn>(&FlashAttn::ALL.map(FlashAttn::name)), default_value_t = FlashAttn::Auto)]
    pub flash_attn: FlashAttn,
    /// Layers offloaded to the GPU (llama-server -ngl); 0 keeps the model on the CPU.
    #[arg(long, value_name = "N", default_value_t = 99)]
    pub gpu_layers: u32,
    /// CPU threads for llama-server (-t); default: llama-server's own choice.
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
}

/// The configuration file, and the flags that set its keys for this run.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFlags {
    /// Configuration file in the `o3_ai_config.yaml` layout (else ./ozone.yaml, else the
    /// user config dir, else built-in defaults). `ozone config show` prints the result.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Absolute budget for the resident memory of the server's process tree, in MiB.
    /// Useful on shared machines; a trial that exceeds it fails with a threshold breach.
    #[arg(long, value_name = "MIB", conflicts_with = "memory_headroom_mb")]
    pub memory_budget_mb: Option<u64>,
    /// A server-memory budget this many MiB above the server's own footprint at the
    /// smallest context, measured here first (one screen): the same limit on any machine,
    /// whatever the llama-server build or the GPU drivers it loads take at rest.
    #[arg(long, value_name = "MIB")]
    pub memory_headroom_mb: Option<u64>,
    /// Absolute budget for the GPU memory the server's processes use (all GPUs), in MiB:
    /// for a GPU shared with other work. NVIDIA: NVML per-process memory; AMD: the amdgpu
    /// DRM client stats (Linux ≥ 5.19). Refused where no per-process reading exists.
    #[arg(long, value_name = "MIB")]
    pub gpu_memory_budget_mb: Option<u64>,
    /// Samples per verification (statistical_validation.min_samples_per_config).
    #[arg(long, value_name = "N")]
    pub samples: Option<u32>,
    /// Smallest context the search may propose (ozone.min_context).
    #[arg(long, value_name = "TOKENS")]
    pub min_context: Option<u32>,
}

/// The plugins that decide, and the objective of the concurrency search.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StrategyFlags {
    /// Context-search plugin: `binary-search` (built in) or a component FILE.wasm.
    #[arg(long, value_name = "NAME|FILE")]
    pub context_strategy: Option<String>,
    /// Batch-scaling plugin: `batch-scaler` (built in) or a component FILE.wasm.
    #[arg(long, value_name = "NAME|FILE")]
    pub batch_strategy: Option<String>,
    /// Concurrency-search plugin: `concurrency-ladder` (built in) or a component FILE.wasm.
    #[arg(long, value_name = "NAME|FILE")]
    pub concurrency_strategy: Option<String>,
    /// Variant plugin, choosing which KV cache types to measure: `variant-frontier`
    /// (built in) or a component FILE.wasm.
    #[arg(long, value_name = "NAME|FILE")]
    pub variant_strategy: Option<String>,
    /// Offload plugin, at a context where every layer on the GPU does not fit in GPU
    /// memory: `offload-bisect` (built in) or a component FILE.wasm.
    #[arg(long, value_name = "NAME|FILE")]
    pub offload_strategy: Option<String>,
    /// KV cache types to measure, each with its own context search (ozone.kv_cache_types):
    /// `f16`, `q8_0`, `q4_0`, or K/V such as `q8_0/q4_0`, e.g. `f16,q8_0,q4_0`. The
    /// summary shows one row per type (its context, speed, memory and quality cost); a
    /// quantized V cache runs with flash attention on.
    #[arg(long, value_name = "TYPE,...", value_delimiter = ',', value_parser = parse_cache_pair)]
    pub kv_cache_types: Option<Vec<crate::record::CachePair>>,
    /// Quality gate (ozone.max_kld): the largest mean KL divergence from the f16 cache, in
    /// nats, a preset's quantized KV cache may cost.
    #[arg(long, value_name = "NATS")]
    pub max_kld: Option<f64>,
    /// Service-level objective for the concurrency search (ozone.slo): any of ttft-p50,
    /// ttft-p95, ttft-p99, tpot-p50, tpot-p95, e2e-p95 (in ms or s) and decode-min (the
    /// slowest stream's tokens/s), e.g. `ttft-p95=2000ms,tpot-p95=100ms,decode-min=10`.
    /// Without one, the most streams that run stable.
    #[arg(long, value_name = "METRIC=VALUE,...")]
    pub slo: Option<String>,
}

/// One `--kv-cache-types` entry.
fn parse_cache_pair(s: &str) -> Result<crate::record::CachePair, String> {
    s.parse()
}

/// One flag setting one configuration key.
struct Override {
    key: &'static str,
    flag: &'static str,
    value: Option<Value>,
}

/// Every flag that sets a configuration key, with its key: the one table.
fn overrides(config: &ConfigFlags, strategies: &StrategyFlags) -> [Override; 14] {
    let set = |key, flag, value: Option<Value>| Override { key, flag, value };
    let headroom = config.memory_headroom_mb;
    [
        set(
            "testing.statistical_validation.min_samples_per_config",
            "--samples",
            config.samples.map(Into::into),
        ),
        set(
            "ozone.process_memory_budget_mb",
            "--memory-budget-mb",
            config.memory_budget_mb.map(Into::into),
        ),
        set(
            "ozone.process_memory_headroom_mb",
            "--memory-headroom-mb",
            headroom.map(Into::into),
        ),
        // A headroom given on the command line replaces a budget from the file.
        set(
            "ozone.process_memory_budget_mb",
            "--memory-headroom-mb",
            headroom.map(|_| Value::Null),
        ),
        set(
            "ozone.gpu_memory_budget_mb",
            "--gpu-memory-budget-mb",
            config.gpu_memory_budget_mb.map(Into::into),
        ),
        set(
            "ozone.min_context",
            "--min-context",
            config.min_context.map(Into::into),
        ),
        set(
            "ozone.context_strategy",
            "--context-strategy",
            strategies.context_strategy.clone().map(Into::into),
        ),
        set(
            "ozone.batch_strategy",
            "--batch-strategy",
            strategies.batch_strategy.clone().map(Into::into),
        ),
        set(
            "ozone.concurrency_strategy",
            "--concurrency-strategy",
            strategies.concurrency_strategy.clone().map(Into::into),
        ),
        set(
            "ozone.variant_strategy",
            "--variant-strategy",
            strategies.variant_strategy.clone().map(Into::into),
        ),
        set(
            "ozone.offload_strategy",
            "--offload-strategy",
            strategies.offload_strategy.clone().map(Into::into),
        ),
        set(
            "ozone.kv_cache_types",
            "--kv-cache-types",
            strategies.kv_cache_types.as_ref().map(|types| {
                Value::Array(types.iter().map(|t| Value::String(t.to_string())).collect())
            }),
        ),
        set(
            "ozone.max_kld",
            "--max-kld",
            strategies.max_kld.map(Into::into),
        ),
        set("ozone.slo", "--slo", strategies.slo.clone().map(Into::into)),
    ]
}

impl ConfigFlags {
    /// The configuration file with these flags (and `strategies`) over it, each value
    /// checked as the file's own would be; a plugin file named must exist.
    pub fn load(&self, strategies: &StrategyFlags) -> Result<LoadedConfig, CliError> {
        let mut loaded = config::load(self.config.as_deref()).exit(Exit::BadInput)?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        self.apply(&mut loaded, strategies).exit(Exit::BadInput)?;
        check_plugin_files(&loaded)?;
        Ok(loaded)
    }

    fn apply(
        &self,
        loaded: &mut LoadedConfig,
        strategies: &StrategyFlags,
    ) -> Result<(), config::ConfigError> {
        for Override { key, flag, value } in overrides(self, strategies) {
            if let Some(value) = value {
                loaded.set_override(key, value, flag)?;
            }
        }
        Ok(())
    }
}

/// A plugin file must exist now, not after the model's facts are read.
fn check_plugin_files(loaded: &LoadedConfig) -> Result<(), CliError> {
    let oz = &loaded.config.ozone;
    for (key, strategy) in [
        ("ozone.context_strategy", &oz.context_strategy),
        ("ozone.batch_strategy", &oz.batch_strategy),
        ("ozone.concurrency_strategy", &oz.concurrency_strategy),
        ("ozone.variant_strategy", &oz.variant_strategy),
        ("ozone.offload_strategy", &oz.offload_strategy),
    ] {
        let Ok(PluginRef::File(path)) = PluginRef::from_str(strategy) else {
            continue;
        };
        if !path.is_file() {
            let from = match loaded.provenance(key) {
                Provenance::Flag(flag) => flag,
                Provenance::File(file) => format!("{}: {key}", file.display()),
                Provenance::Default => key.to_string(),
            };
            return Err(CliError::new(
                Exit::BadInput,
                anyhow::anyhow!("{from}: plugin file {} does not exist", path.display()),
            ));
        }
    }
    Ok(())
}

/// A parser of one of `names` into `T` (its `FromStr`), listing them in `--help` and in
/// the error a wrong value gets.
pub fn named<T>(names: &[&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    clap::builder::PossibleValuesParser::new(names.to_vec()).try_map(|s: String| s.parse::<T>())
}

impl clap::ValueEnum for PresetName {
    fn value_variants<'a>() -> &'a [Self] {
        &PresetName::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let value = PossibleValue::new(self.as_str());
        Some(match self {
            PresetName::Serving => value
                .help("The concurrency found: `-np N` slots of the context, for N users at once"),
            _ => value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerFlags,
        #[command(flatten)]
        config: ConfigFlags,
    }

    #[test]
    fn server_flags_are_typed_and_refuse_what_llama_server_would_not_take() {
        let cli = Cli::try_parse_from(["x", "--kv-cache-type", "q8_0", "--flash-attn", "off"])
            .expect("valid flags");
        assert_eq!(cli.server.kv_cache_type, KvCacheType::Q8_0);
        assert_eq!(cli.server.flash_attn, FlashAttn::Off);
        let err = Cli::try_parse_from(["x", "--kv-cache-type", "q5_1"]).expect_err("refused");
        assert!(err.to_string().contains("f16, q8_0, q4_0"), "{err}");
    }

    #[test]
    fn every_flag_of_the_table_sets_a_key_that_exists_and_is_checked() {
        let strategies = StrategyFlags {
            slo: Some("ttft-p95=2s".into()),
            ..StrategyFlags::default()
        };
        let cli = Cli::try_parse_from([
            "x",
            "--memory-budget-mb",
            "64",
            "--samples",
            "3",
            "--min-context",
            "4096",
        ])
        .expect("parses");
        let mut loaded = LoadedConfig::defaults();
        cli.config
            .apply(&mut loaded, &strategies)
            .expect("valid keys");
        let c = &loaded.config;
        assert_eq!(c.ozone.process_memory_budget_mb, Some(64));
        assert_eq!(c.testing.statistical_validation.min_samples_per_config, 3);
        assert_eq!(c.ozone.min_context, 4096);
        assert!(!c.ozone.slo.is_empty());
        assert_eq!(
            loaded.provenance("ozone.min_context"),
            Provenance::Flag("--min-context".into())
        );
        // Out of range for the configuration: refused by the same check as the file's.
        let cli = Cli::try_parse_from(["x", "--min-context", "0"]).expect("parses");
        let err = cli
            .config
            .apply(&mut LoadedConfig::defaults(), &StrategyFlags::default())
            .expect_err("refused");
        assert!(err.to_string().contains("--min-context"), "{err}");
    }
}
