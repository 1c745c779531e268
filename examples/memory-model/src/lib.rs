//! `memory-model`: a context search that predicts the limit from memory measurements.
//!
//! Memory use grows linearly with context (the KV cache: `kv_bytes_per_token` per
//! token, plus buffers). Each stable trial reports its peak memory and the *headroom*
//! left to the safety threshold; with the slope of memory over context, the context at
//! which headroom reaches zero is `ctx + headroom / slope`. The search:
//!
//! 1. probes the warm-start hint, else the minimum context (cheap, and it measures the
//!    fixed cost);
//! 2. jumps to the predicted limit (aligned down, clamped to the bounds);
//! 3. verifies: while no failure is known, probes one granularity step above the largest
//!    stable context whenever the prediction does not point further;
//! 4. refines inside the bracket (largest stable, smallest failed) at the predicted
//!    limit (at least one step above the largest stable), or at the midpoint when the
//!    prediction was already refuted (at or above the smallest failure) or no memory
//!    figures are available (timeouts, CPU-only without readings).
//!
//! The slope is a least-squares fit over the stable trials once two are known, the
//! model's `kv_bytes_per_token` before that. It stops when the bracket is one step wide,
//! at the trained context, or after `max_trials` (12). On a machine whose memory grows
//! linearly it finds the limit in about 3 trials where `binary-search` needs about 9.
//!
//! Settings: `max_trials` (12), `safety_margin` (1.0; < 1 aims below the predicted limit).
//! The bracket, its midpoint and the pending proposal are `ozone_sdk::bisect`.

use ozone_sdk::bisect::{Bisection, Bracket};
use ozone_sdk::{
    settings, ContextBounds, ContextLimits, ContextSearch, HardwareFacts, ModelFacts, TrialOutcome,
};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub max_trials: u32,
    pub safety_margin: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_trials: 12,
            safety_margin: 1.0,
        }
    }
}

/// A stable trial's memory reading.
#[derive(Debug, Clone, Copy)]
struct Point {
    ctx: f64,
    peak: f64,
    headroom: f64,
}

/// Which memory grows with the context until a threshold stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// A discrete GPU: the KV cache lives in VRAM.
    Gpu,
    /// CPU inference or unified memory: the machine's RAM.
    Ram,
    /// CPU inference under the user's budget for the server's own memory, which is
    /// then far tighter than the machine's RAM threshold.
    Process,
}

impl Watch {
    fn for_machine(hardware: &HardwareFacts) -> Self {
        let discrete_gpu = hardware.gpu_count > 0 && !hardware.unified_memory;
        if discrete_gpu {
            Watch::Gpu
        } else if hardware.process_memory_budget_bytes.is_some() {
            Watch::Process
        } else {
            Watch::Ram
        }
    }
}

pub struct MemoryModel {
    search: Bisection,
    fit: Fit,
}

/// The memory readings and what the next proposal is predicted from.
struct Fit {
    settings: Settings,
    bounds: ContextBounds,
    hint: Option<u32>,
    prior_slope: Option<f64>,
    /// The memory whose threshold the context runs into.
    watch: Watch,
    points: Vec<Point>,
    trials: u32,
}

impl ContextSearch for MemoryModel {
    fn new(
        settings: &str,
        hardware: &HardwareFacts,
        model: &ModelFacts,
        _limits: &ContextLimits,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        if !(0.5..=1.0).contains(&settings.safety_margin) {
            return Err(format!(
                "safety_margin must be between 0.5 and 1.0, got {}",
                settings.safety_margin
            ));
        }
        Ok(Self {
            search: Bisection::new(model.bounds.min, model.bounds.granularity),
            fit: Fit {
                settings,
                bounds: model.bounds,
                hint: model.hint,
                prior_slope: model
                    .kv_bytes_per_token
                    .map(|b| b as f64)
                    .filter(|b| *b > 0.0),
                watch: Watch::for_machine(hardware),
                points: Vec::new(),
                trials: 0,
            },
        })
    }

