//! `offload-bisect`: Ozone's default offload search.
//!
//! # Semantics (the product's documented behaviour)
//!
//! At one context that does not fit with every layer on the GPU, find the offload with
//! the most of the model on the GPU that still fits. More on the GPU is faster: every
//! layer kept there, and for a mixture-of-experts model every layer's experts (the bulk
//! of its weights, used a few at a time) before any layer.
//!
//! Settings (`ozone.plugin_settings.offload-bisect`; unknown keys are ignored):
//! `max_trials` (12, ≥ 1): the most trials the search asks for.
//!
//! The host runs the search only where everything on the GPU did not fit: that is the
//! upper end of every bracket from the start.
//!
//! 1. **First**: what llama.cpp's fit chose for the context (`bounds.fit`, clamped into
//!    the bounds); without one, the bisection's first midpoint.
//! 2. **Experts first** (a MoE model, `expert_layers > 0`): with every layer on the GPU,
//!    try every expert on the CPU first (unless the fit's proposal already fitted);
//!    when even that does not fit, layers must go (3). Otherwise bisect the number of
//!    layers whose experts stay on the CPU for the smallest that fits (a trial fits when
//!    it is stable; more experts on the CPU free GPU memory).
//! 3. **Layers**: with the experts as step 2 left them (all on the CPU, or none for a
//!    dense model), bisect `gpu_layers` for the largest that fits, from 0 to
//!    `bounds.layers`.
//! 4. A fit proposal that fits is the bracket's lower end (upward from it); one that
//!    does not, its upper end. A failure at or below a pass withdraws that pass (the
//!    host's verification of `best` refuting it, say), and the bisection goes on.
//!
//! `best()` is the stable offload with the most layers on the GPU, and of those the
//! fewest experts on the CPU; `None` when nothing fitted. `propose()` asked again before
//! `observe()` repeats the pending proposal.

use ozone_sdk::bisect::Bracket;
use ozone_sdk::{
    log, settings, HardwareFacts, LogLevel, ModelFacts, Offload, OffloadBounds, OffloadSearch,
    TrialOutcome,
};
use serde::Deserialize;

/// The plugin's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub max_trials: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_trials: 12 }
    }
}

/// Which axis is being bisected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    /// Experts on the GPU (`expert_layers − cpu_moe_layers`), every layer on the GPU.
    Experts,
    /// Layers on the GPU, experts as the expert phase left them.
    Layers { cpu_moe_layers: u32 },
}

pub struct Bisect {
    settings: Settings,
    bounds: OffloadBounds,
    axis: Axis,
    /// Over the value of the current axis: larger is more on the GPU, and fails sooner.
    bracket: Bracket,
    pending: Option<Offload>,
    trials: u32,
    /// Every stable offload, for `best`.
    stable: Vec<Offload>,
}

impl OffloadSearch for Bisect {
    fn new(
        settings: &str,
        _hardware: &HardwareFacts,
        _model: &ModelFacts,
        bounds: &OffloadBounds,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        if settings.max_trials == 0 {
            return Err("max_trials must be at least 1".into());
        }
        let axis = if bounds.expert_layers > 0 {
            Axis::Experts
        } else {
            Axis::Layers { cpu_moe_layers: 0 }
        };
        let mut search = Self {
            settings,
            bounds: *bounds,
            axis,
            bracket: Bracket::new(0, 1),
            pending: None,
            trials: 0,
            stable: Vec::new(),
        };
        // Everything on the GPU did not fit: the host would not search otherwise.
        search.bracket.record(search.top(), false);
        Ok(search)
    }

    fn propose(&mut self) -> Option<Offload> {
        if self.pending.is_none() && self.trials < self.settings.max_trials {
            self.pending = self.next();
            if let Some(o) = self.pending {
                log(
                    LogLevel::Debug,
                    &format!("{o} at {} tokens", self.bounds.ctx),
                );
            }
        }
        self.pending
    }

    fn observe(&mut self, outcome: &TrialOutcome) {
        self.pending = None;
        self.trials += 1;
        let tried = Offload {
            gpu_layers: outcome
                .config
                .variant
                .gpu_layers
                .unwrap_or(self.bounds.layers),
            cpu_moe_layers: outcome.config.variant.cpu_moe_layers,
        };
        let fits = outcome.is_stable();
        if fits {
            self.stable.push(tried);
        } else {
            self.stable.retain(|s| *s != tried);
        }
        if let Some(value) = self.value_on_axis(tried) {
            self.bracket.record(value, fits);
        }
        // Every expert on the CPU and still no fit: give up layers (3).
        if self.axis == Axis::Experts && !fits && tried.cpu_moe_layers == self.bounds.expert_layers
        {
            self.axis = Axis::Layers {
                cpu_moe_layers: self.bounds.expert_layers,
            };
            self.bracket = Bracket::new(0, 1);
            self.bracket.record(self.bounds.layers, false);
        }
    }

    fn best(&self) -> Option<Offload> {
        self.stable
            .iter()
            .copied()
            .max_by_key(|o| (o.gpu_layers, std::cmp::Reverse(o.cpu_moe_layers)))
    }
}

impl Bisect {
    /// The value a tried offload has on the current axis, when it lies on it.
    fn value_on_axis(&self, o: Offload) -> Option<u32> {
        match self.axis {
            Axis::Experts => (o.gpu_layers == self.bounds.layers)
                .then(|| self.bounds.expert_layers.saturating_sub(o.cpu_moe_layers)),
            Axis::Layers { cpu_moe_layers } => {
                (o.cpu_moe_layers == cpu_moe_layers).then_some(o.gpu_layers)
            }
        }
    }

    fn offload_at(&self, value: u32) -> Offload {
        match self.axis {
            Axis::Experts => Offload {
                gpu_layers: self.bounds.layers,
                cpu_moe_layers: self.bounds.expert_layers.saturating_sub(value),
            },
            Axis::Layers { cpu_moe_layers } => Offload {
                gpu_layers: value,
                cpu_moe_layers,
            },
        }
    }

    /// The largest value of the current axis.
    fn top(&self) -> u32 {
        match self.axis {
            Axis::Experts => self.bounds.expert_layers,
            Axis::Layers { .. } => self.bounds.layers,
        }
    }

    fn next(&self) -> Option<Offload> {
        if let (0, Some(fit)) = (self.trials, self.bounds.fit) {
            return Some(Offload {
                gpu_layers: fit.gpu_layers.min(self.bounds.layers),
                cpu_moe_layers: fit.cpu_moe_layers.min(self.bounds.expert_layers),
            });
        }
        if self.axis == Axis::Experts && self.bracket.passed().is_none() {
            // The cheapest offload that keeps every layer: all experts on the CPU.
            return Some(self.offload_at(0));
        }
        self.bracket.midpoint().map(|v| self.offload_at(v))
    }
}

ozone_sdk::export_offload_search!(Bisect);

pub mod table;

#[cfg(test)]
mod tests;
