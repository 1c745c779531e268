//! `memory-fit`: a predictive context search, built into Ozone beside `binary-search`:
//! it predicts both what bounds a context — memory and time (7) — from its own screens.
//!
//! Peak memory grows linearly with the context (the KV cache, plus buffers sized by it:
//! a sweep of the generated model's screens from 1024 to 16384 tokens fits a line to
//! within 0.22 MiB). Each trial reports the peak of the *binding* memory and the
//! headroom left to its limit; a line through those readings says where the headroom
//! runs out, so the search aims just below that instead of halving its way there, then
//! bisects what is left.
//!
//! # Semantics
//!
//! Settings (the plugin's section, `ozone.plugin_settings.memory-fit`; missing keys take
//! these defaults, unknown keys — e.g. the `search_strategy` ones it is also handed —
//! are ignored, a wrong type or a value out of range is an error):
//! - `margin` (0.0025, 0 ..= 0.5): the noise of one memory reading assumed before the fit
//!   has been checked, as a share of the binding limit (0.12 MiB of a 48 MiB budget;
//!   the largest miss of the line on later readings replaces it). The safety margin is
//!   that noise widened by how far the line is carried beyond its readings.
//! - `max_iterations` (12, ≥ 1): the most trials the search asks for, repeats included.
//! - `growth_factor` (2.0, > 1): how far to grow when memory tells nothing (no readings,
//!   or a flat or falling slope), like `binary-search`'s `binary_search_factor`.
//! - `prior_reach` (0.5, 0 < r ≤ 1): how far toward the KV prior's limit the second point
//!   goes. Lower it where memory grows more than twice as fast as the KV cache
//!   (attention buffers without flash attention on models with few KV heads).
//!
//! Every proposal is a multiple of `bounds.granularity` inside the bounds.
//!
//! 1. **Binding memory.** Watched: the GPU-memory budget and the process budget when
//!    set, the GPU when there is one; RAM when nothing else is (or the GPU shares it).
//!    One line per watched memory; the one that runs out first binds.
//! 2. **First point**: the warm-start hint, else `bounds.min` (cheap, and it measures the
//!    fixed cost). A stable hint is followed by the step above it: an unchanged limit is
//!    confirmed in two trials.
//! 3. **Second point**, while the slope is unknown: `prior_reach` of the way to where
//!    the model's layers say the headroom runs out (at least 4 steps up): the KV cache of
//!    every full-attention layer grows with each token, a sliding-window layer's only up
//!    to its window, a recurrent layer's not at all — so a model whose cache stops
//!    growing before the headroom is used up is proposed the trained context next (its
//!    memory cannot bind; a flat or step-shaped curve is the real case of hybrid and
//!    sliding-window models, not a fallback). The KV cache is a lower bound on the
//!    growth; in host memory one cache per request of the trial
//!    counts, as a server may keep each finished request's cache in RAM (llama-server's
//!    `--cache-ram` prompt cache, which Ozone turns off for its trials: there the
//!    prior only aims lower than it needs to). Measured on the generated model with the
//!    cache on: 1.5× the prior in one-request screens, 1.1× in 5-sample trials. Without
//!    a prior: `growth_factor` × the largest stable context.
//! 4. **Aim**: the slope is the least-squares line through the search's own stable
//!    readings, *measured* once they span 4 steps and rise by 4× the noise (the prior
//!    is never the answer: it only picks the second point), *flat* when memory fell or
//!    rose less than the noise (then `growth_factor` growth). The limit is where the line
//!    meets the limit; the proposal is that less the margin (less one step: aligning
//!    down keeps up to a step free, and one step over the limit costs nothing a proof
//!    does not — a failure one step above the answer is needed anyway), aligned down; if
//!    that is not above the largest stable context, the limit itself. Never less than
//!    one step above the largest stable context; after two such steps held in a row,
//!    the step doubles.
//! 5. **Refine** once something failed, inside the bracket (the largest stable context
//!    below the smallest failure; `ozone_sdk::bisect::Bracket`): at the aim when the line
//!    puts the limit inside it; one step below a memory failure that the line put at most
//!    a margin and a step below its limit (once in a row); otherwise, or without a line,
//!    the midpoint.
//! 6. **Noise.** Any failure is a wall at its context, but only stable trials feed the
//!    line (a breach's peak is where the guard stopped it; a timeout never reached its
//!    peak). An *unstable* trial, or one that failed for something other than memory (a
//!    timeout, a server error) once screens' times are known, above a stable one (or at
//!    `bounds.min`) is measured once more (proposing it again asks the host for a repeat) unless its time was over the
//!    limit by more than noise (7); the repeat's verdict stands.
//!    A stable context above a failure stays out of the bracket.
//! 7. **Time.** Memory is not the only limit: every screen that served its request feeds
//!    `ozone_sdk::timing::FillTimes` (its time to first token and duration; the prefill
//!    rate per token a line in the context), which predicts where a request crosses the
//!    *time limit* — the objective's latency bounds (`--slo ttft-p95=…`, `e2e-p95`) and
//!    the timeout margin × the request timeout, the host's rules for every context
//!    trial. Growth and refinement never propose above that crossing (aligned down;
//!    at least one step above the largest stable context, the proof; from a single
//!    screen, whose rate has no slope yet, `prior_reach` of the way to it), and inside a
//!    bracket the crossing replaces bisection. An unstable trial whose time was more
//!    than 10 % over the limit is not measured again (step 6): the curve predicted it.
//!    A verification refuted by time teaches the curve its slowdown (the verification's
//!    load over its screen's, at most 1.2); the stable contexts below it that the slowdown puts over
//!    the limit count as failed, the others stay, and later screens pass only with the
//!    slowdown applied.
//! 8. **Stop** when no aligned value is left between the largest stable and the smallest
//!    failed context, when the largest stable is `bounds.max` (the trained context binds),
//!    when `bounds.min` failed, or after `max_iterations`.
//!
//! `best()` is the largest stable context below the smallest failure. An outcome of stage
//! `verify` that is not the pending proposal is the host's verification of `best`: when
//! it is not stable, that context counts as failed and the search goes on (verifications
//! run more requests, so their readings stay out of the line). `propose()` asked twice
//! before `observe()` answers the same value. Every proposal is logged (debug) with its
//! reason and the line's limit.

