//! Trials: one configuration run against a real server while the sampler watches — a
//! screen (one full fill) or a verification (N samples) —; statistics and the verdict.

mod runner;
mod sampling;
mod settings;
mod summary;

pub use runner::{TrialRun, TrialRunner};
pub use settings::{AdaptiveTimeouts, TrialSettings};
pub use summary::{summarize, verdict, Summary};

/// Hears each sample of a trial as soon as its request finished (the session logs it).
pub type OnSample<'a> = &'a mut (dyn FnMut(&crate::record::SampleRecord) + Send);
