//! Presets (`max_context`, `balanced`, `fast_response`) derived from measured trials only,
//! and the `serving` preset from the concurrency search.
//!
//! # Candidates
//! A trial is a candidate when it is a verification (stage `verify`: a screen's one
//! sample has no spread to publish), its verdict is `Stable`, it ran one stream
//! (`concurrency == 1`, so per-stream figures compare), and it has measured decode
//! throughput and TTFT, and its variant passes the quality gate ([`QualityGate`]: an
//! f16 cache, or a quantized one whose measured cost against f16 is at most
//! `ozone.max_kld`; one never measured never is a preset). With screened context search (the default) the candidates are the
//! verified context and the batch trials at it; `ozone.screen_trials: false` verifies
//! every context proposal and so gives presets at more contexts. When the same configuration was stable in several trials, the
//! latest trial stands for it. A candidate's context is the context the server granted
//! when known, else the one asked for.
//!
//! # Score
//! Each figure is normalised over *all* candidates (not over a preset's pool, so scores of
//! different presets compare), each to (0, 1] with 1 the best:
//! - throughput `T = decode_mean / max(decode_mean)`
//! - latency `L = min(ttft_mean) / ttft_mean`
//! - context `C = ctx / max(ctx)`
//!
//! `score = wT·T + wL·L + wC·C` with `wT`, `wL` the category's `throughput_weight` and
//! `ttft_weight`, and `wC = max(0, 1 − wT − wL)`; the three are then divided by their sum
//! so a score lies in (0, 1]. With the defaults: max_context 0.3 / 0.2 / 0.5, balanced
//! 0.6 / 0.4 / 0, fast_response 0.533 / 0.467 / 0 (0.8 and 0.7 over 1.5). The context
//! need of balanced and fast_response is a filter, not a weight.
//!
//! # Choice
//! - `max_context`: the candidates with the largest context; the best score among them.
//! - `balanced`: the candidates with a context inside `target_context_range`; if none, the
//!   ones closest to the range (noted on the preset). The best score among them.
//! - `fast_response`: the candidates with context ≥ `target_context_min`; if none, all
//!   candidates (noted). The best score among them.
//!
//! Ties go to the larger context, then to the earlier trial. When only one distinct
//! configuration is stable, [`Presets::OnlyOne`] says so instead of three copies.
//!
//! # Serving
//! [`serving`] is not scored: it is the concurrency level the run settled on
//! (`limits.max_concurrency`: stable, and the objective held) at the context and batch
//! the concurrency phase ran at — `N` slots (`-np N`) of that context each, for `N`
//! simultaneous users.

use serde::{Deserialize, Serialize};

use crate::config::PresetCategories;
use crate::record::{Limits, VariantOutcome};
use crate::record::{Peaks, Phase, Stage, Stats, TrialConfig, TrialRecord, Verdict};
use crate::trial::figures_of;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresetName {
    MaxContext,
    Balanced,
    FastResponse,
    /// The concurrency the run settled on, with its slots.
    Serving,
}

impl PresetName {
    pub const ALL: [PresetName; 4] = [
        PresetName::MaxContext,
        PresetName::Balanced,
        PresetName::FastResponse,
        PresetName::Serving,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PresetName::MaxContext => "max_context",
            PresetName::Balanced => "balanced",
            PresetName::FastResponse => "fast_response",
            PresetName::Serving => "serving",
        }
    }
}

impl std::fmt::Display for PresetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PresetName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.replace('-', "_").as_str() {
            "max_context" => Ok(PresetName::MaxContext),
            "balanced" => Ok(PresetName::Balanced),
            "fast_response" => Ok(PresetName::FastResponse),
            "serving" => Ok(PresetName::Serving),
            _ => Err(format!(
                "unknown preset `{s}` (expected max_context, balanced, fast_response or serving)"
            )),
        }
    }
}

/// Whether a variant may be a preset: an f16 cache, or a quantized one whose measured
/// quality cost is within `max_kld`. A cost not measured fails.
pub fn within_gate(outcome: &VariantOutcome, max_kld: f64) -> bool {
    !outcome.variant.is_quantized() || outcome.quality.is_some_and(|q| q.kld_mean <= max_kld)
}

/// Which variants a preset may use: f16 caches, and the quantized ones whose quality
/// cost the run measured within `max_kld`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QualityGate<'a> {
    pub outcomes: &'a [VariantOutcome],
    pub max_kld: f64,
}

