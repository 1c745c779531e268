//! NVIDIA GPUs through NVML (`nvml-wrapper` loads `libnvidia-ml.so.1` at run time).
//! One query costs microseconds, so the sampler reads it every tick.

use std::sync::OnceLock;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

use super::{GpuInfo, GpuVendor, Measured, Source};

/// NVML, loaded and initialised once per process: initialisation can take from tens of
/// milliseconds to seconds (driver not in persistence mode), too slow to repeat for every
/// trial's sampler. Any error (no library, no driver, no device permission) means "no
/// NVML here" and the caller falls back to `nvidia-smi`.
pub fn shared() -> Option<&'static Nvml> {
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    NVML.get_or_init(|| match Nvml::init() {
        Ok(nvml) => Some(nvml),
        Err(error) => {
            tracing::debug!("NVML not available: {error}");
            None
        }
    })
    .as_ref()
}

/// Every device NVML lists. `full`: also name, driver and utilization (for a probe);
/// otherwise only what the sampler needs (memory and temperature).
pub fn gpus(nvml: &Nvml, full: bool) -> Vec<GpuInfo> {
    let count = nvml.device_count().unwrap_or(0);
    let driver = if full {
        nvml.sys_driver_version()
            .ok()
            .map(|d| Measured::new(d, Source::Nvml))
    } else {
        None
    };
    (0..count)
        .filter_map(|index| {
            let device = nvml.device_by_index(index).ok()?;
            let memory = device.memory_info().ok();
            let m = |v: u64| Measured::new(v, Source::Nvml);
            Some(GpuInfo {
                index,
                vendor: GpuVendor::Nvidia,
                name: full
                    .then(|| device.name().ok())
                    .flatten()
                    .map(|n| Measured::new(n, Source::Nvml)),
                driver: driver.clone(),
                vram_total_bytes: memory.as_ref().map(|mi| m(mi.total)),
                vram_used_bytes: memory.as_ref().map(|mi| m(mi.used)),
                gtt_total_bytes: None,
                gtt_used_bytes: None,
                unified_memory: false,
                temperature_c: device
                    .temperature(TemperatureSensor::Gpu)
                    .ok()
                    .map(|t| Measured::new(f64::from(t), Source::Nvml)),
                utilization_percent: full
                    .then(|| device.utilization_rates().ok())
                    .flatten()
                    .map(|u| Measured::new(f64::from(u.gpu), Source::Nvml)),
            })
        })
        .collect()
}

/// GPU memory NVML attributes to each process, over every device: compute and graphics
/// processes (a process in both lists of one device is counted once, at the larger
/// figure; across devices its figures add up). `None` for a process means NVML could not
/// say (`NVML_VALUE_NOT_AVAILABLE`, e.g. under WDDM). `Err` when a device cannot list.
pub fn process_memory(nvml: &Nvml) -> Result<Vec<(u32, Option<u64>)>, NvmlError> {
    let mut out: Vec<(u32, Option<u64>)> = Vec::new();
    for index in 0..nvml.device_count()? {
        let device = nvml.device_by_index(index)?;
        // The v3 call: drivers from 510 on.
        let compute = device.running_compute_processes()?;
        // Graphics contexts are rare on a compute server, and some GPUs cannot list them.
        let graphics = device.running_graphics_processes().unwrap_or_default();
        let mut on_device: Vec<(u32, Option<u64>)> = Vec::new();
        for p in compute.into_iter().chain(graphics) {
            let used = match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes),
                UsedGpuMemory::Unavailable => None,
            };
            match on_device.iter_mut().find(|(pid, _)| *pid == p.pid) {
                Some((_, seen)) => *seen = seen.zip(used).map(|(a, b)| a.max(b)),
                None => on_device.push((p.pid, used)),
            }
        }
        for (pid, used) in on_device {
            match out.iter_mut().find(|(p, _)| *p == pid) {
                Some((_, total)) => *total = total.zip(used).map(|(a, b)| a + b),
                None => out.push((pid, used)),
            }
        }
    }
    Ok(out)
}
