//! One model's tune from start to files, the real world around the driver: probe, model
//! facts, plugins, the trial runner on a real server, the JSONL log, presets and output
//! files, warm starts. Also picks a run up again from its log (`--resume`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::backend::llama_server::{fit_baseline, FitRequest, DEFAULT_FIT_MARGIN_MIB};
use crate::backend::{BackendError, BackendKind, BackendSpec, ModelMetadata};
use crate::config::Config;
use crate::guard::{gpu_budget_problem, SamplerOptions};
use crate::hardware::process_gpu::availability;
use crate::hardware::{probe, HardwareSnapshot, ProbeOptions};
use crate::plugin::{PluginError, PluginHost, PluginRef};
use crate::record::{FitBaseline, Phase, SampleRecord, Stage, TrialConfig, TrialRecord};
use crate::report::{
    server_note, write_run_outputs, LogEvent, OutputPaths, PluginUse, ReportError, RunFinished,
    RunLog, RunStarted, RunStatus, RunSummary,
};
use crate::trial::{TrialRun, TrialRunner};
use crate::tune::driver::{trial_config, Driver, Plan, TrialBook, TuneError, TuneObserver};
use crate::tune::plan::{
    cpu_inference, effective_thresholds, first_trial, load_plugins, plan, set_aside_cpu_threshold,
    RunParameters,
};
use crate::tune::warm_start::{Key, Learned, WarmStartSource, WarmStartStore};

use progress::PhaseProgress;

mod footprint;
mod progress;

pub use footprint::{resolve_headroom, Footprint, FootprintError};

/// One model's run, as prepared by the command line.
pub struct TuneJob {
    /// The model as given: a `.gguf` path or an Ollama tag.
    pub model_source: String,
    pub spec: BackendSpec,
    pub config: Config,
    pub params: RunParameters,
    pub output_dir: PathBuf,
    /// Ignore remembered results (`--fresh`).
    pub fresh: bool,
    pub show_progress: bool,
    /// `--resume`: the log to continue.
    pub resume: Option<PathBuf>,
    /// `--warm-start-from DIR`: limits other machines found, tried before this
    /// machine's own store.
    pub shared_warm_start: Option<Box<dyn WarmStartSource>>,
}

/// How a tune that did not complete ended; the CLI maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum TuneFailure {
    #[error("{0}")]
    Model(#[source] BackendError),
    #[error("{0}")]
    Server(#[source] BackendError),
    #[error("{0}")]
    PluginLoad(#[source] PluginError),
    #[error("{0}")]
    Plugin(#[source] TuneError),
    #[error("{}", interrupted_message(.log.as_deref()))]
    Interrupted {
        /// The run's log, once it has one.
        log: Option<PathBuf>,
    },
    #[error(transparent)]
    Output(#[from] ReportError),
    /// Measured to the end; the output files could not be written.
    #[error(
        "{error}; every measurement is in {}: `ozone report {}` writes the files again once \
         there is room",
        .log.display(),
        .log.display()
    )]
    Outputs { error: ReportError, log: PathBuf },
    /// The first trial's server could not start, and not for lack of memory.
    #[error("{0}")]
    ServerCannotStart(String),
    /// `--resume` of a log whose model file changed since.
    #[error(
        "{model} was replaced since the run started: {log} measured {logged}, the file is now \
         {now}. Resuming would mix two models' trials; start a new run, or put the original \
         file back"
    )]
    ModelChanged {
        model: String,
        log: String,
        logged: String,
        now: String,
    },
    /// `process_memory_headroom_mb`: the footprint it rests on could not be measured.
    #[error(transparent)]
    Footprint(FootprintError),
    #[error("{0}")]
    BadLog(String),
    /// A setting this machine or backend cannot honour (the run did not start).
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Internal(String),
}

fn interrupted_message(log: Option<&Path>) -> String {
    match log {
        Some(log) => format!(
            "interrupted; the log is complete up to the last finished trial. Continue with:\n  \
             ozone tune --resume {}",
            log.display()
        ),
        None => "interrupted before the first trial; nothing was measured".to_string(),
    }
}

/// What a finished run leaves behind.
pub struct TuneResult {
    pub summary: RunSummary,
    pub log: PathBuf,
    pub files: OutputPaths,
    /// Remembered-result notes and the like, for the user.
    pub notes: Vec<String>,
}

