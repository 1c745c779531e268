//! `binary-search`: Ozone's default context search.
//!
//! # Semantics (the product's documented behaviour)
//!
//! Settings (`search_strategy` section; missing keys take these defaults, unknown keys
//! are ignored, a value of the wrong type is an error):
//! `initial_context_probe` 65536, `binary_search_factor` 1.3, `max_binary_iterations` 7.
//!
//! Every value is aligned *down* to the model's granularity (256) and clamped to
//! `[bounds.min, bounds.max]` (max = the trained context). A trial counts as a success
//! only when its verdict is `stable`; unstable and failed trials both count as failures.
//! A busy machine makes noise: a *screen* that failed for a reason other than memory
//! (a timeout, a server error, bad output; not out-of-memory or a memory threshold) is
//! measured once more — proposing the same context again asks the host for a repeat —
//! and only that second outcome counts; but a time miss only where the time measured
//! (or, for a request cut at the timeout, the time the stable screens' fill curve
//! predicts, `ozone_sdk::timing`) was at most 10 % over the time limit (the objective's
//! latency bounds, and the timeout margin × the timeout): a timeout the measured prefill
//! rate predicted is not noise. Memory failures and verifications count at once.
//!
//! 1. **First probe**: the warm-start `hint` when the host has one, else
//!    `initial_context_probe`.
//! 2. **Growth** (while no failure is known): after a stable trial at `c`, probe
//!    `c × binary_search_factor`, capped at the trained context. If the stable value
//!    was the hint, probe one granularity step above it instead (an unchanged limit is
//!    then confirmed in two trials), and grow by the factor from there. A stable trial at
//!    the trained context ends the search.
//! 3. **Bisection** (once a failure is known): with `lo` the largest stable context (or
//!    `min − granularity` if none yet) and `hi` the smallest failed one, probe the
//!    midpoint of `(lo, hi)` aligned down. Stop when no aligned value lies strictly
//!    between them (`hi − lo ≤ granularity`) or after `max_binary_iterations` bisection
//!    trials (growth and first probes do not count).
//!
//! 4. **A refuted answer**: the host verifies `best()` with a full trial. A verification
//!    that is not stable is a failure like any other (it withdraws the passes at and
//!    above it), and the bisection resumes inside the new bracket with a fresh
//!    allowance of `max_binary_iterations` trials: the answer stays within one step of
//!    what the full trials sustain instead of falling back to an older, lower pass.
//!    A verification that missed the time limit (a timeout, a request near it, the
//!    objective) also withdraws the passes below it that the same slowdown would put
//!    over the limit — each screen's time × the verification's load over its own screen's
//!    — and keeps the ones still consistent with it; from then on a screen passes only
//!    with that slowdown applied: the next answer is the largest screen the
//!    verification's machine would still have served in time.
//!
//! `best()` is the largest stable context seen and not withdrawn by a failure at or
//! below it (`None` if none was stable). `propose()` asked again before `observe()`
//! repeats the pending proposal; `observe()` uses the context in the outcome's
//! configuration. The stage of an outcome (screen or verify) changes only the
//! allowance (4): its verdict counts the same. (The bracket, its midpoint and the
//! pending proposal are `ozone_sdk::bisect`.)

use ozone_sdk::bisect::{Bisection, Bracket};
use ozone_sdk::timing::FillTimes;
use ozone_sdk::{
    settings, ContextBounds, ContextLimits, ContextSearch, HardwareFacts, ModelFacts, Stage,
    TrialOutcome,
};
use serde::Deserialize;

/// The `search_strategy` keys this plugin reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub initial_context_probe: u32,
    pub binary_search_factor: f64,
    pub max_binary_iterations: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            initial_context_probe: 65536,
            binary_search_factor: 1.3,
            max_binary_iterations: 7,
        }
    }
}

/// The search: the bracket and pending proposal, and the plan that picks the next value.
#[derive(Debug, Clone)]
pub struct BinarySearch {
    search: Bisection,
    plan: Plan,
    /// The context whose transient-looking failure is being measured again.
    retrying: Option<u32>,
    /// What bounds a context besides memory.
    limits: ContextLimits,
    /// The screens' fill times.
    times: FillTimes,
}

