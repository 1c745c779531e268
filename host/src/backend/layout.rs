//! How a model's layers keep the context, read from its header: full attention (a KV
//! cache that grows with every token), sliding windows (it stops growing at the window)
//! and recurrent layers (a fixed state per sequence) — and its experts. The one rule for
//! a GGUF file and for Ollama's `/api/show`, which echoes the same keys.
//!
//! Which layers slide is the architecture's: GGUF stores the window
//! (`<arch>.attention.sliding_window`) and, for some models, a per-layer pattern
//! (`<arch>.attention.sliding_window_pattern`, booleans); llama.cpp hard-codes the rest
//! (`llama-model.cpp`, `hparams.set_swa_pattern`): Gemma 2 every other layer, Gemma 3 and
//! 3n five of every six, Cohere 2 three of four, gpt-oss every other. Hybrid models give
//! `attention.head_count_kv` per layer, 0 for a recurrent layer (Granite 4 hybrid,
//! Falcon-H1, LFM2, Nemotron-H); Mamba and RWKV models are recurrent throughout.

use serde::{Deserialize, Serialize};

use crate::record::KvCacheType;

/// How one kind of layer keeps the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LayerKind {
    FullAttention,
    SlidingWindow { window: u32 },
    Recurrent,
}

/// Layers of one kind and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayerGroup {
    #[serde(flatten)]
    pub kind: LayerKind,
    pub count: u32,
    /// K elements one token costs in one layer (`head_count_kv × key_length`).
    pub key_elements: u32,
    /// V elements one token costs in one layer (`head_count_kv × value_length`).
    pub value_elements: u32,
    /// Recurrent layers: state bytes one layer keeps per sequence (f32), when the
    /// header says enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<u64>,
}

impl LayerGroup {
    /// KV bytes one token costs in one layer of the group at these cache types.
    pub fn kv_bytes_per_token(&self, ctk: KvCacheType, ctv: KvCacheType) -> u64 {
        let bytes = f64::from(self.key_elements) * ctk.bytes_per_element()
            + f64::from(self.value_elements) * ctv.bytes_per_element();
        bytes.round() as u64
    }
}

/// A mixture-of-experts layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Experts {
    pub count: u32,
    pub used: u32,
    /// Layers that hold experts.
    pub layers: u32,
}

/// A header value: one number, one per layer, or a flag per layer.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderValue {
    Number(u64),
    Numbers(Vec<u64>),
    Flags(Vec<bool>),
}

/// The architecture's keys, read by suffix (`attention.head_count_kv` of `gemma3`).
pub trait Header {
    fn value(&self, suffix: &str) -> Option<HeaderValue>;

    fn number(&self, suffix: &str) -> Option<u64> {
        match self.value(suffix)? {
            HeaderValue::Number(n) => Some(n),
            HeaderValue::Numbers(v) => v.into_iter().max(),
            HeaderValue::Flags(_) => None,
        }
    }

    /// One value per layer: an array as given, a single number repeated.
    fn per_layer(&self, suffix: &str, layers: usize) -> Option<Vec<u64>> {
        match self.value(suffix)? {
            HeaderValue::Number(n) => Some(vec![n; layers]),
            HeaderValue::Numbers(v) if v.len() == layers => Some(v),
            _ => None,
        }
    }
}

