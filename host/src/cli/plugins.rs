//! `ozone plugins list` and `ozone plugins check FILE.wasm`.

use std::path::PathBuf;

use crate::backend::SizeClass;
use crate::plugin::{
    ContextBounds, HardwareFacts, Headroom, ModelInfo, Outcome, PluginHost, PluginRef,
    SandboxLimits, World, API_VERSION, BUILTINS,
};
use crate::record::{FailureKind, KvCacheType, Metric, TrialConfig, Verdict};

use super::{CliError, Exit};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the built-in strategies, the plugin files the configuration names and the
    /// given plugin files, with world and API version.
    List {
        /// Plugin files to list alongside the built-ins.
        files: Vec<PathBuf>,
        /// Configuration whose `ozone.context_strategy`/`batch_strategy` to list (else
        /// ./ozone.yaml, else the user config dir).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Load a plugin, check its world and API version, and drive it through a synthetic
    /// run (a simulated machine), printing each decision.
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A component file (`.wasm`) or a built-in name.
    pub plugin: String,
    /// The plugin's settings, as JSON text.
    #[arg(long, default_value = "{}")]
    pub settings: String,
    /// Trained context of the simulated model.
    #[arg(long, default_value_t = 131_072)]
    pub trained_context: u32,
    /// Largest context the simulated machine runs stable (context plugins).
    #[arg(long, default_value_t = 100_000)]
    pub context_limit: u32,
    /// Batch size with the highest throughput on the simulated machine (batch plugins).
    #[arg(long, default_value_t = 128)]
    pub best_batch: u32,
}

pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::List { files, config } => {
            let mut files = files;
            files.extend(configured_files(config.as_deref())?);
            list(&files)
        }
        Command::Check(args) => check(&args),
    }
}

fn new_host() -> Result<PluginHost, CliError> {
    PluginHost::new(SandboxLimits::default(), PluginHost::default_cache_dir())
        .map_err(CliError::plugin)
}

/// Plugin files the effective configuration names (built-in names are listed anyway).
fn configured_files(config: Option<&std::path::Path>) -> Result<Vec<PathBuf>, CliError> {
    let loaded = crate::config::load(config).map_err(|e| CliError::new(Exit::BadInput, e))?;
    let ozone = &loaded.config.ozone;
    Ok([&ozone.context_strategy, &ozone.batch_strategy]
        .into_iter()
        .filter_map(|s| match s.parse::<PluginRef>() {
            Ok(PluginRef::File(path)) => Some(path),
            _ => None,
        })
        .collect())
}