impl QualityGate<'_> {
    pub fn allows(&self, variant: &crate::record::Variant) -> bool {
        !variant.is_quantized()
            || self
                .outcomes
                .iter()
                .any(|o| o.variant == *variant && within_gate(o, self.max_kld))
    }
}

/// The weights a score was computed with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub throughput: f64,
    pub ttft: f64,
    pub context: f64,
}

impl Weights {
    /// The category's two weights; the context gets what is left of 1. When the two
    /// already sum past 1 (fast_response: 0.8 + 0.7) all three are divided by their sum,
    /// so every score lies in (0, 1].
    pub fn new(throughput: f64, ttft: f64) -> Self {
        let context = (1.0 - throughput - ttft).max(0.0);
        let sum = throughput + ttft + context;
        if sum > 0.0 {
            Self {
                throughput: throughput / sum,
                ttft: ttft / sum,
                context: context / sum,
            }
        } else {
            Self {
                throughput: 0.0,
                ttft: 0.0,
                context: 1.0,
            }
        }
    }
}

/// A score and its normalised parts (each in (0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub total: f64,
    pub throughput: f64,
    pub ttft: f64,
    pub context: f64,
    pub weights: Weights,
}

/// Why the preset can be trusted: the trial that measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub trial_id: u32,
    pub phase: Phase,
    /// Samples run.
    pub samples: u32,
    /// Samples that succeeded.
    pub successful: u32,
    pub success_rate: f64,
    /// Coefficient of variation of decode tokens/s.
    pub cv: Option<f64>,
}

/// One preset: a measured configuration with its figures and evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub name: PresetName,
    pub config: TrialConfig,
    /// The context the server granted (= `config.ctx` unless it clamped).
    pub ctx: u32,
    pub decode_tps: Stats,
    pub ttft_ms: Stats,
    pub prefill_tps: Option<Stats>,
    pub peaks: Peaks,
    /// Absent for `serving`, which is chosen by the concurrency search, not scored.
    pub score: Option<Score>,
    pub evidence: Evidence,
    /// Set when the category's context preference could not be met.
    pub note: Option<String>,
}

/// The outcome of preset derivation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Presets {
    /// No trial was stable: nothing to recommend.
    NoStableConfiguration,
    /// Exactly one configuration was stable: it is every preset.
    OnlyOne { preset: Box<Preset> },
    Three {
        max_context: Box<Preset>,
        balanced: Box<Preset>,
        fast_response: Box<Preset>,
    },
}

impl Presets {
    /// The preset to use for `name` (the only one when only one configuration is stable).
    /// `serving` is not among these: see [`serving`].
    pub fn get(&self, name: PresetName) -> Option<&Preset> {
        match self {
            Presets::NoStableConfiguration => None,
            _ if name == PresetName::Serving => None,
            Presets::OnlyOne { preset } => Some(preset),
            Presets::Three {
                max_context,
                balanced,
                fast_response,
            } => Some(match name {
                PresetName::MaxContext => max_context,
                PresetName::Balanced => balanced,
                PresetName::FastResponse | PresetName::Serving => fast_response,
            }),
        }
    }

    /// The distinct presets, in `max_context, balanced, fast_response` order.
    pub fn list(&self) -> Vec<&Preset> {
        match self {
            Presets::NoStableConfiguration => Vec::new(),
            Presets::OnlyOne { preset } => vec![preset],
            Presets::Three {
                max_context,
                balanced,
                fast_response,
            } => vec![max_context, balanced, fast_response],
        }
    }

    pub fn only_one(&self) -> bool {
        matches!(self, Presets::OnlyOne { .. })
    }
}

/// A stable single-stream trial with the figures scoring needs.
struct Candidate<'a> {
    trial: &'a TrialRecord,
    ctx: u32,
    decode: &'a Stats,
    ttft: &'a Stats,
}

