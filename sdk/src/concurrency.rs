//! The concurrency records: service-level objectives, latency percentiles and the
//! outcome of one concurrency level — and the one rule that says whether an objective
//! held ([`ConcurrencyOutcome::judge`]), used by the host and by the test machines alike.

#[cfg(not(target_arch = "wasm32"))]
use serde::{Deserialize, Serialize};

use crate::types::TrialOutcome;

/// A figure a service-level objective can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "kebab-case"))]
pub enum SloMetric {
    TtftP50,
    TtftP95,
    TtftP99,
    TpotP50,
    TpotP95,
    E2eP95,
    /// Decode throughput of the slowest stream: a floor, not a ceiling.
    DecodeMin,
}

impl SloMetric {
    pub const ALL: [SloMetric; 7] = [
        SloMetric::TtftP50,
        SloMetric::TtftP95,
        SloMetric::TtftP99,
        SloMetric::TpotP50,
        SloMetric::TpotP95,
        SloMetric::E2eP95,
        SloMetric::DecodeMin,
    ];

    /// The WIT name (`ttft-p95`), also the name users write in `--slo`.
    pub fn name(self) -> &'static str {
        match self {
            SloMetric::TtftP50 => "ttft-p50",
            SloMetric::TtftP95 => "ttft-p95",
            SloMetric::TtftP99 => "ttft-p99",
            SloMetric::TpotP50 => "tpot-p50",
            SloMetric::TpotP95 => "tpot-p95",
            SloMetric::E2eP95 => "e2e-p95",
            SloMetric::DecodeMin => "decode-min",
        }
    }

    /// Whether the bound is a floor (the figure must be at least the bound) rather than
    /// a ceiling (at most).
    pub fn is_floor(self) -> bool {
        self == SloMetric::DecodeMin
    }

    /// Whether `measured` satisfies a bound of `bound` on this metric.
    pub fn holds(self, measured: f64, bound: f64) -> bool {
        if self.is_floor() {
            measured >= bound
        } else {
            measured <= bound
        }
    }
}

impl std::fmt::Display for SloMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// One bound of an objective: milliseconds for latencies, tokens/s for `DecodeMin`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct SloBound {
    pub metric: SloMetric,
    pub value: f64,
}

/// A service-level objective: every bound must hold for a level to pass. Empty: no
/// objective (the stability rule decides).
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct Slo {
    pub bounds: Vec<SloBound>,
}

impl Slo {
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }
}

/// A bound that missed, with the figure measured (`None`: it could not be measured,
/// which misses too).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct SloMiss {
    pub metric: SloMetric,
    pub bound: f64,
    pub measured: Option<f64>,
}

/// Per-request latency percentiles over the successful requests, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct Latency {
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p95_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    /// Time per output token after the first.
    pub tpot_p50_ms: Option<f64>,
    pub tpot_p95_ms: Option<f64>,
    /// Whole-request latency.
    pub e2e_p95_ms: Option<f64>,
}

/// What happened at one concurrency level: N streams in a closed loop.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct ConcurrencyOutcome {
    /// The trial as a whole (`config.concurrency` = N).
    pub trial: TrialOutcome,
    pub latency: Latency,
    /// Mean decode throughput one stream got, tokens/s.
    pub stream_decode_tps: Option<f64>,
    /// Decode throughput of the slowest stream, tokens/s.
    pub min_stream_decode_tps: Option<f64>,
    /// Tokens per second of all streams together.
    pub aggregate_decode_tps: Option<f64>,
    /// Whether every bound held; `None` without an objective.
    pub slo_met: Option<bool>,
    /// The bounds that missed.
    pub slo_missed: Vec<SloMiss>,
}

impl ConcurrencyOutcome {
    /// The figure `metric` bounds, as measured at this level.
    pub fn figure(&self, metric: SloMetric) -> Option<f64> {
        let l = &self.latency;
        match metric {
            SloMetric::TtftP50 => l.ttft_p50_ms,
            SloMetric::TtftP95 => l.ttft_p95_ms,
            SloMetric::TtftP99 => l.ttft_p99_ms,
            SloMetric::TpotP50 => l.tpot_p50_ms,
            SloMetric::TpotP95 => l.tpot_p95_ms,
            SloMetric::E2eP95 => l.e2e_p95_ms,
            SloMetric::DecodeMin => self.min_stream_decode_tps,
        }
    }

    /// Sets `slo_met` and `slo_missed` from the figures measured: every bound must hold,
    /// and a figure that was not measured misses. An empty objective leaves `slo_met`
    /// absent.
    pub fn judge(&mut self, slo: &Slo) {
        self.slo_missed = slo
            .bounds
            .iter()
            .filter_map(|b| {
                let measured = self.figure(b.metric);
                let held = measured.is_some_and(|m| b.metric.holds(m, b.value));
                (!held).then_some(SloMiss {
                    metric: b.metric,
                    bound: b.value,
                    measured,
                })
            })
            .collect();
        self.slo_met = (!slo.is_empty()).then_some(self.slo_missed.is_empty());
    }

    /// Whether the level passed: a stable trial whose objective (if any) held.
    pub fn passed(&self) -> bool {
        self.trial.is_stable() && self.slo_met != Some(false)
    }
}