fn list(files: &[PathBuf]) -> Result<(), CliError> {
    println!("{:<16} {:<18} {:<6} SOURCE", "NAME", "WORLD", "API");
    for builtin in BUILTINS {
        println!(
            "{:<16} {:<18} {:<6} built-in: {}",
            builtin.name, builtin.world, API_VERSION, builtin.summary
        );
    }
    if files.is_empty() {
        return Ok(());
    }
    let host = new_host()?;
    let mut first_error = None;
    for file in files {
        let plugin = PluginRef::File(file.clone());
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match host.inspect(&plugin) {
            Ok(world) => println!("{name:<16} {world:<18} {API_VERSION:<6} {}", file.display()),
            Err(e) => {
                println!("{name:<16} {:<18} {:<6} {}: {e}", "?", "?", file.display());
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), |e| Err(CliError::plugin(e)))
}

fn check(args: &CheckArgs) -> Result<(), CliError> {
    let plugin: PluginRef = args.plugin.parse().map_err(CliError::plugin)?;
    let host = new_host()?;
    let world = host.inspect(&plugin).map_err(CliError::plugin)?;
    println!("{plugin}: {world} plugin, API {API_VERSION}");
    let machine = Synthetic::new(args);
    let model = machine.model();
    let hw = machine.hardware();
    let trials = match world {
        World::Context => {
            let mut search = host
                .load_context(&plugin, &args.settings, &hw, &model)
                .map_err(CliError::plugin)?;
            println!(
                "simulated model: trained context {}, bounds {}..={} step {}; machine limit {} tokens",
                model.trained_context, model.bounds.min, model.bounds.max, model.bounds.granularity, args.context_limit
            );
            let mut n = 0;
            while let Some(ctx) = search.propose().map_err(CliError::plugin)? {
                n += 1;
                let outcome = machine.context_trial(ctx);
                println!("  trial {n:>2}: context {ctx:>7} → {}", describe(&outcome));
                search.observe(&outcome).map_err(CliError::plugin)?;
                if n >= MAX_TRIALS {
                    break;
                }
            }
            println!(
                "best context: {}",
                show(search.best().map_err(CliError::plugin)?)
            );
            n
        }
        World::Batch => {
            let mut scaler = host
                .load_batch(&plugin, &args.settings, &hw, &model)
                .map_err(CliError::plugin)?;
            println!(
                "simulated machine: throughput peaks at batch {}; host bound 1..={}",
                args.best_batch,
                scaler.max_batch()
            );
            let mut n = 0;
            while let Some(batch) = scaler.propose().map_err(CliError::plugin)? {
                n += 1;
                let outcome = machine.batch_trial(batch);
                println!("  trial {n:>2}: batch {batch:>5} → {}", describe(&outcome));
                scaler.observe(&outcome).map_err(CliError::plugin)?;
                if n >= MAX_TRIALS {
                    break;
                }
            }
            println!(
                "best batch: {}",
                show(scaler.best().map_err(CliError::plugin)?)
            );
            n
        }
    };
    if trials >= MAX_TRIALS {
        return Err(CliError::new(
            Exit::Plugin,
            anyhow::anyhow!("plugin {plugin} did not finish within {MAX_TRIALS} trials"),
        ));
    }
    Ok(())
}

/// A check that runs longer than this is a plugin that never stops.
const MAX_TRIALS: u32 = 64;

fn show(value: Option<u32>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn describe(o: &Outcome) -> String {
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    match o.verdict {
        Verdict::Stable => {
            let mut s = String::from("stable");
            if let Some(peak) = o.peak_gpu_memory_bytes {
                s += &format!(", peak {:.1} GiB", gib(peak));
            }
            if let Some(tps) = o.prefill_tps {
                s += &format!(", {tps:.0} prompt tok/s");
            }
            s
        }
        _ => match o.failure {
            Some(FailureKind::ThresholdBreach(m)) => format!("failed: {m} threshold breach"),
            Some(FailureKind::OutOfMemory) => "failed: out of memory".into(),
            Some(kind) => format!("failed: {kind:?}"),
            None => "unstable".into(),
        },
    }
}

/// A simulated machine for `check`: memory grows linearly with context up to a VRAM
/// threshold at `context_limit`; throughput over batch peaks at `best_batch`, and
/// batches above 8× that run out of memory.
struct Synthetic {
    trained: u32,
    limit_ctx: u32,
    best_batch: u32,
}

impl Synthetic {
    const BASE: u64 = 5 << 30;
    const KV_PER_TOKEN: u64 = 131_072;

    fn new(args: &CheckArgs) -> Self {
        Self {
            trained: args.trained_context,
            limit_ctx: args.context_limit,
            best_batch: args.best_batch.max(1),
        }
    }

    fn limit_bytes(&self) -> u64 {
        Self::BASE + Self::KV_PER_TOKEN * u64::from(self.limit_ctx)
    }

    fn hardware(&self) -> HardwareFacts {
        let total = (self.limit_bytes() + self.limit_bytes() / 9).max(24 << 30);
        HardwareFacts {
            gpu_count: 1,
            gpu_memory_total_bytes: Some(total),
            gpu_memory_free_bytes: Some(total),
            gpu_memory_limit_bytes: Some(self.limit_bytes()),
            ram_total_bytes: Some(64 << 30),
            ram_available_bytes: Some(60 << 30),
            ram_limit_bytes: Some(54 << 30),
            process_memory_budget_bytes: None,
            unified_memory: false,
            logical_cores: Some(16),
        }
    }

    fn model(&self) -> ModelInfo {
        ModelInfo {
            name: "synthetic-8b".into(),
            parameter_count: Some(8_000_000_000),
            size_class: SizeClass::Medium,
            trained_context: self.trained,
            kv_bytes_per_token: Some(Self::KV_PER_TOKEN),
            weights_bytes: Some(Self::BASE),
            bounds: ContextBounds::for_trained(self.trained),
            hint: None,
        }
    }

    fn outcome(config: TrialConfig, stable: bool) -> Outcome {
        Outcome {
            config,
            verdict: if stable {
                Verdict::Stable
            } else {
                Verdict::Failed
            },
            failure: None,
            peak_gpu_memory_bytes: None,
            peak_ram_bytes: None,
            peak_process_memory_bytes: None,
            headroom: Headroom::default(),
            prefill_tps: None,
            decode_tps: None,
            ttft_ms: None,
            cv: stable.then_some(0.02),
            success_rate: if stable { 1.0 } else { 0.0 },
        }
    }

    fn context_trial(&self, ctx: u32) -> Outcome {
        let config = TrialConfig {
            ctx,
            batch: 512,
            ubatch: 512,
            concurrency: 1,
            kv_cache_type: KvCacheType::F16,
        };
        let peak = Self::BASE + Self::KV_PER_TOKEN * u64::from(ctx);
        let stable = peak <= self.limit_bytes();
        let mut o = Self::outcome(config, stable);
        if !stable {
            o.failure = Some(FailureKind::ThresholdBreach(Metric::Vram));
        } else {
            o.decode_tps = Some(40.0);
            o.prefill_tps = Some(900.0);
        }
        o.peak_gpu_memory_bytes = Some(peak);
        o.headroom.gpu_memory_bytes = Some(self.limit_bytes() as i64 - peak as i64);
        o
    }

    fn batch_trial(&self, batch: u32) -> Outcome {
        let config = TrialConfig {
            ctx: 8192,
            batch,
            ubatch: batch.min(512),
            concurrency: 1,
            kv_cache_type: KvCacheType::F16,
        };
        if u64::from(batch) > 8 * u64::from(self.best_batch) {
            let mut o = Self::outcome(config, false);
            o.failure = Some(FailureKind::OutOfMemory);
            return o;
        }
        let d = (f64::from(batch) / f64::from(self.best_batch)).log2();
        let mut o = Self::outcome(config, true);
        o.prefill_tps = Some(1000.0 * (-0.05 * d * d).exp());
        o.decode_tps = Some(40.0);
        o
    }
}
