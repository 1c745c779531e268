//! llama.cpp's own fit as a baseline: llama-server started once without `-c`, auto-fit
//! on (`-fit on`, margin `-fitt`, 1024 MiB per device by default), sizes the context to
//! free device memory by a dry run of its allocator (`common/fit.cpp`). Ozone reads the
//! context it settled on from `/props` (`default_generation_settings.n_ctx`), else its
//! log, and stops it. Trials never see it: they all run with `-fit off`.
//!
//! The fit server runs under a sampler with the run's own limits, so a fit that takes
//! more than the user allows (a GPU-memory budget on a shared card) is stopped at once
//! and reported as such.

use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use ozone_sdk::Offload;

use super::breakdown::exit_breakdown;
use super::command::{fit_command_line, LlamaServerSpec};
use super::process::ManagedServer;
use crate::guard::{Sampler, SamplerOptions};
use crate::record::{FitBaseline, FitOffload, FitOffloadSource, FitSource, TrialConfig};

/// llama-server's default margin per device (`-fitt`), MiB.
pub const DEFAULT_FIT_MARGIN_MIB: u64 = 1024;

/// What a fit run is asked to do.
#[derive(Debug, Clone)]
pub struct FitRequest {
    /// The shape of the run's first context trial (its batch, ubatch, KV cache type);
    /// the context is left to fit, one slot.
    pub config: TrialConfig,
    pub margin_mib: u64,
    /// Inference runs on a GPU (a GPU was seen and layers are offloaded): fit sizes device
    /// memory, so on the CPU it does not apply and the start is not spent.
    pub gpu_inference: bool,
    /// The run's sampler, with its thresholds.
    pub sampler: SamplerOptions,
    pub health_timeout: Duration,
}

/// Starts llama-server with fit on, reads the context it settled on, stops it.
pub async fn fit_baseline(
    spec: &LlamaServerSpec,
    request: &FitRequest,
    cancel: &CancellationToken,
) -> FitBaseline {
    if !request.gpu_inference {
        return FitBaseline::NotApplicable {
            reason: "inference runs on the CPU here; llama.cpp's fit sizes GPU memory".into(),
        };
    }
    let config = TrialConfig {
        concurrency: 1,
        ..request.config.clone()
    };
    let command = fit_command_line(spec, &config, request.margin_mib);
    tracing::info!(
        "llama.cpp's own fit: one llama-server start without -c (margin {} MiB), before the trials",
        request.margin_mib
    );
    let sampler = match Sampler::start(SamplerOptions {
        kill_on_breach: true,
        ..request.sampler.clone()
    }) {
        Ok(sampler) => sampler,
        Err(e) => {
            return FitBaseline::Failed {
                message: format!("the hardware sampler cannot start: {e}"),
                log_tail: Vec::new(),
            }
        }
    };
    let breaches = sampler.breaches();
    let watch = |pid: u32| sampler.watch_pid(Some(pid));
    // Not cut short on a breach: the sampler kills the server, the start then fails with
    // the log's last lines, which may still say the context it was allocating.
    let started =
        ManagedServer::start_command(spec, &command, request.health_timeout, cancel, &watch).await;
    let breach = breaches.borrow().clone();
    let (log, props_ctx, start_failure) = match started {
        Ok(mut server) => {
            let props_ctx = server.granted_ctx();
            let log = server.log_lines();
            server.stop().await;
            (log, props_ctx, None)
        }
        Err(failure) => (failure.log_tail, None, Some(failure.failure.message)),
    };
    let peaks = tokio::task::spawn_blocking(move || sampler.stop().peaks)
        .await
        .unwrap_or_default();
    let from_log = parse_fit_log(&log);
    let (ctx, source) = match (props_ctx, from_log.settled_ctx()) {
        (Some(ctx), _) => (ctx, FitSource::Props),
        (None, Some(ctx)) => (ctx, FitSource::Log),
        (None, None) => {
            let message = match (
                &breach,
                cancel.is_cancelled(),
                from_log.failed,
                start_failure,
            ) {
                (_, true, _, _) => "interrupted".into(),
                (Some(b), ..) => format!("stopped before it said its context: {b}"),
                (None, _, Some(gave_up), _) => gave_up,
                (None, _, None, Some(failure)) => failure,
                (None, _, None, None) => "llama-server did not say its context".into(),
            };
            return FitBaseline::Failed {
                message,
                log_tail: log.iter().rev().take(40).rev().cloned().collect(),
            };
        }
    };
    FitBaseline::Fitted {
        ctx,
        margin_mib: request.margin_mib,
        reduced_from: from_log.reduced.map(|(from, _)| from),
        source,
        peaks,
        breach,
        command,
    }
}

