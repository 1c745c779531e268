//! The context phase: proposals screened until the plugin is done, then its `best()`
//! verified; an unstable verification goes back to the plugin and the search goes on.

use super::book::Requests;
use super::trial_config;
use super::MAX_VERIFICATIONS;
use super::{ContractBreach, Driver, Plan, TrialExecutor, TuneError, TuneObserver};
use crate::plugin::{trial_outcome, ContextSearch, Strategy};
use crate::record::{Phase, Stage, Verdict};

impl<E: TrialExecutor, O: TuneObserver + Send> Driver<'_, E, O> {
    /// The largest context the plugin found and a verification held (`None`: none).
    pub(super) async fn search_context(
        &mut self,
        plan: &Plan,
        plugin: &mut ContextSearch,
    ) -> Result<Option<u32>, TuneError> {
        self.observer
            .phase_started(Phase::Context, plan.estimated_context_trials);
        let config = |ctx| trial_config(plan.variant, ctx, plan.initial_batch, 1);
        let mut requests = Requests::default();
        let mut refuted: Vec<(u32, u32)> = Vec::new();
        for _ in 0..MAX_VERIFICATIONS {
            let stage = plan.proposal_stage();
            let best = self
                .search(plan, Phase::Context, stage, plugin, config, &mut requests)
                .await?;
            let Some(ctx) =
                self.checked_best(best, plugin.name(), "context", None, |c| Some(c.ctx))?
            else {
                return Ok(None);
            };
            if let Some(&(_, trial_id)) = refuted.iter().find(|(c, _)| *c == ctx) {
                return Err(ContractBreach::RefutedBest {
                    plugin: plugin.name().to_string(),
                    value: ctx,
                    trial_id,
                }
                .into());
            }
            // Proposals measured at verify already are their own verification.
            let record = match requests.seen_verified(&self.book, &config(ctx)) {
                Some(record) => record,
                None => {
                    self.observer
                        .decision(Phase::Context, plugin.name(), Some(ctx), Stage::Verify);
                    self.trial(
                        plan,
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
                &plan.timeouts.rule(),
            ))?;
        }
        tracing::warn!(
            "{} verifications of plugin {}'s best context were not stable: no context is published",
            MAX_VERIFICATIONS,
            plugin.name()
        );
        Ok(None)
    }
}
