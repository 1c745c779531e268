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
//! `best()` is the largest stable context seen (`None` if none was stable). `propose()`
//! asked again before `observe()` repeats the pending proposal; `observe()` uses the
//! context in the outcome's configuration.

use ozone_sdk::{settings, ContextBounds, ContextSearch, HardwareFacts, ModelInfo, Outcome};
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

/// The search state.
#[derive(Debug, Clone)]
pub struct BinarySearch {
    settings: Settings,
    bounds: ContextBounds,
    hint: Option<u32>,
    /// Largest stable context seen.
    stable: Option<u32>,
    /// Smallest failed context seen.
    failed: Option<u32>,
    /// Proposed and not yet observed.
    pending: Option<u32>,
    /// Last observed trial was the hint probe.
    hint_confirmed: bool,
    trials: u32,
    bisections: u32,
}

impl ContextSearch for BinarySearch {
    fn new(settings: &str, _hardware: &HardwareFacts, model: &ModelInfo) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        let factor = settings.binary_search_factor;
        if factor.is_nan() || factor <= 1.0 {
            return Err(format!(
                "binary_search_factor must be greater than 1, got {}",
                settings.binary_search_factor
            ));
        }
        Ok(Self {
            settings,
            bounds: model.bounds,
            hint: model.hint,
            stable: None,
            failed: None,
            pending: None,
            hint_confirmed: false,
            trials: 0,
            bisections: 0,
        })
    }

    fn propose(&mut self) -> Option<u32> {
        if self.pending.is_none() {
            self.pending = self.next();
            if self.pending.is_some() && self.failed.is_some() {
                self.bisections += 1;
            }
        }
        self.pending
    }

    fn observe(&mut self, outcome: &Outcome) {
        let ctx = outcome.config.ctx;
        let first = self.trials == 0;
        self.trials += 1;
        self.pending = None;
        self.hint_confirmed = false;
        if outcome.is_stable() {
            self.stable = Some(self.stable.map_or(ctx, |s| s.max(ctx)));
            self.hint_confirmed = first && self.hint.is_some();
        } else {
            self.failed = Some(self.failed.map_or(ctx, |f| f.min(ctx)));
        }
    }

    fn best(&self) -> Option<u32> {
        self.stable
    }
}

impl BinarySearch {
    fn next(&self) -> Option<u32> {
        let g = self.bounds.granularity.max(1);
        if self.trials == 0 {
            let first = self.hint.unwrap_or(self.settings.initial_context_probe);
            return Some(self.bounds.fit(u64::from(first)));
        }
        match (self.stable, self.failed) {
            (Some(lo), None) => {
                if lo >= self.bounds.max {
                    return None;
                }
                let grown = if self.hint_confirmed {
                    u64::from(lo) + u64::from(g)
                } else {
                    (f64::from(lo) * self.settings.binary_search_factor) as u64
                };
                let next = self.bounds.fit(grown).max(lo + g).min(self.bounds.max);
                Some(next)
            }
            (lo, Some(hi)) => {
                if self.bisections >= self.settings.max_binary_iterations {
                    return None;
                }
                // Below the smallest failure and no success yet: the minimum is untested.
                let lo = lo.map_or(i64::from(self.bounds.min) - i64::from(g), i64::from);
                let hi = i64::from(hi);
                if hi - lo <= i64::from(g) {
                    return None;
                }
                let g = i64::from(g);
                let mid = (lo + (hi - lo) / 2) / g * g;
                Some(mid.clamp(lo + g, hi - g) as u32)
            }
            (None, None) => None,
        }
    }
}

ozone_sdk::export_context_search!(BinarySearch);

pub mod table;

#[cfg(test)]
mod tests;