    fn propose(&mut self) -> Option<u32> {
        self.search.propose_with(|bracket| self.fit.next(bracket))
    }

    fn observe(&mut self, outcome: &TrialOutcome) {
        let ctx = outcome.config.ctx;
        self.fit.trials += 1;
        self.search.observe(ctx, outcome.is_stable());
        if outcome.is_stable() {
            self.fit.record(outcome);
        }
    }

    fn best(&self) -> Option<u32> {
        self.search.bracket().passed()
    }
}

impl Fit {
    /// Keeps a stable trial's reading of the watched memory.
    fn record(&mut self, outcome: &TrialOutcome) {
        let (peak, headroom) = match self.watch {
            Watch::Gpu => (
                outcome.peak_gpu_memory_bytes,
                outcome.headroom.gpu_memory_bytes,
            ),
            Watch::Ram => (outcome.peak_ram_bytes, outcome.headroom.ram_bytes),
            Watch::Process => (
                outcome.peak_process_memory_bytes,
                outcome.headroom.process_memory_bytes,
            ),
        };
        if let (Some(peak), Some(headroom)) = (peak, headroom) {
            self.points.push(Point {
                ctx: f64::from(outcome.config.ctx),
                peak: peak as f64,
                headroom: headroom as f64,
            });
        }
    }

    fn next(&self, bracket: &Bracket) -> Option<u32> {
        let g = self.bounds.granularity.max(1);
        if self.trials == 0 {
            return Some(
                self.bounds
                    .fit(u64::from(self.hint.unwrap_or(self.bounds.min))),
            );
        }
        if self.trials >= self.settings.max_trials {
            return None;
        }
        let predicted = self.predicted_limit();
        match (bracket.passed(), bracket.failed()) {
            (Some(lo), None) => {
                if lo >= self.bounds.max {
                    return None;
                }
                let jump = predicted
                    .map(|p| self.bounds.fit(p as u64))
                    .filter(|p| *p > lo);
                Some(jump.unwrap_or_else(|| (lo + g).min(self.bounds.max)))
            }
            (_, Some(hi)) => match predicted {
                // Refuted already (it failed at `hi` or below): the model is off.
                Some(p) if p as u64 >= u64::from(hi) => bracket.midpoint(),
                // The model puts the limit inside the bracket (at `lo`: verify one
                // step above).
                Some(p) => bracket.inside(p as u32),
                None => bracket.midpoint(),
            },
            (None, None) => None,
        }
    }

    /// Where headroom reaches zero, from the stable trial closest to the limit.
    fn predicted_limit(&self) -> Option<f64> {
        let slope = self.fitted_slope().or(self.prior_slope)?;
        let nearest = self
            .points
            .iter()
            .min_by(|a, b| a.headroom.total_cmp(&b.headroom))?;
        let headroom = nearest.headroom - (1.0 - self.settings.safety_margin) * nearest.peak;
        Some(nearest.ctx + headroom / slope)
    }

    /// Least-squares slope of peak memory over context, when two contexts were measured.
    fn fitted_slope(&self) -> Option<f64> {
        let n = self.points.len() as f64;
        if self.points.len() < 2 {
            return None;
        }
        let mean_x = self.points.iter().map(|p| p.ctx).sum::<f64>() / n;
        let mean_y = self.points.iter().map(|p| p.peak).sum::<f64>() / n;
        let sxx: f64 = self.points.iter().map(|p| (p.ctx - mean_x).powi(2)).sum();
        let sxy: f64 = self
            .points
            .iter()
            .map(|p| (p.ctx - mean_x) * (p.peak - mean_y))
            .sum();
        (sxx > 0.0).then(|| sxy / sxx).filter(|s| *s > 0.0)
    }
}

ozone_sdk::export_context_search!(MemoryModel);

#[cfg(test)]
mod tests;
