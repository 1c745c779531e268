//! What a run found: the largest stable context, the best batch, the highest stable
//! concurrency, and for each what stopped it (`bound_by`, with its evidence). The driver
//! returns them; the log, the summary, the warm-start store and the strategy lab read them.
//!
//! In JSON each limit is an object — `{"value": 9728, "bound_by": "memory", "evidence":
//! {…}}` — so `limits.max_context.bound_by` answers "why not more?". Logs written before
//! bounds existed hold plain numbers; they still read.

use ozone_sdk::SloMetric;
use serde::{Deserialize, Serialize};

use crate::record::{FailureKind, Metric, Phase, SampleRecord, Stage, TrialRecord, Verdict};
use crate::trial::AdaptiveTimeouts;

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
    /// A temperature or CPU threshold was crossed at the next value: the peak against
    /// the limit (°C or percent). (Memory thresholds are `memory`.)
    Threshold {
        at: u32,
        trial_id: u32,
        threshold: Metric,
        peak: Option<f64>,
        limit: Option<f64>,
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

impl Bound {
    /// One plain sentence: what stopped the limit, with its evidence.
    pub fn describe(&self) -> String {
        const MIB: f64 = 1048576.0;
        let mib = |b: Option<u64>| b.map(|b| format!("{:.0} MiB", b as f64 / MIB));
        match self {
            Bound::Memory {
                at,
                threshold: Some(metric),
                peak_bytes,
                limit_bytes,
                ..
            } => format!(
                "memory: at {at} the {metric} threshold was crossed ({} against a limit of {})",
                mib(*peak_bytes).unwrap_or_else(|| "peak unknown".into()),
                mib(*limit_bytes).unwrap_or_else(|| "unknown".into())
            ),
            Bound::Memory {
                at,
                threshold: None,
                peak_bytes,
                ..
            } => format!(
                "memory: at {at} the server ran out of memory{}",
                mib(*peak_bytes)
                    .map(|p| format!(" (peak {p})"))
                    .unwrap_or_default()
            ),
            Bound::Time { at, message, .. } => format!(
                "time: at {at} {message} — the machine is too slow to fill it, not out of memory"
            ),
            Bound::Threshold {
                at,
                threshold,
                peak,
                limit,
                ..
            } => {
                let figure = |v: &Option<f64>| v.map_or("?".into(), |v| format!("{v:.0}"));
                format!(
                    "threshold: at {at} {threshold} reached {}, limit {}",
                    figure(peak),
                    figure(limit)
                )
            }
            Bound::Instability {
                at,
                success_rate,
                cv,
                ..
            } => format!(
                "instability: at {at} {:.0} % of the samples succeeded{}",
                success_rate * 100.0,
                cv.map(|c| format!(", throughput varied {:.0} %", c * 100.0))
                    .unwrap_or_default()
            ),
            Bound::TrainedContext { trained_context } => format!(
                "trained context: the model's own maximum ({trained_context}) runs; nothing failed"
            ),
            Bound::ServerError { at, message, .. } => {
                format!("server error: at {at} {message}")
            }
            Bound::Throughput {
                at,
                best_tps,
                next_tps,
                ..
            } => format!(
                "throughput: {at} decoded {next_tps:.1} tok/s, not more than the best {best_tps:.1}"
            ),
            Bound::Cap { cap } => format!("cap: the search's upper bound {cap} passed"),
            Bound::Slo {
                at,
                metric,
                measured,
                bound,
                ..
            } => {
                let (unit, sign, digits) = if metric.is_floor() {
                    ("tok/s", "<", 1)
                } else {
                    ("ms", ">", 0)
                };
                match measured {
                    Some(m) => format!(
                        "slo: at {at} {metric} measured {m:.digits$} {unit} {sign} {bound} {unit}"
                    ),
                    None => format!(
                        "slo: at {at} {metric} could not be measured (bound {bound} {unit})"
                    ),
                }
            }
            Bound::NotRun { reason } => format!("not run: {reason}"),
        }
    }
}

/// What [`explain`] needs to know about the run besides its trials.
#[derive(Debug, Clone, Copy)]
pub struct BoundFacts<'a> {
    /// The context search's ceiling: the trained context, aligned down.
    pub max_context: u32,
    /// `batch_adaptation.max_batch`.
    pub max_batch: u32,
    /// `batch_adaptation.enabled`.
    pub batch_scaling: bool,
    /// Whether the concurrency phase ran (`--skip-concurrency` turns it off).
    pub concurrency: bool,
    /// The run's request timeouts (the one a `time` bound ran into).
    pub timeouts: &'a AdaptiveTimeouts,
}