mod ledger;
mod memory;

use ozone_sdk::bisect::Bracket;
use ozone_sdk::timing::FillTimes;
use ozone_sdk::{
    log, settings, ContextBounds, ContextLimits, ContextSearch, HardwareFacts, LogLevel,
    ModelFacts, Stage, TrialOutcome, Verdict,
};
use serde::Deserialize;

use ledger::Ledger;
use memory::{Memory, Prediction, Series, Slope};

/// The plugin's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub margin: f64,
    pub max_iterations: u32,
    pub growth_factor: f64,
    pub prior_reach: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            margin: 0.0025,
            max_iterations: 12,
            growth_factor: 2.0,
            prior_reach: 0.5,
        }
    }
}

/// Why a context was proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// The hint, or `bounds.min`.
    First,
    /// The step above a stable hint.
    HintStep,
    /// The smallest context, after failures with nothing stable below them.
    Cheapest,
    /// The point the KV prior allows, while the slope is unknown.
    Prior,
    /// Just below the fitted limit.
    Aim,
    /// The fitted limit itself: the largest stable context is within the margin already.
    AtLimit,
    /// The smallest step above the largest stable context (doubling while they hold).
    Step,
    /// `growth_factor` × the largest stable context: memory tells nothing.
    Growth,
    /// One step below a memory failure that refuted the fit by less than its margin.
    BelowFailure,
    /// Just below where a fill is predicted to cross the time limit.
    TimeAim,
    /// Bisection.
    Midpoint,
    /// An unstable trial, measured once more.
    Repeat,
}

