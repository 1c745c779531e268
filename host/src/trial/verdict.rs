//! The stability rules, in one place: what makes a screen, a verification and a
//! concurrency level stable, the confidence rule sampling uses to stop early, and how a
//! spread is held against the run's noise floor. Each verdict comes with its
//! [`Reason`]: the rule that decided and the figures it was held to.
//!
//! - A **screen** is stable when its one request was served whole (no spread: one
//!   value has none).
//! - A **verification** is stable when at least `confidence_threshold` of its requests
//!   succeeded and the robust spread of decode throughput (1.4826 × MAD / median,
//!   [`Spread`]) is within `variance_tolerance`. With a single decode figure there is no
//!   spread to judge; the requests decide alone.
//! - A **concurrency level** is stable when at least `confidence_threshold` of its
//!   requests succeeded and nothing failed it (a breach, too many timeouts, the server
//!   dying). Its spread is not judged: at N streams, per-request decode speed varies
//!   because the streams share the machine. The objective, if any, is judged apart.
//! - A spread over the tolerance is the **configuration's own** only when the machine is
//!   steady enough to tell — its noise floor within the tolerance — and the spread
//!   stands clear of that floor (more than [`NOISE_MARGIN`] times it); the driver
//!   measures the floor and re-measures the configuration ([`against_floor`]).

use super::TrialSettings;
use crate::record::{
    FailureKind, NoiseFloor, Phase, Reason, SampleRecord, Spread, SpreadCheck, Stage, TrialFailure,
};

/// A spread over the tolerance is the configuration's own only when it is more than
/// this many times the machine's noise floor: a machine whose throughput varies 20 % at
/// the smallest context can make any configuration vary 30 %.
pub const NOISE_MARGIN: f64 = 2.0;

/// Which rule a trial is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Screen,
    Verification,
    Level,
}

impl Kind {
    pub fn of(phase: Phase, stage: Stage) -> Self {
        match (phase, stage) {
            (Phase::Concurrency, _) => Kind::Level,
            (_, Stage::Screen) => Kind::Screen,
            (_, Stage::Verify) => Kind::Verification,
        }
    }
}

/// Whether `ok` successes of `of` requests reach the confidence threshold.
pub fn meets_confidence(ok: u32, of: u32, threshold: f64) -> bool {
    of > 0 && f64::from(ok) / f64::from(of) >= threshold
}

/// The verdict's reason for a trial of `kind` with these samples (in order) and, if the
/// trial failed as a whole, its failure.
pub fn judge(
    kind: Kind,
    samples: &[SampleRecord],
    failure: Option<&TrialFailure>,
    settings: &TrialSettings,
) -> Reason {
    let of = samples.len() as u32;
    let ok = samples.iter().filter(|s| s.ok).count() as u32;
    if failure.is_some() || ok == 0 {
        return Reason::Failure;
    }
    let needed = settings.confidence_threshold;
    let success_rate = f64::from(ok) / f64::from(of);
    let meets = match kind {
        // A screen's one request is its verdict.
        Kind::Screen => ok == of,
        Kind::Verification | Kind::Level => meets_confidence(ok, of, needed),
    };
    if !meets {
        let failed: Vec<&SampleRecord> = samples.iter().filter(|s| !s.ok).collect();
        let timed_out = failed
            .iter()
            .filter(|s| s.failure == Some(FailureKind::Timeout))
            .count();
        return Reason::SuccessRate {
            success_rate,
            needed,
            failed: failed.len() as u32,
            timed_out: timed_out as u32,
        };
    }
    match kind {
        Kind::Screen => Reason::Served { of },
        Kind::Level => Reason::Level {
            success_rate,
            needed,
        },
        Kind::Verification => {
            let decode: Vec<f64> = samples
                .iter()
                .filter(|s| s.ok)
                .filter_map(|s| s.decode_tps)
                .collect();
            match Spread::of(&decode) {
                None => Reason::Served { of },
                Some(spread) => {
                    let check = SpreadCheck {
                        spread: spread.value,
                        tolerance: settings.variance_tolerance,
                        samples: spread.samples,
                        outliers: spread.outliers,
                        floor: None,
                        remeasure_of: None,
                    };
                    if check.spread <= check.tolerance {
                        Reason::Steady(check)
                    } else {
                        Reason::Unsteady(check)
                    }
                }
            }
        }
    }
}

