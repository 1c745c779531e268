//! From samples to a trial's statistics, and a concurrency level's figures. (The
//! verdict is `verdict.rs`'s.)

use std::collections::BTreeMap;

use crate::record::{latency_of, ConcurrencyFigures, SampleRecord, Stats, TrialRecord};

/// The statistics of a trial's samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub ttft_ms: Option<Stats>,
    pub prefill_tps: Option<Stats>,
    pub decode_tps: Option<Stats>,
    pub success_rate: f64,
    pub cv: Option<f64>,
}

pub fn summarize(samples: &[SampleRecord]) -> Summary {
    let ok: Vec<&SampleRecord> = samples.iter().filter(|s| s.ok).collect();
    let stats = |f: fn(&SampleRecord) -> Option<f64>| {
        Stats::from_values(&ok.iter().filter_map(|s| f(s)).collect::<Vec<_>>())
    };
    let decode_tps = stats(|s| s.decode_tps);
    Summary {
        ttft_ms: stats(|s| s.ttft_ms),
        prefill_tps: stats(|s| s.prefill_tps),
        cv: decode_tps.as_ref().and_then(Stats::cv),
        decode_tps,
        success_rate: if samples.is_empty() {
            0.0
        } else {
            ok.len() as f64 / samples.len() as f64
        },
    }
}

/// How a concurrency level's requests were sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopShape {
    pub streams: u32,
    pub requests_per_stream: u32,
    pub warmup_per_stream: u32,
    /// First measured request sent → last one finished, ms.
    pub window_ms: Option<f64>,
}

/// A concurrency level's figures from its samples: nearest-rank latency percentiles
/// over the successful requests, each stream's decode throughput (Σ (generated − 1)
/// over Σ decode time of its requests) and the aggregate (every generated token over
/// the window). The objective is not judged here (see the driver).
pub fn concurrency_figures(samples: &[SampleRecord], shape: LoopShape) -> ConcurrencyFigures {
    let ok: Vec<&SampleRecord> = samples.iter().filter(|s| s.ok).collect();
    let streams = shape.streams.max(1);
    // (generated − 1, decode seconds) per stream.
    let mut per_stream: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    for s in &ok {
        let (Some(n), Some(tps)) = (s.completion_tokens, s.decode_tps) else {
            continue;
        };
        if n < 2 || tps <= 0.0 {
            continue;
        }
        let decoded = f64::from(n - 1);
        let entry = per_stream
            .entry(s.stream.unwrap_or(s.index % streams))
            .or_default();
        entry.0 += decoded;
        entry.1 += decoded / tps;
    }
    let stream_tps: Vec<f64> = per_stream
        .values()
        .filter(|(_, secs)| *secs > 0.0)
        .map(|(tokens, secs)| tokens / secs)
        .collect();
    let generated: u32 = ok.iter().filter_map(|s| s.completion_tokens).sum();
    let window_ms = shape.window_ms.unwrap_or(0.0);
    ConcurrencyFigures {
        streams,
        requests_per_stream: shape.requests_per_stream,
        warmup_per_stream: shape.warmup_per_stream,
        window_ms,
        latency: latency_of(samples),
        stream_decode_tps: Stats::from_values(&stream_tps),
        aggregate_decode_tps: (window_ms > 0.0 && generated > 0)
            .then(|| f64::from(generated) / (window_ms / 1000.0)),
        slo: None,
    }
}

/// A trial's concurrency figures: those it was logged with, or (a single-stream trial
/// of the context or batch phase, reused as level 1; an old log's waves) worked out
/// from its samples, sample `i` being stream `i mod c` of wave `i / c`, and the window
/// the sum over waves of the slowest request.
pub fn figures_of(record: &TrialRecord) -> ConcurrencyFigures {
    if let Some(figures) = &record.concurrency {
        return figures.clone();
    }
    let streams = record.config.concurrency.max(1);
    let mut waves: BTreeMap<u32, f64> = BTreeMap::new();
    for s in &record.samples {
        let slowest = waves.entry(s.index / streams).or_default();
        *slowest = slowest.max(s.total_ms.unwrap_or(0.0));
    }
    let shape = LoopShape {
        streams,
        requests_per_stream: (record.samples.len() as u32).div_ceil(streams),
        warmup_per_stream: 0,
        window_ms: Some(waves.values().sum()),
    };
    concurrency_figures(&record.samples, shape)
}
