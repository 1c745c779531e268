//! Time at a context: what a fill costs, fitted to a search's own screens, against the
//! limit a context must meet.
//!
//! A fill's time to first token is its prefill: linear in the tokens, plus attention
//! linear in the position, so about `a·c + b·c²` — its rate per token `ttft / c` is a line
//! in `c`. The rest of a request (`e2e − ttft`) is its decode, which barely moves with
//! the context. [`FillTimes`] fits both to the screens a search has measured and says,
//! for a context not yet tried, what the request will take and how that stands against
//! the *time limit* ([`time_load`]): the objective's latency bounds (`--slo ttft-p95=…`,
//! `e2e-p95`) and the timeout margin × the request timeout, the rules the host holds
//! every context trial to. A search uses it three ways:
//!
//! - to aim below the predicted crossing instead of screening past it
//!   ([`FillTimes::largest_within`]);
//! - to measure a time failure again only where the time measured (or, for a request
//!   cut at the timeout, the time predicted) was within [`RETRY_MARGIN`] of the limit
//!   ([`FillTimes::worth_retrying`]): a failure the curve predicted is not noise;
//! - after the host's verification of an answer missed the limit, to learn how much
//!   slower its requests ran than the screen's (the *slowdown*: five requests in a row on
//!   a busy machine) and keep the passes below it that the slowdown leaves within the
//!   limit ([`FillTimes::refuted`]; at most [`MAX_SLOWDOWN`]); from then on a screen holds only with the slowdown
//!   applied ([`FillTimes::holds`]), and the curve aims with it.
//!
//! ```
//! use ozone_sdk::testing::TimeMachine;
//! use ozone_sdk::timing::FillTimes;
//! use ozone_sdk::ContextLimits;
//!
//! let machine = TimeMachine::default();
//! let limits = ContextLimits::default();
//! let mut times = FillTimes::default();
//! for ctx in [2048, 4096, 8192] {
//!     times.record(&machine.screen(ctx));
//! }
//! let edge = machine.edge(&limits, 256);
//! let predicted = times.largest_within(&limits, 512, 256, 2048, 131_072).unwrap();
//! assert!(predicted.abs_diff(edge) <= 1024, "{predicted} vs {edge}");
//! ```

use crate::{ContextLimits, Failure, SloMetric, Stage, TrialOutcome};

/// How far over the limit a time may be and still be measured again: a result at most
/// 10 % over the limit is one a busy machine's noise can flip; one further over is the
/// configuration's.
pub const RETRY_MARGIN: f64 = 0.10;

/// The largest slowdown a refuted verification teaches: five requests in a row slower
/// than one by more than 20 % is the machine's noise (a neighbour took the cores), not
/// the configuration's, and would withdraw every screen near the limit.
pub const MAX_SLOWDOWN: f64 = 1.2;

/// One screen's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    ctx: u32,
    ttft_ms: f64,
    e2e_ms: f64,
}

/// The fill times a search measured, and the curve through them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FillTimes {
    /// One point per context (the latest), ascending.
    points: Vec<Point>,
    /// How much slower than its screen the slowest refuted verification ran (its load
    /// over the screen's); 1.0 until a verification missed the time limit.
    slowdown: Option<f64>,
}

/// A request's predicted time at a context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predicted {
    pub ttft_ms: f64,
    pub e2e_ms: f64,
}

impl FillTimes {
    /// Records a screen that served its request (its time to first token and its whole
    /// duration); anything else — verifications, failures — is ignored.
    pub fn record(&mut self, outcome: &TrialOutcome) {
        if outcome.stage != Stage::Screen || outcome.success_rate <= 0.0 {
            return;
        }
        let (Some(ttft_ms), Some(e2e_ms)) = (
            outcome.latency.ttft_p50_ms.or(outcome.ttft_ms),
            outcome.latency.e2e_p95_ms,
        ) else {
            return;
        };
        let point = Point {
            ctx: outcome.config.ctx,
            ttft_ms,
            e2e_ms: e2e_ms.max(ttft_ms),
        };
        match self.points.binary_search_by_key(&point.ctx, |p| p.ctx) {
            Ok(at) => self.points[at] = point,
            Err(at) => self.points.insert(at, point),
        }
    }

    /// Whether any screen was recorded.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// How many contexts were screened: one gives a rate, two or more its slope.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// The measured figures at `ctx`, if a screen there was recorded.
    pub fn measured(&self, ctx: u32) -> Option<Predicted> {
        self.points
            .iter()
            .find(|p| p.ctx == ctx)
            .map(|p| Predicted {
                ttft_ms: p.ttft_ms,
                e2e_ms: p.e2e_ms,
            })
    }

