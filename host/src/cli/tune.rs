//! `ozone tune MODEL...`: measure a model and write presets, deploy files and a report.

use std::path::{Path, PathBuf};

use super::flags::{ConfigFlags, ServerFlags, StrategyFlags};
use super::{CliError, Exit, ResultExt};
use crate::backend::llama_server::{resolve_binary, Interruption};
use crate::backend::{ollama::normalize_base_url, BackendKind};
use crate::config::Config;
use crate::plugin::PluginHost;
use crate::record::{Bound, Stage};
use crate::report::{self, LogEvent};
use crate::session::{self, FootprintError, RunRequest, Start, TuneFailure, TuneResult};
use crate::tune::presets::PresetName;
use crate::tune::RunParameters;

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

#[derive(Debug, clap::Args)]
#[command(after_long_help = TUNE_EXAMPLES)]
pub struct Args {
    /// Models to tune: paths to `.gguf` files (llama-server) or Ollama tags.
    #[arg(required_unless_present = "resume")]
    pub models: Vec<String>,

    /// Inference server to use.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    #[command(flatten)]
    pub server: ServerFlags,
    /// Ollama's address (else $OLLAMA_HOST, else http://127.0.0.1:11434).
    #[arg(long, value_name = "URL")]
    pub ollama_url: Option<String>,
    /// Base URL of an OpenAI-compatible server (with --backend openai).
    #[arg(long, value_name = "URL", required_if_eq("backend", "openai"))]
    pub base_url: Option<String>,
    /// API key for --backend openai.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    #[command(flatten)]
    pub config: ConfigFlags,
    /// Where logs, summaries, presets, deploy files and reports go.
    #[arg(long, short = 'o', value_name = "DIR", default_value = "ozone_results")]
    pub output_dir: PathBuf,
    #[command(flatten)]
    pub strategies: StrategyFlags,

    /// Margin per GPU that llama.cpp's fit baseline leaves free (llama-server `-fitt`), in
    /// MiB; default llama-server's own (1024). The baseline is one extra start without
    /// `-c`; trials always run with `-fit off`.
    #[arg(long, value_name = "MIB")]
    pub fit_target_mb: Option<u64>,
    /// Stop after the context search and batch scaling (no concurrency search).
    #[arg(long)]
    pub skip_concurrency: bool,

    /// Preset used for the deploy files (Modelfile, llama-server command).
    #[arg(long, value_enum, default_value_t = PresetName::Balanced)]
    pub preset: PresetName,
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

