//! `ozone tune MODEL...`: measure a model and write presets, deploy files and a report.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{CliError, Exit, ResultExt};
use crate::backend::llama_server::{resolve_binary, Interruption, LlamaServerSpec};
use crate::backend::{ollama::normalize_base_url, BackendKind, BackendSpec};
use crate::config::{self, LoadedConfig};
use crate::plugin::PluginHost;
use crate::record::{KvCacheType, Stage};
use crate::report::{self, LogEvent, ReportError};
use crate::session::{self, FootprintError, TuneFailure, TuneJob, TuneResult};
use crate::tune::driver::TuneError;
use crate::tune::presets::PresetName;
use crate::tune::{Bound, RunParameters};

/// Which inference server runs the trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// A `.gguf` path (or an existing file) → llama-server; anything else → Ollama.
    Auto,
    /// Ozone starts and stops llama-server itself for every configuration.
    LlamaServer,
    /// A running Ollama; MODEL is an Ollama tag such as `qwen2.5:0.5b`.
    Ollama,
    /// A running OpenAI-compatible server (vLLM, LM Studio, SGLang). Ozone cannot
    /// restart it, so the context is exercised by prompt length only, and batch and
    /// concurrency limits are those the server was started with.
    Openai,
}

/// Which preset the deploy files (Modelfile, llama-server command) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum PresetChoice {
    MaxContext,
    Balanced,
    FastResponse,
    /// The concurrency found: `-np N` slots of the context, for N users at once.
    Serving,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = TUNE_EXAMPLES)]
pub struct Args {
    /// Models to tune: paths to `.gguf` files (llama-server) or Ollama tags.
    #[arg(required_unless_present = "resume")]
    pub models: Vec<String>,

    /// Inference server to use.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// llama-server binary (else $LLAMA_SERVER, else `llama-server` on PATH).
    #[arg(long, value_name = "PATH")]
    pub llama_server: Option<PathBuf>,
    /// Ollama's address (else $OLLAMA_HOST, else http://127.0.0.1:11434).
    #[arg(long, value_name = "URL")]
    pub ollama_url: Option<String>,
    /// Base URL of an OpenAI-compatible server (with --backend openai).
    #[arg(long, value_name = "URL", required_if_eq("backend", "openai"))]
    pub base_url: Option<String>,
    /// API key for --backend openai.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Configuration file in the `o3_ai_config.yaml` layout (else ./ozone.yaml, else the
    /// user config dir, else built-in defaults). `ozone config show` prints the result.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where logs, summaries, presets, deploy files and reports go.
    #[arg(long, short = 'o', value_name = "DIR", default_value = "ozone_results")]
    pub output_dir: PathBuf,

    /// Context-search plugin: `binary-search` (built in) or a component FILE.wasm.
    #[arg(long, value_name = "NAME|FILE")]
    pub context_strategy: Option<String>,
    /// Batch-scaling plugin: `batch-scaler` (built in) or a component FILE.wasm.
    #[arg(long, value_name = "NAME|FILE")]
    pub batch_strategy: Option<String>,
    /// Concurrency-search plugin: `concurrency-ladder` (built in) or a component FILE.wasm.
    #[arg(long, value_name = "NAME|FILE")]
    pub concurrency_strategy: Option<String>,
    /// Service-level objective for the concurrency search (ozone.slo): any of ttft-p50,
    /// ttft-p95, ttft-p99, tpot-p50, tpot-p95, e2e-p95 (in ms or s) and decode-min (the
    /// slowest stream's tokens/s), e.g. `ttft-p95=2000ms,tpot-p95=100ms,decode-min=10`.
    /// Without one, the most streams that run stable.
    #[arg(long, value_name = "METRIC=VALUE,...")]
    pub slo: Option<String>,

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
    /// Samples per configuration (statistical_validation.min_samples_per_config).
    #[arg(long, value_name = "N")]
    pub samples: Option<u32>,
    /// Smallest context the search may propose.
    #[arg(long, value_name = "TOKENS")]
    pub min_context: Option<u32>,
    /// KV cache type for every trial (-ctk/-ctv).
    #[arg(long, value_name = "TYPE", default_value = "f16", value_parser = ["f16", "q8_0", "q4_0"])]
    pub kv_cache_type: String,
    /// Layers offloaded to the GPU (llama-server -ngl); 0 keeps the model on the CPU.
    #[arg(long, value_name = "N", default_value_t = 99)]
    pub gpu_layers: u32,
    /// Flash attention for llama-server (-fa).
    #[arg(long, value_name = "on|off|auto", default_value = "auto", value_parser = ["on", "off", "auto"])]
    pub flash_attn: String,
    /// CPU threads for llama-server (-t); default: llama-server's own choice.
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Margin per GPU that llama.cpp's fit baseline leaves free (llama-server `-fitt`), in
    /// MiB; default llama-server's own (1024). The baseline is one extra start without
    /// `-c`; trials always run with `-fit off`.
    #[arg(long, value_name = "MIB")]
    pub fit_target_mb: Option<u64>,
    /// Stop after the context search and batch scaling (no concurrency search).
    #[arg(long)]
    pub skip_concurrency: bool,

