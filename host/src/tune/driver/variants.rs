//! The variant loop: the variant plugin picks the next server variant (KV cache types,
//! flash attention, threads) to measure; the host runs that variant's context search —
//! a fresh context plugin, warm-started from what the variants before it reached — and
//! its batch scaling, measures what its cache costs in quality against f16, and hands the
//! outcome back, until the plugin is done. Every variant measured is a row of the
//! frontier. The concurrency phase then runs once, at the variant whose verified context
//! is the largest within the quality gate (the limits the run publishes are that
//! variant's).

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::{Driver, Plan, TrialExecutor, TuneError, TuneObserver};
use crate::plugin::{
    BatchScaler, ConcurrencySearch, ContextSearch, PluginError, Strategy, VariantSearch,
};
use crate::record::{
    Bound, Limits, Phase, Quality, Stage, TrialRecord, Variant, VariantOutcome, Verdict,
};
use crate::tune::presets::within_gate;
use ozone_sdk::{BatchProposal, BoundKind};

/// The context and batch plugins of one variant, loaded for it: their model facts are
/// at the variant's cache types, told `hint` (a warm start).
pub trait VariantPlugins {
    fn load(
        &mut self,
        variant: &Variant,
        hint: Option<u32>,
    ) -> Result<(ContextSearch, BatchScaler), PluginError>;
}

/// What a quantized cache costs in quality against f16 (`trial::quality`); an error is
/// the reason it could not be measured.
pub trait QualityJudge {
    fn quality(
        &mut self,
        variant: &Variant,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<Quality, String>> + Send;
}

/// The variant loop's parts.
pub struct Frontier<'a, L, Q> {
    pub search: VariantSearch,
    pub plugins: &'a mut L,
    pub judge: &'a mut Q,
    /// The quality gate (`ozone.max_kld`).
    pub max_kld: f64,
}

/// What the variant loop found: the limits at the chosen variant, and every row.
#[derive(Debug, Clone)]
pub struct FrontierRun {
    pub limits: Limits,
    /// The variant the limits and the concurrency phase are at (`None`: no variant had a
    /// stable context).
    pub chosen: Option<Variant>,
    pub rows: Vec<VariantOutcome>,
}

impl<E: TrialExecutor, O: TuneObserver + Send> Driver<'_, E, O> {
    /// Every variant the plugin proposes, then the concurrency search at the chosen one.
    pub async fn run_frontier<L: VariantPlugins, Q: QualityJudge>(
        &mut self,
        plan: &Plan,
        concurrency: &mut ConcurrencySearch,
        frontier: &mut Frontier<'_, L, Q>,
    ) -> Result<FrontierRun, TuneError> {
        let mut measured: Vec<(VariantOutcome, Limits, Option<BatchProposal>)> = Vec::new();
        while let Some(variant) = frontier.search.propose()? {
            if self.cancel.is_cancelled() {
                return Err(TuneError::Interrupted);
            }
            let rows: Vec<&VariantOutcome> = measured.iter().map(|(o, _, _)| o).collect();
            let hint = warm_start(&rows, &variant, plan);
            let (mut context, mut batch) = frontier.plugins.load(&variant, hint)?;
            self.observer.note(
                Phase::Context,
                &format!(
                    "variant {variant}: context search by {}{}",
                    context.name(),
                    hint.map_or(String::new(), |h| format!(", warm-started at {h}"))
                ),
            );
            let vplan = Plan {
                variant,
                ..plan.clone()
            };
            let (limits, best) = self
                .context_and_batch(&vplan, &mut context, &mut batch)
                .await?;
            let quality = match (variant.is_quantized(), limits.max_context) {
                (true, Some(_)) => match frontier.judge.quality(&variant, &self.cancel).await {
                    Ok(q) => Some(q),
                    Err(_) if self.cancel.is_cancelled() => return Err(TuneError::Interrupted),
                    Err(why) => {
                        self.observer.note(
                            Phase::Context,
                            &format!(
                                "variant {variant}: its quality cost could not be measured \
                                 ({why}); no preset uses it"
                            ),
                        );
                        None
                    }
                },
                _ => None,
            };
            let outcome = outcome_of(variant, &limits, best, quality, self.book.records());
            self.observer.variant_finished(&outcome);
            frontier.search.observe(&outcome)?;
            measured.push((outcome, limits, best));
        }
        let chosen = measured
            .iter()
            .filter(|(o, l, _)| l.max_context.is_some() && within_gate(o, frontier.max_kld))
            // The largest context; the earlier variant on a tie (the user's first).
            .rev()
            .max_by_key(|(_, l, _)| l.max_context)
            .map(|(o, l, b)| (o.variant, l.clone(), *b));
        let rows = measured.into_iter().map(|(o, _, _)| o).collect();
        let Some((variant, mut limits, best)) = chosen else {
            return Ok(FrontierRun {
                limits: Limits::default(),
                chosen: None,
                rows,
            });
        };
        let vplan = Plan {
            variant,
            ..plan.clone()
        };
        self.concurrency_at(&vplan, &mut limits, best, concurrency)
            .await?;
        Ok(FrontierRun {
            limits,
            chosen: Some(variant),
            rows,
        })
    }
}

