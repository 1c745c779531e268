//! The context phase: proposals screened until the plugin is done, then its `best()`
//! verified; an unstable verification goes back to the plugin and the search goes on.

use super::book::Requests;
use super::trial_config;
use super::MAX_VERIFICATIONS;
use super::{ContractBreach, Driver, Plan, TrialExecutor, TuneError, TuneObserver};
use crate::plugin::{trial_outcome, ContextSearch, Strategy};
use crate::record::{latency_of, Phase, Reason, Stage, TrialRecord, Verdict};
use crate::tune::setup::TIMEOUT_MARGIN;

/// What a context must meet besides running stably, judged on each context trial as it
/// finishes (so the log, the plugin and the bounds see one verdict): the objective's
/// latency bounds over the trial's own requests (`--slo`; `decode-min` is the
/// concurrency phase's), and the timeout margin — its slowest request within
/// [`TIMEOUT_MARGIN`] of its timeout. A trial that misses either is unstable, with the
/// figure that missed.
pub(super) fn hold_to_context_limits(record: &mut TrialRecord, plan: &Plan) {
    if record.verdict != Verdict::Stable {
        return;
    }
    let latency = latency_of(&record.samples);
    let (_, missed) = ozone_sdk::judge(&plan.slo, |metric| latency.figure(metric));
    let miss = missed
        .into_iter()
        .find(|m| m.metric != ozone_sdk::SloMetric::DecodeMin);
    let reason = match miss {
        Some(miss) => Reason::ObjectiveMissed { miss },
        None => {
            let timeout_ms = plan
                .timeouts
                .for_config(record.config.ctx, record.config.batch)
                .as_secs_f64()
                * 1000.0;
            let slowest_ms = record
                .samples
                .iter()
                .filter(|s| s.ok)
                .filter_map(|s| s.total_ms)
                .fold(0.0, f64::max);
            if slowest_ms <= TIMEOUT_MARGIN * timeout_ms {
                return;
            }
            Reason::NearTimeout {
                slowest_ms,
                timeout_ms,
                margin: TIMEOUT_MARGIN,
            }
        }
    };
    record.verdict = reason.verdict();
    record.reason = Some(reason);
}

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