pub struct MemoryFit {
    settings: Settings,
    bounds: ContextBounds,
    hint: Option<u32>,
    /// The model, whose layers say how the KV cache grows: the growth's lower-bound
    /// prior (a line for a dense model; a step for sliding windows; flat for recurrent
    /// layers).
    model: ModelFacts,
    series: Vec<Series>,
    ledger: Ledger,
    /// Proposed and not yet observed, and why.
    pending: Option<(u32, Move)>,
    /// Why the last observed trial was proposed.
    last: Option<Move>,
    /// An unstable context to measure once more, next.
    repeat: Option<u32>,
    repeated: Vec<u32>,
    trials: u32,
    /// Consecutive stable trials at most one step above the largest stable context
    /// (the step doubles from the second on).
    creep: u32,
    /// Contexts that failed on memory (breach or out of memory).
    memory_walls: Vec<u32>,
    /// What bounds a context besides memory: the objective, the timeout margin.
    limits: ContextLimits,
    /// The screens' fill times, and the curve through them.
    times: FillTimes,
    /// The batch the context trials run at (the timeout depends on it).
    batch: u32,
}

impl ContextSearch for MemoryFit {
    fn new(
        settings: &str,
        hardware: &HardwareFacts,
        model: &ModelFacts,
        limits: &ContextLimits,
    ) -> Result<Self, String> {
        let settings: Settings = settings::parse(settings)?;
        if !(0.0..=0.5).contains(&settings.margin) {
            return Err(format!(
                "margin must be between 0 and 0.5 (a share of the memory limit), got {}",
                settings.margin
            ));
        }
        if settings.max_iterations == 0 {
            return Err("max_iterations must be at least 1".into());
        }
        if settings.growth_factor.is_nan() || settings.growth_factor <= 1.0 {
            return Err(format!(
                "growth_factor must be greater than 1, got {}",
                settings.growth_factor
            ));
        }
        if !(settings.prior_reach > 0.0 && settings.prior_reach <= 1.0) {
            return Err(format!(
                "prior_reach must be above 0 and at most 1, got {}",
                settings.prior_reach
            ));
        }
        Ok(Self {
            settings,
            bounds: model.bounds,
            hint: model.hint,
            model: model.clone(),
            series: Memory::watched(hardware)
                .into_iter()
                .map(Series::new)
                .collect(),
            ledger: Ledger::default(),
            pending: None,
            last: None,
            repeat: None,
            repeated: Vec::new(),
            trials: 0,
            creep: 0,
            memory_walls: Vec::new(),
            limits: limits.clone(),
            times: FillTimes::default(),
            batch: 512,
        })
    }

    fn propose(&mut self) -> Option<u32> {
        if self.pending.is_none() && self.trials < self.settings.max_iterations {
            self.pending = match self.repeat.take() {
                Some(ctx) => Some((ctx, Move::Repeat)),
                None => self.next(),
            };
            if let Some((ctx, why)) = self.pending {
                log(LogLevel::Debug, &format!("{ctx}: {}", self.explain(why)));
            }
        }
        self.pending.map(|(ctx, _)| ctx)
    }

