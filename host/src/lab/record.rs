//! `ozone lab record`: measures a model densely on this machine, so the lab can answer
//! any strategy's trials from measurements instead of guesses.
//!
//! What it measures, in order (each step's points go into the profile as they are measured):
//! 1. **Sweep**: a screen (warm-up + one full fill) at every `step` from the smallest
//!    context up, at the context search's batch and one stream, until
//!    `stop_after_failures` screens in a row were not stable (the first sustained
//!    failure and the steps past it) or the trained context; then the trained context
//!    itself, once, if the sweep stopped below it.
//! 2. **The boundary**: the last stable screen before that run of failures (`L`) and the
//!    first failure after it, each screened `repeats` times in all: how sharp the edge is.
//! 3. **Verifications** (the full statistical trial), `repeats` each, at the smallest
//!    context, the middle, `L − step` and `L`: success rate, CV and throughput spread.
//!    When `L` does not verify mostly stable, the verifications bisect the stably
//!    screened contexts between the largest that does and the smallest above it that
//!    does not: the largest that does is the profile's true limit.
//! 4. **Ladders** at the smallest, middle and top verified contexts: every batch of
//!    the batch ladder (one verification each, upwards until the first failure),
//!    then the concurrency levels at the context search's batch and at the largest
//!    stable batch (until the first level that is not stable).

use tokio_util::sync::CancellationToken;

use crate::record::{Phase, Stage, TrialConfig, TrialRecord, Variant, Verdict};
use crate::tune::driver::{trial_config, TrialExecutor};

use serde::{Deserialize, Serialize};

use super::profile::Point;

/// What `ozone lab record` is set to measure; the profile keeps it as measured (the
/// sweep's first context aligned to its step, the ladders' contexts). Profiles recorded
/// before it held the trained context, the initial batch and the KV cache type read
/// with zeros there.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordSettings {
    /// Context step of the screen sweep (a multiple of the host's granularity).
    pub step: u32,
    pub min_context: u32,
    /// The trained context (the sweep's ceiling).
    pub max_context: u32,
    /// The sweep stops after this many screens in a row that were not stable.
    pub stop_after_failures: u32,
    /// Measurements per repeated point (screens at the boundary, verifications).
    pub repeats: u32,
    /// Samples of a verification (`min_samples_per_config`).
    pub verify_samples: u32,
    /// The batch the context search runs at.
    pub initial_batch: u32,
    /// The batch ladder (empty: none).
    pub batches: Vec<u32>,
    /// Concurrency levels above 1 (empty: no concurrency ladder).
    pub concurrency_levels: Vec<u32>,
    pub variant: Variant,
    /// Contexts of the batch and concurrency ladders (filled as measured).
    pub ladder_contexts: Vec<u32>,
}

impl RecordSettings {
    /// The batch ladder for an initial batch and the largest: half the initial batch,
    /// then doublings from it up to `max_batch` (which is always on it).
    pub fn batch_ladder(initial: u32, max_batch: u32) -> Vec<u32> {
        let mut batches = vec![(initial / 2).max(1)];
        let mut b = initial.max(1);
        while b < max_batch {
            batches.push(b);
            b = b.saturating_mul(2);
        }
        batches.push(max_batch.max(1));
        batches.sort_unstable();
        batches.dedup();
        batches
    }
}

/// The trial was interrupted (Ctrl-C): what was measured so far.
#[derive(Debug)]
pub struct Interrupted(pub Vec<Point>);

/// Measures what [`RecordSettings`] asks for with `executor` (the trial runner on a
/// real server, as `ozone tune` runs trials; a simulation in tests); `progress` hears
/// about every finished trial. Returns the points and the settings as measured.
pub async fn record<E: TrialExecutor>(
    executor: &mut E,
    settings: &RecordSettings,
    cancel: &CancellationToken,
    progress: &mut dyn FnMut(Stage, &TrialRecord),
) -> Result<(Vec<Point>, RecordSettings), Interrupted> {
    let mut r = Recorder {
        executor,
        settings,
        cancel,
        progress,
        points: Vec::new(),
        next_id: 1,
    };
    match r.run().await {
        Some(measured) => Ok((r.points, measured)),
        None => Err(Interrupted(r.points)),
    }
}

struct Recorder<'a, E> {
    executor: &'a mut E,
    settings: &'a RecordSettings,
    cancel: &'a CancellationToken,
    progress: &'a mut dyn FnMut(Stage, &TrialRecord),
    points: Vec<Point>,
    next_id: u32,
}

