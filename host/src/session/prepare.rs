//! A new run's set-up, measured on this machine before its first trial: the probe, the
//! model's facts, a warm-start hint, the CPU threshold set aside for CPU inference, and
//! a memory headroom resolved to a budget over the server's own footprint. `ozone tune`
//! and `ozone lab record` prepare their runs here.

use std::path::PathBuf;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendKind, BackendSpec, ModelMetadata};
use crate::config::Config;
use crate::guard::{gpu_budget_problem, live_reading_note, SamplerOptions};
use crate::hardware::process_gpu::availability;
use crate::hardware::{probe, HardwareSnapshot, ProbeOptions};
use crate::tune::setup::{backend_spec, plan, set_aside_cpu_threshold, thresholds};
use crate::tune::warm_start::{Key, WarmStartSource, WarmStartStore};
use crate::tune::{PluginUse, RunParameters, RunSetup};

use super::{resolve_headroom, until_cancelled, TuneFailure};

/// A new run, as the command line (or a bench, or `lab record`) asks for it.
pub struct RunRequest {
    /// The model as given: a `.gguf` path (absolute: the deploy files and `--resume`
    /// may run from another directory) or an Ollama tag.
    pub model_source: String,
    pub backend: BackendKind,
    /// The llama-server binary the trials run (resolved and absolute), for llama-server.
    pub server_binary: Option<PathBuf>,
    pub parameters: RunParameters,
    /// The configuration file with the command line's flags over it.
    pub config: Config,
    /// For an OpenAI-compatible server; never logged.
    pub api_key: Option<String>,
    /// Ignore remembered results (`--fresh`).
    pub fresh: bool,
    /// `--warm-start-from DIR`: limits other machines found, tried before this
    /// machine's own store.
    pub shared_warm_start: Option<Box<dyn WarmStartSource>>,
}

impl RunRequest {
    fn backend_spec(&self) -> BackendSpec {
        backend_spec(
            self.backend,
            &self.model_source,
            self.server_binary.clone(),
            &self.parameters,
            self.api_key.clone(),
        )
    }
}

/// A prepared run: its set-up, this machine's probe, and what the user should know
/// about how it was set up.
pub struct Prepared {
    pub setup: RunSetup,
    pub snapshot: HardwareSnapshot,
    pub notes: Vec<String>,
}

/// Sets a new run up on this machine (see the module's header); interruptible by
/// `cancel` until the first trial.
pub async fn prepare(
    request: RunRequest,
    cancel: &CancellationToken,
) -> Result<Prepared, TuneFailure> {
    let mut notes = Vec::new();
    let probing = tokio::task::spawn_blocking(|| probe(&ProbeOptions::default()));
    let snapshot = until_cancelled(cancel, probing)
        .await?
        .map_err(|e| TuneFailure::Internal(format!("the hardware probe failed: {e}")))?;
    let spec = request.backend_spec();
    // Before the model is read (hashing a large model takes a while).
    check_gpu_budget(&request.config, &spec, &snapshot)?;
    if request.config.ozone.gpu_memory_budget_mb.is_some() {
        notes.extend(budget_reading_note());
    }
    let model = model_metadata(&spec, cancel).await?;
    let mut params = request.parameters.clone();
    if !request.fresh {
        params.hint = shared_hint(&request, &snapshot, &model, &mut notes);
    }
    if !request.fresh && params.hint.is_none() && request.config.reuse_learned_configs() {
        params.hint = remembered_limit(&snapshot, &model, &request.config, &mut notes);
    }
    // The log and the report record the limits the trials were held to.
    let mut config = request.config.clone();
    notes.extend(set_aside_cpu_threshold(&mut config, &snapshot, &params));
    if let Some(trained) = model.trained_context {
        let min = config.ozone.min_context;
        if min > trained {
            notes.push(format!(
                "min_context {min} is above the model's trained context {trained}: the search \
                 stays at or below {trained}"
            ));
        }
    }
    let first = plan(&config, &model, &params).reference();
    let limits = thresholds(&config, &snapshot, &params);
    let footprint = resolve_headroom(&mut config, &spec, &limits, &first, cancel)
        .await
        .map_err(TuneFailure::Footprint)?;
    if let (Some(f), Some(headroom)) = (footprint, config.ozone.process_memory_headroom_mb) {
        notes.push(f.note(headroom));
    }
    let setup = RunSetup {
        log_version: crate::report::LOG_VERSION,
        ozone_version: env!("CARGO_PKG_VERSION").to_string(),
        model_source: request.model_source,
        model,
        hardware: snapshot.clone(),
        plugins: PluginUse::of(&config),
        config,
        backend: request.backend,
        versions: Default::default(),
        parameters: Some(params),
        server_binary: request.server_binary,
        started_at: Utc::now(),
    };
    Ok(Prepared {
        setup,
        snapshot,
        notes,
    })
}

/// The model's facts, as the backend reads them (a model file's header and digest).
pub(super) async fn model_metadata(
    spec: &BackendSpec,
    cancel: &CancellationToken,
) -> Result<ModelMetadata, TuneFailure> {
    until_cancelled(cancel, spec.model_metadata())
        .await?
        .map_err(|e| match spec {
            BackendSpec::LlamaServer(_) => TuneFailure::Model(e),
            _ => TuneFailure::Server(e),
        })
}

pub(super) fn check_gpu_budget(
    config: &Config,
    spec: &BackendSpec,
    snapshot: &HardwareSnapshot,
) -> Result<(), TuneFailure> {
    gpu_budget_refusal(config, spec, snapshot).map_or(Ok(()), |why| Err(TuneFailure::BadInput(why)))
}

/// Why the configured GPU-memory budget cannot be enforced here, if it cannot: it needs
/// a server Ozone starts (its pids, its log), and must be below the GPU's total
/// (`guard::gpu_budget_problem`).
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
    gpu_budget_problem(budget_mb, snapshot.gpu_memory_total_bytes())
}

/// How the budget is held where no per-process GPU reading exists here (`None`: NVML or
/// amdgpu reads it live).
fn budget_reading_note() -> Option<String> {
    let defaults = SamplerOptions::default();
    live_reading_note(&availability(
        &defaults.process_gpu,
        &defaults.sysfs_root,
        &defaults.proc_root,
    ))
}

/// The hint of `--warm-start-from` (asked for explicitly, so the config's
/// `reuse_learned_configs` does not turn it off; `--fresh` does).
fn shared_hint(
    request: &RunRequest,
    snapshot: &HardwareSnapshot,
    model: &ModelMetadata,
    notes: &mut Vec<String>,
) -> Option<u32> {
    let source = request.shared_warm_start.as_ref()?;
    let key = Key::new(snapshot, model.digest.as_deref()?);
    let (limit, note) = source.context_hint(&key, &request.config)?;
    tracing::info!("{note}");
    notes.push(note);
    Some(limit)
}

fn remembered_limit(
    snapshot: &HardwareSnapshot,
    model: &ModelMetadata,
    config: &Config,
    notes: &mut Vec<String>,
) -> Option<u32> {
    let digest = model.digest.as_deref()?;
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
