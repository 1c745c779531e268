//! Trials: one configuration run for N samples (a concurrency level: N streams in a
//! closed loop) against a real server while the sampler watches; statistics, the
//! stable/unstable verdict, a concurrency level's latency and throughput figures.

mod closed_loop;
mod runner;
mod sampling;
mod settings;
mod summary;

pub use runner::{TrialRun, TrialRunner};
pub use settings::{AdaptiveTimeouts, TrialSettings};
pub use summary::{concurrency_figures, figures_of, summarize, verdict, LoopShape, Summary};
