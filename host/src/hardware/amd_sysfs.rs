//! AMD GPUs read straight from sysfs (`<root>/class/drm/cardN/device/`): VRAM and GTT
//! totals and use (bytes), busy percent, edge temperature from hwmon (millidegrees).
//!
//! On an APU with unified memory (Strix Halo and friends) the BIOS carves out a small
//! VRAM region and the model lives in GTT (system RAM mapped for the GPU), so the usable
//! memory is VRAM + GTT; see [`is_unified_memory`].

use std::path::{Path, PathBuf};

use super::{GpuInfo, GpuVendor, Measured, Source};

const AMD_VENDOR_ID: &str = "0x1002";
const GIB: u64 = 1 << 30;

/// PCI device ids of AMD APU graphics (the GPU shares system RAM). Used together with
/// the memory-shape heuristic in [`is_unified_memory`].
const APU_DEVICE_IDS: &[&str] = &[
    "0x1586", // Strix Halo (Radeon 8060S/8050S)
    "0x150e", // Strix Point (Radeon 890M/880M)
    "0x15bf", // Phoenix (Radeon 780M/760M)
    "0x15c8", // Phoenix2 / Hawk Point
    "0x1681", // Rembrandt (Radeon 680M)
    "0x164e", // Raphael (Ryzen 7000 iGPU)
    "0x1636", // Renoir
    "0x1638", // Cezanne
    "0x163f", // Van Gogh (Steam Deck)
];

/// Every AMD card under `<sysfs_root>/class/drm`, in card order. Absent tree: empty.
pub fn cards(sysfs_root: &Path) -> Vec<PathBuf> {
    let drm = sysfs_root.join("class/drm");
    let Ok(entries) = std::fs::read_dir(&drm) else {
        return Vec::new();
    };
    let mut cards: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            // `card0` yes, `card0-DP-1` (a connector) and `renderD128` no.
            let number: u32 = name.strip_prefix("card")?.parse().ok()?;
            Some((number, e.path()))
        })
        .filter(|(_, path)| {
            read_trimmed(&path.join("device/vendor")).as_deref() == Some(AMD_VENDOR_ID)
        })
        .collect();
    cards.sort_by_key(|(n, _)| *n);
    cards.into_iter().map(|(_, p)| p).collect()
}