    /// What a request at `ctx` will take: the prefill rate's line through the screens
    /// (one screen: its rate, flat — an underestimate above it, as attention only adds),
    /// plus the decode time of the largest screen. `None` before any screen.
    pub fn predict(&self, ctx: u32) -> Option<Predicted> {
        let largest = self.points.last()?;
        let (a, b) = self.rate_line();
        let c = f64::from(ctx);
        let ttft_ms = c * (a + b * c);
        let decode_ms = largest.e2e_ms - largest.ttft_ms;
        Some(Predicted {
            ttft_ms,
            e2e_ms: ttft_ms + decode_ms,
        })
    }

    /// The least-squares line `ttft / c = a + b·c` through the screens; a falling or
    /// unknown slope (one screen, fixed overheads dominating small fills) is taken as
    /// flat at the largest screen's rate.
    fn rate_line(&self) -> (f64, f64) {
        let rates: Vec<(f64, f64)> = self
            .points
            .iter()
            .filter(|p| p.ctx > 0)
            .map(|p| (f64::from(p.ctx), p.ttft_ms / f64::from(p.ctx)))
            .collect();
        let flat = rates.last().map_or((0.0, 0.0), |&(_, y)| (y, 0.0));
        if rates.len() < 2 {
            return flat;
        }
        let n = rates.len() as f64;
        let mean_x = rates.iter().map(|r| r.0).sum::<f64>() / n;
        let mean_y = rates.iter().map(|r| r.1).sum::<f64>() / n;
        let sxx: f64 = rates.iter().map(|r| (r.0 - mean_x).powi(2)).sum();
        let sxy: f64 = rates.iter().map(|r| (r.0 - mean_x) * (r.1 - mean_y)).sum();
        if sxx <= 0.0 {
            return flat;
        }
        let b = sxy / sxx;
        if b <= 0.0 {
            return flat;
        }
        (mean_y - b * mean_x, b)
    }

    /// The largest context, a multiple of `granularity` in `[min, max]`, whose predicted
    /// request stays within the time limit; `None` before any screen, or when even `min`
    /// is predicted over it.
    pub fn largest_within(
        &self,
        limits: &ContextLimits,
        batch: u32,
        granularity: u32,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        self.predict(min)?;
        let g = granularity.max(1);
        let within = |ctx: u32| {
            self.predict(ctx)
                .is_some_and(|p| self.load(limits, ctx, batch, p) <= 1.0)
        };
        // The load rises with the context: bisect over the aligned steps.
        let (mut lo, mut hi) = (min.div_ceil(g), max / g);
        if lo > hi || !within(lo * g) {
            return None;
        }
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if within(mid * g) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(lo * g)
    }

    /// A request's load at `ctx` ([`time_load`]) with the slowdown learned from refuted
    /// verifications applied.
    fn load(&self, limits: &ContextLimits, ctx: u32, batch: u32, p: Predicted) -> f64 {
        time_load(limits, ctx, batch, Some(p.ttft_ms), p.e2e_ms) * self.slowdown.unwrap_or(1.0)
    }

    /// Whether a stable screen holds once the slowdown of refuted verifications is
    /// applied to it (always, before any): one that does not would not verify.
    pub fn holds(&self, limits: &ContextLimits, outcome: &TrialOutcome) -> bool {
        let (ctx, batch) = (outcome.config.ctx, outcome.config.batch);
        self.slowdown.is_none()
            || self
                .measured(ctx)
                .is_none_or(|p| self.load(limits, ctx, batch, p) <= 1.0)
    }

    /// Whether a screen that failed for a reason other than memory is worth measuring
    /// again: a time miss only where the time measured — or, for a request cut at the
    /// timeout, the time predicted from the screens — was within [`RETRY_MARGIN`] over
    /// the limit (or under it: a timeout nothing predicted is noise); a server error or
    /// bad output always (a hiccup, not a measurement).
    pub fn worth_retrying(&self, limits: &ContextLimits, outcome: &TrialOutcome) -> bool {
        let (ctx, batch) = (outcome.config.ctx, outcome.config.batch);
        let measured = outcome.latency.e2e_p95_ms.map(|e2e_ms| Predicted {
            ttft_ms: outcome.latency.ttft_p95_ms.unwrap_or(0.0),
            e2e_ms,
        });
        let figures = match (outcome.failure, measured) {
            (Some(Failure::ServerError | Failure::BadOutput), _) => return true,
            (None, Some(measured)) => measured,
            _ => match self.predict(ctx) {
                Some(predicted) => predicted,
                None => return true,
            },
        };
        // The screen's own figures: the slowdown is the verifications'.
        time_load(limits, ctx, batch, Some(figures.ttft_ms), figures.e2e_ms) <= 1.0 + RETRY_MARGIN
    }

