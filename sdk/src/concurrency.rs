//! Service-level objectives, latency percentiles and the outcome of one concurrency
//! level — and the one rule that says whether an objective held ([`judge`], applied
//! through [`TrialOutcome::judge`] to a context trial and [`ConcurrencyOutcome::judge`]
//! to a level), used by the host and by the test machines alike.

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

impl Latency {
    /// The latency `metric` bounds; `None` for `DecodeMin` (a throughput floor).
    pub fn figure(&self, metric: SloMetric) -> Option<f64> {
        match metric {
            SloMetric::TtftP50 => self.ttft_p50_ms,
            SloMetric::TtftP95 => self.ttft_p95_ms,
            SloMetric::TtftP99 => self.ttft_p99_ms,
            SloMetric::TpotP50 => self.tpot_p50_ms,
            SloMetric::TpotP95 => self.tpot_p95_ms,
            SloMetric::E2eP95 => self.e2e_p95_ms,
            SloMetric::DecodeMin => None,
        }
    }
}

/// The one rule: every bound must hold, and a figure that was not measured misses.
/// Returns whether the objective held (`None` for an empty objective) and the misses.
pub fn judge(slo: &Slo, figure: impl Fn(SloMetric) -> Option<f64>) -> (Option<bool>, Vec<SloMiss>) {
    let missed: Vec<SloMiss> = slo
        .bounds
        .iter()
        .filter_map(|b| {
            let measured = figure(b.metric);
            let held = measured.is_some_and(|m| b.metric.holds(m, b.value));
            (!held).then_some(SloMiss {
                metric: b.metric,
                bound: b.value,
                measured,
            })
        })
        .collect();
    ((!slo.is_empty()).then_some(missed.is_empty()), missed)
}

impl TrialOutcome {
    /// Sets `slo_met` and `slo_missed` from the latency measured ([`judge`]); `DecodeMin`
    /// does not apply to a single trial's requests and always misses, so the host never
    /// hands it to a context search.
    pub fn judge(&mut self, slo: &Slo) {
        let latency = self.latency;
        (self.slo_met, self.slo_missed) = judge(slo, |m| latency.figure(m));
    }

    /// A trial that was stable and whose objective (if any) held.
    pub fn passed(&self) -> bool {
        self.is_stable() && self.slo_met != Some(false)
    }
}

/// What happened at one concurrency level: N streams in a closed loop.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct ConcurrencyOutcome {
    /// The trial as a whole (`config.concurrency` = N), with the latency of every
    /// request and the objective's judgement.
    pub trial: TrialOutcome,
    /// Mean decode throughput one stream got, tokens/s.
    pub stream_decode_tps: Option<f64>,
    /// Decode throughput of the slowest stream, tokens/s.
    pub min_stream_decode_tps: Option<f64>,
    /// Tokens per second of all streams together.
    pub aggregate_decode_tps: Option<f64>,
}

impl ConcurrencyOutcome {
    /// The figure `metric` bounds, as measured at this level.
    pub fn figure(&self, metric: SloMetric) -> Option<f64> {
        match metric {
            SloMetric::DecodeMin => self.min_stream_decode_tps,
            latency => self.trial.latency.figure(latency),
        }
    }

    /// Sets the trial's `slo_met` and `slo_missed` from the figures measured ([`judge`]).
    pub fn judge(&mut self, slo: &Slo) {
        let (met, missed) = judge(slo, |m| self.figure(m));
        self.trial.slo_met = met;
        self.trial.slo_missed = missed;
    }

    /// Whether the level passed: a stable trial whose objective (if any) held.
    pub fn passed(&self) -> bool {
        self.trial.passed()
    }
}
