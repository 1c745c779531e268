//! The search loop, independent of where trials come from: a real server (`ozone tune`)
//! or a recorded profile (the lab). The plugins decide what to try; the driver runs each
//! configuration at the stage it needs, feeds the outcome back and enforces the host's
//! limits.
//!
//! The context search runs on *screens* (one full fill: does it load, fit, at what
//! peak); the plugin's `best()` is then *verified* by a full statistical trial before it
//! is published. A verification that is not stable goes back to the plugin through
//! `observe` and the search continues, at most [`MAX_VERIFICATIONS`] times. Batch and
//! concurrency trials are all verifications (a concurrency level is a closed loop of
//! streams, judged against the objective). `Plan::screen_trials = false` verifies every
//! context proposal instead (the behaviour before stages). A phase that does not run
//! says why in its limit's bound (`not_run`).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::plugin::{
    concurrency_outcome, slo_verdict, trial_outcome, BatchProposal, BatchScaler,
    ConcurrencyOutcome, ConcurrencySearch, ContextSearch, PluginError, Slo, Strategy, TimeoutRule,
    TrialOutcome,
};
use crate::record::{
    ConcurrencyFigures, KvCacheType, Phase, SampleRecord, Stage, TrialConfig, TrialRecord, Verdict,
};
use crate::trial::{figures_of, AdaptiveTimeouts, OnSample, TrialRun, TrialRunner};
use crate::tune::limits::{explain, BoundFacts};
use crate::tune::Limits;

/// Most trials one phase may ask for: a plugin that never says "done" is stopped here.
pub const MAX_TRIALS_PER_PHASE: usize = 32;

/// Most verifications of a context search's `best()` (the WIT documents it): after that
/// many unstable verifications the run publishes no context. Five, not three: a server's
/// memory can grow a little with every request, so the largest context a verification
/// holds can sit a few steps below the largest a screen holds (on the shipped `demo-32k-36` profile the screens
/// pass up to 10240 tokens, the verifications breach from 9728 and hold at 9216),
/// and a memory-refuted verification costs little, since the guard stops it at the
/// breach, as an early verdict stops one whose first request fails.
pub const MAX_VERIFICATIONS: u32 = 5;

/// Most measurements of one configuration and stage in the context phase: a proposal
/// repeated (to measure noise) is measured again twice at most, then answered with its
/// last outcome.
pub const MAX_MEASUREMENTS: usize = 3;

/// Largest physical micro-batch used (`-ub`); llama.cpp's own default.
const MAX_UBATCH: u32 = 512;

/// Runs one configuration. `ozone tune` runs it on a real server.
pub trait TrialExecutor {
    /// Runs `config` at `stage`, handing each sample to `on_sample` as it finishes.
    fn run(
        &mut self,
        id: u32,
        phase: Phase,
        stage: Stage,
        config: &TrialConfig,
        cancel: &CancellationToken,
        on_sample: OnSample<'_>,
    ) -> impl Future<Output = TrialRun>;
}

/// The real thing: `ozone tune` and `ozone lab record` run trials on a server.
impl TrialExecutor for TrialRunner {
    async fn run(
        &mut self,
        id: u32,
        phase: Phase,
        stage: Stage,
        config: &TrialConfig,
        cancel: &CancellationToken,
        on_sample: OnSample<'_>,
    ) -> TrialRun {
        self.run_reporting(id, phase, stage, config, cancel, on_sample)
            .await
    }
}

/// Hears about every step of the loop: writes the log, moves the progress bars.
pub trait TuneObserver {
    fn phase_started(&mut self, _phase: Phase, _estimated_trials: usize) {}
    fn trial_started(&mut self, _id: u32, _phase: Phase, _stage: Stage, _config: &TrialConfig) {}
    /// One sample of the running trial `id`, as soon as its request finished.
    fn sample(&mut self, _id: u32, _stage: Stage, _config: &TrialConfig, _sample: &SampleRecord) {}
    /// Called once per trial actually run (not for trials reused from the log).
    fn trial_finished(&mut self, run: &TrialRun) -> Result<(), TuneError>;
    fn trial_reused(&mut self, _record: &TrialRecord) {}
    /// A plugin's proposal, to be measured at `stage` (`None`: the plugin is done), or
    /// (stage verify, context phase) the plugin's `best()` about to be verified.
    fn decision(&mut self, _phase: Phase, _plugin: &str, _proposed: Option<u32>, _stage: Stage) {}
    /// The loop ended, however it ended.
    fn finished(&mut self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("plugin {plugin} asked for more than {MAX_TRIALS_PER_PHASE} trials in the {phase:?} phase without finishing")]
    Runaway { plugin: String, phase: Phase },
    #[error(
        "plugin {plugin} named {value} as its best {what}, but no stable trial of it was measured"
    )]
    UnmeasuredBest {
        plugin: String,
        what: &'static str,
        value: String,
    },
    #[error(
        "plugin {plugin} named context {value} as its best again after its verification \
         (trial {trial_id}) was not stable; a context search must not name a context whose \
         verification failed (rebuild it with the current ozone-sdk, whose bracket drops it)"
    )]
    RefutedBest {
        plugin: String,
        value: u32,
        trial_id: u32,
    },
    #[error(
        "plugin {plugin} named {value} streams as its best concurrency, but no level of {value} \
         streams passed (stable, and the objective held)"
    )]
    UnpassedLevel { plugin: String, value: u32 },
    #[error("interrupted")]
    Interrupted,
    #[error("writing the trial log: {0}")]
    Log(String),
    /// The first trial's server never came up, for a reason that is not memory.
    #[error("{0}")]
    ServerCannotStart(String),
}

/// Every trial of one run, keyed by configuration and stage, in the order measured: a
/// configuration is measured again only when a context plugin repeats a proposal, and
/// `--resume` answers the k-th request of a configuration with its k-th record.
#[derive(Debug, Default)]
pub struct TrialBook {
    by_key: HashMap<(TrialConfig, Stage), Vec<usize>>,
    records: Vec<TrialRecord>,
}

