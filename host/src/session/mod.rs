//! One model's tune from start to files, the real world around the driver: probe, model
//! facts, plugins, the trial runner on a real server, the JSONL log, presets and output
//! files, warm starts. Also picks a run up again from its log (`--resume`).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::backend::llama_server::{
    command_line, fit_baseline, FitRequest, DEFAULT_FIT_MARGIN_MIB,
};
use crate::backend::{BackendError, BackendSpec, ModelMetadata};
use crate::config::Config;
use crate::guard::{gpu_budget_problem, SamplerOptions};
use crate::hardware::process_gpu::availability;
use crate::hardware::{probe, HardwareSnapshot, ProbeOptions};
use crate::plugin::{PluginError, PluginHost, PluginRef};
use crate::record::{FitBaseline, Phase, TrialConfig, TrialRecord};
use crate::report::{
    write_outputs, LogEvent, OutputPaths, PluginUse, ReportError, RunFinished, RunLog, RunStarted,
    RunStatus, RunSummary,
};
use crate::trial::{TrialRun, TrialRunner};
use crate::tune::driver::{
    trial_config, Driver, Plan, TrialBook, TrialExecutor, TuneError, TuneObserver,
};
use crate::tune::plan::{
    cpu_inference, effective_thresholds, load_plugins, plan, set_aside_cpu_threshold, RunParameters,
};
use crate::tune::warm_start::{Key, Learned, WarmStartSource, WarmStartStore};

use progress::PhaseProgress;

mod progress;

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
    #[error("interrupted; the log is complete up to the last finished trial. Continue with:\n  ozone tune --resume {}", .log.display())]
    Interrupted { log: PathBuf },
    #[error(transparent)]
    Output(#[from] ReportError),
    #[error("{0}")]
    BadLog(String),
    /// A setting this machine or backend cannot honour (the run did not start).
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Internal(String),
}

/// What a finished run leaves behind.
pub struct TuneResult {
    pub summary: RunSummary,
    pub log: PathBuf,
    pub files: OutputPaths,
    /// Remembered-result notes and the like, for the user.
    pub notes: Vec<String>,
    pub concurrency_skipped: bool,
}

/// Runs one model's tune to the end (or to Ctrl-C through `cancel`).
pub async fn tune(
    job: TuneJob,
    plugins: &PluginHost,
    cancel: CancellationToken,
) -> Result<TuneResult, TuneFailure> {
    let mut notes = Vec::new();
    let snapshot = tokio::task::spawn_blocking(|| probe(&ProbeOptions::default()))
        .await
        .map_err(|e| TuneFailure::Internal(format!("the hardware probe failed: {e}")))?;

    let (mut log, started, book, logged_fit) = match &job.resume {
        Some(path) => {
            let resumed = resume_log(path)?;
            check_gpu_budget(&resumed.1.config, &job.spec, &snapshot)?;
            resumed
        }
        None => {
            // Before the model is read (hashing a large model takes a while).
            check_gpu_budget(&job.config, &job.spec, &snapshot)?;
            let facts = job
                .spec
                .model_metadata()
                .await
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
                started_at: Utc::now(),
            };
            let mut log = RunLog::create(&job.output_dir, &started.model.name, started.started_at)?;
            log.append(&LogEvent::RunStarted(Box::new(started.clone())))?;
            (log, started, TrialBook::default(), None)
        }
    };
    let params = started
        .parameters
        .clone()
        .unwrap_or_else(|| job.params.clone());
    let config = &started.config;
    let thresholds = effective_thresholds(config, &snapshot, &params, &mut notes);
    let sampler = SamplerOptions {
        interval: config.sampling_interval(),
        thresholds: Some(thresholds.clone()),
        kill_on_breach: true,
        ..SamplerOptions::default()
    };
    let mut runner = TrialRunner::new(job.spec.clone(), config.trial_settings(), sampler.clone());

    let (mut context, mut batch) = load_plugins(
        plugins,
        config,
        &snapshot,
        &thresholds,
        &started.model,
        &params,
    )
    .map_err(TuneFailure::PluginLoad)?;

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
    };
    let mut executor = RunnerExecutor(&mut runner);
    let mut driver = Driver {
        executor: &mut executor,
        observer: &mut observer,
        book,
        snapshot: &snapshot,
        thresholds: &thresholds,
        cancel: cancel.clone(),
    };
    let outcome = driver.run(&plan, &mut context, &mut batch).await;
    driver.observer.finished();
    let trials = driver.book.records().to_vec();
    drop(driver);

    let log_path = log.path().to_path_buf();
    let (status, limits, message) = match &outcome {
        Ok(limits) => (RunStatus::Completed, Some(limits.clone()), None),
        Err(TuneError::Interrupted) => (RunStatus::Interrupted, None, Some("interrupted".into())),
        Err(e) => (RunStatus::Failed, None, Some(e.to_string())),
    };
    let finished_at = Utc::now();
    log.append(&LogEvent::RunFinished(RunFinished {
        status,
        finished_at,
        limits: limits.clone(),
        message: message.clone(),
    }))?;
    match outcome {
        Ok(_) => {}
        Err(TuneError::Interrupted) => return Err(TuneFailure::Interrupted { log: log_path }),
        Err(e) => return Err(TuneFailure::Plugin(e)),
    }

    let summary = RunSummary {
        fit_baseline: fit,
        ..RunSummary::new(&started, trials, status, Some(finished_at), limits, message)
    };
    let llama_command = match (&job.spec, summary.presets.get(params.preset)) {
        (BackendSpec::LlamaServer(spec), Some(preset)) => {
            let mut cmd = command_line(spec, &preset.config);
            cmd.extend([
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                "8080".into(),
            ]);
            Some(cmd)
        }
        _ => None,
    };
    let files = write_outputs(
        &job.output_dir,
        &summary,
        params.preset,
        llama_command.as_deref(),
    )?;
    if config.store_learned_results() {
        remember(&snapshot, &summary, &mut notes);
    }
    Ok(TuneResult {
        summary,
        log: log_path,
        files,
        notes,
        concurrency_skipped: params.skip_concurrency,
    })
}