/// Every layer of the model, grouped by kind and shape (in order of first appearance),
/// and its experts; empty when the header lacks the shape.
pub fn layout(architecture: &str, header: &dyn Header) -> (Vec<LayerGroup>, Option<Experts>) {
    let experts = experts(header);
    let Some(layers) = header.number("block_count").map(|n| n as usize) else {
        return (Vec::new(), experts);
    };
    let recurrent_arch = is_recurrent(architecture);
    let state = recurrent_state_bytes(architecture, header);
    let heads = header.number("attention.head_count");
    let embedding = header.number("embedding_length");
    let per_head = match (embedding, heads) {
        (Some(e), Some(h)) if h > 0 => Some(e / h),
        _ => None,
    };
    let key_len = header.number("attention.key_length").or(per_head);
    let value_len = header.number("attention.value_length").or(per_head);
    let kv_heads = header
        .per_layer("attention.head_count_kv", layers)
        .or_else(|| heads.map(|h| vec![h; layers]));
    let window = header
        .number("attention.sliding_window")
        .and_then(|w| u32::try_from(w).ok())
        .filter(|w| *w > 0);
    let sliding = sliding_layers(architecture, header, layers, window.is_some());

    let mut groups: Vec<LayerGroup> = Vec::new();
    for layer in 0..layers {
        let kv = kv_heads.as_ref().map(|h| h[layer]);
        let group = if recurrent_arch || kv == Some(0) {
            LayerGroup {
                kind: LayerKind::Recurrent,
                count: 1,
                key_elements: 0,
                value_elements: 0,
                state_bytes: state,
            }
        } else {
            let (Some(kv), Some(k), Some(v)) = (kv, key_len, value_len) else {
                return (Vec::new(), experts);
            };
            let kind = match (window, sliding[layer]) {
                (Some(window), true) => LayerKind::SlidingWindow { window },
                _ => LayerKind::FullAttention,
            };
            LayerGroup {
                kind,
                count: 1,
                key_elements: (kv * k) as u32,
                value_elements: (kv * v) as u32,
                state_bytes: None,
            }
        };
        match groups
            .iter_mut()
            .find(|g| LayerGroup { count: 1, ..**g } == group)
        {
            Some(g) => g.count += 1,
            None => groups.push(group),
        }
    }
    (groups, experts)
}

/// Whether each layer slides: the header's pattern, else the architecture's.
fn sliding_layers(
    architecture: &str,
    header: &dyn Header,
    layers: usize,
    windowed: bool,
) -> Vec<bool> {
    if !windowed {
        return vec![false; layers];
    }
    match header.value("attention.sliding_window_pattern") {
        Some(HeaderValue::Flags(flags)) if flags.len() == layers => return flags,
        Some(HeaderValue::Number(period)) if period > 1 => {
            return (0..layers).map(|l| is_swa(l, period as usize)).collect()
        }
        _ => {}
    }
    match swa_period(architecture) {
        Some(period) => (0..layers).map(|l| is_swa(l, period)).collect(),
        // A window in the header of an architecture llama.cpp runs without one (Mistral,
        // Qwen 2 write theirs but attend over the whole context).
        None => vec![false; layers],
    }
}

/// llama.cpp's `set_swa_pattern(n)`: every layer slides but each n-th.
fn is_swa(layer: usize, period: usize) -> bool {
    layer % period < period - 1
}

/// The architectures llama.cpp runs with a sliding window, and its period.
fn swa_period(architecture: &str) -> Option<usize> {
    match architecture {
        "gemma2" => Some(2),
        "gemma3" | "gemma3n" => Some(6),
        "cohere2" => Some(4),
        "gpt-oss" => Some(2),
        _ => None,
    }
}

fn is_recurrent(architecture: &str) -> bool {
    matches!(
        architecture,
        "mamba" | "mamba2" | "rwkv6" | "rwkv6qwen2" | "rwkv7" | "arwkv7"
    )
}

