//! `variant-frontier`: Ozone's default variant search.
//!
//! # Semantics (the product's documented behaviour)
//!
//! Settings (`ozone.plugin_settings.variant-frontier`; missing keys take these defaults,
//! unknown keys are ignored, a wrong type is an error): `measure_all` (false): measure
//! every candidate, in the order below, whatever the predictions say;
//! `min_context_gain` (1.1, ≥ 1): how much larger a predicted context must be than the
//! largest measured one to be worth a variant's trials.
//!
//! 1. **First**: `space.initial`, the variant the user's flags name (a candidate of the
//!    space; else the first candidate).
//! 2. **Predict** each candidate not measured yet from the measured ones. A context bound
//!    by memory scales with the KV cache's bytes per element: the nearest measured
//!    variant's context × its cache ratio ÷ the candidate's (`Variant::cache_ratio`: f16
//!    1, q8_0 ≈ 0.53, q4_0 ≈ 0.28 for both halves), capped at the trained context. A
//!    context bound by anything else (time, the objective, the trained context,
//!    instability, a server error) stays what it was: a smaller cache does not make
//!    prefill faster. Variants that differ in flash attention or threads cannot be
//!    predicted (their speed and compute buffers differ): one of each such setting is
//!    worth measuring.
//! 3. **Worth measuring**: a candidate whose predicted context is at least
//!    `min_context_gain` × the context of every measured variant whose cache loses no
//!    more quality (the quality a cache loses ranks by its halves: f16 0, q8_0 1, q4_0 2
//!    each, so f16/f16 < q8_0/q8_0 < q8_0/q4_0 < q4_0/q4_0): it would widen the frontier
//!    of context against quality. Without a memory bound nothing smaller widens it: a
//!    time-bound f16 context stays the largest, and a quantized cache only costs quality.
//! 4. **Next**: of those worth measuring, the largest predicted gain; else the first
//!    candidate with a flash-attention, thread or offload setting no measured variant
//!    had; else none — no remaining variant can widen the frontier. At most
//!    `space.max_variants` variants.
//!
//! A variant whose context search found nothing stable counts as measured (its context
//! 0). `propose()` asked again before `observe()` repeats the pending proposal; every
//! proposal is a candidate not measured yet. There is no `best`: the host keeps every
//! measured variant, as the frontier.

use ozone_sdk::{
    log, settings, BoundKind, CacheType, HardwareFacts, LogLevel, ModelFacts, Variant,
    VariantOutcome, VariantSearch, VariantSpace,
};
use serde::Deserialize;

/// The plugin's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub measure_all: bool,
    pub min_context_gain: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            measure_all: false,
            min_context_gain: 1.1,
        }
    }
}

pub struct Frontier {
    settings: Settings,
    space: VariantSpace,
    trained: u32,
    measured: Vec<VariantOutcome>,
    pending: Option<Variant>,
}

impl VariantSearch for Frontier {
    fn new(
        settings: &str,
        _hardware: &HardwareFacts,
        model: &ModelFacts,
        space: &VariantSpace,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        if settings.min_context_gain.is_nan() || settings.min_context_gain < 1.0 {
            return Err(format!(
                "min_context_gain must be at least 1, got {}",
                settings.min_context_gain
            ));
        }
        Ok(Self {
            settings,
            space: space.clone(),
            trained: model.trained_context,
            measured: Vec::new(),
            pending: None,
        })
    }

    fn propose(&mut self) -> Option<Variant> {
        if self.pending.is_none() {
            self.pending = self.next();
            if let Some(v) = self.pending {
                log(LogLevel::Debug, &format!("next variant: {v}"));
            }
        }
        self.pending
    }

    fn observe(&mut self, outcome: &VariantOutcome) {
        self.pending = None;
        if !self.is_measured(&outcome.variant) {
            self.measured.push(outcome.clone());
        }
    }
}

impl Frontier {
    fn is_measured(&self, v: &Variant) -> bool {
        self.measured.iter().any(|m| m.variant == *v)
    }

    fn remaining(&self) -> impl Iterator<Item = &Variant> {
        self.space
            .candidates
            .iter()
            .filter(|v| !self.is_measured(v))
    }

    fn next(&self) -> Option<Variant> {
        if self.measured.len() as u32 >= self.space.max_variants {
            return None;
        }
        if self.measured.is_empty() {
            let initial = self.space.initial;
            return Some(if self.space.accepts(&initial) {
                initial
            } else {
                *self.space.candidates.first()?
            });
        }
        if self.settings.measure_all {
            return self.remaining().next().copied();
        }
        let by_gain = self
            .remaining()
            .filter_map(|v| Some((*v, self.gain(v)?)))
            .filter(|(_, g)| *g >= self.settings.min_context_gain)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(v, _)| v);
        by_gain.or_else(|| self.remaining().find(|v| !self.predictable(v)).copied())
    }

    /// How much more context `v` is predicted to hold than the measured variants that
    /// lose no more quality; `None` when it cannot be predicted.
    fn gain(&self, v: &Variant) -> Option<f64> {
        let predicted = self.predicted_context(v)?;
        let rival = self
            .measured
            .iter()
            .filter(|m| quality_loss(&m.variant) <= quality_loss(v))
            .map(|m| m.max_context.unwrap_or(0))
            .max()
            .unwrap_or(0);
        Some(f64::from(predicted) / f64::from(rival.max(1)))
    }

    /// Whether a measured variant has the candidate's flash attention, threads and
    /// offload: then only its cache differs, and its context can be predicted.
    fn predictable(&self, v: &Variant) -> bool {
        self.measured.iter().any(|m| same_but_cache(&m.variant, v))
    }

    /// The candidate's context, predicted from the measured variant nearest to it (same
    /// settings but the cache; the closest cache ratio).
    fn predicted_context(&self, v: &Variant) -> Option<u32> {
        let reference = self
            .measured
            .iter()
            .filter(|m| same_but_cache(&m.variant, v))
            .min_by(|a, b| {
                let d = |m: &VariantOutcome| (m.variant.cache_ratio() - v.cache_ratio()).abs();
                d(a).total_cmp(&d(b))
            })?;
        let measured = reference.max_context.unwrap_or(0);
        Some(match reference.bound {
            Some(BoundKind::Memory) => {
                let scaled =
                    f64::from(measured) * reference.variant.cache_ratio() / v.cache_ratio();
                (scaled as u32).min(self.trained)
            }
            _ => measured,
        })
    }
}

/// How much quality a cache loses, by rank: f16 0, q8_0 1, q4_0 2 for each half.
fn quality_loss(v: &Variant) -> u32 {
    let rank = |t: CacheType| match t {
        CacheType::F16 => 0,
        CacheType::Q8_0 => 1,
        CacheType::Q4_0 => 2,
    };
    rank(v.cache_type_k) + rank(v.cache_type_v)
}

fn same_but_cache(a: &Variant, b: &Variant) -> bool {
    a.flash_attn == b.flash_attn
        && a.threads == b.threads
        && a.gpu_layers == b.gpu_layers
        && a.cpu_moe_layers == b.cpu_moe_layers
}

ozone_sdk::export_variant_search!(Frontier);

pub mod table;

#[cfg(test)]
mod tests;
