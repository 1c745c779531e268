//! `ozone lab`: record profiles on this machine, extract them from tune logs, and
//! compare strategies on them offline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::Value;

use super::flags::{ConfigFlags, ServerFlags, StrategyFlags};
use super::tune::{exit_code, llama_server_files};
use super::{CliError, Exit, ResultExt};
use crate::backend::llama_server::Interruption;
use crate::backend::BackendKind;
use crate::config::{self, plugin_name, LoadedConfig, Provenance as ConfigProvenance};
use crate::lab::record::{self, RecordSettings};
use crate::lab::{self, Method, PluginConfig, Profile, Provenance, Variant};
use crate::plugin::{PluginHost, SandboxLimits};
use crate::record::{Stage, TrialRecord};
use crate::session::{self, Prepared, RunRequest};
use crate::tune::setup::{CONTEXT_GRANULARITY, UNKNOWN_TRAINED_CONTEXT};
use crate::tune::RunParameters;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Measure a model densely on this machine and write a profile for `lab run`.
    Record(RecordArgs),
    /// Extract a replayable profile from an `ozone tune` trial log.
    Profile(ProfileArgs),
    /// Drive strategies through profiles exactly as `ozone tune` would, and compare them.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
What it measures (a profile holds only measured points):
  1. a screen (one request that fills the context) at every --step from --min-context
     up, until --stop-after screens in a row were not stable, or the trained context
     (then the trained context once);
  2. the last stable screen and the first failure after it, screened --repeats times;
  3. --repeats verifications (full statistical trials) at the smallest context, the
     middle, and the two largest stable screens (stepping down until one is mostly
     stable: the profile's true limit);
  4. a batch ladder and a concurrency ladder at the smallest, middle and top verified
     contexts (--skip-batch, --skip-concurrency).

Examples:
  ozone lab record model.gguf --memory-budget-mb 48 -o model-48.profile.json
  ozone lab record model.gguf --gpu-memory-budget-mb 40960   # a GPU shared with other work

Exit codes: 0 recorded; 2 bad flag, config or model file; 3 no llama-server;
130 interrupted, 143 terminated (what was measured so far is written, marked partial).")]
pub struct RecordArgs {
    /// The model: a `.gguf` file (llama-server).
    #[arg(value_name = "MODEL.gguf")]
    pub model: PathBuf,
    #[command(flatten)]
    pub server: ServerFlags,
    #[command(flatten)]
    pub config: ConfigFlags,
    /// Where to write the profile (default: `<model>.profile.json`).
    #[arg(short, long, value_name = "NAME.profile.json")]
    pub output: Option<PathBuf>,
    /// Context step of the sweep: a multiple of 256 (a larger step records faster;
    /// the lab interpolates between steps, flagged).
    #[arg(long, value_name = "TOKENS", default_value_t = CONTEXT_GRANULARITY)]
    pub step: u32,
    /// Largest context screened (default: the model's trained context).
    #[arg(long, value_name = "TOKENS")]
    pub max_context: Option<u32>,
    /// Stop the sweep after this many screens in a row that were not stable.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub stop_after: u32,
    /// Measurements per repeated point (boundary screens, verifications).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeats: u32,
    /// No batch ladder.
    #[arg(long)]
    pub skip_batch: bool,
    /// No concurrency ladder.
    #[arg(long)]
    pub skip_concurrency: bool,
}

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Trial log written by `ozone tune` (`<output dir>/logs/<model>_<ts>.jsonl`).
    #[arg(value_name = "LOG.jsonl")]
    pub log: PathBuf,
    /// Where to write the profile.
    #[arg(short, long, value_name = "NAME.profile.json")]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  ozone lab run --strategy binary-search --strategy my_policy.wasm \\
      --profile examples/profiles/ --repeats 20
  ozone lab run --strategy linear_sweep.wasm --profile examples/profiles/ \\
      --settings 'linear_sweep=[{\"step\": 2048}, {\"step\": 4096}]'

Plugin settings, lowest first: each profile's recorded configuration, then the
configuration file (--config, else ./ozone.yaml, else the user config dir: its
search_strategy keys, ozone.plugin_settings and ozone.sandbox), then --settings.

Exit codes: 0 all strategies completed; 2 bad profile or flag, or a strategy that does
not fit (unknown built-in, not a component, wrong world, settings it rejects); 4 a
strategy broke its sandbox or contract. The other strategies still run and are shown;
the code is the first failed run's.")]
pub struct RunArgs {
    /// Context strategy: a built-in name (`binary-search`) or a component FILE.wasm.
    /// Repeat to compare several.
    #[arg(long = "strategy", value_name = "NAME|FILE.wasm", required = true)]
    pub strategies: Vec<String>,
    /// A `.profile.json` file, or a folder of them. Repeat for several.
    #[arg(long = "profile", value_name = "FILE|DIR", required = true)]
    pub profiles: Vec<PathBuf>,
    /// Batch strategy for every run (default: the one each profile's configuration names).
    #[arg(long, value_name = "NAME|FILE.wasm")]
    pub batch_strategy: Option<String>,
    /// Settings of the strategy named NAME (a built-in name or a file's stem): a JSON
    /// object, or an array of objects for one row each. Repeat for more variants.
    #[arg(long = "settings", value_name = "NAME=JSON")]
    pub settings: Vec<String>,
    /// Configuration file whose plugin settings and sandbox limits apply (else
    /// ./ozone.yaml, else the user config dir).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Replay each strategy this many times with different seeds (noise drawn from the
    /// profile's repeated measurements); rows show mean and range.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeats: u32,
    /// First seed (0 replays repeated measurements in the order they were recorded).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Print the comparison as JSON (rows, and every replay with every trial).
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Record(args) => record(args),
        Command::Profile(args) => profile(args),
        Command::Run(args) => compare(args),
    }
}

