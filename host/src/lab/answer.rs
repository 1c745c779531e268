//! How the lab answers a trial from a profile, without inventing what was not measured.
//!
//! A request is a configuration, a stage (screen or verify), how many times the same
//! request came before in this run, and a seed. The answer is, in this order:
//!
//! 1. **Measured**: a measurement of that configuration at that stage. Where the
//!    configuration was measured several times (repeats), seed 0 answers the k-th
//!    request with the k-th measurement (the recorded order); any other seed draws one.
//! 2. **Derived** from the same configuration at the other stage: a verification's
//!    first request is a screen (a failed or stable verification gives its verdict; an
//!    unstable one the first sample's), and a failed screen fails the verification
//!    (its first request is that fill).
//! 3. **Interpolated** between measured neighbours, flagged: along concurrency at the
//!    same context and batch, then along batch at the same context, then along context.
//!    The rule is the same on every axis and monotone: two stable neighbours give a
//!    stable answer with figures (memory, throughput, TTFT, duration) linear between
//!    theirs (a concurrency level's latency percentiles are not interpolated: an
//!    objective counts them as unmeasured); otherwise the lower neighbour's failure holds above it, else the upper
//!    neighbour's (the cautious answer). So batch and concurrency trials at a context
//!    the ladders did not measure are answered between the ladder contexts around it.
//! 4. **Not recorded**: outside every measured range (above the largest or below the
//!    smallest measured value on an axis) nothing is extrapolated; the trial is answered
//!    as failed (a server error, "not recorded: …", no duration), and counted.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::record::{
    FailureKind, Peaks, Reason, Stage, Stats, TrialConfig, TrialFailure, TrialRecord, Verdict,
};

use super::profile::{Point, Profile};

/// Where an answer came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Source {
    /// Measurement `run` (0-based) of the `of` taken at this configuration and stage.
    Measured { run: usize, of: usize },
    /// From a measurement of this configuration at the other stage.
    Derived { how: String },
    /// Between measured neighbours.
    Interpolated { how: String },
    /// Outside what the profile measured: answered as failed.
    NotRecorded { why: String },
}

impl Source {
    pub fn is_interpolated(&self) -> bool {
        matches!(self, Source::Interpolated { .. })
    }

    pub fn is_not_recorded(&self) -> bool {
        matches!(self, Source::NotRecorded { .. })
    }

    /// The note to show, when the answer is not a plain measurement.
    pub fn note(&self) -> Option<&str> {
        match self {
            Source::Measured { .. } => None,
            Source::Derived { how } | Source::Interpolated { how } => Some(how),
            Source::NotRecorded { why } => Some(why),
        }
    }
}

/// A trial as the profile answers it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub record: TrialRecord,
    pub source: Source,
}

/// One trial asked of the profile.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub config: &'a TrialConfig,
    pub stage: Stage,
    /// How many times this configuration and stage were asked before in this run.
    pub repeat: u32,
    /// 0: measurements in the recorded order; otherwise a seeded draw.
    pub seed: u64,
}

/// Answers requests from one profile (its points indexed by context).
pub struct Answerer<'p> {
    profile: &'p Profile,
    by_ctx: BTreeMap<u32, Vec<&'p Point>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    Context,
    Batch,
    Concurrency,
}

impl Axis {
    fn name(self) -> &'static str {
        match self {
            Axis::Context => "context",
            Axis::Batch => "batch",
            Axis::Concurrency => "concurrency",
        }
    }
}

impl<'p> Answerer<'p> {
    pub fn new(profile: &'p Profile) -> Self {
        let mut by_ctx: BTreeMap<u32, Vec<&Point>> = BTreeMap::new();
        for p in &profile.points {
            by_ctx.entry(p.config.ctx).or_default().push(p);
        }
        Self { profile, by_ctx }
    }

    pub fn answer(&self, req: Request<'_>) -> Answer {
        match self.over_context(req) {
            Some(mut answer) => {
                answer.record.config = req.config.clone();
                answer
            }
            None => self.not_recorded(req),
        }
    }

    /// At the requested context, else between the nearest contexts that answer.
    fn over_context(&self, req: Request<'_>) -> Option<Answer> {
        let x = req.config.ctx;
        if let Some(a) = self.over_batch(x, req) {
            return Some(a);
        }
        let lo = self
            .by_ctx
            .range(..x)
            .rev()
            .find_map(|(&c, _)| self.over_batch(c, req).map(|a| (c, a)))?;
        let hi = self
            .by_ctx
            .range(x.saturating_add(1)..)
            .find_map(|(&c, _)| self.over_batch(c, req).map(|a| (c, a)))?;
        Some(combine(Axis::Context, x, lo, hi))
    }

