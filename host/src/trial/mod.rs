//! Trials: one configuration run against a real server while the sampler watches — a
//! screen (one full fill), a verification (N samples), or a concurrency level (N streams
//! in a closed loop) —; statistics, the verdict and its reason (`verdict`, the one home
//! of the stability rules), a level's latency and throughput figures.

mod closed_loop;
pub mod quality;
mod runner;
mod sampling;
mod settings;
mod summary;
pub mod verdict;

pub use runner::{TrialRun, TrialRunner};
pub use settings::{AdaptiveTimeouts, TrialSettings};
pub use summary::{concurrency_figures, figures_of, summarize, LoopShape, Summary};

/// Hears each sample of a trial as soon as its request finished (the session logs it).
pub type OnSample<'a> = &'a mut (dyn FnMut(&crate::record::SampleRecord) + Send);
