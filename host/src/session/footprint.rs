//! A server-memory budget relative to the server itself (`process_memory_headroom_mb`):
//! the server's footprint at the smallest context, measured by one screen before the
//! run, plus the headroom. What a llama-server takes at rest depends on the build and on
//! the machine (a Vulkan build loads every installed GPU driver at start, Mesa's among
//! them: +50 MiB resident), so an absolute budget that binds at a few thousand tokens on
//! one machine binds at none, or at every context, on another; a headroom binds at the
//! same context everywhere.

use tokio_util::sync::CancellationToken;

use crate::backend::BackendSpec;
use crate::config::Config;
use crate::guard::Thresholds;
use crate::record::{FailureKind, Phase, Stage, TrialConfig, TrialRecord};
use crate::trial::TrialRunner;
use crate::tune::setup::sampler;

const MIB: u64 = 1 << 20;

/// Why the footprint could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    #[error(
        "--memory-headroom-mb (ozone.process_memory_headroom_mb) needs a server Ozone starts \
         itself (llama-server): the memory of a running {0} is not Ozone's to measure"
    )]
    NotOurServer(String),
    /// The server never served the smallest context for a reason that is not memory.
    #[error("measuring the server's footprint at {ctx} tokens: {why}")]
    ServerCannotStart { ctx: u32, why: String },
    /// The smallest context itself does not fit the machine's limits.
    #[error(
        "the server does not fit at the smallest context ({ctx} tokens), so no headroom \
         above it can be measured: {why}"
    )]
    DoesNotFit { ctx: u32, why: String },
    #[error("interrupted")]
    Interrupted,
}

/// What the screen at the smallest context measured, and the budget derived from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Footprint {
    pub ctx: u32,
    pub peak_rss_bytes: u64,
    pub budget_mb: u64,
}

impl Footprint {
    /// One line for the user and the log.
    pub fn note(&self, headroom_mb: u64) -> String {
        format!(
            "server-memory budget {} MiB: the server's footprint at {} tokens ({:.1} MiB, \
             measured here) + {headroom_mb} MiB of headroom",
            self.budget_mb,
            self.ctx,
            self.peak_rss_bytes as f64 / MIB as f64
        )
    }
}

/// When the configuration asks for a headroom and no absolute budget, measures the
/// server's footprint with one screen of `config` (the smallest context, the run's
/// first shape) under `thresholds` (the run's, without a budget) and sets
/// `ozone.process_memory_budget_mb` to the footprint, rounded up to a MiB, plus the
/// headroom. `None` when there was nothing to resolve.
pub async fn resolve_headroom(
    run_config: &mut Config,
    spec: &BackendSpec,
    thresholds: &Thresholds,
    trial: &TrialConfig,
    cancel: &CancellationToken,
) -> Result<Option<Footprint>, FootprintError> {
    let oz = &run_config.ozone;
    let (None, Some(headroom_mb)) = (oz.process_memory_budget_mb, oz.process_memory_headroom_mb)
    else {
        return Ok(None);
    };
    if !matches!(spec, BackendSpec::LlamaServer(_)) {
        return Err(FootprintError::NotOurServer(spec.kind().to_string()));
    }
    let unbudgeted = Thresholds {
        process_memory_budget_mb: None,
        ..thresholds.clone()
    };
    let sampler = sampler(run_config, unbudgeted);
    let mut runner = TrialRunner::new(spec.clone(), run_config.trial_settings(), sampler);
    let run = runner
        .run(0, Phase::Context, Stage::Screen, trial, cancel)
        .await;
    if cancel.is_cancelled() {
        return Err(FootprintError::Interrupted);
    }
    let footprint = footprint_of(&run.record, headroom_mb)?;
    run_config.ozone.process_memory_budget_mb = Some(footprint.budget_mb);
    Ok(Some(footprint))
}

fn footprint_of(record: &TrialRecord, headroom_mb: u64) -> Result<Footprint, FootprintError> {
    let ctx = record.config.ctx;
    let why = || {
        let tail = record
            .server_log_tail
            .last()
            .map_or(String::new(), |l| format!(" (its log: {})", l.trim()));
        record.failure.as_ref().map_or_else(
            || "the server's memory was never read".to_string(),
            |f| format!("{}{tail}", f.message),
        )
    };
    match &record.failure {
        Some(f)
            if matches!(
                f.kind,
                FailureKind::OutOfMemory | FailureKind::ThresholdBreach(_)
            ) =>
        {
            return Err(FootprintError::DoesNotFit { ctx, why: why() })
        }
        Some(_) => return Err(FootprintError::ServerCannotStart { ctx, why: why() }),
        None => {}
    }
    let peak = record
        .peaks
        .process_rss_bytes
        .ok_or_else(|| FootprintError::ServerCannotStart { ctx, why: why() })?;
    Ok(Footprint {
        ctx,
        peak_rss_bytes: peak,
        budget_mb: peak.div_ceil(MIB) + headroom_mb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Metric, TrialFailure};

    fn record(peak: Option<u64>, failure: Option<TrialFailure>) -> TrialRecord {
        let mut r = crate::fixtures::trials().remove(0);
        r.config.ctx = 2048;
        r.peaks.process_rss_bytes = peak;
        r.failure = failure;
        r
    }

    #[test]
    fn the_budget_is_the_footprint_rounded_up_plus_the_headroom() {
        let f = footprint_of(&record(Some(69 * MIB + 1), None), 48).expect("measured");
        assert_eq!(f.budget_mb, 70 + 48);
        assert!(
            f.note(48).contains("(69.0 MiB, measured here) + 48 MiB"),
            "{}",
            f.note(48)
        );
    }

    #[test]
    fn a_smallest_context_that_does_not_fit_is_said_so() {
        let breach = TrialFailure::new(
            FailureKind::ThresholdBreach(Metric::Ram),
            "ram reached 95 %",
        );
        let e = footprint_of(&record(Some(MIB), Some(breach)), 48).expect_err("no fit");
        assert!(
            matches!(e, FootprintError::DoesNotFit { ctx: 2048, .. }),
            "{e}"
        );
        let dead = TrialFailure::new(FailureKind::ServerError, "exited with code 1");
        let e = footprint_of(&record(None, Some(dead)), 48).expect_err("no server");
        assert!(e.to_string().contains("exited with code 1"), "{e}");
    }
}
