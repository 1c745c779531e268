//! The memories a growing context runs into, and the line fitted through each one's
//! readings.

use ozone_sdk::{HardwareFacts, TrialOutcome};

/// A memory whose limit a growing context can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// The user's budget for the server's own GPU memory.
    GpuBudget,
    /// The GPU threshold, whole device.
    Gpu,
    /// The user's budget for the server's resident memory.
    Process,
    /// The machine's RAM threshold.
    Ram,
}

impl Memory {
    /// The memories that can bind on this machine: every budget the user set and the GPU
    /// when there is one; the machine's RAM only when nothing else is watched (CPU
    /// inference without a budget) or when the GPU shares it (unified memory). RAM is
    /// whole-machine and moves with everything else running, so it is left out when a
    /// tighter, cleaner reading exists.
    pub fn watched(hardware: &HardwareFacts) -> Vec<Memory> {
        let mut watched = Vec::new();
        if hardware.gpu_memory_budget_bytes.is_some() {
            watched.push(Memory::GpuBudget);
        }
        if hardware.gpu_count > 0 {
            watched.push(Memory::Gpu);
        }
        if hardware.process_memory_budget_bytes.is_some() {
            watched.push(Memory::Process);
        }
        let ram_binds = hardware.unified_memory && hardware.process_memory_budget_bytes.is_none();
        if watched.is_empty() || ram_binds {
            watched.push(Memory::Ram);
        }
        watched
    }

    /// This memory's peak and headroom in a trial's outcome, when both were measured.
    pub fn reading(self, outcome: &TrialOutcome) -> Option<Reading> {
        let h = &outcome.headroom;
        let (peak, headroom) = match self {
            Memory::GpuBudget => (
                outcome.peak_server_gpu_memory_bytes,
                h.gpu_memory_budget_bytes,
            ),
            Memory::Gpu => (outcome.peak_gpu_memory_bytes, h.gpu_memory_bytes),
            Memory::Process => (outcome.peak_process_memory_bytes, h.process_memory_bytes),
            Memory::Ram => (outcome.peak_ram_bytes, h.ram_bytes),
        };
        Some(Reading {
            ctx: f64::from(outcome.config.ctx),
            peak: peak? as f64,
            headroom: headroom? as f64,
            samples: outcome.samples.max(1),
        })
    }

    /// Whether this memory is the host's, where an inference server may keep the cache of
    /// every finished request (llama-server's `--cache-ram` prompt cache, on by default):
    /// there each sample of a trial can add a whole KV cache.
    fn keeps_request_caches(self) -> bool {
        matches!(self, Memory::Process | Memory::Ram)
    }
}

/// One trial's reading of one memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub ctx: f64,
    pub peak: f64,
    /// Limit minus peak.
    pub headroom: f64,
    /// Requests the trial sent.
    pub samples: u32,
}

/// What the readings say about how memory grows with the context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slope {
    /// Bytes per token, fitted over readings far enough apart.
    Measured(f64),
    /// The readings span enough context but memory did not rise above the noise (or fell):
    /// this memory tells nothing about where the context stops.
    Flat,
    /// Fewer than two readings far enough apart.
    Unknown,
}

/// Where a memory's headroom runs out, in tokens of context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// The context at which the fitted peak reaches the limit.
    pub limit: f64,
    /// How far below `limit` to aim: the fit's uncertainty there, in tokens.
    pub margin: f64,
}

impl Prediction {
    /// The context to propose when aiming just below the limit: the margin less one
    /// granularity step. Aligning down already keeps up to a step free, and a proposal
    /// one step over the limit costs nothing a proof does not: the search needs a failure
    /// one step above its answer anyway (and tries the step below the failure next).
    pub fn aim(&self, granularity: u32) -> f64 {
        self.limit - (self.margin - f64::from(granularity)).max(0.0)
    }
}

/// The least-squares line through the readings, peak = intercept + slope × ctx.
#[derive(Debug, Clone, Copy)]
struct Line {
    intercept: f64,
    slope: f64,
    n: f64,
    mean_ctx: f64,
    /// Σ (ctx − mean)².
    sxx: f64,
    /// The largest context read minus the smallest.
    span: f64,
}

impl Line {
    fn peak_at(&self, ctx: f64) -> f64 {
        self.intercept + self.slope * ctx
    }

    /// How much wider than one reading's noise the spread of a new reading at `ctx` is:
    /// the least-squares prediction interval, wider the further `ctx` lies from the
    /// readings the line rests on.
    fn spread_at(&self, ctx: f64) -> f64 {
        (1.0 + 1.0 / self.n + (ctx - self.mean_ctx).powi(2) / self.sxx).sqrt()
    }
}