/// A GPU-memory budget needs a server Ozone starts (its pids) and a per-process GPU
/// reading on this machine, and must be below the GPU's total (`guard::gpu_budget_problem`).
fn check_gpu_budget(
    config: &Config,
    spec: &BackendSpec,
    snapshot: &HardwareSnapshot,
) -> Result<(), TuneFailure> {
    let Some(budget_mb) = config.ozone.gpu_memory_budget_mb else {
        return Ok(());
    };
    if !matches!(spec, BackendSpec::LlamaServer(_)) {
        return Err(TuneFailure::BadInput(format!(
            "--gpu-memory-budget-mb (ozone.gpu_memory_budget_mb) needs a server Ozone starts \
             itself (llama-server): the processes of a running {} are not Ozone's to watch",
            spec.kind()
        )));
    }
    let defaults = SamplerOptions::default();
    let reading = availability(
        &defaults.process_gpu,
        &defaults.sysfs_root,
        &defaults.proc_root,
    );
    match gpu_budget_problem(budget_mb, snapshot.gpu_memory_total_bytes(), &reading) {
        Some(problem) => Err(TuneFailure::BadInput(problem)),
        None => Ok(()),
    }
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

/// Reopens an interrupted run's log: its start line, every finished trial and the fit
/// baseline if it was measured.
fn resume_log(
    path: &Path,
) -> Result<(RunLog, RunStarted, TrialBook, Option<FitBaseline>), TuneFailure> {
    let (mut log, events) = RunLog::open_append(path)?;
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
    log.append(&LogEvent::Resumed { at: Utc::now() })?;
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

/// Runs trials on the real server.
struct RunnerExecutor<'a>(&'a mut TrialRunner);

impl TrialExecutor for RunnerExecutor<'_> {
    async fn run(
        &mut self,
        id: u32,
        phase: Phase,
        config: &TrialConfig,
        cancel: &CancellationToken,
    ) -> TrialRun {
        self.0.run(id, phase, config, cancel).await
    }
}

/// Writes every finished trial to the log (flushed per line) and drives the bars.
struct LogObserver<'a> {
    log: &'a mut RunLog,
    progress: PhaseProgress,
}

impl TuneObserver for LogObserver<'_> {
    fn phase_started(&mut self, phase: Phase, estimated_trials: usize) {
        self.progress.phase_started(phase, estimated_trials);
    }

    fn trial_started(&mut self, _id: u32, _phase: Phase, config: &TrialConfig) {
        self.progress.trial_started(config);
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

    fn decision(&mut self, phase: Phase, plugin: &str, proposed: Option<u32>) {
        let event = LogEvent::Decision {
            phase,
            plugin: plugin.to_string(),
            proposed,
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
