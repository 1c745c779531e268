//! How far a node's tunes are, from their JSONL logs (`DIR/<node>/logs/*.jsonl`, written
//! and flushed as the run goes; see `report::LogEvent`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::fleet::report::duration;
use crate::record::Phase;
use crate::report::{read_log, LogEvent, RunStatus};

/// One model's run on a node, as its log tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunProgress {
    pub model: String,
    pub log: PathBuf,
    pub status: RunStatus,
    /// The phase of the last decision or trial.
    pub phase: Option<Phase>,
    /// Finished trials.
    pub trials: usize,
    /// What the trial in progress runs (`ctx 12288`), when the log says.
    pub current: Option<String>,
    pub max_context: Option<u32>,
    pub best_batch: Option<u32>,
    /// Why a run failed or was interrupted.
    pub message: Option<String>,
    pub wall_ms: Option<u64>,
}

impl RunProgress {
    /// One line: `tiny: context phase, trial 4 (ctx 12288), 3 finished`, or the result.
    pub fn describe(&self) -> String {
        let phase = self.phase.map(phase_name).unwrap_or("starting");
        match self.status {
            RunStatus::Unfinished => {
                let current = self
                    .current
                    .as_ref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                format!(
                    "{}: {phase} phase, trial {}{current}, {} finished",
                    self.model,
                    self.trials + 1,
                    self.trials
                )
            }
            RunStatus::Completed => {
                let show = |v: Option<u32>| v.map_or("none".to_string(), |v| v.to_string());
                let wall = self
                    .wall_ms
                    .map(|ms| format!(", {}", duration(ms)))
                    .unwrap_or_default();
                format!(
                    "{}: max context {}, best batch {} ({} trials{wall})",
                    self.model,
                    show(self.max_context),
                    show(self.best_batch),
                    self.trials
                )
            }
            RunStatus::Failed | RunStatus::Interrupted => format!(
                "{}: {} in the {phase} phase: {}",
                self.model,
                self.status,
                self.message.as_deref().unwrap_or("no reason logged")
            ),
        }
    }
}

/// The runs whose logs were written since `since` (all when `None`), oldest first.
pub fn node_runs(node_dir: &Path, since: Option<SystemTime>) -> Vec<RunProgress> {
    let logs = node_dir.join("logs");
    let Ok(entries) = std::fs::read_dir(&logs) else {
        return Vec::new();
    };
    let mut found: Vec<(SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .filter(|(modified, _)| since.is_none_or(|s| *modified >= s))
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(_, log)| read_progress(&log))
        .collect()
}

/// What one log says. A log that cannot be read is a failed run saying why.
pub fn read_progress(log: &Path) -> RunProgress {
    let mut progress = RunProgress {
        model: log
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        log: log.to_path_buf(),
        status: RunStatus::Unfinished,
        phase: None,
        trials: 0,
        current: None,
        max_context: None,
        best_batch: None,
        message: None,
        wall_ms: None,
    };
    let events = match read_log(log) {
        Ok(events) => events,
        Err(e) => {
            progress.status = RunStatus::Failed;
            progress.message = Some(format!("unreadable log: {e}"));
            return progress;
        }
    };
    let mut started_at = None;
    let mut stable_contexts = Vec::new();
    for event in &events {
        match event {
            LogEvent::RunStarted(s) => {
                progress.model = s.model.name.clone();
                started_at = Some(s.started_at);
            }
            LogEvent::Decision {
                phase, proposed, ..
            } => {
                progress.phase = Some(*phase);
                progress.current = proposed.map(|v| proposal(*phase, v));
            }
            LogEvent::Sample { config, sample, .. } => {
                progress.current = Some(format!("{config}, sample {}", sample.index + 1));
            }
            LogEvent::Trial(t) => {
                progress.trials += 1;
                progress.phase = Some(t.phase);
                progress.current = None;
                if t.verdict == crate::record::Verdict::Stable
                    && t.stage == crate::record::Stage::Verify
                {
                    stable_contexts.push(t.granted_ctx.unwrap_or(t.config.ctx));
                }
            }
            LogEvent::RunFinished(f) => {
                progress.status = f.status;
                progress.message = f.message.clone();
                progress.current = None;
                let limits = f.limits.clone().unwrap_or_default();
                progress.max_context = limits.max_context;
                progress.best_batch = limits.best_batch;
                progress.wall_ms = started_at
                    .and_then(|s| u64::try_from((f.finished_at - s).num_milliseconds()).ok());
            }
            LogEvent::Series { .. }
            | LogEvent::Resumed { .. }
            | LogEvent::Note { .. }
            | LogEvent::PhaseFinished { .. }
            | LogEvent::Variant { .. }
            | LogEvent::Offload { .. }
            | LogEvent::FitBaseline { .. } => {}
        }
    }
    if progress.status == RunStatus::Completed && progress.max_context.is_none() {
        progress.max_context = stable_contexts.into_iter().max();
    }
    progress
}

fn proposal(phase: Phase, value: u32) -> String {
    match phase {
        Phase::Context => format!("ctx {value}"),
        Phase::Offload => format!("ngl {value}"),
        Phase::Batch => format!("batch {value}"),
        Phase::Concurrency => format!("{value} streams"),
    }
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Context => "context",
        Phase::Offload => "offload",
        Phase::Batch => "batch",
        Phase::Concurrency => "concurrency",
    }
}