/// What bound each limit, from the trials alone: the first value above the answer that
/// was tried and not stable, and why (memory, time, threshold, instability, server
/// error); or the search's ceiling (`trained_context`, `cap`); or, for a batch whose
/// next value ran stable, `throughput`. `None` where the trials do not say (a plugin
/// that stopped below its ceiling with nothing failing above its answer). A concurrency
/// level passes when stable and its objective (recorded on the trial) held: what bound
/// `max_concurrency` may be the first bound of the objective that missed (`slo`), and
/// with every level passing, the most streams tried (`cap`).
pub fn explain(limits: &Limits, trials: &[TrialRecord], facts: &BoundFacts) -> LimitBounds {
    LimitBounds {
        max_context: context_bound(limits, trials, facts),
        best_batch: batch_bound(limits, trials, facts),
        max_concurrency: concurrency_bound(limits, trials, facts),
    }
}

fn context_bound(limits: &Limits, trials: &[TrialRecord], facts: &BoundFacts) -> Option<Bound> {
    let answer = limits.max_context;
    if answer.is_some_and(|a| a >= facts.max_context) {
        return Some(Bound::TrainedContext {
            trained_context: facts.max_context,
        });
    }
    let context: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.phase == Phase::Context)
        .collect();
    first_not_stable_above(&context, answer, |t| t.config.ctx)
        .map(|t| failure_bound(t, t.config.ctx, facts.timeouts))
}

fn batch_bound(limits: &Limits, trials: &[TrialRecord], facts: &BoundFacts) -> Option<Bound> {
    let Some(ctx) = limits.max_context else {
        return Some(not_run("no context was stable"));
    };
    if !facts.batch_scaling {
        return Some(not_run("batch scaling is off (batch_adaptation.enabled)"));
    }
    let at_ctx: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.config.ctx == ctx && t.config.concurrency == 1 && t.stage == Stage::Verify)
        .collect();
    let Some(best) = limits.best_batch else {
        return first_not_stable_above(&at_ctx, None, |t| t.config.batch)
            .map(|t| failure_bound(t, t.config.batch, facts.timeouts));
    };
    let next = at_ctx
        .iter()
        .filter(|t| t.config.batch > best)
        .min_by_key(|t| (t.config.batch, std::cmp::Reverse(t.id)));
    match next {
        None if best >= facts.max_batch => Some(Bound::Cap {
            cap: facts.max_batch,
        }),
        None => None,
        Some(t) if t.verdict != Verdict::Stable => {
            Some(failure_bound(t, t.config.batch, facts.timeouts))
        }
        Some(t) => {
            let tps = |t: &TrialRecord| t.decode_tps.as_ref().map_or(0.0, |s| s.mean);
            let best_tps = at_ctx
                .iter()
                .filter(|b| b.config.batch == best)
                .map(|b| tps(b))
                .fold(0.0, f64::max);
            Some(Bound::Throughput {
                at: t.config.batch,
                trial_id: t.id,
                best_tps,
                next_tps: tps(t),
            })
        }
    }
}

fn concurrency_bound(limits: &Limits, trials: &[TrialRecord], facts: &BoundFacts) -> Option<Bound> {
    let Some(ctx) = limits.max_context else {
        return Some(not_run("no context was stable"));
    };
    let Some(batch) = limits.best_batch else {
        return Some(not_run(&format!("no batch was stable at context {ctx}")));
    };
    if !facts.concurrency {
        return Some(not_run("skipped (--skip-concurrency)"));
    }
    // Every level at the context and batch found; one stream may have been measured by
    // the context or batch phase.
    let levels: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.config.ctx == ctx && t.config.batch == batch && t.stage == Stage::Verify)
        .collect();
    let answer = limits.max_concurrency;
    let missed = levels
        .iter()
        .filter(|t| !level_passed(t) && answer.is_none_or(|a| t.config.concurrency > a))
        .min_by_key(|t| (t.config.concurrency, std::cmp::Reverse(t.id)));
    if let Some(t) = missed {
        return Some(level_bound(t, facts.timeouts));
    }
    let top = levels.iter().map(|t| t.config.concurrency).max();
    Some(match top {
        Some(top) => Bound::Cap {
            cap: top.max(answer.unwrap_or(0)),
        },
        None => not_run("the concurrency plugin proposed no level"),
    })
}