/// Derives the presets from `trials` (see the module documentation for the rules).
pub fn derive(
    trials: &[TrialRecord],
    categories: &PresetCategories,
    gate: QualityGate<'_>,
) -> Presets {
    let candidates = candidates(trials, gate);
    match candidates.len() {
        0 => return Presets::NoStableConfiguration,
        1 => {
            let c = &candidates[0];
            let mc = &categories.max_context;
            let weights = Weights::new(mc.throughput_weight, mc.ttft_weight);
            let mut preset = build(PresetName::MaxContext, c, &candidates, weights);
            preset.note = Some(
                "the only stable configuration: max_context, balanced and fast_response are \
                 all this one"
                    .into(),
            );
            return Presets::OnlyOne {
                preset: Box::new(preset),
            };
        }
        _ => {}
    }

    let mc = &categories.max_context;
    let largest = candidates.iter().map(|c| c.ctx).max().unwrap_or(0);
    let pool: Vec<&Candidate> = candidates.iter().filter(|c| c.ctx == largest).collect();
    let max_context = pick(
        PresetName::MaxContext,
        &pool,
        &candidates,
        Weights::new(mc.throughput_weight, mc.ttft_weight),
        None,
    );

    let bal = &categories.balanced;
    let [lo, hi] = bal.target_context_range;
    let distance = |ctx: u32| {
        if ctx < lo {
            lo - ctx
        } else {
            ctx.saturating_sub(hi)
        }
    };
    let nearest = candidates
        .iter()
        .map(|c| distance(c.ctx))
        .min()
        .unwrap_or(0);
    let pool: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| distance(c.ctx) == nearest)
        .collect();
    let note = (nearest > 0).then(|| {
        format!("no stable context in the target range {lo}..{hi}; the closest ones were scored")
    });
    let balanced = pick(
        PresetName::Balanced,
        &pool,
        &candidates,
        Weights::new(bal.throughput_weight, bal.ttft_weight),
        note,
    );

    let fast = &categories.fast_response;
    let min = fast.target_context_min;
    let mut pool: Vec<&Candidate> = candidates.iter().filter(|c| c.ctx >= min).collect();
    let mut note = None;
    if pool.is_empty() {
        pool = candidates.iter().collect();
        note = Some(format!(
            "no stable context of at least {min}; every stable configuration was scored"
        ));
    }
    let fast_response = pick(
        PresetName::FastResponse,
        &pool,
        &candidates,
        Weights::new(fast.throughput_weight, fast.ttft_weight),
        note,
    );

    Presets::Three {
        max_context: Box::new(max_context),
        balanced: Box::new(balanced),
        fast_response: Box::new(fast_response),
    }
}

fn candidates<'a>(trials: &'a [TrialRecord], gate: QualityGate<'_>) -> Vec<Candidate<'a>> {
    let mut out: Vec<Candidate> = Vec::new();
    for trial in trials {
        if !gate.allows(&trial.config.variant)
            || trial.verdict != Verdict::Stable
            || trial.stage != Stage::Verify
            || trial.config.concurrency != 1
        {
            continue;
        }
        let (Some(decode), Some(ttft)) = (&trial.decode_tps, &trial.ttft_ms) else {
            continue;
        };
        if decode.mean <= 0.0 || ttft.mean <= 0.0 {
            continue;
        }
        let candidate = Candidate {
            trial,
            ctx: trial.granted_ctx.unwrap_or(trial.config.ctx),
            decode,
            ttft,
        };
        // The latest measurement of a configuration stands for it.
        match out.iter_mut().find(|c| c.trial.config == trial.config) {
            Some(existing) if existing.trial.id < trial.id => *existing = candidate,
            Some(_) => {}
            None => out.push(candidate),
        }
    }
    out
}

fn score(c: &Candidate, all: &[Candidate], weights: Weights) -> Score {
    let max_decode = all.iter().map(|c| c.decode.mean).fold(0.0, f64::max);
    let min_ttft = all
        .iter()
        .map(|c| c.ttft.mean)
        .fold(f64::INFINITY, f64::min);
    let max_ctx = all.iter().map(|c| c.ctx).max().unwrap_or(1).max(1);
    let throughput = c.decode.mean / max_decode;
    let ttft = min_ttft / c.ttft.mean;
    let context = f64::from(c.ctx) / f64::from(max_ctx);
    Score {
        total: weights.throughput * throughput + weights.ttft * ttft + weights.context * context,
        throughput,
        ttft,
        context,
        weights,
    }
}

fn pick(
    name: PresetName,
    pool: &[&Candidate],
    all: &[Candidate],
    weights: Weights,
    note: Option<String>,
) -> Preset {
    let best = pool
        .iter()
        .copied()
        .max_by(|a, b| {
            let (sa, sb) = (score(a, all, weights).total, score(b, all, weights).total);
            sa.total_cmp(&sb)
                .then(a.ctx.cmp(&b.ctx))
                .then(b.trial.id.cmp(&a.trial.id))
        })
        .unwrap_or(&all[0]);
    let mut preset = build(name, best, all, weights);
    preset.note = note;
    preset
}