impl TrialBook {
    pub fn from_records(records: impl IntoIterator<Item = TrialRecord>) -> Self {
        let mut book = Self::default();
        for r in records {
            book.insert(r);
        }
        book
    }

    /// Adds a record; one with the id of a record already in the book replaces it.
    fn insert(&mut self, record: TrialRecord) {
        if let Some(old) = self.records.iter_mut().find(|r| r.id == record.id) {
            if old.config == record.config && old.stage == record.stage {
                *old = record;
                return;
            }
        }
        self.by_key
            .entry((record.config.clone(), record.stage))
            .or_default()
            .push(self.records.len());
        self.records.push(record);
    }

    /// How many times `config` was measured at `stage`.
    pub fn count(&self, config: &TrialConfig, stage: Stage) -> usize {
        self.by_key
            .get(&(config.clone(), stage))
            .map_or(0, Vec::len)
    }

    /// The `k`-th measurement (0-based) of `config` at `stage`.
    pub fn nth(&self, config: &TrialConfig, stage: Stage, k: usize) -> Option<&TrialRecord> {
        let indices = self.by_key.get(&(config.clone(), stage))?;
        indices.get(k).map(|&i| &self.records[i])
    }

    /// The latest measurement of `config` at `stage`.
    pub fn latest(&self, config: &TrialConfig, stage: Stage) -> Option<&TrialRecord> {
        let indices = self.by_key.get(&(config.clone(), stage))?;
        indices.last().map(|&i| &self.records[i])
    }

    pub fn records(&self) -> &[TrialRecord] {
        &self.records
    }

    fn next_id(&self) -> u32 {
        self.records.iter().map(|r| r.id).max().unwrap_or(0) + 1
    }
}

/// How many times each (configuration, stage) was asked for in the current phase.
#[derive(Debug, Default)]
struct Requests(HashMap<(TrialConfig, Stage), usize>);

impl Requests {
    /// The 0-based index of this request of `config` at `stage` in the phase.
    fn next(&mut self, config: &TrialConfig, stage: Stage) -> usize {
        let n = self.0.entry((config.clone(), stage)).or_default();
        *n += 1;
        *n - 1
    }
}

/// What the host fixes for every trial of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Batch used while searching the context (the batch scaler's starting point).
    pub initial_batch: u32,
    /// `batch_adaptation.enabled`: false keeps the initial batch, no batch phase.
    pub batch_scaling: bool,
    /// `batch_adaptation.max_batch`: the batch scaler's ceiling.
    pub max_batch: u32,
    /// The context search's ceiling: the model's trained context (aligned down).
    pub max_context: u32,
    pub kv_cache_type: KvCacheType,
    /// `ozone.screen_trials`: screen context proposals and verify only the answer
    /// (true), or verify every context proposal (false).
    pub screen_trials: bool,
    /// Whether the concurrency phase runs (`--skip-concurrency` turns it off).
    pub concurrency: bool,
    /// The objective each concurrency level is judged against (empty: none).
    pub slo: Slo,
    pub stabilization_delay: Duration,
    /// Request timeouts of the run's trials (to say which timeout bound a limit).
    pub timeouts: AdaptiveTimeouts,
    /// Expected trials per phase, for progress only.
    pub estimated_context_trials: usize,
    pub estimated_batch_trials: usize,
    pub estimated_concurrency_trials: usize,
}

impl Plan {
    /// The stage context proposals are measured at.
    fn proposal_stage(&self) -> Stage {
        if self.screen_trials {
            Stage::Screen
        } else {
            Stage::Verify
        }
    }
}

/// The run's three plugins, one per kind.
pub struct Plugins {
    pub context: ContextSearch,
    pub batch: BatchScaler,
    pub concurrency: ConcurrencySearch,
}

pub struct Driver<'a, E, O> {
    pub executor: &'a mut E,
    pub observer: &'a mut O,
    pub book: TrialBook,
    pub snapshot: &'a HardwareSnapshot,
    pub thresholds: &'a Thresholds,
    pub cancel: CancellationToken,
}

