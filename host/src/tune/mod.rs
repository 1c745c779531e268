//! The orchestration of one `ozone tune`: probe, facts, context search, batch scaling,
//! concurrency, presets, outputs.

pub mod memory;
pub mod presets;