    /// Preset used for the deploy files (Modelfile, llama-server command).
    #[arg(long, value_enum, default_value_t = PresetChoice::Balanced)]
    pub preset: PresetChoice,
    /// Print the summary as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Continue an interrupted run from its log, without repeating finished trials.
    #[arg(long, value_name = "LOG.jsonl", conflicts_with = "models")]
    pub resume: Option<PathBuf>,
    /// Ignore what earlier runs on this machine learned about the model.
    #[arg(long)]
    pub fresh: bool,
    /// Start from what other machines with the same hardware found for this model: DIR
    /// is a fleet's results directory (`ozone fleet submit --results DIR`). The median of
    /// their context limits is probed first, so an unchanged limit is confirmed in two
    /// trials. Only results of the same hardware fingerprint, model digest, Ozone version
    /// and memory limits count. `--fresh` turns it off.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    pub warm_start_from: Option<PathBuf>,
    /// The flags given on the command line (clap ids), as opposed to left at their
    /// defaults: `--resume` refuses those that would change the logged run.
    #[arg(skip)]
    pub given: Vec<String>,
}

/// What `--resume` takes from its command line: where the llama-server binary is now
/// (a moved binary), the API key (never logged), and how the result is shown. Every
/// other flag would change what the log measured, and is refused by name.
const RESUME_TAKES: [&str; 6] = [
    "resume",
    "llama_server",
    "api_key",
    "json",
    "verbose",
    "quiet",
];

const TUNE_EXAMPLES: &str = "\
Examples:
  ozone tune model.gguf
      Start llama-server for each configuration and find the largest stable context,
      the best batch and the concurrency this machine sustains.
  ozone tune qwen2.5:0.5b --ollama-url http://127.0.0.1:11434
      Tune an Ollama model.
  ozone tune model.gguf --memory-budget-mb 2048 --preset max_context
      Stay under 2 GiB of server memory; write deploy files for the largest context.
  ozone tune model.gguf --gpu-memory-budget-mb 40960
      Let the server use at most 40 GiB of GPU memory (the rest is someone else's).
  ozone tune model.gguf --context-strategy my_search.wasm
      Search with your own policy (see `ozone plugins check`).
  ozone tune model.gguf --slo ttft-p95=2s,decode-min=10 --preset serving
      The most users at once whose time to first token stays under 2 s (p95) and whose
      streams each get 10 tokens/s; deploy files with that many slots.
  ozone tune --resume ozone_results/logs/model_20261126T120000.jsonl
      Continue after Ctrl-C.";

pub fn run(args: Args) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .exit(Exit::Internal)?;
    let result = runtime.block_on(run_async(args));
    // A plugin compilation abandoned by Ctrl-C must not hold the exit.
    runtime.shutdown_background();
    result
}