/// A level passes when its trial is stable and the objective, if any, held.
fn level_passed(t: &TrialRecord) -> bool {
    let objective = t.concurrency.as_ref().and_then(|f| f.slo.as_ref());
    t.verdict == Verdict::Stable && objective.is_none_or(|v| v.met)
}

/// Why a level did not pass: its trial's failure or instability, else the first bound of
/// the objective that missed.
fn level_bound(t: &TrialRecord, timeouts: &AdaptiveTimeouts) -> Bound {
    let at = t.config.concurrency;
    let miss = t
        .concurrency
        .as_ref()
        .and_then(|f| f.slo.as_ref())
        .and_then(|v| v.missed.first());
    match miss {
        Some(miss) if t.verdict == Verdict::Stable => Bound::Slo {
            at,
            trial_id: t.id,
            metric: miss.metric,
            measured: miss.measured,
            bound: miss.bound,
        },
        _ => failure_bound(t, at, timeouts),
    }
}

/// The trial that was not stable at the smallest value above `answer` (any value when
/// there is none); the latest one when that value was tried more than once.
fn first_not_stable_above<'t>(
    trials: &[&'t TrialRecord],
    answer: Option<u32>,
    value: impl Fn(&TrialRecord) -> u32,
) -> Option<&'t TrialRecord> {
    trials
        .iter()
        .filter(|t| t.verdict != Verdict::Stable && answer.is_none_or(|a| value(t) > a))
        .min_by_key(|t| (value(t), std::cmp::Reverse(t.id)))
        .copied()
}

/// Why one trial at `at` was not stable, as a bound.
fn failure_bound(t: &TrialRecord, at: u32, timeouts: &AdaptiveTimeouts) -> Bound {
    let trial_id = t.id;
    let timeout_s = || {
        timeouts
            .for_config(t.config.ctx, t.config.batch)
            .as_secs_f64()
    };
    let Some(failure) = &t.failure else {
        // Unstable: when every request that failed ran past its timeout, time bound it
        // (some requests fit in the timeout, not enough of them).
        let failed: Vec<_> = t.samples.iter().filter(|s| !s.ok).collect();
        let timed_out = |s: &&SampleRecord| s.failure == Some(FailureKind::Timeout);
        if !failed.is_empty() && failed.iter().all(timed_out) {
            let timeout_s = timeout_s();
            return Bound::Time {
                at,
                trial_id,
                timeout_s: Some(timeout_s),
                message: format!(
                    "{} of {} requests ran past the {timeout_s:.0} s timeout",
                    failed.len(),
                    t.samples.len()
                ),
            };
        }
        return Bound::Instability {
            at,
            trial_id,
            success_rate: t.success_rate,
            cv: t.cv,
        };
    };
    match failure.kind {
        FailureKind::ThresholdBreach(metric) if metric.is_memory() => Bound::Memory {
            at,
            trial_id,
            threshold: Some(metric),
            peak_bytes: t.breach.as_ref().map(|b| b.value as u64),
            limit_bytes: t.breach.as_ref().map(|b| b.limit as u64),
        },
        FailureKind::ThresholdBreach(metric) => Bound::Threshold {
            at,
            trial_id,
            threshold: metric,
            peak: t.breach.as_ref().map(|b| b.value),
            limit: t.breach.as_ref().map(|b| b.limit),
        },
        FailureKind::OutOfMemory => Bound::Memory {
            at,
            trial_id,
            threshold: None,
            peak_bytes: t.peaks.gpu_mem_used_bytes.or(t.peaks.process_rss_bytes),
            limit_bytes: None,
        },
        FailureKind::Timeout => Bound::Time {
            at,
            trial_id,
            timeout_s: Some(timeout_s()),
            message: failure.message.clone(),
        },
        FailureKind::ServerError | FailureKind::BadOutput => Bound::ServerError {
            at,
            trial_id,
            message: failure.message.clone(),
            log_tail: t.server_log_tail.clone(),
        },
    }
}

