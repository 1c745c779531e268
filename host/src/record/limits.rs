//! What a run found, as the log writes it: the largest stable context, the best batch,
//! the highest stable concurrency, and for each what stopped it (`bound_by`, with its
//! evidence). The driver decides them (`tune::driver`), `tune::bounds` says what bound
//! each, `report` puts them into words.
//!
//! In JSON each limit is an object — `{"value": 9728, "bound_by": "memory", "evidence":
//! {…}}` — so `limits.max_context.bound_by` answers "why not more?". Logs written before
//! bounds existed hold plain numbers; they still read.

use ozone_sdk::SloMetric;
use serde::{Deserialize, Serialize};

use super::{Metric, Reason};

/// The limits a run found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(into = "LimitsWire", from = "LimitsWire")]
pub struct Limits {
    /// Largest stable context (granted), tokens.
    pub max_context: Option<u32>,
    /// Batch with the best decode throughput among stable batch-phase trials.
    pub best_batch: Option<u32>,
    /// Highest stable concurrency level.
    pub max_concurrency: Option<u32>,
    /// What stopped each search; `None` where it was not worked out (an old log, a phase
    /// cut short).
    pub bounds: LimitBounds,
}

/// What stopped each search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LimitBounds {
    pub max_context: Option<Bound>,
    pub best_batch: Option<Bound>,
    pub max_concurrency: Option<Bound>,
}

/// Why a limit is where it is, with the evidence: usually the first value above the
/// answer that was tried (`at`, its trial `trial_id`) and what went wrong there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "bound_by", content = "evidence", rename_all = "snake_case")]
pub enum Bound {
    /// A memory threshold or budget: the peak against the limit at the first value above.
    /// `peak_bytes`/`limit_bytes` are absent for an out-of-memory load failure.
    Memory {
        at: u32,
        trial_id: u32,
        /// The threshold crossed; absent when the server itself ran out of memory.
        threshold: Option<Metric>,
        peak_bytes: Option<u64>,
        limit_bytes: Option<u64>,
        /// The GPU's memory as the server saw it at load, for a GPU-memory bound.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<super::DeviceFree>,
    },
    /// Requests at the next value ran past their timeout: the machine is too slow to fill
    /// it, not out of memory.
    Time {
        at: u32,
        trial_id: u32,
        timeout_s: Option<f64>,
        message: String,
    },
    /// A temperature or CPU threshold was crossed at the next value: the peak against
    /// the limit (°C or percent). (Memory thresholds are `memory`.)
    Threshold {
        at: u32,
        trial_id: u32,
        threshold: Metric,
        peak: Option<f64>,
        limit: Option<f64>,
    },
    /// The next value ran but was not stable: too few requests succeeded, or its decode
    /// throughput varied more than the tolerance (and the machine's own noise floor).
    Instability {
        at: u32,
        trial_id: u32,
        success_rate: f64,
        cv: Option<f64>,
        /// The rule that found it unstable, with its figures (absent in older logs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Reason>,
    },
    /// The model's own maximum context was reached; nothing failed.
    TrainedContext { trained_context: u32 },
    /// The next value failed for another reason: the server's error and its log tail.
    ServerError {
        at: u32,
        trial_id: u32,
        message: String,
        log_tail: Vec<String>,
    },
    /// Throughput stopped improving above the answer (batch): the best and the next.
    Throughput {
        at: u32,
        trial_id: u32,
        best_tps: f64,
        next_tps: f64,
    },
    /// The search's upper bound (`max_batch`, `max_concurrency`) was reached, everything
    /// passing.
    Cap { cap: u32 },
    /// The service-level objective missed at the next level: the first bound that missed
    /// and what was measured (absent: it could not be measured, which misses too).
    Slo {
        at: u32,
        trial_id: u32,
        metric: SloMetric,
        measured: Option<f64>,
        bound: f64,
    },
    /// The phase did not run, and why (no stable context, `--skip-concurrency`, …).
    NotRun { reason: String },
}

impl Bound {
    /// The `bound_by` word as written in JSON and tables.
    pub fn kind(&self) -> &'static str {
        match self {
            Bound::Memory { .. } => "memory",
            Bound::Time { .. } => "time",
            Bound::Threshold { .. } => "threshold",
            Bound::Instability { .. } => "instability",
            Bound::TrainedContext { .. } => "trained context",
            Bound::ServerError { .. } => "server error",
            Bound::Throughput { .. } => "throughput",
            Bound::Cap { .. } => "cap",
            Bound::Slo { .. } => "slo",
            Bound::NotRun { .. } => "not run",
        }
    }
}

/// One limit as written: an object with its bound, or (old logs) a bare number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum LimitWire {
    Explained {
        value: Option<u32>,
        #[serde(flatten)]
        bound: Option<Bound>,
    },
    Bare(Option<u32>),
}

