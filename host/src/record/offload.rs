//! The offload phase's answer, as the log writes it (`offload` event) and the summary
//! shows it: at a context where every layer on the GPU did not fit in GPU memory, the
//! offload (`-ngl`, `--n-cpu-moe`) a verification held, the speed it leaves, the step
//! more on the GPU that failed, and what llama.cpp's fit chose for the same context.

use ozone_sdk::Offload;
use serde::{Deserialize, Serialize};

use super::FitOffload;

/// What the offload search found at one context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadOutcome {
    /// The context searched at (per slot).
    pub ctx: u32,
    /// Why this context: the trial with every layer on the GPU that failed there for GPU
    /// memory, in words.
    pub why: String,
    /// Layers the server can put on the GPU (blocks plus the output layer).
    pub layers: u32,
    /// Layers with MoE experts (0: a dense model).
    pub expert_layers: u32,
    /// The offload plugin.
    pub plugin: String,
    /// The offload a verification held (`None`: nothing fitted, or nothing was stable).
    pub offload: Option<Offload>,
    /// Its verification.
    pub trial_id: Option<u32>,
    pub decode_tps: Option<f64>,
    pub prefill_tps: Option<f64>,
    pub ttft_ms: Option<f64>,
    /// The server's GPU memory in that verification (live, or llama.cpp's account).
    pub peak_server_gpu_memory_bytes: Option<u64>,
    /// The nearest offload with more on the GPU that was tried and failed, and why.
    pub next_failed: Option<OffloadStep>,
    /// llama.cpp's fit at this context (`-fit on -c CTX`), the search's first proposal.
    pub fit: Option<FitOffload>,
    /// Trials of the phase (screens and verifications).
    pub trials: u32,
}

/// One offload tried, its trial and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffloadStep {
    pub offload: Offload,
    pub trial_id: u32,
    pub message: String,
}

impl OffloadOutcome {
    /// `52 of 64 layers on the GPU` (and `, experts of 8 layers on the CPU`), or `no
    /// offload fits`.
    pub fn placement(&self) -> String {
        match self.offload {
            Some(o) => placement(o, self.layers),
            None => "no offload fits".to_string(),
        }
    }

    /// One line for the console and the log: the measured answer, its speed, the step
    /// that failed, and fit's projection beside it.
    pub fn line(&self) -> String {
        let speed = self
            .decode_tps
            .map(|d| {
                let prefill = self
                    .prefill_tps
                    .map_or(String::new(), |p| format!(", prefill {p:.1} tok/s"));
                format!(", {d:.1} tok/s decode{prefill}")
            })
            .unwrap_or_default();
        let next = self.next_failed.as_ref().map_or(String::new(), |n| {
            format!("; {} failed (trial {})", n.offload, n.trial_id)
        });
        format!(
            "{}: {}{speed}{next}; {}",
            self.ctx,
            self.placement(),
            self.fit_words()
        )
    }

    /// What llama.cpp's fit chose at this context, against the measured answer.
    pub fn fit_words(&self) -> String {
        match &self.fit {
            Some(FitOffload::Chosen {
                offload,
                projected_mib,
                ..
            }) => {
                let projected = projected_mib.map_or(String::new(), |m| {
                    format!(", projected to use {m} MiB of device memory")
                });
                let versus = match self.offload {
                    Some(m) if m.gpu_layers == offload.gpu_layers => "the same".to_string(),
                    Some(m) => format!(
                        "measured {:+} layers",
                        i64::from(m.gpu_layers) - i64::from(offload.gpu_layers)
                    ),
                    None => "measured: none".to_string(),
                };
                format!(
                    "llama.cpp's fit: {}{projected} ({versus})",
                    placement(*offload, self.layers)
                )
            }
            Some(FitOffload::NotChosen { reason, .. }) => {
                format!("llama.cpp's fit chose nothing ({reason})")
            }
            None => "llama.cpp's fit: not run".to_string(),
        }
    }
}

/// `52 of 64 layers on the GPU`, with the experts kept on the CPU.
pub fn placement(o: Offload, layers: u32) -> String {
    let gpu = if o.gpu_layers >= layers {
        format!("all {layers} layers on the GPU")
    } else {
        format!("{} of {layers} layers on the GPU", o.gpu_layers)
    };
    if o.cpu_moe_layers > 0 {
        format!("{gpu}, experts of {} layers on the CPU", o.cpu_moe_layers)
    } else {
        gpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_answer_the_step_that_failed_and_fit() {
        let outcome = OffloadOutcome {
            ctx: 32_768,
            why: String::new(),
            layers: 65,
            expert_layers: 0,
            plugin: "offload-bisect".into(),
            offload: Some(Offload {
                gpu_layers: 52,
                cpu_moe_layers: 0,
            }),
            trial_id: Some(9),
            decode_tps: Some(14.0),
            prefill_tps: Some(320.0),
            ttft_ms: None,
            peak_server_gpu_memory_bytes: None,
            next_failed: Some(OffloadStep {
                offload: Offload {
                    gpu_layers: 53,
                    cpu_moe_layers: 0,
                },
                trial_id: 8,
                message: "oom".into(),
            }),
            fit: Some(FitOffload::Chosen {
                ctx: 32_768,
                margin_mib: 1024,
                offload: Offload {
                    gpu_layers: 50,
                    cpu_moe_layers: 0,
                },
                layers: Some(65),
                projected_mib: Some(22_000),
                source: super::super::FitOffloadSource::Loaded,
                memory: None,
                peaks: Default::default(),
                breach: None,
                command: Vec::new(),
            }),
            trials: 5,
        };
        assert_eq!(
            outcome.line(),
            "32768: 52 of 65 layers on the GPU, 14.0 tok/s decode, prefill 320.0 tok/s; \
             ngl 53 failed (trial 8); llama.cpp's fit: 50 of 65 layers on the GPU, projected \
             to use 22000 MiB of device memory (measured +2 layers)"
        );
        let json = serde_json::to_value(&outcome).expect("json");
        assert_eq!(json["offload"]["gpu_layers"], 52);
        assert_eq!(
            serde_json::from_value::<OffloadOutcome>(json).expect("back"),
            outcome
        );
    }
}
