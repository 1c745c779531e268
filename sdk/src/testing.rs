//! A native test harness: drive a policy with simulated trials in plain `cargo test`,
//! without building wasm.
//!
//! - [`run_context`], [`run_batch`], [`run_concurrency`], [`run_variants`] and
//!   [`run_offload`] drive a policy to its end, checking every proposal against the
//!   bounds the host would enforce and stopping a policy that never finishes
//!   ([`MAX_TRIALS`]);
//! - simulated machines answer the trials: [`MemoryMachine`] (memory grows with
//!   context up to a threshold), [`NoisyMachine`] (the same on a busy machine: noisy
//!   peaks, transient failures, unstable verifications; seeded), [`BatchMachine`]
//!   (prefill throughput peaks at one micro-batch), [`ConcurrencyMachine`] (latency
//!   grows with streams, so an objective binds), [`VariantMachine`] (a quantized cache
//!   holds more context and costs quality), [`OffloadMachine`] (layers fit the GPU up
//!   to a count);
//! - [`check_noise_tolerance`] runs a context search on a clean machine and on noisy
//!   ones and fails when noise changes its answer (a policy that gives up on one
//!   failed trial fails it);
//! - [`model`], [`batch_bounds`], [`concurrency_bounds`], [`stable`], [`failed`] build
//!   the facts and outcomes a test needs.
//!
//! ```
//! use ozone_sdk::testing::{self, MemoryMachine};
//! # struct Fixed(Option<u32>);
//! # impl ozone_sdk::ContextSearch for Fixed {
//! #     fn new(_: &str, _: &ozone_sdk::HardwareFacts, _: &ozone_sdk::ModelFacts, _: &ozone_sdk::ContextLimits) -> Result<Self, String> { Ok(Fixed(Some(4096))) }
//! #     fn propose(&mut self) -> Option<u32> { self.0.take() }
//! #     fn observe(&mut self, _: &ozone_sdk::TrialOutcome) {}
//! #     fn best(&self) -> Option<u32> { Some(4096) }
//! # }
//! let machine = MemoryMachine::with_context_limit(100_000);
//! let run = testing::run_context::<Fixed>("{}", &machine.hardware(), &testing::model(131_072), |ctx| machine.context_trial(ctx)).unwrap();
//! assert_eq!(run.proposals, vec![4096]);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;

use crate::concurrency::{ConcurrencyOutcome, Latency, Slo};
use crate::model::{LayerGroup, LayerKind, ModelFacts};
use crate::offload::{Offload, OffloadBounds};
use crate::strategy::{
    BatchScaler, ConcurrencySearch, ContextSearch, OffloadSearch, VariantSearch,
};
use crate::types::*;
use crate::variant::{BoundKind, Quality, Variant, VariantOutcome, VariantSpace};

/// A run cannot take more trials than this; a policy that never stops fails the test.
pub const MAX_TRIALS: usize = 64;

/// What a driven policy did.
#[derive(Debug, Clone, PartialEq)]
pub struct Run<T = u32> {
    /// Every proposal, in order.
    pub proposals: Vec<T>,
    /// `best()` after the policy finished (`None` for a variant search, which has none).
    pub best: Option<T>,
}

/// The loop shared by the drivers: `propose` → check → `trial` → `observe`.
fn drive<T: Copy + std::fmt::Debug, O>(
    what: &str,
    mut propose: impl FnMut() -> Option<T>,
    accepts: impl Fn(T) -> bool,
    bounds: &dyn std::fmt::Debug,
    mut trial: impl FnMut(T) -> O,
    mut observe: impl FnMut(&O),
) -> Result<Vec<T>, String> {
    let mut proposals = Vec::new();
    while let Some(value) = propose() {
        if !accepts(value) {
            return Err(format!(
                "proposed {what} {value:?}, outside {bounds:?} (after {proposals:?})"
            ));
        }
        proposals.push(value);
        if proposals.len() > MAX_TRIALS {
            return Err(format!(
                "did not stop after {MAX_TRIALS} trials: {proposals:?}"
            ));
        }
        observe(&trial(value));
    }
    Ok(proposals)
}

