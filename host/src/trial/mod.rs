//! Trials: one configuration run for N samples against a real server while the sampler
//! watches; statistics and the stable/unstable verdict.

mod record;
mod settings;

pub use settings::{AdaptiveTimeouts, TrialSettings};

pub use record::{
    Failure, FailureKind, KvCacheType, Phase, SampleRecord, Stats, TrialConfig, TrialRecord,
    Verdict,
};
