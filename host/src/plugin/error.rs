//! Everything that can go wrong with a plugin; every message names the plugin.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("unknown built-in plugin `{0}` (built-ins: {names}; a plugin file must end in .wasm)", names = super::builtin::names())]
    UnknownBuiltin(String),
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin {plugin} is not a WebAssembly component: {reason}")]
    NotAComponent { plugin: String, reason: String },
    #[error(
        "plugin {plugin} is built for plugin API {found}; this ozone speaks {expected}: {}",
        rebuild_advice(found, expected)
    )]
    WrongApiVersion {
        plugin: String,
        found: String,
        expected: &'static str,
    },
    #[error("plugin {plugin} is a {found} plugin, but a {expected} plugin is needed here")]
    WrongWorld {
        plugin: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("plugin {plugin} is not an Ozone strategy: it exports none of ozone:strategy/context, batch, concurrency, variants, offload (exports: {exports})")]
    NotAStrategy { plugin: String, exports: String },
    #[error("plugin {plugin} could not be instantiated: {message}")]
    Instantiate { plugin: String, message: String },
    #[error("plugin {plugin} rejected its settings or facts: {message}")]
    Rejected { plugin: String, message: String },
    #[error("plugin {plugin} exceeded its per-call budget ({fuel} fuel units) in {call}; if it needs more, raise ozone.sandbox.fuel_per_call")]
    Budget {
        plugin: String,
        call: &'static str,
        fuel: u64,
    },
    #[error("plugin {plugin} tried to grow memory past {limit_mb} MiB in {call}; if it needs more, raise ozone.sandbox.memory_mb")]
    Memory {
        plugin: String,
        call: &'static str,
        limit_mb: u64,
    },
    #[error("plugin {plugin} trapped in {call}: {message}")]
    Trapped {
        plugin: String,
        call: &'static str,
        message: String,
    },
    #[error(
        "plugin {plugin} cannot be called again: it trapped earlier and its instance was discarded"
    )]
    Discarded { plugin: String },
    #[error("plugin {plugin} proposed context {value} (must be between {min} and the model's trained context {max}, a multiple of {granularity})")]
    ContextOutOfRange {
        plugin: String,
        value: u32,
        min: u32,
        max: u32,
        granularity: u32,
    },
    #[error("plugin {plugin} proposed batch {batch} with micro-batch {ubatch} (its batch bounds are {min}..={max}, the micro-batch 1..=min(batch, {max_ubatch}); the largest are search_strategy.batch_adaptation.max_batch and max_ubatch)")]
    BatchOutOfRange {
        plugin: String,
        batch: u32,
        ubatch: u32,
        min: u32,
        max: u32,
        max_ubatch: u32,
    },
    #[error("plugin {plugin} proposed offload of {gpu_layers} layers on the GPU with the experts of {cpu_moe_layers} on the CPU (the model has {layers} layers to offload, {expert_layers} with experts)")]
    OffloadOutOfRange {
        plugin: String,
        gpu_layers: u32,
        cpu_moe_layers: u32,
        layers: u32,
        expert_layers: u32,
    },
    #[error("plugin {plugin} proposed the variant {variant}, which cannot run here: {why}")]
    ImpossibleVariant {
        plugin: String,
        variant: String,
        why: String,
    },
    #[error("plugin {plugin} proposed concurrency {value} (its concurrency bounds are {min}..={max} streams; the largest is testing.concurrency_progression.max_concurrency)")]
    ConcurrencyOutOfRange {
        plugin: String,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// How to fix a component built for another plugin API version: rebuild an older one
/// against the current SDK; a newer one needs a newer ozone.
fn rebuild_advice(found: &str, expected: &str) -> String {
    let number = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let series = expected.rsplit_once('.').map_or(expected, |(s, _)| s);
    if number(found) < number(expected) {
        format!(
            "update its ozone-sdk dependency to {series} and rebuild it \
             (`cargo build --target wasm32-wasip2 --release`); see wit/CHANGES.md"
        )
    } else {
        format!(
            "it needs a newer ozone; update ozone, or rebuild the plugin against \
             ozone-sdk {series}"
        )
    }
}
