//! Test data, compiled for unit tests only: a realistic tuning run, a 0.5B model on a
//! 2-core CPU machine under a 1536 MiB process-memory budget. Context search (with a
//! breach and an out-of-memory failure), batch scaling at the found context, a
//! concurrency ladder that breaks at 4. The run's log start line is
//! `report::tests::run_started` (the log's types are the report's).

use chrono::{TimeZone, Utc};

use crate::backend::{ModelMetadata, SizeClass};
use crate::config::Config;
use crate::hardware::{CpuInfo, HardwareSnapshot, Measured, MemoryInfo, Source};
use crate::record::{
    Breach, FailureKind, Metric, Peaks, Phase, Reason, SamplePoint, SampleRecord, SampleSeries,
    Stats, TrialConfig, TrialFailure, TrialRecord, Verdict,
};
use crate::trial::verdict::{judge, Kind};
use crate::trial::TrialSettings;

const MIB: u64 = 1 << 20;

pub fn model() -> ModelMetadata {
    ModelMetadata {
        name: "qwen2.5-0.5b-instruct-q4_k_m".into(),
        architecture: Some("qwen2".into()),
        parameter_count: Some(494_032_768),
        size_class: SizeClass::Small,
        trained_context: Some(32768),
        block_count: Some(24),
        head_count: Some(14),
        head_count_kv: Some(2),
        embedding_length: Some(896),
        key_length: Some(64),
        value_length: Some(64),
        layers: Vec::new(),
        experts: None,
        weights_bytes: Some(397_807_936),
        digest: Some(
            "sha256:5ab1d2c3e4f5061728394a5b6c7d8e9f00112233445566778899aabbccddeeff".into(),
        ),
    }
}

pub fn hardware() -> HardwareSnapshot {
    HardwareSnapshot {
        taken_at: Utc.with_ymd_and_hms(2026, 11, 26, 13, 0, 0).unwrap(),
        hostname: Some("ci-runner".into()),
        os: Some("Linux 6.8 (Debian 12)".into()),
        cpu: CpuInfo {
            model: Some(Measured::new(
                "AMD EPYC 7763 64-Core Processor".into(),
                Source::Sysinfo,
            )),
            physical_cores: Some(Measured::new(1, Source::Sysinfo)),
            logical_cores: Some(Measured::new(2, Source::Sysinfo)),
        },
        memory: MemoryInfo {
            total_bytes: Some(Measured::new(8 * 1024 * MIB, Source::Sysinfo)),
            available_bytes: Some(Measured::new(6 * 1024 * MIB, Source::Sysinfo)),
        },
        gpus: Vec::new(),
        vulkan_drivers: Vec::new(),
    }
}

pub fn config() -> Config {
    let mut c = Config::default();
    c.ozone.process_memory_budget_mb = Some(1536);
    c
}

/// How a fixture trial ends.
enum Outcome {
    /// decode tok/s mean, TTFT ms mean, prefill tok/s mean, peak RSS MiB.
    Stable(f64, f64, f64, u64),
    /// Successful samples out of 5, then as `Stable`.
    Unstable(u32, f64, f64, f64, u64),
    Breach(u64),
    OutOfMemory,
}

fn cfg(ctx: u32, batch: u32, concurrency: u32) -> TrialConfig {
    TrialConfig {
        ctx,
        batch,
        ubatch: batch.min(512),
        concurrency,
        variant: Default::default(),
    }
}

/// Five samples spread ±2 % (decode) and ±4 % (TTFT) around the means.
fn samples(ok: u32, decode: f64, ttft: f64, prefill: f64, ctx: u32) -> Vec<SampleRecord> {
    let spread = [-0.02, 0.01, 0.0, 0.015, -0.005];
    (0..5u32)
        .map(|i| {
            let s = spread[i as usize];
            if i < ok {
                SampleRecord {
                    index: i,
                    ok: true,
                    ttft_ms: Some(ttft * (1.0 + 2.0 * s)),
                    prefill_tps: Some(prefill * (1.0 - s)),
                    decode_tps: Some(decode * (1.0 + s)),
                    prompt_tokens: Some((f64::from(ctx) * 0.9) as u32),
                    completion_tokens: Some(64),
                    total_ms: Some(ttft + 64_000.0 / decode),
                    error: None,
                    ..SampleRecord::default()
                }
            } else {
                SampleRecord {
                    index: i,
                    ok: false,
                    error: Some("request timed out after 71 s".into()),
                    ..SampleRecord::default()
                }
            }
        })
        .collect()
}

