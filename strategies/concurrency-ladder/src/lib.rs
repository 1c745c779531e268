//! `concurrency-ladder`: Ozone's default concurrency search.
//!
//! # Semantics
//!
//! A level *passes* when its trial is stable and the objective, if any, held
//! (`ConcurrencyOutcome::passed`). Every proposal lies within the host's bounds.
//!
//! **Without an objective** (the SLO is empty) it climbs the ladder of the setting
//! `levels` (the host passes `concurrency_levels`; default 1, 2, 4, 8), in that order,
//! skipping levels outside the bounds, and stops at the first level that does not pass.
//!
//! **With an objective** it starts at `bounds.min` and doubles after each pass (capped at
//! `bounds.max`) until a level misses the objective or its trial is not stable; then it
//! bisects between the last level that passed and the first that did not, until they
//! are adjacent. A pass at `bounds.max` ends the search; so does a miss at `bounds.min`
//! (nothing passes).
//!
//! `best()` is the largest level that passed (`None` if none did). `propose()` asked
//! again before `observe()` repeats the pending proposal; `observe()` uses the
//! concurrency in the outcome's configuration.
//!
//! Settings: `levels` (list of stream counts ≥ 1, default `[1, 2, 4, 8]`).

use ozone_sdk::bisect::{Bisection, Bracket};
use ozone_sdk::{
    settings, ConcurrencyBounds, ConcurrencyOutcome, ConcurrencySearch, HardwareFacts, ModelFacts,
    Slo,
};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub levels: Vec<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            levels: vec![1, 2, 4, 8],
        }
    }
}

/// The search: the bracket and pending proposal, and the plan that picks the next level.
#[derive(Debug, Clone)]
pub struct Ladder {
    search: Bisection,
    plan: Plan,
}

#[derive(Debug, Clone)]
enum Plan {
    /// No objective: the levels in order, until one does not pass.
    Levels { levels: Vec<u32>, observed: usize },
    /// An objective: doubling, then bisection.
    Slo { bounds: ConcurrencyBounds },
}

impl ConcurrencySearch for Ladder {
    fn new(
        settings: &str,
        _hardware: &HardwareFacts,
        _model: &ModelFacts,
        bounds: &ConcurrencyBounds,
        slo: &Slo,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        if settings.levels.contains(&0) {
            return Err(format!(
                "levels must be stream counts of at least 1, got {:?}",
                settings.levels
            ));
        }
        let plan = if slo.is_empty() {
            Plan::Levels {
                levels: settings
                    .levels
                    .into_iter()
                    .filter(|l| bounds.accepts(*l))
                    .collect(),
                observed: 0,
            }
        } else {
            Plan::Slo { bounds: *bounds }
        };
        Ok(Self {
            search: Bisection::new(bounds.min, 1),
            plan,
        })
    }

    fn propose(&mut self) -> Option<u32> {
        self.search.propose_with(|bracket| self.plan.next(bracket))
    }

    fn observe(&mut self, outcome: &ConcurrencyOutcome) {
        if let Plan::Levels { observed, .. } = &mut self.plan {
            *observed += 1;
        }
        self.search
            .observe(outcome.trial.config.concurrency, outcome.passed());
    }

    fn best(&self) -> Option<u32> {
        self.search.bracket().passed()
    }
}

impl Plan {
    fn next(&self, bracket: &Bracket) -> Option<u32> {
        match self {
            Plan::Levels { levels, observed } => {
                if bracket.failed().is_some() {
                    return None;
                }
                levels.get(*observed).copied()
            }
            Plan::Slo { bounds } => match (bracket.passed(), bracket.failed()) {
                (_, Some(_)) => bracket.midpoint(),
                (Some(n), None) if n >= bounds.max => None,
                (Some(n), None) => Some(n.saturating_mul(2).min(bounds.max)),
                (None, None) => Some(bounds.min),
            },
        }
    }
}

ozone_sdk::export_concurrency_search!(Ladder);

pub mod table;

#[cfg(test)]
mod tests;