/// Drives a context search until it proposes `None` (at most [`MAX_TRIALS`]), running
/// each proposal through `trial`, with the default [`ContextLimits`] (no objective, the
/// seed's timeouts). Checks every proposal against `model.bounds`.
pub fn run_context<S: ContextSearch>(
    settings: &str,
    hardware: &HardwareFacts,
    model: &ModelFacts,
    trial: impl FnMut(u32) -> TrialOutcome,
) -> Result<Run, String> {
    run_context_with::<S>(settings, hardware, model, &ContextLimits::default(), trial)
}

/// [`run_context`] under `limits` (an objective, other timeouts).
pub fn run_context_with<S: ContextSearch>(
    settings: &str,
    hardware: &HardwareFacts,
    model: &ModelFacts,
    limits: &ContextLimits,
    trial: impl FnMut(u32) -> TrialOutcome,
) -> Result<Run, String> {
    let search = std::cell::RefCell::new(S::new(settings, hardware, model, limits)?);
    let proposals = drive(
        "context",
        || search.borrow_mut().propose(),
        |ctx| model.bounds.accepts(ctx),
        &model.bounds,
        trial,
        |o| search.borrow_mut().observe(o),
    )?;
    let best = search.borrow().best();
    Ok(Run { proposals, best })
}

/// Drives a batch scaler like [`run_context`]; proposals must lie within `bounds`.
pub fn run_batch<S: BatchScaler>(
    settings: &str,
    hardware: &HardwareFacts,
    model: &ModelFacts,
    bounds: &BatchBounds,
    trial: impl FnMut(BatchProposal) -> TrialOutcome,
) -> Result<Run<BatchProposal>, String> {
    let scaler = std::cell::RefCell::new(S::new(settings, hardware, model, bounds)?);
    let proposals = drive(
        "batch",
        || scaler.borrow_mut().propose(),
        |p| bounds.accepts(p),
        bounds,
        trial,
        |o| scaler.borrow_mut().observe(o),
    )?;
    let best = scaler.borrow().best();
    Ok(Run { proposals, best })
}

/// Drives a concurrency search like [`run_context`]; proposals must lie within `bounds`.
pub fn run_concurrency<S: ConcurrencySearch>(
    settings: &str,
    hardware: &HardwareFacts,
    model: &ModelFacts,
    bounds: &ConcurrencyBounds,
    slo: &Slo,
    trial: impl FnMut(u32) -> ConcurrencyOutcome,
) -> Result<Run, String> {
    let search = std::cell::RefCell::new(S::new(settings, hardware, model, bounds, slo)?);
    let proposals = drive(
        "concurrency",
        || search.borrow_mut().propose(),
        |n| bounds.accepts(n),
        bounds,
        trial,
        |o| search.borrow_mut().observe(o),
    )?;
    let best = search.borrow().best();
    Ok(Run { proposals, best })
}

/// Drives a variant search until it proposes `None`; every proposal must be one of
/// `space.candidates`, and none may come twice (the host measures a variant once).
pub fn run_variants<S: VariantSearch>(
    settings: &str,
    hardware: &HardwareFacts,
    model: &ModelFacts,
    space: &VariantSpace,
    trial: impl FnMut(Variant) -> VariantOutcome,
) -> Result<Run<Variant>, String> {
    let search = std::cell::RefCell::new(S::new(settings, hardware, model, space)?);
    let seen = RefCell::new(Vec::new());
    let proposals = drive(
        "variant",
        || search.borrow_mut().propose(),
        |v| {
            space.accepts(&v) && !seen.borrow().contains(&v) && {
                seen.borrow_mut().push(v);
                true
            }
        },
        &space.candidates,
        trial,
        |o| search.borrow_mut().observe(o),
    )?;
    Ok(Run {
        proposals,
        best: None,
    })
}

