//! The search loop, independent of where trials come from: a real server (`ozone tune`)
//! or a recorded profile (the lab). The plugins decide what to try; the driver runs each
//! configuration at the stage it needs, feeds the outcome back and enforces the host's
//! limits.
//!
//! The phases run in order, each in its own file, each a plugin driven through the
//! [`Strategy`](crate::plugin::Strategy) trait: the context search (`context.rs`), batch
//! scaling at the context found (`batch.rs`), the offload search where every layer on
//! the GPU failed for GPU memory at a context the run wanted (`offload.rs`, which says
//! when it runs: [`Driver::run_offloading`]), the concurrency search at both
//! (`concurrency.rs`). What every trial of a search shares besides its context, batch
//! and streams is its [`Variant`] (today the KV cache type): a loop over variants wraps
//! the context and batch phases. Running one trial — reusing what the run measured
//! already, and measuring a configuration again when its spread alone made it unstable
//! (`trials.rs`) — and the book of trials (`book.rs`) are shared by every phase. After
//! each phase the observer hears the limits found so far, with what bound each
//! (`tune::bounds`).
//!
//! The context search runs on *screens* (one full fill: does it load, fit, at what
//! peak); the plugin's `best()` is then *verified* by a full statistical trial before it
//! is published. A verification that is not stable goes back to the plugin through
//! `observe` and the search continues, at most [`MAX_VERIFICATIONS`] times. Batch and
//! concurrency trials are all verifications (a concurrency level is a closed loop of
//! streams, judged against the objective). `Plan::screen_trials = false` verifies every
//! context proposal instead (the behaviour before stages). A phase that does not run
//! says why in its limit's bound (`not_run`).

mod batch;
mod book;
mod concurrency;
mod context;
mod offload;
mod trials;
mod variants;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::plugin::{
    BatchProposal, BatchScaler, ConcurrencySearch, ContextSearch, PluginError, Slo,
};
use crate::record::{Limits, Phase, SampleRecord, Stage, TrialConfig, TrialRecord, Variant};
use crate::trial::{AdaptiveTimeouts, OnSample, TrialRun, TrialRunner};

use super::bounds;
pub use book::TrialBook;
pub use offload::{failed_for_gpu_memory, offload_target, NoOffload, OffloadPlugins};
pub use variants::{Frontier, FrontierRun, QualityJudge, VariantPlugins};

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

/// Why an observer could not keep a finished trial: the log could not be written.
pub type LogError = Box<dyn std::error::Error + Send + Sync>;

/// Hears about every step of the loop: writes the log, moves the progress bars.
pub trait TuneObserver {
    fn phase_started(&mut self, _phase: Phase, _estimated_trials: usize) {}
    fn trial_started(&mut self, _id: u32, _phase: Phase, _stage: Stage, _config: &TrialConfig) {}
    /// One sample of the running trial `id`, as soon as its request finished.
    fn sample(&mut self, _id: u32, _stage: Stage, _config: &TrialConfig, _sample: &SampleRecord) {}
    /// Called once per trial actually run (not for trials reused from the log). A trial
    /// that cannot be kept stops the run.
    fn trial_finished(&mut self, run: &TrialRun) -> Result<(), LogError>;
    fn trial_reused(&mut self, _record: &TrialRecord) {}
    /// A plugin's proposal, to be measured at `stage` (`None`: the plugin is done), or
    /// (stage verify, context phase) the plugin's `best()` about to be verified.
    fn decision(&mut self, _phase: Phase, _plugin: &str, _proposed: Option<u32>, _stage: Stage) {}
    /// What the driver did besides the plugins' proposals, and why (a noise floor
    /// measured, a configuration measured again).
    fn note(&mut self, _phase: Phase, _message: &str) {}
    /// A variant's context search and batch scaling ended (the frontier's row).
    fn variant_finished(&mut self, _outcome: &crate::record::VariantOutcome) {}
    /// The offload phase ended: at its context, the offload that fits (`offload` event).
    fn offload_finished(&mut self, _outcome: &crate::record::OffloadOutcome) {}
    /// A phase ended: the limits so far, each with what bound it.
    fn phase_finished(&mut self, _phase: Phase, _limits: &Limits) {}
    /// The loop ended, however it ended.
    fn finished(&mut self) {}
}