async fn run_async(args: Args) -> Result<(), CliError> {
    let interruption = Interruption::default();
    interruption.watch().exit(Exit::Internal)?;
    let cancel = interruption.token();

    let jobs = match &args.resume {
        Some(log) => vec![resume_job(&args, log)?],
        None => {
            let loaded = load_config(&args)?;
            check_output_dir(&args.output_dir)?;
            let mut jobs = Vec::new();
            for model in &args.models {
                jobs.push(new_job(&args, &loaded, model)?);
            }
            jobs
        }
    };
    let show_progress = !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut summaries = Vec::new();
    let mut worst: Option<CliError> = None;
    for mut job in jobs {
        job.show_progress = show_progress;
        let limits = job.config.ozone.sandbox.clone();
        let plugins = PluginHost::new(limits, PluginHost::default_cache_dir())
            .map(std::sync::Arc::new)
            .map_err(CliError::plugin)?;
        let model = job.model_source.clone();
        match session::tune(job, plugins, cancel.clone()).await {
            Ok(result) => {
                // Notes go to stderr in JSON mode too: stdout is the summary alone.
                for note in &result.notes {
                    eprintln!("note: {note}");
                }
                if !args.json {
                    print_result(&result);
                }
                if result.summary.limits.max_context.is_none() {
                    worst.get_or_insert(CliError::new(
                        Exit::Internal,
                        anyhow::anyhow!("{model}: no configuration was stable (see the report)"),
                    ));
                }
                summaries.push(result.summary);
            }
            Err(failure) => {
                let exit = exit_code(&failure, &interruption);
                // A model error names the file already.
                let error = match &failure {
                    TuneFailure::Model(_) | TuneFailure::ModelChanged { .. } => {
                        anyhow::anyhow!("{failure}")
                    }
                    _ => anyhow::anyhow!("{model}: {failure}"),
                };
                if matches!(exit, Exit::Interrupted | Exit::Terminated) {
                    return Err(CliError::new(exit, error));
                }
                worst = Some(CliError::new(exit, error));
                if args.models.len() <= 1 {
                    break;
                }
            }
        }
    }
    if args.json {
        let json = if summaries.len() == 1 {
            serde_json::to_string_pretty(&summaries[0])
        } else {
            serde_json::to_string_pretty(&summaries)
        };
        println!("{}", json.exit(Exit::Internal)?);
    }
    match worst {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

fn load_config(args: &Args) -> Result<LoadedConfig, CliError> {
    let mut loaded = config::load(args.config.as_deref()).exit(Exit::BadInput)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let overrides: [(&str, Option<serde_json::Value>, &str); 10] = [
        (
            "testing.statistical_validation.min_samples_per_config",
            args.samples.map(Into::into),
            "--samples",
        ),
        (
            "ozone.process_memory_budget_mb",
            args.memory_budget_mb.map(Into::into),
            "--memory-budget-mb",
        ),
        (
            "ozone.process_memory_headroom_mb",
            args.memory_headroom_mb.map(Into::into),
            "--memory-headroom-mb",
        ),
        // A headroom given on the command line replaces a budget from the file.
        (
            "ozone.process_memory_budget_mb",
            args.memory_headroom_mb.map(|_| serde_json::Value::Null),
            "--memory-headroom-mb",
        ),
        (
            "ozone.gpu_memory_budget_mb",
            args.gpu_memory_budget_mb.map(Into::into),
            "--gpu-memory-budget-mb",
        ),
        (
            "ozone.min_context",
            args.min_context.map(Into::into),
            "--min-context",
        ),
        (
            "ozone.context_strategy",
            args.context_strategy.clone().map(Into::into),
            "--context-strategy",
        ),
        (
            "ozone.batch_strategy",
            args.batch_strategy.clone().map(Into::into),
            "--batch-strategy",
        ),
        (
            "ozone.concurrency_strategy",
            args.concurrency_strategy.clone().map(Into::into),
            "--concurrency-strategy",
        ),
        ("ozone.slo", args.slo.clone().map(Into::into), "--slo"),
    ];
    for (path, value, flag) in overrides {
        if let Some(value) = value {
            loaded
                .set_override(path, value, flag)
                .exit(Exit::BadInput)?;
        }
    }
    // A plugin file must exist now, not after the model's facts are read.
    for key in [
        "ozone.context_strategy",
        "ozone.batch_strategy",
        "ozone.concurrency_strategy",
    ] {
        let strategy = match key {
            "ozone.context_strategy" => &loaded.config.ozone.context_strategy,
            "ozone.batch_strategy" => &loaded.config.ozone.batch_strategy,
            _ => &loaded.config.ozone.concurrency_strategy,
        };
        if let Ok(crate::plugin::PluginRef::File(path)) =
            crate::plugin::PluginRef::from_str(strategy)
        {
            if !path.is_file() {
                let from = match loaded.provenance(key) {
                    config::Provenance::Flag(flag) => flag,
                    config::Provenance::File(file) => format!("{}: {key}", file.display()),
                    config::Provenance::Default => key.to_string(),
                };
                return Err(CliError::new(
                    Exit::BadInput,
                    anyhow::anyhow!("{from}: plugin file {} does not exist", path.display()),
                ));
            }
        }
    }
    Ok(loaded)
}

/// The output folder must exist (it is created) and take files, before anything is
/// measured.
fn check_output_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::tempfile_in(dir).map(drop))
        .map_err(|e| {
            anyhow::anyhow!(
                "--output-dir {}: cannot write there: {e}; choose another folder with -o",
                dir.display()
            )
        })
        .exit(Exit::BadInput)
}

