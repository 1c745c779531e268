//! The offload phase: at a context where every layer on the GPU did not fit in GPU
//! memory, how many layers (and, for a MoE model, which layers' experts) stay on the GPU.
//!
//! **When it runs** ([`offload_target`]): after the context search at full offload, when
//! the offload plugins are there (a llama-server run whose `-ngl` Ozone chooses), the
//! machine has a GPU (a probed one, or a device in a trial's llama.cpp breakdown or
//! device buffers), and a context trial with every layer on the GPU failed *for GPU
//! memory* (the VRAM threshold, the GPU-memory budget, or an out-of-device-memory load)
//! at a context above the largest verified one (or with none verified). It searches at
//! the largest such context: the context the run wanted and could not reach, often the
//! trained context. A CPU-only machine never fails for GPU memory, so it never runs
//! there; nor where the context search was bound by anything else.
//!
//! **How**: llama.cpp's fit at that context (`-fit on -c CTX`, once) is the plugin's
//! first proposal (`bounds.fit`); the plugin's proposals are screened, then its `best()`
//! is verified, at most [`MAX_VERIFICATIONS`] times, as the context search does. The
//! answer, its speed, the nearest step with more on the GPU that failed and fit's choice
//! go to the observer (`offload` in the log). Where the context search verified no
//! context at all, the run's limits are the offload's (its context, at that offload),
//! and the concurrency phase runs there.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use super::book::Requests;
use super::{trial_config, Driver, Plan, TrialExecutor, TuneError, TuneObserver};
use super::{ContractBreach, MAX_VERIFICATIONS};
use crate::hardware::HardwareSnapshot;
use crate::plugin::{trial_outcome, OffloadSearch, PluginError, Strategy};
use crate::record::{
    FailureKind, FitOffload, Limits, Metric, OffloadOutcome, OffloadStep, Phase, Stage,
    TrialConfig, TrialRecord, Verdict,
};
use ozone_sdk::{Offload, OffloadBounds};

/// The offload phase's real parts: llama.cpp's fit at a context, and the offload plugin.
pub trait OffloadPlugins {
    /// The layers the server can put on the GPU (blocks plus the output layer) and the
    /// layers with MoE experts; `None`: no offload search in this run (the user set
    /// `-ngl`, the backend is not llama-server, the model's layers are unknown).
    fn layers(&self) -> Option<(u32, u32)>;

    /// llama.cpp's fit at `config`'s context; `failed` is the trial with every layer on
    /// the GPU that failed there (its log names the device's free memory).
    fn fit(
        &mut self,
        config: &TrialConfig,
        failed: &TrialRecord,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Option<FitOffload>>;

    /// The offload plugin, its proposals held to `bounds`.
    fn load(&mut self, bounds: &OffloadBounds) -> Result<OffloadSearch, PluginError>;
}

/// No offload phase (the lab, and runs whose plugins do not offload).
pub struct NoOffload;

impl OffloadPlugins for NoOffload {
    fn layers(&self) -> Option<(u32, u32)> {
        None
    }

    async fn fit(
        &mut self,
        _config: &TrialConfig,
        _failed: &TrialRecord,
        _cancel: &CancellationToken,
    ) -> Option<FitOffload> {
        None
    }