/// What a llama-server log says about fit, in the formats of its versions:
/// `llama_params_fit: context size reduced from 65536 to 4096 -> …` (2025),
/// `common_params_fit_impl: context size reduced from … to … -> … in total` (2026), the
/// slot lines (`n_ctx_slot = N`, `new slot, n_ctx = N`) and fit's own failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitLog {
    /// (from, to) of fit's context reduction.
    pub reduced: Option<(u32, u32)>,
    /// Fit found everything fits with the initial parameters.
    pub unchanged: bool,
    /// The context of a slot as the server set it up.
    pub slot_ctx: Option<u32>,
    /// The context being allocated (`llama_context: n_ctx = N`; one slot: the same).
    pub context_ctx: Option<u32>,
    /// Fit gave up (`failed to fit params to free device memory: …`).
    pub failed: Option<String>,
}

impl FitLog {
    /// The context the server runs with: its slot line, else fit's reduction.
    pub fn settled_ctx(&self) -> Option<u32> {
        self.slot_ctx
            .or(self.context_ctx)
            .or(self.reduced.map(|(_, to)| to))
    }
}

pub fn parse_fit_log(lines: &[String]) -> FitLog {
    let mut log = FitLog::default();
    for line in lines {
        if let Some(rest) = after(line, "context size reduced from ") {
            let mut numbers = rest.split(" to ").map(leading_number);
            if let (Some(Some(from)), Some(Some(to))) = (numbers.next(), numbers.next()) {
                log.reduced = Some((from, to));
            }
        } else if line.contains("no changes needed") {
            log.unchanged = true;
        } else if let Some(rest) = after(line, "failed to fit params to free device memory: ") {
            log.failed = Some(format!("llama.cpp's fit gave up: {}", rest.trim()));
        } else if let Some(n) = after(line, "n_ctx_slot = ").and_then(leading_number) {
            log.slot_ctx = Some(n);
        } else if let Some(n) = after(line, "new slot, n_ctx = ").and_then(leading_number) {
            log.slot_ctx = log.slot_ctx.or(Some(n));
        } else if let Some(n) = context_line(line) {
            log.context_ctx = Some(n);
        }
    }
    log
}

/// `llama_context: n_ctx         = 8192` (and `llama_new_context_with_model:` before it).
fn context_line(line: &str) -> Option<u32> {
    let rest = after(line, "llama_context: n_ctx ")
        .or_else(|| after(line, "llama_new_context_with_model: n_ctx "))?;
    leading_number(rest.trim_start().strip_prefix('=')?)
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| &line[i + marker.len()..])
}