    /// At context `ctx`: the requested batch, else between the nearest batches that
    /// answer there.
    fn over_batch(&self, ctx: u32, req: Request<'_>) -> Option<Answer> {
        let points: Vec<&Point> = self
            .by_ctx
            .get(&ctx)?
            .iter()
            .copied()
            .filter(|p| p.config.variant == req.config.variant)
            .collect();
        let x = req.config.batch;
        if let Some(a) = self.over_concurrency(&points, x, req) {
            return Some(a);
        }
        let mut batches: Vec<u32> = points.iter().map(|p| p.config.batch).collect();
        batches.sort_unstable();
        batches.dedup();
        let lo = batches
            .iter()
            .rev()
            .filter(|&&b| b < x)
            .find_map(|&b| self.over_concurrency(&points, b, req).map(|a| (b, a)))?;
        let hi = batches
            .iter()
            .filter(|&&b| b > x)
            .find_map(|&b| self.over_concurrency(&points, b, req).map(|a| (b, a)))?;
        Some(combine(Axis::Batch, x, lo, hi))
    }

    /// At one context and batch: the requested concurrency, else between the nearest
    /// measured levels.
    fn over_concurrency(&self, points: &[&Point], batch: u32, req: Request<'_>) -> Option<Answer> {
        let line: Vec<&Point> = points
            .iter()
            .copied()
            .filter(|p| p.config.batch == batch)
            .collect();
        let x = req.config.concurrency;
        if let Some(a) = self.exact(&line, x, req) {
            return Some(a);
        }
        let mut levels: Vec<u32> = line.iter().map(|p| p.config.concurrency).collect();
        levels.sort_unstable();
        levels.dedup();
        let lo = levels
            .iter()
            .rev()
            .filter(|&&n| n < x)
            .find_map(|&n| self.exact(&line, n, req).map(|a| (n, a)))?;
        let hi = levels
            .iter()
            .filter(|&&n| n > x)
            .find_map(|&n| self.exact(&line, n, req).map(|a| (n, a)))?;
        Some(combine(Axis::Concurrency, x, lo, hi))
    }

    /// A measurement at this concurrency of `line` (one context and batch): at the
    /// stage asked for, else derived from the other stage.
    fn exact(&self, line: &[&Point], concurrency: u32, req: Request<'_>) -> Option<Answer> {
        let at = |stage| {
            line.iter()
                .copied()
                .find(|p| p.config.concurrency == concurrency && p.stage == stage)
        };
        if let Some(point) = at(req.stage) {
            let run = pick(point, req);
            return Some(Answer {
                record: point.runs[run].clone(),
                source: Source::Measured {
                    run,
                    of: point.runs.len(),
                },
            });
        }
        match req.stage {
            Stage::Screen => {
                let point = at(Stage::Verify)?;
                Some(screen_of_verification(&point.runs[pick(point, req)]))
            }
            Stage::Verify => {
                let point = at(Stage::Screen)?;
                let screen = &point.runs[pick(point, req)];
                (screen.verdict == Verdict::Failed).then(|| Answer {
                    record: screen.clone(),
                    source: Source::Derived {
                        how: "the screen of this configuration failed: a verification fails \
                              at its first request"
                            .into(),
                    },
                })
            }
        }
    }

    fn not_recorded(&self, req: Request<'_>) -> Answer {
        let c = req.config;
        let why = match self.profile.measured_contexts() {
            Some((lo, hi)) if c.ctx < lo || c.ctx > hi => format!(
                "not recorded: context {} is outside the measured contexts {lo}..={hi}",
                c.ctx
            ),
            _ => format!(
                "not recorded: no {} measurements around {c}",
                match req.stage {
                    Stage::Screen => "screen",
                    Stage::Verify => "verification",
                }
            ),
        };
        Answer {
            record: TrialRecord {
                id: 0,
                phase: crate::record::Phase::Context,
                stage: req.stage,
                config: c.clone(),
                started_at: self.profile.provenance.recorded_at,
                duration_ms: 0,
                granted_ctx: None,
                samples: Vec::new(),
                ttft_ms: None,
                prefill_tps: None,
                decode_tps: None,
                success_rate: 0.0,
                cv: None,
                peaks: Peaks::default(),
                breach: None,
                failure: Some(TrialFailure {
                    kind: FailureKind::ServerError,
                    message: why.clone(),
                    fault: None,
                }),
                verdict: Verdict::Failed,
                reason: Some(Reason::Failure),
                stopped_early: None,
                server_log_tail: Vec::new(),
                concurrency: None,
                memory_breakdown: None,
            },
            source: Source::NotRecorded { why },
        }
    }
}

/// Which measurement of a repeated point answers: the recorded order for seed 0, else a
/// draw from the seed, the configuration, the stage and the repeat.
fn pick(point: &Point, req: Request<'_>) -> usize {
    let n = point.runs.len();
    if req.seed == 0 {
        return req.repeat as usize % n;
    }
    let c = &point.config;
    let mut h = req.seed;
    for v in [
        u64::from(c.ctx),
        u64::from(c.batch),
        u64::from(c.concurrency),
        u64::from(req.stage == Stage::Verify),
        u64::from(req.repeat),
    ] {
        h = splitmix64(h ^ v);
    }
    (h % n as u64) as usize
}

