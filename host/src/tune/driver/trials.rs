//! Running one trial for a phase: reusing what the run measured already (a repeated
//! request, `--resume`), stopping the run on a server that cannot start, and measuring a
//! verification again when its spread alone made it unstable — held, the second time,
//! against the run's noise floor (`trial::verdict::against_floor`).

use super::book::Requests;
use super::MAX_MEASUREMENTS;
use super::{ContractBreach, Driver, Plan, TrialExecutor, TuneError, TuneObserver};
use crate::record::{
    NoiseFloor, Phase, Reason, SampleRecord, Spread, Stage, TrialConfig, TrialRecord, Verdict,
};
use crate::trial::verdict::against_floor;

impl<E: TrialExecutor, O: TuneObserver + Send> Driver<'_, E, O> {
    /// A trial of `config` at `stage` for `phase`, run or handed back from an earlier
    /// measurement: in the context phase the k-th request of a (configuration, stage) is
    /// its k-th record, measured anew up to [`MAX_MEASUREMENTS`] times; other phases
    /// measure each once. `finish` completes a record before it is logged (a reused one
    /// in the book). A verification at one stream whose spread alone made it unstable is
    /// measured once more ([`Driver::measure_again`]), and that measurement is returned.
    pub(super) async fn trial(
        &mut self,
        plan: &Plan,
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
            Some(record) if phase == Phase::Context => Some(record.clone()),
            _ if k >= limit || phase != Phase::Context => self.book.latest(&config, stage).cloned(),
            _ => None,
        };
        let finish = |record: &mut TrialRecord| {
            finish(record);
            if matches!(phase, Phase::Context | Phase::Offload) {
                super::context::hold_to_context_limits(record, plan);
            }
        };
        let record = self.measure(phase, stage, config, earlier, finish).await?;
        match &record.reason {
            Some(Reason::Unsteady(check)) if check.remeasure_of.is_none() => {
                self.measure_again(plan, phase, record, requests).await
            }
            _ => Ok(record),
        }
    }

    /// `first`'s configuration measured once more (the run's next request of it), the
    /// new measurement held against the run's noise floor: steady, the machine's noise,
    /// or the configuration's own instability. What was done goes to the observer.
    async fn measure_again(
        &mut self,
        plan: &Plan,
        phase: Phase,
        first: TrialRecord,
        requests: &mut Requests,
    ) -> Result<TrialRecord, TuneError> {
        let config = first.config.clone();
        let floor = self.noise_floor(plan, phase, &config).await?;
        let k = requests.next(&config, Stage::Verify);
        let earlier = self.book.nth(&config, Stage::Verify, k).cloned();
        let first_id = first.id;
        let again = self
            .measure(phase, Stage::Verify, config, earlier, |r| {
                if let Some(reason) = r.reason.take() {
                    let reason = against_floor(reason, floor, first_id);
                    r.verdict = reason.verdict();
                    r.reason = Some(reason);
                }
            })
            .await?;
        self.observer
            .note(phase, &remeasured(&first, &again, floor.as_ref()));
        Ok(again)
    }

    /// The run's noise floor, measured afresh for each suspect (the machine's noise
    /// comes and goes): a verification of the plan's reference configuration (in the
    /// offload phase, at the suspect's offload), and the
    /// floor the largest spread of decode throughput any of the run's measurements of
    /// it showed — the machine varies at least that much on its own. `None` when
    /// `suspect` is the reference (it cannot be its own floor) or no measurement of it
    /// has a spread.
    async fn noise_floor(
        &mut self,
        plan: &Plan,
        phase: Phase,
        suspect: &TrialConfig,
    ) -> Result<Option<NoiseFloor>, TuneError> {
        let mut reference = plan.reference();
        if phase == Phase::Offload {
            // Every layer on the GPU may not fit even there: the floor is measured at the
            // suspect's own offload.
            reference.variant = suspect.variant;
        }
        if reference == *suspect {
            return Ok(None);
        }
        let k = self.floors;
        self.floors += 1;
        let earlier = self.book.nth(&reference, Stage::Verify, k).cloned();
        if earlier.is_none() {
            self.observer.note(
                phase,
                &format!(
                    "measuring the machine's noise floor: a verification at the smallest \
                     context ({} tokens), which nothing strains",
                    reference.ctx
                ),
            );
        }
        self.measure(
            Phase::Context,
            Stage::Verify,
            reference.clone(),
            earlier,
            |_| {},
        )
        .await?;
        let floor = (0..=k)
            .filter_map(|i| self.book.nth(&reference, Stage::Verify, i))
            .filter_map(|record| {
                let decode: Vec<f64> = record
                    .samples
                    .iter()
                    .filter(|s| s.ok)
                    .filter_map(|s: &SampleRecord| s.decode_tps)
                    .collect();
                Spread::of(&decode).map(|spread| NoiseFloor {
                    spread: spread.value,
                    ctx: record.config.ctx,
                    trial_id: record.id,
                })
            })
            .max_by(|a, b| a.spread.total_cmp(&b.spread));
        Ok(floor)
    }

    /// Hands back `earlier` (completed by `finish`), or runs the trial and logs it.
    async fn measure(
        &mut self,
        phase: Phase,
        stage: Stage,
        config: TrialConfig,
        earlier: Option<TrialRecord>,
        finish: impl FnOnce(&mut TrialRecord),
    ) -> Result<TrialRecord, TuneError> {
        if let Some(mut record) = earlier {
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
        self.observer.trial_finished(&run).map_err(TuneError::Log)?;
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
    pub(super) fn checked_best<T: PartialEq + Copy + std::fmt::Display>(
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
            Err(ContractBreach::UnmeasuredBest {
                plugin: plugin.to_string(),
                what,
                value: value.to_string(),
            }
            .into())
        }
    }
}

/// What a second measurement found, in a line for the log and the console.
fn remeasured(first: &TrialRecord, again: &TrialRecord, floor: Option<&NoiseFloor>) -> String {
    let percent = |r: &TrialRecord| {
        r.reason
            .as_ref()
            .and_then(Reason::spread)
            .map_or("?".to_string(), |c| format!("{:.0} %", c.spread * 100.0))
    };
    let floor_words = floor.map_or(String::new(), |f| {
        format!(
            " (the machine's noise floor: {:.0} % at {} tokens, trial {})",
            f.spread * 100.0,
            f.ctx,
            f.trial_id
        )
    });
    let outcome = match &again.reason {
        Some(Reason::Steady(_)) => format!("varied {}: stable", percent(again)),
        Some(Reason::WithinNoise(_)) => format!(
            "varied {}, not clear of the machine's own noise{floor_words}: the machine was \
             noisy, not the configuration; stable",
            percent(again)
        ),
        Some(Reason::Unsteady(_)) => format!(
            "varied {} again, clear of the machine's own noise{floor_words}: unstable",
            percent(again)
        ),
        _ => format!("{:?}", again.verdict).to_lowercase(),
    };
    format!(
        "{}: decode throughput varied {} in trial {} (tolerance {:.0} %); measured again \
         (trial {}): {outcome}",
        first.config,
        percent(first),
        first.id,
        first
            .reason
            .as_ref()
            .and_then(Reason::spread)
            .map_or(0.0, |c| c.tolerance * 100.0),
        again.id,
    )
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