/// Runs one model's tune to the end (or to Ctrl-C through `cancel`).
pub async fn tune(
    job: TuneJob,
    plugins: Arc<PluginHost>,
    cancel: CancellationToken,
) -> Result<TuneResult, TuneFailure> {
    let mut notes = Vec::new();
    let probing = tokio::task::spawn_blocking(|| probe(&ProbeOptions::default()));
    let snapshot = until_cancelled(&cancel, probing)
        .await?
        .map_err(|e| TuneFailure::Internal(format!("the hardware probe failed: {e}")))?;

    let (resumed, started, book, logged_fit) = match &job.resume {
        Some(path) => {
            let (mut log, started, book, fit) = resume_log(path)?;
            check_gpu_budget(&started.config, &job.spec, &snapshot)?;
            check_same_model(&job, &started, path, &cancel).await?;
            log.append(&LogEvent::Resumed {
                at: Utc::now(),
                server_binary: server_binary(&job.spec)
                    .filter(|b| started.server_binary.as_ref() != Some(b)),
            })?;
            (Some(log), started, book, fit)
        }
        None => {
            // Before the model is read (hashing a large model takes a while).
            check_gpu_budget(&job.config, &job.spec, &snapshot)?;
            let facts = until_cancelled(&cancel, job.spec.model_metadata())
                .await?
                .map_err(|e| match job.spec {
                    BackendSpec::LlamaServer(_) => TuneFailure::Model(e),
                    _ => TuneFailure::Server(e),
                })?;
            let mut params = job.params.clone();
            if !job.fresh {
                params.hint = shared_hint(&job, &snapshot, &facts, &mut notes);
            }
            if !job.fresh && params.hint.is_none() && job.config.reuse_learned_configs() {
                params.hint = remembered_limit(&snapshot, &facts, &job.config, &mut notes);
            }
            // The log and the report record the limits the trials were held to.
            let mut config = job.config.clone();
            notes.extend(set_aside_cpu_threshold(&mut config, &snapshot, &params));
            let thresholds = effective_thresholds(&config, &snapshot, &params, &mut Vec::new());
            let first = first_trial(&config, &facts, &params);
            let footprint = resolve_headroom(&mut config, &job.spec, &thresholds, &first, &cancel)
                .await
                .map_err(TuneFailure::Footprint)?;
            if let (Some(f), Some(headroom)) = (footprint, config.ozone.process_memory_headroom_mb)
            {
                notes.push(f.note(headroom));
            }
            let started = RunStarted {
                log_version: crate::report::LOG_VERSION,
                ozone_version: env!("CARGO_PKG_VERSION").to_string(),
                model_source: job.model_source.clone(),
                model: facts,
                hardware: snapshot.clone(),
                config,
                plugins: plugin_uses(&job.config),
                backend: job.spec.kind(),
                versions: Default::default(),
                parameters: Some(params),
                server_binary: server_binary(&job.spec),
                started_at: Utc::now(),
            };
            (None, started, TrialBook::default(), None)
        }
    };
    let params = started
        .parameters
        .clone()
        .unwrap_or_else(|| job.params.clone());
    let config = &started.config;
    let thresholds = effective_thresholds(config, &snapshot, &params, &mut notes);
    if let Some(trained) = started.model.trained_context {
        let min = config.ozone.min_context;
        if min > trained {
            notes.push(format!(
                "min_context {min} is above the model's trained context {trained}: the search \
                 stays at or below {trained}"
            ));
        }
    }
    let sampler = SamplerOptions {
        interval: config.sampling_interval(),
        thresholds: Some(thresholds.clone()),
        kill_on_breach: true,
        ..SamplerOptions::default()
    };
    let mut runner = TrialRunner::new(job.spec.clone(), config.trial_settings(), sampler.clone());

    // Loading compiles the plugins on a first run (seconds): a signal must not wait.
    let loading = {
        let (config, snapshot, thresholds) = (config.clone(), snapshot.clone(), thresholds.clone());
        let (model, params) = (started.model.clone(), params.clone());
        tokio::task::spawn_blocking(move || {
            load_plugins(&plugins, &config, &snapshot, &thresholds, &model, &params)
        })
    };
    let loaded = until_cancelled(&cancel, loading).await;
    let mut log = match resumed {
        Some(log) => log,
        None => {
            let mut log = RunLog::create(&job.output_dir, &started.model.name, started.started_at)?;
            log.append(&LogEvent::RunStarted(Box::new(started.clone())))?;
            log
        }
    };
    let mut strategies = match loaded {
        Ok(Ok(plugins)) => plugins.map_err(TuneFailure::PluginLoad)?,
        Ok(Err(panic)) => {
            return Err(TuneFailure::Internal(format!(
                "loading the plugins failed: {panic}"
            )))
        }
        Err(_interrupted) => {
            log.append(&LogEvent::RunFinished(RunFinished {
                status: RunStatus::Interrupted,
                finished_at: Utc::now(),
                limits: None,
                message: Some("interrupted".into()),
            }))?;
            return Err(TuneFailure::Interrupted {
                log: Some(log.path().to_path_buf()),
            });
        }
    };

    let plan = plan(config, &started.model, &params);
    let fit = match logged_fit {
        Some(fit) => Some(fit),
        None => {
            let fit = fit_baseline_of(
                &job.spec, &plan, &params, &snapshot, sampler, config, &cancel,
            )
            .await;
            if let (Some(fit), false) = (&fit, cancel.is_cancelled()) {
                log.append(&LogEvent::FitBaseline { fit: fit.clone() })?;
            }
            fit
        }
    };
    let mut observer = LogObserver {
        log: &mut log,
        progress: PhaseProgress::new(job.show_progress),
        backend: started.backend,
    };
    let mut driver = Driver {
        executor: &mut runner,
        observer: &mut observer,
        book,
        snapshot: &snapshot,
        thresholds: &thresholds,
        cancel: cancel.clone(),
    };
    let outcome = driver.run(&plan, &mut strategies).await;
    driver.observer.finished();
    let trials = driver.book.records().to_vec();
    drop(driver);

    let log_path = log.path().to_path_buf();
    let limits = match outcome {
        Ok(limits) => limits,
        Err(e) => {
            let (status, failure) = match e {
                TuneError::Interrupted => (
                    RunStatus::Interrupted,
                    TuneFailure::Interrupted {
                        log: Some(log_path),
                    },
                ),
                TuneError::ServerCannotStart(why) => {
                    (RunStatus::Failed, TuneFailure::ServerCannotStart(why))
                }
                e => (RunStatus::Failed, TuneFailure::Plugin(e)),
            };
            let message = match &failure {
                TuneFailure::Interrupted { .. } => "interrupted".to_string(),
                other => other.to_string(),
            };
            log.append(&LogEvent::RunFinished(RunFinished {
                status,
                finished_at: Utc::now(),
                limits: None,
                message: Some(message),
            }))?;
            return Err(failure);
        }
    };

    // Every output file is written before the log says `completed`: a run killed or
    // short of disk on the way stays resumable, and `ozone report LOG` can write them.
    let finished_at = Utc::now();
    let summary = RunSummary {
        fit_baseline: fit,
        ..RunSummary::new(
            &started,
            trials,
            RunStatus::Completed,
            Some(finished_at),
            Some(limits.clone()),
            None,
        )
    };
    let binary = server_binary(&job.spec);
    let written = write_run_outputs(
        &job.output_dir,
        &log_path,
        &started,
        binary.as_deref(),
        &summary,
        true,
    );
    let files = match written {
        Ok(files) => files,
        Err(error) => {
            // Best effort: the disk may be the very thing that is full.
            let _ = log.append(&LogEvent::RunFinished(RunFinished {
                status: RunStatus::Failed,
                finished_at,
                limits: Some(limits),
                message: Some(format!(
                    "measured to the end; the output files could not be written: {error}"
                )),
            }));
            return Err(TuneFailure::Outputs {
                error,
                log: log_path,
            });
        }
    };
    log.append(&LogEvent::RunFinished(RunFinished {
        status: RunStatus::Completed,
        finished_at,
        limits: Some(limits),
        message: None,
    }))?;
    notes.extend(files.notes.iter().cloned());
    if summary.limits.max_context.is_none() {
        notes.push(
            "nothing was stable: the earlier defaults, deploy files and warm-start limit are \
             kept"
                .to_string(),
        );
    } else if config.store_learned_results() {
        remember(&snapshot, &summary, &mut notes);
    }
    Ok(TuneResult {
        summary,
        log: log_path,
        files,
        notes,
    })
}

