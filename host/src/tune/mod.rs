//! The search itself, apart from the real world: the run's set-up and what is derived
//! from it (`setup`), the driver's loop (plugins propose, trials run, outcomes go back),
//! what bound each limit it found (`bounds`), the presets derived from its trials and
//! the warm-start store.
//!
//! [`driver`] knows nothing about servers: a [`driver::TrialExecutor`] runs trials
//! (`crate::session` on a real server, `crate::lab` from a recorded profile).

pub mod bounds;
pub mod driver;
pub mod presets;
pub mod setup;
pub mod warm_start;

pub use setup::{PluginUse, RunParameters, RunSetup, CONTEXT_GRANULARITY};
pub use warm_start::WarmStartSource;