    fn load(&mut self, _bounds: &OffloadBounds) -> Result<OffloadSearch, PluginError> {
        Err(PluginError::UnknownBuiltin(
            "(no offload plugin in this run)".to_string(),
        ))
    }
}

/// Whether `record` failed for GPU memory: the VRAM threshold or the GPU-memory budget
/// crossed, or an out-of-memory load whose log names a device allocation.
pub fn failed_for_gpu_memory(record: &TrialRecord) -> bool {
    if record.verdict == Verdict::Stable {
        return false;
    }
    if record
        .breach
        .as_ref()
        .is_some_and(|b| matches!(b.metric, Metric::Vram | Metric::GpuMemoryBudget))
    {
        return true;
    }
    let Some(failure) = &record.failure else {
        return false;
    };
    match failure.kind {
        FailureKind::ThresholdBreach(m) => matches!(m, Metric::Vram | Metric::GpuMemoryBudget),
        FailureKind::OutOfMemory => std::iter::once(&failure.message)
            .chain(&record.server_log_tail)
            .any(|line| DEVICE_OOM.iter().any(|s| line.contains(s))),
        _ => false,
    }
}

/// What llama.cpp's backends log when a device allocation fails.
const DEVICE_OOM: &[&str] = &[
    "cudaMalloc failed",
    "hipMalloc failed",
    "ErrorOutOfDeviceMemory",
    "out of device memory",
    "Device memory allocation",
    "ggml_metal",
    "CUDA error: out of memory",
];

/// Whether the machine has a GPU: a probed one, or a device in a trial's breakdown (or
/// a trial stopped for its device buffers at load).
fn has_gpu(snapshot: &HardwareSnapshot, records: &[TrialRecord]) -> bool {
    !snapshot.gpus.is_empty()
        || records.iter().any(|r| {
            r.memory_breakdown
                .as_ref()
                .is_some_and(|b| !b.devices.is_empty())
                || r.breach
                    .as_ref()
                    .is_some_and(|b| b.metric == Metric::GpuMemoryBudget)
        })
}

/// The context the offload phase searches at, and the trial with every layer on the GPU
/// that failed there for GPU memory (the module's rule); `None`: the phase does not run.
pub fn offload_target<'a>(
    plan: &Plan,
    limits: &Limits,
    records: &'a [TrialRecord],
    snapshot: &HardwareSnapshot,
) -> Option<&'a TrialRecord> {
    if plan.variant.gpu_layers.is_some() || !has_gpu(snapshot, records) {
        return None;
    }
    let verified = limits.max_context.unwrap_or(0);
    records
        .iter()
        .filter(|r| {
            r.phase == Phase::Context
                && r.config.variant == plan.variant
                && r.config.ctx > verified
                && failed_for_gpu_memory(r)
        })
        .max_by_key(|r| (r.config.ctx, r.id))
}

/// The offload a configuration runs (every layer where it sets none).
fn offload_of(config: &TrialConfig, layers: u32) -> Offload {
    Offload {
        gpu_layers: config.variant.gpu_layers.unwrap_or(layers).min(layers),
        cpu_moe_layers: config.variant.cpu_moe_layers,
    }
}