fn profile(args: ProfileArgs) -> Result<(), CliError> {
    let profile = Profile::from_log(&args.log).exit(Exit::BadInput)?;
    profile.save(&args.output).exit(Exit::Internal)?;
    let stable = profile
        .true_limit()
        .map_or("none".into(), |c| c.to_string());
    println!(
        "{}: {} trials, largest stable context {stable}",
        args.output.display(),
        profile.runs().count()
    );
    Ok(())
}

fn record(args: RecordArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .exit(Exit::Internal)?;
    runtime.block_on(record_async(args))
}

async fn record_async(args: RecordArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let command: Vec<String> = std::env::args().collect();
    if args.step == 0 || !args.step.is_multiple_of(CONTEXT_GRANULARITY) {
        return Err(CliError::new(
            Exit::BadInput,
            anyhow::anyhow!(
                "--step {}: must be a positive multiple of {CONTEXT_GRANULARITY}",
                args.step
            ),
        ));
    }
    let loaded = args.config.load(&StrategyFlags::default())?;
    let (model, binary) = llama_server_files(
        &args.model.display().to_string(),
        args.server.llama_server.as_deref(),
    )?;
    let s = &args.server;
    let request = RunRequest {
        model_source: model.display().to_string(),
        backend: BackendKind::LlamaServer,
        server_binary: Some(binary),
        parameters: RunParameters {
            kv_cache_type: s.kv_cache_type,
            gpu_layers: s.gpu_layers,
            flash_attn: s.flash_attn,
            threads: s.threads,
            llama_server: s.llama_server.clone(),
            skip_concurrency: args.skip_concurrency,
            ..RunParameters::default()
        },
        config: loaded.config,
        api_key: None,
        fresh: true,
        shared_warm_start: None,
    };
    let interruption = Interruption::default();
    interruption.watch().exit(Exit::Internal)?;
    let cancel = interruption.token();
    let Prepared { setup, notes, .. } = session::prepare(request, &cancel)
        .await
        .map_err(|failure| CliError::new(exit_code(&failure, &interruption), failure))?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    let mut runner = setup.runner(None);
    let plan = setup.plan();
    let trained = setup
        .model
        .trained_context
        .unwrap_or(UNKNOWN_TRAINED_CONTEXT);
    let trial_settings = setup.config.trial_settings();
    let settings = RecordSettings {
        step: args.step,
        min_context: setup.config.ozone.min_context,
        max_context: args.max_context.unwrap_or(trained).min(trained),
        stop_after_failures: args.stop_after,
        repeats: args.repeats.max(1),
        verify_samples: trial_settings.samples,
        initial_batch: plan.initial_batch,
        batches: if args.skip_batch {
            Vec::new()
        } else {
            RecordSettings::batch_ladder(plan.initial_batch, plan.max_batch)
        },
        concurrency_levels: if args.skip_concurrency {
            Vec::new()
        } else {
            trial_settings.concurrency_levels.clone()
        },
        variant: plan.variant,
        ladder_contexts: Vec::new(),
    };
    let output = args.output.clone().unwrap_or_else(|| {
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        PathBuf::from(format!("{stem}.profile.json"))
    });
    eprintln!(
        "recording {} ({} tokens trained) on {}: screens every {} tokens from {}",
        setup.model.name,
        trained,
        setup.hardware.hostname.as_deref().unwrap_or("this machine"),
        settings.step,
        settings.min_context
    );

    let mut count = 0;
    let mut progress = |stage: Stage, t: &TrialRecord| {
        count += 1;
        eprintln!("{count:>4}  {}", describe(stage, t));
    };
    let recorded = record::record(&mut runner, &settings, &cancel, &mut progress).await;
    let (points, measured, interrupted) = match recorded {
        Ok((points, measured)) => (points, measured, false),
        Err(record::Interrupted(points)) => (points, settings.clone(), true),
    };
    let profile = Profile {
        profile_version: lab::PROFILE_VERSION,
        provenance: Provenance {
            method: Method::Record {
                command,
                settings: measured,
                duration_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            },
            model_source: setup.model_source.clone(),
            ozone_version: setup.ozone_version.clone(),
            backend: setup.backend,
            machine: setup.hardware.hostname.clone(),
            memory_budget_mb: setup.config.ozone.process_memory_budget_mb,
            gpu_memory_budget_mb: setup.config.ozone.gpu_memory_budget_mb,
            recorded_at: chrono::Utc::now(),
            server_env: lab::profile::server_env(),
        },
        parameters: setup.params(),
        model: setup.model,
        hardware: setup.hardware,
        config: setup.config,
        granularity: settings.step,
        points,
        recorded_run: None,
    };
    let output = if interrupted {
        output.with_extension("partial.json")
    } else {
        output
    };
    profile.save(&output).exit(Exit::Internal)?;
    let size = std::fs::metadata(&output).map_or(0, |m| m.len());
    let summary = format!(
        "{}: {} trials in {:.0} s, {} KiB; true limit {}",
        output.display(),
        profile.runs().count(),
        started.elapsed().as_secs_f64(),
        size / 1024,
        profile
            .true_limit()
            .map_or("none (no context verified mostly stable)".into(), |c| c
                .to_string())
    );
    if interrupted {
        let exit = if interruption.signal() == Some(libc::SIGTERM) {
            Exit::Terminated
        } else {
            Exit::Interrupted
        };
        return Err(CliError::new(
            exit,
            anyhow::anyhow!("interrupted; the points measured so far are in {summary}"),
        ));
    }
    println!("{summary}");
    Ok(())
}

