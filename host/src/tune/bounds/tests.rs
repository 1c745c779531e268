//! What bound each limit, on the fixture run and on trials made to fail each way.

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
fn the_plan() -> Plan {
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
    let b = explain(&fixture_limits(), &fixtures::trials(), &the_plan());
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
            device: None,
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
    let b = explain(&limits, &trials, &the_plan());
    let Some(Bound::Memory {
        at: 32768,
        trial_id: 1,
        threshold: Some(Metric::ProcessMemory),
        peak_bytes: Some(peak),
        limit_bytes: Some(limit),
        ..
    }) = b.max_context
    else {
        panic!("{:?}", b.max_context)
    };
    assert!(peak > limit, "{peak} vs {limit}");
    assert_eq!(limit, 1536 << 20);
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
    let b = explain(&limits, &trials, &the_plan());
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
}

#[test]
fn the_trained_context_bounds_a_search_that_reached_it() {
    let limits = Limits {
        max_context: Some(32768),
        ..Limits::default()
    };
    let b = explain(&limits, &[], &the_plan());
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
    explain(&limits, &[t], &the_plan())
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
        device: None,
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
    assert!(
        matches!(&time, Bound::Time { message, .. } if message.starts_with("1 of 2 requests ran past the")),
        "{time:?}"
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
}

#[test]
fn a_stable_batch_above_the_best_is_a_throughput_bound_and_skipped_phases_say_so() {
    let limits = Limits {
        best_batch: Some(128),
        ..fixture_limits()
    };
    let b = explain(&limits, &fixtures::trials(), &the_plan());
    assert!(
        matches!(b.best_batch, Some(Bound::Throughput { at: 256, trial_id: 8, best_tps, next_tps }) if next_tps > best_tps),
        "{:?}",
        b.best_batch
    );
    let skipped = Plan {
        concurrency: false,
        batch_scaling: false,
        ..the_plan()
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
    let b = explain(&limits, &trials, &the_plan());
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
    let b = explain(&limits, &trials, &the_plan());
    assert_eq!(b.max_concurrency, top.map(|cap| Bound::Cap { cap }));
}