fn new_job(args: &Args, loaded: &LoadedConfig, model: &str) -> Result<TuneJob, CliError> {
    let params = RunParameters {
        kv_cache_type: match args.kv_cache_type.as_str() {
            "q8_0" => KvCacheType::Q8_0,
            "q4_0" => KvCacheType::Q4_0,
            _ => KvCacheType::F16,
        },
        gpu_layers: args.gpu_layers,
        flash_attn: args.flash_attn.clone(),
        threads: args.threads,
        llama_server: args.llama_server.clone(),
        ollama_url: args.ollama_url.clone(),
        base_url: args.base_url.clone(),
        skip_concurrency: args.skip_concurrency,
        preset: preset_name(args.preset),
        hint: None,
        fit_target_mb: args.fit_target_mb,
    };
    let spec = backend_spec(args.backend, model, &params, args.api_key.clone())?;
    // Recorded for `--resume`, which may run from another directory.
    let model_source = match &spec {
        BackendSpec::LlamaServer(s) => s.model.display().to_string(),
        _ => model.to_string(),
    };
    Ok(TuneJob {
        model_source,
        spec,
        config: loaded.config.clone(),
        params,
        output_dir: args.output_dir.clone(),
        fresh: args.fresh,
        show_progress: false,
        resume: None,
        shared_warm_start: args.warm_start_from.as_ref().map(|dir| {
            Box::new(crate::fleet::warm_start::SharedResults::new(dir))
                as Box<dyn crate::tune::WarmStartSource>
        }),
    })
}