impl<E: TrialExecutor, O: TuneObserver + Send> Driver<'_, E, O> {
    /// Context search, then batch scaling at the context found, then the concurrency
    /// search at both. Stops early (with what was found) when a phase finds nothing.
    /// Each limit comes with what bound it ([`explain`]; a phase that did not run, why).
    pub async fn run(&mut self, plan: &Plan, plugins: &mut Plugins) -> Result<Limits, TuneError> {
        let mut limits = self.find_limits(plan, plugins).await?;
        let facts = BoundFacts {
            max_context: plan.max_context,
            max_batch: plan.max_batch,
            batch_scaling: plan.batch_scaling,
            concurrency: plan.concurrency,
            timeouts: &plan.timeouts,
        };
        limits.bounds = explain(&limits, self.book.records(), &facts);
        Ok(limits)
    }

    async fn find_limits(
        &mut self,
        plan: &Plan,
        plugins: &mut Plugins,
    ) -> Result<Limits, TuneError> {
        let mut limits = Limits {
            max_context: self.search_context(plan, &mut plugins.context).await?,
            ..Limits::default()
        };
        let Some(ctx) = limits.max_context else {
            return Ok(limits);
        };
        let best_batch = if plan.batch_scaling {
            self.scale_batch(plan, ctx, &mut plugins.batch).await?
        } else {
            // The context search already verified the initial batch at `ctx` as stable.
            Some(BatchProposal::whole(plan.initial_batch, MAX_UBATCH))
        };
        limits.best_batch = best_batch.map(|b| b.batch);
        let Some(batch) = best_batch else {
            return Ok(limits);
        };
        if plan.concurrency {
            limits.max_concurrency = self
                .search_concurrency(plan, ctx, batch, &mut plugins.concurrency)
                .await?;
        }
        Ok(limits)
    }

    /// Proposals screened until the plugin is done, then its `best()` verified; an
    /// unstable verification goes back to the plugin and the search goes on.
    async fn search_context(
        &mut self,
        plan: &Plan,
        plugin: &mut ContextSearch,
    ) -> Result<Option<u32>, TuneError> {
        self.observer
            .phase_started(Phase::Context, plan.estimated_context_trials);
        let config = |ctx| trial_config(ctx, plan.initial_batch, 1, plan.kv_cache_type);
        let timeouts = plan.timeouts.rule();
        let mut requests = Requests::default();
        let mut refuted: Vec<(u32, u32)> = Vec::new();
        for _ in 0..MAX_VERIFICATIONS {
            let stage = plan.proposal_stage();
            let best = self
                .search(
                    Phase::Context,
                    stage,
                    plugin,
                    config,
                    &timeouts,
                    &mut requests,
                )
                .await?;
            let Some(ctx) =
                self.checked_best(best, plugin.name(), "context", None, |c| Some(c.ctx))?
            else {
                return Ok(None);
            };
            if let Some(&(_, trial_id)) = refuted.iter().find(|(c, _)| *c == ctx) {
                return Err(TuneError::RefutedBest {
                    plugin: plugin.name().to_string(),
                    value: ctx,
                    trial_id,
                });
            }
            // Proposals measured at verify already are their own verification.
            let record = match requests.seen_verified(&self.book, &config(ctx)) {
                Some(record) => record,
                None => {
                    self.observer
                        .decision(Phase::Context, plugin.name(), Some(ctx), Stage::Verify);
                    self.trial(
                        Phase::Context,
                        Stage::Verify,
                        config(ctx),
                        &mut requests,
                        |_| {},
                    )
                    .await?
                }
            };
            if record.verdict == Verdict::Stable {
                return Ok(Some(ctx));
            }
            refuted.push((ctx, record.id));
            plugin.observe(&trial_outcome(
                &record,
                self.snapshot,
                self.thresholds,
                &timeouts,
            ))?;
        }
        tracing::warn!(
            "{} verifications of plugin {}'s best context were not stable: no context is published",
            MAX_VERIFICATIONS,
            plugin.name()
        );
        Ok(None)
    }

    async fn scale_batch(
        &mut self,
        plan: &Plan,
        ctx: u32,
        plugin: &mut BatchScaler,
    ) -> Result<Option<BatchProposal>, TuneError> {
        self.observer
            .phase_started(Phase::Batch, plan.estimated_batch_trials);
        let config = |p: BatchProposal| TrialConfig {
            ubatch: p.ubatch,
            ..trial_config(ctx, p.batch, 1, plan.kv_cache_type)
        };
        let mut requests = Requests::default();
        let best = self
            .search(
                Phase::Batch,
                Stage::Verify,
                plugin,
                config,
                &plan.timeouts.rule(),
                &mut requests,
            )
            .await?;
        self.checked_best(best, plugin.name(), "batch", Some(Stage::Verify), |c| {
            (c.ctx == ctx).then_some(BatchProposal {
                batch: c.batch,
                ubatch: c.ubatch,
            })
        })
    }

    /// Proposal, trial at `stage`, outcome, until the plugin is done; then its `best()`.
    async fn search<S: Strategy<Outcome = TrialOutcome>>(
        &mut self,
        phase: Phase,
        stage: Stage,
        plugin: &mut S,
        config_for: impl Fn(S::Proposal) -> TrialConfig,
        timeouts: &TimeoutRule,
        requests: &mut Requests,
    ) -> Result<Option<S::Proposal>, TuneError>
    where
        S::Proposal: Copy,
    {
        for trials in 0..=MAX_TRIALS_PER_PHASE {
            let proposed = plugin.propose()?;
            // The observer shows the value the phase varies.
            let shown = proposed.map(|p| {
                let c = config_for(p);
                match phase {
                    Phase::Context => c.ctx,
                    Phase::Batch => c.batch,
                    Phase::Concurrency => c.concurrency,
                }
            });
            self.observer.decision(phase, plugin.name(), shown, stage);
            let Some(value) = proposed else {
                return Ok(plugin.best()?);
            };
            if trials == MAX_TRIALS_PER_PHASE {
                break;
            }
            let record = self
                .trial(phase, stage, config_for(value), requests, |_| {})
                .await?;
            plugin.observe(&trial_outcome(
                &record,
                self.snapshot,
                self.thresholds,
                timeouts,
            ))?;
        }
        Err(TuneError::Runaway {
            plugin: plugin.name().to_string(),
            phase,
        })
    }

    /// The concurrency plugin proposes stream counts at `ctx` and `batch`; each level is
    /// a closed-loop trial (a verification) judged against the objective. Returns the
    /// plugin's `best()`, which must have passed.
    async fn search_concurrency(
        &mut self,
        plan: &Plan,
        ctx: u32,
        batch: BatchProposal,
        plugin: &mut ConcurrencySearch,
    ) -> Result<Option<u32>, TuneError> {
        self.observer
            .phase_started(Phase::Concurrency, plan.estimated_concurrency_trials);
        let mut requests = Requests::default();
        let mut levels: Vec<(u32, ConcurrencyOutcome)> = Vec::new();
        for trials in 0..=MAX_TRIALS_PER_PHASE {
            let proposed = plugin.propose()?;
            self.observer
                .decision(Phase::Concurrency, plugin.name(), proposed, Stage::Verify);
            let Some(streams) = proposed else {
                let best = plugin.best()?;
                let passed = |n: u32| levels.iter().any(|(s, o)| *s == n && o.passed());
                if let Some(value) = best.filter(|n| !passed(*n)) {
                    return Err(TuneError::UnpassedLevel {
                        plugin: plugin.name().to_string(),
                        value,
                    });
                }
                return Ok(best);
            };
            if trials == MAX_TRIALS_PER_PHASE {
                break;
            }
            let config = TrialConfig {
                ubatch: batch.ubatch,
                ..trial_config(ctx, batch.batch, streams, plan.kv_cache_type)
            };
            if !levels.is_empty() && self.book.count(&config, Stage::Verify) == 0 {
                // Let the machine settle (temperatures, freed memory) between levels.
                tokio::select! {
                    _ = tokio::time::sleep(plan.stabilization_delay) => {}
                    _ = self.cancel.cancelled() => return Err(TuneError::Interrupted),
                }
            }
            let (snapshot, thresholds) = (self.snapshot, self.thresholds);
            let judge = |record: &TrialRecord| {
                let figures = figures_of(record);
                let outcome = concurrency_outcome(
                    record,
                    &figures,
                    snapshot,
                    thresholds,
                    &plan.timeouts.rule(),
                    &plan.slo,
                );
                (figures, outcome)
            };
            // The judgement goes into the record before it is logged; a level measured
            // by an earlier phase (one stream) is judged from its samples.
            let record = self
                .trial(
                    Phase::Concurrency,
                    Stage::Verify,
                    config,
                    &mut requests,
                    |record| {
                        let (figures, outcome) = judge(record);
                        record.concurrency = Some(ConcurrencyFigures {
                            slo: slo_verdict(&outcome),
                            ..figures
                        });
                    },
                )
                .await?;
            let (_, outcome) = judge(&record);
            plugin.observe(&outcome)?;
            levels.push((streams, outcome));
        }
        Err(TuneError::Runaway {
            plugin: plugin.name().to_string(),
            phase: Phase::Concurrency,
        })
    }

    /// Runs a configuration at a stage, or hands back an earlier measurement: in the
    /// context phase the k-th request of a (configuration, stage) is its k-th record,
    /// measured anew up to [`MAX_MEASUREMENTS`] times; other phases measure each once.
    /// `finish` completes a record before it is logged (a reused one in the book).
    async fn trial(
        &mut self,
        phase: Phase,
        stage: Stage,
        config: TrialConfig,
        requests: &mut Requests,
        finish: impl FnOnce(&mut TrialRecord),
    ) -> Result<TrialRecord, TuneError> {
        let k = requests.next(&config, stage);
        let limit = if phase == Phase::Context {
            MAX_MEASUREMENTS
        } else {
            1
        };
        let earlier = match self.book.nth(&config, stage, k) {
            Some(record) if phase == Phase::Context => Some(record),
            _ if k >= limit || (phase != Phase::Context) => self.book.latest(&config, stage),
            _ => None,
        };
        if let Some(record) = earlier {
            let mut record = record.clone();
            finish(&mut record);
            self.observer.trial_reused(&record);
            self.book.insert(record.clone());
            return Ok(record);
        }
        if self.cancel.is_cancelled() {
            return Err(TuneError::Interrupted);
        }
        let id = self.book.next_id();
        self.observer.trial_started(id, phase, stage, &config);
        let observer = &mut *self.observer;
        let mut on_sample = |sample: &SampleRecord| observer.sample(id, stage, &config, sample);
        let mut run = self
            .executor
            .run(id, phase, stage, &config, &self.cancel, &mut on_sample)
            .await;
        if self.cancel.is_cancelled() {
            // A trial cut short by Ctrl-C proves nothing: it is not logged, and
            // `--resume` runs it again.
            return Err(TuneError::Interrupted);
        }
        finish(&mut run.record);
        self.observer.trial_finished(&run)?;
        // No server of this run has come up yet, and this one could not for a reason
        // that is not memory: every other configuration would fail the same way.
        let never_served = self
            .book
            .records()
            .iter()
            .all(|r| r.samples.is_empty() && r.granted_ctx.is_none());
        let faulted = run
            .record
            .failure
            .as_ref()
            .is_some_and(|f| f.fault.is_some());
        if faulted || (run.server_cannot_start && never_served) {
            return Err(TuneError::ServerCannotStart(cannot_start(&run.record)));
        }
        self.book.insert(run.record.clone());
        Ok(run.record)
    }

    /// A plugin's `best()` must name a value this run measured as stable (at `stage`,
    /// when given).
    fn checked_best<T: PartialEq + Copy + std::fmt::Display>(
        &self,
        best: Option<T>,
        plugin: &str,
        what: &'static str,
        stage: Option<Stage>,
        value_of: impl Fn(&TrialConfig) -> Option<T>,
    ) -> Result<Option<T>, TuneError> {
        let Some(value) = best else { return Ok(None) };
        let measured = self.book.records().iter().any(|r| {
            r.verdict == Verdict::Stable
                && stage.is_none_or(|s| r.stage == s)
                && value_of(&r.config) == Some(value)
        });
        if measured {
            Ok(Some(value))
        } else {
            Err(TuneError::UnmeasuredBest {
                plugin: plugin.to_string(),
                what,
                value: value.to_string(),
            })
        }
    }
}

