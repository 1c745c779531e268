//! Trials: one configuration run for N samples against a real server while the sampler
//! watches; statistics and the stable/unstable verdict.

mod runner;
mod sampling;
mod settings;
mod summary;

pub use runner::{TrialRun, TrialRunner};
pub use settings::{AdaptiveTimeouts, TrialSettings};
pub use summary::{summarize, verdict, Summary};