/// One progress line: stage, configuration, verdict and the figures behind it.
fn describe(stage: Stage, t: &TrialRecord) -> String {
    let stage = match stage {
        Stage::Screen => "screen",
        Stage::Verify => "verify",
    };
    let verdict = match (&t.failure, t.verdict) {
        (Some(f), _) => format!("failed: {}", f.message),
        (None, v) => format!("{v:?}").to_lowercase(),
    };
    let rss = t
        .peaks
        .process_rss_bytes
        .map(|b| format!(", peak {:.1} MiB", b as f64 / f64::from(1u32 << 20)))
        .unwrap_or_default();
    let cv = t.cv.map(|cv| format!(", cv {cv:.2}")).unwrap_or_default();
    format!(
        "{stage} {}: {verdict}{rss}{cv} ({:.1} s)",
        t.config,
        t.duration_ms as f64 / 1000.0
    )
}

/// `--settings NAME=JSON`: the name and its variants (an object, or an array of them).
fn parse_settings(arg: &str) -> anyhow::Result<(String, Vec<Value>)> {
    let (name, json) = arg
        .split_once('=')
        .with_context(|| format!("--settings {arg}: expected NAME=JSON"))?;
    let value: Value = serde_json::from_str(json)
        .with_context(|| format!("--settings {name}: not JSON: {json}"))?;
    let variants = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    if variants.is_empty() || !variants.iter().all(Value::is_object) {
        anyhow::bail!(
            "--settings {name}: expected a JSON object or an array of objects, got {json}"
        );
    }
    Ok((name.to_string(), variants))
}

/// Every (context strategy, settings, batch settings) to replay, from the flags.
fn variants(args: &RunArgs, batch_strategy: &str) -> anyhow::Result<Vec<Variant>> {
    let mut by_name: Vec<(String, Vec<Value>)> = Vec::new();
    for arg in &args.settings {
        let (name, values) = parse_settings(arg)?;
        match by_name.iter_mut().find(|(n, _)| *n == name) {
            Some((_, list)) => list.extend(values),
            None => by_name.push((name, values)),
        }
    }
    let known: Vec<String> = args
        .strategies
        .iter()
        .map(|s| plugin_name(s))
        .chain(std::iter::once(plugin_name(batch_strategy)))
        .collect();
    if let Some((name, _)) = by_name.iter().find(|(n, _)| !known.contains(n)) {
        anyhow::bail!(
            "--settings {name}: no --strategy or batch strategy is named {name} (names: {})",
            known.join(", ")
        );
    }
    let of = |name: &str| -> Vec<Option<Value>> {
        match by_name.iter().find(|(n, _)| n == name) {
            Some((_, values)) => values.iter().cloned().map(Some).collect(),
            None => vec![None],
        }
    };
    let mut out = Vec::new();
    for strategy in &args.strategies {
        for settings in of(&plugin_name(strategy)) {
            for batch_settings in of(&plugin_name(batch_strategy)) {
                out.push(Variant {
                    strategy: strategy.clone(),
                    settings: settings.clone(),
                    batch_strategy: args.batch_strategy.clone(),
                    batch_settings,
                });
            }
        }
    }
    Ok(out)
}