fn check_gpu_budget(
    config: &Config,
    spec: &BackendSpec,
    snapshot: &HardwareSnapshot,
) -> Result<(), TuneFailure> {
    gpu_budget_refusal(config, spec, snapshot).map_or(Ok(()), |why| Err(TuneFailure::BadInput(why)))
}

/// Why the configured GPU-memory budget cannot be enforced here, if it cannot: it needs
/// a server Ozone starts (its pids) and a per-process GPU reading on this machine, and
/// must be below the GPU's total (`guard::gpu_budget_problem`). `tune` and `lab record`
/// refuse it before any trial.
pub fn gpu_budget_refusal(
    config: &Config,
    spec: &BackendSpec,
    snapshot: &HardwareSnapshot,
) -> Option<String> {
    let budget_mb = config.ozone.gpu_memory_budget_mb?;
    if !matches!(spec, BackendSpec::LlamaServer(_)) {
        return Some(format!(
            "--gpu-memory-budget-mb (ozone.gpu_memory_budget_mb) needs a server Ozone starts \
             itself (llama-server): the processes of a running {} are not Ozone's to watch",
            spec.kind()
        ));
    }
    let defaults = SamplerOptions::default();
    let reading = availability(
        &defaults.process_gpu,
        &defaults.sysfs_root,
        &defaults.proc_root,
    );
    gpu_budget_problem(budget_mb, snapshot.gpu_memory_total_bytes(), &reading)
}

