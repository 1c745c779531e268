//! `--resume LOG`: the set-up of a run cut short, read back from its log — its first
//! line — with every trial it finished and its fit baseline; the log locked for this
//! run. The model must be the one it measured; the llama-server binary may have moved.

use std::path::{Path, PathBuf};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::backend::llama_server::resolve_binary;
use crate::backend::{BackendKind, BackendSpec};
use crate::hardware::{probe, HardwareSnapshot, ProbeOptions};
use crate::record::{FitBaseline, TrialRecord, VariantOutcome};
use crate::report::{LogEvent, RunLog, RunStatus};
use crate::tune::driver::TrialBook;
use crate::tune::RunSetup;

use super::prepare::{check_gpu_budget, model_metadata};
use super::{until_cancelled, TuneFailure};

/// A run picked up again.
pub(super) struct Resumed {
    pub setup: RunSetup,
    pub snapshot: HardwareSnapshot,
    pub log: RunLog,
    pub book: TrialBook,
    pub fit: Option<FitBaseline>,
    /// The variants measured before (their quality is not measured again).
    pub variants: Vec<VariantOutcome>,
    pub notes: Vec<String>,
}

/// Reopens the log at `path` for the run it started; `llama_server`: where the binary
/// is now, when it moved.
pub(super) async fn resume(
    path: &Path,
    llama_server: Option<PathBuf>,
    api_key: Option<String>,
    cancel: &CancellationToken,
) -> Result<Resumed, TuneFailure> {
    let (mut log, mut setup, book, fit, variants) = read(path)?;
    if setup.parameters.is_none() {
        return Err(TuneFailure::BadLog(format!(
            "{}: written by an ozone without resume support",
            path.display()
        )));
    }
    let logged_binary = setup.server_binary.clone();
    if setup.backend == BackendKind::LlamaServer {
        setup.server_binary = Some(binary_now(path, llama_server, logged_binary.as_deref())?);
    }
    let probing = tokio::task::spawn_blocking(|| probe(&ProbeOptions::default()));
    let snapshot = until_cancelled(cancel, probing)
        .await?
        .map_err(|e| TuneFailure::Internal(format!("the hardware probe failed: {e}")))?;
    let spec = setup.backend_spec(api_key);
    check_gpu_budget(&setup.config, &spec, &snapshot)?;
    check_same_model(&setup, &spec, path, cancel).await?;
    log.append(&LogEvent::Resumed {
        at: Utc::now(),
        server_binary: setup
            .server_binary
            .clone()
            .filter(|b| logged_binary.as_ref() != Some(b)),
    })?;
    Ok(Resumed {
        variants,
        setup,
        snapshot,
        log,
        book,
        fit,
        notes: Vec::new(),
    })
}

/// The output folder of a run whose log is `<dir>/logs/x.jsonl`: `<dir>`.
pub(super) fn output_dir(log: &Path) -> PathBuf {
    log.parent()
        .and_then(Path::parent)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The llama-server binary a resumed run runs: `--llama-server` (a binary that moved),
/// else the one the log ran, which must still be there.
fn binary_now(
    log: &Path,
    given: Option<PathBuf>,
    logged: Option<&Path>,
) -> Result<PathBuf, TuneFailure> {
    if let Some(given) = given {
        let binary =
            resolve_binary(Some(&given)).map_err(|e| TuneFailure::ServerNotFound(e.to_string()))?;
        return Ok(std::fs::canonicalize(&binary).unwrap_or(binary));
    }
    match logged.map(|then| (then, resolve_binary(Some(then)))) {
        Some((_, Ok(binary))) => Ok(binary),
        Some((then, Err(_))) => Err(TuneFailure::ServerNotFound(format!(
            "the llama-server binary {} that {} ran is gone or not executable; pass \
             --llama-server PATH to resume with it where it is now",
            then.display(),
            log.display()
        ))),
        None => resolve_binary(None).map_err(|e| TuneFailure::ServerNotFound(e.to_string())),
    }
}

/// A resumed run's model must be the one its log measured: same digest (the file's
/// sha256, or Ollama's).
async fn check_same_model(
    setup: &RunSetup,
    spec: &BackendSpec,
    log: &Path,
    cancel: &CancellationToken,
) -> Result<(), TuneFailure> {
    let Some(logged) = setup.model.digest.as_deref() else {
        return Ok(());
    };
    let now = model_metadata(spec, cancel).await?;
    match now.digest {
        Some(now) if now != logged => Err(TuneFailure::ModelChanged {
            model: setup.model_source.clone(),
            log: log.display().to_string(),
            logged: logged.to_string(),
            now,
        }),
        _ => Ok(()),
    }
}

/// Reopens an interrupted run's log, locked for this run: its start line, every finished
/// trial and the fit baseline if it was measured.
/// What a log holds to resume from: its start line, its trials, the fit baseline, the
/// variants measured.
type Read = (
    RunLog,
    RunSetup,
    TrialBook,
    Option<FitBaseline>,
    Vec<VariantOutcome>,
);

fn read(path: &Path) -> Result<Read, TuneFailure> {
    // One in use by another run, from a newer ozone, not a log at all, not there.
    let (log, events) =
        RunLog::open_append(path).map_err(|e| TuneFailure::BadLog(e.to_string()))?;
    let mut setup = None;
    let mut trials: Vec<TrialRecord> = Vec::new();
    let mut fit = None;
    let variants = crate::report::outcomes_in(&events);
    for event in events {
        match event {
            LogEvent::RunStarted(s) if setup.is_none() => setup = Some(*s),
            LogEvent::Trial(t) => trials.push(*t),
            LogEvent::FitBaseline { fit: f } => fit = Some(f),
            LogEvent::RunFinished(f) if f.status == RunStatus::Completed => {
                return Err(TuneFailure::BadLog(format!(
                    "{} is a completed run; nothing to resume (`ozone report {}` re-renders it)",
                    path.display(),
                    path.display()
                )))
            }
            _ => {}
        }
    }
    let setup = setup.ok_or_else(|| {
        TuneFailure::BadLog(format!(
            "{} has no run_started line: not an ozone tune log",
            path.display()
        ))
    })?;
    Ok((log, setup, TrialBook::from_records(trials), fit, variants))
}
