//! Hardware probing (CPU, RAM, GPUs) and the readers the sampler polls
//! ([`crate::guard::Sampler`] runs them every 100 ms).
//!
//! Every reading carries the source it came from; a value that could not be read is
//! absent (`None`), never 0.

mod amd_fdinfo;
mod amd_sysfs;
mod cpu_stat;
pub(crate) mod gpu_monitor;
mod meminfo;
mod nvidia_smi;
mod nvml;
mod probe;
pub mod process_gpu;
pub(crate) mod process_tree;
mod rocm_smi;
mod snapshot;
pub(crate) mod system;
mod tool;
mod vulkan;

pub use probe::{probe, ProbeOptions};
pub use vulkan::{
    drivers_in as vulkan_drivers_in, installed_drivers as vulkan_drivers, VulkanDriver,
};

pub use snapshot::{CpuInfo, GpuInfo, GpuVendor, HardwareSnapshot, Measured, MemoryInfo, Source};
