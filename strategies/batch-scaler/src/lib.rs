//! `batch-scaler`: Ozone's default batch scaling.
//!
//! # Semantics (the product's documented behaviour)
//!
//! Settings (`search_strategy.batch_adaptation` section; missing keys take these
//! defaults, unknown keys are ignored, a value of the wrong type is an error):
//! `scale_up_factor` 2.0. Where to start and how far to go are the host's, in the
//! batch bounds (`batch_adaptation.initial_batch_<size class>` and `max_batch`).
//!
//! *Throughput* is the outcome's prefill tokens/s (what the batch size changes), else its
//! decode tokens/s, else 0. A trial succeeds only when its verdict is `stable`.
//!
//! 1. **Start** at `bounds.initial` (clamped into the bounds).
//! 2. **Scale up**: after a stable trial whose throughput is strictly higher than every
//!    earlier stable trial's, propose `round(batch × scale_up_factor)` capped at
//!    `bounds.max`. Stop when the cap was just tried, when throughput did not improve
//!    (a regression), or when a trial fails or is unstable.
//! 3. **Back off**: while *no* trial has been stable yet, a failed or unstable trial at
//!    `b` is followed by `b / 2` (down to `bounds.min`); the first stable one ends the
//!    run (twice its batch already failed).
//! 4. **Micro-batch** (`-ub`): every batch is first tried whole — its micro-batch equal
//!    to it, capped at `bounds.max_ubatch` (what prefill speed wants while the compute
//!    buffers fit). When a batch runs out of memory (out of memory, a memory threshold)
//!    and its micro-batch is above 1, the same batch is tried once more with half the
//!    micro-batch: the compute buffers follow `-ub`, so that trial may fit. Its outcome
//!    then counts for that batch as in (2) and (3) (a stable one can still improve the
//!    best; the run scales up from it only when it did).
//!
//! `best()` is the stable batch and micro-batch with the highest throughput (the earliest
//! on ties), or `None` when nothing was stable. `propose()` asked again before
//! `observe()` repeats the pending proposal.

use ozone_sdk::{
    settings, BatchBounds, BatchProposal, BatchScaler, HardwareFacts, ModelFacts, TrialOutcome,
};
use serde::Deserialize;

/// The `batch_adaptation` key this plugin reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub scale_up_factor: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scale_up_factor: 2.0,
        }
    }
}

/// The scaler state.
#[derive(Debug, Clone)]
pub struct Scaler {
    settings: Settings,
    bounds: BatchBounds,
    start: u32,
    /// Best stable proposal and its throughput.
    best: Option<(BatchProposal, f64)>,
    /// Proposed and not yet observed.
    pending: Option<BatchProposal>,
    /// What to propose next; `None` once finished.
    next: Option<BatchProposal>,
}

impl BatchScaler for Scaler {
    fn new(
        settings: &str,
        _hardware: &HardwareFacts,
        _model: &ModelFacts,
        bounds: &BatchBounds,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        let factor = settings.scale_up_factor;
        if factor.is_nan() || factor <= 1.0 {
            return Err(format!(
                "scale_up_factor must be greater than 1, got {factor}"
            ));
        }
        let initial = bounds.initial;
        let start = if bounds.accepts(initial) {
            initial
        } else {
            bounds.whole(initial.batch)
        };
        Ok(Self {
            settings,
            bounds: *bounds,
            start: start.batch,
            best: None,
            pending: None,
            next: Some(start),
        })
    }

    fn propose(&mut self) -> Option<BatchProposal> {
        if self.pending.is_none() {
            self.pending = self.next.take();
        }
        self.pending
    }

    fn observe(&mut self, outcome: &TrialOutcome) {
        let tried = outcome.config.batch_proposal();
        let batch = tried.batch;
        let max = self.bounds.max;
        self.pending = None;
        self.next = None;
        if !outcome.is_stable() {
            let memory = outcome.failure.is_some_and(|f| f.is_memory());
            let whole = self.bounds.whole(batch);
            if memory && tried.ubatch == whole.ubatch && tried.ubatch > 1 {
                // (4): the compute buffers follow the micro-batch.
                self.next = Some(BatchProposal {
                    batch,
                    ubatch: tried.ubatch / 2,
                });
            } else if self.best.is_none() && batch / 2 >= self.bounds.min.max(1) {
                self.next = Some(self.bounds.whole(batch / 2));
            }
            return;
        }
        let throughput = outcome.throughput().unwrap_or(0.0);
        let had_stable = self.best.is_some();
        let improved = self.best.is_none_or(|(_, best)| throughput > best);
        if improved {
            self.best = Some((tried, throughput));
        }
        // A stable trial after backing off ends the run: twice its batch failed.
        let backed_off = !had_stable && batch < self.start;
        if improved && !backed_off && batch < max {
            let grown = (f64::from(batch) * self.settings.scale_up_factor).round();
            let next = (grown.min(f64::from(max)) as u32).max(batch + 1);
            self.next = Some(self.bounds.whole(next.min(max)));
        }
    }

    fn best(&self) -> Option<BatchProposal> {
        self.best.map(|(proposal, _)| proposal)
    }
}

ozone_sdk::export_batch_scaler!(Scaler);

pub mod table;

#[cfg(test)]
mod tests;
