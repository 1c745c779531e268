//! The log as the driver goes: every sample, trial, decision, note and phase's limits,
//! flushed per line, and the progress bars.

use crate::backend::BackendKind;
use crate::record::{Limits, Phase, SampleRecord, Stage, TrialConfig, TrialRecord, VariantOutcome};
use crate::report::{server_note, LogEvent, RunLog};
use crate::trial::TrialRun;
use crate::tune::driver::{LogError, TuneObserver};

use super::progress::PhaseProgress;

/// Writes every sample and finished trial to the log (flushed per line) and drives the
/// bars. A finished trial that cannot be written stops the run; anything else that
/// cannot is a warning (the trial lines hold every sample again).
pub(super) struct LogObserver<'a> {
    log: &'a mut RunLog,
    progress: PhaseProgress,
    backend: BackendKind,
}

impl<'a> LogObserver<'a> {
    pub(super) fn new(log: &'a mut RunLog, progress: PhaseProgress, backend: BackendKind) -> Self {
        Self {
            log,
            progress,
            backend,
        }
    }

    fn append_or_warn(&mut self, event: &LogEvent) {
        if let Err(e) = self.log.append(event) {
            tracing::warn!("{e}");
        }
    }

    fn note_in_log(&mut self, phase: Phase, message: String) {
        self.progress.note(&message);
        self.append_or_warn(&LogEvent::Note { phase, message });
    }
}

impl TuneObserver for LogObserver<'_> {
    fn phase_started(&mut self, phase: Phase, estimated_trials: usize) {
        self.progress.phase_started(phase, estimated_trials);
        if phase == Phase::Concurrency {
            // How the levels are served decides what they mean: say it in the log and
            // on the console.
            self.note_in_log(phase, server_note(self.backend));
        }
    }

    fn trial_started(&mut self, _id: u32, _phase: Phase, stage: Stage, config: &TrialConfig) {
        self.progress.trial_started(stage, config);
    }

    fn sample(&mut self, id: u32, stage: Stage, config: &TrialConfig, sample: &SampleRecord) {
        self.append_or_warn(&LogEvent::Sample {
            trial_id: id,
            stage,
            config: config.clone(),
            sample: sample.clone(),
        });
    }

    fn trial_finished(&mut self, run: &TrialRun) -> Result<(), LogError> {
        self.progress.trial_finished(&run.record);
        self.log
            .append(&LogEvent::Trial(Box::new(run.record.clone())))?;
        self.log.append(&LogEvent::Series {
            trial_id: run.record.id,
            series: run.series.clone(),
        })?;
        Ok(())
    }

    fn trial_reused(&mut self, record: &TrialRecord) {
        self.progress.trial_reused(record);
    }

    fn decision(&mut self, phase: Phase, plugin: &str, proposed: Option<u32>, stage: Stage) {
        self.append_or_warn(&LogEvent::Decision {
            phase,
            plugin: plugin.to_string(),
            proposed,
            stage: proposed.map(|_| stage),
        });
    }

    fn note(&mut self, phase: Phase, message: &str) {
        self.note_in_log(phase, message.to_string());
    }

    fn variant_finished(&mut self, outcome: &VariantOutcome) {
        self.progress.note(&crate::report::variant_line(outcome));
        self.append_or_warn(&LogEvent::Variant {
            outcome: outcome.clone(),
        });
    }

    fn offload_finished(&mut self, outcome: &crate::record::OffloadOutcome) {
        self.progress.note(&format!("offload: {}", outcome.line()));
        self.append_or_warn(&LogEvent::Offload {
            outcome: outcome.clone(),
        });
    }

    fn phase_finished(&mut self, phase: Phase, limits: &Limits) {
        self.append_or_warn(&LogEvent::PhaseFinished {
            phase,
            limits: limits.clone(),
        });
    }

    fn finished(&mut self) {
        self.progress.finish_phase();
    }
}
