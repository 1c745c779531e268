//! Trials: one configuration run for N samples against a real server while the sampler
//! watches; statistics and the stable/unstable verdict.

mod prompt;
mod record;
mod requester;
mod runner;
mod settings;
mod summary;

pub use runner::{TrialRun, TrialRunner};
pub use settings::{AdaptiveTimeouts, TrialSettings};
pub use summary::{summarize, verdict, Summary};

pub use record::{
    Failure, FailureKind, KvCacheType, Phase, SampleRecord, Stats, TrialConfig, TrialRecord,
    Verdict,
};