/// Everything but the bracket that decides the next proposal.
#[derive(Debug, Clone)]
struct Plan {
    settings: Settings,
    bounds: ContextBounds,
    hint: Option<u32>,
    /// Last observed trial was the hint probe, and it was stable.
    hint_confirmed: bool,
    trials: u32,
    /// Trials proposed while a failure was known, since the last refuted answer.
    bisections: u32,
}

impl ContextSearch for BinarySearch {
    fn new(
        settings: &str,
        _hardware: &HardwareFacts,
        model: &ModelFacts,
        limits: &ContextLimits,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        let factor = settings.binary_search_factor;
        if factor.is_nan() || factor <= 1.0 {
            return Err(format!(
                "binary_search_factor must be greater than 1, got {}",
                settings.binary_search_factor
            ));
        }
        Ok(Self {
            search: Bisection::new(model.bounds.min, model.bounds.granularity),
            plan: Plan {
                settings,
                bounds: model.bounds,
                hint: model.hint,
                hint_confirmed: false,
                trials: 0,
                bisections: 0,
            },
            retrying: None,
            limits: limits.clone(),
            times: FillTimes::default(),
        })
    }

    fn propose(&mut self) -> Option<u32> {
        self.search.propose_with(|bracket| self.plan.next(bracket))
    }

    fn observe(&mut self, outcome: &TrialOutcome) {
        let ctx = outcome.config.ctx;
        self.times.record(outcome);
        let noise = outcome.stage == Stage::Screen
            && !outcome.is_stable()
            && !outcome.failure.is_some_and(|f| f.is_memory())
            && self.times.worth_retrying(&self.limits, outcome);
        if noise && self.retrying != Some(ctx) {
            // The pending proposal stays: `propose` asks for the same context again.
            self.retrying = Some(ctx);
            return;
        }
        self.retrying = None;
        let plan = &mut self.plan;
        let first = plan.trials == 0;
        plan.trials += 1;
        if self.search.bracket().failed().is_some() {
            plan.bisections += 1;
        }
        // The host's verification of our answer (a context that passed) refuted it.
        let refuted = outcome.stage == Stage::Verify
            && !outcome.is_stable()
            && self.search.bracket().passed() == Some(outcome.config.ctx);
        if refuted {
            plan.bisections = 0;
        }
        plan.hint_confirmed = first && plan.hint.is_some() && outcome.is_stable();
        let inconsistent = if refuted {
            let passes = self.search.bracket().passes().to_vec();
            self.times.refuted(&self.limits, outcome, &passes)
        } else {
            None
        };
        let passed = outcome.is_stable() && self.times.holds(&self.limits, outcome);
        self.search.observe(ctx, passed);
        if let Some(below) = inconsistent {
            self.search.observe(below, false);
        }
    }

    fn best(&self) -> Option<u32> {
        self.search.bracket().passed()
    }
}

impl Plan {
    fn next(&self, bracket: &Bracket) -> Option<u32> {
        let g = self.bounds.granularity.max(1);
        if self.trials == 0 {
            let first = self.hint.unwrap_or(self.settings.initial_context_probe);
            return Some(self.bounds.fit(u64::from(first)));
        }
        match (bracket.passed(), bracket.failed()) {
            (Some(lo), None) => {
                if lo >= self.bounds.max {
                    return None;
                }
                let grown = if self.hint_confirmed {
                    u64::from(lo) + u64::from(g)
                } else {
                    (f64::from(lo) * self.settings.binary_search_factor) as u64
                };
                Some(self.bounds.fit(grown).max(lo + g).min(self.bounds.max))
            }
            (_, Some(_)) if self.bisections >= self.settings.max_binary_iterations => None,
            // Below the smallest failure, and above the largest success (or from the
            // minimum, untested): the midpoint, until no aligned value is left.
            (_, Some(_)) => bracket.midpoint(),
            (None, None) => None,
        }
    }
}

ozone_sdk::export_context_search!(BinarySearch);

pub mod table;

#[cfg(test)]
mod tests;
