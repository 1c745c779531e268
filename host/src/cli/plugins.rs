//! `ozone plugins list` and `ozone plugins check FILE.wasm`.

use std::path::PathBuf;

use ozone_sdk::testing::{self, BatchMachine, ConcurrencyMachine, MemoryMachine};
use ozone_sdk::{self as sdk, ConcurrencyOutcome, Slo, TrialOutcome, Verdict};

use crate::plugin::{
    self, PluginHost, PluginRef, SandboxLimits, Strategy, World, API_VERSION, BUILTINS,
};

use super::{CliError, Exit};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the built-in strategies, the plugin files the configuration names and the
    /// given plugin files, with world and API version.
    List {
        /// Plugin files to list alongside the built-ins.
        files: Vec<PathBuf>,
        /// Configuration whose `ozone.context_strategy`/`batch_strategy`/
        /// `concurrency_strategy` to list (else ./ozone.yaml, else the user config dir).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Load a plugin, check its world and API version, and drive it through a synthetic
    /// run (the SDK's simulated machines: memory over context, throughput over batch,
    /// latency over streams), printing each decision.
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
    /// Most streams the host accepts (concurrency plugins).
    #[arg(long, default_value_t = crate::config::DEFAULT_MAX_CONCURRENCY)]
    pub max_concurrency: u32,
    /// Service-level objective handed to a concurrency plugin, as `ozone tune --slo`
    /// takes it (e.g. `ttft-p95=1600ms`).
    #[arg(long, value_name = "METRIC=VALUE,...", value_parser = crate::config::parse_slo)]
    pub slo: Option<Slo>,
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
    Ok([
        &ozone.context_strategy,
        &ozone.batch_strategy,
        &ozone.concurrency_strategy,
    ]
    .into_iter()
    .filter_map(|s| match s.parse::<PluginRef>() {
        Ok(PluginRef::File(path)) => Some(path),
        _ => None,
    })
    .collect())
}

fn list(files: &[PathBuf]) -> Result<(), CliError> {
    println!("{:<18} {:<20} {:<6} SOURCE", "NAME", "WORLD", "API");
    for builtin in BUILTINS {
        println!(
            "{:<18} {:<20} {:<6} built-in: {}",
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
            Ok(world) => println!("{name:<18} {world:<20} {API_VERSION:<6} {}", file.display()),
            Err(e) => {
                println!("{name:<18} {:<20} {:<6} {}: {e}", "?", "?", file.display());
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
    let memory = MemoryMachine::with_context_limit(args.context_limit);
    let hw = memory.hardware();
    let model = testing::model(args.trained_context);
    let settings = &args.settings;
    match world {
        World::Context => {
            let mut search = host
                .load_context(&plugin, settings, &hw, &model)
                .map_err(CliError::plugin)?;
            let b = model.bounds;
            println!(
                "simulated model: trained context {}, bounds {}..={} step {}; machine limit {} tokens",
                model.trained_context, b.min, b.max, b.granularity, args.context_limit
            );
            drive(
                &mut search,
                "context",
                |ctx| memory.context_trial(ctx),
                describe,
            )
        }
        World::Batch => {
            // The host's own defaults: `batch_adaptation.max_batch` and the initial batch
            // of the simulated model's size class (medium).
            let config = crate::config::Config::default();
            let bounds = plugin::batch_bounds(
                config.search_strategy.batch_adaptation.max_batch,
                config.initial_batch(crate::backend::SizeClass::Medium),
            );
            let machine = BatchMachine {
                best_batch: args.best_batch.max(1),
                peak_tps: 1000.0,
                oom_above: Some(args.best_batch.max(1).saturating_mul(8)),
            };
            let mut scaler = host
                .load_batch(&plugin, settings, &hw, &model, &bounds)
                .map_err(CliError::plugin)?;
            println!(
                "simulated machine: throughput peaks at batch {}; batch bounds {}..={}, initial {}",
                args.best_batch, bounds.min, bounds.max, bounds.initial
            );
            drive(&mut scaler, "batch", |b| machine.batch_trial(b), describe)
        }
        World::Concurrency => {
            let machine = ConcurrencyMachine::default();
            let bounds = plugin::concurrency_bounds(args.max_concurrency);
            let slo = args.slo.clone().unwrap_or_default();
            let mut search = host
                .load_concurrency(&plugin, settings, &hw, &model, &bounds, &slo)
                .map_err(CliError::plugin)?;
            let objective = match crate::config::slo_text(&slo) {
                text if text.is_empty() => "no SLO".to_string(),
                text => format!("SLO {text}"),
            };
            println!(
                "simulated server: {} ms to first token per queued prompt, {} tok/s per stream, \
                 {} tok/s in all; bounds {}..={} streams, {objective}",
                machine.ttft_ms, machine.stream_tps, machine.aggregate_tps, bounds.min, bounds.max
            );
            drive(
                &mut search,
                "concurrency",
                |n| machine.concurrency_trial(n, &slo),
                describe_concurrency,
            )
        }
    }
}

/// A check that runs longer than this is a plugin that never stops.
const MAX_TRIALS: u32 = 64;

/// Proposal, simulated trial, outcome, until the plugin is done; prints each decision
/// and the plugin's `best()`.
fn drive<S: Strategy>(
    plugin: &mut S,
    what: &str,
    trial: impl Fn(u32) -> S::Outcome,
    describe: impl Fn(&S::Outcome) -> String,
) -> Result<(), CliError> {
    let mut n = 0;
    while let Some(value) = plugin.propose().map_err(CliError::plugin)? {
        n += 1;
        if n > MAX_TRIALS {
            return Err(CliError::new(
                Exit::Plugin,
                anyhow::anyhow!(
                    "plugin {} did not finish within {MAX_TRIALS} trials",
                    plugin.name()
                ),
            ));
        }
        let outcome = trial(value);
        println!("  trial {n:>2}: {what} {value:>7} → {}", describe(&outcome));
        plugin.observe(&outcome).map_err(CliError::plugin)?;
    }
    let best = plugin.best().map_err(CliError::plugin)?;
    println!(
        "best {what}: {}",
        best.map_or_else(|| "none".to_string(), |v| v.to_string())
    );
    Ok(())
}

fn describe(o: &TrialOutcome) -> String {
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
            Some(sdk::Failure::ThresholdBreach(t)) => format!("failed: {t} threshold breach"),
            Some(sdk::Failure::OutOfMemory) => "failed: out of memory".into(),
            Some(kind) => format!("failed: {kind:?}"),
            None => "unstable".into(),
        },
    }
}

fn describe_concurrency(o: &ConcurrencyOutcome) -> String {
    let mut s = describe(&o.trial);
    if let Some(ttft) = o.latency.ttft_p95_ms {
        s += &format!(", TTFT p95 {ttft:.0} ms");
    }
    if let Some(tps) = o.min_stream_decode_tps {
        s += &format!(", slowest stream {tps:.1} tok/s");
    }
    if let Some(tps) = o.aggregate_decode_tps {
        s += &format!(", {tps:.0} tok/s in all");
    }
    match o.slo_met {
        Some(true) => s += ", SLO met",
        Some(false) => s += ", SLO missed",
        None => {}
    }
    s
}