/// The number `text` starts with (after spaces), in whatever width the caller reads.
fn leading_number<N: std::str::FromStr>(text: &str) -> Option<N> {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What a fit-at-a-context run is asked to do.
#[derive(Debug, Clone)]
pub struct FitOffloadRequest {
    /// The configuration to fit: its context (per slot, times its concurrency as a trial
    /// would run it), batch, ubatch and KV cache type.
    pub config: TrialConfig,
    /// `-fitt`: device memory fit must leave free, MiB.
    pub margin_mib: u64,
    /// The run's sampler, with its thresholds: a fit that takes more than the user allows
    /// is stopped at once.
    pub sampler: SamplerOptions,
    pub health_timeout: Duration,
}

/// Starts llama-server with `-fit on -c CTX -fitt MARGIN` and no `-ngl` (fit only changes
/// what was not set, and `-ngl` set by the user makes it give up), reads back the offload
/// it chose from the log — the layers the server loaded on the device and, for a MoE
/// model, how many layers' experts fit left in system memory — and stops it.
///
/// `spec.gpu_layers` is ignored. A `-ngl` in `spec.extra_args` is the user's: where it
/// fits, fit changes nothing and the offload read is that `-ngl`; where it does not, fit
/// gives up, reported as [`FitOffload::NotChosen`] in fit's own words.
pub async fn fit_offload(
    spec: &LlamaServerSpec,
    request: &FitOffloadRequest,
    cancel: &CancellationToken,
) -> FitOffload {
    let ctx = request.config.ctx;
    let command = fit_ctx_command_line(spec, &request.config, request.margin_mib);
    tracing::info!(
        "llama.cpp's fit at context {ctx}: one llama-server start with -fit on (margin {} MiB)",
        request.margin_mib
    );
    let not_chosen = |reason: String, log_tail: Vec<String>| FitOffload::NotChosen {
        ctx,
        reason,
        log_tail,
        command: command.clone(),
    };
    let sampler = match Sampler::start(SamplerOptions {
        kill_on_breach: true,
        ..request.sampler.clone()
    }) {
        Ok(sampler) => sampler,
        Err(e) => {
            return not_chosen(
                format!("the hardware sampler cannot start: {e}"),
                Vec::new(),
            )
        }
    };
    let breaches = sampler.breaches();
    let watch = |pid: u32| sampler.watch_pid(Some(pid));
    let started =
        ManagedServer::start_command(spec, &command, request.health_timeout, cancel, &watch).await;
    let (log, start_failure) = match started {
        Ok(mut server) => {
            // Stopped, so that it prints its breakdown; then its whole log.
            server.stop().await;
            (server.log_lines(), None)
        }
        Err(failure) => (failure.log_tail, Some(failure.failure.message)),
    };
    let breach = breaches.borrow().clone();
    let peaks = tokio::task::spawn_blocking(move || sampler.stop().peaks)
        .await
        .unwrap_or_default();
    let tail = || log.iter().rev().take(40).rev().cloned().collect::<Vec<_>>();
    let read = parse_fit_offload(&log);
    if cancel.is_cancelled() {
        return not_chosen("interrupted".into(), tail());
    }
    if let Some(gave_up) = &read.failed {
        return not_chosen(gave_up.clone(), tail());
    }
    if let (Some(failure), None) = (&start_failure, &breach) {
        return not_chosen(failure.clone(), tail());
    }
    let (offload, source) = match (read.loaded, read.projected) {
        (Some(loaded), projected) => (
            Offload {
                gpu_layers: loaded,
                cpu_moe_layers: projected.map_or(0, |p| p.cpu_moe_layers),
            },
            FitOffloadSource::Loaded,
        ),
        (None, Some(projected)) => (projected, FitOffloadSource::Projected),
        (None, None) => {
            let reason = match &breach {
                Some(b) => format!("stopped before it said its offload: {b}"),
                None => "llama-server did not say how many layers it offloaded (its \
                         verbosity must be 4 or more: LLAMA_ARG_LOG_VERBOSITY)"
                    .into(),
            };
            return not_chosen(reason, tail());
        }
    };
    FitOffload::Chosen {
        ctx,
        margin_mib: request.margin_mib,
        offload,
        layers: read.layers,
        projected_mib: read.projected_mib,
        source,
        memory: exit_breakdown(&log),
        peaks,
        breach,
        command,
    }
}

/// The fit command line with the context set: a trial's `-c` (context per slot times the
/// slots), so fit sizes the offload for what the trial at this configuration would hold.
pub fn fit_ctx_command_line(
    spec: &LlamaServerSpec,
    config: &TrialConfig,
    margin_mib: u64,
) -> Vec<String> {
    let mut args = fit_command_line(spec, config, margin_mib);
    // Fit decides the offload itself: no `-ngl` (nor `--n-cpu-moe`) from the variant.
    for flag in ["-ngl", "--n-cpu-moe"] {
        if let Some(at) = args.iter().position(|a| a == flag) {
            args.drain(at..(at + 2).min(args.len()));
        }
    }
    let total_ctx = u64::from(config.ctx) * u64::from(config.concurrency.max(1));
    // After `-m MODEL`, before the spec's own flags (which come last and may override).
    let at = args.len().min(3);
    args.splice(at..at, ["-c".to_owned(), total_ctx.to_string()]);
    args
}

/// What a llama-server log says about the offload fit chose, in the formats of its
/// versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitOffloadLog {
    /// `load_tensors: offloaded 5/9 layers to GPU`: the layers the server loaded on its
    /// devices (`-ngl`), the last such line.
    pub loaded: Option<u32>,
    /// `9` of `offloaded 5/9`: the layers it can offload.
    pub layers: Option<u32>,
    /// Fit's own summary of its choice: per device `N layers` (2026; a MoE model's `(K
    /// overflowing)` the layers whose experts overflow, to system memory on the last
    /// device), or `D dense-only layers, F full layers` (2025, dense-only: experts in
    /// system memory), summed.
    pub projected: Option<Offload>,
    /// The device memory that summary projects, MiB, summed over devices.
    pub projected_mib: Option<u64>,
    /// `projected to use N MiB of device memory vs. M MiB of free device memory`: with
    /// the parameters before fit changed them.
    pub initial_projection_mib: Option<(u64, u64)>,
    /// Fit found everything fits (`no changes needed`).
    pub unchanged: bool,
    /// Fit gave up (`failed to fit params to free device memory: …`).
    pub failed: Option<String>,
}