/// Why a search stopped without its limits, by what failed.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A plugin call failed: it trapped, ran out of fuel or memory, or returned a value
    /// outside its bounds.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A plugin answered within its sandbox but broke the search's contract.
    #[error(transparent)]
    Contract(#[from] ContractBreach),
    #[error("interrupted")]
    Interrupted,
    /// A finished trial could not be written to the log (a full disk): every trial
    /// before it is in the log.
    #[error("writing the trial log: {0}")]
    Log(#[source] LogError),
    /// The first trial's server never came up, for a reason that is not memory, or the
    /// server cannot run on this machine at all.
    #[error("{0}")]
    ServerCannotStart(String),
}

/// How a plugin broke the search's contract.
#[derive(Debug, thiserror::Error)]
pub enum ContractBreach {
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
}

/// The configuration the driver runs for a context, batch and stream count at
/// `variant`, the micro-batch as large as the batch (up to llama.cpp's default 512).
pub fn trial_config(variant: Variant, ctx: u32, batch: u32, streams: u32) -> TrialConfig {
    trial_config_with(
        variant,
        ctx,
        BatchProposal::whole(batch, MAX_UBATCH),
        streams,
    )
}

/// The configuration for a context, a batch with its micro-batch, and streams.
pub fn trial_config_with(
    variant: Variant,
    ctx: u32,
    batch: BatchProposal,
    streams: u32,
) -> TrialConfig {
    TrialConfig {
        ctx,
        batch: batch.batch,
        ubatch: batch.ubatch,
        concurrency: streams,
        variant,
    }
}

/// What the host fixes for every trial of a run, derived from the run's set-up
/// (`tune::setup::RunSetup::plan`).
#[derive(Debug, Clone)]
pub struct Plan {
    pub variant: Variant,
    /// The context search's floor: the smallest context it may propose. A verification
    /// there is the run's noise floor.
    pub min_context: u32,
    /// The context search's ceiling: the model's trained context (aligned down).
    pub max_context: u32,
    /// Batch used while searching the context (the batch scaler's starting point).
    pub initial_batch: u32,
    /// `batch_adaptation.enabled`: false keeps the initial batch, no batch phase.
    pub batch_scaling: bool,
    /// `batch_adaptation.max_batch`: the batch scaler's ceiling.
    pub max_batch: u32,
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

    /// The configuration nothing strains: the smallest context at the initial batch and
    /// one stream. Its verification measures how much the machine itself varies.
    pub fn reference(&self) -> TrialConfig {
        trial_config(self.variant, self.min_context, self.initial_batch, 1)
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
    /// Every trial of the run so far (a resumed run's, to replay).
    pub book: TrialBook,
    pub snapshot: &'a HardwareSnapshot,
    pub thresholds: &'a Thresholds,
    pub cancel: CancellationToken,
    /// Noise floors asked for so far: the k-th is the k-th verification of the plan's
    /// reference, so a resumed run replays them.
    floors: usize,
}

impl<'a, E, O> Driver<'a, E, O> {
    pub fn new(
        executor: &'a mut E,
        observer: &'a mut O,
        book: TrialBook,
        snapshot: &'a HardwareSnapshot,
        thresholds: &'a Thresholds,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            executor,
            observer,
            book,
            snapshot,
            thresholds,
            cancel,
            floors: 0,
        }
    }
}

impl<E: TrialExecutor, O: TuneObserver + Send> Driver<'_, E, O> {
    /// Context search, then batch scaling at the context found, then the concurrency
    /// search at both. Stops early (with what was found) when a phase finds nothing.
    /// Each limit comes with what bound it (`tune::bounds`; a phase that did not run,
    /// why).
    pub async fn run(&mut self, plan: &Plan, plugins: &mut Plugins) -> Result<Limits, TuneError> {
        self.run_offloading(plan, plugins, &mut NoOffload)
            .await
            .map(|(limits, _)| limits)
    }

    /// [`Driver::run`] with the offload phase (`offload.rs`) after the context and batch
    /// phases: where it runs and the context search verified no context, the limits are
    /// the offload's (its context, at its offload) and the concurrency search runs there.
    pub async fn run_offloading<P: OffloadPlugins>(
        &mut self,
        plan: &Plan,
        plugins: &mut Plugins,
        offload: &mut P,
    ) -> Result<(Limits, Option<crate::record::OffloadOutcome>), TuneError> {
        let (mut limits, mut best_batch) = self
            .context_and_batch(plan, &mut plugins.context, &mut plugins.batch)
            .await?;
        let outcome = self.offload_phase(plan, &limits, offload).await?;
        let mut at = plan.clone();
        // The context found by offload: bound by the step with more on the GPU.
        let mut offload_bound = None;
        if let (None, Some(found)) = (limits.max_context, &outcome) {
            if let Some(o) = found.offload {
                offload_bound = found
                    .next_failed
                    .as_ref()
                    .and_then(|n| self.book.records().iter().find(|r| r.id == n.trial_id))
                    .map(|r| bounds::offload_bound(r, &at));
                at.variant.gpu_layers = Some(o.gpu_layers);
                at.variant.cpu_moe_layers = o.cpu_moe_layers;
                limits.max_context = Some(found.ctx);
                limits.best_batch = Some(plan.initial_batch);
                best_batch = Some(BatchProposal::whole(plan.initial_batch, MAX_UBATCH));
            }
        }
        if outcome.is_some() {
            self.phase_finished(Phase::Offload, &mut limits, &at);
        }
        self.concurrency_at(&at, &mut limits, best_batch, &mut plugins.concurrency)
            .await?;
        if offload_bound.is_some() {
            limits.bounds.max_context = offload_bound;
        }
        Ok((limits, outcome))
    }

    /// The context search and, at the context found, batch scaling: the limits so far
    /// and the best batch with its micro-batch.
    async fn context_and_batch(
        &mut self,
        plan: &Plan,
        context: &mut ContextSearch,
        batch: &mut BatchScaler,
    ) -> Result<(Limits, Option<BatchProposal>), TuneError> {
        let mut limits = Limits {
            max_context: self.search_context(plan, context).await?,
            ..Limits::default()
        };
        self.phase_finished(Phase::Context, &mut limits, plan);
        let Some(ctx) = limits.max_context else {
            limits.bounds = bounds::explain(&limits, self.book.records(), plan);
            return Ok((limits, None));
        };
        let best_batch = if plan.batch_scaling {
            self.scale_batch(plan, ctx, batch).await?
        } else {
            // The context search already verified the initial batch at `ctx` as stable.
            Some(BatchProposal::whole(plan.initial_batch, MAX_UBATCH))
        };
        limits.best_batch = best_batch.map(|b| b.batch);
        self.phase_finished(Phase::Batch, &mut limits, plan);
        Ok((limits, best_batch))
    }

    /// The concurrency search at the limits' context and `batch` (when both were found
    /// and the phase is on); every bound worked out at the end.
    async fn concurrency_at(
        &mut self,
        plan: &Plan,
        limits: &mut Limits,
        batch: Option<BatchProposal>,
        concurrency: &mut ConcurrencySearch,
    ) -> Result<(), TuneError> {
        if let (Some(ctx), Some(batch), true) = (limits.max_context, batch, plan.concurrency) {
            limits.max_concurrency = self
                .search_concurrency(plan, ctx, batch, concurrency)
                .await?;
            self.phase_finished(Phase::Concurrency, limits, plan);
        }
        limits.bounds = bounds::explain(limits, self.book.records(), plan);
        Ok(())
    }

    /// The limits found through `phase`, each with what bound it, for the observer.
    fn phase_finished(&mut self, phase: Phase, limits: &mut Limits, plan: &Plan) {
        limits.bounds = bounds::explain_through(phase, limits, self.book.records(), plan);
        self.observer.phase_finished(phase, limits);
    }
}
