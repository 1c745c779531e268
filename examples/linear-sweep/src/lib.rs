//! `linear-sweep`: the plainest context search there is, as a baseline for the lab.
//!
//! Tries `step`, `2 × step`, `3 × step`, … (4096, 8192, … by default) up to the model's
//! trained context and stops at the first configuration that is not stable. Then, with
//! `refine` (the default), it walks up again one granularity step (256 tokens) at a time
//! from the last stable context until the next failure, and answers the largest stable
//! one: the limit to one step, at the price of up to `step / 256` more trials. It hits
//! at most two failures, and needs about `limit / step + step / 256` trials.
//!
//! Settings: `step` (4096 tokens; rounded down to the host's granularity); `refine`
//! (true; false answers the last stable multiple of `step`); `stop_at_first_failure`
//! (true; false measures every step up to the trained context, as the fixed context
//! lists of older tuners did, and answers the largest stable one, without refining).
//! The host allows 32 trials per phase: above 128k of trained context, use a larger step.
//!
//! The host screens each proposal (one full fill) and then verifies the answer with a
//! full statistical trial. A verification that was not stable withdraws that context and
//! every stable one above it: the next answer is the largest stable context below it.

use ozone_sdk::{
    settings, ContextBounds, ContextLimits, ContextSearch, HardwareFacts, ModelFacts, Stage,
    TrialOutcome,
};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub step: u32,
    pub refine: bool,
    pub stop_at_first_failure: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            step: 4096,
            refine: true,
            stop_at_first_failure: true,
        }
    }
}

pub struct LinearSweep {
    step: u32,
    refine: bool,
    stop_at_first_failure: bool,
    /// The first context that was not stable, once the coarse pass met one.
    first_failure: Option<u32>,
    bounds: ContextBounds,
    /// The context proposed and not yet observed.
    pending: Option<u32>,
    last_tried: Option<u32>,
    /// Every context measured stable and not withdrawn by a failed verification.
    stable: Vec<u32>,
    done: bool,
}

impl ContextSearch for LinearSweep {
    fn new(
        settings: &str,
        _hardware: &HardwareFacts,
        model: &ModelFacts,
        _limits: &ContextLimits,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        let g = model.bounds.granularity.max(1);
        let step = settings.step / g * g;
        if step == 0 {
            return Err(format!(
                "step must be at least the context granularity {g}, got {}",
                settings.step
            ));
        }
        Ok(Self {
            step,
            refine: settings.refine,
            stop_at_first_failure: settings.stop_at_first_failure,
            first_failure: None,
            bounds: model.bounds,
            pending: None,
            last_tried: None,
            stable: Vec::new(),
            done: false,
        })
    }

    fn propose(&mut self) -> Option<u32> {
        if self.pending.is_none() && !self.done {
            self.pending = self.next();
        }
        self.pending
    }

    fn observe(&mut self, outcome: &TrialOutcome) {
        let ctx = outcome.config.ctx;
        if outcome.stage == Stage::Verify && !outcome.is_stable() {
            // The answer did not verify: neither it nor anything above it stands.
            self.stable.retain(|&c| c < ctx);
            self.done = true;
            return;
        }
        self.pending = None;
        self.last_tried = Some(ctx);
        if outcome.is_stable() {
            self.stable.push(ctx);
        } else if self.stop_at_first_failure {
            if self.refine && self.first_failure.is_none() {
                // The coarse pass is over: walk up again from the last stable context.
                self.first_failure = Some(ctx);
            } else {
                self.done = true;
            }
        }
    }

    fn best(&self) -> Option<u32> {
        self.stable.iter().copied().max()
    }
}

impl LinearSweep {
    fn next(&self) -> Option<u32> {
        if let Some(failed) = self.first_failure {
            let g = self.bounds.granularity.max(1);
            let next = self.best().map_or(self.bounds.min, |b| b + g);
            return (next < failed).then_some(next);
        }
        let next = match self.last_tried {
            None => self.step.max(self.bounds.min),
            Some(last) if last >= self.bounds.max => return None,
            Some(last) => (last / self.step + 1).saturating_mul(self.step),
        };
        Some(next.min(self.bounds.max))
    }
}

ozone_sdk::export_context_search!(LinearSweep);

#[cfg(test)]
mod tests;
