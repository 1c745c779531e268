//! `golden-batch`: golden-section search for the batch size with peak throughput.
//!
//! Where the default `batch-scaler` only tries powers of its factor (32, 64, 128, …),
//! this searches every multiple of `step` from `min_batch` up to the host's largest batch
//! (`bounds.max`: `batch_adaptation.max_batch`, 256 by default) and assumes only
//! that throughput rises to one peak and then falls (unimodal). Golden-section search
//! shrinks the bracket by ~0.618 per trial, reusing one interior point each time, so 32
//! candidates cost about 8 trials. A failed or unstable trial scores below any stable
//! one, which steers the search away from batches that run out of memory.
//!
//! When the bracket holds three candidates or fewer, the unmeasured ones are tried and
//! the search ends; it also ends after `max_trials`. `best()` is the stable batch with
//! the highest throughput (prefill tokens/s, else decode). Every batch is tried whole:
//! its micro-batch equal to it, capped at the host's `bounds.max_ubatch`.
//!
//! Settings: `min_batch` (32), `step` (32), `max_trials` (10). The upper end is the
//! host's: raise `search_strategy.batch_adaptation.max_batch` to search further.

use ozone_sdk::{
    settings, BatchBounds, BatchProposal, BatchScaler, HardwareFacts, ModelFacts, TrialOutcome,
};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub min_batch: u32,
    pub step: u32,
    pub max_trials: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_batch: 32,
            step: 32,
            max_trials: 10,
        }
    }
}

/// 1/φ.
const INV_PHI: f64 = 0.618_033_988_749_895;

pub struct GoldenBatch {
    settings: Settings,
    bounds: BatchBounds,
    /// Candidate batch sizes, ascending.
    candidates: Vec<u32>,
    /// Score per candidate once measured (stable: throughput; otherwise -1).
    scores: Vec<Option<f64>>,
    /// The bracket, as candidate indices (inclusive).
    lo: usize,
    hi: usize,
    pending: Option<usize>,
    trials: u32,
}

impl BatchScaler for GoldenBatch {
    fn new(
        settings: &str,
        _hardware: &HardwareFacts,
        _model: &ModelFacts,
        bounds: &BatchBounds,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        if settings.step == 0 || settings.min_batch == 0 {
            return Err(format!(
                "need min_batch > 0 and step > 0, got min_batch {} step {}",
                settings.min_batch, settings.step
            ));
        }
        let first = settings.min_batch.max(bounds.min);
        let candidates: Vec<u32> = (first..=bounds.max)
            .step_by(settings.step as usize)
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "no batch to try: min_batch {} is above the host's largest batch {} \
                 (search_strategy.batch_adaptation.max_batch)",
                settings.min_batch, bounds.max
            ));
        }
        Ok(Self {
            scores: vec![None; candidates.len()],
            lo: 0,
            hi: candidates.len() - 1,
            candidates,
            settings,
            bounds: *bounds,
            pending: None,
            trials: 0,
        })
    }

    fn propose(&mut self) -> Option<BatchProposal> {
        if self.pending.is_none() {
            self.pending = self.next();
        }
        self.pending.map(|i| self.bounds.whole(self.candidates[i]))
    }

    fn observe(&mut self, outcome: &TrialOutcome) {
        self.trials += 1;
        self.pending = None;
        let Some(i) = self
            .candidates
            .iter()
            .position(|c| *c == outcome.config.batch)
        else {
            return;
        };
        let score = if outcome.is_stable() {
            outcome.throughput().unwrap_or(0.0)
        } else {
            -1.0
        };
        self.scores[i] = Some(score);
    }

    fn best(&self) -> Option<BatchProposal> {
        self.scores
            .iter()
            .zip(&self.candidates)
            .filter_map(|(s, c)| s.filter(|s| *s >= 0.0).map(|s| (s, *c)))
            .fold(None, |best: Option<(f64, u32)>, (s, c)| match best {
                Some((bs, _)) if bs >= s => best,
                _ => Some((s, c)),
            })
            .map(|(_, c)| self.bounds.whole(c))
    }
}

impl GoldenBatch {
    /// The two interior points of the bracket, always distinct: on a narrow bracket
    /// rounding can make them meet, and comparing a point with itself would drop the
    /// upper side unseen.
    fn interior(&self) -> (usize, usize) {
        let width = (self.hi - self.lo) as f64;
        let c = self.hi - (width * INV_PHI).round() as usize;
        let d = self.lo + (width * INV_PHI).round() as usize;
        let (c, d) = (c.min(d), c.max(d));
        (c, if c == d { d + 1 } else { d })
    }

    fn next(&mut self) -> Option<usize> {
        if self.trials >= self.settings.max_trials {
            return None;
        }
        loop {
            if self.hi - self.lo < 3 {
                return (self.lo..=self.hi).find(|i| self.scores[*i].is_none());
            }
            let (c, d) = self.interior();
            match (self.scores[c], self.scores[d]) {
                (None, _) => return Some(c),
                (_, None) => return Some(d),
                // Keep the side of the better point (ties keep the smaller batch).
                (Some(fc), Some(fd)) if fc >= fd => self.hi = d,
                _ => self.lo = c,
            }
        }
    }
}

ozone_sdk::export_batch_scaler!(GoldenBatch);

#[cfg(test)]
mod tests;