fn not_run(reason: &str) -> Bound {
    Bound::NotRun {
        reason: reason.to_string(),
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
    /// Derives the limits from the trials alone (screens do not count: a limit is always
    /// verified): the largest stable context of any phase;
    /// the batch of the stable batch-phase trial with the highest mean decode tok/s (else
    /// the batch of the largest stable context); the highest stable concurrency (1 when
    /// only single-stream trials were stable).
    pub fn from_trials(trials: &[TrialRecord]) -> Self {
        let stable: Vec<&TrialRecord> = trials
            .iter()
            .filter(|t| t.verdict == Verdict::Stable && t.stage == Stage::Verify)
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
    use crate::fixtures;
    use crate::record::{Breach, TrialFailure};

    /// The fixture run's facts: trained context 32768, batch up to 256, ladder 1..8.
    fn facts(timeouts: &AdaptiveTimeouts) -> BoundFacts<'_> {
        BoundFacts {
            max_context: 32768,
            max_batch: 256,
            batch_scaling: true,
            concurrency: true,
            timeouts,
        }
    }

    fn fixture_limits() -> Limits {
        Limits {
            max_context: Some(20480),
            best_batch: Some(256),
            max_concurrency: Some(2),
            bounds: LimitBounds::default(),
        }
    }

    #[test]
    fn each_limit_is_explained_by_the_first_value_above_it_that_failed() {
        let timeouts = AdaptiveTimeouts::default();
        let b = explain(&fixture_limits(), &fixtures::trials(), &facts(&timeouts));
        // 24576 could not allocate (trial 5); 32768 breached higher up, but 24576 is the
        // first context above the answer.
        assert_eq!(
            b.max_context,
            Some(Bound::Memory {
                at: 24576,
                trial_id: 5,
                threshold: None,
                peak_bytes: None,
                limit_bytes: None,
            })
        );
        // 256 is max_batch, and every batch passed.
        assert_eq!(b.best_batch, Some(Bound::Cap { cap: 256 }));
        // 4 streams: 2 of 5 requests timed out.
        assert!(
            matches!(&b.max_concurrency, Some(Bound::Time { at: 4, trial_id: 10, timeout_s: Some(t), .. }) if *t > 60.0),
            "{:?}",
            b.max_concurrency
        );
    }

    #[test]
    fn a_budget_breach_names_the_budget_with_peak_and_limit() {
        let timeouts = AdaptiveTimeouts::default();
        let trials: Vec<TrialRecord> = fixtures::trials()
            .into_iter()
            .filter(|t| t.id != 5)
            .collect();
        let limits = Limits {
            max_context: Some(20480),
            ..Limits::default()
        };
        let b = explain(&limits, &trials, &facts(&timeouts));
        let Some(Bound::Memory {
            at: 32768,
            trial_id: 1,
            threshold: Some(Metric::ProcessMemory),
            peak_bytes: Some(peak),
            limit_bytes: Some(limit),
        }) = b.max_context
        else {
            panic!("{:?}", b.max_context)
        };
        assert!(peak > limit, "{peak} vs {limit}");
        assert_eq!(limit, 1536 << 20);
        let text = b
            .max_context
            .as_ref()
            .map(Bound::describe)
            .unwrap_or_default();
        assert!(
            text.contains("process-memory") && text.contains("1536 MiB"),
            "{text}"
        );
    }

    #[test]
    fn a_gpu_budget_breach_is_a_memory_bound() {
        let timeouts = AdaptiveTimeouts::default();
        let mut trials: Vec<TrialRecord> = fixtures::trials()
            .into_iter()
            .filter(|t| t.id != 5)
            .collect();
        // Trial 1 (32768) crossed the server's GPU budget instead of its RAM budget.
        let first = trials.iter_mut().find(|t| t.id == 1).expect("trial 1");
        if let Some(f) = first.failure.as_mut() {
            f.kind = FailureKind::ThresholdBreach(Metric::GpuMemoryBudget);
        }
        if let Some(b) = first.breach.as_mut() {
            b.metric = Metric::GpuMemoryBudget;
        }
        let limits = Limits {
            max_context: Some(20480),
            ..Limits::default()
        };
        let b = explain(&limits, &trials, &facts(&timeouts));
        assert!(
            matches!(
                &b.max_context,
                Some(Bound::Memory {
                    at: 32768,
                    threshold: Some(Metric::GpuMemoryBudget),
                    ..
                })
            ),
            "{:?}",
            b.max_context
        );
        let text = b.max_context.map(|b| b.describe()).unwrap_or_default();
        assert!(text.contains("gpu-memory-budget threshold"), "{text}");
    }

    #[test]
    fn the_trained_context_bounds_a_search_that_reached_it() {
        let timeouts = AdaptiveTimeouts::default();
        let limits = Limits {
            max_context: Some(32768),
            ..Limits::default()
        };
        let b = explain(&limits, &[], &facts(&timeouts));
        assert_eq!(
            b.max_context,
            Some(Bound::TrainedContext {
                trained_context: 32768
            })
        );
        assert!(matches!(b.max_concurrency, Some(Bound::NotRun { .. })));
    }

    /// A context trial of the fixtures (id 5), to vary.
    fn context_trial() -> TrialRecord {
        fixtures::trials()
            .into_iter()
            .find(|t| t.id == 5)
            .expect("trial 5")
    }

    /// The context's bound when `t` is the only trial and 20480 was published.
    fn context_bound_of(t: TrialRecord) -> Bound {
        let limits = Limits {
            max_context: Some(20480),
            ..Limits::default()
        };
        explain(&limits, &[t], &facts(&AdaptiveTimeouts::default()))
            .max_context
            .expect("a bound")
    }

    #[test]
    fn a_timeout_is_time_an_unstable_verification_instability_a_crash_a_server_error() {
        let with = |kind: Option<FailureKind>, verdict: Verdict| TrialRecord {
            stage: Stage::Verify,
            verdict,
            failure: kind.map(|kind| TrialFailure {
                kind,
                message: "the request ran past the 72 s timeout".into(),
                fault: None,
            }),
            server_log_tail: vec!["last line".into()],
            ..context_trial()
        };
        let time = context_bound_of(with(Some(FailureKind::Timeout), Verdict::Failed));
        assert_eq!(time.kind(), "time");
        assert!(time.describe().contains("too slow to fill it"), "{time:?}");
        assert_eq!(
            context_bound_of(with(None, Verdict::Unstable)).kind(),
            "instability"
        );
        let Bound::ServerError { log_tail, .. } =
            context_bound_of(with(Some(FailureKind::ServerError), Verdict::Failed))
        else {
            panic!("a server error")
        };
        assert_eq!(log_tail, vec!["last line".to_string()]);
        let mut hot = with(
            Some(FailureKind::ThresholdBreach(Metric::Temperature)),
            Verdict::Failed,
        );
        hot.breach = Some(Breach {
            metric: Metric::Temperature,
            value: 91.0,
            limit: 85.0,
            at_ms: 10,
        });
        assert_eq!(context_bound_of(hot).kind(), "threshold");
    }

    /// An unstable verification whose failed requests all ran past the timeout (the
    /// others fit in it) is bound by time; one with any other failure is instability.
    #[test]
    fn an_unstable_trial_whose_failures_are_all_timeouts_is_bound_by_time() {
        let ok = SampleRecord {
            ok: true,
            ..SampleRecord::default()
        };
        let failed = |kind: FailureKind| SampleRecord {
            index: 1,
            ok: false,
            error: Some("the request ran past the 2 s timeout".into()),
            failure: Some(kind),
            ..SampleRecord::default()
        };
        let unstable = |samples: Vec<SampleRecord>| TrialRecord {
            stage: Stage::Verify,
            verdict: Verdict::Unstable,
            failure: None,
            success_rate: 0.5,
            samples,
            ..context_trial()
        };
        let time = context_bound_of(unstable(vec![ok.clone(), failed(FailureKind::Timeout)]));
        assert_eq!(time.kind(), "time", "{time:?}");
        assert!(
            time.describe().contains("1 of 2 requests ran past the"),
            "{}",
            time.describe()
        );
        let mixed = unstable(vec![
            ok.clone(),
            failed(FailureKind::Timeout),
            failed(FailureKind::BadOutput),
        ]);
        assert_eq!(context_bound_of(mixed).kind(), "instability");
        // A log written before samples said their failure's kind: instability, as then.
        let old = SampleRecord {
            failure: None,
            ..failed(FailureKind::Timeout)
        };
        assert_eq!(
            context_bound_of(unstable(vec![ok, old])).kind(),
            "instability"
        );
    }

    #[test]
    fn a_stable_batch_above_the_best_is_a_throughput_bound_and_skipped_phases_say_so() {
        let timeouts = AdaptiveTimeouts::default();
        let limits = Limits {
            best_batch: Some(128),
            ..fixture_limits()
        };
        let b = explain(&limits, &fixtures::trials(), &facts(&timeouts));
        assert!(
            matches!(b.best_batch, Some(Bound::Throughput { at: 256, trial_id: 8, best_tps, next_tps }) if next_tps > best_tps),
            "{:?}",
            b.best_batch
        );
        let skipped = BoundFacts {
            concurrency: false,
            batch_scaling: false,
            ..facts(&timeouts)
        };
        let b = explain(&fixture_limits(), &fixtures::trials(), &skipped);
        assert!(matches!(b.best_batch, Some(Bound::NotRun { .. })));
        assert!(matches!(b.max_concurrency, Some(Bound::NotRun { .. })));
    }

    #[test]
    fn screens_never_make_a_limit_from_trials() {
        let mut trials = fixtures::trials();
        // A screen at 28672 passed; no verification of it exists.
        let mut screen = trials[5].clone();
        screen.id = 11;
        screen.stage = Stage::Screen;
        screen.config.ctx = 28672;
        screen.granted_ctx = Some(28672);
        trials.push(screen);
        assert_eq!(Limits::from_trials(&trials).max_context, Some(20480));
    }

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
        let text = limits.bounds.max_concurrency.as_ref().unwrap().describe();
        assert_eq!(text, "slo: at 5 ttft-p95 measured 2346 ms > 2000 ms");
        let floor = Bound::Slo {
            at: 9,
            trial_id: 3,
            metric: SloMetric::DecodeMin,
            measured: None,
            bound: 10.0,
        };
        assert_eq!(
            floor.describe(),
            "slo: at 9 decode-min could not be measured (bound 10 tok/s)"
        );
    }

    #[test]
    fn a_level_that_ran_stable_but_missed_the_objective_is_an_slo_bound() {
        use crate::record::{ConcurrencyFigures, Latency, SloMiss, SloVerdict};
        let timeouts = AdaptiveTimeouts::default();
        let judged = |t: &mut TrialRecord, met: bool| {
            let missed = if met {
                Vec::new()
            } else {
                vec![SloMiss {
                    metric: SloMetric::TtftP95,
                    measured: Some(900.0),
                    bound: 500.0,
                }]
            };
            t.concurrency = Some(ConcurrencyFigures {
                streams: t.config.concurrency,
                requests_per_stream: 2,
                warmup_per_stream: 1,
                window_ms: 1000.0,
                latency: Latency::default(),
                stream_decode_tps: None,
                aggregate_decode_tps: None,
                slo: Some(SloVerdict { met, missed }),
            });
        };
        // The fixture's levels 1 and 2 ran stable; 2 missed the objective.
        let mut trials = fixtures::trials();
        for t in trials.iter_mut().filter(|t| t.phase == Phase::Concurrency) {
            let met = t.config.concurrency < 2;
            judged(t, met);
        }
        let limits = Limits {
            max_concurrency: Some(1),
            ..fixture_limits()
        };
        let b = explain(&limits, &trials, &facts(&timeouts));
        assert!(
            matches!(
                b.max_concurrency,
                Some(Bound::Slo { at: 2, metric: SloMetric::TtftP95, measured: Some(m), .. }) if m == 900.0
            ),
            "{:?}",
            b.max_concurrency
        );
        // Every level passing: the most streams tried is the cap.
        for t in trials.iter_mut().filter(|t| t.phase == Phase::Concurrency) {
            judged(t, true);
            t.verdict = Verdict::Stable;
            t.failure = None;
        }
        let top = trials
            .iter()
            .filter(|t| t.phase == Phase::Concurrency)
            .map(|t| t.config.concurrency)
            .max();
        let limits = Limits {
            max_concurrency: top,
            ..fixture_limits()
        };
        let b = explain(&limits, &trials, &facts(&timeouts));
        assert_eq!(b.max_concurrency, top.map(|cap| Bound::Cap { cap }));
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