/// Bytes of state one recurrent layer keeps per sequence (f32), as llama.cpp sizes its
/// `r` and `s` caches: Mamba's convolution and SSM states, RWKV's token shift and WKV
/// state, LFM2's short convolution.
fn recurrent_state_bytes(architecture: &str, header: &dyn Header) -> Option<u64> {
    let n = |k: &str| header.number(k);
    let elements =
        if let (Some(d_inner), Some(d_state)) = (n("ssm.inner_size"), n("ssm.state_size")) {
            let d_conv = n("ssm.conv_kernel").unwrap_or(0);
            let groups = n("ssm.group_count").unwrap_or(0);
            d_conv.saturating_sub(1) * (d_inner + 2 * groups * d_state) + d_state * d_inner
        } else if architecture.contains("rwkv") {
            let embedding = n("embedding_length")?;
            let shift = n("token_shift_count").unwrap_or(2);
            shift * embedding + embedding * n("wkv.head_size")?
        } else if let Some(l_cache) = n("shortconv.l_cache") {
            n("embedding_length")? * l_cache.saturating_sub(1)
        } else {
            return None;
        };
    Some(elements * 4)
}

fn experts(header: &dyn Header) -> Option<Experts> {
    let count = header.number("expert_count").filter(|c| *c > 0)?;
    let layers = header.number("block_count").unwrap_or(0);
    let dense = header.number("leading_dense_block_count").unwrap_or(0);
    let step = header
        .number("interleave_moe_layer_step")
        .filter(|s| *s > 1);
    let moe_layers = match step {
        Some(step) => layers / step,
        None => layers.saturating_sub(dense),
    };
    Some(Experts {
        count: count as u32,
        used: header.number("expert_used_count").unwrap_or(0) as u32,
        layers: moe_layers as u32,
    })
}

