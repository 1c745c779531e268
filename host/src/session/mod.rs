//! One model's tune from start to files, the real world around the driver: the run's
//! set-up measured on this machine (`prepare.rs`: probe, model facts, warm-start hints,
//! a headroom's footprint) or read back from a log (`resume.rs`), the plugins, the
//! trial runner on a real server, the JSONL log (`observer.rs`), presets and output
//! files, the warm-start store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::backend::llama_server::{fit_baseline, FitRequest, DEFAULT_FIT_MARGIN_MIB};
use crate::backend::{BackendError, BackendSpec};
use crate::hardware::HardwareSnapshot;
use crate::plugin::{PluginError, PluginHost, VariantSearch};
use crate::record::{FitBaseline, Limits, OffloadOutcome, TrialRecord, VariantOutcome};
use crate::report::{
    write_run_outputs, LogEvent, OffloadSummary, OutputPaths, ReportError, RunFinished, RunLog,
    RunStatus, RunSummary,
};
use crate::tune::driver::{
    trial_config, ContractBreach, Driver, Frontier, Plugins, TrialBook, TuneError, TuneObserver,
};
use crate::tune::setup::{cpu_inference, load_variant_search, measures_variants, sampler};
use crate::tune::warm_start::{Key, Learned, WarmStartStore};
use crate::tune::RunSetup;

use observer::LogObserver;
use offload::SetupOffload;
use progress::PhaseProgress;
use variants::{ServerQuality, SetupPlugins};

mod footprint;
mod observer;
mod offload;
mod prepare;
mod progress;
mod resume;
mod variants;

pub use footprint::{resolve_headroom, Footprint, FootprintError};
pub use prepare::{gpu_budget_refusal, prepare, Prepared, RunRequest};

/// How a run starts: anew from the command line, or from the log of one cut short.
pub enum Start {
    New {
        request: Box<RunRequest>,
        /// Where logs, summaries, presets, deploy files and reports go.
        output_dir: PathBuf,
    },
    /// `--resume LOG`: the run its log started, everything as logged but where the
    /// llama-server binary is now (`--llama-server`) and the API key (never logged).
    Resume {
        log: PathBuf,
        llama_server: Option<PathBuf>,
        api_key: Option<String>,
    },
}