/// The readings of one memory, and how well the fit predicted the ones that came later.
#[derive(Debug, Clone)]
pub struct Series {
    pub memory: Memory,
    readings: Vec<Reading>,
    /// For each reading that arrived while the line had a measured slope: how far it fell
    /// from the line, over the line's spread there — the noise of one reading, as the fit
    /// met it out of sample.
    misses: Vec<f64>,
}

impl Series {
    pub fn new(memory: Memory) -> Self {
        Self {
            memory,
            readings: Vec::new(),
            misses: Vec::new(),
        }
    }

    /// Adds a reading, first scoring the line against it.
    pub fn push(&mut self, reading: Reading, granularity: u32, margin: f64) {
        if let (Slope::Measured(_), Some(line)) = (self.slope(granularity, margin), self.line()) {
            let miss = (reading.peak - line.peak_at(reading.ctx)).abs();
            self.misses.push(miss / line.spread_at(reading.ctx));
        }
        self.readings.push(reading);
    }

    pub fn has_readings(&self) -> bool {
        !self.readings.is_empty()
    }

    /// The limit in bytes, as the readings state it (peak + headroom; the smallest, should
    /// they differ).
    fn limit_bytes(&self) -> Option<f64> {
        self.readings
            .iter()
            .map(|r| r.peak + r.headroom)
            .reduce(f64::min)
    }

    fn line(&self) -> Option<Line> {
        if self.readings.len() < 2 {
            return None;
        }
        let n = self.readings.len() as f64;
        let mean_ctx = self.readings.iter().map(|r| r.ctx).sum::<f64>() / n;
        let mean_peak = self.readings.iter().map(|r| r.peak).sum::<f64>() / n;
        let sxx: f64 = self
            .readings
            .iter()
            .map(|r| (r.ctx - mean_ctx).powi(2))
            .sum();
        if sxx <= 0.0 {
            return None;
        }
        let sxy: f64 = self
            .readings
            .iter()
            .map(|r| (r.ctx - mean_ctx) * (r.peak - mean_peak))
            .sum();
        let slope = sxy / sxx;
        let intercept = mean_peak - slope * mean_ctx;
        let (smallest, largest) = self
            .readings
            .iter()
            .fold((f64::INFINITY, 0.0_f64), |(lo, hi), r| {
                (lo.min(r.ctx), hi.max(r.ctx))
            });
        Some(Line {
            intercept,
            slope,
            n,
            mean_ctx,
            sxx,
            span: largest - smallest,
        })
    }

    /// The noise of one reading, in bytes: the largest miss of the line on a later
    /// reading once it has been checked against one; `margin` of the limit before that.
    fn noise(&self, margin: f64) -> f64 {
        self.misses
            .iter()
            .copied()
            .reduce(f64::max)
            .unwrap_or_else(|| margin * self.limit_bytes().unwrap_or(0.0).max(0.0))
    }

    /// The least-squares slope of peak over context, judged against the noise of a
    /// reading: flat when memory fell, or rose across the readings by less than the
    /// noise; unknown while the readings are closer than four granularity steps or the rise
    /// is under four times the noise (the slope would be mostly noise).
    pub fn slope(&self, granularity: u32, margin: f64) -> Slope {
        let Some(line) = self.line() else {
            return Slope::Unknown;
        };
        if line.span < 4.0 * f64::from(granularity) {
            return Slope::Unknown;
        }
        let (rise, noise) = (line.slope * line.span, self.noise(margin));
        if line.slope <= 0.0 || rise <= noise {
            Slope::Flat
        } else if rise < 4.0 * noise {
            Slope::Unknown
        } else {
            Slope::Measured(line.slope)
        }
    }

    /// Where the fitted line reaches the limit, and the margin to keep below it: the
    /// noise of a reading, widened by the line's spread there, in tokens.
    pub fn predict(&self, granularity: u32, margin: f64) -> Option<Prediction> {
        let Slope::Measured(slope) = self.slope(granularity, margin) else {
            return None;
        };
        let line = self.line()?;
        let limit = (self.limit_bytes()? - line.intercept) / slope;
        Some(Prediction {
            limit,
            margin: self.noise(margin) * line.spread_at(limit) / slope,
        })
    }