/// A re-measurement of a configuration whose first measurement (`remeasure_of`) varied
/// more than the tolerance, held against the run's noise floor (`None` when the
/// configuration is the floor's own): steady; or over the tolerance and clear of a floor
/// that is itself within the tolerance, the configuration's instability; or else the
/// machine's noise (a machine that varies more than the tolerance on its own cannot tell
/// a configuration's spread from its own). Any other reason (a failure, too few
/// successes) stands.
pub fn against_floor(reason: Reason, floor: Option<NoiseFloor>, remeasure_of: u32) -> Reason {
    let (Reason::Steady(check) | Reason::Unsteady(check) | Reason::WithinNoise(check)) = reason
    else {
        return reason;
    };
    let check = SpreadCheck {
        floor,
        remeasure_of: Some(remeasure_of),
        ..check
    };
    match floor {
        _ if check.spread <= check.tolerance => Reason::Steady(check),
        Some(f) if f.spread > check.tolerance || check.spread <= NOISE_MARGIN * f.spread => {
            Reason::WithinNoise(check)
        }
        _ => Reason::Unsteady(check),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Verdict;

    fn sample(ok: bool, decode: f64) -> SampleRecord {
        SampleRecord {
            ok,
            decode_tps: ok.then_some(decode),
            ttft_ms: ok.then_some(100.0),
            ..SampleRecord::default()
        }
    }

    fn samples(decode: &[f64]) -> Vec<SampleRecord> {
        decode.iter().map(|d| sample(true, *d)).collect()
    }

    fn verdict(kind: Kind, samples: &[SampleRecord]) -> Reason {
        judge(kind, samples, None, &TrialSettings::default())
    }

    #[test]
    fn steady_samples_are_stable_and_one_slow_sample_does_not_change_that() {
        let steady = verdict(Kind::Verification, &samples(&[100.0, 104.0, 98.0]));
        assert!(matches!(steady, Reason::Steady(_)), "{steady:?}");
        let one_slow = verdict(
            Kind::Verification,
            &samples(&[61.0, 60.2, 59.5, 60.8, 31.0]),
        );
        let Reason::Steady(check) = one_slow else {
            panic!("{one_slow:?}")
        };
        assert_eq!(check.outliers, 1);
    }

    #[test]
    fn noisy_or_failing_samples_are_unstable_and_say_which_rule() {
        let noisy = verdict(Kind::Verification, &samples(&[50.0, 150.0, 100.0]));
        assert!(matches!(noisy, Reason::Unsteady(_)), "{noisy:?}");
        assert_eq!(noisy.verdict(), Verdict::Unstable);
        // 4 of 5 = 0.8 < 0.85.
        let mut five = samples(&[100.0; 4]);
        five.push(SampleRecord {
            failure: Some(FailureKind::Timeout),
            ..sample(false, 0.0)
        });
        let low = verdict(Kind::Verification, &five);
        assert_eq!(
            low,
            Reason::SuccessRate {
                success_rate: 0.8,
                needed: 0.85,
                failed: 1,
                timed_out: 1
            }
        );
    }

    #[test]
    fn a_screen_is_its_one_request_and_a_single_figure_has_no_spread() {
        assert_eq!(
            verdict(Kind::Screen, &samples(&[55.0])),
            Reason::Served { of: 1 }
        );
        assert_eq!(
            verdict(Kind::Verification, &samples(&[55.0])),
            Reason::Served { of: 1 }
        );
        assert_eq!(
            verdict(Kind::Screen, &[sample(false, 0.0)]),
            Reason::Failure
        );
    }

    #[test]
    fn a_level_is_judged_on_its_requests_not_on_the_spread_the_streams_make() {
        // Two streams on two cores: per-request decode varies because they share them.
        let level = verdict(Kind::Level, &samples(&[40.0, 12.0, 38.0, 11.0, 41.0, 13.0]));
        assert_eq!(level.verdict(), Verdict::Stable, "{level:?}");
        assert!(matches!(level, Reason::Level { .. }));
    }

    #[test]
    fn a_trial_failure_or_no_success_fails() {
        let f = TrialFailure::new(FailureKind::Timeout, "x");
        let settings = TrialSettings::default();
        assert_eq!(
            judge(Kind::Verification, &samples(&[100.0]), Some(&f), &settings),
            Reason::Failure
        );
        assert_eq!(
            verdict(Kind::Level, &[sample(false, 0.0)]).verdict(),
            Verdict::Failed
        );
    }

    #[test]
    fn a_spread_is_the_configuration_s_only_when_clear_of_the_floor() {
        let unsteady = verdict(Kind::Verification, &samples(&[50.0, 80.0, 100.0, 65.0]));
        let floor = |spread| {
            Some(NoiseFloor {
                spread,
                ctx: 2048,
                trial_id: 3,
            })
        };
        let quiet = against_floor(unsteady.clone(), floor(0.03), 7);
        assert!(matches!(quiet, Reason::Unsteady(_)), "{quiet:?}");
        // 22 %: within twice a floor of 14 %.
        let mild = verdict(
            Kind::Verification,
            &samples(&[100.0, 85.0, 115.0, 85.0, 115.0]),
        );
        let noisy = against_floor(mild, floor(0.14), 7);
        let Reason::WithinNoise(check) = &noisy else {
            panic!("{noisy:?}")
        };
        assert_eq!(
            (check.remeasure_of, noisy.verdict()),
            (Some(7), Verdict::Stable)
        );
        // A machine noisier than the tolerance on its own cannot tell, however far the
        // configuration varies.
        let wild = verdict(Kind::Verification, &samples(&[10.0, 80.0, 100.0, 30.0]));
        assert!(matches!(
            against_floor(wild, floor(0.2), 7),
            Reason::WithinNoise(_)
        ));
        // Without a floor (the configuration is the floor's own) the plain rule stands.
        assert!(matches!(
            against_floor(unsteady, None, 7),
            Reason::Unsteady(_)
        ));
        let steady = verdict(Kind::Verification, &samples(&[100.0, 101.0, 99.0]));
        assert!(matches!(
            against_floor(steady, floor(0.3), 7),
            Reason::Steady(_)
        ));
    }
}
