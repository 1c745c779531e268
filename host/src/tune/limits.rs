//! What a run found: the largest stable context, the best batch, the highest stable
//! concurrency, and for each what stopped it (`bound_by`, with its evidence). The driver
//! returns them; the log, the summary, the warm-start store and the strategy lab read them.
//!
//! In JSON each limit is an object — `{"value": 9728, "bound_by": "memory", "evidence":
//! {…}}` — so `limits.max_context.bound_by` answers "why not more?". Logs written before
//! bounds existed hold plain numbers; they still read.

use ozone_sdk::SloMetric;
use serde::{Deserialize, Serialize};

use crate::plugin::ConcurrencyOutcome;
use crate::record::{FailureKind, Metric, Phase, TrialRecord, Verdict};

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
    /// A threshold that is not memory (temperature, CPU) was crossed at the next value:
    /// the value seen against the limit, in the metric's unit.
    Threshold {
        at: u32,
        trial_id: u32,
        threshold: Metric,
        value: Option<f64>,
        limit: Option<f64>,
    },
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
            Bound::Instability { .. } => "instability",
            Bound::TrainedContext { .. } => "trained context",
            Bound::ServerError { .. } => "server error",
            Bound::Throughput { .. } => "throughput",
            Bound::Cap { .. } => "cap",
            Bound::Threshold { .. } => "threshold",
            Bound::Slo { .. } => "slo",
            Bound::NotRun { .. } => "not run",
        }
    }
}

impl Bound {
    /// Why the trial of value `at` did not pass as a trial: its failure (memory, a
    /// threshold, time, a server error) or its instability. `None` for a stable trial.
    pub fn from_trial(at: u32, t: &TrialRecord) -> Option<Bound> {
        let trial_id = t.id;
        if t.verdict == Verdict::Unstable {
            return Some(Bound::Instability {
                at,
                trial_id,
                success_rate: t.success_rate,
                cv: t.cv,
            });
        }
        let failure = t
            .failure
            .as_ref()
            .filter(|_| t.verdict == Verdict::Failed)?;
        let breach = t.breach.as_ref();
        Some(match failure.kind {
            FailureKind::OutOfMemory => Bound::Memory {
                at,
                trial_id,
                threshold: None,
                peak_bytes: None,
                limit_bytes: None,
            },
            FailureKind::ThresholdBreach(m @ (Metric::Temperature | Metric::Cpu)) => {
                Bound::Threshold {
                    at,
                    trial_id,
                    threshold: m,
                    value: breach.map(|b| b.value),
                    limit: breach.map(|b| b.limit),
                }
            }
            FailureKind::ThresholdBreach(m) => Bound::Memory {
                at,
                trial_id,
                threshold: Some(m),
                peak_bytes: breach.map(|b| b.value as u64),
                limit_bytes: breach.map(|b| b.limit as u64),
            },
            FailureKind::Timeout => Bound::Time {
                at,
                trial_id,
                timeout_s: None,
                message: failure.message.clone(),
            },
            FailureKind::ServerError | FailureKind::BadOutput => Bound::ServerError {
                at,
                trial_id,
                message: failure.message.clone(),
                log_tail: t.server_log_tail.clone(),
            },
        })
    }

    /// Why a concurrency level did not pass: the trial's own failure or instability,
    /// else the first bound of the objective that missed. `None` for a level that passed.
    pub fn from_level(t: &TrialRecord, outcome: &ConcurrencyOutcome) -> Option<Bound> {
        let at = t.config.concurrency;
        Bound::from_trial(at, t).or_else(|| {
            outcome.slo_missed.first().map(|miss| Bound::Slo {
                at,
                trial_id: t.id,
                metric: miss.metric,
                measured: miss.measured,
                bound: miss.bound,
            })
        })
    }

