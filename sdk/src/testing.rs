//! A native test harness: drive a policy with simulated trials in plain `cargo test`,
//! without building wasm.
//!
//! ```
//! use ozone_sdk::testing::{self, MemoryMachine};
//! # struct Fixed(Option<u32>);
//! # impl ozone_sdk::ContextSearch for Fixed {
//! #     fn new(_: &str, _: &ozone_sdk::HardwareFacts, _: &ozone_sdk::ModelInfo) -> Result<Self, String> { Ok(Fixed(Some(4096))) }
//! #     fn propose(&mut self) -> Option<u32> { self.0.take() }
//! #     fn observe(&mut self, _: &ozone_sdk::Outcome) {}
//! #     fn best(&self) -> Option<u32> { Some(4096) }
//! # }
//! let machine = MemoryMachine::with_context_limit(100_000);
//! let run = testing::run_context::<Fixed>("{}", &machine.hardware(), &testing::model(131_072), |ctx| machine.context_trial(ctx)).unwrap();
//! assert_eq!(run.proposals, vec![4096]);
//! ```

use crate::strategy::{BatchScaler, ContextSearch};
use crate::types::*;

/// A run cannot take more trials than this; a policy that never stops fails the test.
pub const MAX_TRIALS: usize = 64;

/// What a driven policy did.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Every proposal, in order.
    pub proposals: Vec<u32>,
    /// `best()` after the policy finished.
    pub best: Option<u32>,
}

/// Drives a context search until it proposes `None` (at most [`MAX_TRIALS`]), running
/// each proposal through `trial`. Checks every proposal against `model.bounds`.
pub fn run_context<S: ContextSearch>(
    settings: &str,
    hardware: &HardwareFacts,
    model: &ModelInfo,
    mut trial: impl FnMut(u32) -> Outcome,
) -> Result<Run, String> {
    let mut search = S::new(settings, hardware, model)?;
    let mut proposals = Vec::new();
    while let Some(ctx) = search.propose() {
        if !model.bounds.accepts(ctx) {
            return Err(format!(
                "proposed context {ctx}, outside {:?} (after {proposals:?})",
                model.bounds
            ));
        }
        proposals.push(ctx);
        if proposals.len() > MAX_TRIALS {
            return Err(format!(
                "did not stop after {MAX_TRIALS} trials: {proposals:?}"
            ));
        }
        search.observe(&trial(ctx));
    }
    Ok(Run {
        proposals,
        best: search.best(),
    })
}

/// Drives a batch scaler like [`run_context`]; batch proposals must be ≥ 1.
pub fn run_batch<S: BatchScaler>(
    settings: &str,
    hardware: &HardwareFacts,
    model: &ModelInfo,
    mut trial: impl FnMut(u32) -> Outcome,
) -> Result<Run, String> {
    let mut scaler = S::new(settings, hardware, model)?;
    let mut proposals = Vec::new();
    while let Some(batch) = scaler.propose() {
        if batch == 0 {
            return Err(format!("proposed batch 0 (after {proposals:?})"));
        }
        proposals.push(batch);
        if proposals.len() > MAX_TRIALS {
            return Err(format!(
                "did not stop after {MAX_TRIALS} trials: {proposals:?}"
            ));
        }
        scaler.observe(&trial(batch));
    }
    Ok(Run {
        proposals,
        best: scaler.best(),
    })
}

/// A model with the given trained context: 8 B parameters (medium), 128 KiB of f16 KV
/// cache per token (Llama-3-8B's layout), bounds 2048..=trained in steps of 256.
pub fn model(trained_context: u32) -> ModelInfo {
    ModelInfo {
        name: "test-8b".into(),
        parameter_count: Some(8_000_000_000),
        size_class: SizeClass::Medium,
        trained_context,
        kv_bytes_per_token: Some(MemoryMachine::LLAMA_8B_KV_BYTES),
        weights_bytes: Some(MemoryMachine::BASE_BYTES),
        bounds: ContextBounds {
            min: 2048.min(trained_context / 256 * 256),
            max: trained_context / 256 * 256,
            granularity: 256,
        },
        hint: None,
    }
}

/// A successful, stable outcome for `config` with no measurements.
pub fn stable(config: TrialConfig) -> Outcome {
    Outcome {
        config,
        verdict: Verdict::Stable,
        failure: None,
        peak_gpu_memory_bytes: None,
        peak_ram_bytes: None,
        peak_process_memory_bytes: None,
        headroom: Headroom::default(),
        prefill_tps: None,
        decode_tps: None,
        ttft_ms: None,
        cv: Some(0.02),
        success_rate: 1.0,
    }
}

