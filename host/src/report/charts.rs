//! What the report's charts show: which trials go on which chart, which memory the
//! context chart plots and the limit line it must stay under. `svg.rs` draws them.

use std::fmt::Write;

use crate::guard::memory_limit_bytes;
use crate::plugin::SloMetric;
use crate::record::{Peaks, Phase, Stage, Stats, TrialRecord, Verdict};

use super::svg::{Chart, Mark, Point, Series};
use super::{Level, RunSummary};

const MIB: f64 = 1048576.0;

fn trial_label(t: &TrialRecord) -> String {
    let mut label = format!(
        "trial {} ({}): {} — {:?}",
        t.id, t.stage, t.config, t.verdict
    );
    if let Some(f) = &t.failure {
        let _ = write!(label, " ({})", f.message);
    }
    label
}

/// Which memory the context chart shows and the line it must stay under.
struct MemoryAxis {
    name: &'static str,
    read: fn(&Peaks) -> Option<u64>,
    limit_mib: Option<f64>,
    limit_label: String,
}

fn memory_axis(s: &RunSummary) -> MemoryAxis {
    let t = s.config.thresholds();
    let server_gpu_seen = s
        .trials
        .iter()
        .any(|t| t.peaks.server_gpu_mem_bytes.is_some());
    if let (Some(budget), true) = (t.gpu_memory_budget_mb, server_gpu_seen) {
        return MemoryAxis {
            name: "server GPU memory",
            read: |p| p.server_gpu_mem_bytes,
            limit_mib: Some(budget as f64),
            limit_label: format!("GPU budget {budget} MiB"),
        };
    }
    if let Some(budget) = t.process_memory_budget_mb {
        return MemoryAxis {
            name: "server process memory",
            read: |p| p.process_rss_bytes,
            limit_mib: Some(budget as f64),
            limit_label: format!("budget {budget} MiB"),
        };
    }
    let has_gpu = s
        .trials
        .iter()
        .any(|t| t.peaks.gpu_mem_used_bytes.is_some());
    if has_gpu {
        let total = s.hardware.gpu_memory_total_bytes();
        let (limit, label) =
            memory_limit(total, t.max_vram_percent, t.vram_reserve_mb, "GPU memory");
        return MemoryAxis {
            name: "GPU memory",
            read: |p| p.gpu_mem_used_bytes,
            limit_mib: limit,
            limit_label: label,
        };
    }
    let total = s.hardware.memory.total_bytes.map(|m| m.value);
    let (limit, label) = memory_limit(total, t.max_ram_percent, t.ram_reserve_mb, "RAM");
    MemoryAxis {
        name: "RAM in use",
        read: |p| p.ram_used_bytes,
        limit_mib: limit,
        limit_label: label,
    }
}

/// The guard's memory limit ([`memory_limit_bytes`]) in MiB, labelled with whichever of
/// the percentage and the reserve set it.
fn memory_limit(
    total_bytes: Option<u64>,
    percent: f64,
    reserve_mb: u64,
    what: &str,
) -> (Option<f64>, String) {
    let Some(total) = total_bytes else {
        return (None, String::new());
    };
    let limit = memory_limit_bytes(total, percent, reserve_mb);
    let label = if limit < memory_limit_bytes(total, percent, 0) {
        format!("{what} minus {reserve_mb} MiB reserve")
    } else {
        format!("{percent} % of {what}")
    };
    (Some(limit as f64 / MIB), label)
}

/// The report's charts: context vs peak memory, throughput vs batch, and for the
/// concurrency levels goodput, TTFT, time per output token and request latency.
pub(super) fn charts(s: &RunSummary) -> Vec<Chart> {
    let axis = memory_axis(s);
    let memory = Chart {
        title: format!("Context vs peak {}", axis.name),
        x_label: "context (tokens, log scale)".into(),
        y_label: format!("peak {} (MiB)", axis.name),
        log2_x: true,
        series: vec![Series {
            name: "trials".into(),
            color: "#444",
            connect: false,
            points: s
                .trials
                .iter()
                .map(|t| {
                    let y = (axis.read)(&t.peaks).map(|b| b as f64 / MIB);
                    let mut label = trial_label(t);
                    match y {
                        Some(mib) => label.push_str(&format!(", peak {mib:.0} MiB")),
                        None => label.push_str(", no memory reading (drawn on the axis)"),
                    }
                    Point {
                        x: f64::from(t.config.ctx),
                        y,
                        err: None,
                        mark: mark(t.verdict),
                        label,
                    }
                })
                .collect(),
        }],
        limits: axis
            .limit_mib
            .map(|v| (v, axis.limit_label.clone()))
            .into_iter()
            .collect(),
        stable_means: "stable",
    };

    // Throughput vs batch at the context the batch phase ran at.
    let batch_ctx = s
        .trials
        .iter()
        .find(|t| t.phase == Phase::Batch)
        .map(|t| t.config.ctx)
        .or(s.limits.max_context);
    let batch_trials: Vec<&TrialRecord> = s
        .trials
        .iter()
        .filter(|t| {
            t.config.concurrency == 1
                && Some(t.config.ctx) == batch_ctx
                && t.phase != Phase::Concurrency
                && t.stage == Stage::Verify
        })
        .collect();
    let batch = Chart {
        title: format!(
            "Throughput vs batch{}",
            batch_ctx.map(|c| format!(" (ctx {c})")).unwrap_or_default()
        ),
        x_label: "batch (log scale)".into(),
        y_label: "decode tokens/s".into(),
        log2_x: true,
        series: vec![Series {
            name: "decode tok/s".into(),
            color: "#1d6fa5",
            connect: true,
            points: batch_trials
                .iter()
                .map(|t| measure_point(t, f64::from(t.config.batch), t.decode_tps.as_ref()))
                .collect(),
        }],
        limits: Vec::new(),
        stable_means: "stable",
    };

    let mut all = vec![memory, batch];
    all.extend(concurrency_charts(s));
    all
}

