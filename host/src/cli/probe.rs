//! `ozone probe`: this machine's hardware as a readable table, or as JSON.
//!
//! # `ozone probe --json` (stable field names)
//!
//! Every reading is `{"value": V, "source": S}` or `null` when it could not be read
//! (never 0). `S` is one of `nvml`, `nvidia-smi`, `sysfs`, `rocm-smi`, `sysinfo`,
//! `procfs`. Every key below is always present.
//!
//! ```text
//! {
//!   "taken_at": "2026-11-26T12:00:00.000Z",      RFC 3339, UTC
//!   "hostname": "box" | null,
//!   "os": "Linux 24.04 Ubuntu" | null,
//!   "cpu": {
//!     "model":          reading<string>,
//!     "physical_cores": reading<int>,
//!     "logical_cores":  reading<int>            all logical CPUs (as `nproc --all`)
//!   },
//!   "memory": {
//!     "total_bytes":     reading<int>,
//!     "available_bytes": reading<int>            MemAvailable on Linux
//!   },
//!   "gpus": [{
//!     "index": int,                              NVML index / DRM card number
//!     "vendor": "nvidia" | "amd" | "intel" | "apple" | "other",
//!     "name": reading<string>, "driver": reading<string>,
//!     "vram_total_bytes": reading<int>, "vram_used_bytes": reading<int>,
//!     "gtt_total_bytes":  reading<int>, "gtt_used_bytes":  reading<int>,   AMD only
//!     "unified_memory": bool,                    GPU shares system RAM (usable = VRAM + GTT)
//!     "temperature_c": reading<float>,           edge sensor on AMD
//!     "utilization_percent": reading<float>
//!   }],
//!   "vulkan_drivers": [{                         what a Vulkan llama-server loads at start
//!     "manifest": path, "library": string | null, "software": bool   lavapipe: true
//!   }]
//! }
//! ```
//!
//! `ozone probe --model MODEL.gguf` also reads the model's header: its layers by kind
//! (full attention, sliding window, recurrent), the KV cache a token costs at each cache
//! type, and its experts (JSON: `{"hardware": …, "model": …}`).

use std::path::PathBuf;

use anyhow::Context;

use super::{CliError, Exit, ResultExt};
use crate::backend::gguf::read_model_metadata;
use crate::backend::layout::LayerKind;
use crate::backend::ModelMetadata;
use crate::hardware::{self, GpuInfo, HardwareSnapshot, Measured, ProbeOptions, Source};
use crate::record::KvCacheType;

const MIB: f64 = (1u64 << 20) as f64;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the snapshot as JSON (stable field names; unreadable values are null).
    #[arg(long)]
    pub json: bool,
    /// Where sysfs is mounted (AMD GPUs are read from <ROOT>/class/drm).
    #[arg(long, value_name = "ROOT", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Do not run nvidia-smi / rocm-smi when NVML / sysfs find nothing.
    #[arg(long)]
    pub no_smi: bool,
    /// Also read a model's header (GGUF): its layers by kind, the KV cache per token at
    /// each cache type, its experts.
    #[arg(long, value_name = "MODEL.gguf")]
    pub model: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let model = match &args.model {
        Some(path) => Some(read_model_metadata(path).exit(Exit::BadInput)?),
        None => None,
    };
    let snapshot = hardware::probe(&ProbeOptions {
        sysfs_root: args.sysfs_root,
        use_smi_fallbacks: !args.no_smi,
        ..ProbeOptions::default()
    });
    if args.json {
        let json = match &model {
            Some(model) => serde_json::to_string_pretty(
                &serde_json::json!({ "hardware": snapshot, "model": model }),
            ),
            None => serde_json::to_string_pretty(&snapshot),
        }
        .context("serialising the snapshot")?;
        println!("{json}");
    } else {
        print!("{}", table(&snapshot));
        if let Some(model) = &model {
            print!("\n{}", model_table(model));
        }
    }
    Ok(())
}

