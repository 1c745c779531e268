//! `linear-sweep`: the plainest context search there is, as a baseline for the lab.
//!
//! Tries `step`, `2 × step`, `3 × step`, … (4096, 8192, … by default) up to the model's
//! trained context, stops at the first configuration that is not stable, and answers
//! the last stable one. It never overshoots by more than one step, so it hits at most
//! one failure, but it needs `limit / step` trials and its answer is only as fine as
//! `step`.
//!
//! Settings: `step` (4096 tokens; rounded down to the host's granularity);
//! `stop_at_first_failure` (true; false measures every step up to the trained context,
//! as the fixed context lists of older tuners did, and answers the largest stable one).
//! The host allows 32 trials per phase: above 128k of trained context, use a larger step.

use ozone_sdk::{settings, ContextBounds, ContextSearch, HardwareFacts, ModelFacts, TrialOutcome};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub step: u32,
    pub stop_at_first_failure: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            step: 4096,
            stop_at_first_failure: true,
        }
    }
}

pub struct LinearSweep {
    step: u32,
    stop_at_first_failure: bool,
    bounds: ContextBounds,
    /// The context proposed and not yet observed.
    pending: Option<u32>,
    last_tried: Option<u32>,
    best: Option<u32>,
    done: bool,
}

impl ContextSearch for LinearSweep {
    fn new(settings: &str, _hardware: &HardwareFacts, model: &ModelFacts) -> Result<Self, String> {
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
            stop_at_first_failure: settings.stop_at_first_failure,
            bounds: model.bounds,
            pending: None,
            last_tried: None,
            best: None,
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
        self.pending = None;
        self.last_tried = Some(ctx);
        if outcome.is_stable() {
            self.best = Some(self.best.map_or(ctx, |b| b.max(ctx)));
        } else if self.stop_at_first_failure {
            self.done = true;
        }
    }

    fn best(&self) -> Option<u32> {
        self.best
    }
}

impl LinearSweep {
    fn next(&self) -> Option<u32> {
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