/// Goodput and latency percentiles against the streams of each concurrency level, with
/// the objective's bounds as lines and each level marked passed, missed, unstable or
/// failed.
fn concurrency_charts(s: &RunSummary) -> Vec<Chart> {
    let levels = &s.concurrency.levels;
    if levels.is_empty() {
        return Vec::new();
    }
    let slo = &s.config.ozone.slo;
    let lines = |metrics: &[SloMetric]| -> Vec<(f64, String)> {
        slo.bounds
            .iter()
            .filter(|b| metrics.contains(&b.metric))
            .map(|b| {
                let unit = if b.metric.is_floor() { "tok/s" } else { "ms" };
                (b.value, format!("SLO {} {}{unit}", b.metric, b.value))
            })
            .collect()
    };
    let stable_means = if slo.is_empty() { "stable" } else { "passed" };
    let series = |name: &str, color: &'static str, y: fn(&Level) -> Option<f64>| Series {
        name: name.into(),
        color,
        connect: true,
        points: levels
            .iter()
            .map(|l| Point {
                x: f64::from(l.streams),
                y: y(l),
                err: None,
                mark: level_mark(l),
                label: level_label(l),
            })
            .collect(),
    };
    let chart = |title: &str, y_label: &str, series: Vec<Series>, limits| Chart {
        title: title.into(),
        x_label: "concurrent streams (log scale)".into(),
        y_label: y_label.into(),
        log2_x: true,
        series,
        limits,
        stable_means,
    };
    vec![
        chart(
            "Goodput vs concurrency (tokens/s of the levels that passed)",
            "decode tokens/s",
            vec![
                series("all streams", "#7b3fa0", |l| l.figures.aggregate_decode_tps),
                series("slowest stream", "#1d6fa5", |l| {
                    l.figures.stream_decode_tps.as_ref().map(|t| t.min)
                }),
            ],
            lines(&[SloMetric::DecodeMin]),
        ),
        chart(
            "Time to first token vs concurrency",
            "TTFT (ms)",
            vec![
                series("p50", "#e4a36f", |l| l.figures.latency.ttft_p50_ms),
                series("p95", "#b5562b", |l| l.figures.latency.ttft_p95_ms),
                series("p99", "#6e2a10", |l| l.figures.latency.ttft_p99_ms),
            ],
            lines(&[SloMetric::TtftP50, SloMetric::TtftP95, SloMetric::TtftP99]),
        ),
        chart(
            "Time per output token vs concurrency",
            "TPOT (ms)",
            vec![
                series("p50", "#7fb8dc", |l| l.figures.latency.tpot_p50_ms),
                series("p95", "#1d6fa5", |l| l.figures.latency.tpot_p95_ms),
            ],
            lines(&[SloMetric::TpotP50, SloMetric::TpotP95]),
        ),
        chart(
            "Request latency vs concurrency",
            "end-to-end latency (ms)",
            vec![series("p95", "#444", |l| l.figures.latency.e2e_p95_ms)],
            lines(&[SloMetric::E2eP95]),
        ),
    ]
}

/// Passed: stable and the objective held; missed: stable, the objective did not hold.
fn level_mark(l: &Level) -> Mark {
    match (l.passed, l.verdict) {
        (true, _) => Mark::Stable,
        (false, Verdict::Stable) => Mark::Missed,
        (false, v) => mark(v),
    }
}

fn level_label(l: &Level) -> String {
    let mut label = format!(
        "trial {}: {} streams — {:?}",
        l.trial_id, l.streams, l.verdict
    );
    if let Some(v) = &l.figures.slo {
        if v.met {
            label.push_str(", objective met");
        }
        for m in &v.missed {
            let measured = m
                .measured
                .map_or("not measured".to_string(), |x| format!("{x:.1}"));
            let _ = write!(label, ", {} {measured} missed {}", m.metric, m.bound);
        }
    }
    label
}

fn measure_point(t: &TrialRecord, x: f64, s: Option<&Stats>) -> Point {
    Point {
        x,
        y: s.map(|s| s.mean),
        err: s.and_then(|s| s.stddev),
        mark: mark(t.verdict),
        label: trial_label(t),
    }
}

fn mark(v: Verdict) -> Mark {
    match v {
        Verdict::Stable => Mark::Stable,
        Verdict::Unstable => Mark::Unstable,
        Verdict::Failed => Mark::Failed,
    }
}
