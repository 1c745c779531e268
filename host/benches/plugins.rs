//! Plugin costs: propose/observe round trips with real outcome records, and plugin load
//! from the compiled cache versus a cold compile, for each default plugin.
//!
//! `cargo bench -p ozone --bench plugins` (prints figures; no assertions).

use std::time::{Duration, Instant};

use ozone::guard::Thresholds;
use ozone::hardware::{GpuInfo, GpuVendor, HardwareSnapshot, Measured, MemoryInfo, Source};
use ozone::plugin::{
    self, ModelFacts, PluginHost, PluginRef, SandboxLimits, Strategy, TrialOutcome,
};
use ozone::record::{Peaks, Phase, SampleRecord, Stats, TrialConfig, TrialRecord, Verdict};
use ozone_sdk::testing::ConcurrencyMachine;
use ozone_sdk::{ConcurrencyOutcome, Slo, SloBound, SloMetric};

const GIB: u64 = 1 << 30;

fn snapshot() -> HardwareSnapshot {
    HardwareSnapshot {
        taken_at: chrono::Utc::now(),
        hostname: Some("bench".into()),
        os: Some("linux".into()),
        cpu: Default::default(),
        memory: MemoryInfo {
            total_bytes: Some(Measured::new(64 * GIB, Source::Sysinfo)),
            available_bytes: Some(Measured::new(60 * GIB, Source::Sysinfo)),
        },
        gpus: vec![GpuInfo {
            index: 0,
            vendor: GpuVendor::Nvidia,
            name: Some(Measured::new("NVIDIA H100".into(), Source::Nvml)),
            driver: None,
            vram_total_bytes: Some(Measured::new(80 * GIB, Source::Nvml)),
            vram_used_bytes: Some(Measured::new(GIB, Source::Nvml)),
            gtt_total_bytes: None,
            gtt_used_bytes: None,
            unified_memory: false,
            temperature_c: Some(Measured::new(40.0, Source::Nvml)),
            utilization_percent: None,
        }],
        vulkan_drivers: Vec::new(),
    }
}

/// A trial record as the trial module logs it: 5 samples, stats, peaks.
fn record(ctx: u32, batch: u32, stable: bool) -> TrialRecord {
    let samples: Vec<SampleRecord> = (0..5)
        .map(|i| SampleRecord {
            index: i,
            ok: true,
            ttft_ms: Some(180.0 + f64::from(i)),
            prefill_tps: Some(2400.0 - f64::from(i) * 10.0),
            decode_tps: Some(95.0 + f64::from(i) * 0.5),
            prompt_tokens: Some(ctx * 9 / 10),
            completion_tokens: Some(128),
            total_ms: Some(1500.0),
            error: None,
            ..SampleRecord::default()
        })
        .collect();
    let stat = |f: fn(&SampleRecord) -> Option<f64>| {
        Stats::from_values(&samples.iter().filter_map(f).collect::<Vec<_>>())
    };
    let decode = stat(|s| s.decode_tps);
    TrialRecord {
        id: 1,
        phase: Phase::Context,
        stage: ozone::record::Stage::Verify,
        config: TrialConfig {
            ctx,
            batch,
            ubatch: batch.min(512),
            concurrency: 1,
            variant: Default::default(),
        },
        started_at: chrono::Utc::now(),
        duration_ms: 9000,
        granted_ctx: Some(ctx),
        ttft_ms: stat(|s| s.ttft_ms),
        prefill_tps: stat(|s| s.prefill_tps),
        cv: decode.as_ref().and_then(Stats::cv),
        decode_tps: decode,
        samples,
        success_rate: 1.0,
        peaks: Peaks {
            gpu_mem_used_bytes: Some(5 * GIB + 131_072 * u64::from(ctx)),
            ram_used_bytes: Some(8 * GIB),
            process_rss_bytes: Some(2 * GIB),
            server_gpu_mem_bytes: None,
            gpu_temp_c: Some(61.0),
            cpu_percent: Some(35.0),
        },
        breach: None,
        failure: None,
        verdict: if stable {
            Verdict::Stable
        } else {
            Verdict::Unstable
        },
        reason: None,
        stopped_early: None,
        server_log_tail: Vec::new(),
        concurrency: None,
        memory_breakdown: None,
    }
}

