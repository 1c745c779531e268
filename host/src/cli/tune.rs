//! `ozone tune MODEL...`: measure a model and write presets, deploy files and a report.

use std::path::PathBuf;

use super::Failure;

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

    /// Absolute budget for the resident memory of the server's process tree, in MiB.
    /// Useful on shared machines; a trial that exceeds it fails with a threshold breach.
    #[arg(long, value_name = "MIB")]
    pub memory_budget_mb: Option<u64>,
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
    /// Stop after the context search and batch scaling (no concurrency ladder).
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
}

const TUNE_EXAMPLES: &str = "\
Examples:
  ozone tune model.gguf
      Start llama-server for each configuration and find the largest stable context,
      the best batch and the concurrency this machine sustains.
  ozone tune qwen2.5:0.5b --ollama-url http://127.0.0.1:11434
      Tune an Ollama model.
  ozone tune model.gguf --memory-budget-mb 2048 --preset max_context
      Stay under 2 GiB of server memory; write deploy files for the largest context.
  ozone tune model.gguf --context-strategy my_search.wasm
      Search with your own policy (see `ozone plugins check`).
  ozone tune --resume ozone_results/logs/model_20261126T120000.jsonl
      Continue after Ctrl-C.";

pub fn run(_args: Args) -> Result<(), Failure> {
    Err(anyhow::anyhow!("not implemented yet").into())
}