pub fn parse_fit_offload(lines: &[String]) -> FitOffloadLog {
    let mut log = FitOffloadLog::default();
    // Per device, in order of appearance: the latest summary line wins.
    let mut devices: Vec<(String, DeviceChoice)> = Vec::new();
    let mut total = None;
    for line in lines {
        if let Some(rest) = after(line, "layers to GPU").and(after(line, "offloaded ")) {
            let mut parts = rest.split('/');
            if let (Some(Some(n)), Some(Some(m))) = (
                parts.next().map(leading_number),
                parts.next().map(leading_number),
            ) {
                log.loaded = Some(n);
                log.layers = Some(m);
            }
        } else if let Some(rest) = after(line, "failed to fit params to free device memory: ") {
            log.failed = Some(format!("llama.cpp's fit gave up: {}", rest.trim()));
        } else if line.contains("no changes needed") {
            log.unchanged = true;
        } else if let Some(rest) = after(line, "projected to use ") {
            let used = leading_number(rest);
            let free = after(rest, "vs. ").and_then(leading_number);
            if let (Some(used), Some(free)) = (used, free) {
                log.initial_projection_mib = Some((used, free));
            }
        } else if let Some(rest) = after(line, "set to use ").filter(|r| r.contains("in total")) {
            // 2025: `set to use 35 dense-only and 22 full GPU layers in total`.
            let dense: Option<u32> = leading_number(rest);
            let full: Option<u32> = after(rest, " and ").and_then(leading_number);
            if let (Some(dense), Some(full)) = (dense, full) {
                total = Some(Offload {
                    gpu_layers: dense + full,
                    cpu_moe_layers: dense,
                });
            }
        } else if let Some((device, choice)) = device_choice(line) {
            match devices.iter_mut().find(|(d, _)| *d == device) {
                Some((_, c)) => *c = choice,
                None => devices.push((device, choice)),
            }
        }
    }
    if !devices.is_empty() {
        let last = devices.len() - 1;
        let mut offload = Offload {
            gpu_layers: 0,
            cpu_moe_layers: 0,
        };
        let mut mib = 0u64;
        for (i, (_, c)) in devices.iter().enumerate() {
            offload.gpu_layers += c.layers;
            offload.cpu_moe_layers += match c.experts_on_host {
                ExpertsOnHost::DenseOnly(n) => n,
                // Overflow goes to the next device; from the last one, to system memory.
                ExpertsOnHost::Overflowing(n) if i == last => n,
                ExpertsOnHost::Overflowing(_) => 0,
            };
            mib = mib.saturating_add(c.used_mib);
        }
        log.projected = Some(offload);
        log.projected_mib = Some(mib);
    } else {
        log.projected = total;
    }
    log
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeviceChoice {
    layers: u32,
    experts_on_host: ExpertsOnHost,
    used_mib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpertsOnHost {
    DenseOnly(u32),
    Overflowing(u32),
}

/// Fit's per-device summary line, after the function name:
/// `  - Vulkan0 (llvmpipe …):  5 layers,     91 MiB used,   1956 MiB free` (2026),
/// `  - CUDA0 (…): 42 layers (41 overflowing),   5658 MiB used, …` (2026, MoE),
/// `  - ROCm0 (…): 12 dense-only layers, 7 full layers,  15000 MiB used, …` (2025).
fn device_choice(line: &str) -> Option<(String, DeviceChoice)> {
    if !line.contains("params_fit") || !line.contains(" MiB used") {
        return None;
    }
    let body = &line[line.find("  - ")? + 4..];
    // The device's label ends at the colon before the figures.
    let (device, figures) = body.match_indices(':').find_map(|(i, _)| {
        let rest = &body[i + 1..];
        rest.trim_start()
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| (body[..i].trim().to_owned(), rest))
    })?;
    let used_mib = figures
        .split(',')
        .find(|f| f.contains("MiB used"))
        .and_then(leading_number)?;
    let choice = if let Some(dense) = figures
        .split(',')
        .find(|f| f.contains("dense-only"))
        .and_then(leading_number::<u32>)
    {
        let full: u32 = figures
            .split(',')
            .find(|f| f.contains("full layers"))
            .and_then(leading_number)?;
        DeviceChoice {
            layers: dense + full,
            experts_on_host: ExpertsOnHost::DenseOnly(dense),
            used_mib,
        }
    } else {
        let layers = leading_number(figures)?;
        let overflowing = after(figures, "(")
            .filter(|r| r.contains("overflowing"))
            .and_then(leading_number)
            .unwrap_or(0);
        DeviceChoice {
            layers,
            experts_on_host: ExpertsOnHost::Overflowing(overflowing),
            used_mib,
        }
    };
    Some((device, choice))
}

/// The part of `GET /props` the baseline reads: the context per slot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Props {
    pub default_generation_settings: GenerationSettings,
    pub total_slots: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GenerationSettings {
    pub n_ctx: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/llama_server")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn lines(name: &str) -> Vec<String> {
        fixture(name).lines().map(str::to_owned).collect()
    }

    #[test]
    fn rocm_three_gpus_2025_reduced_the_context_then_moved_layers() {
        let log = parse_fit_log(&lines("fit-rocm-3gpu-pr16653.log"));
        assert_eq!(log.reduced, Some((65_536, 4096)));
        assert!(!log.unchanged);
        assert_eq!(log.failed, None);
        assert_eq!(log.settled_ctx(), Some(4096));
    }

    #[test]
    fn a_context_set_by_the_user_is_left_alone() {
        // A -c 8192 run on a 6 GiB laptop GPU (Windows, 2026 format): fit keeps the
        // context and offloads layers instead; the log names no reduction.
        let log = parse_fit_log(&lines("fit-user-ctx-hilbertraum391.log"));
        assert_eq!(log.reduced, None);
        assert_eq!(log.settled_ctx(), None);
    }

    #[test]
    fn fit_that_gives_up_and_the_slot_lines() {
        // Tensor-parallel split mode: fit refuses; the slots keep the trained context.
        let log = parse_fit_log(&lines("fit-split-tensor-pr22616.log"));
        assert!(
            log.failed
                .as_deref()
                .is_some_and(|f| f.contains("not implemented for SPLIT_MODE_TENSOR")),
            "{log:?}"
        );
        assert_eq!(log.slot_ctx, Some(262_144));
        // The wheel's own llama-server (CPU): the slot line of a -np 4 start.
        let cpu = parse_fit_log(&lines("fit-cpu-wheel.log"));
        assert_eq!(cpu.slot_ctx, Some(32_768));
        assert_eq!(cpu.reduced, None);
    }

    #[test]
    fn memory_tables_are_not_contexts_and_context_lines_are() {
        // The RTX 5090 excerpt stops before fit decides: nothing is read into it.
        let cuda = parse_fit_log(&lines("fit-cuda-rtx5090-pr25465.log"));
        assert_eq!(cuda, FitLog::default());
        let context = parse_fit_log(&lines("context-cuda-issue10664.log"));
        assert_eq!(context.context_ctx, Some(8192));
        assert_eq!(context.settled_ctx(), Some(8192));
    }

    #[test]
    fn props_bodies_say_the_context_per_slot() {
        let trial: Props = serde_json::from_str(&fixture("props.json")).expect("props");
        assert_eq!(trial.default_generation_settings.n_ctx, 4096);
        let cpu: Props = serde_json::from_str(&fixture("props-fit-cpu.json")).expect("props");
        assert_eq!(cpu.default_generation_settings.n_ctx, 32_768);
        assert_eq!(cpu.total_slots, Some(1));
    }

    #[test]
    fn fit_at_a_context_on_lavapipe_keeps_fewer_layers_on_the_device() {
        // -fit on -c 4096 -fitt 1950 on lavapipe (2048 MiB): 98 MiB to fill, the
        // generated 8-layer model needs 156 MiB with everything on the device.
        let log = parse_fit_offload(&lines("fit-ctx-vulkan-lavapipe.log"));
        assert_eq!(log.initial_projection_mib, Some((156, 2048)));
        assert_eq!(
            log.projected,
            Some(Offload {
                gpu_layers: 5,
                cpu_moe_layers: 0
            })
        );
        assert_eq!(log.projected_mib, Some(91));
        assert_eq!((log.loaded, log.layers), (Some(5), Some(9)));
        assert_eq!(log.failed, None);
        assert!(!log.unchanged);
        // At -c 512 everything fits: no changes, all 9 layers loaded.
        let small = parse_fit_offload(&lines("fit-ctx-unchanged-vulkan-lavapipe.log"));
        assert!(small.unchanged);
        assert_eq!(small.projected, None);
        assert_eq!((small.loaded, small.layers), (Some(9), Some(9)));
    }

    #[test]
    fn fit_that_gives_up_layers_in_public_gpu_runs() {
        // ROCm, three GPUs, a MoE model (llama.cpp PR #16653, 2025 format): 35 layers
        // with their experts in system memory and 22 whole on the devices.
        let rocm = parse_fit_offload(&lines("fit-rocm-3gpu-pr16653.log"));
        assert_eq!(
            rocm.projected,
            Some(Offload {
                gpu_layers: 57,
                cpu_moe_layers: 35
            })
        );
        assert_eq!(
            rocm.initial_projection_mib, None,
            "a total, not free memory"
        );
        // CUDA laptop GPU (PR #22673, 2026 format): fit's per-device summary of its
        // dense pass, 42 layers projected at 5658 MiB.
        let cuda = parse_fit_offload(&lines("fit-moe-cuda-mtp-pr22673.log"));
        assert_eq!(cuda.projected.map(|o| o.gpu_layers), Some(42));
        assert_eq!(cuda.projected_mib, Some(5658));
        assert_eq!(cuda.loaded, None);
        // A context set by the user: fit will give up layers, the excerpt ends before.
        let user = parse_fit_offload(&lines("fit-user-ctx-hilbertraum391.log"));
        assert_eq!(user.initial_projection_mib, Some((5856, 5173)));
        assert_eq!(user.projected, None);
        // Fit refusing (tensor split): said in its words.
        let refused = parse_fit_offload(&lines("fit-split-tensor-pr22616.log"));
        assert!(
            refused
                .failed
                .as_deref()
                .is_some_and(|f| f.contains("SPLIT_MODE_TENSOR")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_summary_formats_of_fits_versions() {
        let text = [
            "llama_params_fit:   - ROCm0 (AMD Radeon Graphics)     : 12 dense-only layers,  7 full layers,  15000 MiB used,   1304 MiB free",
            "llama_params_fit:   - ROCm1 (AMD Radeon RX 6800)      : 11 dense-only layers,  6 full layers,  15100 MiB used,   1268 MiB free",
            "common_params_fit_impl:   - CUDA0 (NVIDIA GeForce RTX 4090): 30 layers ( 2 overflowing),  22000 MiB used,   1000 MiB free",
            "common_params_fit_impl:   - CUDA1 (NVIDIA GeForce RTX 4090): 20 layers (12 overflowing),  22500 MiB used,    500 MiB free",
            "common_params_fit_impl:   - CUDA0 (NVIDIA GeForce RTX 4090): 31 layers ( 3 overflowing),  22100 MiB used,    900 MiB free",
        ]
        .map(str::to_owned);
        let v2025 = parse_fit_offload(&text[..2]);
        assert_eq!(
            v2025.projected,
            Some(Offload {
                gpu_layers: 36,
                cpu_moe_layers: 23
            })
        );
        assert_eq!(v2025.projected_mib, Some(30_100));
        // 2026: the later line for a device replaces the earlier; only the last device
        // overflows to system memory.
        let v2026 = parse_fit_offload(&text[2..]);
        assert_eq!(
            v2026.projected,
            Some(Offload {
                gpu_layers: 51,
                cpu_moe_layers: 12
            })
        );
        assert_eq!(v2026.projected_mib, Some(44_600));
    }

    #[test]
    fn the_fit_command_sets_the_context_of_the_trial() {
        let spec = LlamaServerSpec {
            binary: "/opt/llama-server".into(),
            model: "/m/model.gguf".into(),
            extra_args: vec!["--no-warmup".into()],
        };
        let config = TrialConfig {
            ctx: 4096,
            batch: 512,
            ubatch: 512,
            concurrency: 2,
            variant: crate::record::Variant {
                threads: Some(2),
                gpu_layers: Some(7),
                ..Default::default()
            },
        };
        assert_eq!(
            fit_ctx_command_line(&spec, &config, 1950).join(" "),
            "/opt/llama-server -m /m/model.gguf -c 8192 -b 512 -ub 512 -np 2 -kvu -ctk f16 \
             -ctv f16 -fa auto -t 2 -fit on -fitt 1950 --cache-ram 0 --metrics --no-warmup"
        );
    }

    #[tokio::test]
    async fn on_the_cpu_fit_does_not_apply_and_nothing_starts() {
        let spec = LlamaServerSpec {
            binary: "/nonexistent/llama-server".into(),
            model: "/nonexistent/model.gguf".into(),
            extra_args: Vec::new(),
        };
        let request = FitRequest {
            config: TrialConfig {
                ctx: 0,
                batch: 64,
                ubatch: 64,
                concurrency: 1,
                variant: Default::default(),
            },
            margin_mib: DEFAULT_FIT_MARGIN_MIB,
            gpu_inference: false,
            sampler: SamplerOptions::default(),
            health_timeout: Duration::from_secs(1),
        };
        let fit = fit_baseline(&spec, &request, &CancellationToken::new()).await;
        assert!(
            matches!(&fit, FitBaseline::NotApplicable { reason } if reason.contains("CPU")),
            "{fit:?}"
        );
    }
}