fn model() -> ModelFacts {
    ModelFacts {
        name: "llama-3-8b".into(),
        weights_bytes: Some(5 * GIB),
        ..ozone_sdk::testing::model(131_072)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    println!(
        "{what:<44} n={:<6} p50 {:>10.2?}  p99 {:>10.2?}  max {:>10.2?}",
        times.len(),
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
}

fn main() {
    let snap = snapshot();
    let thresholds = Thresholds::default();
    let hw = plugin::hardware_facts(&snap, &thresholds);
    let model = model();
    let cache = std::env::temp_dir().join(format!("ozone-bench-cache-{}", std::process::id()));
    let host = PluginHost::new(SandboxLimits::default(), Some(cache.clone())).expect("engine");

    // Round trips: context search driven by real records (limit 100000 tokens).
    let binary: PluginRef = "binary-search".parse().expect("built-in");
    let outcomes: Vec<TrialOutcome> = (0..=131_072 / 256)
        .map(|i| {
            let ctx = i * 256;
            plugin::trial_outcome(
                &record(ctx, 512, ctx <= 100_000),
                &snap,
                &thresholds,
                &Default::default(),
            )
        })
        .collect();
    let mut round_trips = Vec::new();
    let mut bare = Vec::new();
    while round_trips.len() < 20_000 {
        let mut search = host
            .load_context(&binary, "{}", &hw, &model, &Default::default())
            .expect("load");
        loop {
            let start = Instant::now();
            let Some(ctx) = search.propose().expect("propose") else {
                break;
            };
            search
                .observe(&outcomes[(ctx / 256) as usize])
                .expect("observe");
            round_trips.push(start.elapsed());
            let start = Instant::now();
            search.best().expect("best");
            bare.push(start.elapsed());
        }
    }
    round_trips.sort_unstable();
    let round_trip_p99 = percentile(&round_trips, 0.99);
    report("binary-search propose+observe round trip", round_trips);
    report("binary-search best() (bare call)", bare);

    let scaler: PluginRef = "batch-scaler".parse().expect("built-in");
    let batch_outcomes: Vec<TrialOutcome> = (0..=256)
        .map(|b| {
            plugin::trial_outcome(
                &record(8192, b, true),
                &snap,
                &thresholds,
                &Default::default(),
            )
        })
        .collect();
    let batch_bounds = plugin::batch_bounds(256, 512, 32);
    let mut round_trips = Vec::new();
    while round_trips.len() < 20_000 {
        let mut s = host
            .load_batch(&scaler, "{}", &hw, &model, &batch_bounds)
            .expect("load");
        loop {
            let start = Instant::now();
            let Some(b) = s.propose().expect("propose") else {
                break;
            };
            s.observe(&batch_outcomes[b.batch as usize])
                .expect("observe");
            round_trips.push(start.elapsed());
        }
    }
    report("batch-scaler propose+observe round trip", round_trips);

    // Concurrency outcomes carry latency percentiles and the objective's misses.
    let ladder: PluginRef = "concurrency-ladder".parse().expect("built-in");
    let slo = Slo {
        bounds: vec![SloBound {
            metric: SloMetric::TtftP95,
            value: 1600.0,
        }],
    };
    let streams = ConcurrencyMachine::default();
    let concurrency_outcomes: Vec<ConcurrencyOutcome> = (0..=64)
        .map(|n| streams.concurrency_trial(n.max(1), &slo))
        .collect();
    let concurrency_bounds = plugin::concurrency_bounds(64);
    let mut round_trips = Vec::new();
    while round_trips.len() < 20_000 {
        let mut s = host
            .load_concurrency(&ladder, "{}", &hw, &model, &concurrency_bounds, &slo)
            .expect("load");
        loop {
            let start = Instant::now();
            let Some(n) = s.propose().expect("propose") else {
                break;
            };
            s.observe(&concurrency_outcomes[n as usize])
                .expect("observe");
            round_trips.push(start.elapsed());
        }
    }
    report("concurrency-ladder propose+observe round trip", round_trips);

    // Loads: cold (compile every time) versus from the compiled cache.
    let cold_host = PluginHost::new(SandboxLimits::default(), None).expect("engine");
    let mut worst_cold = Duration::ZERO;
    let mut worst_cached = Duration::ZERO;
    for plugin in [&binary, &scaler] {
        let load = |h: &PluginHost| {
            let start = Instant::now();
            if plugin == &binary {
                h.load_context(plugin, "{}", &hw, &model, &Default::default())
                    .map(drop)
                    .expect("load");
            } else {
                h.load_batch(plugin, "{}", &hw, &model, &batch_bounds)
                    .map(drop)
                    .expect("load");
            }
            start.elapsed()
        };
        let mut cold: Vec<Duration> = (0..10).map(|_| load(&cold_host)).collect();
        cold.sort_unstable();
        worst_cold = worst_cold.max(percentile(&cold, 0.99));
        report(&format!("{plugin} load, cold compile"), cold);
        let mut cached: Vec<Duration> = (0..200).map(|_| load(&host)).collect();
        cached.sort_unstable();
        worst_cached = worst_cached.max(percentile(&cached, 0.99));
        report(&format!("{plugin} load from compiled cache"), cached);
    }
    // The plugin share of a tune: 2 loads (context + batch plugin) and ~13 round trips
    // (9 context, 4 batch) at p99, against a minimal tune of 13 trials × 10 s (server
    // start + 5 samples); cold = first run ever (compile), cached = every later run.
    let tune_time = Duration::from_secs(13 * 10);
    for (what, load) in [("cold", worst_cold), ("cached", worst_cached)] {
        let plugin_time = 2 * load + 13 * round_trip_p99;
        println!(
            "plugin share of a minimal {tune_time:?} tune, {what} loads: {:.4} %",
            100.0 * plugin_time.as_secs_f64() / tune_time.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}