impl Requests {
    /// The record the phase's latest verify-stage request of `config` was answered
    /// with, if the phase asked for one.
    fn seen_verified(&self, book: &TrialBook, config: &TrialConfig) -> Option<TrialRecord> {
        let asked = *self.0.get(&(config.clone(), Stage::Verify))?;
        let k = asked.min(MAX_MEASUREMENTS) - 1;
        book.nth(config, Stage::Verify, k)
            .or_else(|| book.latest(config, Stage::Verify))
            .cloned()
    }
}

/// Why a run stops after a server that cannot start, or cannot run on this machine at
/// all (a [`ServerFault`](crate::record::ServerFault)), with what the server logged.
fn cannot_start(record: &TrialRecord) -> String {
    let tail = if record.server_log_tail.is_empty() {
        " It logged nothing.".to_string()
    } else {
        format!(
            " Its last lines:\n  {}",
            record.server_log_tail.join("\n  ")
        )
    };
    match &record.failure {
        Some(f) if f.fault.is_some() => format!(
            "{}. No other configuration would fare better: stopped after trial {}.{tail}",
            f.message, record.id
        ),
        f => format!(
            "llama-server cannot start: {}. That is not a lack of memory, so no other \
             configuration would start either: stopped after the first trial.{tail}",
            f.as_ref()
                .map_or("it did not come up", |f| f.message.as_str())
        ),
    }
}

