//! The summary of a run: what every output file is written from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{BackendKind, ModelMetadata};
use crate::config::Config;
use crate::hardware::HardwareSnapshot;
use crate::record::{
    FitBaseline, Limits, Phase, SampleRecord, Stage, TrialConfig, TrialRecord, Verdict,
};
use crate::tune::presets::{self, Preset, PresetName, Presets};
use crate::tune::{PluginUse, RunSetup};

use super::concurrency::ConcurrencySummary;
use super::{LogEvent, ReportError, RunStatus};

/// Trials and time spent in one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub phase: Phase,
    pub trials: u32,
    pub stable: u32,
    pub total_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    /// From `started_at` to `finished_at`, when the run finished.
    pub wall_ms: Option<u64>,
    /// Sum of the trials' durations.
    pub trials_ms: u64,
    pub phases: Vec<PhaseTiming>,
}

impl Timings {
    pub fn new(
        trials: &[TrialRecord],
        started_at: DateTime<Utc>,
        finished_at: Option<DateTime<Utc>>,
    ) -> Self {
        let phases = [
            Phase::Context,
            Phase::Offload,
            Phase::Batch,
            Phase::Concurrency,
        ]
        .into_iter()
        .filter_map(|phase| {
            let of: Vec<&TrialRecord> = trials.iter().filter(|t| t.phase == phase).collect();
            (!of.is_empty()).then(|| PhaseTiming {
                phase,
                trials: of.len() as u32,
                stable: of.iter().filter(|t| t.verdict == Verdict::Stable).count() as u32,
                total_ms: of.iter().map(|t| t.duration_ms).sum(),
            })
        })
        .collect();
        Self {
            wall_ms: finished_at
                .and_then(|f| u64::try_from((f - started_at).num_milliseconds()).ok()),
            trials_ms: trials.iter().map(|t| t.duration_ms).sum(),
            phases,
        }
    }
}

/// Everything a run produced, as written to `summaries/<model>_<ts>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub ozone_version: String,
    pub model_source: String,
    pub model: ModelMetadata,
    pub hardware: HardwareSnapshot,
    pub config: Config,
    pub backend: BackendKind,
    pub plugins: Vec<PluginUse>,
    pub versions: BTreeMap<String, String>,
    pub status: RunStatus,
    pub message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub timings: Timings,
    pub limits: Limits,
    /// llama.cpp's own fit on this machine, beside `limits.max_context` (llama-server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_baseline: Option<FitBaseline>,
    pub presets: Presets,
    /// One row per server variant measured (KV cache types, flash attention): empty for
    /// a run of one f16 variant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<super::FrontierRow>,
    /// Where every layer on the GPU did not fit: per context, the offload that fits and
    /// its speed, beside llama.cpp's fit (the offload phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<super::OffloadSummary>,
    /// The `serving` preset: the concurrency the run settled on, with its slots.
    #[serde(default)]
    pub serving: Option<Preset>,
    /// The objective, every concurrency level and how the server ran them.
    #[serde(default)]
    pub concurrency: ConcurrencySummary,
    pub trials: Vec<TrialRecord>,
    /// A run still going (or cut short by a crash): the trial whose samples are logged
    /// but whose `trial` line is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<TrialInProgress>,
}

/// The samples logged so far of a trial that has not finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialInProgress {
    pub trial_id: u32,
    pub stage: Stage,
    pub config: TrialConfig,
    pub samples: Vec<SampleRecord>,
}

impl RunSummary {
    /// Builds the summary: presets from the trials with the run's preset categories,
    /// the limits the driver decided (none where it did not get that far).
    pub fn new(
        started: &RunSetup,
        trials: Vec<TrialRecord>,
        status: RunStatus,
        finished_at: Option<DateTime<Utc>>,
        limits: Limits,
        message: Option<String>,
    ) -> Self {
        let presets = presets::derive(
            &trials,
            &started.config.preset_categories,
            presets::QualityGate::default(),
        );
        let concurrency = ConcurrencySummary::new(
            &trials,
            &limits,
            &started.config.ozone.slo,
            started.backend,
            &started.hardware,
            &started.config.thresholds(),
        );
        Self {
            ozone_version: started.ozone_version.clone(),
            model_source: started.model_source.clone(),
            model: started.model.clone(),
            hardware: started.hardware.clone(),
            config: started.config.clone(),
            backend: started.backend,
            plugins: started.plugins.clone(),
            versions: started.versions.clone(),
            status,
            message,
            started_at: started.started_at,
            finished_at,
            timings: Timings::new(&trials, started.started_at, finished_at),
            serving: presets::serving(&trials, &limits),
            limits,
            fit_baseline: None,
            presets,
            frontier: Vec::new(),
            offload: None,
            concurrency,
            trials,
            in_progress: None,
        }
    }

