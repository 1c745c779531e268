//! A profile: what one real `ozone tune` measured about one machine and one model, in a
//! form the lab can replay. Extracted from the JSONL trial log, validated, and able to
//! answer for configurations the run never measured (flagged as interpolated).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{BackendKind, ModelMetadata};
use crate::config::Config;
use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::record::{Phase, Stage, TrialConfig, TrialRecord, Verdict};
use crate::report::{self, LogEvent, PluginUse, RunStatus};
use crate::tune::plan::effective_thresholds;
use crate::tune::{Limits, RunParameters};

use super::interpolate::{self, Answer};

/// Version of the profile format.
pub const PROFILE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Log(#[from] report::ReportError),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write profile {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid profile: {message}")]
    Parse { path: PathBuf, message: String },
}

/// A plugin's proposal as the recorded run logged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub phase: Phase,
    pub plugin: String,
    pub proposed: Option<u32>,
}

/// Where a profile came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// File name of the trial log it was extracted from.
    pub log: String,
    pub model_source: String,
    pub ozone_version: String,
    pub backend: BackendKind,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

/// One machine, one model, every trial a real tune ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub profile_version: u32,
    pub provenance: Provenance,
    pub model: ModelMetadata,
    pub hardware: HardwareSnapshot,
    /// The recorded run's effective configuration (thresholds, plugin settings, plan).
    pub config: Config,
    pub parameters: RunParameters,
    /// The plugins the recorded run used.
    pub plugins: Vec<PluginUse>,
    /// Every proposal of the recorded run, in order.
    pub decisions: Vec<Decision>,
    /// What the recorded run settled on (absent when it did not complete).
    pub recorded_limits: Option<Limits>,
    /// Every trial, without raw samples or server log lines (their statistics stay).
    pub trials: Vec<TrialRecord>,
}

impl Profile {
    /// Extracts a profile from an `ozone tune` trial log.
    pub fn from_log(path: &Path) -> Result<Self, ProfileError> {
        let contents = report::read_log_detailed(path)?;
        let invalid = |message: String| ProfileError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut started = None;
        let mut decisions = Vec::new();
        let mut trials: Vec<TrialRecord> = Vec::new();
        let mut finished = None;
        for event in contents.events {
            match event {
                LogEvent::RunStarted(s) => {
                    if started.is_some() {
                        return Err(invalid("more than one run_started line".into()));
                    }
                    started = Some(*s);
                }
                LogEvent::Decision {
                    phase,
                    plugin,
                    proposed,
                    ..
                } => decisions.push(Decision {
                    phase,
                    plugin,
                    proposed,
                }),
                LogEvent::Trial(t) => {
                    let mut t = *t;
                    // The statistics are what plugins see; raw samples and server logs
                    // would make a profile hundreds of KB.
                    t.samples.clear();
                    t.server_log_tail.clear();
                    match trials.iter_mut().find(|r| r.config == t.config) {
                        Some(r) => *r = t,
                        None => trials.push(t),
                    }
                }
                LogEvent::RunFinished(f) => finished = Some(f),
                LogEvent::Sample { .. }
                | LogEvent::Series { .. }
                | LogEvent::Resumed { .. }
                | LogEvent::Note { .. }
                | LogEvent::FitBaseline { .. } => {}
            }
        }
        let started =
            started.ok_or_else(|| invalid("no run_started line: not an ozone tune log".into()))?;
        let parameters = started.parameters.clone().ok_or_else(|| {
            invalid("the run_started line has no parameters (written by an older ozone)".into())
        })?;
        let recorded_limits = finished
            .filter(|f| f.status == RunStatus::Completed)
            .and_then(|f| f.limits);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut profile = Profile {
            profile_version: PROFILE_VERSION,
            provenance: Provenance {
                log: file_name,
                model_source: started.model_source,
                ozone_version: started.ozone_version,
                backend: started.backend,
                recorded_at: started.started_at,
            },
            model: started.model,
            hardware: started.hardware,
            config: started.config,
            parameters,
            plugins: started.plugins,
            decisions,
            recorded_limits,
            trials,
        };
        profile.replay_as_recorded();
        profile.validate().map_err(invalid)?;
        Ok(profile)
    }

    /// Reads and validates a `.profile.json` file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut profile: Profile =
            serde_json::from_str(&text).map_err(|e| ProfileError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        if profile.profile_version != PROFILE_VERSION {
            return Err(ProfileError::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "profile_version {} (this ozone reads version {PROFILE_VERSION})",
                    profile.profile_version
                ),
            });
        }
        profile.replay_as_recorded();
        profile
            .validate()
            .map_err(|message| ProfileError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(profile)
    }

    /// A run recorded before screen trials existed measured every context proposal with
    /// a full trial: its profile has no screen to answer one from, so it replays the way
    /// it was recorded (`ozone.screen_trials: false`).
    fn replay_as_recorded(&mut self) {
        if !self.trials.iter().any(|t| t.stage == Stage::Screen) {
            self.config.ozone.screen_trials = false;
        }
    }

    /// Writes the profile as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let write = |source| ProfileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| write(std::io::Error::other(e.to_string())))?;
        std::fs::write(path, text + "\n").map_err(write)
    }

    /// What makes a profile usable: trials to answer from, a context curve, sane values.
    fn validate(&self) -> Result<(), String> {
        if self.trials.is_empty() {
            return Err("no finished trial: nothing to replay".into());
        }
        if !self.trials.iter().any(|t| t.phase == Phase::Context) {
            return Err("no context-phase trial: the context curve is missing".into());
        }
        for t in &self.trials {
            let c = &t.config;
            if c.ctx == 0 || c.batch == 0 || c.ubatch == 0 || c.concurrency == 0 {
                return Err(format!(
                    "trial {} has a zero in its configuration ({c})",
                    t.id
                ));
            }
            if t.verdict == Verdict::Failed && t.failure.is_none() {
                return Err(format!("trial {} failed but records no failure kind", t.id));
            }
            if !(0.0..=1.0).contains(&t.success_rate) {
                return Err(format!(
                    "trial {} has success rate {} (must be within 0..1)",
                    t.id, t.success_rate
                ));
            }
        }
        if let Some(trained) = self.model.trained_context {
            if let Some(t) = self.trials.iter().find(|t| t.config.ctx > trained) {
                return Err(format!(
                    "trial {} ran context {} above the model's trained context {trained}",
                    t.id, t.config.ctx
                ));
            }
        }
        Ok(())
    }

    /// The thresholds the recorded run applied (as `ozone tune` derives them).
    pub fn thresholds(&self) -> Thresholds {
        effective_thresholds(
            &self.config,
            &self.hardware,
            &self.parameters,
            &mut Vec::new(),
        )
    }

    /// The profile's true limit: the largest context any recorded trial held stably.
    pub fn true_limit(&self) -> Option<u32> {
        self.trials
            .iter()
            .filter(|t| t.verdict == Verdict::Stable)
            .map(|t| t.config.ctx)
            .max()
    }

    /// The recorded trial of `config`, or an answer interpolated from its neighbours.
    pub fn answer(&self, config: &TrialConfig) -> Answer {
        match self.trials.iter().find(|t| &t.config == config) {
            Some(t) => Answer {
                record: t.clone(),
                interpolated: None,
            },
            None => interpolate::answer(&self.trials, config),
        }
    }

    /// A short name for tables: the file stem without `.profile`.
    pub fn display_name(path: &Path) -> String {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        name.strip_suffix(".profile.json")
            .or_else(|| name.strip_suffix(".json"))
            .unwrap_or(&name)
            .to_string()
    }
}