impl LimitWire {
    fn split(self) -> (Option<u32>, Option<Bound>) {
        match self {
            LimitWire::Explained { value, bound } => (value, bound),
            LimitWire::Bare(value) => (value, None),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LimitsWire {
    #[serde(default = "bare_none")]
    max_context: LimitWire,
    #[serde(default = "bare_none")]
    best_batch: LimitWire,
    #[serde(default = "bare_none")]
    max_concurrency: LimitWire,
}

fn bare_none() -> LimitWire {
    LimitWire::Bare(None)
}

impl From<Limits> for LimitsWire {
    fn from(l: Limits) -> Self {
        let explained = |value, bound| LimitWire::Explained { value, bound };
        Self {
            max_context: explained(l.max_context, l.bounds.max_context),
            best_batch: explained(l.best_batch, l.bounds.best_batch),
            max_concurrency: explained(l.max_concurrency, l.bounds.max_concurrency),
        }
    }
}

impl From<LimitsWire> for Limits {
    fn from(w: LimitsWire) -> Self {
        let (max_context, context_bound) = w.max_context.split();
        let (best_batch, batch_bound) = w.best_batch.split();
        let (max_concurrency, concurrency_bound) = w.max_concurrency.split();
        Self {
            max_context,
            best_batch,
            max_concurrency,
            bounds: LimitBounds {
                max_context: context_bound,
                best_batch: batch_bound,
                max_concurrency: concurrency_bound,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_is_written_with_what_bound_it() {
        let limits = Limits {
            max_context: Some(9728),
            best_batch: Some(64),
            max_concurrency: None,
            bounds: LimitBounds {
                max_context: Some(Bound::Memory {
                    at: 9984,
                    trial_id: 4,
                    threshold: Some(Metric::ProcessMemory),
                    peak_bytes: Some(51 << 20),
                    limit_bytes: Some(48 << 20),
                    device: None,
                }),
                best_batch: Some(Bound::Cap { cap: 64 }),
                max_concurrency: Some(Bound::NotRun {
                    reason: "--skip-concurrency".into(),
                }),
            },
        };
        let json = serde_json::to_value(&limits).unwrap();
        assert_eq!(json["max_context"]["value"], 9728);
        assert_eq!(json["max_context"]["bound_by"], "memory");
        assert_eq!(json["max_context"]["evidence"]["at"], 9984);
        assert_eq!(
            json["max_context"]["evidence"]["threshold"],
            "process-memory"
        );
        assert_eq!(json["best_batch"]["bound_by"], "cap");
        assert_eq!(json["max_concurrency"]["value"], serde_json::Value::Null);
        assert_eq!(json["max_concurrency"]["bound_by"], "not_run");
        let back: Limits = serde_json::from_value(json).unwrap();
        assert_eq!(back, limits);
    }

    #[test]
    fn a_limit_without_a_bound_is_just_its_value() {
        let limits = Limits {
            max_context: Some(4096),
            ..Limits::default()
        };
        let json = serde_json::to_value(&limits).unwrap();
        assert_eq!(json["max_context"], serde_json::json!({"value": 4096}));
        assert_eq!(serde_json::from_value::<Limits>(json).unwrap(), limits);
    }

    #[test]
    fn old_logs_with_bare_numbers_still_read() {
        let old = r#"{"max_context":20480,"best_batch":256,"max_concurrency":null}"#;
        let limits: Limits = serde_json::from_str(old).unwrap();
        assert_eq!(limits.max_context, Some(20480));
        assert_eq!(limits.best_batch, Some(256));
        assert_eq!(limits.max_concurrency, None);
        assert_eq!(limits.bounds, LimitBounds::default());
    }

    #[test]
    fn an_objective_bound_is_written_with_the_metric_and_the_figure_missed() {
        let limits = Limits {
            max_concurrency: Some(4),
            bounds: LimitBounds {
                max_concurrency: Some(Bound::Slo {
                    at: 5,
                    trial_id: 12,
                    metric: SloMetric::TtftP95,
                    measured: Some(2345.6),
                    bound: 2000.0,
                }),
                ..LimitBounds::default()
            },
            ..Limits::default()
        };
        let json = serde_json::to_value(&limits).unwrap();
        let c = &json["max_concurrency"];
        assert_eq!(
            (c["value"].clone(), c["bound_by"].clone()),
            (4.into(), "slo".into())
        );
        assert_eq!(c["evidence"]["metric"], "ttft-p95");
        assert_eq!(c["evidence"]["measured"], 2345.6);
        assert_eq!(serde_json::from_value::<Limits>(json).unwrap(), limits);
    }
}
