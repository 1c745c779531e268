//! The figures of one concurrency level, as logged: N streams in a closed loop, each
//! sending its next request when the previous one finished. The latency and objective
//! vocabulary is the plugin contract's (`ozone_sdk`), so the log, the summary and the
//! plugins speak of the same `ttft-p95`.

use serde::{Deserialize, Serialize};

pub use ozone_sdk::{Latency, SloMiss};

use super::{nearest_rank, SampleRecord, Stats};

/// Nearest-rank latency percentiles over the successful samples: time to first token,
/// time per output token and end-to-end, ms.
pub fn latency_of(samples: &[SampleRecord]) -> Latency {
    let sorted = |f: fn(&SampleRecord) -> Option<f64>| {
        let mut v: Vec<f64> = samples.iter().filter(|s| s.ok).filter_map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (ttft, tpot, e2e) = (
        sorted(|s| s.ttft_ms),
        sorted(SampleRecord::tpot_ms),
        sorted(|s| s.total_ms),
    );
    Latency {
        ttft_p50_ms: nearest_rank(&ttft, 0.50),
        ttft_p95_ms: nearest_rank(&ttft, 0.95),
        ttft_p99_ms: nearest_rank(&ttft, 0.99),
        tpot_p50_ms: nearest_rank(&tpot, 0.50),
        tpot_p95_ms: nearest_rank(&tpot, 0.95),
        e2e_p95_ms: nearest_rank(&e2e, 0.95),
    }
}

/// What one concurrency level measured. Percentiles are nearest-rank over the successful
/// measured requests of every stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencyFigures {
    /// Streams sending at once.
    pub streams: u32,
    /// Measured requests each stream was to send (after its warm-up).
    pub requests_per_stream: u32,
    /// Unmeasured requests each stream sent first.
    pub warmup_per_stream: u32,
    /// From the first measured request sent to the last one finished, ms.
    pub window_ms: f64,
    /// TTFT, time per output token and end-to-end percentiles, ms.
    pub latency: Latency,
    /// Decode throughput of each stream (Σ (generated − 1) over Σ decode time of its
    /// requests), tokens/s: the mean is what one user gets, the min the slowest stream.
    pub stream_decode_tps: Option<Stats>,
    /// Tokens generated per second by all streams together over the window.
    pub aggregate_decode_tps: Option<f64>,
    /// The service-level objective's judgement; absent without an objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloVerdict>,
}

/// Whether a level met the objective, and the bounds it missed with what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloVerdict {
    pub met: bool,
    pub missed: Vec<SloMiss>,
}
