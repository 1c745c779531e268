//! `ozone plugins list`, `ozone plugins check FILE.wasm` and `ozone plugins new NAME`.

use std::path::{Path, PathBuf};

use ozone_sdk::testing::{
    self, BatchMachine, ConcurrencyMachine, MemoryMachine, OffloadMachine, VariantMachine,
};
use ozone_sdk::{self as sdk, ConcurrencyOutcome, Slo, TrialOutcome, Verdict};

use crate::plugin::{
    self, PluginHost, PluginRef, SandboxLimits, Strategy, World, API_VERSION, BUILTINS,
};

use super::{CliError, Exit, ResultExt};
use crate::config::{self, Config};
use crate::scaffold::{self, Kind, ScaffoldError};

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
    /// Write a new strategy crate that builds anywhere: a working policy with native
    /// tests, and the SDK vendored beside it (it is not on crates.io).
    New(NewArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example:
  ozone plugins new my-search --kind context
  cd my-search && cargo test && cargo build --target wasm32-wasip2 --release
  ozone plugins check target/wasm32-wasip2/release/my_search.wasm

The first wasm build of a crate compiles the binding generator (70–90 s on two cores);
share one target folder between plugin crates (CARGO_TARGET_DIR) to pay it once.

Exit codes: 0 written; 2 bad name, or the folder exists and is not empty; 1 cannot write.")]
pub struct NewArgs {
    /// The plugin's crate name (lowercase letters, digits, `-`, `_`).
    pub name: String,
    /// Which kind of strategy.
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// The folder to create (default: ./NAME). It must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// World context-strategy: the largest context that runs.
    Context,
    /// World batch-strategy: the batch with the best throughput.
    Batch,
    /// World concurrency-strategy: the most streams served.
    Concurrency,
    /// World variant-strategy: which server variants (KV cache types, flash attention,
    /// threads) to measure.
    Variant,
    /// World offload-strategy: how many layers (and which MoE experts) stay on the GPU.
    Offload,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A component file (`.wasm`) or a built-in name.
    pub plugin: String,
    /// The plugin's settings, as JSON text (default: what the configuration gives it,
    /// as `ozone tune` would).
    #[arg(long)]
    pub settings: Option<String>,
    /// Configuration file whose sandbox limits (`ozone.sandbox`), plugin settings and
    /// batch bounds apply (else ./ozone.yaml, else the user config dir, else defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
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
        Command::New(args) => new_plugin(&args),
    }
}

fn new_host() -> Result<PluginHost, CliError> {
    host_with(SandboxLimits::default())
}

fn host_with(limits: SandboxLimits) -> Result<PluginHost, CliError> {
    PluginHost::new(limits, PluginHost::default_cache_dir()).map_err(CliError::plugin)
}

