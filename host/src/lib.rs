//! Ozone: finds, by real measurement, how far a local LLM can be pushed on this machine.
//!
//! The modules follow the tuning loop: probe the hardware, read the model's metadata,
//! let the context plugin search, let the batch plugin scale, climb the concurrency
//! ladder, derive presets, write every output. They import one way, from `record` (the
//! trial log's data) up to `cli` (`host/tests/layers.rs` checks it); the README's
//! "Layout" and `DEVELOPERS.md` ("Layers", "How to add…") are the map.

pub mod backend;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod guard;
pub mod hardware;
pub mod lab;
pub mod plugin;
pub mod record;
pub mod report;
pub mod scaffold;
pub mod session;
pub mod trial;
pub mod tune;

#[cfg(test)]
mod fixtures;