/// llama.cpp's own fit on this machine, for a llama-server run (one extra start without
/// `-c`, at the first context trial's shape, under the run's limits); `None` for other
/// backends. The rule is the backend's (`llama_server::fit_baseline`).
async fn fit_baseline_of(
    spec: &BackendSpec,
    plan: &Plan,
    params: &RunParameters,
    snapshot: &HardwareSnapshot,
    sampler: SamplerOptions,
    config: &Config,
    cancel: &CancellationToken,
) -> Option<FitBaseline> {
    let BackendSpec::LlamaServer(spec) = spec else {
        return None;
    };
    let request = FitRequest {
        config: trial_config(0, plan.initial_batch, 1, params.kv_cache_type),
        margin_mib: params.fit_target_mb.unwrap_or(DEFAULT_FIT_MARGIN_MIB),
        gpu_inference: !cpu_inference(snapshot, params),
        sampler,
        health_timeout: std::time::Duration::from_secs_f64(
            config.trial_settings().health_timeout_s.max(1.0),
        ),
    };
    Some(fit_baseline(spec, &request, cancel).await)
}

/// The llama-server binary a spec runs, when it runs one.
fn server_binary(spec: &BackendSpec) -> Option<PathBuf> {
    match spec {
        BackendSpec::LlamaServer(spec) => Some(spec.binary.clone()),
        _ => None,
    }
}

/// A resumed run's model must be the one its log measured: same digest (the file's
/// sha256, or Ollama's).
async fn check_same_model(
    job: &TuneJob,
    started: &RunStarted,
    log: &Path,
    cancel: &CancellationToken,
) -> Result<(), TuneFailure> {
    let Some(logged) = started.model.digest.as_deref() else {
        return Ok(());
    };
    let now = until_cancelled(cancel, job.spec.model_metadata())
        .await?
        .map_err(|e| match job.spec {
            BackendSpec::LlamaServer(_) => TuneFailure::Model(e),
            _ => TuneFailure::Server(e),
        })?;
    match now.digest {
        Some(now) if now != logged => Err(TuneFailure::ModelChanged {
            model: started.model_source.clone(),
            log: log.display().to_string(),
            logged: logged.to_string(),
            now,
        }),
        _ => Ok(()),
    }
}

/// `work`'s output, unless Ctrl-C or SIGTERM comes first (before the log exists, so
/// there is nothing to resume).
async fn until_cancelled<T>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T, TuneFailure> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(TuneFailure::Interrupted { log: None }),
        out = work => Ok(out),
    }
}