/// Drives an offload search like [`run_context`]; proposals must lie within `bounds`.
pub fn run_offload<S: OffloadSearch>(
    settings: &str,
    hardware: &HardwareFacts,
    model: &ModelFacts,
    bounds: &OffloadBounds,
    trial: impl FnMut(Offload) -> TrialOutcome,
) -> Result<Run<Offload>, String> {
    let search = std::cell::RefCell::new(S::new(settings, hardware, model, bounds)?);
    let proposals = drive(
        "offload",
        || search.borrow_mut().propose(),
        |o| bounds.accepts(o),
        bounds,
        trial,
        |o| search.borrow_mut().observe(o),
    )?;
    let best = search.borrow().best();
    Ok(Run { proposals, best })
}

/// A model with the given trained context: 8 B parameters (medium), 32 full-attention
/// layers of 4 KiB f16 KV cache a token each (Llama-3-8B's layout: 128 KiB a token),
/// bounds 2048..=trained in steps of 256, at the default variant.
pub fn model(trained_context: u32) -> ModelFacts {
    ModelFacts {
        name: "test-8b".into(),
        parameter_count: Some(8_000_000_000),
        size_class: SizeClass::Medium,
        trained_context,
        layer_count: Some(32),
        kv_bytes_per_token: Some(MemoryMachine::LLAMA_8B_KV_BYTES),
        layers: vec![LayerGroup {
            kind: LayerKind::FullAttention,
            count: 32,
            kv_bytes_per_token: MemoryMachine::LLAMA_8B_KV_BYTES / 32,
            window: None,
            state_bytes: None,
        }],
        experts: None,
        weights_bytes: Some(MemoryMachine::BASE_BYTES),
        variant: Variant::default(),
        bounds: ContextBounds::new(2048, trained_context, 256),
        hint: None,
    }
}

/// Batch bounds as the host sets them by default: 1..=256, micro-batches up to 512,
/// starting at `initial` (micro-batch equal).
pub fn batch_bounds(initial: u32) -> BatchBounds {
    BatchBounds {
        min: 1,
        max: 256,
        max_ubatch: 512,
        initial: BatchProposal::whole(initial, 512),
    }
}

/// Concurrency bounds `1..=max`.
pub fn concurrency_bounds(max: u32) -> ConcurrencyBounds {
    ConcurrencyBounds { min: 1, max }
}

/// A successful, stable, verified outcome for `config` (5 samples) with no measurements.
pub fn stable(config: TrialConfig) -> TrialOutcome {
    TrialOutcome {
        config,
        stage: Stage::Verify,
        samples: 5,
        verdict: Verdict::Stable,
        failure: None,
        peak_gpu_memory_bytes: None,
        peak_server_gpu_memory_bytes: None,
        peak_ram_bytes: None,
        peak_process_memory_bytes: None,
        headroom: Headroom::default(),
        prefill_tps: None,
        decode_tps: None,
        ttft_ms: None,
        latency: Latency::default(),
        timeout_ms: TimeoutRule::default().for_config(config.ctx, config.batch),
        cv: Some(0.02),
        success_rate: 1.0,
        slo_met: None,
        slo_missed: Vec::new(),
    }
}

/// A failed outcome for `config`.
pub fn failed(config: TrialConfig, failure: Failure) -> TrialOutcome {
    TrialOutcome {
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
        variant: Variant::default(),
    }
}

/// The trial configuration of a batch-phase trial at `proposal`.
pub fn batch_config(proposal: BatchProposal) -> TrialConfig {
    TrialConfig {
        ctx: 8192,
        batch: proposal.batch,
        ubatch: proposal.ubatch,
        concurrency: 1,
        variant: Variant::default(),
    }
}

/// The trial configuration of a concurrency-phase trial with `streams` streams.
pub fn concurrency_config(streams: u32) -> TrialConfig {
    TrialConfig {
        ctx: 8192,
        batch: 128,
        ubatch: 128,
        concurrency: streams,
        variant: Variant::default(),
    }
}

