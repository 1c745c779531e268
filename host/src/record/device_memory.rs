//! Device memory as llama.cpp accounts for it: the table llama-server prints when it
//! stops (`common_memory_breakdown_print`, `llama_memory_breakdown_print` before 2026),
//! one row per device (CUDA, ROCm, Vulkan, Metal, …) with what the server's own buffers
//! take on it — model weights, KV cache and other context state, compute buffers — and
//! the device's total and free memory as the backend reports them; then the host.
//!
//! Recorded per trial beside the live readings. Where no live per-process GPU reading
//! exists (lavapipe, Metal, `nvidia-smi` only, …) the devices' own sum stands for the
//! server's GPU memory, and the record says which one it is.

use serde::{Deserialize, Serialize};

use super::TrialRecord;

const MIB: u64 = 1024 * 1024;

/// One printed breakdown: the devices, then the host rows. Figures in MiB, as printed
/// (each rounded down on its own, so `self` may differ from the sum of its parts by a
/// MiB or two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MemoryBreakdown {
    pub devices: Vec<DeviceMemory>,
    /// `Host` and buffer types that belong to no device (`CPU_REPACK`, `CUDA_Host` …):
    /// system memory the server's buffers take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host: Vec<HostMemory>,
    /// Which figure the trial's `peaks.server_gpu_mem_bytes` holds: the live per-process
    /// reading, or (where there was none) the devices' `self` summed from this table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_gpu_source: Option<ServerGpuSource>,
}

/// A device row: `CUDA0 (RTX 4090) | 24080 = 9436 + (14193 = 13169 + 38 + 985) + 451`,
/// total = free + (self = model + context + compute) + unaccounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMemory {
    /// The backend's device name: `CUDA0`, `ROCm1`, `Vulkan0`, `MTL0`, `RPC0` …
    pub name: String,
    /// What the backend calls the device (`RTX 4090`, `llvmpipe (LLVM 15.0.6, 256
    /// bits)`), when printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub total_mib: u64,
    /// Free device memory as the backend reported it when the table was printed (for
    /// lavapipe and some unified-memory devices: the total, untouched).
    pub free_mib: u64,
    /// model + context + compute: what this server's buffers take on the device.
    pub self_mib: u64,
    pub model_mib: u64,
    pub context_mib: u64,
    pub compute_mib: u64,
}

impl DeviceMemory {
    /// Memory in use on the device that is not this server's buffers (drivers, other
    /// processes, the backend's own context): total − free − self, negative where the
    /// device does not count this server's buffers as used (lavapipe). llama.cpp prints
    /// the same difference; some builds printed it wrapped around as unsigned.
    pub fn unaccounted_mib(&self) -> i64 {
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        signed(self.total_mib) - signed(self.free_mib) - signed(self.self_mib)
    }
}

/// A host row: `Host | 197 = 166 + 0 + 30` (self = model + context + compute); the
/// first builds printed the CPU as a device with its total and no free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMemory {
    /// `Host`, a buffer type's name, or the CPU device (`CPU`).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_mib: Option<u64>,
    pub self_mib: u64,
    pub model_mib: u64,
    pub context_mib: u64,
    pub compute_mib: u64,
}

/// Where a trial's server GPU memory figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerGpuSource {
    /// Read while the trial ran, every sampler tick (NVML per process, amdgpu fdinfo):
    /// the peak.
    Live,
    /// llama.cpp's breakdown when the server stopped: the devices' `self` summed. What
    /// the server's buffers held at the end, not a peak over the trial, and known only
    /// after it: the guard could not stop the trial on it.
    Breakdown,
}

impl MemoryBreakdown {
    /// What the server's buffers take over all its devices, bytes (`self` summed); `None`
    /// when no device row was printed (a CPU-only server prints none).
    pub fn device_self_bytes(&self) -> Option<u64> {
        if self.devices.is_empty() {
            return None;
        }
        Some(
            self.devices
                .iter()
                .map(|d| d.self_mib.saturating_mul(MIB))
                .fold(0u64, u64::saturating_add),
        )
    }

    /// The row of device `name` (`Vulkan0`, `CUDA1`).
    pub fn device(&self, name: &str) -> Option<&DeviceMemory> {
        self.devices.iter().find(|d| d.name == name)
    }
}

impl TrialRecord {
    /// Where `peaks.server_gpu_mem_bytes` came from: the breakdown when the record says
    /// so, else the live reading when there is a figure at all.
    pub fn server_gpu_source(&self) -> Option<ServerGpuSource> {
        self.peaks.server_gpu_mem_bytes?;
        Some(
            self.memory_breakdown
                .as_ref()
                .and_then(|m| m.server_gpu_source)
                .unwrap_or(ServerGpuSource::Live),
        )
    }

