//! What the report's charts show: which trials go on which chart, which memory the
//! context chart plots and the limit line it must stay under. `svg.rs` draws them.

use std::fmt::Write;

use crate::guard::memory_limit_bytes;
use crate::record::{Peaks, Phase, Stage, Stats, TrialRecord, Verdict};

use super::svg::{Chart, Mark, Point, Series};
use super::RunSummary;

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

/// The report's four charts: context vs peak memory, throughput vs batch, throughput
/// and TTFT vs concurrency.
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
        limit: axis.limit_mib.map(|v| (v, axis.limit_label.clone())),
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
        limit: None,
    };

    // Concurrency ladder: its trials plus the single-stream trial they started from.
    let ladder: Vec<&TrialRecord> = {
        let conc: Vec<&TrialRecord> = s
            .trials
            .iter()
            .filter(|t| t.phase == Phase::Concurrency)
            .collect();
        let base = conc.first().and_then(|c| {
            s.trials.iter().rev().find(|t| {
                t.config.concurrency == 1
                    && t.config.ctx == c.config.ctx
                    && t.config.batch == c.config.batch
                    && t.phase != Phase::Concurrency
                    && t.stage == Stage::Verify
            })
        });
        base.into_iter().chain(conc).collect()
    };
    let aggregate = |t: &TrialRecord| {
        t.decode_tps.as_ref().map(|d| Stats {
            mean: d.mean * f64::from(t.config.concurrency),
            stddev: d.stddev * f64::from(t.config.concurrency),
            ..d.clone()
        })
    };
    let throughput = Chart {
        title: "Throughput vs concurrency".into(),
        x_label: "concurrent streams (log scale)".into(),
        y_label: "decode tokens/s".into(),
        log2_x: true,
        series: vec![
            Series {
                name: "per stream".into(),
                color: "#1d6fa5",
                connect: true,
                points: ladder
                    .iter()
                    .map(|t| {
                        measure_point(t, f64::from(t.config.concurrency), t.decode_tps.as_ref())
                    })
                    .collect(),
            },
            Series {
                name: "all streams".into(),
                color: "#7b3fa0",
                connect: true,
                points: ladder
                    .iter()
                    .map(|t| {
                        measure_point(t, f64::from(t.config.concurrency), aggregate(t).as_ref())
                    })
                    .collect(),
            },
        ],
        limit: None,
    };
    let ttft = Chart {
        title: "TTFT vs concurrency".into(),
        x_label: "concurrent streams (log scale)".into(),
        y_label: "time to first token (ms)".into(),
        log2_x: true,
        series: vec![Series {
            name: "TTFT".into(),
            color: "#b5562b",
            connect: true,
            points: ladder
                .iter()
                .map(|t| measure_point(t, f64::from(t.config.concurrency), t.ttft_ms.as_ref()))
                .collect(),
        }],
        limit: None,
    };
    vec![memory, batch, throughput, ttft]
}

fn measure_point(t: &TrialRecord, x: f64, s: Option<&Stats>) -> Point {
    Point {
        x,
        y: s.map(|s| s.mean),
        err: s.map(|s| s.stddev),
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