/// The model's facts as a tune plans with them: size, context, and what its KV cache
/// costs by layer kind.
pub fn model_table(m: &ModelMetadata) -> String {
    let mut out = format!(
        "MODEL {} — {} — {} parameters — trained for {} tokens\n",
        m.name,
        m.architecture.as_deref().unwrap_or("?"),
        m.parameter_count
            .map_or("?".into(), |p| format!("{:.2} B", p as f64 / 1e9)),
        m.trained_context.map_or("?".into(), |c| c.to_string())
    );
    if m.layers.is_empty() {
        out += "      layers: the header does not give their shape\n";
    }
    for g in &m.layers {
        let (kind, note) = match g.kind {
            LayerKind::FullAttention => ("full attention", "grows with every token".into()),
            LayerKind::SlidingWindow { window } => (
                "sliding window",
                format!("holds at most {window} tokens (+ one micro-batch)"),
            ),
            LayerKind::Recurrent => (
                "recurrent",
                g.state_bytes
                    .map_or("a fixed state per sequence".into(), |b| {
                        format!("a fixed {:.1} MiB per sequence", b as f64 / MIB)
                    }),
            ),
        };
        let per_type: Vec<String> = [KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0]
            .iter()
            .map(|&t| format!("{} {} B", t.name(), g.kv_bytes_per_token(t, t)))
            .collect();
        out += &format!(
            "      {:>3} × {kind:<15} {note}; KV a token per layer: {}\n",
            g.count,
            per_type.join(", ")
        );
    }
    let slope = |t| {
        m.kv_bytes_per_token(t, t)
            .map_or("?".into(), |b| format!("{b} B"))
    };
    out += &format!(
        "      KV cache a token at long context: f16 {}, q8_0 {}, q4_0 {}\n",
        slope(KvCacheType::F16),
        slope(KvCacheType::Q8_0),
        slope(KvCacheType::Q4_0)
    );
    if let Some(e) = m.experts {
        out += &format!(
            "      experts: {} per layer ({} used a token) on {} layers: --n-cpu-moe keeps \
             those of the first N layers on the CPU\n",
            e.count, e.used, e.layers
        );
    }
    out
}

/// The readable form: one block for the machine, one row per GPU.
pub fn table(s: &HardwareSnapshot) -> String {
    let mut out = String::new();
    let host = s.hostname.as_deref().unwrap_or("unknown host");
    let os = s.os.as_deref().unwrap_or("unknown OS");
    out += &format!(
        "{host} — {os} — {}\n\n",
        s.taken_at.format("%Y-%m-%d %H:%M:%S UTC")
    );

    let cpu = &s.cpu;
    out += &format!(
        "CPU   {}  [{}]\n",
        text(&cpu.model),
        sources(&[cpu.model.as_ref().map(|m| m.source)])
    );
    out += &format!(
        "      {} logical / {} physical cores  [{}]\n",
        count(cpu.logical_cores),
        count(cpu.physical_cores),
        sources(&[
            cpu.logical_cores.map(|m| m.source),
            cpu.physical_cores.map(|m| m.source)
        ])
    );
    let mem = &s.memory;
    out += &format!(
        "RAM   {} total, {} available  [{}]\n\n",
        gib(mem.total_bytes),
        gib(mem.available_bytes),
        sources(&[
            mem.total_bytes.map(|m| m.source),
            mem.available_bytes.map(|m| m.source)
        ])
    );

    out += &vulkan_line(s);
    if s.gpus.is_empty() {
        out += "GPU   none found (tried NVML, nvidia-smi, AMD sysfs, rocm-smi)\n";
        return out;
    }
    out += &format!(
        "{:<4} {:<7} {:<28} {:<22} {:<22} {:>6} {:>5}  {}\n",
        "GPU", "VENDOR", "NAME", "VRAM used / total", "GTT used / total", "TEMP", "UTIL", "SOURCE"
    );
    for g in &s.gpus {
        out += &gpu_row(g);
    }
    if s.unified_memory() {
        out += "\n* unified memory: the GPU shares system RAM; usable memory is VRAM + GTT\n";
    }
    out
}

