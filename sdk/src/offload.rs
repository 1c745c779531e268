//! Offload: how many layers stay on the GPU (and which MoE experts go to the CPU) at a
//! context that does not fit with everything on the GPU.

#[cfg(not(target_arch = "wasm32"))]
use serde::{Deserialize, Serialize};

/// Layers on the GPU and MoE experts kept on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct Offload {
    /// `-ngl`.
    pub gpu_layers: u32,
    /// `--n-cpu-moe`: the experts of the first this-many layers stay on the CPU.
    pub cpu_moe_layers: u32,
}

impl std::fmt::Display for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ngl {}", self.gpu_layers)?;
        if self.cpu_moe_layers > 0 {
            write!(f, " cpu-moe {}", self.cpu_moe_layers)?;
        }
        Ok(())
    }
}

/// The offloads the host accepts at one context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct OffloadBounds {
    /// Layers the server can put on the GPU (blocks plus the output layer).
    pub layers: u32,
    /// Layers with MoE experts (0: dense).
    pub expert_layers: u32,
    /// The context the offload is searched at.
    pub ctx: u32,
    /// What llama.cpp's fit chose for this context, when it ran.
    pub fit: Option<Offload>,
}

impl OffloadBounds {
    pub fn accepts(&self, offload: Offload) -> bool {
        offload.gpu_layers <= self.layers && offload.cpu_moe_layers <= self.expert_layers
    }
}