    /// The host's verification at `refuted.config.ctx` was not stable. Where it missed
    /// the time limit by more than its own screen did, the slowdown (its load over the
    /// screen's) is learned, and the smallest of `passes` it puts over the limit is
    /// returned: that pass and those above it are withdrawn, the ones below kept. `None`
    /// when the verification was refuted by something other than time, or its screen's
    /// figures are unknown.
    pub fn refuted(
        &mut self,
        limits: &ContextLimits,
        refuted: &TrialOutcome,
        passes: &[u32],
    ) -> Option<u32> {
        let (ctx, batch) = (refuted.config.ctx, refuted.config.batch);
        let screen = self.measured(ctx)?;
        let screen_load = time_load(limits, ctx, batch, Some(screen.ttft_ms), screen.e2e_ms);
        let verified_load = match (refuted.failure, refuted.latency.e2e_p95_ms) {
            // A request cut at the timeout took at least the timeout.
            (Some(Failure::Timeout), e2e) => {
                let timeout = limits.timeout.for_config(ctx, batch);
                time_load(limits, ctx, batch, None, e2e.unwrap_or(0.0).max(timeout))
            }
            (_, Some(e2e_ms)) => time_load(limits, ctx, batch, refuted.latency.ttft_p95_ms, e2e_ms),
            (_, None) => return None,
        };
        if screen_load <= 0.0 || verified_load <= screen_load || verified_load <= 1.0 {
            return None;
        }
        let slowdown = (verified_load / screen_load).min(MAX_SLOWDOWN);
        self.slowdown = Some(self.slowdown.map_or(slowdown, |s| s.max(slowdown)));
        passes.iter().copied().filter(|&c| c < ctx).find(|&c| {
            self.measured(c)
                .is_some_and(|p| self.load(limits, c, batch, p) > 1.0)
        })
    }
}

