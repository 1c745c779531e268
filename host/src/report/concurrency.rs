//! The concurrency phase as the outputs show it: the objective, every level measured
//! with its figures and whether it passed, and how the server ran the levels.

use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::config::slo_text;
use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::plugin::{concurrency_outcome, slo_verdict, Slo, TimeoutRule};
use crate::record::{Bound, Limits};
use crate::record::{ConcurrencyFigures, Phase, Stage, TrialRecord, Verdict};
use crate::trial::figures_of;

/// The concurrency phase of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConcurrencySummary {
    /// The objective the levels were judged against, as `--slo` takes it; empty: none
    /// (a level passes when its trial is stable).
    pub slo: String,
    /// How the server ran the levels (slots and cache, or what a server Ozone does not
    /// start needs to be told).
    pub server: Option<String>,
    /// Every level measured, by streams: the concurrency phase's trials and level 1
    /// when an earlier phase had verified it (screens are never levels).
    pub levels: Vec<Level>,
}

/// One concurrency level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub streams: u32,
    pub trial_id: u32,
    pub verdict: Verdict,
    /// Stable and, with an objective, every bound held.
    pub passed: bool,
    /// Its figures, judged against the objective.
    pub figures: ConcurrencyFigures,
}

impl ConcurrencySummary {
    /// The levels among `trials`: those at the context and batch of the concurrency
    /// phase (its own trials', else the limits' when the phase ran on reused trials
    /// only), each judged against `slo` by the contract's rule.
    pub fn new(
        trials: &[TrialRecord],
        limits: &Limits,
        slo: &Slo,
        backend: BackendKind,
        hardware: &HardwareSnapshot,
        thresholds: &Thresholds,
    ) -> Self {
        let ran = !matches!(
            limits.bounds.max_concurrency,
            Some(Bound::NotRun { .. }) | None
        );
        let at = trials
            .iter()
            .find(|t| t.phase == Phase::Concurrency)
            .map(|t| (t.config.ctx, t.config.batch))
            .or_else(|| ran.then_some((limits.max_context?, limits.best_batch?)));
        let mut levels: Vec<Level> = Vec::new();
        if let Some((ctx, batch)) = at {
            for t in trials
                .iter()
                .filter(|t| (t.config.ctx, t.config.batch) == (ctx, batch))
                .filter(|t| t.stage == Stage::Verify)
            {
                let figures = figures_of(t);
                // The judgement reads latency only: the timeout the outcome carries for
                // the plugins does not change it.
                let timeouts = TimeoutRule::default();
                let outcome =
                    concurrency_outcome(t, &figures, hardware, thresholds, &timeouts, slo);
                let level = Level {
                    streams: t.config.concurrency,
                    trial_id: t.id,
                    verdict: t.verdict,
                    passed: outcome.passed(),
                    figures: ConcurrencyFigures {
                        slo: slo_verdict(&outcome),
                        ..figures
                    },
                };
                // The latest measurement of a level stands for it.
                match levels.iter_mut().find(|l| l.streams == level.streams) {
                    Some(old) => *old = level,
                    None => levels.push(level),
                }
            }
        }
        levels.sort_by_key(|l| l.streams);
        Self {
            slo: slo_text(slo),
            server: (!levels.is_empty()).then(|| server_note(backend)),
            levels,
        }
    }
}

/// How each backend runs a concurrency level, for the log, the summary and the console.
pub fn server_note(backend: BackendKind) -> String {
    match backend {
        BackendKind::LlamaServer => "llama-server ran each level of N streams with -np N slots \
            sharing one unified KV cache of N × the per-slot context (-c N×ctx -kvu): every \
            stream can hold the whole per-slot context at once"
            .into(),
        BackendKind::Ollama => "Ollama serves at most OLLAMA_NUM_PARALLEL requests at once, a \
            setting of the Ollama server that no request can change: the levels measured the \
            parallelism this Ollama was started with. To serve N streams, restart it with \
            OLLAMA_NUM_PARALLEL=N (it then holds N × num_ctx of KV cache)"
            .into(),
        BackendKind::OpenAi => "the OpenAI-compatible server ran the levels with the parallel \
            slots it was started with; Ozone cannot change them"
            .into(),
    }
}