impl<E: TrialExecutor> Recorder<'_, E> {
    /// `None` when interrupted.
    async fn run(&mut self) -> Option<RecordSettings> {
        let s = self.settings;
        let step = s.step.max(1);
        let first = s.min_context.div_ceil(step) * step;

        // 1. The sweep.
        let mut screened: Vec<(u32, bool)> = Vec::new();
        let mut failures_in_a_row = 0;
        let mut ctx = first.max(step);
        while ctx <= s.max_context {
            let stable = self.screen(ctx).await?.verdict == Verdict::Stable;
            screened.push((ctx, stable));
            failures_in_a_row = if stable { 0 } else { failures_in_a_row + 1 };
            if failures_in_a_row >= s.stop_after_failures.max(1) {
                break;
            }
            ctx += step;
        }
        // The trained context, once, when the sweep stopped below it: the first proposal
        // of many searches, and the top of the range the lab answers within (what lies
        // between the last failures and it is answered from them, never extrapolated).
        if screened.last().is_some_and(|&(c, _)| c < s.max_context) {
            self.screen(s.max_context).await?;
        }

        // 2. The boundary: the last stable screen before the final run of failures.
        let boundary = screened.iter().rposition(|&(_, stable)| stable);
        let stable_contexts: Vec<u32> = screened
            .iter()
            .filter(|(_, stable)| *stable)
            .map(|&(c, _)| c)
            .collect();
        if let Some(i) = boundary {
            let mut edge = vec![screened[i].0];
            edge.extend(screened.get(i + 1).map(|&(c, _)| c));
            for c in edge {
                for _ in 1..s.repeats {
                    self.screen(c).await?;
                }
            }
        }

        // 3. Verifications.
        let mut verified: Vec<u32> = Vec::new();
        if let Some(i) = boundary {
            let top = screened[i].0;
            let mid = nearest(&stable_contexts, top / 2);
            let below = stable_contexts.iter().rev().find(|&&c| c < top).copied();
            let mut targets = vec![stable_contexts[0], mid, top];
            targets.extend(below);
            targets.sort_unstable();
            targets.dedup();
            for c in targets {
                self.verify_line(c).await?;
                verified.push(c);
            }
            // When the boundary does not verify mostly stable, bisect the verifications
            // between the largest context that does and the smallest above it that does
            // not, over the stably screened contexts: the largest that does is the
            // profile's true limit.
            loop {
                let steady = |c: &u32| self.line_point(*c).is_some_and(Point::mostly_stable);
                let Some(lo) = verified.iter().copied().filter(steady).max() else {
                    break;
                };
                let Some(hi) = verified.iter().copied().filter(|c| *c > lo).min() else {
                    break;
                };
                let between: Vec<u32> = stable_contexts
                    .iter()
                    .copied()
                    .filter(|&c| lo < c && c < hi)
                    .collect();
                if between.is_empty() {
                    break;
                }
                let c = nearest(&between, lo + (hi - lo) / 2);
                self.verify_line(c).await?;
                verified.push(c);
            }
        }
        verified.sort_unstable();

        // 4. Ladders at the smallest, middle and top verified contexts.
        let mostly_stable: Vec<u32> = verified
            .iter()
            .copied()
            .filter(|&c| self.line_point(c).is_some_and(Point::mostly_stable))
            .collect();
        let mut ladder_contexts: Vec<u32> = match (mostly_stable.first(), mostly_stable.last()) {
            (Some(&lo), Some(&hi)) => vec![lo, nearest(&mostly_stable, (lo + hi) / 2), hi],
            _ => Vec::new(),
        };
        ladder_contexts.dedup();
        if s.batches.is_empty() && s.concurrency_levels.is_empty() {
            ladder_contexts.clear();
        }
        for &c in &ladder_contexts {
            let mut largest_stable = s.initial_batch;
            for &b in s.batches.iter().filter(|&&b| b != s.initial_batch) {
                let record = self
                    .verify(Phase::Batch, config(c, b, 1, s.variant))
                    .await?;
                match record.verdict {
                    Verdict::Stable => largest_stable = largest_stable.max(b),
                    // A larger batch needs more memory: the ladder stops at a failure.
                    Verdict::Failed if b > s.initial_batch => break,
                    _ => {}
                }
            }
            let mut ladder_batches = vec![s.initial_batch, largest_stable];
            ladder_batches.dedup();
            for b in ladder_batches {
                for &n in s.concurrency_levels.iter().filter(|&&n| n > 1) {
                    let record = self
                        .verify(Phase::Concurrency, config(c, b, n, s.variant))
                        .await?;
                    if record.verdict != Verdict::Stable {
                        break;
                    }
                }
            }
        }

        Some(RecordSettings {
            step,
            min_context: first,
            ladder_contexts,
            ..s.clone()
        })
    }

    /// The verification point of the context line at `ctx`, if measured.
    fn line_point(&self, ctx: u32) -> Option<&Point> {
        let c = config(ctx, self.settings.initial_batch, 1, self.settings.variant);
        self.points
            .iter()
            .find(|p| p.stage == Stage::Verify && p.config == c)
    }

    async fn screen(&mut self, ctx: u32) -> Option<TrialRecord> {
        let s = self.settings;
        self.measure(
            Phase::Context,
            Stage::Screen,
            config(ctx, s.initial_batch, 1, s.variant),
        )
        .await
    }

    /// `repeats` verifications of the context line at `ctx`.
    async fn verify_line(&mut self, ctx: u32) -> Option<()> {
        let s = self.settings;
        for _ in 0..s.repeats.max(1) {
            self.verify(Phase::Context, config(ctx, s.initial_batch, 1, s.variant))
                .await?;
        }
        Some(())
    }

    async fn verify(&mut self, phase: Phase, config: TrialConfig) -> Option<TrialRecord> {
        self.measure(phase, Stage::Verify, config).await
    }

    /// One trial, filed under its point; `None` when interrupted (the trial is dropped).
    async fn measure(
        &mut self,
        phase: Phase,
        stage: Stage,
        config: TrialConfig,
    ) -> Option<TrialRecord> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut record = self
            .executor
            .run(id, phase, stage, &config, self.cancel, &mut |_| {})
            .await
            .record;
        if self.cancel.is_cancelled() {
            return None;
        }
        // Server log lines would make a profile hundreds of KB.
        record.server_log_tail.clear();
        (self.progress)(stage, &record);
        match self
            .points
            .iter_mut()
            .find(|p| p.stage == stage && p.config == config)
        {
            Some(p) => p.runs.push(record.clone()),
            None => self.points.push(Point {
                config,
                stage,
                runs: vec![record.clone()],
            }),
        }
        Some(record)
    }
}

