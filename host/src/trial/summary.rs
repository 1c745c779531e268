//! From samples to a trial's statistics and verdict, and a concurrency level's figures.

use std::collections::BTreeMap;

use super::TrialSettings;
use crate::record::{
    latency_of, ConcurrencyFigures, SampleRecord, Stats, TrialFailure, TrialRecord, Verdict,
};

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

/// Stable iff nothing failed the trial as a whole, the success rate reaches the
/// confidence threshold and the decode CV stays within the variance tolerance.
/// A trial where no sample succeeded failed, with the first sample's failure.
pub fn verdict(
    summary: &Summary,
    trial_failure: Option<&TrialFailure>,
    settings: &TrialSettings,
) -> Verdict {
    if trial_failure.is_some() || summary.success_rate == 0.0 {
        return Verdict::Failed;
    }
    let steady = summary
        .cv
        .is_some_and(|cv| cv <= settings.variance_tolerance);
    if summary.success_rate >= settings.confidence_threshold && steady {
        Verdict::Stable
    } else {
        Verdict::Unstable
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ok: bool, decode: f64) -> SampleRecord {
        SampleRecord {
            ok,
            decode_tps: ok.then_some(decode),
            ttft_ms: ok.then_some(100.0),
            ..SampleRecord::default()
        }
    }

    #[test]
    fn steady_samples_are_stable() {
        let s = summarize(&[sample(true, 100.0), sample(true, 104.0), sample(true, 98.0)]);
        assert_eq!(s.success_rate, 1.0);
        assert!(s.cv.is_some_and(|cv| cv < 0.05));
        assert_eq!(
            verdict(&s, None, &TrialSettings::default()),
            Verdict::Stable
        );
    }

    #[test]
    fn noisy_or_failing_samples_are_unstable() {
        let settings = TrialSettings::default();
        let noisy = summarize(&[sample(true, 50.0), sample(true, 150.0), sample(true, 100.0)]);
        assert_eq!(verdict(&noisy, None, &settings), Verdict::Unstable);
        // 4 of 5 = 0.8 < 0.85.
        let mut five: Vec<_> = (0..4).map(|_| sample(true, 100.0)).collect();
        five.push(sample(false, 0.0));
        assert_eq!(
            verdict(&summarize(&five), None, &settings),
            Verdict::Unstable
        );
    }

    #[test]
    fn no_success_or_trial_failure_is_failed() {
        let settings = TrialSettings::default();
        assert_eq!(
            verdict(&summarize(&[sample(false, 0.0)]), None, &settings),
            Verdict::Failed
        );
        let f = TrialFailure {
            kind: crate::record::FailureKind::Timeout,
            message: "x".into(),
            fault: None,
        };
        let s = summarize(&[sample(true, 100.0)]);
        assert_eq!(verdict(&s, Some(&f), &settings), Verdict::Failed);
    }
}
