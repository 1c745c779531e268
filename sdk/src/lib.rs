//! `ozone-sdk`: write an Ozone strategy plugin in plain Rust.
//!
//! Ozone searches for the largest stable context and the best batch size with
//! *strategies*: small WebAssembly components that propose a value, see the measured
//! outcome, and propose again. This crate is everything an author needs:
//!
//! - the traits [`ContextSearch`] and [`BatchScaler`] over plain types ([`HardwareFacts`],
//!   [`ModelInfo`], [`Outcome`]);
//! - [`export_context_search!`] / [`export_batch_scaler!`], which make a type the
//!   component's export (the WIT bindings stay private);
//! - [`settings::parse`] for the plugin's JSON settings and [`log()`] for the host's log;
//! - [`testing`], a native harness to unit-test a policy with `cargo test`.
//!
//! Build a plugin with `cargo build --target wasm32-wasip2 --release` (crate-type
//! `cdylib`) and load it with `ozone tune --context-strategy target/…/my_plugin.wasm`.
//! The contract is `wit/strategy.wit`, package `ozone:strategy@0.1.0`.

// The generated bindings name paths `::ozone_sdk::…`, which must also resolve in here.
extern crate self as ozone_sdk;

mod log;
mod macros;
pub mod settings;
mod strategy;
pub mod testing;
mod types;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod export;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use export as __export;

pub use log::log;
pub use strategy::{BatchScaler, ContextSearch};
pub use types::*;

/// The plugin API version this SDK builds against (the WIT package version).
pub const API_VERSION: &str = "0.1.0";

#[cfg(test)]
mod tests;
