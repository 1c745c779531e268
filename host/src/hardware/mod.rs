//! Hardware probing (CPU, RAM, GPUs) and the 100 ms peak sampler.
//!
//! Every reading carries the source it came from; a value that could not be read is
//! absent (`None`), never 0.

mod amd_sysfs;
mod cpu_stat;
mod error;
mod gpu_monitor;
mod meminfo;
mod nvidia_smi;
mod nvml;
mod probe;
pub(crate) mod process_tree;
mod rocm_smi;
mod sampler;
mod snapshot;
mod system;
mod tool;

pub use error::HardwareError;
pub use probe::{probe, ProbeOptions};
pub use sampler::{Sampler, SamplerOptions, TickTimes};

pub use snapshot::{CpuInfo, GpuInfo, GpuVendor, HardwareSnapshot, Measured, MemoryInfo, Source};