/// The configuration the driver runs for a context, batch and stream count.
pub fn trial_config(ctx: u32, batch: u32, concurrency: u32, kv: KvCacheType) -> TrialConfig {
    TrialConfig {
        ctx,
        batch,
        ubatch: batch.min(MAX_UBATCH),
        concurrency,
        kv_cache_type: kv,
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a synthetic machine: a context runs up to a hidden limit (out of
    //! memory above it), a batch is faster up to 128, two streams are the most it
    //! sustains (by default) and the time to first token grows by 100 ms per stream;
    //! chosen verifications can be made unstable. The plugins are the real built-in
    //! components (and the misbehaving test guest).

    use super::*;
    use crate::backend::{ModelMetadata, SizeClass};
    use crate::plugin::{
        self, ContextBounds, HardwareFacts, PluginHost, PluginRef, SloBound, SloMetric,
    };
    use crate::record::{FailureKind, Peaks, SampleSeries, Stats, TrialFailure};
    use crate::tune::Bound;

    const LIMIT: u32 = 100_000;
    const TRAINED: u32 = 131_072;
    const TOKENS: u32 = 16;

    struct Machine {
        runs: Vec<(TrialConfig, Stage)>,
        /// Contexts whose verification is unstable (1 of 3 samples fails).
        flaky_verify: Vec<u32>,
        /// Every verification is unstable.
        all_verifications_flaky: bool,
        /// The most streams that run; more run out of memory.
        max_streams: u32,
    }

    impl Default for Machine {
        fn default() -> Self {
            Self {
                runs: Vec::new(),
                flaky_verify: Vec::new(),
                all_verifications_flaky: false,
                max_streams: 2,
            }
        }
    }

    impl TrialExecutor for Machine {
        async fn run(
            &mut self,
            id: u32,
            phase: Phase,
            stage: Stage,
            config: &TrialConfig,
            _cancel: &CancellationToken,
            on_sample: OnSample<'_>,
        ) -> TrialRun {
            self.runs.push((config.clone(), stage));
            let fits = config.ctx <= LIMIT && config.concurrency <= self.max_streams;
            let flaky = stage == Stage::Verify
                && (self.all_verifications_flaky || self.flaky_verify.contains(&config.ctx));
            let tps = 100.0 + f64::from(config.batch.min(128));
            let ttft = 100.0 * f64::from(config.concurrency);
            let n = if stage == Stage::Screen { 1 } else { 3 };
            let samples: Vec<SampleRecord> = (0..n)
                .map(|index| SampleRecord {
                    index,
                    ok: fits && !(flaky && index == 1),
                    decode_tps: Some(tps),
                    ttft_ms: Some(ttft),
                    completion_tokens: Some(TOKENS),
                    total_ms: Some(ttft + f64::from(TOKENS - 1) / tps * 1000.0),
                    ..SampleRecord::default()
                })
                .collect();
            for sample in &samples {
                on_sample(sample);
            }
            let ok = samples.iter().filter(|s| s.ok).count();
            let stats = Stats::from_values(&vec![tps; ok]);
            let verdict = match (fits, flaky) {
                (false, _) => Verdict::Failed,
                (true, true) => Verdict::Unstable,
                (true, false) => Verdict::Stable,
            };
            TrialRun {
                record: TrialRecord {
                    id,
                    phase,
                    stage,
                    config: config.clone(),
                    started_at: chrono::Utc::now(),
                    duration_ms: 1000,
                    granted_ctx: Some(config.ctx),
                    success_rate: ok as f64 / f64::from(n),
                    samples,
                    ttft_ms: stats.clone(),
                    prefill_tps: stats.clone(),
                    cv: stats.as_ref().map(|_| 0.0),
                    decode_tps: stats,
                    peaks: Peaks::default(),
                    breach: None,
                    failure: (!fits).then(|| TrialFailure {
                        kind: FailureKind::OutOfMemory,
                        message: "synthetic".into(),
                        fault: None,
                    }),
                    verdict,
                    stopped_early: None,
                    server_log_tail: Vec::new(),
                    concurrency: None,
                },
                series: SampleSeries::default(),
                server_cannot_start: false,
            }
        }
    }

    impl Machine {
        fn count(&self, ctx: u32, stage: Stage) -> usize {
            self.runs
                .iter()
                .filter(|(c, s)| c.ctx == ctx && *s == stage && c.concurrency == 1)
                .count()
        }
    }

    #[derive(Default)]
    struct Quiet {
        reused: usize,
        samples: usize,
        verify_decisions: Vec<u32>,
    }

    impl TuneObserver for Quiet {
        fn sample(&mut self, _: u32, _: Stage, _: &TrialConfig, _: &SampleRecord) {
            self.samples += 1;
        }
        fn trial_finished(&mut self, _run: &TrialRun) -> Result<(), TuneError> {
            Ok(())
        }
        fn trial_reused(&mut self, _record: &TrialRecord) {
            self.reused += 1;
        }
        fn decision(&mut self, phase: Phase, _: &str, proposed: Option<u32>, stage: Stage) {
            if phase == Phase::Context && stage == Stage::Verify {
                self.verify_decisions.extend(proposed);
            }
        }
    }

    fn host() -> PluginHost {
        // A shared cache: compiling the components once is enough for every test.
        let cache = std::env::temp_dir().join("ozone-driver-tests-components");
        PluginHost::new(Default::default(), Some(cache)).expect("engine")
    }

    fn model() -> plugin::ModelFacts {
        let facts = ModelMetadata {
            name: "synthetic".into(),
            architecture: Some("llama".into()),
            parameter_count: Some(1_000_000_000),
            size_class: SizeClass::Small,
            trained_context: Some(TRAINED),
            block_count: Some(16),
            head_count: Some(16),
            head_count_kv: Some(4),
            embedding_length: Some(2048),
            key_length: Some(128),
            value_length: Some(128),
            layers: Vec::new(),
            experts: None,
            weights_bytes: Some(1 << 30),
            digest: None,
        };
        plugin::model_facts(
            &facts,
            ContextBounds::new(2048, TRAINED, 256),
            None,
            &Default::default(),
        )
    }

    fn plugins() -> Plugins {
        plugins_judging(&Slo::default())
    }

    /// The built-in plugins, the concurrency ladder judging `slo`.
    fn plugins_judging(slo: &Slo) -> Plugins {
        let (host, hw, model) = (host(), HardwareFacts::default(), model());
        let context = host
            .load_context(
                &PluginRef::Builtin("binary-search".into()),
                "{}",
                &hw,
                &model,
                &Default::default(),
            )
            .expect("binary-search loads");
        Plugins {
            context,
            batch: batch_scaler(&host),
            concurrency: ladder(&host, slo),
        }
    }

    fn ladder(host: &PluginHost, slo: &Slo) -> ConcurrencySearch {
        host.load_concurrency(
            &PluginRef::Builtin("concurrency-ladder".into()),
            r#"{"levels": [1, 2, 4, 8]}"#,
            &HardwareFacts::default(),
            &model(),
            &plugin::concurrency_bounds(64),
            slo,
        )
        .expect("concurrency-ladder loads")
    }

    fn batch_scaler(host: &PluginHost) -> BatchScaler {
        host.load_batch(
            &PluginRef::Builtin("batch-scaler".into()),
            "{}",
            &HardwareFacts::default(),
            &model(),
            &plugin::batch_bounds(256, 512, plan().initial_batch),
        )
        .expect("batch-scaler loads")
    }

    /// The misbehaving test guest as the context search, with `settings`.
    fn misbehaving(settings: &str) -> Plugins {
        let host = host();
        let path = std::path::PathBuf::from(ozone_test_artifacts::MISBEHAVING);
        let context = host
            .load_context(
                &PluginRef::File(path),
                settings,
                &HardwareFacts::default(),
                &model(),
                &Default::default(),
            )
            .expect("the misbehaving guest loads");
        Plugins {
            context,
            batch: batch_scaler(&host),
            concurrency: ladder(&host, &Slo::default()),
        }
    }

    fn plan() -> Plan {
        Plan {
            initial_batch: 64,
            batch_scaling: true,
            max_batch: 256,
            max_context: TRAINED,
            kv_cache_type: KvCacheType::F16,
            screen_trials: true,
            concurrency: true,
            slo: Slo::default(),
            stabilization_delay: Duration::ZERO,
            timeouts: AdaptiveTimeouts::default(),
            estimated_context_trials: 8,
            estimated_batch_trials: 3,
            estimated_concurrency_trials: 4,
        }
    }

    /// What a tune on the test machine gave: its limits, every trial, what was observed.
    struct Tuned {
        limits: Result<Limits, TuneError>,
        trials: Vec<TrialRecord>,
        observer: Quiet,
    }

    /// A tune on `machine` that starts from `book`'s trials (a resume) or none.
    async fn tune_on(
        machine: &mut Machine,
        book: TrialBook,
        plan: &Plan,
        mut plugins: Plugins,
    ) -> Tuned {
        let snapshot = crate::hardware::probe(&Default::default());
        let thresholds = Thresholds::default();
        let mut observer = Quiet::default();
        let mut driver = Driver {
            executor: machine,
            observer: &mut observer,
            book,
            snapshot: &snapshot,
            thresholds: &thresholds,
            cancel: CancellationToken::new(),
        };
        let limits = driver.run(plan, &mut plugins).await;
        let trials = driver.book.records().to_vec();
        Tuned {
            limits,
            trials,
            observer,
        }
    }

    #[tokio::test]
    async fn screens_search_the_context_and_one_verification_publishes_it() {
        let mut machine = Machine::default();
        let Tuned {
            limits,
            trials,
            observer,
        } = tune_on(&mut machine, TrialBook::default(), &plan(), plugins()).await;
        let limits = limits.unwrap();

        let ctx = limits.max_context.expect("a stable context");
        assert!(ctx <= LIMIT && LIMIT - ctx < 256, "found {ctx}");
        let context: Vec<&TrialRecord> = trials
            .iter()
            .filter(|t| t.phase == Phase::Context)
            .collect();
        // Every proposal was screened; the answer alone was verified, and is stable.
        let verified: Vec<&&TrialRecord> = context
            .iter()
            .filter(|t| t.stage == Stage::Verify)
            .collect();
        assert_eq!(verified.len(), 1, "{context:#?}");
        assert_eq!(
            (verified[0].config.ctx, verified[0].verdict),
            (ctx, Verdict::Stable)
        );
        assert_eq!(observer.verify_decisions, vec![ctx]);
        assert!(context
            .iter()
            .filter(|t| t.config.ctx != ctx)
            .all(|t| t.stage == Stage::Screen && t.samples.len() == 1));
        // One granularity step above the answer failed.
        assert!(context
            .iter()
            .any(|t| t.config.ctx == ctx + 256 && t.verdict == Verdict::Failed));
        assert_eq!(
            limits.bounds.max_context,
            Some(Bound::Memory {
                at: ctx + 256,
                trial_id: context
                    .iter()
                    .find(|t| t.config.ctx == ctx + 256)
                    .map_or(0, |t| t.id),
                threshold: None,
                peak_bytes: None,
                limit_bytes: None,
            })
        );

        assert_eq!(
            limits.best_batch,
            Some(128),
            "throughput stops improving past 128"
        );
        assert!(matches!(
            limits.bounds.best_batch,
            Some(Bound::Throughput { at: 256, .. })
        ));
        assert_eq!(limits.max_concurrency, Some(2), "4 streams fail");
        assert!(matches!(
            limits.bounds.max_concurrency,
            Some(Bound::Memory { at: 4, .. })
        ));
        for (i, run) in machine.runs.iter().enumerate() {
            assert!(!machine.runs[..i].contains(run), "{run:?} measured twice");
        }
        // Batch and concurrency trials are verifications.
        assert!(trials
            .iter()
            .filter(|t| t.phase != Phase::Context)
            .all(|t| t.stage == Stage::Verify));
        // The batch scaler's first proposal (64) and concurrency 1 were measured before.
        assert!(observer.reused >= 2, "reused {}", observer.reused);
        let ladder: Vec<u32> = machine
            .runs
            .iter()
            .filter(|(c, _)| c.concurrency > 1)
            .map(|(c, _)| c.concurrency)
            .collect();
        assert_eq!(
            ladder,
            vec![2, 4],
            "the climb stops at the first failing level"
        );
        // Every sample reached the observer as it was measured.
        let samples: usize = trials.iter().map(|t| t.samples.len()).sum();
        assert_eq!(observer.samples, samples);
    }

    #[tokio::test]
    async fn an_unstable_verification_goes_back_to_the_plugin_and_the_search_goes_on() {
        let mut first = Machine::default();
        let Tuned { limits, .. } =
            tune_on(&mut first, TrialBook::default(), &plan(), plugins()).await;
        let noisy = limits.unwrap().max_context.unwrap();

        let mut machine = Machine {
            flaky_verify: vec![noisy],
            ..Machine::default()
        };
        let Tuned {
            limits,
            trials,
            observer,
        } = tune_on(&mut machine, TrialBook::default(), &plan(), plugins()).await;
        let limits = limits.unwrap();
        let ctx = limits.max_context.expect("a verified context");
        // binary-search withdrew the refuted context: its next best, below, was verified.
        assert!(ctx < noisy, "{ctx} vs {noisy}");
        assert_eq!(observer.verify_decisions, vec![noisy, ctx]);
        assert_eq!(machine.count(noisy, Stage::Verify), 1);
        assert!(trials.iter().any(|t| t.config.ctx == ctx
            && t.stage == Stage::Verify
            && t.verdict == Verdict::Stable));
        // What bound the context is the unstable verification just above it.
        assert!(
            matches!(limits.bounds.max_context, Some(Bound::Instability { at, .. }) if at == noisy),
            "{:?}",
            limits.bounds.max_context
        );
    }

    #[tokio::test]
    async fn unstable_verifications_up_to_the_bound_publish_no_context() {
        let mut machine = Machine {
            all_verifications_flaky: true,
            ..Machine::default()
        };
        let Tuned { limits, trials, .. } =
            tune_on(&mut machine, TrialBook::default(), &plan(), plugins()).await;
        let limits = limits.unwrap();
        assert_eq!(limits.max_context, None);
        let verifications = trials.iter().filter(|t| t.stage == Stage::Verify).count();
        assert_eq!(verifications, MAX_VERIFICATIONS as usize);
        assert!(matches!(
            limits.bounds.max_context,
            Some(Bound::Instability { .. })
        ));
        assert!(matches!(
            limits.bounds.best_batch,
            Some(Bound::NotRun { .. })
        ));
    }

    #[tokio::test]
    async fn a_plugin_naming_a_refuted_context_again_is_an_error_naming_it() {
        let mut machine = Machine {
            flaky_verify: vec![8192],
            ..Machine::default()
        };
        let Tuned { limits, .. } = tune_on(
            &mut machine,
            TrialBook::default(),
            &plan(),
            misbehaving(r#"{"mode": "stubborn", "value": 8192}"#),
        )
        .await;
        let err = limits.expect_err("the plugin ignored its failed verification");
        assert!(
            matches!(err, TuneError::RefutedBest { value: 8192, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("misbehaving"), "{err}");
        assert_eq!(machine.count(8192, Stage::Verify), 1);
    }

    #[tokio::test]
    async fn without_screens_every_context_proposal_is_verified() {
        let plan = Plan {
            screen_trials: false,
            ..plan()
        };
        let mut machine = Machine::default();
        let Tuned {
            limits,
            trials,
            observer,
        } = tune_on(&mut machine, TrialBook::default(), &plan, plugins()).await;
        let ctx = limits.unwrap().max_context.unwrap();
        assert!(ctx <= LIMIT && LIMIT - ctx < 256, "found {ctx}");
        assert!(trials.iter().all(|t| t.stage == Stage::Verify));
        // Every proposal was a verify decision, and the answer's own trial is its
        // verification: no trial beyond the proposals.
        let context_runs = machine
            .runs
            .iter()
            .filter(|(c, _)| c.batch == plan.initial_batch && c.concurrency == 1)
            .count();
        assert_eq!(context_runs, observer.verify_decisions.len());
        for (i, run) in machine.runs.iter().enumerate() {
            assert!(!machine.runs[..i].contains(run), "{run:?} measured twice");
        }
    }

    #[tokio::test]
    async fn a_repeated_proposal_is_measured_three_times_at_most_and_replays_on_resume() {
        let settings = r#"{"mode": "propose", "value": 4096}"#;
        let mut machine = Machine::default();
        let Tuned { limits, trials, .. } = tune_on(
            &mut machine,
            TrialBook::default(),
            &plan(),
            misbehaving(settings),
        )
        .await;
        assert!(matches!(limits, Err(TuneError::Runaway { .. })));
        assert_eq!(machine.count(4096, Stage::Screen), MAX_MEASUREMENTS);
        assert_eq!(trials.len(), MAX_MEASUREMENTS);

        // Resumed from those records, the same requests are answered by them.
        let mut second = Machine::default();
        let Tuned { limits, .. } = tune_on(
            &mut second,
            TrialBook::from_records(trials),
            &plan(),
            misbehaving(settings),
        )
        .await;
        assert!(matches!(limits, Err(TuneError::Runaway { .. })));
        assert!(second.runs.is_empty(), "ran again: {:?}", second.runs);
    }

    #[tokio::test]
    async fn a_resumed_book_replays_without_running_again() {
        let mut first = Machine {
            flaky_verify: vec![99_840],
            ..Machine::default()
        };
        let Tuned { limits, trials, .. } =
            tune_on(&mut first, TrialBook::default(), &plan(), plugins()).await;
        let limits = limits.unwrap();

        let mut second = Machine {
            flaky_verify: vec![99_840],
            ..Machine::default()
        };
        let Tuned {
            limits: replayed, ..
        } = tune_on(
            &mut second,
            TrialBook::from_records(trials),
            &plan(),
            plugins(),
        )
        .await;
        assert_eq!(replayed.unwrap(), limits);
        assert!(second.runs.is_empty(), "ran again: {:?}", second.runs);
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_before_the_next_trial() {
        let snapshot = crate::hardware::probe(&Default::default());
        let thresholds = Thresholds::default();
        let mut machine = Machine::default();
        let mut plugins = plugins();
        let mut observer = Quiet::default();
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut driver = Driver {
            executor: &mut machine,
            observer: &mut observer,
            book: TrialBook::default(),
            snapshot: &snapshot,
            thresholds: &thresholds,
            cancel,
        };
        let result = driver.run(&plan(), &mut plugins).await;
        assert!(matches!(result, Err(TuneError::Interrupted)));
        assert!(machine.runs.is_empty());
    }

    fn ttft_p95_under(ms: f64) -> Slo {
        Slo {
            bounds: vec![SloBound {
                metric: SloMetric::TtftP95,
                value: ms,
            }],
        }
    }

    /// A whole run on a machine sustaining up to 64 streams, the ladder judging `slo`.
    async fn tune_judging(slo: Slo) -> (Machine, Limits, Vec<TrialRecord>) {
        let mut machine = Machine {
            max_streams: 64,
            ..Machine::default()
        };
        let plan = Plan {
            slo: slo.clone(),
            ..plan()
        };
        let Tuned { limits, trials, .. } = tune_on(
            &mut machine,
            TrialBook::default(),
            &plan,
            plugins_judging(&slo),
        )
        .await;
        (machine, limits.unwrap(), trials)
    }

    /// The stream counts measured by the concurrency phase itself (one stream comes from
    /// the batch phase).
    fn levels(machine: &Machine) -> Vec<u32> {
        machine
            .runs
            .iter()
            .filter(|(c, _)| c.concurrency > 1)
            .map(|(c, _)| c.concurrency)
            .collect()
    }

    #[tokio::test]
    async fn one_stream_measured_by_the_batch_phase_is_judged_as_a_level() {
        let (_, limits, trials) = tune_judging(Slo::default()).await;
        assert_eq!(limits.max_concurrency, Some(8));
        assert_eq!(limits.bounds.max_concurrency, Some(Bound::Cap { cap: 8 }));
        let one = trials
            .iter()
            .find(|r| r.config.concurrency == 1 && r.config.batch == 128)
            .expect("level 1");
        let figures = one.concurrency.as_ref().expect("judged as a level");
        assert_eq!(figures.latency.ttft_p95_ms, Some(100.0));
        assert_eq!(figures.slo, None, "no objective, no judgement");
    }

    #[tokio::test]
    async fn an_objective_between_two_levels_ends_between_them() {
        let (machine, limits, trials) = tune_judging(ttft_p95_under(450.0)).await;
        // 100 ms per stream: 4 streams meet 450 ms, 5 do not.
        assert_eq!(limits.max_concurrency, Some(4));
        assert_eq!(levels(&machine), vec![2, 4, 8, 6, 5]);
        match &limits.bounds.max_concurrency {
            Some(Bound::Slo {
                at: 5,
                metric: SloMetric::TtftP95,
                measured: Some(m),
                bound,
                ..
            }) => assert_eq!((*m, *bound), (500.0, 450.0)),
            other => panic!("{other:?}"),
        }
        let judged: Vec<(u32, bool)> = trials
            .iter()
            .filter(|r| r.phase == Phase::Concurrency)
            .map(|r| {
                assert_eq!(r.stage, Stage::Verify, "levels are verifications");
                let verdict = r.concurrency.as_ref().and_then(|f| f.slo.as_ref());
                (r.config.concurrency, verdict.expect("judged").met)
            })
            .collect();
        assert_eq!(
            judged,
            vec![(2, true), (4, true), (8, false), (6, false), (5, false)]
        );
    }

    #[tokio::test]
    async fn an_objective_no_level_meets_is_bound_by_it_at_one_stream() {
        let (machine, limits, _) = tune_judging(ttft_p95_under(50.0)).await;
        assert_eq!(limits.max_concurrency, None);
        assert!(levels(&machine).is_empty(), "{:?}", levels(&machine));
        assert!(
            matches!(
                limits.bounds.max_concurrency,
                Some(Bound::Slo { at: 1, .. })
            ),
            "{:?}",
            limits.bounds.max_concurrency
        );
    }

    #[tokio::test]
    async fn a_phase_that_does_not_run_says_why() {
        let plan = Plan {
            concurrency: false,
            batch_scaling: false,
            ..plan()
        };
        let mut machine = Machine::default();
        let Tuned { limits, .. } =
            tune_on(&mut machine, TrialBook::default(), &plan, plugins()).await;
        let limits = limits.unwrap();
        assert_eq!(limits.best_batch, Some(64));
        let reason = |b: &Option<Bound>| match b {
            Some(Bound::NotRun { reason }) => reason.clone(),
            other => panic!("{other:?}"),
        };
        assert!(reason(&limits.bounds.best_batch).contains("batch_adaptation.enabled"));
        assert!(reason(&limits.bounds.max_concurrency).contains("--skip-concurrency"));
        assert!(levels(&machine).is_empty());
    }
}
