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
//!   }]
//! }
//! ```

use std::path::PathBuf;

use anyhow::Context;

use super::CliError;
use crate::hardware::{self, GpuInfo, HardwareSnapshot, Measured, ProbeOptions, Source};

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
}

pub fn run(args: Args) -> Result<(), CliError> {
    let snapshot = hardware::probe(&ProbeOptions {
        sysfs_root: args.sysfs_root,
        use_smi_fallbacks: !args.no_smi,
        ..ProbeOptions::default()
    });
    if args.json {
        let json = serde_json::to_string_pretty(&snapshot).context("serialising the snapshot")?;
        println!("{json}");
    } else {
        print!("{}", table(&snapshot));
    }
    Ok(())
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
}
