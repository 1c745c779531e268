//! The wasmtime component host for strategy plugins: loading, sandbox limits, bindings.
//!
//! A strategy is a WebAssembly component implementing one world of the plugin contract
//! (`wit/v0.3.0/strategy.wit`, `ozone:strategy@0.3.0`): `context-strategy`,
//! `batch-strategy`, `concurrency-strategy`, `variant-strategy` or `offload-strategy`.
//! [`PluginHost`] loads one (built-in or a file), checks its world and API version — a
//! component built for another version is refused with how to rebuild it — and returns
//! a [`ContextSearch`], [`BatchScaler`], [`ConcurrencySearch`], [`OffloadSearch`] (each a
//! [`Strategy`] the tune loop drives with `propose` → trial → `observe` → … → `best`)
//! or a [`VariantSearch`] (propose → the host measures the variant → observe).
//!
//! The records at this boundary are the SDK's plain types (`ozone_sdk`, re-exported
//! here); [`hardware_facts`], [`model_facts`] and [`trial_outcome`] build them from the
//! host's own records, and `bindings` converts them to the generated WIT types.
//!
//! Sandbox: one engine; one store per instance with a fuel budget per call, a memory
//! cap and a stack cap ([`SandboxLimits`]); the only import is `log`; the WASI imports a
//! Rust guest links are defined as traps (no env, files, clocks, random, sockets). A
//! call that fails discards its store. Proposals are checked against the bounds.

mod bindings;
mod builtin;
mod engine;
mod error;
mod facts;
mod host;
mod limits;
mod sandbox;
mod strategy;

pub use builtin::{Builtin, BUILTINS};
pub use error::PluginError;
pub use facts::{
    batch_bounds, concurrency_bounds, concurrency_outcome, context_limits, hardware_facts,
    model_facts, slo_verdict, trial_outcome, variant_of,
};
pub use host::{PluginHost, PluginRef, World};
pub use limits::SandboxLimits;
pub use ozone_sdk::{
    BatchBounds, BatchProposal, BoundKind, CacheType, ConcurrencyBounds, ConcurrencyOutcome,
    ContextBounds, ContextLimits, FlashAttn, HardwareFacts, ModelFacts, Offload, OffloadBounds,
    Quality, Slo, SloBound, SloMetric, TimeoutRule, TrialOutcome, Variant, VariantOutcome,
    VariantSpace, API_VERSION,
};
pub use strategy::{
    BatchScaler, ConcurrencySearch, ContextSearch, OffloadSearch, Strategy, VariantSearch,
};

#[cfg(test)]
mod tests;
