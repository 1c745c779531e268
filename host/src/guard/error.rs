use thiserror::Error;

/// Why hardware sampling could not start.
#[derive(Debug, Error)]
pub enum SamplerError {
    #[error("the sampling interval must be above 0 ms")]
    ZeroInterval,
    #[error("cannot start the hardware sampler thread")]
    SpawnThread(#[source] std::io::Error),
}