/// The Vulkan drivers a Vulkan build of llama-server would load at start, and what that
/// means for a memory budget.
fn vulkan_line(s: &HardwareSnapshot) -> String {
    if s.vulkan_drivers.is_empty() {
        return "VULKAN no drivers installed\n\n".to_owned();
    }
    let names: Vec<String> = s
        .vulkan_drivers
        .iter()
        .map(|d| {
            let name = d
                .manifest
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if d.software {
                format!("{name} (software)")
            } else {
                name
            }
        })
        .collect();
    format!(
        "VULKAN {}\n       a Vulkan build of llama-server loads every one at start, GPU or not \
         (Mesa's add ~50 MiB resident per server): it counts against --memory-budget-mb; \
         --memory-headroom-mb is measured over it\n\n",
        names.join(", ")
    )
}

fn gpu_row(g: &GpuInfo) -> String {
    let vendor = serde_json::to_value(g.vendor)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let pair = |used: Option<Measured<u64>>, total: Option<Measured<u64>>| {
        if used.is_none() && total.is_none() {
            "-".to_owned()
        } else {
            format!("{} / {}", gib(used), gib(total))
        }
    };
    let mut name = text(&g.name);
    if g.unified_memory {
        name.push_str(" *");
    }
    format!(
        "{:<4} {:<7} {:<28} {:<22} {:<22} {:>6} {:>5}  {}\n",
        g.index,
        vendor,
        name,
        pair(g.vram_used_bytes, g.vram_total_bytes),
        pair(g.gtt_used_bytes, g.gtt_total_bytes),
        g.temperature_c
            .map_or("-".to_owned(), |t| format!("{:.0}°C", t.value)),
        g.utilization_percent
            .map_or("-".to_owned(), |u| format!("{:.0}%", u.value)),
        sources(&[
            g.name.as_ref().map(|m| m.source),
            g.vram_total_bytes.map(|m| m.source),
            g.vram_used_bytes.map(|m| m.source),
            g.gtt_used_bytes.map(|m| m.source),
            g.temperature_c.map(|m| m.source),
            g.utilization_percent.map(|m| m.source),
        ])
    )
}

fn text(m: &Option<Measured<String>>) -> String {
    m.as_ref().map_or("?".to_owned(), |m| m.value.clone())
}

fn count(m: Option<Measured<u32>>) -> String {
    m.map_or("?".to_owned(), |m| m.value.to_string())
}

fn gib(m: Option<Measured<u64>>) -> String {
    m.map_or("?".to_owned(), |m| {
        format!("{:.1} GiB", m.value as f64 / (1u64 << 30) as f64)
    })
}

/// The distinct sources of a row, in order, e.g. `sysfs` or `procfs+sysinfo`.
fn sources(list: &[Option<Source>]) -> String {
    let mut names: Vec<String> = Vec::new();
    for source in list.iter().flatten() {
        let name = serde_json::to_value(source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        "unreadable".to_owned()
    } else {
        names.join("+")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn table_shows_an_apu_with_its_sources() {
        let snapshot = hardware::probe(&ProbeOptions {
            sysfs_root: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/hardware/sysfs/apu-strix-halo"),
            use_smi_fallbacks: false,
            ..ProbeOptions::default()
        });
        let table = table(&snapshot);
        assert!(table.contains("AMD GPU 0x1586 *"), "{table}");
        assert!(table.contains("0.2 GiB / 0.5 GiB"), "{table}"); // VRAM carve-out
        assert!(table.contains("19.0 GiB / 64.0 GiB"), "{table}"); // GTT
        assert!(table.contains("38°C"), "{table}");
        assert!(table.contains("unified memory"), "{table}");
        assert!(
            table.contains("[procfs]") || table.contains("[sysinfo]"),
            "{table}"
        );
    }

    #[test]
    fn mesa_s_drivers_are_named_with_what_they_cost() {
        let snapshot = HardwareSnapshot {
            vulkan_drivers: hardware::vulkan_drivers_in([Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/hardware/vulkan/icd.d"
            ))]),
            ..crate::fixtures::hardware()
        };
        let line = vulkan_line(&snapshot);
        assert!(
            line.starts_with(
                "VULKAN intel_icd.x86_64, lvp_icd.x86_64 (software), radeon_icd.x86_64"
            ),
            "{line}"
        );
        assert!(line.contains("--memory-headroom-mb"), "{line}");
    }
}
