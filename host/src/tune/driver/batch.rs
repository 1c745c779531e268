//! The batch phase, at the context found; and the proposal loop the context and batch
//! phases share.

use super::book::Requests;
use super::trial_config_with;
use super::{
    ContractBreach, Driver, Plan, TrialExecutor, TuneError, TuneObserver, MAX_TRIALS_PER_PHASE,
};
use crate::plugin::{trial_outcome, BatchProposal, BatchScaler, Strategy, TrialOutcome};
use crate::record::{Phase, Stage, TrialConfig};

impl<E: TrialExecutor, O: TuneObserver + Send> Driver<'_, E, O> {
    /// The batch the plugin found best at `ctx` (every proposal a verification).
    pub(super) async fn scale_batch(
        &mut self,
        plan: &Plan,
        ctx: u32,
        plugin: &mut BatchScaler,
    ) -> Result<Option<BatchProposal>, TuneError> {
        self.observer
            .phase_started(Phase::Batch, plan.estimated_batch_trials);
        let config = |batch| trial_config_with(plan.variant, ctx, batch, 1);
        let mut requests = Requests::default();
        let best = self
            .search(
                plan,
                Phase::Batch,
                Stage::Verify,
                plugin,
                config,
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
    pub(super) async fn search<S: Strategy<Outcome = TrialOutcome>>(
        &mut self,
        plan: &Plan,
        phase: Phase,
        stage: Stage,
        plugin: &mut S,
        config_for: impl Fn(S::Proposal) -> TrialConfig,
        requests: &mut Requests,
    ) -> Result<Option<S::Proposal>, TuneError>
    where
        S::Proposal: Copy,
    {
        let timeouts = plan.timeouts.rule();
        for trials in 0..=MAX_TRIALS_PER_PHASE {
            let proposed = plugin.propose()?;
            // The observer shows the value the phase varies.
            let shown = proposed.map(|p| {
                let c = config_for(p);
                match phase {
                    Phase::Context => c.ctx,
                    Phase::Offload => c.variant.gpu_layers.unwrap_or(u32::MAX),
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
                .trial(plan, phase, stage, config_for(value), requests, |_| {})
                .await?;
            plugin.observe(&trial_outcome(
                &record,
                self.snapshot,
                self.thresholds,
                &timeouts,
            ))?;
        }
        Err(ContractBreach::Runaway {
            plugin: plugin.name().to_string(),
            phase,
        }
        .into())
    }
}
