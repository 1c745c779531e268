//! How trials are run: samples, stability criteria, concurrency levels, timeouts.
//! Defaults are the product's documented defaults (`testing.*` in the config); this is
//! their one home, the configuration's defaults read them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::Stage;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrialSettings {
    /// `statistical_validation.min_samples_per_config`.
    pub samples: u32,
    /// `statistical_validation.confidence_threshold`: success rate needed for "stable".
    pub confidence_threshold: f64,
    /// `statistical_validation.variance_tolerance`: largest decode-throughput CV.
    pub variance_tolerance: f64,
    /// Share of the context the prompt fills, in the model's own tokens.
    pub fill_ratio: f64,
    /// Tokens generated per sample.
    pub n_predict: u32,
    /// One unmeasured request before the samples.
    pub warmup: bool,
    pub timeouts: AdaptiveTimeouts,
    /// `concurrency_progression.levels`: the concurrency plugin's ladder.
    pub concurrency_levels: Vec<u32>,
    /// `concurrency_progression.requests_per_stream`: measured requests each stream of a
    /// concurrency level sends, after one unmeasured request when `warmup` is on.
    pub requests_per_stream: u32,
    /// `concurrency_progression.stabilization_delay`, seconds.
    pub stabilization_delay_s: f64,
    /// `concurrency_progression.max_concurrent_timeouts`.
    pub max_concurrent_timeouts: u32,
    /// How long a server may take to load and answer `/health`.
    pub health_timeout_s: f64,
}

impl Default for TrialSettings {
    fn default() -> Self {
        Self {
            samples: 5,
            confidence_threshold: 0.85,
            variance_tolerance: 0.15,
            fill_ratio: 0.9,
            n_predict: 64,
            warmup: true,
            timeouts: AdaptiveTimeouts::default(),
            concurrency_levels: vec![1, 2, 4, 8],
            requests_per_stream: 4,
            stabilization_delay_s: 2.0,
            max_concurrent_timeouts: 2,
            health_timeout_s: 120.0,
        }
    }
}

impl TrialSettings {
    /// Requests a trial of `stage` sends: one for a screen, `samples` for a verification.
    pub fn samples_for(&self, stage: Stage) -> u32 {
        match stage {
            Stage::Screen => 1,
            Stage::Verify => self.samples,
        }
    }
}

/// `testing.adaptive_timeouts`: base + per-1k-context + per-batch-unit, clamped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdaptiveTimeouts {
    pub base_timeout: f64,
    pub context_multiplier: f64,
    pub batch_multiplier: f64,
    pub min_timeout: f64,
    pub max_timeout: f64,
}

impl Default for AdaptiveTimeouts {
    fn default() -> Self {
        Self {
            base_timeout: 60.0,
            context_multiplier: 0.5,
            batch_multiplier: 0.2,
            min_timeout: 30.0,
            max_timeout: 300.0,
        }
    }
}

impl AdaptiveTimeouts {
    /// The rule as the plugin contract states it (ms): one formula for the trials and
    /// for what the plugins are told.
    pub fn rule(&self) -> ozone_sdk::TimeoutRule {
        ozone_sdk::TimeoutRule {
            base_ms: self.base_timeout * 1000.0,
            per_1k_tokens_ms: self.context_multiplier * 1000.0,
            per_batch_ms: self.batch_multiplier * 1000.0,
            min_ms: self.min_timeout * 1000.0,
            max_ms: self.max_timeout * 1000.0,
        }
    }

    /// Request timeout for a context and batch: 60 s + 0.5 s per 1k ctx + 0.2 s per
    /// batch unit, clamped to [min, max] (defaults).
    pub fn for_config(&self, ctx: u32, batch: u32) -> Duration {
        Duration::from_secs_f64(self.rule().for_config(ctx, batch) / 1000.0)
    }
}
