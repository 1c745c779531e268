//! The wasmtime component host for strategy plugins: loading, sandbox limits, bindings.
//!
//! A strategy is a WebAssembly component implementing one world of `wit/strategy.wit`
//! (`ozone:strategy@0.1.0`): `context-strategy` or `batch-strategy`. [`PluginHost`]
//! loads one (built-in or a file), checks its world and API version, and returns a
//! [`ContextSearch`] or [`BatchScaler`] handle the tune loop drives with
//! `propose` → trial → `observe` → … → `best`.
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
pub use facts::{ContextBounds, HardwareFacts, Headroom, ModelInfo, Outcome};
pub use host::{PluginHost, PluginRef, World, API_VERSION, DEFAULT_MAX_BATCH};
pub use limits::SandboxLimits;
pub use strategy::{BatchScaler, ContextSearch};