    /// The summary with the frontier of the variants measured: the presets derived
    /// again under the quality gate, and one row per variant saying which chose it.
    pub fn with_frontier(mut self, outcomes: &[crate::record::VariantOutcome]) -> Self {
        let max_kld = self.config.ozone.max_kld;
        self.presets = presets::derive(
            &self.trials,
            &self.config.preset_categories,
            presets::QualityGate { outcomes, max_kld },
        );
        self.frontier = super::frontier_rows(
            outcomes,
            self.presets.list().into_iter().chain(&self.serving),
            max_kld,
        );
        self
    }

    /// The preset called `name`, `serving` included.
    pub fn preset(&self, name: PresetName) -> Option<&Preset> {
        match name {
            PresetName::Serving => self.serving.as_ref(),
            other => self.presets.get(other),
        }
    }

    /// Rebuilds the summary of a logged run: the first `run_started`, every `trial`
    /// (a trial id logged twice keeps its last record), the last `run_finished` and its
    /// limits (else those of the last `phase_finished`); on an unfinished log, the
    /// `sample` lines of a trial not finished yet as `in_progress`.
    pub fn from_events(events: &[LogEvent]) -> Result<Self, ReportError> {
        let started = events
            .iter()
            .find_map(|e| match e {
                LogEvent::RunStarted(s) => Some(s),
                _ => None,
            })
            .ok_or(ReportError::NoRunStarted)?;
        let mut trials: Vec<TrialRecord> = Vec::new();
        for event in events {
            if let LogEvent::Trial(t) = event {
                match trials.iter_mut().find(|old| old.id == t.id) {
                    Some(old) => *old = (**t).clone(),
                    None => trials.push((**t).clone()),
                }
            }
        }
        let finished = events.iter().rev().find_map(|e| match e {
            LogEvent::RunFinished(f) => Some(f),
            _ => None,
        });
        let fit_baseline = events.iter().rev().find_map(|e| match e {
            LogEvent::FitBaseline { fit } => Some(fit.clone()),
            _ => None,
        });
        let found_so_far = events
            .iter()
            .rev()
            .find_map(|e| match e {
                LogEvent::PhaseFinished { limits, .. } => Some(limits.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let summary = match finished {
            Some(f) => Self::new(
                started,
                trials,
                f.status,
                Some(f.finished_at),
                f.limits.clone().unwrap_or(found_so_far),
                f.message.clone(),
            ),
            None => {
                let in_progress = trial_in_progress(events, &trials);
                Self {
                    in_progress,
                    ..Self::new(
                        started,
                        trials,
                        RunStatus::Unfinished,
                        None,
                        found_so_far,
                        None,
                    )
                }
            }
        };
        let offload = super::OffloadSummary::of_events(events, &summary.trials);
        Ok(Self {
            fit_baseline,
            offload,
            ..summary
        }
        .with_frontier(&super::outcomes_in(events)))
    }
}

/// The samples of the last trial that has samples in the log but no `trial` line.
fn trial_in_progress(events: &[LogEvent], trials: &[TrialRecord]) -> Option<TrialInProgress> {
    let mut current: Option<TrialInProgress> = None;
    for event in events {
        if let LogEvent::Sample {
            trial_id,
            stage,
            config,
            sample,
        } = event
        {
            match &mut current {
                Some(c) if c.trial_id == *trial_id => c.samples.push(sample.clone()),
                _ => {
                    current = Some(TrialInProgress {
                        trial_id: *trial_id,
                        stage: *stage,
                        config: config.clone(),
                        samples: vec![sample.clone()],
                    })
                }
            }
        }
    }
    current.filter(|c| trials.iter().all(|t| t.id != c.trial_id))
}