    /// Fills the server's GPU memory from the breakdown where nothing read it live, and
    /// says in the breakdown which figure the peaks hold. The live reading always wins.
    pub fn attach_memory_breakdown(&mut self, breakdown: Option<MemoryBreakdown>) {
        let Some(mut breakdown) = breakdown else {
            return;
        };
        breakdown.server_gpu_source = match (
            self.peaks.server_gpu_mem_bytes,
            breakdown.device_self_bytes(),
        ) {
            (Some(_), _) => Some(ServerGpuSource::Live),
            (None, Some(bytes)) => {
                self.peaks.server_gpu_mem_bytes = Some(bytes);
                Some(ServerGpuSource::Breakdown)
            }
            (None, None) => None,
        };
        self.memory_breakdown = Some(breakdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context trial as a log written before breakdowns holds it (`record` is a leaf:
    /// no fixtures from above it).
    fn trial() -> TrialRecord {
        serde_json::from_value(serde_json::json!({
            "id": 1, "phase": "context", "stage": "screen",
            "config": {"ctx": 2048, "batch": 64, "ubatch": 64, "concurrency": 1, "kv_cache_type": "f16"},
            "started_at": "2026-01-01T00:00:00Z", "duration_ms": 900, "granted_ctx": 2048,
            "samples": [], "ttft_ms": null, "prefill_tps": null, "decode_tps": null,
            "success_rate": 1.0, "cv": null,
            "peaks": {"gpu_mem_used_bytes": null, "ram_used_bytes": null, "process_rss_bytes": 52428800,
                      "gpu_temp_c": null, "cpu_percent": null},
            "breach": null, "failure": null, "verdict": "stable", "server_log_tail": []
        }))
        .expect("an old trial line")
    }

    fn lavapipe() -> MemoryBreakdown {
        MemoryBreakdown {
            devices: vec![DeviceMemory {
                name: "Vulkan0".into(),
                description: Some("llvmpipe (LLVM 15.0.6, 256 bits)".into()),
                total_mib: 2048,
                free_mib: 2048,
                self_mib: 91,
                model_mib: 40,
                context_mib: 32,
                compute_mib: 19,
            }],
            host: vec![HostMemory {
                name: "Host".into(),
                description: None,
                total_mib: None,
                self_mib: 79,
                model_mib: 40,
                context_mib: 32,
                compute_mib: 7,
            }],
            server_gpu_source: None,
        }
    }

    #[test]
    fn the_devices_self_stands_for_the_server_only_where_nothing_read_it_live() {
        let mut record = trial();
        record.peaks.server_gpu_mem_bytes = None;
        assert_eq!(record.server_gpu_source(), None);
        record.attach_memory_breakdown(Some(lavapipe()));
        assert_eq!(record.peaks.server_gpu_mem_bytes, Some(91 * MIB));
        assert_eq!(record.server_gpu_source(), Some(ServerGpuSource::Breakdown));

        let mut live = trial();
        live.peaks.server_gpu_mem_bytes = Some(7 * MIB);
        live.attach_memory_breakdown(Some(lavapipe()));
        assert_eq!(live.peaks.server_gpu_mem_bytes, Some(7 * MIB));
        assert_eq!(live.server_gpu_source(), Some(ServerGpuSource::Live));

        // A CPU server prints no device: nothing to stand for the GPU.
        let mut cpu = trial();
        cpu.peaks.server_gpu_mem_bytes = None;
        cpu.attach_memory_breakdown(Some(MemoryBreakdown {
            devices: Vec::new(),
            ..lavapipe()
        }));
        assert_eq!(cpu.peaks.server_gpu_mem_bytes, None);
        assert_eq!(cpu.server_gpu_source(), None);
    }

    #[test]
    fn unaccounted_is_what_the_device_uses_beyond_this_server() {
        let d = &lavapipe().devices[0];
        // lavapipe does not count the server's buffers as used.
        assert_eq!(d.unaccounted_mib(), -91);
        assert_eq!(lavapipe().device_self_bytes(), Some(91 * MIB));
        assert!(lavapipe().device("Vulkan0").is_some());
    }

    #[test]
    fn old_logs_read_and_an_absent_breakdown_is_not_written() {
        let record = trial();
        let json = serde_json::to_value(&record).expect("json");
        assert!(json.get("memory_breakdown").is_none(), "{json}");
        let back: TrialRecord = serde_json::from_value(json).expect("reads");
        assert_eq!(back.memory_breakdown, None);

        let mut with = record;
        with.attach_memory_breakdown(Some(lavapipe()));
        let json = serde_json::to_value(&with).expect("json");
        assert_eq!(json["memory_breakdown"]["devices"][0]["self_mib"], 91);
        assert_eq!(json["memory_breakdown"]["server_gpu_source"], "breakdown");
        let back: TrialRecord = serde_json::from_value(json).expect("reads");
        assert_eq!(back, with);
    }
}