/// A failed outcome for `config`.
pub fn failed(config: TrialConfig, failure: Failure) -> Outcome {
    Outcome {
        verdict: Verdict::Failed,
        failure: Some(failure),
        success_rate: 0.0,
        cv: None,
        ..stable(config)
    }
}

/// The trial configuration of a context-phase trial at `ctx`.
pub fn context_config(ctx: u32) -> TrialConfig {
    TrialConfig {
        ctx,
        batch: 512,
        ubatch: 512,
        concurrency: 1,
    }
}

/// The trial configuration of a batch-phase trial at `batch`.
pub fn batch_config(batch: u32) -> TrialConfig {
    TrialConfig {
        ctx: 8192,
        batch,
        ubatch: batch.min(512),
        concurrency: 1,
    }
}

/// A simulated GPU whose memory use grows linearly with context: `base + per_token × ctx`,
/// with the VRAM threshold at `limit`. A trial is stable when its peak stays at or under
/// the limit; above it the guard reports a VRAM breach. Peaks and headroom are filled in
/// as the real host would.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryMachine {
    pub base_bytes: u64,
    pub bytes_per_token: u64,
    pub limit_bytes: u64,
}

impl MemoryMachine {
    /// Weights + compute buffers of the simulated model.
    pub const BASE_BYTES: u64 = 5 << 30;
    /// f16 KV bytes per token of an 8B Llama-3 (32 layers × 8 KV heads × 128 × 2 × 2).
    pub const LLAMA_8B_KV_BYTES: u64 = 131_072;

    /// A machine whose largest stable context is exactly `limit_ctx` tokens.
    pub fn with_context_limit(limit_ctx: u32) -> Self {
        Self {
            base_bytes: Self::BASE_BYTES,
            bytes_per_token: Self::LLAMA_8B_KV_BYTES,
            limit_bytes: Self::BASE_BYTES + Self::LLAMA_8B_KV_BYTES * u64::from(limit_ctx),
        }
    }

    /// Hardware facts matching the machine (a 24 GiB GPU unless the limit needs more).
    pub fn hardware(&self) -> HardwareFacts {
        let total = (self.limit_bytes + self.limit_bytes / 9).max(24 << 30);
        HardwareFacts {
            gpu_count: 1,
            gpu_memory_total_bytes: Some(total),
            gpu_memory_free_bytes: Some(total - (300 << 20)),
            gpu_memory_limit_bytes: Some(self.limit_bytes),
            ram_total_bytes: Some(64 << 30),
            ram_available_bytes: Some(60 << 30),
            ram_limit_bytes: Some(54 << 30),
            process_memory_budget_bytes: None,
            unified_memory: false,
            logical_cores: Some(16),
        }
    }

    /// The outcome of a context-phase trial at `ctx`.
    pub fn context_trial(&self, ctx: u32) -> Outcome {
        let peak = self.base_bytes + self.bytes_per_token * u64::from(ctx);
        let mut outcome = if peak <= self.limit_bytes {
            Outcome {
                decode_tps: Some(40.0),
                prefill_tps: Some(900.0),
                ttft_ms: Some(f64::from(ctx) / 900.0 * 1000.0),
                ..stable(context_config(ctx))
            }
        } else {
            failed(
                context_config(ctx),
                Failure::ThresholdBreach(Threshold::Vram),
            )
        };
        outcome.peak_gpu_memory_bytes = Some(peak);
        outcome.peak_ram_bytes = Some(2 << 30);
        outcome.headroom.gpu_memory_bytes = Some(self.limit_bytes as i64 - peak as i64);
        outcome
    }
}

/// A simulated throughput curve over batch sizes: peaks at `best_batch` with
/// `peak_tps` and falls off as a Gaussian of the log2-distance from it; batches above
/// `oom_above` run out of memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchMachine {
    pub best_batch: u32,
    pub peak_tps: f64,
    pub oom_above: Option<u32>,
}

impl BatchMachine {
    pub fn throughput(&self, batch: u32) -> f64 {
        let d = (f64::from(batch) / f64::from(self.best_batch)).log2();
        self.peak_tps * (-0.05 * d * d).exp()
    }

    /// The outcome of a batch-phase trial at `batch`.
    pub fn batch_trial(&self, batch: u32) -> Outcome {
        if self.oom_above.is_some_and(|limit| batch > limit) {
            return failed(batch_config(batch), Failure::OutOfMemory);
        }
        let tps = self.throughput(batch);
        Outcome {
            prefill_tps: Some(tps),
            decode_tps: Some(40.0),
            ..stable(batch_config(batch))
        }
    }
}
