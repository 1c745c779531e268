//! A trial's verdict and why: the rule that decided it and the figures it was held to,
//! as the log records them. The rules themselves are `trial::verdict`'s.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Served its requests inside the limits, steadily enough (see its [`Reason`]).
    Stable,
    /// Ran, but too few requests succeeded or decode throughput varied too much.
    Unstable,
    /// Could not run: load failure, breach, timeout, crash, no request served.
    Failed,
}

/// Why a trial got its verdict. Absent in logs written before verdicts carried one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// The trial failed as a whole (its `failure` says how), or no request succeeded.
    Failure,
    /// Decided on its requests alone, all `of` of them served whole: a screen (one
    /// request: does it load, fill and fit), or a verification with one decode figure
    /// (a single value has no spread to judge).
    Served { of: u32 },
    /// Too few requests succeeded: `success_rate` below `needed`
    /// (`confidence_threshold`); `timed_out` of the `failed` ran past their timeout.
    SuccessRate {
        success_rate: f64,
        needed: f64,
        failed: u32,
        timed_out: u32,
    },
    /// A concurrency level: enough of its requests succeeded and nothing failed it.
    /// The spread of per-request decode speed is not judged: at N streams it is the
    /// streams sharing the machine, the load itself. (The objective is judged apart.)
    Level { success_rate: f64, needed: f64 },
    /// Decode throughput's robust spread within the tolerance.
    Steady(SpreadCheck),
    /// Decode throughput's robust spread over the tolerance, and (when a noise floor was
    /// measured) clear of the machine's own, itself within the tolerance: the
    /// configuration's instability.
    Unsteady(SpreadCheck),
    /// A re-measurement whose spread is over the tolerance but not clear of the
    /// machine's own noise floor, or whose floor is itself over the tolerance: the
    /// machine was noisy, not (as far as it can tell) the configuration.
    WithinNoise(SpreadCheck),
    /// A context trial that was served steadily but missed the objective's latency bound
    /// (`--slo`), over its own requests: the context is larger than a user accepts.
    ObjectiveMissed { miss: super::SloMiss },
    /// A context trial whose slowest request took more than `margin` of its timeout: its
    /// fills land so close to the timeout that the next busy minute pushes them over.
    NearTimeout {
        slowest_ms: f64,
        timeout_ms: f64,
        margin: f64,
    },
}

/// A spread held against the tolerance (and the run's noise floor, when measured).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpreadCheck {
    /// 1.4826 × MAD / median of decode tokens/s over the successful samples.
    pub spread: f64,
    /// `variance_tolerance`.
    pub tolerance: f64,
    pub samples: u32,
    /// Samples further than ten robust standard deviations from the median.
    pub outliers: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<NoiseFloor>,
    /// This trial measured the configuration again after trial `remeasure_of` varied
    /// more than the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remeasure_of: Option<u32>,
}

/// The run's noise floor: how much decode throughput varies on this machine in a
/// configuration nothing strains (the smallest context) — the largest spread of the
/// run's verifications of it, one measured afresh for each verification whose spread
/// alone was over the tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseFloor {
    pub spread: f64,
    pub ctx: u32,
    pub trial_id: u32,
}

impl Reason {
    /// The verdict this reason gives.
    pub fn verdict(&self) -> Verdict {
        match self {
            Reason::Failure => Verdict::Failed,
            Reason::SuccessRate { .. }
            | Reason::Unsteady(_)
            | Reason::ObjectiveMissed { .. }
            | Reason::NearTimeout { .. } => Verdict::Unstable,
            Reason::Served { .. }
            | Reason::Level { .. }
            | Reason::Steady(_)
            | Reason::WithinNoise(_) => Verdict::Stable,
        }
    }

    /// The spread check, for the rules that made one.
    pub fn spread(&self) -> Option<&SpreadCheck> {
        match self {
            Reason::Steady(c) | Reason::Unsteady(c) | Reason::WithinNoise(c) => Some(c),
            _ => None,
        }
    }
}
