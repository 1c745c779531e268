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

use super::command::{fit_command_line, LlamaServerSpec};
use super::process::ManagedServer;
use crate::guard::{Sampler, SamplerOptions};
use crate::record::{FitBaseline, FitSource, TrialConfig};

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

fn leading_number(text: &str) -> Option<u32> {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
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
