//! The lab's [`TrialExecutor`]: answers each trial the driver asks for from a profile
//! instead of a server, and keeps count of what it answered.

use tokio_util::sync::CancellationToken;

use crate::record::{FailureKind, Phase, SampleSeries, Stage, TrialConfig, Verdict};
use crate::trial::{OnSample, TrialRun};
use crate::tune::driver::{TrialExecutor, TuneError, TuneObserver};

use super::profile::{Decision, Profile};

/// One trial as the lab answered it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplayedTrial {
    pub id: u32,
    pub phase: Phase,
    pub config: TrialConfig,
    pub verdict: Verdict,
    pub failure: Option<FailureKind>,
    /// Recorded duration (estimated from the neighbours when interpolated).
    pub duration_ms: u64,
    /// How the answer was derived, when the profile never measured this configuration.
    pub interpolated: Option<String>,
}

/// Replays a profile: every trial is the recorded one, or an interpolated answer.
pub struct ReplayExecutor<'p> {
    profile: &'p Profile,
    pub trials: Vec<ReplayedTrial>,
}

impl<'p> ReplayExecutor<'p> {
    pub fn new(profile: &'p Profile) -> Self {
        Self {
            profile,
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
        let answer = self.profile.answer(config);
        let mut record = answer.record;
        record.id = id;
        record.phase = phase;
        record.stage = stage;
        self.trials.push(ReplayedTrial {
            id,
            phase,
            config: config.clone(),
            verdict: record.verdict,
            failure: record.failure.as_ref().map(|f| f.kind),
            duration_ms: record.duration_ms,
            interpolated: answer.interpolated,
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
    fn trial_finished(&mut self, _run: &TrialRun) -> Result<(), TuneError> {
        Ok(())
    }

    fn decision(&mut self, phase: Phase, plugin: &str, proposed: Option<u32>, _stage: Stage) {
        self.decisions.push(Decision {
            phase,
            plugin: plugin.to_string(),
            proposed,
        });
    }
}