impl<E: TrialExecutor, O: TuneObserver + Send> Driver<'_, E, O> {
    /// The offload phase after the context search (see the module): `None` when it does
    /// not run.
    pub(super) async fn offload_phase<P: OffloadPlugins>(
        &mut self,
        plan: &Plan,
        limits: &Limits,
        plugins: &mut P,
    ) -> Result<Option<OffloadOutcome>, TuneError> {
        let Some((layers, expert_layers)) = plugins.layers() else {
            return Ok(None);
        };
        let Some(failed) = offload_target(plan, limits, self.book.records(), self.snapshot) else {
            return Ok(None);
        };
        let failed = failed.clone();
        let ctx = failed.config.ctx;
        let why = format!(
            "every layer on the GPU failed at {ctx} tokens for GPU memory (trial {}: {})",
            failed.id,
            failed
                .failure
                .as_ref()
                .map_or("not stable", |f| f.message.as_str())
        );
        self.observer.phase_started(Phase::Offload, 6);
        self.observer.note(
            Phase::Offload,
            &format!("{why}: searching how many layers stay on the GPU at {ctx}"),
        );
        let base = trial_config(plan.variant, ctx, plan.initial_batch, 1);
        let fit = plugins.fit(&base, &failed, &self.cancel).await;
        if self.cancel.is_cancelled() {
            return Err(TuneError::Interrupted);
        }
        let bounds = OffloadBounds {
            layers,
            expert_layers,
            ctx,
            fit: fit.as_ref().and_then(FitOffload::offload),
        };
        let mut plugin = plugins.load(&bounds)?;
        let first_id = self.book.next_id();
        let config_for = |o: Offload| {
            let mut config = base.clone();
            config.variant.gpu_layers = Some(o.gpu_layers);
            config.variant.cpu_moe_layers = o.cpu_moe_layers;
            config
        };
        let mut requests = Requests::default();
        let mut refuted: Vec<Offload> = Vec::new();
        let mut answer = None;
        for _ in 0..MAX_VERIFICATIONS {
            let best = self
                .search(
                    plan,
                    Phase::Offload,
                    plan.proposal_stage(),
                    &mut plugin,
                    config_for,
                    &mut requests,
                )
                .await?;
            let Some(offload) = self.checked_best(best, plugin.name(), "offload", None, |c| {
                (c.ctx == ctx && c.variant.gpu_layers.is_some()).then(|| offload_of(c, layers))
            })?
            else {
                break;
            };
            if refuted.contains(&offload) {
                return Err(ContractBreach::UnmeasuredBest {
                    plugin: plugin.name().to_string(),
                    what: "offload (its verification was not stable)",
                    value: offload.to_string(),
                }
                .into());
            }
            let config = config_for(offload);
            let record = match requests.seen_verified(&self.book, &config) {
                Some(record) => record,
                None => {
                    self.observer.decision(
                        Phase::Offload,
                        plugin.name(),
                        Some(offload.gpu_layers),
                        Stage::Verify,
                    );
                    self.trial(
                        plan,
                        Phase::Offload,
                        Stage::Verify,
                        config,
                        &mut requests,
                        |_| {},
                    )
                    .await?
                }
            };
            if record.verdict == Verdict::Stable {
                answer = Some((offload, record));
                break;
            }
            refuted.push(offload);
            plugin.observe(&trial_outcome(
                &record,
                self.snapshot,
                self.thresholds,
                &plan.timeouts.rule(),
            ))?;
        }
        let records = self.book.records();
        let own: Vec<&TrialRecord> = records
            .iter()
            .filter(|r| r.phase == Phase::Offload && r.id >= first_id && r.config.ctx == ctx)
            .collect();
        let more_on_gpu = |o: Offload, than: Option<Offload>| match than {
            None => true,
            Some(a) => {
                o.gpu_layers > a.gpu_layers
                    || (o.gpu_layers == a.gpu_layers && o.cpu_moe_layers < a.cpu_moe_layers)
            }
        };
        let next_failed = own
            .iter()
            .copied()
            .chain(std::iter::once(&failed))
            .filter(|r| r.verdict != Verdict::Stable)
            .map(|r| (offload_of(&r.config, layers), r))
            .filter(|(o, _)| more_on_gpu(*o, answer.as_ref().map(|(a, _)| *a)))
            .min_by_key(|(o, r)| (o.gpu_layers, std::cmp::Reverse(o.cpu_moe_layers), r.id))
            .map(|(offload, r)| OffloadStep {
                offload,
                trial_id: r.id,
                message: r
                    .failure
                    .as_ref()
                    .map_or_else(|| format!("{:?}", r.verdict), |f| f.message.clone()),
            });
        let verified = answer.as_ref().map(|(_, r)| r);
        let outcome = OffloadOutcome {
            ctx,
            why,
            layers,
            expert_layers,
            plugin: plugin.name().to_string(),
            offload: answer.as_ref().map(|(o, _)| *o),
            trial_id: verified.map(|r| r.id),
            decode_tps: verified.and_then(|r| r.decode_tps.as_ref()).map(|s| s.mean),
            prefill_tps: verified
                .and_then(|r| r.prefill_tps.as_ref())
                .map(|s| s.mean),
            ttft_ms: verified.and_then(|r| r.ttft_ms.as_ref()).map(|s| s.mean),
            peak_server_gpu_memory_bytes: verified.and_then(|r| r.peaks.server_gpu_mem_bytes),
            next_failed,
            fit,
            trials: own.len() as u32,
        };
        self.observer.offload_finished(&outcome);
        Ok(Some(outcome))
    }
}
