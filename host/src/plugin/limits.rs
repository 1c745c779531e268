//! Sandbox limits: what one plugin instance may spend.

use serde::{Deserialize, Serialize};

/// Per-instance sandbox limits (config section `plugins.sandbox`; missing keys default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxLimits {
    /// Fuel (≈ wasm instructions) one call may burn: create, propose, observe or best.
    /// The default allows ~10⁸ instructions (tens of milliseconds); real strategies use
    /// a few thousand. Deterministic, unlike a wall-clock deadline.
    pub fuel_per_call: u64,
    /// Linear memory cap per instance, MiB.
    pub memory_mb: u64,
    /// Wasm stack cap, KiB.
    pub stack_kb: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            fuel_per_call: 100_000_000,
            memory_mb: 64,
            stack_kb: 512,
        }
    }
}
