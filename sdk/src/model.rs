//! The model under test: its size, its context, and how its layers keep the context —
//! full attention, sliding windows, recurrent state — so that a policy can predict the KV
//! cache at any context ([`ModelFacts::kv_cache_bytes`]).

#[cfg(not(target_arch = "wasm32"))]
use serde::{Deserialize, Serialize};

use crate::types::{ContextBounds, SizeClass};
use crate::variant::Variant;

/// How a kind of layer keeps the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "kebab-case"))]
pub enum LayerKind {
    /// Its KV cache grows with every token.
    FullAttention,
    /// Attends to the last `window` tokens: its cache stops growing there.
    SlidingWindow,
    /// A fixed state per sequence, whatever the context.
    Recurrent,
}

/// Layers of one kind and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct LayerGroup {
    pub kind: LayerKind,
    pub count: u32,
    /// KV bytes one token costs in one layer of the group (0 for recurrent layers).
    pub kv_bytes_per_token: u64,
    /// Sliding-window layers: the window, in tokens.
    pub window: Option<u32>,
    /// Recurrent layers: state bytes one layer keeps per sequence.
    pub state_bytes: Option<u64>,
}

/// Cells llama.cpp gives a sliding-window layer: the window for every sequence plus one
/// micro-batch, padded to 256, never more than the context itself.
pub fn window_cells(window: u32, ctx_total: u64, sequences: u32, ubatch: u32) -> u64 {
    let wanted = u64::from(window) * u64::from(sequences.max(1)) + u64::from(ubatch);
    wanted.div_ceil(256).saturating_mul(256).min(ctx_total)
}

impl LayerGroup {
    /// KV-cache bytes (or recurrent state) of every layer of the group at `ctx` tokens per
    /// sequence, `sequences` at once, with micro-batch `ubatch`.
    pub fn cache_bytes(&self, ctx: u32, sequences: u32, ubatch: u32) -> u64 {
        let count = u64::from(self.count);
        let total = u64::from(ctx) * u64::from(sequences.max(1));
        match self.kind {
            LayerKind::FullAttention => count * self.kv_bytes_per_token * total,
            LayerKind::SlidingWindow => {
                let cells = self
                    .window
                    .map_or(total, |w| window_cells(w, total, sequences, ubatch));
                count * self.kv_bytes_per_token * cells
            }
            LayerKind::Recurrent => {
                count * self.state_bytes.unwrap_or(0) * u64::from(sequences.max(1))
            }
        }
    }
}

/// Mixture-of-experts layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct Experts {
    /// Experts per MoE layer.
    pub count: u32,
    /// Experts used per token.
    pub used: u32,
    /// Layers that hold experts.
    pub layers: u32,
}

/// The model under test, at the variant a search runs at.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct ModelFacts {
    pub name: String,
    pub parameter_count: Option<u64>,
    pub size_class: SizeClass,
    pub trained_context: u32,
    pub layer_count: Option<u32>,
    /// KV bytes one more token costs at long context (beyond every sliding window), at
    /// the variant's cache types, when known: the full-attention layers' sum.
    pub kv_bytes_per_token: Option<u64>,
    /// Every layer, grouped by kind and shape; empty when the layout is unknown.
    pub layers: Vec<LayerGroup>,
    pub experts: Option<Experts>,
    pub weights_bytes: Option<u64>,
    /// The server configuration the search runs at.
    pub variant: Variant,
    /// What a context proposal must satisfy.
    pub bounds: ContextBounds,
    /// A limit measured earlier for this machine and model, or by an earlier variant of
    /// this run (warm start).
    pub hint: Option<u32>,
}

impl ModelFacts {
    /// The KV cache (and recurrent state) at `ctx` tokens for one sequence with
    /// micro-batch `ubatch`, from `layers`; `None` when the layout is unknown. Falls back
    /// to `kv_bytes_per_token × ctx` when only the slope is known.
    pub fn kv_cache_bytes(&self, ctx: u32, ubatch: u32) -> Option<u64> {
        if self.layers.is_empty() {
            return self.kv_bytes_per_token.map(|b| b * u64::from(ctx));
        }
        Some(
            self.layers
                .iter()
                .map(|g| g.cache_bytes(ctx, 1, ubatch))
                .sum(),
        )
    }
}