/// KV bytes one more token costs at long context: the full-attention layers' sum.
pub fn kv_bytes_per_token(groups: &[LayerGroup], ctk: KvCacheType, ctv: KvCacheType) -> u64 {
    groups
        .iter()
        .filter(|g| g.kind == LayerKind::FullAttention)
        .map(|g| u64::from(g.count) * g.kv_bytes_per_token(ctk, ctv))
        .sum()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Keys(BTreeMap<&'static str, HeaderValue>);

    impl Header for Keys {
        fn value(&self, suffix: &str) -> Option<HeaderValue> {
            self.0.get(suffix).cloned()
        }
    }

    fn keys(pairs: &[(&'static str, HeaderValue)]) -> Keys {
        Keys(pairs.iter().cloned().collect())
    }

    use HeaderValue::{Flags, Number, Numbers};

    #[test]
    fn gemma3_keeps_a_window_on_five_layers_of_six() {
        // gemma-3-270m's header (18 blocks, 4 heads, 1 KV head of 256, window 512).
        let header = keys(&[
            ("block_count", Number(18)),
            ("embedding_length", Number(640)),
            ("attention.head_count", Number(4)),
            ("attention.head_count_kv", Number(1)),
            ("attention.key_length", Number(256)),
            ("attention.value_length", Number(256)),
            ("attention.sliding_window", Number(512)),
        ]);
        let (groups, experts) = layout("gemma3", &header);
        assert_eq!(experts, None);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].kind, LayerKind::SlidingWindow { window: 512 });
        assert_eq!(groups[0].count, 15);
        assert_eq!(groups[1].kind, LayerKind::FullAttention);
        assert_eq!(groups[1].count, 3);
        assert_eq!(
            groups[1].kv_bytes_per_token(KvCacheType::F16, KvCacheType::F16),
            1024
        );
        assert_eq!(
            kv_bytes_per_token(&groups, KvCacheType::F16, KvCacheType::F16),
            3 * 1024
        );
        // q8_0 K and V: 34/32 bytes an element.
        assert_eq!(
            kv_bytes_per_token(&groups, KvCacheType::Q8_0, KvCacheType::Q8_0),
            3 * 544
        );
    }

    #[test]
    fn a_window_llama_cpp_ignores_counts_as_full_attention() {
        let header = keys(&[
            ("block_count", Number(4)),
            ("embedding_length", Number(256)),
            ("attention.head_count", Number(4)),
            ("attention.head_count_kv", Number(2)),
            ("attention.sliding_window", Number(4096)),
        ]);
        let (groups, _) = layout("qwen2", &header);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].kind, LayerKind::FullAttention);
        assert_eq!((groups[0].key_elements, groups[0].count), (2 * 64, 4));
        // A pattern in the header wins over the architecture's silence.
        let patterned = keys(&[
            ("block_count", Number(4)),
            ("embedding_length", Number(256)),
            ("attention.head_count", Number(4)),
            ("attention.sliding_window", Number(128)),
            (
                "attention.sliding_window_pattern",
                Flags(vec![true, true, true, false]),
            ),
        ]);
        let (groups, _) = layout("exaone4", &patterned);
        assert_eq!(groups[0].kind, LayerKind::SlidingWindow { window: 128 });
        assert_eq!((groups[0].count, groups[1].count), (3, 1));
    }

    #[test]
    fn a_hybrid_model_s_recurrent_layers_hold_a_fixed_state() {
        // Granite-4-hybrid-like: 8 layers, attention on two of them, Mamba 2 on the rest.
        let header = keys(&[
            ("block_count", Number(8)),
            ("embedding_length", Number(1024)),
            ("attention.head_count", Number(16)),
            (
                "attention.head_count_kv",
                Numbers(vec![0, 0, 0, 4, 0, 0, 0, 4]),
            ),
            ("ssm.conv_kernel", Number(4)),
            ("ssm.inner_size", Number(2048)),
            ("ssm.state_size", Number(128)),
            ("ssm.group_count", Number(1)),
        ]);
        let (groups, _) = layout("granitehybrid", &header);
        let recurrent = groups
            .iter()
            .find(|g| g.kind == LayerKind::Recurrent)
            .unwrap();
        assert_eq!(recurrent.count, 6);
        // (4 − 1) × (2048 + 2 × 128) + 128 × 2048 elements of f32.
        assert_eq!(recurrent.state_bytes, Some((3 * 2304 + 128 * 2048) * 4));
        let attention = groups
            .iter()
            .find(|g| g.kind == LayerKind::FullAttention)
            .unwrap();
        assert_eq!((attention.count, attention.key_elements), (2, 4 * 64));
        assert_eq!(
            kv_bytes_per_token(&groups, KvCacheType::F16, KvCacheType::F16),
            2 * 2 * 256 * 2
        );
        // A pure Mamba model: recurrent throughout, no KV growth at all.
        let mamba = keys(&[
            ("block_count", Number(24)),
            ("embedding_length", Number(768)),
            ("ssm.conv_kernel", Number(4)),
            ("ssm.inner_size", Number(1536)),
            ("ssm.state_size", Number(16)),
        ]);
        let (groups, _) = layout("mamba", &mamba);
        assert_eq!(groups.len(), 1);
        assert_eq!(
            (groups[0].kind, groups[0].count),
            (LayerKind::Recurrent, 24)
        );
        assert_eq!(
            kv_bytes_per_token(&groups, KvCacheType::F16, KvCacheType::F16),
            0
        );
    }

    #[test]
    fn experts_are_counted_on_the_layers_that_hold_them() {
        // Qwen3-30B-A3B-like: 48 layers, 128 experts, 8 used.
        let qwen = keys(&[
            ("block_count", Number(48)),
            ("expert_count", Number(128)),
            ("expert_used_count", Number(8)),
        ]);
        assert_eq!(
            layout("qwen3moe", &qwen).1,
            Some(Experts {
                count: 128,
                used: 8,
                layers: 48
            })
        );
        // DeepSeek-like: the first 3 layers are dense.
        let deepseek = keys(&[
            ("block_count", Number(61)),
            ("expert_count", Number(256)),
            ("leading_dense_block_count", Number(3)),
        ]);
        assert_eq!(layout("deepseek2", &deepseek).1.map(|e| e.layers), Some(58));
        let dense = keys(&[("block_count", Number(32)), ("expert_count", Number(0))]);
        assert_eq!(layout("llama", &dense).1, None);
    }
}