/// How a tune that did not complete ended, named by what failed; the CLI maps each to
/// its documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum TuneFailure {
    /// The model file cannot be read (missing, not a GGUF).
    #[error("{0}")]
    Model(#[source] BackendError),
    /// The server that describes the model does not answer (Ollama, OpenAI).
    #[error("{0}")]
    Server(#[source] BackendError),
    /// A plugin does not fit where it was asked for (unknown, not a component, its
    /// settings rejected), or broke its sandbox while loading.
    #[error("{0}")]
    PluginLoad(#[source] PluginError),
    /// A plugin call failed mid-run: a trap, fuel, memory, a value out of its bounds.
    #[error("{0}")]
    Plugin(#[source] PluginError),
    /// A plugin answered within its sandbox but broke the search's contract.
    #[error("{0}")]
    Contract(#[source] ContractBreach),
    #[error("{}", interrupted_message(.log.as_deref()))]
    Interrupted {
        /// The run's log, once it has one.
        log: Option<PathBuf>,
    },
    /// The trial log could not be written (a full disk): every trial finished before
    /// is in it.
    #[error(
        "cannot write the trial log: {0}; every trial finished before is in it, and \
         `ozone tune --resume` continues once there is room"
    )]
    Log(#[source] ReportError),
    /// Measured to the end; the output files could not be written.
    #[error(
        "{error}; every measurement is in {}: `ozone report {}` writes the files again once \
         there is room",
        .log.display(),
        .log.display()
    )]
    Outputs { error: ReportError, log: PathBuf },
    /// The first trial's server could not start, and not for lack of memory, or the
    /// server cannot run on this machine at all.
    #[error("{0}")]
    ServerCannotStart(String),
    /// No llama-server binary where the run needs one.
    #[error("{0}")]
    ServerNotFound(String),
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
    /// `--resume` of something that is not a resumable tune log.
    #[error("{0}")]
    BadLog(String),
    /// A setting this machine or backend cannot honour (the run did not start).
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ReportError> for TuneFailure {
    fn from(error: ReportError) -> Self {
        TuneFailure::Log(error)
    }
}

impl TuneFailure {
    /// A driver error by what failed (`log`: the run's log, for an interruption).
    fn of_driver(error: TuneError, log: &Path) -> Self {
        match error {
            TuneError::Plugin(e) => TuneFailure::Plugin(e),
            TuneError::Contract(e) => TuneFailure::Contract(e),
            TuneError::Interrupted => TuneFailure::Interrupted {
                log: Some(log.to_path_buf()),
            },
            TuneError::Log(e) => match e.downcast::<ReportError>() {
                Ok(e) => TuneFailure::Log(*e),
                Err(e) => TuneFailure::Internal(format!("writing the trial log: {e}")),
            },
            TuneError::ServerCannotStart(why) => TuneFailure::ServerCannotStart(why),
        }
    }
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

/// A run with its set-up and its log open: what is left is to measure.
struct Opened {
    setup: RunSetup,
    /// This machine now (a resumed run may run elsewhere than it started).
    snapshot: HardwareSnapshot,
    log: RunLog,
    output_dir: PathBuf,
    book: TrialBook,
    fit: Option<FitBaseline>,
    plugins: Plugins,
    /// The variant plugin, for a run that measures several variants (or a quantized
    /// cache's quality).
    variants: Option<VariantSearch>,
    host: Arc<PluginHost>,
    /// Variants measured before a `--resume`, with their quality.
    measured_variants: Vec<VariantOutcome>,
    api_key: Option<String>,
    notes: Vec<String>,
}

/// Runs one model's tune to the end (or to Ctrl-C through `cancel`).
pub async fn tune(
    start: Start,
    show_progress: bool,
    plugins: Arc<PluginHost>,
    cancel: CancellationToken,
) -> Result<TuneResult, TuneFailure> {
    let mut run = open(start, plugins, &cancel).await?;
    let measured = measure(&mut run, show_progress, &cancel).await;
    let log_path = run.log.path().to_path_buf();
    // The one place a run's end is logged. Every output file is written before the log
    // says `completed`: a run killed or short of disk on the way stays resumable, and
    // `ozone report LOG` can write them.
    let finished_at = Utc::now();
    let end = |status, limits, message| RunFinished {
        status,
        finished_at,
        limits,
        message,
    };
    let (finished, outcome) = match measured {
        Ok((limits, trials, fit, rows, offload)) => {
            let offload = offload.map(|o| OffloadSummary::new(&o, &trials));
            let summary = RunSummary {
                fit_baseline: fit,
                offload,
                ..RunSummary::new(
                    &run.setup,
                    trials,
                    RunStatus::Completed,
                    Some(finished_at),
                    limits.clone(),
                    None,
                )
            }
            .with_frontier(&rows);
            let written = write_run_outputs(
                &run.output_dir,
                &log_path,
                &run.setup,
                run.setup.server_binary.as_deref(),
                &summary,
                true,
            );
            match written {
                Ok(files) => (
                    end(RunStatus::Completed, Some(limits), None),
                    Ok((summary, files)),
                ),
                Err(error) => (
                    end(
                        RunStatus::Failed,
                        Some(limits),
                        Some(format!(
                            "measured to the end; the output files could not be written: {error}"
                        )),
                    ),
                    Err(TuneFailure::Outputs {
                        error,
                        log: log_path.clone(),
                    }),
                ),
            }
        }
        Err(failure) => {
            let (status, message) = match &failure {
                TuneFailure::Interrupted { .. } => (RunStatus::Interrupted, "interrupted".into()),
                other => (RunStatus::Failed, other.to_string()),
            };
            (end(status, None, Some(message)), Err(failure))
        }
    };
    let logged = run.log.append(&LogEvent::RunFinished(finished));
    let (summary, files) = match (outcome, logged) {
        // The disk may be the very thing that is full: the first failure is the one said.
        (Err(failure), _) => return Err(failure),
        (Ok(_), Err(e)) => return Err(TuneFailure::Log(e)),
        (Ok(done), Ok(())) => done,
    };
    let mut notes = run.notes;
    notes.extend(files.notes.iter().cloned());
    if summary.limits.max_context.is_none() {
        notes.push(
            "nothing was stable: the earlier defaults, deploy files and warm-start limit are \
             kept"
                .to_string(),
        );
    } else if run.setup.config.store_learned_results() {
        remember(&run.snapshot, &summary, &mut notes);
    }
    Ok(TuneResult {
        summary,
        log: log_path,
        files,
        notes,
    })
}

/// The set-up (measured, or read back from the log), the plugins loaded, the log open.
async fn open(
    start: Start,
    plugins: Arc<PluginHost>,
    cancel: &CancellationToken,
) -> Result<Opened, TuneFailure> {
    match start {
        Start::New {
            request,
            output_dir,
        } => {
            let api_key = request.api_key.clone();
            let Prepared {
                setup,
                snapshot,
                notes,
            } = prepare(*request, cancel).await?;
            let (strategies, variants) = load(&setup, plugins.clone(), cancel).await?;
            let mut log = RunLog::create(&output_dir, &setup.model.name, setup.started_at)?;
            log.append(&LogEvent::RunStarted(Box::new(setup.clone())))?;
            Ok(Opened {
                setup,
                snapshot,
                log,
                output_dir,
                book: TrialBook::default(),
                fit: None,
                plugins: strategies,
                variants,
                host: plugins,
                measured_variants: Vec::new(),
                api_key,
                notes,
            })
        }
        Start::Resume {
            log,
            llama_server,
            api_key,
        } => {
            let resumed = resume::resume(&log, llama_server, api_key.clone(), cancel).await?;
            let (strategies, variants) = load(&resumed.setup, plugins.clone(), cancel).await?;
            Ok(Opened {
                variants,
                host: plugins,
                measured_variants: resumed.variants,
                output_dir: resume::output_dir(&log),
                setup: resumed.setup,
                snapshot: resumed.snapshot,
                log: resumed.log,
                book: resumed.book,
                fit: resumed.fit,
                plugins: strategies,
                api_key,
                notes: resumed.notes,
            })
        }
    }
}

/// The run's plugins. Loading compiles them on a first run (seconds): a signal must not
/// wait.
async fn load(
    setup: &RunSetup,
    plugins: Arc<PluginHost>,
    cancel: &CancellationToken,
) -> Result<(Plugins, Option<VariantSearch>), TuneFailure> {
    let setup = setup.clone();
    let loading = tokio::task::spawn_blocking(move || {
        let variants = measures_variants(&setup)
            .then(|| load_variant_search(&plugins, &setup))
            .transpose()?;
        Ok((setup.load_plugins(&plugins)?, variants))
    });
    match until_cancelled(cancel, loading).await? {
        Ok(loaded) => loaded.map_err(TuneFailure::PluginLoad),
        Err(panic) => Err(TuneFailure::Internal(format!(
            "loading the plugins failed: {panic}"
        ))),
    }
}

/// What the driver measured: the limits, every trial, the fit baseline and the
/// variants' rows.
type Measured = (
    Limits,
    Vec<TrialRecord>,
    Option<FitBaseline>,
    Vec<VariantOutcome>,
    Option<OffloadOutcome>,
);

/// The fit baseline (unless the log has it) and the driver's search: the limits, every
/// trial, the baseline, and (several variants) the frontier's rows.
async fn measure(
    run: &mut Opened,
    show_progress: bool,
    cancel: &CancellationToken,
) -> Result<Measured, TuneFailure> {
    let setup = &run.setup;
    let plan = setup.plan();
    let thresholds = setup.thresholds();
    let mut runner = setup.runner(run.api_key.clone());
    let fit = match run.fit.take() {
        Some(fit) => Some(fit),
        None => {
            let fit = fit_baseline_of(setup, &runner, cancel).await;
            if let (Some(fit), false) = (&fit, cancel.is_cancelled()) {
                run.log
                    .append(&LogEvent::FitBaseline { fit: fit.clone() })?;
            }
            fit
        }
    };
    let spec = match runner.spec() {
        BackendSpec::LlamaServer(spec) => Some(spec.clone()),
        _ => None,
    };
    let health_timeout =
        std::time::Duration::from_secs_f64(runner.settings().health_timeout_s.max(1.0));
    let mut observer = LogObserver::new(
        &mut run.log,
        PhaseProgress::new(show_progress),
        setup.backend,
    );
    let mut driver = Driver::new(
        &mut runner,
        &mut observer,
        std::mem::take(&mut run.book),
        &run.snapshot,
        &thresholds,
        cancel.clone(),
    );
    let outcome = match (run.variants.take(), spec) {
        (Some(search), Some(spec)) => {
            let mut loader = SetupPlugins {
                host: run.host.clone(),
                setup,
            };
            let known = run
                .measured_variants
                .iter()
                .filter_map(|o| Some((o.variant, o.quality?)))
                .collect();
            let mut judge = ServerQuality::new(
                &spec,
                setup.model.trained_context,
                health_timeout,
                known,
                cancel,
            );
            let mut frontier = Frontier {
                search,
                plugins: &mut loader,
                judge: &mut judge,
                max_kld: setup.config.ozone.max_kld,
            };
            driver
                .run_frontier(&plan, &mut run.plugins.concurrency, &mut frontier)
                .await
                .map(|f| (f.limits, f.rows, None))
        }
        (_, spec) => {
            let mut offload = SetupOffload {
                host: run.host.clone(),
                setup,
                spec,
                health_timeout,
            };
            driver
                .run_offloading(&plan, &mut run.plugins, &mut offload)
                .await
                .map(|(limits, offload)| (limits, Vec::new(), offload))
        }
    };
    driver.observer.finished();
    let trials = driver.book.records().to_vec();
    drop(driver);
    let log = run.log.path().to_path_buf();
    outcome
        .map(|(limits, rows, offload)| (limits, trials, fit, rows, offload))
        .map_err(|e| TuneFailure::of_driver(e, &log))
}

/// llama.cpp's own fit on this machine, for a llama-server run (one extra start without
/// `-c`, at the first context trial's shape, under the run's limits); `None` for other
/// backends. The rule is the backend's (`llama_server::fit_baseline`).
async fn fit_baseline_of(
    setup: &RunSetup,
    runner: &crate::trial::TrialRunner,
    cancel: &CancellationToken,
) -> Option<FitBaseline> {
    let BackendSpec::LlamaServer(spec) = runner.spec() else {
        return None;
    };
    let params = setup.params();
    let plan = setup.plan();
    let request = FitRequest {
        config: trial_config(plan.variant, 0, plan.initial_batch, 1),
        margin_mib: params.fit_target_mb.unwrap_or(DEFAULT_FIT_MARGIN_MIB),
        gpu_inference: !cpu_inference(&setup.hardware, &params),
        sampler: sampler(&setup.config, setup.thresholds()),
        health_timeout: std::time::Duration::from_secs_f64(
            runner.settings().health_timeout_s.max(1.0),
        ),
    };
    Some(fit_baseline(spec, &request, cancel).await)
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