/// Everything sysfs tells about one card directory (`.../class/drm/cardN`).
pub fn read_card(card: &Path) -> GpuInfo {
    let device = card.join("device");
    let index = card
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("card"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let bytes = |file: &str| read_u64(&device.join(file)).map(|v| Measured::new(v, Source::Sysfs));
    let device_id = read_trimmed(&device.join("device"));
    let uevent = std::fs::read_to_string(device.join("uevent")).unwrap_or_default();
    let driver = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DRIVER="))
        .map(|d| Measured::new(d.trim().to_owned(), Source::Sysfs));
    let name = read_trimmed(&device.join("product_name"))
        .filter(|n| !n.is_empty())
        .or_else(|| device_id.as_ref().map(|id| format!("AMD GPU {id}")))
        .map(|n| Measured::new(n, Source::Sysfs));

    let vram_total = bytes("mem_info_vram_total");
    let gtt_total = bytes("mem_info_gtt_total");
    let unified = is_unified_memory(
        device_id.as_deref(),
        vram_total.map(|m| m.value),
        gtt_total.map(|m| m.value),
    );
    GpuInfo {
        index,
        vendor: GpuVendor::Amd,
        name,
        driver,
        vram_total_bytes: vram_total,
        vram_used_bytes: bytes("mem_info_vram_used"),
        gtt_total_bytes: gtt_total,
        gtt_used_bytes: bytes("mem_info_gtt_used"),
        unified_memory: unified,
        temperature_c: edge_temperature_c(&device).map(|t| Measured::new(t, Source::Sysfs)),
        utilization_percent: read_u64(&device.join("gpu_busy_percent"))
            .map(|p| Measured::new(p as f64, Source::Sysfs)),
    }
}

/// An APU shares system RAM: either a known APU device id, or the telltale shape of a
/// small VRAM carve-out (≤ 2 GiB) next to a GTT at least four times larger. A discrete
/// card has VRAM larger than (or comparable to) its GTT window.
pub fn is_unified_memory(
    device_id: Option<&str>,
    vram_total: Option<u64>,
    gtt_total: Option<u64>,
) -> bool {
    if device_id.is_some_and(|id| APU_DEVICE_IDS.contains(&id.to_ascii_lowercase().as_str())) {
        return true;
    }
    match (vram_total, gtt_total) {
        (Some(vram), Some(gtt)) => vram <= 2 * GIB && gtt >= 4 * vram,
        _ => false,
    }
}

/// `hwmon/hwmon*/temp1_input` (the edge sensor on amdgpu), millidegrees → °C.
fn edge_temperature_c(device: &Path) -> Option<f64> {
    let mut hwmons: Vec<PathBuf> = std::fs::read_dir(device.join("hwmon"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    hwmons.sort();
    hwmons
        .iter()
        .find_map(|h| read_trimmed(&h.join("temp1_input"))?.parse::<i64>().ok())
        .map(|milli| milli as f64 / 1000.0)
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn read_u64(path: &Path) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hardware/sysfs")
            .join(name)
    }

    #[test]
    fn discrete_card_reads_vram_and_millidegrees() {
        let root = fixture("discrete-rx7900xtx");
        let cards = cards(&root);
        assert_eq!(cards.len(), 1, "{cards:?}");
        let gpu = read_card(&cards[0]);
        assert_eq!(gpu.index, 0);
        assert_eq!(gpu.vendor, GpuVendor::Amd);
        assert_eq!(
            gpu.name.as_ref().map(|m| m.value.as_str()),
            Some("AMD Radeon RX 7900 XTX")
        );
        assert_eq!(
            gpu.driver.as_ref().map(|m| m.value.as_str()),
            Some("amdgpu")
        );
        assert_eq!(gpu.vram_total_bytes.map(|m| m.value), Some(25_753_026_560));
        assert_eq!(gpu.vram_used_bytes.map(|m| m.value), Some(1_365_958_656));
        assert_eq!(gpu.gtt_total_bytes.map(|m| m.value), Some(33_554_432_000));
        assert!(!gpu.unified_memory);
        assert_eq!(gpu.temperature_c.map(|m| m.value), Some(46.0));
        assert_eq!(gpu.utilization_percent.map(|m| m.value), Some(3.0));
        assert_eq!(gpu.vram_used_bytes.map(|m| m.source), Some(Source::Sysfs));
        // Not unified: the model's memory is VRAM only.
        assert_eq!(gpu.usable_total_bytes(), Some(25_753_026_560));
    }

    #[test]
    fn strix_halo_apu_counts_vram_plus_gtt() {
        let root = fixture("apu-strix-halo");
        let cards = cards(&root);
        assert_eq!(
            cards.len(),
            1,
            "connector and render nodes are skipped: {cards:?}"
        );
        let gpu = read_card(&cards[0]);
        assert_eq!(gpu.index, 1);
        assert!(gpu.unified_memory);
        assert_eq!(gpu.vram_total_bytes.map(|m| m.value), Some(512 << 20));
        assert_eq!(gpu.gtt_total_bytes.map(|m| m.value), Some(64 << 30));
        assert_eq!(gpu.usable_total_bytes(), Some((512 << 20) + (64 << 30)));
        assert_eq!(gpu.usable_used_bytes(), Some(201_326_592 + 20_401_094_656));
        // No product_name on this kernel: named after the PCI device id.
        assert_eq!(
            gpu.name.as_ref().map(|m| m.value.as_str()),
            Some("AMD GPU 0x1586")
        );
        assert_eq!(gpu.temperature_c.map(|m| m.value), Some(38.25));
        // gpu_busy_percent unreadable here: absent, not 0.
        assert_eq!(gpu.utilization_percent, None);
    }

    #[test]
    fn unified_memory_heuristic() {
        // Unknown id, but a 512 MiB carve-out next to 32 GiB GTT.
        assert!(is_unified_memory(
            Some("0x9999"),
            Some(512 << 20),
            Some(32 << 30)
        ));
        // A 16 GiB discrete card with a 32 GiB GTT window.
        assert!(!is_unified_memory(
            Some("0x73bf"),
            Some(16 << 30),
            Some(32 << 30)
        ));
        assert!(!is_unified_memory(None, None, None));
    }

    #[test]
    fn missing_tree_has_no_cards() {
        assert!(cards(Path::new("/nonexistent-sysfs")).is_empty());
    }
}