/// A simulated GPU whose memory use grows linearly with context: `base + per_token × ctx`,
/// with the VRAM threshold at `limit`. A trial is stable when its peak stays at or under
/// the limit; above it the guard reports a VRAM breach. Its trials are screens (one
/// full fill, one sample), as the host runs context proposals; peaks and headroom are
/// filled in as the real host would.
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
            gpu_memory_budget_bytes: None,
            ram_total_bytes: Some(64 << 30),
            ram_available_bytes: Some(60 << 30),
            ram_limit_bytes: Some(54 << 30),
            process_memory_budget_bytes: None,
            unified_memory: false,
            logical_cores: Some(16),
        }
    }

    /// The outcome of a context-phase screen at `ctx`.
    pub fn context_trial(&self, ctx: u32) -> TrialOutcome {
        let peak = self.base_bytes + self.bytes_per_token * u64::from(ctx);
        let mut outcome = if peak <= self.limit_bytes {
            TrialOutcome {
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
        outcome.stage = Stage::Screen;
        outcome.samples = 1;
        outcome.cv = None;
        outcome.peak_gpu_memory_bytes = Some(peak);
        outcome.peak_ram_bytes = Some(2 << 30);
        outcome.headroom.gpu_memory_bytes = Some(self.limit_bytes as i64 - peak as i64);
        outcome
    }
}

/// A [`MemoryMachine`] on a busy, shared machine, seeded so a test is repeatable:
/// - reported peaks (and the headroom with them) vary by up to ±`memory_noise` (a
///   fraction) around the true peak; the verdict follows the true peak;
/// - a screen of a context that fits fails with a timeout with probability
///   `transient_rate` (another process held the cores). Such a failure is transient:
///   measuring the same context again (proposing it again) gives its true outcome;
/// - verifications ([`NoisyMachine::verify_trial`], the host's statistical trial of a
///   search's `best`) above `unstable_above` tokens are unstable: throughput too noisy
///   to publish, as on a machine shared with other work.
#[derive(Debug, Clone)]
pub struct NoisyMachine {
    pub machine: MemoryMachine,
    pub seed: u64,
    pub memory_noise: f64,
    pub transient_rate: f64,
    pub unstable_above: Option<u32>,
    /// Screens taken so far, per context.
    screens: RefCell<HashMap<u32, u32>>,
}

impl NoisyMachine {
    /// `machine` with ±2 % memory noise and a 25 % chance that a context's first screen
    /// fails transiently; verifications are unstable nowhere.
    pub fn new(machine: MemoryMachine, seed: u64) -> Self {
        Self {
            machine,
            seed,
            memory_noise: 0.02,
            transient_rate: 0.25,
            unstable_above: None,
            screens: RefCell::new(HashMap::new()),
        }
    }

    pub fn hardware(&self) -> HardwareFacts {
        self.machine.hardware()
    }

    /// The outcome of a context-phase screen at `ctx` (counts as one more screen of it).
    pub fn context_trial(&self, ctx: u32) -> TrialOutcome {
        let nth = {
            let mut screens = self.screens.borrow_mut();
            let n = screens.entry(ctx).or_insert(0);
            *n += 1;
            *n - 1
        };
        let mut outcome = self.noisy_peak(self.machine.context_trial(ctx), ctx, nth);
        if nth == 0 && outcome.is_stable() && self.draw(ctx, nth, 1) < self.transient_rate {
            outcome.verdict = Verdict::Failed;
            outcome.failure = Some(Failure::Timeout);
            outcome.success_rate = 0.0;
            outcome.decode_tps = None;
        }
        outcome
    }

    /// The outcome of the host's verification (five samples) of `ctx`.
    pub fn verify_trial(&self, ctx: u32) -> TrialOutcome {
        let screen = self.noisy_peak(self.machine.context_trial(ctx), ctx, u32::MAX);
        let mut outcome = TrialOutcome {
            stage: Stage::Verify,
            samples: 5,
            cv: screen.is_stable().then_some(0.03),
            ..screen
        };
        if outcome.is_stable() && self.unstable_above.is_some_and(|limit| ctx > limit) {
            outcome.verdict = Verdict::Unstable;
            outcome.cv = Some(0.4);
        }
        outcome
    }

    fn noisy_peak(&self, mut outcome: TrialOutcome, ctx: u32, nth: u32) -> TrialOutcome {
        let Some(peak) = outcome.peak_gpu_memory_bytes else {
            return outcome;
        };
        let factor = 1.0 + self.memory_noise * (2.0 * self.draw(ctx, nth, 0) - 1.0);
        let noisy = (peak as f64 * factor) as u64;
        outcome.peak_gpu_memory_bytes = Some(noisy);
        outcome.headroom.gpu_memory_bytes = Some(self.machine.limit_bytes as i64 - noisy as i64);
        outcome
    }

    /// A number in `[0, 1)` from the seed, the context, the measurement and a purpose.
    fn draw(&self, ctx: u32, nth: u32, purpose: u64) -> f64 {
        let mut h = self.seed;
        for v in [u64::from(ctx), u64::from(nth), purpose] {
            h = splitmix64(h ^ v);
        }
        (h >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's finaliser (Steele et al., 2014): a well-mixed hash of a 64-bit value.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs a context search on a clean [`MemoryMachine`] whose limit is `limit_ctx` tokens
/// (a model trained for `trained` tokens), then on a [`NoisyMachine`] of it for each
/// seed: a search that copes with a busy machine answers the same on each — it measures
/// a transient failure again instead of giving up there. Returns the clean answer, or
/// an error naming the first seed whose answer differs, with its proposals.
pub fn check_noise_tolerance<S: ContextSearch>(
    settings: &str,
    limit_ctx: u32,
    trained: u32,
    seeds: std::ops::Range<u64>,
) -> Result<Option<u32>, String> {
    let clean = MemoryMachine::with_context_limit(limit_ctx);
    let model = model(trained);
    let expected = run_context::<S>(settings, &clean.hardware(), &model, |ctx| {
        clean.context_trial(ctx)
    })?
    .best;
    for seed in seeds {
        let noisy = NoisyMachine::new(clean, seed);
        let run = run_context::<S>(settings, &noisy.hardware(), &model, |ctx| {
            noisy.context_trial(ctx)
        })?;
        if run.best != expected {
            return Err(format!(
                "on a noisy machine (seed {seed}) the answer is {:?} where the clean machine's \
                 is {expected:?}: a transient failure was taken for the limit (proposals {:?})",
                run.best, run.proposals
            ));
        }
    }
    Ok(expected)
}

/// A simulated prefill throughput curve: peaks at micro-batch `best_batch` with
/// `peak_tps` and falls off as a Gaussian of the log2-distance from it (prompt
/// processing follows the micro-batch; the logical batch above it changes little);
/// micro-batches above `oom_above` run out of memory (the compute buffers follow the
/// micro-batch). Its trials are verified (5 samples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchMachine {
    pub best_batch: u32,
    pub peak_tps: f64,
    pub oom_above: Option<u32>,
}

impl BatchMachine {
    /// Prefill tokens/s at micro-batch `ubatch`.
    pub fn throughput(&self, ubatch: u32) -> f64 {
        let d = (f64::from(ubatch) / f64::from(self.best_batch.max(1))).log2();
        self.peak_tps * (-0.05 * d * d).exp()
    }

    /// The outcome of a batch-phase trial at `proposal`.
    pub fn batch_trial(&self, proposal: BatchProposal) -> TrialOutcome {
        if self.oom_above.is_some_and(|limit| proposal.ubatch > limit) {
            return failed(batch_config(proposal), Failure::OutOfMemory);
        }
        TrialOutcome {
            prefill_tps: Some(self.throughput(proposal.ubatch)),
            decode_tps: Some(40.0),
            ..stable(batch_config(proposal))
        }
    }
}

/// A simulated server under N closed-loop streams. Prompts that arrive together are
/// prefilled one after another, so the k-th waits `k × ttft_ms`: time to first token
/// grows with the streams. Decode throughput is shared: each stream gets
/// `min(stream_tps, aggregate_tps / N)`. Above `unstable_above` streams the trial is
/// unstable (requests fail). Outcomes are verified, with [`Self::REQUESTS_PER_STREAM`]
/// requests per stream, and judged against the objective the trial is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConcurrencyMachine {
    /// Time to first token of a request alone, ms.
    pub ttft_ms: f64,
    /// Decode throughput of one stream alone, tokens/s.
    pub stream_tps: f64,
    /// Decode throughput of all streams together when the machine is saturated.
    pub aggregate_tps: f64,
    /// More streams than this make the trial unstable; `None`: never.
    pub unstable_above: Option<u32>,
}

impl Default for ConcurrencyMachine {
    /// 250 ms to first token alone, 40 tokens/s per stream, saturating at 160 tokens/s
    /// (4 streams), never unstable.
    fn default() -> Self {
        Self {
            ttft_ms: 250.0,
            stream_tps: 40.0,
            aggregate_tps: 160.0,
            unstable_above: None,
        }
    }
}

impl ConcurrencyMachine {
    /// Requests each stream sends in a trial.
    pub const REQUESTS_PER_STREAM: u32 = 4;
    /// Tokens each request generates.
    pub const OUTPUT_TOKENS: u32 = 128;

    /// Time to first token at percentile `p` (0..1) with `streams` streams, ms.
    pub fn ttft_percentile(&self, streams: u32, p: f64) -> f64 {
        let waiting = (p * f64::from(streams)).ceil().max(1.0);
        self.ttft_ms * waiting
    }

    /// Decode throughput one stream gets with `streams` streams, tokens/s.
    pub fn stream_decode_tps(&self, streams: u32) -> f64 {
        self.stream_tps
            .min(self.aggregate_tps / f64::from(streams.max(1)))
    }

    /// The outcome of `streams` streams, judged against `slo`.
    pub fn concurrency_trial(&self, streams: u32, slo: &Slo) -> ConcurrencyOutcome {
        let config = concurrency_config(streams);
        let samples = streams * Self::REQUESTS_PER_STREAM;
        let stream_tps = self.stream_decode_tps(streams);
        let tpot = 1000.0 / stream_tps;
        let ttft_p95 = self.ttft_percentile(streams, 0.95);
        let mut trial = TrialOutcome {
            samples,
            decode_tps: Some(stream_tps),
            ttft_ms: Some(self.ttft_percentile(streams, 0.5)),
            latency: Latency {
                ttft_p50_ms: Some(self.ttft_percentile(streams, 0.5)),
                ttft_p95_ms: Some(ttft_p95),
                ttft_p99_ms: Some(self.ttft_percentile(streams, 0.99)),
                tpot_p50_ms: Some(tpot),
                tpot_p95_ms: Some(tpot),
                e2e_p95_ms: Some(ttft_p95 + f64::from(Self::OUTPUT_TOKENS - 1) * tpot),
            },
            ..stable(config)
        };
        if self.unstable_above.is_some_and(|limit| streams > limit) {
            trial.verdict = Verdict::Unstable;
            trial.success_rate = 0.75;
            trial.cv = Some(0.4);
        }
        let mut outcome = ConcurrencyOutcome {
            trial,
            stream_decode_tps: Some(stream_tps),
            min_stream_decode_tps: Some(stream_tps),
            aggregate_decode_tps: Some(stream_tps * f64::from(streams)),
        };
        outcome.judge(slo);
        outcome
    }
}

/// A simulated machine for variant searches: at an f16 cache the context is bound by
/// memory at `f16_limit` tokens; a quantized cache holds proportionally more (its bytes
/// per element against f16's), up to the trained context; decode slows by 3 % per
/// quantized half of the cache; the quality cost is a KL divergence of 0.002 nats for
/// q8_0 and 0.03 for q4_0 (per half). Every variant costs `trials_each` trials.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VariantMachine {
    pub f16_limit: u32,
    pub trained: u32,
    pub trials_each: u32,
}

impl VariantMachine {
    /// What the host would measure for `variant`.
    pub fn variant_trial(&self, variant: Variant) -> VariantOutcome {
        let by_memory = (f64::from(self.f16_limit) / variant.cache_ratio()) as u32 / 256 * 256;
        let (max_context, bound) = if by_memory >= self.trained {
            (self.trained, BoundKind::TrainedContext)
        } else {
            (by_memory, BoundKind::Memory)
        };
        let halves = [variant.cache_type_k, variant.cache_type_v];
        let quantized = halves.iter().filter(|t| t.is_quantized()).count() as f64;
        let kld: f64 = halves
            .iter()
            .map(|t| match t {
                crate::variant::CacheType::F16 => 0.0,
                crate::variant::CacheType::Q8_0 => 0.001,
                crate::variant::CacheType::Q4_0 => 0.015,
            })
            .sum();
        VariantOutcome {
            variant,
            max_context: Some(max_context),
            bound: Some(bound),
            best_batch: Some(BatchProposal::whole(64, 512)),
            decode_tps: Some(40.0 * (1.0 - 0.03 * quantized)),
            prefill_tps: Some(900.0),
            ttft_ms: Some(f64::from(max_context) / 900.0 * 1000.0),
            peak_process_memory_bytes: None,
            peak_server_gpu_memory_bytes: None,
            quality: (quantized > 0.0).then_some(Quality {
                kld_mean: kld,
                kld_stddev: kld / 2.0,
                top1_agreement: 1.0 - kld * 3.0,
                positions: 64,
            }),
            trials: self.trials_each,
        }
    }
}

/// A simulated GPU for offload searches: up to `fits_layers` layers fit at the context
/// searched (more breach the VRAM threshold); MoE experts kept on the CPU free room for
/// `layers_per_moe_layer` layers each. Decode runs at `gpu_tps` with every layer on the
/// GPU and at `cpu_tps` with none, linearly between. Trials are screens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffloadMachine {
    pub fits_layers: u32,
    pub layers_per_moe_layer: f64,
    pub layers: u32,
    pub gpu_tps: f64,
    pub cpu_tps: f64,
}

