//! What the sampler records: one point per tick, and the peaks over a trial.

use serde::{Deserialize, Serialize};

/// One sampler tick. Absent fields could not be read on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SamplePoint {
    /// Milliseconds since the sampler started.
    pub t_ms: u64,
    /// GPU memory in use over all GPUs (VRAM, plus GTT on unified-memory APUs).
    pub gpu_mem_used_bytes: Option<u64>,
    pub ram_used_bytes: Option<u64>,
    pub ram_available_bytes: Option<u64>,
    /// Resident memory of the watched process tree (the inference server).
    pub process_rss_bytes: Option<u64>,
    /// GPU memory used by the watched process tree, over all GPUs (NVML per process;
    /// amdgpu DRM client stats). Absent where the GPU cannot say per process (and then
    /// not written: a CPU run's log stays as it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_gpu_mem_bytes: Option<u64>,
    /// Hottest GPU.
    pub gpu_temp_c: Option<f64>,
    /// Whole-machine CPU busy percent over the interval since the previous tick.
    pub cpu_percent: Option<f64>,
}

/// Maxima over a sampling window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Peaks {
    pub gpu_mem_used_bytes: Option<u64>,
    pub ram_used_bytes: Option<u64>,
    pub process_rss_bytes: Option<u64>,
    /// Peak GPU memory of the server's own processes (not written when never read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_gpu_mem_bytes: Option<u64>,
    pub gpu_temp_c: Option<f64>,
    pub cpu_percent: Option<f64>,
}

impl Peaks {
    /// Folds one point into the peaks.
    pub fn observe(&mut self, p: &SamplePoint) {
        fn max_u(a: &mut Option<u64>, b: Option<u64>) {
            if let Some(b) = b {
                *a = Some(a.map_or(b, |a| a.max(b)));
            }
        }
        fn max_f(a: &mut Option<f64>, b: Option<f64>) {
            if let Some(b) = b {
                *a = Some(a.map_or(b, |a| a.max(b)));
            }
        }
        max_u(&mut self.gpu_mem_used_bytes, p.gpu_mem_used_bytes);
        max_u(&mut self.ram_used_bytes, p.ram_used_bytes);
        max_u(&mut self.process_rss_bytes, p.process_rss_bytes);
        max_u(&mut self.server_gpu_mem_bytes, p.server_gpu_mem_bytes);
        max_f(&mut self.gpu_temp_c, p.gpu_temp_c);
        max_f(&mut self.cpu_percent, p.cpu_percent);
    }
}

/// The full series of a sampling window with its peaks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SampleSeries {
    pub interval_ms: u64,
    pub points: Vec<SamplePoint>,
    pub peaks: Peaks,
}
