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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::fixtures;
    use crate::record::{Breach, Metric, SampleRecord, TrialFailure};
    use crate::trial::verdict::{judge, Kind};
    use crate::trial::TrialSettings;
    use crate::tune::setup::plan;
    use crate::tune::RunParameters;
    use ozone_sdk::SloMetric;

    /// The fixture run's plan: trained context 32768, batch up to 256, ladder 1..8.
    fn facts() -> Plan {
        Plan {
            max_context: 32768,
            max_batch: 256,
            batch_scaling: true,
            concurrency: true,
            ..plan(
                &Config::default(),
                &fixtures::model(),
                &RunParameters::default(),
            )
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
        let b = explain(&fixture_limits(), &fixtures::trials(), &facts());
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
        let trials: Vec<TrialRecord> = fixtures::trials()
            .into_iter()
            .filter(|t| t.id != 5)
            .collect();
        let limits = Limits {
            max_context: Some(20480),
            ..Limits::default()
        };
        let b = explain(&limits, &trials, &facts());
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
            .map(crate::report::describe)
            .unwrap_or_default();
        assert!(
            text.contains("process-memory") && text.contains("1536 MiB"),
            "{text}"
        );
    }

    #[test]
    fn a_gpu_budget_breach_is_a_memory_bound() {
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
        let b = explain(&limits, &trials, &facts());
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
        let text = b
            .max_context
            .as_ref()
            .map(crate::report::describe)
            .unwrap_or_default();
        assert!(text.contains("gpu-memory-budget threshold"), "{text}");
    }

    #[test]
    fn the_trained_context_bounds_a_search_that_reached_it() {
        let limits = Limits {
            max_context: Some(32768),
            ..Limits::default()
        };
        let b = explain(&limits, &[], &facts());
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
        explain(&limits, &[t], &facts())
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
        assert!(
            crate::report::describe(&time).contains("too slow to fill it"),
            "{time:?}"
        );
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
        // Judged by the trial's own rule, as the runner judges it.
        let unstable = |samples: Vec<SampleRecord>| {
            let reason = judge(
                Kind::Verification,
                &samples,
                None,
                &TrialSettings::default(),
            );
            TrialRecord {
                stage: Stage::Verify,
                verdict: reason.verdict(),
                reason: Some(reason),
                failure: None,
                success_rate: 0.5,
                samples,
                ..context_trial()
            }
        };
        let time = context_bound_of(unstable(vec![ok.clone(), failed(FailureKind::Timeout)]));
        assert_eq!(time.kind(), "time", "{time:?}");
        assert!(
            crate::report::describe(&time).contains("1 of 2 requests ran past the"),
            "{}",
            crate::report::describe(&time)
        );
        let mixed = unstable(vec![
            ok.clone(),
            failed(FailureKind::Timeout),
            failed(FailureKind::BadOutput),
        ]);
        assert_eq!(context_bound_of(mixed).kind(), "instability");
        // A log written before samples said their failure's kind, or verdicts their
        // reason: instability, as then.
        let old = SampleRecord {
            failure: None,
            ..failed(FailureKind::Timeout)
        };
        assert_eq!(
            context_bound_of(unstable(vec![ok.clone(), old])).kind(),
            "instability"
        );
        let unexplained = TrialRecord {
            reason: None,
            ..unstable(vec![ok, failed(FailureKind::Timeout)])
        };
        assert_eq!(context_bound_of(unexplained).kind(), "instability");
    }

    #[test]
    fn an_unsteady_verification_is_bound_by_instability_with_its_figures() {
        let decode = [50.0, 80.0, 100.0, 65.0, 90.0];
        let samples: Vec<SampleRecord> = decode
            .iter()
            .enumerate()
            .map(|(i, d)| SampleRecord {
                index: i as u32,
                ok: true,
                decode_tps: Some(*d),
                ..SampleRecord::default()
            })
            .collect();
        let reason = judge(
            Kind::Verification,
            &samples,
            None,
            &TrialSettings::default(),
        );
        let t = TrialRecord {
            stage: Stage::Verify,
            verdict: reason.verdict(),
            reason: Some(reason.clone()),
            failure: None,
            success_rate: 1.0,
            samples,
            ..context_trial()
        };
        let bound = context_bound_of(t);
        assert!(
            matches!(&bound, Bound::Instability { reason: Some(r), .. } if *r == reason),
            "{bound:?}"
        );
        let text = crate::report::describe(&bound);
        assert!(
            text.starts_with("instability: at 24576 decode throughput varied"),
            "{text}"
        );
    }

    #[test]
    fn a_stable_batch_above_the_best_is_a_throughput_bound_and_skipped_phases_say_so() {
        let limits = Limits {
            best_batch: Some(128),
            ..fixture_limits()
        };
        let b = explain(&limits, &fixtures::trials(), &facts());
        assert!(
            matches!(b.best_batch, Some(Bound::Throughput { at: 256, trial_id: 8, best_tps, next_tps }) if next_tps > best_tps),
            "{:?}",
            b.best_batch
        );
        let skipped = Plan {
            concurrency: false,
            batch_scaling: false,
            ..facts()
        };
        let b = explain(&fixture_limits(), &fixtures::trials(), &skipped);
        assert!(matches!(b.best_batch, Some(Bound::NotRun { .. })));
        assert!(matches!(b.max_concurrency, Some(Bound::NotRun { .. })));
    }

    #[test]
    fn a_level_that_ran_stable_but_missed_the_objective_is_an_slo_bound() {
        use crate::record::{ConcurrencyFigures, Latency, SloMiss, SloVerdict};
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
        let b = explain(&limits, &trials, &facts());
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
        let b = explain(&limits, &trials, &facts());
        assert_eq!(b.max_concurrency, top.map(|cap| Bound::Cap { cap }));
    }
}