impl OffloadMachine {
    /// The outcome of a screen of `offload` at `ctx`.
    pub fn offload_trial(&self, ctx: u32, offload: Offload) -> TrialOutcome {
        let room = f64::from(self.fits_layers)
            + self.layers_per_moe_layer * f64::from(offload.cpu_moe_layers);
        let config = TrialConfig {
            variant: Variant {
                gpu_layers: Some(offload.gpu_layers),
                cpu_moe_layers: offload.cpu_moe_layers,
                ..Variant::default()
            },
            ..context_config(ctx)
        };
        let mut outcome = if f64::from(offload.gpu_layers) <= room {
            let share = f64::from(offload.gpu_layers) / f64::from(self.layers.max(1));
            TrialOutcome {
                decode_tps: Some(self.cpu_tps + (self.gpu_tps - self.cpu_tps) * share),
                ..stable(config)
            }
        } else {
            failed(config, Failure::ThresholdBreach(Threshold::Vram))
        };
        outcome.stage = Stage::Screen;
        outcome.samples = 1;
        outcome.cv = None;
        outcome
    }
}

/// A simulated CPU whose context is bound by time: a fill's prefill costs
/// `ms_per_token × c × (1 + c / attention_ctx)` (attention grows with the position) and
/// its decode `decode_ms`. The host's rules decide: a request over its timeout
/// (`ContextLimits::default()`'s rule, batch 512) fails with a timeout; one over the
/// timeout margin × the timeout is unstable (near the timeout). A verification's
/// slowest request is `verify_slowdown` × a screen's (five requests in a row on a busy
/// machine).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeMachine {
    pub ms_per_token: f64,
    pub attention_ctx: f64,
    pub decode_ms: f64,
    pub verify_slowdown: f64,
    pub limits_margin: f64,
}