/// SplitMix64's finaliser: a well-mixed hash of a 64-bit value (Steele et al., 2014).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A screen read from a verification: its first request.
fn screen_of_verification(run: &TrialRecord) -> Answer {
    let mut record = run.clone();
    let how = match (run.verdict, run.samples.first()) {
        (Verdict::Unstable, Some(first)) if first.ok => {
            record.verdict = Verdict::Stable;
            record.reason = Some(Reason::Served { of: 1 });
            record.success_rate = 1.0;
            record.cv = None;
            record.samples.truncate(1);
            let one = |v: Option<f64>| v.and_then(|v| Stats::from_values(&[v]));
            record.ttft_ms = one(first.ttft_ms);
            record.prefill_tps = one(first.prefill_tps);
            record.decode_tps = one(first.decode_tps);
            "the first request of an unstable verification of this configuration succeeded"
        }
        _ => "a verification of this configuration (its first request is a screen)",
    };
    Answer {
        record,
        source: Source::Derived { how: how.into() },
    }
}

/// The answer at `x` between `lo` and `hi` on `axis` (monotone: see the module doc).
fn combine(axis: Axis, x: u32, lo: (u32, Answer), hi: (u32, Answer)) -> Answer {
    let name = axis.name();
    let ((xl, a), (xh, b)) = (lo, hi);
    let nested = [&a.source, &b.source]
        .iter()
        .filter_map(|s| match s {
            Source::Interpolated { how } => Some(how.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>();
    let suffix = if nested.is_empty() {
        String::new()
    } else {
        format!(" ({})", nested.join("; "))
    };
    let (record, how) = if a.record.verdict != Verdict::Stable {
        (
            a.record,
            format!("{name} {x} is above the failure at {name} {xl}{suffix}"),
        )
    } else if b.record.verdict != Verdict::Stable {
        (
            b.record,
            format!(
                "{name} {x} lies between stable {xl} and not stable {xh}: answered as {xh}{suffix}"
            ),
        )
    } else {
        let t = (f64::from(x) - f64::from(xl)) / (f64::from(xh) - f64::from(xl));
        (
            blend(&a.record, &b.record, t),
            format!("stable, figures between {name} {xl} and {xh}{suffix}"),
        )
    };
    Answer {
        record,
        source: Source::Interpolated { how },
    }
}

/// A stable record whose figures lie linearly between `a`'s (t = 0) and `b`'s (t = 1).
fn blend(a: &TrialRecord, b: &TrialRecord, t: f64) -> TrialRecord {
    let lerp = |ya: f64, yb: f64| ya + t * (yb - ya);
    let lerp_u = |ya: Option<u64>, yb: Option<u64>| match (ya, yb) {
        (Some(ya), Some(yb)) => Some(lerp(ya as f64, yb as f64).round() as u64),
        _ => None,
    };
    let lerp_f = |ya: Option<f64>, yb: Option<f64>| Some(lerp(ya?, yb?));
    let lerp_stats = |sa: &Option<Stats>, sb: &Option<Stats>| match (sa, sb) {
        (Some(sa), Some(sb)) => Some(Stats {
            n: sa.n.min(sb.n),
            mean: lerp(sa.mean, sb.mean),
            stddev: lerp_f(sa.stddev, sb.stddev),
            p50: lerp(sa.p50, sb.p50),
            p95: lerp(sa.p95, sb.p95),
            min: lerp(sa.min, sb.min),
            max: lerp(sa.max, sb.max),
        }),
        _ => None,
    };
    let mut record = a.clone();
    record.samples = Vec::new();
    record.granted_ctx = None;
    record.failure = None;
    record.breach = None;
    record.verdict = Verdict::Stable;
    // No rule judged figures nobody measured.
    record.reason = None;
    // Latency percentiles do not interpolate: an objective judges them unmeasured.
    record.concurrency = None;
    record.duration_ms = lerp(a.duration_ms as f64, b.duration_ms as f64).round() as u64;
    record.peaks = Peaks {
        gpu_mem_used_bytes: lerp_u(a.peaks.gpu_mem_used_bytes, b.peaks.gpu_mem_used_bytes),
        ram_used_bytes: lerp_u(a.peaks.ram_used_bytes, b.peaks.ram_used_bytes),
        process_rss_bytes: lerp_u(a.peaks.process_rss_bytes, b.peaks.process_rss_bytes),
        server_gpu_mem_bytes: lerp_u(a.peaks.server_gpu_mem_bytes, b.peaks.server_gpu_mem_bytes),
        gpu_temp_c: lerp_f(a.peaks.gpu_temp_c, b.peaks.gpu_temp_c),
        cpu_percent: lerp_f(a.peaks.cpu_percent, b.peaks.cpu_percent),
    };
    record.ttft_ms = lerp_stats(&a.ttft_ms, &b.ttft_ms);
    record.prefill_tps = lerp_stats(&a.prefill_tps, &b.prefill_tps);
    record.decode_tps = lerp_stats(&a.decode_tps, &b.decode_tps);
    record.cv = lerp_f(a.cv, b.cv);
    record.success_rate = lerp(a.success_rate, b.success_rate);
    record
}