    /// With the slope unknown, where the KV-cache prior says the headroom of the reading
    /// closest to the limit runs out: the context at which `growth(from, to)` (the bytes
    /// the model's layout adds between two contexts, a lower bound on the real growth:
    /// buffers grow with the context too) uses up that headroom — in host memory one KV
    /// cache per request of the trial (see [`Memory::keeps_request_caches`]). Infinite
    /// when even `max` does not use it up: a flat or step-shaped cache (sliding windows,
    /// recurrent layers) never reaches the limit.
    pub fn prior_limit(&self, growth: &dyn Fn(f64, f64) -> f64, max: f64) -> Option<f64> {
        let nearest = self
            .readings
            .iter()
            .min_by(|a, b| a.headroom.total_cmp(&b.headroom))?;
        let caches = if self.memory.keeps_request_caches() {
            f64::from(nearest.samples)
        } else {
            1.0
        };
        let used = |ctx: f64| growth(nearest.ctx, ctx) * caches;
        let headroom = nearest.headroom.max(0.0);
        if used(max) < headroom {
            return Some(f64::INFINITY);
        }
        // The growth never falls with the context: bisect to a token.
        let (mut lo, mut hi) = (nearest.ctx, max);
        while hi - lo > 1.0 {
            let mid = (lo + hi) / 2.0;
            if used(mid) < headroom {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARGIN: f64 = 0.01;

    fn series(points: &[(f64, f64)], limit: f64) -> Series {
        let mut s = Series::new(Memory::Process);
        for &(ctx, peak) in points {
            s.push(
                Reading {
                    ctx,
                    peak,
                    headroom: limit - peak,
                    samples: 1,
                },
                256,
                MARGIN,
            );
        }
        s
    }

    #[test]
    fn close_readings_give_no_slope() {
        let s = series(&[(10_240.0, 47.0), (10_496.0, 47.5)], 48.0);
        assert_eq!(s.slope(256, MARGIN), Slope::Unknown);
    }

    #[test]
    fn a_falling_or_noise_level_rise_is_flat_and_a_small_rise_unknown() {
        let falling = series(&[(2048.0, 40.0), (8192.0, 39.0)], 48.0);
        assert_eq!(falling.slope(256, MARGIN), Slope::Flat);
        // The noise is 1 % of 48: 0.48.
        let level = series(&[(2048.0, 40.0), (8192.0, 40.3)], 48.0);
        assert_eq!(level.slope(256, MARGIN), Slope::Flat);
        let small = series(&[(2048.0, 40.0), (8192.0, 41.0)], 48.0);
        assert_eq!(small.slope(256, MARGIN), Slope::Unknown);
        let enough = series(&[(2048.0, 40.0), (8192.0, 42.0)], 48.0);
        assert!(matches!(enough.slope(256, MARGIN), Slope::Measured(_)));
    }

    #[test]
    fn the_margin_widens_with_the_distance_carried() {
        // 1 per 1000 tokens from 30 at 0; limit 48 → 18_000.
        let near = series(&[(2000.0, 32.0), (14_000.0, 44.0)], 48.0);
        let far = series(&[(2000.0, 32.0), (6000.0, 36.0)], 48.0);
        let (near, far) = (
            near.predict(256, MARGIN).unwrap(),
            far.predict(256, MARGIN).unwrap(),
        );
        assert!((near.limit - 18_000.0).abs() < 1e-6, "{near:?}");
        assert!((far.limit - 18_000.0).abs() < 1e-6, "{far:?}");
        // Noise 0.48 → 480 tokens, × √(1 + 1/2 + 10000²/72e6) near.
        let spread = (1.5f64 + 10_000.0f64.powi(2) / 72e6).sqrt();
        assert!((near.margin - 480.0 * spread).abs() < 1e-6, "{near:?}");
        assert!(far.margin > 2.0 * near.margin, "{far:?} vs {near:?}");
    }

    #[test]
    fn once_checked_the_fit_keeps_its_own_miss_free() {
        let on_the_line: Vec<(f64, f64)> = (1..=4)
            .map(|i| (4000.0 * f64::from(i), 30.0 + 4.0 * f64::from(i)))
            .collect();
        let exact = series(&on_the_line, 48.0).predict(256, MARGIN).unwrap();
        assert_eq!(exact.margin, 0.0, "{exact:?}");
        let mut off = on_the_line.clone();
        off[2].1 += 0.5;
        let off = series(&off, 48.0).predict(256, MARGIN).unwrap();
        // The third reading missed by 0.5 (over a spread of √(1 + 1/2 + 1) at 12000).
        let noise = 0.5 / 2.5f64.sqrt();
        assert!(off.margin > noise / 0.001, "{off:?}");
    }
}