impl Default for TimeMachine {
    /// 250 tokens/s of prefill at short contexts, half that at 32768, 1.3 s of decode;
    /// verifications 3 % slower than screens. The edge is near 20 000 tokens.
    fn default() -> Self {
        Self {
            ms_per_token: 4.0,
            attention_ctx: 32_768.0,
            decode_ms: 1300.0,
            verify_slowdown: 1.03,
            limits_margin: ContextLimits::default().timeout_margin,
        }
    }
}

impl TimeMachine {
    /// The outcome of a screen (one request) at `ctx`.
    pub fn screen(&self, ctx: u32) -> TrialOutcome {
        self.trial(ctx, Stage::Screen, 1.0)
    }

    /// The outcome of the host's verification (five requests) at `ctx`.
    pub fn verify(&self, ctx: u32) -> TrialOutcome {
        self.trial(ctx, Stage::Verify, self.verify_slowdown)
    }

    /// The largest multiple of `granularity` whose screen is within `limits`.
    pub fn edge(&self, limits: &ContextLimits, granularity: u32) -> u32 {
        (1..=1024u32)
            .map(|k| k * granularity)
            .take_while(|&ctx| {
                let (ttft, e2e) = self.times(ctx, 1.0);
                crate::timing::time_load(limits, ctx, 512, Some(ttft), e2e) <= 1.0
            })
            .last()
            .unwrap_or(0)
    }