fn compare(args: RunArgs) -> Result<(), CliError> {
    let loaded = config::load(args.config.as_deref()).exit(Exit::BadInput)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // The user's file, when there is one, overrides the profiles' plugin configuration.
    let user = match &loaded.source {
        Some(_) => PluginConfig::from_config(&loaded.config),
        None => PluginConfig::default(),
    };
    let batch_strategy = args
        .batch_strategy
        .clone()
        .unwrap_or_else(|| loaded.config.ozone.batch_strategy.clone());
    let variants = variants(&args, &batch_strategy).exit(Exit::BadInput)?;
    let mut profiles = Vec::new();
    for path in &args.profiles {
        for file in profile_files(path).exit(Exit::BadInput)? {
            let profile = Profile::load(&file).exit(Exit::BadInput)?;
            profiles.push((Profile::display_name(&file), profile));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .exit(Exit::Internal)?;
    // One plugin host per distinct sandbox: compiled components are reused across runs.
    let mut hosts: Vec<(SandboxLimits, PluginHost)> = Vec::new();
    let started = Instant::now();
    let mut replays = Vec::new();
    for (name, profile) in &profiles {
        // The sandbox the recording gave its plugins (`ozone.sandbox`), with the keys the
        // user's configuration sets.
        let sandbox = sandbox_for(&loaded, &profile.config.ozone.sandbox);
        let host = match hosts.iter().position(|(s, _)| *s == sandbox) {
            Some(i) => &hosts[i].1,
            None => {
                let host = PluginHost::new(sandbox.clone(), PluginHost::default_cache_dir())
                    .map_err(CliError::plugin)?;
                hosts.push((sandbox, host));
                &hosts[hosts.len() - 1].1
            }
        };
        for variant in &variants {
            for seed in args.seed..args.seed + u64::from(args.repeats.max(1)) {
                replays
                    .push(runtime.block_on(lab::replay(host, profile, name, variant, &user, seed)));
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rows = lab::rows(&replays);
    if args.json {
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "rows": rows,
            "runs": replays,
        }))
        .exit(Exit::Internal)?;
        println!("{json}");
    } else {
        print!("{}", lab::render_table(&rows));
    }
    eprintln!(
        "{} replays in {elapsed:.2} s ({:.0} per second)",
        replays.len(),
        replays.len() as f64 / elapsed.max(1e-9)
    );
    let failed: Vec<&lab::Replay> = replays.iter().filter(|r| r.failed()).collect();
    let Some(first) = failed.first() else {
        return Ok(());
    };
    // The first failure's code, by the mapping `tune` and `plugins` use.
    let exit = first
        .plugin_error
        .as_deref()
        .map_or(Exit::Plugin, Exit::of_plugin_error);
    let mut runs: Vec<String> = failed
        .iter()
        .map(|r| format!("{} on {}", r.strategy, r.profile))
        .collect();
    runs.dedup();
    Err(CliError::new(
        exit,
        anyhow::anyhow!("{} run(s) erred: {}", failed.len(), runs.join(", ")),
    ))
}

/// `recorded` with every `ozone.sandbox` key the user's configuration file sets.
fn sandbox_for(loaded: &LoadedConfig, recorded: &SandboxLimits) -> SandboxLimits {
    let from_file = |key: &str| matches!(loaded.provenance(key), ConfigProvenance::File(_));
    let user = &loaded.config.ozone.sandbox;
    let mut limits = recorded.clone();
    if from_file("ozone.sandbox.fuel_per_call") {
        limits.fuel_per_call = user.fuel_per_call;
    }
    if from_file("ozone.sandbox.memory_mb") {
        limits.memory_mb = user.memory_mb;
    }
    if from_file("ozone.sandbox.stack_kb") {
        limits.stack_kb = user.stack_kb;
    }
    limits
}

/// A profile file, or every `*.profile.json` in a folder (sorted).
fn profile_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("cannot read the folder {}: {e}", path.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".profile.json"))
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("{} holds no *.profile.json file", path.display());
    }
    Ok(files)
}