/// A resumed run repeats the original's model, backend and flags from its log.
fn resume_job(args: &Args, log: &Path) -> Result<TuneJob, CliError> {
    if let Some(flag) = args
        .given
        .iter()
        .find(|id| !RESUME_TAKES.contains(&id.as_str()))
    {
        return Err(CliError::new(
            Exit::BadInput,
            anyhow::anyhow!(
                "--{} cannot change on --resume: the run goes on with the settings {} \
                 recorded; start a new run to use others",
                flag.replace('_', "-"),
                log.display()
            ),
        ));
    }
    let events = report::read_log(log).exit(Exit::BadInput)?;
    let Some(LogEvent::RunStarted(started)) = events.into_iter().next() else {
        return Err(CliError::new(
            Exit::BadInput,
            anyhow::anyhow!(
                "{}: not an ozone tune log (no run_started line first)",
                log.display()
            ),
        ));
    };
    let mut params = started.parameters.clone().ok_or_else(|| {
        CliError::new(
            Exit::BadInput,
            anyhow::anyhow!(
                "{}: written by an ozone without resume support",
                log.display()
            ),
        )
    })?;
    match (&args.llama_server, &params.llama_server) {
        // A binary that moved: where it is now.
        (Some(now), _) => params.llama_server = Some(now.clone()),
        (None, Some(then)) if resolve_binary(Some(then)).is_err() => {
            return Err(CliError::new(
                Exit::NoServer,
                anyhow::anyhow!(
                    "the llama-server binary {} that {} ran is gone or not executable; pass \
                     --llama-server PATH to resume with it where it is now",
                    then.display(),
                    log.display()
                ),
            ));
        }
        _ => {}
    }
    let backend = match started.backend {
        BackendKind::LlamaServer => BackendChoice::LlamaServer,
        BackendKind::Ollama => BackendChoice::Ollama,
        BackendKind::OpenAi => BackendChoice::Openai,
    };
    let spec = backend_spec(
        backend,
        &started.model_source,
        &params,
        args.api_key.clone(),
    )?;
    // The output dir is the one holding the log (`<dir>/logs/x.jsonl`).
    let output_dir = log
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| args.output_dir.clone());
    Ok(TuneJob {
        model_source: started.model_source.clone(),
        spec,
        config: started.config.clone(),
        params,
        output_dir,
        fresh: args.fresh,
        show_progress: false,
        resume: Some(log.to_path_buf()),
        // A resumed run replays the hint its log recorded.
        shared_warm_start: None,
    })
}

fn backend_spec(
    choice: BackendChoice,
    model: &str,
    params: &RunParameters,
    api_key: Option<String>,
) -> Result<BackendSpec, CliError> {
    if Path::new(model).is_dir() {
        return Err(CliError::new(
            Exit::BadInput,
            anyhow::anyhow!(
                "model {model} is a directory: give the .gguf file in it (or, for an Ollama \
                 model of that name, --backend ollama)"
            ),
        ));
    }
    let choice = match choice {
        BackendChoice::Auto if model.ends_with(".gguf") || Path::new(model).is_file() => {
            BackendChoice::LlamaServer
        }
        BackendChoice::Auto => BackendChoice::Ollama,
        other => other,
    };
    Ok(match choice {
        BackendChoice::LlamaServer | BackendChoice::Auto => {
            let path = PathBuf::from(model);
            if !path.is_file() {
                return Err(CliError::new(
                    Exit::BadInput,
                    anyhow::anyhow!("model file {} does not exist", path.display()),
                ));
            }
            // Absolute paths: the deploy files must work from any directory.
            let path = std::fs::canonicalize(&path).unwrap_or(path);
            let binary = resolve_binary(params.llama_server.as_deref()).exit(Exit::NoServer)?;
            let binary = std::fs::canonicalize(&binary).unwrap_or(binary);
            BackendSpec::LlamaServer(LlamaServerSpec {
                binary,
                model: path,
                gpu_layers: Some(params.gpu_layers),
                flash_attn: Some(params.flash_attn.clone()),
                threads: params.threads,
                extra_args: Vec::new(),
            })
        }
        BackendChoice::Ollama => {
            let url = params
                .ollama_url
                .clone()
                .or_else(|| std::env::var("OLLAMA_HOST").ok().filter(|v| !v.is_empty()))
                .unwrap_or_else(|| crate::backend::ollama::DEFAULT_OLLAMA_URL.to_string());
            BackendSpec::Ollama {
                base_url: normalize_base_url(&url),
                model: model.to_string(),
            }
        }
        BackendChoice::Openai => BackendSpec::OpenAi {
            base_url: params.base_url.clone().unwrap_or_default(),
            model: model.to_string(),
            api_key,
        },
    })
}

