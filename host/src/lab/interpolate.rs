//! Answers for configurations a profile never measured, from the measured neighbours.
//!
//! The answer is taken along one axis (context, else batch, else concurrency) among the
//! trials that share every other setting of the configuration asked for:
//! - above the smallest recorded failure (or unstable trial) on that axis: that failure,
//!   as recorded by the nearest one below;
//! - between the largest stable and the smallest failure: the nearer measured neighbour
//!   decides (a tie goes to the failure, the cautious answer; so does a value below
//!   every measured one when the lowest measured one failed);
//! - otherwise stable, with memory peaks, throughput, TTFT and duration interpolated
//!   linearly between the stable neighbours (extrapolated from the two nearest on one
//!   side). With no failure recorded, every context up to the trained one is stable.
//!
//! Across lines, memory only grows with context, batch and concurrency: a configuration
//! at or beyond a recorded failure in all three is that failure, whatever its own line
//! says.
//!
//! Every such answer carries a note saying how it was derived; the lab counts them.
//! Along batch and concurrency the lines are short (a batch phase at a context the
//! recorded run never reached shares nothing but the context curve's batch), so those
//! answers are the roughest; `--json` shows each derivation.

use crate::record::{Peaks, Stats, TrialConfig, TrialFailure, TrialRecord, Verdict};

/// A trial as the profile answers it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub record: TrialRecord,
    /// `Some(how)` when the configuration was never measured.
    pub interpolated: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    Context,
    Batch,
    Concurrency,
}

impl Axis {
    fn value(self, c: &TrialConfig) -> u32 {
        match self {
            Axis::Context => c.ctx,
            Axis::Batch => c.batch,
            Axis::Concurrency => c.concurrency,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Axis::Context => "context",
            Axis::Batch => "batch",
            Axis::Concurrency => "concurrency",
        }
    }

    /// Whether `a` and `b` agree on every setting but this axis.
    fn shares_the_rest(self, a: &TrialConfig, b: &TrialConfig) -> bool {
        let same_batch = a.batch == b.batch && a.ubatch == b.ubatch;
        a.kv_cache_type == b.kv_cache_type
            && (self == Axis::Context || a.ctx == b.ctx)
            && (self == Axis::Batch || same_batch)
            && (self == Axis::Concurrency || a.concurrency == b.concurrency)
    }
}

/// The answer for `config`, which no trial in `trials` measured. `trials` must not be
/// empty (profiles are validated).
pub fn answer(trials: &[TrialRecord], config: &TrialConfig) -> Answer {
    let answer = on_a_line(trials, config);
    match dominating_failure(trials, config) {
        Some(failed) if answer.record.verdict == Verdict::Stable => failure_like(
            failed,
            config,
            format!(
                "at or beyond the recorded failure of trial {} ({}) in context, batch and concurrency",
                failed.id, failed.config
            ),
        ),
        _ => answer,
    }
}

/// The recorded failure (or unstable trial) nearest below `config` in every setting.
fn dominating_failure<'a>(
    trials: &'a [TrialRecord],
    config: &TrialConfig,
) -> Option<&'a TrialRecord> {
    trials
        .iter()
        .filter(|t| {
            let c = &t.config;
            t.verdict != Verdict::Stable
                && c.kv_cache_type == config.kv_cache_type
                && c.ctx <= config.ctx
                && c.batch <= config.batch
                && c.concurrency <= config.concurrency
        })
        .max_by_key(|t| (t.config.ctx, t.config.batch, t.config.concurrency))
}

fn on_a_line(trials: &[TrialRecord], config: &TrialConfig) -> Answer {
    for axis in [Axis::Context, Axis::Batch, Axis::Concurrency] {
        let mut line: Vec<&TrialRecord> = trials
            .iter()
            .filter(|t| axis.shares_the_rest(&t.config, config))
            .collect();
        if !line.is_empty() {
            line.sort_by_key(|t| axis.value(&t.config));
            return along(axis, &line, config);
        }
    }
    // Nothing shares the other settings: answer from the context curve alone, ignoring
    // batch and concurrency.
    let mut line: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.config.kv_cache_type == config.kv_cache_type)
        .collect();
    if line.is_empty() {
        line = trials.iter().collect();
    }
    line.sort_by_key(|t| t.config.ctx);
    let mut answer = along(Axis::Context, &line, config);
    if let Some(note) = &mut answer.interpolated {
        note.push_str(" (no trial shares its batch and concurrency)");
    }
    answer
}

