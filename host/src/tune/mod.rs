//! The orchestration of one `ozone tune`: probe, facts, context search, batch scaling,
//! concurrency, presets, outputs.
//!
//! [`driver`] is the loop itself (plugins propose, trials run, outcomes go back), apart
//! from where trials come from; [`session`] puts a real server, the log and the output
//! files around it.

pub mod driver;
pub mod memory;
pub mod presets;
mod progress;
pub(crate) mod session;

pub use session::{
    tune, RunParameters, TuneFailure, TuneJob, TuneResult, WarmStartSource, CONTEXT_GRANULARITY,
};
