//! The concurrency phase, at the context and batch found: each level a closed loop of
//! streams (a verification), stable when enough of its requests succeeded and nothing
//! failed it (`trial::verdict`), passed when the objective held too.

use super::book::Requests;
use super::trial_config_with;
use super::{
    ContractBreach, Driver, Plan, TrialExecutor, TuneError, TuneObserver, MAX_TRIALS_PER_PHASE,
};
use crate::plugin::{
    concurrency_outcome, slo_verdict, BatchProposal, ConcurrencyOutcome, ConcurrencySearch,
    Strategy,
};
use crate::record::{ConcurrencyFigures, Phase, Stage, TrialRecord};
use crate::trial::figures_of;

impl<E: TrialExecutor, O: TuneObserver + Send> Driver<'_, E, O> {
    /// The concurrency plugin proposes stream counts at `ctx` and `batch`; each level is
    /// a closed-loop trial (a verification) judged against the objective. Returns the
    /// plugin's `best()`, which must have passed.
    pub(super) async fn search_concurrency(
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
                    return Err(ContractBreach::UnpassedLevel {
                        plugin: plugin.name().to_string(),
                        value,
                    }
                    .into());
                }
                return Ok(best);
            };
            if trials == MAX_TRIALS_PER_PHASE {
                break;
            }
            let config = trial_config_with(plan.variant, ctx, batch, streams);
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
                    plan,
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
        Err(ContractBreach::Runaway {
            plugin: plugin.name().to_string(),
            phase: Phase::Concurrency,
        }
        .into())
    }
}