    fn observe(&mut self, outcome: &TrialOutcome) {
        let ctx = outcome.config.ctx;
        let why = self
            .pending
            .take()
            .and_then(|(pending, why)| (pending == ctx).then_some(why));
        self.batch = outcome.config.batch;
        self.times.record(outcome);
        if why.is_none() && outcome.stage == Stage::Verify {
            // The host's verification of `best`: only a failure changes anything. One
            // that missed the time limit also withdraws the passes its slowdown puts
            // over it; the ones below stay.
            if !outcome.is_stable() {
                let passes = self.ledger.passes();
                let inconsistent = self.times.refuted(&self.limits, outcome, &passes);
                self.ledger.record(ctx, false);
                if let Some(below) = inconsistent {
                    self.ledger.record(below, false);
                }
                self.creep = 0;
            }
            return;
        }
        // Only the search's own stable trials feed the fit: a verification runs more
        // requests than a screen (a higher peak in host memory, see `Memory`), and an
        // unstable trial may have stopped early.
        if outcome.is_stable() {
            let (g, margin) = (self.bounds.granularity, self.settings.margin);
            for series in &mut self.series {
                if let Some(reading) = series.memory.reading(outcome) {
                    series.push(reading, g, margin);
                }
            }
        }
        self.trials += 1;
        let lo = self.bracket().passed();
        self.creep = match (outcome.is_stable(), lo) {
            (true, Some(lo)) if ctx <= lo.saturating_add(self.step()) => self.creep + 1,
            _ => 0,
        };
        self.last = why;
        if outcome.failure.is_some_and(|f| f.is_memory()) {
            self.memory_walls.push(ctx);
        }
        // A failure is noise only where the screens' times say it is a surprise.
        let noise = match outcome.failure {
            None => outcome.verdict == Verdict::Unstable,
            Some(failure) => !failure.is_memory() && !self.times.is_empty(),
        };
        if noise && self.worth_repeating(outcome) {
            self.repeated.push(ctx);
            self.repeat = Some(ctx);
        }
        let passed = outcome.is_stable() && self.times.holds(&self.limits, outcome);
        self.ledger.record(ctx, passed);
    }

    fn best(&self) -> Option<u32> {
        self.bracket().passed()
    }
}

impl MemoryFit {
    fn bracket(&self) -> Bracket {
        self.ledger
            .bracket(self.bounds.min, self.bounds.granularity)
    }

    /// An unstable trial is noise worth one more measurement when a smaller context was
    /// stable (or it is the smallest context there is), no failure lies below it, and
    /// the fill curve did not predict its miss (a time measured more than
    /// `ozone_sdk::timing::RETRY_MARGIN` over the limit is the configuration's).
    fn worth_repeating(&self, outcome: &TrialOutcome) -> bool {
        let ctx = outcome.config.ctx;
        self.times.worth_retrying(&self.limits, outcome)
            && !self.repeated.contains(&ctx)
            && (ctx == self.bounds.min || self.ledger.stable_below(ctx))
            && self.ledger.smallest_failure().is_none_or(|f| f > ctx)
    }

    /// The next proposal and why.
    fn next(&self) -> Option<(u32, Move)> {
        if self.ledger.is_empty() {
            let first = self.hint.unwrap_or(self.bounds.min);
            return Some((self.bounds.fit(u64::from(first)), Move::First));
        }
        let bracket = self.bracket();
        match (bracket.passed(), bracket.failed()) {
            (Some(lo), None) => self.grow(lo),
            (_, Some(_)) if bracket.is_closed() => None,
            // Nothing stable below the failure: the cheapest context, for a first reading.
            (None, Some(_)) => Some((bracket.inside(self.bounds.min)?, Move::Cheapest)),
            (Some(lo), Some(hi)) => self.refine(&bracket, lo, hi),
            (None, None) => None,
        }
    }

    /// No failure yet: the hint's step, else the aim, else the second point, else growth;
    /// never less than the step above the largest stable context.
    fn grow(&self, lo: u32) -> Option<(u32, Move)> {
        let g = self.bounds.granularity;
        if lo >= self.bounds.max {
            return None;
        }
        if self.hint.is_some() && self.last == Some(Move::First) {
            return Some((lo + g, Move::HintStep));
        }
        let (target, why) = match self.prediction() {
            Some(p) => {
                let aim = self.fit(p.aim(g));
                if aim > lo {
                    (aim, Move::Aim)
                } else {
                    (self.fit(p.limit), Move::AtLimit)
                }
            }
            None if self.all_flat() => (self.grown(lo), Move::Growth),
            None => match self.prior_limit() {
                Some(limit) => (self.fit(self.second_point(lo, limit)), Move::Prior),
                None => (self.grown(lo), Move::Growth),
            },
        };
        let (target, why) = match self.time_limit() {
            Some(by_time) if by_time < target => (by_time, Move::TimeAim),
            _ => (target, why),
        };
        let step = lo.saturating_add(self.step());
        let (target, why) = if target < step {
            (step, Move::Step)
        } else {
            (target, why)
        };
        Some((target.min(self.bounds.max), why))
    }

