//! Variants: the part of the server's configuration that is neither the context nor the
//! batch (KV cache types, flash attention, threads, offload), what a variant search
//! chooses among, and what the host measured for each.

#[cfg(not(target_arch = "wasm32"))]
use serde::{Deserialize, Serialize};

use crate::types::BatchProposal;

/// KV cache element type (`-ctk`, `-ctv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum CacheType {
    #[default]
    F16,
    Q8_0,
    Q4_0,
}

impl CacheType {
    pub const ALL: [CacheType; 3] = [CacheType::F16, CacheType::Q8_0, CacheType::Q4_0];

    /// The name llama-server's `-ctk/-ctv` take.
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F16 => "f16",
            CacheType::Q8_0 => "q8_0",
            CacheType::Q4_0 => "q4_0",
        }
    }

    /// Bytes per element (blocks of 32 with a 2-byte scale for the quantized types).
    pub fn bytes_per_element(self) -> f64 {
        match self {
            CacheType::F16 => 2.0,
            CacheType::Q8_0 => 34.0 / 32.0,
            CacheType::Q4_0 => 18.0 / 32.0,
        }
    }

    pub fn is_quantized(self) -> bool {
        self != CacheType::F16
    }
}

impl std::fmt::Display for CacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for CacheType {
    type Err = String;

    /// `f16`, `q8_0` or `q4_0`, as llama-server's `-ctk/-ctv` take them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CacheType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown KV cache type `{s}` (f16, q8_0 or q4_0)"))
    }
}

/// A K and a V cache type, written `q8_0` (both halves) or `q8_0/q4_0` (K/V), as
/// `--kv-cache-types` and `ozone.kv_cache_types` take them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(
    not(target_arch = "wasm32"),
    serde(try_from = "String", into = "String")
)]
pub struct CachePair {
    pub k: CacheType,
    pub v: CacheType,
}

impl CachePair {
    /// The same type on both halves.
    pub fn both(t: CacheType) -> Self {
        Self { k: t, v: t }
    }
}

impl std::fmt::Display for CachePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.k == self.v {
            write!(f, "{}", self.k)
        } else {
            write!(f, "{}/{}", self.k, self.v)
        }
    }
}

impl std::str::FromStr for CachePair {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.split_once('/') {
            Some((k, v)) => Ok(Self {
                k: k.trim().parse()?,
                v: v.trim().parse()?,
            }),
            None => s.parse().map(Self::both),
        }
    }
}

impl TryFrom<String> for CachePair {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CachePair> for String {
    fn from(p: CachePair) -> Self {
        p.to_string()
    }
}

/// Flash attention (`-fa`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "snake_case"))]
pub enum FlashAttn {
    Off,
    On,
    /// The server decides.
    #[default]
    Auto,
}

impl std::fmt::Display for FlashAttn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for FlashAttn {
    type Err = String;

    /// `on`, `off` or `auto`, as llama-server's `-fa` takes them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FlashAttn::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown flash-attention mode `{s}` (on, off or auto)"))
    }
}

impl FlashAttn {
    pub const ALL: [FlashAttn; 3] = [FlashAttn::On, FlashAttn::Off, FlashAttn::Auto];

    /// The value llama-server's `-fa` takes.
    pub fn name(self) -> &'static str {
        match self {
            FlashAttn::Off => "off",
            FlashAttn::On => "on",
            FlashAttn::Auto => "auto",
        }
    }
}

/// One server configuration apart from context and batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct Variant {
    pub cache_type_k: CacheType,
    pub cache_type_v: CacheType,
    pub flash_attn: FlashAttn,
    /// `-t`; `None`: the server's own choice.
    pub threads: Option<u32>,
    /// `-ngl`; `None`: every layer on the GPU.
    pub gpu_layers: Option<u32>,
    /// `--n-cpu-moe`; 0: no experts kept on the CPU.
    pub cpu_moe_layers: u32,
}

impl Variant {
    /// Whether llama.cpp can run it: a quantized V cache needs flash attention on (or
    /// auto, where the server turns it on).
    pub fn is_possible(&self) -> bool {
        !self.cache_type_v.is_quantized() || self.flash_attn != FlashAttn::Off
    }

    /// KV bytes per element of K and V together, relative to an f16 cache (1.0): what a
    /// context limit bound by the cache scales with.
    pub fn cache_ratio(&self) -> f64 {
        (self.cache_type_k.bytes_per_element() + self.cache_type_v.bytes_per_element()) / 4.0
    }

    /// Whether either half of its cache is quantized (its quality cost is then measured).
    pub fn is_quantized(&self) -> bool {
        self.cache_type_k.is_quantized() || self.cache_type_v.is_quantized()
    }

    /// Its cache types.
    pub fn caches(&self) -> CachePair {
        CachePair {
            k: self.cache_type_k,
            v: self.cache_type_v,
        }
    }

    /// This variant with `caches`: flash attention set on where a quantized V cache
    /// needs it (`auto` included: whether the server turns it on is not to be guessed).
    pub fn with_caches(self, caches: CachePair) -> Self {
        let flash_attn = if caches.v.is_quantized() {
            FlashAttn::On
        } else {
            self.flash_attn
        };
        Self {
            cache_type_k: caches.k,
            cache_type_v: caches.v,
            flash_attn,
            ..self
        }
    }
}

impl std::fmt::Display for Variant {
    /// `kv f16/f16 fa auto`, then threads and offload where set.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kv {}/{} fa {}",
            self.cache_type_k,
            self.cache_type_v,
            self.flash_attn.name()
        )?;
        if let Some(t) = self.threads {
            write!(f, " t {t}")?;
        }
        if let Some(n) = self.gpu_layers {
            write!(f, " ngl {n}")?;
        }
        if self.cpu_moe_layers > 0 {
            write!(f, " cpu-moe {}", self.cpu_moe_layers)?;
        }
        Ok(())
    }
}

/// The variants a variant search may propose.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct VariantSpace {
    /// The variant the user's flags name.
    pub initial: Variant,
    /// Every variant the host will run; a proposal must be one of these.
    pub candidates: Vec<Variant>,
    /// The most variants the host runs in one tune.
    pub max_variants: u32,
}

impl VariantSpace {
    pub fn accepts(&self, variant: &Variant) -> bool {
        self.candidates.contains(variant)
    }
}

/// What bound a variant's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "kebab-case"))]
pub enum BoundKind {
    Memory,
    Time,
    Slo,
    Instability,
    TrainedContext,
    ServerError,
}

/// What quantizing the cache cost against f16 on the same text.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct Quality {
    /// Mean KL divergence from the f16 cache's next-token distribution, nats.
    pub kld_mean: f64,
    pub kld_stddev: f64,
    /// Share of positions where both rank the same token first.
    pub top1_agreement: f64,
    pub positions: u32,
}

/// What the host measured for one variant.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(Serialize, Deserialize))]
pub struct VariantOutcome {
    pub variant: Variant,
    pub max_context: Option<u32>,
    pub bound: Option<BoundKind>,
    pub best_batch: Option<BatchProposal>,
    pub decode_tps: Option<f64>,
    pub prefill_tps: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub peak_process_memory_bytes: Option<u64>,
    pub peak_server_gpu_memory_bytes: Option<u64>,
    pub quality: Option<Quality>,
    pub trials: u32,
}