/// Answer along one axis; `line` is sorted by the axis value and not empty.
fn along(axis: Axis, line: &[&TrialRecord], config: &TrialConfig) -> Answer {
    let x = axis.value(config);
    let value = |t: &TrialRecord| axis.value(&t.config);
    let stable = |t: &&TrialRecord| t.verdict == Verdict::Stable;
    let below = line.iter().rev().find(|t| value(t) <= x).copied();
    let above = line.iter().find(|t| value(t) > x).copied();
    let failure_below = line.iter().rev().find(|t| value(t) <= x && !stable(t));
    let name = axis.name();

    if let Some(failed) = failure_below {
        let smallest = line.iter().find(|t| !stable(t)).map_or(x, |t| value(t));
        return failure_like(
            failed,
            config,
            format!(
                "{name} {x} is above the smallest recorded failure ({name} {smallest}): answered as trial {}",
                failed.id
            ),
        );
    }
    if let Some(up) = above.filter(|t| !stable(t)) {
        // In the gap between the last stable and the first failure.
        let nearer_is_failure = match below {
            Some(down) => value(up) - x <= x - value(down),
            None => true,
        };
        if nearer_is_failure {
            return failure_like(
                up,
                config,
                format!(
                    "{name} {x} is nearer the recorded failure at {name} {} than any stable trial",
                    value(up)
                ),
            );
        }
    }
    let points: Vec<&TrialRecord> = line.iter().copied().filter(stable).collect();
    let (a, b) = neighbours(&points, x, value);
    let record = blend(a, b, x, value, config);
    let how = match b {
        Some(b) if value(a) < x && x < value(b) => format!(
            "stable, figures interpolated between {name} {} and {}",
            value(a),
            value(b)
        ),
        Some(b) => format!(
            "stable, figures extrapolated from {name} {} and {}",
            value(a),
            value(b)
        ),
        None => format!("stable, figures of {name} {}", value(a)),
    };
    Answer {
        record,
        interpolated: Some(how),
    }
}

/// Two stable points to interpolate between: the bracketing pair when there is one,
/// else the two nearest on the side there are points, else the single one.
fn neighbours<'a>(
    points: &[&'a TrialRecord],
    x: u32,
    value: impl Fn(&TrialRecord) -> u32,
) -> (&'a TrialRecord, Option<&'a TrialRecord>) {
    let split = points.partition_point(|t| value(t) <= x);
    match (split, points.len()) {
        (_, 1) => (points[0], None),
        (0, _) => (points[0], Some(points[1])),
        (s, n) if s == n => (points[n - 2], Some(points[n - 1])),
        (s, _) => (points[s - 1], Some(points[s])),
    }
}

/// The failing neighbour's record, for the configuration asked for.
fn failure_like(source: &TrialRecord, config: &TrialConfig, how: String) -> Answer {
    let mut record = source.clone();
    record.config = config.clone();
    record.granted_ctx = None;
    if let Some(f) = &mut record.failure {
        *f = TrialFailure {
            kind: f.kind,
            message: format!("interpolated: {how}; recorded: {}", f.message),
        };
    }
    Answer {
        record,
        interpolated: Some(how),
    }
}