    /// The largest multiple of `granularity` whose verification is within `limits`.
    pub fn verify_edge(&self, limits: &ContextLimits, granularity: u32) -> u32 {
        TimeMachine {
            ms_per_token: self.ms_per_token * self.verify_slowdown,
            decode_ms: self.decode_ms * self.verify_slowdown,
            ..*self
        }
        .edge(limits, granularity)
    }

    /// Drives `search` as the host does: screens until it stops, then a verification
    /// of its best, at most three times. Returns the proposals and the contexts
    /// verified (the last one held, unless all three were refuted).
    pub fn search_and_verify<S: ContextSearch>(&self, search: &mut S) -> (Vec<u32>, Vec<u32>) {
        let (mut proposals, mut verified) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            while let Some(ctx) = search.propose() {
                proposals.push(ctx);
                search.observe(&self.screen(ctx));
            }
            let Some(answer) = search.best() else { break };
            let verification = self.verify(answer);
            verified.push(answer);
            search.observe(&verification);
            if verification.is_stable() {
                break;
            }
        }
        (proposals, verified)
    }

    fn times(&self, ctx: u32, slowdown: f64) -> (f64, f64) {
        let c = f64::from(ctx);
        let ttft = self.ms_per_token * c * (1.0 + c / self.attention_ctx) * slowdown;
        (ttft, ttft + self.decode_ms * slowdown)
    }

    fn trial(&self, ctx: u32, stage: Stage, slowdown: f64) -> TrialOutcome {
        let config = context_config(ctx);
        let timeout_ms = TimeoutRule::default().for_config(ctx, config.batch);
        let (ttft, e2e) = self.times(ctx, slowdown);
        let samples = if stage == Stage::Screen { 1 } else { 5 };
        let mut outcome = if e2e > timeout_ms {
            failed(config, Failure::Timeout)
        } else {
            let mut ok = stable(config);
            ok.ttft_ms = Some(ttft);
            ok.prefill_tps = Some(f64::from(ctx) / ttft * 1000.0);
            ok.decode_tps = Some(25.0);
            ok.latency = Latency {
                ttft_p50_ms: Some(ttft),
                ttft_p95_ms: Some(ttft),
                ttft_p99_ms: Some(ttft),
                tpot_p50_ms: Some(40.0),
                tpot_p95_ms: Some(40.0),
                e2e_p95_ms: Some(e2e),
            };
            if e2e > self.limits_margin * timeout_ms {
                ok.verdict = Verdict::Unstable;
            }
            ok
        };
        outcome.stage = stage;
        outcome.samples = samples;
        outcome.timeout_ms = timeout_ms;
        if stage == Stage::Screen {
            outcome.cv = None;
        }
        outcome
    }
}