    // Each run with the name its errors are given.
    let mut runs: Vec<(String, Start)> = Vec::new();
    match &args.resume {
        Some(log) => runs.push((log.display().to_string(), resume(&args, log)?)),
        None => {
            let loaded = args.config.load(&args.strategies)?;
            check_output_dir(&args.output_dir)?;
            for model in &args.models {
                let start = Start::New {
                    request: Box::new(request(&args, &loaded.config, model)?),
                    output_dir: args.output_dir.clone(),
                };
                runs.push((model.clone(), start));
            }
        }
    }
    let show_progress = !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut summaries = Vec::new();
    let mut worst: Option<CliError> = None;
    for (model, start) in runs {
        let plugins = PluginHost::new(sandbox_of(&start), PluginHost::default_cache_dir())
            .map(std::sync::Arc::new)
            .map_err(CliError::plugin)?;
        match session::tune(start, show_progress, plugins, cancel.clone()).await {
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

/// The plugin sandbox of a run: its configuration's (a resumed run's is in its log,
/// read again by the session; the defaults hold until then).
fn sandbox_of(start: &Start) -> crate::plugin::SandboxLimits {
    match start {
        Start::New { request, .. } => request.config.ozone.sandbox.clone(),
        Start::Resume { log, .. } => report::read_log(log)
            .ok()
            .and_then(|events| match events.into_iter().next() {
                Some(LogEvent::RunStarted(setup)) => Some(setup.config.ozone.sandbox),
                _ => None,
            })
            .unwrap_or_default(),
    }
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

/// A new run of `model`, as the flags and the configuration ask for it.
fn request(args: &Args, config: &Config, model: &str) -> Result<RunRequest, CliError> {
    let backend = backend_of(args.backend, model)?;
    let (model_source, server_binary) = match backend {
        BackendKind::LlamaServer => {
            let (model, binary) = llama_server_files(model, args.server.llama_server.as_deref())?;
            (model.display().to_string(), Some(binary))
        }
        _ => (model.to_string(), None),
    };
    let s = &args.server;
    let parameters = RunParameters {
        kv_cache_type: s.kv_cache_type,
        gpu_layers: s.gpu_layers,
        flash_attn: s.flash_attn,
        threads: s.threads,
        llama_server: s.llama_server.clone(),
        ollama_url: (backend == BackendKind::Ollama).then(|| ollama_url(args)),
        base_url: args.base_url.clone(),
        skip_concurrency: args.skip_concurrency,
        preset: args.preset,
        hint: None,
        fit_target_mb: args.fit_target_mb,
    };
    Ok(RunRequest {
        model_source,
        backend,
        server_binary,
        parameters,
        config: config.clone(),
        api_key: args.api_key.clone(),
        fresh: args.fresh,
        shared_warm_start: args.warm_start_from.as_ref().map(|dir| {
            Box::new(crate::fleet::warm_start::SharedResults::new(dir))
                as Box<dyn crate::tune::WarmStartSource>
        }),
    })
}

/// `--ollama-url`, else `$OLLAMA_HOST`, else Ollama's default address.
fn ollama_url(args: &Args) -> String {
    let url = args
        .ollama_url
        .clone()
        .or_else(|| std::env::var("OLLAMA_HOST").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| crate::backend::ollama::DEFAULT_OLLAMA_URL.to_string());
    normalize_base_url(&url)
}

/// Which server runs `model`'s trials: a `.gguf` path (or an existing file) is
/// llama-server's under `--backend auto`, anything else an Ollama tag.
fn backend_of(choice: BackendChoice, model: &str) -> Result<BackendKind, CliError> {
    if Path::new(model).is_dir() {
        return Err(CliError::new(
            Exit::BadInput,
            anyhow::anyhow!(
                "model {model} is a directory: give the .gguf file in it (or, for an Ollama \
                 model of that name, --backend ollama)"
            ),
        ));
    }
    Ok(match choice {
        BackendChoice::Auto if model.ends_with(".gguf") || Path::new(model).is_file() => {
            BackendKind::LlamaServer
        }
        BackendChoice::Auto | BackendChoice::Ollama => BackendKind::Ollama,
        BackendChoice::LlamaServer => BackendKind::LlamaServer,
        BackendChoice::Openai => BackendKind::OpenAi,
    })
}

/// The model file and the llama-server binary of a llama-server run, both absolute:
/// the deploy files must work from any directory, and `--resume` may run from another.
pub(super) fn llama_server_files(
    model: &str,
    binary: Option<&Path>,
) -> Result<(PathBuf, PathBuf), CliError> {
    let path = PathBuf::from(model);
    if !path.is_file() {
        return Err(CliError::new(
            Exit::BadInput,
            anyhow::anyhow!("model file {} does not exist", path.display()),
        ));
    }
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let binary = resolve_binary(binary).exit(Exit::NoServer)?;
    let binary = std::fs::canonicalize(&binary).unwrap_or(binary);
    Ok((path, binary))
}

/// A resumed run repeats the original's model, backend and flags from its log; only
/// what [`RESUME_TAKES`] may come from the command line.
fn resume(args: &Args, log: &Path) -> Result<Start, CliError> {
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
    Ok(Start::Resume {
        log: log.to_path_buf(),
        llama_server: args.server.llama_server.clone(),
        api_key: args.api_key.clone(),
    })
}

/// The documented exit code of each way a tune can fail.
pub(super) fn exit_code(failure: &TuneFailure, interruption: &Interruption) -> Exit {
    let stopped = || match interruption.signal() {
        Some(libc::SIGTERM) => Exit::Terminated,
        _ => Exit::Interrupted,
    };
    match failure {
        TuneFailure::Model(_)
        | TuneFailure::BadLog(_)
        | TuneFailure::BadInput(_)
        | TuneFailure::ModelChanged { .. } => Exit::BadInput,
        TuneFailure::Server(_)
        | TuneFailure::ServerCannotStart(_)
        | TuneFailure::ServerNotFound(_) => Exit::NoServer,
        TuneFailure::PluginLoad(e) | TuneFailure::Plugin(e) => Exit::of_plugin_error(e),
        TuneFailure::Contract(_) => Exit::Plugin,
        TuneFailure::Interrupted { .. } => stopped(),
        // The disk, not the user or a plugin: what was measured is in the log.
        TuneFailure::Log(_) | TuneFailure::Outputs { .. } => Exit::Internal,
        TuneFailure::Footprint(e) => match e {
            FootprintError::NotOurServer(_) => Exit::BadInput,
            FootprintError::ServerCannotStart { .. } => Exit::NoServer,
            FootprintError::Interrupted => stopped(),
            FootprintError::DoesNotFit { .. } => Exit::Internal,
        },
        TuneFailure::Internal(_) => Exit::Internal,
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
            Some(b) => println!("  {what:<16} {value:<11} bound by {}", report::describe(b)),
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
    if let Some(offload) = &s.offload {
        println!("  offload          {}", offload.line());
    }
    if let Some(note) = report::time_bound_note(s) {
        println!("note: {note}");
    }
    println!();
    let frontier = report::frontier_table(&s.frontier, s.config.ozone.max_kld);
    if !frontier.is_empty() {
        println!("{frontier}");
    }
    println!("{}", report::presets_table(s));
    println!("files:");
    println!("  log       {}", result.log.display());
    for (what, path) in result.files.list() {
        println!("  {what:<20} {}", path.display());
    }
    println!("report: {}", result.files.html.display());
}