    /// What ended a concurrency search whose plugin settled on `best`, given every level
    /// it measured: the lowest level above `best` that did not pass; with none, the top
    /// of what was tried (`max_concurrency`, or the plugin's last level) as a cap.
    pub fn of_concurrency(
        best: Option<u32>,
        levels: &[(TrialRecord, ConcurrencyOutcome)],
    ) -> Bound {
        let floor = best.unwrap_or(0);
        let first_miss = levels
            .iter()
            .filter(|(t, o)| t.config.concurrency > floor && !o.passed())
            .min_by_key(|(t, _)| t.config.concurrency)
            .and_then(|(t, o)| Bound::from_level(t, o));
        if let Some(bound) = first_miss {
            return bound;
        }
        match levels.iter().map(|(t, _)| t.config.concurrency).max() {
            Some(top) => Bound::Cap {
                cap: top.max(floor),
            },
            None => Bound::NotRun {
                reason: "the concurrency plugin proposed no level".into(),
            },
        }
    }
}

/// The bound in one line for people: `slo at 8: ttft-p95 2345 ms > 2000 ms (trial 12)`.
impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MIB: f64 = 1048576.0;
        let kind = self.kind();
        match self {
            Bound::Memory {
                at,
                trial_id,
                threshold,
                peak_bytes,
                limit_bytes,
            } => match (threshold, peak_bytes, limit_bytes) {
                (Some(m), Some(peak), Some(limit)) => write!(
                    f,
                    "{kind} at {at}: {m} peaked at {:.1} MiB, limit {:.1} MiB (trial {trial_id})",
                    *peak as f64 / MIB,
                    *limit as f64 / MIB
                ),
                (Some(m), ..) => write!(f, "{kind} at {at}: {m} threshold (trial {trial_id})"),
                (None, ..) => write!(f, "{kind} at {at}: out of memory (trial {trial_id})"),
            },
            Bound::Time {
                at,
                trial_id,
                message,
                ..
            }
            | Bound::ServerError {
                at,
                trial_id,
                message,
                ..
            } => write!(f, "{kind} at {at}: {message} (trial {trial_id})"),
            Bound::Instability {
                at,
                trial_id,
                success_rate,
                cv,
            } => {
                write!(
                    f,
                    "{kind} at {at}: {:.0} % of requests succeeded",
                    success_rate * 100.0
                )?;
                if let Some(cv) = cv {
                    write!(f, ", throughput varied {:.0} %", cv * 100.0)?;
                }
                write!(f, " (trial {trial_id})")
            }
            Bound::TrainedContext { trained_context } => {
                write!(f, "{kind}: the model was trained for {trained_context}")
            }
            Bound::Throughput {
                at,
                trial_id,
                best_tps,
                next_tps,
            } => write!(
                f,
                "{kind}: {at} decoded {next_tps:.1} tok/s, not more than {best_tps:.1} (trial {trial_id})"
            ),
            Bound::Cap { cap } => write!(f, "{kind}: {cap}, the most tried, passed"),
            Bound::Threshold {
                at,
                trial_id,
                threshold,
                value,
                limit,
            } => match (value, limit) {
                (Some(v), Some(l)) => write!(
                    f,
                    "{kind} at {at}: {threshold} reached {v:.0}, limit {l:.0} (trial {trial_id})"
                ),
                _ => write!(f, "{kind} at {at}: {threshold} (trial {trial_id})"),
            },
            Bound::Slo {
                at,
                trial_id,
                metric,
                measured,
                bound,
            } => {
                let unit = if metric.is_floor() { " tok/s" } else { " ms" };
                let (sign, digits) = if metric.is_floor() { ("<", 1) } else { (">", 0) };
                match measured {
                    Some(m) => write!(
                        f,
                        "{kind} at {at}: {metric} {m:.digits$}{unit} {sign} {bound}{unit} (trial {trial_id})"
                    ),
                    None => write!(
                        f,
                        "{kind} at {at}: {metric} not measured, bound {bound}{unit} (trial {trial_id})"
                    ),
                }
            }
            Bound::NotRun { reason } => write!(f, "{kind}: {reason}"),
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
    fn an_objective_bound_names_the_metric_and_the_figure_missed() {
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
        let text = limits.bounds.max_concurrency.as_ref().unwrap().to_string();
        assert_eq!(text, "slo at 5: ttft-p95 2346 ms > 2000 ms (trial 12)");
        let floor = Bound::Slo {
            at: 9,
            trial_id: 3,
            metric: SloMetric::DecodeMin,
            measured: None,
            bound: 10.0,
        };
        assert_eq!(
            floor.to_string(),
            "slo at 9: decode-min not measured, bound 10 tok/s (trial 3)"
        );
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