/// The value of `sorted` nearest `target` (the lower on a tie); `sorted` is not empty.
fn nearest(sorted: &[u32], target: u32) -> u32 {
    sorted
        .iter()
        .copied()
        .min_by_key(|&c| c.abs_diff(target))
        .unwrap_or(target)
}

fn config(ctx: u32, batch: u32, concurrency: u32, variant: Variant) -> TrialConfig {
    trial_config(variant, ctx, batch, concurrency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FailureKind, Metric, Peaks, Stats, TrialFailure};
    use crate::trial::{OnSample, TrialRun};

    /// A machine whose screens fail above `limit` tokens (× streams), whose
    /// verifications are unstable above `steady` tokens, and whose batches above 128
    /// run out of memory.
    struct Simulated {
        limit: u32,
        steady: u32,
        runs: Vec<(Stage, TrialConfig)>,
    }

    impl TrialExecutor for Simulated {
        async fn run(
            &mut self,
            id: u32,
            phase: Phase,
            stage: Stage,
            config: &TrialConfig,
            _cancel: &CancellationToken,
            _on_sample: OnSample<'_>,
        ) -> TrialRun {
            self.runs.push((stage, config.clone()));
            let tokens = config.ctx * config.concurrency;
            let fits = tokens <= self.limit && config.batch <= 128;
            let steady = stage == Stage::Screen || tokens <= self.steady;
            let verdict = match (fits, steady) {
                (false, _) => Verdict::Failed,
                (true, false) => Verdict::Unstable,
                (true, true) => Verdict::Stable,
            };
            let record = TrialRecord {
                id,
                phase,
                stage,
                config: config.clone(),
                started_at: chrono::Utc::now(),
                duration_ms: 1000,
                granted_ctx: Some(config.ctx),
                samples: Vec::new(),
                ttft_ms: Stats::from_values(&[100.0]),
                prefill_tps: Stats::from_values(&[1000.0]),
                decode_tps: Stats::from_values(&[50.0]),
                success_rate: 1.0,
                cv: Some(if steady { 0.01 } else { 0.3 }),
                peaks: Peaks {
                    process_rss_bytes: Some(u64::from(tokens) * 1000),
                    ..Peaks::default()
                },
                breach: None,
                failure: (!fits).then(|| TrialFailure {
                    kind: FailureKind::ThresholdBreach(Metric::ProcessMemory),
                    message: "simulated".into(),
                    fault: None,
                }),
                verdict,
                reason: None,
                stopped_early: None,
                server_log_tail: vec!["dropped".into()],
                concurrency: None,
                memory_breakdown: None,
            };
            TrialRun {
                record,
                series: Default::default(),
                server_cannot_start: false,
            }
        }
    }

    fn settings() -> RecordSettings {
        RecordSettings {
            step: 256,
            min_context: 2048,
            max_context: 16384,
            stop_after_failures: 3,
            repeats: 3,
            verify_samples: 3,
            initial_batch: 64,
            batches: RecordSettings::batch_ladder(64, 256),
            concurrency_levels: vec![1, 2, 4, 8],
            variant: Variant::default(),
            ladder_contexts: Vec::new(),
        }
    }

    async fn run(limit: u32, steady: u32) -> (Simulated, Vec<Point>, RecordSettings) {
        let mut bench = Simulated {
            limit,
            steady,
            runs: Vec::new(),
        };
        let (points, measured) = record(
            &mut bench,
            &settings(),
            &CancellationToken::new(),
            &mut |_, _| {},
        )
        .await
        .expect("not interrupted");
        (bench, points, measured)
    }

    #[test]
    fn the_batch_ladder_spans_half_the_initial_batch_to_the_largest() {
        assert_eq!(
            RecordSettings::batch_ladder(64, 256),
            vec![32, 64, 128, 256]
        );
        assert_eq!(
            RecordSettings::batch_ladder(16, 100),
            vec![8, 16, 32, 64, 100]
        );
    }

    #[tokio::test]
    async fn the_sweep_screens_every_step_to_three_failures_past_the_limit() {
        let (bench, points, _) = run(10_000, 16_384).await;
        let screens: Vec<u32> = bench
            .runs
            .iter()
            .filter(|(s, c)| *s == Stage::Screen && c.concurrency == 1)
            .map(|(_, c)| c.ctx)
            .collect();
        // 2048, 2304, … 9984 stable; 10240, 10496, 10752 fail; the trained context
        // once; then the edge repeats.
        let mut sweep: Vec<u32> = (2048..=10_752).step_by(256).collect();
        sweep.push(16_384);
        assert_eq!(&screens[..sweep.len()], &sweep[..]);
        let edge = |ctx| {
            points
                .iter()
                .find(|p| p.stage == Stage::Screen && p.config.ctx == ctx)
                .map(|p| p.runs.len())
        };
        assert_eq!(edge(9984), Some(3));
        assert_eq!(edge(10_240), Some(3));
        assert_eq!(edge(9728), Some(1));
        assert!(points
            .iter()
            .flat_map(|p| &p.runs)
            .all(|r| r.server_log_tail.is_empty()));
    }

    #[tokio::test]
    async fn verifications_step_down_from_an_unsteady_boundary_and_ladders_stop_at_failures() {
        let (_, points, measured) = run(10_000, 9_000).await;
        let verified = |ctx| {
            points
                .iter()
                .find(|p| p.stage == Stage::Verify && p.config.ctx == ctx && p.config.batch == 64)
        };
        for ctx in [2048, 4864, 9728, 9984] {
            assert_eq!(verified(ctx).map(|p| p.runs.len()), Some(3), "{ctx}");
        }
        assert!(!verified(9728).expect("below the boundary").mostly_stable());
        // Bisected between 4864 (steady) and 9728: 7168, 8448, 8960, then 9216 (not).
        for ctx in [7168, 8448, 8960, 9216] {
            assert!(verified(ctx).is_some(), "{ctx}");
        }
        assert!(verified(8960).expect("bisected").mostly_stable());
        assert!(verified(8704).is_none() && verified(9472).is_none());
        assert_eq!(measured.ladder_contexts, vec![2048, 4864, 8960]);
        // Batch 256 ran out of memory; concurrency stops at the first failing level.
        let at = |ctx, batch, n| {
            points
                .iter()
                .any(|p| p.config == config(ctx, batch, n, Variant::default()))
        };
        assert!(at(2048, 32, 1) && at(2048, 128, 1) && at(2048, 256, 1));
        assert!(at(2048, 64, 4) && at(2048, 128, 4) && at(2048, 64, 8));
        assert!(!at(2048, 64, 16));
        assert!(at(8960, 64, 2) && !at(8960, 64, 4));
    }
}
