//! The offload section of the summary, console and report: per context measured, the
//! offload that fits (layers on the GPU of the total, MoE experts on the CPU) and the
//! decode and prefill speed it leaves, beside what llama.cpp's fit chose at the context
//! the offload phase searched — "32768: 52 of 65 layers on the GPU, 14.0 tok/s; 16384:
//! all 65 layers on the GPU, 41.0 tok/s".

use ozone_sdk::Offload;
use serde::{Deserialize, Serialize};

use crate::record::{placement, FitOffload, OffloadOutcome, Phase, Stage, TrialRecord, Verdict};

use super::LogEvent;

/// One context measured: the offload that fits there and its speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadRow {
    pub ctx: u32,
    /// `-ngl` (`layers`: all of them).
    pub gpu_layers: u32,
    pub layers: u32,
    /// `--n-cpu-moe`.
    pub cpu_moe_layers: u32,
    pub decode_tps: Option<f64>,
    pub prefill_tps: Option<f64>,
    /// The verification behind the row.
    pub trial_id: u32,
    /// What llama.cpp's fit chose at this context, where it ran here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<Offload>,
    /// Fit's projection of the device memory its choice takes, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit_projected_mib: Option<u64>,
}

/// The summary's `offload` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadSummary {
    /// Largest context first: the offload phase's answer, then the largest context
    /// verified with every layer on the GPU.
    pub contexts: Vec<OffloadRow>,
    /// The offload phase in full: why it ran, the step that failed, fit's choice.
    pub search: OffloadOutcome,
}

impl OffloadSummary {
    /// The section of a run whose offload phase ended with `search`.
    pub fn new(search: &OffloadOutcome, trials: &[TrialRecord]) -> Self {
        let mut contexts = Vec::new();
        let (fit, projected) = match &search.fit {
            Some(FitOffload::Chosen {
                offload,
                projected_mib,
                ..
            }) => (Some(*offload), *projected_mib),
            _ => (None, None),
        };
        if let (Some(o), Some(id)) = (search.offload, search.trial_id) {
            contexts.push(OffloadRow {
                ctx: search.ctx,
                gpu_layers: o.gpu_layers,
                layers: search.layers,
                cpu_moe_layers: o.cpu_moe_layers,
                decode_tps: search.decode_tps,
                prefill_tps: search.prefill_tps,
                trial_id: id,
                fit,
                fit_projected_mib: projected,
            });
        }
        // The largest context verified with every layer on the GPU.
        let full = trials
            .iter()
            .filter(|t| {
                t.phase == Phase::Context
                    && t.stage == Stage::Verify
                    && t.verdict == Verdict::Stable
                    && t.config.concurrency == 1
                    && t.config.variant.gpu_layers.is_none()
            })
            .max_by_key(|t| (t.config.ctx, t.id));
        if let Some(t) = full {
            contexts.push(OffloadRow {
                ctx: t.config.ctx,
                gpu_layers: search.layers,
                layers: search.layers,
                cpu_moe_layers: 0,
                decode_tps: t.decode_tps.as_ref().map(|s| s.mean),
                prefill_tps: t.prefill_tps.as_ref().map(|s| s.mean),
                trial_id: t.id,
                fit: None,
                fit_projected_mib: None,
            });
        }
        Self {
            contexts,
            search: search.clone(),
        }
    }

    /// The section of a logged run: its last `offload` event.
    pub fn of_events(events: &[LogEvent], trials: &[TrialRecord]) -> Option<Self> {
        events
            .iter()
            .rev()
            .find_map(|e| match e {
                LogEvent::Offload { outcome } => Some(outcome),
                _ => None,
            })
            .map(|o| Self::new(o, trials))
    }

    /// Every row in one line, largest context first, then fit's choice:
    /// `32768: 52 of 65 layers on the GPU, 14.0 tok/s decode, 120.0 prefill; 16384: all
    /// 65 layers on the GPU, 41.0 tok/s decode …`.
    pub fn line(&self) -> String {
        let mut parts: Vec<String> = self.contexts.iter().map(row_words).collect();
        if self.search.offload.is_none() {
            parts.insert(0, format!("{}: no offload fits", self.search.ctx));
        }
        format!("{}. {}", parts.join("; "), self.search.fit_words())
    }
}

/// `32768: 52 of 65 layers on the GPU, 14.0 tok/s decode, 120.0 tok/s prefill`.
pub fn row_words(r: &OffloadRow) -> String {
    let o = Offload {
        gpu_layers: r.gpu_layers,
        cpu_moe_layers: r.cpu_moe_layers,
    };
    let speed =
        |v: Option<f64>, what: &str| v.map_or(String::new(), |v| format!(", {v:.1} tok/s {what}"));
    format!(
        "{}: {}{}{}",
        r.ctx,
        placement(o, r.layers),
        speed(r.decode_tps, "decode"),
        speed(r.prefill_tps, "prefill")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn the_rows_name_the_offload_and_the_full_offload_context() {
        let mut trials = fixtures::trials();
        trials.retain(|t| t.phase == Phase::Context);
        let full = trials
            .iter()
            .filter(|t| t.stage == Stage::Verify && t.verdict == Verdict::Stable)
            .map(|t| t.config.ctx)
            .max()
            .expect("a verified context in the fixture run");
        let search = OffloadOutcome {
            ctx: 65_536,
            why: "every layer on the GPU failed".into(),
            layers: 65,
            expert_layers: 0,
            plugin: "offload-bisect".into(),
            offload: Some(Offload {
                gpu_layers: 52,
                cpu_moe_layers: 0,
            }),
            trial_id: Some(99),
            decode_tps: Some(14.0),
            prefill_tps: Some(300.0),
            ttft_ms: None,
            peak_server_gpu_memory_bytes: None,
            next_failed: None,
            fit: None,
            trials: 4,
        };
        let summary = OffloadSummary::new(&search, &trials);
        assert_eq!(summary.contexts.len(), 2);
        assert_eq!(summary.contexts[0].ctx, 65_536);
        assert_eq!(summary.contexts[1].ctx, full);
        let line = summary.line();
        assert!(
            line.starts_with(
                "65536: 52 of 65 layers on the GPU, 14.0 tok/s decode, 300.0 tok/s prefill; "
            ),
            "{line}"
        );
        assert!(
            line.contains(&format!("{full}: all 65 layers on the GPU")),
            "{line}"
        );
        assert!(line.ends_with("llama.cpp's fit: not run"), "{line}");
    }
}