    /// A failure is known: guided by the fits while they hold, else bisection; the
    /// time curve's crossing where it lies below what memory proposes.
    fn refine(&self, bracket: &Bracket, lo: u32, hi: u32) -> Option<(u32, Move)> {
        let by_memory = self.refine_by_memory(bracket, lo, hi);
        if self.creep >= 2 {
            return by_memory;
        }
        // Bisection is what memory proposes when it tells nothing.
        match (self.time_limit(), by_memory) {
            (Some(by_time), Some((ctx, why)))
                if by_time < hi && (why == Move::Midpoint || by_time < ctx) =>
            {
                Some((bracket.inside(by_time)?, Move::TimeAim))
            }
            (Some(by_time), None) if by_time < hi => {
                Some((bracket.inside(by_time)?, Move::TimeAim))
            }
            _ => by_memory,
        }
    }

    /// The largest context whose fill the screens' curve puts within the time limit;
    /// `None` before a screen served a request.
    fn time_limit(&self) -> Option<u32> {
        let g = self.bounds.granularity;
        let (min, max) = (self.bounds.min, self.bounds.max);
        if self.times.is_empty() {
            return None;
        }
        // Even the smallest context predicted over the limit: the smallest is the aim.
        let crossing = self
            .times
            .largest_within(&self.limits, self.batch, g, min, max)
            .unwrap_or(min);
        if self.times.len() >= 2 {
            return Some(crossing);
        }
        // One screen gives a rate and no slope: attention makes longer fills slower per
        // token, so its crossing is too far. Go `prior_reach` of the way, as for memory.
        let lo = f64::from(self.bracket().passed().unwrap_or(min));
        let reach = lo + (f64::from(crossing) - lo).max(0.0) * self.settings.prior_reach;
        Some(self.fit(reach))
    }

    /// A failure is known: guided by the memory fit while it holds, else bisection.
    fn refine_by_memory(&self, bracket: &Bracket, lo: u32, hi: u32) -> Option<(u32, Move)> {
        let g = self.bounds.granularity;
        let midpoint = bracket.midpoint().map(|ctx| (ctx, Move::Midpoint));
        if self.creep >= 2 {
            // Stable steps just above the largest stable context in a row: the fit keeps
            // falling short.
            return midpoint;
        }
        let inside = |ctx: f64, why| Some((bracket.inside(ctx.max(0.0) as u32)?, why));
        match self.prediction() {
            // The fit puts the limit inside the bracket: aim just below it (or at it when
            // the largest stable context is already within the margin).
            Some(p) if p.limit < f64::from(hi) => {
                let aim = p.aim(g);
                if aim > f64::from(lo) {
                    inside(aim, Move::Aim)
                } else {
                    inside(p.limit, Move::AtLimit)
                }
            }
            // A memory failure just above where the fit put the limit: the fit is off by
            // less than its margin, and the context below the failure is the likeliest
            // limit. Once: if that fails too, the fit is off by more.
            Some(p)
                if self.memory_walls.contains(&hi)
                    && self.last != Some(Move::BelowFailure)
                    && p.limit - f64::from(hi) <= p.margin + f64::from(g) =>
            {
                inside(f64::from(hi - g), Move::BelowFailure)
            }
            Some(_) => midpoint,
            None if self.all_flat() => midpoint,
            None => match self.prior_limit() {
                Some(limit) if limit < f64::from(hi) => {
                    inside(self.second_point(lo, limit), Move::Prior)
                }
                _ => midpoint,
            },
        }
    }

    /// The smallest step up from the largest stable context: one granularity step,
    /// doubled for each stable one in a row after the first (the fit keeps falling short).
    fn step(&self) -> u32 {
        self.bounds.granularity << self.creep.saturating_sub(1).min(16)
    }

