//! llama.cpp's own fit as a baseline: what llama-server settles on when it is started
//! without `-c` and left to fit the context to free device memory (`-fit on`, margin
//! `-fitt`), measured once per tune beside the trials (which all keep `-fit off`).

use ozone_sdk::Offload;
use serde::{Deserialize, Serialize};

use super::{Breach, MemoryBreakdown, Peaks};

/// The fit baseline of one tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FitBaseline {
    /// llama-server came up with auto-fit on: the context it settled on, per slot.
    Fitted {
        ctx: u32,
        /// The margin per device it was asked to leave free (`-fitt`), MiB.
        margin_mib: u64,
        /// The context its log says it reduced from (the trained context), when it did.
        reduced_from: Option<u32>,
        /// Where `ctx` was read: `props` (`/props` `n_ctx`) or `log`.
        source: FitSource,
        /// The server's peaks while it loaded and held that context.
        peaks: Peaks,
        /// The fitted server crossed one of the run's limits (it was stopped at once).
        breach: Option<Breach>,
        /// The command that was run.
        command: Vec<String>,
    },
    /// Fit does not apply here (inference on the CPU: fit sizes device memory).
    NotApplicable { reason: String },
    /// The fit start failed; what it said.
    Failed {
        message: String,
        log_tail: Vec<String>,
    },
}

/// Where the fitted context was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitSource {
    Props,
    Log,
}

impl FitBaseline {
    /// The context fit chose, when it chose one.
    pub fn ctx(&self) -> Option<u32> {
        match self {
            FitBaseline::Fitted { ctx, .. } => Some(*ctx),
            _ => None,
        }
    }

    /// One line beside the measured limit: `llama.cpp's fit: 61440; measured stable:
    /// 73728, +20 %`, or why there is no comparison.
    pub fn versus(&self, measured: Option<u32>) -> String {
        match (self, measured) {
            (FitBaseline::Fitted { ctx, breach, .. }, measured) => {
                let over = breach
                    .as_ref()
                    .map(|b| format!(" (over this run's limits: {b})"))
                    .unwrap_or_default();
                match measured {
                    Some(m) if *ctx > 0 => {
                        let diff = (f64::from(m) - f64::from(*ctx)) / f64::from(*ctx) * 100.0;
                        format!("llama.cpp's fit: {ctx}{over}; measured stable: {m}, {diff:+.0} %")
                    }
                    _ => format!("llama.cpp's fit: {ctx}{over}; measured stable: none"),
                }
            }
            (FitBaseline::NotApplicable { reason }, _) => {
                format!("llama.cpp's fit: does not apply ({reason})")
            }
            (FitBaseline::Failed { message, .. }, _) => {
                format!("llama.cpp's fit: failed ({message})")
            }
        }
    }
}

/// What llama.cpp's fit chose at one context: llama-server started with `-fit on -c CTX
/// -fitt MARGIN` and no `-ngl`, so that fit decides how many layers (and, for a MoE
/// model, which experts) stay on the device — the first proposal of an offload search,
/// shown beside what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FitOffload {
    /// The server came up with fit's choice.
    Chosen {
        /// The context per slot it was asked to fit.
        ctx: u32,
        margin_mib: u64,
        /// `gpu_layers` is `-ngl` (the output layer counts as one, as in llama-server's
        /// `offloaded 5/9 layers to GPU`); `cpu_moe_layers` the layers whose experts fit
        /// left in system memory (a count: fit overflows the last layers, `--n-cpu-moe`
        /// takes the first).
        offload: Offload,
        /// The layers the server can offload (`9` of `offloaded 5/9`), when it said.
        layers: Option<u32>,
        /// Fit's projection of the device memory its choice takes, summed over devices,
        /// MiB (from its per-device summary), when it printed one.
        projected_mib: Option<u64>,
        /// Where `offload` was read.
        source: FitOffloadSource,
        /// The server's memory per device when it stopped, by llama.cpp's account.
        memory: Option<MemoryBreakdown>,
        /// The server's peaks while it loaded and held the context.
        peaks: Peaks,
        /// It crossed one of the run's limits (and was stopped at once).
        breach: Option<Breach>,
        command: Vec<String>,
    },
    /// Fit did not choose, or what it chose could not be read: why.
    NotChosen {
        ctx: u32,
        reason: String,
        log_tail: Vec<String>,
        command: Vec<String>,
    },
}

/// Where a fit offload was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitOffloadSource {
    /// The layers the server loaded on the device (`load_tensors: offloaded N/M layers`).
    Loaded,
    /// Fit's own summary of its choice (per device), the load lines being absent.
    Projected,
}

impl FitOffload {
    /// The offload fit chose, when it chose one.
    pub fn offload(&self) -> Option<Offload> {
        match self {
            FitOffload::Chosen { offload, .. } => Some(*offload),
            FitOffload::NotChosen { .. } => None,
        }
    }

    /// Why there is no offload, when there is none.
    pub fn why_not(&self) -> Option<&str> {
        match self {
            FitOffload::Chosen { .. } => None,
            FitOffload::NotChosen { reason, .. } => Some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fitted(ctx: u32) -> FitBaseline {
        FitBaseline::Fitted {
            ctx,
            margin_mib: 1024,
            reduced_from: Some(131_072),
            source: FitSource::Props,
            peaks: Peaks::default(),
            breach: None,
            command: Vec::new(),
        }
    }

    #[test]
    fn the_line_compares_fit_with_the_measured_limit() {
        assert_eq!(
            fitted(61_440).versus(Some(73_728)),
            "llama.cpp's fit: 61440; measured stable: 73728, +20 %"
        );
        assert_eq!(
            fitted(65_536).versus(Some(49_152)),
            "llama.cpp's fit: 65536; measured stable: 49152, -25 %"
        );
        assert_eq!(
            fitted(4096).versus(None),
            "llama.cpp's fit: 4096; measured stable: none"
        );
        let cpu = FitBaseline::NotApplicable {
            reason: "inference runs on the CPU".into(),
        };
        assert_eq!(
            cpu.versus(Some(8192)),
            "llama.cpp's fit: does not apply (inference runs on the CPU)"
        );
        let json = serde_json::to_value(fitted(61_440)).unwrap();
        assert_eq!(json["status"], "fitted");
        assert_eq!(json["ctx"], 61_440);
        assert_eq!(json["source"], "props");
        assert_eq!(
            serde_json::from_value::<FitBaseline>(json).unwrap(),
            fitted(61_440)
        );
    }
}