fn new_plugin(args: &NewArgs) -> Result<(), CliError> {
    let kind = match args.kind {
        KindArg::Context => Kind::Context,
        KindArg::Batch => Kind::Batch,
        KindArg::Concurrency => Kind::Concurrency,
        KindArg::Variant => Kind::Variant,
        KindArg::Offload => Kind::Offload,
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let created = scaffold::write(&args.name, kind, &dir).map_err(|e| {
        let exit = match e {
            ScaffoldError::InvalidName(_) | ScaffoldError::Exists(_) => Exit::BadInput,
            ScaffoldError::Write { .. } => Exit::Internal,
        };
        CliError::new(exit, e)
    })?;
    let shown = display_dir(&created.dir);
    println!(
        "Created {} ({} plugin, API {API_VERSION}) in {shown}: src/lib.rs (a working policy \
         and its native tests), README.md, and ozone-sdk/ (the SDK, vendored).",
        created.name,
        kind.world()
    );
    println!("Next:");
    println!("  cd {shown}");
    println!("  cargo test                                      # native tests, no wasm");
    println!("  rustup target add wasm32-wasip2                 # once");
    println!(
        "  cargo build --target wasm32-wasip2 --release    # first build 70–90 s (wit-bindgen), then seconds"
    );
    println!(
        "  ozone plugins check target/wasm32-wasip2/release/{}",
        created.wasm
    );
    println!("Tip: share one CARGO_TARGET_DIR between plugin crates to compile wit-bindgen once.");
    Ok(())
}

/// A folder as the user would type it after `cd`.
fn display_dir(dir: &Path) -> String {
    let text = dir.display().to_string();
    if text.contains(char::is_whitespace) {
        format!("'{text}'")
    } else {
        text
    }
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
    let loaded = config::load(args.config.as_deref()).exit(Exit::BadInput)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let config = &loaded.config;
    let limits = config.ozone.sandbox.clone();
    if let Some(source) = &loaded.source {
        println!(
            "configuration {}: sandbox {} fuel per call, {} MiB, {} KiB stack",
            source.display(),
            limits.fuel_per_call,
            limits.memory_mb,
            limits.stack_kb
        );
    }
    let host = host_with(limits)?;
    let world = host.inspect(&plugin).map_err(CliError::plugin)?;
    println!("{plugin}: {world} plugin, API {API_VERSION}");
    let memory = MemoryMachine::with_context_limit(args.context_limit);
    let hw = memory.hardware();
    let model = testing::model(args.trained_context);
    let settings = &match &args.settings {
        Some(settings) => settings.clone(),
        None => configured_settings(config, &args.plugin, world),
    };
    match world {
        World::Context => {
            let mut search = host
                .load_context(&plugin, settings, &hw, &model, &Default::default())
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
            // The configuration's `batch_adaptation.max_batch` and the initial batch of the
            // simulated model's size class (medium), as `ozone tune` hands them over.
            let adaptation = &config.search_strategy.batch_adaptation;
            let bounds = plugin::batch_bounds(
                adaptation.max_batch,
                adaptation.max_ubatch,
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
                "simulated machine: prefill peaks at micro-batch {}; batch bounds {}..={}, \
                 micro-batch up to {}, initial {}",
                args.best_batch, bounds.min, bounds.max, bounds.max_ubatch, bounds.initial
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
        World::Variant => {
            let machine = VariantMachine {
                f16_limit: args.context_limit,
                trained: args.trained_context,
                trials_each: 6,
            };
            let space = check_variant_space();
            let mut search = host
                .load_variant(&plugin, settings, &hw, &model, &space)
                .map_err(CliError::plugin)?;
            println!(
                "simulated machine: an f16 cache binds by memory at {} tokens, a quantized one \
                 holds proportionally more; {} candidates",
                args.context_limit,
                space.candidates.len()
            );
            drive_variants(&mut search, &machine)
        }
        World::Offload => {
            let machine = OffloadMachine {
                fits_layers: 40,
                layers_per_moe_layer: 0.5,
                layers: 49,
                gpu_tps: 60.0,
                cpu_tps: 12.0,
            };
            let bounds = sdk::OffloadBounds {
                layers: 49,
                expert_layers: 48,
                ctx: args.context_limit,
                fit: Some(sdk::Offload {
                    gpu_layers: 49,
                    cpu_moe_layers: 24,
                }),
            };
            let mut search = host
                .load_offload(&plugin, settings, &hw, &model, &bounds)
                .map_err(CliError::plugin)?;
            println!(
                "simulated GPU: 40 of 49 layers fit at {} tokens, each layer's experts on the CPU \
                 frees room for half a layer; llama.cpp's fit proposes {}",
                bounds.ctx,
                bounds.fit.map_or("nothing".into(), |f| f.to_string())
            );
            drive(
                &mut search,
                "offload",
                |o| machine.offload_trial(bounds.ctx, o),
                describe,
            )
        }
    }
}

/// f16, q8_0 and q4_0 caches (flash attention auto), and f16 with flash attention off.
fn check_variant_space() -> sdk::VariantSpace {
    let cache = |t| sdk::Variant {
        cache_type_k: t,
        cache_type_v: t,
        ..sdk::Variant::default()
    };
    let f16 = cache(sdk::CacheType::F16);
    sdk::VariantSpace {
        initial: f16,
        candidates: vec![
            f16,
            cache(sdk::CacheType::Q8_0),
            cache(sdk::CacheType::Q4_0),
            sdk::Variant {
                flash_attn: sdk::FlashAttn::Off,
                ..f16
            },
        ],
        max_variants: 8,
    }
}

/// Proposal, simulated measurement of the variant, outcome, until the plugin is done.
fn drive_variants(
    search: &mut plugin::VariantSearch,
    machine: &VariantMachine,
) -> Result<(), CliError> {
    let mut n = 0;
    while let Some(variant) = search.propose().map_err(CliError::plugin)? {
        n += 1;
        if n > MAX_TRIALS {
            return Err(CliError::new(
                Exit::Plugin,
                anyhow::anyhow!(
                    "plugin {} did not finish within {MAX_TRIALS} variants",
                    search.name()
                ),
            ));
        }
        let outcome = machine.variant_trial(variant);
        let quality = outcome.quality.map_or(String::new(), |q| {
            format!(
                ", KLD {:.4}, top-1 {:.1} %",
                q.kld_mean,
                100.0 * q.top1_agreement
            )
        });
        println!(
            "  variant {n:>2}: {variant} → max context {}{quality}",
            outcome.max_context.map_or("none".into(), |c| c.to_string())
        );
        search.observe(&outcome).map_err(CliError::plugin)?;
    }
    println!("measured {n} variants");
    Ok(())
}

/// The settings JSON `ozone tune` would hand this plugin under `config`.
fn configured_settings(config: &Config, plugin: &str, world: World) -> String {
    let mut config = config.clone();
    match world {
        World::Context => {
            config.ozone.context_strategy = plugin.to_string();
            config.context_plugin_settings_json()
        }
        World::Batch => {
            config.ozone.batch_strategy = plugin.to_string();
            config.batch_plugin_settings_json()
        }
        World::Concurrency | World::Variant | World::Offload => {
            config.plugin_settings_json(&config::plugin_name(plugin), serde_json::json!({}))
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
    trial: impl Fn(S::Proposal) -> S::Outcome,
    describe: impl Fn(&S::Outcome) -> String,
) -> Result<(), CliError>
where
    S::Proposal: Copy + std::fmt::Display,
{
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
    if let Some(ttft) = o.trial.latency.ttft_p95_ms {
        s += &format!(", TTFT p95 {ttft:.0} ms");
    }
    if let Some(tps) = o.min_stream_decode_tps {
        s += &format!(", slowest stream {tps:.1} tok/s");
    }
    if let Some(tps) = o.aggregate_decode_tps {
        s += &format!(", {tps:.0} tok/s in all");
    }
    match o.trial.slo_met {
        Some(true) => s += ", SLO met",
        Some(false) => s += ", SLO missed",
        None => {}
    }
    s
}
