//! The events of a trial log: one JSON object a line, tagged by `"event"`.
//!
//! ```text
//! {"event":"run_started","log_version":1,"ozone_version":"0.1.0","model_source":"m.gguf","model":{…ModelMetadata},"hardware":{…HardwareSnapshot},"config":{…Config},"plugins":[{"role":"context","name":"binary-search","version":"0.1.0","builtin":true}],"backend":"llama-server","versions":{"llama-server":"b6500"},"started_at":"2026-11-26T13:00:05Z"}
//! {"event":"fit_baseline","fit":{"status":"fitted","ctx":61440,"margin_mib":1024,…}}
//! {"event":"decision","phase":"context","plugin":"binary-search","proposed":32768,"stage":"screen"}
//! {"event":"sample","trial_id":1,"stage":"screen","config":{"ctx":32768,…},"sample":{"index":0,"ok":true,"ttft_ms":…}}
//! {"event":"trial","id":1,"phase":"context","stage":"screen","config":{"ctx":32768,…},…every TrialRecord field, samples included}
//! {"event":"series","trial_id":1,"series":{"interval_ms":100,"points":[…],"peaks":{…}}}
//! {"event":"decision","phase":"context","plugin":"binary-search","proposed":null}
//! {"event":"decision","phase":"context","plugin":"binary-search","proposed":9728,"stage":"verify"}
//! {"event":"phase_finished","phase":"context","limits":{"max_context":{"value":9728,"bound_by":"memory","evidence":{…}},…}}
//! {"event":"note","phase":"concurrency","message":"llama-server ran each level of N streams with -np N slots …"}
//! {"event":"resumed","at":"2026-11-26T14:00:00Z"}
//! {"event":"run_finished","status":"completed","finished_at":"…","limits":{"max_context":{"value":9728,"bound_by":"memory","evidence":{…}},…},"message":null}
//! ```
//!
//! - `decision`: a plugin's proposal and the stage it is measured at; `proposed: null`
//!   is the plugin saying it is done. In the context phase a `verify` decision after the
//!   plugin is done is its `best()`, about to be verified.
//! - `sample`: one finished request of the running trial, written (and flushed) the
//!   moment it finished, before its trial's `trial` line: a crash mid-trial loses no
//!   measured sample, and `ozone report` on a running log shows the trial in progress
//!   (samples after the last `trial` line). The `trial` line repeats every sample.
//! - `trial`: a finished trial (`stage` screen or verify; logs written before stages
//!   existed have none and read as verify; `stopped_early` says why a trial ended
//!   before all its samples ran; a concurrency level's figures and objective verdict
//!   in `concurrency`).
//! - `note`: what the run says about a phase (how the server runs the concurrency
//!   levels; a noise floor measured and a configuration measured again, and why).
//! - `phase_finished`: the limits found so far when a phase ends, each with its bound:
//!   what `ozone report` shows for a run that did not get to `run_finished`.
//!
//! Readers skip a torn last line (a crash mid-write) and reject any other bad line.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::{
    FitBaseline, Limits, Phase, SampleRecord, SampleSeries, Stage, TrialConfig, TrialRecord,
};
use crate::tune::RunSetup;

/// Version of the log format, written in `run_started`.
pub const LOG_VERSION: u32 = 1;

/// One line of the JSONL trial log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LogEvent {
    /// First line of a run: its set-up.
    RunStarted(Box<RunSetup>),
    /// A `--resume` picked the run up again.
    Resumed {
        at: DateTime<Utc>,
        /// The llama-server binary the resumed trials run, when it is not the one the
        /// run started with (moved, `--llama-server`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_binary: Option<PathBuf>,
    },
    /// llama.cpp's own fit on this machine (llama-server runs), measured before the
    /// trials; a resumed run keeps it.
    FitBaseline { fit: FitBaseline },
    /// One sample, logged as soon as it finishes (before its trial's `trial` line), so a
    /// crash mid-trial loses nothing measured. Finished trials are rebuilt from `trial`
    /// lines; samples after the last one are the trial in progress.
    Sample {
        trial_id: u32,
        #[serde(default)]
        stage: Stage,
        config: TrialConfig,
        sample: SampleRecord,
    },
    /// A finished trial with every sample.
    Trial(Box<TrialRecord>),
    /// The sampler's series of a trial (written after its `trial` line).
    Series { trial_id: u32, series: SampleSeries },
    /// A plugin's proposal and the stage it is measured at (`proposed: null` = the
    /// plugin is done); in the context phase, a `verify` decision is the plugin's
    /// `best()` about to be verified.
    Decision {
        phase: Phase,
        plugin: String,
        proposed: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<Stage>,
    },
    /// What the run says about a phase: how the server runs its trials, a noise floor
    /// measured, a configuration measured again.
    Note { phase: Phase, message: String },
    /// A variant's context search and batch scaling ended: its row of the frontier
    /// (context, what bound it, speed, memory, quality cost). A resumed run reuses the
    /// quality measured.
    Variant {
        outcome: crate::record::VariantOutcome,
    },
    /// The offload phase ended: at the context it searched, the offload that fits, its
    /// speed, the step with more on the GPU that failed, and llama.cpp's fit there.
    Offload {
        outcome: crate::record::OffloadOutcome,
    },
    /// A phase ended: the limits found so far, each with what bound it. A run cut short
    /// reports these.
    PhaseFinished { phase: Phase, limits: Limits },
    /// Last line of a run.
    RunFinished(RunFinished),
}

/// The llama-server binary a run's latest trials ran: a `--resume` that moved it says so
/// in its `resumed` line.
pub fn server_binary_in(setup: &RunSetup, events: &[LogEvent]) -> Option<PathBuf> {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            LogEvent::Resumed {
                server_binary: Some(binary),
                ..
            } => Some(binary.clone()),
            _ => None,
        })
        .or_else(|| setup.server_binary.clone())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Completed,
    Interrupted,
    Failed,
    /// The log has no `run_finished` line: the run is going on, or it crashed.
    Unfinished,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunStatus::Completed => "completed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
            RunStatus::Unfinished => "unfinished",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    pub status: RunStatus,
    pub finished_at: DateTime<Utc>,
    /// The limits the run settled on (the plugins' `best()`, verified); absent when it
    /// did not get to the end (its last `phase_finished` line has what it found).
    pub limits: Option<Limits>,
    /// Why a run failed or was interrupted.
    pub message: Option<String>,
}
