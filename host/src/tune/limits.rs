//! What a run found: the largest stable context, the best batch, the highest stable
//! concurrency. The driver returns them; the log, the summary, the warm-start store and
//! the strategy lab read them.

use serde::{Deserialize, Serialize};

use crate::record::{Phase, TrialRecord, Verdict};

/// The limits a run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Limits {
    /// Largest stable context (granted), tokens.
    pub max_context: Option<u32>,
    /// Batch with the best decode throughput among stable batch-phase trials.
    pub best_batch: Option<u32>,
    /// Highest stable concurrency level.
    pub max_concurrency: Option<u32>,
}

impl Limits {
    /// Derives the limits from the trials alone: the largest stable context of any phase;
    /// the batch of the stable batch-phase trial with the highest mean decode tok/s (else
    /// the batch of the largest stable context); the highest stable concurrency (1 when
    /// only single-stream trials were stable).
    pub fn from_trials(trials: &[TrialRecord]) -> Self {
        let stable: Vec<&TrialRecord> = trials
            .iter()
            .filter(|t| t.verdict == Verdict::Stable)
            .collect();
        let ctx = |t: &TrialRecord| t.granted_ctx.unwrap_or(t.config.ctx);
        let max_context = stable.iter().map(|t| ctx(t)).max();
        let decode = |t: &TrialRecord| t.decode_tps.as_ref().map_or(0.0, |s| s.mean);
        let best_batch = stable
            .iter()
            .filter(|t| t.phase == Phase::Batch && t.config.concurrency == 1)
            .max_by(|a, b| decode(a).total_cmp(&decode(b)))
            .or_else(|| stable.iter().rfind(|t| Some(ctx(t)) == max_context))
            .map(|t| t.config.batch);
        let max_concurrency = stable.iter().map(|t| t.config.concurrency).max();
        Self {
            max_context,
            best_batch,
            max_concurrency,
        }
    }
}