/// Reopens an interrupted run's log, locked for this run: its start line, every finished
/// trial and the fit baseline if it was measured.
fn resume_log(
    path: &Path,
) -> Result<(RunLog, RunStarted, TrialBook, Option<FitBaseline>), TuneFailure> {
    let (log, events) = RunLog::open_append(path)?;
    let mut started = None;
    let mut trials: Vec<TrialRecord> = Vec::new();
    let mut fit = None;
    for event in events {
        match event {
            LogEvent::RunStarted(s) => started = Some(*s),
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
    let started = started.ok_or_else(|| {
        TuneFailure::BadLog(format!(
            "{} has no run_started line: not an ozone tune log",
            path.display()
        ))
    })?;
    Ok((log, started, TrialBook::from_records(trials), fit))
}

/// The hint of `--warm-start-from` (asked for explicitly, so the config's
/// `reuse_learned_configs` does not turn it off; `--fresh` does).
fn shared_hint(
    job: &TuneJob,
    snapshot: &HardwareSnapshot,
    facts: &ModelMetadata,
    notes: &mut Vec<String>,
) -> Option<u32> {
    let source = job.shared_warm_start.as_ref()?;
    let key = Key::new(snapshot, facts.digest.as_deref()?);
    let (limit, note) = source.context_hint(&key, &job.config)?;
    tracing::info!("{note}");
    notes.push(note);
    Some(limit)
}

fn remembered_limit(
    snapshot: &HardwareSnapshot,
    facts: &ModelMetadata,
    config: &Config,
    notes: &mut Vec<String>,
) -> Option<u32> {
    let digest = facts.digest.as_deref()?;
    let store = WarmStartStore::open_default().ok()?;
    match store.lookup(&Key::new(snapshot, digest), config.learned_max_age()) {
        Ok(Some(learned)) => {
            let limit = learned.max_context?;
            notes.push(format!(
                "warm start: an earlier run on this machine found context {limit} for this model (--fresh ignores it)"
            ));
            Some(limit)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

fn remember(snapshot: &HardwareSnapshot, summary: &RunSummary, notes: &mut Vec<String>) {
    let Some(digest) = summary.model.digest.as_deref() else {
        return;
    };
    let stored = WarmStartStore::open_default().and_then(|store| {
        store.remember(
            &Key::new(snapshot, digest),
            Learned::from_limits(&summary.model.name, &summary.limits),
        )
    });
    if let Err(e) = stored {
        notes.push(format!("results not remembered for warm starts: {e}"));
    }
}

fn plugin_uses(config: &Config) -> Vec<PluginUse> {
    [
        ("context", &config.ozone.context_strategy),
        ("batch", &config.ozone.batch_strategy),
        ("concurrency", &config.ozone.concurrency_strategy),
    ]
    .into_iter()
    .map(|(role, name)| PluginUse {
        role: role.into(),
        name: name.clone(),
        version: Some(crate::plugin::API_VERSION.to_string()),
        builtin: matches!(PluginRef::from_str(name), Ok(PluginRef::Builtin(_))),
    })
    .collect()
}

/// Writes every sample and finished trial to the log (flushed per line) and drives the
/// bars.
struct LogObserver<'a> {
    log: &'a mut RunLog,
    progress: PhaseProgress,
    backend: BackendKind,
}

impl TuneObserver for LogObserver<'_> {
    fn phase_started(&mut self, phase: Phase, estimated_trials: usize) {
        self.progress.phase_started(phase, estimated_trials);
        if phase == Phase::Concurrency {
            // How the levels are served decides what they mean: say it in the log and
            // on the console.
            let message = server_note(self.backend);
            self.progress.note(&message);
            if let Err(e) = self.log.append(&LogEvent::Note { phase, message }) {
                tracing::warn!("{e}");
            }
        }
    }

    fn trial_started(&mut self, _id: u32, _phase: Phase, stage: Stage, config: &TrialConfig) {
        self.progress.trial_started(stage, config);
    }

    fn sample(&mut self, id: u32, stage: Stage, config: &TrialConfig, sample: &SampleRecord) {
        let event = LogEvent::Sample {
            trial_id: id,
            stage,
            config: config.clone(),
            sample: sample.clone(),
        };
        if let Err(e) = self.log.append(&event) {
            tracing::warn!("{e}");
        }
    }

    fn trial_finished(&mut self, run: &TrialRun) -> Result<(), TuneError> {
        self.progress.trial_finished(&run.record);
        let log = |e: ReportError| TuneError::Log(e.to_string());
        self.log
            .append(&LogEvent::Trial(Box::new(run.record.clone())))
            .map_err(log)?;
        self.log
            .append(&LogEvent::Series {
                trial_id: run.record.id,
                series: run.series.clone(),
            })
            .map_err(log)
    }

    fn trial_reused(&mut self, record: &TrialRecord) {
        self.progress.trial_reused(record);
    }

    fn decision(&mut self, phase: Phase, plugin: &str, proposed: Option<u32>, stage: Stage) {
        let event = LogEvent::Decision {
            phase,
            plugin: plugin.to_string(),
            proposed,
            stage: proposed.map(|_| stage),
        };
        if let Err(e) = self.log.append(&event) {
            tracing::warn!("{e}");
        }
    }

    fn finished(&mut self) {
        self.progress.finish_phase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_calls_a_plugin_built_in_by_the_loader_s_rule() {
        let mut config = Config::default();
        config.ozone.context_strategy = "binary-search".into();
        config.ozone.batch_strategy = "plugins/my-scaler".into();
        let uses = plugin_uses(&config);
        assert!(uses[0].builtin);
        // A path is a component file even without the `.wasm` suffix.
        assert!(!uses[1].builtin);
    }
}
