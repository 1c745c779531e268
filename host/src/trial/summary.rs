//! From samples to a trial's statistics and verdict.

use super::TrialSettings;
use crate::record::{SampleRecord, Stats, TrialFailure, Verdict};

/// The statistics of a trial's samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub ttft_ms: Option<Stats>,
    pub prefill_tps: Option<Stats>,
    pub decode_tps: Option<Stats>,
    pub success_rate: f64,
    pub cv: Option<f64>,
}

pub fn summarize(samples: &[SampleRecord]) -> Summary {
    let ok: Vec<&SampleRecord> = samples.iter().filter(|s| s.ok).collect();
    let stats = |f: fn(&SampleRecord) -> Option<f64>| {
        Stats::from_values(&ok.iter().filter_map(|s| f(s)).collect::<Vec<_>>())
    };
    let decode_tps = stats(|s| s.decode_tps);
    Summary {
        ttft_ms: stats(|s| s.ttft_ms),
        prefill_tps: stats(|s| s.prefill_tps),
        cv: decode_tps.as_ref().and_then(Stats::cv),
        decode_tps,
        success_rate: if samples.is_empty() {
            0.0
        } else {
            ok.len() as f64 / samples.len() as f64
        },
    }
}

/// Stable iff nothing failed the trial as a whole, the success rate reaches the
/// confidence threshold and the decode CV stays within the variance tolerance.
/// A trial where no sample succeeded failed, with the first sample's failure.
pub fn verdict(
    summary: &Summary,
    trial_failure: Option<&TrialFailure>,
    settings: &TrialSettings,
) -> Verdict {
    if trial_failure.is_some() || summary.success_rate == 0.0 {
        return Verdict::Failed;
    }
    let steady = summary
        .cv
        .is_some_and(|cv| cv <= settings.variance_tolerance);
    if summary.success_rate >= settings.confidence_threshold && steady {
        Verdict::Stable
    } else {
        Verdict::Unstable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ok: bool, decode: f64) -> SampleRecord {
        SampleRecord {
            ok,
            decode_tps: ok.then_some(decode),
            ttft_ms: ok.then_some(100.0),
            ..SampleRecord::default()
        }
    }

    #[test]
    fn steady_samples_are_stable() {
        let s = summarize(&[sample(true, 100.0), sample(true, 104.0), sample(true, 98.0)]);
        assert_eq!(s.success_rate, 1.0);
        assert!(s.cv.is_some_and(|cv| cv < 0.05));
        assert_eq!(
            verdict(&s, None, &TrialSettings::default()),
            Verdict::Stable
        );
    }

    #[test]
    fn noisy_or_failing_samples_are_unstable() {
        let settings = TrialSettings::default();
        let noisy = summarize(&[sample(true, 50.0), sample(true, 150.0), sample(true, 100.0)]);
        assert_eq!(verdict(&noisy, None, &settings), Verdict::Unstable);
        // 4 of 5 = 0.8 < 0.85.
        let mut five: Vec<_> = (0..4).map(|_| sample(true, 100.0)).collect();
        five.push(sample(false, 0.0));
        assert_eq!(
            verdict(&summarize(&five), None, &settings),
            Verdict::Unstable
        );
    }

    #[test]
    fn no_success_or_trial_failure_is_failed() {
        let settings = TrialSettings::default();
        assert_eq!(
            verdict(&summarize(&[sample(false, 0.0)]), None, &settings),
            Verdict::Failed
        );
        let f = TrialFailure {
            kind: crate::record::FailureKind::Timeout,
            message: "x".into(),
        };
        let s = summarize(&[sample(true, 100.0)]);
        assert_eq!(verdict(&s, Some(&f), &settings), Verdict::Failed);
    }
}