fn preset_name(choice: PresetChoice) -> PresetName {
    match choice {
        PresetChoice::MaxContext => PresetName::MaxContext,
        PresetChoice::Balanced => PresetName::Balanced,
        PresetChoice::FastResponse => PresetName::FastResponse,
        PresetChoice::Serving => PresetName::Serving,
    }
}

fn exit_code(failure: &TuneFailure, interruption: &Interruption) -> Exit {
    match failure {
        TuneFailure::Model(_)
        | TuneFailure::BadLog(_)
        | TuneFailure::BadInput(_)
        | TuneFailure::ModelChanged { .. } => Exit::BadInput,
        // A log held by another run, from a newer ozone, or not a log at all.
        TuneFailure::Output(
            ReportError::InUse { .. } | ReportError::NewerLog { .. } | ReportError::BadLine { .. },
        ) => Exit::BadInput,
        TuneFailure::Server(_) | TuneFailure::ServerCannotStart(_) => Exit::NoServer,
        TuneFailure::Footprint(e) => match e {
            FootprintError::NotOurServer(_) => Exit::BadInput,
            FootprintError::ServerCannotStart { .. } => Exit::NoServer,
            FootprintError::Interrupted if interruption.signal() == Some(libc::SIGTERM) => {
                Exit::Terminated
            }
            FootprintError::Interrupted => Exit::Interrupted,
            FootprintError::DoesNotFit { .. } => Exit::Internal,
        },
        TuneFailure::PluginLoad(e) | TuneFailure::Plugin(TuneError::Plugin(e)) => {
            Exit::of_plugin_error(e)
        }
        TuneFailure::Plugin(_) => Exit::Plugin,
        TuneFailure::Interrupted { .. } if interruption.signal() == Some(libc::SIGTERM) => {
            Exit::Terminated
        }
        TuneFailure::Interrupted { .. } => Exit::Interrupted,
        TuneFailure::Output(_) | TuneFailure::Outputs { .. } | TuneFailure::Internal(_) => {
            Exit::Internal
        }
    }
}

/// The closing table: limits with what bound each, the concurrency levels, presets and
/// where every file is.
fn print_result(result: &TuneResult) {
    let s = &result.summary;
    let screens = s.trials.iter().filter(|t| t.stage == Stage::Screen).count();
    println!();
    println!(
        "{} — {} trials ({screens} screens, {} verifications)",
        s.model.name,
        s.trials.len(),
        s.trials.len() - screens
    );
    let b = &s.limits.bounds;
    for (what, value, bound) in [
        ("max context", s.limits.max_context, &b.max_context),
        ("best batch", s.limits.best_batch, &b.best_batch),
        (
            "max concurrency",
            s.limits.max_concurrency,
            &b.max_concurrency,
        ),
    ] {
        // A phase that did not run has no value to show, only its reason.
        let value = match (value, bound) {
            (Some(v), _) => v.to_string(),
            (None, Some(Bound::NotRun { .. })) => "–".into(),
            (None, _) => "none".into(),
        };
        match bound {
            Some(b) => println!("  {what:<16} {value:<11} bound by {}", b.describe()),
            None => println!("  {what:<16} {value}"),
        }
        if what == "max context" {
            if let Some(fit) = &s.fit_baseline {
                println!("  {}", fit.versus(s.limits.max_context));
            }
        }
    }
    let c = &s.concurrency;
    if !c.levels.is_empty() {
        let objective = if c.slo.is_empty() {
            "no objective: stable levels pass".to_string()
        } else {
            format!("objective {}", c.slo)
        };
        let levels: Vec<String> = c
            .levels
            .iter()
            .map(|l| format!("{}{}", l.streams, if l.passed { "✓" } else { "✗" }))
            .collect();
        println!("  levels           {} ({objective})", levels.join(" "));
    }
    if let Some(note) = report::time_bound_note(s) {
        println!("note: {note}");
    }
    println!();
    println!("{}", report::presets_table(s));
    println!("files:");
    println!("  log       {}", result.log.display());
    for (what, path) in result.files.list() {
        println!("  {what:<20} {}", path.display());
    }
    println!("report: {}", result.files.html.display());
}