/// How a request's times stand against the time limit of its context: the largest of
/// each latency bound of the objective over its figure (`ttft-*` against the time to
/// first token, `e2e-p95` against the whole request) and the whole request over the
/// timeout margin × the timeout. At most 1.0: within the limit.
pub fn time_load(
    limits: &ContextLimits,
    ctx: u32,
    batch: u32,
    ttft_ms: Option<f64>,
    e2e_ms: f64,
) -> f64 {
    let timeout = limits.timeout.for_config(ctx, batch) * limits.timeout_margin;
    let mut load = if timeout > 0.0 { e2e_ms / timeout } else { 0.0 };
    for bound in &limits.slo.bounds {
        let figure = match bound.metric {
            SloMetric::TtftP50 | SloMetric::TtftP95 | SloMetric::TtftP99 => ttft_ms,
            SloMetric::E2eP95 => Some(e2e_ms),
            // Per-token and throughput bounds barely move with the context.
            SloMetric::TpotP50 | SloMetric::TpotP95 | SloMetric::DecodeMin => None,
        };
        if let Some(figure) = figure.filter(|_| bound.value > 0.0) {
            load = load.max(figure / bound.value);
        }
    }
    load
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, TimeMachine};
    use crate::{Slo, SloBound};

    fn screens(machine: &TimeMachine, at: &[u32]) -> FillTimes {
        let mut times = FillTimes::default();
        for &ctx in at {
            times.record(&machine.screen(ctx));
        }
        times
    }

    #[test]
    fn the_curve_through_three_screens_predicts_a_fourth() {
        let machine = TimeMachine::default();
        let times = screens(&machine, &[2048, 4096, 8192]);
        let truth = machine.screen(16_384).latency.e2e_p95_ms.unwrap();
        let predicted = times.predict(16_384).unwrap().e2e_ms;
        assert!(
            (predicted / truth - 1.0).abs() < 0.02,
            "{predicted} vs {truth}"
        );
    }

    #[test]
    fn one_screen_predicts_flat_and_falling_rates_are_taken_flat() {
        let machine = TimeMachine::default();
        let one = screens(&machine, &[4096]);
        let p = one.predict(8192).unwrap();
        let at = machine.screen(4096).latency.ttft_p50_ms.unwrap();
        assert!((p.ttft_ms - 2.0 * at).abs() < 1e-6);
        // Small fills dominated by a fixed overhead: a falling rate.
        let mut times = FillTimes::default();
        for (ctx, ttft) in [(1024, 2000.0), (2048, 2100.0)] {
            let mut o = testing::stable(testing::context_config(ctx));
            o.stage = Stage::Screen;
            o.latency.ttft_p50_ms = Some(ttft);
            o.latency.e2e_p95_ms = Some(ttft + 500.0);
            times.record(&o);
        }
        let p = times.predict(4096).unwrap();
        assert!((p.ttft_ms - 4200.0).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn the_objective_bounds_the_crossing_below_the_timeout() {
        let machine = TimeMachine::default();
        let times = screens(&machine, &[2048, 4096, 8192]);
        let loose = ContextLimits::default();
        let by_timeout = times
            .largest_within(&loose, 512, 256, 2048, 131_072)
            .unwrap();
        let ttft_at_8k = machine.screen(8192).latency.ttft_p50_ms.unwrap();
        let tight = ContextLimits {
            slo: Slo {
                bounds: vec![SloBound {
                    metric: SloMetric::TtftP95,
                    value: ttft_at_8k * 1.01,
                }],
            },
            ..loose
        };
        let by_objective = times
            .largest_within(&tight, 512, 256, 2048, 131_072)
            .unwrap();
        assert_eq!(
            by_objective, 8192,
            "the objective's crossing is just above 8192"
        );
        assert!(by_timeout > by_objective);
    }

    #[test]
    fn a_timeout_the_curve_predicted_is_not_measured_again_but_a_surprise_is() {
        let machine = TimeMachine::default();
        let limits = ContextLimits::default();
        let times = screens(&machine, &[2048, 4096, 8192]);
        let edge = machine.edge(&limits, 256);
        let far = machine.screen(edge * 2);
        assert_eq!(far.failure, Some(Failure::Timeout));
        assert!(!times.worth_retrying(&limits, &far));
        // A timeout where the curve says the request takes half the limit: noise.
        let mut surprise = testing::failed(testing::context_config(edge / 2), Failure::Timeout);
        surprise.stage = Stage::Screen;
        assert!(times.worth_retrying(&limits, &surprise));
        // Nothing measured yet: nothing predicts it.
        assert!(FillTimes::default().worth_retrying(&limits, &far));
        // A server error is a hiccup wherever it happens.
        let mut error = testing::failed(testing::context_config(edge * 2), Failure::ServerError);
        error.stage = Stage::Screen;
        assert!(times.worth_retrying(&limits, &error));
    }

    #[test]
    fn a_slow_verification_withdraws_only_the_passes_its_slowdown_puts_over_the_limit_and_slows_the_curve(
    ) {
        let machine = TimeMachine::default();
        let limits = ContextLimits::default();
        let edge = machine.edge(&limits, 256);
        let passes = [edge / 2, edge - 1024, edge - 256, edge];
        let times = screens(&machine, &passes);
        // The verification at the edge ran 5 % slower than its screen.
        let mut verification = machine.screen(edge);
        verification.stage = Stage::Verify;
        let e2e = verification.latency.e2e_p95_ms.unwrap() * 1.05;
        verification.latency.e2e_p95_ms = Some(e2e);
        verification.verdict = crate::Verdict::Unstable;
        // A verification no slower than its screen refutes nothing by time.
        let mut spread = machine.screen(edge);
        spread.stage = Stage::Verify;
        let mut before = times.clone();
        assert_eq!(before.refuted(&limits, &spread, &passes), None);
        assert!(before.holds(&limits, &machine.screen(edge)));
        let mut times = times;
        let first = times.refuted(&limits, &verification, &passes);
        assert_eq!(
            first,
            Some(edge - 256),
            "within 5 % of the limit: {passes:?}"
        );
        // From now on a screen holds only with the slowdown.
        assert!(!times.holds(&limits, &machine.screen(edge - 256)));
        assert!(times.holds(&limits, &machine.screen(edge - 1024)));
        let aim = times
            .largest_within(&limits, 512, 256, 2048, 32_768)
            .unwrap();
        assert!(aim < edge - 256 && aim >= edge - 1024, "{aim}");
    }

    #[test]
    fn a_verification_twice_as_slow_as_its_screen_teaches_at_most_the_cap() {
        let machine = TimeMachine::default();
        let limits = ContextLimits::default();
        let edge = machine.edge(&limits, 256);
        let passes = [edge / 2, edge];
        let mut times = screens(&machine, &passes);
        let mut verification = machine.screen(edge);
        verification.stage = Stage::Verify;
        let e2e = verification.latency.e2e_p95_ms.unwrap() * 2.0;
        verification.latency.e2e_p95_ms = Some(e2e);
        times.refuted(&limits, &verification, &passes);
        // A screen at 80 % of the limit holds under the 1.2 cap, as it would not under 2×.
        let at = (1..=edge / 256)
            .map(|k| k * 256)
            .rev()
            .find(|&c| {
                let s = machine.screen(c);
                let load = time_load(
                    &limits,
                    c,
                    512,
                    s.latency.ttft_p50_ms,
                    s.latency.e2e_p95_ms.unwrap(),
                );
                load <= 0.8
            })
            .unwrap();
        times.record(&machine.screen(at));
        assert!(times.holds(&limits, &machine.screen(at)));
        // Worth retrying is judged on the screen's own figures, not the verifications'.
        let mut near = machine.screen(edge);
        near.verdict = crate::Verdict::Unstable;
        assert!(times.worth_retrying(&limits, &near));
    }
}