/// Where the next variant's context search starts: the largest context a variant before
/// it verified, scaled by the two caches' sizes where memory bound it (a smaller cache
/// holds proportionally more), as it was where time bound it (a fill takes as long).
fn warm_start(rows: &[&VariantOutcome], next: &Variant, plan: &Plan) -> Option<u32> {
    let base = rows
        .iter()
        .filter_map(|r| Some((r, r.max_context?)))
        .max_by_key(|(_, ctx)| *ctx)?;
    let (row, ctx) = base;
    let scaled = match row.bound {
        Some(BoundKind::Memory) => {
            f64::from(ctx) * row.variant.cache_ratio() / next.cache_ratio().max(f64::EPSILON)
        }
        _ => f64::from(ctx),
    };
    let granularity = f64::from(super::super::setup::CONTEXT_GRANULARITY);
    let aligned = (scaled / granularity).floor() * granularity;
    Some((aligned as u32).clamp(plan.min_context, plan.max_context))
}

/// The row of `variant`: its verified context and what bound it, the figures of its
/// trial at that context (the best batch's when scaled, else the verification), its
/// quality cost and the trials it took.
fn outcome_of(
    variant: Variant,
    limits: &Limits,
    best: Option<BatchProposal>,
    quality: Option<Quality>,
    records: &[TrialRecord],
) -> VariantOutcome {
    let own: Vec<&TrialRecord> = records
        .iter()
        .filter(|t| t.config.variant == variant && t.phase != Phase::Concurrency)
        .collect();
    let at_limit = limits.max_context.and_then(|ctx| {
        let verified = |t: &&&TrialRecord| {
            t.config.ctx == ctx
                && t.config.concurrency == 1
                && t.stage == Stage::Verify
                && t.verdict == Verdict::Stable
        };
        let at_best =
            |t: &&&TrialRecord| verified(t) && best.is_none_or(|b| t.config.batch == b.batch);
        own.iter()
            .rfind(at_best)
            .or_else(|| own.iter().rfind(verified))
            .copied()
    });
    VariantOutcome {
        variant,
        max_context: limits.max_context,
        bound: limits.bounds.max_context.as_ref().and_then(bound_kind),
        best_batch: best,
        decode_tps: at_limit.and_then(|t| t.decode_tps.as_ref()).map(|s| s.mean),
        prefill_tps: at_limit
            .and_then(|t| t.prefill_tps.as_ref())
            .map(|s| s.mean),
        ttft_ms: at_limit.and_then(|t| t.ttft_ms.as_ref()).map(|s| s.mean),
        peak_process_memory_bytes: at_limit.and_then(|t| t.peaks.process_rss_bytes),
        peak_server_gpu_memory_bytes: at_limit.and_then(|t| t.peaks.server_gpu_mem_bytes),
        quality,
        trials: own.len() as u32,
    }
}

/// The contract's word for what bound a context.
fn bound_kind(bound: &Bound) -> Option<BoundKind> {
    Some(match bound {
        Bound::Memory { .. } => BoundKind::Memory,
        Bound::Time { .. } => BoundKind::Time,
        Bound::Slo { .. } => BoundKind::Slo,
        Bound::Instability { .. } | Bound::Threshold { .. } => BoundKind::Instability,
        Bound::TrainedContext { .. } => BoundKind::TrainedContext,
        Bound::ServerError { .. } => BoundKind::ServerError,
        Bound::Throughput { .. } | Bound::Cap { .. } | Bound::NotRun { .. } => return None,
    })
}
