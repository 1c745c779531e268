//! What bound each limit the driver found, from the run's trials: the first value above
//! the answer that was tried and not stable, and why — each trial's verdict carries its
//! reason, so nothing is judged again here. The words for a bound are `report`'s.

use crate::record::{
    Bound, FailureKind, LimitBounds, Limits, Phase, Reason, Stage, TrialRecord, Verdict,
};
use crate::trial::AdaptiveTimeouts;

use super::driver::Plan;

/// What bound each limit, from the trials alone: the first value above the answer that
/// was tried and not stable, and why (memory, time, threshold, instability, server
/// error); or the search's ceiling (`trained_context`, `cap`); or, for a batch whose
/// next value ran stable, `throughput`. `None` where the trials do not say (a plugin
/// that stopped below its ceiling with nothing failing above its answer). A concurrency
/// level passes when stable and its objective (recorded on the trial) held: what bound
/// `max_concurrency` may be the first bound of the objective that missed (`slo`), and
/// with every level passing, the most streams tried (`cap`).
pub fn explain(limits: &Limits, trials: &[TrialRecord], plan: &Plan) -> LimitBounds {
    explain_through(Phase::Concurrency, limits, trials, plan)
}

/// [`explain`] for the phases up to `last`, as a run that just finished `last` knows
/// them (the later phases' bounds are not worked out yet).
pub fn explain_through(
    last: Phase,
    limits: &Limits,
    trials: &[TrialRecord],
    plan: &Plan,
) -> LimitBounds {
    // A run over several variants: only the plan's variant's trials bound its limits.
    // (A run of one variant keeps every trial: an old log's trials may name a flash
    // attention default its parameters do not.)
    let several = trials
        .iter()
        .any(|t| t.config.variant != trials[0].config.variant);
    let own: Vec<TrialRecord>;
    let trials = if several {
        own = trials
            .iter()
            .filter(|t| t.config.variant == plan.variant)
            .cloned()
            .collect();
        &own[..]
    } else {
        trials
    };
    LimitBounds {
        max_context: context_bound(limits, trials, plan),
        best_batch: (last >= Phase::Batch)
            .then(|| batch_bound(limits, trials, plan))
            .flatten(),
        max_concurrency: (last >= Phase::Concurrency)
            .then(|| concurrency_bound(limits, trials, plan))
            .flatten(),
    }
}

fn context_bound(limits: &Limits, trials: &[TrialRecord], plan: &Plan) -> Option<Bound> {
    let answer = limits.max_context;
    if answer.is_some_and(|a| a >= plan.max_context) {
        return Some(Bound::TrainedContext {
            trained_context: plan.max_context,
        });
    }
    let context: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.phase == Phase::Context)
        .collect();
    first_not_stable_above(&context, answer, |t| t.config.ctx)
        .map(|t| failure_bound(t, t.config.ctx, &plan.timeouts))
}

fn batch_bound(limits: &Limits, trials: &[TrialRecord], plan: &Plan) -> Option<Bound> {
    let Some(ctx) = limits.max_context else {
        return Some(not_run("no context was stable"));
    };
    if !plan.batch_scaling {
        return Some(not_run("batch scaling is off (batch_adaptation.enabled)"));
    }
    let at_ctx: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.config.ctx == ctx && t.config.concurrency == 1 && t.stage == Stage::Verify)
        .collect();
    let Some(best) = limits.best_batch else {
        return first_not_stable_above(&at_ctx, None, |t| t.config.batch)
            .map(|t| failure_bound(t, t.config.batch, &plan.timeouts));
    };
    let next = at_ctx
        .iter()
        .filter(|t| t.config.batch > best)
        .min_by_key(|t| (t.config.batch, std::cmp::Reverse(t.id)));
    match next {
        None if best >= plan.max_batch => Some(Bound::Cap {
            cap: plan.max_batch,
        }),
        None => None,
        Some(t) if t.verdict != Verdict::Stable => {
            Some(failure_bound(t, t.config.batch, &plan.timeouts))
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

fn concurrency_bound(limits: &Limits, trials: &[TrialRecord], plan: &Plan) -> Option<Bound> {
    let Some(ctx) = limits.max_context else {
        return Some(not_run("no context was stable"));
    };
    let Some(batch) = limits.best_batch else {
        return Some(not_run(&format!("no batch was stable at context {ctx}")));
    };
    if !plan.concurrency {
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
        return Some(level_bound(t, &plan.timeouts));
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
/// The first GPU of a trial's llama.cpp breakdown, as its free and total memory.
fn breakdown_device(t: &TrialRecord) -> Option<crate::record::DeviceFree> {
    let d = t.memory_breakdown.as_ref()?.devices.first()?;
    Some(crate::record::DeviceFree {
        name: d.name.clone(),
        free_mib: d.free_mib,
        total_mib: Some(d.total_mib),
    })
}

/// What bound a context found by the offload phase: the nearest step with more on the
/// GPU, at the same context, and why it failed (GPU memory, with its figures).
pub fn offload_bound(t: &TrialRecord, plan: &Plan) -> Bound {
    failure_bound(t, t.config.ctx, &plan.timeouts)
}

fn failure_bound(t: &TrialRecord, at: u32, timeouts: &AdaptiveTimeouts) -> Bound {
    let trial_id = t.id;
    let timeout_s = || {
        timeouts
            .for_config(t.config.ctx, t.config.batch)
            .as_secs_f64()
    };
    let Some(failure) = &t.failure else {
        // Served, but not publishable: the context search's objective or timeout margin.
        match &t.reason {
            Some(Reason::ObjectiveMissed { miss }) => {
                return Bound::Slo {
                    at,
                    trial_id,
                    metric: miss.metric,
                    measured: miss.measured,
                    bound: miss.bound,
                }
            }
            Some(Reason::NearTimeout {
                slowest_ms,
                timeout_ms,
                margin,
            }) => {
                return Bound::Time {
                    at,
                    trial_id,
                    timeout_s: Some(timeout_ms / 1000.0),
                    message: format!(
                        "its slowest request took {:.0} % of the {:.0} s timeout, over the \
                         {:.0} % a published context keeps",
                        slowest_ms / timeout_ms * 100.0,
                        timeout_ms / 1000.0,
                        margin * 100.0
                    ),
                }
            }
            _ => {}
        }
        // Unstable: when every request that failed ran past its timeout, time bound it
        // (some requests fit in the timeout, not enough of them).
        if let Some(Reason::SuccessRate {
            failed, timed_out, ..
        }) = &t.reason
        {
            if *failed > 0 && timed_out == failed {
                let timeout_s = timeout_s();
                return Bound::Time {
                    at,
                    trial_id,
                    timeout_s: Some(timeout_s),
                    message: format!(
                        "{failed} of {} requests ran past the {timeout_s:.0} s timeout",
                        t.samples.len()
                    ),
                };
            }
        }
        return Bound::Instability {
            at,
            trial_id,
            success_rate: t.success_rate,
            cv: t.cv,
            reason: t.reason.clone(),
        };
    };
    match failure.kind {
        FailureKind::ThresholdBreach(metric) if metric.is_memory() => Bound::Memory {
            at,
            trial_id,
            threshold: Some(metric),
            peak_bytes: t.breach.as_ref().map(|b| b.value as u64),
            limit_bytes: t.breach.as_ref().map(|b| b.limit as u64),
            device: t
                .breach
                .as_ref()
                .and_then(|b| b.device.as_deref().cloned())
                .or_else(|| breakdown_device(t)),
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
            device: breakdown_device(t),
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

#[cfg(test)]
mod tests;
