//! `ozone-sdk`: write an Ozone strategy plugin in plain Rust.
//!
//! Ozone searches for the largest stable context, the best batch size, the concurrency a
//! machine serves, the server variants worth measuring and the GPU offload that fits
//! with *strategies*: small WebAssembly components that propose a value, see the
//! measured outcome, and propose again. This crate is everything an author needs:
//!
//! - the traits [`ContextSearch`], [`BatchScaler`], [`ConcurrencySearch`],
//!   [`VariantSearch`] and [`OffloadSearch`] over plain types ([`HardwareFacts`],
//!   [`ModelFacts`], [`TrialOutcome`], [`ConcurrencyOutcome`], [`VariantOutcome`], …) —
//!   the same types the host builds on its side;
//! - [`export_context_search!`], [`export_batch_scaler!`],
//!   [`export_concurrency_search!`], [`export_variant_search!`] and
//!   [`export_offload_search!`], which make a type the component's export (the WIT
//!   bindings stay private);
//! - [`settings::parse`] for the plugin's JSON settings and [`log()`] for the host's log;
//! - [`bisect`], the bracket and pending-proposal bookkeeping most searches share;
//! - [`testing`], a native harness to unit-test a policy with `cargo test`.
//!
//! Build a plugin with `cargo build --target wasm32-wasip2 --release` (crate-type
//! `cdylib`) and load it with `ozone tune --context-strategy target/…/my_plugin.wasm`.
//! The contract is `wit/strategy.wit`, package `ozone:strategy@0.3.0` ([`API_VERSION`]).

//!
//! The author's guide follows (the crate's `README.md`; its Rust snippet is compiled as a
//! doc test).
//!
#![doc = include_str!("../README.md")]
// The README's crate keeps its `#[test]` as an author writes it: compiled here, run by
// the host's first-hour test, which pastes the crate out and runs `cargo test`.
#![allow(clippy::test_attr_in_doctest)]

// The generated bindings name paths `::ozone_sdk::…`, which must also resolve in here.
extern crate self as ozone_sdk;

pub mod bisect;
mod concurrency;
mod log;
mod macros;
mod model;
mod offload;
pub mod settings;
mod strategy;
pub mod testing;
pub mod timing;
mod types;
mod variant;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod export;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub use export as __export;

pub use concurrency::*;
pub use log::log;
pub use model::*;
pub use offload::*;
pub use strategy::{BatchScaler, ConcurrencySearch, ContextSearch, OffloadSearch, VariantSearch};
pub use types::*;
pub use variant::*;

/// The plugin API version this SDK builds against: the version of the WIT package in
/// `wit/strategy.wit` (a test holds them equal). The host speaks exactly this version.
pub const API_VERSION: &str = "0.3.0";

#[cfg(test)]
mod tests;