/// A stable record whose figures are linear in the axis value between `a` and `b`.
fn blend(
    a: &TrialRecord,
    b: Option<&TrialRecord>,
    x: u32,
    value: impl Fn(&TrialRecord) -> u32,
    config: &TrialConfig,
) -> TrialRecord {
    let mut record = a.clone();
    record.config = config.clone();
    record.granted_ctx = Some(config.ctx);
    record.failure = None;
    record.breach = None;
    let Some(b) = b else { return record };
    let (xa, xb) = (f64::from(value(a)), f64::from(value(b)));
    let t = if xb == xa {
        0.0
    } else {
        (f64::from(x) - xa) / (xb - xa)
    };
    let lerp = |ya: f64, yb: f64| (ya + t * (yb - ya)).max(0.0);
    // Ratios stay within what was measured: an extrapolated CV must not exceed the
    // tolerance both stable neighbours met.
    let within = |ya: f64, yb: f64| lerp(ya, yb).clamp(ya.min(yb), ya.max(yb));
    let lerp_u = |ya: Option<u64>, yb: Option<u64>| match (ya, yb) {
        (Some(ya), Some(yb)) => Some(lerp(ya as f64, yb as f64).round() as u64),
        (ya, _) => ya,
    };
    let lerp_f = |ya: Option<f64>, yb: Option<f64>| match (ya, yb) {
        (Some(ya), Some(yb)) => Some(lerp(ya, yb)),
        (ya, _) => ya,
    };
    let lerp_stats = |sa: &Option<Stats>, sb: &Option<Stats>| match (sa, sb) {
        (Some(sa), Some(sb)) => Some(Stats {
            n: sa.n,
            mean: lerp(sa.mean, sb.mean),
            stddev: lerp(sa.stddev, sb.stddev),
            p50: lerp(sa.p50, sb.p50),
            p95: lerp(sa.p95, sb.p95),
            min: lerp(sa.min, sb.min),
            max: lerp(sa.max, sb.max),
        }),
        (sa, _) => sa.clone(),
    };
    record.duration_ms = lerp(a.duration_ms as f64, b.duration_ms as f64).round() as u64;
    record.peaks = Peaks {
        gpu_mem_used_bytes: lerp_u(a.peaks.gpu_mem_used_bytes, b.peaks.gpu_mem_used_bytes),
        ram_used_bytes: lerp_u(a.peaks.ram_used_bytes, b.peaks.ram_used_bytes),
        process_rss_bytes: lerp_u(a.peaks.process_rss_bytes, b.peaks.process_rss_bytes),
        server_gpu_mem_bytes: lerp_u(a.peaks.server_gpu_mem_bytes, b.peaks.server_gpu_mem_bytes),
        gpu_temp_c: lerp_f(a.peaks.gpu_temp_c, b.peaks.gpu_temp_c),
        cpu_percent: lerp_f(a.peaks.cpu_percent, b.peaks.cpu_percent),
    };
    record.ttft_ms = lerp_stats(&a.ttft_ms, &b.ttft_ms);
    record.prefill_tps = lerp_stats(&a.prefill_tps, &b.prefill_tps);
    record.decode_tps = lerp_stats(&a.decode_tps, &b.decode_tps);
    record.cv = match (a.cv, b.cv) {
        (Some(ca), Some(cb)) => Some(within(ca, cb)),
        (ca, _) => ca,
    };
    record.success_rate = within(a.success_rate, b.success_rate);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Profile;
    use crate::record::FailureKind;

    /// The context-phase trials of a real run (16k demo model under 48 MiB).
    fn curve() -> Vec<TrialRecord> {
        let text = include_str!("../../../examples/profiles/demo-16k-48.profile.json");
        let profile: Profile = serde_json::from_str(text).expect("shipped profile");
        profile
            .trials
            .into_iter()
            .filter(|t| t.config.batch == 64 && t.config.concurrency == 1)
            .collect()
    }

    fn at(trials: &[TrialRecord], ctx: u32) -> TrialConfig {
        TrialConfig {
            ctx,
            ..trials[0].config.clone()
        }
    }

    #[test]
    fn in_the_gap_the_nearer_neighbour_decides_and_a_tie_is_a_failure() {
        // Keep the stable 8960 and the breach at 12544 only.
        let trials: Vec<_> = curve()
            .into_iter()
            .filter(|t| [8960, 12544].contains(&t.config.ctx))
            .collect();
        let near_stable = answer(&trials, &at(&trials, 9984));
        assert_eq!(near_stable.record.verdict, Verdict::Stable);
        let near_failure = answer(&trials, &at(&trials, 11776));
        assert_eq!(near_failure.record.verdict, Verdict::Failed);
        assert!(matches!(
            near_failure.record.failure.as_ref().map(|f| f.kind),
            Some(FailureKind::ThresholdBreach(_))
        ));
        let tie = answer(&trials, &at(&trials, 10752));
        assert_eq!(tie.record.verdict, Verdict::Failed);
        for a in [near_stable, near_failure, tie] {
            assert!(a.interpolated.is_some());
        }
    }

    #[test]
    fn without_a_failure_memory_is_extrapolated_upwards() {
        let trials: Vec<_> = curve()
            .into_iter()
            .filter(|t| t.verdict == Verdict::Stable)
            .collect();
        let top = trials.iter().map(|t| t.config.ctx).max().expect("stable");
        let rss = |t: &TrialRecord| t.peaks.process_rss_bytes.expect("rss");
        let top_rss = trials
            .iter()
            .filter(|t| t.config.ctx == top)
            .map(rss)
            .max()
            .expect("top");
        let far = answer(&trials, &at(&trials, 16384));
        assert_eq!(far.record.verdict, Verdict::Stable);
        assert!(rss(&far.record) > top_rss, "memory grows with the context");
        assert!(far
            .interpolated
            .is_some_and(|how| how.contains("extrapolated")));
    }

    #[test]
    fn a_failure_holds_for_every_configuration_beyond_it() {
        // 32k demo model under 56 MiB: batch 128 was stable at context 13312, context
        // 13568 (batch 64) was not. Batch 128's own line says nothing above 13312.
        let text = include_str!("../../../examples/profiles/demo-32k-56.profile.json");
        let trials = serde_json::from_str::<Profile>(text)
            .expect("profile")
            .trials;
        let beyond = TrialConfig {
            ctx: 13824,
            batch: 128,
            ubatch: 128,
            ..trials[0].config.clone()
        };
        let a = answer(&trials, &beyond);
        assert_ne!(a.record.verdict, Verdict::Stable);
        assert!(
            a.interpolated
                .as_deref()
                .is_some_and(|how| how.contains("at or beyond")),
            "{:?}",
            a.interpolated
        );
    }

    #[test]
    fn a_configuration_nothing_shares_is_answered_from_the_context_curve_and_says_so() {
        let trials = curve();
        let odd = TrialConfig {
            ctx: 7168,
            batch: 96,
            ubatch: 96,
            concurrency: 3,
            ..trials[0].config.clone()
        };
        let a = answer(&trials, &odd);
        assert_eq!(a.record.config, odd);
        assert!(a
            .interpolated
            .is_some_and(|how| how.contains("no trial shares")));
    }
}
