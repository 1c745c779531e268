//! The lab's [`TrialExecutor`]: answers each trial the driver asks for from a profile
//! instead of a server ([`super::answer`]), and keeps count of what it answered.

use std::collections::HashMap;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::record::{FailureKind, Phase, SampleSeries, Stage, TrialConfig, Verdict};
use crate::trial::{OnSample, TrialRun};
use crate::tune::driver::{LogError, TrialExecutor, TuneObserver};

use super::answer::{Answerer, Request, Source};
use super::profile::{Decision, Profile};

/// One trial as the lab answered it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayedTrial {
    pub id: u32,
    pub phase: Phase,
    pub stage: Stage,
    pub config: TrialConfig,
    pub verdict: Verdict,
    pub failure: Option<FailureKind>,
    /// Recorded duration (between the neighbours' when interpolated, 0 when not recorded).
    pub duration_ms: u64,
    /// Measured, derived, interpolated or not recorded (with how).
    pub source: Source,
}

/// Replays a profile: every trial a measured point, or a flagged answer.
pub struct ReplayExecutor<'p> {
    answers: Answerer<'p>,
    seed: u64,
    asked: HashMap<(TrialConfig, Stage), u32>,
    pub trials: Vec<ReplayedTrial>,
}

impl<'p> ReplayExecutor<'p> {
    /// `seed` 0 answers repeated points in the order they were recorded; another seed
    /// draws among their measurements.
    pub fn new(profile: &'p Profile, seed: u64) -> Self {
        Self {
            answers: Answerer::new(profile),
            seed,
            asked: HashMap::new(),
            trials: Vec::new(),
        }
    }
}

impl TrialExecutor for ReplayExecutor<'_> {
    async fn run(
        &mut self,
        id: u32,
        phase: Phase,
        stage: Stage,
        config: &TrialConfig,
        _cancel: &CancellationToken,
        _on_sample: OnSample<'_>,
    ) -> TrialRun {
        let asked = self.asked.entry((config.clone(), stage)).or_default();
        let answer = self.answers.answer(Request {
            config,
            stage,
            repeat: *asked,
            seed: self.seed,
        });
        *asked += 1;
        let mut record = answer.record;
        record.id = id;
        record.phase = phase;
        record.stage = stage;
        self.trials.push(ReplayedTrial {
            id,
            phase,
            stage,
            config: config.clone(),
            verdict: record.verdict,
            failure: record.failure.as_ref().map(|f| f.kind),
            duration_ms: record.duration_ms,
            source: answer.source,
        });
        TrialRun {
            record,
            series: SampleSeries::default(),
            server_cannot_start: false,
        }
    }
}

/// Keeps the plugins' proposals, as `ozone tune` logs them.
#[derive(Debug, Default)]
pub struct DecisionRecorder {
    pub decisions: Vec<Decision>,
}

impl TuneObserver for DecisionRecorder {
    fn trial_finished(&mut self, _run: &TrialRun) -> Result<(), LogError> {
        Ok(())
    }

    fn decision(&mut self, phase: Phase, plugin: &str, proposed: Option<u32>, stage: Stage) {
        self.decisions.push(Decision {
            phase,
            plugin: plugin.to_string(),
            proposed,
            stage: Some(stage),
        });
    }
}