fn trial(id: u32, phase: Phase, config: TrialConfig, outcome: Outcome) -> TrialRecord {
    let started_at = Utc.with_ymd_and_hms(2026, 11, 26, 13, 0, 10).unwrap()
        + chrono::Duration::seconds(i64::from(id) * 40);
    let ctx = config.ctx;
    let mut record = TrialRecord {
        id,
        phase,
        stage: crate::record::Stage::Verify,
        config,
        started_at,
        duration_ms: 30_000 + u64::from(ctx) / 2,
        granted_ctx: Some(ctx),
        samples: Vec::new(),
        ttft_ms: None,
        prefill_tps: None,
        decode_tps: None,
        success_rate: 0.0,
        cv: None,
        peaks: Peaks::default(),
        breach: None,
        failure: None,
        verdict: Verdict::Failed,
        reason: Some(Reason::Failure),
        stopped_early: None,
        server_log_tail: Vec::new(),
        concurrency: None,
        memory_breakdown: None,
    };
    let measured = |r: &mut TrialRecord, ok: u32, d: f64, t: f64, p: f64, rss: u64| {
        r.samples = samples(ok, d, t, p, ctx);
        let pick = |f: fn(&SampleRecord) -> Option<f64>| -> Vec<f64> {
            r.samples.iter().filter_map(f).collect()
        };
        r.decode_tps = Stats::from_values(&pick(|s| s.decode_tps));
        r.ttft_ms = Stats::from_values(&pick(|s| s.ttft_ms));
        r.prefill_tps = Stats::from_values(&pick(|s| s.prefill_tps));
        r.cv = r.decode_tps.as_ref().and_then(Stats::cv);
        r.success_rate = f64::from(ok) / 5.0;
        r.peaks = Peaks {
            ram_used_bytes: Some(2600 * MIB + rss * MIB),
            process_rss_bytes: Some(rss * MIB),
            cpu_percent: Some(97.0),
            ..Peaks::default()
        };
    };
    match outcome {
        Outcome::Stable(d, t, p, rss) => {
            measured(&mut record, 5, d, t, p, rss);
            let reason = judge(
                Kind::of(phase, record.stage),
                &record.samples,
                None,
                &TrialSettings::default(),
            );
            record.verdict = reason.verdict();
            record.reason = Some(reason);
        }
        Outcome::Unstable(ok, d, t, p, rss) => {
            measured(&mut record, ok, d, t, p, rss);
            record.verdict = Verdict::Unstable;
            record.reason = Some(Reason::SuccessRate {
                success_rate: f64::from(ok) / 5.0,
                needed: 0.85,
                failed: 5 - ok,
                timed_out: 5 - ok,
            });
            record.failure = Some(TrialFailure {
                kind: FailureKind::Timeout,
                message: format!("{} of 5 requests timed out", 5 - ok),
                fault: None,
            });
        }
        Outcome::Breach(rss) => {
            record.peaks = Peaks {
                process_rss_bytes: Some(rss * MIB),
                ram_used_bytes: Some(2600 * MIB + rss * MIB),
                cpu_percent: Some(99.0),
                ..Peaks::default()
            };
            let breach = Breach {
                metric: Metric::ProcessMemory,
                value: (rss * MIB) as f64,
                limit: (1536 * MIB) as f64,
                at_ms: 8_300,
                device: None,
            };
            record.failure = Some(TrialFailure {
                kind: FailureKind::ThresholdBreach(Metric::ProcessMemory),
                message: breach.to_string(),
                fault: None,
            });
            record.breach = Some(breach);
            record.duration_ms = 8_400;
        }
        Outcome::OutOfMemory => {
            record.failure = Some(TrialFailure {
                kind: FailureKind::OutOfMemory,
                message: "llama-server could not allocate the KV cache".into(),
                fault: None,
            });
            record.server_log_tail = vec![
                "llama_kv_cache: failed to allocate buffer for kv cache".into(),
                "llama_init_from_model: failed to create context".into(),
                "main: exiting due to model loading error".into(),
            ];
            record.duration_ms = 2_100;
            record.granted_ctx = None;
        }
    }
    record
}

/// What the driver found on the run of [`trials`]: context 20480 (24576 could not
/// allocate), batch 256 (the largest, every batch passing), 2 streams (4 timed out).
pub fn limits() -> crate::record::Limits {
    crate::record::Limits {
        max_context: Some(20480),
        best_batch: Some(256),
        max_concurrency: Some(2),
        bounds: Default::default(),
    }
}

/// The run's trials, in order.
pub fn trials() -> Vec<TrialRecord> {
    use Outcome::*;
    use Phase::*;
    vec![
        trial(1, Context, cfg(32768, 64, 1), Breach(1702)),
        trial(
            2,
            Context,
            cfg(4096, 64, 1),
            Stable(41.8, 4200.0, 880.0, 610),
        ),
        trial(
            3,
            Context,
            cfg(8192, 64, 1),
            Stable(39.0, 9100.0, 810.0, 790),
        ),
        trial(
            4,
            Context,
            cfg(16384, 64, 1),
            Stable(33.2, 19500.0, 756.0, 1150),
        ),
        trial(5, Context, cfg(24576, 64, 1), OutOfMemory),
        trial(
            6,
            Context,
            cfg(20480, 64, 1),
            Stable(30.2, 26000.0, 709.0, 1330),
        ),
        trial(
            7,
            Batch,
            cfg(20480, 128, 1),
            Stable(31.0, 23500.0, 784.0, 1390),
        ),
        trial(
            8,
            Batch,
            cfg(20480, 256, 1),
            Stable(31.5, 22800.0, 808.0, 1460),
        ),
        trial(
            9,
            Concurrency,
            cfg(20480, 256, 2),
            Stable(17.1, 41000.0, 450.0, 1495),
        ),
        trial(
            10,
            Concurrency,
            cfg(20480, 256, 4),
            Unstable(3, 8.9, 70000.0, 260.0, 1520),
        ),
    ]
}

/// A short sampler series for trial `id`.
pub fn series() -> SampleSeries {
    let mut series = SampleSeries {
        interval_ms: 100,
        ..SampleSeries::default()
    };
    for i in 0..20u64 {
        let point = SamplePoint {
            t_ms: i * 100,
            gpu_mem_used_bytes: None,
            ram_used_bytes: Some((3000 + i * 10) * MIB),
            ram_available_bytes: Some((5000 - i * 10) * MIB),
            process_rss_bytes: Some((600 + i * 5) * MIB),
            server_gpu_mem_bytes: None,
            gpu_temp_c: None,
            cpu_percent: Some(50.0 + i as f64 * 2.0),
        };
        series.peaks.observe(&point);
        series.points.push(point);
    }
    series
}