fn build(name: PresetName, c: &Candidate, all: &[Candidate], weights: Weights) -> Preset {
    let t = c.trial;
    Preset {
        name,
        config: t.config.clone(),
        ctx: c.ctx,
        decode_tps: c.decode.clone(),
        ttft_ms: c.ttft.clone(),
        prefill_tps: t.prefill_tps.clone(),
        peaks: t.peaks.clone(),
        score: Some(score(c, all, weights)),
        evidence: evidence(t),
        note: None,
    }
}

fn evidence(t: &TrialRecord) -> Evidence {
    Evidence {
        trial_id: t.id,
        phase: t.phase,
        samples: t.samples.len() as u32,
        successful: t.samples.iter().filter(|s| s.ok).count() as u32,
        success_rate: t.success_rate,
        cv: t.cv,
    }
}

/// The `serving` preset: the stable verification of `limits.max_concurrency` streams at the
/// concurrency phase's context and batch (its latest measurement). `None` when the
/// concurrency search settled on nothing.
pub fn serving(trials: &[TrialRecord], limits: &Limits) -> Option<Preset> {
    let (ctx, batch, streams) = (
        limits.max_context?,
        limits.best_batch?,
        limits.max_concurrency?,
    );
    let t = trials.iter().rev().find(|t| {
        t.verdict == Verdict::Stable
            && t.stage == Stage::Verify
            && (t.config.ctx, t.config.batch, t.config.concurrency) == (ctx, batch, streams)
    })?;
    let f = figures_of(t);
    let ms = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0} ms"));
    let tps = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1} tok/s"));
    let note = format!(
        "{streams} stream{}: TTFT p95 {}, TPOT p95 {}, slowest stream {}, all streams {}",
        if streams == 1 { "" } else { "s" },
        ms(f.latency.ttft_p95_ms),
        ms(f.latency.tpot_p95_ms),
        tps(f.stream_decode_tps.as_ref().map(|s| s.min)),
        tps(f.aggregate_decode_tps)
    );
    Some(Preset {
        name: PresetName::Serving,
        config: t.config.clone(),
        ctx: t.granted_ctx.unwrap_or(t.config.ctx),
        decode_tps: t.decode_tps.clone()?,
        ttft_ms: t.ttft_ms.clone()?,
        prefill_tps: t.prefill_tps.clone(),
        peaks: t.peaks.clone(),
        score: None,
        evidence: evidence(t),
        note: Some(note),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn realistic_run_gives_three_distinct_presets() {
        let run = fixtures::trials();
        let presets = derive(&run, &PresetCategories::default(), QualityGate::default());
        let Presets::Three {
            max_context,
            balanced,
            fast_response,
        } = &presets
        else {
            panic!("expected three presets, got {presets:?}");
        };
        // Largest stable ctx is 20480; among its configurations batch 256 (trial 8) has
        // the best throughput and TTFT.
        assert_eq!(max_context.ctx, 20480);
        assert_eq!(max_context.config.batch, 256);
        assert_eq!(max_context.evidence.trial_id, 8);
        assert_eq!(max_context.evidence.samples, 5);
        // Nothing stable within 8192..12288 except trial 3 at 8192.
        assert_eq!(balanced.ctx, 8192);
        assert_eq!(balanced.note, None);
        // Fast response: the 4096 trial is the fastest.
        assert_eq!(fast_response.ctx, 4096);
        assert_eq!(fast_response.evidence.trial_id, 2);
        let fast = fast_response.score.expect("scored");
        assert!(fast.throughput == 1.0 || fast.ttft == 1.0);
        for p in presets.list() {
            assert!(p.score.is_some_and(|s| s.total > 0.0));
            assert!(p.evidence.success_rate >= 0.85);
        }
    }

    #[test]
    fn scores_follow_the_documented_formula() {
        let run = fixtures::trials();
        let presets = derive(&run, &PresetCategories::default(), QualityGate::default());
        let p = presets.get(PresetName::MaxContext).unwrap();
        let score = |p: &Preset| p.score.expect("a scored preset");
        let w = score(p).weights;
        assert!((w.context - 0.5).abs() < 1e-9);
        let sp = score(p);
        let expected = 0.3 * sp.throughput + 0.2 * sp.ttft + 0.5 * sp.context;
        assert!((sp.total - expected).abs() < 1e-9);
        assert_eq!(sp.context, 1.0);
        let b = presets.get(PresetName::Balanced).unwrap();
        assert_eq!(score(b).weights.context, 0.0);
        let f = presets.get(PresetName::FastResponse).unwrap();
        assert!((score(f).weights.throughput - 0.8 / 1.5).abs() < 1e-9);
        // The fastest configuration is best on both figures: the top score.
        assert!((score(f).total - 1.0).abs() < 1e-9);
        for p in presets.list() {
            assert!(score(p).total > 0.0 && score(p).total <= 1.0 + 1e-9);
        }
    }

    #[test]
    fn balanced_falls_back_to_the_closest_context_and_says_so() {
        let run: Vec<_> = fixtures::trials()
            .into_iter()
            .filter(|t| t.config.ctx != 8192)
            .collect();
        let presets = derive(&run, &PresetCategories::default(), QualityGate::default());
        let b = presets.get(PresetName::Balanced).unwrap();
        // 4096 is 4096 below the range, 16384 is 4096 above it: both are scored and the
        // tie in distance is broken by the score.
        assert!(b.ctx == 4096 || b.ctx == 16384, "{}", b.ctx);
        assert!(b.note.as_deref().unwrap_or("").contains("8192..12288"));
    }

    #[test]
    fn one_stable_configuration_is_reported_as_such() {
        let run: Vec<_> = fixtures::trials()
            .into_iter()
            .filter(|t| t.verdict != Verdict::Stable || t.id == 3)
            .collect();
        let presets = derive(&run, &PresetCategories::default(), QualityGate::default());
        assert!(presets.only_one());
        assert_eq!(presets.list().len(), 1);
        let p = presets.get(PresetName::FastResponse).unwrap();
        assert_eq!(p.evidence.trial_id, 3);
        assert!(p.note.as_deref().unwrap_or("").contains("only stable"));
    }

    #[test]
    fn no_stable_trial_gives_no_presets() {
        let run: Vec<_> = fixtures::trials()
            .into_iter()
            .filter(|t| t.verdict != Verdict::Stable)
            .collect();
        assert_eq!(
            derive(&run, &PresetCategories::default(), QualityGate::default()),
            Presets::NoStableConfiguration
        );
    }

    #[test]
    fn concurrent_trials_are_not_candidates() {
        let run = fixtures::trials();
        let presets = derive(&run, &PresetCategories::default(), QualityGate::default());
        assert!(presets.list().iter().all(|p| p.config.concurrency == 1));
    }

    #[test]
    fn preset_names_parse() {
        assert_eq!("fast-response".parse(), Ok(PresetName::FastResponse));
        assert!("fastest".parse::<PresetName>().is_err());
    }

    /// A quantized cache whose quality cost could not be measured (the server failed the
    /// measurement) is never a preset; one measured within the gate is, f16 always.
    #[test]
    fn the_gate_lets_through_only_measured_costs_within_it() {
        use crate::record::{CachePair, KvCacheType, Quality, Variant};
        let q8 = Variant::default().with_caches(CachePair {
            k: KvCacheType::Q8_0,
            v: KvCacheType::Q8_0,
        });
        let outcome = |quality: Option<f64>| VariantOutcome {
            variant: q8,
            max_context: Some(8192),
            bound: None,
            best_batch: None,
            decode_tps: None,
            prefill_tps: None,
            ttft_ms: None,
            peak_process_memory_bytes: None,
            peak_server_gpu_memory_bytes: None,
            quality: quality.map(|kld| Quality {
                kld_mean: kld,
                kld_stddev: 0.0,
                top1_agreement: 0.95,
                positions: 64,
            }),
            trials: 3,
        };
        let gate = |outcomes: &[VariantOutcome]| {
            QualityGate {
                outcomes,
                max_kld: 0.02,
            }
            .allows(&q8)
        };
        assert!(!gate(&[outcome(None)]), "not measured");
        assert!(!gate(&[outcome(Some(0.05))]), "over the gate");
        assert!(gate(&[outcome(Some(0.005))]));
        assert!(!gate(&[]), "never measured at all");
        assert!(QualityGate::default().allows(&Variant::default()), "f16");
    }
}
