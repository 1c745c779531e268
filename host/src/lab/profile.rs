//! A profile: what was measured about one machine and one model, in a form the lab can
//! replay. It holds only measured points — each configuration, at each stage, with every
//! measurement of it in the order taken — and says how it was recorded.
//!
//! Two sources: `ozone lab record` (a dense sweep of screens, repeated verifications,
//! batch and concurrency ladders: see [`super::record`]) and `ozone lab profile LOG`
//! (the trials one `ozone tune` ran, with its decisions, to replay that run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{BackendKind, ModelMetadata};
use crate::config::Config;
use crate::guard::Thresholds;
use crate::hardware::HardwareSnapshot;
use crate::record::Limits;
use crate::record::{Phase, Stage, TrialConfig, TrialRecord, Verdict};
use crate::report::{self, LogEvent, RunStatus};
use crate::tune::setup::{thresholds, CONTEXT_GRANULARITY};
use crate::tune::{PluginUse, RunParameters};

use super::record::RecordSettings;

/// Version of the profile format. Version 1 (a tune log's trials) still reads.
pub const PROFILE_VERSION: u32 = 2;

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
    /// The stage the proposal was measured at (absent in logs from before stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
}

/// How a profile was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Method {
    /// `ozone lab record`: the command line, what it was set to measure (as measured:
    /// the ladders' contexts), how long it took.
    Record {
        command: Vec<String>,
        #[serde(rename = "plan")]
        settings: RecordSettings,
        duration_s: f64,
    },
    /// `ozone lab profile LOG`: the trials of one tune.
    TuneLog { log: String },
}

/// Where and when a profile was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub method: Method,
    pub model_source: String,
    pub ozone_version: String,
    pub backend: BackendKind,
    /// The machine's host name, when it could be read (the hardware snapshot has the rest).
    pub machine: Option<String>,
    /// `--memory-budget-mb` of the recording, if any.
    pub memory_budget_mb: Option<u64>,
    /// `--gpu-memory-budget-mb` of the recording, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_budget_mb: Option<u64>,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// Variables of the recording's environment that change what llama-server does
    /// (`LLAMA_ARG_*`, `MALLOC_*`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server_env: BTreeMap<String, String>,
}

/// The variables of this process's environment that llama-server (its `LLAMA_ARG_*`
/// options) or its allocator (`MALLOC_*`) read.
pub fn server_env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("LLAMA_ARG_") || k.starts_with("MALLOC_"))
        .collect()
}

/// One configuration at one stage, with every measurement of it, in the order taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub config: TrialConfig,
    pub stage: Stage,
    pub runs: Vec<TrialRecord>,
}

impl Point {
    /// Whether most runs were stable (a tie counts as not).
    pub fn mostly_stable(&self) -> bool {
        let stable = self
            .runs
            .iter()
            .filter(|r| r.verdict == Verdict::Stable)
            .count();
        2 * stable > self.runs.len()
    }
}

/// What a tune whose log became a profile decided, so a replay can be checked against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRun {
    pub plugins: Vec<PluginUse>,
    /// Every proposal, in order.
    pub decisions: Vec<Decision>,
    /// What it settled on (absent when it did not complete).
    pub limits: Option<Limits>,
}

/// One machine, one model, every measured point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub profile_version: u32,
    pub provenance: Provenance,
    pub model: ModelMetadata,
    pub hardware: HardwareSnapshot,
    /// The recording's effective configuration (thresholds, trial settings, plan).
    pub config: Config,
    pub parameters: RunParameters,
    /// Distance between neighbouring measured contexts of the sweep: answer errors are
    /// counted in it.
    pub granularity: u32,
    pub points: Vec<Point>,
    /// Present when the profile is one tune's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_run: Option<RecordedRun>,
}

/// Version 1: one tune's trials, each a full statistical trial.
#[derive(Deserialize)]
struct ProfileV1 {
    provenance: ProvenanceV1,
    model: ModelMetadata,
    hardware: HardwareSnapshot,
    config: Config,
    parameters: RunParameters,
    plugins: Vec<PluginUse>,
    decisions: Vec<Decision>,
    recorded_limits: Option<Limits>,
    trials: Vec<TrialRecord>,
}

#[derive(Deserialize)]
struct ProvenanceV1 {
    log: String,
    model_source: String,
    ozone_version: String,
    backend: BackendKind,
    recorded_at: chrono::DateTime<chrono::Utc>,
}

