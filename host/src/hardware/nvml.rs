//! NVIDIA GPUs through NVML (`nvml-wrapper` loads `libnvidia-ml.so.1` at run time).
//! One query costs microseconds, so the sampler reads it every tick.

use std::sync::OnceLock;

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
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
