//! Hardware probing (CPU, RAM, GPUs) and the 100 ms peak sampler.
//!
//! Every reading carries the source it came from; a value that could not be read is
//! absent (`None`), never 0.

mod series;
mod snapshot;

pub use series::{Peaks, SamplePoint, SampleSeries};

pub use snapshot::{CpuInfo, GpuInfo, GpuVendor, HardwareSnapshot, MemoryInfo, Measured, Source};
