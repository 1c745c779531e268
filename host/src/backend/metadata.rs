//! What Ozone knows about a model before it runs it.

use serde::{Deserialize, Serialize};

use super::layout::{self, Experts, LayerGroup};
use crate::record::KvCacheType;

/// Size classes by parameter count: large ≥ 20e9, medium ≥ 3e9, small otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeClass {
    Small,
    Medium,
    Large,
}

impl SizeClass {
    pub fn from_params(params: u64) -> Self {
        if params >= 20_000_000_000 {
            SizeClass::Large
        } else if params >= 3_000_000_000 {
            SizeClass::Medium
        } else {
            SizeClass::Small
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Display name: file stem for a GGUF file, the tag for Ollama.
    pub name: String,
    /// `general.architecture`, e.g. `llama`.
    pub architecture: Option<String>,
    pub parameter_count: Option<u64>,
    pub size_class: SizeClass,
    /// `<arch>.context_length`.
    pub trained_context: Option<u32>,
    pub block_count: Option<u32>,
    pub head_count: Option<u32>,
    pub head_count_kv: Option<u32>,
    pub embedding_length: Option<u32>,
    /// Per-head key length (`<arch>.attention.key_length`, else embedding / heads).
    pub key_length: Option<u32>,
    pub value_length: Option<u32>,
    /// Every layer, grouped by kind (full attention, sliding window, recurrent) and
    /// shape; empty when the header does not say (`backend::layout`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerGroup>,
    /// The mixture-of-experts layout, for a MoE model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<Experts>,
    /// Size of the weights on disk.
    pub weights_bytes: Option<u64>,
    /// Content digest (sha256 of the GGUF file, or Ollama's digest) for warm starts.
    pub digest: Option<String>,
}

impl ModelMetadata {
    /// KV cache bytes one more token costs at long context: Σ over the full-attention
    /// layers of head_count_kv × (key_len × B(ctk) + value_len × B(ctv)) (sliding-window
    /// and recurrent layers stop growing). Without a layout (an old log, a server that
    /// does not say), every layer counts. `None` when a needed fact is unknown.
    pub fn kv_bytes_per_token(&self, ctk: KvCacheType, ctv: KvCacheType) -> Option<u64> {
        if !self.layers.is_empty() {
            return Some(layout::kv_bytes_per_token(&self.layers, ctk, ctv));
        }
        let layers = f64::from(self.block_count?);
        let kv_heads = f64::from(self.head_count_kv.or(self.head_count)?);
        let key_len = f64::from(self.key_length?);
        let value_len = f64::from(self.value_length?);
        let per_layer =
            kv_heads * (key_len * ctk.bytes_per_element() + value_len * ctv.bytes_per_element());
        Some((layers * per_layer).round() as u64)
    }
}
