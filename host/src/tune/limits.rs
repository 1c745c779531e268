//! What a run found: the largest stable context, the best batch, the highest stable
//! concurrency, and for each what stopped it (`bound_by`, with its evidence). The driver
//! returns them; the log, the summary, the warm-start store and the strategy lab read them.
//!
//! In JSON each limit is an object — `{"value": 9728, "bound_by": "memory", "evidence":
//! {…}}` — so `limits.max_context.bound_by` answers "why not more?". Logs written before
//! bounds existed hold plain numbers; they still read.

use serde::{Deserialize, Serialize};

use crate::record::{Metric, Phase, TrialRecord, Verdict};

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
    },
    /// Requests at the next value ran past their timeout: the machine is too slow to fill
    /// it, not out of memory.
    Time {
        at: u32,
        trial_id: u32,
        timeout_s: Option<f64>,
        message: String,
    },
    /// The next value ran but was not stable (success rate or throughput variation).
    Instability {
        at: u32,
        trial_id: u32,
        success_rate: f64,
        cv: Option<f64>,
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
    /// The service-level objective missed at the next level: which bound, what was measured.
    Slo {
        at: u32,
        trial_id: u32,
        metric: String,
        measured: f64,
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

impl Limits {
    /// Derives the limits from the trials alone: the largest stable context of any phase;
    /// the batch of the stable batch-phase trial with the highest mean decode tok/s (else
    /// the batch of the largest stable context); the highest stable concurrency (1 when
    /// only single-stream trials were stable).
    pub fn from_trials(trials: &[TrialRecord]) -> Self {
        let stable: Vec<&TrialRecord> = trials
            .iter()
            .filter(|t| t.verdict == Verdict::Stable)
            .collect();
        let ctx = |t: &TrialRecord| t.granted_ctx.unwrap_or(t.config.ctx);
        let max_context = stable.iter().map(|t| ctx(t)).max();
        let decode = |t: &TrialRecord| t.decode_tps.as_ref().map_or(0.0, |s| s.mean);
        let best_batch = stable
            .iter()
            .filter(|t| t.phase == Phase::Batch && t.config.concurrency == 1)
            .max_by(|a, b| decode(a).total_cmp(&decode(b)))
            .or_else(|| stable.iter().rfind(|t| Some(ctx(t)) == max_context))
            .map(|t| t.config.batch);
        let max_concurrency = stable.iter().map(|t| t.config.concurrency).max();
        Self {
            max_context,
            best_batch,
            max_concurrency,
            bounds: LimitBounds::default(),
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
}