impl Profile {
    /// A profile of the trials of one `ozone tune` log (every trial a verification, as
    /// tunes ran them), with the run's decisions and limits.
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
                    stage,
                } => decisions.push(Decision {
                    phase,
                    plugin,
                    proposed,
                    stage,
                }),
                LogEvent::Trial(t) => {
                    let mut t = *t;
                    // Server log lines would make a profile hundreds of KB; the samples
                    // stay (they are the noise a replay draws from).
                    t.server_log_tail.clear();
                    // A trial run again after --resume replaces the one it redoes.
                    match trials.iter_mut().find(|r| r.id == t.id) {
                        Some(r) => *r = t,
                        None => trials.push(t),
                    }
                }
                LogEvent::RunFinished(f) => finished = Some(f),
                LogEvent::Sample { .. }
                | LogEvent::Series { .. }
                | LogEvent::Resumed { .. }
                | LogEvent::Note { .. }
                | LogEvent::PhaseFinished { .. }
                | LogEvent::Variant { .. }
                | LogEvent::Offload { .. }
                | LogEvent::FitBaseline { .. } => {}
            }
        }
        let started =
            started.ok_or_else(|| invalid("no run_started line: not an ozone tune log".into()))?;
        let parameters = started.parameters.clone().ok_or_else(|| {
            invalid("the run_started line has no parameters (written by an older ozone)".into())
        })?;
        let limits = finished
            .filter(|f| f.status == RunStatus::Completed)
            .and_then(|f| f.limits);
        let mut config = started.config;
        // A log from before stages measured every proposal with a full trial: it replays
        // that way.
        if trials.iter().all(|t| t.stage == Stage::Verify)
            && decisions.iter().all(|d: &Decision| d.stage.is_none())
        {
            config.ozone.screen_trials = false;
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let profile = Profile {
            profile_version: PROFILE_VERSION,
            provenance: Provenance {
                method: Method::TuneLog { log: file_name },
                model_source: started.model_source,
                ozone_version: started.ozone_version,
                backend: started.backend,
                machine: started.hardware.hostname.clone(),
                memory_budget_mb: config.ozone.process_memory_budget_mb,
                gpu_memory_budget_mb: config.ozone.gpu_memory_budget_mb,
                recorded_at: started.started_at,
                server_env: BTreeMap::new(),
            },
            model: started.model,
            hardware: started.hardware,
            config,
            parameters,
            granularity: CONTEXT_GRANULARITY,
            points: points_of(trials),
            recorded_run: Some(RecordedRun {
                plugins: started.plugins,
                decisions,
                limits,
            }),
        };
        profile.validate().map_err(invalid)?;
        Ok(profile)
    }

    /// Reads and validates a `.profile.json` file (version 1 is read as a tune log's).
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let parse = |message: String| ProfileError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let version = value.get("profile_version").and_then(|v| v.as_u64());
        let profile = match version {
            Some(1) => serde_json::from_value::<ProfileV1>(value)
                .map(Profile::from_v1)
                .map_err(|e| parse(e.to_string()))?,
            Some(v) if v == u64::from(PROFILE_VERSION) => {
                serde_json::from_value::<Profile>(value).map_err(|e| parse(e.to_string()))?
            }
            Some(v) => {
                return Err(parse(format!(
                    "profile_version {v} (this ozone reads versions 1 and {PROFILE_VERSION})"
                )))
            }
            None => return Err(parse("no profile_version".into())),
        };
        profile
            .validate()
            .map_err(|message| ProfileError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(profile)
    }

    fn from_v1(v1: ProfileV1) -> Self {
        // Version 1 came from logs before stages: every proposal a full trial.
        let mut config = v1.config;
        config.ozone.screen_trials = false;
        Profile {
            profile_version: PROFILE_VERSION,
            provenance: Provenance {
                method: Method::TuneLog {
                    log: v1.provenance.log,
                },
                model_source: v1.provenance.model_source,
                ozone_version: v1.provenance.ozone_version,
                backend: v1.provenance.backend,
                machine: v1.hardware.hostname.clone(),
                memory_budget_mb: config.ozone.process_memory_budget_mb,
                gpu_memory_budget_mb: config.ozone.gpu_memory_budget_mb,
                recorded_at: v1.provenance.recorded_at,
                server_env: BTreeMap::new(),
            },
            model: v1.model,
            hardware: v1.hardware,
            config,
            parameters: v1.parameters,
            granularity: CONTEXT_GRANULARITY,
            points: points_of(v1.trials),
            recorded_run: Some(RecordedRun {
                plugins: v1.plugins,
                decisions: v1.decisions,
                limits: v1.recorded_limits,
            }),
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

    /// Every measurement in the profile.
    pub fn runs(&self) -> impl Iterator<Item = &TrialRecord> {
        self.points.iter().flat_map(|p| p.runs.iter())
    }

    /// The point measured at `config` and `stage`, if any.
    pub fn point(&self, config: &TrialConfig, stage: Stage) -> Option<&Point> {
        self.points
            .iter()
            .find(|p| p.stage == stage && &p.config == config)
    }

    /// What makes a profile usable: measurements to answer from, a context line, sane
    /// values, each point once.
    fn validate(&self) -> Result<(), String> {
        if self.points.iter().all(|p| p.runs.is_empty()) {
            return Err("no finished trial: nothing to replay".into());
        }
        if !self.runs().any(|t| t.phase == Phase::Context) {
            return Err("no context-phase trial: the context curve is missing".into());
        }
        if self.granularity == 0 {
            return Err("granularity 0".into());
        }
        for (i, p) in self.points.iter().enumerate() {
            if p.runs.is_empty() {
                return Err(format!("point {} ({}) has no measurement", i, p.config));
            }
            if self.points[..i]
                .iter()
                .any(|q| q.stage == p.stage && q.config == p.config)
            {
                return Err(format!("point {} ({}) is listed twice", i, p.config));
            }
            for t in &p.runs {
                let c = &t.config;
                if c != &p.config {
                    return Err(format!(
                        "trial {} ({c}) is filed under another configuration ({})",
                        t.id, p.config
                    ));
                }
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
        }
        if let Some(trained) = self.model.trained_context {
            if let Some(t) = self.runs().find(|t| t.config.ctx > trained) {
                return Err(format!(
                    "trial {} ran context {} above the model's trained context {trained}",
                    t.id, t.config.ctx
                ));
            }
        }
        Ok(())
    }

    /// The thresholds the recording applied (as `ozone tune` derives them).
    pub fn thresholds(&self) -> Thresholds {
        thresholds(&self.config, &self.hardware, &self.parameters)
    }

    /// The batch the context search runs at (`batch_adaptation.initial_batch_<class>`).
    pub fn context_batch(&self) -> u32 {
        self.config.initial_batch(self.model.size_class)
    }

    /// The profile's true limit: the largest context of the context search's line
    /// (its batch, one stream) whose verifications were mostly stable — what an ideal
    /// search publishes on this machine.
    pub fn true_limit(&self) -> Option<u32> {
        let batch = self.context_batch();
        self.points
            .iter()
            .filter(|p| {
                p.stage == Stage::Verify
                    && p.config.batch == batch
                    && p.config.concurrency == 1
                    && p.config.variant == self.parameters.variant()
                    && p.mostly_stable()
            })
            .map(|p| p.config.ctx)
            .max()
    }

    /// The range of contexts the context sweep measured (either stage), if any.
    pub fn measured_contexts(&self) -> Option<(u32, u32)> {
        let batch = self.context_batch();
        let line = self
            .points
            .iter()
            .filter(|p| p.config.batch == batch && p.config.concurrency == 1)
            .map(|p| p.config.ctx);
        let (lo, hi) = line.fold((u32::MAX, 0), |(lo, hi), c| (lo.min(c), hi.max(c)));
        (lo <= hi).then_some((lo, hi))
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

/// A tune's trials as points, each configuration and stage once with its measurements
/// in the order the run took them (logs from before stages hold verifications only): a
/// replay with seed 0 asks them in the same order.
fn points_of(trials: Vec<TrialRecord>) -> Vec<Point> {
    let mut points: Vec<Point> = Vec::new();
    for t in trials {
        match points
            .iter_mut()
            .find(|p| p.stage == t.stage && p.config == t.config)
        {
            Some(p) => p.runs.push(t),
            None => points.push(Point {
                config: t.config.clone(),
                stage: t.stage,
                runs: vec![t],
            }),
        }
    }
    points
}