    /// The next point while the slope is unknown: `prior_reach` of the way to the prior's
    /// limit, and at least far enough for a slope (4 steps) unless the prior's limit is
    /// nearer.
    fn second_point(&self, lo: u32, prior_limit: f64) -> f64 {
        let lo = f64::from(lo);
        let reach = lo + (prior_limit - lo) * self.settings.prior_reach;
        reach
            .max(lo + 4.0 * f64::from(self.bounds.granularity))
            .min(prior_limit)
    }

    /// `ctx` aligned down into the bounds.
    fn fit(&self, ctx: f64) -> u32 {
        self.bounds.fit(ctx.max(0.0) as u64)
    }

    fn grown(&self, lo: u32) -> u32 {
        self.bounds
            .fit((f64::from(lo) * self.settings.growth_factor) as u64)
    }

    /// The binding memory's prediction: the one whose headroom runs out first.
    fn prediction(&self) -> Option<Prediction> {
        let (g, margin) = (self.bounds.granularity, self.settings.margin);
        self.series
            .iter()
            .filter_map(|s| s.predict(g, margin))
            .min_by(|a, b| a.limit.total_cmp(&b.limit))
    }

    /// Every memory with readings has a flat or falling slope.
    fn all_flat(&self) -> bool {
        let (g, margin) = (self.bounds.granularity, self.settings.margin);
        let slopes: Vec<Slope> = self
            .series
            .iter()
            .filter(|s| s.has_readings())
            .map(|s| s.slope(g, margin))
            .collect();
        slopes.contains(&Slope::Flat) && !slopes.contains(&Slope::Unknown)
    }

    /// Where the KV-cache prior says the first memory runs out (no slope measured yet);
    /// infinite when the model's cache stops growing before the trained context. `None`
    /// without a layout.
    fn prior_limit(&self) -> Option<f64> {
        // Context trials run at the batch the search started with; its micro-batch sizes
        // the sliding windows' cells (a few hundred tokens either way).
        const UBATCH: u32 = 512;
        let model = &self.model;
        model.kv_cache_bytes(model.bounds.max, UBATCH)?;
        let growth = |from: f64, to: f64| {
            let at = |ctx: f64| model.kv_cache_bytes(ctx as u32, UBATCH).unwrap_or(0) as f64;
            at(to) - at(from)
        };
        let max = f64::from(self.bounds.max);
        self.series
            .iter()
            .filter_map(|s| s.prior_limit(&growth, max))
            .min_by(f64::total_cmp)
    }

    /// A proposal's reason, for the log.
    fn explain(&self, why: Move) -> String {
        let fit = match self.prediction() {
            Some(p) => format!(
                "; the fit puts the limit at {:.0} ± {:.0} tokens",
                p.limit, p.margin
            ),
            None => String::new(),
        };
        let reason = match why {
            Move::First if self.hint.is_some() => "the warm-start hint",
            Move::First => "the smallest context, for a first reading",
            Move::HintStep => "one step above the hint, which held",
            Move::Cheapest => "the smallest context: nothing below the failure held",
            Move::Prior => "part of the way to where the KV cache alone would run out",
            Move::Aim => "just below where the headroom runs out",
            Move::AtLimit => {
                "where the headroom runs out: the largest stable context is within the margin"
            }
            Move::Step => "the smallest step above the largest stable context",
            Move::Growth => "growth: memory does not say where the context stops",
            Move::BelowFailure => "one step below a memory failure the fit did not expect",
            Move::TimeAim => {
                "where the screens' fill times say a request crosses the time limit (the objective, or the timeout margin)"
            }
            Move::Midpoint => "bisection",
            Move::Repeat => "measured again: it was unstable, and not by more than noise",
        };
        format!("{reason}{fit}")
    }
}

ozone_sdk::export_context_search!(MemoryFit);

pub mod table;

#[cfg(test)]
mod tests;
